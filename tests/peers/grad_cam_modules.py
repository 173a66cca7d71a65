"""pytorch-grad-cam 1.5.7's modules, loaded one by one from the installed package without its `__init__` files.

The package is installed with `pip install --no-deps grad-cam==1.5.7` (the Makefile does it): it requires
torchvision, which does not work with this torch, and a present-but-broken torchvision makes `import transformers`
fail. Its `__init__` files import every method, so they are skipped: the two packages are registered as empty
modules pointing at the installed folders, and only the modules asked for run. Used by tests/peers and the benches
(bench/common.py)."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types
from pathlib import Path

VERSION = "1.5.7"
STAND_INS = ("ttach", "torchvision", "torchvision.transforms")
"""Imported at the top of some files but used only by options left off (test-time augmentation, detection targets,
`preprocess_image`): empty stand-ins while the files load, removed after, so `transformers` never sees a
torchvision."""


def grad_cam_folder() -> tuple[Path | None, str]:
    """(the installed `pytorch_grad_cam` folder, "") or (None, why it cannot be used)."""
    install = f"pip install --no-deps grad-cam=={VERSION} (make test does it)"
    try:
        found = importlib.metadata.distribution("grad-cam")
    except importlib.metadata.PackageNotFoundError:
        return None, f"pytorch-grad-cam is not installed: {install}"
    if found.version != VERSION:
        return None, f"pytorch-grad-cam {found.version} is installed, the peer cases are {VERSION}'s: {install}"
    folder = Path(found.locate_file("pytorch_grad_cam"))
    if not (folder / "grad_cam.py").is_file():
        return None, f"grad-cam {VERSION} is installed but {folder} holds no grad_cam.py: {install}"
    return folder, ""


def grad_cam_modules(*names: str) -> list[types.ModuleType]:
    """The modules `names` (such as "pytorch_grad_cam.grad_cam") of the installed pytorch-grad-cam; raises
    ModuleNotFoundError with the reason when it is missing or another version."""
    folder, reason = grad_cam_folder()
    if folder is None:
        raise ModuleNotFoundError(reason)
    for package, path in (("pytorch_grad_cam", folder), ("pytorch_grad_cam.utils", folder / "utils")):
        sys.modules.setdefault(package, types.ModuleType(package)).__path__ = [str(path)]
    stand_ins = [name for name in STAND_INS if name not in sys.modules]
    for name in stand_ins:
        module = sys.modules[name] = types.ModuleType(name)
        module.__getattr__ = lambda attribute: lambda *args, **kwargs: None
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        for name in stand_ins:
            del sys.modules[name]
