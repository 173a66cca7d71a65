"""Comparing two models: representations (CKA), where they look (Grad-CAM agreement), what they decide."""

from kdscope.compare.cams import cam_agreement, ojha_statistic
from kdscope.compare.cka import CKAAccumulator, CKAGrid, as_rows, cka_grid, gram_cka
from kdscope.compare.predictions import agreement, ece_with_interval, expected_calibration_error, per_class_accuracy
from kdscope.compare.probes import compare_outcomes, consensus, invariance, shape_decisions, shortcut_reliance

__all__ = ["CKAAccumulator", "CKAGrid", "agreement", "as_rows", "cam_agreement", "cka_grid", "compare_outcomes",
           "consensus", "ece_with_interval", "expected_calibration_error", "gram_cka", "invariance", "ojha_statistic",
           "per_class_accuracy", "shape_decisions", "shortcut_reliance"]
