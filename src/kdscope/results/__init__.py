"""What an audit found, as typed records with a versioned JSON form, and the pass/fail checks on them. No torch."""

from kdscope.results.checks import evaluate_checks, failures, parse_check
from kdscope.results.schema import SCHEMA_VERSION, Results

__all__ = ["SCHEMA_VERSION", "Results", "evaluate_checks", "failures", "parse_check"]
