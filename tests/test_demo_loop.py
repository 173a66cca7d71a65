"""The demo's whole loop: five models made by kdscope, every audit stage filled, the report written, and a second
run reusing every step and every audit stage."""

from __future__ import annotations

import json

from kdscope.audit import STAGES
from kdscope.demo import run_demo
from kdscope.results import STAGE_RECORDS
from tests.conftest import tiny_demo_recipe


def test_the_loop_builds_five_models_and_fills_every_stage(tiny_demo):
    results = tiny_demo.results
    roles = {m.name: m.role for m in results.models}
    assert roles == {"teacher": "teacher", "kd_student": "student", "student_alone": "independent_student",
                     "teacher_pruned80": "pruned", "teacher_int8": "quantized"}
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
    assert set(again.cached_steps) == {"teacher", "student_alone", "kd_student", "teacher_pruned80", "teacher_int8"}
    assert set(again.step_seconds) == {"audit and report"}
    assert json.dumps(again.results.to_plain()["stages"]) == json.dumps(tiny_demo.results.to_plain()["stages"])
