"""SIFT descriptors of the sample images bundled with scikit-image and scikit-learn.

Every PNG/JPG of at least :data:`MIN_SIDE` pixels on each side in ``skimage.data``'s folder
(sorted by file name), then the images of ``sklearn.datasets.load_sample_images()``, are
converted to 8-bit grayscale and described by OpenCV's SIFT (default parameters) at scales
1x and 2x (bicubic upscaling: it keeps more fine detail than bilinear, ~1.5x the keypoints
at 2x). That gives ~152k descriptors, ~151.7k distinct: float32 with integer values 0-255
and no negative coordinate, like the classic SIFT1M; the paper's "collapse" tier for 2-bit
codes (15 % recall@10), searched by Euclidean distance.

Needs ``opencv-python-headless``, ``scikit-image`` and ``scikit-learn``; imported lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MIN_SIDE = 64
SCALES = (1, 2)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DIM = 128


def skimage_image_paths() -> list[Path]:
    """The PNG/JPG files shipped in ``skimage.data``'s folder, sorted by name."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def gray_images() -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, uint8 grayscale image)`` for every source image of at least MIN_SIDE px."""
    import cv2
    from sklearn.datasets import load_sample_images

    named: list[tuple[str, np.ndarray | None]] = [
        (p.name, cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) for p in skimage_image_paths()
    ]
    sample = load_sample_images()
    for fname, rgb in zip(sample.filenames, sample.images, strict=True):
        named.append((f"sklearn:{Path(fname).name}", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)))
    for name, img in named:
        if img is None or min(img.shape[:2]) < MIN_SIDE:
            log.info("skipping %s (unreadable or smaller than %d px)", name, MIN_SIDE)
            continue
        yield name, img


def sift_descriptors(image: np.ndarray, scales: Sequence[int] = SCALES) -> np.ndarray:
    """SIFT descriptors of one grayscale image at each scale, stacked: float32 (m, 128)."""
    import cv2

    sift = cv2.SIFT_create()
    parts = []
    for scale in scales:
        img = image
        if scale != 1:
            img = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        _, desc = sift.detectAndCompute(img, None)
        if desc is not None:
            parts.append(desc)
    if not parts:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)


def unique_rows(vecs: np.ndarray) -> np.ndarray:
    """``vecs`` without repeated rows, first occurrences kept in their original order."""
    _, first = np.unique(vecs, axis=0, return_index=True)
    return vecs[np.sort(first)]


def sift_vectors() -> np.ndarray:
    """Distinct descriptors of all source images, float32 (n, 128), in image then scale order.

    Exact repeats (the grayscale and RGB chessboards give the same image, for example) are
    dropped, so no query has a zero-distance twin in train.
    """
    parts = []
    for name, img in gray_images():
        desc = sift_descriptors(img)
        log.info("%s %s: %d descriptors", name, img.shape, len(desc))
        parts.append(desc)
    vecs = np.concatenate(parts)
    distinct = unique_rows(vecs)
    log.info(
        "SIFT: %d descriptors from %d images, %d distinct", len(vecs), len(parts), len(distinct)
    )
    return distinct
