"""Comparing two models: representations (CKA), where they look (Grad-CAM agreement), what they decide. Each
statistic has one implementation here, an accumulator (`update`, `merge`, `compute`) where it runs over batches,
used by the audit stages, the Python API and the benches alike."""

from kdscope.compare.cams import MapAgreementAccumulator, OjhaAccumulator, cam_agreement, ojha_statistic
from kdscope.compare.cka import (
    CKAAccumulator,
    CKAGrid,
    CKAGridAccumulator,
    as_rows,
    cka_grid,
    gram_cka,
    shuffled_pairing,
)
from kdscope.compare.predictions import (
    accuracy_with_interval,
    agreement,
    ece_with_interval,
    expected_calibration_error,
    per_class_accuracy,
)
from kdscope.compare.probes import compare_outcomes, consensus, invariance, shape_decisions, shortcut_reliance

__all__ = ["CKAAccumulator", "CKAGrid", "CKAGridAccumulator", "MapAgreementAccumulator", "OjhaAccumulator",
           "accuracy_with_interval", "agreement", "as_rows", "cam_agreement", "cka_grid", "compare_outcomes",
           "consensus", "ece_with_interval", "expected_calibration_error", "gram_cka", "invariance", "ojha_statistic",
           "per_class_accuracy", "shape_decisions", "shortcut_reliance", "shuffled_pairing"]
