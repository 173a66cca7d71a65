"""Registries are the one source of names, capabilities and parameters: the CLI and plan validation follow them,
and each capability holds for the method that claims it."""

import pytest
import torch
from click.testing import CliRunner

from kdscope import Subject
from kdscope.attacks import ATTACKS
from kdscope.audit import Plan
from kdscope.cli.main import main
from kdscope.explainers import METHODS, ActivationRuleError, explain
from kdscope.explainers.rollout import NoAttentionError
from tests.explainers.test_explainers import FunctionalRelu


@pytest.mark.parametrize("method", sorted(METHODS))
def test_methods_needing_relu_modules_refuse_functional_relus_and_the_others_run(method):
    subject = Subject(FunctionalRelu().eval())
    x, y = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 2])
    params = {"occlusion": {"patch": 4, "stride": 4}, "superpixel_shap": {"permutations": 1}}.get(method, {})
    if METHODS[method].can("needs_relu_modules"):
        with pytest.raises(ActivationRuleError, match="calls ReLU as a function"):
            explain(subject, x, y, method=method, **params)
    elif METHODS[method].can("needs_attention"):
        with pytest.raises(NoAttentionError, match="no softmax attention"):
            explain(subject, x, y, method=method, **params)
    else:
        assert explain(subject, x, y, method=method, **params).maps.shape[0] == 2


def test_gradient_free_methods_are_exactly_the_ones_that_run_int8_kernels():
    """Attention rollout reads attention weights: neither gradients nor an int8 model's kernels."""
    for registry in (METHODS, ATTACKS):
        for entry in registry.values():
            if not entry.can("needs_attention"):
                assert entry.can("needs_gradients") != entry.can("runs_int8_kernels"), entry.name


def test_cli_choices_come_from_the_registries():
    attack_help = CliRunner().invoke(main, ["attack", "--help"]).output
    assert all(name in attack_help for name in ATTACKS)
    refused = CliRunner().invoke(main, ["explain", "--model", "x", "--methods", "nope", "--out", "o"])
    assert refused.exit_code != 0 and all(name in refused.output for name in METHODS)


def test_plan_validation_follows_each_attacks_parameters_and_choices():
    with pytest.raises(ValueError, match=r"attacks\[0\].norm' must be one of \('linf', 'l2'\)"):
        Plan(attacks=({"attack": "pgd", "norm": "l3"},)).validate()
    with pytest.raises(ValueError, match="square takes no parameter 'steps'"):
        Plan(attacks=({"attack": "square", "steps": 3},)).validate()
    Plan(attacks=({"attack": "pgd", "norm": "l2", "eps": 0.5},)).validate()
