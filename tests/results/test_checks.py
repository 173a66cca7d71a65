"""Pass/fail checks on hand-built Results, where every value is known, so each verdict is worked out by hand."""

from __future__ import annotations

import pytest

from kdscope.results import Results, Unavailable
from kdscope.results.checks import evaluate_checks, failures, parse_check
from kdscope.results.maps import NO_OJHA_PAIR, CamsStage, MapAgreement
from kdscope.results.models import ModelProfile, ModelRecord
from kdscope.results.predictions import Agreement, ModelPredictions, PredictionsStage


def _results() -> Results:
    def model(name: str, role: str, file_bytes: int, latency: float) -> ModelRecord:
        return ModelRecord(name, role, None, None, None, {}, ModelProfile(
            parameters=100, nonzero_parameters=100, file_bytes=file_bytes, sparsity=None, quantized_layers=None,
            float_layers=None, cpu_latency_ms=latency))

    def rate(value: float) -> tuple[float, float, float]:
        return value, value - 0.01, value + 0.01

    accuracy = {"teacher": 0.99, "kd": 0.93, "int8": 0.985}
    agreement = {"kd": 0.93, "int8": 0.998}
    return Results(
        models=[model("teacher", "teacher", 1000, 4.0), model("kd", "student", 250, 1.0),
                model("int8", "quantized", 300, 2.0)],
        plan={"attacks": [{"attack": "pgd", "eps": 4 / 255}]},
        stages={
            "predictions": PredictionsStage(
                models={n: ModelPredictions(rate(a), rate(0.02), {}, [], []) for n, a in accuracy.items()},
                versus_teacher={n: Agreement(rate(a), rate(0.1), rate(0.05)) for n, a in agreement.items()},
                teacher="teacher", control=None, images=100),
            "cams": CamsStage(methods={"gradcam": {"kd": MapAgreement(rate(0.55), rate(0.5), rate(0.4), 20),
                                                   "int8": Unavailable("gradcam needs layer hooks")}},
                              ojha=Unavailable(NO_OJHA_PAIR)),
        })


def test_a_bare_check_covers_every_compared_model_and_fails_if_one_does():
    record, = evaluate_checks(_results(), ["top1_agreement >= 0.95"])
    assert {r.model: r.passed for r in record.models} == {"kd": False, "int8": True}
    assert not record.passed
    assert failures([record]) == ["FAIL top1_agreement >= 0.95: kd = 0.93"]


def test_a_group_prefix_and_a_percent_threshold():
    record, = evaluate_checks(_results(), ["int8_top1_agreement >= 99%"])
    assert record.threshold == pytest.approx(0.99) and [r.model for r in record.models] == ["int8"]
    assert record.passed


def test_named_models_and_derived_metrics_are_computed_from_the_stages():
    drop, size, latency, accuracy = evaluate_checks(_results(), [
        "kd.accuracy_drop <= 0.05", "int8_size_ratio <= 0.3", "student_latency_ratio < 0.25",
        "accuracy >= 0.98"])
    assert drop.models[0].value == pytest.approx(0.06) and not drop.passed
    assert size.models[0].value == pytest.approx(0.3) and size.passed
    assert latency.models[0].value == pytest.approx(0.25) and not latency.passed
    assert {r.model for r in accuracy.models} == {"teacher", "kd", "int8"}
    assert [r.passed for r in accuracy.models] == [True, False, True]


def test_what_the_audit_did_not_measure_fails_with_the_reason():
    cam, cka, pruned = evaluate_checks(_results(), ["cam_agreement >= 0.5", "cka >= 0.5", "pruned_accuracy >= 0"])
    assert {r.model: r.passed for r in cam.models} == {"kd": True, "int8": False}
    assert cam.models[1].note == "not measured: gradcam needs layer hooks"
    assert not cka.passed and "'cka' stage" in cka.models[0].note
    assert not pruned.passed and pruned.models == [] and "no model matches" in pruned.note


@pytest.mark.parametrize("text, message", [
    ("cam_agreement is high", "METRIC OP VALUE"),
    ("cam_agrement >= 0.6", "unknown metric"),
    ("quantised_top1_agreement >= 0.99", "unknown group"),
])
def test_unreadable_checks_say_how_to_write_one(text, message):
    with pytest.raises(ValueError, match=message):
        parse_check(text)
