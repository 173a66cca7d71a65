"""The audit: `audit(subjects, data, plan) -> Results`, every stage the plan names on the teacher and the others."""

from kdscope.audit.plan import STAGES, Plan
from kdscope.audit.runner import audit

__all__ = ["STAGES", "Plan", "audit"]
