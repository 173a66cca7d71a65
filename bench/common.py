"""What the benches share: the demo teacher and the demo's ProbeWorld train and test sets, and pytorch-grad-cam's
modules (`grad_cam_modules`, from tests/peers/grad_cam_modules.py, which the peer tests use too)."""

from __future__ import annotations

import sys
from pathlib import Path

from kdscope import ImageSet, Subject
from kdscope.demo import DemoRecipe, train_models
from kdscope.store.loading import load_subject

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, which holds tests/peers
from tests.peers.grad_cam_modules import grad_cam_modules  # noqa: E402

__all__ = ["demo_setting", "grad_cam_modules"]


def demo_setting(device: str = "cpu") -> tuple[DemoRecipe, Subject, ImageSet, ImageSet]:
    """(recipe, teacher on `device`, train set, test set): the demo's teacher with the images it learned from (every
    label) and the test split; trains the demo's teachers first if they are not cached."""
    recipe = DemoRecipe()
    train_models("runs/demo", progress=False, recipe=recipe)
    loaded = load_subject("runs/demo/teacher.pt")
    teacher = Subject(loaded.model.to(device), name="teacher", role="teacher", mean=loaded.mean.flatten().tolist(),
                      std=loaded.std.flatten().tolist(), class_names=loaded.class_names, metadata=loaded.metadata)
    data = recipe.data()
    return recipe, teacher, data["train"], data["test"]
