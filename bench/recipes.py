"""Training recipes compared by k-fold cross-validated AUC: the hard synthetic set, and real radiographs.

    python bench/recipes.py --data hard96.h5 --epochs 8 --folds 5 --seeds 0 --out bench-recipes \
        --candidates paper default hand demo
    python bench/recipes.py --data sz-dev128.h5 --folds 5 --seeds 0 1 2 --out bench-real \
        --candidates custom gap gap-aug gap-loss gap-aug-loss       # real sets: bench/real_tb.py
    python bench/recipes.py --summary bench-recipes [more output folders]    # the summary table

Each (candidate, seed) runs rawcnn.training.cv.cross_validate and writes <out>/<candidate>_s<seed>/cv.json;
the table (mean +- sd of the per-fold AUCs, pooled out-of-fold AUC, accuracy) is printed as
Markdown and appended to <out>/table.md after every candidate, so a cut-short run keeps what it
finished. Correctness first: cross_validate's out-of-fold predictions come from checkpoints
reloaded from disk, the same path `rawcnn cv` takes. No timing is asserted; seconds per
candidate are printed (the machine's load goes next to them in bench/RESULTS.md).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rawcnn.training.cv import cross_validate
from rawcnn.training.recipes import resolve
from rawcnn.training.train import Run

# what each candidate changes from a named recipe (epochs and patience are set on the command line);
# a third element names the model (default: custom, the paper's layout)
STRONG_AUG = {"translate": 0.1, "rotate": 10.0, "scale": 0.1, "brightness": 0.2}
CANDIDATES = {
    "paper": ("paper", {}),
    # the real-set candidates (issue 19): the paper's head against a global-average-pooling head; each
    # pins select_by, since the default recipe's changed (val-auc, then val-loss) with this table
    "custom": ("default", {"select_by": "val-auc"}, "custom"),
    "gap": ("default", {"select_by": "val-auc"}, "custom-gap"),
    "gap-aug": ("default", {**STRONG_AUG, "select_by": "val-auc"}, "custom-gap"),
    "gap-loss": ("default", {"select_by": "val-loss"}, "custom-gap"),
    "gap-aug-loss": ("default", {**STRONG_AUG, "select_by": "val-loss"}, "custom-gap"),
    "gap-smooth": ("default", {"select_by": "val-auc-smooth"}, "custom-gap"),
    "gap-aug-smooth": ("default", {**STRONG_AUG, "select_by": "val-auc-smooth"}, "custom-gap"),
    # the demo's recipe: He init, standardised input, lr 3e-3, batch 32, no augmentation, val-acc
    "demo": ("default", {"init": "he", "lr": 3e-3, "batch_size": 32, "warmup_epochs": 0.0, "clip_norm": 0.0,
                         "select_by": "val-acc", "augment": False}),
    # the best by hand: He, standardised, lr 3e-4, batch 16, val-acc, no augmentation
    "hand": ("default", {"init": "he", "lr": 3e-4, "batch_size": 16, "warmup_epochs": 0.0, "clip_norm": 0.0,
                         "select_by": "val-acc", "augment": False}),
    "default": ("default", {}),
    "he-std-aug": ("default", {"init": "he", "lr": 3e-4, "warmup_epochs": 1.0, "clip_norm": 5.0}),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None, help="Override every recipe's epochs (CPU budget).")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--init-from", default=None,
                    help="A checkpoint every fold starts from (rawcnn cv --init-from); rows named <candidate>+init.")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    table = os.path.join(a.out, "table.md")
    for name in a.candidates:
        base, over, model = (CANDIDATES[name] + ("custom",))[:3]
        st = resolve(base, **over, **({"epochs": a.epochs} if a.epochs else {}))
        tag = name + ("+init" if a.init_from else "")
        for seed in a.seeds:
            t0 = time.perf_counter()
            run = Run(out_dir=os.path.join(a.out, f"{tag}_s{seed}"), seed=seed, device=a.device, progress=False,
                      log=lambda m: None)
            rep = cross_validate(a.data, st, run, folds=a.folds, model=model, init_from=a.init_from)
            sec = time.perf_counter() - t0
            folds = " ".join(f"{r['auc']:.2f}" for r in rep["folds"])
            ci = rep["pooled"].get("auc_ci95") or [float("nan")] * 2
            row = (f"| {tag} | {seed} | {rep['auc_mean']:.3f} +- {rep['auc_sd']:.3f} | {folds} | "
                   f"{rep['pooled']['auc']:.3f} ({ci[0]:.3f}-{ci[1]:.3f}) | {rep['pooled']['accuracy']:.3f} | "
                   f"{' '.join(str(r['best_epoch']) for r in rep['folds'])} | {sec:.0f} |")
            print(row, flush=True)
            with open(table, "a") as fh:
                fh.write(row + "  <!-- " + json.dumps(dict(sorted(st.as_dict().items()))) + " -->\n")


def summarise(dirs):
    """Print the per-candidate summary of the cv.json files under `dirs` (<dir>/<candidate>_s<seed>/):
    the mean and sd of the per-seed mean fold AUCs, all folds pooled, pooled out-of-fold AUC and
    accuracy (means over the seeds)."""
    import glob

    import numpy as np
    runs = {}
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "*_s*", "cv.json"))):
            with open(path) as fh:
                rep = json.load(fh)
            runs.setdefault(os.path.basename(os.path.dirname(path)).rsplit("_s", 1)[0], []).append(rep)
    print("| candidate | seeds | per-fold AUC, mean of the seeds +- sd | all folds, mean +- sd (range) | "
          "pooled out-of-fold AUC (mean) | pooled accuracy (mean) |")
    print("|---|---|---|---|---|---|")
    for name, reps in runs.items():
        means = np.array([r["auc_mean"] for r in reps])
        folds = np.array([f["auc"] for r in reps for f in r["folds"]])
        sd = means.std(ddof=1) if means.size > 1 else 0.0
        print(f"| {name} | {', '.join(str(r['seed']) for r in reps)} | {means.mean():.3f} +- {sd:.3f} | "
              f"{folds.mean():.3f} +- {folds.std(ddof=1):.3f} ({folds.min():.2f}-{folds.max():.2f}) | "
              f"{np.mean([r['pooled']['auc'] for r in reps]):.3f} | "
              f"{np.mean([r['pooled']['accuracy'] for r in reps]):.3f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--summary":  # python bench/recipes.py --summary DIR [DIR ...]
        summarise(sys.argv[2:])
    else:
        main()
