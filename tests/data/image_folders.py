"""Image folders for tests: the bundled digits written as PNG files, root/<class>/<n>.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_digit_pngs(root: Path, per_class: int = 30, classes: tuple[int, ...] = (0, 1, 2), size: int = 16,
                     mode: str = "L", start: int = 0) -> Path:
    """`per_class` distinct digits of each class, upscaled from 8x8 to size x size."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for c in classes:
        folder = root / str(c)
        folder.mkdir(parents=True, exist_ok=True)
        rows = np.flatnonzero(d.target == c)[start:start + per_class]
        for i, r in enumerate(rows):
            pixels = (d.images[r] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels, "L").convert(mode).resize((size, size), Image.Resampling.NEAREST) \
                .save(folder / f"{c}_{i:04d}.png")
    return root
