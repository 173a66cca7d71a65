import json

import cv2
import pytest
from click.testing import CliRunner

from kdscope import __version__, demo
from kdscope.cli.main import main
from kdscope.data import VARIANTS
from tests.conftest import tiny_demo_recipe


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_data_preview_writes_a_grid_of_every_variant(tmp_path):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(main, ["data", "preview", "--columns", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    image = cv2.imread(str(out))
    assert image.shape[0] == len(VARIANTS) * (16 + 32 * 3 + 4) and image.shape[1] == 4 * (32 * 3 + 4)


def test_data_preview_rejects_unknown_variant(tmp_path):
    result = CliRunner().invoke(main, ["data", "preview", "--variants", "sepia", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "sepia" in result.output


def test_train_writes_a_loadable_checkpoint(tmp_path):
    result = CliRunner().invoke(main, ["train", "--arch", "student", "--width", "2", "--data", "digits",
                                       "--epochs", "1", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (tmp_path / "student.pt").exists() and 0.0 <= summary["accuracy"] <= 1.0


def test_train_bad_data_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--arch", "student", "--data", str(tmp_path / "none"),
                                       "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown data" in result.output


def test_demo_prints_the_models_the_findings_and_the_report_path(tiny_demo, monkeypatch):
    monkeypatch.setitem(demo.PROFILES, "quick", tiny_demo_recipe)
    out = tiny_demo.html.parent.parent
    result = CliRunner().invoke(main, ["demo", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("teacher", "kd_student", "kd_student_independent", "kd_student_pseudo_label", "teacher_star",
                 "teacher_pruned80", "teacher_int8", "Findings:", "the dark-knowledge part", "a foreign model"):
        assert name in result.output
    assert "reused from cache: teacher, teacher_star, kd_student, kd_student_independent_b" in result.output
    assert result.output.strip().endswith(str(tiny_demo.html.resolve()))


def test_evaluate_loads_a_checkpoint_and_refuses_untrusted_pickles(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", "--arch", "student", "--width", "2", "--data", "digits", "--epochs", "1",
                                "--quiet", "--out", str(tmp_path)]).exit_code == 0
    result = runner.invoke(main, ["evaluate", "--model", str(tmp_path / "student.pt"), "--data", "digits"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert row["accuracy_ci95"][0] <= row["accuracy"] <= row["accuracy_ci95"][1] and row["n"] == 450

    import torch

    from kdscope.store.loading import load_subject

    torch.save(load_subject(tmp_path / "student.pt").model, tmp_path / "whole.pt")
    refused = runner.invoke(main, ["evaluate", "--model", str(tmp_path / "whole.pt"), "--data", "digits"])
    assert refused.exit_code == 1 and "--trust-checkpoint" in refused.output
    trusted = runner.invoke(main, ["evaluate", "--model", str(tmp_path / "whole.pt"), "--data", "digits",
                                   "--trust-checkpoint", "--mean", "0.5,0.5,0.5", "--std", "0.3,0.3,0.3"])
    assert trusted.exit_code == 0, trusted.output


def test_train_on_an_image_folder_of_mixed_sizes_needs_image_size(tmp_path):
    import numpy as np

    for label, shape in (("a", (10, 10, 3)), ("b", (14, 12, 3))):
        for k in range(3):
            (tmp_path / "imgs" / label).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "imgs" / label / f"{k}.png"), np.full(shape, 60 * k, np.uint8))
    args = ["train", "--arch", "student", "--width", "2", "--data", str(tmp_path / "imgs"), "--epochs", "1",
            "--quiet", "--out", str(tmp_path / "run")]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "--image-size" in refused.output
    result = CliRunner().invoke(main, [*args, "--image-size", "16"])
    assert result.exit_code == 0, result.output


def test_compress_distill_writes_both_students_and_models_lists_them(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", "--arch", "resnet", "--width", "4", "--data", "digits", "--epochs", "1",
                                "--quiet", "--name", "teacher", "--image-size", "16",
                                "--out", str(tmp_path)]).exit_code == 0
    result = runner.invoke(main, ["compress", "distill", "--teacher", str(tmp_path / "teacher.pt"), "--width", "2",
                                  "--data", "digits", "--image-size", "16", "--epochs", "1", "--quiet",
                                  "--hint", "features.3:layer1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [row["model"] for row in lines] == ["kd_student", "kd_student_independent"]
    listing = runner.invoke(main, ["models", str(tmp_path)])
    assert listing.exit_code == 0, listing.output
    assert "distill:kl" in listing.output and "independent" in listing.output and "teacher" in listing.output


def test_compress_distill_bad_hint_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["compress", "distill", "--teacher", "x.pt", "--data", "digits", "--hint",
                                       "nocolon", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "STUDENT_LAYER:TEACHER_LAYER" in result.output


def test_compress_prune_and_quantize_write_models_that_models_lists(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", "--arch", "resnet", "--width", "4", "--data", "digits", "--epochs", "1",
                                "--quiet", "--name", "teacher", "--image-size", "16",
                                "--out", str(tmp_path)]).exit_code == 0
    common = ["--teacher", str(tmp_path / "teacher.pt"), "--data", "digits", "--image-size", "16", "--quiet",
              "--out", str(tmp_path)]
    sparse = runner.invoke(main, ["compress", "prune", "--sparsity", "0.7", "--epochs", "1", "--recover", *common])
    assert sparse.exit_code == 0, sparse.output
    assert json.loads(sparse.output)["sparsity"] == pytest.approx(0.7, abs=1e-3)
    thin = runner.invoke(main, ["compress", "prune", "--method", "structured", "--epochs", "0", *common])
    assert thin.exit_code == 0, thin.output
    int8 = runner.invoke(main, ["compress", "quantize", "--calibration", "minmax", "--calibration-images", "64",
                                *common])
    assert int8.exit_code == 0, int8.output
    assert json.loads(int8.output.strip().splitlines()[-1])["checkpoint"].endswith("teacher_int8.pt2")
    listing = runner.invoke(main, ["models", str(tmp_path)])
    assert listing.exit_code == 0, listing.output
    for expected in ("teacher_pruned70", "70%", "teacher_filters50", "prune:structured_l1", "quantize:int8_static"):
        assert expected in listing.output


def test_compress_prune_bad_sparsity_is_refused(tmp_path):
    runner = CliRunner()
    runner.invoke(main, ["train", "--arch", "student", "--width", "2", "--data", "digits", "--epochs", "1", "--quiet",
                         "--name", "teacher", "--image-size", "16", "--out", str(tmp_path)])
    result = runner.invoke(main, ["compress", "prune", "--teacher", str(tmp_path / "teacher.pt"), "--sparsity", "1",
                                  "--data", "digits", "--image-size", "16", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "sparsity must lie in [0, 1)" in result.output


def test_attack_writes_the_transfer_matrix_as_json_and_csv(tmp_path):
    runner = CliRunner()
    for name, arch in (("teacher", "resnet"), ("student", "student")):
        assert runner.invoke(main, ["train", "--arch", arch, "--width", "2", "--data", "digits", "--epochs", "1",
                                    "--quiet", "--name", name, "--image-size", "16",
                                    "--out", str(tmp_path)]).exit_code == 0
    result = runner.invoke(main, ["attack", "--models", str(tmp_path / "teacher.pt"), str(tmp_path / "student.pt"),
                                  "--data", "digits", "--image-size", "16", "--n", "32", "--attack", "pgd",
                                  "--eps", "8/255", "--steps", "2", "--curve", "0,8/255", "--round-8bit",
                                  "--out", str(tmp_path / "attack")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "attack" / "transfer.json").read_text())
    assert report["models"] == ["teacher", "student"] and report["rounded_to_8bit"]
    assert [point["eps"] for point in report["robust_accuracy"]["teacher"]] == [0.0, pytest.approx(8 / 255)]
    rows = (tmp_path / "attack" / "transfer.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and rows[0].startswith("source,target,conditional")


def test_attack_refuses_an_eps_in_8bit_units(tmp_path):
    result = CliRunner().invoke(main, ["attack", "--models", "a.pt", "--eps", "8", "--out", str(tmp_path)])
    assert result.exit_code == 1 or result.exit_code == 2
    assert "8/255" in result.output


def test_explain_and_sanity_write_their_reports(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", "--arch", "resnet", "--width", "2", "--data", "probeworld", "--n-train",
                                "64", "--epochs", "1", "--quiet", "--name", "teacher", "--image-size", "16",
                                "--out", str(tmp_path)]).exit_code == 0
    model = str(tmp_path / "teacher.pt")
    explained = runner.invoke(main, ["explain", "--model", model, "--image-size", "16", "--n", "4", "--methods",
                                     "gradient,gradcam,occlusion", "--out", str(tmp_path / "explain")])
    assert explained.exit_code == 0, explained.output
    report = json.loads((tmp_path / "explain" / "explanations.json").read_text())
    assert set(report["methods"]) == {"gradient", "gradcam", "occlusion"}
    assert "pointing_game" in report["methods"]["gradcam"]
    assert (tmp_path / "explain" / "explanations.png").stat().st_size > 0
    sanity = runner.invoke(main, ["sanity", "--model", model, "--image-size", "16", "--n", "4", "--methods",
                                  "gradient,gradcam", "--random-label-model", model, "--out", str(tmp_path / "s")])
    assert sanity.exit_code == 0, sanity.output
    results = json.loads((tmp_path / "s" / "sanity.json").read_text())["results"]
    assert [(r["method"], r["kind"]) for r in results] == [("gradient", "cascading"), ("gradient", "data"),
                                                          ("gradcam", "cascading"), ("gradcam", "data")]
    refused = runner.invoke(main, ["explain", "--model", model, "--methods", "lime", "--out", str(tmp_path)])
    assert refused.exit_code == 2 and "unknown method" in refused.output


def test_models_lists_unreadable_checkpoints_with_the_reason_instead_of_crashing(tmp_path):
    import torch

    from kdscope import Subject, zoo
    from kdscope.core.checkpoint import save_checkpoint

    model = zoo.build("student", 10, seed=0, width=2)
    for name in ("good", "unsafe", "truncated"):
        save_checkpoint(tmp_path / name, Subject(model, name=name, mean=[0.5] * 3, std=[0.25] * 3))
    torch.save(model, tmp_path / "unsafe.pt")  # a whole pickled module: loading it could run code
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:100])
    (tmp_path / "notes.json").write_text("[1, 2]")
    result = CliRunner().invoke(main, ["models", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"good", "unsafe", "truncated"}
    assert rows["good"][5] == f"{sum(p.numel() for p in model.parameters()):,d}" and rows["unsafe"][5] == "-"
    assert "unsafe.pt: parameters not counted: refusing to unpickle" in result.stderr
    assert "truncated.pt: parameters not counted" in result.stderr
