"""bench/gpu_check.py: the one-command GPU check, here as a dry run (its full --simulate run takes
about a minute and is run by hand; see bench/RESULTS.md). The check runs in a subprocess because
--simulate sets NUMBA_ENABLE_CUDASIM before Numba is imported."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_phases_that_do_not_fit_the_cap_are_skipped_and_recorded(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "bench/gpu_check.py", str(tmp_path), "--simulate", "--budget-s", "10"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["simulate"] is True and result["budget_s"] == 10
    assert set(result["phases"]) == {"pytest", "train", "vgg", "bandwidth", "nccl"}
    for name, phase in result["phases"].items():
        assert "s left, the phase needs about" in phase["skipped"], name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert "wrote" in r.stdout
