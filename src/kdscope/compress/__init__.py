"""Compression that produces the audited models; each technique returns new Subjects plus lineage records."""

from kdscope.compress.distill import DistillationLoss, DistillConfig, DistillResult, distill
from kdscope.compress.kd_losses import distillation_loss, logit_l2, soft_kl
from kdscope.compress.lineage import Lineage, model_metrics

__all__ = ["DistillConfig", "DistillResult", "DistillationLoss", "Lineage", "distill", "distillation_loss",
           "logit_l2", "model_metrics", "soft_kl"]
