"""NeuroFusion Explorer entry point: ``streamlit run app/main.py`` (``make run``).

Reads the sidebar settings, loads the model and cohort (once per process), and routes to the pages.
"""

from __future__ import annotations

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
from app.state import (  # noqa: E402
    DEFAULT_CHECKPOINT,
    DEFAULT_COHORT,
    DEMOS,
    Context,
    checkpoint_key,
    cohort_key,
    device_options,
    load_cohort,
    load_model,
)
from explain.case import ExplainSettings  # noqa: E402
from explain.image import IMAGE_METHODS  # noqa: E402
from neurofusion.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from neurofusion.config import ModelConfig  # noqa: E402
from neurofusion.data.cohort import CohortReader  # noqa: E402
from neurofusion.data.timed import open_cohort  # noqa: E402
from neurofusion.data.errors import CohortError  # noqa: E402
from neurofusion.studies import default_url  # noqa: E402

loading.empty()


def _sidebar() -> tuple[str, str, str, ExplainSettings]:
    defaults = {"settings.checkpoint": str(DEFAULT_CHECKPOINT), "settings.cohort": str(DEFAULT_COHORT),
                "settings.device": "auto", "settings.image_method": "integrated_gradients",
                "settings.n_steps": 32, "settings.context": "case", "settings.study_db": default_url()}
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
        n_steps = st.slider("Integrated Gradients steps", 8, 100, key="settings.n_steps", step=4,
                            help="More steps: closer to the exact integral, slower.")
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
    return checkpoint, cohort, device, ExplainSettings(image_method=image_method, n_steps=n_steps, context=context)


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


checkpoint, cohort, device, settings = _sidebar()
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
page.run()
