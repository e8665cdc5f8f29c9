"""`rawcnn summary`: each layer's output shape, parameter count and forward FLOPs."""
from rawcnn.engine.conv_algo import describe
from rawcnn.engine.models import build


def format_summary(model, input_shape=None, num_classes=None, conv_algo=None):
    """Build MODEL (name, spec file or dict) and return its summary table as text.

    Each Conv2d's row names the algorithm it would run on the cpu backend (rawcnn/engine/conv_algo.py;
    conv_algo None: each layer's own mode, auto), for one image; `tune` shows the cached or table choice.
    """
    net = build(model, num_classes=num_classes, input_shape=input_shape, weight_std=0.0)
    rows = net.summary()
    if conv_algo is not None:
        for layer in net.layers:
            if layer.kind == "Conv2d":
                layer.set_algo(conv_algo)
    algos = describe(net, input_shape)
    rows = [(n, f"{d} [{algos[n]}]" if n in algos else d) + tuple(r) for n, d, *r in rows]
    head = f"{'layer':10s} {'type':44s} {'output shape':>16s} {'params':>14s} {'FLOPs':>16s}"
    lines = [f"model {net.spec.get('name', '?')}, input {'x'.join(map(str, net.input_shape))}", head, "-" * len(head)]
    for name, desc, shape, params, flops in rows:
        lines.append(f"{name:10s} {desc:44s} {'x'.join(map(str, shape)):>16s} {params:>14,d} {flops:>16,d}")
    lines.append("-" * len(head))
    lines.append(f"{'total':10s} {'':44s} {'':>16s} {sum(r[3] for r in rows):>14,d} "
                 f"{sum(r[4] for r in rows):>16,d}")
    lines.append("FLOPs are per image, forward only, 2 per multiply-add. [algo]: how a Conv2d computes on "
                 "the cpu backend (--conv-algo).")
    return "\n".join(lines)
