"""The command line through click's test runner."""
import json

from click.testing import CliRunner

from cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_on_every_command():
    r = run("--help")
    assert r.exit_code == 0
    for name in main.commands:
        sub = run(name, "--help")
        assert sub.exit_code == 0 and "Usage:" in sub.output, name


def test_summary_totals():
    r = run("summary", "alexnet")
    assert r.exit_code == 0
    assert "60,965,224" in r.output and "Conv2d(96->256, k=5, s=1, p=2, g=2)" in r.output
    r = run("summary", "vgg16", "--num-classes", "1000")
    assert "138,357,544" in r.output
    r = run("summary", "custom", "--input", "3x128x128")
    assert r.exit_code == 0 and "256x3x3" in r.output


def test_summary_of_a_spec_file_and_errors(tmp_path):
    spec = {"input": [1, 8, 8], "layers": [{"type": "Conv2d", "name": "c", "out_channels": 2, "kernel_size": 3}]}
    p = tmp_path / "m.json"
    p.write_text(json.dumps(spec))
    r = run("summary", str(p))
    assert r.exit_code == 0 and "2x6x6" in r.output
    r = run("summary", "nosuchmodel")
    assert r.exit_code != 0 and "unknown model 'nosuchmodel'" in r.output
    r = run("summary", "custom", "--input", "3x20x20")
    assert r.exit_code != 0 and "cannot take input" in r.output


def test_gradcheck_one_layer_passes_and_prints_a_table():
    r = run("gradcheck", "--layer", "LRN")
    assert r.exit_code == 0, r.output
    assert "size 7, k 0.5" in r.output and "PASS" in r.output and "FAIL" not in r.output


def test_gradcheck_unknown_layer_fails_cleanly():
    r = run("gradcheck", "--layer", "Conv3d")
    assert r.exit_code != 0 and "unknown layer 'Conv3d'" in r.output


def test_cuda_without_gpu_is_one_clear_line():
    r = run("gradcheck", "--device", "cuda", "--layer", "ReLU")
    assert r.exit_code != 0
    assert "backend 'cuda' is unavailable" in r.output and "Traceback" not in r.output


def test_info_lists_backends():
    r = run("info")
    assert r.exit_code == 0 and "cpu" in r.output and "cuda" in r.output
