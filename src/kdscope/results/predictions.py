"""The predictions stage: each model's accuracy and calibration, and how often it decides as the teacher does."""

from __future__ import annotations

from dataclasses import dataclass, field

from kdscope.results.values import Interval, interval, mapping, require, sequence


@dataclass
class ModelPredictions:
    """One model on the audit images. `per_class_accuracy` is keyed by class index (a JSON key, so a string)."""

    accuracy: Interval
    ece: Interval
    per_class_accuracy: dict[str, float]
    hardest_classes: list[int]
    easiest_classes: list[int]

    def to_plain(self) -> dict:
        return {"accuracy": list(self.accuracy), "ece": list(self.ece), "per_class_accuracy": self.per_class_accuracy,
                "hardest_classes": self.hardest_classes, "easiest_classes": self.easiest_classes}

    @classmethod
    def from_plain(cls, plain: object) -> ModelPredictions:
        return cls(accuracy=interval(require(plain, "accuracy")), ece=interval(require(plain, "ece")),
                   per_class_accuracy=mapping(require(plain, "per_class_accuracy"), float),
                   hardest_classes=list(require(plain, "hardest_classes")),
                   easiest_classes=list(require(plain, "easiest_classes")))


@dataclass
class Agreement:
    """A model against the teacher: top-1 agreement, KL(teacher || model) and Jensen-Shannon divergence (nats)."""

    top1_agreement: Interval
    kl: Interval
    js: Interval

    def to_plain(self) -> dict:
        return {"top1_agreement": list(self.top1_agreement), "kl": list(self.kl), "js": list(self.js)}

    @classmethod
    def from_plain(cls, plain: object) -> Agreement:
        return cls(**{name: interval(require(plain, name)) for name in ("top1_agreement", "kl", "js")})


@dataclass
class ControlGain:
    """The distilled student against one of its controls on the same images: accuracy, student minus control
    (paired, in [-1, 1]). `role` says which control (independent, pseudo-label, random-teacher, other-teacher)."""

    control: str
    role: str
    accuracy_gain: Interval

    def to_plain(self) -> dict:
        return {"control": self.control, "role": self.role, "accuracy_gain": list(self.accuracy_gain)}

    @classmethod
    def from_plain(cls, plain: object) -> ControlGain:
        return cls(control=require(plain, "control"), role=require(plain, "role"),
                   accuracy_gain=interval(require(plain, "accuracy_gain")))


@dataclass
class PredictionsStage:
    """Every model's predictions, every other model against the teacher, and how many images were audited (not
    the plan's `images`: that is a cap, and the data may hold fewer)."""

    models: dict[str, ModelPredictions]
    versus_teacher: dict[str, Agreement]
    teacher: str
    control: str | None
    images: int
    student: str | None = None
    gains: list[ControlGain] = field(default_factory=list)

    def to_plain(self) -> dict:
        plain = {"models": {name: m.to_plain() for name, m in self.models.items()},
                 "versus_teacher": {name: a.to_plain() for name, a in self.versus_teacher.items()},
                 "teacher": self.teacher, "control": self.control, "images": self.images}
        if self.gains:  # an audit without a distilled student and its controls reads as before they existed
            plain.update(student=self.student, gains=[gain.to_plain() for gain in self.gains])
        return plain

    @classmethod
    def from_plain(cls, plain: object) -> PredictionsStage:
        return cls(models=mapping(require(plain, "models"), ModelPredictions.from_plain),
                   versus_teacher=mapping(require(plain, "versus_teacher"), Agreement.from_plain),
                   teacher=require(plain, "teacher"), control=require(plain, "control"),
                   images=require(plain, "images"), student=plain.get("student"),
                   gains=sequence(plain.get("gains", []), ControlGain.from_plain))

    def accuracy(self, model: str) -> Interval:
        if model not in self.models:
            raise LookupError(f"no predictions for {model}")
        return self.models[model].accuracy

    def versus(self, model: str) -> Agreement:
        if model not in self.versus_teacher:
            raise LookupError(f"{model} was not compared with the teacher")
        return self.versus_teacher[model]
