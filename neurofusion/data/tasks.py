"""Prediction tasks known to the project: their class names and the modalities they use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    classes: tuple[str, ...]
    description: str


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
    ),
}
