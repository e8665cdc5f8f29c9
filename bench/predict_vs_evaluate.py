"""`rawcnn predict` on a prepared set's test PNGs without masks vs `rawcnn evaluate` on the split.

The issue-10 check on the demo's data: the prepared set cropped the lung ROI from the masks; predict,
given no masks, crops it with the lung-field locator. A small 2-conv net (the SPEC of
tests/test_predict_contract.py at the set's input size) is trained first, because the demo's custom
model takes hours on a loaded 2-core machine; give --checkpoint to use a trained one instead.

    rawcnn demo --out demo-run            # or any run that left demo-run/data and demo-run/prepared.h5
    python bench/predict_vs_evaluate.py demo-run --lr 1e-2 --epochs 10
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo_dir")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from rawcnn.data import load_dataset
    d = a.demo_dir
    data = load_dataset(f"{d}/prepared.h5")
    ckpt = a.checkpoint
    if ckpt is None:
        from rawcnn.app.demo import standardise
        from rawcnn.engine.models import build
        from rawcnn.training.recipes import resolve
        from rawcnn.training.train import Run, train
        from test_predict_contract import SPEC
        S = int(data.images.shape[-1])
        t0 = time.time()
        net = build({**SPEC, "input": [3, S, S]}, num_classes=2, seed=a.seed, weight_std="he")
        out = f"{d}/run_small_lr{a.lr:g}"
        r = train(net, data, resolve("paper", epochs=a.epochs, batch_size=16, lr=a.lr),
                  Run(out_dir=out, seed=a.seed, progress=False, log=lambda m: None),
                  preprocessing=standardise(data.split("train").images, S))
        print(f"trained: {r['status']}, best epoch {r['best_epoch']}, val {r['best_val_acc']:.4f}, "
              f"{time.time() - t0:.0f} s", flush=True)
        ckpt = f"{out}/best.h5"
    part = data.split("test")
    files = [f"{d}/data/CXR_png/{n}.png" for n in part.names]
    cli = [sys.executable, "-c", "import cli; cli.main()"]
    ev = subprocess.run(cli + ["evaluate", ckpt, "--data", f"{d}/prepared.h5", "--json"], capture_output=True,
                        text=True, check=True)
    acc_eval = json.loads(ev.stdout.strip().splitlines()[-1])["accuracy"]
    pr = subprocess.run(cli + ["predict", "--checkpoint", ckpt, *files], capture_output=True, text=True, check=True)
    top = [line.split() for line in pr.stdout.splitlines() if re.match(r"^\s+\d+\s+[\d.]+", line)][::2]
    acc_pred = float(np.mean(np.array([int(t[0]) for t in top]) == part.labels))
    misses = sum("found no lung field" in line for line in pr.stderr.splitlines())
    print(f"evaluate (test split, as prepared): {acc_eval:.4f}; predict on the {len(files)} test PNGs without "
          f"masks: {acc_pred:.4f}; difference {abs(acc_eval - acc_pred):.4f}; locator found nothing on {misses}")


if __name__ == "__main__":
    main()
