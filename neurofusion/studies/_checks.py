"""Checks of what a rater submits: a ranking of exactly the modalities the case has, a diagnosis among the
model's classes, a confidence on the 1..5 scale. Each failure is a StudyError saying what was given and what
is expected."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

from neurofusion.data.annotations import competition_ranks
from neurofusion.studies.records import PROTOCOLS, SOURCES
from neurofusion.studies.schema import StudyError

MAX_TOKEN = 200


def check_ranks(ranks: Mapping[str, object], available: tuple[str, ...], *, allow_ties: bool,
                case_id: str) -> dict[str, int]:
    """``ranks`` (modality -> rank) -> a plain {modality: int} in the case's declared order, or StudyError."""
    if not isinstance(ranks, Mapping):
        raise StudyError(f"ranks must be a mapping of modality -> rank, got {type(ranks).__name__}")
    missing = [m for m in available if m not in ranks]
    extra = [str(m) for m in ranks if m not in available]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not available for this case")
        raise StudyError(f"ranks for case {case_id!r} must rank exactly the modalities it has "
                         f"({', '.join(available)}): {'; '.join(problems)}")
    out: dict[str, int] = {}
    for modality in available:
        value = ranks[modality]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise StudyError(f"rank of {modality} must be a whole number 1..{len(available)}, got {value!r}")
        if not 1 <= int(value) <= len(available):
            raise StudyError(f"rank of {modality} must be between 1 and {len(available)} (the modalities this case "
                             f"has), got {int(value)}")
        out[modality] = int(value)
    given = ", ".join(f"{m}={r}" for m, r in out.items())
    if not allow_ties:
        if sorted(out.values()) != list(range(1, len(out) + 1)):
            raise StudyError(f"this study does not allow ties: ranks must be a permutation of 1..{len(out)}, "
                             f"got {given}")
    elif not competition_ranks(np.array([list(out.values())], dtype=float))[0]:
        raise StudyError("ranks must be 1..k with ties in standard competition form (1, 1, 3: tied modalities "
                         f"share the better place and the next place skips), got {given}")
    return out


def check_diagnosis(diagnosis: str | None, classes: tuple[str, ...]) -> str | None:
    if diagnosis is None:
        return None
    if not classes:
        raise StudyError(f"diagnosis {diagnosis!r} given, but this study's model has no classes (a survival model): "
                         "leave the diagnosis empty")
    if diagnosis not in classes:
        raise StudyError(f"diagnosis {diagnosis!r} is not one of the model's classes: {', '.join(classes)}")
    return diagnosis


def check_confidence(confidence: int | None) -> int | None:
    if confidence is None:
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Integral) or not 1 <= confidence <= 5:
        raise StudyError(f"confidence must be a whole number 1..5 or empty, got {confidence!r}")
    return int(confidence)


def check_token(token: str) -> str:
    if not isinstance(token, str) or not token.strip():
        raise StudyError("a submission needs a token (the client's idempotency key, e.g. a uuid4), got "
                         f"{token!r}")
    if len(token) > MAX_TOKEN:
        raise StudyError(f"token is {len(token)} characters long; at most {MAX_TOKEN}")
    return token


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise StudyError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    return source


def check_protocol(protocol: str, field: str = "protocol") -> str:
    if protocol not in PROTOCOLS:
        raise StudyError(f"{field} must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return protocol


def check_name(name: str, what: str, limit: int = 200) -> str:
    """A study or rater name: non-empty, no surrounding blanks, at most ``limit`` characters."""
    if not isinstance(name, str) or not name.strip():
        raise StudyError(f"{what} name must not be empty, got {name!r}")
    if name != name.strip():
        raise StudyError(f"{what} name {name!r} has leading or trailing blanks; remove them")
    if len(name) > limit:
        raise StudyError(f"{what} name is {len(name)} characters long; at most {limit}")
    return name


def check_reason(reason: str, what: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise StudyError(f"{what} needs a reason (free text), got {reason!r}")
    return reason.strip()
