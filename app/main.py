"""NeuroFusion Explorer entry point: ``streamlit run app/main.py`` (``make run``).

Reads the sidebar settings, loads the model and cohort (once per process), and routes to the pages.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ on the path, not the repository: make the packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"
DISCLAIMER = ":material/science: Research tool{data}: **not for clinical use.**"

# A local icon: a Material icon as the favicon would be fetched from fonts.gstatic.com.
st.set_page_config(page_title="NeuroFusion Explorer", page_icon=str(Path(__file__).parent / "assets" / "icon.png"),
                   layout="wide")


# The page list only names files: draw it before the model code is imported (torch, transformers and plotly
# take several seconds in a fresh process), so a cold start shows the shell at once, not a blank page.
pages = [
    st.Page(VIEWS / "case_explorer.py", title="Case explorer", icon=":material/person_search:", default=True),
    st.Page(VIEWS / "cohort_attention.py", title="Cohort attention", icon=":material/grid_on:", url_path="cohort"),
    st.Page(VIEWS / "agreement.py", title="Rater agreement", icon=":material/handshake:", url_path="agreement"),
    st.Page(VIEWS / "missing.py", title="Missing modalities", icon=":material/hide_source:", url_path="missing"),
    st.Page(VIEWS / "rate.py", title="Rate cases", icon=":material/rate_review:", url_path="rate"),
    st.Page(VIEWS / "studies.py", title="Expert studies", icon=":material/groups:", url_path="studies"),
    st.Page(VIEWS / "model_card.py", title="Model card", icon=":material/description:", url_path="model"),
]
page = st.navigation(pages)
loading = st.empty()
if "torch" not in sys.modules:
    loading.caption("Loading the model libraries...")

from app.figures import saliency_method_label  # noqa: E402  (after the first st.* calls, on purpose)
from app.page_runs import run_page  # noqa: E402
from app.state import (  # noqa: E402
    AUTO_NOTE_LAYERS,
    DASHBOARD_SETTINGS,
    DEFAULT_CHECKPOINT,
    DEFAULT_COHORT,
    DEMOS,
    STEPS_METHOD_LABELS,
    TOLERANCES,
    Context,
    auto_note_layer,
    checkpoint_key,
    cohort_key,
    device_options,
    load_cohort,
    load_model,
)
from explain.case import ExplainSettings  # noqa: E402
from explain.image import IMAGE_METHODS  # noqa: E402
from explain.integrated import METHODS as STEPS_METHODS  # noqa: E402
from neurofusion.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from neurofusion.config import ModelConfig  # noqa: E402
from neurofusion.data.cohort import CohortReader  # noqa: E402
from neurofusion.data.timed import open_cohort  # noqa: E402
from neurofusion.data.errors import CohortError  # noqa: E402
from neurofusion.studies import default_url  # noqa: E402

loading.empty()


def _sidebar() -> tuple[str, str, str, ExplainSettings, object]:
    """The sidebar's settings; the last item is where the note-layer choice goes once the model is loaded."""
    defaults = {"settings.checkpoint": str(DEFAULT_CHECKPOINT), "settings.cohort": str(DEFAULT_COHORT),
                "settings.device": "auto", "settings.image_method": "integrated_gradients",
                "settings.steps_mode": "adaptive", "settings.tolerance": DASHBOARD_SETTINGS.tolerance,
                "settings.max_steps": DASHBOARD_SETTINGS.max_steps,
                "settings.steps_method": DASHBOARD_SETTINGS.steps_method,
                "settings.n_steps": 32, "settings.note_layer": "auto",
                "settings.bfloat16": [], "settings.context": "case", "settings.study_db": default_url()}
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
    _demo_switch()
    # Developer settings fold away so a presenter's sidebar is the page list; the keys stay the same.
    with st.sidebar.expander("Advanced: model, cohort, explanations", icon=":material/tune:"):
        st.markdown("**Model and cohort**")
        checkpoint = st.text_input("Checkpoint folder", key="settings.checkpoint",
                                   help="A folder written by `python -m neurofusion.train`.")
        cohort = st.text_input("Cohort folder", key="settings.cohort",
                               help="A folder with cohort.csv, cohort.json and one folder per file-backed "
                                    "modality (see the README).")
        device = st.radio("Device", device_options(), key="settings.device", horizontal=True,
                          help="auto = the GPU when there is one, else the CPU.")
        st.markdown("**Explanations**")
        image_method = st.selectbox("Image saliency", IMAGE_METHODS, key="settings.image_method",
                                    format_func=saliency_method_label)
        integration = _integration_settings()
        note_box = st.container()
        context = st.radio("Attribute each modality", ("case", "alone"), key="settings.context",
                           format_func={"case": "with the others present", "alone": "by itself"}.get)
        st.text_input("Explanation store", key="settings.explanation_store",
                      help="A folder written by `python -m explain cohort --out`: the cohort pages read it instead "
                           "of computing. Empty: the cohort's own explanations/<checkpoint hash>/ folder, if any.")
        st.markdown("**Expert studies**")
        st.text_input("Study database", key="settings.study_db",
                      help="An SQLAlchemy URL: the default SQLite file, or postgresql+psycopg://user@host/db for a "
                           "study shared across sites (the environment variable NEUROFUSION_STUDY_DB sets the "
                           "default).")
    settings = ExplainSettings(image_method=image_method, context=context, **integration)
    return checkpoint, cohort, device, settings, note_box


def _integration_settings() -> dict:
    """How each Integrated Gradients map is integrated: steps until the map adds up to within a tolerance
    (default), or a fixed number; the quadrature rule; bfloat16 encoders."""
    mode = st.radio("Integrated Gradients steps", ("adaptive", "fixed"), key="settings.steps_mode", horizontal=True,
                    format_func={"adaptive": "until each map adds up", "fixed": "a fixed number"}.get,
                    help="Until each map adds up: the steps double from 8 until the map's attributions add up to "
                         "the change from the baseline input within the tolerance (each map says how closely it "
                         "did). A fixed number: the same steps for every map, however far from adding up.")
    chosen = {"steps_method": st.selectbox("Integration rule", STEPS_METHODS, key="settings.steps_method",
                                           format_func=STEPS_METHOD_LABELS.get,
                                           help="Gauss-Legendre is Captum's default and exact for a smooth path "
                                                "at few steps; the trapezoid rule's points at n steps are among "
                                                "those at 2n - 1, so refining reuses them. The default tries "
                                                "Gauss-Legendre at 8 steps, then refines on trapezoid grids.")}
    if mode == "adaptive":
        chosen["tolerance"] = st.select_slider("Completeness tolerance", TOLERANCES, key="settings.tolerance",
                                               format_func=lambda t: f"{t:.0%}",
                                               help="The relative completeness error each map must reach: "
                                                    "|sum of attributions - (f(case) - f(baseline))| / "
                                                    "|f(case) - f(baseline)|.")
        chosen["max_steps"] = st.select_slider("Most steps per map", (32, 64, 128, 256), key="settings.max_steps",
                                               help="A map that has not added up by then is shown with a warning.")
    else:
        chosen["n_steps"] = st.slider("Steps per map", 8, 100, key="settings.n_steps", step=4,
                                      help="More steps: closer to the exact integral, slower.")
    reduced = st.multiselect("bfloat16 encoders", ("text", "image", "signal"), key="settings.bfloat16",
                             format_func={"text": "note", "image": "image", "signal": "signal"}.get,
                             help="Run these encoders in bfloat16 on the path (the fusion and the completeness "
                                  "check stay float32): faster on CPUs with bfloat16 support. Measured on the "
                                  "paper-size model: the note's map moved 0.4 %, the image's 27 % (see the README).")
    chosen["reduced_precision"] = tuple(reduced)
    return chosen


def _note_layer_setting(box, config: ModelConfig) -> int | None:
    """Where the note is attributed, offered for the loaded model's BERT layers (in ``box``, drawn earlier)."""
    if not any(spec.kind == "text" for spec in config.modality_specs):
        return None
    layers = config.text.num_layers
    options = ["auto", "embeddings", *[f"layer {j}" for j in range(1, layers)]]
    if st.session_state.get("settings.note_layer") not in options:  # a layer the previous model had
        st.session_state["settings.note_layer"] = "auto"
    auto = auto_note_layer(layers)
    auto_label = "word embeddings" if auto is None else f"the input of BERT layer {auto}"
    with box:
        choice = st.selectbox("Note attributed at", options, key="settings.note_layer",
                              format_func=lambda o: {"auto": f"auto ({auto_label})",
                                                     "embeddings": "word embeddings"}.get(o, f"input of BERT {o}"),
                              help="Word embeddings: what each word contributes, every BERT layer on the path "
                                   f"(exact, slow for a large encoder). The input of layer j: what each position's "
                                   f"representation after j layers contributes (it carries its context); only the "
                                   f"layers from j up run on the path. Auto: word embeddings up to "
                                   f"{AUTO_NOTE_LAYERS - 1} layers, else the last layer's input.")
    if choice == "auto":
        return auto
    return None if choice == "embeddings" else int(choice.removeprefix("layer "))


# Streamlit leaves ~6rem above the page for its toolbar; with the minimal toolbar 3rem is enough, and a
# presenter's 1280x720 screen keeps the prediction, the attention and the importance on the first screen.
COMPACT_TOP = '<style>[data-testid="stMainBlockContainer"] { padding-top: 3rem; }</style>'


def disclaimer(synthetic: bool) -> None:
    """The line every page starts with, above its title, so it is on screen whatever the sidebar shows."""
    st.html(COMPACT_TOP)
    st.caption(DISCLAIMER.format(data=" on synthetic data" if synthetic else ""))


def _check_matches(config: ModelConfig, reader: CohortReader, checkpoint: str, cohort: str) -> None:
    """The cohort must be of the model's task: the same outcome and the same declared modalities (in order);
    otherwise the message says what each is and what to choose instead."""
    names = list(config.modality_names)
    cohort_names = list(reader.modality_names)
    if reader.outcome != config.outcome or cohort_names != names:
        raise CohortError(
            f"the cohort in {cohort} is a {reader.outcome} cohort with the modalities {', '.join(cohort_names)}; "
            f"the checkpoint {checkpoint} is a {config.outcome} model of the {config.task} task with the "
            f"modalities {', '.join(names)}. Choose a cohort of the model's task (or the model trained on this "
            "cohort) under Advanced, or switch the bundled demo above it.")


def _load(checkpoint: str, cohort: str, device: str, settings: ExplainSettings) -> Context:
    try:
        model_key = checkpoint_key(checkpoint)
    except OSError:
        load_checkpoint(checkpoint, device="cpu")  # raises the specific reason (folder or file missing)
        raise CheckpointError(f"cannot read the checkpoint in {checkpoint}") from None
    try:
        data_key = cohort_key(cohort)
    except OSError:
        open_cohort(cohort)  # raises the specific reason
        raise CohortError(f"cannot read the cohort in {cohort}") from None
    loaded, predictor = load_model(checkpoint, device, model_key)
    reader = load_cohort(cohort, data_key)
    _check_matches(loaded.config, reader, checkpoint, cohort)
    unknown = sorted(set(reader.classes) - set(loaded.config.classes))
    if unknown:
        raise CohortError(f"the cohort's labels {unknown} are not classes of this model ({loaded.config.classes})")
    return Context(loaded, predictor, reader, model_key, data_key, settings)


def _demo_switch() -> None:
    """The bundled demos one click apart (a presenter switches task without typing folders); "custom" when
    the folders under Advanced are the user's own."""
    current = (st.session_state["settings.checkpoint"], st.session_state["settings.cohort"])
    if st.session_state.get("settings.demo") != "custom":  # "custom" stays while the user types folders
        st.session_state["settings.demo"] = next((name for name, demo in DEMOS.items()
                                                  if (str(demo.checkpoint), str(demo.cohort)) == current), "custom")

    def chosen() -> None:
        demo = DEMOS.get(st.session_state["settings.demo"])
        if demo is not None:
            st.session_state["settings.checkpoint"] = str(demo.checkpoint)
            st.session_state["settings.cohort"] = str(demo.cohort)

    st.sidebar.selectbox("Demo", [*DEMOS, "custom"], key="settings.demo", on_change=chosen,
                         format_func=lambda name: DEMOS[name].title if name in DEMOS else "Your own (set under Advanced)",
                         help="The bundled synthetic cohorts and their demo models.")


def _fresh_state_for(context: Context) -> None:
    """Page controls are about one model and cohort (their classes, modalities, cases): another model or
    cohort starts them afresh. The sidebar settings stay."""
    loaded = (context.model_key, context.data_key)
    if st.session_state.get("app.loaded") not in (None, loaded):
        for key in [k for k in st.session_state if not str(k).startswith(("settings.", "app."))]:
            del st.session_state[key]
    st.session_state["app.loaded"] = loaded


checkpoint, cohort, device, settings, note_box = _sidebar()
try:
    context = _load(checkpoint, cohort, device, settings)
except (CheckpointError, CohortError) as err:
    disclaimer(False)
    st.title("NeuroFusion Explorer")
    st.error(f"Could not load the model or cohort.\n\n{err}")
    st.info("Fix the folder under **Advanced** in the sidebar. The bundled demo model and cohort are "
            f"`{DEFAULT_CHECKPOINT.relative_to(DEFAULT_CHECKPOINT.parents[2])}` and "
            f"`{DEFAULT_COHORT.relative_to(DEFAULT_COHORT.parents[1])}`.")
    st.stop()
_fresh_state_for(context)
context.settings = dataclasses.replace(context.settings,
                                       note_layer=_note_layer_setting(note_box, context.checkpoint.config))
st.session_state["app.context"] = context
with st.sidebar:
    device_note = f"{context.checkpoint.device.type.upper()}"
    synthetic = " · SYNTHETIC data" if context.cohort.info.get("synthetic") else ""
    size = (f"{len(context.cohort.stays)} stays ({len(context.cohort)} samples)" if context.timed
            else f"{len(context.cohort)} cases")
    st.caption(f"Running on {device_note} · {size}{synthetic} · {context.checkpoint.config.architecture}")
    for warning in context.checkpoint.warnings:
        st.warning(warning)

disclaimer(bool(context.cohort.info.get("synthetic")))
run_page(page)
