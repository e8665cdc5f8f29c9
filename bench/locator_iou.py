"""How well the mask-free lung-field locator (rawcnn.data.locator) boxes the lungs.

For every image with lung masks: IoU of locate_lungs(image) with the bounding box of the real lung
masks (a miss, None, counts as IoU 0). Either a synthetic set made here (seeded) or a folder in a
layout rawcnn reads with lung masks (Montgomery, Shenzhen with mask/).

    python bench/locator_iou.py --n 200 --size 256 --seed 0
    python bench/locator_iou.py --root path/to/MontgomerySet
"""
import argparse
import tempfile
import time

import numpy as np

from rawcnn.data import load_image, load_mask, read_any, synthesize
from rawcnn.data.locator import NAME, box_iou, locate_lungs, mask_box


def measure(root):
    recs = [r for r in read_any(root) if r.lung_masks]
    ious, t0 = [], time.perf_counter()
    for r in recs:
        x = load_image(r.path)
        truth = mask_box(load_mask(r.lung_masks, x.shape))
        found = locate_lungs(x)
        ious.append(0.0 if found is None or truth is None else box_iou(truth, found))
    return np.array(ious), (time.perf_counter() - t0) / max(len(recs), 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="A folder with lung masks; default: synthesise one.")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = a.root
        if root is None:
            root = f"{tmp}/syn"
            synthesize(root, a.n, size=a.size, seed=a.seed, progress=False)
        ious, sec = measure(root)
    where = a.root or f"{a.n} synthetic radiographs, {a.size} px, seed {a.seed}"
    print(f"locator {NAME} on {where}: box IoU mean {ious.mean():.3f}, median {np.median(ious):.3f}, "
          f"min {ious.min():.3f}, share >= 0.8: {np.mean(ious >= 0.8):.3f}, misses {int(np.sum(ious == 0))}; "
          f"{sec * 1e3:.1f} ms per image")


if __name__ == "__main__":
    main()
