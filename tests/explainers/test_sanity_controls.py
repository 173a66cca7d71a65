"""The sanity checks do not lean towards 'pass': constant maps are counted apart (no ranking, not a complete
change), normalisation layers are randomised too, and a failing check says whether the randomisation missed
weights or the maps follow the architecture."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdscope import Subject, zoo
from kdscope.explainers.sanity import (
    SanityResult,
    SanityStep,
    cascading_randomization,
    judge,
    randomised_share,
    randomizable_layers,
    randomize,
)
from kdscope.explainers.similarity import degenerate_maps, map_similarity


def test_a_constant_map_has_no_rank_correlation_and_is_counted_apart():
    original = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    randomised = original.clone()
    randomised[1] = 0.25
    similarity = map_similarity(original, randomised)
    assert math.isnan(similarity["spearman_abs"][1]) and similarity["spearman_abs"][0] == pytest.approx(1.0)
    assert degenerate_maps(original, randomised).tolist() == [False, True, False]


def test_batchnorm_layers_are_reset_to_their_initial_state():
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
    norms = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for name in norms:
            layer = model.get_submodule(name)
            layer.weight.fill_(3.0)
            layer.running_var.fill_(5.0)
    layers = randomizable_layers(model)
    assert set(norms) <= set(layers)
    randomize(model, layers, seed=0)
    for name in norms:
        layer = model.get_submodule(name)
        assert bool((layer.weight == 1).all()) and bool((layer.running_var == 1).all())
        assert bool((layer.bias == 0).all()) and bool((layer.running_mean == 0).all())
    assert randomised_share(model, layers) == pytest.approx(1.0, abs=1e-3)


class _Lens(nn.Module):
    """A fixed per-pixel gain spanning six orders of magnitude, then a linear layer: |gradient| ranks follow the
    gain whatever the weights are, so the gradient map is an artefact of the architecture."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("gain", torch.logspace(0, 6, 64).view(1, 1, 8, 8))
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x * self.gain).flatten(1))


class _Unreachable(nn.Module):
    """Most of its weights sit in a parameter that is neither a convolution, a linear map nor a normalisation."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(64, 64))
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1) @ self.table)


def _images(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=generator), torch.arange(n) % 3


def test_a_map_that_follows_the_architecture_fails_and_says_so():
    x, y = _images()
    result = cascading_randomization(Subject(_Lens()), x, y, method="gradient")
    assert result.verdict == "fail"
    assert result.random_vs_random[0] > 0.5 and "architecture" in result.reason


def test_weights_the_randomisation_cannot_reach_are_named_in_the_verdict():
    torch.manual_seed(0)
    x, y = _images()
    result = cascading_randomization(Subject(_Unreachable()), x, y, method="gradient")
    assert result.randomised_share == pytest.approx(195 / (64 * 64 + 195))
    result.steps[-1].similarity["spearman_abs"] = (0.8, 0.7, 0.9)
    verdict, reason = judge(result)
    assert verdict == "fail" and "only 5% of the model's weights were randomised" in reason


def test_mostly_constant_final_maps_make_the_check_inconclusive():
    """Grad-CAM on a randomised model is often all zero (ReLU of a negative sum): those maps have no ranking, so
    they cannot support a 'pass'; Spearman over the remaining images alone would have said 0.1."""
    similarity = {"spearman_abs": (0.1, 0.0, 0.2), "spearman_signed": (0.1, 0.0, 0.2), "ssim": (0.5, 0.4, 0.6),
                  "hog": (0.1, 0.0, 0.2)}
    result = SanityResult("gradcam", "cascading", [SanityStep(1, ["fc"], similarity, degenerate=10)], images=16,
                          randomised_share=1.0, random_vs_random=(0.0, -0.1, 0.1))
    verdict, reason = judge(result)
    assert verdict == "inconclusive" and "10 of 16 maps are constant" in reason
    result.steps[0].degenerate = 6
    assert judge(result)[0] == "pass"
