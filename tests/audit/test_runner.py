"""The audit: every stage filled with its record, Results round-trip through JSON, and an interrupted audit resumes
without recomputing finished stages and with identical results."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kdscope import Subject, zoo
from kdscope.audit import Plan, audit
from kdscope.audit.stages import STAGES
from kdscope.results import STAGE_RECORDS, Results, Unavailable
from kdscope.results.maps import NO_SECOND_CONTROL, OjhaRecord

PLAN = Plan(images=24, explainers=("gradcam",), attacks=({"attack": "fgsm", "eps": 8 / 255},))


@pytest.fixture(scope="module")
def subjects(trained_tiny_teacher):
    mean, std = trained_tiny_teacher.mean.flatten().tolist(), trained_tiny_teacher.std.flatten().tolist()
    teacher = Subject(trained_tiny_teacher.model, name="teacher", role="teacher", mean=mean, std=std)
    students = [Subject(zoo.build("student", 10, seed=seed, width=2), name=name, role=role, mean=mean, std=std)
                for seed, name, role in ((1, "kd", "student"), (2, "alone", "independent_student"))]
    return [teacher, *students]


def test_audit_fills_every_stage_with_its_record_and_round_trips(subjects, tiny_world):
    results = audit(subjects, tiny_world[1], PLAN, progress=False)
    assert set(results.stages) == set(PLAN.stages)
    assert all(isinstance(results.stages[name], STAGE_RECORDS[name]) for name in results.stages)
    assert results.teacher.name == "teacher" and results.control.name == "alone"
    predictions = results.stages["predictions"]
    assert predictions.control == "alone"
    teacher = predictions.models["teacher"]
    accuracy = teacher.per_class_accuracy
    assert accuracy[str(teacher.hardest_classes[0])] == min(accuracy.values())
    assert set(results.stages["cka"].grids) == {"kd", "alone"}
    grid = results.stages["cka"].grids["kd"]
    assert grid.rows == ["stem", "layer1", "layer2", "layer3"]
    assert grid.columns == ["features.0", "features.6", "features.13", "features.19"]
    ojha = results.stages["cams"].ojha
    assert isinstance(ojha, OjhaRecord) and (ojha.student, ojha.control) == ("kd", "alone")
    low, share, high = sorted(ojha.distilled_closer)
    assert 0 <= low <= share <= high <= 1 and share == ojha.distilled_closer[0]
    assert ojha.control_closer == Unavailable(NO_SECOND_CONTROL) and ojha.second_control is None
    assert results.stages["attacks"].matrices[0].models == ["teacher", "kd", "alone"]
    again = Results.from_json(results.to_json())
    assert again.to_json() == results.to_json()
    assert again.stages.keys() == results.stages.keys()


def test_an_interrupted_audit_resumes_without_recomputing(subjects, tiny_world, tmp_path, monkeypatch, capsys):
    calls = {"predictions": 0}
    original_predictions = STAGES["predictions"].finish
    original_attacks = STAGES["attacks"]

    def counted(context, outcomes):
        calls["predictions"] += 1
        return original_predictions(context, outcomes)

    def interrupted(_context, _batch):
        raise KeyboardInterrupt

    monkeypatch.setitem(STAGES, "predictions", replace(STAGES["predictions"], finish=counted))
    monkeypatch.setitem(STAGES, "attacks", replace(original_attacks, measure=interrupted))
    with pytest.raises(KeyboardInterrupt):
        audit(subjects, tiny_world[1], PLAN, cache=tmp_path, progress=True)
    said = capsys.readouterr().err
    assert "audit interrupted: stages finished ['predictions', 'cka', 'cams', 'explanations', 'gallery']" in said
    assert f"resume from the cache in {tmp_path}" in said
    assert "audit: predictions+cka: 24 images in" in said and "images/s" in said
    assert calls["predictions"] == 1 and (tmp_path / "cams.json").exists()
    monkeypatch.setitem(STAGES, "attacks", original_attacks)
    resumed = audit(subjects, tiny_world[1], PLAN, cache=tmp_path, progress=False)
    assert calls["predictions"] == 1
    fresh = audit(subjects, tiny_world[1], PLAN, progress=False)
    assert json.dumps(resumed.to_plain()["stages"]) == json.dumps(fresh.to_plain()["stages"])


def test_bad_plans_are_refused(subjects, tiny_world):
    with pytest.raises(ValueError, match="plan key .stages.: unknown"):
        audit(subjects, tiny_world[1], Plan(stages=("report",)), progress=False)
    with pytest.raises(ValueError, match="distinct names"):
        audit([subjects[0], subjects[0]], tiny_world[1], PLAN, progress=False)
    with pytest.raises(ValueError, match="schema version"):
        Results.from_json('{"schema_version": 99, "models": [], "plan": {}}')
