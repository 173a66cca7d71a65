"""Structured filter pruning: coupled channels found by tracing, exact when removing dead channels, round trips."""

from __future__ import annotations

import pytest
import torch

from kdscope import Subject, load_subject, zoo
from kdscope.compress.channels import channel_groups
from kdscope.compress.lineage import state_dict_bytes
from kdscope.compress.structured import StructuredConfig, structured_prune
from kdscope.train import TrainConfig
from tests.conftest import assert_unchanged, parameters_snapshot


def _subject(model):
    return Subject(model, name="teacher", role="teacher", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_residual_stream_is_one_group():
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=2)
    groups = channel_groups(model, torch.zeros(2, 3, 16, 16))
    stream = next(g for g in groups if "stem.0" in g.producers)
    assert set(stream.producers) == {"stem.0", "layer1.0.conv2", "layer1.1.conv2"}
    assert set(stream.consumers) == {"layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2.0.shortcut.0"}
    assert not next(g for g in groups if "fc" in g.producers).prunable


@pytest.mark.parametrize("arch", ["resnet", "student", "vgg"])
@torch.no_grad()
def test_removing_dead_channels_leaves_outputs_identical(tiny_world, arch):
    """Channels whose filters and BatchNorm affine are zero contribute nothing: removing them changes no output."""
    _, test = tiny_world
    model = zoo.build(arch, 10, seed=0, width=4).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    modules = dict(model.named_modules())
    for group in channel_groups(model, torch.zeros(2, 3, 16, 16)):
        if not group.prunable:
            continue
        dead = torch.arange(0, group.channels, 2)
        for name in group.producers:
            modules[name].weight[dead] = 0
            if modules[name].bias is not None:
                modules[name].bias[dead] = 0
        for name in group.norms:
            modules[name].weight[dead] = 0
            modules[name].bias[dead] = 0
    subject = _subject(model)
    before = parameters_snapshot(model)
    pruned = structured_prune(subject, config=StructuredConfig(0.5), input_shape=(3, 16, 16), progress=False)
    assert_unchanged(model, before)
    x = test.images(slice(0, 16))
    torch.testing.assert_close(pruned.subject.logits(x), subject.logits(x), atol=1e-5, rtol=1e-5)
    assert pruned.lineage.metrics["parameters"] < 0.45 * sum(p.numel() for p in model.parameters())


def test_structured_model_saves_loads_and_fine_tunes(tmp_path, tiny_world):
    train, test = tiny_world
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
    result = structured_prune(_subject(model), train, StructuredConfig(0.5), train=TrainConfig(epochs=1),
                              eval_data=test, out=tmp_path, name="thin", progress=False)
    loaded = load_subject(tmp_path / "thin.pt")
    assert loaded.model.stem[0].out_channels == 2
    x = test.images(slice(0, 8))
    assert torch.equal(loaded.logits(x), result.subject.logits(x))
    assert result.subject.metadata["lineage"] == loaded.metadata["lineage"] == result.lineage.to_dict()
    assert loaded.metadata["lineage"]["method"] == "prune:structured_l1"
    assert result.lineage.metrics["file_bytes"] < state_dict_bytes(model)
    assert result.lineage.metrics["parameters"] < 0.5 * sum(p.numel() for p in model.parameters())


def test_bad_ratio_and_missing_shape_are_refused():
    subject = _subject(zoo.build("student", 10, seed=0, width=4))
    with pytest.raises(ValueError, match="ratio must lie in"):
        structured_prune(subject, config=StructuredConfig(1.0), input_shape=(3, 16, 16))
    with pytest.raises(ValueError, match="input_shape"):
        structured_prune(subject, config=StructuredConfig(0.5))


class _Concat(torch.nn.Module):
    """Concatenated branches, a grouped conv and a pooling method call: channel axes the pruner must leave alone."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(3, 4, 3, padding=1)
        self.grouped = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.middle = torch.nn.Conv2d(8, 6, 1)
        self.head = torch.nn.Conv2d(6, 6, 1)
        self.fc = torch.nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(torch.cat([self.left(x), self.right(x)], dim=1))
        x = torch.relu(self.head(self.middle(x)))
        return self.fc(x.mean((2, 3)))


def test_unknown_operations_freeze_their_channels():
    model = _Concat()
    groups = {tuple(g.producers): g.prunable for g in channel_groups(model, torch.zeros(2, 3, 8, 8))}
    assert groups == {("left",): False, ("right",): False, ("middle",): True, ("head",): False, ("fc",): False}
    pruned = structured_prune(_subject(model), config=StructuredConfig(0.5), input_shape=(3, 8, 8), progress=False)
    assert pruned.subject.model.middle.out_channels == 3 and pruned.subject.model.left.out_channels == 4
    assert pruned.subject.logits(torch.rand(2, 3, 8, 8)).shape == (2, 10)
