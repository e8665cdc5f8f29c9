"""Every lesson in docs/lessons/ runs top to bottom (nbclient, a kernel of this interpreter).

The lessons' own cells assert what they teach (hand values, finite differences, the gradcheck
table), so a lesson that no longer matches the code fails here. Skipped when nbclient, nbformat
or ipykernel are missing (they are in the test extra).
"""
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "docs" / "lessons").glob("*.ipynb"))


def test_the_lessons_are_there():
    names = [p.name for p in LESSONS]
    for stem in ("01_convolution_by_hand", "02_lrn_backward", "03_im2col_vs_winograd", "04_what_the_network_sees"):
        assert f"{stem}.ipynb" in names


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_top_to_bottom(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    # a kernel spec for this very interpreter, with this checkout first on its path
    spec_dir = tmp_path / "kernels" / "rawcnn-lessons"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rawcnn lessons", "language": "python"}))
    path_now = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT)] + path_now))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    km = KernelManager(kernel_name="rawcnn-lessons",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on the first failing cell
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
