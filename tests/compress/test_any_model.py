"""Compression of models kdscope did not write: HuggingFace ViT and ResNet, built offline from tiny configs, as
teacher, student, pruned and int8 models; from the Python API and the CLI (`--teacher module:function --weights`);
and checkpoints that record their factory, rebuilt by `load_subject` only when trusted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification

from kdscope import Subject, load_subject, zoo
from kdscope.cli.main import main
from kdscope.compress import (
    DistillationLoss,
    DistillConfig,
    PruneConfig,
    QuantizeConfig,
    StructuredConfig,
    distill,
    prune,
    quantize,
    structured_prune,
)
from kdscope.compress.distill import _hint_regressors
from kdscope.core.checkpoint import UnsafeCheckpointError, read_metadata
from kdscope.core.layers import TokenLayout
from kdscope.data import probeworld
from kdscope.store.loading import build_from_factory
from kdscope.train import TrainConfig, train
from tests.conftest import assert_unchanged, parameters_snapshot

VIT = "tests.compress.test_any_model:tiny_vit"
RESNET = "tests.compress.test_any_model:tiny_resnet"


def tiny_vit() -> nn.Module:
    """A two-block ViT on 32x32 images, 16 patches of 8x8 (the factory the CLI test names)."""
    return ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                               num_attention_heads=2, intermediate_size=32, num_labels=10))


def tiny_resnet() -> nn.Module:
    """A two-stage bottleneck ResNet."""
    return ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                     num_labels=10))


@pytest.fixture(scope="module")
def world():
    return probeworld(64, size=32), probeworld(32, split="test", size=32)


@pytest.fixture(scope="module")
def trained(world):
    """Each factory's model trained a few epochs, so its predictions spread over several classes (an agreement of
    a model that always says the same class would mean nothing), as Subjects."""
    data, _ = world
    mean, std = data.channel_stats()
    subjects = {}
    for reference in (VIT, RESNET):
        torch.manual_seed(0)
        model = build_from_factory(reference)
        train(model, data, TrainConfig(epochs=6, batch_size=16, lr=0.003, optimizer="adamw", warmup_epochs=0),
              progress=False)
        name = reference.rpartition(":")[2]
        subjects[name] = Subject(model.eval(), name=name, role="teacher", mean=mean, std=std,
                                 class_names=data.class_names)
    return subjects


def _same_logits(a: Subject, b: Subject, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(a.logits(x), b.logits(x), atol=1e-5, rtol=1e-5)


def test_predictions_spread_over_classes(trained, world):
    for subject in trained.values():
        assert len(subject.predict(world[1].images()).unique()) >= 3, subject.name


def test_distill_a_vit_teacher_into_a_zoo_student(trained, world, tmp_path):
    data, test = world
    teacher = trained["tiny_vit"]
    before = parameters_snapshot(teacher.model)
    result = distill(teacher, data, DistillConfig(), student=zoo.build("student", 10, width=2, seed=0),
                     train=TrainConfig(epochs=1, batch_size=32), controls=(), eval_data=test, out=tmp_path,
                     progress=False)
    assert_unchanged(teacher.model, before)
    assert result.lineage.parent == "tiny_vit" and 0 <= result.lineage.metrics["accuracy"] <= 1
    _same_logits(load_subject(tmp_path / "kd_student.pt"), result.subject, test.images(slice(0, 8)))


def test_distill_into_a_student_that_returns_a_model_output(trained, world):
    data, _ = world
    student = tiny_resnet()
    result = distill(trained["tiny_vit"], data, student=student, train=TrainConfig(epochs=1, batch_size=32),
                     controls=(), progress=False)
    assert result.subject.logits(data.images(slice(0, 2))).shape == (2, 10)
    wrong = ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=5))
    with pytest.raises(ValueError, match="the student 5"):
        distill(trained["tiny_vit"], data, student=wrong, train=TrainConfig(epochs=1), progress=False)


def test_a_vit_token_hint_matches_a_direct_computation(trained, world):
    """A FitNets hint on a ViT block's tokens: the class token dropped, the 16 patch tokens laid on their 4x4 grid
    (row by row), the student's conv map pooled to that grid and mapped by the 1x1 regressor; the loss term equals
    that computation written out by hand, and its gradient reaches the student and the regressor."""
    data, _ = world
    teacher = trained["tiny_vit"]
    student = Subject(zoo.build("student", 10, width=2, seed=0).eval(), name="cnn")
    hint = ("features.19", "vit.layers.1")
    x, y = data.images(slice(0, 8)), data.targets(slice(0, 8))
    terms = {}
    for weight in (0.0, 3.0):
        config = DistillConfig(hints=(hint,), hint_weight=weight)
        with student.capture([hint[0]], detach=False) as features:
            regressors, layouts = _hint_regressors(teacher, student, data, config.hints, features)
            loss = DistillationLoss(teacher, config, 1, features, regressors, layouts)
            logits = student.model(student.normalize(x))
            terms[weight] = loss(logits, y, x)
    assert layouts[1]["vit.layers.1"] == TokenLayout(1, (4, 4)) and layouts[0] == {}
    regressor = regressors["0"]
    assert isinstance(regressor, nn.Conv2d) and (regressor.in_channels, regressor.out_channels) == (8, 16)

    captured = {}
    handles = [student.model.features[19].register_forward_hook(lambda _m, _i, out: captured.update(s=out)),
               teacher.model.vit.layers[1].register_forward_hook(lambda _m, _i, out: captured.update(t=out))]
    with torch.no_grad():
        student.model(student.normalize(x))
        teacher.model(teacher.normalize(x))
    for handle in handles:
        handle.remove()
    tokens = captured["t"][:, 1:]                                      # (N, 16, D) without the class token
    grid = torch.stack([torch.stack([tokens[:, 4 * r + c] for c in range(4)], dim=-1) for r in range(4)], dim=-2)
    pooled = F.adaptive_avg_pool2d(captured["s"], (4, 4))
    with torch.no_grad():
        expected = 3.0 * F.mse_loss(regressor(pooled), grid)
    torch.testing.assert_close((terms[3.0] - terms[0.0]).detach(), expected, atol=1e-5, rtol=1e-4)
    terms[3.0].backward()
    assert regressor.weight.grad.abs().sum() > 0


def test_distill_with_a_token_hint_and_refusals_that_name_the_candidates(trained, world):
    data, _ = world
    config = DistillConfig(hints=(("features.19", "vit.layers.1"),))
    result = distill(trained["tiny_vit"], data, config, student=zoo.build("student", 10, width=2, seed=0),
                     train=TrainConfig(epochs=1, batch_size=32), controls=(), progress=False)
    assert result.lineage.hyperparameters["distill"]["hints"] == [["features.19", "vit.layers.1"]]
    assert not any(m._forward_hooks for m in result.subject.model.modules())
    assert not any(m._forward_hooks for m in trained["tiny_vit"].model.modules())
    vit_student = tiny_vit()
    result = distill(trained["tiny_resnet"], data, DistillConfig(hints=(("vit.layers.0", "resnet.encoder.stages.1"),)),
                     student=vit_student, train=TrainConfig(epochs=1, batch_size=32), controls=(),
                     progress=False)
    assert result.subject.logits(data.images(slice(0, 2))).shape == (2, 10)
    with trained["tiny_vit"].capture(["vit.layers.0.attention"]) as taps:   # returns (output, attention weights)
        trained["tiny_vit"].logits(data.images(slice(0, 2)))
    assert taps["vit.layers.0.attention"].shape == (2, 17, 16)
    refusals = {"vit.embeddings.patch_embeddings": r"outputs shape \(1, 16, 16\).*candidates: .*'vit.layers.1'",
                "classifier": r"\(2, 8, 8, 8\) and \(2, 10\) cannot be matched"}
    for layer, message in refusals.items():
        with pytest.raises(ValueError, match=message):
            distill(trained["tiny_vit"], data, DistillConfig(hints=(("features.19", layer),)),
                    student=zoo.build("student", 10, width=2, seed=0), train=TrainConfig(epochs=1),
                    progress=False)


@pytest.mark.parametrize("name", ["tiny_vit", "tiny_resnet"])
def test_pruned_model_records_its_factory_and_reloads_only_when_trusted(trained, world, tmp_path, name):
    data, test = world
    parent = trained[name]
    result = prune(parent, data, PruneConfig(sparsity=0.5), train=TrainConfig(epochs=1, batch_size=32, lr=0.001),
                   out=tmp_path, name="sparse", progress=False)
    assert result.lineage.metrics["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert read_metadata(tmp_path / "sparse.pt")["factory"] == f"tests.compress.test_any_model:{name}"
    with pytest.raises(UnsafeCheckpointError, match=f"built by 'tests.compress.test_any_model:{name}'"):
        load_subject(tmp_path / "sparse.pt")
    x = test.images(slice(0, 8))
    _same_logits(load_subject(tmp_path / "sparse.pt", trust=True), result.subject, x)
    _same_logits(load_subject(f"tests.compress.test_any_model:{name}", weights=tmp_path / "sparse.pt"),
                 result.subject, x)


def test_structured_pruning_thins_a_hf_resnet_and_refuses_attention_heads(trained, world, tmp_path):
    data, test = world
    resnet = trained["tiny_resnet"]
    thin = structured_prune(resnet, data, StructuredConfig(0.5), out=tmp_path, name="thin", progress=False)
    assert thin.lineage.metrics["parameters"] < 0.5 * sum(p.numel() for p in resnet.model.parameters())
    _same_logits(load_subject(tmp_path / "thin.pt", trust=True), thin.subject, test.images(slice(0, 8)))
    with pytest.raises(ValueError, match=r"attention layers \(vit\.layers\.0\.attention\.q_proj.*Prune it unstruct"):
        structured_prune(trained["tiny_vit"], data, StructuredConfig(0.5), progress=False)


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_vit"])
def test_int8_of_a_hf_model_agrees_with_its_float_parent(trained, world, tmp_path, name):
    data, test = world
    result = quantize(trained[name], data, QuantizeConfig(calibration_images=64), eval_data=test, out=tmp_path,
                      progress=False)
    metrics, layers = result.lineage.metrics, result.subject.metadata["compression"]["int8"]
    assert metrics["parent_top1_agreement"] >= 0.9 and metrics["twin_int8_top1_agreement"] >= 0.95
    x = test.images()
    with torch.no_grad():
        spread = float(trained[name].logits(x).std())
        gap = float((result.subject.logits(x) - result.subject.logits(x, use_twin=True)).abs().max())
    assert gap < 0.05 * spread  # fused kernels round a little otherwise; saturated ones missed by about the spread
    assert layers["float_layers"] == [] and "classifier" in " ".join(layers["quantized_layers"])
    assert not any(layer.startswith("network.") for layer in layers["quantized_layers"])
    if name == "tiny_vit":
        assert "vit.layers.1.attention.q_proj" in layers["quantized_layers"]
        return
    loaded = load_subject(result.checkpoint)
    x = test.images(slice(0, 16))  # the batch-size range already compiled above (each range compiles once)
    assert torch.equal(loaded.logits(x), result.subject.logits(x))


def test_cli_compresses_a_factory_teacher_and_reloads_what_it_wrote(trained, world, tmp_path):
    data, _ = world
    weights = tmp_path / "vit_weights.pt"
    torch.save(trained["tiny_vit"].model.state_dict(), weights)
    np.savez(tmp_path / "data.npz", images=data.images().numpy(), labels=data.targets().numpy())
    common = ["--teacher", VIT, "--weights", str(weights), "--mean", "0.5", "--std", "0.25",
              "--data", str(tmp_path / "data.npz"), "--quiet", "--out", str(tmp_path / "out")]
    runner = CliRunner()
    pruned = runner.invoke(main, ["compress", "prune", "--sparsity", "0.6", "--epochs", "0", "--name", "sparse",
                                  *common])
    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.output)["sparsity"] == pytest.approx(0.6, abs=0.01)
    distilled = runner.invoke(main, ["compress", "distill", "--width", "2", "--epochs", "1", "--controls", "none",
                                     *common])
    assert distilled.exit_code == 0, distilled.output
    tickets = runner.invoke(main, ["compress", "prune", "--method", "lottery", "--rounds", "1", "--epochs", "1",
                                   "--rewind-epoch", "0", *common])
    assert tickets.exit_code == 0, tickets.output
    assert [json.loads(line)["model"] for line in tickets.output.splitlines()] == ["ticket_round1",
                                                                                 "ticket_round1_reinit"]
    teacher = load_subject(VIT, weights=weights, mean=[0.5], std=[0.25])
    reloaded = load_subject(tmp_path / "out" / "sparse.pt", trust=True)
    assert reloaded.metadata["lineage"]["parent"] == "tiny_vit"
    x = data.images(slice(0, 4))
    assert reloaded.logits(x).shape == (4, 10) and not torch.equal(reloaded.logits(x), teacher.logits(x))
    assert load_subject(tmp_path / "out" / "kd_student.pt").logits(x).shape == (4, 10)
