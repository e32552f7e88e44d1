"""The one exception type for bad input data: it says which file, line and field were wrong."""

from __future__ import annotations

from pathlib import Path


class CohortError(ValueError):
    """Bad or inconsistent cohort data.

    ``str(err)`` reads like ``cohort.csv, line 14 (case CV-00012), column 'troponin_ng_l': ...`` so the
    user can open the file and fix it; the parts are also kept as attributes for the app to display.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        case_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.case_id = case_id
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.case_id is not None:
            where.append(f"case {self.case_id}")
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message
