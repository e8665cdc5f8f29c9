"""The rawcnn command line. Each command parses its options and calls one library function."""
import os
import sys

import click

DEVICES = click.Choice(["auto", "cpu", "cuda", "cudasim"])


def _backend(device):
    """Resolve --device to a Backend, or exit non-zero with one clear line."""
    from kernels import BackendUnavailable, get_backend
    try:
        be = get_backend(device)
    except BackendUnavailable as e:
        raise click.ClickException(str(e)) from None
    if device == "auto":
        click.echo(f"device: auto chose {be.name} ({be.device})", err=True)
    return be


def _fail(e):
    raise click.ClickException(str(e)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rawcnn")
def main():
    """rawcnn: a from-scratch CNN engine with hand-written forward and backward passes."""


@main.command()
@click.argument("model")
@click.option("--input", "input_shape", default=None, help="Input shape CxHxW, e.g. 3x227x227 (default: the model's).")
@click.option("--num-classes", type=int, default=None, help="Replace the last layer's outputs.")
def summary(model, input_shape, num_classes):
    """Print each layer's output shape, parameters and FLOPs for MODEL (a built-in name or a JSON spec file)."""
    from rawcnn.summary import format_summary
    try:
        shape = tuple(int(v) for v in input_shape.lower().split("x")) if input_shape else None
        if shape is not None and len(shape) != 3:
            raise ValueError(f"--input must be CxHxW, got {input_shape!r}")
        click.echo(format_summary(model, input_shape=shape, num_classes=num_classes))
    except ValueError as e:
        _fail(e)


@main.command()
@click.option("--layer", default="all", show_default=True, help="A layer type (Conv2d, LRN, ...), Net, or all.")
@click.option("--device", type=DEVICES, default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def gradcheck(layer, device, seed):
    """Check every layer's backward against centred finite differences in float64.

    Exits non-zero when any relative error exceeds 1e-6.
    """
    from rawcnn.gradcheck import THRESHOLD, format_rows, run_gradcheck
    be = _backend(device)
    try:
        rows = run_gradcheck(layer=layer, backend=be, seed=seed)
    except ValueError as e:
        _fail(e)
    click.echo(format_rows(rows))
    bad = [r for r in rows if not r.ok]
    click.echo(f"\n{len(rows) - len(bad)} of {len(rows)} tensors within {THRESHOLD:g} on {be.name} ({be.device})")
    if bad:
        raise click.ClickException(f"{len(bad)} gradient(s) exceed the {THRESHOLD:g} threshold")


@main.command()
def info():
    """List the backends and whether each can run here (and why not)."""
    from kernels import cuda_unavailable_reason, cudasim_unavailable_reason
    click.echo("reference  available  (NumPy loops; tests and teaching)")
    click.echo("cpu        available  (Numba kernels, NumPy BLAS)")
    why = cuda_unavailable_reason()
    click.echo(f"cuda       {'available' if why is None else 'unavailable: ' + why}")
    why = cudasim_unavailable_reason()
    click.echo(f"cudasim    {'available' if why is None else 'unavailable: ' + why}"
               f"  (run with --device cudasim; sets NUMBA_ENABLE_CUDASIM=1 for this process)")


@main.command("import-weights")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--arch", required=True, help="vgg16, vgg19, alexnet, or a JSON spec file.")
@click.option("--format", "fmt", default="auto", show_default=True,
              help="auto (read the file's structure), keras-h5, keras-model-h5, keras3-weights-h5, "
                   "heuritech-alexnet or rawcnn.")
@click.option("--flip/--no-flip", default=None, help="Force (or forbid) the 180-degree kernel rotation of "
              "Theano files; by default it is decided from the file.")
@click.option("--fc-order", type=click.Choice(["hwc", "chw"]), default=None,
              help="Force the row order of the first fully connected layer; by default decided from the file.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The rawcnn checkpoint to write.")
def import_weights(file, arch, fmt, flip, fc_order, out):
    """Import ImageNet AlexNet / VGG16 / VGG19 weights from an HDF5 FILE into a rawcnn checkpoint."""
    from weights_import import WeightsImportError, import_to_checkpoint
    try:
        report = import_to_checkpoint(file, arch, out, fmt, flip=flip, fc_order=fc_order)
    except (WeightsImportError, ValueError, OSError) as e:
        _fail(e)
    click.echo(report.text())
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
