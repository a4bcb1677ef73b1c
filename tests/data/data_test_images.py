"""Synthetic test images shared by the data tests (imported by conftest.py and the test modules)."""

import io
import pathlib

import numpy as np


def coordinate_image(height: int, width: int) -> np.ndarray:
    """uint8 [H, W, 3]: red grows with the row, green with the column, blue constant (easy to locate crops)."""
    rows = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    cols = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    return np.stack([rows, cols, np.full_like(rows, 128)], -1).round().astype(np.uint8)


def jpeg_bytes(array: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_image_folder(root: pathlib.Path, counts: dict[str, dict[str, int]], size=(24, 32)) -> pathlib.Path:
    """Writes root/<split>/<class>/img_<k>.jpg (or root/<class>/... when the split is "") with distinct images."""
    rng = np.random.default_rng(0)
    for split, classes in counts.items():
        for class_name, count in classes.items():
            folder = root / split / class_name if split else root / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                noise = rng.integers(0, 60, size=(*size, 3))
                image = np.clip(coordinate_image(*size).astype(int) + noise, 0, 255).astype(np.uint8)
                (folder / f"img_{k}.jpg").write_bytes(jpeg_bytes(image))
    return root
