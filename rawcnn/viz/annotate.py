"""A heat-map picture a person can read on its own: a title above and a 'jet' colour bar at the
right with the map's scale (0, the transparency threshold, 1).

Shape legend: H, W the picture; T the title strip's height; B the colour bar's width.
"""
import cv2
import numpy as np

from rawcnn.viz.images import jet

MIN_SIDE = 256  # smaller pictures are enlarged (nearest) so that the text stays legible


def annotate(rgb, title, threshold=None):
    """rgb (H, W, 3) float in [0, 1] -> (T + H', W' + B, 3) float32 with the title and a colour bar."""
    rgb = np.asarray(rgb, np.float32)
    H, W = rgb.shape[:2]
    f = max(1, int(np.ceil(MIN_SIDE / max(1, min(H, W)))))
    if f > 1:
        rgb = cv2.resize(rgb, (W * f, H * f), interpolation=cv2.INTER_NEAREST)
        H, W = H * f, W * f
    k = max(1.0, W / 640)  # text and bar grow with large (source-resolution) pictures
    T, B, bar, lw = int(22 * k), int(46 * k), int(14 * k), max(1, int(k))
    out = np.ones((T + H, W + B, 3), np.float32)  # white background
    out[T:, :W] = rgb
    ramp = np.linspace(1.0, 0.0, H, dtype=np.float32)  # (H,) top = 1
    out[T:, W + 4:W + 4 + bar] = jet(ramp)[:, None, :]  # (H, bar, 3)
    text = np.full(out.shape[:2], 255, np.uint8)  # putText draws on uint8
    cv2.putText(text, str(title)[:max(8, int((W + B) // (7 * k)))], (3, T - int(6 * k)), cv2.FONT_HERSHEY_SIMPLEX,
                0.4 * k, 0, lw, cv2.LINE_AA)
    ticks = [(1.0, "1"), (0.0, "0")] + ([(threshold, f"{threshold:g}")] if threshold not in (None, 0, 1) else [])
    for v, label in ticks:
        y = T + int(round((1.0 - v) * (H - 1)))
        cv2.putText(text, label, (W + 6 + bar, min(T + H - 2, max(T + int(10 * k), y + int(4 * k)))),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35 * k, 0, lw, cv2.LINE_AA)
        if threshold is not None and v == threshold:
            out[y, W + 2:W + 6 + bar] = 0.0  # a black tick: below it the map is transparent
    ink = text < 255
    out[ink] = (text[ink] / 255.0)[:, None]
    return out
