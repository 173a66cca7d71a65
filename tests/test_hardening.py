"""Hostile and careless input at every entry point: class order by name, labels the model lacks, models that
disagree on classes, plan files with wrong types, stale and damaged caches, unmatched --weights, class-sorted
folders, and images of the wrong size. Each case fails loudly with the fix, or gives the right number."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from kdscope import Subject
from kdscope.audit import Plan, audit
from kdscope.audit.cache import StaleCacheWarning
from kdscope.cli.main import main
from kdscope.core.checkpoint import save_checkpoint
from kdscope.data import ImageSet, load_dataset
from kdscope.data.classes import ClassMismatchError
from kdscope.data.sampling import stratified_sample

MODEL_CLASSES = ("circle", "square", "L", "T")  # alphabetically: L, T, circle, square


class Brightness(nn.Module):
    """Class k is the image whose pixels all equal (k + 1) / 5: a closed-form classifier that is always right."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.register_buffer("levels", (torch.arange(classes) + 1.0) / 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -50.0 * (x.mean((1, 2, 3))[:, None] - self.levels[None]) ** 2


def brightness_subject(name: str = "teacher", role: str = "teacher", classes: int = 4, **kwargs) -> Subject:
    names = MODEL_CLASSES if classes == 4 else tuple(f"c{k}" for k in range(classes))
    return Subject(Brightness(classes), name=name, role=role, class_names=names, **kwargs)


def brightness_images(per_class: int = 6, size: int = 8) -> ImageSet:
    labels = np.repeat(np.arange(4), per_class)
    pixels = np.stack([np.full((3, size, size), round(255 * (k + 1) / 5), np.uint8) for k in labels])
    return ImageSet(pixels=pixels, labels=labels, class_names=MODEL_CLASSES)


@pytest.fixture
def folder(tmp_path):
    data = brightness_images()
    for index, (image, label) in enumerate(zip(data.pixels, data.labels)):
        target = tmp_path / "images" / MODEL_CLASSES[label]
        target.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target / f"{index}.png"), image.transpose(1, 2, 0))
    return tmp_path / "images"


PREDICTIONS = Plan(images=24, stages=("predictions",))


def test_a_folder_scores_the_same_as_the_arrays_it_came_from(folder):
    teacher = brightness_subject()
    from_folder = load_dataset(str(folder))
    assert from_folder.class_names == ("L", "T", "circle", "square")
    assert teacher.evaluate(brightness_images())["accuracy"] == 1.0
    assert teacher.evaluate(from_folder)["accuracy"] == 1.0
    student = brightness_subject("student", "student")
    results = audit([teacher, student], from_folder, PREDICTIONS, progress=False)
    assert results.stages["predictions"].models["teacher"].accuracy[0] == 1.0
    assert "matched by name" in results.data["class_order"]


def test_a_folder_cannot_be_scored_against_a_model_without_class_names(folder):
    anonymous = Subject(Brightness(), name="anonymous")
    with pytest.raises(ClassMismatchError, match="class_names"):
        anonymous.evaluate(load_dataset(str(folder)))
    with pytest.raises(ClassMismatchError, match="not among the classes"):
        brightness_subject().evaluate(ImageSet(pixels=np.zeros((1, 3, 8, 8), np.uint8), labels=np.array([0]),
                                               class_names=("hexagon",)))


def test_the_cli_evaluate_matches_folder_classes_by_name(folder, tmp_path, monkeypatch):
    """A factory model with weights and the kdscope JSON beside them: class names come from that JSON."""
    (tmp_path / "brightness_models.py").write_text(
        "from tests.test_hardening import Brightness\n\ndef build():\n    return Brightness()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    save_checkpoint(tmp_path / "bright.pt", brightness_subject())
    result = CliRunner().invoke(main, ["evaluate", "--model", "brightness_models:build", "--weights",
                                       str(tmp_path / "bright.pt"), "--data", str(folder)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["accuracy"] == 1.0


def test_labels_the_model_has_no_output_for_are_refused(tmp_path):
    data = brightness_images()
    np.savez(tmp_path / "wide.npz", images=data.pixels, labels=np.where(data.labels == 3, 12, data.labels))
    wide = load_dataset(str(tmp_path / "wide.npz"))
    teacher = brightness_subject()
    with pytest.raises(ClassMismatchError, match="labels up to 12.*4 outputs"):
        teacher.evaluate(wide)
    with pytest.raises(ClassMismatchError, match="labels up to 12"):
        audit([teacher, brightness_subject("student", "student")], wide, PREDICTIONS, progress=False)
    result = CliRunner().invoke(main, ["evaluate", "--model", "nowhere.pt", "--data", str(tmp_path / "wide.npz")])
    assert result.exit_code != 0


def test_models_with_different_class_counts_are_refused_naming_both():
    teacher, student = brightness_subject(), brightness_subject("wide_student", "student", classes=5)
    with pytest.raises(ClassMismatchError, match="wide_student gives 5 class scores but teacher gives 4"):
        audit([teacher, student], brightness_images(), PREDICTIONS, progress=False)


@pytest.mark.parametrize(("table", "key"), [
    ({"images": 1.5}, "'images'"),
    ({"images": True}, "'images'"),
    ({"seed": "x"}, "'seed'"),
    ({"cka_layers": 3}, "'cka_layers'"),
    ({"cka_layers": {"teacher": "layer1"}}, "'cka_layers.teacher'"),
    ({"gallery_images": 2.5}, "'gallery_images'"),
    ({"robust_eps": [0.01, "big"]}, "'robust_eps'"),
    ({"explainers": "gradcam"}, "'explainers'"),
    ({"attacks": [{"attack": "pgd", "epsilon": 0.1}]}, "'attacks\\[0\\].epsilon'"),
    ({"attacks": [{"attack": "pgd", "steps": 2.5}]}, "'attacks\\[0\\].steps'"),
    ({"attacks": [{"attack": "pgd", "norm": 2}]}, "'attacks\\[0\\].norm'"),
])
def test_a_plan_with_a_wrong_type_names_the_key_before_anything_runs(table, key):
    with pytest.raises(ValueError, match=f"plan key {key}"):
        Plan.from_mapping(table)


def test_a_good_plan_file_passes():
    plan = Plan.from_mapping({"images": 8, "attacks": [{"attack": "pgd", "eps": 0.01, "steps": 2, "step": 1e-3},
                                                       {"attack": "square", "eps": 1, "queries": 10}],
                              "cka_layers": {"teacher": ["layer1"], "student": "auto"}})
    assert plan.images == 8


def test_the_cache_is_keyed_by_normalisation_and_labels(tmp_path):
    data = brightness_images()
    shifted = brightness_subject(mean=[0.2, 0.2, 0.2])
    student = brightness_subject("student", "student")
    first = audit([shifted, student], data, PREDICTIONS, cache=tmp_path, progress=False)
    assert first.stages["predictions"].models["teacher"].accuracy[0] < 1.0
    fixed = audit([brightness_subject(), student], data, PREDICTIONS, cache=tmp_path, progress=False)
    assert fixed.stages["predictions"].models["teacher"].accuracy[0] == 1.0
    relabelled = ImageSet(pixels=data.pixels, labels=(data.labels + 1) % 4, class_names=data.class_names)
    moved = audit([brightness_subject(), student], relabelled, PREDICTIONS, cache=tmp_path, progress=False)
    assert moved.stages["predictions"].models["teacher"].accuracy[0] == 0.0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "forge"])
def test_a_damaged_cache_entry_is_recomputed_with_a_warning(tmp_path, damage):
    subjects = [brightness_subject(), brightness_subject("student", "student")]
    audit(subjects, brightness_images(), PREDICTIONS, cache=tmp_path, progress=False)
    entry = tmp_path / "predictions.json"
    text = entry.read_text()
    if damage == "truncate":
        entry.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        entry.write_bytes(b"\x00\xff not json")
    else:
        stored = json.loads(text)
        stored["result"]["models"]["teacher"]["accuracy"] = [0.123, 0.1, 0.2]
        entry.write_text(json.dumps(stored))
    with pytest.warns(StaleCacheWarning, match="recomputing"):
        again = audit(subjects, brightness_images(), PREDICTIONS, cache=tmp_path, progress=False)
    assert again.stages["predictions"].models["teacher"].accuracy[0] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleCacheWarning)
        audit(subjects, brightness_images(), PREDICTIONS, cache=tmp_path, progress=False)


def test_a_class_sorted_folder_is_sampled_across_every_class(folder):
    data = load_dataset(str(folder))
    results = audit([brightness_subject(), brightness_subject("student", "student")], data,
                    Plan(images=8, stages=("predictions",)), progress=False)
    assert len(results.stages["predictions"].models["teacher"].per_class_accuracy) == 4
    assert "stratified by class" in results.data["sample"] and results.data["images_audited"] == 8
    assert sorted(np.bincount(load_dataset(str(folder), n=8).labels).tolist()) == [2, 2, 2, 2]


def test_stratified_sample_is_proportional_seeded_and_exact():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    chosen = stratified_sample(labels, 10, seed=3)
    assert len(chosen) == 10 and np.bincount(labels[chosen]).tolist() == [5, 3, 2]
    assert np.array_equal(chosen, stratified_sample(labels, 10, seed=3))
    assert not np.array_equal(chosen, stratified_sample(labels, 10, seed=4))
    assert np.array_equal(stratified_sample(labels, 200, seed=0), np.arange(100))


def test_images_of_another_size_than_the_model_was_trained_at_are_flagged():
    teacher = brightness_subject()
    teacher.metadata["input_shape"] = [3, 16, 16]
    with pytest.warns(UserWarning, match="trained on 16x16 images but the data is 8x8"):
        results = audit([teacher, brightness_subject("student", "student")], brightness_images(), PREDICTIONS,
                        progress=False)
    assert "--image-size 16" in results.data["warnings"][0]


@pytest.fixture
def factory_files(tmp_path, monkeypatch):
    (tmp_path / "bright_factories.py").write_text(
        "from tests.test_hardening import Brightness\n\ndef build():\n    return Brightness()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    save_checkpoint(tmp_path / "bright.pt", brightness_subject())
    return tmp_path


def _audit(root, *args):
    return CliRunner().invoke(main, ["audit", "--teacher", "bright_factories:build", "--quiet", "--images", "8",
                                     "--data", "probeworld", "--out", str(root / "out"), *args])


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "bright_factories:build", "--weights", "Teacher=W"], "no model is named 'Teacher'"),
    (["--model", "other=bright_factories:build", "--weights", "W"], "say which model it is for"),
    (["--model", "other=bright_factories:build"], "--random-weights"),
])
def test_weights_that_match_no_model_are_an_error(factory_files, args, message):
    weights = str(factory_files / "bright.pt")
    result = _audit(factory_files, *[weights if a == "W" else a.replace("=W", f"={weights}") for a in args])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (factory_files / "out" / "cache").exists()


def test_errors_at_the_boundary_name_the_right_fix():
    """Only a size problem suggests resizing; a channel or an output problem says what it is."""
    from kdscope.core.inputs import ModelInputError, prepare_data

    grey = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4))
    with pytest.raises(ModelInputError, match="number of channels") as channels:
        prepare_data([Subject(grey, class_names=MODEL_CLASSES)], brightness_images())
    assert "Resize" not in str(channels.value)
    fixed = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    with pytest.raises(ModelInputError, match="Resize them") as size:
        prepare_data([Subject(fixed, class_names=MODEL_CLASSES)], brightness_images())
    assert "channels" not in str(size.value).split(": ")[-1]
    softmax = nn.Sequential(Brightness(), nn.Softmax(1))
    with pytest.raises(ModelInputError, match="probabilities") as probabilities:
        prepare_data([Subject(softmax, class_names=MODEL_CLASSES)], brightness_images())
    assert "Resize" not in str(probabilities.value)
