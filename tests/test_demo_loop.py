"""The demo's whole loop: the teachers, the KD student with its controls, the pruned and int8 teachers, every audit
stage filled, the report written, and a second
run reusing every step and every audit stage."""

from __future__ import annotations

import json

from kdscope.audit import STAGES
from kdscope.demo import run_demo
from kdscope.results import STAGE_RECORDS
from tests.conftest import tiny_demo_recipe


def test_the_loop_builds_every_model_with_its_role_and_fills_every_stage(tiny_demo):
    results = tiny_demo.results
    roles = {m.name: m.role for m in results.models}
    assert roles == {"teacher": "teacher", "kd_student": "student", "kd_student_independent": "independent_student",
                     "kd_student_pseudo_label": "pseudo_label_student",
                     "kd_student_other_teacher": "other_teacher_student",
                     "kd_student_independent_b": "independent_student", "teacher_star": "other",
                     "teacher_pruned80": "pruned", "teacher_int8": "quantized"}
    gains = {g.control: g.role for g in results.stages["predictions"].gains}
    assert gains == {name: roles[name] for name in ("kd_student_independent", "kd_student_pseudo_label",
                                                     "kd_student_other_teacher", "kd_student_independent_b")}
    gaps = {g.source for g in results.stages["attacks"].matrices[0].gaps}
    assert {"teacher", "teacher_star"} <= gaps and "kd_student" not in gaps
    assert set(results.stages) == set(STAGES)
    assert all(isinstance(results.stages[name], STAGE_RECORDS[name]) for name in results.stages)
    pruned = next(m for m in results.models if m.role == "pruned")
    assert abs(pruned.profile.sparsity - 0.8) < 0.01
    int8 = next(m for m in results.models if m.role == "quantized")
    assert int8.profile.quantized_layers > 0
    assert [c.check for c in results.checks] == list(tiny_demo_recipe().checks)
    assert tiny_demo.html.name == "index.html" and (tiny_demo.html.parent / "results.json").exists()


def test_a_second_run_reuses_every_step(tiny_demo):
    again = run_demo(tiny_demo.html.parent.parent, progress=False, recipe=tiny_demo_recipe())
    assert set(again.cached_steps) == {"teacher", "teacher_star", "kd_student", "kd_student_independent_b",
                                       "teacher_pruned80", "teacher_int8"}
    assert set(again.step_seconds) == {"audit and report"}
    assert json.dumps(again.results.to_plain()["stages"]) == json.dumps(tiny_demo.results.to_plain()["stages"])
