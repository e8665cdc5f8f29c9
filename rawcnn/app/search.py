"""`rawcnn search`: random search over the training settings (rawcnn.training.search)."""
import os

from rawcnn.app.common import resolve_recipe
from rawcnn.data import load_dataset
from rawcnn.files.validate import parse_json, read_text
from rawcnn.training.from_recipe import augmenter
from rawcnn.training.search import load_space, random_search
from rawcnn.training.train import Run


def search_command(options, *, device="cpu"):
    """Load the set and the space, build the recipe's augmenter, run random_search; returns its rows (best first).

    options: the command's options by name: space (a JSON file, read by rawcnn.files.validate.read_text,
    or JSON text), trials, data_path, model, epochs (per trial), out, seed, recipe and the recipe flags
    (common.resolve_recipe; --epochs is the recipe's epochs in every trial).
    """
    space = options["space"]
    if isinstance(space, (str, os.PathLike)) and os.path.exists(space):  # a file, read within the text budget
        where = f"--space {space}"
        space = parse_json(read_text(space, where), where, kind=dict, allow_null=False)
    recipe = resolve_recipe(options)
    ds = load_dataset(options["data_path"])
    run = Run(out_dir=options["out"], seed=options["seed"], device=device)
    return random_search(load_space(space), options["trials"], ds, recipe, run, model=options["model"],
                         augment=augmenter(recipe.replace(augment=True), run.seed))
