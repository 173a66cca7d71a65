"""kdscope: build compressed versions of a teacher model and audit what each one kept.

Public names load on first use (PEP 562), so `import kdscope.results` or `kdscope.reports` stays free of torch.
`kdscope.train` is the training function, as it always was, even after the `kdscope.train` module is imported."""

import sys
import types
from importlib import import_module

from kdscope.core.version import __version__

_PUBLIC = {
    "Augment": "kdscope.data.augment", "ImageSet": "kdscope.data", "digits": "kdscope.data",
    "image_folder": "kdscope.data", "load_dataset": "kdscope.data", "npz_images": "kdscope.data",
    "probeworld": "kdscope.data", "Subject": "kdscope.core.subject", "ProbabilityOutputError": "kdscope.core.subject",
    "bootstrap_ci": "kdscope.core.stats", "load_subject": "kdscope.store.loading", "TrainConfig": "kdscope.train",
    "TrainResult": "kdscope.train", "train": "kdscope.train",
    "Compressed": "kdscope.compress", "distill": "kdscope.compress", "prune": "kdscope.compress",
    "quantize": "kdscope.compress",
    "explain": "kdscope.explainers", "Plan": "kdscope.audit",
    "Results": "kdscope.results", "evaluate_checks": "kdscope.results", "write_report": "kdscope.reports",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'kdscope' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Importing the submodule `kdscope.train` sets the package attribute of that name to the module; the function
    keeps the name (the module stays in sys.modules, where `from kdscope.train import ...` finds it)."""

    @property
    def train(self) -> object:
        return import_module("kdscope.train").train

    @train.setter
    def train(self, _module: object) -> None:
        pass


sys.modules[__name__].__class__ = _Package
