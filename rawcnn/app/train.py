"""`rawcnn train`: build or load the net (transfer learning's new head and frozen layers), resolve the
recipe, start the data-parallel processes, and train.

cli.py parses the options and calls train_command (and relaunch first, for --procs); the
functions below hold the glue: the net, the augmenter, the input contract.
"""
import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any, Optional

from rawcnn.app.common import resolve_recipe
from rawcnn.data.contract import contract_of, match_classes
from rawcnn.data.preprocessing import Preprocessing
from rawcnn.engine.checkpoint import load_checkpoint, read_checkpoint
from rawcnn.engine.conv_algo import plan
from rawcnn.engine.init import parse_init, weight_std_for_build
from rawcnn.engine.models import build
from rawcnn.training.distributed import check_micro_batches, from_environment, launched_size, open_sharded
from rawcnn.training.distributed import relaunch as start_ranks
from rawcnn.training.from_recipe import augmenter, init_net, input_contract
from rawcnn.training.train import Run, train


@dataclass(frozen=True)
class Start:
    """What `rawcnn train` starts from: `model` (a built-in name, spec file or spec) built afresh, or
    the net and weights of checkpoint `weights` (e.g. from `rawcnn import-weights`; its spec is then
    the architecture), with a fresh last Linear when num_classes differs from the checkpoint's, whose
    learning-rate multiplier is new_head_lr_mult (the paper's fine-tuning); freeze_through: freeze
    every layer up to and including this one. num_classes None: the data set's class count."""
    model: Any = "custom"
    weights: Optional[str] = None
    num_classes: Optional[int] = None
    new_head_lr_mult: float = 10.0
    freeze_through: Optional[str] = None


def strip_option(argv, name):
    """argv without `name VALUE` / `name=VALUE` (how --procs is kept from the ranks' command line)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def relaunch(procs, argv=None, micro_batches=None):
    """--procs: None when procs is 1, else the exit status of `mpiexec -n procs` running this command
    line (argv, default sys.argv[1:]) without --procs. Raises ValueError under mpiexec or when no
    mpiexec can start (RuntimeError's message), and before starting anything when --micro-batches
    cannot be shared by the ranks (rawcnn.training.distributed.check_micro_batches)."""
    check_micro_batches(micro_batches, max(procs, launched_size()))
    if procs <= 1:
        return None
    if launched_size() > 1:
        raise ValueError(f"--procs {procs} under mpiexec: give the process count to mpiexec only")
    try:
        return start_ranks(procs, strip_option(list(sys.argv[1:] if argv is None else argv), "--procs"))
    except RuntimeError as e:
        raise ValueError(str(e)) from None


def train_command(options, *, device="cpu", conv_algo="auto", given=()):
    """`rawcnn train` after parsing: run_training with --recipe and its flags resolved (resolve_recipe).

    options: the command's options by name: model, data_path, out, weights, num_classes,
    new_head_lr_mult, freeze_through, resume, classes (a comma-separated string or None), seed,
    micro_batches, recipe and the recipe flags; given: the names of the options the user typed
    (used on resume). Returns (train()'s dict, whether this process should print: rank 0 or a plain
    process, the exit status: 130 when interrupted, 1 when the loss diverged, else 0)."""
    o = options
    recipe = resolve_recipe(o)
    start = Start(model=o["model"], weights=o["weights"], num_classes=o["num_classes"],
                  new_head_lr_mult=o["new_head_lr_mult"], freeze_through=o["freeze_through"])
    dist = from_environment(device)  # under mpiexec: this rank's communicator, else the one-process no-op
    run = Run(out_dir=o["out"], seed=o["seed"], resume=o["resume"], given=set(given) if o["resume"] else None,
              device=device, micro_batches=o["micro_batches"], dist=dist if dist.size > 1 else None)
    try:
        res = run_training(start, o["data_path"], recipe, run,
                           classes=o["classes"].split(",") if o["classes"] else None, conv_algo=conv_algo)
    except Exception as e:
        dist.fail(e)  # under mpiexec: one line naming the rank, and every rank stops; else nothing
        raise
    return res, dist.is_root, {"interrupted": 130, "diverged": 1}.get(res["status"], 0)


def build_training_net(start, *, num_classes=None, input_size=None, seed=0, init=0.01, log=print):
    """(net, preprocessing) for `rawcnn train` from `start` (a Start), with num_classes outputs.

    init: models.build's weight_std for a net built afresh. preprocessing: the weights' input
    contract (dict) or None (train.py then zero-centres on the training split).
    """
    if start.weights is None:
        shape = (3, input_size, input_size) if input_size else None
        net = build(start.model, num_classes=num_classes or 2, input_shape=shape, seed=seed, weight_std=init)
        pre = None
    else:
        net, ck = load_checkpoint(start.weights)
        pre = ck.get("preprocessing")
        last = [l for l in net.layers if l.kind == "Linear"][-1]
        if num_classes and num_classes != last.out_features:
            net.replace_head(num_classes, seed=seed, lr_mult=start.new_head_lr_mult)
            log(f"replaced {last.name} ({last.out_features} outputs) with a fresh {num_classes}-way layer, "
                f"learning-rate multiplier {start.new_head_lr_mult:g}")
        if input_size and pre:
            pre = Preprocessing.from_json(pre).with_input_size(input_size).to_dict()
        if pre:  # trained on a prepared set of grey radiographs from here on (rawcnn.data.contract)
            pre = {**pre, "decode": "gray"}
    if start.freeze_through:
        net.freeze_through(start.freeze_through)
        log(f"frozen: every layer through {start.freeze_through} (no weight gradients, no backward below)")
    return net, pre


def run_training(start, data_path, recipe, run, *, classes=None, conv_algo="auto"):
    """`rawcnn train`: build or load the net (`start`, a Start), train it on the prepared set at data_path
    with `recipe` (a rawcnn.training.recipes.Recipe) and `run` (a rawcnn.training.train.Run); returns
    train()'s dict.

    Under `mpiexec -n R` every rank runs this; each reads only its rows of the set (rawcnn.training.distributed).
    A set whose class names or order differ from those of start.weights (when it keeps its head) or of
    the run being resumed is refused, unless `classes` maps them (rawcnn.data.contract.match_classes).
    run.given: with resume, the names of the options the user typed (the command line passes them):
    the model then defaults to the run's own (last.h5's spec) and a new lr takes effect.
    The recipe decides init, the input contract (unless start.weights brings its own), augmentation
    and the recipe hooks. conv_algo: --conv-algo, the convolution algorithm planned for the net.
    """
    if run.resume and run.given is not None:
        start = _resume_start(run.out_dir, start, run.given)
    dist = run.dist or from_environment(run.device)
    data = open_sharded(data_path, dist)  # load_dataset(data_path) in one process
    ref, what = _reference_classes(start, run, data)
    note = match_classes(data, ref, classes, what=what)
    if note and dist.is_root:
        run.log(note)
    k = start.num_classes or len(data.class_names)
    input_size = None if start.weights else int(data.split("train").images.shape[-1])
    net, pre = build_training_net(start, num_classes=k, input_size=input_size, seed=run.seed,
                                  init=weight_std_for_build(parse_init(recipe.init)), log=run.log)
    plan(net, recipe.batch_size, conv_algo)  # --conv-algo, settled for the batch
    aug = augmenter(recipe, run.seed)
    if pre is None:
        x = data.split("train").images  # (N, C, S, S) uint8
        pre = input_contract(recipe.input_norm, x, input_size).to_dict()
        if not run.resume:
            init_net(net, recipe, x, pre, seed=run.seed, log=run.log)
    else:
        run.log("note: --weights brings its own weights and input contract; the recipe's init and input-norm "
                "are not used")
    run = dataclasses.replace(run, dist=dist if dist.size > 1 else None)
    return train(net, data, recipe, run, augment=aug, preprocessing=pre)


def _reference_classes(start, run, data):
    """(class names the data set must match, what they belong to): the run's own when resuming, else the
    weights' when their head is kept, else None (rawcnn.data.contract.match_classes's ref and what)."""
    last = os.path.join(run.out_dir, "last.h5")
    if run.resume and os.path.exists(last):
        return contract_of(read_checkpoint(last)).class_names, f"checkpoint {last} (resume)"
    if start.weights:
        ref = contract_of(read_checkpoint(start.weights)).class_names
        if ref is not None and len(ref) != (start.num_classes or len(data.class_names)):
            ref = None  # a new head: the old names do not apply
        return ref, f"checkpoint {start.weights}"
    return None, "checkpoint"


def _resume_start(out_dir, start, given):
    """`start` for a resume: the run's own spec unless --model or --weights was given (then the net built
    from them must match the run's, which Trainer.restore checks)."""
    last = os.path.join(os.fspath(out_dir), "last.h5")
    if "model" in given or "weights" in given or not os.path.exists(last):
        return start
    return dataclasses.replace(start, model=read_checkpoint(last)["spec"], weights=None)
