"""cli.py stays thin: each command parses its options, makes one call into rawcnn.app and prints.

Read from the source with ast (nothing is run), so a command that starts doing work itself, or
reaches past rawcnn.app into the library, fails here with the command's name.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREE = ast.parse((ROOT / "cli.py").read_text(), filename="cli.py")
STATEMENT_BUDGET = 16  # statements in a command's body, nested ones included (train, the largest, has 15)
# modules a command may import: the application layer, the backend list (info) and weights_import (import-weights
# reads files below rawcnn and is its own top-level package in the layers of tests/test_imports.py)
ALLOWED = ("rawcnn.app", "kernels", "weights_import")
# calls into rawcnn.app that are not the command's work: printing (format_*) and relaunch (--procs starts
# mpiexec before any work)
NOT_WORK = ("format_", "relaunch")


def _is_command(fn):
    """True for a function decorated @<group>.command(...) or @<group>.group(...)."""
    for d in fn.decorator_list:
        call = d.func if isinstance(d, ast.Call) else d
        if isinstance(call, ast.Attribute) and call.attr in ("command", "group"):
            return True
    return False


COMMANDS = [n for n in TREE.body if isinstance(n, ast.FunctionDef) and _is_command(n)]


def _imports(fn):
    """{local name: module} of the imports in fn's body."""
    out = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Import):
            out.update({(a.asname or a.name): a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom):
            out.update({(a.asname or a.name): f"{node.module}.{a.name}" for a in node.names})
    return out


def _module_ok(module):
    return any(module == a or module.startswith(a + ".") for a in ALLOWED)


def test_every_command_is_found():
    names = {f.name for f in COMMANDS}
    assert {"train", "evaluate", "predict", "search", "cv", "viz_dream", "viz_score", "report", "data_prepare",
            "import_weights", "demo", "summary", "gradcheck", "trace", "info"} <= names


@pytest.mark.parametrize("fn", COMMANDS, ids=lambda f: f.name)
def test_command_imports_only_the_app_layer(fn):
    bad = sorted(m for m in _imports(fn).values() if not _module_ok(m))
    assert not bad, f"cli.py {fn.name} imports {bad}; put that work in rawcnn/app"


@pytest.mark.parametrize("fn", COMMANDS, ids=lambda f: f.name)
def test_command_fits_the_statement_budget(fn):
    n = sum(isinstance(node, ast.stmt) for node in ast.walk(fn)) - 1  # the def itself not counted
    assert n <= STATEMENT_BUDGET, f"cli.py {fn.name} has {n} statements (budget {STATEMENT_BUDGET})"


@pytest.mark.parametrize("fn", COMMANDS, ids=lambda f: f.name)
def test_command_makes_at_most_one_working_call_into_the_app(fn):
    app = {name for name, module in _imports(fn).items() if module.startswith("rawcnn.app")}
    calls = [node.func.attr for node in ast.walk(fn)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.value.id in app]
    work = [c for c in calls if not c.startswith(NOT_WORK)]
    assert len(work) <= 1, f"cli.py {fn.name} calls {work} in rawcnn.app; give it one function that does the task"


def test_command_bodies_have_no_loops_but_printing_ones():
    """A loop in a command is allowed only when all it does is print (click.echo)."""
    for fn in COMMANDS:
        for node in ast.walk(fn):
            if isinstance(node, (ast.For, ast.While)):
                body = node.body
                assert isinstance(node, ast.For) and all(
                    isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                    and ast.unparse(s.value.func) == "click.echo" for s in body), \
                    f"cli.py {fn.name} line {node.lineno}: a loop that does more than print"


def test_the_checker_catches_a_fat_command():
    """The rules above fail on a command that does its own work (the checks can fail)."""
    fat = ast.parse('''
@main.command()
def fat(x):
    from rawcnn.data import load_dataset
    from rawcnn.app import search
    ds = load_dataset(x)
    for s in ds.splits:
        ds.check(s)
    search.search_command(ds)
    search.other(ds)
''').body[0]
    assert _is_command(fat)
    assert [m for m in _imports(fat).values() if not _module_ok(m)] == ["rawcnn.data.load_dataset"]
    with pytest.raises(AssertionError):
        test_command_makes_at_most_one_working_call_into_the_app(fat)
    with pytest.raises(AssertionError):
        test_command_imports_only_the_app_layer(fat)


def test_shared_options_are_declared_once():
    """--device, --seed and --out are written once (the shared decorators), --overwrite once besides
    `data synth`'s own (it replaces a synthetic set and has its own help)."""
    text = (ROOT / "cli.py").read_text()
    for opt, n in (('"--device"', 1), ('"--seed"', 1), ('"--out"', 1), ('"--overwrite"', 2)):
        assert text.count(opt) == n, f"{opt} appears {text.count(opt)} times in cli.py"


def test_dream_and_heatmap_agree_on_the_logits_layer():
    """One rule (the last non-Softmax layer) whether read from a spec or from a built net."""
    from rawcnn.engine.models import BUILTIN, build
    from rawcnn.viz.heatmap import logit_layer
    assert logit_layer(BUILTIN["custom"]()) == logit_layer(build("custom", num_classes=2, input_shape=(3, 128, 128)))
    spec = {"layers": [{"name": "c", "type": "Conv2d"}, {"name": "fc", "type": "Linear"},
                       {"name": "d", "type": "Dropout"}, {"name": "p", "type": "Softmax"}]}
    assert logit_layer(spec) == "d"
    with pytest.raises(ValueError, match="no layer besides Softmax"):
        logit_layer({"layers": [{"name": "p", "type": "Softmax"}]})
