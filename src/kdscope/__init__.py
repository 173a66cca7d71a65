"""kdscope: build compressed versions of a teacher model and audit what each one kept."""

__version__ = "0.1.0"

from kdscope.augment import Augment  # noqa: E402
from kdscope.data import ImageSet, digits, image_folder, load_dataset, npz_images, probeworld  # noqa: E402
from kdscope.loading import load_subject  # noqa: E402
from kdscope.stats import bootstrap_ci  # noqa: E402
from kdscope.subject import ProbabilityOutputError, Subject  # noqa: E402
from kdscope.train import TrainConfig, TrainResult, train  # noqa: E402

__all__ = [
    "Augment", "ImageSet", "ProbabilityOutputError", "Subject", "TrainConfig", "TrainResult", "__version__",
    "bootstrap_ci", "digits", "image_folder", "load_dataset", "load_subject", "npz_images", "probeworld", "train",
]
