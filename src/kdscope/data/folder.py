"""User data: an image folder (one sub-folder per class) or an .npz file, as an ImageSet of raw [0, 1] images."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from kdscope.data.imageset import ImageSet, to_uint8
from kdscope.data.lazy import LazyArray, file_identity, npz_member

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def image_folder(root: str | Path, *, size: int | tuple[int, int] | None = None, channels: int = 3,
                 lazy: bool = False) -> ImageSet:
    """Read `root/<class>/<image>` files with opencv. Classes are the sub-folder names, sorted.

    Images of mixed sizes are resized to `size` (H, W); without `size`, mixed sizes are an error that says so.
    Unreadable files are skipped with one warning that lists them. `lazy=True` checks every file's header now
    and decodes only the images a batch asks for (in a pool of threads), so memory does not grow with the folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class name>/<image files>)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders; put each class's images in {root}/<class name>/")
    listed = [(file, label) for label, name in enumerate(classes) for file in sorted((root / name).iterdir())
              if file.suffix.lower() in IMAGE_SUFFIXES]
    files, labels, sizes, unreadable = [], [], [], []
    for file, label in listed:
        image_size = _header_size(file) if lazy else None
        image = None if lazy else _decode(file, channels)
        if image_size is None and image is None:
            unreadable.append(str(file))
            continue
        files.append(image if image is not None else file)
        labels.append(label)
        sizes.append(image.shape[:2] if image is not None else image_size)
    if unreadable:
        warnings.warn(f"skipped {len(unreadable)} unreadable image file(s): {unreadable}", stacklevel=2)
    if not files:
        raise ValueError(f"no readable images ({', '.join(IMAGE_SUFFIXES)}) under {root}/<class>/")
    target = _as_hw(size)
    if target is None and len(set(sizes)) > 1:
        raise ValueError(f"images under {root} have {len(set(sizes))} different sizes {sorted(set(sizes))[:4]}...; "
                         "pass size=(H, W) (CLI: --image-size) to resize them")
    height, width = target or sizes[0]
    if lazy:
        pixels = LazyArray(partial(_decode_files, files, channels, (height, width)),
                           (len(files), channels, height, width), np.uint8,
                           source=f"folder {channels} {height}x{width} {file_identity(*files)}")
    else:
        pixels = np.ascontiguousarray(np.stack([_resize(image, (height, width)) for image in files]).transpose(
            0, 3, 1, 2))
    return ImageSet(pixels=pixels, labels=np.array(labels), class_names=tuple(classes),
                    description={"dataset": "folder", "root": str(root), "size": [height, width]})


def _decode(file: Path, channels: int) -> np.ndarray | None:
    """(H, W, C) RGB or grey uint8, or None when opencv cannot read the file."""
    image = cv2.imread(str(file), cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE)
    if image is None:
        return None
    return image[:, :, ::-1] if channels == 3 else image[:, :, None]


def _header_size(file: Path) -> tuple[int, int] | None:
    """(H, W) from the file's header alone, or None when it is not an image Pillow recognises."""
    try:
        with Image.open(file) as image:
            return image.height, image.width
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _decode_files(files: list[Path], channels: int, size: tuple[int, int], index: np.ndarray) -> np.ndarray:
    """The images at `index`, decoded in threads (opencv releases the GIL) and resized: (n, C, H, W) uint8."""
    def one(position: int) -> np.ndarray:
        image = _decode(files[position], channels)
        if image is None:
            raise ValueError(f"{files[position]} passed its header check but opencv cannot decode it (a truncated "
                             "or damaged file): remove or replace it")
        return _resize(image, size)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        images = list(pool.map(one, (int(p) for p in index)))
    if not images:
        return np.empty((0, channels, *size), np.uint8)
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def npz_images(path: str | Path, *, images_key: str = "images", labels_key: str = "labels",
               class_names: Sequence[str] | None = None, lazy: bool = False) -> ImageSet:
    """Load images (N,H,W,C or N,C,H,W; uint8, or float in [0, 1]) and integer labels from an .npz file.
    `lazy=True` memory-maps the images and converts only the rows a batch reads (the float range is still checked
    for every image first, a chunk at a time)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file {path} does not exist")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in (images_key, labels_key) if k not in f.files]
        if missing:
            raise KeyError(f"{path} lacks array(s) {missing}; it has {f.files}. Pass images_key=/labels_key=")
        if not lazy:
            images, labels = f[images_key], f[labels_key]
    if lazy:
        images, labels = npz_member(path, images_key), np.asarray(npz_member(path, labels_key))
    if images.ndim != 4 or (images.shape[1] not in (1, 3) and images.shape[3] not in (1, 3)):
        raise ValueError(
            f"{path}:{images_key} must be (N, H, W, C) or (N, C, H, W) with C in (1, 3), got {images.shape}"
        )
    channels_last = images.shape[1] not in (1, 3)
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"{path}:{images_key} has dtype {images.dtype}; use uint8 or float in [0, 1]")
    if images.dtype != np.uint8:
        for start in range(0, len(images), 1024):
            part = np.asarray(images[start:start + 1024])
            if not np.isfinite(part).all() or part.min() < 0 or part.max() > 1:
                raise ValueError(f"{path}:{images_key} is float but not finite values in [0, 1]; scale it (e.g. /255)")
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}:{labels_key} must be {len(images)} integer labels, got {labels.dtype} {labels.shape}")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{path}:{labels_key} has negative labels; labels must be 0..num_classes-1")
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    names = tuple(class_names) if class_names is not None else tuple(str(k) for k in range(num_classes))
    if len(labels) and labels.max() >= len(names):
        raise ValueError(f"{path}: label {int(labels.max())} is out of range for {len(names)} class names")
    read = partial(_as_pixels, images, channels_last)
    shape = (len(images), images.shape[3], *images.shape[1:3]) if channels_last else images.shape
    pixels = (LazyArray(read, shape, np.uint8, source=f"npz {images_key} {file_identity(path)}") if lazy
              else read(slice(None)))
    return ImageSet(pixels=pixels, labels=labels.astype(np.int64), class_names=names,
                    description={"dataset": "npz", "path": str(path)})


def _as_pixels(images: np.ndarray, channels_last: bool, index: np.ndarray | slice) -> np.ndarray:
    """Rows of an (N, C, H, W) or (N, H, W, C), uint8 or [0, 1] float array as contiguous (n, C, H, W) uint8."""
    rows = np.asarray(images[index])
    if channels_last:
        rows = rows.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(rows if rows.dtype == np.uint8 else to_uint8(rows))


def _as_hw(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    return int(height), int(width)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == size:
        return image
    resized = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return resized if resized.ndim == 3 else resized[:, :, None]
