"""Knowledge-transfer probes on ProbeWorld's variants, each a per-image 0/1 outcome so that two models (a distilled
student and its independent control) can be compared pairwise, image by image, with a bootstrap interval.

- invariance: does the prediction survive a colour shift of the same scene?
- consensus: do two models give the same label (right or wrong) on a domain neither was trained on?
- shape decisions: on cue-conflict images, is the decision the shape's class rather than the texture's?
- shortcut reliance: on images whose corner patch codes a wrong class, does the model follow the patch?
"""

from __future__ import annotations

import numpy as np

from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet


def _predict(subject: Subject, data: ImageSet) -> np.ndarray:
    return subject.predict(data.images()).numpy()


def _same_scenes(first: ImageSet, second: ImageSet) -> None:
    if len(first) != len(second) or not np.array_equal(first.labels, second.labels):
        raise ValueError("the two ImageSets must hold the same scenes (same seed, split and n, another variant)")


def invariance(subject: Subject, clean: ImageSet, shifted: ImageSet) -> np.ndarray:
    """Per image: 1 when the prediction on the shifted image equals the prediction on the clean one."""
    _same_scenes(clean, shifted)
    return (_predict(subject, clean) == _predict(subject, shifted)).astype(float)


def consensus(first: Subject, second: Subject, data: ImageSet) -> np.ndarray:
    """Per image: 1 when both models give the same label, right or wrong."""
    return (_predict(first, data) == _predict(second, data)).astype(float)


def shape_decisions(subject: Subject, cue_conflict: ImageSet) -> np.ndarray:
    """Per image decided by a cue: 1 for the shape's class, 0 for the texture's; images decided by neither cue
    are left out (Geirhos et al. 2019's shape bias is the mean)."""
    textures = cue_conflict.extras.get("texture_labels")
    if textures is None:
        raise ValueError("shape decisions need cue-conflict images with extras['texture_labels'] "
                         "(probeworld(..., variant='cue_conflict'))")
    predicted = _predict(subject, cue_conflict)
    by_shape, by_texture = predicted == cue_conflict.labels, predicted == textures
    return by_shape[by_shape | by_texture].astype(float)


def shortcut_reliance(subject: Subject, shortcut: ImageSet) -> np.ndarray:
    """Per image whose patch codes a wrong class: 1 when the model predicts the patch's class."""
    coded = shortcut.extras.get("shortcut_labels")
    if coded is None:
        raise ValueError("shortcut reliance needs probeworld(..., variant='shortcut', shortcut_rate=...) images")
    conflicting = coded != shortcut.labels
    if not conflicting.any():
        raise ValueError("no image has a patch coding a wrong class: generate with shortcut_rate < 1")
    return (_predict(subject, shortcut) == coded)[conflicting].astype(float)


def compare_outcomes(student: np.ndarray, control: np.ndarray, *, seed: int = 0) -> dict[str, tuple[float, ...]]:
    """Each model's rate and the paired difference (student - control), with 95% bootstrap intervals. Paired
    outcomes must come from the same images."""
    if student.shape != control.shape:
        raise ValueError("paired outcomes need the same images for both models")
    return {"student": bootstrap_ci(student, seed=seed), "control": bootstrap_ci(control, seed=seed),
            "difference": bootstrap_ci(student - control, seed=seed)}



