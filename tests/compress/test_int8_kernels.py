"""The compiled int8 model computes what its reference graph computes: 7-bit weights keep oneDNN's int16 pair sums
from saturating on CPUs without VNNI, archives with full-range weights are refused there, and models torch.export
cannot capture are refused with its reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdscope import Subject
from kdscope.compress import QuantizeConfig, quant_backend, quantize
from kdscope.data import probeworld

DEQUANTIZE_PER_CHANNEL = "quantized_decomposed.dequantize_per_channel.default"


def _reference(model: nn.Module, x: torch.Tensor):
    prepared = quant_backend.prepare(model.eval(), x[:2])
    quant_backend.calibrate(prepared, [x])
    return quant_backend.convert(prepared)


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_compiled_int8_equals_its_reference_graph(layer):
    """Full-range weights made this differ by about the logits' spread on an AVX2 CPU; 7-bit weights make it exact."""
    torch.manual_seed(0)
    model, x = ((nn.Sequential(nn.Linear(64, 8)), torch.randn(32, 64)) if layer == "linear"
                else (nn.Sequential(nn.Conv2d(16, 8, 3), nn.Flatten()), torch.randn(32, 16, 6, 6)))
    reference = _reference(model, x)
    ranges = {(n.args[4], n.args[5]) for n in reference.graph.nodes if str(n.target) == DEQUANTIZE_PER_CHANNEL}
    assert ranges == {quant_backend.WEIGHT_RANGE}
    with torch.no_grad():
        torch.testing.assert_close(quant_backend.lower(reference)(x), reference(x), atol=1e-5, rtol=0)


def test_full_range_weights_are_refused_on_a_cpu_without_vnni(tmp_path, monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    with monkeypatch.context() as patch:
        patch.setattr(quant_backend, "WEIGHT_RANGE", (-128, 127))
        reference = _reference(nn.Sequential(nn.Linear(16, 4)), x)
    with open(tmp_path / "old.pt2", "wb") as file:
        quant_backend.save(reference, x[:2], file)
    monkeypatch.setattr(quant_backend, "cpu_has_vnni", lambda: False)
    with pytest.raises(ValueError, match=r"int8 weights in \[-128, 127\].*no VNNI.*Quantize the float model again"):
        quant_backend.load(tmp_path / "old.pt2")
    monkeypatch.setattr(quant_backend, "cpu_has_vnni", lambda: True)
    assert quant_backend.load(tmp_path / "old.pt2")(x).shape == (8, 4)


class _DataDependent(nn.Module):
    """A branch on the values of the input: torch.export cannot capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(x.flatten(1))
        return logits if x.mean() > 0 else -logits


def test_a_model_export_cannot_capture_is_refused_with_the_reason():
    data = probeworld(8, size=16)
    with pytest.raises(ValueError, match="int8 quantization needs a model that torch.export can capture"):
        quantize(Subject(_DataDependent(), name="branchy"), data, QuantizeConfig(calibration_images=8),
                 progress=False)
