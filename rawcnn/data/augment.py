"""Random translations and rotations of a batch of images (the paper's augmentation).

Shape legend: N batch, C channels, H, W image height and width.

Each image n gets an angle a_n ~ U(-max_rotate_deg, max_rotate_deg) and a shift
(t_x, t_y) ~ U(-max_translate, max_translate) * (W, H). Rotation is about the image centre
c = ((W - 1) / 2, (H - 1) / 2), counter-clockwise as displayed for a > 0, then the shift:

    output(p) = input(A^-1 (p - t - c) + c),   A = [[cos a, sin a], [-sin a, cos a]]

in pixel coordinates p = (x, y) with y pointing down (cv2.getRotationMatrix2D's matrix, with t
added to its last column); cv2.warpAffine samples the input bilinearly. Pixels that come from
outside the image are filled by reflection (BORDER_REFLECT_101: ... c b | a b c ... ) by
default, so no black wedges appear that a network could learn as a cue; border='constant' fills
them with 0 instead (as MATLAB's imageDataAugmenter does).
"""
import cv2
import numpy as np

BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT}


def _check_limit(name, v, hi, closed):
    """ValueError naming `name` unless v is a finite number in [0, hi] (closed) or [0, hi): a shift of a whole
    side or more, a zoom or gain change of 100 % or more, or a rotation past 180 degrees is no augmentation."""
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v) \
        and 0 <= v and (v <= hi if closed else v < hi)
    if not ok:
        raise ValueError(f"Augmenter: {name} must be a finite number >= 0 and {'<=' if closed else '<'} {hi:g}, "
                         f"got {v!r}")


class Augmenter:
    """Random per-image rotation and translation.

    max_translate   largest shift as a fraction of the image side (0.1 = 10 %)
    max_rotate_deg  largest rotation in degrees
    rng             numpy Generator or int seed, kept as the Generator .rng (rawcnn.training.train saves and
                    restores its state for an exact resume); may be left out when every call
                    passes its own Generator
    border          'reflect' (default) or 'constant' (zeros)
    max_scale       largest zoom change, s ~ U(1 - max_scale, 1 + max_scale) about the centre (0: none)
    max_brightness  largest brightness change, x * (1 + u), u ~ U(-max_brightness, max_brightness),
                    clipped to 0-255 for uint8 (0: none). Both draw from the generator only when
                    non-zero, so an Augmenter without them repeats its old stream exactly.

    >>> x = np.arange(2 * 1 * 5 * 5, dtype=np.float32).reshape(2, 1, 5, 5)
    >>> bool(np.array_equal(Augmenter(0.0, 0.0, rng=0)(x), x))
    True
    """

    def __init__(self, max_translate=0.1, max_rotate_deg=10.0, rng=None, border="reflect", max_scale=0.0,
                 max_brightness=0.0):
        for name, v, hi, closed in (("max_translate", max_translate, 1.0, False),
                                    ("max_rotate_deg", max_rotate_deg, 180.0, True),
                                    ("max_scale", max_scale, 1.0, False),
                                    ("max_brightness", max_brightness, 1.0, False)):
            _check_limit(name, v, hi, closed)
        if border not in BORDERS:
            raise ValueError(f"Augmenter: border must be one of {list(BORDERS)}, got {border!r}")
        self.max_translate, self.max_rotate_deg, self.border = float(max_translate), float(max_rotate_deg), border
        self.max_scale, self.max_brightness = float(max_scale), float(max_brightness)
        self.rng = rng if rng is None or isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def __repr__(self):
        extra = (f", max_scale={self.max_scale}, max_brightness={self.max_brightness}"
                 if self.max_scale or self.max_brightness else "")
        return (f"Augmenter(max_translate={self.max_translate}, max_rotate_deg={self.max_rotate_deg}, "
                f"border={self.border!r}{extra})")

    def draw(self, n, rng=None):
        """Draw n transforms from rng (default: the Augmenter's own).

        Returns angles (n,) float64 degrees and shifts (n, 2) float64 fractions of (W, H).
        """
        rng = rng if rng is not None else self.rng
        if rng is None:
            raise ValueError("Augmenter: no random generator; pass rng= to Augmenter or to the call")
        angles = rng.uniform(-self.max_rotate_deg, self.max_rotate_deg, n)  # (n,)
        shifts = rng.uniform(-self.max_translate, self.max_translate, (n, 2))  # (n, 2)
        return angles, shifts

    def apply(self, x, angles, shifts, nearest=False, scales=None):
        """Rotate and shift each image of x by the given transforms.

        x       (N, C, H, W) float32, float64 or uint8
        angles  (N,) degrees, counter-clockwise
        shifts  (N, 2) fractions of (W, H)
        nearest sample nearest-neighbour (for masks) instead of bilinear
        scales  None or (N,) zoom factors about the centre
        Returns y (N, C, H, W), x's dtype; x is not modified.
        """
        if x.ndim != 4:
            raise ValueError(f"Augmenter: x must be (N, C, H, W), got shape {x.shape}")
        N, C, H, W = x.shape
        if np.shape(angles) != (N,) or np.shape(shifts) != (N, 2):
            raise ValueError(f"Augmenter: angles {np.shape(angles)} and shifts {np.shape(shifts)} "
                             f"must be ({N},) and ({N}, 2) for x of shape {x.shape}")
        y = np.empty_like(x)  # (N, C, H, W)
        mode = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        for n in range(N):
            zoom = 1.0 if scales is None else float(scales[n])
            m = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), float(angles[n]), zoom)  # (2, 3)
            m[:, 2] += shifts[n, 0] * W, shifts[n, 1] * H
            # one call for 1, 3 or 4 channels; otherwise channel by channel (warpAffine takes at
            # most 4, and its 2-channel bilinear path is measurably less accurate)
            step = C if C in (1, 3, 4) else 1
            for c0 in range(0, C, step):
                hwc = np.ascontiguousarray(x[n, c0:c0 + step].transpose(1, 2, 0))  # (H, W, step)
                out = cv2.warpAffine(hwc, m, (W, H), flags=mode, borderMode=BORDERS[self.border])
                y[n, c0:c0 + step] = out.reshape(H, W, step).transpose(2, 0, 1)
        return y

    def draw_all(self, n, rng=None):
        """Every random number of one batch of n images, in the order __call__ draws them.

        Returns a dict: angles (n,), shifts (n, 2), scales (n,) or None, gains (n, 1, 1, 1) or None.
        Data-parallel training draws the whole batch's transforms on every rank and keeps its rows.
        """
        angles, shifts = self.draw(n, rng)
        rng = rng if rng is not None else self.rng
        scales = rng.uniform(1 - self.max_scale, 1 + self.max_scale, n) if self.max_scale else None  # (n,)
        gains = (1 + rng.uniform(-self.max_brightness, self.max_brightness, (n, 1, 1, 1))
                 if self.max_brightness else None)  # (n, 1, 1, 1)
        return {"angles": angles, "shifts": shifts, "scales": scales, "gains": gains}

    def apply_all(self, x, t, rows=slice(None)):
        """Apply the transforms t (from draw_all) of the given rows of the batch to x.

        x (M, C, H, W) with M the number of selected rows. Returns y like x.
        """
        pick = {k: (v[rows] if v is not None else None) for k, v in t.items()}
        y = self.apply(x, pick["angles"], pick["shifts"], scales=pick["scales"])
        if pick["gains"] is not None:
            z = y * pick["gains"]
            y = np.clip(np.rint(z), 0, 255).astype(np.uint8) if y.dtype == np.uint8 else z.astype(y.dtype)
        return y

    def __call__(self, x, rng=None):
        """Augment a batch with fresh transforms drawn from rng (default: the Augmenter's own).

        x  (N, C, H, W) float32, float64 or uint8
        Returns y (N, C, H, W), x's dtype.
        """
        if x.ndim != 4:
            raise ValueError(f"Augmenter: x must be (N, C, H, W), got shape {x.shape}")
        return self.apply_all(x, self.draw_all(len(x), rng))
