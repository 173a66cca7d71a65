"""kdscope: build compressed versions of a teacher model and audit what each one kept.

Public names load on first use (PEP 562), so `import kdscope.results` or `kdscope.reports` stays free of torch."""

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
    "explain": "kdscope.explainers", "Plan": "kdscope.audit", "audit": "kdscope.audit",
    "Results": "kdscope.results", "evaluate_checks": "kdscope.results", "write_report": "kdscope.reports",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'kdscope' has no attribute {name!r}")
