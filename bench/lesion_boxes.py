"""Heat maps scored on real TB lesion boxes, beside two maps that know nothing of the image.

    python bench/lesion_boxes.py CKPT --data set.h5 --boxes boxes.csv --split val [--layer L] --out DIR

CKPT: a classifier trained on real radiographs (class 1 = TB); set.h5: a prepared set holding the
boxed TB images (`rawcnn data prepare`; a second class of normal images is only there because a
set needs two classes); boxes.csv: their radiologists' boxes in source-image pixels (any format
`rawcnn viz score --boxes` reads). Real boxes: TBX11K (Liu et al., "Rethinking Computer-aided
Tuberculosis Diagnosis", CVPR 2020; CC BY-NC-SA), not shipped: see bench/RESULTS.md for where the
images and boxes were found.

It runs `rawcnn viz score` (channel, Grad-CAM, saliency) on the boxed images of --split, then scores
two image-blind maps on the same images with the same functions (rawcnn.viz.score.score_map):
    flat    a constant map: its maximum is anywhere, so its pointing is reported as a uniformly
            drawn pixel's chance of lying in a box, which is also its energy in the boxes: their area
            share (the `lesion_area` column), the chance level of the pointing and energy figures
    atlas   the mean of the box masks of the *train* split's images (where TB lesions usually are in
            a cropped radiograph: the upper lung fields); a heat map that does not beat it has
            learnt a location prior, not the lesion in front of it
Writes DIR/score.csv, DIR/score_images.csv (viz score's) and DIR/baselines.csv; prints one table.
"""
import argparse
import csv
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rawcnn.app.viz import ScoreOptions, viz_score  # noqa: E402
from rawcnn.data.boxes import apply_boxes, read_boxes  # noqa: E402
from rawcnn.data.dataset import load_dataset  # noqa: E402
from rawcnn.viz.score import lesion_marked, score_map  # noqa: E402


def baselines(data, split):
    """{name: {'n', 'pointing', 'energy_lesion', 'iou'}} of the flat and atlas maps on split's boxed images."""
    train, s = data.split("train"), data.split(split)
    atlas = train.lesion_masks[lesion_marked(train)].astype(np.float64).mean(axis=0)
    keep = lesion_marked(s)
    out = {}
    for name, heat in (("flat", np.ones_like(atlas)), ("atlas (train boxes)", atlas / atlas.max())):
        rows = [score_map(heat, s.lesion_masks[i]) for i in keep]
        if name == "flat":  # argmax of a constant is the first pixel: report the chance of a random one
            for r in rows:
                r["pointing"] = r["lesion_area"]
        keys = ("pointing", "energy_lesion", "iou", "lesion_area")
        out[name] = {"n": len(rows), **{k: float(np.nanmean([r[k] for r in rows]))
                                        if any(np.isfinite(r[k]) for r in rows) else float("nan") for k in keys}}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--boxes", required=True)
    ap.add_argument("--split", default="val", choices=["train", "val", "test", "all"])
    ap.add_argument("--layer", default=None, help="The channel and Grad-CAM maps' layer (default: viz score's).")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    data = apply_boxes(load_dataset(a.data), read_boxes(a.boxes))
    res = viz_score(a.checkpoint, data, os.path.join(a.out, "score"), ScoreOptions(split=a.split, layer=a.layer))
    base = baselines(data, a.split)
    with open(os.path.join(a.out, "baselines.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["map", "n", "pointing", "energy_lesion", "iou", "lesion_area"])
        for k, r in base.items():
            w.writerow([k, r["n"], r["pointing"], r["energy_lesion"], r["iou"], r["lesion_area"]])
    print(f"{a.checkpoint} on {a.data} split {a.split}, boxes {a.boxes}; layer {res['layer']}, "
          f"channel {res['channel']}")
    print(f"{'map':<22}{'n':>5}{'pointing':>10}{'energy':>9}{'iou':>7}{'box area':>10}{'zero maps':>11}")
    for r in res["summary"]:
        print(f"{r['method']:<22}{r['n']:>5}{r['pointing']:>10.3f}{r['energy_lesion']:>9.3f}{r['iou']:>7.3f}"
              f"{r['lesion_area']:>10.3f}{r['zero_maps']:>11}")
    for k, r in base.items():
        print(f"{k:<22}{r['n']:>5}{r['pointing']:>10.3f}{r['energy_lesion']:>9.3f}{r['iou']:>7.3f}"
              f"{r['lesion_area']:>10.3f}{'':>11}")


if __name__ == "__main__":
    main()
