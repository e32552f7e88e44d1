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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from neurofusion.data._cohort_table import (  # the file names and columns are re-exported from here
    _CASE_ID,
    COHORT_CSV,
    COHORT_JSON,
    FEATURES_CSV,
    GROUND_TRUTH_CSV,
    KIND_SUFFIXES,
    RANKINGS_CSV,
    REQUIRED_COLUMNS,
    RESERVED_COLUMNS,
    SURVIVAL_COLUMNS,
    _cell_value,
    _classes,
    _declared_outcome,
    _read_csv,
    _read_info,
    _validate_table,
    assign_features,
    cohort_outcome,
    declared_modalities,
    reserved_columns,
)
from neurofusion.data._tables import MISSING_TOKENS
from neurofusion.data.errors import CohortError
from neurofusion.data.features import FeatureSpec, read_features, write_features
from neurofusion.data.formats import read_image, read_note, read_signal, write_dicom_image, write_note, write_png, write_wfdb
from neurofusion.data.modalities import ModalitySpec
from neurofusion.data.schema import SPLITS, Case, lead_issues

__all__ = [
    "COHORT_CSV", "COHORT_JSON", "FEATURES_CSV", "GROUND_TRUTH_CSV", "KIND_SUFFIXES", "RANKINGS_CSV",
    "REQUIRED_COLUMNS", "RESERVED_COLUMNS", "SURVIVAL_COLUMNS", "CaseSequence", "CohortCheck", "CohortReader", "assign_features",
    "atomic_write_csv", "check_cohort", "cohort_outcome", "cohort_summary", "declared_modalities",
    "extra_columns_message", "reserved_columns", "validate_cohort", "write_case_files", "write_cohort_tables",
]

# The file a writer gives each kind (images: see write_case_files' image_format).
_WRITTEN_SUFFIX = {"signal": ".hea", "text": ".txt"}
# File columns are written in this kind order (cardio's cohort.csv: image_file, signal_file, note_file).
_FILE_COLUMN_ORDER = ("image", "signal", "text")


class CaseSequence(Sequence[Case]):
    """The sequence API every cohort reader shares (``reader[i]``, ``reader["CV-00012"]``, ``ids(split)``, ...),
    over ``self.table`` (one row per case: case_id, split, has_<modality>, ...), ``self._position`` ({case_id:
    row}) and ``self.load(i or case_id)``, which a reader defines."""

    table: pd.DataFrame
    modalities: tuple[ModalitySpec, ...]
    features: dict[str, FeatureSpec]
    root: Path
    _position: dict[str, int]
    _missing = "case {case_id!r} is not in cohort {root}"  # the KeyError of position(); a reader may say more

    def load(self, key: int | str) -> Case:
        raise NotImplementedError

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

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

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
            raise KeyError(self._missing.format(case_id=case_id, root=self.root)) from None

    def availability(self) -> pd.DataFrame:
        """(n_cases, M) booleans: which declared modalities each case has, indexed by case_id."""
        frame = self.table.set_index("case_id")[[m.presence_column for m in self.modalities]]
        return frame.rename(columns=lambda c: c.removeprefix("has_"))


class CohortReader(CaseSequence):
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
                values[spec.name] = read_image(file, colour=spec.colour, notes=issues)
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
