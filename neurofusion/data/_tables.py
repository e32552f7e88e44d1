"""Shared CSV reading and row validation for the cohort's tables: every error names file, line and column."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from neurofusion.data.errors import CohortError

# Spellings of "not measured / not given" accepted in numeric cells; anything else that is not a number
# is an error rather than a silent NaN.
MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "null", "none"})


def read_csv_table(path: Path, required: tuple[str, ...], *, absent_message: str = "file not found",
                   data: bytes | None = None) -> pd.DataFrame:
    """Read a CSV as stripped strings ('' for empty cells) and check its required columns.

    With ``data`` (a file held in memory, e.g. an upload) those bytes are parsed and ``path`` only names the
    file in messages; otherwise the file at ``path`` is read.
    """
    if data is None:
        if not path.is_file():
            raise CohortError(absent_message, path=path)
        data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CohortError(f"file is not UTF-8 text ({err.reason} at byte {err.start})", path=path) from None
    _check_field_counts(text, path)
    try:
        # index_col=False: a row with one field too many must not silently turn the first column into
        # the index (then every case_id reads as the split).
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True,
                            index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise CohortError(f"not a readable CSV file ({err})", path=path) from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise CohortError(
            f"required column(s) {', '.join(missing)} missing; expected {', '.join(required)} "
            f"(found: {', '.join(table.columns)})",
            path=path,
            field=missing[0],
        )
    if table.empty:
        raise CohortError("the file has no rows", path=path)
    return table.apply(lambda col: col.str.strip())


def _check_field_counts(text: str, path: Path) -> None:
    """Every row must have as many fields as the header: pandas would otherwise shift or drop cells
    (an unquoted decimal comma '12,5' makes two fields) and report a consequence, not the cause."""
    rows = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    header = next(rows, None)
    if header is None:
        return
    bad: list[tuple[int, int]] = []
    for row in rows:
        if not row or (len(row) == 1 and not row[0].strip()):  # blank lines, which pandas skips too
            continue
        if len(row) != len(header):
            bad.append((rows.line_num, len(row)))
    if not bad:
        return
    line, count = bad[0]
    if count > len(header):
        hint = ("unquoted comma? quote values that contain commas, e.g. \"12,5\", or write decimals with a "
                "point, 12.5")
    else:
        hint = "missing separator, or a line break inside an unquoted value?"
    more = f"; {len(bad) - 1} more line(s) like this" if len(bad) > 1 else ""
    err = CohortError(f"line {line} has {count} fields, the header has {len(header)} ({hint}){more}", path=path)
    err.line = line  # for the app; the message already says it
    raise err


def fail_rows(mask: pd.Series, table: pd.DataFrame, path: Path, field: str, message: Callable) -> None:
    """Raise a CohortError for the first row where ``mask`` holds, saying how many more rows share it.

    ``message`` receives that row's cell in ``field`` (or the row's index when ``field`` names a
    row-level check rather than a column).
    """
    mask = pd.Series(mask, index=table.index).fillna(False).astype(bool)
    if not mask.any():
        return
    i = int(np.flatnonzero(mask.to_numpy())[0])
    value = table[field].iloc[i] if field in table.columns else table.index[i]
    more = int(mask.sum()) - 1
    suffix = f" ({more} more row{'s' if more != 1 else ''} like this)" if more else ""
    case_id = table["case_id"].iloc[i] if "case_id" in table.columns else None
    raise CohortError(message(value) + suffix, path=path, line=i + 2, case_id=case_id or None, field=field)


def parse_numbers(table: pd.DataFrame, column: str, path: Path, what: str = "value") -> pd.Series:
    """A string column -> float Series (NaN where the cell is a missing token); other text or infinities
    are errors."""
    raw = table[column]
    missing = raw.str.lower().isin(MISSING_TOKENS)
    values = pd.to_numeric(raw.where(~missing, None), errors="coerce").astype(float)
    fail_rows(~missing & values.isna(), table, path, column,
              lambda v: f"{what} {v!r} is not a number (leave the cell empty when it is missing)")
    fail_rows(np.isinf(values.fillna(0)), table, path, column, lambda v: f"{what} {v!r} is not finite")
    return values
