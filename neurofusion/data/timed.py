"""A time-stamped cohort (the ICU task) read as *samples*: one stay as of one hour.

The folder holds ``cohort.csv`` (one row per stay: case_id, split, site, stay_hours, died, demographic
columns), the long tables ``vitals.csv`` / ``labs.csv`` (case_id, time, variable, value, unit; ``.csv.gz``
too), ``notes.csv`` (case_id, time, text), ``variables.csv`` (:mod:`neurofusion.data.events`), optionally
``features.csv`` (the demographic columns' kinds and categories), ``cohort.json`` (``"task": "icu"``,
``prediction_hours``, ``horizon_hours``), ``ground_truth.csv`` (per stay) and ``clinician_rankings.csv`` (per
sample). Times are hours since admission.

**The task.** At hour t of a stay the model sees only what was recorded at or before t and predicts death
within the next ``horizon_hours`` (48): the label at t is "dies_within_48h" when the patient died and
``stay_hours - t <= 48``, else "survives_48h". A stay that has ended by t (``t >= stay_hours``) is not scored
at t. The cohort's samples are its stays at each of ``prediction_hours`` (0, 6, 12, 24, 36, 48 by default)
they reach; ``at(stay, t)`` gives the view at any other hour. A sample's id is ``"<stay>@<t>h"``.

**What the model reads at t** (:meth:`TimedCohortReader.at`):
- vitals: the last 48 h on a 5-minute grid ending at t (:func:`events.grid_of_streams`), each variable
  scaled by its plausible range from variables.csv (centre 0, range edges at +-1; carried forward between
  measurements, 0 before its first) plus one measured-mask channel per variable (1 where the step holds a
  measurement of its own): a ``Signal`` of 2V channels at 1/300 Hz, read by the signal encoder;
- labs: each lab's last value at or before t and its age in hours (last observation carried forward, not
  the paper's nearest-neighbour matching, which could reach past t), as tabular features ``<lab>`` and
  ``<lab>_age_h`` (missing when never measured by t);
- notes: the notes written at or before t, newest first (so truncation drops the oldest), each prefixed by
  how long before t it was written;
- demographics: the cohort.csv columns, known from admission.
A modality is present at t only when something of it was recorded by t (demographics: when the stay has
them). Nothing recorded after t is read: tests/neurofusion/test_timed.py changes every later row and checks
the prediction at t to the bit.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neurofusion.data._cohort_table import COHORT_CSV, COHORT_JSON, FEATURES_CSV, GROUND_TRUTH_CSV, RANKINGS_CSV
from neurofusion.data._cohort_table import _read_info, declared_modalities
from neurofusion.data._tables import MISSING_TOKENS, read_csv_table
from neurofusion.data.cohort import CaseSequence
from neurofusion.data.errors import CohortError
from neurofusion.data.events import EventVariable, grid_of_streams, read_events, read_notes, read_variables
from neurofusion.data.features import FeatureSpec, read_features
from neurofusion.data.schema import SPLITS, Case, Signal
from neurofusion.data.tasks import TASKS

DEFAULT_HOURS: tuple[float, ...] = (0.0, 6.0, 12.0, 24.0, 36.0, 48.0)
WINDOW_H = 48.0  # hours of vital signs the model sees before t
STEP_H = 5 / 60  # the vitals grid step (the paper's 5-minute vital signs)
VITALS_FS = 1 / (STEP_H * 3600)  # the grid as a sampling rate in Hz (one sample per 5 minutes)
ROLES = ("vitals", "labs", "notes", "demographics")  # the modality names a timed cohort declares
STAY_COLUMNS = ("case_id", "split", "site", "stay_hours", "died")
VARIABLES_CSV = "variables.csv"
AGE_SUFFIX = "_age_h"  # a lab's age feature: "<lab>_age_h", hours since its last value
NOTE_HEADER = re.compile(r"\[(\d+(?:\.\d+)?) h before\]")  # heads each note in the text the model reads
_MEASURED_SUFFIX = "_measured"


def is_timed(info: dict) -> bool:
    """Whether a cohort.json describes a time-stamped cohort (the ICU task, or ``"timed": true``)."""
    return info.get("task") == "icu" or bool(info.get("timed"))


def sample_id(stay_id: str, t: float) -> str:
    """The id of a stay as of hour t: ``ICU-00012@24h``, ``ICU-00012@6.5h``."""
    return f"{stay_id}@{float(t):g}h"


def parse_sample_id(case_id: str) -> tuple[str, float]:
    """``"ICU-00012@24h"`` -> ("ICU-00012", 24.0); ValueError naming the id otherwise."""
    stay, sep, hour = str(case_id).rpartition("@")
    try:
        t = float(hour.removesuffix("h")) if sep and hour.endswith("h") else math.nan
    except ValueError:
        t = math.nan
    if not stay or not math.isfinite(t):
        raise ValueError(f"{case_id!r} is not a sample id of a time-stamped cohort (expected '<stay>@<hour>h', "
                         "e.g. 'ICU-00012@24h')")
    return stay, t


def note_header(age_h: float) -> str:
    """The header of a note written ``age_h`` hours before the prediction hour ("[3.5 h before]"); NOTE_HEADER
    reads it back."""
    return f"[{age_h:.1f} h before]"


def vital_channels(variables: Sequence[str]) -> tuple[str, ...]:
    """The vitals signal's channels: each variable's scaled values, then each one's measured mask."""
    return tuple(variables) + tuple(f"{v}{_MEASURED_SUFFIX}" for v in variables)


class TimedCohortReader(CaseSequence):
    """A time-stamped cohort folder opened for reading (module docstring), with the sequence API of
    :class:`neurofusion.data.cohort.CohortReader` over its samples, so training, evaluation, explanations and
    the dashboard read it like any cohort.

    Attributes as CohortReader's (``root``, ``info``, ``modalities``, ``outcome`` = "classification",
    ``classes``, ``features``, ``tabular_features``, ``extra_columns``, ``table``: one row per sample with
    case_id, stay_id, hour, split, label, site and has_<modality>), plus ``stays`` (cohort.csv, one row per
    stay, indexed by case_id), ``hours`` (the prediction hours), ``horizon_h``, ``variables``
    ({name: EventVariable}), ``vital_variables`` / ``lab_variables`` (names in variables.csv order), the
    validated tables ``vitals``, ``labs`` (EventTable) and ``notes`` (DataFrame), and ``first_recorded``
    (stays x modalities: the first hour each was recorded, NaN if never; what "present at t" is read from).
    """

    timed = True
    _missing = ("sample {case_id!r} is not in cohort {root} (its samples are each stay at the prediction hours it "
                "reaches; a stay at any other hour: reader.at(stay, t))")

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CohortError("cohort folder not found", path=self.root)
        info_path = self.root / COHORT_JSON
        self.info = _read_info(info_path)
        if not is_timed(self.info):
            raise CohortError("not a time-stamped cohort: cohort.json must say \"task\": \"icu\" (or \"timed\": "
                              "true)", path=info_path, field="task")
        self.modalities = declared_modalities(self.info, info_path)
        names = tuple(m.name for m in self.modalities)
        if names != ROLES:
            raise CohortError(f"a time-stamped cohort declares the modalities {', '.join(ROLES)} in this order "
                              f"(vitals from vitals.csv, labs from labs.csv, notes from notes.csv, demographics "
                              f"from cohort.csv); this one declares {', '.join(names)}", path=info_path,
                              field="modalities")
        self.outcome = "classification"
        self.classes = tuple(self.info.get("classes", TASKS["icu"].classes))
        self.horizon_h = _positive(self.info.get("horizon_hours", 48.0), info_path, "horizon_hours")
        hours = self.info.get("prediction_hours", list(DEFAULT_HOURS))
        if not (isinstance(hours, list) and hours and all(isinstance(h, (int, float)) and h >= 0 for h in hours)):
            raise CohortError(f"'prediction_hours' must be a non-empty list of hours >= 0, got {hours!r}",
                              path=info_path, field="prediction_hours")
        self.hours = tuple(sorted(float(h) for h in hours))
        self.stays = _read_stays(self.root / COHORT_CSV)
        lengths = self.stays["stay_hours"].to_dict()
        self.variables = read_variables(self.root / VARIABLES_CSV)
        self.vital_variables = tuple(n for n, v in self.variables.items() if v.table == "vitals")
        self.lab_variables = tuple(n for n, v in self.variables.items() if v.table == "labs")
        self.table_files = tuple(table_file(self.root, spec.table) for spec in self.modalities if spec.table)
        self.vitals = read_events(table_file(self.root, "vitals.csv"), self.variables, lengths, "vitals")
        self.labs = read_events(table_file(self.root, "labs.csv"), self.variables, lengths, "labs")
        self.notes = read_notes(table_file(self.root, "notes.csv"), lengths)
        self._notes_by_stay = {stay: part for stay, part in self.notes.groupby("case_id", sort=False)}
        self._stream_cache: dict[tuple[str, str], dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        ranges = [self.variables[v] for v in self.vital_variables]
        self._centre = np.array([_centre(v) for v in ranges], dtype=np.float32)  # the vitals' scaling, (V,)
        self._half = np.array([_half_range(v) for v in ranges], dtype=np.float32)
        self.demographic_columns = [c for c in self.stays.columns if c not in STAY_COLUMNS]
        self.first_recorded = self._first_recorded()
        self.features = {**self._lab_features(), **self._demographic_features()}
        self.tabular_features = {
            "labs": [f.name for f in self.features.values() if f.modality == "labs"],
            "demographics": [f.name for f in self.features.values() if f.modality == "demographics"],
        }
        self.extra_columns: list[str] = []
        self.table = self._samples()
        self._position = {case_id: i for i, case_id in enumerate(self.table["case_id"])}

    @property
    def signal_layout(self) -> dict:
        """What the vitals signal looks like to a model: its channels, rate (Hz) and length (s)."""
        return {"leads": list(vital_channels(self.vital_variables)), "fs": VITALS_FS, "seconds": WINDOW_H * 3600}

    def stay_ids(self, split: str | None = None) -> list[str]:
        stays = self.stays if split is None else self.stays[self.stays["split"] == split]
        return stays.index.tolist()

    def load(self, key: int | str) -> Case:
        """A sample by position or id (``ICU-00012@24h``; any hour inside the stay is accepted)."""
        if isinstance(key, str):
            stay, t = parse_sample_id(key)
            return self.at(stay, t)
        row = self.table.iloc[int(key)]
        return self.at(row["stay_id"], float(row["hour"]))

    # ---------------------------------------------------------------------------------- one stay at t
    def label_at(self, stay_id: str, t: float) -> str:
        """The label at hour t (module docstring); ValueError when the stay has ended by t."""
        stay = self.stay(stay_id)
        if not 0 <= t < stay["stay_hours"]:
            raise ValueError(f"stay {stay_id} lasted {stay['stay_hours']:g} h: hour {t:g} is not inside it, so it "
                             f"is not scored (hours 0 to < {stay['stay_hours']:g})")
        dies = bool(stay["died"]) and stay["stay_hours"] - t <= self.horizon_h
        return self.classes[1] if dies else self.classes[0]

    def at(self, stay_id: str, t: float) -> Case:
        """The stay as the model sees it at hour ``t`` (module docstring): only rows recorded at or before t."""
        label = self.label_at(stay_id, t)
        stay = self.stay(stay_id)
        values: dict[str, object] = {}
        vitals = self._streams("vitals", stay_id)
        if any(np.searchsorted(times, t, side="right") for times, _ in vitals.values()):
            values["vitals"] = self.vitals_signal(stay_id, t)
        labs = self._streams("labs", stay_id)
        if any(np.searchsorted(times, t, side="right") for times, _ in labs.values()):
            values["labs"] = self.lab_values(stay_id, t)
        note = self.notes_text(stay_id, t)
        if note:
            values["notes"] = note
        demographics = {c: _cell(stay[c]) for c in self.demographic_columns}
        if any(v is not None for v in demographics.values()):
            values["demographics"] = demographics
        line = self.stays.index.get_loc(stay_id) + 2
        meta = {"cohort_csv": str(self.root / COHORT_CSV), "cohort_line": line, "stay_id": stay_id, "hour": float(t),
                "stay_hours": float(stay["stay_hours"]), "died": int(stay["died"])}
        return Case.from_values(sample_id(stay_id, t), label, stay["split"], values, self.modalities,
                                site=stay["site"], meta=meta)

    def vitals_signal(self, stay_id: str, t: float, *, recorded_until: float | None = None) -> Signal:
        """The (2V, 576) vitals signal at hour t (module docstring). recorded_until: only rows recorded by that
        hour (<= t) are used and the window still ends at t: what the model would read at t had nothing been
        recorded after it (the what-if "hide the last hours of vitals")."""
        streams = self._streams("vitals", stay_id)
        if recorded_until is not None:
            if recorded_until > t:
                raise ValueError(f"recorded_until ({recorded_until:g} h) must not be after the hour t ({t:g} h)")
            streams = {v: (times[:k], values[:k]) for v, (times, values) in streams.items()
                       for k in [int(np.searchsorted(times, recorded_until, side="right"))]}
        grid = grid_of_streams(streams, self.vital_variables, t, window_h=WINDOW_H, step_h=STEP_H)
        centre, half = self._centre, self._half
        seen_before = np.array([bool(np.searchsorted(streams.get(v, (np.zeros(0),))[0], grid.times[0] - STEP_H,
                                                     side="right")) for v in self.vital_variables])
        known = np.logical_or.accumulate(grid.measured, axis=1) | seen_before[:, None]
        scaled = np.where(known, (grid.values - centre[:, None]) / half[:, None], 0.0)
        data = np.concatenate([scaled, grid.measured.astype(np.float32)]).astype(np.float32)
        return Signal(data, VITALS_FS, vital_channels(self.vital_variables), units="scaled")

    def lab_values(self, stay_id: str, t: float) -> dict[str, float]:
        """{lab: last value at or before t, lab_age_h: its age in hours}; NaN for a lab not measured by t."""
        values: dict[str, float] = {}
        streams = self._streams("labs", stay_id)
        for lab in self.lab_variables:
            times, vals = streams.get(lab, (np.zeros(0), np.zeros(0)))
            k = int(np.searchsorted(times, t, side="right"))
            values[lab] = float(vals[k - 1]) if k else math.nan
            values[f"{lab}{AGE_SUFFIX}"] = float(t - times[k - 1]) if k else math.nan
        return values

    def notes_of(self, stay_id: str) -> pd.DataFrame:
        """The stay's notes (time, text) in time order."""
        part = self._notes_by_stay.get(stay_id)
        return self.notes.iloc[:0] if part is None else part

    def notes_text(self, stay_id: str, t: float) -> str | None:
        """The notes written at or before t, newest first, each headed by its age: the text the model reads."""
        return self.note_parts(stay_id, t)[0]

    def note_parts(self, stay_id: str, t: float, *, without: Sequence[int] = ()
                   ) -> tuple[str | None, list[tuple[int, int, int]]]:
        """The notes text at hour t (None when no note was written by t) and where each note lies in it:
        [(position in ``notes_of(stay)``, start, end)] newest first, ``text[start:end]`` its header and text.
        without: positions of notes left out (the what-if "remove a note")."""
        notes = self.notes_of(stay_id)
        times, texts = notes["time"].to_numpy(dtype=float), notes["text"].to_numpy()
        parts, pieces, start = [], [], 0
        for k in reversed(np.flatnonzero(times <= t).tolist()):  # newest first
            if k in without:
                continue
            piece = f"{note_header(t - times[k])} {texts[k]}"
            parts.append((int(k), start, start + len(piece)))
            pieces.append(piece)
            start += len(piece) + 1  # the newline between notes
        return ("\n".join(pieces) if pieces else None), parts

    def recorded_in_stay(self, stay_id: str) -> dict[str, bool]:
        """{modality: whether the stay records it at all} (a modality never recorded is missing at every hour;
        one not recorded *yet* appears later)."""
        self.stay(stay_id)  # a KeyError naming the cohort for an unknown stay
        return {m: bool(np.isfinite(self.first_recorded.loc[stay_id, m])) for m in ROLES}

    def events_of(self, stay_id: str, table: str, t: float | None = None) -> pd.DataFrame:
        """The stay's vitals or labs rows (time, variable, value), up to hour t when given: for display."""
        rows = (self.vitals if table == "vitals" else self.labs).of(stay_id)
        return rows if t is None else rows[rows["time"].to_numpy() <= t]

    # ------------------------------------------------------------------------------------ annotations
    def rankings(self) -> pd.DataFrame | None:
        from neurofusion.data.annotations import read_rankings

        path = self.root / RANKINGS_CSV
        return read_rankings(path, cohort=self) if path.is_file() else None

    def ground_truth(self) -> pd.DataFrame | None:
        """The synthetic per-stay ground truth (ground_truth.csv as written), indexed by stay; None if absent."""
        path = self.root / GROUND_TRUTH_CSV
        if not path.is_file():
            return None
        return pd.read_csv(path, dtype={"case_id": str}, keep_default_na=False).set_index("case_id")

    def data_hash(self) -> str:
        """SHA-256 over cohort.csv and the long tables: which data a checkpoint was trained on."""
        digest = hashlib.sha256((self.root / COHORT_CSV).read_bytes())
        for path in self.table_files:
            digest.update(path.read_bytes())
        return digest.hexdigest()

    # ---------------------------------------------------------------------------------------- helpers
    def stay(self, stay_id: str) -> pd.Series:
        """The stay's row of cohort.csv (split, site, stay_hours, died, demographics); KeyError naming the cohort."""
        try:
            return self.stays.loc[stay_id]
        except KeyError:
            raise KeyError(f"stay {stay_id!r} is not in cohort {self.root}") from None

    def _streams(self, table: str, stay_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{variable: (times ascending, values)} of one stay's vitals or labs, cached."""
        key = (table, stay_id)
        if key not in self._stream_cache:
            rows = (self.vitals if table == "vitals" else self.labs).of(stay_id)
            self._stream_cache[key] = {name: (part["time"].to_numpy(dtype=float), part["value"].to_numpy(dtype=float))
                                       for name, part in rows.groupby("variable", sort=False)}
        return self._stream_cache[key]

    def _first_recorded(self) -> pd.DataFrame:
        """(stays x modalities) the first hour anything of each modality was recorded, NaN if never
        (demographics: 0 when the stay has them, known from admission)."""
        first = pd.DataFrame(index=self.stays.index)
        for name, rows in (("vitals", self.vitals.rows), ("labs", self.labs.rows), ("notes", self.notes)):
            first[name] = rows.groupby("case_id")["time"].min().reindex(self.stays.index)
        known = (self.stays[self.demographic_columns].map(lambda v: _cell(v) is not None).any(axis=1)
                 if self.demographic_columns else pd.Series(False, index=self.stays.index))
        first["demographics"] = np.where(known, 0.0, np.nan)
        return first[list(ROLES)]

    def _samples(self) -> pd.DataFrame:
        """One row per (stay, prediction hour inside the stay), with its label and what is present."""
        first = self.first_recorded.to_dict("index")
        rows = []
        for stay_id, stay in self.stays.iterrows():
            for t in self.hours:
                if t >= stay["stay_hours"]:
                    continue
                row = {"case_id": sample_id(stay_id, t), "stay_id": stay_id, "hour": t, "split": stay["split"],
                       "label": self.label_at(stay_id, t), "site": stay["site"]}
                for name in ROLES:
                    row[f"has_{name}"] = bool(first[stay_id][name] <= t)  # NaN (never recorded) is not <= t
                rows.append(row)
        columns = ["case_id", "stay_id", "hour", "split", "label", "site", *(f"has_{m}" for m in ROLES)]
        return pd.DataFrame(rows, columns=columns)

    def _lab_features(self) -> dict[str, FeatureSpec]:
        features = {}
        for lab in self.lab_variables:
            v = self.variables[lab]
            features[lab] = FeatureSpec(lab, "numeric", v.unit, description=v.description or lab, modality="labs")
            features[f"{lab}{AGE_SUFFIX}"] = FeatureSpec(f"{lab}{AGE_SUFFIX}", "numeric", "h",
                                                          description=f"hours since the last {lab}",
                                                          modality="labs")
        return features

    def _demographic_features(self) -> dict[str, FeatureSpec]:
        """From features.csv when the folder has one, else numeric if every value parses, else categorical."""
        path = self.root / FEATURES_CSV
        declared = read_features(path) if path.is_file() else {}
        features = {}
        for column in self.demographic_columns:
            if column in declared:
                spec = declared[column]
                features[column] = FeatureSpec(spec.name, spec.kind, spec.unit, spec.ref_low, spec.ref_high,
                                               spec.categories, spec.description, "demographics")
                continue
            values = [v for v in self.stays[column] if _cell(v) is not None]
            numeric = all(_is_number(v) for v in values)
            categories = () if numeric else tuple(sorted(set(values)))
            features[column] = FeatureSpec(column, "numeric" if numeric else "categorical", categories=categories,
                                           modality="demographics")
        return features


def open_cohort(root: str | Path):
    """A cohort folder opened with the reader its cohort.json calls for: TimedCohortReader for a
    time-stamped (ICU) cohort, CohortReader otherwise."""
    from neurofusion.data.cohort import CohortReader

    info = _read_info(Path(root) / COHORT_JSON) if Path(root).is_dir() else {}
    return TimedCohortReader(root) if is_timed(info) else CohortReader(root)


def timed_summary(reader: TimedCohortReader) -> dict:
    """Counts a user checks first: stays per split, deaths, samples and prevalence per hour, and missingness
    per stay (a modality a stay never records) against the paper's Table 1 (72 % complete, 22 % missing one,
    6 % two or more)."""
    stays = reader.stays
    recorded = reader.first_recorded.notna()
    missing = (~recorded).sum(axis=1)
    by_hour = []
    for hour, part in reader.table.groupby("hour"):
        by_hour.append((f"{hour:g}", len(part), round(100 * float((part["label"] == reader.classes[1]).mean()), 1)))
    return {
        "root": str(reader.root), "task": reader.info.get("task", ""), "synthetic": bool(reader.info.get("synthetic")),
        "stays": len(stays), "samples": len(reader), "splits": stays["split"].value_counts().to_dict(),
        "died": int(stays["died"].sum()), "mortality_pct": round(100 * float(stays["died"].mean()), 1),
        "median_stay_h": round(float(stays["stay_hours"].median()), 1), "by_hour": by_hour,
        "stay_modality_pct": {m: round(100 * float(recorded[m].mean()), 1) for m in recorded},
        "stays_missing_pct": {"none": round(100 * float((missing == 0).mean()), 1),
                              "one": round(100 * float((missing == 1).mean()), 1),
                              "two or more": round(100 * float((missing >= 2).mean()), 1)},
    }


def _read_stays(path: Path) -> pd.DataFrame:
    table = read_csv_table(path, STAY_COLUMNS, absent_message=f"{COHORT_CSV} not found: one row per stay")
    seen: set[str] = set()
    for i, row in table.iterrows():
        line = int(i) + 2
        if not row["case_id"] or row["case_id"] in seen:
            what = "empty" if not row["case_id"] else f"{row['case_id']!r} appears twice"
            raise CohortError(f"case_id is {what}", path=path, line=line, field="case_id")
        seen.add(row["case_id"])
        if row["split"] not in SPLITS:
            raise CohortError(f"split must be one of {', '.join(SPLITS)}, got {row['split']!r}", path=path, line=line,
                              field="split", case_id=row["case_id"])
        if not _is_number(row["stay_hours"]) or float(row["stay_hours"]) <= 0:
            raise CohortError(f"stay_hours must be a positive number of hours, got {row['stay_hours']!r}", path=path,
                              line=line, field="stay_hours", case_id=row["case_id"])
        if row["died"] not in ("0", "1"):
            raise CohortError(f"died must be 0 or 1, got {row['died']!r}", path=path, line=line, field="died",
                              case_id=row["case_id"])
    table["stay_hours"] = table["stay_hours"].astype(float)
    table["died"] = table["died"].astype(int)
    return table.set_index("case_id", drop=True)


def table_file(root: Path, name: str) -> Path:
    """``name`` in the folder, or its gzip-compressed ``name.gz``; the plain name (reported) when neither exists."""
    plain = root / name
    packed = root / f"{name}.gz"
    return packed if not plain.is_file() and packed.is_file() else plain


def _positive(value, path: Path, field: str) -> float:
    if not (isinstance(value, (int, float)) and value > 0):
        raise CohortError(f"'{field}' must be a positive number of hours, got {value!r}", path=path, field=field)
    return float(value)


def _centre(v: EventVariable) -> float:
    return 0.0 if v.low is None or v.high is None else (v.low + v.high) / 2


def _half_range(v: EventVariable) -> float:
    return 1.0 if v.low is None or v.high is None or v.high == v.low else (v.high - v.low) / 2


def _is_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _cell(value):
    """A cohort.csv cell as a Case holds it: None when missing, a float when numeric, else the text."""
    if value is None or str(value).strip().lower() in MISSING_TOKENS:
        return None
    return float(value) if _is_number(value) else str(value).strip()
