"""`rawcnn data synth` and `rawcnn data prepare`."""
from rawcnn.data import Labelling, default_settings, synthesize
from rawcnn.data import prepare as run


def synth(out, n=200, *, size=512, abnormal_fraction=0.5, seed=0, overwrite=False, difficulty="standard"):
    """`rawcnn data synth`: rawcnn.data.synthesize; returns its records."""
    return synthesize(out, n, size=size, seed=seed, abnormal_fraction=abnormal_fraction, overwrite=overwrite,
                      difficulty=difficulty)


def prepare(src, out, *, input_size=227, roi_crop=True, roi=None, classes=None, finding=None, roi_margin=0.05,
            base_size=1024, clahe=True, clahe_clip_limit=2.0, clahe_tile_grid=8, seed=0, skip_bad=False):
    """`rawcnn data prepare`: the settings from the options (roi overrides roi_crop; base_size 0 skips
    the resize; classes a comma-separated string or None), then rawcnn.data.prepare; returns its summary."""
    s = default_settings(input_size)
    s.update(roi_crop=roi_crop, roi_margin=roi_margin, base_size=base_size or None, clahe=clahe,
             clahe_clip_limit=clahe_clip_limit, clahe_tile_grid=clahe_tile_grid)
    if roi is not None:
        s.update(roi=roi, roi_crop=roi != "none")
    labelling = Labelling(classes=[c.strip() for c in classes.split(",")] if classes else None, finding=finding)
    return run(src, out, s, seed=seed, skip_bad=skip_bad, labelling=labelling)
