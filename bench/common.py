"""What the benches share: the demo teacher and the demo's ProbeWorld train and test sets, and pytorch-grad-cam's
modules loaded from its source."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

from kdscope import ImageSet, Subject
from kdscope.demo import DemoRecipe, train_models
from kdscope.store.loading import load_subject


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


def grad_cam_modules(*names: str, absent: tuple[str, ...] = ()) -> list[types.ModuleType]:
    """pytorch-grad-cam 1.5.7's modules `names` (such as "pytorch_grad_cam.grad_cam"), imported from its sdist.
    The package itself cannot be installed here (it requires torchvision, which does not work with this torch), and
    its `__init__` files are skipped (they import every method). Modules in `absent` (ttach, torchvision: imported at
    the top of a file but used only by options left off, test-time augmentation and detection targets) are empty
    stand-ins while the files load and are removed after, so that `transformers` never sees a torchvision."""
    folder = Path(tempfile.mkdtemp())
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    "grad-cam==1.5.7", "-d", str(folder)], check=True)
    with tarfile.open(next(folder.glob("grad_cam-*.tar.gz"))) as archive:
        archive.extractall(folder, filter="data")
    root = next(folder.glob("grad_cam-*")) / "pytorch_grad_cam"
    for package, path in (("pytorch_grad_cam", root), ("pytorch_grad_cam.utils", root / "utils")):
        sys.modules.setdefault(package, types.ModuleType(package)).__path__ = [str(path)]
    stand_ins = [name for name in absent if name not in sys.modules]
    for name in stand_ins:
        module = sys.modules[name] = types.ModuleType(name)
        module.__getattr__ = lambda attribute: lambda *args, **kwargs: None
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        for name in stand_ins:
            del sys.modules[name]
