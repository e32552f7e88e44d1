"""Rater agreement: Kendall tau-b between the model's modality ranking and raters' rankings, per case, per
class (a survival model: per predicted risk group) and overall, against the inter-rater ceiling and the
synthetic ground truth, over the model's declared modalities. The raters are named for what they are:
"simulated raters" for a synthetic cohort's bundled rankings, the raters' names for others. On a
time-stamped (ICU) cohort the ranked cases are samples (a stay as of an hour, "ICU-00012@24h"), grouped by
prediction hour, the model ranks the modalities by the size of their effect on the predicted risk, and the
synthetic ground truth is each modality's planted evidence as of the hour."""

from __future__ import annotations

import dataclasses
import functools
import math

import pandas as pd
import streamlit as st

from app import agreement_figures, agreement_study, figures
from app.export import research_export
from app.messages import show_errors
from app.state import Context, context
from app.survival_figures import RISK_GROUPS, by_risk_group
from explain.agreement import MIN_CASES_FOR_CI, compare_rankings, per_rater
from explain.cohort import CohortImportance, clinician_agreement, ground_truth_agreement
from neurofusion.data.annotations import display_name, read_rankings
from neurofusion.data.cohort import RANKINGS_CSV
from neurofusion.data.errors import CohortError
from neurofusion.data.synthetic.icu.raters import evidence_table
from neurofusion.survival import risk_groups

MAX_UPLOAD_MB = 5  # a rankings file is a few hundred bytes per case and rater: 5 MB is ~50,000 rankings
METHOD_LABELS = {"shapley": "Shapley", "leave_one_out": "Leave-one-out", "attention": "Attention",
                 "interaction_aware": "Interaction-aware"}


def _reason(reason: str | float | None) -> str:
    """A summary row's reason, "" when it has none (None, or NaN once a column mixes reasons and None)."""
    return "" if reason is None or (isinstance(reason, float) and math.isnan(reason)) else str(reason)


def _number(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.3f}"


def _ci(row: pd.Series) -> str:
    if any(pd.isna(row[k]) for k in ("ci_low", "ci_high")):
        return "—"
    return f"{row['ci_low']:.3f} to {row['ci_high']:.3f}"


def _summary_table(summary: pd.DataFrame, group: str = "Class") -> pd.DataFrame:
    """explain.agreement.summarize's table in words: group (class, risk group or prediction hour) names, one
    "95 % CI" column, "—" for nothing; a per-rater table (group "Rater") keeps the raters' names as written."""
    every = {"Class": "All classes", "Prediction hour": "All hours"}.get(group, "All cases")
    return pd.DataFrame({
        group: [str(g) if group == "Rater" else every if g == "all" else figures.pretty(str(g)) for g in summary.index],
        "Mean tau": [_number(v) for v in summary["mean"]],
        "95 % CI": [_ci(row) for _, row in summary.iterrows()],
        "Cases": summary["n_cases"].astype(int).to_numpy(),
        "Note": [_reason(reason) or (f"few cases (< {MIN_CASES_FOR_CI}): a rough CI" if n < MIN_CASES_FOR_CI else "—")
                 for reason, n in zip(summary["reason"], summary["n_cases"])],
    })


def _pair_table(per_pair: pd.DataFrame, group: str = "True class") -> pd.DataFrame:
    """One row per case and rater, sorted by tau (undefined last), every cell in words."""
    ordered = per_pair.sort_values("tau", na_position="last")
    return pd.DataFrame({
        "Case": ordered["case_id"].to_numpy(), "Rater": ordered["rater"].to_numpy(),
        group: ["not labelled" if pd.isna(v) else figures.pretty(str(v)) for v in ordered["label"]],
        "Kendall tau-b": ["— (fewer than two modalities ranked by both)" if pd.isna(t) else f"{t:+.3f}"
                          for t in ordered["tau"]],
        "Modalities compared": ordered["n_compared"].astype(int).to_numpy(),
    })


def _by_risk_group(ctx: Context, case_ids: tuple[str, ...]) -> CohortImportance:
    """A survival model's explanations of ``case_ids`` grouped by predicted risk group (tertiles of the risk
    1 - S(horizon) over these cases), each group explained as one cached call (the cohort page makes the same
    calls for the same cases)."""
    risk = ctx.predictions().set_index("case_id").loc[list(case_ids), "risk"].to_numpy(dtype=float)
    groups = risk_groups(risk)
    ids = pd.Series(case_ids)
    return by_risk_group({f"{g} risk": ctx.cohort_explanation(tuple(sorted(ids[groups == g])))
                          for g in RISK_GROUPS if (groups == g).any()})


def hour_group(hour: float) -> str:
    return f"{float(hour):g} h"


def _by_hour(ctx: Context, importance: CohortImportance) -> CohortImportance:
    """A time-stamped cohort's sample explanations grouped by prediction hour ("24 h"), ranked by magnitude:
    a risk model has no class each modality is evidence for, and the simulated ICU raters rank by how much
    each modality shows of the patient's course (the explanations are of the predicted class, whose effects in a
    two-class model are those on the risk with the sign flipped, so the magnitudes are the risk's)."""
    table = importance.table.copy()
    hours = ctx.cohort.table.set_index("case_id").loc[table["case_id"], "hour"].to_numpy(dtype=float)
    table["label"] = table["predicted"] = [hour_group(h) for h in hours]
    return dataclasses.replace(importance, table=table, attention=None, survival=True)


def _rankings_table(importance: CohortImportance, rankings: pd.DataFrame, truth: pd.DataFrame | None,
                    ceiling: dict) -> pd.DataFrame:
    """One row per ranking the model offers: mean tau vs the raters with its CI and as a share of the
    inter-rater ceiling, and vs the ground truth where there is one."""
    ranks = {METHOD_LABELS.get(m, m): importance.ranks(m) for m in importance.methods}
    table = compare_rankings(ranks, rankings, truth)
    share = table["raters_mean"] / ceiling["mean"] if ceiling["mean"] > 0 else table["raters_mean"] * float("nan")
    return pd.DataFrame({
        "Model ranking from": table.index,
        "Mean tau vs raters": table["raters_mean"].map(_number),
        "95 % CI": [_ci(pd.Series({"ci_low": lo, "ci_high": hi}))
                    for lo, hi in zip(table["raters_ci_low"], table["raters_ci_high"])],
        "Share of the ceiling": ["—" if pd.isna(x) else f"{x:.0%}" for x in share],
        "Mean tau vs ground truth": table["truth_mean"].map(_number),
        "Note": table["raters_reason"].fillna("—").to_numpy(),
    })


def _sample_truth(ctx: Context, truth: pd.DataFrame) -> pd.DataFrame:
    """The per-stay ICU ground truth as per-sample evidence strengths (strength_<modality> as of each prediction
    hour, neurofusion.data.synthetic.icu.raters.icu_evidence), blank where the sample lacks the modality."""
    strengths = evidence_table(truth.reset_index(), ctx.cohort.hours).set_index("case_id")
    present = ctx.cohort.table.set_index("case_id").reindex(strengths.index)
    for m in ctx.names:
        strengths.loc[~present[f"has_{m}"].fillna(False).astype(bool), f"strength_{m}"] = float("nan")
    return strengths.reset_index()


ctx = context()
title = st.empty()  # names the raters once it is known whose rankings these are
title.title("Rater agreement")
st.caption("Does the model rank the modalities the way the raters do? Kendall tau-b: 1 = same order, "
           "0 = unrelated, −1 = reversed, over the modalities both ranked.")

# Expert studies rank cases, not stays as of an hour: a time-stamped (ICU) cohort has no study to read.
SOURCES = ("bundled with the cohort", "upload a CSV") + (() if ctx.timed else ("an expert study",))
source = st.radio("Rankings", SOURCES, key="agreement.source", horizontal=True,
                  help="An expert study: the rankings raters submit on the Rate cases page, read live from the study "
                       "database.")
rankings, rankings_name, rankings_bytes, study = None, "", b"", None
if source == "an expert study":
    study = agreement_study.read_study(ctx)
    if study is not None:
        rankings, rankings_name, rankings_bytes = study.rankings, f"study: {study.study.name}", study.csv
        if rankings.empty:
            st.info(f"No rater has submitted a ranking in the study {study.study.name} yet.")
            st.stop()
elif source == "upload a CSV":
    upload = st.file_uploader(f"clinician_rankings.csv: case_id, rater, {', '.join(ctx.names)} (1 = most "
                              "important; blank if the case lacks the modality)", type="csv", key="agreement.upload",
                              max_upload_size=MAX_UPLOAD_MB)
    if upload is not None:
        try:  # parsed in memory: the client-supplied name only labels messages, it is never a path
            rankings = read_rankings(upload.getvalue(), name=upload.name, cohort=ctx.cohort)
            rankings_name, rankings_bytes = f"upload: {display_name(upload.name)}", upload.getvalue()
        except CohortError as err:
            show_errors("The uploaded rankings were not used", err)
else:
    try:
        rankings = ctx.cohort.rankings()
        if rankings is not None:
            rankings_name, rankings_bytes = RANKINGS_CSV, (ctx.cohort.root / RANKINGS_CSV).read_bytes()
    except CohortError as err:
        show_errors("The cohort's rankings file is invalid", err)
    if rankings is None and ctx.timed:
        st.info(f"The bundled cohort folder ({ctx.cohort.root.name}) has no clinician_rankings.csv (one ranking per "
                "sample, a stay as of an hour such as ICU-00012@24h, and rater). Choose “upload a CSV” above to "
                "compare the model with your own raters.")
    elif rankings is None:
        st.info("This cohort has no usable clinician_rankings.csv; upload one to compare.")
if rankings is None:
    st.stop()
if rankings.empty:
    st.info("The rankings file has no rankings in it.")
    st.stop()
# Only the rankings bundled with a synthetic cohort are known to be simulated; an upload is whoever it names.
simulated = source == "bundled with the cohort" and bool(ctx.cohort.info.get("synthetic"))
raters = figures.rater_group(rankings["rater"], simulated)
title.title(f"Agreement with {raters}")
if simulated:
    st.caption("These raters are simulated (noisy readings of the planted truth, each with its own lean, calibrated "
               "to an assumed expert inter-rater tau of 0.60), not clinicians.")

method = st.radio("Model ranking from", tuple(METHOD_LABELS), key="agreement.method", horizontal=True,
                  format_func=METHOD_LABELS.get,
                  help="Interaction-aware: |Shapley value| + half the summed |pairwise Shapley interaction| of the "
                       "modality, so a modality that matters only together with another ranks as high as the pair.")
case_ids = tuple(ctx.readable_ids(sorted(set(rankings["case_id"]))))
if not case_ids:
    st.info("None of the ranked cases can be read.")
    st.stop()
rankings = rankings[rankings["case_id"].isin(case_ids)]
if ctx.survival:
    importance = _by_risk_group(ctx, case_ids)
elif ctx.timed:
    importance = _by_hour(ctx, ctx.cohort_explanation(case_ids))
else:
    importance = ctx.cohort_explanation(case_ids)
group_name = "Risk group" if ctx.survival else "Prediction hour" if ctx.timed else "Class"
if ctx.timed:
    st.caption("Each ranked case is a sample: a stay as of a prediction hour. The model ranks the modalities by the "
               "size of their effect on the predicted risk of death within 48 h, whichever way it goes (a risk has "
               "no class to be evidence for); samples are grouped by prediction hour.")
if ctx.survival:
    st.caption(f"The model ranks the modalities by the size of their effect on the predicted {importance.explained}, "
               "whichever way it goes (a survival model has no class to be evidence for); cases are grouped by "
               "predicted risk group (tertiles of the predicted risk over the ranked cases).")
if method not in importance.methods:
    st.info("This model has no attention; choose another ranking." if method == "attention" else
            "Interactions are not computed for risk groups; choose another ranking.")
    st.stop()
result = clinician_agreement(importance, rankings, method)
summary, ceiling = result["summary"], result["inter_rater"]

overall, pairwise = summary.loc["all"], ceiling["mean_pairwise_tau"]
c1, c2, c3 = st.columns(3)
c1.metric(f"Mean tau, model vs {raters}", "n/a" if math.isnan(overall["mean"]) else f"{overall['mean']:.3f}")
c1.caption(_reason(overall["reason"]) or f"95 % CI {overall['ci_low']:.3f} to {overall['ci_high']:.3f} (bootstrap over "
           f"{overall['n_cases']} cases)")
defined = not math.isnan(pairwise["mean"])  # NaN: no case has two raters
c2.metric("Inter-rater ceiling (mean pairwise tau)", f"{pairwise['mean']:.3f}" if defined else "n/a")
if defined:
    c2.caption(f"95 % CI {pairwise['ci_low']:.3f} to {pairwise['ci_high']:.3f} (bootstrap over "
               f"{pairwise['n_cases']} cases)")
else:
    c2.caption("Needs cases ranked by at least two raters.")
c3.metric("Kendall's W (raters' concordance)",
          "n/a" if math.isnan(ceiling["kendalls_w"]) else f"{ceiling['kendalls_w']:.3f}")
few = [("all cases" if g == "all" else figures.pretty(str(g)), int(n))
       for g, n in summary["n_cases"].items() if 0 < n < MIN_CASES_FOR_CI]
if defined and 0 < pairwise["n_cases"] < MIN_CASES_FOR_CI:
    few.append(("the inter-rater ceiling", int(pairwise["n_cases"])))
if few:
    st.warning(f"Confidence intervals from fewer than {MIN_CASES_FOR_CI} cases are rough (a bootstrap over a "
               "handful of cases understates the uncertainty): "
               + ", ".join(f"{name} (n = {n})" for name, n in few) + ".")

st.plotly_chart(agreement_figures.tau_histogram(result["per_pair"], raters, pairwise if defined else None),
                key="agreement.hist")
shown = summary
if ctx.survival:  # lowest risk first, as on the cohort page (summarize sorts the groups by name)
    shown = summary.reindex(["all"] + [g for g in (f"{r} risk" for r in RISK_GROUPS) if g in summary.index])
elif ctx.timed:  # hours in time order, not as text ("12 h" before "6 h")
    shown = summary.reindex(["all"] + [g for g in map(hour_group, ctx.cohort.hours) if g in summary.index])
st.dataframe(_summary_table(shown, group_name), hide_index=True, key="agreement.summary")
if rankings["rater"].nunique() > 1:
    st.markdown("**Per rater** (mean tau of the model against each rater, 95 % case-bootstrap CI)")
    st.dataframe(_summary_table(per_rater(result["per_pair"]), "Rater"), hide_index=True, key="agreement.raters")

if study is not None:
    compared = agreement_study.protocol_contrast(importance, study, method)
    if compared is not None:
        blind, seen = compared["first"], compared["second"]
        st.markdown("**Blinded vs unblinded** (raters who saw the model's output before ranking against those who "
                    "did not)")
        b1, b2, b3 = st.columns(3)
        b1.metric("Blinded: mean tau", _number(blind["mean"]))
        b1.caption(f"95 % CI {_ci(pd.Series(blind))}, {blind['n_cases']} cases")
        b2.metric("Unblinded: mean tau", _number(seen["mean"]))
        b2.caption(f"95 % CI {_ci(pd.Series(seen))}, {seen['n_cases']} cases")
        b3.metric("Difference (unblinded − blinded)", "n/a" if pd.isna(compared["difference"])
                  else f"{compared['difference']:+.3f}")
        b3.caption(compared["reason"] or f"95 % CI {compared['ci_low']:+.3f} to {compared['ci_high']:+.3f}: above "
                   "zero, seeing the model pulls the raters towards its ranking")

try:
    truth = ctx.cohort.ground_truth()
except CohortError as err:
    truth = None
    st.error(f"The cohort's ground_truth.csv was not used: {err}")
if truth is not None and ctx.timed:
    truth = _sample_truth(ctx, truth)
if truth is not None:
    st.markdown("**Against the synthetic ground truth** (how strongly each modality expresses the "
                + ("patient's course as of the hour)" if ctx.timed else "outcome)" if ctx.survival else "label)"))
    vs_truth = ground_truth_agreement(importance, truth).reset_index()
    st.dataframe(pd.DataFrame({
        "Model ranking from": vs_truth["method"].map(METHOD_LABELS).to_numpy(),
        "Mean tau vs ground truth": vs_truth["mean_tau"].to_numpy(), "Cases": vs_truth["cases"].to_numpy(),
        "Spearman (score vs strength)": vs_truth["spearman_score_vs_strength"].to_numpy(),
        "Note": vs_truth["reason"].fillna("—").to_numpy()}),
        hide_index=True, key="agreement.truth",
        column_config={c: st.column_config.NumberColumn(format="%.3f")
                       for c in ("Mean tau vs ground truth", "Spearman (score vs strength)")})

st.markdown(f"**Every ranking against the ceiling** (mean tau vs {raters}, 95 % case-bootstrap CI)")
st.dataframe(_rankings_table(importance, rankings, truth, pairwise), hide_index=True, key="agreement.rankings")

st.markdown("**Per case and rater** (select a row to open the case)")
per_pair = _pair_table(result["per_pair"], "Risk group (predicted)" if ctx.survival
                       else "Prediction hour" if ctx.timed else "True class")
selection = st.dataframe(per_pair, hide_index=True, on_select="rerun", selection_mode="single-row",
                         key="agreement.table")
rows = selection.selection.rows if selection is not None else []
if rows:
    chosen = per_pair.iloc[rows[0]]["Case"]
    if st.button(f"Open {chosen} in the case explorer", key="agreement.open", icon=":material/open_in_new:"):
        st.switch_page("views/case_explorer.py", query_params={"case": chosen})

st.markdown("**Research export**")
st.download_button(
    "Agreement, rankings, settings and hashes (zip)",
    # built when clicked (it hashes every file of the checkpoint and the cohort), from this run's results
    functools.partial(research_export, result, importance, rankings, raters=raters, simulated=simulated,
                      settings=ctx.settings, checkpoint_dir=ctx.checkpoint.path, cohort_dir=ctx.cohort.root,
                      rankings_name=rankings_name, rankings_bytes=rankings_bytes),
    file_name=f"agreement_{method}.zip", mime="application/zip", key="agreement.export", on_click="ignore",
    icon=":material/download:")
st.caption("One zip: the summary above and every (case, rater) tau with the model's and the rater's ranking "
           "(CSV and JSON), the explanation settings and importance method, and SHA-256 hashes of every file of "
           "the checkpoint and of the cohort, so a result can be traced to exactly what produced it.")
