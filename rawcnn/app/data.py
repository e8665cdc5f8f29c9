"""`rawcnn data synth` and `rawcnn data prepare`."""
from rawcnn.data import Labelling, default_settings, synthesize
from rawcnn.data import prepare as run


def synth(out, n=200, *, size=512, abnormal_fraction=0.5, seed=0, overwrite=False, difficulty="standard"):
    """`rawcnn data synth`: rawcnn.data.synthesize; returns its records."""
    return synthesize(out, n, size=size, seed=seed, abnormal_fraction=abnormal_fraction, overwrite=overwrite,
                      difficulty=difficulty)


def prepare(src, out, options):
    """`rawcnn data prepare`: the settings from the options, then rawcnn.data.prepare; returns its summary.

    options: the command's options by name: input_size, roi_crop, roi (overrides roi_crop), classes (a
    comma-separated string or None), finding, roi_margin, base_size (0 skips the resize), clahe,
    clahe_clip_limit, clahe_tile_grid, mask_outside, seed, skip_bad.
    """
    o = options
    s = default_settings(o["input_size"])
    s.update(roi_crop=o["roi_crop"], roi_margin=o["roi_margin"], base_size=o["base_size"] or None, clahe=o["clahe"],
             clahe_clip_limit=o["clahe_clip_limit"], clahe_tile_grid=o["clahe_tile_grid"],
             mask_outside=o["mask_outside"])
    if o["roi"] is not None:
        s.update(roi=o["roi"], roi_crop=o["roi"] != "none")
    classes = o["classes"]
    labelling = Labelling(classes=[c.strip() for c in classes.split(",")] if classes else None, finding=o["finding"])
    return run(src, out, s, seed=o["seed"], skip_bad=o["skip_bad"], labelling=labelling)
