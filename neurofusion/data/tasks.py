"""Prediction tasks known to the project: their outcome (class names, or survival), and the modalities
they declare."""

from __future__ import annotations

from dataclasses import dataclass

from neurofusion.data.modalities import CANCER_MODALITIES, CARDIO_MODALITIES, ICU_MODALITIES, ModalitySpec

OUTCOMES: tuple[str, ...] = ("classification", "survival")


@dataclass(frozen=True)
class TaskSpec:
    """A task. outcome: "classification" (``classes`` are the labels) or "survival" (``time`` and ``event``
    per case, in ``time_unit``; the model predicts survival up to ``horizon``)."""

    name: str
    classes: tuple[str, ...]
    description: str
    modalities: tuple[ModalitySpec, ...] = CARDIO_MODALITIES
    outcome: str = "classification"
    horizon: float | None = None
    time_unit: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"task {self.name!r}: outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.outcome == "classification" and not self.classes:
            raise ValueError(f"task {self.name!r}: a classification task needs its classes")
        if self.outcome == "survival" and not (self.horizon and self.horizon > 0 and self.time_unit):
            raise ValueError(f"task {self.name!r}: a survival task needs a positive horizon and a time unit")


CARDIO_CLASSES: tuple[str, ...] = (
    "normal",
    "coronary_artery_disease",
    "heart_failure",
    "arrhythmia",
    "valvular_disease",
)
# The disease classes: a synthetic modality "finding" is one of these at an intensity in [0, 1].
CARDIO_FINDINGS: tuple[str, ...] = CARDIO_CLASSES[1:]

TASKS: dict[str, TaskSpec] = {
    "cardio": TaskSpec(
        name="cardio",
        classes=CARDIO_CLASSES,
        description="5-class cardiovascular diagnosis from echo image, consult note, 12-lead ECG and labs",
        modalities=CARDIO_MODALITIES,
    ),
    "cancer": TaskSpec(
        name="cancer",
        classes=(),
        description="5-year survival from histopathology (RGB), a 50-gene mutation panel, treatment notes and "
                    "clinical data (demographics, stage)",
        modalities=CANCER_MODALITIES,
        outcome="survival",
        horizon=60.0,
        time_unit="months",
    ),
    "icu": TaskSpec(
        name="icu",
        classes=("survives_48h", "dies_within_48h"),
        description="death within the next 48 hours, predicted at any hour of an ICU stay from the vital signs, "
                    "labs and nursing notes recorded up to that hour and the admission demographics",
        modalities=ICU_MODALITIES,
        horizon=48.0,
        time_unit="hours",
    ),
}


def task_modalities(task: str | None) -> tuple[ModalitySpec, ...]:
    """The declaration of a known task; cardio's for an unknown or unnamed one (the project's default)."""
    return TASKS[task].modalities if task in TASKS else CARDIO_MODALITIES
