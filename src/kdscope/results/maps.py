"""The explanation-map stages: agreement of each model's maps with the teacher's (and Ojha's closer-share test),
how much of each map falls on the object, and the gallery of maps the report shows."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kdscope.results.values import (
    NO_STUDENT_AND_CONTROL,
    Interval,
    SchemaError,
    Unavailable,
    interval,
    mapping,
    or_unavailable,
    require,
    sequence,
)

NO_OJHA_PAIR = f"Ojha's test {NO_STUDENT_AND_CONTROL}"
NO_SECOND_CONTROL = ("the control of Ojha's test needs a second independent student (two models with role "
                     "'independent_student')")
NO_MASKS = "the data has no object masks"
_TOP_K = re.compile(r"^top(\d+)_iou$")


@dataclass
class MapAgreement:
    """Per image, a model's map against the teacher's: cosine, Spearman and IoU of each map's top `top_percent`%
    pixels (JSON key `top{top_percent}_iou`), each a mean with its interval."""

    cosine: Interval
    spearman: Interval
    top_iou: Interval
    top_percent: int

    def to_plain(self) -> dict:
        return {"cosine": list(self.cosine), "spearman": list(self.spearman),
                f"top{self.top_percent}_iou": list(self.top_iou)}

    @classmethod
    def from_plain(cls, plain: object) -> MapAgreement:
        keys = [key for key in plain if _TOP_K.match(key)] if isinstance(plain, dict) else []
        if len(keys) != 1:
            raise SchemaError(f"expected one key 'topK_iou' in a map agreement, got {sorted(plain)!r:.80}")
        return cls(cosine=interval(require(plain, "cosine")), spearman=interval(require(plain, "spearman")),
                   top_iou=interval(plain[keys[0]]), top_percent=int(_TOP_K.match(keys[0])[1]))


@dataclass
class OjhaRecord:
    """Ojha et al.'s test on Grad-CAM: the share of images whose teacher map is closer (cosine) to the distilled
    student's than to its independent control's (50% = nothing transferred), and the same share with a second
    independent student in the distilled student's place (`control_closer`, about 50% when the test is fair)."""

    distilled_closer: Interval
    student: str
    control: str
    control_closer: Interval | Unavailable
    second_control: str | None

    def to_plain(self) -> dict:
        closer = self.control_closer
        return {"distilled_closer": list(self.distilled_closer), "student": self.student, "control": self.control,
                "control_closer": closer.to_plain() if isinstance(closer, Unavailable) else list(closer),
                "second_control": self.second_control}

    @classmethod
    def from_plain(cls, plain: object) -> OjhaRecord:
        return cls(distilled_closer=interval(require(plain, "distilled_closer")), student=require(plain, "student"),
                   control=require(plain, "control"),
                   control_closer=or_unavailable(require(plain, "control_closer"), interval),
                   second_control=require(plain, "second_control"))


@dataclass
class CamsStage:
    """Per explainer and model, agreement with the teacher's maps; Ojha's test."""

    methods: dict[str, dict[str, MapAgreement | Unavailable]]
    ojha: OjhaRecord | Unavailable

    def to_plain(self) -> dict:
        return {"methods": {method: {name: entry.to_plain() for name, entry in per_model.items()}
                            for method, per_model in self.methods.items()},
                "ojha": self.ojha.to_plain()}

    @classmethod
    def from_plain(cls, plain: object) -> CamsStage:
        def per_model(entries: object) -> dict[str, MapAgreement | Unavailable]:
            return mapping(entries, lambda e: or_unavailable(e, MapAgreement.from_plain))

        return cls(methods=mapping(require(plain, "methods"), per_model),
                   ojha=or_unavailable(require(plain, "ojha"), OjhaRecord.from_plain))

    def agreement(self, model: str, method: str) -> MapAgreement | Unavailable:
        if method not in self.methods:
            return Unavailable(f"the plan's explainers did not include {method}")
        return self.methods[method].get(model, Unavailable(f"{model} was not compared with the teacher"))


@dataclass
class Localisation:
    """Pointing game (the map's peak on the object) and relevance mass (its share on the object)."""

    pointing_game: Interval
    relevance_mass: Interval

    def to_plain(self) -> dict:
        return {"pointing_game": list(self.pointing_game), "relevance_mass": list(self.relevance_mass)}

    @classmethod
    def from_plain(cls, plain: object) -> Localisation:
        return cls(pointing_game=interval(require(plain, "pointing_game")),
                   relevance_mass=interval(require(plain, "relevance_mass")))


@dataclass
class ExplanationsStage:
    """Per model and explainer, localisation against the object masks. JSON: {model: {method: ...}}."""

    models: dict[str, dict[str, Localisation | Unavailable]]

    def to_plain(self) -> dict:
        return {name: {method: entry.to_plain() for method, entry in per_method.items()}
                for name, per_method in self.models.items()}

    @classmethod
    def from_plain(cls, plain: object) -> ExplanationsStage:
        return cls(mapping(plain, lambda per_method: mapping(
            per_method, lambda e: or_unavailable(e, Localisation.from_plain))))

    def localisation(self, model: str, method: str) -> Localisation | Unavailable:
        if model not in self.models:
            return Unavailable(f"no localisation for {model}")
        return self.models[model].get(method, Unavailable(f"the plan's explainers did not include {method}"))


@dataclass
class GalleryStage:
    """The first audit images (H, W, C pixels), their labels, and every model's prediction and raw map per
    explainer (nested lists, a few significant figures), or why a model has none."""

    images: list
    labels: list[int]
    class_names: list[str]
    methods: dict[str, dict[str, list | Unavailable]]
    predictions: dict[str, list[int]]

    def to_plain(self) -> dict:
        return {"images": self.images, "labels": self.labels, "class_names": self.class_names,
                "methods": {method: {name: maps.to_plain() if isinstance(maps, Unavailable) else maps
                                     for name, maps in per_model.items()}
                            for method, per_model in self.methods.items()},
                "predictions": self.predictions}

    @classmethod
    def from_plain(cls, plain: object) -> GalleryStage:
        def maps(entry: object) -> list | Unavailable:
            return or_unavailable(entry, lambda e: sequence(e, lambda row: row))

        return cls(images=sequence(require(plain, "images"), lambda image: image),
                   labels=sequence(require(plain, "labels"), int),
                   class_names=sequence(require(plain, "class_names"), str),
                   methods=mapping(require(plain, "methods"), lambda per_model: mapping(per_model, maps)),
                   predictions=mapping(require(plain, "predictions"), lambda p: sequence(p, int)))
