"""Hostile folders through `rawcnn data prepare`: a labels.csv that names files outside the folder,
labels that are not class indices or names, and a family of odd layouts (empty folders, links out
of the folder, FIFOs and devices, oversized CSVs). Every case exits 0 with a correct set or exits 1
with one 'Error:' line naming the file at fault, writes no set on failure, and never hangs.
"""
import builtins
import os
import threading

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main

N = 8  # images in a good set: i0.png .. i7.png, labels alternating 0 / 1; the CSV's header is line 1


def _png(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (40, 40), dtype=np.uint8))


def _csv_set(tmp_path, extra_rows=(), text=None, labels=None):
    """tmp_path/set with i0..i7.png and labels.csv (header, the 8 good rows, then extra_rows)."""
    root = tmp_path / "set"
    for i in range(N):
        _png(root / f"i{i}.png", i)
    if text is None:
        labels = labels or [str(i % 2) for i in range(N)]
        text = "file,label\n" + "".join(f"i{i}.png,{v}\n" for i, v in enumerate(labels)) + \
            "".join(f"{r}\n" for r in extra_rows)
    (root / "labels.csv").write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return root


def _prepare(src, *extra, timeout=60):
    """Run `data prepare SRC --out <beside SRC>/out.h5 --input-size 32` in a thread; (result, out path).

    A reader that blocks on a FIFO would hang the test: after `timeout` seconds the FIFOs under SRC are
    opened for writing (which releases a blocked reader) and the test fails."""
    out = src.parent / "out.h5"
    box = {}

    def go():
        box["r"] = CliRunner().invoke(main, ["data", "prepare", str(src), "--out", str(out), "--input-size", "32",
                                             *extra])

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        for dirpath, _, names in os.walk(src):
            for n in names:
                p = os.path.join(dirpath, n)
                if os.path.exists(p) and not os.path.isfile(p) and not os.path.isdir(p) and \
                        os.path.realpath(p).startswith(str(src.parent)):
                    try:
                        os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
                    except OSError:
                        pass
        t.join(10)
        pytest.fail(f"data prepare {src} did not finish within {timeout} s (blocked on a FIFO?)")
    return box["r"], out


def _refused(r, out, *words):
    """Exit 1, one 'Error:' line holding every word, no internal error, and no set written."""
    errors = [line[line.index("Error:"):] for line in r.output.splitlines() if "Error:" in line]
    assert r.exit_code == 1, r.output
    assert len(errors) == 1, r.output
    assert "internal error" not in errors[0], errors[0]
    for w in words:
        assert str(w) in errors[0], (w, errors[0])
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".rawcnn-tmp-")]
    return errors[0]


def _classes(out):
    import json
    with h5py.File(out, "r") as f:
        return json.loads(f.attrs["class_names"]), f["labels"][:].tolist(), [n.decode() for n in f["names"][:]]


@pytest.fixture
def opened(monkeypatch):
    """Every path handed to open / os.open / np.fromfile / cv2.imread during the test, resolved."""
    seen = []

    def wrap(fn):
        def recorded(file, *a, **kw):
            if isinstance(file, (str, bytes, os.PathLike)):
                seen.append(os.path.realpath(os.fsdecode(file)))
            return fn(file, *a, **kw)
        return recorded

    monkeypatch.setattr(builtins, "open", wrap(builtins.open))
    monkeypatch.setattr(os, "open", wrap(os.open))
    monkeypatch.setattr(np, "fromfile", wrap(np.fromfile))
    monkeypatch.setattr(cv2, "imread", wrap(cv2.imread))
    return seen


# -- defect 6: names in labels.csv that leave the folder -------------------------------------------
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "etc_passwd", "link_out"])
@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_csv_name_outside_the_folder_is_refused_before_anything_is_opened(tmp_path, opened, kind, skip_bad):
    sentinel = tmp_path / "outside.png"  # a good image beside the set, outside it
    _png(sentinel, 99)
    name = {"dotdot": "../outside.png", "absolute": str(sentinel), "etc_passwd": "/etc/passwd",
            "link_out": "link.png"}[kind]
    root = _csv_set(tmp_path, [f"{name},1"])
    if kind == "link_out":
        os.symlink(sentinel, root / "link.png")
    opened.clear()
    r, out = _prepare(root, *(["--skip-bad"] if skip_bad else []))
    _refused(r, out, "labels.csv", f"line {N + 2}", name, "outside")
    # refused before any image was opened: neither the outside file nor any image of the set
    assert os.path.realpath(sentinel) not in opened and "/etc/passwd" not in opened
    assert not [p for p in opened if p.endswith(".png")], opened


def test_a_csv_name_inside_the_folder_through_a_subfolder_or_a_link_is_fine(tmp_path):
    root = _csv_set(tmp_path, ["sub/../sub/a.png,1", "inlink.png,0"])
    _png(root / "sub" / "a.png", 20)
    _png(root / "sub" / "b.png", 21)
    os.symlink(root / "sub" / "b.png", root / "inlink.png")  # a link that stays inside the folder
    r, out = _prepare(root)
    assert r.exit_code == 0, r.output
    names, labels, _ = _classes(out)
    assert names == ["normal", "abnormal"] and len(labels) == N + 2


# -- defect 9a: labels that are neither class indices nor class names ------------------------------
@pytest.mark.parametrize("value, words", [
    ("", ["empty label"]),
    ("0.5", ["'0.5'", "whole number"]),
    ("1.0", ["'1.0'", "whole number"]),
    ("-1", ["'-1'", "whole number"]),
    ("nan", ["'nan'", "whole number"]),
    ("inf", ["'inf'", "whole number"]),
    ("abnormal", ["'abnormal'", "class name", "class indices"]),
])
def test_a_bad_label_among_integers_is_refused_naming_csv_line_and_value(tmp_path, value, words):
    labels = [str(i % 2) for i in range(N)]
    labels[3] = value  # i3.png: line 5
    root = _csv_set(tmp_path, labels=labels)
    r, out = _prepare(root)
    _refused(r, out, "labels.csv", "line 5", *words)


def test_an_integer_among_class_names_is_refused(tmp_path):
    labels = ["normal", "abnormal"] * (N // 2)
    labels[6] = "1"  # i6.png: line 8
    r, out = _prepare(_csv_set(tmp_path, labels=labels))
    _refused(r, out, "labels.csv", "line 8", "'1'", "class index")


def test_bad_labels_with_skip_bad_are_skipped_and_listed_no_third_class(tmp_path):
    labels = [str(i % 2) for i in range(N)]
    labels[2], labels[5] = "", "0.5"  # lines 4 and 7
    r, out = _prepare(_csv_set(tmp_path, labels=labels), "--skip-bad")
    assert r.exit_code == 0, r.output
    names, got, files = _classes(out)
    assert names == ["normal", "abnormal"] and sorted(set(got)) == [0, 1] and len(got) == N - 2
    assert sorted(files) == sorted(f"i{i}" for i in range(N) if i not in (2, 5))
    skipped = [line for line in r.output.splitlines() if "skipped" in line]
    assert len(skipped) == 2 and "line 4" in skipped[0] + skipped[1] and "line 7" in skipped[0] + skipped[1]


def test_class_names_and_large_integers(tmp_path):
    r, out = _prepare(_csv_set(tmp_path, labels=["b", "a", "c", "a", "b", "c", "a", "b"]))
    assert r.exit_code == 0, r.output
    names, labels, files = _classes(out)
    assert names == ["a", "b", "c"]
    assert dict(zip(files, labels, strict=True))["i2"] == 2
    r, out = _prepare(_csv_set(tmp_path / "big", labels=["0", "1"] * 3 + ["0", "123456789012345678901234567890"]))
    _refused(r, out, "labels.csv", "line 9", "123456789012345678901234567890")


# -- the folder-layouts family ---------------------------------------------------------------------
def test_empty_folder(tmp_path):
    (tmp_path / "set").mkdir()
    _refused(*_prepare(tmp_path / "set"), "set", "the folder is empty")


def test_class_folders_that_are_empty(tmp_path):
    (tmp_path / "set" / "normal").mkdir(parents=True)
    (tmp_path / "set" / "abnormal").mkdir()
    _refused(*_prepare(tmp_path / "set"), "set", "abnormal", "normal", "no image files")


def test_a_single_class_folder(tmp_path):
    _png(tmp_path / "set" / "normal" / "a.png")
    _png(tmp_path / "set" / "normal" / "b.png", 1)
    _refused(*_prepare(tmp_path / "set"), "set", "one class", "normal")


def test_a_class_folder_linked_outside_the_root(tmp_path, opened):
    for i in range(3):
        _png(tmp_path / "set" / "normal" / f"n{i}.png", i)
        _png(tmp_path / "elsewhere" / f"x{i}.png", 10 + i)
    os.symlink(tmp_path / "elsewhere", tmp_path / "set" / "abnormal")
    opened.clear()
    for extra in ([], ["--skip-bad"]):
        _refused(*_prepare(tmp_path / "set", *extra), "abnormal", "outside")
    assert not [p for p in opened if "elsewhere" in p], opened


def test_an_image_linked_outside_the_root_in_a_class_folder(tmp_path, opened):
    for i in range(3):
        _png(tmp_path / "set" / "normal" / f"n{i}.png", i)
        _png(tmp_path / "set" / "abnormal" / f"a{i}.png", 10 + i)
    _png(tmp_path / "secret.png", 50)
    os.symlink(tmp_path / "secret.png", tmp_path / "set" / "abnormal" / "a9.png")
    opened.clear()
    _refused(*_prepare(tmp_path / "set", "--skip-bad"), "a9.png", "outside")
    assert os.path.realpath(tmp_path / "secret.png") not in opened


def test_nested_class_folders(tmp_path):
    _png(tmp_path / "set" / "normal" / "deeper" / "a.png")
    _png(tmp_path / "set" / "abnormal" / "b.png", 1)
    _refused(*_prepare(tmp_path / "set"), "normal", "no image files", "deeper")


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_labels_csv_that_is_not_a_file(tmp_path, kind):
    root = tmp_path / "set"
    _png(root / "normal" / "a.png")
    _png(root / "abnormal" / "b.png", 1)
    if kind == "folder":
        (root / "labels.csv").mkdir()
    else:
        os.mkfifo(root / "labels.csv")
    _refused(*_prepare(root, timeout=20), "labels.csv", "not a regular file")


def test_bom_and_crlf(tmp_path):
    text = "\ufefffile,label\r\n" + "".join(f"i{i}.png,{i % 2}\r\n" for i in range(N))
    r, out = _prepare(_csv_set(tmp_path, text=text))
    assert r.exit_code == 0, r.output
    names, labels, files = _classes(out)
    pairs = sorted(zip(files, labels, strict=True))
    assert names == ["normal", "abnormal"] and pairs == [(f"i{i}", i % 2) for i in range(N)]


def test_duplicate_rows(tmp_path):
    # the same file twice would put one image in two splits: refused, naming both lines
    _refused(*_prepare(_csv_set(tmp_path / "a", ["./i0.png,0"])), "labels.csv", "line 10", "line 2", "i0.png")
    _refused(*_prepare(_csv_set(tmp_path / "b", ["i0.png,1"])), "labels.csv", "line 10", "line 2", "i0.png")
    # with --skip-bad the repeat is left out, and a file with two different labels is left out altogether
    r, out = _prepare(_csv_set(tmp_path / "c", ["i0.png,0", "i1.png,0"]), "--skip-bad")
    assert r.exit_code == 0, r.output
    _, labels, files = _classes(out)
    assert sorted(files) == [f"i{i}" for i in range(N) if i != 1] and len(labels) == N - 1


def test_header_only_and_missing_columns_and_short_rows(tmp_path):
    _refused(*_prepare(_csv_set(tmp_path / "a", text="file,label\n")), "labels.csv", "no rows")
    _refused(*_prepare(_csv_set(tmp_path / "b", text="file,lbl\ni0.png,0\n")), "labels.csv", "'label'")
    _refused(*_prepare(_csv_set(tmp_path / "c", ["nofile.png"])), "labels.csv", "line 10", "empty label")


def test_a_million_columns_is_bounded(tmp_path):
    text = "file,label," + ",".join(f"c{i}" for i in range(10 ** 6)) + "\n" + \
        "".join(f"i{i}.png,{i % 2}\n" for i in range(N))
    msg = _refused(*_prepare(_csv_set(tmp_path / "a", text=text)), "labels.csv", "line 1")
    assert len(msg) < 400
    text = "file,label," + ",".join(f"c{i}" for i in range(5000)) + "\n" + \
        "".join(f"i{i}.png,{i % 2}\n" for i in range(N))
    msg = _refused(*_prepare(_csv_set(tmp_path / "b", text=text)), "labels.csv", "5002 columns")
    assert len(msg) < 400


def test_a_10_mb_line_is_bounded(tmp_path):
    text = "file,label\n" + "".join(f"i{i}.png,{i % 2}\n" for i in range(N)) + "i0.png,0," + "x" * (10 << 20) + "\n"
    msg = _refused(*_prepare(_csv_set(tmp_path, text=text)), "labels.csv", "line 10")
    assert len(msg) < 400


def test_a_csv_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    from rawcnn.data import label_files
    root = _csv_set(tmp_path)
    monkeypatch.setattr(label_files, "MAX_CSV_BYTES", 64)
    _refused(*_prepare(root), "labels.csv")


def test_a_listed_file_that_does_not_exist(tmp_path):
    _refused(*_prepare(_csv_set(tmp_path, ["nope.png,1"])), "nope.png", "not found")
    r, out = _prepare(_csv_set(tmp_path / "skip", ["nope.png,1"]), "--skip-bad")
    assert r.exit_code == 0 and "skipped" in r.output and "nope.png" in r.output, r.output


def test_a_fifo_named_in_the_csv_is_refused_without_blocking(tmp_path):
    root = _csv_set(tmp_path, ["pipe.png,1"])
    os.mkfifo(root / "pipe.png")
    _refused(*_prepare(root, timeout=20), "pipe.png", "not a regular file")
    r, out = _prepare(root, "--skip-bad", timeout=20)
    assert r.exit_code == 0 and "pipe.png" in r.output, r.output


def test_a_fifo_in_a_class_folder_is_refused_without_blocking(tmp_path):
    for i in range(3):
        _png(tmp_path / "set" / "normal" / f"n{i}.png", i)
        _png(tmp_path / "set" / "abnormal" / f"a{i}.png", 10 + i)
    os.mkfifo(tmp_path / "set" / "abnormal" / "pipe.png")
    _refused(*_prepare(tmp_path / "set", timeout=20), "pipe.png", "not a regular file")


def test_dev_zero_through_a_link_inside_the_folder(tmp_path, opened):
    root = _csv_set(tmp_path, ["zero.png,1"])
    os.symlink("/dev/zero", root / "zero.png")
    opened.clear()
    _refused(*_prepare(root, timeout=20), "labels.csv", "zero.png", "outside")
    assert "/dev/zero" not in opened
    for i in range(3):
        _png(tmp_path / "tree" / "normal" / f"n{i}.png", i)
        _png(tmp_path / "tree" / "abnormal" / f"a{i}.png", 10 + i)
    os.symlink("/dev/zero", tmp_path / "tree" / "abnormal" / "zero.png")
    _refused(*_prepare(tmp_path / "tree", timeout=20), "zero.png", "outside")
    assert "/dev/zero" not in opened


# -- the NLM (Montgomery, Shenzhen) and NIH layouts: links out of the folder --------------------------
def _montgomery_set(root):
    """root in the Montgomery layout: four images, labels 0/1, each with a clinical reading and masks."""
    for i in range(4):
        stem = f"MCUCXR_{i + 1:04d}_{i % 2}"
        _png(root / "CXR_png" / f"{stem}.png", i)
        _png(root / "ManualMask" / "leftMask" / f"{stem}.png", 20 + i)
        (root / "ClinicalReadings").mkdir(parents=True, exist_ok=True)
        (root / "ClinicalReadings" / f"{stem}.txt").write_text(
            "Patient's Sex: M\nPatient's Age: 040Y\n" + ("normal\n" if i % 2 == 0 else "PTB\n"))
    return root


@pytest.mark.parametrize("what", ["image", "left_mask", "clinical", "image_folder"])
def test_a_montgomery_file_linked_outside_the_root_is_refused_unread(tmp_path, opened, what):
    root = _montgomery_set(tmp_path / "set")
    _png(tmp_path / "secret.png", 50)
    (tmp_path / "secret.txt").write_text("Patient's Sex: F\nPatient's Age: 050Y\nnormal\n")
    r, out = _prepare(root)  # the untouched set prepares
    assert r.exit_code == 0, r.output
    out.unlink()
    stem = "MCUCXR_0003_0"
    if what == "image_folder":
        os.rename(root / "CXR_png", tmp_path / "elsewhere")
        os.symlink(tmp_path / "elsewhere", root / "CXR_png")
        culprit, secret = "CXR_png", tmp_path / "elsewhere"
    else:
        rel = {"image": f"CXR_png/{stem}.png", "left_mask": f"ManualMask/leftMask/{stem}.png",
               "clinical": f"ClinicalReadings/{stem}.txt"}[what]
        secret = tmp_path / ("secret.txt" if what == "clinical" else "secret.png")
        os.remove(root / rel)
        os.symlink(secret, root / rel)
        culprit = rel.rsplit("/", 1)[-1]
    for extra in ([], ["--skip-bad"]):
        opened.clear()
        _refused(*_prepare(root, *extra), culprit, "outside")
        assert not [p for p in opened if p.startswith(os.path.realpath(secret))], opened


def test_an_nih_image_or_table_linked_outside_the_root_is_refused_unread(tmp_path, opened):
    root = tmp_path / "nih"
    rows = []
    for i in range(6):
        _png(root / "images_001" / "images" / f"0000000{i}_000.png", i)
        rows.append(f"0000000{i}_000.png,{'Effusion' if i % 2 else 'No Finding'},{i}")
    table = "Image Index,Finding Labels,Patient ID\n" + "\n".join(rows) + "\n"
    (root / "Data_Entry_2017.csv").write_text(table)
    r, out = _prepare(root)
    assert r.exit_code == 0, r.output
    out.unlink()
    _png(tmp_path / "secret.png", 50)
    victim = root / "images_001" / "images" / "00000003_000.png"
    victim.unlink()
    os.symlink(tmp_path / "secret.png", victim)
    for extra in ([], ["--skip-bad"]):
        opened.clear()
        _refused(*_prepare(root, *extra), "00000003_000.png", "outside")
        assert os.path.realpath(tmp_path / "secret.png") not in opened
    victim.unlink()
    _png(victim, 3)
    (tmp_path / "table.csv").write_text(table)
    (root / "Data_Entry_2017.csv").unlink()
    os.symlink(tmp_path / "table.csv", root / "Data_Entry_2017.csv")
    opened.clear()
    _refused(*_prepare(root), "Data_Entry_2017.csv", "outside")
    assert os.path.realpath(tmp_path / "table.csv") not in opened
