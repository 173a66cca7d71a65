"""The knowledge-transfer probes stage: each model's rate on ProbeWorld variants of the audited scenes, and the
distilled student against its independent control, paired image by image."""

from __future__ import annotations

from dataclasses import dataclass

from kdscope.results.values import (
    NO_STUDENT_AND_CONTROL,
    Interval,
    Unavailable,
    interval,
    mapping,
    or_unavailable,
    require,
)

NO_PAIR = f"the paired comparison {NO_STUDENT_AND_CONTROL}"
NO_IMAGES_SCORED = "no image to score: no cue-conflict image was decided by its shape or by its texture"
NOT_PAIRED = ("not paired: each model's shape decisions come from the images it decided by a cue, which differ "
              "between models")
NOT_PROBEWORLD = "knowledge-transfer probes need ProbeWorld data (its variants render the same scenes)"
NOT_THE_SCENES = "the audit images are not the ProbeWorld scenes their description names"


@dataclass
class PairedOutcome:
    """The student's rate, the control's rate and their paired difference (student - control) on the same images."""

    student: Interval
    control: Interval
    difference: Interval

    def to_plain(self) -> dict:
        return {"student": list(self.student), "control": list(self.control), "difference": list(self.difference)}

    @classmethod
    def from_plain(cls, plain: object) -> PairedOutcome:
        return cls(**{name: interval(require(plain, name)) for name in ("student", "control", "difference")})


@dataclass
class ProbeRecord:
    description: str
    models: dict[str, Interval | Unavailable]
    paired: PairedOutcome | Unavailable

    def to_plain(self) -> dict:
        return {"description": self.description,
                "models": {name: rate.to_plain() if isinstance(rate, Unavailable) else list(rate)
                           for name, rate in self.models.items()},
                "paired": self.paired.to_plain()}

    @classmethod
    def from_plain(cls, plain: object) -> ProbeRecord:
        return cls(description=require(plain, "description"),
                   models=mapping(require(plain, "models"), lambda rate: or_unavailable(rate, interval)),
                   paired=or_unavailable(require(plain, "paired"), PairedOutcome.from_plain))


@dataclass
class ProbesStage:
    images: int
    student: str | None
    control: str | None
    probes: dict[str, ProbeRecord]

    def to_plain(self) -> dict:
        return {"images": self.images, "student": self.student, "control": self.control,
                "probes": {name: probe.to_plain() for name, probe in self.probes.items()}}

    @classmethod
    def from_plain(cls, plain: object) -> ProbesStage:
        return cls(images=require(plain, "images"), student=require(plain, "student"),
                   control=require(plain, "control"), probes=mapping(require(plain, "probes"), ProbeRecord.from_plain))
