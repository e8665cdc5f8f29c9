"""Synthetic frontal chest radiographs with lung and lesion ground truth.

Shape legend: S image side in pixels (images are S x S); h, w a patch's height and width.

An X-ray image is bright where the body absorbs much (bone, heart, fluid) and dark where it
absorbs little (air in the lungs, air around the body). The picture is built as a brightness map
b(y, x) in [0, 1], the sum of layers, then exposed:

    b = air + body + lungs + heart + spine + ribs + clavicles + (texture + lesions) * lung_mask
    b = b + n,  n ~ N(0, sigma^2) per pixel     (quantum noise), then a Gaussian blur (detector)
    image = 255 * clip(c * b + o, 0, 1) ** gamma  (exposure: contrast c, offset o, gamma)

Geometry, in units of S, jittered per image: a torso with neck and shoulders; two lung fields,
each the upper half of a tilted ellipse (rounded apex, widest at the base) minus the dome of its
hemidiaphragm (the patient's right one higher, over the liver) and minus the heart, which bulges
to the patient's left (image right); aortic knob; spine with vertebral bodies; posterior ribs
(arches from the spine), fainter anterior ribs (sloping down medially); clavicles; a gastric air
bubble under the left hemidiaphragm; vessel texture strongest at the hila.

Lesions (abnormal images, 1 to 3, centred inside a lung, clipped to it):
    nodule         a sphere's projection: amp * sqrt(1 - d^2 / r^2), r = 3-5.5 % of S
    cavity         a thick-walled sphere with an air-filled centre, darker than the lung around it
    consolidation  a union of 3-6 ellipses, blurred (hazy), with texture
    effusion       fluid filling a lung base up to a meniscus y = level - m * u^2 that rises
                   towards the chest wall (u = 0 medially, 1 laterally)

Written in the NLM Montgomery layout (see rawcnn.data.readers): CXR_png/MCUCXR_####_L.png,
ManualMask/leftMask and rightMask (patient's left lung = image right), LesionMask (rawcnn's
extension; an empty mask for a normal image) and ClinicalReadings/*.txt. Each image has its own
Generator spawned from SeedSequence(seed), so image i is the same whatever n is, and the same
seed gives identical files.
"""
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from rawcnn.data.readers import read_montgomery
from rawcnn.files.fileio import atomic_path

LESION_KINDS = ("nodule", "cavity", "consolidation", "effusion")
SUBFOLDERS = ("CXR_png", "ManualMask/leftMask", "ManualMask/rightMask", "LesionMask",
              "ClinicalReadings")


@dataclass
class SynthCase:
    """One synthetic radiograph in memory.

    image        (S, S) uint8
    right_lung   (S, S) uint8 0/255, the patient's right lung (image left)
    left_lung    (S, S) uint8 0/255, the patient's left lung (image right)
    lesion_mask  (S, S) uint8 0/255, empty for a normal image
    lesions      [(kind, side), ...], side 'right' or 'left' (the patient's)
    """
    image: np.ndarray
    right_lung: np.ndarray
    left_lung: np.ndarray
    lesion_mask: np.ndarray
    lesions: list


def _px(v, S):
    """Length or coordinate in units of S -> int pixels."""
    return int(round(v * S))


def _body(rng, S, p):
    """Torso, neck and shoulders: a polygon smoothed by corner cutting. Returns (S, S) uint8 0/1."""
    cx, y_apex, wc = p["cx"], p["y_apex"], p["wc"]
    half = np.array([[0.07, -0.2], [0.075, y_apex - 0.04], [0.16, y_apex - 0.01], [0.3, y_apex],
                     [wc + 0.08, y_apex + 0.07], [wc + 0.07, y_apex + 0.17], [wc, y_apex + 0.26],
                     [wc + 0.01, p["y_base"]], [wc - 0.02, 1.2]])  # (9, 2) right half, x from the midline
    outline = np.concatenate([half + [cx, 0], (half * [-1, 1] + [cx, 0])[::-1]])  # (18, 2)
    for _ in range(3):  # Chaikin corner cutting: each edge becomes its 1/4 and 3/4 points
        q, r = outline, np.roll(outline, -1, axis=0)
        outline = np.stack([0.75 * q + 0.25 * r, 0.25 * q + 0.75 * r], axis=1).reshape(-1, 2)
    body = np.zeros((S, S), np.uint8)  # (S, S)
    cv2.fillPoly(body, [np.round(outline * S).astype(np.int32)], 1)
    return body


def _lung(rng, S, p, s):
    """One lung field before the heart is cut out; s = -1 image left (patient's right), +1 image right.

    The upper half of a tilted ellipse (rounded apex, widest at the base) minus the dome of the
    hemidiaphragm, an ellipse whose top rises dome_h above the lung base. Returns (S, S) uint8 0/1.
    """
    cx, m, hw = p["cx"], p["m"], p["hw"]
    yb = p["y_base"] - (rng.uniform(0.01, 0.05) if s < 0 else 0.0)  # the liver lifts the right dome
    ya = p["y_apex"] + rng.uniform(-0.01, 0.01)
    aw = (hw - m) / 2
    lung = np.zeros((S, S), np.uint8)  # (S, S)
    cv2.ellipse(lung, (_px(cx + s * (m + aw), S), _px(yb, S)), (_px(aw, S), _px(yb - ya, S)),
                -s * rng.uniform(2, 7), 180, 360, 1, -1)
    dome_h, bd = rng.uniform(0.05, 0.09), 0.2
    dome = np.zeros((S, S), np.uint8)  # (S, S)
    cv2.ellipse(dome, (_px(cx + s * (m + 0.9 * aw), S), _px(yb + bd - dome_h, S)),
                (_px(1.3 * aw, S), _px(bd, S)), 0, 0, 360, 1, -1)
    return lung & (1 - dome)


def _anatomy(rng, S):
    """Draw the soft-tissue anatomy.

    Returns b (S, S) float32 brightness, right and left lung (S, S) uint8 0/1 (the patient's
    sides), body (S, S) uint8 0/1, and p, the geometry in units of S.
    """
    cx, dy, k = 0.5 + rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.03), rng.uniform(0.92, 1.05)
    hw, m = rng.uniform(0.30, 0.35) * k, rng.uniform(0.04, 0.055) * k  # chest, mediastinum half-widths
    y_apex = 0.13 + dy
    p = dict(cx=cx, hw=hw, m=m, y_apex=y_apex, y_base=y_apex + rng.uniform(0.50, 0.56) * k,
             wc=hw + rng.uniform(0.04, 0.08))
    body = _body(rng, S, p)
    heart = np.zeros((S, S), np.uint8)  # (S, S)
    hx, hy = cx + rng.uniform(0.03, 0.06) * k, p["y_base"] - rng.uniform(0.05, 0.08) * k
    cv2.ellipse(heart, (_px(hx, S), _px(hy, S)),
                (_px(rng.uniform(0.13, 0.17) * k, S), _px(rng.uniform(0.11, 0.13) * k, S)),
                rng.uniform(10, 25), 0, 360, 1, -1)  # bulging to the patient's left, apex down
    cv2.ellipse(heart, (_px(cx + m, S), _px(y_apex + 0.19 * k, S)), (_px(0.022 * k, S), _px(0.03 * k, S)),
                0, 0, 360, 1, -1)  # aortic knob
    right, left = (_lung(rng, S, p, s) & (1 - heart) & body for s in (-1, 1))
    b = np.full((S, S), rng.uniform(0.02, 0.06), np.float32)  # (S, S) air
    ramp = np.linspace(0.0, 0.08, S, dtype=np.float32)[:, None]  # (S, 1) thicker tissue lower down
    b += body * (rng.uniform(0.48, 0.56) + ramp)
    b -= (right | left) * np.float32(rng.uniform(0.30, 0.36))
    heart[_px(p["y_base"] - 0.04, S):] = 0  # the heart's shadow ends on the diaphragm
    b += heart * np.float32(rng.uniform(0.03, 0.06))
    return b, right, left, body, p


def _bones(rng, S, p):
    """Spine, ribs and clavicles as one additive brightness layer (S, S) float32."""
    cx, hw, ya, yb = p["cx"], p["hw"], p["y_apex"], p["y_base"]
    bone = np.zeros((S, S), np.float32)  # (S, S)
    half = rng.uniform(0.03, 0.04)
    cv2.rectangle(bone, (_px(cx - half, S), 0), (_px(cx + half, S), S), 0.06, -1)
    step = rng.uniform(0.032, 0.04)
    for y in np.arange(ya - 0.1, 1.0, step):  # vertebral bodies, disc spaces between
        cv2.rectangle(bone, (_px(cx - half, S), _px(y, S)), (_px(cx + half, S), _px(y + 0.75 * step, S)),
                      0.09, -1)
    thick = max(1, _px(rng.uniform(0.016, 0.022), S))
    gap = (yb - ya) / 9.5
    for i in range(10):  # posterior ribs: arches from the spine, down along the chest wall
        a = (hw - 0.03) * 0.55 * (0.55 + 0.45 * min(1.0, i / 4))
        bb = rng.uniform(0.07, 0.1)
        y = ya - 0.03 + i * gap
        for s in (-1, 1):
            c = (_px(cx + s * (0.03 + a), S), _px(y + bb, S))
            start, end = (180, 340) if s > 0 else (200, 360)
            cv2.ellipse(bone, c, (_px(a, S), _px(bb, S)), 0, start, end, 0.075, thick, cv2.LINE_AA)
    for i in range(6):  # anterior ribs: fainter, from the chest wall down towards the midline
        a, y = hw * 0.8, ya + 0.02 + i * gap * 1.1
        for s in (-1, 1):
            start, end = (105, 180) if s < 0 else (0, 75)
            cv2.ellipse(bone, (_px(cx + s * (hw - a), S), _px(y, S)), (_px(a, S), _px(0.12, S)),
                        0, start, end, 0.035, thick, cv2.LINE_AA)
    for s in (-1, 1):  # clavicles, and the humeral heads at the shoulders
        pts = np.array([[cx + s * 0.03, ya + 0.03], [cx + s * 0.17, ya - 0.005],
                        [cx + s * (p["wc"] - 0.02), ya + rng.uniform(-0.03, 0.0)]]) * S
        cv2.polylines(bone, [np.round(pts).astype(np.int32)], False, 0.11,
                      max(1, _px(0.024, S)), cv2.LINE_AA)
        cv2.circle(bone, (_px(cx + s * (p["wc"] + 0.05), S), _px(ya + 0.08, S)), _px(0.06, S), 0.06, -1)
    return bone


def _texture(rng, S, p):
    """Vessel markings: smooth noise plus a bump at each hilum. Returns (S, S) float32."""
    n = 48
    noise = cv2.GaussianBlur(rng.standard_normal((n, n)).astype(np.float32), (0, 0), 1.0)  # (n, n)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n  # (n, n) each
    hy = (p["y_apex"] + p["y_base"]) / 2
    hila = sum(np.exp(-((xx - p["cx"] - s * 0.1) ** 2 + (yy - hy) ** 2) / (2 * 0.09 ** 2))
               for s in (-1, 1))  # (n, n)
    tex = 0.06 * hila + 0.06 * noise * (0.4 + hila)  # (n, n)
    return cv2.resize(tex, (S, S), interpolation=cv2.INTER_CUBIC)  # (S, S)


def _place(rng, dist, r):
    """A (y, x) centre whose distance to the lung edge is at least r (or the deepest point)."""
    ok = np.flatnonzero(dist.ravel() >= r)
    i = ok[rng.integers(len(ok))] if len(ok) else int(np.argmax(dist))
    return divmod(int(i), dist.shape[1])


def _patch(y, x, half, S):
    """Slices of a square patch of half-width `half` around (y, x), clipped to the image."""
    return slice(max(0, y - half), min(S, y + half + 1)), slice(max(0, x - half), min(S, x + half + 1))


def _sphere(lesion, mask, y, x, r, amp, S):
    """Add amp * sqrt(1 - d^2/r^2) around (y, x) to lesion; mark d <= r in mask (unless None)."""
    sy, sx = _patch(y, x, int(np.ceil(r)) + 1, S)
    d2 = ((np.arange(sy.start, sy.stop) - y)[:, None] ** 2
          + (np.arange(sx.start, sx.stop) - x)[None, :] ** 2) / r ** 2  # (h, w)
    lesion[sy, sx] += amp * np.sqrt(np.clip(1 - d2, 0, 1)).astype(np.float32)
    if mask is not None:
        mask[sy, sx] |= d2 <= 1


def _effusion(rng, lesion, mask, lung, s, S, amp_k=1.0):
    """Fluid in the base of `lung` (side s: -1 image left, +1 image right) up to a meniscus."""
    ys, xs = np.nonzero(lung)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    level = y1 - rng.uniform(0.25, 0.4) * (y1 - y0)
    u = (np.arange(x0, x1) - (x1 if s < 0 else x0)) / max(x1 - x0, 1)  # (w,) 0 medial, 1 lateral
    top = level - rng.uniform(0.03, 0.07) * S * np.abs(u) ** 2  # (w,) meniscus
    rows = np.arange(y0, y1)[:, None]  # (h, 1)
    fluid = (rows >= top[None, :]) & (lung[y0:y1, x0:x1] > 0)  # (h, w)
    depth = np.clip((rows - level) / (y1 - level), 0, 1)  # (h, 1) denser towards the base
    amp = rng.uniform(0.28, 0.36) * amp_k
    lesion[y0:y1, x0:x1] += fluid * (amp * (0.8 + 0.2 * depth)).astype(np.float32)
    mask[y0:y1, x0:x1] |= fluid


def _consolidation(rng, lesion, mask, y, x, S, amp_k=1.0):
    """A hazy irregular patch: a union of ellipses, blurred, around (y, x)."""
    half = _px(0.14, S)
    sy, sx = _patch(y, x, half, S)
    blob = np.zeros((sy.stop - sy.start, sx.stop - sx.start), np.uint8)  # (h, w)
    for _ in range(rng.integers(3, 7)):
        c = (x - sx.start + _px(rng.uniform(-0.04, 0.04), S), y - sy.start + _px(rng.uniform(-0.04, 0.04), S))
        ax = (max(1, _px(rng.uniform(0.025, 0.06), S)), max(1, _px(rng.uniform(0.025, 0.06), S)))
        cv2.ellipse(blob, c, ax, rng.uniform(0, 180), 0, 360, 1, -1)
    haze = cv2.GaussianBlur(blob.astype(np.float32), (0, 0), 0.012 * S)  # (h, w)
    grain = cv2.resize(rng.uniform(0.75, 1.25, (5, 5)).astype(np.float32), haze.shape[::-1],
                       interpolation=cv2.INTER_CUBIC)  # (h, w) mottled density
    lesion[sy, sx] += np.float32(rng.uniform(0.22, 0.32) * amp_k) * haze * grain
    mask[sy, sx] |= blob.astype(bool)


def _lesions(rng, S, right, left, kinds, scale=1.0):
    """Draw the lesions `kinds`. Returns (lesion (S,S) float32, mask (S,S) bool, [(kind, side)]).

    scale: (amplitude factor, size factor) of nodules and cavities, amplitude of the others;
    1.0 is the standard set (the random draws are the same whatever the scale).
    """
    amp_k, r_k = (1.0, 1.0) if scale == 1.0 else scale
    lesion = np.zeros((S, S), np.float32)  # (S, S)
    mask = np.zeros((S, S), bool)  # (S, S)
    dists = [cv2.distanceTransform(lung, cv2.DIST_L2, 3) for lung in (right, left)]  # (S, S) each
    placed = []
    for kind in kinds:
        side = int(rng.integers(2))  # 0: patient's right lung (image left), 1: left lung
        lung, dist = (right, left)[side], dists[side]
        if kind == "effusion":
            _effusion(rng, lesion, mask, lung, 2 * side - 1, S, amp_k)
        elif kind == "consolidation":
            y, x = _place(rng, dist, 0.06 * S)
            _consolidation(rng, lesion, mask, y, x, S, amp_k)
        else:
            r = (rng.uniform(0.03, 0.055) * S if kind == "nodule" else rng.uniform(0.045, 0.07) * S) * r_k
            y, x = _place(rng, dist, r)
            amp = rng.uniform(0.3, 0.42) * amp_k
            _sphere(lesion, mask, y, x, r, amp, S)
            if kind == "cavity":  # air-filled centre (already inside the mask): remove more than the wall added
                _sphere(lesion, None, y, x, r * rng.uniform(0.5, 0.65), -amp * rng.uniform(1.3, 1.6), S)
        placed.append((kind, ("right", "left")[side]))
    return lesion, mask, placed


def _pick_kinds(rng):
    """1-3 lesion kinds, at most one effusion."""
    kinds = list(rng.choice(LESION_KINDS, size=int(rng.integers(1, 4))))
    while kinds.count("effusion") > 1:
        kinds[kinds.index("effusion")] = "nodule"
    return [str(k) for k in kinds]


DIFFICULTIES = ("standard", "hard")
# hard: lesion amplitude and size factors, exposure ranges (contrast, offset, gamma), noise sigma,
# and the largest exposure gradient across the image (the heel effect, uneven positioning).
# Lesions keep the standard density and size: at 0.3x density and 0.7x width (the first version)
# no recipe fitted even its training images in 40 epochs (bench/RESULTS.md, "Recipes on the hard
# synthetic set"); one lesion instead of 1-3 and the exposure and noise below make it hard.
HARD = {"lesion": (1.0, 1.0), "contrast": (0.65, 1.35), "offset": (-0.12, 0.12), "gamma": (0.65, 1.5),
        "noise": (0.02, 0.045), "gradient": 0.15}


def render_case(rng, size=512, abnormal=False, kinds=None, difficulty="standard"):
    """Render one radiograph in memory; `kinds` (list of LESION_KINDS) overrides the random pick.

    difficulty 'hard': one lesion instead of 1-3, noisier, exposure (contrast, offset, gamma)
    varying about twice as much, plus a random brightness gradient across the image (HARD).
    'standard' draws exactly what it always drew.

    Returns a SynthCase (image (S, S) uint8 and its masks, see SynthCase).
    """
    S = int(size)
    b, right, left, body, p = _anatomy(rng, S)
    b += _bones(rng, S, p) * body
    gastric = (_px(p["cx"] + 0.17, S), _px(p["y_base"] + 0.06, S))
    cv2.ellipse(b, gastric, (_px(0.05, S), _px(0.03, S)), 0, 0, 360, float(b[gastric[::-1]]) - 0.12, -1)
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"synthesize: difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    hard = difficulty == "hard"
    if kinds is None:
        kinds = _pick_kinds(rng)[:1 if hard else 3] if abnormal else []
    lesion, mask, placed = _lesions(rng, S, right, left, kinds, HARD["lesion"] if hard else 1.0)
    lung = (right | left).astype(np.float32)  # (S, S)
    b += (_texture(rng, S, p) + lesion) * lung
    noise = rng.standard_normal((S, S), dtype=np.float32)  # (S, S), drawn before its sigma
    b += noise * np.float32(rng.uniform(*HARD["noise"]) if hard else rng.uniform(0.01, 0.02))
    b = cv2.GaussianBlur(b, (0, 0), rng.uniform(0.8, 1.6) * S / 512)
    if hard:
        c, o, gamma = (rng.uniform(*HARD[k]) for k in ("contrast", "offset", "gamma"))
        gy, gx = rng.uniform(-HARD["gradient"], HARD["gradient"], 2)
        ramp = np.linspace(-0.5, 0.5, S, dtype=np.float32)  # (S,)
        b += np.float32(gy) * ramp[:, None] + np.float32(gx) * ramp[None, :]
    else:
        c, o, gamma = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.05), rng.uniform(0.8, 1.25)
    lut = 255 * np.clip(np.arange(256) / 255 * c + o, 0, 1) ** gamma  # (256,)
    u8 = np.clip(b * 255, 0, 255).astype(np.uint8)  # (S, S)
    image = cv2.LUT(u8, np.rint(lut).astype(np.uint8))  # (S, S)
    lesion_mask = (mask & (lung > 0)).astype(np.uint8) * 255  # (S, S)
    return SynthCase(image, right * 255, left * 255, lesion_mask, placed)


def _reading(rng, case):
    """The clinical reading text of a case (Montgomery style)."""
    sex, age = ("F", "M")[int(rng.integers(2))], int(rng.integers(18, 80))
    finding = "; ".join(f"{kind} in the {side} lung" for kind, side in case.lesions) or "normal"
    return f"Patient's Sex: {sex}\nPatient's Age: {age:03d}Y\n{finding}\n"


def _write_png(path, x):
    ok, buf = cv2.imencode(".png", x)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path, check=False) as tmp:  # synthesize() has its own overwrite rule
        buf.tofile(tmp)


def synthesize(out_dir, n, size=512, seed=0, abnormal_fraction=0.5, progress=True, overwrite=False,
               difficulty="standard"):
    """Write n synthetic radiographs in the Montgomery layout under out_dir; return their Records.

    round(n * abnormal_fraction) images are abnormal (label 1), which ones drawn from `seed`.
    An out_dir that already holds files in the layout's subfolders is refused unless
    overwrite=True, which first deletes the MCUCXR_* files there (and nothing else).
    difficulty: 'standard' or 'hard' (render_case: subtle lesions, varied exposure, more noise).
    Returns rawcnn.data.records.Records, as read_montgomery(out_dir) gives them.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"synthesize: difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if int(n) < 1 or int(size) < 32:
        raise ValueError(f"synthesize: need n >= 1 and size >= 32, got n={n}, size={size}")
    if not 0.0 <= abnormal_fraction <= 1.0:
        raise ValueError(f"synthesize: abnormal_fraction must be in [0, 1], got {abnormal_fraction}")
    out = Path(out_dir)
    folders = [out / sub for sub in SUBFOLDERS]
    old = [f for d in folders if d.is_dir() for f in d.iterdir()]
    if old and not overwrite:
        raise ValueError(f"synthesize: {out} already holds a data set ({len(old)} files); "
                         f"give --overwrite (overwrite=True) to replace it")
    for f in old:
        if f.name.startswith("MCUCXR_"):
            f.unlink()
    for d in folders:
        d.mkdir(parents=True, exist_ok=True)
    seq = np.random.SeedSequence(seed)
    labels = np.zeros(int(n), np.int64)  # (n,)
    labels[:int(round(n * abnormal_fraction))] = 1
    labels = np.random.default_rng(seq).permutation(labels)
    for i, (child, label) in enumerate(tqdm(list(zip(seq.spawn(int(n)), labels, strict=True)), desc="synth",
                                            disable=not progress)):
        rng = np.random.default_rng(child)
        case = render_case(rng, size, abnormal=bool(label), difficulty=difficulty)
        stem = f"MCUCXR_{i + 1:04d}_{label}"
        _write_png(out / "CXR_png" / f"{stem}.png", case.image)
        _write_png(out / "ManualMask" / "leftMask" / f"{stem}.png", case.left_lung)
        _write_png(out / "ManualMask" / "rightMask" / f"{stem}.png", case.right_lung)
        _write_png(out / "LesionMask" / f"{stem}.png", case.lesion_mask)
        (out / "ClinicalReadings" / f"{stem}.txt").write_text(_reading(rng, case), encoding="utf-8")
    return read_montgomery(out)
