"""Data sources. Each yields an ImageSet of raw float32 NCHW images in [0, 1]; normalisation belongs to the Subject."""

from __future__ import annotations

from pathlib import Path

from kdscope.data.digits import digits
from kdscope.data.folder import image_folder, npz_images
from kdscope.data.imageset import ImageSet
from kdscope.data.probeworld import CLASS_NAMES, VARIANTS, ProbeWorldSpec, probeworld
from kdscope.data.sampling import stratified_sample

BUILT_IN = ("probeworld", "digits")


def load_dataset(spec: str, *, split: str = "train", n: int | None = None, size: int | None = None,
                 seed: int = 0, lazy: bool = False) -> ImageSet:
    """Resolve a data spec: 'probeworld[:variant]', 'digits', a folder of class sub-folders, or an .npz file.

    `n` caps the number of images: ProbeWorld generates exactly `n`, other data gives a seeded sample of `n`
    stratified by class (never the first `n` of a class-sorted folder); `size` sets the image side. `lazy=True`
    reads (or renders) images only when a batch asks for them: what an audit of a large set needs.
    """
    name, _, variant = spec.partition(":")
    if name == "probeworld":
        return probeworld(n or (10000 if split == "train" else 2000), split=split, variant=variant or "clean",
                          seed=seed, size=size or 32, lazy=lazy)
    if variant:
        raise ValueError(f"only probeworld takes a variant ('probeworld:colour_shift'); got {spec!r}")
    if name == "digits":
        data = digits(split=split, size=size or 32, seed=seed)
    elif Path(spec).is_dir():
        data = image_folder(spec, size=size, lazy=lazy)
    elif Path(spec).suffix == ".npz":
        data = npz_images(spec, lazy=lazy)
    else:
        raise ValueError(f"unknown data {spec!r}: use one of {BUILT_IN}, 'probeworld:<variant>' with a variant in "
                         f"{VARIANTS}, a folder of class sub-folders, or an .npz file")
    return data if n is None or n >= len(data) else data.subset(stratified_sample(data.labels, n, seed))


__all__ = ["CLASS_NAMES", "VARIANTS", "ImageSet", "ProbeWorldSpec", "digits", "image_folder", "load_dataset",
           "npz_images", "probeworld"]
