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
    f.write_text("from rawcnn import app, data\ndef f():\n    from rawcnn.app import viz\n"
                 "    import rawcnn.training.train\n")
    assert rawcnn_modules_imported(f) == {"rawcnn.app", "rawcnn.data", "rawcnn.training.train"}


# The packages inside rawcnn, top to bottom, and what each may import (kernels/ is below them all).
LAYERS = {
    "app": {"training", "viz", "engine", "data", "files"},
    "training": {"engine", "data", "files"},
    "viz": {"engine", "data", "files"},
    "engine": {"data", "files"},
    "data": {"files"},
    "files": set(),
}


def module_of(path):
    """'rawcnn.engine.net' for rawcnn/engine/net.py, 'rawcnn.data' for rawcnn/data/__init__.py."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rawcnn_modules():
    """{module name: path} of every module under rawcnn/."""
    return {module_of(p): p for p in sorted((ROOT / "rawcnn").rglob("*.py"))}


def module_imports(path, known):
    """{module of `known` imported by `path`: line}, anywhere in the file (function bodies too).

    `from rawcnn.engine import models` names the module rawcnn.engine.models when that is a module,
    else the package rawcnn.engine; relative imports are resolved against the file's own module."""
    me = module_of(path)
    here = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known:
                    out.setdefault(a.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here.split(".")[:len(here.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:
                target = f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                if target in known:
                    out.setdefault(target, node.lineno)
    return out


def module_graph():
    known = rawcnn_modules()
    return {m: module_imports(p, known) for m, p in known.items()}


def find_cycle(graph):
    """One import cycle of `graph` ({module: {module: line}}) as a list of modules, or None."""
    state = {}

    def visit(m, path):
        state[m] = "open"
        for q in graph[m]:
            if state.get(q) == "open":
                return path[path.index(q):] + [q]
            if q not in state:
                found = visit(q, path + [q])
                if found:
                    return found
        state[m] = "done"
        return None

    for m in graph:
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path, monkeypatch):
    pkg = tmp_path / "rawcnn" / "x"
    pkg.mkdir(parents=True)
    (tmp_path / "rawcnn" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from rawcnn.x import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "c.py").write_text("from rawcnn.x.a import h\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    graph = module_graph()
    assert graph["rawcnn.x.c"] == {"rawcnn.x.a": 1}
    assert find_cycle(graph) in (["rawcnn.x.a", "rawcnn.x.b", "rawcnn.x.a"], ["rawcnn.x.b", "rawcnn.x.a", "rawcnn.x.b"])
    (pkg / "b.py").write_text("")
    assert find_cycle(module_graph()) is None


def test_no_import_cycle_inside_rawcnn():
    graph = module_graph()
    assert len(graph) > 60, "the module reader found too few modules"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_rawcnn_packages_import_only_downwards():
    """app -> training / viz -> engine -> data -> files (-> kernels, outside rawcnn)."""
    known = rawcnn_modules()
    assert set(LAYERS) == {m.split(".")[1] for m in known if m.count(".") >= 1}, "a package is missing from LAYERS"
    bad = []
    for m, path in known.items():
        if m == "rawcnn":
            continue
        pkg = m.split(".")[1]
        for target, line in module_imports(path, known).items():
            if target == "rawcnn":
                continue
            other = target.split(".")[1]
            if other != pkg and other not in LAYERS[pkg]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({pkg}) imports {target} ({other})")
    assert not bad, "imports against the arrows:\n" + "\n".join(bad)


# Modules that may be imported inside a function: optional extras and heavy, rarely needed libraries.
LAZY_OK = ("cupy", "cupyx", "mpi4py", "torch", "numba.cuda", "matplotlib", "pydicom")


def function_level_imports(path):
    """[(line, module, source line)] of every import inside a function of `path`."""
    src = path.read_text()
    lines = src.splitlines()
    out = []

    def visit(node, inside):
        for ch in ast.iter_child_nodes(node):
            if inside and isinstance(ch, ast.ImportFrom):  # `from numba import cuda` is numba.cuda
                mod = "." * ch.level + (ch.module or "")
                out.append((ch.lineno, f"{mod}.{ch.names[0].name}" if ch.module else mod, lines[ch.lineno - 1]))
            elif inside and isinstance(ch, ast.Import):
                out.append((ch.lineno, ch.names[0].name, lines[ch.lineno - 1]))
            visit(ch, inside or isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(src, filename=str(path)), False)
    return out


def test_the_function_level_reader_sees_nested_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\ndef f():\n    if 1:\n        from rawcnn.engine import net\n"
                 "    import cupy  # optional: the cuda extra\n")
    assert [(n, m) for n, m, _ in function_level_imports(f)] == [(4, "rawcnn.engine.net"), (5, "cupy")]


def test_imports_inside_functions_are_only_optional_or_heavy_modules_and_say_so():
    """docs/design.md, "Layout": an import inside a function is for an optional or a heavy module, and its line
    says which ("# optional: ..." or "# heavy: ...")."""
    bad = []
    for _, path in sources():
        for line, mod, text in function_level_imports(path):
            known = any(mod == m or mod.startswith(m + ".") for m in LAZY_OK)
            said = "# optional" in text or "# heavy" in text
            if not said or not (known or path.name == "cli.py" or "# heavy" in text):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {text.strip()}")
    assert not bad, f"{len(bad)} imports inside functions:\n" + "\n".join(bad)
