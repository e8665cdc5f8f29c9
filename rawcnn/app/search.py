"""`rawcnn search`: random search over the training settings (rawcnn.training.search)."""
import os


def search_command(space, trials, data_path, out, recipe_opts, *, model="custom", epochs=5, seed=0, device="cpu"):
    """Load the set and the space, build the recipe's augmenter, run random_search; returns its rows (best first).

    space: a JSON file (read by rawcnn.files.validate.read_text) or JSON text; recipe_opts: --recipe and the
    recipe flags (common.resolve_recipe).
    """
    from rawcnn.data import load_dataset
    from rawcnn.training.recipes import augmenter
    from rawcnn.training.search import load_space, random_search
    from rawcnn.files.validate import parse_json, read_text
    from rawcnn.app.common import resolve_recipe
    if isinstance(space, (str, os.PathLike)) and os.path.exists(space):  # a file, read within the text budget
        where = f"--space {space}"
        space = parse_json(read_text(space, where), where, kind=dict, allow_null=False)
    st = resolve_recipe(recipe_opts)
    ds = load_dataset(data_path)
    size = int(ds.split("train").images.shape[-1])
    return random_search(load_space(space), trials, ds, seed=seed, epochs_per_trial=epochs, out_dir=out,
                         model=model, num_classes=len(ds.class_names), input_shape=(3, size, size),
                         augment=augmenter({**st, "augment": True}, seed), device=device, settings=st)
