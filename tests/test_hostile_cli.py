"""Hostile command lines: numeric options out of range or not finite, --out at the filesystem root or a
system folder, text files that are devices or too large, and a run that diverges.

Every refusal is one line: click's "Invalid value for '--flag': ..." for a number (exit 2, click's
usage error), "Error: ..." naming the flag and the path for the rest (exit 1). Nothing is ever
written into / here: the commands that would write there if the refusal were missing are given a
guard (rawcnn.files.fileio.temp_name refuses a target in /) or an input that stops them before any write.
"""
import math
import os
import warnings

import click
import numpy as np
import pytest
from click.testing import CliRunner

import fuzz_inputs as fz
from cli import Finite, main
from rawcnn.data import Augmenter
from rawcnn.files import fileio
from rawcnn.files.fileio import SYSTEM_FOLDERS, SystemFolderError, check_out_folder
from rawcnn.files.validate import InputError, read_text


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return fz.make_bases(tmp_path_factory.mktemp("hostile"), np.random.default_rng(0))


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error(r):
    """The one 'Error: ...' line of a refused run (and no traceback, no last-resort 'internal error')."""
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.output
    assert "internal error" not in errors[0] and "Traceback" not in r.output, r.output
    return errors[0]


def _invalid(r, flag):
    """A number refused by click: exit 2 and "Invalid value for '<flag>'"."""
    line = _one_error(r)
    assert r.exit_code == 2 and f"Invalid value for '{flag}'" in line, r.output
    return line


# -- 4, 9b, 9c, 9f: every numeric option has a range and refuses NaN and inf ----------------------
def _commands(group=main, path=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


NUMERIC = [(path, p.opts[0], p.type) for path, cmd in _commands() for p in cmd.params
           if isinstance(p, click.Option) and not p.is_flag
           and isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType))]


def _ranged(t):
    """A Finite, or a click.IntRange with a lower bound (a whole number is never NaN or inf)."""
    return isinstance(t, Finite) or (isinstance(t, click.IntRange) and t.min is not None)


def test_every_numeric_option_has_a_finite_range():
    """Each int or float option of each command is a Finite (a range, NaN and inf refused)."""
    assert len(NUMERIC) > 40  # the walk found the commands' options
    loose = [f"{' '.join(path)} {opt}" for path, opt, t in NUMERIC if not _ranged(t)]
    assert not loose, f"numeric options without a range: {loose}"


@pytest.mark.parametrize("path,opt", [(p, o) for p, o, _ in NUMERIC], ids=lambda v: "_".join(v) if
                         isinstance(v, tuple) else v)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_numeric_option_refuses_non_finite(path, opt, value):
    # the option comes first, so click judges it before anything else (missing arguments included)
    _invalid(_run([*path, opt, value]), opt)


@pytest.mark.parametrize("args,flag", [
    (["train", "--rotate", "1e308"], "--rotate"), (["train", "--rotate", "-1"], "--rotate"),
    (["train", "--rotate", "181"], "--rotate"), (["train", "--translate", "1"], "--translate"),
    (["train", "--scale", "1"], "--scale"), (["train", "--brightness", "-0.1"], "--brightness"),
    (["train", "--lr", "0"], "--lr"), (["train", "--lr", "-1e-3"], "--lr"),
    (["train", "--momentum", "1"], "--momentum"),
    (["train", "--batch-size", "0"], "--batch-size"), (["train", "--epochs", "0"], "--epochs"),
    (["train", "--weight-decay", "-1"], "--weight-decay"), (["train", "--patience", "0"], "--patience"),
    (["train", "--num-classes", "1"], "--num-classes"), (["train", "--new-head-lr-mult", "0"], "--new-head-lr-mult"),
    (["train", "--seed", "-1"], "--seed"), (["cv", "--folds", "1"], "--folds"),
    (["evaluate", "--threshold", "1.5"], "--threshold"), (["predict", "--top", "0"], "--top"),
    (["predict", "--top", "-3"], "--top"), (["summary", "--num-classes", "-1"], "--num-classes"),
    (["summary", "--num-classes", "0"], "--num-classes"), (["viz", "heatmap", "--alpha", "2"], "--alpha"),
    (["viz", "dream", "--octaves", "0"], "--octaves"), (["viz", "dream", "--lr", "0"], "--lr"),
    (["viz", "activations", "--index", "-1"], "--index"), (["data", "synth", "--size", "8"], "--size"),
    (["data", "prepare", "--clahe-clip-limit", "0"], "--clahe-clip-limit"),
])
def test_out_of_range_values_are_refused_by_name(args, flag):
    line = _invalid(_run(args), flag)
    assert "not in the range" in line


def test_defect_values_with_real_inputs(bases, tmp_path):
    """The reported command lines, with inputs that would otherwise run: one line each, no internal error."""
    b = bases
    train = ["train", "--model", b["spec"], "--data", b["prepared"], "--epochs", "1", "--batch-size", "4",
             "--out", tmp_path / "run"]
    for extra, flag in ((["--rotate", "1e308"], "--rotate"), (["--rotate", "nan"], "--rotate"),
                        (["--translate", "inf"], "--translate"), (["--lr", "inf"], "--lr")):
        _invalid(_run(train + extra), flag)
    assert not (tmp_path / "run").exists()
    _invalid(_run(["evaluate", b["checkpoint"], "--data", b["prepared"], "--threshold", "nan"]), "--threshold")
    for top in ("0", "-3"):
        _invalid(_run(["predict", "--checkpoint", b["checkpoint"], "--top", top, b["png"]]), "--top")
    r = _run(["summary", b["spec"], "--num-classes", "-1"])
    _invalid(r, "--num-classes")
    assert "negative dimensions" not in r.output


@pytest.mark.parametrize("kw,name", [({"max_rotate_deg": math.nan}, "max_rotate_deg"),
                                     ({"max_rotate_deg": 1e308}, "max_rotate_deg"),
                                     ({"max_translate": math.inf}, "max_translate"),
                                     ({"max_translate": math.nan}, "max_translate"),
                                     ({"max_scale": math.nan}, "max_scale"),
                                     ({"max_brightness": math.inf}, "max_brightness")])
def test_augmenter_refuses_non_finite_limits(kw, name):
    with pytest.raises(ValueError, match=f"Augmenter: {name} must be a finite number"):
        Augmenter(rng=0, **kw)


def test_divergence_is_one_line_without_numpy_warnings(bases, tmp_path):
    """A huge but finite lr: the loss turns inf/NaN; the user sees the divergence line, no RuntimeWarning."""
    b = bases
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = _run(["train", "--model", b["spec"], "--data", b["prepared"], "--epochs", "2", "--batch-size", "4",
                  "--no-augment", "--lr", "1e30", "--out", tmp_path / "run"])
    assert r.exit_code == 1, r.output
    assert "diverged: the training loss became" in r.output
    assert "RuntimeWarning" not in r.output and "encountered" not in r.output, r.output
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


# -- 5: --out at the filesystem root, a system folder or the home folder --------------------------
LISTED = ["/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
          "/sbin", "/sys", "/usr", "/var", "/srv", "/opt", "/home", "/mnt", "/media", "/tmp", "/usr/bin", "/usr/lib",
          "/usr/local", "/usr/local/bin", "/var/lib", "/var/log", "/etc/ssl", "/etc/a/b", "/proc/self", "/sys/kernel"]


@pytest.mark.parametrize("folder", LISTED)
def test_system_folders_are_refused(folder):
    with pytest.raises(SystemFolderError, match="rawcnn writes its outputs only into a folder of your own"):
        check_out_folder(folder)
    with pytest.raises(SystemFolderError, match="the folder of --out"):  # a file straight inside it
        check_out_folder(os.path.join(folder, "out.h5"), folder=False)
    with pytest.raises(SystemFolderError):
        check_out_folder(folder + "/")


def test_the_list_holds_every_folder_named():
    for f in ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
              "/sbin", "/sys", "/usr", "/var", "/srv", "/opt", "/home", "/mnt", "/media", "/tmp"):
        assert f in SYSTEM_FOLDERS


@pytest.mark.parametrize("folder", ["/tmp/run", "/home/someone/runs", "/opt/lab/out", "/srv/data/run", "/mnt/disk/x",
                                    "/media/usb/run", "/var/tmp/run", "/usr/local/src/x"])
def test_subfolders_are_fine(folder):
    check_out_folder(folder)
    check_out_folder(os.path.join(folder, "out.h5"), folder=False)


def test_home_folder_itself_is_refused_its_subfolders_not(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(SystemFolderError, match="home folder"):
        check_out_folder(home)
    with pytest.raises(SystemFolderError, match="home folder"):
        check_out_folder(home / "eval.h5", folder=False)
    check_out_folder(home / "runs")
    check_out_folder(home / "runs" / "eval.h5", folder=False)


def test_links_are_resolved(tmp_path):
    (tmp_path / "root").symlink_to("/")
    (tmp_path / "usr").symlink_to("/usr")
    with pytest.raises(SystemFolderError, match="filesystem root"):
        check_out_folder(tmp_path / "root")
    with pytest.raises(SystemFolderError, match="a system folder"):
        check_out_folder(tmp_path / "usr" / "x.png", folder=False)


@pytest.fixture
def root_guard(monkeypatch):
    """Should a refusal be missing, a write into / fails here (before any file is made) instead of happening."""
    real = fileio.temp_name

    def guarded(path):
        if os.path.realpath(os.path.dirname(os.path.abspath(os.fspath(path)))) == "/":
            raise AssertionError(f"test guard: rawcnn was about to write {path} into /")
        return real(path)
    monkeypatch.setattr(fileio, "temp_name", guarded)
    before = sorted(os.listdir("/"))
    yield
    assert sorted(os.listdir("/")) == before


def _refused_out(r, what="filesystem root"):
    line = _one_error(r)
    assert r.exit_code == 1 and "--out" in line and what in line, r.output
    return line


def test_train_and_evaluate_refuse_the_root(bases, root_guard):
    b = bases
    _refused_out(_run(["train", "--model", b["spec"], "--data", b["prepared"], "--epochs", "1", "--batch-size", "4",
                       "--no-augment", "--out", "/", "--overwrite"]))
    _refused_out(_run(["evaluate", b["checkpoint"], "--data", b["prepared"], "--split", "all", "--out", "/",
                       "--overwrite"]))


def test_a_link_to_the_root_and_the_home_folder_are_refused(bases, root_guard, tmp_path, monkeypatch):
    b = bases
    (tmp_path / "link").symlink_to("/")
    _refused_out(_run(["evaluate", b["checkpoint"], "--data", b["prepared"], "--split", "all",
                       "--out", tmp_path / "link"]))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    _refused_out(_run(["evaluate", b["checkpoint"], "--data", b["prepared"], "--split", "all", "--out", home,
                       "--overwrite"]), "home folder")
    assert os.listdir(home) == []


# every command that has --out; --out comes first (click judges it first), and what follows would stop
# the command before any write if the refusal were missing (a missing input, a bad choice)
EVERY_OUT = [
    ["demo", "--out", "/", "--device", "no-such-device"],
    ["data", "synth", "--out", "/", "--difficulty", "no-such"],
    ["data", "prepare", "--out", "/set.h5", "missing-src"],
    ["import-weights", "--out", "/w.h5", "--arch", "vgg16", "--format", "no-such", "missing.h5"],
    ["cv", "--out", "/", "--data", "missing.h5"],
    ["search", "--out", "/", "--space", "{}", "--data", "missing.h5"],
    ["viz", "filters", "--out", "/f.png", "missing.h5"],
    ["viz", "activations", "--out", "/", "missing.h5"],
    ["viz", "heatmap", "--out", "/", "missing.h5"],
    ["viz", "dream", "--out", "/d.png", "missing.h5"],
    ["viz", "score", "--out", "/score", "missing.h5"],
    ["report", "--out", "/report.html", "missing-run"],
    ["evaluate", "--out", "/usr", "missing.h5"],
    ["train", "--out", "/etc/rawcnn", "--data", "missing.h5"],
]


@pytest.mark.parametrize("args", EVERY_OUT, ids=lambda a: "_".join(a[:2]))
def test_every_command_refuses_a_system_folder(args, root_guard):
    what = {"/usr": "a system folder", "/etc/rawcnn": "inside a system folder"}.get(args[args.index("--out") + 1],
                                                                                    "filesystem root")
    _refused_out(_run(args), what)


def test_every_command_with_out_is_in_the_list():
    having = {" ".join(path) for path, cmd in _commands() for p in cmd.params if "--out" in p.opts}
    listed = {" ".join(a[:a.index("--out")]) for a in EVERY_OUT}
    assert having <= listed, having - listed


# -- 8b: text and config files through one bounded reader ---------------------------------------
def test_read_text_refuses_devices_fifos_folders_big_and_non_utf8(tmp_path):
    with pytest.raises(InputError, match="/dev/zero: not a regular file"):
        read_text("/dev/zero", "/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):  # refused without blocking on the open
        read_text(fifo, str(fifo))
    with pytest.raises(InputError, match="not a regular file"):
        read_text(tmp_path, str(tmp_path))
    big = tmp_path / "big.txt"
    big.write_bytes(b"a\n" * 600)
    with pytest.raises(InputError, match="more than 1.0 KB"):
        read_text(big, "big.txt", max_bytes=1024)
    assert read_text(big, "big.txt", max_bytes=1200) == "a\n" * 600
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"normal\n\xff\xfe\n")
    with pytest.raises(InputError, match=r"bad.txt: not UTF-8 text \(byte 7"):
        read_text(bad, "bad.txt")
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffnormal\nabnormal\n".encode())
    assert read_text(bom, "bom.txt") == "normal\nabnormal\n"
    with pytest.raises(InputError, match="missing.txt: cannot read it"):
        read_text(tmp_path / "missing.txt", "missing.txt")


def test_predict_class_names_from_a_device_a_big_or_a_non_utf8_file(bases, tmp_path):
    b = bases
    cmd = ["predict", "--checkpoint", b["checkpoint"], b["png"], "--class-names"]
    line = _one_error(_run(cmd + ["/dev/zero"]))
    assert "--class-names /dev/zero: not a regular file" in line
    big = tmp_path / "names.txt"
    big.write_bytes(b"n\n" * (8 << 20) + b"x\n")  # one byte over the 16 MiB text budget
    line = _one_error(_run(cmd + [big]))
    assert f"--class-names {big}: more than 16.0 MB" in line
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"normal\n\xffabnormal\n")
    line = _one_error(_run(cmd + [bad]))
    assert f"--class-names {bad}: not UTF-8 text" in line
    good = tmp_path / "good.txt"
    good.write_text("healthy\nsick\n")
    r = _run(cmd + [good])
    assert r.exit_code == 0 and ("healthy" in r.output or "sick" in r.output), r.output


def test_search_space_from_a_device(bases, tmp_path):
    r = _run(["search", "--space", "/dev/zero", "--data", bases["prepared"], "--out", tmp_path / "s"])
    line = _one_error(r)
    assert r.exit_code == 1 and "--space /dev/zero: not a regular file" in line


def test_model_spec_from_a_device_or_a_fifo(tmp_path):
    """--model / MODEL spec files go through the same bounded reader: a device or a FIFO is refused
    unread (a FIFO used to block `open` until a writer came)."""
    import threading
    line = _one_error(_run(["summary", "/dev/zero"]))
    assert "spec file /dev/zero: not a regular file" in line
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "spec.json"
        os.mkfifo(fifo)
        out = {}
        t = threading.Thread(target=lambda: out.update(r=_run(["summary", fifo])), daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), "summary on a FIFO spec did not return"
        assert f"spec file {fifo}: not a regular file" in _one_error(out["r"])


def test_report_refuses_a_run_folder_at_the_root(root_guard):
    """Without --out the report goes into RUN_DIR: RUN_DIR / is refused like --out /."""
    r = _run(["report", "/"])
    line = _one_error(r)
    assert r.exit_code == 1 and "the folder of the report /report.html, /, is the filesystem root" in line


@pytest.mark.parametrize("kw,flag", [({"lr": math.inf}, "--lr"), ({"lr": math.nan}, "--lr"), ({"lr": 0.0}, "--lr"),
                                     ({"rotate": 1e308}, "--rotate"), ({"translate": math.nan}, "--translate"),
                                     ({"momentum": 1.0}, "--momentum"), ({"epochs": 0}, "--epochs"),
                                     ({"clip_norm": math.inf}, "--clip-norm")])
def test_recipe_settings_are_range_checked_for_library_callers(kw, flag):
    from rawcnn.training.recipe_hooks import RecipeHooks
    from rawcnn.training.recipes import resolve
    with pytest.raises(ValueError, match=f"^{flag} must be a finite"):
        resolve("default", **kw)
    if "clip_norm" in kw:
        with pytest.raises(ValueError, match="must be finite and >= 0"):
            RecipeHooks(kw, None)
