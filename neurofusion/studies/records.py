"""What the study store hands out: plain frozen records of a study, a rater, a case and a submission.

Every datetime is timezone-aware UTC, whichever engine stored it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PROTOCOLS = ("blinded", "unblinded")
SELECTIONS = ("all", "split", "stratified")
SOURCES = ("dashboard", "cli", "import")
KINDS = ("ranking", "skip")
REVEAL_METHODS = ("shapley", "attention", "leave_one_out", "interaction_aware")


@dataclass(frozen=True)
class Study:
    id: int
    name: str
    task: str
    outcome: str  # "classification" | "survival" (the model's config.outcome)
    cohort_dir: str
    cohort_sha256: str
    checkpoint_dir: str
    checkpoint_sha256: str
    modalities: tuple[str, ...]  # the declared modality names, in order
    classes: tuple[str, ...]  # the model's classes (empty for survival)
    selection: str  # in words: "stratified sample of 40 by class and missingness pattern (seed 7)"
    protocol: str  # the default protocol of the study's raters
    allow_ties: bool
    reveal: bool
    reveal_method: str
    seed: int
    created_at: datetime
    created_by: str
    withdrawn_at: datetime | None
    withdrawn_reason: str


@dataclass(frozen=True)
class Rater:
    id: int
    study_id: int
    name: str
    identity: str | None  # the OIDC login (email) bound to the name, if any
    protocol: str
    added_at: datetime
    withdrawn_at: datetime | None
    withdrawn_reason: str


@dataclass(frozen=True)
class StudyCase:
    id: int
    study_id: int
    case_id: str
    position: int
    label: str | None  # the true class (classification) or None
    available: tuple[str, ...]  # the modalities this case has (what a rater ranks), declared order


@dataclass(frozen=True)
class Submission:
    id: int
    study_id: int
    rater: str
    case_id: str
    revision: int  # 1, 2, ... per (rater, case)
    kind: str  # "ranking" | "skip"
    ranks: dict[str, int]  # {} for a skip; modality -> rank (1 = drove the judgement most)
    diagnosis: str | None
    confidence: int | None  # 1..5 or None
    reason: str  # free text ("" if none); for a skip, the skip reason
    protocol: str  # what the rater saw: blinded / unblinded
    source: str  # "dashboard" | "cli" | "import"
    token: str  # the client's idempotency key (unique)
    submitted_at: datetime
    withdrawn_at: datetime | None
    withdrawn_reason: str
    duplicate: bool = False  # submit() called again with a stored token: this is the stored row, nothing written
