"""`rawcnn cv`: stratified k-fold cross-validation of a training recipe (rawcnn.training.cv)."""
import os


def cv_command(data_path, out, recipe_opts, *, folds=5, seed=0, model="custom", patient_pattern=None, device="cpu",
               log=print, init_from=None):
    """Refuse a non-empty `out` (an earlier run's files would be replaced), resolve the recipe, cross-validate.
    Returns cross_validate's report."""
    from rawcnn.training.cv import cross_validate
    from rawcnn.app.common import resolve_recipe
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"{out} already exists and is not empty (cv.json, fold_*/ of an earlier run would be "
                         f"replaced); choose another --out")
    return cross_validate(data_path, out, resolve_recipe(recipe_opts), folds=folds, seed=seed, model=model,
                          patient_pattern=patient_pattern, device=device, log=log, init_from=init_from)
