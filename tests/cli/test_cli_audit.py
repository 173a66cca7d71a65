"""`kdscope audit` on a folder of images and two TorchScript models: it runs every stage a TorchScript module
allows, writes the report, and gates the exit code on --checks; bad plans and checks are usage errors."""

from __future__ import annotations

import json

import cv2
import pytest
import torch
from click.testing import CliRunner

from kdscope import zoo
from kdscope.cli.main import main
from kdscope.data import CLASS_NAMES
from kdscope.results.representations import no_layers


class _Normalised(torch.nn.Module):
    """What a user ships as TorchScript: the network with its input normalisation inside."""

    def __init__(self, model: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1))
        self.register_buffer("std", std.reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


@pytest.fixture(scope="module")
def user_files(trained_tiny_teacher, tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    teacher = trained_tiny_teacher
    student = zoo.build("student", 10, seed=3, width=2).eval()
    for name, model in (("teacher", teacher.model), ("student", student)):
        wrapped = _Normalised(model, teacher.mean.flatten(), teacher.std.flatten()).eval()
        torch.jit.trace(wrapped, torch.rand(2, 3, 16, 16)).save(str(root / f"{name}.ts"))
    test = tiny_world[1]
    for index in range(40):
        folder = root / "images" / test.class_names[test.labels[index]]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{index}.png"), cv2.cvtColor(test.pixels[index].transpose(1, 2, 0),
                                                               cv2.COLOR_RGB2BGR))
    (root / "plan.yaml").write_text("images: 16\nexplainers: [gradcam, gradient]\nrobust_images: 8\n"
                                    "attacks:\n  - {attack: fgsm, eps: 0.03}\nchecks: ['accuracy >= 0']\n")
    return root


def _audit(root, out, *extra):
    return CliRunner().invoke(main, ["audit", "--teacher", str(root / "teacher.ts"), "--student",
                                     str(root / "student.ts"), "--data", str(root / "images"), "--plan",
                                     str(root / "plan.yaml"), "--class-names", ",".join(CLASS_NAMES), "--quiet",
                                     "--out", str(out), *extra])


def test_torchscript_models_on_an_image_folder_gate_on_checks(user_files, tmp_path):
    passing = _audit(user_files, tmp_path, "--checks", "top1_agreement >= 0", "--batch-size", "5")
    assert passing.exit_code == 0, passing.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["plan"]["batch_size"] == 5 and results["data"]["images_audited"] == 16
    assert (tmp_path / "index.html").exists() and len(results["checks"]) == 2
    assert results["data"]["class_order"] == "matched by name to the classes of the given class names"
    cams = results["stages"]["cams"]
    assert set(cams["methods"]["gradcam"]["student"]) == {"unavailable"}
    assert "TorchScript" in cams["methods"]["gradcam"]["student"]["unavailable"]
    assert "cosine" in cams["methods"]["gradient"]["student"]
    assert results["stages"]["cka"]["grids"]["student"] == {"unavailable": no_layers("teacher")}
    # The same audit (same plan and batch size, so its stage cache applies) judged against other checks.
    failing = _audit(user_files, tmp_path, "--checks", "top1_agreement >= 101%", "--checks", "cam_agreement >= 0.6",
                     "--batch-size", "5")
    assert failing.exit_code == 1
    assert "FAIL top1_agreement >= 101%: student" in failing.output
    assert "FAIL cam_agreement >= 0.6: student = not measured: Grad-CAM needs layer hooks, which TorchScript" \
        in failing.output


@pytest.mark.parametrize("extra, message", [
    (("--checks", "cam_agreement is high"), "METRIC OP VALUE"),
    (("--images", "2"), "4"),
])
def test_bad_checks_and_plans_are_usage_errors(user_files, tmp_path, extra, message):
    result = _audit(user_files, tmp_path, *extra)
    assert result.exit_code == 2 and message in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU this machine lacks")
def test_a_gpu_this_machine_lacks_is_a_usage_error(user_files, tmp_path):
    result = _audit(user_files, tmp_path, "--device", "cuda")
    assert result.exit_code == 2 and "CUDA is not available" in result.output


def test_an_unknown_plan_key_lists_the_known_ones(user_files, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text("imagse = 16\n")
    result = CliRunner().invoke(main, ["audit", "--teacher", str(user_files / "teacher.ts"), "--model",
                                       str(user_files / "student.ts"), "--data", str(user_files / "images"),
                                       "--plan", str(plan), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown plan keys ['imagse']" in result.output


def test_data_with_other_classes_than_the_models_is_refused_before_any_stage(user_files, tmp_path):
    folder = tmp_path / "three"
    for source in sorted((user_files / "images").iterdir())[:3]:
        (folder / source.name).mkdir(parents=True)
        for image in source.iterdir():
            (folder / source.name / image.name).write_bytes(image.read_bytes())
    result = CliRunner().invoke(main, ["audit", "--teacher", str(user_files / "teacher.ts"), "--model",
                                       str(user_files / "student.ts"), "--data", str(folder), "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2 and "records no class names" in result.output
    assert "--class-names" in result.output
    assert not (tmp_path / "out" / "cache").exists()
    named = CliRunner().invoke(main, ["audit", "--teacher", str(user_files / "teacher.ts"), "--model",
                                      str(user_files / "student.ts"), "--data", str(folder), "--class-names",
                                      "a,b,c", "--out", str(tmp_path / "out")])
    assert named.exit_code == 2 and "are not among the classes" in named.output
