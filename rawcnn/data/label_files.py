"""Sets labelled by a CSV file: the NIH ChestX-ray14 layout and a flat folder with a label CSV.
Every CSV is read within bounds (_csv_table: size, line length, columns, fields).

Readers (each returns rawcnn.data.records.Records):
    read_nih(root, finding)     root/Data_Entry_2017.csv + images anywhere under root (the NIH
                                images_###/images/ folders or one images/ folder); label 1 = the
                                finding among 'Finding Labels', 0 = 'No Finding', other images
                                left out; Record.clinical['patient'] = 'Patient ID' (the split
                                keeps each patient in one split)
    read_label_csv(root, csv)   root/<file> listed in a CSV with columns file and label (an
                                integer or a class name), e.g. ../shared/data/nih-cxr14-samples
"""
import csv
import re
from pathlib import Path

from rawcnn.data.decode import header_problem
from rawcnn.data.records import NLM_CLASS_NAMES, DataError, Record, Records, inside_root
from rawcnn.files.validate import InputError, read_text

# What a CSV handed to rawcnn may hold. NIH's Data_Entry_2017.csv (112,120 rows, 12 columns) is 7.8 MB.
MAX_CSV_BYTES = 64 << 20   # the file, read within this bound (rawcnn.files.validate.read_text)
MAX_CSV_LINE = 1 << 20     # characters in one line
MAX_CSV_COLUMNS = 1024     # fields in the header or in one row
MAX_CSV_CELLS = 1 << 23    # fields kept in memory in all
MAX_CLASSES = 1000         # classes a label column may define


def _csv_lines(text, path):
    """The lines of `text` (ends kept, split at \\n, \\r\\n or \\r as open(newline='') does) for csv.reader;
    DataError at the first line longer than MAX_CSV_LINE."""
    for n, m in enumerate(re.finditer(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text), start=1):
        if m.end() - m.start() > MAX_CSV_LINE:
            raise DataError(f"{path}: line {n} holds {m.end() - m.start()} characters, more than the limit of "
                            f"{MAX_CSV_LINE}; the file is damaged or not the CSV rawcnn expects")
        yield m.group()


def _csv_table(path, need):
    """[(line number, row dict)] of a CSV file, the header being the first non-blank row; within bounds.

    The file must be a regular file of at most MAX_CSV_BYTES (UTF-8, a byte-order mark dropped); lines,
    columns and fields are bounded by MAX_CSV_LINE, MAX_CSV_COLUMNS and MAX_CSV_CELLS. Column names are
    stripped of spaces; a row shorter than the header reads '' for the columns it lacks, fields past
    the header are dropped, rows with nothing but blanks are left out. DataError naming the file (and
    the line) when a bound is passed, a needed column is missing or named twice, or csv cannot parse it.
    """
    try:
        text = read_text(path, str(path), MAX_CSV_BYTES)
    except InputError as e:
        raise DataError(str(e)) from None
    reader = csv.reader(_csv_lines(text, path))
    header, rows, cells, line = None, [], 0, 0
    try:
        for fields in reader:
            start, line = line + 1, reader.line_num
            if len(fields) > MAX_CSV_COLUMNS:
                raise DataError(f"{path}: line {start} has {len(fields)} columns, more than the limit of "
                                f"{MAX_CSV_COLUMNS}; the file is damaged or not the CSV rawcnn expects")
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip() for f in fields]
                missing = [c for c in need if c not in header]
                if missing:
                    found = [h[:40] for h in header[:8]] + (["..."] if len(header) > 8 else [])
                    raise DataError(f"{path}: missing column(s) {missing}; found {found}")
                twice = [c for c in need if header.count(c) > 1]
                if twice:
                    raise DataError(f"{path}: column(s) {twice} appear more than once in the header")
                continue
            cells += len(fields)
            if cells > MAX_CSV_CELLS:
                raise DataError(f"{path}: more than {MAX_CSV_CELLS} fields by line {start}; the file is larger "
                                f"than rawcnn reads")
            row = dict(zip(header, fields, strict=False))  # a short row reads '' below, fields past the header dropped
            for k in header[len(fields):]:
                row.setdefault(k, "")
            rows.append((start, row))
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: not a readable CSV file ({e})") from None
    if header is None:
        raise DataError(f"{path}: empty; expected a header line naming the columns {list(need)}")
    return rows


def _csv_rows(path, need):
    """Rows of a CSV file as dicts (read by _csv_table, within its bounds); DataError naming the file."""
    return [row for _, row in _csv_table(path, need)]


def _index_images(root):
    """{file name: path} of every file under root (the NIH images_###/images/ folders included)."""
    return {p.name: p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")}


def read_nih(root, finding="Effusion", csv_name="Data_Entry_2017.csv", skip_bad=False):
    """Read the NIH ChestX-ray14 layout (module docstring): `finding` vs 'No Finding'. Returns Records."""
    root = Path(root)
    table = root / csv_name
    if not table.is_file():
        raise DataError(f"{root}: no {csv_name}")
    inside_root(root, table, f"{table}")
    rows = _csv_rows(table, ("Image Index", "Finding Labels", "Patient ID"))
    files = _index_images(root)
    records, skipped, known = [], [], set()
    for r in rows:
        for f in r["Finding Labels"].split("|"):
            known.add(f.strip())
        labels = {f.strip() for f in r["Finding Labels"].split("|")}
        label = 1 if finding in labels else 0 if labels == {"No Finding"} else None
        if label is None:
            continue
        path = files.get(r["Image Index"])
        if path is not None:
            inside_root(root, path, f"{table}: image {r['Image Index']!r} ({path})")
        problem = "listed in the CSV but not found under the folder" if path is None else header_problem(path)
        if problem:
            if not skip_bad:
                raise DataError(f"{path or root / r['Image Index']}: {problem}")
            skipped.append((path or root / r["Image Index"], problem))
            continue
        records.append(Record(path=path, label=label, name=Path(r["Image Index"]).stem,
                              clinical={"patient": r["Patient ID"], "finding": r["Finding Labels"]}))
    if finding not in known:
        raise DataError(f"{table}: no image has the finding {finding!r}; findings present: {sorted(known)}")
    return Records(records, ("No Finding", finding), "nih", root, skipped)


def _label_kind(v):
    """('index', int), ('name', v) or (None, why) for one label as written (stripped) in a label CSV."""
    if not v:
        return None, "empty label"
    if v.isascii() and v.isdigit():
        return "index", int(v)
    try:
        float(v)  # '0.5', '1.0', '-1', 'nan', 'inf', '1e3': numbers, but not class indices
    except ValueError:
        return "name", v
    return None, (f"label {v!r} is not a class index (a whole number 0, 1, 2, ... written in digits: '1', not "
                  f"'1.0') nor a class name")


def read_label_csv(root, csv_name="labels.csv", classes=None, skip_bad=False):
    """Read root/<file> listed in root/<csv_name> (columns file, label). Returns Records.

    label: an integer class index written in digits ('0', '1', ...), or a class name; every label of
    the file is one or the other. Integer labels take `classes` as names, or ('normal', 'abnormal')
    for 0/1 (the NLM convention: 1 = abnormal), or '0'..'K-1' for K = the largest label + 1. Name
    labels take `classes` for the order, or sorted names. At least two classes.

    Refused, naming the CSV, the line and the value (with skip_bad the row is left out and listed in
    `skipped`): an empty label or file name, a number that is not a whole number in digits ('0.5',
    '1.0', '-1', 'nan'), an index among names or a name among indices (the fewer kind is at fault),
    a file listed twice (the repeat; every row of a file listed with two labels). Refused always,
    before any file is opened: a file name that resolves (links followed) outside root, '../x.png',
    '/etc/passwd' or a link pointing out (OutsideFolderError). Then each file's header is checked,
    a FIFO or a device is refused without being opened (decode.header_problem).
    """
    root = Path(root)
    table = root / csv_name
    inside_root(root, table, f"{table}")
    rows = _csv_table(table, ("file", "label"))
    if not rows:
        raise DataError(f"{table}: no rows")
    bad = {}  # row index -> why it is not used
    paths, reals = _listed_files(root, table, rows, bad)
    kinds, kind = _label_kinds(rows, bad)
    _listed_twice(rows, reals, kinds, bad)
    if bad and not skip_bad:
        i = min(bad)
        raise DataError(f"{table}: line {rows[i][0]}: {bad[i]}")
    skipped = [(paths[i] or table, f"{table.name} line {rows[i][0]}: {bad[i]}") for i in sorted(bad)]
    keep = [i for i in range(len(rows)) if i not in bad]
    names, idx = _class_names(table, rows, [kinds[i][1] for i in keep], keep, kind, classes)
    records = _file_records(table, rows, paths, keep, idx, skip_bad, skipped)
    return Records(records, names, "label_csv", root, skipped)


def _listed_files(root, table, rows, bad):
    """Step 1 of read_label_csv, the names, before anything is opened: (paths, real paths), one per row.

    An empty file name or one holding a NUL goes into `bad` (row index -> why) with None for both
    paths; any other name must resolve inside root (inside_root: OutsideFolderError naming the line).
    """
    paths, reals = [], []
    for i, (line, r) in enumerate(rows):
        name = r["file"]
        if not name.strip() or "\0" in name:
            bad[i] = "empty file name" if not name.strip() else f"file name {name!r} holds a NUL character"
            paths.append(None)
            reals.append(None)
            continue
        paths.append(root / name)
        reals.append(inside_root(root, root / name, f"{table}: line {line}: file {name!r}"))
    return paths, reals


def _label_kinds(rows, bad):
    """Step 2 of read_label_csv, the labels: all class indices or all class names.

    Returns (kinds, kind): kinds [(kind, value)] per row (_label_kind), kind 'index' or 'name', the
    kind most usable rows have (ties: the first row's). Rows with an unusable label, or of the other
    kind (the fewer kind is at fault), go into `bad` (row index -> why).
    """
    kinds = [_label_kind(r["label"].strip()) for _, r in rows]
    for i, (kind, v) in enumerate(kinds):
        if kind is None:
            bad.setdefault(i, v)
    n_index = sum(k == "index" for i, (k, _) in enumerate(kinds) if i not in bad)
    n_name = sum(k == "name" for i, (k, _) in enumerate(kinds) if i not in bad)
    first = next((k for i, (k, _) in enumerate(kinds) if i not in bad), None)
    kind = "index" if n_index > n_name or (n_index == n_name and first == "index") else "name"
    example = next(((rows[i][0], v) for i, (k, v) in enumerate(kinds) if i not in bad and k == kind), None)
    for i, (k, v) in enumerate(kinds):
        if i not in bad and k != kind:
            other = {"index": "class indices", "name": "class names"}[kind]
            bad[i] = (f"label {str(v)!r} is a class {k}, but the other labels are {other} (e.g. {str(example[1])!r} on "
                      f"line {example[0]}); use one or the other")
    return kinds, kind


def _listed_twice(rows, reals, kinds, bad):
    """Step 3 of read_label_csv: a file listed twice would be one image in two splits.

    The repeat goes into `bad` (row index -> why); with another label, the first row too.
    """
    first_row = {}
    for i, real in enumerate(reals):
        if real is None or i in bad:
            continue
        if real not in first_row:
            first_row[real] = i
            continue
        j = first_row[real]
        if kinds[i][1] == kinds[j][1]:
            bad[i] = f"{rows[i][1]['file']!r} is listed again (first on line {rows[j][0]})"
        else:
            a, b = str(kinds[j][1]), str(kinds[i][1])
            bad[i] = f"{rows[i][1]['file']!r} has label {b!r} here and {a!r} on line {rows[j][0]}"
            bad.setdefault(j, f"{rows[j][1]['file']!r} has label {a!r} here and {b!r} on line {rows[i][0]}")


def _class_names(table, rows, values, keep, kind, classes):
    """Step 4 of read_label_csv: (class names, (n,) label per kept row) for the kept rows' label values.

    DataError naming the CSV when a label falls outside the classes, there are more than MAX_CLASSES
    classes, or (with any row kept) fewer than two.
    """
    if kind == "index":
        names = _index_class_names(table, rows, values, keep, classes)
        idx = values
    else:
        names = list(classes) if classes else sorted(set(values))
        unknown = sorted(set(values) - set(names))
        if unknown:
            i = keep[values.index(unknown[0])]
            raise DataError(f"{table}: label(s) {unknown[:10]} not among the classes {names[:10]} "
                            f"(e.g. line {rows[i][0]})")
        if len(names) > MAX_CLASSES:
            raise DataError(f"{table}: {len(names)} different class names, more than the limit of {MAX_CLASSES}")
        idx = [names.index(v) for v in values]
    if keep and len(names) < 2:
        raise DataError(f"{table}: only one class ({names[0]!r}); a classifier needs at least two")
    return names, idx


def _index_class_names(table, rows, values, keep, classes):
    """The class names for class-index labels: `classes`, else ('normal', 'abnormal') for 0/1 (NLM), else
    '0'..'K-1' for K = the largest label + 1 (at most MAX_CLASSES). DataError for a label outside them."""
    if classes:
        names = list(classes)
    elif set(values) <= {0, 1}:
        names = list(NLM_CLASS_NAMES)
    else:
        top = max(range(len(values)), key=lambda n: values[n])
        if values[top] >= MAX_CLASSES:
            raise DataError(f"{table}: line {rows[keep[top]][0]}: label {values[top]} would make "
                            f"{values[top] + 1} classes, more than the limit of {MAX_CLASSES}")
        names = [str(i) for i in range(values[top] + 1)]
    for i, v in zip(keep, values, strict=True):
        if not 0 <= v < len(names):
            raise DataError(f"{table}: label {v} outside 0..{len(names) - 1} (classes {names}), "
                            f"line {rows[i][0]}")
    return names


def _file_records(table, rows, paths, keep, idx, skip_bad, skipped):
    """Step 5 of read_label_csv, the files: a Record for each kept row (index keep[n], label idx[n]) whose
    file is a regular file with an image header (decode.header_problem: a FIFO or a device is refused
    unopened). A bad file raises DataError naming the CSV line, or with skip_bad is appended to `skipped`."""
    records = []
    for i, label in zip(keep, idx, strict=True):  # one label per kept row
        line, r = rows[i]
        problem = header_problem(paths[i])
        if problem:
            if not skip_bad:
                raise DataError(f"{paths[i]}: {problem} (listed on line {line} of {table})")
            skipped.append((paths[i], problem))
            continue
        records.append(Record(path=paths[i], label=label, name=Path(r["file"]).stem,
                              clinical={k: v for k, v in r.items() if k not in ("file", "label")}))
    return records
