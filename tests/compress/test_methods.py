"""The registry of compression methods: one calling contract, parameter specs read from the configs, and the CLI's
choices generated from it."""

from __future__ import annotations

import dataclasses
import inspect

import click
import pytest

from kdscope.cli.compress import compress
from kdscope.compress import METHODS, Compressed
from kdscope.compress.kd_losses import LOSSES
from kdscope.compress.quant_backend import CALIBRATIONS


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_follows_the_one_calling_contract(name):
    method = METHODS[name]
    parameters = inspect.signature(method.run).parameters
    assert list(parameters)[:3] == ["teacher" if name == "distill" else "parent", "data", "config"]
    assert all(parameters[p].kind is inspect.Parameter.KEYWORD_ONLY for p in ("train", "out", "eval_data", "name"))
    assert isinstance(parameters["config"].default, method.config)
    assert (parameters["data"].default is inspect.Parameter.empty) == method.needs_data
    assert inspect.signature(method.run).return_annotation in (Compressed, "Compressed")
    assert method.trains in ("always", "optional")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_parameter_specs_are_the_config_fields(name):
    method = METHODS[name]
    spec = method.parameters()
    defaults = method.config()
    assert list(spec) == [f.name for f in dataclasses.fields(method.config)]
    assert all(spec[field].default == getattr(defaults, field) for field in spec)
    assert all(spec[field].default in spec[field].choices for field in spec if spec[field].choices)


def test_cli_choices_come_from_the_registry():
    def choices(command: str, option: str) -> list[str]:
        found = next(p for p in compress.commands[command].params if p.name == option)
        assert isinstance(found.type, click.Choice)
        return list(found.type.choices)

    assert choices("prune", "method") == [m.name for m in METHODS.values() if m.command == "prune"]
    assert choices("distill", "kind") == list(LOSSES)
    assert choices("prune", "scope") == list(METHODS["magnitude"].parameters()["scope"].choices)
    assert choices("quantize", "mode") == list(METHODS["quantize"].parameters()["mode"].choices)
    assert choices("quantize", "calibration") == list(CALIBRATIONS)
    assert {m.command for m in METHODS.values()} == set(compress.commands)
