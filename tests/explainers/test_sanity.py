"""Sanity checks: randomisation that really randomises (seeded, masks kept, zero layers refused), similarity
metrics on constructed maps, localisation on constructed masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdscope import Subject, zoo
from kdscope.compress.masks import masks_of, prunable_layers
from kdscope.compress.prune import PruneConfig, prune
from kdscope.explainers.sanity import (
    PASS_THRESHOLD,
    cascading_randomization,
    data_randomization,
    independent_randomization,
    randomizable_layers,
    randomize,
)
from kdscope.explainers.similarity import map_similarity, pointing_game, relevance_mass, ssim
from tests.module_state import assert_modules_unchanged, modules_snapshot


def _subject(seed: int = 0) -> Subject:
    return Subject(zoo.build("resnet", 10, seed=seed, width=4, blocks=1), name=f"resnet{seed}",
                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_randomize_is_seeded_touches_only_the_named_layers_and_keeps_masks():
    sparse = prune(_subject(), config=PruneConfig(0.6), progress=False).subject.model
    before = {k: v.clone() for k, v in sparse.state_dict().items()}
    assert randomize(sparse, ["fc", "layer3.0.conv2"], seed=1) == 2
    after = sparse.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.parametrizations.weight.original", "fc.bias",
                       "layer3.0.conv2.parametrizations.weight.original"}
    for name in ("fc", "layer3.0.conv2"):
        layer = prunable_layers(sparse)[name]
        assert not bool(layer.weight[~masks_of(sparse)[name]].any())
    again = prune(_subject(), config=PruneConfig(0.6), progress=False).subject.model
    randomize(again, ["fc", "layer3.0.conv2"], seed=1)
    assert all(torch.equal(again.state_dict()[k], after[k]) for k in changed)


def test_zero_randomisable_layers_is_an_error():
    class NoLayers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(12, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) @ self.w

    subject = Subject(NoLayers(), name="bare")
    with pytest.raises(ValueError, match="zero layers randomised"):
        cascading_randomization(subject, torch.rand(2, 3, 2, 2), torch.tensor([0, 1]), method="gradient")


def test_exported_and_torchscript_models_expose_the_same_layers_as_the_module():
    model = _subject().model.eval()
    expected = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    example = torch.rand(2, 3, 16, 16)
    exported = torch.export.export(model, (example,)).module()
    assert randomizable_layers(exported) == expected
    scripted = torch.jit.trace(model, example)
    assert randomizable_layers(scripted) == expected
    randomize(exported, ["fc"], seed=3)
    reference = _subject().model
    randomize(reference, ["fc"], seed=3)
    assert torch.equal(exported.fc.weight, reference.fc.weight)


class _EveryConvolution(nn.Module):
    """One layer of each convolution kind, and a Conv2d with padding='same' (its own aten overload in a graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.same = nn.Conv2d(3, 4, 3, padding="same")
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.gate = nn.Conv1d(1, 1, 3, padding=1)
        self.volume = nn.Conv3d(1, 2, 1)
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.same(x))
        weights = self.gate(x.mean((2, 3)).unsqueeze(1)).sigmoid().squeeze(1)
        x = self.volume((x * weights[:, :, None, None]).unsqueeze(1))  # (N, 2, 4, H, W)
        return self.fc(x.mean((2, 3, 4)))


def test_every_convolution_kind_is_randomised_in_the_module_and_its_exported_graph():
    model = _EveryConvolution().eval()
    expected = ["same", "up", "gate", "volume", "fc"]
    assert randomizable_layers(model) == expected
    exported = torch.export.export(model, (torch.rand(2, 3, 8, 8),)).module()
    assert randomizable_layers(exported) == expected
    before = {name: p.clone() for name, p in model.named_parameters()}
    randomize(model, expected, seed=0)
    assert all(not torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_hog_similarity_is_undefined_for_maps_smaller_than_one_cell():
    line = torch.rand(2, 1, 100, generator=torch.Generator().manual_seed(0))
    result = map_similarity(line, line.flip(2))
    assert np.isnan(result["hog"]).all() and np.isfinite(result["spearman_abs"]).all()


def test_cascading_and_independent_randomisation_cover_every_layer(tiny_world):
    subject = _subject()
    x, y = tiny_world[1].images(slice(0, 4)), tiny_world[1].targets(slice(0, 4))
    layers = randomizable_layers(subject.model)
    cascade = cascading_randomization(subject, x, y, method="gradient")
    assert [s.step for s in cascade.steps] == list(range(1, len(layers) + 1))
    assert cascade.steps[0].layers == ["fc"] and cascade.steps[-1].layers == layers[::-1]
    last, full = cascade.steps[-1], cascade.steps[-1].similarity["spearman_abs"][0]
    expected = ("inconclusive" if last.degenerate * 2 > cascade.images else
                "pass" if full < PASS_THRESHOLD else "fail")
    assert cascade.verdict == expected and cascade.randomised_share == pytest.approx(1.0)
    bottom_up = cascading_randomization(subject, x, y, method="gradient", order="bottom_up")
    assert bottom_up.steps[0].layers == ["stem.0"] and bottom_up.kind == "cascading_bottom_up"
    estimate, low, high = cascade.steps[-1].similarity["spearman_abs"]
    assert -1 <= low <= estimate <= high <= 1
    independent = independent_randomization(subject, x, y, method="gradcam")
    assert [s.layers for s in independent.steps] == [[name] for name in layers]
    data = data_randomization(subject, _subject(seed=5), x, y, method="gradient")
    assert len(data.steps) == 1 and set(data.steps[0].similarity) == {"spearman_abs", "spearman_signed", "ssim", "hog"}


def test_similarity_of_a_map_with_itself_and_its_negation():
    maps = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    same = map_similarity(maps, maps)
    for metric in ("spearman_abs", "spearman_signed", "ssim", "hog"):
        assert np.allclose(same[metric], 1.0, atol=1e-6), metric
    flipped = map_similarity(maps, -maps)
    assert np.allclose(flipped["spearman_signed"], -1.0) and np.allclose(flipped["spearman_abs"], 1.0)
    assert ssim(np.zeros((8, 8)), np.ones((8, 8))) < 0.01


def test_pointing_game_and_relevance_mass_on_constructed_maps():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, :2, :2] = True
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0
    maps[1, 0, 0], maps[1, 3, 3] = 1.0, -5.0
    assert pointing_game(maps, masks).tolist() == [True, False]
    assert relevance_mass(maps, masks).tolist() == pytest.approx([0.75, 1.0])


def test_localisation_reports_intervals(tiny_world):
    from kdscope.explainers.sanity import localisation

    _, test_set = tiny_world
    x, y = test_set.images(slice(0, 8)), test_set.targets(slice(0, 8))
    masks = torch.from_numpy(test_set.masks[:8])
    result = localisation(_subject(), x, y, masks, method="gradcam")
    for estimate, low, high in result.values():
        assert 0 <= low <= estimate <= high <= 1
    with pytest.raises(ValueError, match="masks must be"):
        localisation(_subject(), x, y, masks[:3])


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_gradcam"])
def test_sanity_checks_leave_no_trace_on_the_subjects_modules(method):
    """The checks explain the trained model and randomised copies: neither the model nor the random-label model
    keeps a hook, a hook flag or a changed in-place flag."""
    subject, random_labels = _subject(), _subject(seed=5)
    x, y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 2])
    before = modules_snapshot(subject.model), modules_snapshot(random_labels.model)
    cascading_randomization(subject, x, y, method=method)
    independent_randomization(subject, x, y, method=method)
    data_randomization(subject, random_labels, x, y, method=method)
    assert_modules_unchanged(subject.model, before[0])
    assert_modules_unchanged(random_labels.model, before[1])
