"""An audit of a HuggingFace ViT teacher against zoo CNN students: every stage is filled or refused with a reason,
CKA compares ViT blocks with CNN layers, Grad-CAM maps of both kinds are compared at the input resolution."""

import math

import torch
from transformers import ViTConfig, ViTForImageClassification

from kdscope import Subject, zoo
from kdscope.audit import Plan, audit
from kdscope.data import probeworld
from kdscope.reports import render_html
from kdscope.results.maps import MapAgreement
from kdscope.results.representations import CKAGridRecord
from kdscope.results.values import Unavailable


def test_a_vit_teacher_is_audited_against_cnn_students():
    data = probeworld(16, split="test", seed=0)
    torch.manual_seed(0)
    vit = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=32, num_labels=10)).eval()
    mean, std = data.channel_stats()
    teacher = Subject(vit, name="vit", role="teacher", mean=mean, std=std, class_names=data.class_names)
    students = [Subject(zoo.build("student", 10, seed=seed, width=4), name=name, role=role, mean=mean, std=std,
                        class_names=data.class_names)
                for seed, name, role in ((1, "cnn", "student"), (2, "cnn_alone", "independent_student"))]
    plan = Plan(images=8, stages=("predictions", "cka", "cams", "sanity"), explainers=("gradcam", "guided_backprop"),
                sanity_methods=("guided_backprop",))
    results = audit([teacher, *students], data, plan, progress=False)

    grid = results.stages["cka"].grids["cnn"]
    assert isinstance(grid, CKAGridRecord) and grid.reduce == "mean"
    assert grid.rows == ["vit.layers.0", "vit.layers.1"] and len(grid.columns) >= 2
    assert all(math.isfinite(v) and -1.01 <= v <= 1.01 for row in grid.values for v in row)

    cams = results.stages["cams"].methods
    assert isinstance(cams["gradcam"]["cnn"], MapAgreement)
    assert isinstance(cams["guided_backprop"]["cnn"], Unavailable)
    assert "no rule for" in cams["guided_backprop"]["cnn"].reason and "gelu" in cams["guided_backprop"]["cnn"].reason

    vit_sanity = results.stages["sanity"].models["vit"]["guided_backprop"]
    assert isinstance(vit_sanity, Unavailable) and "no rule for" in vit_sanity.reason
    page = render_html(results)
    assert "vit.layers.1" in page and "averaged over its positions" in page
