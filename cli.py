"""The rawcnn command line. Each command parses its options and calls one library function."""
import functools
import math
import os
import sys

import click

from rawcnn.app.options import RECIPE_FIELDS, RECIPE_NAMES, choose_denormals, flag

DEVICES = click.Choice(["auto", "cpu", "cuda", "cudasim"])


class Finite(click.FloatRange):
    """A finite number in the range lo..hi (None: no bound; lo_open / hi_open: that end excluded), or with
    integer=True a whole number. click.FloatRange lets NaN through (every comparison with NaN is false)
    and inf when the range has no upper bound; this refuses both, with click's usual
    "Invalid value for '--rotate': ..." line."""

    def __init__(self, lo=None, hi=None, lo_open=False, hi_open=False, integer=False):
        super().__init__(lo, hi, min_open=lo_open, max_open=hi_open)
        self.integer = integer
        self.name, self._number_class = ("integer", int) if integer else ("float", float)

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


INT_MAX = 2 ** 31 - 1  # the largest count, index or size an integer option takes
SEEDS = Finite(0, 2 ** 32 - 1, integer=True)
FRACTION = Finite(0, 1)  # a probability or a fraction, ends included
SIDE = Finite(8, 16384, integer=True)  # an image side in pixels


def _backend(device):
    """Resolve --device to a Backend, or exit non-zero with one clear line."""
    from kernels import BackendUnavailable, get_backend  # heavy: NumPy and the kernels
    try:
        be = get_backend(device)
    except BackendUnavailable as e:
        raise click.ClickException(str(e)) from None
    if device == "auto":
        click.echo(f"device: auto chose {be.name} ({be.device})", err=True)
    return be


def _one_line(text):
    """A message as one line (errors from files may carry newlines)."""
    return " ".join(str(text).split()) or "failed"


def _fail(e):
    if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str) and " " not in e.args[0]:
        e = f"missing entry {e.args[0]!r} in what the command read (a file, spec or setting lacks it)"
    raise click.ClickException(_one_line(e)) from None


class _Guarded(click.Group):
    """The top-level group: whatever escapes a command ends as one line and exit status 1, never a traceback.

    Commands turn the errors they expect (ValueError and its kin: rawcnn.files.validate.InputError,
    CheckpointError, DataError, WeightsImportError, OverwriteError) into messages themselves; an
    OSError names its file; anything else is reported as an internal error (a bug to report), and
    RAWCNN_DEBUG=1 shows its traceback instead.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except ValueError as e:
            if os.environ.get("RAWCNN_DEBUG"):
                raise
            raise click.ClickException(_one_line(e)) from None
        except OSError as e:
            if os.environ.get("RAWCNN_DEBUG"):
                raise
            raise click.ClickException(_one_line(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")) \
                from None
        except MemoryError:
            raise click.ClickException("out of memory: the input is larger than this machine can hold") from None
        except Exception as e:  # the last line of defence: a bug, said in one line
            if os.environ.get("RAWCNN_DEBUG"):
                raise
            raise click.ClickException(_one_line(f"internal error ({type(e).__name__}: {e}); please report it with "
                                                 f"the command line; RAWCNN_DEBUG=1 shows the traceback")) from None


# -- the options many commands share, declared once -----------------------------------------------
def _overwrites(f=None, *, check=()):
    """Add --overwrite to a command: without it, the command replaces no file it did not create in this run.

    check: suffixes of --out (e.g. ("",) or (".csv", "_images.csv")) naming the files the command
    writes; when one exists and --overwrite was not given, it stops before any work (OverwriteError).
    Use as @_overwrites or @_overwrites(check=...).
    """
    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, overwrite=False, **kw):
            from rawcnn.app import common  # heavy: the engine, not for --help
            with common.command_outputs(overwrite):
                if check:
                    try:
                        common.check_out(*(kw["out"] + s for s in check))
                    except ValueError as e:
                        _fail(e)
                return f(*args, **kw)
        return click.option("--overwrite", is_flag=True,
                            help="Replace output files that exist (default: refuse to replace anything).")(wrapper)
    return decorate if f is None else decorate(f)


def _device(f):
    """--device: the backend (resolved by _backend)."""
    return click.option("--device", type=DEVICES, default="cpu", show_default=True)(f)


def _conv_algo_option(f):
    """--conv-algo: the convolution algorithm planned for every Conv2d of the net (rawcnn/engine/conv_algo.py)."""
    return click.option("--conv-algo", type=click.Choice(["auto", "im2col", "winograd", "tune"]), default="auto",
                        show_default=True, help="Convolution algorithm: per layer from a measured table or this "
                        "machine's cached timings (auto), forced, or timed once and cached (tune).")(f)


def _seed(help=None):
    """--seed: every random choice of the command."""
    return click.option("--seed", type=SEEDS, default=0, show_default=True, help=help)


def _given():
    """The names of the options the user typed on the command line (not left at their defaults)."""
    ctx = click.get_current_context()
    return {n for n in ctx.params if ctx.get_parameter_source(n) not in (None, click.core.ParameterSource.DEFAULT)}


def _out(help=None, *, folder=False, default=None, optional=False):
    """--out: a file (folder=False) or a folder; required unless it has a default or is optional."""
    path = click.Path(file_okay=False) if folder else click.Path(dir_okay=False)
    kw = {"default": default, "show_default": True} if default is not None else \
        {"default": None} if optional else {"required": True}

    def not_a_system_folder(ctx, param, value):
        """No command writes into the filesystem root, a system folder or the home folder itself, even with
        --overwrite (rawcnn.files.fileio.check_out_folder; for a file, its folder)."""
        if value is not None:
            from rawcnn.app.common import check_out_folder  # heavy: the engine, not for --help
            try:
                check_out_folder(value, folder=folder)
            except ValueError as e:
                _fail(e)
        return value
    return click.option("--out", type=path, help=help, callback=not_a_system_folder, **kw)


@click.group(cls=_Guarded, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rawcnn")
@click.option("--flush-denormals/--keep-denormals", default=None,
              help="Flush subnormal floats (below 1.2e-38 in float32) to zero in the CPU kernels, or keep them. "
              "Default: flush, or what RAWCNN_FLUSH_DENORMALS (1 or 0) says. On Intel CPUs every operation on a "
              "subnormal costs ~100 cycles, and a saturated loss makes a whole backward pass subnormal "
              "(kernels/cpu/denormals.py).")
def main(flush_denormals):
    """rawcnn: a from-scratch CNN engine with hand-written forward and backward passes."""
    try:
        choose_denormals(flush_denormals)
    except ValueError as e:
        _fail(e)


@main.command()
@click.argument("model")
@click.option("--input", "input_shape", default=None, help="Input shape CxHxW, e.g. 3x227x227 (default: the model's).")
@click.option("--num-classes", type=Finite(1, 1_000_000, integer=True), default=None,
              help="Replace the last layer's outputs.")
@_conv_algo_option
def summary(model, input_shape, num_classes, conv_algo):
    """Print each layer's output shape, parameters and FLOPs for MODEL (a built-in name or a JSON spec file)."""
    from rawcnn.app import tools  # heavy: the engine, not for --help
    try:
        click.echo(tools.summary_text(model, input_shape, num_classes=num_classes, conv_algo=conv_algo))
    except ValueError as e:
        _fail(e)


@main.command()
@click.option("--layer", default="all", show_default=True, help="A layer type (Conv2d, LRN, ...), Net, or all.")
@_device
@_seed()
def gradcheck(layer, device, seed):
    """Check every layer's backward against centred finite differences in float64.

    Exits non-zero when any relative error exceeds 1e-6.
    """
    from rawcnn.app import tools  # heavy: the engine, not for --help
    be = _backend(device)
    try:
        table, rows, bad, threshold = tools.gradcheck(layer, be, seed)
    except ValueError as e:
        _fail(e)
    click.echo(table)
    click.echo(f"\n{len(rows) - len(bad)} of {len(rows)} tensors within {threshold:g} on {be.name} ({be.device})")
    if bad:
        raise click.ClickException(f"{len(bad)} gradient(s) exceed the {threshold:g} threshold")


@main.command()
@click.argument("model")
@click.option("--input", "image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An image file (a checkpoint's input contract prepares it).")
@click.option("--random", is_flag=True, help="Trace N(0, 1) noise of --seed instead of an image.")
@click.option("--class-index", type=Finite(0, INT_MAX, integer=True), default=None,
              help="Class of the loss (default: the predicted one).")
@_seed()
@_device
def trace(model, image, random, class_index, seed, device):
    """One image through MODEL (a checkpoint, built-in name or spec file): per layer the output shape,
    min/mean/max, zeros after ReLU, and after a backward each gradient's norm."""
    from rawcnn.app import tools  # heavy: the engine, not for --help
    try:
        text = tools.trace(model, image=image, random=random, class_index=class_index, seed=seed,
                             device=_backend(device).name)
    except (ValueError, KeyError, OSError) as e:
        _fail(e)
    click.echo(text)


@main.command()
def info():
    """List the backends and whether each can run here (and why not)."""
    from kernels import cuda_unavailable_reason, cudasim_unavailable_reason  # heavy: NumPy and the kernels
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
@_out("The rawcnn checkpoint to write.")
@_overwrites(check=("",))
def import_weights(file, arch, fmt, flip, fc_order, out):
    """Import ImageNet AlexNet / VGG16 / VGG19 weights from an HDF5 FILE into a rawcnn checkpoint."""
    from weights_import import WeightsImportError, import_to_checkpoint  # heavy: h5py and the engine
    try:
        report = import_to_checkpoint(file, arch, out, fmt, flip=flip, fc_order=fc_order)
    except (WeightsImportError, ValueError, OSError) as e:
        _fail(e)
    click.echo(report.text())
    click.echo(f"wrote {out}")


@main.command()
@_out(folder=True, default="demo-run")
@_seed()
@_device
@click.option("--quick", is_flag=True, help="A 20-second smoke run (tiny data, 2 epochs; it does not learn).")
@_overwrites
def demo(out, seed, device, quick):
    """The main job on built-in data: synthesise radiographs, prepare, train the custom net, evaluate, report."""
    from rawcnn.app import tools  # heavy: the engine, not for --help
    be = _backend(device)
    try:
        tools.demo(out, seed=seed, device=be.name, quick=quick, log=click.echo)
    except (ValueError, RuntimeError) as e:
        _fail(e)


# -- data -----------------------------------------------------------------------------------------
@main.group()
def data():
    """Synthesise radiographs and prepare data sets."""


@data.command("synth")
@click.option("--n", "n", type=Finite(1, 1_000_000, integer=True), default=200, show_default=True,
              help="Number of images.")
@click.option("--size", type=Finite(32, 16384, integer=True), default=512, show_default=True,
              help="Image side in pixels.")
@click.option("--abnormal-fraction", type=FRACTION, default=0.5, show_default=True)
@_seed()
@_out("Folder to write (Montgomery layout).", folder=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing synthetic set in --out.")
@click.option("--difficulty", type=click.Choice(["standard", "hard"]), default="standard", show_default=True,
              help="hard: one subtle small lesion, exposure and noise varying widely (a benchmark for recipes).")
def data_synth(n, size, abnormal_fraction, seed, out, overwrite, difficulty):
    """Write synthetic chest radiographs with lung and lesion masks (NLM Montgomery layout)."""
    from rawcnn.app import data as app_data  # heavy: the engine, not for --help
    try:
        recs = app_data.synth(out, n, size=size, abnormal_fraction=abnormal_fraction, seed=seed, overwrite=overwrite,
                              difficulty=difficulty)
    except ValueError as e:
        _fail(e)
    click.echo(f"wrote {len(recs)} images ({sum(r.label for r in recs)} abnormal) to {out}")


@data.command("prepare")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@_out("The HDF5 data set to write.")
@click.option("--input-size", type=SIDE, default=227, show_default=True)
@click.option("--roi-crop/--no-roi-crop", default=True, show_default=True, help="Crop to the lung masks' box.")
@click.option("--roi", type=click.Choice(["masks", "locator", "none"]), default=None,
              help="Where the lung-ROI box comes from: the lung masks, the mask-free lung-field locator, or no "
                   "crop (default: masks; --no-roi-crop means none). Recorded in the set and its checkpoints.")
@click.option("--classes", default=None,
              help="Class order for folder-per-class and label-CSV sets, e.g. normal,abnormal.")
@click.option("--finding", default=None, help="NIH ChestX-ray14 layout: the finding read against 'No Finding'.")
@click.option("--roi-margin", type=FRACTION, default=0.05, show_default=True)
@click.option("--base-size", type=Finite(0, 16384, integer=True), default=1024, show_default=True,
              help="Resize before CLAHE (0: skip; else at least 8).")
@click.option("--clahe/--no-clahe", default=True, show_default=True)
@click.option("--clahe-clip-limit", type=Finite(0, 1000, lo_open=True), default=2.0, show_default=True)
@click.option("--clahe-tile-grid", type=Finite(1, 256, integer=True), default=8, show_default=True)
@click.option("--mask-outside/--no-mask-outside", default=False, show_default=True,
              help="Zero every pixel outside the lung masks (markers, borders and the abdomen cannot be "
                   "learnt). Every image needs a lung mask; checkpoints trained on the set then need one at "
                   "predict time too (--mask, --masks).")
@_seed("Seed of the stratified 70/20/10 split.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or mislabelled files and list them.")
@_overwrites(check=("",))
def data_prepare(src, out, **opts):
    """Preprocess SRC (Montgomery, Shenzhen or folder-per-class) into one HDF5 data set."""
    from rawcnn.app import data as app_data  # heavy: the engine, not for --help
    try:
        summ = app_data.prepare(src, out, opts)
    except ValueError as e:
        _fail(e)
    click.echo(f"wrote {summ.path}: {summ.n} images, classes {summ.class_names}")
    for name, row in zip(("train", "val", "test"), summ.counts, strict=True):
        click.echo(f"  {name:5s} " + ", ".join(f"{c}: {int(v)}" for c, v in zip(summ.class_names, row, strict=True)))
    for path, why in summ.skipped:
        click.echo(f"  skipped {path}: {why}")
    for note in summ.notes or ():
        click.echo(note, err=True)


# -- training and evaluation -------------------------------------------------------------------
EPOCHS = Finite(1, 100_000, integer=True)


def _recipe_option(field):
    """The option of one field of rawcnn.training.recipes.Recipe: its flag and help, a Finite of its range or a
    Choice of its choices, default None (the --recipe's value)."""
    name, m = flag(field.name), field.metadata
    if field.type is bool:
        return click.option(f"{name}/--no-{name[2:]}", default=None, help=m["help"])
    r = m["range"]
    kind = click.Choice(m["choices"]) if m["choices"] else \
        Finite(r.lo, r.hi, r.lo_open, r.hi_open, integer=r.whole) if r else None
    return click.option(name, type=kind, default=None, help=m["help"])


def _recipe_options(*names, help):
    """--recipe (with `help`) and one option per field of the training recipe (rawcnn.training.recipes.Recipe),
    or per field in `names`; each defaults to the --recipe's value."""
    def decorate(f):
        for field in reversed([fl for fl in RECIPE_FIELDS if not names or fl.name in names]):
            f = _recipe_option(field)(f)
        return click.option("--recipe", type=click.Choice(sorted(RECIPE_NAMES)), default="default",
                            show_default=True, help=help)(f)
    return decorate


@main.command()
@click.option("--model", default="custom", show_default=True,
              help="custom, custom-gap, alexnet, vgg16, vgg19 or a JSON spec.")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A prepared data set (rawcnn data prepare).")
@_out("Run folder (checkpoints, logs).", folder=True)
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from a rawcnn checkpoint (e.g. from import-weights): transfer learning.")
@click.option("--num-classes", type=Finite(2, 1_000_000, integer=True), default=None,
              help="Default: the data set's classes.")
@click.option("--new-head-lr-mult", type=Finite(0, 1e6, lo_open=True), default=10.0, show_default=True,
              help="Learning-rate multiplier of the fresh last layer when --weights has another class count.")
@click.option("--freeze-through", default=None, help="Freeze every layer up to and including this one.")
@_recipe_options(help="Named settings; the flags below override single values.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--classes", "classes", default=None,
              help="The data set's class names in the order of the --weights (or resumed) checkpoint's outputs, "
                   "e.g. normal,abnormal, when the names or order differ.")
@_seed()
@_device
@click.option("--procs", type=Finite(1, 4096, integer=True), default=1, show_default=True,
              help="Train data-parallel in this many processes on this machine (starts mpiexec; "
                   "needs the mpi extra). Under mpiexec leave it at 1.")
@click.option("--micro-batches", type=Finite(1, 4096, integer=True), default=None,
              help="Cut each global batch into M fixed micro-batches whose gradients are summed in a fixed "
                   "order: 1 process and any number of ranks dividing M (a power of two, or M) give the same "
                   "bits. Without it, ranks agree with one process only to float rounding, which SGD amplifies.")
@_conv_algo_option
@_overwrites
def train(device, procs, conv_algo, **opts):
    """Train a model with SGD-momentum, L2 and a plateau learning-rate schedule.

    --recipe default (LSUV init, standardised input, warm-up, clipping, augmentation, selection by
    validation loss; measurements in bench/RESULTS.md) or paper (what the paper states; it does not
    learn without normalisation). Any flag below overrides the recipe's value.

    `mpiexec -n N rawcnn train ...` (or --procs N) trains data-parallel: --batch-size is the global batch.
    """
    from rawcnn.app import train as app_train  # heavy: the engine, not for --help
    try:
        code = app_train.relaunch(procs, sys.argv[1:], opts["micro_batches"])  # --procs N: under mpiexec -n N
    except ValueError as e:
        _fail(e)
    if code is not None:
        sys.exit(code)
    be = _backend(device)
    try:
        res, speaks, status = app_train.train_command(opts, device=be.name, conv_algo=conv_algo, given=_given())
    except (ValueError, KeyError) as e:
        _fail(e)
    if speaks:  # under mpiexec: rank 0 alone speaks; train() has logged the outcome and best epoch already
        click.echo(f"checkpoints: {res.get('last_checkpoint')}, {res.get('best_checkpoint')}")
    if status:
        sys.exit(status)


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A prepared two-class data set; all its splits are pooled and re-split into folds.")
@click.option("--folds", type=Finite(2, 1000, integer=True), default=5, show_default=True)
@click.option("--model", default="custom", show_default=True,
              help="custom, custom-gap, alexnet, vgg16, vgg19 or a JSON spec.")
@click.option("--patient-pattern", default=None,
              help="A regex whose first group is the patient id in image names (folds keep a patient's images "
                   "together); default: the set's own patient ids, else one image per patient.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A rawcnn checkpoint every fold starts from (its model and weights, e.g. trained on "
                   "synthetic radiographs; a head of another class count is replaced): fine-tuning.")
@click.option("--save-ensemble", is_flag=True,
              help="Also write OUT/ensemble.json naming the k fold models (fold_<k>/best.h5): the mean of their "
                   "probabilities as one predictor, which predict and evaluate take in place of a checkpoint.")
@click.option("--repeats", type=Finite(1, 100, integer=True), default=1, show_default=True,
              help="Cross-validate this many times, with seeds SEED .. SEED+R-1 (other folds and inits), into "
                   "OUT/repeat_<r>/, then summarise: the mean and sd of the per-fold means, and the pooled AUC "
                   "of each image's probability averaged over the R runs (repeats.json, oof_mean.csv).")
@click.option("--threshold-rule", default="youden", show_default=True,
              help="How each fold's decision threshold is chosen on its validation part, then applied to its test "
                   "fold: youden (max sensitivity + specificity - 1), sensitivity=S (the highest threshold reaching "
                   "sensitivity S there, e.g. sensitivity=0.9) or specificity=S. cv reports 0.5 and this.")
@_out("Folder: fold_<k>/ runs, oof.csv, cv.json, cv_roc.png (with --repeats: one repeat_<r>/ of them each, "
      "repeats.json, oof_mean.csv).", folder=True)
@_recipe_options(help="Named settings; the flags below override single values.")
@_seed("Fold assignment, init, shuffling (the first repeat's).")
@_device
def cv(device, **opts):
    """Stratified k-fold cross-validation of a training recipe: per-fold and pooled out-of-fold metrics."""
    from rawcnn.app import cv as app_cv  # heavy: the engine, not for --help
    be = _backend(device)
    try:
        rep = app_cv.cv_command(opts, device=be.name, log=click.echo)
    except (ValueError, KeyError) as e:
        _fail(e)
    wrote = [rep["paths"][k] for k in ("oof", "oof_mean", "json", "roc", "ensemble") if rep["paths"].get(k)]
    click.echo(f"wrote {', '.join(wrote)}")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@click.option("--threshold", type=FRACTION, default=0.5, show_default=True, help="Probability of class 1 to call it.")
@_out("Write eval.json and the ROC PNG here.", folder=True, optional=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--classes", default=None, help="The data set's class names in the order of the checkpoint's outputs "
              "(e.g. normal,abnormal), when the set names or orders them differently.")
@_device
@_conv_algo_option
@_overwrites
def evaluate(checkpoint, data_path, as_json, device, **opts):
    """Accuracy, sensitivity, specificity, precision, F1, ROC AUC and the confusion matrix on a split.

    CHECKPOINT: a rawcnn checkpoint, or an ensemble.json of `rawcnn cv --save-ensemble` (its members'
    probabilities averaged)."""
    from rawcnn.app import evaluate as app_eval  # heavy: the engine, not for --help
    be = _backend(device)
    try:
        res, paths = app_eval.evaluate_command(checkpoint, data_path, opts, device=be.name,
                                               note=lambda m: click.echo(m, err=True))
    except ValueError as e:
        _fail(e)
    click.echo(app_eval.format_result(res, checkpoint, opts["split"], data_path, as_json=as_json))
    for p in paths:
        click.echo(f"wrote {p}", err=as_json)


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--checkpoint", "--weights", "checkpoint", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A trained or imported rawcnn checkpoint, or an ensemble.json of `cv --save-ensemble`; its "
                   "preprocessing is applied.")
@click.option("--top", type=Finite(1, INT_MAX, integer=True), default=2, show_default=True,
              help="How many classes to print per image.")
@click.option("--class-names", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A text file with one class name per line (e.g. the 1000 ImageNet classes); default: the "
                   "checkpoint's class names.")
@click.option("--mask", "masks", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A lung mask per image (repeat, in the images' order) for the lung-ROI crop.")
@click.option("--masks", "masks_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of lung masks matched by name (NAME.png, NAME_mask.png, or Montgomery's "
                   "leftMask/ + rightMask/ pair). Images without a mask are cropped by the lung-field locator.")
@_device
@_conv_algo_option
def predict(images, checkpoint, device, **opts):
    """Class probabilities for IMAGES (PNG, JPEG, 16-bit PNG, DICOM) through the checkpoint's input contract.

    A checkpoint trained on lung-ROI crops crops each image by its lung mask (--mask, --masks) or,
    without one, by the lung-field locator, and says so.
    """
    from rawcnn.app import predict as app_predict  # heavy: the engine, not for --help
    be = _backend(device)
    try:
        rows = app_predict.predict_command(checkpoint, images, opts, device=be.name,
                                           log=lambda m: click.echo(m, err=True))
    except ValueError as e:
        _fail(e)
    click.echo(app_predict.format_rows(rows))


@main.command()
@click.option("--space", required=True, help="A JSON file (or JSON text) of ranges: lr, momentum, weight_decay, "
              "dropout, batch_size, each {log_uniform|uniform|choice: [...]} or a number.")
@click.option("--trials", type=Finite(1, 100_000, integer=True), default=10, show_default=True)
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", default="custom", show_default=True)
@click.option("--epochs", type=EPOCHS, default=5, show_default=True, help="Epochs per trial.")
@_out(folder=True)
@_seed()
@_device
@_recipe_options("init", "input_norm", "warmup_epochs", "clip_norm", "select_by", "average_epochs", "balance",
                 help="The settings every trial starts from (the sampled values replace theirs; the lr, momentum, "
                      "L2 and batch size the space does not sample are the recipe's).")
@_overwrites
def search(device, **opts):
    """Random search over learning rate, momentum, L2, dropout and batch size."""
    from rawcnn.app import search as app_search  # heavy: the engine, not for --help
    be = _backend(device)
    try:
        res = app_search.search_command(opts, device=be.name)
    except (ValueError, KeyError) as e:
        _fail(e)
    if res:
        top, metric = res[0], {"val-auc": "AUC", "val-loss": "loss", "val-auc-smooth": "smoothed AUC"}.get(
            res[0]["select_by"], "accuracy")
        shown = "-" if top["best_score"] is None else f"{top['best_score']:.4f}"
        click.echo(f"best: trial {top['trial']}, validation {metric} {shown}; "
                   f"results in {os.path.join(opts['out'], 'results.csv')}, best configuration in "
                   f"{os.path.join(opts['out'], 'best.json')}")


# -- visualisation ------------------------------------------------------------------------------
def _image_source(f):
    """The options that pick images: a prepared set's split (and indices) or image files."""
    f = click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="An image file (repeatable), instead of --data.")(f)
    f = click.option("--index", "indices", multiple=True, type=Finite(0, INT_MAX, integer=True),
                     help="Index into the split (repeatable; default: all of it).")(f)
    f = click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test",
                     show_default=True)(f)
    f = click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="A prepared data set (its lesion masks rank channels and score maps).")(f)
    return f


@main.group()
def viz():
    """Filters, activations, heat maps, dream images and localisation scores of a checkpoint."""


@viz.command("filters")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--layer", default=None, help="A Conv2d layer (default: the first).")
@_out("The PNG to write.")
@_device
@_overwrites(check=("",))
def viz_filters(checkpoint, layer, out, device):
    """A montage of a conv layer's filters, each scaled to [0, 1]."""
    from rawcnn.app import viz as vc  # heavy: the engine, not for --help
    try:
        click.echo(f"wrote {vc.viz_filters(checkpoint, out, layer=layer, device=_backend(device).name)}")
    except (ValueError, KeyError) as e:
        _fail(e)


@viz.command("activations")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@_image_source
@click.option("--layer", default=None, help="Any layer (default: the ReLU after the deepest conv).")
@click.option("--top", "top_k", type=Finite(1, INT_MAX, integer=True), default=None,
              help="Rank channels by mean activation (inside the lesion mask when there is one) and mark "
                   "this many (default: 8, or every channel of a layer with fewer).")
@click.option("--raw-format", type=click.Choice(["npy", "h5"]), default="npy", show_default=True)
@_out(folder=True)
@_device
@_overwrites
def viz_activations(checkpoint, out, device, **opts):
    """The raw per-channel activations of a layer: a labelled grid PNG and the raw array per image."""
    from rawcnn.app import viz as vc  # heavy: the engine, not for --help
    try:
        rows = vc.activations_command(checkpoint, out, opts, device=_backend(device).name)
    except (ValueError, KeyError) as e:
        _fail(e)
    for r in rows:
        click.echo(f"{r['png']}  {r['raw']}  top channels {[int(c) for c in r['top']]}")


@viz.command("heatmap")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@_image_source
@click.option("--method", type=click.Choice(["channel", "gradcam", "saliency"]), default="channel",
              show_default=True)
@click.option("--layer", default=None, help="Default: the ReLU after the deepest conv.")
@click.option("--channel", type=Finite(0, INT_MAX, integer=True), default=None,
              help="For --method channel: this channel.")
@click.option("--strongest", is_flag=True, help="For --method channel: the strongest channel (the default).")
@click.option("--class-index", type=Finite(0, INT_MAX, integer=True), default=None,
              help="For gradcam/saliency (default: the predicted class).")
@click.option("--threshold", type=FRACTION, default=0.5, show_default=True, help="Map values below are transparent.")
@click.option("--alpha", type=FRACTION, default=0.5, show_default=True)
@click.option("--colorbar/--no-colorbar", default=True, show_default=True,
              help="A title and a colour bar (with the threshold marked) beside each picture.")
@click.option("--full-res", is_flag=True,
              help="For --image files: draw the map over the source image at its own resolution.")
@_out(folder=True)
@_device
@_overwrites
def viz_heatmap(checkpoint, strongest, out, device, **opts):
    """A 'jet' heat map over the radiograph: a channel, Grad-CAM or the input-gradient saliency."""
    from rawcnn.app import viz as vc  # heavy: the engine, not for --help
    if strongest and opts["channel"] is not None:
        _fail(ValueError("give --channel or --strongest, not both"))
    try:
        paths = vc.heatmap_command(checkpoint, out, opts, device=_backend(device).name)
    except (ValueError, KeyError) as e:
        _fail(e)
    for p in paths:
        click.echo(f"wrote {p}")


@viz.command("dream")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--layer", default=None, help="Default: the logits layer.")
@click.option("--channel", type=Finite(0, INT_MAX, integer=True), default=None,
              help="A channel of a conv layer, or a class of the logits.")
@click.option("--octaves", type=Finite(1, 16, integer=True), default=3, show_default=True)
@click.option("--steps", type=Finite(1, 100_000, integer=True), default=20, show_default=True)
@click.option("--lr", type=Finite(0, 1000, lo_open=True), default=0.05, show_default=True)
@_seed()
@_out()
@_device
@_overwrites(check=("",))
def viz_dream(checkpoint, out, device, **opts):
    """Activation maximisation by gradient ascent on the input (like MATLAB's deepDreamImage)."""
    from rawcnn.app import viz as vc  # heavy: the engine, not for --help
    try:
        path = vc.dream_command(checkpoint, out, opts, device=_backend(device).name)
    except (ValueError, KeyError) as e:
        _fail(e)
    click.echo(f"wrote {path}")


@viz.command("score")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@click.option("--method", "methods", multiple=True, type=click.Choice(["channel", "gradcam", "saliency"]),
              help="Repeatable; default: all three.")
@click.option("--layer", default=None)
@click.option("--threshold", type=FRACTION, default=0.5, show_default=True)
@click.option("--boxes", type=click.Path(exists=True), default=None,
              help="Lesion boxes in source-image pixels, scored instead of the set's lesion masks for the "
                   "images they name: Pascal VOC XML (a file or a folder), COCO JSON, or a CSV file,x,y,w,h. "
                   "Boxes whose file declares another image size (VOC <size>, COCO width/height) are scaled "
                   "to the image's.")
@_out("CSV path stem (writes OUT.csv).")
@_device
@_overwrites(check=(".csv", "_images.csv"))
def viz_score(checkpoint, out, device, **opts):
    """Localisation scores against the lesion masks (or boxes): pointing game, energy inside lesion and
    lungs, IoU."""
    from rawcnn.app import viz as vc  # heavy: the engine, not for --help
    try:
        res = vc.score_command(checkpoint, out, opts, device=_backend(device).name)
    except (ValueError, KeyError) as e:
        _fail(e)
    click.echo(vc.format_score_table(res))
    if res.get("boxes_rescaled"):
        click.echo(f"the boxes of {res['boxes_rescaled']} image(s) were drawn in another image size (VOC <size>, "
                   f"COCO width/height) and were scaled to the size of the image prepared")
    for p in res.get("paths", []):
        click.echo(f"wrote {p}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Default: RUN_DIR/best.h5.")
@_out("Default: RUN_DIR/report.html.", optional=True)
@_device
@_overwrites
def report(run_dir, data_path, checkpoint, out, device):
    """One self-contained HTML page: curves, metrics, ROC, filters, top channels, heat maps, dreams, scores."""
    from rawcnn.app import viz as vc  # heavy: the engine, not for --help
    try:
        path = vc.report(run_dir, data=data_path, checkpoint=checkpoint, out=out, device=_backend(device).name,
                         progress=True)
    except (ValueError, KeyError) as e:
        _fail(e)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
