"""What the benches share: the demo teacher and the demo's ProbeWorld train and test sets."""

from __future__ import annotations

from kdscope import ImageSet, Subject
from kdscope.data import probeworld
from kdscope.demo import DemoRecipe, train_models
from kdscope.store.loading import load_subject


def demo_setting(device: str = "cpu") -> tuple[DemoRecipe, Subject, ImageSet, ImageSet]:
    """(recipe, teacher on `device`, train set, test set); trains the demo models first if they are not cached."""
    recipe = DemoRecipe()
    train_models("runs/demo", progress=False, recipe=recipe)
    loaded = load_subject("runs/demo/teacher.pt")
    teacher = Subject(loaded.model.to(device), name="teacher", role="teacher", mean=loaded.mean.flatten().tolist(),
                      std=loaded.std.flatten().tolist(), class_names=loaded.class_names, metadata=loaded.metadata)
    train_data = probeworld(recipe.train_images, split="train", seed=recipe.seed)
    test_data = probeworld(recipe.test_images, split="test", seed=recipe.seed)
    return recipe, teacher, train_data, test_data
