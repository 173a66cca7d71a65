"""The boundary between the user's models and data: before any long work starts, every model must take the
images, all models must score the same classes, labels must be among them (matched by name), and the images
should have the size the models were trained at. Each failure is an error that says what to do."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from kdscope.core.subject import Subject
from kdscope.data.classes import ClassMismatchError, align_classes, check_label_range
from kdscope.data.imageset import ImageSet


class ModelInputError(ValueError):
    """A model cannot run on the data's images."""


def reference_subject(subjects: Sequence[Subject]) -> Subject:
    """The model every other one is compared with: the first with role 'teacher', else the first."""
    return next((s for s in subjects if s.role == "teacher"), subjects[0])


def prepare_data(subjects: Sequence[Subject], data: ImageSet,
                 class_names: Sequence[str] | None = None) -> tuple[ImageSet, list[str]]:
    """(the data in the models' class order, warnings): run every model on two images and refuse what cannot be
    compared. `class_names` (the models' classes in output order) overrides the names the teacher records."""
    if len(data) == 0:
        raise ValueError("the data holds no images")
    teacher = reference_subject(subjects)
    names = list(class_names) if class_names is not None else teacher.class_names
    source = "the given class names" if class_names is not None else teacher.name
    data = align_classes(data, names, model=source)
    outputs = {subject.name: count_outputs(subject, data) for subject in subjects}
    expected = outputs[teacher.name]
    for subject in subjects:
        if outputs[subject.name] != expected:
            raise ClassMismatchError(
                f"{subject.name} gives {outputs[subject.name]} class scores but {teacher.name} gives {expected}: "
                "models compared with each other must score the same classes in the same order")
    if names is not None and len(names) != expected:
        raise ClassMismatchError(f"{source} name {len(names)} classes but {teacher.name} gives {expected} scores; "
                                 "give every class in output order")
    check_label_range(data, expected, model=teacher.name)
    return data, [w for s in subjects if (w := size_warning(s, data))]


def count_outputs(subject: Subject, data: ImageSet) -> int:
    """The number of class scores the model gives for two of the data's images, or an error naming the fix."""
    x = data.images(slice(0, 2))
    try:
        with torch.no_grad():
            return int(subject.logits(x).shape[-1])
    except RuntimeError as error:
        message = str(error).splitlines()[0]
        trained = recorded_image_size(subject)
        if "channels" in message:
            hint = "Give it images with the number of channels it was built for"
        else:
            size = f"it was trained on {trained[0]}x{trained[1]} images; " if trained else ""
            hint = f"Resize them ({size}image_size=, CLI --image-size)"
        raise ModelInputError(f"{subject.name} cannot take the data's images {tuple(x.shape[1:])}: {message}. "
                              f"{hint}.") from error
    except (ValueError, TypeError) as error:
        raise ModelInputError(f"{subject.name} cannot run on the data: {error}") from error


def recorded_image_size(subject: Subject) -> tuple[int, int] | None:
    """(H, W) the model was trained or calibrated at, from its metadata, when recorded."""
    meta = subject.metadata
    shape = meta.get("input_shape")
    if shape:
        return int(shape[-2]), int(shape[-1])
    for data in (meta.get("data"), (meta.get("lineage") or {}).get("data")):
        size = (data or {}).get("size") if isinstance(data, dict) else None
        if isinstance(size, int):
            return size, size
        if isinstance(size, (list, tuple)) and len(size) == 2:
            return int(size[0]), int(size[1])
    return None


def size_warning(subject: Subject, data: ImageSet) -> str | None:
    """A warning when the images differ in size from the ones the model was trained at: a model with global
    pooling runs on any size, and scores far worse without failing."""
    trained = recorded_image_size(subject)
    actual = tuple(data.image_shape[1:])
    if trained is None or trained == actual:
        return None
    message = (f"{subject.name} was trained on {trained[0]}x{trained[1]} images but the data is "
               f"{actual[0]}x{actual[1]}: its scores may be far below what it does at its own size; resize the "
               f"data (image_size={trained[0]}, CLI --image-size {trained[0]})")
    warnings.warn(message, stacklevel=3)
    return message
