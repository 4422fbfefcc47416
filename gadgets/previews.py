"""PNG previews of magnitude images (Pillow): rows of panels with optional error maps."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _to_uint8(magnitude: np.ndarray, vmax: float) -> np.ndarray:
    return (np.clip(magnitude / max(vmax, 1e-12), 0, 1) * 255).astype(np.uint8)


def save_png_row(path: Path, panels, reference=None, error_gain: float = 5.0) -> Path:
    """Save ``[(title, image [H, W])...]`` side by side; with ``reference``, a second row
    shows ``error_gain x |image - reference|`` on the same grey scale."""
    mags = [(title, np.abs(np.asarray(img.detach().cpu() if hasattr(img, "detach") else img))) for title, img in panels]
    vmax = float(np.percentile(mags[0][1], 99.5)) if mags else 1.0
    rows = [[_to_uint8(m, vmax) for _, m in mags]]
    if reference is not None:
        ref = np.abs(np.asarray(reference.detach().cpu() if hasattr(reference, "detach") else reference))
        rows.append([_to_uint8(error_gain * np.abs(m - ref), vmax) for _, m in mags])
    h, w = rows[0][0].shape
    label = 14
    canvas = Image.new("L", (w * len(mags), (h + label) * len(rows)), 0)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            canvas.paste(Image.fromarray(tile), (c * w, r * (h + label) + label))
            title = mags[c][0] if r == 0 else f"error x{error_gain:g}"
            draw.text((c * w + 2, r * (h + label)), title, fill=255)
    path = Path(path)
    canvas.save(path)
    return path
