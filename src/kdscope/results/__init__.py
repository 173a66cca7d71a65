"""What an audit found, as typed records with a versioned JSON form, and the pass/fail checks on them. No torch."""

from kdscope.results.checks import evaluate_checks, failures, parse_check
from kdscope.results.schema import SCHEMA_VERSION, STAGE_RECORDS, Results
from kdscope.results.values import Unavailable

__all__ = ["SCHEMA_VERSION", "STAGE_RECORDS", "Results", "Unavailable", "evaluate_checks", "failures", "parse_check"]
