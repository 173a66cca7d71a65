"""Compression that produces the audited models; each technique returns new Subjects plus lineage records."""

from kdscope.compress.distill import DistillationLoss, DistillConfig, DistillResult, distill
from kdscope.compress.kd_losses import distillation_loss, logit_l2, soft_kl
from kdscope.compress.lineage import Lineage, model_metrics
from kdscope.compress.prune import PruneConfig, lottery_ticket, prune
from kdscope.compress.quantize import QuantizeConfig, quantize
from kdscope.compress.structured import StructuredConfig, structured_prune

__all__ = ["DistillConfig", "DistillResult", "DistillationLoss", "Lineage", "PruneConfig", "QuantizeConfig",
           "StructuredConfig", "distill", "distillation_loss", "logit_l2", "lottery_ticket", "model_metrics", "prune",
           "quantize", "soft_kl", "structured_prune"]
