"""kdscope: build compressed versions of a teacher model and audit what each one kept."""

__version__ = "0.1.0"
