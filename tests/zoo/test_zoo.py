import pytest
import torch
from torch import nn

from kdscope import zoo


@pytest.mark.parametrize("name", sorted(zoo.ARCHITECTURES))
def test_every_architecture_returns_logits_for_each_class(name):
    model = zoo.build(name, 7, seed=0)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    assert any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())
    assert model.kdscope_arch == {"name": name, "kwargs": {"num_classes": 7}}


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = zoo.build("resnet", seed=4, width=4)
    after = torch.rand(1)
    b = zoo.build("resnet", seed=4, width=4)
    assert torch.equal(after, expected)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_resnet_has_residual_projections_and_batchnorm():
    model = zoo.build("resnet", width=8, blocks=2)
    projections = [m for m in model.modules() if isinstance(m, nn.Sequential) and len(m) == 2 and
                   isinstance(m[0], nn.Conv2d) and m[0].kernel_size == (1, 1)]
    assert len(projections) == 2
    assert model.fc.in_features == 32


def test_width_sets_capacity_and_student_is_much_smaller_than_teacher():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(zoo.build("student", width=8)) * 3 < count(zoo.build("resnet", width=16, blocks=1))
    assert count(zoo.build("vgg", width=8)) < count(zoo.build("vgg", width=16))


def test_unknown_architecture_and_bad_classes():
    with pytest.raises(ValueError, match="resnet"):
        zoo.build("transformer")
    with pytest.raises(ValueError, match="num_classes"):
        zoo.build("resnet", 1)
