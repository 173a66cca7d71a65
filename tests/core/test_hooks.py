"""ModuleChanges: hooks and attribute changes undone exactly, also after an exception, leaving others' hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdscope.core.hooks import ModuleChanges
from tests.module_state import assert_modules_unchanged, modules_snapshot


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 2))


def test_everything_it_or_torch_changed_is_undone_after_an_exception():
    model = _model()
    before = modules_snapshot(model)
    relu = model[1]
    with pytest.raises(RuntimeError, match="boom"), ModuleChanges() as changes:
        changes.set(relu, "inplace", False)
        changes.set(relu, "kdscope_mark", 1)
        changes.hook(relu.register_full_backward_hook, lambda *args: None)
        changes.hook(model[0].register_forward_hook, lambda *args: None, with_kwargs=True, always_call=True)
        changes.hook(model[2].register_forward_pre_hook, lambda *args: None)
        assert relu._is_full_backward_hook is True and not relu.inplace
        raise RuntimeError("boom")
    assert relu.inplace and not hasattr(relu, "kdscope_mark") and relu._is_full_backward_hook is None
    assert_modules_unchanged(model, before)


def test_hooks_that_others_add_meanwhile_stay():
    model = _model()
    with ModuleChanges() as changes:
        changes.hook(model[0].register_forward_hook, lambda *args: None)
        theirs = model[0].register_forward_hook(lambda *args: None)
    assert list(model[0]._forward_hooks) == [theirs.id]


def test_undo_restores_the_value_from_before_the_first_change_once():
    relu = nn.ReLU(inplace=True)
    changes = ModuleChanges()
    changes.set(relu, "inplace", False)
    changes.set(relu, "inplace", "other")
    changes.undo()
    changes.undo()
    assert relu.inplace is True


def test_tensors_and_modules_are_refused():
    with pytest.raises(TypeError, match="plain attributes"):
        ModuleChanges().set(nn.Linear(2, 2), "weight", torch.zeros(2, 2))
