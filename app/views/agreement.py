"""Rater agreement: Kendall tau-b between the model's modality ranking and raters' rankings, per case, per
class and overall, against the inter-rater ceiling and the synthetic ground truth. The raters are named for
what they are: "simulated raters" for a synthetic cohort's bundled rankings, the raters' names for others."""

from __future__ import annotations

import math

import streamlit as st

from app import figures
from app.state import Context, context
from explain.cohort import CohortImportance, clinician_agreement, cohort_importance, ground_truth_agreement
from neurofusion.data.annotations import read_rankings
from neurofusion.data.errors import CohortError

MAX_UPLOAD_MB = 5  # a rankings file is a few hundred bytes per case and rater: 5 MB is ~50,000 rankings

@st.cache_data(show_spinner="Computing modality importance for the ranked cases...", max_entries=16)
def _importance(_ctx: Context, model_key: str, cases_key: str, case_ids: tuple[str, ...]) -> CohortImportance:
    return cohort_importance(_ctx.predictor, [_ctx.cohort[i] for i in case_ids])


ctx = context()
title = st.empty()  # names the raters once it is known whose rankings these are
title.title("Rater agreement")
st.caption("Does the model rank the modalities the way the raters do? Kendall tau-b: 1 = same order, "
           "0 = unrelated, −1 = reversed, over the modalities both ranked.")

source = st.radio("Rankings", ("bundled with the cohort", "upload a CSV"), key="agreement.source", horizontal=True)
rankings = None
if source == "upload a CSV":
    upload = st.file_uploader("clinician_rankings.csv: case_id, rater, image, text, signal, tabular (1 = most "
                              "important; blank if the case lacks the modality)", type="csv", key="agreement.upload",
                              max_upload_size=MAX_UPLOAD_MB)
    if upload is not None:
        try:  # parsed in memory: the client-supplied name only labels messages, it is never a path
            rankings = read_rankings(upload.getvalue(), name=upload.name, cohort=ctx.cohort)
        except CohortError as err:
            st.error(f"The uploaded rankings were not used: {err}")
else:
    try:
        rankings = ctx.cohort.rankings()
    except CohortError as err:
        st.error(f"The cohort's rankings file is invalid: {err}")
    if rankings is None:
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
    st.caption("These raters are simulated (Mallows-model readings of the planted truth), not clinicians.")

method = st.radio("Model ranking from", ("shapley", "leave_one_out", "attention"), key="agreement.method",
                  horizontal=True, format_func=lambda m: m.replace("_", "-").capitalize())
case_ids = tuple(ctx.readable_ids(sorted(set(rankings["case_id"]))))
if not case_ids:
    st.info("None of the ranked cases can be read.")
    st.stop()
rankings = rankings[rankings["case_id"].isin(case_ids)]
importance = _importance(ctx, ctx.model_key, ctx.cases_key, case_ids)
if method not in importance.methods:
    st.info("This model has no attention; choose Shapley or leave-one-out.")
    st.stop()
result = clinician_agreement(importance, rankings, method)
summary, ceiling = result["summary"], result["inter_rater"]

overall = summary.loc["all"]
c1, c2, c3 = st.columns(3)
c1.metric(f"Mean tau, model vs {raters}", f"{overall['mean']:.3f}")
c1.caption(f"95 % CI {overall['ci_low']:.3f} to {overall['ci_high']:.3f} (bootstrap over cases)")
between_raters = ceiling["mean_pairwise_tau"]["mean"]
between_raters = None if math.isnan(between_raters) else between_raters  # NaN: no case has two raters
c2.metric("Inter-rater ceiling (mean pairwise tau)", "n/a" if between_raters is None else f"{between_raters:.3f}")
c3.metric("Kendall's W (raters' concordance)",
          "n/a" if math.isnan(ceiling["kendalls_w"]) else f"{ceiling['kendalls_w']:.3f}")
if between_raters is None:
    c2.caption("Needs cases ranked by at least two raters.")

st.plotly_chart(figures.tau_histogram(result["per_pair"], between_raters, raters), key="agreement.hist")
table = summary.reset_index().rename(columns={"group": "class"})
st.dataframe(table, hide_index=True, key="agreement.summary",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("mean", "ci_low", "ci_high")})

try:
    truth = ctx.cohort.ground_truth()
except CohortError as err:
    truth = None
    st.error(f"The cohort's ground_truth.csv was not used: {err}")
if truth is not None:
    st.markdown("**Against the synthetic ground truth** (how strongly each modality expresses the label)")
    st.dataframe(ground_truth_agreement(importance, truth).reset_index(), hide_index=True, key="agreement.truth")

st.markdown("**Per case and rater** (select a row to open the case)")
per_pair = result["per_pair"].sort_values("tau")
selection = st.dataframe(per_pair, hide_index=True, on_select="rerun", selection_mode="single-row",
                         key="agreement.table")
rows = selection.selection.rows if selection is not None else []
if rows:
    chosen = per_pair.iloc[rows[0]]["case_id"]
    if st.button(f"Open {chosen} in the case explorer", key="agreement.open", icon=":material/open_in_new:"):
        st.switch_page("views/case_explorer.py", query_params={"case": chosen})
