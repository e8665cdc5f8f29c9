"""`rawcnn train`: build or load the net (transfer learning's new head and frozen layers), resolve the
recipe, start the data-parallel processes, and train.

cli.py parses the options and calls train_command (and relaunch first, for --procs); the
functions below hold the glue: the net, the augmenter, the input contract.
"""
import os
import sys


def relaunch(procs, argv=None, micro_batches=None):
    """--procs: None when procs is 1, else the exit status of `mpiexec -n procs` running this command
    line (argv, default sys.argv[1:]) without --procs. Raises ValueError under mpiexec or when no
    mpiexec can start (RuntimeError's message), and before starting anything when --micro-batches
    cannot be shared by the ranks (rawcnn.training.distributed.check_micro_batches)."""
    from rawcnn.training.distributed import check_micro_batches, launched_size, relaunch as start, strip_option
    check_micro_batches(micro_batches, max(procs, launched_size()))
    if procs <= 1:
        return None
    if launched_size() > 1:
        raise ValueError(f"--procs {procs} under mpiexec: give the process count to mpiexec only")
    try:
        return start(procs, strip_option(list(sys.argv[1:] if argv is None else argv), "--procs"))
    except RuntimeError as e:
        raise ValueError(str(e)) from None


def train_command(model, data_path, out, *, recipe_opts, weights=None, num_classes=None, new_head_lr_mult=10.0,
                  freeze_through=None, resume=False, classes=None, seed=0, device="cpu", conv_algo="auto",
                  given=None, micro_batches=None):
    """`rawcnn train` after parsing: run_training with --recipe and its flags resolved (resolve_recipe),
    `classes` a comma-separated string or None, `given` the options the user typed (used on resume).
    Returns (train()'s dict, whether this process should print: rank 0 or a plain process, the exit
    status: 130 when interrupted, 1 when the loss diverged, else 0)."""
    from rawcnn.training.distributed import is_root
    from rawcnn.app.common import resolve_recipe
    st = resolve_recipe(recipe_opts)
    res = run_training(model, data_path, out, weights=weights, num_classes=num_classes,
                       new_head_lr_mult=new_head_lr_mult, freeze_through=freeze_through, seed=seed,
                       resume=resume, device=device, settings=st, classes=classes.split(",") if classes else None,
                       micro_batches=micro_batches, conv_algo=conv_algo, **({"given": given} if resume else {}))
    return res, is_root(), {"interrupted": 130, "diverged": 1}.get(res["status"], 0)


def build_training_net(model, *, weights=None, num_classes=None, input_size=None, seed=0, init=0.01,
                       new_head_lr_mult=10.0, freeze_through=None, log=print):
    """(net, preprocessing) for `rawcnn train`.

    model: a built-in name or spec file (ignored for architecture when `weights` is given: the
    checkpoint's spec is used); weights: a rawcnn checkpoint (e.g. from `rawcnn import-weights`)
    whose weights start training; with num_classes differing from the checkpoint's, the last
    Linear is replaced by a fresh one with lr_mult = new_head_lr_mult (the paper's fine-tuning).
    preprocessing: the weights' input contract (dict) or None (train.py then zero-centres on the
    training split).
    """
    from rawcnn.engine.checkpoint import load_checkpoint
    from rawcnn.engine.models import build
    if weights is None:
        shape = (3, input_size, input_size) if input_size else None
        net = build(model, num_classes=num_classes or 2, input_shape=shape, seed=seed, weight_std=init)
        pre = None
    else:
        net, ck = load_checkpoint(weights)
        pre = ck.get("preprocessing")
        last = [l for l in net.layers if l.kind == "Linear"][-1]
        if num_classes and num_classes != last.out_features:
            net.replace_head(num_classes, seed=seed, lr_mult=new_head_lr_mult)
            log(f"replaced {last.name} ({last.out_features} outputs) with a fresh {num_classes}-way layer, "
                f"learning-rate multiplier {new_head_lr_mult:g}")
        if input_size and pre:
            from rawcnn.data.preprocessing import Preprocessing
            pre = Preprocessing.from_json(pre).with_input_size(input_size).to_dict()
        if pre:  # trained on a prepared set of grey radiographs from here on (rawcnn.data.contract)
            pre = {**pre, "decode": "gray"}
    if freeze_through:
        net.freeze_through(freeze_through)
        log(f"frozen: every layer through {freeze_through} (no weight gradients, no backward below)")
    return net, pre


def run_training(model, data_path, out_dir, *, weights=None, num_classes=None, input_size=None,
                 new_head_lr_mult=10.0, freeze_through=None, init=0.01, epochs=60, batch_size=32, lr=1e-3,
                 momentum=0.9, weight_decay=5e-4, patience=5, max_drops=3, seed=0, translate=0.1,
                 rotate=10.0, augment=True, resume=False, device="cpu", progress=True, log=print, classes=None,
                 given=None, settings=None, micro_batches=None, conv_algo="auto"):
    """`rawcnn train`: build or load the net, train it on a prepared set; returns train()'s dict.

    Under `mpiexec -n R` every rank runs this; each reads only its rows of the set (rawcnn.training.distributed).
    A set whose class names or order differ from those of `weights` (when it keeps its head) or of
    the run being resumed is refused, unless `classes` maps them (rawcnn.data.contract.match_classes).
    given: with resume, the names of the options the user typed (the command line passes them):
    the model then defaults to the run's own (last.h5's spec) and a new lr takes effect.
    settings: None, or a recipe's settings (rawcnn.training.recipes.resolve), which then decide init, the
    input contract (unless --weights brings its own), augmentation and the recipe hooks, and
    override the keyword arguments of the same names.
    """
    if settings is not None:
        from rawcnn.engine.init import parse_init, weight_std_for_build
        init = weight_std_for_build(parse_init(settings["init"]))
        epochs, batch_size, lr, momentum = (settings["epochs"], settings["batch_size"], settings["lr"],
                                            settings["momentum"])
        weight_decay, patience, max_drops = settings["weight_decay"], settings["patience"], settings["max_drops"]
    from rawcnn.engine.checkpoint import read_checkpoint
    from rawcnn.data.contract import contract_of, match_classes
    from rawcnn.data import Augmenter
    from rawcnn.training.distributed import from_environment, open_sharded
    from rawcnn.training.train import train
    if resume and given is not None:
        model, weights = _resume_model(out_dir, model, weights, given)
    dist = from_environment(device)
    data = open_sharded(data_path, dist)  # load_dataset(data_path) in one process
    ref, what = None, "checkpoint"
    last = os.path.join(out_dir, "last.h5")
    if resume and os.path.exists(last):
        ref, what = contract_of(read_checkpoint(last)).class_names, f"checkpoint {last} (resume)"
    elif weights:
        ref = contract_of(read_checkpoint(weights)).class_names
        if ref is not None and len(ref) != (num_classes or len(data.class_names)):
            ref = None  # a new head: the old names do not apply
        what = f"checkpoint {weights}"
    note = match_classes(data, ref, classes, what=what)
    if note and dist.is_root:
        log(note)
    k = num_classes or len(data.class_names)
    if not weights and input_size is None:
        input_size = int(data.split("train").images.shape[-1])
    net, pre = build_training_net(model, weights=weights, num_classes=k, input_size=input_size, seed=seed,
                                  init=init, new_head_lr_mult=new_head_lr_mult, freeze_through=freeze_through,
                                  log=log)
    from rawcnn.engine.conv_algo import plan
    plan(net, (settings or {}).get("batch_size", batch_size), conv_algo)  # --conv-algo, settled for the batch
    aug = Augmenter(max_translate=translate, max_rotate_deg=rotate, rng=seed) if augment else None
    recipe = None
    if settings is not None:
        from rawcnn.training import recipes
        aug, recipe = recipes.augmenter(settings, seed), recipes.hooks(settings)
        if pre is None:
            x = data.split("train").images  # (N, C, S, S) uint8
            pre = recipes.input_contract(settings["input_norm"], x, input_size).to_dict()
            if not resume:
                recipes.init_net(net, settings, x, pre, seed=seed, log=log)
        else:
            log("note: --weights brings its own weights and input contract; the recipe's init and input-norm "
                "are not used")
    return train(net, data, out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                 weight_decay=weight_decay, patience=patience, max_drops=max_drops, seed=seed, augment=aug,
                 preprocessing=pre, resume=resume, progress=progress, log=log, device=device,
                 dist=dist if dist.size > 1 else None, given=set(given or ()), recipe=recipe,
                 micro_batches=micro_batches)



def _resume_model(out_dir, model, weights, given):
    """(model, weights) for a resume: the run's own spec unless --model or --weights was given (then the
    net built from them must match the run's, which Trainer.restore checks)."""
    from rawcnn.engine.checkpoint import read_checkpoint
    last = os.path.join(os.fspath(out_dir), "last.h5")
    if "model" in given or "weights" in given or not os.path.exists(last):
        return model, weights
    return read_checkpoint(last)["spec"], None
