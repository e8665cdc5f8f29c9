"""Training from a recipe: what turns a rawcnn.training.recipes.Recipe into a net and a train() call.

    input_contract  the input contract of --input-norm, from the training images
    augmenter       the recipe's Augmenter, seeded (None with augment off)
    init_net        LSUV on a seeded batch of training images (normal and he are done by build)
    start_from      a checkpoint's net for fine-tuning (--init-from), its head replaced when the
                    class count differs
    train_recipe    all of it: build (or load) the net, initialise it, train it

train() itself reads the recipe's SGD, schedule and hook settings; the init, the input contract and
the augmenter are made here (or by the caller) because they need the net or the data.
"""
import numpy as np

from rawcnn.data import Augmenter
from rawcnn.data.preprocessing import Preprocessing
from rawcnn.engine.checkpoint import load_checkpoint
from rawcnn.engine.init import apply_init, parse_init, weight_std_for_build
from rawcnn.engine.models import build
from rawcnn.training.recipes import INPUT_NORMS
from rawcnn.training.train import make_to_input, train, zero_center


def input_contract(norm, x, input_size):
    """The input contract for uint8 training images x (N, C, S, S) under --input-norm `norm`.

    mean: the training split's per-channel mean subtracted (the paper; rawcnn.training.train.zero_center);
    standardise: (x - mean) / std with the training split's pixel mean and std;
    none: the 0-255 pixel values as they are. Returns a rawcnn.data.preprocessing.Preprocessing.
    """
    size = (int(input_size), int(input_size))
    if norm == "mean":
        return zero_center(x, (x.shape[1], *size))
    if norm == "standardise":
        mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
        if not std > 0:
            raise ValueError(f"--input-norm standardise: the training images (shape {x.shape}) are constant")
        return Preprocessing(channel_order="RGB", mean=(mean,) * 3, std=(std,) * 3, input_size=size,
                             resize="direct", name="standardise",
                             notes=("pixel mean and std of the training split: (x - mean) / std",))
    if norm == "none":
        return Preprocessing(channel_order="RGB", mean=(0.0,) * 3, input_size=size, resize="direct", name="none",
                             notes=("0-255 pixel values, no normalisation",))
    raise ValueError(f"--input-norm must be one of {INPUT_NORMS}, got {norm!r}")


def augmenter(recipe, seed):
    """The recipe's Augmenter (None when augment is off), seeded."""
    if not recipe.augment:
        return None
    return Augmenter(max_translate=recipe.translate, max_rotate_deg=recipe.rotate, rng=seed,
                     max_scale=recipe.scale, max_brightness=recipe.brightness)


def init_net(net, recipe, x_train, preprocessing, *, seed=0, batch=32, log=None):
    """Finish a freshly built net's init: LSUV on a seeded batch of training images (no-op otherwise).

    x_train: uint8 (N, C, S, S) training images; preprocessing: their input contract.
    """
    init = parse_init(recipe.init)
    if init[0] != "lsuv":
        return None
    return apply_init(net, init, batch=lsuv_batch(net, x_train, preprocessing, seed=seed, batch=batch), seed=seed,
                      log=log)


def lsuv_batch(net, x_train, preprocessing, *, seed=0, batch=32):
    """The batch init_net's LSUV measures on: min(batch, N) training images drawn without replacement by `seed`,
    in file order, through the input contract. Returns (B, C, H, W) net input."""
    pick = np.sort(np.random.default_rng(seed).choice(len(x_train), size=min(batch, len(x_train)), replace=False))
    return make_to_input(net, preprocessing)(x_train[pick])


def train_recipe(data, recipe, run, *, model="custom", init_from=None):
    """Build `model` for data's image size, initialise it, train it with `recipe` (rawcnn.training.train.Run `run`).

    data: rawcnn.data.load_dataset's result (or anything with .split(name).images / .labels and
    class_names). init_from: a rawcnn checkpoint whose model and weights start training instead
    (fine-tuning, e.g. from a net trained on synthetic radiographs; `model` and the recipe's init
    are then unused, its input contract is made afresh from `data` per the recipe's input_norm, and
    a head of another class count is replaced by a fresh layer). Returns train()'s dict.
    """
    x = data.split("train").images  # (N, C, S, S) uint8
    S = int(x.shape[-1])
    K = len(data.class_names)
    pp = input_contract(recipe.input_norm, x, S)
    if init_from is not None:
        net = start_from(init_from, K, S, seed=run.seed, log=run.log)
    else:
        net = build(model, num_classes=K, input_shape=(3, S, S), seed=run.seed,
                    weight_std=weight_std_for_build(parse_init(recipe.init)))
        init_net(net, recipe, x, pp, seed=run.seed, log=run.log)
    return train(net, data, recipe, run, augment=augmenter(recipe, run.seed), preprocessing=pp)


def start_from(path, num_classes, size, *, seed=0, log=print):
    """The net of checkpoint `path` for fine-tuning on S x S images of num_classes classes: its weights,
    a fresh last Linear (seeded) when the class count differs. ValueError when its input is not 3 x S x S."""
    net, _ = load_checkpoint(path)
    if tuple(net.input_shape) != (3, size, size):
        raise ValueError(f"--init-from {path}: the checkpoint's model takes {'x'.join(map(str, net.input_shape))} "
                         f"input, the data set holds 3x{size}x{size} images; prepare the set at its size")
    last = [layer for layer in net.layers if layer.kind == "Linear"][-1]
    if last.out_features != num_classes:
        net.replace_head(num_classes, seed=seed, lr_mult=1.0)
        log(f"init from {path}: {last.name} ({last.out_features} outputs) replaced by a fresh {num_classes}-way layer")
    else:
        log(f"init from {path}: every layer's weights, the head included")
    return net
