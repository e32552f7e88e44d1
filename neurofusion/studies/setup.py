"""Creating a study: check that the cohort is the model's kind, hash both folders, select the cases, store it;
read the raters as the CLI and the page take them ("name" or "name <email>").

The checkpoint is read without its weights: only config.json (the model's task, outcome, classes and
declared modalities) is needed to set up a study; the hashes record exactly which files were used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from neurofusion.config import ModelConfig
from neurofusion.data.errors import CohortError
from neurofusion.data.timed import open_cohort
from neurofusion.hashing import folder_hashes
from neurofusion.studies._checks import check_name, check_protocol
from neurofusion.studies.records import REVEAL_METHODS, Study
from neurofusion.studies.schema import StudyError
from neurofusion.studies.selection import describe_selection, select_cases

if TYPE_CHECKING:
    from neurofusion.studies.store import StudyStore

CONFIG_JSON = "config.json"
_RATER = re.compile(r"^\s*(?P<name>[^<>]*?)\s*(?:<\s*(?P<identity>[^<>\s]+)\s*>)?\s*$")


def create_study(store: StudyStore, name: str, *, cohort_dir: str | Path, checkpoint_dir: str | Path,
                 selection: str = "all", split: str | None = None, n: int | None = None, seed: int = 0,
                 raters: Sequence[str], protocol: str = "blinded", allow_ties: bool = False, reveal: bool = True,
                 reveal_method: str = "shapley", created_by: str = "") -> Study:
    """Create study ``name`` in ``store``: the cohort at ``cohort_dir`` rated against the model at
    ``checkpoint_dir``, over the selected cases, by ``raters`` (names; more can be added later)."""
    check_name(name, "study")
    check_protocol(protocol)
    if reveal_method not in REVEAL_METHODS:
        raise StudyError(f"reveal_method must be one of {', '.join(REVEAL_METHODS)}, got {reveal_method!r}")
    if isinstance(raters, str):
        raise StudyError(f"raters must be a list of names, got the single string {raters!r}")
    raters = list(raters)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise StudyError(f"seed must be a whole number 0..2147483647, got {seed!r}")
    config = read_model_config(checkpoint_dir)
    try:
        cohort = open_cohort(cohort_dir)
    except CohortError as err:
        raise StudyError(f"cannot open the cohort: {err}") from None
    case_ids = select_cases(cohort, selection, split=split, n=n, seed=seed)
    _check_cohort_fits(cohort, config, cohort_dir, checkpoint_dir)
    availability = cohort.availability()
    names = cohort.modality_names
    labels = cohort.table.set_index("case_id")["label"] if config.outcome == "classification" else None
    cases = [{"case_id": case_id, "label": None if labels is None else str(labels[case_id]),
              "available": tuple(m for m, has in zip(names, availability.loc[case_id]) if has)}
             for case_id in case_ids]
    values = {
        "name": name, "task": config.task, "outcome": config.outcome,
        "cohort_dir": str(Path(cohort_dir).resolve()), "cohort_sha256": folder_hashes(cohort_dir)["sha256"],
        "checkpoint_dir": str(Path(checkpoint_dir).resolve()),
        "checkpoint_sha256": folder_hashes(checkpoint_dir)["sha256"],
        "modalities": json.dumps(list(names)), "classes": json.dumps(list(config.classes)),
        "selection": describe_selection(selection, split=split, n=n, seed=seed, outcome=config.outcome),
        "protocol": protocol, "allow_ties": bool(allow_ties), "reveal": bool(reveal),
        "reveal_method": reveal_method, "seed": seed, "created_by": created_by or "",
    }
    return store._insert_study(values, raters, cases)


def parse_raters(entries: Iterable[str]) -> list[tuple[str, str | None]]:
    """Rater entries ("dr_a" or "dr_a <a@clinic.org>") -> [(name, identity or None)], blank entries skipped.
    StudyError for an entry that is not of either form, a duplicate name or identity, or no rater at all."""
    raters: list[tuple[str, str | None]] = []
    for entry in entries:
        if not entry.strip():
            continue
        match = _RATER.match(entry)
        if match is None or not match["name"]:
            raise StudyError(f"rater {entry.strip()!r} is not of the form 'name' or 'name <email>' "
                             "(an identity needs a name before it)")
        raters.append((match["name"], match["identity"]))
    if not raters:
        raise StudyError("raters: give at least one rater name")
    for position, what in ((0, "name"), (1, "identity")):
        seen = [r[position] for r in raters if r[position] is not None]
        twice = sorted({v for v in seen if seen.count(v) > 1})
        if twice:
            raise StudyError(f"raters: the {what} {', '.join(map(repr, twice))} is given more than once")
    return raters


def add_raters_identities(store: StudyStore, study: str, raters: Sequence[tuple[str, str | None]]) -> None:
    """Bind each rater given as "name <email>" to that identity (create_study takes names only)."""
    for name, identity in raters:
        if identity is not None:
            store.bind_identity(study, name, identity)


def read_model_config(checkpoint_dir: str | Path) -> ModelConfig:
    """A checkpoint's config.json as a ModelConfig, without loading its weights."""
    path = Path(checkpoint_dir) / CONFIG_JSON
    if not path.is_file():
        raise StudyError(f"{path} not found: the checkpoint folder needs its {CONFIG_JSON}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StudyError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    raw.pop("format_version", None)
    try:
        return ModelConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise StudyError(f"{path}: {err}") from None


def _check_cohort_fits(cohort, config: ModelConfig, cohort_dir, checkpoint_dir) -> None:
    """The cohort must be of the model's task: same outcome, same modalities in the same order, same classes."""
    where = f"cohort {cohort_dir} and checkpoint {checkpoint_dir}"
    if cohort.outcome != config.outcome:
        raise StudyError(f"{where} do not match: the cohort's outcome is {cohort.outcome}, the model's "
                         f"{config.outcome}")
    if tuple(cohort.modality_names) != tuple(config.modality_names):
        raise StudyError(f"{where} do not match: the cohort's modalities are {', '.join(cohort.modality_names)}, "
                         f"the model's {', '.join(config.modality_names)} (same names, same order needed)")
    if config.outcome == "classification" and tuple(cohort.classes) != tuple(config.classes):
        raise StudyError(f"{where} do not match: the cohort's classes are {', '.join(cohort.classes)}, the "
                         f"model's {', '.join(config.classes)}")
