"""The CUDA path (device placement, bf16 autocast); skipped on machines without a GPU."""

import pytest
import torch

from kdscope import zoo
from kdscope.core.subject import Subject
from kdscope.store.loading import load_subject
from kdscope.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_bf16_training_on_cuda_gives_a_checkpoint_that_loads_on_cpu(tmp_path, tiny_world):
    train_data, test_data = tiny_world
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1).cuda()
    result = train(model, train_data, TrainConfig(epochs=2, batch_size=64, bf16=True), eval_data=test_data,
                   checkpoint=tmp_path / "m.pt", progress=False)
    subject = Subject(model, mean=load_subject(tmp_path / "m.pt").mean.flatten().tolist(),
                      std=load_subject(tmp_path / "m.pt").std.flatten().tolist())
    assert subject.device.type == "cuda"
    on_cpu = load_subject(tmp_path / "m.pt")
    x = test_data.images(slice(0, 16))
    assert torch.allclose(subject.logits(x).cpu(), on_cpu.logits(x), atol=1e-4)
    assert on_cpu.evaluate(test_data)["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=0.02)


def test_the_audit_runs_on_the_gpu_and_agrees_with_the_cpu(trained_tiny_teacher, tiny_world):
    import copy

    from kdscope.audit import Plan, audit
    from kdscope.results import Unavailable

    mean, std = trained_tiny_teacher.mean.flatten().tolist(), trained_tiny_teacher.std.flatten().tolist()
    models = [(trained_tiny_teacher.model, "teacher", "teacher"), (zoo.build("student", 10, seed=1, width=2), "kd",
                                                                     "student"),
              (zoo.build("student", 10, seed=2, width=2), "alone", "independent_student")]
    plan = Plan(images=24, batch_size=8, explainers=("gradcam", "gradient"), sanity_methods=("gradient",),
                attacks=({"attack": "fgsm", "eps": 8 / 255},), robust_eps=(8 / 255,), robust_images=8)
    results = {}
    for device in ("cpu", "cuda"):
        subjects = [Subject(copy.deepcopy(model).to(device).eval(), name=name, role=role, mean=mean, std=std)
                    for model, name, role in models]
        results[device] = audit(subjects, tiny_world[1], plan, progress=False)
    cpu, gpu = results["cpu"], results["cuda"]
    assert set(gpu.stages) == set(cpu.stages) == set(plan.stages)
    for name in ("teacher", "kd", "alone"):
        accuracy_cpu = cpu.stages["predictions"].models[name].accuracy[0]
        assert gpu.stages["predictions"].models[name].accuracy[0] == pytest.approx(accuracy_cpu, abs=1 / 24)
    for name in ("kd", "alone"):
        grid_cpu, grid_gpu = cpu.stages["cka"].grids[name], gpu.stages["cka"].grids[name]
        assert torch.allclose(torch.tensor(grid_gpu.values), torch.tensor(grid_cpu.values), atol=1e-3)
        cosine = gpu.stages["cams"].methods["gradcam"][name]
        assert not isinstance(cosine, Unavailable)
        assert cosine.cosine[0] == pytest.approx(cpu.stages["cams"].methods["gradcam"][name].cosine[0], abs=1e-3)
    assert gpu.models[0].profile.cpu_latency_ms is None
