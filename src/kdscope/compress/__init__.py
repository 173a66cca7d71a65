"""Compression that produces the audited models; every technique returns a `Compressed`: the new Subject with its
lineage attached, in memory as on disk."""

from kdscope.compress.compressed import Compressed
from kdscope.compress.distill import DistillationLoss, DistillConfig, distill
from kdscope.compress.kd_losses import distillation_loss, logit_l2, soft_kl
from kdscope.compress.lineage import Lineage, model_metrics
from kdscope.compress.methods import METHODS, Method
from kdscope.compress.prune import LotteryConfig, PruneConfig, lottery_ticket, prune
from kdscope.compress.quantize import QuantizeConfig, quantize
from kdscope.compress.structured import StructuredConfig, structured_prune

__all__ = ["METHODS", "Compressed", "DistillConfig", "DistillationLoss", "Lineage", "LotteryConfig", "Method",
           "PruneConfig", "QuantizeConfig", "StructuredConfig", "distill", "distillation_loss", "logit_l2",
           "lottery_ticket", "model_metrics", "prune", "quantize", "soft_kl", "structured_prune"]
