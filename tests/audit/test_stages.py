"""The audit's statistics are compare/'s: its CKA grid and control are the version-2 values bit for bit (one seeded
permutation of all audit images), and its Ojha test is `compare.cams.ojha_statistic`, control included."""

from __future__ import annotations

import pytest
import torch

from kdscope import Subject, zoo
from kdscope.audit import Plan, audit
from kdscope.audit.context import AuditContext
from kdscope.compare.cams import ojha_statistic
from kdscope.compare.cka import CKAAccumulator
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
    return audit(subjects, data, PLAN, progress=False), AuditContext(subjects, data.subset(chosen), PLAN, chosen)


def test_cka_grid_and_control_are_the_version_2_values_bit_for_bit(audited, subjects):
    results, context = audited
    teacher = context.forward(subjects[0])["features"]
    permutation = torch.randperm(len(context.x), generator=torch.Generator().manual_seed(PLAN.seed))
    for subject in subjects[1:]:
        features = context.forward(subject)["features"]
        grid = results.stages["cka"].grids[subject.name]
        assert grid.values == [[CKAAccumulator().update(a, b).value() for b in features.values()]
                               for a in teacher.values()]
        assert grid.control == [[CKAAccumulator().update(a, b[permutation]).value() for b in features.values()]
                                for a in teacher.values()]


def test_ojha_is_compares_statistic_with_its_control(audited, subjects):
    results, context = audited
    ojha = results.stages["cams"].ojha
    assert isinstance(ojha, OjhaRecord)
    assert (ojha.student, ojha.control, ojha.second_control) == ("kd", "alone", "alone2")
    expected = ojha_statistic(*subjects[:3], context.x, context.y, control=subjects[3])
    assert ojha.distilled_closer == expected["distilled_closer"]
    assert ojha.control_closer == expected["control_closer"]
