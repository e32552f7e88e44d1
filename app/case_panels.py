"""The case explorer's modality tabs: one lazily drawn tab per declared modality, its panel chosen by kind
(an image with its saliency, grey or in colour; a note with highlighted words; an ECG printout with its
attribution; tabular values as attribution bars, or a 0/1 mutation panel as its mutated genes), each with
the planted ground truth when it is shown."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from app import case_figures, case_notes, figures, ground_truth_view
from app.case_progress import CaseJob
from app.figures import pretty
from explain.case import CaseExplanation
from explain.integrated import Completeness
from neurofusion.data.schema import Case

MODALITY_TAB = "case.modality_tab"
# Controls inside the lazily drawn modality tabs: kept while another tab is open (Streamlit drops the state of
# a widget that is not drawn in a run unless the script sets it again).
TAB_CONTROLS = ("case.opacity", "case.leads")
ECG_3X4, ECG_STACKED, ECG_FEW = "3 × 4 + rhythm strip", "12 leads stacked", "II, V1, V5"
ECG_VIEWS = (ECG_3X4, ECG_STACKED, ECG_FEW)
GENES_SHOWN_ABOVE = 0.01  # an unmutated gene is listed when |attribution| reaches this
COMPLETE_ENOUGH = 0.05  # a map whose relative completeness error is above this is shown with a warning


@dataclass(frozen=True)
class Declared:
    """The model's declared modalities as the tabs show them: names in order, {name: title}, {name: kind},
    and whether the model is a survival model (attributions then in units of the explained quantity)."""

    names: list[str]
    titles: dict[str, str]
    kinds: dict[str, str]
    survival: bool


def completeness_text(completeness: Completeness) -> tuple[str, bool]:
    """What a panel says under an Integrated Gradients map about how well it adds up (the relative completeness
    error: |sum of attributions - (f(case) - f(baseline))| / |f(case) - f(baseline)|), and whether that is within
    COMPLETE_ENOUGH (else the page shows it as a warning)."""
    error = completeness.relative_error
    complete = error <= COMPLETE_ENOUGH
    text = (f"Integrated Gradients with {completeness.n_steps} steps: the attributions add up to the change from the "
            f"baseline input to within {error:.1%} (relative completeness error).")
    if not complete:
        text += (f" Above {COMPLETE_ENOUGH:.0%}: the map is approximate; under Advanced in the sidebar, let the steps "
                 "run until each map adds up, or raise the steps, for one that adds up more closely.")
    return text, complete


def chart_key(kind_key: str, modality: str, kind: str) -> str:
    """cardio's chart keys for the modality named after its kind (case.image, ...), else per modality."""
    return kind_key if modality == kind else f"{kind_key}.{modality}"


def _absent(view: Declared, modality: str, status: dict[str, str], notes: case_notes.InputNotes, missing: str) -> None:
    """The panel of a modality the model did not see: unusable (and why) or missing."""
    if status[modality] == "unusable":
        st.warning(f"This case's {case_notes.modality_noun(modality, view.titles, view.kinds)} cannot be used: "
                   f"{notes.unusable[modality]}. The model used its learned 'missing' embedding instead.")
    else:
        st.info(missing)


def modality_panels(view: Declared, case: Case, explanation: CaseExplanation, status: dict[str, str],
                    notes: case_notes.InputNotes, truth: ground_truth_view.Planted | None, name: str,
                    job: CaseJob | None = None) -> None:
    """One lazy tab per declared modality, titled by its title; the open one draws its kind's panel,
    explaining ``name``. With ``job`` (the case's explanation while it is computed): a progress line above
    the tabs, and an open tab whose panel is not ready shows a progress bar until ``job`` draws it."""
    st.subheader("What each modality shows")
    if job is not None:
        job.status_line()
    suffix = {"used": "", "missing": " (missing)", "unusable": " (unusable)"}
    labels = [view.titles[m] + suffix[status[m]] for m in view.names]
    pending = [] if job is None else job.pending()
    # Lazy tabs: only the open tab is computed and sent (drawing all four made a case switch ~1 s slower in
    # the browser); opening another tab reruns the page from the explanation cache.
    for modality, tab in zip(view.names, st.tabs(labels, key=MODALITY_TAB, on_change="rerun")):
        if not tab.open:
            continue
        with tab:
            if modality not in pending:
                draw_panel(view, case, modality, explanation, status, notes, truth, name)
                continue
            slot = st.empty()
            ahead = pending.index(modality)
            when = ("is being computed" if ahead == 0 else
                    f"comes after {', '.join(view.titles[m] for m in pending[:ahead])}")
            slot.progress(0.0 if not job.total() else (job.total() - len(pending)) / job.total(),
                          text=f"The {view.titles[modality]} map {when}; it appears here when it is ready.")
            job.defer(slot, lambda whole, m=modality: draw_panel(view, case, m, whole, status, notes, truth, name),
                      modality)


def draw_panel(view: Declared, case: Case, modality: str, explanation: CaseExplanation, status: dict[str, str],
               notes: case_notes.InputNotes, truth: ground_truth_view.Planted | None, name: str) -> None:
    """One modality's panel (by its kind) with how well its Integrated Gradients map adds up."""
    _PANELS[view.kinds[modality]](view, case, modality, explanation, status, notes, truth, name)
    completeness = explanation.completeness.get(modality)
    if completeness is not None:
        text, complete = completeness_text(completeness)
        (st.caption if complete else st.warning)(text)


def _image_panel(view: Declared, case: Case, modality: str, explanation: CaseExplanation, status: dict[str, str],
                 notes: case_notes.InputNotes, truth: ground_truth_view.Planted | None, name: str) -> None:
    saliency = explanation.panels.get(modality)
    noun = case_notes.modality_noun(modality, view.titles, view.kinds)
    if saliency is None and modality in explanation.unexplained:
        st.info(f"No {noun.removesuffix(' image')} map for {name}: {explanation.unexplained[modality]}.")
        return
    if saliency is None:
        _absent(view, modality, status, notes,
                f"This case has no {noun}: the model used its learned 'missing image' embedding.")
        return
    st.session_state.setdefault("case.opacity", 0.45)  # not a default value too: TAB_CONTROLS sets the key
    opacity = st.slider("Overlay opacity", 0.0, 1.0, step=0.05, key="case.opacity")
    image = case.value(modality)
    if image.ndim == 3 and image.shape[0] == 3:  # a colour image: drawn in its own colours
        figure = case_figures.colour_overlay(image, saliency.map, opacity, explained=name, method=saliency.method,
                                             smooth=1.0, units="probability units" if view.survival else "logit units")
    else:
        grey = image if image.ndim == 2 else image[image.shape[0] // 2]
        figure = figures.image_overlay(grey, saliency.map, opacity, explained=name, method=saliency.method,
                                       smooth=1.0)
    if truth is not None and truth.roi is not None:
        ground_truth_view.mark_roi(figure, truth.roi)
        st.caption("Dashed green box: the region where the finding was planted (ground truth).")
    elif truth is not None:
        st.caption(f"Ground truth: no region of this {noun.removesuffix(' image')} carries the case's finding (it "
                   "is not planted here, or a distractor finding is stronger).")
    st.plotly_chart(figure, key=chart_key("case.image", modality, "image"))
    st.caption(f"Red: pixels that raise {name}; blue: pixels that lower it (Grad-CAM and "
               "attention show magnitude only). Change the method under Advanced in the sidebar.")


def _note_panel(view: Declared, case: Case, modality: str, explanation: CaseExplanation, status: dict[str, str],
                notes: case_notes.InputNotes, truth: ground_truth_view.Planted | None, name: str) -> None:
    note = explanation.panels.get(modality)
    text = case.value(modality)
    if note is None:
        _absent(view, modality, status, notes, f"This case has no {case_notes.modality_noun(modality, view.titles, view.kinds)}.")
        return
    scale = max((abs(w.score) for w in note.words), default=0.0)
    st.html(figures.note_legend_html(scale, name) + figures.note_html(text, note.words, scale))
    if note.layer != "word_embeddings":
        layer = note.layer.removeprefix("hidden_states[").removesuffix("]")
        st.caption(f"Attributed at the input of BERT layer {layer}: a word's colour is what its position's "
                   f"representation after {layer} layers contributes, which already carries the words around it, "
                   "not the word alone. Choose \"word embeddings\" under Advanced for what each word contributes "
                   "(slower).")
    if note.truncated:
        st.warning(f"The note is longer than the model reads: only the first {note.covered_chars} "
                   "characters were used (and highlighted).")
    top = pd.DataFrame([{"phrase": p.text, "score": round(p.score, 4)} for p in note.phrases[:8]])
    if not top.empty:
        st.markdown(f"**Phrases that moved {name} most**")
        st.dataframe(top, hide_index=True, key=chart_key("case.phrases", modality, "text"))
    if truth is not None:
        evidence = "the case's prognosis" if view.survival else pretty(case.label)
        st.markdown(f"**Planted phrases** (ground truth, evidence for {evidence}; attribution "
                    f"to {name} summed over their words)")
        if truth.phrases:
            st.dataframe(ground_truth_view.phrase_table(text, truth.phrases, note.words),
                         hide_index=True, key=chart_key("case.truth_phrases", modality, "text"))
        else:
            st.caption("No phrase of this note was planted as evidence for its label.")


def _ecg_panel(view: Declared, case: Case, modality: str, explanation: CaseExplanation, status: dict[str, str],
               notes: case_notes.InputNotes, truth: ground_truth_view.Planted | None, name: str) -> None:
    attribution = explanation.panels.get(modality)
    signal = case.value(modality)
    if attribution is None:
        _absent(view, modality, status, notes, f"This case has no {case_notes.modality_noun(modality, view.titles, view.kinds)}.")
        return
    channels, duration = signal.channels, signal.duration_s
    views = [v for v in ECG_VIEWS if (v != ECG_3X4 or figures.ecg_layout(channels, duration) == "3x4")
             and (v != ECG_FEW or {"II", "V1", "V5"} <= set(channels))]
    if st.session_state.get("case.leads") not in views:  # a layout this recording cannot be drawn in
        st.session_state.pop("case.leads", None)
    choice = st.radio("Layout", views, key="case.leads", horizontal=True)
    leads = ["II", "V1", "V5"] if choice == ECG_FEW else None
    layout = "3x4" if choice == ECG_3X4 else "stacked"
    step = max(1, int(signal.fs // 250))  # draw at <= 250 Hz: the page stays light, the waves unchanged
    ecg = figures.ecg_figure(signal.data[:, ::step], signal.fs / step, channels, attribution, leads,
                             explained=name, layout=layout)
    planted_leads = []
    if truth is not None:
        planted_leads = truth.leads
        ground_truth_view.mark_leads(ecg, planted_leads)
        where = ", ".join(planted_leads) if planted_leads else "none (no lead carries the case's finding)"
        st.caption(f"Green boxes: the leads where the finding was planted: {where}. The synthetic finding "
                   "runs through the whole recording, so the ground truth names leads, not segments.")
    st.plotly_chart(ecg, key=chart_key("case.ecg", modality, "signal"))
    st.caption(f"Bar row: the encoder's temporal attention ({attribution.attention_step_s * 1000:.0f} "
               "ms steps; the dashed line is uniform attention). Boxes: the segments with the largest "
               "attribution.")
    bars = figures.lead_importance_bars(attribution.leads, attribution.lead_importance, attribution.recorded, name)
    st.plotly_chart(ground_truth_view.mark_lead_bars(bars, planted_leads),
                    key=chart_key("case.lead_importance", modality, "signal"))


def _tabular_panel(view: Declared, case: Case, modality: str, explanation: CaseExplanation, status: dict[str, str],
                   notes: case_notes.InputNotes, truth: ground_truth_view.Planted | None, name: str) -> None:
    table = explanation.panels.get(modality)
    if table is None:
        noun = "labs or demographics" if modality == "tabular" else case_notes.modality_noun(modality, view.titles, view.kinds)
        _absent(view, modality, status, notes, f"This case has no {noun}.")
        return
    if case_figures.is_binary_panel(case.value(modality), {r.name: r for r in table.itertuples()}):
        _gene_panel(view, modality, table, truth, name)
        return
    title = "Labs and demographics" if modality == "tabular" else view.titles[modality]
    figure = figures.lab_bars(table, name, title, "points of the quantity" if view.survival else "logit units")
    st.plotly_chart(figure, key=chart_key("case.labs", modality, "tabular"))


def _gene_panel(view: Declared, modality: str, table: pd.DataFrame, truth: ground_truth_view.Planted | None, name: str) -> None:
    """A mutation panel: the mutated genes with their attributions (and unmutated ones that matter)."""
    drivers = truth.genes if truth is not None else ()
    genes = case_figures.gene_table(table, drivers, min_abs=GENES_SHOWN_ABOVE)
    mutated = genes[genes["mutated"]]
    listed = ", ".join(mutated["gene"]) if len(mutated) else "none"
    st.markdown(f"**{len(mutated)} of {len(table)} genes mutated**: <span id='mutated-genes'>{listed}</span>",
                unsafe_allow_html=True,
                help="The bars: mutated genes first, by |attribution|; then, paler, unmutated genes whose "
                     f"attribution reaches {GENES_SHOWN_ABOVE} (the model reads their absence too).")
    if genes.empty:
        st.info(f"No gene is mutated and no unmutated gene moved {name} by {GENES_SHOWN_ABOVE} or more.")
    else:
        figure = case_figures.gene_bars(genes, name, title=view.titles[modality])
        if truth is not None:
            found = ground_truth_view.mark_genes(figure, truth.genes)
            missing = [g for g in truth.genes if g not in found]
            st.caption("Ground truth: planted driver genes "
                       + (", ".join(truth.genes) if truth.genes else "none")
                       + (f" ({', '.join(missing)} not shown: not mutated and without attribution)" if missing else ""))
        st.plotly_chart(figure, key=chart_key("case.genes", modality, "genes"))


_PANELS = {"image": _image_panel, "text": _note_panel, "signal": _ecg_panel, "tabular": _tabular_panel}


def observe_controls(view: Declared, present: dict[str, bool], status: dict[str, str]) -> dict[str, float]:
    """One control per declared modality, side by side: how much of it the model observes (an image all or
    nothing, the rest 0-100 % in steps of 10); a modality the case lacks says why there is nothing to
    withhold. -> {modality: observed fraction} for the modalities the case has."""
    fractions = {}
    for column, modality in zip(st.columns(len(view.names)), view.names):
        label = view.titles[modality]
        if not present[modality]:  # nothing to withhold: say so rather than show a percentage
            noun = case_notes.modality_noun(modality, view.titles, view.kinds)
            why = (f"the model cannot use this case's {noun}" if status[modality] == "unusable"
                   else f"this case has no {noun}")
            column.markdown(f"**{label}:** {status[modality]}")
            column.caption(f"Nothing to withhold: {why}.")
            continue
        if view.kinds[modality] == "image":
            fractions[modality] = 1.0 if column.toggle(f"{label} observed", value=True,
                                                       key=f"case.ablate_{modality}") else 0.0
        else:
            fractions[modality] = column.slider(f"{label} observed (%)", 0, 100, 100, 10,
                                                key=f"case.ablate_{modality}") / 100
    return fractions
