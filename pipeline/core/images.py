"""Image folders: `root/<class>/*.png|jpg` read with Pillow into the flat rows every stage takes.

Each image is converted to the configured channel count (1: grayscale, 3: RGB) and resized to the
configured height and width; the network sees C*H*W values in C,H,W order, scaled to [0, 1].
Every file of a class folder gets a row in the manifest (path, class, width, height, channels,
mode, mean intensity, contrast, content hash, status), which validation checks in Great
Expectations (pipeline/core/validation/images.py) and monitoring compares (STAT_COLUMNS). A
folder of images without class folders is an unlabelled batch for `mpops predict` and `mpops monitor`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import DataValidationError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".npz")
# Per-image statistics of the original file, the drift features of an image model: size, intensity, contrast.
STAT_COLUMNS = ("width", "height", "mean_intensity", "contrast")
CLASS_COLUMN = "class"


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def is_image_folder(path: Path) -> bool:
    """A folder of class folders, or of image files, and no table or array file of its own."""
    if not path.is_dir():
        return False
    entries = _visible(path)
    if any(p.is_file() and p.suffix.lower() in TABLE_SUFFIXES for p in entries):
        return False
    return any(p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES for p in entries)


def read_image(path: Path, shape: tuple[int, int, int]) -> tuple[dict, np.ndarray | None]:
    """The manifest record of one file and its pixels (C*H*W float32), or None where it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    record = {"path": str(path), "status": "ok", "width": 0, "height": 0, "channels": 0, "mode": "",
              "mean_intensity": np.nan, "contrast": np.nan, "content_hash": ""}
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return {**record, "status": f"not an image file ({path.suffix or 'no suffix'})"}, None
    channels, height, width = shape
    try:
        with Image.open(path) as im:
            im.load()  # decodes now: a truncated or damaged file fails here, not later
            gray = np.asarray(im.convert("L"), dtype=np.float64)
            # Hash of the decoded pixels: the same picture saved twice (or re-encoded) is the same image.
            digest = hashlib.sha256(f"{im.mode}{im.size}".encode() + im.tobytes()).hexdigest()
            record.update(width=im.width, height=im.height, channels=len(im.getbands()), mode=im.mode,
                          mean_intensity=float(gray.mean()), contrast=float(gray.std()), content_hash=digest)
            converted = im.convert("L" if channels == 1 else "RGB").resize((width, height), Image.Resampling.BILINEAR)
    except UnidentifiedImageError:
        return {**record, "status": "not an image (Pillow cannot identify it)"}, None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's errors for truncated or corrupt data
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        return {**record, "status": f"unreadable ({why})"}, None
    pixels = np.asarray(converted, dtype=np.float32) / 255.0
    if channels == 3:
        pixels = pixels.transpose(2, 0, 1)  # H,W,C -> C,H,W
    return record, pixels.reshape(-1)


def _files(root: Path, require_label: bool) -> list[tuple[Path, str | None]]:
    classes = [p for p in _visible(root) if p.is_dir()]
    if not classes:
        if require_label:
            raise DataValidationError(f"data: image folder {root} has no class folders; training needs "
                                      f"{root}/<class>/*.png|jpg, one folder per class")
        return [(p, None) for p in _visible(root) if p.is_file()]
    out = []
    for folder in classes:
        files = [p for p in _visible(folder) if p.is_file()]
        if not files:
            raise DataValidationError(f"data: class folder {folder} holds no images; add images or remove it")
        out += [(p, folder.name) for p in files]
    return out


def load_image_folder(root: Path, label_column: str, shape: tuple[int, int, int], require_label: bool = True
                      ) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """The table of pixel columns `pixel_0..` and the label (the class folder's name), the manifest, and the
    files read. Unreadable files keep a manifest row and zero pixels: validation names them and fails."""
    files = _files(root, require_label)
    records, rows = [], []
    n = int(np.prod(shape))
    for path, label in files:
        record, pixels = read_image(path, shape)
        records.append({**record, "path": str(path.relative_to(root)), CLASS_COLUMN: label})
        rows.append(pixels if pixels is not None else np.zeros(n, np.float32))
    manifest = pd.DataFrame.from_records(records)
    frame = pd.DataFrame(np.stack(rows), columns=[f"pixel_{i}" for i in range(n)])
    if manifest[CLASS_COLUMN].notna().all():
        frame[label_column] = manifest[CLASS_COLUMN].to_numpy()
    return frame, manifest, tuple(str(p) for p, _ in files)


def refuse_unreadable(manifest: pd.DataFrame, where: str) -> None:
    """For scoring, where no validation report runs: any file that is not a readable image is exit 3."""
    bad = manifest[manifest["status"] != "ok"]
    if len(bad):
        first = bad.iloc[0]
        raise DataValidationError(f"{where}: {len(bad)} file(s) are not readable images, e.g. {first['path']}: "
                                  f"{first['status']}",
                                  detail="\n".join(f"  {r.path}: {r.status}" for r in bad.head(20).itertuples()))
