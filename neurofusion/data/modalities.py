"""Declared modalities: the named inputs a task or a cohort has, each read by an encoder of one kind.

A task (``neurofusion.data.tasks``) or a cohort's ``cohort.json`` (``"modalities": [...]``) declares them,
e.g. cancer: ``histopathology`` (image, RGB), ``genomics`` (tabular), ``treatment_notes`` (text),
``clinical`` (tabular). Everything downstream (cohort layout, dataset, encoders, fusion, presence masks)
follows the declaration order. Cardio's four are named after their kinds: image, text, signal, tabular.

Exact Shapley values over the 2^M modality subsets are intended for M <= 8 declared modalities (256
subsets per case, batched): :data:`MAX_MODALITIES` is a validated limit, and a declaration with more is an
error rather than a silent switch to an approximation.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

KINDS: tuple[str, ...] = ("image", "text", "signal", "tabular")
FILE_KINDS: tuple[str, ...] = ("image", "signal", "text")  # kinds whose per-case data is a file
MAX_MODALITIES = 8  # exact Shapley over 2^M subsets stays batched and fast up to here
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Names that are fields of a Case or columns of cohort.csv, so a modality cannot take them.
RESERVED_NAMES = frozenset({
    "case_id", "split", "label", "site", "note", "meta", "issues", "values", "outcome", "modalities", "time",
    "event", "others",
})
_FIELDS = ("name", "kind", "title", "colour", "folder", "file_column", "table")


class ModalityError(ValueError):
    """A modality declaration that cannot be used; the message names the entry and the field."""


@dataclass(frozen=True)
class ModalitySpec:
    """One declared input.

    name: a lowercase identifier, unique in the declaration ("histopathology"). kind: the encoder that
    reads it, one of :data:`KINDS`. title: for display ("Histopathology"); defaults to the name.
    colour: images only: read as (3, H, W) RGB instead of (H, W) grey. folder / file_column: where a
    file-backed modality's per-case files live in a cohort folder (default folder = name, file column =
    ``<name>_file``); tabular modalities have neither (their values are cohort.csv columns). table: a
    time-stamped modality (the ICU task's vitals, labs, notes) read from a long table in the cohort folder
    (``vitals.csv``: stay, time, variable, value) instead of per-case files; it has no folder or file column.
    """

    name: str
    kind: str
    title: str = ""
    colour: bool = False
    folder: str | None = None
    file_column: str | None = None
    table: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ModalityError(f"modality name {self.name!r} must be a lowercase identifier "
                                "(a letter, then letters, digits or '_')")
        if self.name in RESERVED_NAMES:
            raise ModalityError(f"modality name {self.name!r} is reserved (a case field or cohort.csv column); "
                                "choose another name")
        if self.kind not in KINDS:
            raise ModalityError(f"modality {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.name in KINDS and self.name != self.kind:
            raise ModalityError(f"modality {self.name!r} is named after a kind, so its kind must be {self.name!r}, "
                                f"not {self.kind!r}")
        if not isinstance(self.colour, bool):
            raise ModalityError(f"modality {self.name!r}: colour must be true or false, got {self.colour!r}")
        if self.colour and self.kind != "image":
            raise ModalityError(f"modality {self.name!r}: colour applies to image modalities only, not {self.kind}")
        if self.kind == "tabular" and (self.folder or self.file_column):
            raise ModalityError(f"modality {self.name!r}: a tabular modality has no folder or file column "
                                "(its values are cohort.csv columns)")
        if self.table is not None and (self.folder or self.file_column):
            raise ModalityError(f"modality {self.name!r}: a modality read from a long table ({self.table}) has no "
                                "folder or file column")
        for key in ("folder", "file_column", "table"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and value and ".." not in value
                                          and not value.startswith(("/", "\\"))):
                raise ModalityError(f"modality {self.name!r}: {key} must be a relative name inside the cohort "
                                    f"folder, got {value!r}")
        if self.kind != "tabular" and self.table is None:
            object.__setattr__(self, "folder", self.folder or self.name)
            object.__setattr__(self, "file_column", self.file_column or f"{self.name}_file")
        object.__setattr__(self, "title", self.title or self.name.replace("_", " ").capitalize())

    @property
    def file_backed(self) -> bool:
        return self.kind in FILE_KINDS and self.table is None

    @property
    def presence_column(self) -> str:
        """The cohort.csv column that flags whether a case has this modality."""
        return f"has_{self.name}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["table"] is None:  # only time-stamped modalities name a table (earlier cohort.json files unchanged)
            del data["table"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "modality") -> "ModalitySpec":
        """From plain data (cohort.json, config.json); unknown or missing keys are errors naming ``where``."""
        if not isinstance(data, Mapping):
            raise ModalityError(f"{where} must be an object with 'name' and 'kind', got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ModalityError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(_FIELDS)}")
        absent = [k for k in ("name", "kind") if k not in data]
        if absent:
            raise ModalityError(f"{where}: missing {' and '.join(repr(k) for k in absent)}")
        try:
            return cls(**dict(data))
        except ModalityError as err:
            raise ModalityError(f"{where}: {err}") from None


def validate_modalities(specs: Iterable[ModalitySpec]) -> tuple[ModalitySpec, ...]:
    """Check a declaration as a whole: 1..MAX_MODALITIES entries, unique names, folders and file columns."""
    specs = tuple(specs)
    if not specs:
        raise ModalityError("at least one modality must be declared")
    if len(specs) > MAX_MODALITIES:
        raise ModalityError(f"{len(specs)} modalities are declared; at most {MAX_MODALITIES} are supported "
                            f"(exact Shapley values enumerate all 2^M subsets)")
    for key in ("name", "folder", "file_column"):
        values = [getattr(s, key) for s in specs if getattr(s, key) is not None]
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ModalityError(f"modality {key} {repeated[0]!r} is declared more than once; each must be unique")
    return specs


def modalities_from_dicts(items: Any, where: str = "modalities") -> tuple[ModalitySpec, ...]:
    """A JSON list of ModalitySpec objects -> the validated declaration."""
    if not isinstance(items, list):
        raise ModalityError(f"'{where}' must be a list of {{name, kind, ...}} objects, got {type(items).__name__}")
    return validate_modalities(ModalitySpec.from_dict(item, f"{where}[{i}]") for i, item in enumerate(items))


def modalities_to_dicts(specs: Iterable[ModalitySpec]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in specs]


def of_kind(specs: Iterable[ModalitySpec], kind: str) -> tuple[ModalitySpec, ...]:
    return tuple(s for s in specs if s.kind == kind)


def first_of_kind(specs: Iterable[ModalitySpec], kind: str) -> ModalitySpec | None:
    found = of_kind(specs, kind)
    return found[0] if found else None


CARDIO_MODALITIES: tuple[ModalitySpec, ...] = (
    ModalitySpec("image", "image", title="Echo image", folder="images", file_column="image_file"),
    ModalitySpec("text", "text", title="Clinical note", folder="notes", file_column="note_file"),
    ModalitySpec("signal", "signal", title="ECG", folder="signals", file_column="signal_file"),
    ModalitySpec("tabular", "tabular", title="Labs"),
)

CANCER_MODALITIES: tuple[ModalitySpec, ...] = (
    ModalitySpec("histopathology", "image", title="Histopathology", colour=True, folder="histopathology"),
    ModalitySpec("genomics", "tabular", title="Genomics"),
    ModalitySpec("treatment_notes", "text", title="Treatment notes", folder="treatment_notes"),
    ModalitySpec("clinical", "tabular", title="Clinical"),
)

# The ICU task: time-stamped vitals, labs and nursing notes in long tables, demographics in cohort.csv.
ICU_MODALITIES: tuple[ModalitySpec, ...] = (
    ModalitySpec("vitals", "signal", title="Vital signs", table="vitals.csv"),
    ModalitySpec("labs", "tabular", title="Labs", table="labs.csv"),
    ModalitySpec("notes", "text", title="Nursing notes", table="notes.csv"),
    ModalitySpec("demographics", "tabular", title="Demographics"),
)
