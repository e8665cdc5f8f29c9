"""Fuzz: damaged and hostile files (tests/fuzz_inputs.py) through the commands that read them, in-process.

Every run must end in one of two ways: exit status 1 with one line 'Error: ...' that is not the CLI's
last-resort 'internal error' (so the file's damage was recognised, not merely caught), or exit 0 with
no 'nan' / 'inf' in what it printed. No exception may escape the command line, and nothing may be
written outside the output folder. The memory budget is set to 32 MB so that declared sizes are
judged against it (RAWCNN_MAX_BYTES).
"""
import json
import os
import re
import time
import traceback

import numpy as np
import pytest
from click.testing import CliRunner

import fuzz_inputs as fz
from cli import main

N_CASES = int(os.environ.get("RAWCNN_FUZZ_N", 300))  # RAWCNN_FUZZ_N / _SEED: a longer or another fuzz by hand
SEED = int(os.environ.get("RAWCNN_FUZZ_SEED", 12))


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzbase")
    return fz.make_bases(d, np.random.default_rng(0))


def _commands(family, mutation, path, base, out, rng):
    """The command lines that read `path` (one or two per case, chosen by rng)."""
    ck, data, img = base["checkpoint"], base["prepared"], base["png"]
    if family == "checkpoint":
        others = [["evaluate", path, "--data", data, "--split", "all"],
                  ["viz", "filters", path, "--out", os.path.join(out, "f.png")],
                  ["viz", "heatmap", path, "--data", data, "--index", "0", "--method", "channel", "--out", out],
                  ["viz", "dream", path, "--steps", "1", "--octaves", "1", "--out", os.path.join(out, "d.png")],
                  ["import-weights", path, "--arch", base["spec"], "--format", "rawcnn",
                   "--out", os.path.join(out, "imp.h5")],
                  ["report", out, "--checkpoint", path, "--data", data]]
        return [["predict", "--checkpoint", path, img], others[int(rng.integers(len(others)))]]
    if family == "prepared":
        cmds = [["evaluate", ck, "--data", path, "--split", "all"],
                ["viz", "heatmap", ck, "--data", path, "--method", "channel", "--out", out],
                ["viz", "activations", ck, "--data", path, "--split", "all", "--top", "2", "--out", out],
                ["viz", "score", ck, "--data", path, "--split", "all", "--method", "channel",
                 "--out", os.path.join(out, "score")],
                ["train", "--model", base["spec"], "--data", path, "--epochs", "1", "--batch-size", "4",
                 "--no-augment", "--out", os.path.join(out, "run")]]
        if mutation == "names_path":
            return cmds[1:3]
        return [cmds[int(rng.integers(len(cmds)))]]
    if family == "keras":
        return [["import-weights", path, "--arch", base["arch"], "--out", os.path.join(out, "imp.h5")]]
    if family == "image":
        cls = os.path.join(out, "src")
        for c in ("a", "b"):
            os.makedirs(os.path.join(cls, c))
            for i in range(2):
                os.link(base["png"], os.path.join(cls, c, f"ok{i}.png"))
        os.link(path, os.path.join(cls, "a", "bad" + os.path.splitext(path)[1]))
        prep = ["data", "prepare", cls, "--out", os.path.join(out, "p.h5"), "--input-size", "32", "--base-size", "0"]
        return [["predict", "--checkpoint", ck, path], prep + (["--skip-bad"] if rng.random() < 0.5 else [])]
    cmds = [["summary", path]]
    if rng.random() < 0.25:
        cmds.append(["train", "--model", path, "--data", data, "--epochs", "1", "--batch-size", "4", "--no-augment",
                     "--out", os.path.join(out, "run")])
    return cmds


QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'|\{[^}]*\}")
NONFINITE = re.compile(r"(?<![a-z])(nan|inf)(?![a-z])", re.IGNORECASE)


def _judge(args, r):
    """None when the run ended properly, else why not (with the traceback of an escaped exception)."""
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return "exception escaped: " + "".join(traceback.format_exception(*r.exc_info))[-1500:]
    out = r.output
    if "Traceback" in out:
        return "traceback printed:\n" + out[-1500:]
    if r.exit_code != 0:
        errors = [line for line in out.splitlines() if line.startswith("Error:")]
        if len(errors) != 1 or len(errors[0]) < 12:
            return f"exit {r.exit_code} without one 'Error:' line:\n{out[-800:]}"
        if "internal error" in errors[0]:
            return f"not recognised, caught only by the last resort: {errors[0]}"
        return None
    lines = [line for line in out.splitlines()
             if not line.startswith(("wrote ", "device:")) and not line.strip().startswith("skipped ")]
    # a name the file gave (a layer called '{"a": NaN}') may be echoed; only computed values count
    lines = [QUOTED.sub("", line) for line in lines]
    if any(NONFINITE.search(line) for line in lines if not line.strip().startswith("/")):
        return f"exit 0 with non-finite output:\n{out[-800:]}"
    return None


def test_fuzz_every_family_through_its_commands(bases, tmp_path, monkeypatch):
    monkeypatch.setenv("RAWCNN_MAX_BYTES", str(32 << 20))
    rng = np.random.default_rng(SEED)
    cases = fz.generate(bases, rng, N_CASES, str(tmp_path))
    runner, failures, seen, runs, t0 = CliRunner(), [], {}, 0, time.perf_counter()
    outside = os.path.dirname(str(tmp_path))
    before = set(os.listdir(outside)) | set(os.listdir("/tmp"))
    for i, (family, mutation, path) in enumerate(cases):
        seen.setdefault(family, set()).add(mutation)
        out = os.path.join(str(tmp_path), f"out{i:04d}")
        os.makedirs(out)
        for args in _commands(family, mutation, path, bases, out, rng):
            args = [str(a) for a in args]
            r = runner.invoke(main, args)
            runs += 1
            why = _judge(args, r)
            if why:
                failures.append(f"case {i} {family}/{mutation}: rawcnn {' '.join(args)}\n  {why}")
    after = set(os.listdir(outside)) | set(os.listdir("/tmp"))
    escaped = sorted(n for n in after - before if "escaped" in n)
    assert not escaped, f"files written outside --out: {escaped}"
    print(f"fuzz: {len(cases)} files, {runs} command runs, {time.perf_counter() - t0:.1f} s; "
          + ", ".join(f"{f}: {len(m)} mutations" for f, m in seen.items()))
    assert set(seen) == set(fz.FAMILIES)
    assert not failures, f"{len(failures)} of {runs} runs failed:\n" + "\n".join(failures[:15])


def test_targeted_messages(bases, tmp_path, monkeypatch):
    """A few families whose message must say the specific thing the issue asks for."""
    monkeypatch.setenv("RAWCNN_MAX_BYTES", str(32 << 20))
    rng = np.random.default_rng(1)
    runner = CliRunner()

    def err(*args):
        r = runner.invoke(main, [str(a) for a in args])
        assert r.exit_code == 1 and (r.exception is None or isinstance(r.exception, SystemExit)), r.output
        return r.output
    trunc = tmp_path / "t.keras"
    fz.keras_zip_truncate(bases["keras_zip"], str(trunc), rng)
    assert "damaged zip" in err("import-weights", trunc, "--arch", bases["arch"], "--out", tmp_path / "o.h5")
    nan = tmp_path / "nan.weights.h5"
    fz.ck_nan_weights(bases["checkpoint"], str(nan), rng)
    out = err("predict", "--checkpoint", nan, bases["png"])
    assert "conv1/w (3 NaN, 0 Inf)" in out and "nan" not in out.split("NaN")[-1]
    k3 = tmp_path / "k3nan.weights.h5"
    import shutil

    import h5py
    shutil.copyfile(bases["keras3"], k3)
    with h5py.File(k3, "a") as f:
        f["layers/conv2d/vars/0"][0, 0, 0, 0] = np.inf
    assert "conv1_1/w (0 NaN, 1 Inf)" in err("import-weights", k3, "--arch", bases["arch"], "--out", tmp_path / "o.h5")
    assert not os.path.exists(tmp_path / "o.h5")
    huge = tmp_path / "huge.png"
    fz.png_huge_header(bases["png"], str(huge), np.random.default_rng(0))
    assert "header declares" in err("predict", "--checkpoint", bases["checkpoint"], huge)
    deep = tmp_path / "deep.json"
    fz.spec_case(str(deep), rng, "deep")
    assert "nested more than" in err("summary", deep)
    wide = tmp_path / "wide.json"
    fz.spec_case(str(wide), rng, "wide_conv")
    assert "memory budget" in err("summary", wide) or "beyond any real model" in err("summary", wide)
    bad = tmp_path / "settings.h5"
    shutil.copyfile(bases["prepared"], bad)
    with h5py.File(bad, "a") as f:
        s = json.loads(f.attrs["settings"])
        s["clahe_clip_limit"] = None
        f.attrs["settings"] = json.dumps(s)
    assert "setting 'clahe_clip_limit'" in err("evaluate", bases["checkpoint"], "--data", bad)
