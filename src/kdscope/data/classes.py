"""One mechanism that puts a dataset's labels in a model's class order, by class name, for every entry point.

An image folder numbers its classes alphabetically (`L, T, bar, circle, ...`) while a model numbers them in the
order it was trained with (`circle, square, ...`): scoring one against the other without matching the names gives
a plausible, wrong accuracy. Labels that are plain indices (an `.npz` without names) are taken as output indices.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np

from kdscope.data.imageset import ImageSet


class ClassMismatchError(ValueError):
    """The data's classes cannot be matched to the model's outputs."""


def has_index_labels(data: ImageSet) -> bool:
    """True when the class names are just '0', '1', ...: the labels are output indices, not names to match."""
    return list(data.class_names) == [str(k) for k in range(len(data.class_names))]


def align_classes(data: ImageSet, model_classes: Sequence[str] | None, *, model: str = "the model") -> ImageSet:
    """The data with labels in `model_classes` order (matched by name), or a ClassMismatchError that says what
    to do. Data already in that order, index labels, and named built-in data without model names pass unchanged;
    a folder with no model class names to match is refused, because its alphabetical order is a guess."""
    if model_classes is None:
        if data.description.get("dataset") == "folder" and not has_index_labels(data):
            raise ClassMismatchError(
                f"{model} records no class names, so the folder's classes ({', '.join(data.class_names)}) cannot be "
                "matched to its outputs (a folder's classes are numbered alphabetically). Give the model's classes in "
                "output order: class_names=[...] (CLI: --class-names a,b,c)")
        return data
    names = [str(name) for name in model_classes]
    if len(set(names)) != len(names):
        raise ClassMismatchError(f"the class names of {model} repeat: {names}")
    if list(data.class_names) == names:
        return data
    if has_index_labels(data):
        check_label_range(data, len(names), model=model)
        return _relabelled(data, np.arange(len(data.class_names)), names, "index labels named by the model")
    unmatched = [name for name in data.class_names if name not in names]
    if unmatched:
        hints = {name: difflib.get_close_matches(name, names, n=1) for name in unmatched}
        close = "; ".join(f"{name!r} -> {hint[0]!r}?" for name, hint in hints.items() if hint)
        raise ClassMismatchError(
            f"the data's classes {unmatched} are not among the classes of {model} ({', '.join(names)})"
            f"{' (' + close + ')' if close else ''}. Rename the folders to the model's class names, or give the "
            "model's classes in output order with class_names=[...] (CLI: --class-names)")
    order = np.array([names.index(name) for name in data.class_names])
    return _relabelled(data, order, names, f"matched by name to the classes of {model}")


def check_label_range(data: ImageSet, num_outputs: int, *, model: str = "the model") -> None:
    """Refuse labels the model has no output for: scoring them silently counts every such image as wrong."""
    if len(data) and int(data.labels.max()) >= num_outputs:
        outside = int((data.labels >= num_outputs).sum())
        raise ClassMismatchError(
            f"{outside} image(s) have labels up to {int(data.labels.max())}, but {model} has {num_outputs} outputs "
            f"(classes 0..{num_outputs - 1}). Use data labelled for this model, or drop those images.")


def _relabelled(data: ImageSet, order: np.ndarray, names: Sequence[str], how: str) -> ImageSet:
    return ImageSet(pixels=data.pixels, labels=order[data.labels], class_names=tuple(names), masks=data.masks,
                    extras=data.extras, description={**data.description, "class_order": how})
