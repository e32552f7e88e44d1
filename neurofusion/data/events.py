"""Time-stamped clinical data as clinical systems store it (the ICU task): long tables of
(case_id, time, variable, value, unit) for vital signs and laboratory values and (case_id, time, text) for
notes, in the shape of MIMIC-IV's ``chartevents`` / ``labevents`` / note tables; read and validated with the
file, line and field of each problem; and the view of one stay *as of hour t*: only what was recorded up to
t, which is all the model may see when it predicts at t.

Times are hours since the stay's admission (floats). A cohort's ``variables.csv`` declares each variable
once: its table (vitals or labs), its unit (every row must use it: values are never converted silently),
its plausible range (values outside it are kept, as monitors record them, and counted as artefacts) and
the MIMIC-IV item ids it stands for (documentation for users converting their own extract).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurofusion.data._tables import read_csv_table
from neurofusion.data.errors import CohortError

EVENT_COLUMNS = ("case_id", "time", "variable", "value", "unit")
NOTE_COLUMNS = ("case_id", "time", "text")
VARIABLE_COLUMNS = ("variable", "table", "unit", "low", "high", "description", "mimic_itemids")
TABLES = ("vitals", "labs")


@dataclass(frozen=True)
class EventVariable:
    """One declared time-stamped variable: ``table`` vitals or labs, the ``unit`` its rows must carry, the
    plausible range [low, high] (None = open), and the MIMIC-IV item ids it maps from."""

    name: str
    table: str
    unit: str
    low: float | None = None
    high: float | None = None
    description: str = ""
    mimic_itemids: tuple[int, ...] = ()

    def plausible(self, values: np.ndarray) -> np.ndarray:
        """(N,) bool: values inside the plausible range."""
        ok = np.ones(len(values), dtype=bool)
        if self.low is not None:
            ok &= values >= self.low
        if self.high is not None:
            ok &= values <= self.high
        return ok


def read_variables(path: str | Path) -> dict[str, EventVariable]:
    """``variables.csv`` -> {name: EventVariable}, in file order."""
    frame = _read(path, VARIABLE_COLUMNS[:3])
    variables: dict[str, EventVariable] = {}
    for i, row in frame.iterrows():
        line = int(i) + 2
        name = row["variable"].strip()
        if not name:
            raise CohortError("variable name is empty", path=path, line=line, field="variable")
        if name in variables:
            raise CohortError(f"variable {name!r} is declared twice", path=path, line=line, field="variable")
        if row["table"] not in TABLES:
            raise CohortError(f"table must be one of {', '.join(TABLES)}, got {row['table']!r}", path=path,
                              line=line, field="table")
        if not row["unit"].strip():
            raise CohortError(f"variable {name!r} has no unit (write the unit its values are in, e.g. 'mmHg')",
                              path=path, line=line, field="unit")
        low, high = (_optional_float(row.get(f, ""), path, line, f) for f in ("low", "high"))
        if low is not None and high is not None and low > high:
            raise CohortError(f"the plausible range is empty: low {low:g} > high {high:g}", path=path, line=line,
                              field="low")
        variables[name] = EventVariable(name, row["table"], row["unit"].strip(), low, high,
                                        row.get("description", "").strip(),
                                        _itemids(row.get("mimic_itemids", ""), path, line))
    return variables


@dataclass
class EventTable:
    """A validated long table: ``rows`` (case_id, time, variable, value) sorted by case, variable and time;
    ``artefacts``: how many values of each variable lie outside its plausible range (kept, not dropped)."""

    rows: pd.DataFrame
    variables: dict[str, EventVariable]
    artefacts: dict[str, int]

    def __post_init__(self) -> None:
        self._by_case = {case_id: part for case_id, part in self.rows.groupby("case_id", sort=False)}

    def of(self, case_id: str) -> pd.DataFrame:
        """The case's rows (time, variable, value); empty when it has none."""
        part = self._by_case.get(case_id)
        return self.rows.iloc[:0] if part is None else part


def read_events(path: str | Path, variables: Mapping[str, EventVariable], stays: Mapping[str, float],
                table: str) -> EventTable:
    """Read and validate one long table (``table``: vitals or labs). ``stays``: {case_id: stay length in
    hours}; every row must belong to a known stay, lie within it (0 <= time <= length), name a variable of
    this table, carry its declared unit and a finite value, and each (case, variable) stream's times must not
    go backwards in file order (a stream out of order is usually a merge or time-zone error)."""
    frame, times, values = _read_long(path)
    # every check on whole columns (a cohort's vitals run to millions of rows); the first failing row, in file
    # order and check order, is the one reported
    stay_hours = frame["case_id"].map(stays)
    declared_table = frame["variable"].map({n: v.table for n, v in variables.items()})
    declared_unit = frame["variable"].map({n: v.unit for n, v in variables.items()})
    checks = [
        ("case_id", stay_hours.isna().to_numpy()),
        ("variable", (declared_table != table).to_numpy()),
        ("unit", (frame["unit"].str.strip() != declared_unit).to_numpy()),
        ("time", ~((times >= 0.0) & (times <= stay_hours.to_numpy(dtype=float, na_value=np.inf)))),
    ]
    failing = _first_failure(checks)
    if failing is not None:
        k, field = failing
        case_id, variable, unit = frame["case_id"].iloc[k], frame["variable"].iloc[k], frame["unit"].iloc[k]
        where = {"path": path, "line": k + 2, "case_id": case_id, "field": field}
        if field == "case_id":
            raise CohortError("case_id is not a stay of this cohort (cohort.csv)", **where)
        if field == "variable":
            known = ", ".join(n for n, v in variables.items() if v.table == table)
            raise CohortError(f"variable {variable!r} is not a declared {table} variable (variables.csv: {known})",
                              **where)
        if field == "unit":
            raise CohortError(f"{variable} is recorded in {unit!r}, but variables.csv declares "
                              f"{variables[variable].unit!r}; convert the values (they are never converted "
                              "silently)", **where)
        raise CohortError(f"time {times[k]:g} h lies outside the stay (0 to {stays[case_id]:g} h after admission)",
                          **where)
    rows = pd.DataFrame({"case_id": frame["case_id"], "time": times, "variable": frame["variable"], "value": values,
                         "line": np.arange(2, len(frame) + 2)})
    _check_monotonic(rows, path)
    rows = rows.sort_values(["case_id", "variable", "time"], kind="stable").drop(columns="line")
    artefacts = {name: int((~v.plausible(rows.loc[rows["variable"] == name, "value"].to_numpy())).sum())
                 for name, v in variables.items() if v.table == table}
    return EventTable(rows.reset_index(drop=True), dict(variables), artefacts)


def read_notes(path: str | Path, stays: Mapping[str, float]) -> pd.DataFrame:
    """Time-stamped notes (case_id, time, text), validated like events (known stay, time within it, non-empty
    text, times of a stay not going backwards), sorted by case and time."""
    frame = _read(path, NOTE_COLUMNS)
    times = _floats(frame["time"], path, "time", "a time in hours since admission")
    stay_hours = frame["case_id"].map(stays)
    failing = _first_failure([
        ("case_id", stay_hours.isna().to_numpy()),
        ("time", ~((times >= 0.0) & (times <= stay_hours.to_numpy(dtype=float, na_value=np.inf)))),
        ("text", (frame["text"].str.strip() == "").to_numpy()),
    ])
    if failing is not None:
        k, field = failing
        case_id = frame["case_id"].iloc[k]
        where = {"path": path, "line": k + 2, "case_id": case_id, "field": field}
        if field == "case_id":
            raise CohortError("case_id is not a stay of this cohort (cohort.csv)", **where)
        if field == "time":
            raise CohortError(f"time {times[k]:g} h lies outside the stay (0 to {stays[case_id]:g} h after "
                              "admission)", **where)
        raise CohortError("the note is empty", **where)
    rows = pd.DataFrame({"case_id": frame["case_id"], "time": times, "text": frame["text"],
                         "variable": "note", "line": np.arange(2, len(frame) + 2)})
    _check_monotonic(rows, path)
    return (rows.sort_values(["case_id", "time"], kind="stable").drop(columns=["line", "variable"])
            .reset_index(drop=True))


# ------------------------------------------------------------------------------ one stay as of hour t


def as_of(rows: pd.DataFrame, t: float) -> pd.DataFrame:
    """The rows recorded at or before hour ``t`` (a measurement at exactly t is known at t)."""
    return rows[rows["time"].to_numpy() <= t]


@dataclass(frozen=True)
class Grid:
    """Vital signs on a regular grid ending at hour ``end``: ``values`` (V, T) float32 (the last measurement
    in each step; an unmeasured step carries the last value before it, 0 before the first), ``measured``
    (V, T) bool (the step holds a measurement of its own), ``times`` (T,) the end of each step in hours."""

    values: np.ndarray
    measured: np.ndarray
    times: np.ndarray
    variables: tuple[str, ...]
    end: float


def regular_grid(rows: pd.DataFrame, variables: Sequence[str], t: float, *, window_h: float = 48.0,
                 step_h: float = 5 / 60) -> Grid:
    """One stay's rows (time, variable, value) as of hour ``t`` on a grid of ``window_h`` hours ending at t,
    in steps of ``step_h`` (5 minutes by default). Step k covers (start + k step, start + (k+1) step]; rows
    after t are dropped first, so nothing recorded later can reach the grid. Values before the window
    still seed the carried-forward value (a patient whose last blood pressure was 2 h before the window has
    that pressure, unmeasured, not 0)."""
    seen = as_of(rows, t)
    streams = {name: (part["time"].to_numpy(dtype=float), part["value"].to_numpy(dtype=float))
               for name, part in seen.groupby("variable", sort=False)}
    return grid_of_streams(streams, variables, t, window_h=window_h, step_h=step_h)


def grid_of_streams(streams: Mapping[str, tuple[np.ndarray, np.ndarray]], variables: Sequence[str], t: float, *,
                    window_h: float = 48.0, step_h: float = 5 / 60) -> Grid:
    """:func:`regular_grid` from one stay's streams already split by variable: {name: (times (N,) ascending,
    values (N,))}. Times after ``t`` are cut here too, so a caller may pass a whole stay's streams."""
    if not (window_h > 0 and step_h > 0 and window_h >= step_h):
        raise ValueError(f"window_h and step_h must be > 0 with window_h >= step_h, got {window_h}, {step_h}")
    steps = int(round(window_h / step_h))
    if not math.isclose(steps * step_h, window_h, rel_tol=1e-9):
        raise ValueError(f"window_h {window_h} must be a whole number of steps of {step_h} h")
    start = t - window_h
    values = np.zeros((len(variables), steps), dtype=np.float32)
    measured = np.zeros((len(variables), steps), dtype=bool)
    empty = (np.zeros(0), np.zeros(0))
    for v, name in enumerate(variables):
        time, value = streams.get(name, empty)
        known = np.searchsorted(time, t, side="right")  # times ascending: rows after t never reach the grid
        time, value = time[:known], value[:known]
        # the step holding each time: ceil((time - start) / step) - 1, so a time on a step's end belongs to it
        index = np.ceil((time - start) / step_h - 1e-9).astype(int) - 1
        inside = index >= 0
        before = value[~inside]
        carried = before[-1] if len(before) else 0.0
        row = np.full(steps, np.nan)
        row[index[inside]] = value[inside]  # times ascending: the last measurement of a step wins
        measured[v] = ~np.isnan(row)
        values[v] = _carry_forward(row, carried)
    times = start + step_h * np.arange(1, steps + 1)
    return Grid(values, measured, times, tuple(variables), float(t))


def last_observation(rows: pd.DataFrame, variables: Sequence[str], t: float) -> tuple[dict[str, float], dict[str, float]]:
    """For each variable, its last value recorded at or before hour ``t`` and that value's age in hours
    (t - time); NaN and NaN when it was never recorded by t. This is how labs are aligned to the prediction
    time (last observation with its age) rather than by nearest neighbour, which could reach after t."""
    seen = as_of(rows, t)
    last = seen.groupby("variable", sort=False).tail(1).set_index("variable")
    values = {v: float(last.loc[v, "value"]) if v in last.index else math.nan for v in variables}
    ages = {v: float(t - last.loc[v, "time"]) if v in last.index else math.nan for v in variables}
    return values, ages


# ----------------------------------------------------------------------------------------- helpers


def _carry_forward(row: np.ndarray, initial: float) -> np.ndarray:
    """(T,) with NaN gaps -> each gap filled with the last value before it (``initial`` before the first)."""
    filled = np.where(np.isnan(row), np.nan, row)
    last = np.where(~np.isnan(filled), np.arange(len(filled)), -1)
    np.maximum.accumulate(last, out=last)
    return np.where(last >= 0, filled[np.clip(last, 0, None)], initial).astype(np.float32)


def _first_failure(checks: Sequence[tuple[str, np.ndarray]]) -> tuple[int, str] | None:
    """(row, field) of the first row failing any check, the earliest check for that row; None if none fails.
    ``checks``: (field, (N,) bool failing) in the order they apply to a row."""
    failing = np.zeros(len(checks[0][1]), dtype=bool)
    for _, mask in checks:
        failing |= mask
    if not failing.any():
        return None
    k = int(np.flatnonzero(failing)[0])
    return k, next(field for field, mask in checks if mask[k])


def _check_monotonic(rows: pd.DataFrame, path: str | Path) -> None:
    """Each (case, variable) stream's times must not go backwards in file order."""
    previous = rows.groupby(["case_id", "variable"], sort=False)["time"].shift()
    backwards = (rows["time"] < previous).to_numpy()
    if backwards.any():
        k = int(np.flatnonzero(backwards)[0])
        row = rows.iloc[k]
        raise CohortError(f"time {row['time']:g} h comes after a later time ({previous.iloc[k]:g} h) of the same "
                          f"{row['variable']} stream; sort each stream by time", path=path, line=int(row["line"]),
                          case_id=row["case_id"], field="time")


def _read_long(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A vitals or labs table -> (its string columns, times (N,), values (N,)). Long tables run to millions of
    rows: pandas parses them directly, numbers as floats; only a file that does not parse that way cleanly
    is read again by the careful cohort reader, which names the line and field of the first problem."""
    try:
        frame = pd.read_csv(path, dtype={"case_id": str, "variable": str, "unit": str, "time": "float64",
                                         "value": "float64"}, keep_default_na=False, skipinitialspace=True,
                            index_col=False)
        fast = (set(EVENT_COLUMNS) <= set(frame.columns) and len(frame) > 0
                and np.isfinite(frame["time"].to_numpy()).all() and np.isfinite(frame["value"].to_numpy()).all())
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError):  # reported by the careful read
        fast = False
    if not fast:
        frame = _read(path, EVENT_COLUMNS)
        return (frame, _floats(frame["time"], path, "time", "a time in hours since admission"),
                _floats(frame["value"], path, "value", "a number"))
    for column in ("case_id", "variable"):
        frame[column] = frame[column].str.strip()
    return frame, frame["time"].to_numpy(dtype=float), frame["value"].to_numpy(dtype=float)


def _read(path: str | Path, required: Sequence[str]) -> pd.DataFrame:
    """The careful reader (stripped strings, file/line/field messages); a ``.gz`` file is decompressed first."""
    path = Path(path)
    data = None
    if path.suffix == ".gz" and path.is_file():
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as err:
            raise CohortError(f"not a readable gzip file ({err})", path=path) from None
    return read_csv_table(path, tuple(required), data=data)


def _floats(column: pd.Series, path: str | Path, field: str, expected: str) -> np.ndarray:
    values = pd.to_numeric(column.str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise CohortError(f"{column.iloc[k]!r} is not {expected}", path=path, line=k + 2, field=field)
    return values


def _optional_float(text: str, path: str | Path, line: int, field: str) -> float | None:
    if not str(text).strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise CohortError(f"{text!r} is not a number (or leave it empty)", path=path, line=line, field=field) from None
    if not math.isfinite(value):
        raise CohortError(f"{text!r} is not a finite number", path=path, line=line, field=field)
    return value


def _itemids(text: str, path: str | Path, line: int) -> tuple[int, ...]:
    parts = str(text).split()
    if not all(p.isdigit() for p in parts):
        raise CohortError(f"mimic_itemids must be item ids separated by spaces, got {text!r}", path=path, line=line,
                          field="mimic_itemids")
    return tuple(int(p) for p in parts)
