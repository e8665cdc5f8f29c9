"""`rawcnn cv`: stratified k-fold cross-validation of a training recipe (rawcnn.training.cv)."""
import os

from rawcnn.app.common import resolve_recipe
from rawcnn.training.cv import cross_validate
from rawcnn.training.ensemble import write_ensemble
from rawcnn.training.train import Run


def cv_command(options, *, device="cpu", log=print):
    """Refuse a non-empty --out (an earlier run's files would be replaced), resolve the recipe, cross-validate.

    options: the command's options by name: data_path, out, folds, seed, model, patient_pattern, init_from,
    save_ensemble, recipe and the recipe flags. Returns cross_validate's report (with save_ensemble, its
    paths name ensemble.json too).
    """
    out = options["out"]
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"{out} already exists and is not empty (cv.json, fold_*/ of an earlier run would be "
                         f"replaced); choose another --out")
    recipe = resolve_recipe(options)
    rep = cross_validate(options["data_path"], recipe, Run(out_dir=out, seed=options["seed"], device=device, log=log),
                         folds=options["folds"], model=options["model"], patient_pattern=options["patient_pattern"],
                         init_from=options["init_from"])
    if options.get("save_ensemble"):  # the k fold models as one predictor (rawcnn.training.ensemble)
        members = [os.path.join(out, f"fold_{f + 1}", "best.h5") for f in range(options["folds"])]
        rep["paths"]["ensemble"] = write_ensemble(os.path.join(out, "ensemble.json"), members)
    return rep
