"""The audit's statistics are compare/'s: its CKA grid and control are `cka_grid`'s bit for bit (one seeded
permutation of all audit images), its Ojha test is `compare.cams.ojha_statistic`, control included; and streaming
the images in small batches gives the same statistics as one batch."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from kdscope import Subject, zoo
from kdscope.audit import Plan, audit
from kdscope.compare.cams import ojha_statistic
from kdscope.compare.cka import cka_grid
from kdscope.data.sampling import stratified_sample
from kdscope.results.maps import OjhaRecord

PLAN = Plan(images=24, stages=("cka", "cams"), explainers=("gradcam",))


@pytest.fixture(scope="module")
def subjects(trained_tiny_teacher):
    mean, std = trained_tiny_teacher.mean.flatten().tolist(), trained_tiny_teacher.std.flatten().tolist()
    teacher = Subject(trained_tiny_teacher.model, name="teacher", role="teacher", mean=mean, std=std)
    students = [Subject(zoo.build("student", 10, seed=seed, width=2), name=name, role=role, mean=mean, std=std)
                for seed, name, role in ((1, "kd", "student"), (2, "alone", "independent_student"),
                                         (3, "alone2", "independent_student"))]
    return [teacher, *students]


@pytest.fixture(scope="module")
def audited(subjects, tiny_world):
    data = tiny_world[1]
    chosen = stratified_sample(data.labels, PLAN.images, PLAN.seed)
    return audit(subjects, data, PLAN, progress=False), data.subset(chosen)


def test_cka_grid_and_control_are_cka_grids_bit_for_bit(audited, subjects):
    results, images = audited
    for subject in subjects[1:]:
        grid = results.stages["cka"].grids[subject.name]
        expected = cka_grid(subjects[0], subject, images, grid.rows, grid.columns, seed=PLAN.seed)
        assert (grid.values, grid.control) == (expected.values, expected.control)


def test_ojha_is_compares_statistic_with_its_control(audited, subjects):
    results, images = audited
    ojha = results.stages["cams"].ojha
    assert isinstance(ojha, OjhaRecord)
    assert (ojha.student, ojha.control, ojha.second_control) == ("kd", "alone", "alone2")
    expected = ojha_statistic(*subjects[:3], images.images(), images.targets(), control=subjects[3])
    assert ojha.distilled_closer == expected["distilled_closer"]
    assert ojha.control_closer == expected["control_closer"]


def test_small_batches_give_the_statistics_of_one_batch(audited, subjects, tiny_world):
    results = audited[0]
    streamed = audit(subjects, tiny_world[1], replace(PLAN, batch_size=5), progress=False)
    for name in ("kd", "alone"):
        one, many = results.stages["cka"].grids[name], streamed.stages["cka"].grids[name]
        assert torch.allclose(torch.tensor(many.values), torch.tensor(one.values), atol=1e-6)
        assert torch.allclose(torch.tensor(many.control), torch.tensor(one.control), atol=1e-6)
        cosine_one = results.stages["cams"].methods["gradcam"][name].cosine
        cosine_many = streamed.stages["cams"].methods["gradcam"][name].cosine
        assert cosine_many == pytest.approx(cosine_one, abs=1e-5)
    assert streamed.plan["batch_size"] == 5 and results.plan["batch_size"] == 256
