"""import_weights: a weight file + an architecture -> a rawcnn Net and a report of what was done.

    net, report = import_weights("vgg16_weights_tf_dim_ordering_tf_kernels.h5", "vgg16")
    print(report.text())
    save_imported("vgg16.h5", net, report)      # a rawcnn checkpoint with its preprocessing contract

Steps: open the file (a clear error if it is not HDF5 or is damaged), detect its format from its
structure, read its layers (names from its attributes), match them to the architecture with every
shape checked (mapping.py), decide the kernel layout, the kernel flip and the fc6 row order
(convert.py), rebuild the net when the file's network differs (heuritech AlexNet, alexnet.py),
convert and load every tensor, and attach the preprocessing contract the weights were trained with.
"""
import os
from dataclasses import replace

import numpy as np

from rawcnn.data.preprocessing import Preprocessing, preset
from rawcnn.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rawcnn.engine.models import build, load_spec
from rawcnn.files.validate import InputError, check_finite_params

from . import alexnet, convert, mapping
from .detect import FORMATS, check_forced, detect_format
from .errors import WeightsImportError
from .h5util import open_weights, read_array
from .keras3 import read_keras3
from .keras_legacy import read_legacy
from .report import Mapped, Report


def import_weights(path, arch, fmt="auto", *, flip=None, fc_order=None, input_shape=None):
    """Read weight file `path` into architecture `arch`.

    arch:        'vgg16', 'vgg19', 'alexnet', a spec file path or a spec dict (rawcnn.engine.models.build)
    fmt:         'auto' (read the file's structure) or a key of FORMATS
    flip:        None (decide from the file) or True/False to force the 180-degree kernel rotation
    fc_order:    None (decide from the file) or 'hwc' / 'chw' to force fc6's row order
    input_shape: (C, H, W) replacing the architecture's input size
    Returns (net, report): net a rawcnn Net on the cpu backend, report a Report.
    Raises WeightsImportError (a ValueError) naming the file, and the layer and shapes where it applies.
    """
    path = os.fspath(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise WeightsImportError(f"{path}: unknown format {fmt!r}; choose auto or one of {', '.join(FORMATS)}")
    spec = _arch_spec(arch, input_shape, path)
    f, zip_config = open_weights(path)
    try:
        if fmt == "auto":
            found, why = detect_format(f, path)
        else:
            check_forced(f, path, fmt)
            found, why = fmt, "named by the caller"
        if found == "rawcnn":
            f.close()
            return _passthrough(path, spec, why)
        if found == "keras3-weights-h5":
            src = read_keras3(f, path, zip_config)
        else:
            src = read_legacy(f, path, "keras-model-h5" if found == "keras-model-h5" else "keras-h5")
        return _import_keras(src, spec, found, why, flip, fc_order, forced=fmt != "auto")
    except (OSError, RuntimeError, KeyError) as e:  # what h5py raises on a damaged object the helpers did not
        # reach (KeyError: 'Unable to synchronously open object (address of object past end of allocation)')
        raise WeightsImportError(f"{path}: damaged HDF5 file ({type(e).__name__}: {e}); download it again") from None
    finally:
        f.close()


def import_to_checkpoint(path, arch, out, fmt="auto", **options):
    """import_weights, then save_imported: what `rawcnn import-weights` runs. Returns the Report.

    Nothing is written when the import fails (the error is raised before), and the checkpoint itself
    appears atomically.
    """
    net, report = import_weights(path, arch, fmt, **options)
    try:
        check_finite_params({k: {n: np.asarray(v) for n, v in d.items()} for k, d in net.state_dict().items()},
                            f"{path} (imported into {arch if isinstance(arch, str) else 'the spec'})")
    except InputError as e:
        raise WeightsImportError(str(e)) from None
    save_imported(out, net, report)
    return report


def save_imported(out, net, report):
    """Write the imported net as a rawcnn checkpoint at `out` (atomic), with its preprocessing and report."""
    if os.path.exists(out) and os.path.exists(report.path) and os.path.samefile(out, report.path):
        raise WeightsImportError(f"{out}: the output would overwrite the weight file being imported")
    pre = report.preprocessing.to_dict() if report.preprocessing is not None else None
    save_checkpoint(out, net, preprocessing=pre, meta={"imported_from": report.to_dict()})


def family_of(spec):
    """'vgg', 'alexnet' or 'other', from the spec's name."""
    name = str(spec.get("name", "")).lower()
    return "alexnet" if "alexnet" in name else "vgg" if name.startswith("vgg") else "other"


def _arch_spec(arch, input_shape, path):
    try:
        spec = load_spec(arch)
    except ValueError as e:
        label = arch.get("name", "spec") if isinstance(arch, dict) else arch
        raise WeightsImportError(f"{path}: cannot use architecture {label!r}: {e}") from None
    if input_shape is not None:
        spec["input"] = [int(v) for v in input_shape]
    return spec


def _import_keras(src, spec, fmt, why, flip, fc_order, forced):
    """A read Keras Source -> (net, report): plan (shapes only), decide, build, convert, load."""
    path, arch = src.path, spec.get("name", "model")
    family = family_of(spec)
    report = Report(path, arch, format=fmt, format_reason=why, facts=list(src.facts))
    convs = [l for l in src.layers if l.kind == "conv"]
    denses = [l for l in src.layers if l.kind == "dense"]
    for l in src.layers:
        if l.kind == "other":
            report.unexpected.append((l.describe(), "not a convolution or dense layer (kernel, bias)"))
    if not convs and not denses:
        raise WeightsImportError(f"{path}: no convolution or dense weights found "
                                 f"({len(src.layers)} layers with weights)")
    plans = mapping.plan_convs(convs, mapping.conv_targets(spec), path, arch)
    layout, report_layout = mapping.resolve_layout(plans, src, path)
    spec, heuritech = _heuritech_or_not(src, spec, fmt, forced, layout, plans, report)
    report.kernel_layout = report_layout
    if plans:
        report.flip, report.flip_reason = convert.decide_flip(src, layout, flip)
    n_lin = sum(e["type"] == "Linear" for e in spec["layers"])
    use_dense = bool(denses) and len(denses) == n_lin
    num_classes = int(denses[-1].kernel[1].shape[-1]) if use_dense else None
    try:  # when the file fills every layer, skip drawing an initialisation (VGG16: 138M numbers)
        net = build(spec, num_classes=num_classes, **({"weight_std": 0.0} if use_dense else {}))
    except ValueError as e:
        raise WeightsImportError(f"{path}: cannot build {arch!r}: {e}") from None
    report.num_classes = next((l.out_features for l in reversed(net.layers) if l.kind == "Linear"), None)
    state = {}
    for p in plans:
        w, b, conv, warn = mapping.convert_conv(p, layout, report.flip, path)
        state[p.target.name] = {"w": w, "b": b}
        report.mapped.append(Mapped(p.target.name, [s.name for s in p.sources], [s.shapes() for s in p.sources],
                                    {"w": w.shape, "b": b.shape}, conv))
        report.warnings += warn
    if use_dense:
        report.fc_order, report.fc_order_reason = convert.decide_fc_order(src, layout, fc_order)
        _load_dense(net, denses, report, state, path, arch)
    elif denses:
        for s in denses:
            report.unexpected.append((s.describe(), f"the file has {len(denses)} dense layers and {arch} has "
                                                    f"{n_lin}: a different head, not loaded"))
        report.warnings.append(f"the file's dense layers do not form {arch}'s head; the Linear layers keep their "
                               f"initialisation")
    net.load_state_dict(state, strict=False)
    report.missing = [l.name for l in net.layers if l.params and l.name not in state]
    _notes(report, family, heuritech, plans, denses, use_dense)
    report.preprocessing = _preprocessing(family, heuritech, spec, report)
    return net, report


def _heuritech_or_not(src, spec, fmt, forced, layout, plans, report):
    """Decide whether the file is heuritech's AlexNet; if so rebuild the spec its way. -> (spec, heuritech)."""
    split = any(p.split for p in plans)
    auto = not forced and family_of(spec) == "alexnet" and alexnet.looks_heuritech(src, layout, split)
    if fmt != "heuritech-alexnet" and not auto:
        return spec, False
    theano = layout == "oihw" or (src.backend or "").lower() == "theano"  # a Keras 2 re-save on Theano
    if family_of(spec) != "alexnet" or not theano:
        raise WeightsImportError(f"{src.path}: read as heuritech-alexnet, but heuritech's file is an AlexNet with "
                                 f"Theano-layout kernels; here the architecture is {spec.get('name')!r} and the "
                                 f"kernels are {convert.LAYOUT_WORDS.get(layout, layout)} with backend "
                                 f"{src.backend!r}")
    spec, report.spec_changes = alexnet.heuritech_spec(spec)
    if auto:
        report.format_reason += ("; an AlexNet in a Keras 1 file with Theano-layout kernels and split group "
                                 "layers: heuritech convnets-keras' alexnet_weights.h5")
    report.format = "heuritech-alexnet"
    return spec, True


def _flatten_input(net):
    """(C, H, W) of the map a Flatten hands to the first Linear, or None."""
    shape, prev = tuple(net.input_shape), None
    for l in net.layers:
        if l.kind == "Linear":
            return prev if prev is not None and len(prev) == 3 else None
        prev = shape if l.kind == "Flatten" else None
        shape = l.output_shape(shape)
    return None


def _load_dense(net, denses, report, state, path, arch):
    """Convert the file's dense layers into the net's Linear layers, in order (shapes checked first)."""
    linears = [l for l in net.layers if l.kind == "Linear"]
    chw = _flatten_input(net)
    for j, (t, s) in enumerate(zip(linears, denses, strict=True)):
        want, shape = (t.in_features, t.out_features), tuple(s.kernel[1].shape)
        if shape != want:
            how = (f"; {t.name} takes the flattened {chw[0]}x{chw[1]}x{chw[2]} map, so the input size may differ"
                   if j == 0 and chw else "")
            raise WeightsImportError(f"{path}: layer {s.name!r} -> {arch} layer {t.name!r}: the file's dense kernel "
                                     f"has shape {shape}, {arch} needs {want} as (in, out){how}")
        if s.bias is not None and tuple(s.bias[1].shape) != (t.out_features,):
            raise WeightsImportError(f"{path}: layer {s.name!r} -> {arch} layer {t.name!r}: bias shape "
                                     f"{tuple(s.bias[1].shape)}, needs ({t.out_features},)")
        k = read_array(s.kernel[1], f"{path}: layer {s.name!r}")  # (D, K)
        conv = []
        permute = j == 0 and chw and report.fc_order == "hwc" and chw[1] * chw[2] > 1
        if permute:
            conv.append(f"rows permuted from (H, W, C) = {(chw[1], chw[2], chw[0])} order to (C, H, W) order")
        w = convert.dense_to_out_in(k, chw if permute else None)  # (K, D)
        conv.append("kernel (in, out) -> (out, in): transpose")
        if s.bias is None:
            b = np.zeros(t.out_features, np.float32)
            report.warnings.append(f"{t.name}: the file has no bias for {s.name!r}; bias set to 0")
        else:
            b = read_array(s.bias[1], f"{path}: layer {s.name!r}")
        state[t.name] = {"w": w, "b": b}
        report.mapped.append(Mapped(t.name, [s.name], [s.shapes()], {"w": w.shape, "b": b.shape}, conv))


def _notes(report, family, heuritech, plans, denses, use_dense):
    if plans:
        order = "RGB" if heuritech else "BGR" if family in ("vgg", "alexnet") else "as the file's trainer used"
        report.notes.append(f"{plans[0].target.name}'s input channels are kept in the file's order ({order}); "
                            f"the preprocessing contract records it")
    if not denses:
        report.notes.append(f"the file holds no dense layers (Keras include_top=False): {', '.join(report.missing)} "
                            f"keep their N(0, 0.01) initialisation")
    if use_dense and report.num_classes != 1000:
        report.notes.append(f"the file's last dense layer has {report.num_classes} outputs: the net has "
                            f"{report.num_classes} classes")


def _preprocessing(family, heuritech, spec, report):
    name = {"vgg": "vgg-keras", "alexnet": "alexnet-heuritech" if heuritech else "alexnet-bvlc"}.get(family)
    if name is None:
        report.notes.append("no preprocessing contract is known for this architecture; set one before training")
        return None
    pre = preset(name)
    size = tuple(spec["input"][1:])
    if pre.input_size != size:
        pre = replace(pre, input_size=size, resize="direct", resize_size=None,
                      notes=pre.notes + (f"input size {size} instead of {pre.input_size}: resized directly",))
    if family == "alexnet" and not heuritech:
        report.notes.append("BVLC-derived AlexNet: input assumed BGR with the Caffe mean, and LRN in Caffe's form "
                            "(size 5, alpha 1e-4, k 1), as the weights came from Caffe")
    return pre


def _passthrough(path, spec, why):
    """A rawcnn checkpoint: loaded as it is, after checking its convolutions match the architecture."""
    arch = spec.get("name", "model")
    try:
        net, ck = load_checkpoint(path)
    except CheckpointError as e:
        raise WeightsImportError(str(e)) from None
    mine, theirs = mapping.conv_targets(spec), mapping.conv_targets(ck["spec"])
    for a, b in zip(mine, theirs, strict=False):  # the pairs first; a count that differs is refused below
        if (a.shape, a.groups) != (b.shape, b.groups):
            raise WeightsImportError(f"{path}: a rawcnn checkpoint of {ck['spec'].get('name')!r} whose layer "
                                     f"{b.name!r} has weights {b.shape} (groups {b.groups}), where {arch} layer "
                                     f"{a.name!r} has {a.shape} (groups {a.groups})")
    if len(mine) != len(theirs):
        raise WeightsImportError(f"{path}: a rawcnn checkpoint of {ck['spec'].get('name')!r} with {len(theirs)} "
                                 f"convolutions, where {arch} has {len(mine)}")
    report = Report(path, arch, format="rawcnn", format_reason=why,
                    facts=[f"model {ck['spec'].get('name')!r}, epoch {ck['epoch']}"])
    for l in net.layers:
        if l.params:
            shapes = [tuple(v.shape) for v in l.params.values()]
            report.mapped.append(Mapped(l.name, [l.name], [shapes], {k: tuple(v.shape) for k, v in l.params.items()},
                                        ["none: already rawcnn's layout"]))
    report.num_classes = next((l.out_features for l in reversed(net.layers) if l.kind == "Linear"), None)
    if ck.get("preprocessing"):
        report.preprocessing = Preprocessing.from_json(ck["preprocessing"])
    return net, report
