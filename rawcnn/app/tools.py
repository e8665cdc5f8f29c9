"""`rawcnn summary`, `gradcheck`, `trace` and `demo`: looking at a model, checking the engine, the main job
on built-in data."""
from rawcnn.app.demo import run_demo
from rawcnn.app.trace import format_trace, trace_command
from rawcnn.engine.gradcheck import THRESHOLD, format_rows, run_gradcheck
from rawcnn.engine.summary import format_summary


def summary_text(model, input_shape=None, num_classes=None, conv_algo="auto"):
    """`rawcnn summary`: the table of format_summary; input_shape the text CxHxW (e.g. 3x227x227) or None."""
    shape = tuple(int(v) for v in input_shape.lower().split("x")) if input_shape else None
    if shape is not None and len(shape) != 3:
        raise ValueError(f"--input must be CxHxW, got {input_shape!r}")
    return format_summary(model, input_shape=shape, num_classes=num_classes, conv_algo=conv_algo)


def gradcheck(layer="all", backend="cpu", seed=0):
    """`rawcnn gradcheck` on `backend` (a name or a Backend): (the table's text, rows, rows over the
    threshold, the threshold)."""
    rows = run_gradcheck(layer=layer, backend=backend, seed=seed, progress=True)
    return format_rows(rows), rows, [r for r in rows if not r.ok], THRESHOLD


def trace(model, *, image=None, random=False, class_index=None, seed=0, device="cpu"):
    """`rawcnn trace`: the per-layer table's text (rawcnn.app.trace)."""
    return format_trace(trace_command(model, image=image, random=random, class_index=class_index, seed=seed,
                                      device=device))


def demo(out, *, seed=0, device="cpu", quick=False, log=print):
    """`rawcnn demo`: rawcnn.app.demo.run_demo."""
    return run_demo(out, seed=seed, device=device, quick=quick, log=log)
