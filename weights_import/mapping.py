"""Which file layer fills which rawcnn layer, with every shape checked before a byte is read.

Convolutions are matched in order: the file's k-th convolution layer fills the architecture's k-th
Conv2d, except that a grouped Conv2d (AlexNet conv2/4/5) may take G consecutive split layers
whose kernels each hold F/G filters. Dense layers are matched in order when the file holds as many
as the architecture (the last one's width gives the number of classes); a file with none (Keras
include_top=False) leaves the Linear layers at their initialisation; a file with another number
holds a different head, which is listed as unused. Any kernel or bias whose shape does not fit is
an error naming the file, both layers and both shapes.
"""
from dataclasses import dataclass

import numpy as np

from rawcnn.engine.layers.base import pair

from . import convert
from .errors import WeightsImportError
from .h5util import read_array


@dataclass
class ConvTarget:
    name: str
    shape: tuple      # (F, C/G, KH, KW)
    groups: int


@dataclass
class ConvPlan:
    target: ConvTarget
    sources: list     # [SourceLayer], G of them when split
    layouts: set      # the layouts every source kernel's shape allows
    split: bool


def conv_targets(spec):
    """The Conv2d layers of a spec with their weight shapes (channels chained from spec['input'])."""
    C, out = spec["input"][0], []
    for e in spec["layers"]:
        if e["type"] == "Conv2d":
            g, (KH, KW) = int(e.get("groups", 1)), pair(e["kernel_size"])
            out.append(ConvTarget(e["name"], (e["out_channels"], C // g, KH, KW), g))
            C = e["out_channels"]
    return out


def guess_arch(convs):
    """A hint for wrong-architecture errors, from the file's conv count and first kernel."""
    n = len(convs)
    first = tuple(convs[0].kernel[1].shape) if convs else ()
    if 11 in first[:2] or 11 in first[2:]:
        return "it looks like an AlexNet file"
    return {13: "it looks like a VGG16 file", 16: "it looks like a VGG19 file"}.get(n, "")


def _fits(t):
    F, C, KH, KW = t
    return f"{t} as (F, C/G, KH, KW) or {(KH, KW, C, F)} as (KH, KW, C/G, F)"


def plan_convs(convs, targets, path, arch):
    """Match the file's conv layers to the architecture's Conv2d layers -> [ConvPlan]."""
    plans, i = [], 0
    hint = guess_arch(convs)
    hint = f" ({hint})" if hint else ""
    for t in targets:
        if i >= len(convs):
            raise WeightsImportError(f"{path}: the file has {len(convs)} convolution layers but {arch} has "
                                     f"{len(targets)} (nothing for {t.name!r}){hint}")
        s = convs[i]
        shape = tuple(s.kernel[1].shape)
        lay = convert.kernel_layouts(shape, t.shape)
        if lay:
            plans.append(ConvPlan(t, [s], lay, False))
            i += 1
        elif t.groups > 1 and convert.kernel_layouts(shape, (t.shape[0] // t.groups,) + t.shape[1:]):
            part = (t.shape[0] // t.groups,) + t.shape[1:]
            group = convs[i:i + t.groups]
            lays = [convert.kernel_layouts(tuple(p.kernel[1].shape), part) for p in group]
            if len(group) < t.groups or not all(lays):
                bad = next((p for p, l in zip(group, lays, strict=True) if not l), None)
                got = f"{bad.name!r} has kernel {tuple(bad.kernel[1].shape)}" if bad else "the file ends"
                raise WeightsImportError(f"{path}: {arch} layer {t.name!r} has {t.groups} groups and "
                                         f"{s.name!r} holds one group {shape}, but {got} where the next group "
                                         f"should fit {_fits(part)}")
            plans.append(ConvPlan(t, group, set.intersection(*lays), True))
            i += t.groups
        else:
            extra = (f", or {t.groups} split layers of {(t.shape[0] // t.groups,) + t.shape[1:]}"
                     if t.groups > 1 else "")
            raise WeightsImportError(f"{path}: layer {s.name!r} -> {arch} layer {t.name!r}: the file's kernel has "
                                     f"shape {shape}, {arch} needs {_fits(t.shape)}{extra}{hint}")
        for p in plans[-1].sources:
            F = plans[-1].target.shape[0] // len(plans[-1].sources)
            if p.bias is not None and tuple(p.bias[1].shape) != (F,):
                raise WeightsImportError(f"{path}: layer {p.name!r} -> {arch} layer {t.name!r}: bias shape "
                                         f"{tuple(p.bias[1].shape)}, needs ({F},)")
    if i < len(convs):
        rest = ", ".join(c.name for c in convs[i:i + 4])
        raise WeightsImportError(f"{path}: the file has {len(convs)} convolution layers but {arch} has only "
                                 f"{len(targets)} (unmatched: {rest}){hint}")
    return plans


def resolve_layout(plans, src, path):
    """One kernel layout for the whole file -> (layout, reason)."""
    sure = {next(iter(p.layouts)) for p in plans if len(p.layouts) == 1}
    if len(sure) > 1:
        a = next(p for p in plans if p.layouts == {"oihw"})
        b = next(p for p in plans if p.layouts == {"hwio"})
        raise WeightsImportError(f"{path}: kernels in two layouts: {a.sources[0].name!r} "
                                 f"{tuple(a.sources[0].kernel[1].shape)} is (F, C, KH, KW) but "
                                 f"{b.sources[0].name!r} {tuple(b.sources[0].kernel[1].shape)} is (KH, KW, C, F)")
    if sure:
        lay = sure.pop()
        return lay, f"{convert.LAYOUT_WORDS[lay]}, read from the kernel shapes"
    if not plans:
        return None, "no convolution layers"
    if src.keras_version is not None or src.format == "keras3-weights-h5":
        return "hwio", (f"{convert.LAYOUT_WORDS['hwio']}: every kernel shape fits both layouts; Keras >= 2 "
                        f"stores this one")
    return "hwio", (f"{convert.LAYOUT_WORDS['hwio']}: ASSUMED, every kernel shape fits both layouts and a Keras 1 "
                    f"file does not record its dim ordering")


def convert_conv(plan, layout, flip, path):
    """Read and convert one planned conv -> (w (F, C/G, KH, KW), b (F,), [conversions], [warnings])."""
    ws, bs, warn = [], [], []
    F = plan.target.shape[0] // len(plan.sources)
    for s in plan.sources:
        k = read_array(s.kernel[1], f"{path}: layer {s.name!r}")
        w = convert.hwio_to_oihw(k) if layout == "hwio" else k
        ws.append(convert.rot180(w) if flip else w)
        if s.bias is None:
            bs.append(None)
            warn.append(f"{plan.target.name}: the file has no bias for {s.name!r}; bias set to 0")
        else:
            bs.append(read_array(s.bias[1], f"{path}: layer {s.name!r}"))
    conv = []
    if layout == "hwio":
        conv.append("kernel (KH, KW, C, F) -> (F, C, KH, KW): transpose (3, 2, 0, 1)")
    if flip:
        conv.append("kernel rotated 180 degrees (Theano convolution kernel -> cross-correlation kernel)")
    if plan.split:
        conv.append(f"{len(plan.sources)} split group layers concatenated on the filter axis, group 0 first")
    w = convert.merge_groups(ws) if plan.split else ws[0]
    b = convert.merge_groups([x if x is not None else np.zeros(F, np.float32) for x in bs])
    return w, b, conv, warn
