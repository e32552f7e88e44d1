"""Reading and checking ``cohort.csv`` against a cohort's declaration (used by :mod:`neurofusion.data.cohort`):
cohort.json's modalities and outcome, the case table, per-modality files kept inside the cohort folder,
``has_<modality>`` flags, tabular columns assigned to tabular modalities, survival time and event. Every
error is a CohortError naming the file, line and column."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurofusion.data._tables import MISSING_TOKENS, fail_rows, parse_numbers, read_csv_table
from neurofusion.data.errors import CohortError
from neurofusion.data.features import FeatureSpec
from neurofusion.data.formats import IMAGE_SUFFIXES, SIGNAL_SUFFIXES
from neurofusion.data.modalities import ModalityError, ModalitySpec, modalities_from_dicts, of_kind
from neurofusion.data.schema import SPLITS
from neurofusion.data.tasks import OUTCOMES, TASKS, task_modalities

COHORT_CSV = "cohort.csv"
COHORT_JSON = "cohort.json"
FEATURES_CSV = "features.csv"
RANKINGS_CSV = "clinician_rankings.csv"
GROUND_TRUTH_CSV = "ground_truth.csv"
REQUIRED_COLUMNS = ("case_id", "split", "label")
SURVIVAL_COLUMNS = ("time", "event")
# The file suffixes each file-backed kind accepts.
KIND_SUFFIXES: dict[str, tuple[str, ...]] = {"image": IMAGE_SUFFIXES, "signal": SIGNAL_SUFFIXES, "text": (".txt",)}


def reserved_columns(modalities: Sequence[ModalitySpec], outcome: str = "classification") -> frozenset[str]:
    """cohort.csv columns that are not tabular values under a declaration."""
    columns = {"case_id", "split", "label", "site"} | {m.presence_column for m in modalities}
    columns |= {m.file_column for m in modalities if m.file_column}
    return frozenset(columns | (set(SURVIVAL_COLUMNS) if outcome == "survival" else set()))


RESERVED_COLUMNS = reserved_columns(task_modalities("cardio"))  # cardio's
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE, _FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n", ""}


def _read_csv(path: Path) -> pd.DataFrame:
    return read_csv_table(
        path, ("case_id", "split"), absent_message=f"{COHORT_CSV} not found: every cohort folder needs one row per case"
    )


def declared_modalities(info: dict, path: Path) -> tuple[ModalitySpec, ...]:
    """The modalities cohort.json declares (``"modalities": [...]``), else its task's (cardio's by default)."""
    if "modalities" not in info:
        return task_modalities(info.get("task"))
    try:
        return modalities_from_dicts(info["modalities"])
    except ModalityError as err:
        raise CohortError(str(err), path=path, field="modalities") from None


def _declared_outcome(info: dict, path: Path) -> str | None:
    """The outcome cohort.json names, else its known task's, else None."""
    if "outcome" in info:
        if info["outcome"] not in OUTCOMES:
            raise CohortError(f"'outcome' must be one of {', '.join(OUTCOMES)}, got {info['outcome']!r}",
                              path=path, field="outcome")
        return info["outcome"]
    return TASKS[info["task"]].outcome if info.get("task") in TASKS else None


def cohort_outcome(info: dict, table: pd.DataFrame, info_path: Path) -> str:
    """"classification" or "survival": as cohort.json or its task says, else from the columns (``time`` and
    ``event`` without ``label`` is survival); the outcome's columns must be there."""
    outcome = _declared_outcome(info, info_path)
    if outcome is None:
        survival = set(SURVIVAL_COLUMNS) <= set(table.columns) and "label" not in table.columns
        outcome = "survival" if survival else "classification"
    required = SURVIVAL_COLUMNS if outcome == "survival" else ("label",)
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise CohortError(
            f"required column(s) {', '.join(missing)} missing: a {outcome} cohort needs "
            f"{' and '.join(required)} (found: {', '.join(table.columns)})",
            path=info_path.with_name(COHORT_CSV), field=missing[0])
    return outcome


def _read_info(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CohortError(f"not valid JSON ({err})", path=path) from None
    if not isinstance(info, dict):
        raise CohortError("must hold a JSON object", path=path)
    return info


def _classes(info: dict, table: pd.DataFrame, path: Path) -> tuple[str, ...]:
    """Class names from cohort.json, else from its known task, else the sorted labels present."""
    if "classes" in info:
        classes = info["classes"]
        if not (isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)):
            raise CohortError("'classes' must be a non-empty list of names", path=path.with_name(COHORT_JSON))
        return tuple(classes)
    if info.get("task") in TASKS:
        return TASKS[info["task"]].classes
    labels = table["label"]
    if (labels == "").any():
        line = int(np.flatnonzero(labels == "")[0]) + 2
        raise CohortError("label is empty", path=path, line=line, field="label")
    return tuple(sorted(labels.unique()))


def _validate_table(
    table: pd.DataFrame, root: Path, classes: tuple[str, ...], declared: dict[str, FeatureSpec] | None,
    modalities: tuple[ModalitySpec, ...], outcome: str,
) -> tuple[pd.DataFrame, dict[str, FeatureSpec], list[str], dict[str, list[str]]]:
    path = root / COHORT_CSV
    ids = table["case_id"]
    fail_rows(~ids.str.match(_CASE_ID), table, path, "case_id",
               lambda v: f"case_id {v!r} must start with a letter or digit and hold only letters, digits, '.', '_' or '-'")
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        first = ids[duplicated].iloc[0]
        lines = [str(i + 2) for i in np.flatnonzero((ids == first).to_numpy())]
        raise CohortError(
            f"duplicate case_id '{first}' on lines {', '.join(lines)} ({int(duplicated.sum())} rows share ids)",
            path=path,
            field="case_id",
        )
    fail_rows(~table["split"].isin(SPLITS), table, path, "split",
               lambda v: f"unknown split {v!r}; expected one of {', '.join(SPLITS)}")
    out = pd.DataFrame({"case_id": ids, "split": table["split"]})
    if outcome == "survival":
        out["label"] = ""
        out["time"], out["event"] = _survival_columns(table, path)
    else:
        fail_rows(~table["label"].isin(classes), table, path, "label",
                   lambda v: f"unknown label {v!r}; expected one of {', '.join(classes)}")
        out["label"] = table["label"]
    out["site"] = table["site"] if "site" in table.columns else ""
    scanned = _existing_files(root)
    for spec in modalities:
        if spec.file_backed:
            files = _modality_files(table, root, scanned, spec)
            out[spec.file_column] = files
            out[spec.presence_column] = _presence(table, files != "", spec.name, "file", path)

    features, extra = _tabular_features(table, declared, path, reserved_columns(modalities, outcome))
    assigned = assign_features(features, modalities, root / FEATURES_CSV)
    for name, spec in features.items():
        out[name] = _parse_feature(table, spec, path)
    for spec in of_kind(modalities, "tabular"):
        columns = assigned[spec.name]
        has_values = out[columns].notna().any(axis=1) if columns else pd.Series(False, index=out.index)
        out[spec.presence_column] = _presence(table, has_values, spec.name, "values", path)
    return out.reset_index(drop=True), features, extra, assigned


def _survival_columns(table: pd.DataFrame, path: Path) -> tuple[pd.Series, pd.Series]:
    """``time`` (a number >= 0) and ``event`` (0 or 1) of every row, with row-numbered errors."""
    time = parse_numbers(table, "time", path, what="time")
    fail_rows(time.isna(), table, path, "time",
              lambda v: "time is empty; every case of a survival cohort needs its follow-up time")
    fail_rows(time < 0, table, path, "time", lambda v: f"time {v!r} is negative; follow-up time must be >= 0")
    event = table["event"].str.lower()
    fail_rows(~event.isin({"0", "1", "0.0", "1.0"}), table, path, "event",
              lambda v: f"event must be 1 (the event happened) or 0 (censored), got {v!r}")
    return time, event.map(lambda v: int(float(v)))


def assign_features(features: dict[str, FeatureSpec], modalities: Sequence[ModalitySpec],
                    path: Path) -> dict[str, list[str]]:
    """{tabular modality: its feature names, in column order}. A feature names its modality in
    features.csv's ``modality`` column; "" belongs to the only tabular modality, and is an error when two
    or more are declared (CohortError naming the column)."""
    tabular = [m.name for m in of_kind(modalities, "tabular")]
    assigned: dict[str, list[str]] = {name: [] for name in tabular}
    for feature in features.values():
        if feature.modality and feature.modality not in assigned:
            raise CohortError(
                f"column '{feature.name}' names modality {feature.modality!r}, which is not a declared tabular "
                f"modality ({', '.join(tabular) or 'none is declared'})", path=path, field="modality")
        if feature.modality:
            assigned[feature.modality].append(feature.name)
        elif len(tabular) == 1:
            assigned[tabular[0]].append(feature.name)
        elif tabular:
            raise CohortError(
                f"column '{feature.name}' belongs to no tabular modality: with {len(tabular)} declared "
                f"({', '.join(tabular)}), name one in the '{FEATURES_CSV}' column 'modality' for every column",
                path=path, field="modality")
    return assigned


@dataclass(frozen=True)
class _Folder:
    """One walk of the cohort folder: every file (posix paths relative to it, symbolic links to files included)
    and every symbolic link in it (to a file or a folder; a linked folder is not walked into)."""

    files: frozenset[str]
    links: frozenset[str]


def _existing_files(root: Path) -> _Folder:
    """The cohort folder's files and links (one walk, not one stat per case)."""
    files, links = set(), set()
    stack = [("", os.fspath(root))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_symlink():
                    links.add(rel)
                if entry.is_dir():  # follows links, as os.walk sorts a linked folder among the folders
                    if not entry.is_symlink():
                        stack.append((rel + "/", entry.path))
                else:
                    files.add(rel)
    return _Folder(frozenset(files), frozenset(links))


def _modality_files(table: pd.DataFrame, root: Path, scanned: _Folder, spec: ModalitySpec) -> pd.Series:
    path = root / COHORT_CSV
    modality, folder, column, suffixes = spec.name, spec.folder, spec.file_column, KIND_SUFFIXES[spec.kind]
    if column in table.columns:
        files = table[column].str.replace("\\", "/", regex=False)
        _check_inside(files, table, root, scanned.links, spec)
        bad_suffix = (files != "") & ~files.str.lower().str.endswith(suffixes)
        fail_rows(bad_suffix, table, path, column,
                   lambda v: f"{modality} file {v!r} must end in {' or '.join(suffixes)}")
        absent = (files != "") & ~files.map(lambda f: f in scanned.files or (root / f).is_file())
        fail_rows(absent, table, path, column, lambda v: f"{modality} file {v!r} is referenced but does not exist")
        return files
    # No file column: look the case id up in the modality's default folder.
    by_id = {}
    for rel in scanned.files:
        parent, _, name = rel.rpartition("/")
        stem, dot, suffix = name.rpartition(".")
        if parent == folder and dot and f".{suffix.lower()}" in suffixes:
            by_id.setdefault(stem, rel)
    files = table["case_id"].map(lambda case_id: by_id.get(case_id, ""))
    inside = _inside(root, scanned.links)
    outside = files.map(lambda f: f != "" and not inside(f))
    if outside.any():
        rel = files[outside].iloc[0]
        raise CohortError(
            f"{modality} file is a link to {os.path.realpath(root / rel)}, outside the cohort folder; "
            "copy the file into the folder",
            path=root / rel,
        )
    return files


def _check_inside(files: pd.Series, table: pd.DataFrame, root: Path, links: frozenset[str],
                  spec: ModalitySpec) -> None:
    """Files named in cohort.csv must lie inside the cohort folder: an absolute path, '..' or a symbolic
    link out of the folder would let a shared cohort read any file on the machine."""
    path = root / COHORT_CSV
    modality, column = spec.name, spec.file_column
    given = files != ""
    absolute = given & files.str.match(r"/|[A-Za-z]:")
    fail_rows(absolute, table, path, column,
              lambda v: f"{modality} file {v!r} is an absolute path; give it relative to the cohort folder "
                        f"(e.g. {spec.folder}/<case_id>{KIND_SUFFIXES[spec.kind][0]})")
    parent = given & files.str.contains(r"(?:^|/)\.\.(?:/|$)", regex=True)  # a '..' part of the path
    fail_rows(parent, table, path, column,
              lambda v: f"{modality} file {v!r} contains '..'; files must lie inside the cohort folder")
    outside = pd.Series(False, index=files.index)
    inside = _inside(root, links)
    outside[given] = files[given].map(lambda f: not inside(f))
    fail_rows(outside, table, path, column,
              lambda v: f"{modality} file {v!r} resolves to {os.path.realpath(root / v.replace(chr(92), '/'))}, "
                        "outside the cohort folder (a symbolic link?); copy the file into the folder")


def _inside(root: Path, links: frozenset[str]) -> Callable[[str], bool]:
    """rel -> whether root/rel, links resolved, lies inside root. Only a symbolic link (or an absolute path or
    '..') can lead out of the folder, so a path with none of these on its way is inside without asking the file
    system; the others are resolved (the root once, not per file)."""
    real_root = os.path.realpath(root)
    prefix = real_root.rstrip(os.sep) + os.sep

    def inside(rel: str) -> bool:
        parts = rel.split("/")
        if not (rel.startswith("/") or ".." in parts or ":" in parts[0]
                or any("/".join(parts[:n]) in links for n in range(1, len(parts) + 1))):
            return True
        real = os.path.realpath(os.path.join(root, rel))
        return real == real_root or real.startswith(prefix)

    return inside


def _presence(table: pd.DataFrame, found: pd.Series, modality: str, what: str, path: Path) -> pd.Series:
    """The has_<modality> flag when given (checked against the files/values found), else what was found."""
    column = f"has_{modality}"
    if column not in table.columns:
        return found.astype(bool)
    flags = table[column].str.lower()
    fail_rows(~flags.isin(_TRUE | _FALSE), table, path, column,
               lambda v: f"{column} must be 1/0 (or true/false), got {v!r}")
    flag = flags.isin(_TRUE)
    fail_rows(flag & ~found, table, path, column,
               lambda v: f"{column} is 1 but the case has no {modality} {what}")
    fail_rows(~flag & found, table, path, column,
               lambda v: f"{column} is 0 but the case has {modality} {what}; fix the flag or remove the data")
    return flag


def _tabular_features(
    table: pd.DataFrame, declared: dict[str, FeatureSpec] | None, path: Path, reserved: frozenset[str]
) -> tuple[dict[str, FeatureSpec], list[str]]:
    """The tabular features (in cohort.csv column order) and the extra columns left unread.

    Without features.csv every other column is a numeric feature. With it, it is the authority: a column
    it does not describe is listed and ignored, not guessed to be numeric (one such column used to fail the
    whole cohort with a misleading has_tabular message)."""
    columns = [c for c in table.columns if c not in reserved]
    if declared is None:
        return {c: FeatureSpec(name=c) for c in columns}, []
    absent = [name for name in declared if name not in table.columns]
    if absent:
        raise CohortError(
            f"{FEATURES_CSV} describes column(s) {', '.join(absent)} that {COHORT_CSV} does not have",
            path=path.with_name(FEATURES_CSV),
        )
    return {c: declared[c] for c in columns if c in declared}, [c for c in columns if c not in declared]


def _parse_feature(table: pd.DataFrame, spec: FeatureSpec, path: Path) -> pd.Series:
    raw = table[spec.name]
    missing = raw.str.lower().isin(MISSING_TOKENS)
    if spec.kind == "categorical":
        fail_rows(~missing & ~raw.isin(spec.categories), table, path, spec.name,
                   lambda v: f"{v!r} is not one of the categories {', '.join(spec.categories)}")
        return raw.where(~missing, None)
    return parse_numbers(table, spec.name, path)


def _cell_value(value):
    """A table cell as a Case tabular value: str / None for categorical, float (NaN = missing) for numeric."""
    return value if value is None or isinstance(value, str) else float(value)
