"""Per-case annotations beside a cohort: clinicians' modality rankings and the synthetic ground truth.

``clinician_rankings.csv``: case_id, rater, then one rank column per modality (1 = most important). A rater
leaves a modality blank when the case does not have it; the ranks given must be 1..k with no ties. Rankings
also come as bytes (a dashboard upload): they are parsed in memory and errors name the user's file name, so a
client-supplied name is never used as a path.
``ground_truth.csv``: case_id, then ``strength_<modality>`` in [0, 1] (blank = modality missing) and free
text columns describing where the planted evidence is.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd

from neurofusion.data._tables import fail_rows, parse_numbers, read_csv_table
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import MODALITIES

if TYPE_CHECKING:
    from neurofusion.data.cohort import CohortReader

RANKING_COLUMNS = ("case_id", "rater", *MODALITIES)
STRENGTH_COLUMNS = tuple(f"strength_{m}" for m in MODALITIES)


def read_rankings(source: str | Path | bytes | BinaryIO, *, name: str | None = None,
                  cohort: CohortReader | None = None) -> pd.DataFrame:
    """Read and validate clinician rankings -> DataFrame (case_id, rater, image, text, signal, tabular),
    ranks as nullable integers (<NA> = not ranked).

    ``source`` is a file path, or the file's bytes / a binary file object (an upload), read in memory; then
    ``name`` (the user's file name, reduced to its last component) is what error messages call the file.
    With ``cohort``, every case must exist and no rater may rank a modality the case does not have.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        table = read_csv_table(path, RANKING_COLUMNS)
    else:
        path = PurePath(display_name(name))
        data = source if isinstance(source, bytes) else source.read()
        table = read_csv_table(path, RANKING_COLUMNS, data=data)
    for column in ("case_id", "rater"):
        fail_rows(table[column] == "", table, path, column, lambda v, c=column: f"{c} is empty")
    ranks = pd.DataFrame({"case_id": table["case_id"], "rater": table["rater"]})
    for modality in MODALITIES:
        ranks[modality] = _parse_ranks(table, modality, path)

    pairs = ranks.duplicated(["case_id", "rater"], keep="first")
    fail_rows(pairs, table, path, "rater", lambda v: f"rater {v!r} ranks this case twice")

    values = ranks[list(MODALITIES)]
    given = values.notna().sum(axis=1)
    fail_rows(given == 0, table, path, "rank", lambda v: "no modality is ranked")
    # A valid ranking of k modalities uses each of 1..k exactly once: sum and max pin it down with no ties.
    ordered = np.sort(values.to_numpy(dtype=float, na_value=np.nan), axis=1)
    expected = np.where(np.isnan(ordered), np.nan, np.arange(1, len(MODALITIES) + 1))
    not_perm = ~np.all((ordered == expected) | np.isnan(ordered), axis=1)
    fail_rows(
        pd.Series(not_perm, index=table.index), table, path, "rank",
        lambda v: "ranks must be a permutation of 1..k over the k ranked modalities (no ties, no gaps), "
        "got " + _describe_row(values.loc[v]),
    )
    if cohort is not None:
        given = ranks[list(MODALITIES)].notna().to_numpy()
        _check_against_cohort(table, given, MODALITIES, "the rater ranked", cohort, path)
    return ranks


def write_rankings(path: str | Path, rankings: pd.DataFrame) -> None:
    missing = [c for c in RANKING_COLUMNS if c not in rankings.columns]
    if missing:
        raise ValueError(f"rankings need columns {RANKING_COLUMNS}; missing {missing}")
    out = rankings[list(RANKING_COLUMNS)].copy()
    for modality in MODALITIES:
        out[modality] = out[modality].astype("Int64")
    out.to_csv(path, index=False)


def read_ground_truth(path: str | Path, *, cohort: CohortReader | None = None) -> pd.DataFrame:
    """Read synthetic ground truth -> DataFrame with case_id, strength_<modality> floats (NaN = missing
    modality) and any extra descriptive columns as strings."""
    path = Path(path)
    table = read_csv_table(path, ("case_id", *STRENGTH_COLUMNS))
    fail_rows(table["case_id"].duplicated(), table, path, "case_id", lambda v: f"case_id {v!r} appears twice")
    out = table.copy()
    for column in STRENGTH_COLUMNS:
        values = parse_numbers(table, column, path, what="strength")
        fail_rows((values < 0) | (values > 1), table, path, column, lambda v: f"strength {v!r} is outside [0, 1]")
        out[column] = values
    if cohort is not None:
        given = out[list(STRENGTH_COLUMNS)].notna().to_numpy()
        _check_against_cohort(table, given, STRENGTH_COLUMNS, "a strength is given for", cohort, path)
    return out


def display_name(name: str | None) -> str:
    """A client-supplied file name fit to show in a message: its last path component ('../../x.csv' and
    'C:\\x\\r.csv' -> the bare name), never a path to open."""
    last = re.split(r"[\\/]", name or "")[-1].strip()
    return last if last not in ("", ".", "..") else "uploaded file"


def _parse_ranks(table: pd.DataFrame, modality: str, path: Path) -> pd.Series:
    values = parse_numbers(table, modality, path, what="rank")
    not_int = values.notna() & ((values != values.round()) | (values < 1))
    fail_rows(not_int, table, path, modality,
              lambda v: f"rank {v!r} is not a whole number >= 1 (leave blank if the modality is not ranked)")
    return values.astype("Int64")


def _check_against_cohort(
    table: pd.DataFrame, given: np.ndarray, fields: tuple[str, ...], what: str, cohort: CohortReader, path: Path
) -> None:
    """Every case must be in the cohort, and nothing may be given ((n, 4) ``given``) for a modality the
    case does not have."""
    fail_rows(~table["case_id"].isin(cohort.case_ids), table, path, "case_id",
              lambda v: f"case {v!r} is not in the cohort")
    available = cohort.availability().loc[table["case_id"]].to_numpy()
    for j, (modality, field) in enumerate(zip(MODALITIES, fields)):
        fail_rows(given[:, j] & ~available[:, j], table, path, field,
                  lambda v, m=modality: f"{what} {m}, but this case has no {m}")


def _describe_row(row: pd.Series) -> str:
    return ", ".join(f"{m}={'blank' if pd.isna(r) else int(r)}" for m, r in row.items())
