"""Database rows -> the store's records, and the one query every submission read shares."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from sqlalchemy import Select, select

from neurofusion.studies.records import Rater, Study, StudyCase, Submission
from neurofusion.studies.schema import study_cases, study_raters, submissions


def submission_query() -> Select:
    return (select(submissions, study_raters.c.name.label("rater_name"),
                   study_cases.c.case_id.label("case_name"), study_cases.c.available.label("case_available"))
            .join(study_raters, study_raters.c.id == submissions.c.rater_id)
            .join(study_cases, study_cases.c.id == submissions.c.study_case_id))


def queue_order(case_ids: list[str], seed: int, rater: str) -> list[str]:
    # hashlib, not hash(): the same order in every process and on every machine
    key = int.from_bytes(hashlib.sha256(f"{seed}|{rater}".encode()).digest()[:8], "little")
    order = np.random.default_rng(key).permutation(len(case_ids))
    return [case_ids[i] for i in order]


def study_record(row) -> Study:
    return Study(id=row["id"], name=row["name"], task=row["task"], outcome=row["outcome"],
                 cohort_dir=row["cohort_dir"], cohort_sha256=row["cohort_sha256"],
                 checkpoint_dir=row["checkpoint_dir"], checkpoint_sha256=row["checkpoint_sha256"],
                 modalities=tuple(json.loads(row["modalities"])), classes=tuple(json.loads(row["classes"])),
                 selection=row["selection"], protocol=row["protocol"], allow_ties=bool(row["allow_ties"]),
                 reveal=bool(row["reveal"]), reveal_method=row["reveal_method"], seed=int(row["seed"]),
                 created_at=row["created_at"], created_by=row["created_by"], withdrawn_at=row["withdrawn_at"],
                 withdrawn_reason=row["withdrawn_reason"])


def rater_record(row) -> Rater:
    return Rater(id=row["id"], study_id=row["study_id"], name=row["name"], identity=row["identity"],
                 protocol=row["protocol"], added_at=row["added_at"], withdrawn_at=row["withdrawn_at"],
                 withdrawn_reason=row["withdrawn_reason"])


def case_record(row) -> StudyCase:
    return StudyCase(id=row["id"], study_id=row["study_id"], case_id=row["case_id"], position=row["position"],
                     label=row["label"], available=tuple(json.loads(row["available"])))


def submission_record(row, ranks: dict[str, int], duplicate: bool = False) -> Submission:
    order = json.loads(row["case_available"])  # ranks in the case's declared modality order
    return Submission(id=row["id"], study_id=row["study_id"], rater=row["rater_name"], case_id=row["case_name"],
                      revision=row["revision"], kind=row["kind"],
                      ranks={m: ranks[m] for m in sorted(ranks, key=lambda m: order.index(m) if m in order else 99)},
                      diagnosis=row["diagnosis"], confidence=row["confidence"], reason=row["reason"],
                      protocol=row["protocol"], source=row["source"], token=row["token"],
                      submitted_at=row["submitted_at"], withdrawn_at=row["withdrawn_at"],
                      withdrawn_reason=row["withdrawn_reason"], duplicate=duplicate)
