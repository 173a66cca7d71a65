"""The pieces every results record is made of: an estimate with its 95% interval, a measurement that could not be
made (`Unavailable`, with the reason), and reading plain JSON data with errors that name what is missing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Interval = tuple[float, float, float]
"""(estimate, low, high): a statistic over the audit images with its 95% bootstrap interval."""

NO_STUDENT_AND_CONTROL = ("needs a distilled student (role 'student') and its independent control (role "
                          "'independent_student')")


class SchemaError(ValueError):
    """Plain data that does not have the shape of a results record."""


@dataclass(frozen=True)
class Unavailable:
    """A measurement the audit could not make, and why: shown in the report, and the note of a check that needs
    it. In JSON: {"unavailable": reason}."""

    reason: str

    def to_plain(self) -> dict[str, str]:
        return {"unavailable": self.reason}

    @classmethod
    def from_plain(cls, plain: object) -> Unavailable:
        if not cls.holds(plain):
            raise SchemaError(f"expected {{'unavailable': reason}}, got {plain!r:.80}")
        return cls(plain["unavailable"])

    @staticmethod
    def holds(plain: object) -> bool:
        """Whether `plain` is an Unavailable's JSON (a one-key object with a string: never a record, whose values
        are objects, lists or numbers, even for a model named 'unavailable')."""
        return isinstance(plain, dict) and set(plain) == {"unavailable"} and isinstance(plain["unavailable"], str)


def require(plain: object, key: str) -> object:
    """plain[key], or a SchemaError naming the key."""
    if not isinstance(plain, dict):
        raise SchemaError(f"expected a JSON object with the key '{key}', got {type(plain).__name__}")
    if key not in plain:
        raise SchemaError(f"lacks the key '{key}'")
    return plain[key]


def interval(value: object) -> Interval:
    """(estimate, low, high) from its JSON list."""
    if not (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise SchemaError(f"expected [estimate, low, high], got {value!r:.80}")
    return float(value[0]), float(value[1]), float(value[2])


def optional_interval(value: object) -> Interval | None:
    return None if value is None else interval(value)


def or_unavailable(plain: object, decode: Callable[[object], T]) -> T | Unavailable:
    """The record `decode` reads from `plain`, or the Unavailable that `plain` holds instead."""
    return Unavailable.from_plain(plain) if Unavailable.holds(plain) else decode(plain)


def mapping(plain: object, decode: Callable[[object], T]) -> dict[str, T]:
    """A JSON object of records (by model, method or layer name), read in its order."""
    if not isinstance(plain, dict):
        raise SchemaError(f"expected a JSON object, got {type(plain).__name__}")
    return {str(key): decode(value) for key, value in plain.items()}


def sequence(plain: object, decode: Callable[[object], T]) -> list[T]:
    if not isinstance(plain, list):
        raise SchemaError(f"expected a JSON list, got {type(plain).__name__}")
    return [decode(value) for value in plain]


def measured(value: T | Unavailable) -> T:
    """The value, or a LookupError with the reason it was not measured (what a failed check reports)."""
    if isinstance(value, Unavailable):
        raise LookupError(value.reason)
    return value
