"""Tiny Cityscapes and SYNTHIA trees in their exact published layouts (tests only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import png
from PIL import Image

CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}
SIZE = (32, 64)  # (y, x)
# Cityscapes label ids and their train ids (0 unlabeled, 1 ego vehicle, 6 ground -> 255)
CITYSCAPES_IDS = np.array([0, 1, 6, 7, 8, 11, 21, 23, 24, 26, 33])
CITYSCAPES_EXPECTED = np.array([255, 255, 255, 0, 1, 2, 8, 10, 11, 13, 18])
# SYNTHIA class ids (in R of a 16-bit PNG) and their train ids: 0 void, 13 parking slot,
# 14 road-work and 22 lane marking -> 255
SYNTHIA_IDS = np.array([0, 13, 14, 22, 3, 4, 2, 21, 5, 7, 15, 9, 6, 16, 1, 10, 17, 8, 18, 19, 20,
                        12, 11])
SYNTHIA_EXPECTED = np.array([255, 255, 255, 255, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                             15, 16, 17, 18])


def tiled(values: np.ndarray, size=SIZE, shift: int = 0) -> np.ndarray:
    """A (y, x) map cycling through ``values`` in 4 x 4 tiles (shifted per image)."""
    rows, cols = np.indices(size)
    return values[((rows // 4) * 16 + cols // 4 + shift) % len(values)]


def colour_image(seed: int, size=SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


def write_png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG (as SYNTHIA's labels), written with pypng."""
    rows, cols, _ = rgb.shape
    with open(path, "wb") as stream:
        png.Writer(cols, rows, greyscale=False, bitdepth=16).write(
            stream, rgb.astype(np.uint16).reshape(rows, -1).tolist())


def cityscapes_tree(root: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """leftImg8bit/<split>/<city>/<city>_000000_0000NN_leftImg8bit.png + gtFine labelIds;
    returns per split the (image (y, x, 3), label ids) pairs in the order prepare reads them."""
    written: dict[str, list] = {}
    for split, cities in CITIES.items():
        written[split] = []
        for c, city in enumerate(cities):
            for n in (19, 2):  # natural order: 2 before 19
                stem = f"{city}_000000_{n:06d}"
                image, ids = colour_image(100 * c + n), tiled(CITYSCAPES_IDS, shift=n + c)
                for folder in ("leftImg8bit", "gtFine"):
                    (root / folder / split / city).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
                Image.fromarray(ids.astype(np.uint8)).save(
                    root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
                written[split].append((image, ids))
        written[split] = [pair for city in range(len(cities)) for pair in
                          (written[split][2 * city + 1], written[split][2 * city])]
    return written


def synthia_tree(root: Path, count: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """RGB/000000N.png + GT/LABELS/000000N.png (16-bit RGB: id in R, an instance id > 255 in
    G); returns the (image, ids) pairs."""
    (root / "RGB").mkdir(parents=True)
    (root / "GT" / "LABELS").mkdir(parents=True)
    pairs = []
    for n in range(count):
        image, ids = colour_image(n), tiled(SYNTHIA_IDS, shift=n)
        label = np.stack([ids, np.full(SIZE, 1000 + n), np.zeros(SIZE)], axis=-1)
        Image.fromarray(image).save(root / "RGB" / f"{n:07d}.png")
        write_png16_rgb(root / "GT" / "LABELS" / f"{n:07d}.png", label)
        pairs.append((image, ids))
    return pairs


def expected_train_ids(ids: np.ndarray, table_ids: np.ndarray, train_ids: np.ndarray) -> np.ndarray:
    lookup = dict(zip(table_ids.tolist(), train_ids.tolist()))
    return np.vectorize(lookup.get)(ids).astype(np.uint8)


def gta5_tree(root: Path, sizes=((32, 64), (34, 64), (32, 64))) -> list[tuple[np.ndarray, np.ndarray]]:
    """images/0000N.png + labels/0000N.png (palette PNGs, indices = Cityscapes ids), of the
    given (y, x) sizes (GTA5's differ); returns the (image, ids) pairs."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    pairs = []
    for n, size in enumerate(sizes, start=1):
        image, ids = colour_image(50 + n, size), tiled(CITYSCAPES_IDS, size, shift=n)
        Image.fromarray(image).save(root / "images" / f"{n:05d}.png")
        label = Image.fromarray(ids.astype(np.uint8), mode="P")
        label.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
        label.save(root / "labels" / f"{n:05d}.png")
        pairs.append((image, ids))
    return pairs
