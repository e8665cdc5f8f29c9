"""The import graph, read from the source with ast (no module is imported): the layers point one way.

    cli.py  ->  weights_import/  ->  rawcnn/  ->  kernels/

Nothing in rawcnn/ or kernels/ imports weights_import (it only reads files); no package imports
cli; the top-level packages form no cycle; the engine imports no deep-learning framework or scipy.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("cli", "weights_import", "rawcnn", "kernels")
FORBIDDEN_THIRD_PARTY = ("torch", "tensorflow", "jax", "keras", "scipy", "sklearn")


def sources():
    """(top-level package, path) of every engine source file."""
    out = [("cli", ROOT / "cli.py")]
    for pkg in TOP[1:]:
        out += [(pkg, p) for p in sorted((ROOT / pkg).rglob("*.py"))]
    return out


def imported(path, pkg):
    """Top-level names of every module `path` imports, anywhere in the file (function bodies too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(pkg if node.level else (node.module or "").split(".")[0])
    return names


def graph():
    """{package: {package it imports: [files that do]}} over the four top-level parts."""
    g = {p: {} for p in TOP}
    for pkg, path in sources():
        for name in imported(path, pkg):
            if name in TOP and name != pkg:
                g[pkg].setdefault(name, []).append(str(path.relative_to(ROOT)))
    return g


def test_the_reader_finds_relative_and_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from . import a\nimport os.path\ndef f():\n    from weights_import.x import y\n")
    assert imported(f, "rawcnn") == {"rawcnn", "os", "weights_import"}


@pytest.mark.parametrize("low,high", [("rawcnn", "weights_import"), ("kernels", "weights_import"),
                                      ("kernels", "rawcnn"), ("rawcnn", "cli"), ("kernels", "cli"),
                                      ("weights_import", "cli")])
def test_no_arrow_up(low, high):
    files = graph()[low].get(high, [])
    assert not files, f"{low} imports {high} (up the layers) in: {', '.join(files)}"


def test_no_cycle_between_top_level_packages():
    g = graph()
    state = {}

    def visit(p, path):
        state[p] = "open"
        for q in g[p]:
            if state.get(q) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(path + [q])} ({g[p][q][0]})")
            if q not in state:
                visit(q, path + [q])
        state[p] = "done"

    for p in TOP:
        if p not in state:
            visit(p, [p])


def test_engine_imports_no_framework_and_no_scipy():
    bad = [f"{path.relative_to(ROOT)} imports {name}" for pkg, path in sources()
           for name in imported(path, pkg) if name in FORBIDDEN_THIRD_PARTY]
    assert not bad, "; ".join(bad)


def rawcnn_modules_imported(path):
    """The rawcnn modules `path` imports by absolute name ("rawcnn.app.train", "rawcnn.data", ...)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "rawcnn"}
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "rawcnn":
            out |= {f"{node.module}.{a.name}" if node.module == "rawcnn" else node.module for a in node.names}
    return out


def test_cli_reaches_rawcnn_only_through_the_app_layer():
    mods = rawcnn_modules_imported(ROOT / "cli.py")
    assert mods, "cli.py imports nothing from rawcnn (the reader is broken)"
    bad = sorted(m for m in mods if m != "rawcnn.app" and not m.startswith("rawcnn.app."))
    assert not bad, f"cli.py imports {bad}; call them through rawcnn.app"


def test_the_app_reader_sees_library_imports(tmp_path):
    f = tmp_path / "c.py"
    f.write_text("from rawcnn import app, data\ndef f():\n    from rawcnn.app import viz\n    import rawcnn.train\n")
    assert rawcnn_modules_imported(f) == {"rawcnn.app", "rawcnn.data", "rawcnn.train"}


def test_nothing_below_the_app_layer_imports_it():
    """rawcnn/app sits on top of the library: only cli.py and rawcnn/app itself (and the demo, which runs
    the viz tasks) import it."""
    allowed = {ROOT / "rawcnn" / "demo.py"}
    bad = []
    for path in sorted((ROOT / "rawcnn").rglob("*.py")):
        if "app" in path.relative_to(ROOT / "rawcnn").parts[:1] or path in allowed:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                names = [a.name for a in node.names]
                if "app" in mod.lstrip(".").split(".")[:2] or (mod.strip(".") in ("", "rawcnn") and "app" in names):
                    bad.append(f"{path.relative_to(ROOT)}: {mod}")
    assert not bad, "; ".join(bad)
