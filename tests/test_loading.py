import json
import os

import pytest
import torch

from kdscope import zoo
from kdscope.checkpoint import UnsafeCheckpointError, read_metadata, save_checkpoint
from kdscope.loading import load_subject
from kdscope.subject import Subject


@pytest.fixture
def subject() -> Subject:
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1).eval()
    return Subject(model, name="tiny", role="teacher", mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3],
                   class_names=[f"c{k}" for k in range(10)])


def test_kdscope_checkpoint_round_trip(tmp_path, subject):
    save_checkpoint(tmp_path / "tiny.pt", subject, extra={"seed": 3, "metrics": {"accuracy": 0.5}})
    loaded = load_subject(tmp_path / "tiny.pt")
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(loaded.logits(x), subject.logits(x))
    assert (loaded.name, loaded.role, loaded.class_names[2]) == ("tiny", "teacher", "c2")
    meta = read_metadata(tmp_path / "tiny.json")
    assert meta["arch"] == {"name": "resnet", "kwargs": {"num_classes": 10, "width": 4, "blocks": 1}}
    assert meta["normalization"]["std"] == pytest.approx([0.2, 0.25, 0.3])
    assert meta["seed"] == 3 and set(meta["versions"]) >= {"torch", "kdscope", "numpy", "python"}


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
def test_torchscript_and_export_archives_load(tmp_path, subject):
    x = torch.rand(2, 3, 16, 16)
    torch.jit.trace(subject.model, subject.normalize(x)).save(str(tmp_path / "m.ts"))
    torch.export.save(torch.export.export(subject.model, (subject.normalize(x),)), tmp_path / "m.pt2")
    for path in ("m.ts", "m.pt2"):
        loaded = load_subject(tmp_path / path, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
        assert torch.allclose(loaded.logits(x), subject.logits(x), atol=1e-5), path


def test_factory_with_state_dict(tmp_path, subject, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "from kdscope import zoo\n\ndef tiny():\n    return zoo.build('resnet', 10, width=4, blocks=1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save(subject.model.state_dict(), tmp_path / "weights.pt")
    loaded = load_subject("mymodels:tiny", weights=tmp_path / "weights.pt", mean=[0.4, 0.5, 0.6],
                          std=[0.2, 0.25, 0.3])
    x = torch.rand(2, 3, 16, 16)
    assert loaded.name == "tiny" and torch.equal(loaded.logits(x), subject.logits(x))
    with pytest.raises(ValueError, match="PYTHONPATH"):
        load_subject("mymodels:nothing_here")


def test_bare_state_dict_asks_for_the_architecture(tmp_path, subject):
    torch.save(subject.model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="module:function"):
        load_subject(tmp_path / "weights.pt")


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_is_refused_without_trust(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weights": _Exploit(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="trust"):
        load_subject(tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(ValueError):
        load_subject(tmp_path / "evil.pt", trust=True)
    assert marker.exists()


def test_pickled_module_loads_only_when_trusted(tmp_path, subject):
    torch.save(subject.model, tmp_path / "whole.pt")
    with pytest.raises(UnsafeCheckpointError):
        load_subject(tmp_path / "whole.pt")
    loaded = load_subject(tmp_path / "whole.pt", trust=True, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded.logits(x), subject.logits(x))


def test_missing_and_mismatched_files(tmp_path, subject):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_subject(tmp_path / "nope.pt")
    save_checkpoint(tmp_path / "tiny.pt", subject)
    meta = json.loads((tmp_path / "tiny.json").read_text())
    meta["arch"]["kwargs"]["width"] = 8
    (tmp_path / "tiny.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not fit"):
        load_subject(tmp_path / "tiny.pt")
