"""Attacks: torchattacks equality, eps-ball and box properties, CW against a closed form, int8 through the twin."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchattacks
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kdscope import ProbabilityOutputError, Subject, zoo
from kdscope.attacks import (
    GradientMaskingWarning,
    carlini_wagner,
    check_gradient_masking,
    margin,
    run,
    transfer_matrix,
    transfer_rates,
)
from kdscope.core.subject import RawInputModel
from tests.conftest import assert_unchanged, parameters_snapshot


@pytest.fixture(scope="module")
def teacher(trained_tiny_teacher):
    return trained_tiny_teacher


@pytest.fixture(scope="module")
def batch(tiny_world):
    _, test_set = tiny_world
    return test_set.images(slice(0, 16)), test_set.targets(slice(0, 16))




def test_fgsm_equals_torchattacks(teacher, batch):
    x, y = batch
    ours = run(teacher, x, y, attack="fgsm", eps=4 / 255).adversarial
    theirs = torchattacks.FGSM(RawInputModel(teacher).eval(), eps=4 / 255)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("norm, peer", [("linf", "PGD"), ("l2", "PGDL2")])
def test_pgd_without_random_start_equals_torchattacks(teacher, batch, norm, peer):
    x, y = batch
    eps, step = (8 / 255, 2 / 255) if norm == "linf" else (0.5, 0.1)
    ours = run(teacher, x, y, attack="pgd", eps=eps, step=step, steps=5, norm=norm, random_start=False)
    theirs = getattr(torchattacks, peer)(RawInputModel(teacher).eval(), eps=eps, alpha=step, steps=5,
                                         random_start=False)(x, y)
    torch.testing.assert_close(ours.adversarial, theirs, atol=1e-5, rtol=0)
    assert ours.gradient_source == "model" and ours.judged_on == "model"


@settings(max_examples=12, deadline=None)
@given(eps=st.floats(0.0, 0.2), norm=st.sampled_from(["linf", "l2"]), start=st.booleans(),
       attack=st.sampled_from(["pgd", "fgsm", "square"]))
def test_results_stay_in_the_eps_ball_and_the_box(teacher, batch, eps, norm, start, attack):
    x, y = batch
    before = x.clone()
    params = {"eps": eps}
    if attack == "pgd":
        params.update(norm=norm, random_start=start, steps=3)
    if attack == "square":
        params.update(queries=20)
    result = run(teacher, x, y, attack=attack, **params)
    assert torch.equal(x, before)
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0
    bound = result.l2 if attack == "pgd" and norm == "l2" else result.linf
    assert float(bound.max()) <= eps + 1e-5


@pytest.mark.parametrize("attack, params", [("pgd", {"steps": 3}), ("square", {"queries": 30})])
def test_seeded_attacks_are_deterministic(teacher, batch, attack, params):
    x, y = batch
    first = run(teacher, x, y, attack=attack, seed=3, **params).adversarial
    assert torch.equal(first, run(teacher, x, y, attack=attack, seed=3, **params).adversarial)
    assert not torch.equal(first, run(teacher, x, y, attack=attack, seed=4, **params).adversarial)


def test_attacks_restore_a_model_left_in_train_mode(teacher, batch):
    x, y = batch
    teacher.model.train()
    before = parameters_snapshot(teacher.model)
    try:
        run(teacher, x, y, attack="pgd", steps=2)
        run(teacher, x, y, attack="cw", steps=3, binary_search_steps=1)
        assert teacher.model.training
        assert_unchanged(teacher.model, before)
    finally:
        teacher.model.eval()


def test_cw_finds_the_closed_form_minimal_l2_on_a_linear_model():
    """Two classes, logits W x + b: the closest point of the other class lies at distance |z0 - z1| / ||w0 - w1||."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    subject = Subject(linear, name="linear")
    x = 0.4 + 0.2 * torch.rand(6, 1, 4, 4)
    with torch.no_grad():
        logits = linear(x)
    y = logits.argmax(1)
    w = linear[1].weight.detach()
    expected = (logits[:, 0] - logits[:, 1]).abs() / (w[0] - w[1]).norm()
    result = carlini_wagner(subject, x, y, steps=300, lr=0.01, binary_search_steps=12, initial_const=0.1)
    assert bool(result.success.all())
    assert torch.all(result.l2 >= expected - 1e-4)
    torch.testing.assert_close(result.l2, expected, rtol=0.05, atol=1e-3)


def test_margin_is_right_when_every_logit_is_negative():
    logits = torch.tensor([[-5.0, -1.0, -3.0], [-0.5, -4.0, -2.0]])
    y = torch.tensor([1, 0])
    assert torch.equal(margin(logits, y, None), torch.tensor([2.0, 1.5]))
    assert torch.equal(margin(logits, y, torch.tensor([2, 2])), torch.tensor([2.0, 1.5]))


def test_penalized_attack_raises_the_target_logit(teacher, batch):
    x, y = batch
    target = (y + 1) % 10
    with torch.no_grad():
        before = teacher.logits(x).gather(1, target.view(-1, 1))
    result = run(teacher, x, y, attack="penalized", target=target, lam=0.01, steps=30, lr=0.01)
    with torch.no_grad():
        after = teacher.logits(result.adversarial).gather(1, target.view(-1, 1))
    assert float((after - before).mean()) > 0
    assert result.params["targeted"]


def test_transfer_rates_on_hand_made_predictions():
    y = np.array([0, 0, 0, 0, 1, 1])
    source_clean = np.array([0, 0, 0, 1, 1, 1])
    source_adv = np.array([1, 1, 0, 1, 0, 0])
    target_clean = np.array([0, 0, 0, 0, 0, 1])
    target_adv = np.array([1, 0, 0, 1, 0, 0])
    rates = transfer_rates(y, source_clean, source_adv, target_clean, target_adv)
    assert rates["conditional"][0][0] == pytest.approx(2 / 3)
    assert rates["unconditional"][0][0] == pytest.approx(4 / 5)
    assert rates["fooling"][0][0] == pytest.approx(2 / 4)
    assert rates["conditional"][1]["denominator"] == [True, True, False, False, False, True]


def test_transfer_matrix_diagonal_is_white_box(teacher, batch, tiny_world):
    x, y = batch
    other = Subject(zoo.build("student", 10, seed=1, width=2), name="other", mean=teacher.mean.flatten().tolist(),
                    std=teacher.std.flatten().tolist())
    result = transfer_matrix([teacher, other], x, y, attack="fgsm", eps=8 / 255, round_to_8bit=True)
    assert len(result.cells) == 4 and result.rounded_to_8bit
    diagonal = result.cell("teacher", "teacher")
    assert diagonal.unconditional[0] == pytest.approx(1.0) or math.isnan(diagonal.unconditional[0])
    adversarial = torch.round(run(teacher, x, y, attack="fgsm", eps=8 / 255).adversarial * 255) / 255
    other_fooled = (other.predict(adversarial) != y).numpy()
    teacher_fooled = (teacher.predict(adversarial) != y).numpy()
    assert result.white_box_success["teacher"] == pytest.approx(teacher_fooled.mean())
    expected = (teacher_fooled & other_fooled).sum() / max(teacher_fooled.sum(), 1)
    assert result.cell("teacher", "other").unconditional[0] == pytest.approx(expected)


@pytest.mark.parametrize("params, message", [({"eps": -0.1}, "eps must be >= 0"),
                                             ({"norm": "l1"}, "norm must be")])
def test_bad_parameters_are_refused(teacher, batch, params, message):
    x, y = batch
    with pytest.raises(ValueError, match=message):
        run(teacher, x, y, attack="pgd", **params)


def test_bad_inputs_are_refused(teacher, batch):
    x, y = batch
    with pytest.raises(ValueError, match="images must be raw values"):
        run(teacher, x * 3, y, attack="fgsm")
    with pytest.raises(ValueError, match="labels must lie in"):
        run(teacher, x, y + 10, attack="fgsm")
    with pytest.raises(ValueError, match="one class index per image"):
        run(teacher, x, y[:3], attack="fgsm")
    with pytest.raises(ValueError, match="unknown attack"):
        run(teacher, x, y, attack="deepfool")
    probabilities = Subject(nn.Sequential(teacher.model, nn.Softmax(1)), mean=teacher.mean.flatten().tolist(),
                            std=teacher.std.flatten().tolist())
    with pytest.raises(ProbabilityOutputError):
        run(probabilities, x, y, attack="fgsm")


class _Staircase(nn.Module):
    """Rounds its input before a linear layer: the gradient is zero everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.round(x * 4).flatten(1))


def test_zero_gradients_and_a_stronger_gradient_free_attack_warn():
    torch.manual_seed(0)
    subject = Subject(_Staircase(), name="staircase")
    x = torch.rand(32, 1, 4, 4)
    y = subject.predict(x)
    with pytest.warns(GradientMaskingWarning, match="zero everywhere"):
        white_box = run(subject, x, y, attack="fgsm", eps=0.3)
    gradient_free = run(subject, x, y, attack="square", eps=0.3, queries=200)
    with pytest.warns(GradientMaskingWarning, match="look masked"):
        assert check_gradient_masking(white_box, gradient_free)


def test_targeted_fgsm_equals_torchattacks_targeted_mode(teacher, batch):
    x, y = batch
    target = (y + 3) % 10
    ours = run(teacher, x, y, attack="fgsm", target=target, eps=8 / 255)
    peer = torchattacks.FGSM(RawInputModel(teacher).eval(), eps=8 / 255)
    peer.set_mode_targeted_by_label(quiet=True)
    torch.testing.assert_close(ours.adversarial, peer(x, target), atol=1e-6, rtol=0)
    assert ours.params["targeted"]
