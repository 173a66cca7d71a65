import pytest

from kdscope import demo
from kdscope.data.augment import Augment
from kdscope.train import TrainConfig


def _tiny_recipe() -> demo.DemoRecipe:
    config = TrainConfig(epochs=1, batch_size=64, augment=Augment.colour_jitter())
    return demo.DemoRecipe(train_images=200, test_images=60, models=(
        demo.DemoModel("teacher", "teacher", "resnet", {"width": 4, "blocks": 1}, config),
        demo.DemoModel("teacher_star", "other", "resnet", {"width": 2, "blocks": 1}, config),
    ))


def test_demo_trains_then_reuses_matching_checkpoints(tmp_path):
    first = demo.train_models(tmp_path, progress=False, recipe=_tiny_recipe())
    assert set(first) == {"teacher", "teacher_star"} and not any(r["cached"] for r in first.values())
    second = demo.train_models(tmp_path, progress=False, recipe=_tiny_recipe())
    assert all(r["cached"] for r in second.values())
    for name in first:
        assert second[name]["accuracy"] == pytest.approx(first[name]["accuracy"])
        assert second[name]["seconds"] == pytest.approx(first[name]["seconds"])
    changed = _tiny_recipe()
    changed = demo.DemoRecipe(train_images=changed.train_images, test_images=changed.test_images, seed=1,
                              models=changed.models)
    assert not any(r["cached"] for r in demo.train_models(tmp_path, progress=False, recipe=changed).values())
    assert not any(r["cached"] for r in demo.train_models(tmp_path, progress=False, fresh=True,
                                                      recipe=_tiny_recipe()).values())


def test_shipped_models_fill_only_what_is_missing(tmp_path):
    shipped, out = tmp_path / "shipped", tmp_path / "out"
    shipped.mkdir()
    out.mkdir()
    for name in ("teacher.pt", "teacher.json", "kd_student.recipe"):
        (shipped / name).write_text(f"shipped {name}")
    (out / "teacher.pt").write_text("the user's own")
    assert demo.unpack_shipped(out, shipped) == ["kd_student.recipe", "teacher.json"]
    assert (out / "teacher.pt").read_text() == "the user's own"
    assert (out / "teacher.json").read_text() == "shipped teacher.json"
    assert demo.unpack_shipped(out, tmp_path / "none") == []
