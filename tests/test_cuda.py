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
