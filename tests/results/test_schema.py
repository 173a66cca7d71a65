"""The results schema: version-2 files (a trimmed copy of the demo's, written before version 3) still load, render
and gate; every record round-trips; what could not be measured is an Unavailable with its reason; damaged files say
which key is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdscope.reports import findings, render_html
from kdscope.results import SCHEMA_VERSION, Results, Unavailable, evaluate_checks
from kdscope.results.attacks import NO_ROBUST_EPS
from kdscope.results.maps import NO_MASKS, NO_OJHA_PAIR, MapAgreement, OjhaRecord
from kdscope.results.probes import NO_IMAGES_SCORED, NO_PAIR, NOT_PAIRED, PairedOutcome
from kdscope.results.upgrade import NOT_IN_VERSION_2

VERSION_2 = Path(__file__).parent / "demo_v2.json"


def _version_2() -> dict:
    return json.loads(VERSION_2.read_text())


def test_a_version_2_file_loads_renders_and_gates_as_it_did():
    raw = _version_2()
    results = Results.from_plain(raw)
    assert raw["schema_version"] == 2 and json.loads(results.to_json())["schema_version"] == SCHEMA_VERSION == 3
    assert results.teacher.name == "teacher" and results.control.name == "student_alone"
    html = render_html(results)
    assert "kd_student" in html and "version-2 results predate it" in html
    assert any("58.6% [52.7, 64.5]" in line for line in findings(results))
    again = evaluate_checks(results, [record["check"] for record in raw["checks"]])
    assert [record.to_plain() for record in again] == raw["checks"]
    assert [record.to_plain() for record in results.checks] == raw["checks"]


def test_version_2_becomes_version_3_by_the_documented_renames_only():
    raw = _version_2()
    upgraded = json.loads(Results.from_plain(raw).to_json())
    stages, before = upgraded["stages"], raw["stages"]
    for name in ("predictions", "explanations", "gallery", "sanity"):
        assert stages[name] == before[name], name
    assert stages["cka"]["grids"]["teacher_int8"]["unavailable"].startswith("not measured: version-2 results")
    assert {k: v for k, v in stages["cka"]["grids"].items() if k != "teacher_int8"} == before["cka"]["grids"]
    assert stages["cams"]["ojha"] == {**before["cams"]["ojha"], "control_closer": {"unavailable": NOT_IN_VERSION_2},
                                      "second_control": None}
    assert stages["attacks"] == before["attacks"]
    assert stages["probes"]["probes"]["shape_bias"]["paired"] == {"unavailable": NOT_PAIRED}
    assert {k: v for k, v in upgraded.items() if k not in ("stages", "schema_version")} == \
        {k: v for k, v in raw.items() if k not in ("stages", "schema_version")}


def test_version_2_errors_skips_and_absent_keys_become_unavailable():
    raw = _version_2()
    stages = raw["stages"]
    stages["cams"]["methods"]["gradcam"]["teacher_int8"] = {"error": "Grad-CAM needs layer hooks"}
    stages["gallery"]["methods"]["gradcam"]["teacher_int8"] = {"error": "Grad-CAM needs layer hooks"}
    del stages["cams"]["ojha"]
    stages["explanations"] = {"skipped": NO_MASKS}
    stages["sanity"]["teacher_int8"][1] = {"method": "gradcam", "error": "no layer to randomise"}
    del stages["attacks"]["robust_curves"]
    raw["plan"]["robust_eps"] = []
    probes = stages["probes"]
    probes["probes"]["shape_bias"]["models"]["kd_student"] = None
    del probes["probes"]["colour_invariance"]["paired"]
    results = Results.from_plain(raw)
    cams = results.stages["cams"]
    assert cams.methods["gradcam"]["teacher_int8"] == Unavailable("Grad-CAM needs layer hooks")
    assert isinstance(cams.methods["gradcam"]["kd_student"], MapAgreement)
    assert cams.ojha == Unavailable(NO_OJHA_PAIR)
    assert results.stages["gallery"].methods["gradcam"]["teacher_int8"] == Unavailable("Grad-CAM needs layer hooks")
    assert results.stages["explanations"] == Unavailable(NO_MASKS)
    assert results.stages["sanity"].models["teacher_int8"]["gradcam"] == Unavailable("no layer to randomise")
    assert results.stages["attacks"].robust_curves == Unavailable(NO_ROBUST_EPS)
    shape = results.stages["probes"].probes["shape_bias"]
    assert shape.models["kd_student"] == Unavailable(NO_IMAGES_SCORED)
    assert results.stages["probes"].probes["colour_invariance"].paired == Unavailable(NO_PAIR)
    checks = {r.check: r for r in evaluate_checks(results, ["int8_cam_agreement >= 0.5", "pointing_game >= 0",
                                                            "robust_accuracy >= 0", "int8_sanity_pass >= 0.5"])}
    assert checks["int8_cam_agreement >= 0.5"].models[0].note == "not measured: Grad-CAM needs layer hooks"
    assert all(row.note == f"not measured: {NO_MASKS}" for row in checks["pointing_game >= 0"].models)
    assert all(row.note == f"not measured: {NO_ROBUST_EPS}" for row in checks["robust_accuracy >= 0"].models)
    assert checks["int8_sanity_pass >= 0.5"].models[0].value == 1.0
    page = render_html(results)
    for reason in ("Grad-CAM needs layer hooks", NO_MASKS, NO_OJHA_PAIR, NO_ROBUST_EPS, NO_IMAGES_SCORED, NO_PAIR,
                   "no layer to randomise"):
        assert reason.replace("'", "&#39;") in page, reason
    again = Results.from_json(results.to_json())
    assert again.to_json() == results.to_json()


def test_every_record_round_trips_and_an_unavailable_is_never_a_models_record():
    raw = _version_2()
    results = Results.from_plain(raw)
    assert Results.from_json(results.to_json()) == results
    assert isinstance(results.stages["cams"].ojha, OjhaRecord)
    assert isinstance(results.stages["probes"].probes["colour_invariance"].paired, PairedOutcome)
    raw["stages"]["explanations"] = {"unavailable": {"gradcam": raw["stages"]["explanations"]["teacher"]["gradcam"]}}
    assert list(Results.from_plain(raw).stages["explanations"].models) == ["unavailable"]


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["stages"]["predictions"].pop("versus_teacher"), "the stage 'predictions' lacks the key "
                                                                 "'versus_teacher'"),
    (lambda r: r["stages"]["cams"]["methods"]["gradcam"]["kd_student"].pop("top20_iou"), "topK_iou"),
    (lambda r: r["models"][0]["profile"].pop("file_bytes"), "a model lacks the key 'file_bytes'"),
    (lambda r: r["stages"].update(report={}), "unknown stage 'report'"),
    (lambda r: r.update(schema_version=1), "schema version 1 is not one this kdscope reads (2, 3)"),
    (lambda r: r.pop("models"), "lacks the key 'models'"),
])
def test_damaged_results_say_what_is_wrong_and_to_rerun_the_audit(edit, message):
    raw = _version_2()
    edit(raw)
    with pytest.raises(ValueError, match="rerun the audit") as error:
        Results.from_plain(raw)
    assert message in str(error.value)
