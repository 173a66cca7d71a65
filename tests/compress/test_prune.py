"""Unstructured pruning: masks equal to torch.nn.utils.prune's, held through training, saved and loaded."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils import prune as torch_prune

from kdscope import Subject, load_subject
from kdscope.compress import DistillConfig
from kdscope.compress.masks import masks_of, prunable_layers, sparsity_report
from kdscope.compress.prune import LotteryConfig, PruneConfig, lottery_ticket, magnitude_masks, prune
from kdscope.core.checkpoint import read_metadata
from kdscope.train import TrainConfig
from tests.conftest import assert_unchanged, parameters_snapshot


def _subject(model):
    return Subject(model, name="teacher", role="teacher", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.mark.parametrize("amount", [0.3, 0.8, 0.95])
def test_global_masks_equal_torch_prune(tiny_resnet, amount):
    reference = copy.deepcopy(tiny_resnet)
    layers = prunable_layers(reference)
    torch_prune.global_unstructured([(m, "weight") for m in layers.values()], torch_prune.L1Unstructured,
                                    amount=amount)
    ours = magnitude_masks(tiny_resnet, amount, scope="global")
    for name, module in layers.items():
        assert torch.equal(ours[name], module.weight_mask.bool()), name


def test_layer_masks_equal_torch_prune(tiny_resnet):
    ours = magnitude_masks(tiny_resnet, 0.6, scope="layer")
    for name, module in prunable_layers(copy.deepcopy(tiny_resnet)).items():
        torch_prune.l1_unstructured(module, "weight", amount=0.6)
        assert torch.equal(ours[name], module.weight_mask.bool()), name


def test_iterative_masks_prune_a_fraction_of_the_survivors(tiny_resnet):
    first = magnitude_masks(tiny_resnet, 0.5)
    second = magnitude_masks(tiny_resnet, 0.5, previous=first)
    total = sum(m.numel() for m in first.values())
    kept_first = sum(int(m.sum()) for m in first.values())
    kept_second = sum(int(m.sum()) for m in second.values())
    assert all(not bool((second[n] & ~first[n]).any()) for n in first)
    assert kept_second == kept_first - round(0.5 * kept_first)
    assert kept_first == total - round(0.5 * total)


def test_masks_stay_zero_through_fine_tuning_and_parent_is_untouched(tiny_world, tiny_resnet):
    train, test = tiny_world
    teacher = _subject(tiny_resnet)
    before = parameters_snapshot(tiny_resnet)
    result = prune(teacher, train, PruneConfig(0.7), train=TrainConfig(epochs=2, weight_decay=5e-4), eval_data=test,
                   progress=False)
    assert_unchanged(tiny_resnet, before)
    assert not masks_of(tiny_resnet)
    model = result.subject.model
    for name, mask in masks_of(model).items():
        layer = prunable_layers(model)[name]
        assert not bool(layer.weight[~mask].any()), name
        assert not bool(layer.parametrizations.weight.original[~mask].any()), name
    assert sparsity_report(model)["global"] == pytest.approx(0.7, abs=1e-3)
    assert result.lineage.parent == "teacher"
    assert result.lineage.metrics["nonzero_parameters"] < result.lineage.metrics["parameters"]


def test_recovery_by_distillation_records_it(tiny_world, tiny_resnet):
    train, test = tiny_world
    result = prune(_subject(tiny_resnet), train, PruneConfig(0.5, scope="layer"), train=TrainConfig(epochs=1),
                   recover=DistillConfig(temperature=2.0), eval_data=test, progress=False)
    assert result.lineage.hyperparameters["recover"]["temperature"] == 2.0
    assert 0.0 <= result.lineage.metrics["accuracy"] <= 1.0


def test_masked_model_deep_copies_saves_and_loads(tmp_path, tiny_world, tiny_resnet):
    train, test = tiny_world
    result = prune(_subject(tiny_resnet), config=PruneConfig(0.8), out=tmp_path, name="sparse", progress=False)
    clone = copy.deepcopy(result.subject.model)
    assert masks_of(clone).keys() == masks_of(result.subject.model).keys()
    loaded = load_subject(tmp_path / "sparse.pt")
    x = test.images(slice(0, 8))
    assert torch.equal(loaded.logits(x), result.subject.logits(x))
    assert all(torch.equal(loaded_mask, masks_of(result.subject.model)[name])
               for name, loaded_mask in masks_of(loaded.model).items())
    assert loaded.metadata["lineage"]["method"] == "prune:magnitude"
    assert result.checkpoint == tmp_path / "sparse.pt"
    assert result.subject.metadata["lineage"] == read_metadata(tmp_path / "sparse.pt")["lineage"]
    assert loaded.metadata["lineage"] == result.lineage.to_dict()


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_bad_sparsity_is_refused(tiny_resnet, sparsity):
    with pytest.raises(ValueError, match="sparsity must lie in"):
        prune(_subject(tiny_resnet), config=PruneConfig(sparsity), progress=False)


def test_settings_in_the_data_slot_are_refused_with_the_fix(tiny_resnet, tiny_world):
    with pytest.raises(TypeError, match="config="):
        prune(_subject(tiny_resnet), PruneConfig(0.5))
    with pytest.raises(ValueError, match="empty ImageSet"):
        prune(_subject(tiny_resnet), tiny_world[0].subset([]), PruneConfig(0.5))


def test_unknown_layer_is_refused(tiny_resnet):
    with pytest.raises(ValueError, match="not Conv2d/Linear layers"):
        prune(_subject(tiny_resnet), config=PruneConfig(0.5, layers=("stem.0", "stem.9")), progress=False)


def test_lottery_ticket_rounds_and_control_share_masks(tiny_world, tiny_resnet, tmp_path):
    train, test = tiny_world
    parent = _subject(tiny_resnet)
    before = parameters_snapshot(tiny_resnet)
    result = lottery_ticket(parent, train, LotteryConfig(rounds=2, rate=0.5, rewind_epoch=1),
                            train=TrainConfig(epochs=2), eval_data=test, out=tmp_path, progress=False)
    assert_unchanged(tiny_resnet, before)
    assert result.subject is result.rounds[-1].subject and result.control is result.rounds[-1].control
    assert [round(r.lineage.metrics["sparsity"], 2) for r in result.rounds] == [0.5, 0.75]
    first, second = (masks_of(r.subject.model) for r in result.rounds)
    assert all(not bool((second[n] & ~first[n]).any()) for n in first)
    for ticket in result.rounds:
        control = masks_of(ticket.control.subject.model)
        masks = masks_of(ticket.subject.model)
        assert all(torch.equal(control[n], masks[n]) for n in masks)
        assert ticket.control.lineage.control_of == ticket.lineage.name
        assert ticket.lineage.parent == "ticket_dense" and 0 <= ticket.lineage.metrics["parent_accuracy"] <= 1
        for made in (ticket, ticket.control):
            assert made.subject.metadata["lineage"] == read_metadata(made.checkpoint)["lineage"]
    with pytest.raises(ValueError, match="rewind_epoch"):
        lottery_ticket(parent, train, LotteryConfig(rewind_epoch=2), train=TrainConfig(epochs=2), progress=False)


def test_folding_masks_leaves_the_masked_model_working(tiny_world, tiny_resnet):
    from kdscope.compress.masks import fold_masks

    sparse = prune(_subject(tiny_resnet), config=PruneConfig(0.6), progress=False).subject
    x = tiny_world[1].images(slice(0, 4))
    before = sparse.logits(x)
    plain = fold_masks(sparse.model)
    assert not masks_of(plain) and type(plain.stem[0]) is torch.nn.Conv2d
    torch.testing.assert_close(Subject(plain, mean=(0.5,) * 3, std=(0.25,) * 3).logits(x), before)
    torch.testing.assert_close(sparse.logits(x), before)
    assert sparsity_report(plain)["global"] == pytest.approx(0.6, abs=1e-3)


def test_pruned_subject_lists_its_layers_without_mask_internals(tiny_resnet):
    sparse = prune(_subject(tiny_resnet), config=PruneConfig(0.5), progress=False).subject
    assert list(sparse.layers()) == list(_subject(tiny_resnet).layers())
