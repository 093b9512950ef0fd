"""Write scikit-learn's bundled handwritten digits (1,797 8x8 images, no download) as 32x32 PNG files.

    python examples/digits-images/make_images.py [--size 32] [--out examples/digits-images/data]

Layout: OUT/<digit>/<index>.png, the image-folder layout mpops reads.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent


def write(out: Path, size: int) -> int:
    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image * (255 / 16)).astype(np.uint8)  # 0..16 ink levels to 8-bit grey
        Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BILINEAR).save(folder / f"{i:04d}.png")
    return len(digits.images)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args()
    print(f"wrote {write(args.out, args.size)} PNG files of {args.size}x{args.size} under {args.out}")
