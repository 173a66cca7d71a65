"""pytorch-grad-cam's own Grad-CAM test cases, run through kdscope and compared with pytorch-grad-cam's `GradCAM`.

Sources: pytorch-grad-cam 1.5.7 (the PyPI sdist grad-cam==1.5.7) tests/test_run_all_models.py,
tests/test_one_channel.py and tests/test_context_release.py (the same files at jacobgil/pytorch-grad-cam commit
084273b3f30b54ad0c64cf8020a4337d979a66e0), and that commit's usage_examples/vit_example.py for a ViT (target layer
`blocks[-1].norm1`, `vit_reshape_transform`). The peer runs from its installed files (tests/peers/grad_cam_modules.py;
the Makefile installs it with --no-deps); without it these tests skip.

Their tests only assert shapes, on torchvision's pretrained resnet18 and vgg11 with a photo (examples/both.png),
none of which load here. The ports keep their layouts, target layers, batch sizes, image sizes and targets, on
narrow replicas of torchvision's resnet18 and vgg11 (same module tree and names, 1000 classes, seeded random
weights), tiny HuggingFace ResNet and ViT models from configs, and seeded random images, and assert more than
shapes: kdscope's maps equal pytorch-grad-cam's on the same layer and target,
- at the layer's resolution, raw: kdscope's `layer_gradcam` = pytorch-grad-cam's `get_cam_image` on the
  activations and gradients it recorded, after its ReLU (`np.maximum(cam, 0)`), to float precision;
- at the input's resolution, as pytorch-grad-cam returns them: kdscope returns raw maps, so its maps go through
  pytorch-grad-cam's scaling (`scale_cam_image`: each map minus its minimum, divided by 1e-7 + its maximum, at the
  layer's resolution, resized bilinearly, averaged over target layers, scaled again). OpenCV's float bilinear
  resize equals torch's (align_corners=False) here, and the 1e-7 matters: random-init maps can peak near 1e-5.

Deliberate differences, each asserted below:
- kdscope refuses a layer whose map is 1x1 (it has no positions to localise: kdscope's Grad-CAM is defined on maps
  with H * W > 1, as it refuses captum's 1-D layers); pytorch-grad-cam returns all-zero maps there. Most of
  test_run_all_models.py's own cases are such: at 32x32 (and for vgg11 at 32x40 too) the target layers are 1x1. So
  each case also runs at larger sizes where the maps have positions.
- kdscope switches in-place activations off while it hooks. pytorch-grad-cam keeps the hooked output by reference,
  so on CPU a `ReLU(inplace=True)` right after the target layer overwrites it: at vgg11's last conv it weights the
  ReLU'd activation with the gradient of the conv output. Not in their tests (their layers are a block output and a
  max-pool); checked on its own below.
- pytorch-grad-cam puts the model in eval mode for good and leaves parameter gradients (`loss.backward()`);
  kdscope leaves the model as it found it (modes, requires_grad flags, hooks, no .grad).
Not ported: `eigen_smooth=True` and `aug_smooth=True` (kdscope has neither option), the other CAM methods.
"""

from __future__ import annotations

import functools
import gc
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification

from kdscope import Subject, explain
from kdscope.explainers.gradcam import layer_gradcam
from tests.module_state import assert_modules_unchanged, modules_snapshot
from tests.peers.grad_cam_modules import grad_cam_folder, grad_cam_modules

FOLDER, MISSING = grad_cam_folder()
pytestmark = pytest.mark.skipif(FOLDER is None, reason=MISSING)
if FOLDER is not None:
    grad_cam, targets, reshapes = grad_cam_modules("pytorch_grad_cam.grad_cam", "pytorch_grad_cam.utils.model_targets",
                                                   "pytorch_grad_cam.utils.reshape_transforms")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
"""pytorch_grad_cam.utils.image.preprocess_image's defaults."""
ONE_BY_ONE = r"outputs shape \(\d+, \d+, 1, 1\), neither a spatial"


# ------------------------------------------------------------------------------------------------------- models

class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock: one in-place ReLU module used twice, `out += identity`."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision.models.resnet18's module tree (conv1 7x7/2, max-pool, four stages of two blocks, 1000 classes)
    at 1/8 of its widths; `in_channels=1` is test_one_channel.py's replaced conv1."""

    def __init__(self, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [width, 2 * width, 4 * width, 8 * width]
        for index, planes in enumerate(widths, start=1):
            inplanes = widths[max(index - 2, 0)]
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(inplanes, planes, stride),
                                                         BasicBlock(planes, planes)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG11(nn.Module):
    """torchvision.models.vgg11's module tree (`features`: eight 3x3 convs with in-place ReLUs, five max-pools;
    7x7 adaptive pool; three-layer classifier, 1000 classes) at 1/16 of its widths."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in [width, "M", 2 * width, "M", 4 * width, 4 * width, "M", 8 * width, 8 * width, "M", 8 * width,
                  8 * width, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(channels * 49, 64), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def seeded(build):
    torch.manual_seed(0)
    return build()


MODELS = {"resnet18": ResNet18, "vgg11": VGG11}
LAYERS = {"resnet18": ("layer4.1", "layer4.0"), "vgg11": ("features.20",)}
"""test_run_all_models.py's target layers: resnet18 layer4[-1] and layer4[-2], vgg11 features[-1]."""


# ------------------------------------------------------------------------------------------------------ helpers

def images(batch: int, width: int, height: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """Raw [0, 1] images (their test: examples/both.png resized with cv2.resize(img, (width, height)))."""
    return torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """What preprocess_image does after ToTensor: (x - mean) / std per channel."""
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def peer_targets(target: int | None, batch: int) -> list | None:
    return None if target is None else [targets.ClassifierOutputTarget(target) for _ in range(batch)]


def run_peer(model: nn.Module, layers: list[nn.Module], x: torch.Tensor, peer_target: list | None,
             reshape_transform=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """pytorch-grad-cam's GradCAM in a `with` block, as their tests call it: (its maps (N, H, W), and per target
    layer the raw map at the layer's resolution (N, 1, h, w): `get_cam_image` on what it recorded, then its ReLU).
    It records activations and gradients in the order the forward pass reaches the layers, not in the order of
    `target_layers` (which only the average over layers reads), so the raw maps come in that order. Asserts that
    leaving the block removed its hooks."""
    with grad_cam.GradCAM(model=model, target_layers=layers, reshape_transform=reshape_transform) as cam:
        maps = cam(input_tensor=x, targets=peer_target)
        recorded = cam.activations_and_grads
        raw = [np.maximum(cam.get_cam_image(x, layer, peer_target, a.numpy(), g.numpy()), 0)
               for layer, a, g in zip(layers, recorded.activations, recorded.gradients)]
    assert no_hooks(model)
    return torch.from_numpy(maps), [torch.from_numpy(r)[:, None] for r in raw]


def scale_cam_image(maps: torch.Tensor) -> torch.Tensor:
    """pytorch_grad_cam.utils.image.scale_cam_image per (N, 1, h, w) map, without the resize."""
    shifted = maps - maps.amin((2, 3), keepdim=True)
    return shifted / (1e-7 + shifted.amax((2, 3), keepdim=True))


def as_peer_returns(layer_maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """BaseCAM.compute_cam_per_layer and aggregate_multi_layers on raw (N, 1, h, w) layer maps: each scaled, resized
    bilinearly to `size`, averaged over layers, scaled again -> (N, H, W)."""
    resized = [F.interpolate(scale_cam_image(m), size=size, mode="bilinear", align_corners=False) for m in layer_maps]
    return scale_cam_image(torch.stack(resized).mean(0))[:, 0]


def grids(model: nn.Module, layers: tuple[str, ...], x: torch.Tensor) -> dict[str, tuple[int, int]]:
    """Each layer's (h, w), in the order the forward pass finishes them (one pass in eval mode; the model's mode is
    put back)."""
    kept, mode = {}, model.training
    handles = [model.get_submodule(n).register_forward_hook(lambda _m, _i, out, n=n: kept.update({n: out.shape[2:]}))
               for n in layers]
    with torch.no_grad():
        model.eval()(x[:1])
    model.train(mode)
    for handle in handles:
        handle.remove()
    return {n: tuple(shape) for n, shape in kept.items()}


def no_hooks(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                   for m in model.modules())


def kdscope_maps(subject: Subject, x: torch.Tensor, y: torch.Tensor, layers: tuple[str, ...]) -> list[torch.Tensor]:
    """kdscope's raw map per layer at the layer's resolution, after checking that `explain` returns exactly its
    bilinear upsampling to the input size; the model is left as it was."""
    before = modules_snapshot(subject.model)
    maps = []
    for layer in layers:
        with subject.guard():
            maps.append(layer_gradcam(subject, x, y, layer))
        full = explain(subject, x, y, method="gradcam", layer=layer)
        assert full.maps.shape == (len(x), 1, *x.shape[2:]) and full.params["layer"] == layer
        torch.testing.assert_close(full.maps, F.interpolate(maps[-1], size=x.shape[2:], mode="bilinear",
                                                            align_corners=False), rtol=0, atol=0)
    assert_modules_unchanged(subject.model, before)
    assert all(p.grad is None for p in subject.model.parameters())
    return maps


def assert_same_maps(ours: list[torch.Tensor], peer_raw: list[torch.Tensor], peer_maps: torch.Tensor,
                     size: tuple[int, int]) -> None:
    for mine, theirs in zip(ours, peer_raw, strict=True):
        scale = float(theirs.abs().max())
        assert scale > 0, "a flat map compares nothing: pick other images or weights"
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5 * scale)
    assert peer_maps.shape == (len(ours[0]), *size)
    torch.testing.assert_close(as_peer_returns(ours, size), peer_maps, rtol=0, atol=1e-5)


# -------------------------------------------------------------------------------------- test_run_all_models.py

SIZES = [(2, 32, 32), (1, 32, 40), (2, 64, 64), (1, 64, 96)]
"""(batch_size, width, height): test_run_all_models.py's two, then two where every target layer is larger than 1x1."""


@pytest.mark.parametrize("target", [None, 100])
@pytest.mark.parametrize(("batch", "width", "height"), SIZES)
@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_run_all_models(name, batch, width, height, target):
    """test_run_all_models.py::test_all_cam_models_can_run with GradCAM (eigen_smooth=False, aug_smooth=False):
    ImageNet-normalised images, all target layers in one call, targets None (each image's top class) or class
    100. kdscope gets the raw images with the same mean and std in its Subject, one layer per call, and the top
    class itself when the target is None. The model starts in training mode: kdscope explains in eval mode and
    restores it; pytorch-grad-cam switches it to eval mode for good."""
    model = seeded(MODELS[name]).train()
    x = images(batch, width, height)
    subject = Subject(model, name=name, mean=MEAN, std=STD)
    normalized = preprocess(x)
    layers = LAYERS[name]
    y = subject.predict(x) if target is None else torch.full((batch,), target)
    found = grids(model, layers, normalized)
    if any(h * w == 1 for h, w in found.values()):
        with pytest.raises(ValueError, match=ONE_BY_ONE):
            explain(subject, x, y, method="gradcam", layer=layers[0])
        peer_maps, _ = run_peer(model, [model.get_submodule(n) for n in layers], normalized,
                                peer_targets(target, batch))
        assert peer_maps.shape == (batch, height, width) and not peer_maps.any()
        return
    ours = kdscope_maps(subject, x, y, tuple(found))
    assert model.training
    peer_maps, peer_raw = run_peer(model, [model.get_submodule(n) for n in layers], normalized,
                                   peer_targets(target, batch))
    assert not model.training and all(p.grad is not None for p in model.parameters())
    assert_same_maps(ours, peer_raw, peer_maps, (height, width))


# --------------------------------------------------------------------------------------------- test_one_channel.py

def test_one_channel():
    """test_one_channel.py::test_memory_usage_in_loop: resnet18 with conv1 replaced by a 1-channel conv, target
    layer4 (the whole stage), 16 copies of a gray image as raw float pixel values (0 to 255, no normalisation),
    targets None. kdscope's Subject takes that input range; its maps equal pytorch-grad-cam's."""
    model = seeded(functools.partial(ResNet18, in_channels=1)).eval()
    x = (images(1, 64, 64, channels=1) * 255).round().repeat(16, 1, 1, 1)
    subject = Subject(model, name="one_channel", input_range=(0.0, 255.0))
    y = subject.predict(x)
    ours = kdscope_maps(subject, x, y, ("layer4",))
    peer_maps, peer_raw = run_peer(model, [model.layer4], x, None)
    assert peer_maps.shape == (16, 64, 64)
    assert_same_maps(ours, peer_raw, peer_maps, (64, 64))


# ------------------------------------------------------------------------------------- test_context_release.py

def test_context_release():
    """test_context_release.py::test_memory_usage_in_loop with GradCAM: resnet18, layer4[-1], one 224x224 image,
    class 100, the CAM made and used in a `with` block 100 times; system memory must stay within 1.5 times its
    level after the first call. Here, 10 calls each, asserted directly rather than through memory: pytorch-grad-cam's
    block leaves no hook on the model; after kdscope's calls the model is unchanged, no hook is left, and no
    layer4[-1] output that a call recorded is still alive (watched through weak references)."""
    model = seeded(ResNet18).eval()
    x, y = images(1, 224, 224), torch.tensor([100])
    subject = Subject(model, name="resnet18", mean=MEAN, std=STD)
    normalized = preprocess(x)
    for _ in range(10):
        run_peer(model, [model.layer4[-1]], normalized, peer_targets(100, 1))
    model.zero_grad(set_to_none=True)
    before = modules_snapshot(model)
    outputs: list[weakref.ref] = []
    watch = model.layer4[-1].register_forward_hook(lambda _m, _i, out: outputs.append(weakref.ref(out)))
    first = explain(subject, x, y, method="gradcam", layer="layer4.1").maps
    for _ in range(9):
        torch.testing.assert_close(explain(subject, x, y, method="gradcam", layer="layer4.1").maps, first)
    watch.remove()
    gc.collect()
    assert len(outputs) >= 10 and all(output() is None for output in outputs)
    assert_modules_unchanged(model, before)
    assert no_hooks(model)


# ----------------------------------------------------------------------- HuggingFace ResNet and ViT (random init)

class Logits(nn.Module):
    """A HuggingFace classifier as a module that returns the logits tensor, which pytorch-grad-cam's targets index
    (their HuggingFace tutorial's model wrapper)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def test_huggingface_resnet_two_stages_of_different_sizes():
    """test_run_all_models.py's multi-layer call on a HuggingFace ResNet (random init from a tiny config): its
    last two stages (4x4 and 2x2 at 64x64), three images, one class each. The stages differ in resolution, so the
    average over layers mixes two resizes."""
    torch.manual_seed(0)
    model = ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32],
                                                      depths=[1, 1, 1, 1], num_labels=5)).eval()
    subject = Subject(model, name="hf_resnet", mean=MEAN, std=STD)
    x, y = images(3, 64, 64, seed=1), torch.tensor([0, 2, 4])
    normalized = preprocess(x)
    layers = ("resnet.encoder.stages.3", "resnet.encoder.stages.2")
    found = grids(model, layers, x)
    assert list(found.values()) == [(4, 4), (2, 2)]
    ours = kdscope_maps(subject, x, y, tuple(found))
    peer_maps, peer_raw = run_peer(Logits(model), [model.get_submodule(n) for n in layers], normalized,
                                   [targets.ClassifierOutputTarget(int(c)) for c in y])
    assert_same_maps(ours, peer_raw, peer_maps, (64, 64))


@pytest.mark.parametrize(("size", "grid"), [(32, (4, 4)), ((32, 48), (4, 6))])
@pytest.mark.parametrize("target", [None, 3])
def test_vit_with_their_reshape_transform(size, grid, target):
    """usage_examples/vit_example.py: a ViT's last block's first norm (`blocks[-1].norm1`; HuggingFace's
    `layernorm_before`) with `vit_reshape_transform` (class token dropped, patch tokens on their grid), here from
    pytorch_grad_cam.utils.reshape_transforms with the grid of a HuggingFace ViT (random init, patches of 8x8),
    square and not. kdscope lays the tokens out itself and picks that layer by default. (Seed 4: with seed 0 the
    top class of these random-weight models has all-zero maps at 32x48.)"""
    torch.manual_seed(4)
    model = ViTForImageClassification(ViTConfig(image_size=size, patch_size=8, hidden_size=16, num_hidden_layers=3,
                                                num_attention_heads=2, intermediate_size=32, num_labels=5)).eval()
    subject = Subject(model, name="vit")
    height, width = (size, size) if isinstance(size, int) else size
    x = images(2, width, height, seed=2)
    y = subject.predict(x) if target is None else torch.full((2,), target)
    layer = "vit.layers.2.layernorm_before"
    assert explain(subject, x, y, method="gradcam").params["layer"] == layer
    ours = kdscope_maps(subject, x, y, (layer,))
    assert ours[0].shape == (2, 1, *grid)
    reshape = functools.partial(reshapes.vit_reshape_transform, height=grid[0], width=grid[1])
    peer_maps, peer_raw = run_peer(Logits(model), [model.get_submodule(layer)], x, peer_targets(target, 2), reshape)
    assert_same_maps(ours, peer_raw, peer_maps, (height, width))


# --------------------------------------------------------------------------- the in-place difference, on its own

def by_hand(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(activation, gradient of the summed target logits) at `layer`, with every in-place flag off for the pass."""
    flags = [m for m in model.modules() if getattr(m, "inplace", False)]
    for module in flags:
        module.inplace = False
    kept = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: kept.update(a=out))
    try:
        logits = model(x)
    finally:
        handle.remove()
        for module in flags:
            module.inplace = True
    (grad,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), kept["a"])
    return kept["a"].detach(), grad


def grad_cam_formula(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return F.relu((grad.mean((2, 3), keepdim=True) * activation).sum(1, keepdim=True))


def test_inplace_relu_after_the_target_layer_is_where_they_differ():
    """Not a case of theirs; the difference the module docstring names. vgg11's last conv (features[-3],
    `features.18`) is followed by ReLU(inplace=True). kdscope's map is Grad-CAM of the conv's output, as computed
    by hand with the ReLUs out of place. pytorch-grad-cam's recorded activation is that output after the ReLU (the
    in-place ReLU wrote over the tensor its hook kept), its gradient the conv output's, and its map their product."""
    model = seeded(VGG11).eval()
    x, y = images(2, 64, 64, seed=3), torch.tensor([100, 100])
    subject = Subject(model, name="vgg11")
    (ours,) = kdscope_maps(subject, x, y, ("features.18",))
    activation, grad = by_hand(model, "features.18", x, y)
    torch.testing.assert_close(ours, grad_cam_formula(activation, grad))
    assert (activation < 0).any()
    with grad_cam.GradCAM(model=model, target_layers=[model.features[18]]) as cam:
        cam(input_tensor=x, targets=peer_targets(100, 2))
        recorded, recorded_grad = cam.activations_and_grads.activations[0], cam.activations_and_grads.gradients[0]
    torch.testing.assert_close(recorded, F.relu(activation))
    torch.testing.assert_close(recorded_grad, grad)
    theirs = torch.from_numpy(np.maximum(cam.get_cam_image(x, None, None, recorded.numpy(), recorded_grad.numpy()),
                                         0))[:, None]
    torch.testing.assert_close(theirs, grad_cam_formula(F.relu(activation), grad))
    assert not torch.allclose(theirs, ours, rtol=1e-3, atol=0)
