"""`rawcnn cv`: stratified k-fold cross-validation of a training recipe (rawcnn.training.cv)."""
import os

from rawcnn.app.common import resolve_recipe
from rawcnn.training.cv import cross_validate, summarise_repeats
from rawcnn.training.ensemble import write_ensemble
from rawcnn.training.train import Run


def cv_command(options, *, device="cpu", log=print):
    """Refuse a non-empty --out (an earlier run's files would be replaced), resolve the recipe, cross-validate.

    options: the command's options by name: data_path, out, folds, seed, model, patient_pattern, init_from,
    save_ensemble, repeats (default 1), threshold_rule (default youden), recipe and the recipe flags. Returns
    cross_validate's report (with save_ensemble, its paths name ensemble.json too). With repeats R > 1: R
    cross-validations into out/repeat_<r>/ with seeds seed .. seed + R - 1, then summarise_repeats' summary
    (repeats.json, oof_mean.csv), returned with "reports" (each run's report) added; the ensemble then holds
    all R x k models.
    """
    out = options["out"]
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"{out} already exists and is not empty (cv.json, fold_*/ of an earlier run would be "
                         f"replaced); choose another --out")
    threshold_rule = options.get("threshold_rule") or "youden"  # cross_validate checks it before training
    recipe = resolve_recipe(options)
    repeats = int(options.get("repeats") or 1)
    outs = [out] if repeats == 1 else [os.path.join(out, f"repeat_{r + 1}") for r in range(repeats)]
    reports = []
    for r, run_out in enumerate(outs):
        if repeats > 1:
            log(f"cross-validation {r + 1}/{repeats} (seed {options['seed'] + r}) into {run_out}")
        reports.append(cross_validate(options["data_path"], recipe,
                                      Run(out_dir=run_out, seed=options["seed"] + r, device=device, log=log),
                                      folds=options["folds"], model=options["model"],
                                      patient_pattern=options["patient_pattern"], init_from=options["init_from"],
                                      threshold_rule=threshold_rule))
    rep = reports[0] if repeats == 1 else {**summarise_repeats(reports, out, log=log), "reports": reports}
    if options.get("save_ensemble"):  # the fold models as one predictor (rawcnn.training.ensemble)
        members = [os.path.join(o, f"fold_{f + 1}", "best.h5") for o in outs for f in range(options["folds"])]
        rep["paths"]["ensemble"] = write_ensemble(os.path.join(out, "ensemble.json"), members)
    return rep
