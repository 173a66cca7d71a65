"""Attacks across architectures: a HuggingFace ViT (built offline from a tiny config) and a zoo CNN attack each other.
Each ordered pair's transfer rates are checked against the same counts written out from FGSM images crafted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import ViTConfig, ViTForImageClassification

from kdscope import Subject, zoo
from kdscope.attacks import fgsm, pgd, transfer_matrix
from kdscope.data import digits
from kdscope.train import TrainConfig, train
from tests.conftest import assert_unchanged, parameters_snapshot

EPS = 8 / 255


@pytest.fixture(scope="module")
def world():
    """Handwritten digits at 16x16: 640 to train on, 200 to attack from."""
    return digits(split="train", size=16).subset(slice(0, 640)), digits(split="test", size=16).subset(slice(0, 200))


@pytest.fixture(scope="module")
def pair(world):
    """A ViT (4x4 patches of 4x4 pixels and a class token) and a CNN, each trained three epochs."""
    data, _ = world
    mean, std = data.channel_stats()
    torch.manual_seed(0)
    vit = ViTForImageClassification(ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=64, num_labels=10))
    cnn = zoo.build("student", 10, seed=0, width=4, blocks=1)
    subjects = []
    for model, name, config in (
            (vit, "vit", TrainConfig(epochs=3, batch_size=32, lr=5e-3, optimizer="adamw", warmup_epochs=0)),
            (cnn, "cnn", TrainConfig(epochs=3, batch_size=32, lr=0.05))):
        train(model, data, config, progress=False)
        subjects.append(Subject(model.eval(), name=name, mean=mean, std=std, class_names=data.class_names))
    return subjects


@pytest.fixture(scope="module")
def batch(pair, world):
    """12 images both models classify right (so every rate has images to count) and 12 that one of them gets
    wrong (which the conditional rate must leave out)."""
    _, test = world
    x, y = test.images(), test.targets()
    right = (pair[0].predict(x) == y) & (pair[1].predict(x) == y)
    assert int(right.sum()) >= 4, "too few images both models get right for the rates to be tested"
    chosen = torch.cat([torch.nonzero(right).flatten()[:12], torch.nonzero(~right).flatten()[:12]])
    return x[chosen], y[chosen]


def _fgsm_by_hand(subject: Subject, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x + eps * sign(d CE / d x), clipped to [0, 1], through the model's own forward; and the gradient."""
    xg = x.clone().requires_grad_(True)
    output = subject.model(subject.normalize(xg))
    logits = getattr(output, "logits", output)          # the ViT returns a ModelOutput
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xg)
    return (x + EPS * grad.sign()).clamp(0, 1), grad


def test_fgsm_on_a_vit_and_a_cnn_is_the_signed_gradient_step_inside_the_ball(pair, batch):
    x, y = batch
    x_before = x.clone()
    for subject in pair:
        before = parameters_snapshot(subject.model)
        result = fgsm(subject, x, y, eps=EPS)
        expected, grad = _fgsm_by_hand(subject, x, y)
        assert float((result.adversarial - x).abs().max()) <= EPS + 1e-6
        assert 0 <= float(result.adversarial.min()) and float(result.adversarial.max()) <= 1
        clear = grad.abs() > 1e-6 * grad.abs().max()     # where float noise cannot flip the sign
        assert clear.float().mean() > 0.5, subject.name
        torch.testing.assert_close(result.adversarial[clear], expected[clear], atol=1e-6, rtol=0)
        assert torch.equal(result.success, subject.predict(result.adversarial) != y)
        assert_unchanged(subject.model, before)
    assert torch.equal(x, x_before)


def test_transfer_matrix_between_a_vit_and_a_cnn_counts_what_each_pair_did(pair, batch):
    x, y = batch
    result = transfer_matrix(pair, x, y, attack="fgsm", eps=EPS)
    assert result.models == ["vit", "cnn"] and len(result.cells) == 4
    assert {(c.source, c.target) for c in result.cells} == {(a, b) for a in ("vit", "cnn") for b in ("vit", "cnn")}
    y_np = y.numpy()
    clean = {s.name: s.predict(x).numpy() for s in pair}
    counted = 0
    for source in pair:
        adversarial = fgsm(source, x, y, eps=EPS).adversarial
        fooled = {s.name: s.predict(adversarial).numpy() for s in pair}
        assert result.white_box_success[source.name] == pytest.approx((fooled[source.name] != y_np).mean())
        for target in pair:
            cell = result.cell(source.name, target.name)
            both = (fooled[source.name] != y_np) & (fooled[target.name] != y_np)
            eligible = (clean[source.name] == y_np) & (clean[target.name] == y_np) & (fooled[source.name] != y_np)
            for rate, numerator, denominator in (
                    (cell.unconditional, both, fooled[source.name] != y_np),
                    (cell.conditional, eligible & (fooled[target.name] != y_np), eligible)):
                if denominator.any():
                    counted += source is not target
                    assert rate[0] == pytest.approx(numerator.sum() / denominator.sum())
                    assert 0 <= rate[1] <= rate[0] <= rate[2] <= 1
                else:
                    assert math.isnan(rate[0])
            masks = cell.masks["conditional"]
            assert np.array_equal(masks["denominator"], eligible) and len(masks["numerator"]) == len(x)
            assert not (np.array(masks["numerator"]) & ~np.array(masks["denominator"])).any()
    assert result.white_box_success["vit"] > 0 and result.white_box_success["cnn"] > 0
    assert counted == 4, "each cross-architecture pair's two rates were measured on some images"


@pytest.mark.parametrize("norm, eps", [("linf", EPS), ("l2", 0.5)])
def test_pgd_on_the_vit_stays_in_the_ball_and_the_box(pair, batch, norm, eps):
    x, y = batch
    vit = pair[0]
    result = pgd(vit, x, y, eps=eps, steps=5, norm=norm, seed=0)
    delta = (result.adversarial - x).flatten(1)
    size = delta.abs().max(dim=1).values if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert 0 <= float(result.adversarial.min()) and float(result.adversarial.max()) <= 1
    assert torch.equal(result.success, vit.predict(result.adversarial) != y)
