"""Real TB radiographs for recipe work: a development set to choose a recipe on, and a confirmation
set the recipe never saw.

    RAWCNN_SHENZHEN=/path/to/pngs python bench/real_tb.py --out real-tb [--mc /path/to/mc/pngs]

Source (not shipped: fetch it yourself): the Shenzhen Hospital TB set (Jaeger et al., "Two public
chest X-ray datasets for computer-aided screening of pulmonary diseases", Quant Imaging Med Surg
4(6), 2014; U.S. National Library of Medicine), 512 px copies named CHNCXR_####_L.png with L the
label (1 = TB), e.g. the 290 files of a public mirror's TBX11K/imgs/extra/mc+shenzhen/{train,val}/.
Optionally a few Montgomery County images (MCUCXR_####_L.png, same paper) join the confirmation set.

What it writes under --out:
    dev/{normal,tb}/       copies (hard links where the file system allows) of the development
                           images: a stratified random part, --dev-fraction of each class, drawn
                           with --seed
    confirm/{normal,tb}/   the rest (plus the Montgomery images when given)
    dev128.h5, confirm128.h5   `rawcnn data prepare ... --input-size 128 --roi locator` of each
                           (no lung masks come with these copies: the lung-field locator crops)
The split is by file, so it is by patient: each Shenzhen patient has one radiograph. (Symbolic
links would not do: `data prepare` refuses images that resolve outside the folder it is given.)
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np

NAME = re.compile(r"^(CHNCXR|MCUCXR)_(\d{4})_([01])\.png$")


def labelled(folder):
    """[(path, label)] of the CHNCXR / MCUCXR files directly in folder or its subfolders, by name."""
    out = []
    for p in sorted(glob.glob(os.path.join(folder, "**", "*.png"), recursive=True)):
        m = NAME.match(os.path.basename(p))
        if m:
            out.append((os.path.abspath(p), int(m.group(3))))
    return out


def link_tree(root, items):
    for path, label in items:
        d = os.path.join(root, ("normal", "tb")[label])
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, os.path.basename(path))
        if not os.path.lexists(dst):
            try:
                os.link(path, dst)
            except OSError:  # another file system
                shutil.copyfile(path, dst)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shenzhen", default=os.environ.get("RAWCNN_SHENZHEN"),
                    help="Folder holding CHNCXR_####_L.png (default: $RAWCNN_SHENZHEN).")
    ap.add_argument("--mc", default=None, help="Folder holding MCUCXR_####_L.png for the confirmation set.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dev-fraction", type=float, default=0.65)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-size", type=int, default=128)
    a = ap.parse_args(argv)
    if not a.shenzhen:
        sys.exit("give --shenzhen FOLDER or set RAWCNN_SHENZHEN")
    sz = [x for x in labelled(a.shenzhen) if os.path.basename(x[0]).startswith("CHNCXR")]
    if not sz:
        sys.exit(f"{a.shenzhen}: no CHNCXR_####_L.png files")
    rng = np.random.default_rng(a.seed)
    dev, conf = [], []
    for c in (0, 1):
        idx = rng.permutation([i for i, (_, y) in enumerate(sz) if y == c])
        k = int(round(a.dev_fraction * idx.size))
        dev += [sz[i] for i in sorted(idx[:k])]
        conf += [sz[i] for i in sorted(idx[k:])]
    if a.mc:
        conf += [x for x in labelled(a.mc) if os.path.basename(x[0]).startswith("MCUCXR")]
    for name, items in (("dev", dev), ("confirm", conf)):
        link_tree(os.path.join(a.out, name), items)
        n1 = sum(y for _, y in items)
        print(f"{name}: {len(items)} images ({len(items) - n1} normal, {n1} TB)")
        h5 = os.path.join(a.out, f"{name}{a.input_size}.h5")
        if not os.path.exists(h5):
            subprocess.run([sys.executable, "-m", "cli", "data", "prepare", os.path.join(a.out, name), "--out", h5,
                            "--input-size", str(a.input_size), "--roi", "locator", "--classes", "normal,tb"],
                           check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


if __name__ == "__main__":
    main()
