"""Per-case annotations beside a cohort: clinicians' modality rankings and the synthetic ground truth.

``clinician_rankings.csv``: case_id, rater, then one rank column per modality (1 = most important). A rater
leaves a modality blank when the case does not have it; the ranks given are 1..k over the k ranked modalities,
a permutation or tied in standard competition form (1, 1, 3: tied modalities share the better place and the next
place skips; 1, 1, 2 is not a ranking). Whether a study allows ties is the study's rule, not the file's. Rankings
also come as bytes (a dashboard upload): they are parsed in memory and errors name the user's file name, so a
client-supplied name is never used as a path.
``ground_truth.csv``: case_id, then ``strength_<modality>`` in [0, 1] (blank = modality missing) and free
text columns describing where the planted evidence is.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, BinaryIO, Callable

import numpy as np
import pandas as pd

from neurofusion.data._tables import MISSING_TOKENS, fail_rows, parse_numbers, read_csv_table
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import MODALITIES

if TYPE_CHECKING:
    from neurofusion.data.cohort import CohortReader

RANKING_COLUMNS = ("case_id", "rater", *MODALITIES)
STRENGTH_COLUMNS = tuple(f"strength_{m}" for m in MODALITIES)


class RankingErrors(CohortError):
    """Every row error of a rankings file at once (a user fixing an upload should not meet them one by one).

    ``errors`` holds one :class:`CohortError` per failing cell or row, in file order, each with its line;
    ``str(err)`` starts with the first error and lists the others below it; the first error's file, line,
    case and field are this error's own."""

    SHOWN = 20  # lines in the message; ``errors`` keeps them all

    def __init__(self, errors: list[CohortError]) -> None:
        if not errors:
            raise ValueError("RankingErrors needs at least one error")
        self.errors = sorted(errors, key=lambda e: e.line or 0)  # stable: checks keep their order on a line
        first = self.errors[0]
        super().__init__(first.message, path=first.path, line=first.line, case_id=first.case_id, field=first.field)

    def _render(self) -> str:
        first = super()._render()
        others = self.errors[1:]
        if not others:
            return first
        lines = [first] + [str(e) for e in others[:self.SHOWN - 1]]
        if len(self.errors) > self.SHOWN:
            lines.append(f"... and {len(self.errors) - self.SHOWN} more")
        return f"{len(self.errors)} errors:\n" + "\n".join(lines)


class _RowChecks:
    """Collects every failing row of each check (fail_rows stops at the first), and remembers which rows
    already failed so a later, row-level check does not report a consequence of the same bad cell."""

    def __init__(self, table: pd.DataFrame, path: PurePath) -> None:
        self.table, self.path = table, path
        self.errors: list[CohortError] = []
        self.failed = pd.Series(False, index=table.index)

    def check(self, mask: pd.Series | np.ndarray, field: str, message: Callable[[object], str]) -> None:
        mask = pd.Series(mask, index=self.table.index).fillna(False).astype(bool)
        for i in np.flatnonzero(mask.to_numpy()):
            value = self.table[field].iloc[i] if field in self.table.columns else self.table.index[i]
            case_id = self.table["case_id"].iloc[i] or None
            self.errors.append(CohortError(message(value), path=self.path, line=int(i) + 2, case_id=case_id,
                                           field=field))
        self.failed |= mask

    def raise_any(self) -> None:
        if self.errors:
            raise RankingErrors(self.errors)


def read_rankings(source: str | Path | bytes | BinaryIO, *, name: str | None = None,
                  cohort: CohortReader | None = None, modalities: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Read and validate clinician rankings -> DataFrame (case_id, rater, image, text, signal, tabular),
    ranks as nullable integers (<NA> = not ranked).

    ``source`` is a file path, or the file's bytes / a binary file object (an upload), read in memory; then
    ``name`` (the user's file name, reduced to its last component) is what error messages call the file.
    With ``cohort``, every case must exist and no rater may rank a modality the case does not have. The rank
    columns are the cohort's declared modalities (else ``modalities``, else cardio's four).
    Row errors are all reported together (:class:`RankingErrors`, one entry per bad cell or row with its
    line); a file-level error (not UTF-8, a missing column) is reported alone.
    """
    names = _modality_names(cohort, modalities)
    required = ("case_id", "rater", *names)
    if isinstance(source, (str, Path)):
        path = Path(source)
        table = read_csv_table(path, required)
    else:
        path = PurePath(display_name(name))
        data = source if isinstance(source, bytes) else source.read()
        table = read_csv_table(path, required, data=data)
    checks = _RowChecks(table, path)
    for column in ("case_id", "rater"):
        checks.check(table[column] == "", column, lambda v, c=column: f"{c} is empty")
    ranks = pd.DataFrame({"case_id": table["case_id"], "rater": table["rater"]})
    for modality in names:
        ranks[modality] = _parse_ranks(table, modality, checks)

    named = (table["case_id"] != "") & (table["rater"] != "")
    checks.check(named & ranks.duplicated(["case_id", "rater"], keep="first"), "rater",
                 lambda v: f"rater {v!r} ranks this case twice")

    values = ranks[list(names)]
    # rows with a bad cell have incomplete ranks: judging their set would report a consequence, not the cause
    checks.check(~checks.failed & (values.notna().sum(axis=1) == 0), "rank", lambda v: "no modality is ranked")
    not_ranking = ~competition_ranks(values.to_numpy(dtype=float, na_value=np.nan))
    checks.check(
        ~checks.failed & not_ranking, "rank",
        lambda v: "ranks must be a permutation of 1..k over the k ranked modalities, or ties in standard "
        "competition form (1, 1, 3: tied modalities share the better place, the next place skips; no gaps), "
        "got " + _describe_row(values.loc[v]),
    )
    if cohort is not None:
        _check_rankings_against_cohort(table, ranks, cohort, checks)
    checks.raise_any()
    return ranks


def competition_ranks(ranks: np.ndarray) -> np.ndarray:
    """(n, M) ranks (NaN = not ranked) -> (n,) booleans: the row is a standard competition ranking of its
    ranked modalities: every rank is 1 + the number of modalities ranked strictly better. A permutation of
    1..k is one (no ties); so is 1, 1, 3; 1, 1, 2 (a gap after a tie missing) and 1, 3 (a gap) are not."""
    ranks = np.asarray(ranks, dtype=float)
    better = (ranks[:, None, :] < ranks[:, :, None]).sum(axis=2)  # [i, j]: modalities ranked above j in row i
    return np.all(np.isnan(ranks) | (ranks == better + 1), axis=1)


def _check_rankings_against_cohort(table: pd.DataFrame, ranks: pd.DataFrame, cohort: CohortReader,
                                   checks: _RowChecks) -> None:
    known = table["case_id"].isin(cohort.case_ids)
    checks.check((table["case_id"] != "") & ~known, "case_id", lambda v: f"case {v!r} is not in the cohort")
    if not known.any():
        return
    available = cohort.availability().loc[table.loc[known, "case_id"]].to_numpy()
    names = cohort.modality_names
    given = ranks.loc[known, list(names)].notna().to_numpy()
    for j, modality in enumerate(names):
        bad = pd.Series(False, index=table.index)
        bad[known] = given[:, j] & ~available[:, j]
        checks.check(bad, modality, lambda v, m=modality: f"the rater ranked {m}, but this case has no {m}")


def write_rankings(path: str | Path, rankings: pd.DataFrame, modalities: tuple[str, ...] = MODALITIES) -> None:
    columns = ("case_id", "rater", *modalities)
    missing = [c for c in columns if c not in rankings.columns]
    if missing:
        raise ValueError(f"rankings need columns {columns}; missing {missing}")
    out = rankings[list(columns)].copy()
    for modality in modalities:
        out[modality] = out[modality].astype("Int64")
    out.to_csv(path, index=False)


INTERACTION_STRENGTH = "interaction_strength"  # synthetic cohorts: how strongly a cross-modal rule decides a case
# The numeric interaction columns the generators write, and what a blank cell means: no rule decides the case,
# so no strength and no log-hazard term (cancer); an ICU stay without a rule has no hour the rule shows from.
INTERACTION_NUMBERS = {INTERACTION_STRENGTH: 0.0, "interaction_log_hazard": 0.0, "interaction_term": 0.0,
                       "interaction_from_h": float("nan")}


def read_ground_truth(path: str | Path, *, cohort: CohortReader | None = None) -> pd.DataFrame:
    """Read synthetic ground truth -> DataFrame with case_id, strength_<modality> floats (NaN = missing
    modality), the numeric interaction columns (INTERACTION_NUMBERS: ``interaction_strength`` >= 0, blank = 0
    when no interaction decides the case) as floats where the table has them, and any extra descriptive
    columns as strings."""
    path = Path(path)
    names = _modality_names(cohort, None)
    strength_columns = tuple(f"strength_{m}" for m in names)
    table = read_csv_table(path, ("case_id", *strength_columns))
    fail_rows(table["case_id"].duplicated(), table, path, "case_id", lambda v: f"case_id {v!r} appears twice")
    out = table.copy()
    for column in strength_columns:
        values = parse_numbers(table, column, path, what="strength")
        fail_rows((values < 0) | (values > 1), table, path, column, lambda v: f"strength {v!r} is outside [0, 1]")
        out[column] = values
    for column, blank in INTERACTION_NUMBERS.items():
        if column in table.columns:
            values = parse_numbers(table, column, path, what=column.replace("_", " "))
            if column == INTERACTION_STRENGTH:
                fail_rows(values < 0, table, path, column, lambda v: f"interaction strength {v!r} is negative")
            out[column] = values.fillna(blank)
    if cohort is not None:
        given = out[list(strength_columns)].notna().to_numpy()
        _check_against_cohort(table, given, strength_columns, "a strength is given for", cohort, path)
    return out


def _modality_names(cohort: CohortReader | None, modalities: tuple[str, ...] | None) -> tuple[str, ...]:
    if cohort is not None:
        return cohort.modality_names
    return tuple(modalities) if modalities else MODALITIES


def display_name(name: str | None) -> str:
    """A client-supplied file name fit to show in a message: its last path component ('../../x.csv' and
    'C:\\x\\r.csv' -> the bare name), never a path to open."""
    last = re.split(r"[\\/]", name or "")[-1].strip()
    return last if last not in ("", ".", "..") else "uploaded file"


def _parse_ranks(table: pd.DataFrame, modality: str, checks: _RowChecks) -> pd.Series:
    """One modality's rank column -> nullable integers; every cell that is not blank or a whole number >= 1
    is recorded in ``checks`` (and left blank here)."""
    raw = table[modality]
    blank = raw.str.lower().isin(MISSING_TOKENS)
    values = pd.to_numeric(raw.where(~blank, None), errors="coerce").astype(float)
    not_number = ~blank & values.isna()
    checks.check(not_number, modality,
                 lambda v: f"rank {v!r} is not a number (leave the cell empty when the modality is not ranked)")
    bad = values.notna() & (~np.isfinite(values) | (values != values.round()) | (values < 1))
    checks.check(bad, modality,
                 lambda v: f"rank {v!r} is not a whole number >= 1 (leave blank if the modality is not ranked)")
    return values.where(~bad).astype("Int64")


def _check_against_cohort(
    table: pd.DataFrame, given: np.ndarray, fields: tuple[str, ...], what: str, cohort: CohortReader, path: Path
) -> None:
    """Every case must be in the cohort, and nothing may be given ((n, 4) ``given``) for a modality the
    case does not have."""
    fail_rows(~table["case_id"].isin(cohort.case_ids), table, path, "case_id",
              lambda v: f"case {v!r} is not in the cohort")
    available = cohort.availability().loc[table["case_id"]].to_numpy()
    for j, (modality, field) in enumerate(zip(cohort.modality_names, fields)):
        fail_rows(given[:, j] & ~available[:, j], table, path, field,
                  lambda v, m=modality: f"{what} {m}, but this case has no {m}")


def _describe_row(row: pd.Series) -> str:
    return ", ".join(f"{m}={'blank' if pd.isna(r) else int(r)}" for m, r in row.items())
