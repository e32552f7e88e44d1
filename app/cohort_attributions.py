"""Across a cohort, which labs, note words and ECG leads (and each declared modality's items) push the model
toward each predicted class: every case's stored attribution table (``python -m explain cohort --out STORE
--attributions``, columns :data:`explain.attribution_table.ATTRIBUTION_COLUMNS`) summarised per part, class
and item, a heatmap of the strongest items and the summary as CSV. Pure functions, then the cohort page's
section (the only Streamlit code here)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.figures import ATTENTION_SCALE, DIVERGING, finish, pretty
from app.store_state import StoreLookup, ids_digest, store_stamp
from explain.store import StoreError

REQUIRED = ("case_id", "explained_class", "part", "item", "value")
SUMMARY_COLUMNS = ("part", "group", "item", "method", "n_cases", "cases_in_group", "mean", "share_positive",
                   "mean_abs", "rank")
# modality importance is the page's own figure; a signal's "top k" segments are not the same item across cases
_SKIPPED = ("modality_importance",)
_NOT_COMPARABLE = ("_segment",)
_PUNCTUATION_ONLY = r"[\W_]*"  # fullmatch: nothing but punctuation, symbols or spaces (or empty)
MIN_CASES = 5  # default: a note word is ranked only when this many cases of the group have it
TOP_ITEMS = 12  # default: items per group in the heatmap (the union over the groups is drawn)
_CARDIO_LABELS = {"lab": "Labs and demographics", "note_word": "Note words", "ecg_lead": "ECG leads"}
_KIND_SUFFIXES = {"_word": "words", "_lead": "leads", "_value": "values"}
COMMAND = "python -m explain cohort --out STORE --attributions"
DEFAULTS = {"cohort.attr_by_true": False, "cohort.attr_min_cases": MIN_CASES, "cohort.attr_top": TOP_ITEMS}


class AttributionTableError(ValueError):
    """The stored attribution table cannot be summarised: the message says what is wrong and where."""


def is_word_part(part: str) -> bool:
    """Note words: cardio's ``note_word`` and any declared text modality's ``<name>_word``."""
    return part == "note_word" or part.endswith("_word")


def is_share_part(part: str) -> bool:
    """Signal leads (cardio's ``ecg_lead``, any declared signal's ``<name>_lead``): each lead's share of the
    signal's total |attribution| in the case (explain.signal: unsigned, a case's leads sum to 1), where the
    model looked on the signal, not which way it pushed."""
    return part == "ecg_lead" or part.endswith("_lead")


def share_units(part: str, titles: Mapping[str, str] | None = None) -> str:
    """The units of a lead part's values: '(share of the ECG's |attribution|)'."""
    name = "ECG" if part == "ecg_lead" else (titles or {}).get(part[: -len("_lead")]) or part[: -len("_lead")]
    return f"(share of the {name}'s |attribution|)"


def summarised_parts(parts: Sequence[str]) -> list[str]:
    """The parts of a table the view ranks, in their order: every one but modality importance and signal
    segments."""
    return [p for p in dict.fromkeys(parts) if p not in _SKIPPED and not p.endswith(_NOT_COMPARABLE)]


def part_label(part: str, titles: Mapping[str, str] | None = None) -> str:
    """'lab' -> 'Labs and demographics', 'treatment_notes_word' -> 'Treatment notes words' (the modality's
    declared title when ``titles`` {name: title} has it)."""
    if part in _CARDIO_LABELS:
        return _CARDIO_LABELS[part]
    for suffix, kind in _KIND_SUFFIXES.items():
        if part.endswith(suffix):
            name = part[: -len(suffix)]
            title = (titles or {}).get(name) or name.replace("_", " ").capitalize()
            return f"{title} {kind}"
    return part.replace("_", " ").capitalize()


def _values(table: pd.DataFrame) -> pd.Series:
    """The value column as floats, NaN where it is empty (an unmeasured lab, an unrecorded lead); anything
    else that is not a finite number is an error naming the rows."""
    raw = table["value"]
    if pd.api.types.is_numeric_dtype(raw):  # as the store reads it: only NaN and infinities to check
        values = raw.astype(float)
        blank = values.isna()
    else:  # e.g. read from the CSV: empty strings for unmeasured items
        values = pd.to_numeric(raw, errors="coerce").astype(float)
        blank = raw.isna() | raw.astype(str).str.strip().eq("")
    bad = (values.isna() & ~blank) | np.isinf(values)
    if bad.any():
        rows = table.loc[bad, ["case_id", "part", "item"]].head(3).to_dict("records")
        raise AttributionTableError(f"the attribution table's value column must hold numbers (or be empty for "
                                    f"an unmeasured item): {int(bad.sum())} row(s) hold {raw[bad].iloc[0]!r} "
                                    f"or similar, e.g. {rows}")
    return values


def _explained(table: pd.DataFrame) -> pd.Series:
    """Each row's explained class ('A − B' for a contrast)."""
    explained = table["explained_class"].astype(str)
    if "contrast_class" not in table.columns:
        return explained
    codes, names = pd.factorize(table["contrast_class"].fillna("").astype(str))
    names = pd.Index(names).str.strip()
    if (names == "").all():
        return explained
    contrast = pd.Series(np.asarray(names, dtype=object)[codes], index=table.index)
    return explained.where(contrast.eq(""), explained + " − " + contrast)


def summarise(table: pd.DataFrame, min_cases: int = MIN_CASES,
              groups: Mapping[str, str] | pd.Series | None = None) -> pd.DataFrame:
    """Per part, group and item over the cases of the group that have the item: ``n_cases``, the signed
    ``mean`` attribution (+ raises the explained value), ``share_positive`` (cases where it is > 0),
    ``mean_abs`` (mean |attribution|), ``cases_in_group`` and ``rank`` within the part and group (1 = the
    highest mean), rows in that order, parts as the table first has them (columns :data:`SUMMARY_COLUMNS`).

    ``table``: the stored attribution rows of many cases. A group is each case's explained class (its
    predicted class, or a survival model's quantity), or ``groups[case_id]`` (e.g. the true class: a case it
    does not name is left out). Modality importance and signal segments are not ranked; an empty value (an
    unmeasured lab, an unrecorded lead) is not a case that has the item. Note words are case-folded,
    punctuation-only tokens dropped, a word's attribution in a case is the sum over its occurrences, and a
    word is ranked only where at least ``min_cases`` cases of the group have it."""
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise AttributionTableError(f"the attribution table lacks the column(s) {missing}; expected those of "
                                    "explain.attribution_table.ATTRIBUTION_COLUMNS")
    if isinstance(min_cases, bool) or not isinstance(min_cases, (int, np.integer)) or min_cases < 1:
        raise AttributionTableError(f"min_cases must be a whole number >= 1, got {min_cases!r}")
    # Everything is grouped on integer codes: the string columns of a 20,000-case store hold millions of rows but
    # a few thousand distinct values, which are cleaned once each (strip, case-fold, punctuation) instead
    case_codes, case_names = pd.factorize(table["case_id"].astype(str))
    part_codes, part_names = pd.factorize(table["part"].astype(str))
    if groups is None:
        group_codes, group_names = pd.factorize(_explained(table))
    else:  # -1: a case ``groups`` does not name
        case_group_codes, group_names = pd.factorize(pd.Index(case_names).map(pd.Series(groups, dtype=object)))
        group_codes = case_group_codes[case_codes]
    method = table["method"] if "method" in table.columns else pd.Series("", index=table.index)
    method_codes, method_names = pd.factorize(method.fillna("").astype(str))
    item_codes, raw_items = pd.factorize(table["item"].fillna("").astype(str))
    plain = pd.Index(raw_items).str.strip()
    folded = plain.str.casefold()
    items, item_ids = np.unique(np.concatenate([plain.to_numpy(dtype=str), folded.to_numpy(dtype=str)]),
                               return_inverse=True)
    part_is_word = np.array([is_word_part(p) for p in part_names], dtype=bool)
    word_row = part_is_word[part_codes]
    punctuation = np.asarray(folded.str.fullmatch(_PUNCTUATION_ONLY), dtype=bool)
    values = _values(table).to_numpy()
    grouped = group_codes >= 0
    case_group = np.full(len(case_names), -1, dtype=np.int64)  # a case's rows all explain one class
    case_group[case_codes] = group_codes
    sizes = pd.Series(np.bincount(case_group[case_group >= 0], minlength=len(group_names)))  # cases per group
    kept = (grouped & np.isin(part_names, summarised_parts(part_names))[part_codes] & ~np.isnan(values)
            & ~(word_row & punctuation[item_codes]))
    # one int64 key per (part, group, item) cell and one per (cell, case); sums by bincount (pandas' groupby on
    # four keys takes seconds at this size)
    n_groups, n_items, n_cases = max(len(group_names), 1), len(items), max(len(case_names), 1)
    cell = (part_codes[kept].astype(np.int64) * n_groups + group_codes[kept]) * n_items + \
        item_ids[item_codes[kept] + len(plain) * word_row[kept]]  # a word's item: its case-folded form
    case_codes_of, case_keys = pd.factorize(cell * n_cases + case_codes[kept])
    per_case = np.bincount(case_codes_of, weights=values[kept], minlength=len(case_keys))
    method_of = np.zeros(len(case_keys), dtype=np.int64)
    method_of[case_codes_of] = method_codes[kept]
    cell_codes, cells = pd.factorize(case_keys // n_cases)
    n = np.bincount(cell_codes, minlength=len(cells))
    methods = np.zeros(len(cells), dtype=np.int64)
    methods[cell_codes] = method_of
    summary = pd.DataFrame({
        "part": cells // (n_groups * n_items), "group": (cells // n_items) % n_groups, "item": cells % n_items,
        "method": methods, "n_cases": n, "mean": np.bincount(cell_codes, weights=per_case, minlength=len(cells)) / n,
        "share_positive": np.bincount(cell_codes, weights=per_case > 0, minlength=len(cells)) / n,
        "mean_abs": np.bincount(cell_codes, weights=np.abs(per_case), minlength=len(cells)) / n})
    summary = summary[~part_is_word[summary["part"]] | (summary["n_cases"] >= min_cases)].copy()
    summary["cases_in_group"] = summary["group"].map(sizes).astype(int)
    summary["order"] = summary["part"]  # codes in the table's order of parts
    summary["part"] = np.asarray(part_names, dtype=object)[summary["part"]]
    summary["group"] = np.asarray(group_names, dtype=object)[summary["group"]]
    summary["item"] = items.astype(object)[summary["item"]]
    summary["method"] = np.asarray(method_names, dtype=object)[summary["method"]]
    summary = summary.sort_values(["order", "group", "mean"], ascending=[True, True, False], kind="stable")
    summary["rank"] = summary.groupby(["part", "group"]).cumcount() + 1
    return summary[list(SUMMARY_COLUMNS)].reset_index(drop=True)


def ordered_groups(groups: Sequence[str], order: Sequence[str] = ()) -> list[str]:
    """The groups present, those named in ``order`` (e.g. the checkpoint's classes) first in that order."""
    present = list(dict.fromkeys(groups))
    return [g for g in order if g in present] + sorted(g for g in present if g not in order)


def top_items(summary: pd.DataFrame, part: str, top: int = TOP_ITEMS) -> list[str]:
    """The union over the groups of each group's ``top`` items of ``part`` by mean |attribution|, strongest
    first (by its largest mean |attribution| in any group)."""
    rows = summary[summary["part"] == part]
    chosen = rows.sort_values("mean_abs", ascending=False, kind="stable").groupby("group", sort=False).head(top)
    strength = rows[rows["item"].isin(chosen["item"])].groupby("item")["mean_abs"].max()
    return strength.sort_values(ascending=False, kind="stable").index.tolist()


def attribution_heatmap(summary: pd.DataFrame, part: str, units: str, top: int = TOP_ITEMS,
                        order: Sequence[str] = (), title: str = "") -> go.Figure:
    """Items (rows: the union of each group's ``top`` by mean |attribution|) x groups (columns), each cell the
    mean signed attribution in ``units``, diverging colours centred at 0, hover with n and the share
    positive; blank where no case of the group has the item (or a word is in too few cases)."""
    rows = summary[summary["part"] == part]
    if rows.empty:
        raise ValueError(f"the summary has no rows of part {part!r} (parts: {sorted(summary['part'].unique())})")
    items = top_items(summary, part, top)
    groups = ordered_groups(rows["group"], order)
    cells = rows.set_index(["item", "group"])
    index = pd.MultiIndex.from_product([items, groups])
    mean = cells["mean"].reindex(index).to_numpy(dtype=float).reshape(len(items), len(groups))
    n = cells["n_cases"].reindex(index).to_numpy(dtype=float).reshape(len(items), len(groups))
    share = cells["share_positive"].reindex(index).to_numpy(dtype=float).reshape(len(items), len(groups))
    finite = np.abs(mean[np.isfinite(mean)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    z = [[None if np.isnan(v) else float(v) for v in row] for row in mean]
    custom = np.dstack([np.nan_to_num(n, nan=0).astype(int), np.nan_to_num(share, nan=0.0)])
    if is_share_part(part):  # unsigned shares: a sequential scale from 0, no "positive in"
        scale = dict(colorscale=ATTENTION_SCALE, zmin=0.0, zmax=limit)
        hover = "<b>%{y}</b> · %{x}<br>mean %{z:.3f} " + units + "<br>n = %{customdata[0]} cases<extra></extra>"
    else:
        scale = dict(colorscale=DIVERGING, zmin=-limit, zmax=limit, zmid=0)
        hover = ("<b>%{y}</b> · %{x}<br>mean %{z:+.4g} " + units + "<br>n = %{customdata[0]} cases, "
                 "positive in %{customdata[1]:.0%}<extra></extra>")
    fig = go.Figure(go.Heatmap(
        z=z, x=groups, y=items, customdata=custom, **scale, xgap=1, ygap=1, hoverongaps=False,
        colorbar=dict(title=dict(text=f"Mean<br>{units}", side="top"), thickness=10), hovertemplate=hover))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", title=None, tickvals=groups, ticktext=[pretty(g) for g in groups])
    return finish(fig, title, height=140 + 22 * len(items))


def summary_csv(summary: pd.DataFrame) -> bytes:
    """The summary as UTF-8 CSV (every part and group)."""
    buffer = io.StringIO()
    summary.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


def units_label(survival: bool, contrast: bool = False) -> str:
    """What the attribution values are: the explained class's logit (attributions are taken on logits,
    explain/_forward.py), a logit difference for a contrast, or a survival quantity's probability."""
    if survival:
        return "(probability units)"
    return "(logit difference)" if contrast else "(logit units)"


# ------------------------------------------------------------------------------------------ the page's section
@st.cache_data(show_spinner="Summarising the cohort's stored attributions...", max_entries=8)
def _stored_summary(_stored: StoreLookup, path: str, stamp: tuple, ids_key: str, _ids: tuple[str, ...],
                    groups_key: str, _labels: pd.Series | None, min_cases: int) -> pd.DataFrame | None:
    table = _stored.attributions(_ids)
    return None if table is None else summarise(table, min_cases, _labels)


def attribution_section(stored: StoreLookup, ids: Sequence[str], *, survival: bool,
                        labels: pd.Series | None = None, order: Sequence[str] = (),
                        titles: Mapping[str, str] | None = None) -> None:
    """The cohort page's section: per part, the items that push the model toward each predicted class (a
    survival model: its quantity), read from the explanation store, never computed here (hours for a large
    cohort): without stored attributions a caption says how to write them. ``labels`` {case_id: true class}
    offers grouping by the true class; ``order``: the classes' order; ``titles``: the modalities' titles."""
    st.subheader("Which items push the model, across the cohort")
    ids = tuple(ids)
    if stored.store is None or stored.missing(ids):
        st.caption("Which labs, note words and ECG leads push the model across the cohort is read from a "
                   "precomputed explanation store with attributions of every case shown, never computed here (hours "
                   f"for a large cohort): write one with `{COMMAND}` (and --checkpoint, --data).")
        return
    for key, value in DEFAULTS.items():  # once per session: the widgets then take their values from the state
        st.session_state.setdefault(key, value)
    by_true = labels is not None and st.toggle("By true class", key="cohort.attr_by_true",
                                               help="Group the cases by their recorded class instead of the "
                                                    "predicted one; the values still explain each case's "
                                                    "predicted class.")
    min_cases = int(st.number_input("Note words: ranked when at least this many cases of a group have them",
                                    min_value=1, step=1, key="cohort.attr_min_cases"))
    groups = None
    if by_true:
        known = labels.dropna().astype(str)
        groups = known[known.index.isin(ids) & known.str.strip().ne("")]
        if len(groups) < len(ids):
            st.caption(f"{len(ids) - len(groups)} case(s) without a recorded class are left out.")
    try:
        summary = _stored_summary(stored, str(stored.path), store_stamp(stored.path), ids_digest(ids), ids,
                                  ids_digest([f"{k}={v}" for k, v in groups.items()]) if groups is not None else "",
                                  groups, min_cases)
    except (AttributionTableError, StoreError) as err:
        st.error(f"The stored attributions cannot be summarised: {err}. Rewrite them with `{COMMAND}`.")
        return
    if summary is None:
        st.caption(f"The explanation store {stored.path} holds no per-item attributions: add them with "
                   f"`python -m explain cohort --out {stored.path} --attributions` (and the --checkpoint, --data it "
                   "was written with; its other files are kept) to see which labs, note words and leads push the "
                   "model across the cohort.")
        return
    if summary.empty:
        st.info("No stored attribution of these cases can be ranked (no lab, note word in enough cases or "
                "recorded lead).")
        return
    parts = summarised_parts(summary["part"])
    part = st.radio("Attributions of", parts, key="cohort.attr_part", horizontal=True,
                    format_func=lambda p: part_label(p, titles))
    top = int(st.number_input("Items per group in the heatmap", min_value=1, max_value=50, step=1,
                              key="cohort.attr_top"))
    contrast = summary["group"].str.contains(" − ", regex=False).any() and not by_true
    shares = is_share_part(part)
    units = share_units(part, titles) if shares else units_label(survival, contrast)
    explained = ("the predicted quantity" if survival else
                 "each case's predicted class" if by_true else "the predicted class")
    by = "true class" if by_true else ("quantity" if survival else "predicted class")
    st.plotly_chart(attribution_heatmap(summary, part, units, top, order,
                                        f"{part_label(part, titles)}: mean attribution to {explained} by {by}"),
                    key="cohort.attr_heatmap")
    value = (f"a change in the predicted probability ({', '.join(summary['group'].unique())})" if survival else
             "a change in the logit (log-odds) of " + explained)
    meaning = (f"the mean share of the signal's total |attribution| that falls on the lead, over the cases of the "
               f"{by} that have it (unsigned: where the model looked, not which way it pushed; a case's leads sum "
               "to 1)" if shares else
               f"the mean attribution of the item over the cases of the {by} that have it, {value}; red raises it, "
               "blue lowers it")
    st.caption(f"Each cell: {meaning}; blank: no case of the group has it" +
               (f" or fewer than {min_cases} do (note words)" if is_word_part(part) else "") +
               ". Rows: each group's strongest items by mean |attribution|. Note words are case-folded, "
               "punctuation dropped, a word's attribution in a case summed over its occurrences. "
               + ("Cases of a true class were predicted as different classes: each value still pushes toward its "
                  "own case's prediction. " if by_true else "")
               + stored.caption)
    shown = summary[summary["part"] == part].drop(columns=["part", "share_positive"] if shares else "part")
    st.dataframe(shown, hide_index=True, key="cohort.attr_table",
                 column_config={"group": st.column_config.TextColumn(by.capitalize()),
                                "n_cases": st.column_config.NumberColumn("Cases with it"),
                                "cases_in_group": st.column_config.NumberColumn("Cases in group"),
                                "mean": st.column_config.NumberColumn(f"Mean {units}", format="%+.4g"),
                                "share_positive": st.column_config.NumberColumn("Share positive", format="%.2f"),
                                "mean_abs": st.column_config.NumberColumn(f"Mean |attribution| {units}",
                                                                          format="%.4g")})
    st.download_button("Download the summary (CSV, every part)", summary_csv(summary),
                       file_name="cohort_attributions.csv", mime="text/csv", key="cohort.attr_download")
