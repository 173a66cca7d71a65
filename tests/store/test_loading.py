import contextlib
import io
import json
import os
import sys
import zipfile

import pytest
import torch

from kdscope import zoo
from kdscope.core.checkpoint import CorruptCheckpointError, UnsafeCheckpointError, read_metadata, save_checkpoint
from kdscope.core.subject import Subject
from kdscope.store.loading import RandomWeightsError, load_subject


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
    _export(subject, tmp_path / "m.pt2")
    for path in ("m.ts", "m.pt2"):
        loaded = load_subject(tmp_path / path, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
        assert torch.allclose(loaded.logits(x), subject.logits(x), atol=1e-5), path


def _export(subject: Subject, path, *, dynamic: bool = True) -> None:
    x = subject.normalize(torch.rand(2, 3, 16, 16))
    shapes = {"x": {0: torch.export.Dim.DYNAMIC}} if dynamic else None
    torch.export.save(torch.export.export(subject.model, (x,), dynamic_shapes=shapes), path)


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
        load_subject("mymodels:nothing_here", random_weights=True)
    with pytest.raises(RandomWeightsError, match="random_weights=True"):
        load_subject("mymodels:tiny")
    with pytest.warns(UserWarning, match="records no normalisation"):
        assert load_subject("mymodels:tiny", random_weights=True).mean is None


def test_factory_weights_take_the_normalisation_and_classes_recorded_beside_them(tmp_path, subject, monkeypatch):
    """`train()` writes NAME.json beside NAME.pt: a factory model loaded with those weights must use it."""
    (tmp_path / "mymodels2.py").write_text(
        "from kdscope import zoo\n\ndef tiny():\n    return zoo.build('resnet', 10, width=4, blocks=1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    save_checkpoint(tmp_path / "vit.pt", subject)
    loaded = load_subject("mymodels2:tiny", weights=tmp_path / "vit.pt")
    assert loaded.mean.flatten().tolist() == pytest.approx([0.4, 0.5, 0.6])
    assert loaded.class_names == subject.class_names
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded.logits(x), subject.logits(x))


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


def _rewrite_archive(source, target, replace) -> None:
    """Copy a zip archive member by member, letting `replace(name, data)` change any member's bytes."""
    with zipfile.ZipFile(source) as archive_in, zipfile.ZipFile(target, "w") as archive_out:
        for info in archive_in.infolist():
            archive_out.writestr(info, replace(info.filename, archive_in.read(info.filename)))


def _pickled(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _crafted_archives(tmp_path, subject, marker) -> dict[str, object]:
    """Two hostile torch.export archives: example inputs that run code when unpickled (torch.export.load falls
    back to weights_only=False for them), and a weight marked as pickled whose pickle runs code."""
    _export(subject, tmp_path / "good.pt2")

    def sample_inputs(name: str, data: bytes) -> bytes:
        return _pickled(_Exploit(str(marker))) if name.endswith("sample_inputs/model.pt") else data

    def pickled_weight(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            entry = next(iter(config["config"].values()))
            entry["use_pickle"] = True
            pickled_weight.path = entry["path_name"]
            return json.dumps(config).encode()
        if name.endswith(f"data/weights/{getattr(pickled_weight, 'path', None)}"):
            return _pickled(_Exploit(str(marker)))
        return data

    archives = {}
    for label, replace in (("sample_inputs", sample_inputs), ("pickled_weight", pickled_weight)):
        archives[label] = tmp_path / f"evil_{label}.pt2"
        _rewrite_archive(tmp_path / "good.pt2", archives[label], replace)
    return archives


def test_a_crafted_export_archive_runs_no_code_on_load(tmp_path, subject):
    marker = tmp_path / "pwned"
    archives = _crafted_archives(tmp_path, subject, marker)
    for label, archive in archives.items():
        with pytest.raises(UnsafeCheckpointError, match="trust"):
            load_subject(archive)
        assert not marker.exists(), f"{label}: code ran on load"
    with contextlib.suppress(AssertionError, TypeError):  # the payload is not real example inputs (torch's own
        load_subject(archives["sample_inputs"], trust=True)  # log call on this path can raise under pytest too)
    assert marker.exists(), "the crafted archive is not a real attack: trusting it should have run its code"


def test_the_cli_refuses_a_crafted_archive_without_trust(tmp_path, subject):
    from click.testing import CliRunner

    from kdscope.cli.main import main

    marker = tmp_path / "pwned"
    archive = _crafted_archives(tmp_path, subject, marker)["sample_inputs"]
    result = CliRunner().invoke(main, ["evaluate", "--model", str(archive), "--data", "probeworld", "--n", "4",
                                       "--image-size", "16"])
    assert result.exit_code != 0 and "--trust-checkpoint" in result.output
    assert not marker.exists()


def test_a_sidecar_json_never_redirects_loading_to_another_file(tmp_path, subject):
    """q.json claiming an int8 model must not make kdscope load the q.pt2 beside the q.pt the user named."""
    marker = tmp_path / "pwned"
    archive = _crafted_archives(tmp_path, subject, marker)["sample_inputs"]
    save_checkpoint(tmp_path / "q.pt", subject)
    archive.rename(tmp_path / "q.pt2")
    meta = json.loads((tmp_path / "q.json").read_text())
    meta["compression"] = {"int8": {"quantized_layers": ["fc"]}}
    (tmp_path / "q.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="load .*q.pt2 itself"):
        load_subject(tmp_path / "q.pt")
    with pytest.raises(ValueError, match="was named"):
        load_subject(tmp_path / "q.json")
    assert not marker.exists()


def test_an_archive_with_a_fixed_batch_size_is_refused_at_load_with_the_fix(tmp_path, subject):
    _export(subject, tmp_path / "static.pt2", dynamic=False)
    with pytest.raises(ValueError, match="fixed batch size of 2.*Dim.DYNAMIC"):
        load_subject(tmp_path / "static.pt2")


def test_a_truncated_checkpoint_is_called_corrupt_even_when_trusted(tmp_path, subject):
    save_checkpoint(tmp_path / "tiny.pt", subject)
    data = (tmp_path / "tiny.pt").read_bytes()
    (tmp_path / "tiny.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        load_subject(tmp_path / "tiny.pt")
    torch.save(subject.model, tmp_path / "whole.pt")
    whole = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "whole.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        load_subject(tmp_path / "whole.pt", trust=True)


_SCORES_MODULE = """
import pathlib
from torch import nn

pathlib.Path({marker!r}).touch()


class Scores(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 4)

    def forward(self, x):
        return {{"scores": self.fc(x.flatten(1))}}


def build():
    return Scores()
"""


def test_a_checkpoint_naming_its_factory_runs_it_only_when_trusted(tmp_path, monkeypatch):
    """The factory and the output key are recorded; rebuilding imports code the file names, so it needs trust (or
    the user naming the factory), and nothing is imported before."""
    from kdscope.compress import QuantizeConfig, quantize
    from kdscope.data import probeworld
    from kdscope.store.loading import UntrustedFactoryError, build_from_factory

    marker = tmp_path / "imported"
    (tmp_path / "scoremodels.py").write_text(_SCORES_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    subject = Subject(build_from_factory("scoremodels:build"), name="scores", mean=[0.5], std=[0.25],
                      output="scores")
    half = quantize(subject, probeworld(8, size=16), QuantizeConfig(mode="bf16"), out=tmp_path, progress=False)
    save_checkpoint(tmp_path / "scores.pt", subject)
    x = torch.rand(2, 3, 16, 16)
    for name, made in (("scores", subject), ("scores_bf16", half.subject)):
        meta = read_metadata(tmp_path / f"{name}.pt")
        assert (meta["factory"], meta["output"]) == ("scoremodels:build", "scores")
        monkeypatch.delitem(sys.modules, "scoremodels", raising=False)
        marker.unlink(missing_ok=True)
        with pytest.raises(UntrustedFactoryError, match=r"built by 'scoremodels:build'.*trust=True.*"
                                                        r"load_subject\('scoremodels:build', weights="):
            load_subject(tmp_path / f"{name}.pt")
        assert not marker.exists()
        assert torch.equal(load_subject(tmp_path / f"{name}.pt", trust=True).logits(x), made.logits(x))
        assert marker.exists()
        assert torch.equal(load_subject("scoremodels:build", weights=tmp_path / f"{name}.pt").logits(x),
                           made.logits(x))
    assert issubclass(UntrustedFactoryError, UnsafeCheckpointError)
