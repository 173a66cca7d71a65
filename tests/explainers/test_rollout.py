"""Attention rollout against the formula computed by hand from the attention weights HuggingFace returns
(`output_attentions=True`, eager attention), on the SDPA and the eager model alike; refused where there is no
attention."""

import pytest
import torch
import torch.nn.functional as F
from transformers import ViTConfig, ViTForImageClassification

from kdscope import Subject, explain, zoo
from kdscope.explainers.rollout import NoAttentionError
from tests.module_state import assert_modules_unchanged, modules_snapshot


def tiny_vit(attention: str) -> ViTForImageClassification:
    torch.manual_seed(0)
    config = ViTConfig(image_size=(32, 48), patch_size=8, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                       intermediate_size=32, num_labels=5, attn_implementation=attention)
    return ViTForImageClassification(config).eval()


X = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(3))
Y = torch.tensor([0, 4])


def by_hand(model: ViTForImageClassification) -> torch.Tensor:
    with torch.no_grad():
        attentions = model(X, output_attentions=True).attentions
    rollout = torch.eye(25, dtype=torch.float64).expand(2, 25, 25)
    for weights in attentions:
        mixed = 0.5 * weights.double().mean(1) + 0.5 * torch.eye(25, dtype=torch.float64)
        rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
    grid = rollout[:, 0, 1:].reshape(2, 1, 4, 6).float()
    return F.interpolate(grid, size=(32, 48), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_rollout_is_the_formula_on_the_weights_the_model_uses(attention):
    model = tiny_vit(attention)
    expected = by_hand(tiny_vit("eager"))
    before = modules_snapshot(model)
    explanation = explain(Subject(model), X, Y, method="attention_rollout")
    torch.testing.assert_close(explanation.maps, expected, rtol=1e-5, atol=1e-6)
    assert explanation.params["layers"] == 3 and explanation.params["class_agnostic"]
    assert_modules_unchanged(model, before)


def test_a_cnn_has_no_attention_to_roll_out():
    with pytest.raises(NoAttentionError, match="no softmax attention"):
        explain(Subject(zoo.build("student", 5, seed=0, width=2)), X, Y, method="attention_rollout")
