"""Real TB radiographs for recipe work: a development set to choose a recipe on, and a confirmation
set the recipe never saw.

    RAWCNN_SHENZHEN=/path/to/pngs python bench/real_tb.py --out real-tb [--mc /path/to/mc/pngs]
        [--dadb /path/to/da+db] [--tbx11k /path/to/tbx11k/tb/pngs] [--masked /path/to/data]

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
    dadb/{normal,tb}/, dadb128.h5    with --dadb: a second confirmation set, the DA and DB sets
                           (Chauhan et al., "Role of Gist and PHOG features in computer-aided
                           diagnosis of tuberculosis without segmentation", PLoS ONE 9(11), 2014) as
                           the same mirror's TBX11K/imgs/extra/da+db/{train,val}/ holds them: n*, nx*
                           normal, p*, px* TB (176 files, 512 px), every one of them
    tbx_loc/{normal,tb}/, tbx_loc128.h5   with --tbx11k (and --dadb): TBX11K's TB radiographs
                           (tb####.png, 512 px; Liu et al., CVPR 2020, CC BY-NC-SA) with DA+DB's
                           normal images as the second class a set needs: the set whose TB images
                           bench/lesion_boxes.py scores heat maps on, with TBX11K's boxes
    montgomery/{CXR_png,masks}/, montgomery128.h5   with --masked: the whole Montgomery County set (138:
                           80 normal, 58 TB) with its lung masks, one file for both lungs, from a folder
                           holding cxr/MCUCXR_####_L.png and masks/MCUCXR_####_L.png (512 px copies, e.g.
                           github rochadiego/MultiResUNet-lung-segmentation's data/), prepared the README's
                           way: `rawcnn data prepare montgomery --input-size 128` (ROI from the masks)
    sz566/{CXR_png,mask}/, sz566_128.h5   with --masked: the 566 Shenzhen images of the same folder that
                           have masks (all 188 development images among them; none of Montgomery's)
    sznew/{CXR_png,mask}/, sznew128.h5   with --masked: those of the 566 that are not among --shenzhen's
                           copies (322 with the mirrors above: 142 normal, 180 TB), a Shenzhen set no
                           recipe was chosen on
    devm/{CXR_png,mask}/, devm128.h5, devm128_mo.h5   with --masked: the development images (the copies
                           --shenzhen gave) that have a mask there, with it: ROI from the masks, and the
                           same with --mask-outside (zero outside the lungs)
    poolMC/, poolDADB/, poolSZ/ {normal,tb}/ and their 128.h5   with --pools (needs --dadb and --masked):
                           every other public set with one target left out, to pretrain on (round 6's
                           candidate O; lungs cropped by the locator): poolMC = the --shenzhen copies +
                           sznew's images (named sznew_*) + DA+DB (dadb_*), 788, no Montgomery image;
                           poolDADB = the --shenzhen copies + sznew + Montgomery's 138, 750; poolSZ =
                           Montgomery + DA+DB, 314, no Shenzhen image
The split draws from the files in the order of their full paths, so point --shenzhen (and --mc) at
the mirror's mc+shenzhen folder, with its train/ and val/ inside, to get the recorded sets again
(checked: the same dev128.h5 and confirm128.h5 to the byte of every image; the 290 files in one
flat folder give another split). The split is by file, so it is by patient: each Shenzhen patient
has one radiograph. (Symbolic
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
DADB = re.compile(r"^([np])x?\d+\.(png|jpg)$")   # DA / DB: n = normal, p = TB
TBX = re.compile(r"^tb\d{4}\.png$")


def labelled(folder):
    """[(path, label)] of the CHNCXR / MCUCXR files directly in folder or its subfolders, by name."""
    out = []
    for p in sorted(glob.glob(os.path.join(folder, "**", "*.png"), recursive=True)):
        m = NAME.match(os.path.basename(p))
        if m:
            out.append((os.path.abspath(p), int(m.group(3))))
    return out


def link_tree(root, items, prefix=""):
    for path, label in items:
        d = os.path.join(root, ("normal", "tb")[label])
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, prefix + os.path.basename(path))
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
    ap.add_argument("--dadb", default=None, help="Folder holding DA/DB's n*, nx*, p*, px* images (a second "
                    "confirmation set).")
    ap.add_argument("--tbx11k", default=None, help="Folder holding TBX11K's tb####.png (needs --dadb).")
    ap.add_argument("--masked", default=None, help="Folder holding cxr/ and masks/ with MCUCXR_####_L.png and "
                    "CHNCXR_####_L.png images and lung masks of the same names (the Montgomery set, and masks for "
                    "the Shenzhen images).")
    ap.add_argument("--pools", action="store_true", help="Also the leave-one-target-out pretraining pools "
                    "(needs --dadb and --masked).")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dev-fraction", type=float, default=0.65)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-size", type=int, default=128)
    a = ap.parse_args(argv)
    if not a.shenzhen:
        sys.exit("give --shenzhen FOLDER or set RAWCNN_SHENZHEN")
    if a.pools and not (a.dadb and a.masked):
        sys.exit("--pools needs --dadb and --masked")
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
    sets = [("dev", dev), ("confirm", conf)]
    if a.dadb:
        dadb = [(p, int(DADB.match(os.path.basename(p)).group(1) == "p"))
                for p in sorted(glob.glob(os.path.join(a.dadb, "**", "*.*"), recursive=True))
                if DADB.match(os.path.basename(p))]
        sets.append(("dadb", dadb))
        if a.tbx11k:
            tb = [(p, 1) for p in sorted(glob.glob(os.path.join(a.tbx11k, "**", "*.png"), recursive=True))
                  if TBX.match(os.path.basename(p))]
            sets.append(("tbx_loc", [x for x in dadb if x[1] == 0] + tb))
    for name, items in sets:
        link_tree(os.path.join(a.out, name), items)
        n1 = sum(y for _, y in items)
        print(f"{name}: {len(items)} images ({len(items) - n1} normal, {n1} TB)")
        prepare(os.path.join(a.out, name), os.path.join(a.out, f"{name}{a.input_size}.h5"), a.input_size,
                "--roi", "locator", "--classes", "normal,tb")
    if a.masked:
        masked_sets(a, dev)
    if a.pools:
        pools(a, sz, dadb)


def prepare(folder, h5, input_size, *flags):
    """`rawcnn data prepare folder --out h5 --input-size S flags...`, unless h5 exists already."""
    if not os.path.exists(h5):
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        subprocess.run([sys.executable, "-m", "cli", "data", "prepare", folder, "--out", h5, "--input-size",
                        str(input_size), *flags], check=True, cwd=repo)


def nlm_tree(root, pairs, mask_folder, mask_suffix):
    """root/CXR_png/<name> and root/<mask_folder>/<stem><mask_suffix>.png from [(image, mask)] (copies)."""
    for image, mask in pairs:
        stem = os.path.splitext(os.path.basename(image))[0]
        for src, dst in ((image, os.path.join(root, "CXR_png", stem + ".png")),
                         (mask, os.path.join(root, mask_folder, stem + mask_suffix + ".png"))):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if not os.path.lexists(dst):
                shutil.copyfile(src, dst)


def masked_sets(a, dev):
    """The Montgomery set with masks, the 566 masked Shenzhen images, and the masked development images."""
    cxr, masks = os.path.join(a.masked, "cxr"), os.path.join(a.masked, "masks")
    have = {os.path.basename(p): p for p in glob.glob(os.path.join(masks, "*.png")) if NAME.match(os.path.basename(p))}
    images = {os.path.basename(p): p for p in glob.glob(os.path.join(cxr, "*.png")) if os.path.basename(p) in have}
    mc = sorted(n for n in images if n.startswith("MCUCXR"))
    sz = sorted(n for n in images if n.startswith("CHNCXR"))
    ours = {os.path.basename(p) for p, _ in labelled(a.shenzhen)}
    dev_masked = sorted((p, have[os.path.basename(p)]) for p, _ in dev if os.path.basename(p) in have)
    size = a.input_size
    jobs = [("montgomery", [(images[n], have[n]) for n in mc], "masks", "", [(f"montgomery{size}.h5", ())]),
            ("sz566", [(images[n], have[n]) for n in sz], "mask", "_mask", [(f"sz566_{size}.h5", ())]),
            ("sznew", [(images[n], have[n]) for n in sz if n not in ours], "mask", "_mask", [(f"sznew{size}.h5", ())]),
            ("devm", dev_masked, "mask", "_mask", [(f"devm{size}.h5", ()), (f"devm{size}_mo.h5", ("--mask-outside",))])]
    for name, pairs, mask_folder, suffix, outputs in jobs:
        nlm_tree(os.path.join(a.out, name), pairs, mask_folder, suffix)
        n1 = sum(int(NAME.match(os.path.basename(p)).group(3)) for p, _ in pairs)
        print(f"{name}: {len(pairs)} images with masks ({len(pairs) - n1} normal, {n1} TB)")
        for h5, flags in outputs:
            prepare(os.path.join(a.out, name), os.path.join(a.out, h5), size, *flags)

def pools(a, sz, dadb):
    """Round 6's pretraining pools: every other public set, one target left out (names as measured)."""
    cxr = os.path.join(a.masked, "cxr")
    masked = {os.path.basename(p) for p in glob.glob(os.path.join(a.masked, "masks", "*.png"))}
    ours = {os.path.basename(p) for p, _ in sz}
    others = [x for x in labelled(cxr) if os.path.basename(x[0]) in masked]
    sznew = [x for x in others if os.path.basename(x[0]).startswith("CHNCXR") and os.path.basename(x[0]) not in ours]
    mc = [x for x in others if os.path.basename(x[0]).startswith("MCUCXR")]
    jobs = [("poolMC", [(sz, ""), (sznew, "sznew_"), (dadb, "dadb_")]),
            ("poolDADB", [(sz, ""), (sznew, "sznew_"), (mc, "")]),
            ("poolSZ", [(dadb, "dadb_"), (mc, "")])]
    for name, parts in jobs:
        for items, prefix in parts:
            link_tree(os.path.join(a.out, name), items, prefix)
        n = sum(len(items) for items, _ in parts)
        n1 = sum(y for items, _ in parts for _, y in items)
        print(f"{name}: {n} images ({n - n1} normal, {n1} TB)")
        prepare(os.path.join(a.out, name), os.path.join(a.out, f"{name}{a.input_size}.h5"), a.input_size,
                "--roi", "locator", "--classes", "normal,tb")


if __name__ == "__main__":
    main()
