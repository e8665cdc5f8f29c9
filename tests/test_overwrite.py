"""Nothing a user saved is replaced or deleted without --overwrite (or --resume for train); outputs stay
inside --out; `--resume --lr` takes the new rate; a finite explosion of the loss stops like NaN."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import fuzz_inputs as fz
from cli import main
from rawcnn.engine.checkpoint import read_checkpoint
from rawcnn.files import fileio


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return fz.make_bases(tmp_path_factory.mktemp("owbase"), np.random.default_rng(0))


def _user_file(path, text="a user's file"):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def _refused_then_allowed(args, target, tmp_path):
    """args (with the existing user file `target`) fails naming it and leaves it; with --overwrite it succeeds."""
    r = run(*args)
    assert r.exit_code == 1, r.output
    assert "--overwrite" in r.output and str(target) in r.output, r.output
    assert open(target).read() == "a user's file"
    r = run(*args, "--overwrite")
    assert r.exit_code == 0, r.output
    assert open(target, "rb").read() != b"a user's file"


def test_import_weights_refuses_to_replace(base, tmp_path):
    out = _user_file(tmp_path / "imp.h5")
    _refused_then_allowed(["import-weights", base["keras3"], "--arch", base["arch"], "--out", out], out, tmp_path)
    assert read_checkpoint(out)["spec"]["name"] == "vgg16-mini"


def test_prepare_refuses_to_replace(base, tmp_path):
    out = _user_file(tmp_path / "set.h5")
    _refused_then_allowed(["data", "prepare", base["syn"], "--out", out, "--input-size", 32, "--base-size", 0],
                          out, tmp_path)


def test_viz_filters_and_dream_refuse_to_replace(base, tmp_path):
    out = _user_file(tmp_path / "f.png")
    _refused_then_allowed(["viz", "filters", base["checkpoint"], "--out", out], out, tmp_path)
    out = _user_file(tmp_path / "d.png")
    _refused_then_allowed(["viz", "dream", base["checkpoint"], "--steps", 1, "--octaves", 1, "--out", out], out,
                          tmp_path)


def test_viz_heatmap_refuses_and_names_stay_inside_out(base, tmp_path):
    bad = tmp_path / "names.h5"
    fz.prep_names_path(base["prepared"], str(bad), np.random.default_rng(0))
    out = tmp_path / "deep" / "er" / "hm"
    r = run("viz", "heatmap", base["checkpoint"], "--data", bad, "--split", "all", "--method", "channel",
            "--out", out)
    assert r.exit_code == 0, r.output
    written = [line.split(" ", 1)[1] for line in r.output.splitlines() if line.startswith("wrote ")]
    assert written and all(os.path.dirname(os.path.realpath(p)) == os.path.realpath(out) for p in written)
    assert not os.path.exists("/tmp/abs_escaped_channel.png")
    assert not [n for n in os.listdir(tmp_path / "deep") if "escaped" in n]
    target = written[0]
    os.remove(target)
    _user_file(target)
    _refused_then_allowed(["viz", "heatmap", base["checkpoint"], "--data", bad, "--split", "all", "--method",
                           "channel", "--out", out], target, tmp_path)


def test_evaluate_out_refuses_to_replace(base, tmp_path):
    target = _user_file(tmp_path / "ev" / "eval.json")
    _refused_then_allowed(["evaluate", base["checkpoint"], "--data", base["prepared"], "--split", "all", "--out",
                           tmp_path / "ev"], target, tmp_path)
    assert json.load(open(target))["n"] == 12


def test_train_into_an_existing_run_needs_resume_or_overwrite(base, tmp_path):
    out = tmp_path / "run"
    common = ["train", "--model", base["spec"], "--data", base["prepared"], "--batch-size", 4, "--no-augment",
              "--out", out]
    args = common + ["--epochs", 1]
    history = _user_file(out / "history.csv")
    _refused_then_allowed(args, history, tmp_path)
    assert read_checkpoint(out / "last.h5")["epoch"] == 1
    r = run(*args)  # the run's files exist now: a second plain run is refused too
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = run(*common, "--epochs", 2, "--resume", "--lr", 0.002)  # --resume is the permission
    assert r.exit_code == 0, r.output
    assert "learning rate changed from 0.001 (the checkpoint's) to 0.002" in r.output
    assert "epoch limit changed from 1 to 2" in r.output
    ck = read_checkpoint(out / "last.h5")
    assert ck["epoch"] == 2 and ck["history"][1]["lr"] == 0.002
    r = run("train", "--data", base["prepared"], "--batch-size", 4, "--no-augment", "--out", out, "--epochs", 3,
            "--resume")  # no --model: the run's own model (last.h5's spec), not the default 'custom'
    assert r.exit_code == 0, r.output
    assert read_checkpoint(out / "last.h5")["epoch"] == 3
    other = dict(fz.TINY, layers=[dict(fz.TINY["layers"][0], out_channels=6)] + fz.TINY["layers"][1:])
    (tmp_path / "other.json").write_text(json.dumps(other))
    r = run("train", "--model", tmp_path / "other.json", "--data", base["prepared"], "--epochs", 3, "--out", out,
            "--resume")
    assert r.exit_code == 1 and "model cannot change on resume" in r.output, r.output


def test_demo_does_not_touch_a_users_files(tmp_path):
    mine = _user_file(tmp_path / "data" / "CXR_png" / "MCUCXR_0001_0.png")
    r = run("demo", "--quick", "--out", tmp_path)
    assert r.exit_code == 1 and "--overwrite" in r.output, r.output
    assert open(mine).read() == "a user's file"


def test_temporaries_are_only_rawcnns_and_stale_ones_go(tmp_path):
    user = _user_file(tmp_path / ".tmp-last.h5-abc")           # named like the old temporaries: kept
    stale = tmp_path / ".rawcnn-tmp-999999999-0123abcd-last.h5"  # a dead pid's temporary: removed
    stale.write_text("x")
    live = tmp_path / f".rawcnn-tmp-{os.getpid()}-0123abcd-last.h5"  # a live process's: kept
    live.write_text("x")
    removed = fileio.remove_stale_temporaries(tmp_path, ("last.h5",))
    assert removed == [str(stale)] and os.path.exists(user) and os.path.exists(live)
    name = os.path.basename(fileio.temp_name(tmp_path / "best.h5"))
    assert fileio.TMP_PATTERN.match(name) and name.endswith("-best.h5")


@pytest.mark.parametrize("name,expected", [("../../x", "x"), ("/abs/path", "abs_path"), ("..", "item"),
                                           ("normal/MCUCXR_0001_0", "normal_MCUCXR_0001_0"), ("a\\..\\b", "a_b")])
def test_safe_name(name, expected):
    assert fileio.safe_name(name) == expected


def test_finite_explosion_of_the_validation_loss_is_a_divergence(tmp_path):
    import kill_resume_child as kc
    from rawcnn.engine import models
    from rawcnn.training.recipes import resolve
    from rawcnn.training.train import Run, Trainer, train
    real = Trainer.validate
    calls = []

    def exploding(self):
        loss, acc = real(self)
        calls.append(loss)
        return (1e20 if len(calls) == 3 else loss), (1.0 if len(calls) == 3 else acc)
    Trainer.validate = exploding
    try:
        r = train(models.build(kc.SPEC, seed=0, weight_std=0.2), kc.data(), resolve("paper", epochs=4, batch_size=8,
                  lr=0.02), Run(out_dir=tmp_path, seed=3, progress=False, device="reference", log=lambda m: None))
    finally:
        Trainer.validate = real
    assert r["status"] == "diverged" and "1e+20" in r["reason"] and "smaller learning rate" in r["reason"]
    assert read_checkpoint(tmp_path / "last.h5")["epoch"] == 2  # the last good epoch
    assert read_checkpoint(tmp_path / "best.h5")["epoch"] <= 2 and r["best_epoch"] <= 2


def test_the_overwrite_policy_holds_only_inside_its_command(tmp_path):
    """The policy is the command's context (rawcnn.files.fileio.command_outputs), not a process setting: it
    ends with its block, an exception included, and an inner command's policy gives way to the outer's."""
    f = tmp_path / "a.txt"
    f.write_text("a user's file")
    with pytest.raises(RuntimeError, match="the command failed"):
        with fileio.command_outputs(overwrite=False):
            with pytest.raises(fileio.OverwriteError, match="pass --overwrite"):
                fileio.check_target(f)
            raise RuntimeError("the command failed")
    fileio.check_target(f)  # a library call after the command may replace it
    with fileio.command_outputs(overwrite=False) as outer:
        with fileio.command_outputs(overwrite=True) as inner:
            with fileio.atomic_open(f) as fh:
                fh.write("the inner command's")
        assert fileio.created_here(f) is False and str(f.resolve()) in inner.created and not outer.created
        with pytest.raises(fileio.OverwriteError):
            fileio.check_target(f)  # the outer command did not write it
        with fileio.atomic_open(tmp_path / "b.txt") as fh:
            fh.write("the outer command's")
        fileio.check_target(tmp_path / "b.txt")  # its own output: it may write it again
    assert not fileio.created_here(tmp_path / "b.txt")
