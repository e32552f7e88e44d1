"""Read and write a cohort folder: ``cohort.csv`` plus one file per case and file-backed modality.

Layout (all but ``cohort.csv`` optional), shown for cardio's declared modalities::

    cohort.csv               case_id, split, label (or time, event), site, [image_file, signal_file,
                             note_file], [has_image, has_text, has_signal, has_tabular], tabular columns...
    cohort.json              task, classes, [outcome], [modalities], provenance (e.g. generator and seed)
    features.csv             kind / unit / reference range [/ modality] of each tabular column
    images/   <id>.png | <id>.dcm        signals/  <id>.hea + <id>.dat | <id>.dcm
    notes/    <id>.txt                   clinician_rankings.csv, ground_truth.csv

The modalities are those ``cohort.json`` declares (``"modalities": [{name, kind, ...}]``), else its task's
(cardio's four when it names none): each file-backed modality has a folder and a ``*_file`` column, each
modality a ``has_<name>`` column; with two or more tabular modalities ``features.csv`` says which columns
belong to which (its ``modality`` column). A survival cohort (``"outcome": "survival"``, or a task whose
outcome is survival) has ``time`` (>= 0) and ``event`` (0/1) instead of ``label``.

Without ``*_file`` columns, files are found by case id in each modality's folder. Opening
a cohort checks the table and that every referenced file exists and lies inside the cohort folder; file
*contents* are read only when a case is accessed (``validate_cohort`` reads them all), so a 20,000-case
cohort opens in about a second. With a ``features.csv``, columns it does not describe are listed in
``extra_columns`` and ignored rather than guessed at.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from neurofusion.data.errors import CohortError
from neurofusion.data._tables import MISSING_TOKENS, fail_rows, parse_numbers, read_csv_table
from neurofusion.data.features import FeatureSpec, read_features, write_features
from neurofusion.data.formats import (
    IMAGE_SUFFIXES,
    SIGNAL_SUFFIXES,
    read_image,
    read_note,
    read_signal,
    write_dicom_image,
    write_note,
    write_png,
    write_wfdb,
)
from neurofusion.data.modalities import ModalityError, ModalitySpec, modalities_from_dicts, of_kind
from neurofusion.data.schema import SPLITS, Case, lead_issues
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
# The file a writer gives each kind (images: see write_case_files' image_format).
_WRITTEN_SUFFIX = {"signal": ".hea", "text": ".txt"}
# File columns are written in this kind order (cardio's cohort.csv: image_file, signal_file, note_file).
_FILE_COLUMN_ORDER = ("image", "signal", "text")


def reserved_columns(modalities: Sequence[ModalitySpec], outcome: str = "classification") -> frozenset[str]:
    """cohort.csv columns that are not tabular values under a declaration."""
    columns = {"case_id", "split", "label", "site"} | {m.presence_column for m in modalities}
    columns |= {m.file_column for m in modalities if m.file_column}
    return frozenset(columns | (set(SURVIVAL_COLUMNS) if outcome == "survival" else set()))


RESERVED_COLUMNS = reserved_columns(task_modalities("cardio"))  # cardio's
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE, _FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n", ""}


class CohortReader(Sequence[Case]):
    """A cohort folder opened for reading. ``reader[i]`` or ``reader["CV-00012"]`` loads one case.

    Attributes: ``modalities`` (the declared ModalitySpecs), ``outcome`` ("classification" or
    "survival"), ``table`` (one validated row per case, with resolved relative file paths, a boolean
    ``has_<modality>`` column per modality and, for survival, ``time`` and ``event``), ``classes`` (empty
    for survival), ``features`` ({name: FeatureSpec} for every tabular column), ``tabular_features``
    ({tabular modality: its column names}), ``extra_columns`` (cohort.csv columns that features.csv does
    not describe: not read), ``info`` (cohort.json, or {}).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CohortError("cohort folder not found", path=self.root)
        self.info = _read_info(self.root / COHORT_JSON)
        self.modalities = declared_modalities(self.info, self.root / COHORT_JSON)
        raw = _read_csv(self.root / COHORT_CSV)
        self.outcome = cohort_outcome(self.info, raw, self.root / COHORT_JSON)
        features_path = self.root / FEATURES_CSV
        declared = read_features(features_path) if features_path.is_file() else None
        self.classes = _classes(self.info, raw, self.root / COHORT_CSV) if self.outcome == "classification" else ()
        self.table, self.features, self.extra_columns, self.tabular_features = _validate_table(
            raw, self.root, self.classes, declared, self.modalities, self.outcome)
        self._extra_values = raw[self.extra_columns].reset_index(drop=True)
        self._position = {case_id: i for i, case_id in enumerate(self.table["case_id"])}

    # ----------------------------------------------------------------------------------- sequence API
    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key):  # int | str | slice
        if isinstance(key, slice):
            return [self.load(i) for i in range(*key.indices(len(self)))]
        return self.load(key)

    def __iter__(self) -> Iterator[Case]:
        return (self.load(i) for i in range(len(self)))

    @property
    def case_ids(self) -> list[str]:
        return self.table["case_id"].tolist()

    @property
    def tabular_columns(self) -> list[str]:
        return list(self.features)

    def ids(self, split: str | None = None) -> list[str]:
        """Case ids, optionally of one split."""
        if split is None:
            return self.case_ids
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.table.loc[self.table["split"] == split, "case_id"].tolist()

    def position(self, case_id: str) -> int:
        try:
            return self._position[case_id]
        except KeyError:
            raise KeyError(f"case {case_id!r} is not in cohort {self.root}") from None

    def load(self, key: int | str) -> Case:
        """Read one case's files. Raises CohortError naming the file if one is unreadable.

        What the case's files hold but cannot be used as given (channels that name no ECG lead) is listed
        in ``case.issues``; ``case.meta`` says where the case came from (``cohort_csv``, ``cohort_line``,
        ``signal_file``) and which ignored columns had values for it (``ignored_columns``)."""
        i = self.position(key) if isinstance(key, str) else int(key)
        row = self.table.iloc[i]
        meta: dict = {"cohort_csv": str(self.root / COHORT_CSV), "cohort_line": i + 2}
        issues: list[str] = []
        values: dict[str, object] = {}
        for spec in self.modalities:
            if not row[spec.presence_column]:
                continue
            if spec.kind == "tabular":
                values[spec.name] = {name: _cell_value(row[name]) for name in self.tabular_features[spec.name]}
                continue
            file = self.root / row[spec.file_column]
            if spec.kind == "image":
                values[spec.name] = read_image(file, colour=spec.colour)
            elif spec.kind == "text":
                values[spec.name] = read_note(file)
            else:
                meta[spec.file_column] = str(file)
                values[spec.name] = read_signal(file)
                issues += lead_issues(values[spec.name], where=str(file))
        ignored = {c: v for c, v in self._extra_values.iloc[i].items() if v.lower() not in MISSING_TOKENS}
        if ignored:
            meta["ignored_columns"] = ignored
        outcome = None
        if self.outcome == "survival":
            outcome = {"time": float(row["time"]), "event": int(row["event"])}
        return Case.from_values(row["case_id"], row["label"], row["split"], values, self.modalities,
                                site=row["site"], meta=meta, issues=issues, outcome=outcome)

    # ------------------------------------------------------------------------------------ annotations
    def rankings(self) -> pd.DataFrame | None:
        """The validated clinician rankings, or None when the cohort has none."""
        from neurofusion.data.annotations import read_rankings

        path = self.root / RANKINGS_CSV
        return read_rankings(path, cohort=self) if path.is_file() else None

    def ground_truth(self) -> pd.DataFrame | None:
        """The synthetic per-case evidence strengths, or None for a real cohort."""
        from neurofusion.data.annotations import read_ground_truth

        path = self.root / GROUND_TRUTH_CSV
        return read_ground_truth(path, cohort=self) if path.is_file() else None

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def availability(self) -> pd.DataFrame:
        """(n_cases, M) booleans: which declared modalities each case has, indexed by case_id."""
        frame = self.table.set_index("case_id")[[m.presence_column for m in self.modalities]]
        return frame.rename(columns=lambda c: c.removeprefix("has_"))


@dataclass
class CohortCheck:
    """What reading a whole cohort found. errors: what stops a file or table being read. warnings: what
    was read but cannot be used as given (ignored columns, ECG channels that name no lead), one sentence
    each naming the file. reader: the opened cohort, or None when it could not be opened."""

    errors: list[CohortError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reader: CohortReader | None = None


def check_cohort(root: str | Path, on_case: Callable[[Case], None] | None = None) -> CohortCheck:
    """Open the cohort and read every file of every case, collecting every error and warning.

    ``on_case`` sees each case that loads (e.g. to gather an input report against a model) while only
    one case is held in memory at a time."""
    check = CohortCheck()
    try:
        reader = check.reader = CohortReader(root)
    except CohortError as err:
        check.errors.append(err)
        return check
    if reader.extra_columns:
        check.warnings.append(extra_columns_message(reader))
    for i in range(len(reader)):
        try:
            case = reader.load(i)
        except CohortError as err:
            check.errors.append(err)
            continue
        check.warnings += [f"case {case.case_id}: {issue}" for issue in case.issues]
        if on_case is not None:
            on_case(case)
    for loader in (reader.rankings, reader.ground_truth):
        try:
            loader()
        except CohortError as err:
            check.errors.append(err)
    return check


def validate_cohort(root: str | Path) -> list[CohortError]:
    """Open the cohort and read every file of every case; return all problems found (empty = valid).
    :func:`check_cohort` also returns the warnings."""
    return check_cohort(root).errors


def extra_columns_message(reader: CohortReader) -> str:
    names = ", ".join(repr(c) for c in reader.extra_columns)
    return (f"{reader.root / COHORT_CSV}: column(s) {names} are not described in {FEATURES_CSV} and are "
            f"ignored; describe them in {FEATURES_CSV} to use them")


# ------------------------------------------------------------------------------------------------ writer
def write_case_files(
    root: str | Path, case: Case, *, image_format: str = "png8", signal_format: str = "16"
) -> dict[str, object]:
    """Write one case's files (one per file-backed declared modality) under ``root``; return its
    ``cohort.csv`` row.

    image_format: "png8", "png16" or "dicom" (a colour image is always 8-bit RGB PNG). signal_format:
    WFDB "16" or "212".
    """
    root = Path(root)
    if not _CASE_ID.match(case.case_id):
        raise ValueError(f"case_id {case.case_id!r} must be letters, digits, '.', '_' or '-'")
    if image_format not in ("png8", "png16", "dicom"):
        raise ValueError(f"image_format must be png8, png16 or dicom, got {image_format!r}")
    row: dict[str, object] = {"case_id": case.case_id, "split": case.split, "label": case.label, "site": case.site}
    if case.outcome is not None:
        row["time"], row["event"] = _format_value(float(case.outcome["time"])), int(case.outcome["event"])
    values = case.values
    for spec in case.modalities:
        value = values[spec.name]
        if spec.kind == "tabular":
            for name, cell in (value or {}).items():
                row[name] = _format_value(cell)
        elif value is None:
            row[spec.file_column] = ""
        else:
            row[spec.file_column] = _write_modality_file(root, spec, case.case_id, value, image_format, signal_format)
    for modality, present in case.available.items():
        row[f"has_{modality}"] = int(present)
    return row


def _write_modality_file(root: Path, spec: ModalitySpec, case_id: str, value, image_format: str,
                         signal_format: str) -> str:
    """Write one file-backed value into its modality's folder -> its path relative to ``root``."""
    suffix = _WRITTEN_SUFFIX.get(spec.kind, ".dcm" if image_format == "dicom" and not spec.colour else ".png")
    rel = f"{spec.folder}/{case_id}{suffix}"
    _ensure_dir(root / spec.folder)
    if spec.kind == "signal":
        write_wfdb(root / rel, value, fmt=signal_format)
    elif spec.kind == "text":
        write_note(root / rel, value)
    elif suffix == ".dcm":
        write_dicom_image(root / rel, value, patient_id=case_id)
    else:
        write_png(root / rel, value, bit_depth=8 if spec.colour else int(image_format[3:]))
    return rel


def write_cohort_tables(
    root: str | Path,
    rows: list[dict[str, object]],
    *,
    features: list[FeatureSpec],
    info: dict | None = None,
) -> None:
    """Write ``cohort.csv`` (atomically), ``features.csv`` and ``cohort.json`` for rows made by
    :func:`write_case_files`. The columns follow the modalities and outcome ``info`` declares (its
    ``modalities``, else its task's; cardio's by default)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    info_path = root / COHORT_JSON
    modalities = declared_modalities(info or {}, info_path)
    survival = _declared_outcome(info or {}, info_path) == "survival"
    head = ["case_id", "split"] + (list(SURVIVAL_COLUMNS) if survival else ["label"]) + ["site"]
    file_specs = sorted((m for m in modalities if m.file_backed), key=lambda m: _FILE_COLUMN_ORDER.index(m.kind))
    head += [m.file_column for m in file_specs]
    head += [m.presence_column for m in modalities]
    table = pd.DataFrame(rows, columns=head + [f.name for f in features]).fillna("")
    atomic_write_csv(table, root / COHORT_CSV)
    write_features(root / FEATURES_CSV, features)
    if info is not None:
        info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def atomic_write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written table."""
    tmp = path.with_name(path.name + ".tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _ensure_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _format_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# ----------------------------------------------------------------------------------------- validation
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
    existing = _existing_files(root)
    for spec in modalities:
        if spec.file_backed:
            files = _modality_files(table, root, existing, spec)
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


def _existing_files(root: Path) -> set[str]:
    """Every file under the cohort folder, as a posix path relative to it (one walk, not one stat per case)."""
    found = set()
    for dirpath, _, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        found.update(prefix + name for name in filenames)
    return found


def _modality_files(table: pd.DataFrame, root: Path, existing: set[str], spec: ModalitySpec) -> pd.Series:
    path = root / COHORT_CSV
    modality, folder, column, suffixes = spec.name, spec.folder, spec.file_column, KIND_SUFFIXES[spec.kind]
    if column in table.columns:
        files = table[column].str.replace("\\", "/", regex=False)
        _check_inside(files, table, root, spec)
        bad_suffix = (files != "") & ~files.str.lower().str.endswith(suffixes)
        fail_rows(bad_suffix, table, path, column,
                   lambda v: f"{modality} file {v!r} must end in {' or '.join(suffixes)}")
        absent = (files != "") & ~files.map(lambda f: f in existing or (root / f).is_file())
        fail_rows(absent, table, path, column, lambda v: f"{modality} file {v!r} is referenced but does not exist")
        return files
    # No file column: look the case id up in the modality's default folder.
    by_id = {}
    for rel in existing:
        parent, _, name = rel.rpartition("/")
        stem, dot, suffix = name.rpartition(".")
        if parent == folder and dot and f".{suffix.lower()}" in suffixes:
            by_id.setdefault(stem, rel)
    files = table["case_id"].map(lambda case_id: by_id.get(case_id, ""))
    inside = _inside(root)
    outside = files.map(lambda f: f != "" and not inside(f))
    if outside.any():
        rel = files[outside].iloc[0]
        raise CohortError(
            f"{modality} file is a link to {os.path.realpath(root / rel)}, outside the cohort folder; "
            "copy the file into the folder",
            path=root / rel,
        )
    return files


def _check_inside(files: pd.Series, table: pd.DataFrame, root: Path, spec: ModalitySpec) -> None:
    """Files named in cohort.csv must lie inside the cohort folder: an absolute path, '..' or a symbolic
    link out of the folder would let a shared cohort read any file on the machine."""
    path = root / COHORT_CSV
    modality, column = spec.name, spec.file_column
    given = files != ""
    absolute = given & files.map(lambda f: f.startswith("/") or bool(re.match(r"^[A-Za-z]:", f)))
    fail_rows(absolute, table, path, column,
              lambda v: f"{modality} file {v!r} is an absolute path; give it relative to the cohort folder "
                        f"(e.g. {spec.folder}/<case_id>{KIND_SUFFIXES[spec.kind][0]})")
    parent = given & files.map(lambda f: ".." in PurePosixPath(f).parts)
    fail_rows(parent, table, path, column,
              lambda v: f"{modality} file {v!r} contains '..'; files must lie inside the cohort folder")
    outside = pd.Series(False, index=files.index)
    inside = _inside(root)
    outside[given] = files[given].map(lambda f: not inside(f))
    fail_rows(outside, table, path, column,
              lambda v: f"{modality} file {v!r} resolves to {os.path.realpath(root / v.replace(chr(92), '/'))}, "
                        "outside the cohort folder (a symbolic link?); copy the file into the folder")


def _inside(root: Path) -> Callable[[str], bool]:
    """rel -> whether root/rel, links resolved, lies inside root (the root is resolved once, not per file)."""
    real_root = os.path.realpath(root)
    prefix = real_root.rstrip(os.sep) + os.sep

    def inside(rel: str) -> bool:
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


def cohort_summary(reader: CohortReader) -> dict:
    """Counts a user checks first: cases per split / class / site, modality coverage and missingness
    pattern (as in the paper's Table 1), annotations present."""
    table = reader.table
    avail = reader.availability()
    n_missing = (~avail).sum(axis=1)
    rankings = reader.rankings()
    summary = {
        "root": str(reader.root),
        "task": reader.info.get("task", ""),
        "synthetic": bool(reader.info.get("synthetic", False)),
        "cases": len(table),
        "splits": table["split"].value_counts().reindex(SPLITS, fill_value=0).to_dict(),
        "outcome": reader.outcome,
        "modalities": list(reader.modality_names),
        "classes": table["label"].value_counts().reindex(reader.classes, fill_value=0).to_dict(),
        "sites": table["site"].value_counts().sort_index().to_dict(),
        "modality_available_pct": (100 * avail.mean()).round(1).to_dict(),
        "complete_pct": round(100 * float((n_missing == 0).mean()), 1),
        "missing_one_pct": round(100 * float((n_missing == 1).mean()), 1),
        "missing_two_plus_pct": round(100 * float((n_missing >= 2).mean()), 1),
        "mean_modalities_per_case": round(float(avail.sum(axis=1).mean()), 2),
        "tabular_features": len(reader.features),
        "ranked_cases": 0 if rankings is None else int(rankings["case_id"].nunique()),
        "raters": [] if rankings is None else sorted(rankings["rater"].unique().tolist()),
        "ground_truth": (reader.root / GROUND_TRUTH_CSV).is_file(),
    }
    if reader.outcome == "survival":
        summary["events"] = int(table["event"].sum())
        summary["censored"] = int((table["event"] == 0).sum())
        summary["median_time"] = round(float(table["time"].median()), 2)
    return summary
