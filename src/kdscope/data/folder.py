"""User data: an image folder (one sub-folder per class) or an .npz file, as an ImageSet of raw [0, 1] images."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from kdscope.data.imageset import ImageSet, to_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def image_folder(root: str | Path, *, size: int | tuple[int, int] | None = None, channels: int = 3) -> ImageSet:
    """Read `root/<class>/<image>` files with opencv. Classes are the sub-folder names, sorted.

    Images of mixed sizes are resized to `size` (H, W); without `size`, mixed sizes are an error that says so.
    Unreadable files are skipped with one warning that lists them.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class name>/<image files>)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders; put each class's images in {root}/<class name>/")
    target = _as_hw(size)
    images, labels, unreadable = [], [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            image = cv2.imread(str(file), cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE)
            if image is None:
                unreadable.append(str(file))
                continue
            images.append(image[:, :, ::-1] if channels == 3 else image[:, :, None])
            labels.append(label)
    if unreadable:
        warnings.warn(f"skipped {len(unreadable)} unreadable image file(s): {unreadable}", stacklevel=2)
    if not images:
        raise ValueError(f"no readable images ({', '.join(IMAGE_SUFFIXES)}) under {root}/<class>/")
    sizes = {image.shape[:2] for image in images}
    if target is None and len(sizes) > 1:
        raise ValueError(f"images under {root} have {len(sizes)} different sizes {sorted(sizes)[:4]}...; pass "
                         "size=(H, W) (CLI: --image-size) to resize them")
    if target is not None:
        images = [_resize(image, target) for image in images]
    pixels = np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))
    return ImageSet(pixels=pixels, labels=np.array(labels), class_names=tuple(classes),
                    description={"dataset": "folder", "root": str(root), "size": list(pixels.shape[2:])})


def npz_images(path: str | Path, *, images_key: str = "images", labels_key: str = "labels",
               class_names: Sequence[str] | None = None) -> ImageSet:
    """Load images (N,H,W,C or N,C,H,W; uint8, or float in [0, 1]) and integer labels from an .npz file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file {path} does not exist")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in (images_key, labels_key) if k not in f.files]
        if missing:
            raise KeyError(f"{path} lacks array(s) {missing}; it has {f.files}. Pass images_key=/labels_key=")
        images, labels = f[images_key], f[labels_key]
    if images.ndim != 4 or (images.shape[1] not in (1, 3) and images.shape[3] not in (1, 3)):
        raise ValueError(
            f"{path}:{images_key} must be (N, H, W, C) or (N, C, H, W) with C in (1, 3), got {images.shape}"
        )
    if images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.dtype == np.uint8:
        pixels = images
    elif np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
            raise ValueError(f"{path}:{images_key} is float but not finite values in [0, 1]; scale it (e.g. /255)")
        pixels = to_uint8(images)
    else:
        raise TypeError(f"{path}:{images_key} has dtype {images.dtype}; use uint8 or float in [0, 1]")
    if labels.ndim != 1 or len(labels) != len(pixels) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}:{labels_key} must be {len(pixels)} integer labels, got {labels.dtype} {labels.shape}")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{path}:{labels_key} has negative labels; labels must be 0..num_classes-1")
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    names = tuple(class_names) if class_names is not None else tuple(str(k) for k in range(num_classes))
    if len(labels) and labels.max() >= len(names):
        raise ValueError(f"{path}: label {int(labels.max())} is out of range for {len(names)} class names")
    return ImageSet(pixels=np.ascontiguousarray(pixels), labels=labels.astype(np.int64), class_names=names,
                    description={"dataset": "npz", "path": str(path)})


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
