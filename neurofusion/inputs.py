"""What a model can use of a case or a cohort: its inputs matched against the data, and what is lost.

A checkpoint's :class:`~neurofusion.data.dataset.InputSpec` names the tabular features, ECG leads and
categories the model was trained with. Real data names them its own way; whatever does not match reaches
the model as "missing", so it is reported here (by ``validate --checkpoint``, ``explain case`` and the
case page) instead of being dropped silently.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from neurofusion.data.cohort import COHORT_CSV, FEATURES_CSV, CohortReader
from neurofusion.data.dataset import InputSpec
from neurofusion.data.features import FeatureSpec
from neurofusion.data.modalities import first_of_kind, of_kind
from neurofusion.data.schema import MODALITIES, STANDARD_LEADS, Case, lead_issues, match_leads, unusable_signal_reason


@dataclass
class InputReport:
    """The model's inputs against one case or one cohort.

    matched: the model's tabular features the data has. unmatched: features the model expects that the
    data lacks entirely (often a column under another name). extra: data columns the model ignores.
    not_measured: (case) matched features with no value. leads: {"found": the model's leads the recording
    has, "missing": the model's leads it lacks, "unmapped": channel names that are no lead of the model};
    all empty without a recording. unusable: modality -> why the model cannot use it at all (it then
    counts as missing). unknown_categories: feature -> values the model does not know. wrong_kind:
    feature -> how the data's kind differs from the model's (numbers where it reads categories, or the
    reverse). short_recordings: recordings shorter than the model's window (zero-padded): (case) 1 or 0,
    (cohort) how many. notes: other degradations the reader found. expected_categories and model_leads
    are the model's, quoted back by the messages.
    """

    scope: str
    matched: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    not_measured: list[str] = field(default_factory=list)
    leads: dict[str, list[str]] = field(default_factory=lambda: {"found": [], "missing": [], "unmapped": []})
    unusable: dict[str, str] = field(default_factory=dict)
    unknown_categories: dict[str, list[str]] = field(default_factory=dict)
    wrong_kind: dict[str, str] = field(default_factory=dict)
    short_recordings: int = 0
    notes: list[str] = field(default_factory=list)
    undescribed: list[str] = field(default_factory=list)  # extra columns features.csv does not describe
    expected_categories: dict[str, list[str]] = field(default_factory=dict)
    model_leads: list[str] = field(default_factory=lambda: list(STANDARD_LEADS))
    window_seconds: float = 10.0
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))  # the model's, in order
    signal_name: str = "signal"  # the modality the lead report is about (the first signal modality)

    @property
    def ok(self) -> bool:
        """True when the model can use everything the data holds, as given."""
        return not self.messages()

    def messages(self) -> list[str]:
        """One specific, actionable sentence per problem, most severe first."""
        names = self.modalities
        order = sorted(self.unusable, key=lambda m: names.index(m) if m in names else len(names))
        out = [f"{self.scope}: {modality} cannot be used: {self.unusable[modality]}" for modality in order]
        for name in self.unmatched:
            out.append(f"{self.scope}: the model expects tabular input '{name}' but the data has no such "
                       f"column{self._closest(name)}; the model treats it as missing")
        for name, values in self.unknown_categories.items():
            shown = ", ".join(repr(v) for v in values[:10])
            shown += f" and {len(values) - 10} more" if len(values) > 10 else ""
            out.append(f"{self.scope}: '{name}' has value(s) {shown} the model does not know; "
                       f"expected one of {', '.join(self.expected_categories.get(name, ()))}")
        out += [f"{self.scope}: '{name}': {what}" for name, what in self.wrong_kind.items()]
        if self.signal_name not in self.unusable or self.leads["found"]:  # an unusable recording's reason names them
            if self.leads["unmapped"]:
                names = ", ".join(repr(c) for c in self.leads["unmapped"])
                out.append(f"{self.scope}: ECG channel(s) {names} name no lead the model reads and are not used; "
                           f"rename them to the model's lead names ({', '.join(self.model_leads)}) if they are "
                           "those leads")
            if self.leads["found"] and self.leads["missing"]:
                which = "the recording lacks" if self.scope.startswith("case ") else "no recording has"
                out.append(f"{self.scope}: {which} the model's lead(s) {', '.join(self.leads['missing'])}; "
                           "the model treats them as missing")
        undescribed = [c for c in self.extra if c in self.undescribed]
        ignored = [c for c in self.extra if c not in self.undescribed]
        if undescribed:
            out.append(f"{self.scope}: column(s) {_names(undescribed)} are not described in {FEATURES_CSV}, so they "
                       f"are not read; describe them there (under the model's names) to use them")
        if ignored:
            out.append(f"{self.scope}: column(s) {_names(ignored)} are not inputs of the model and are ignored")
        if self.not_measured:
            out.append(f"{self.scope}: not measured: {', '.join(self.not_measured)} (the model treats them as missing)")
        if self.short_recordings:
            which = "the recording is"
            if not self.scope.startswith("case "):
                which = f"{self.short_recordings} recording(s) are"
            out.append(f"{self.scope}: {which} shorter than the {self.window_seconds:g} s the model reads; "
                       "the rest of the window is zero padding")
        out += [f"{self.scope}: {note}" for note in self.notes]
        return out

    def to_dict(self) -> dict:
        """JSON-ready: every field plus the messages."""
        return {**asdict(self), "messages": self.messages()}

    def _closest(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.extra, n=1, cutoff=0.5)
        return f" (is '{close[0]}' the same measurement? then rename the column to '{name}')" if close else ""


def case_input_report(spec: InputSpec, case: Case) -> InputReport:
    """What the model can use of one case (nothing is read from disk: the case is already loaded).

    A case without tabular values or a recording has nothing matched or unmatched for it: that modality
    is missing, which the model handles, not mismatched. Every tabular modality the model reads is matched
    against its own features; the lead report is the first signal modality's (cardio's ECG)."""
    report = _new_report(spec, f"case {case.case_id}")
    declared = set(case.modality_names)
    for modality in of_kind(spec.modalities, "tabular"):
        values = case.value(modality.name) if modality.name in declared else None
        if values is None:
            continue
        features = spec.features_of(modality.name)
        names = list(values)
        wanted = {f.name: f for f in features}
        matched = [f.name for f in features if f.name in values]
        report.matched += matched
        report.unmatched += [f.name for f in features if f.name not in values]
        report.extra += [n for n in names if n not in wanted]
        report.not_measured += [n for n in matched if _is_missing(values[n])]
        for name in matched:
            _check_value(report, wanted[name], values[name])
        if features and not matched:
            report.unusable[modality.name] = (
                f"none of its {len(names)} value(s) ({_some(names)}) is a feature the model reads "
                f"({_some([f.name for f in features])})"
            )
    ignored = case.meta.get("ignored_columns") or {}
    report.extra += [c for c in ignored if c not in report.extra]
    report.undescribed = list(ignored)

    reader_lead_issues: list[str] = []
    signals = of_kind(spec.modalities, "signal")
    for k, modality in enumerate(signals):
        signal = case.value(modality.name) if modality.name in declared else None
        if signal is None:
            continue
        signal_file = str(case.meta.get(modality.file_column, ""))
        match = match_leads(signal.channels, spec.leads)
        if k == 0:
            report.leads = {
                "found": [lead for lead in spec.leads if lead in match.rows],
                "missing": [lead for lead in spec.leads if lead not in match.rows],
                "unmapped": list(match.unmapped) + list(match.duplicates),
            }
        reason = unusable_signal_reason(signal, spec.leads)
        if reason is not None:
            report.unusable[modality.name] = f"{signal_file}: {reason}" if signal_file else reason
        else:
            report.short_recordings += int(signal.duration_s < spec.signal_seconds - 1e-6)
        # The reader's lead issues are against the standard leads; the report's against the model's.
        reader_lead_issues += lead_issues(signal, STANDARD_LEADS, where=signal_file)
    report.notes += [issue for issue in case.issues if issue not in reader_lead_issues]
    return report


def cohort_input_report(
    spec: InputSpec, cohort: CohortReader, case_reports: Iterable[InputReport] | None = None
) -> InputReport:
    """What the model can use of a cohort's table: columns, kinds and categories (from ``cohort.csv`` and
    ``features.csv``, without reading any case file). Pass the per-case reports (e.g. gathered by
    ``check_cohort(root, on_case=...)``) to add what the signal files hold."""
    report = _new_report(spec, str(cohort.root / COHORT_CSV))
    declared = set(cohort.modality_names)
    for modality in spec.modalities:
        if modality.name not in declared:
            report.unusable[modality.name] = (
                f"the cohort declares no modality '{modality.name}' (it declares {', '.join(cohort.modality_names)}); "
                f"the model treats it as missing")
    columns = cohort.features
    report.matched = [f.name for f in spec.features if f.name in columns]
    report.unmatched = [f.name for f in spec.features if f.name not in columns]
    report.extra = [c for c in columns if c not in {f.name for f in spec.features}]
    report.extra += list(cohort.extra_columns)
    report.undescribed = list(cohort.extra_columns)
    for feature in spec.features:
        if feature.name in columns:
            _check_column(report, feature, columns[feature.name], cohort)
    for modality in of_kind(spec.modalities, "tabular"):
        features = spec.features_of(modality.name)
        if features and columns and not any(f.name in columns for f in features):
            report.unusable.setdefault(modality.name, (
                f"none of the cohort's {len(columns)} tabular column(s) is a feature the model reads "
                f"({_some([f.name for f in features])})"
            ))
    if case_reports is not None:
        _add_case_leads(report, list(case_reports), spec)
    return report


# ---------------------------------------------------------------------------------------------- helpers
def _new_report(spec: InputSpec, scope: str) -> InputReport:
    signal = first_of_kind(spec.modalities, "signal")
    return InputReport(
        scope=scope,
        modalities=[m.name for m in spec.modalities],
        signal_name=signal.name if signal else "signal",
        expected_categories={f.name: list(f.categories) for f in spec.categorical_features},
        model_leads=list(spec.leads),
        window_seconds=float(spec.signal_seconds),
    )


def _names(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _some(names: list[str], limit: int = 8) -> str:
    return _names(names[:limit]) + (", ..." if len(names) > limit else "")


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _check_value(report: InputReport, feature: FeatureSpec, value) -> None:
    if _is_missing(value):
        return
    if feature.kind == "categorical" and value not in feature.categories:
        if isinstance(value, str):
            report.unknown_categories.setdefault(feature.name, []).append(value)
        else:
            report.wrong_kind[feature.name] = (
                f"the model reads it as categories ({', '.join(feature.categories)}) but the case holds {value!r}")
    elif feature.kind == "numeric" and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            report.wrong_kind[feature.name] = f"the model reads it as a number but the case holds {value!r}"


def _check_column(report: InputReport, feature: FeatureSpec, column: FeatureSpec, cohort: CohortReader) -> None:
    if feature.kind == "categorical" and column.kind == "categorical":
        unknown = [c for c in column.categories if c not in feature.categories]
        present = set(cohort.table[feature.name].dropna())
        unknown = [c for c in unknown if c in present]
        if unknown:
            report.unknown_categories[feature.name] = unknown
    elif feature.kind != column.kind:
        report.wrong_kind[feature.name] = (
            f"the model reads it as {_kind(feature)} but {FEATURES_CSV} describes it as {_kind(column)}; "
            f"describe it as the model does"
        )


def _kind(feature: FeatureSpec) -> str:
    return f"categories ({', '.join(feature.categories)})" if feature.kind == "categorical" else "a number"


def _add_case_leads(report: InputReport, reports: list[InputReport], spec: InputSpec) -> None:
    name = report.signal_name
    recorded = [r for r in reports if r.leads["found"] or r.leads["unmapped"] or name in r.unusable]
    found = {lead for r in recorded for lead in r.leads["found"]}
    report.leads = {
        "found": [lead for lead in spec.leads if lead in found],
        "missing": [lead for lead in spec.leads if lead not in found] if found else [],
        # channels of unusable recordings are named in that reason, not again here
        "unmapped": sorted({c for r in recorded if name not in r.unusable for c in r.leads["unmapped"]}),
    }
    unusable = [r for r in recorded if name in r.unusable]
    if unusable:
        ids = ", ".join(r.scope.removeprefix("case ") for r in unusable[:5]) + (", ..." if len(unusable) > 5 else "")
        report.unusable[name] = (
            f"in {len(unusable)} of {len(recorded)} case(s) with a recording ({ids}) no channel is a lead the "
            f"model reads; e.g. {unusable[0].unusable[name]}"
        )
    report.short_recordings = sum(r.short_recordings for r in recorded)
