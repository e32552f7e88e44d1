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
from neurofusion.data.errors import CohortError  # noqa: E402
from neurofusion.data.schema import MODALITIES  # noqa: E402

loading.empty()


def _sidebar() -> tuple[str, str, str, ExplainSettings]:
    defaults = {"settings.checkpoint": str(DEFAULT_CHECKPOINT), "settings.cohort": str(DEFAULT_COHORT),
                "settings.device": "auto", "settings.image_method": "integrated_gradients",
                "settings.n_steps": 32, "settings.context": "case"}
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
    # Developer settings fold away so a presenter's sidebar is the page list; the keys stay the same.
    with st.sidebar.expander("Advanced: model, cohort, explanations", icon=":material/tune:"):
        st.markdown("**Model and cohort**")
        checkpoint = st.text_input("Checkpoint folder", key="settings.checkpoint",
                                   help="A folder written by `python -m neurofusion.train`.")
        cohort = st.text_input("Cohort folder", key="settings.cohort",
                               help="A folder with cohort.csv, images/, signals/, notes/ (see the README).")
        device = st.radio("Device", device_options(), key="settings.device", horizontal=True,
                          help="auto = the GPU when there is one, else the CPU.")
        st.markdown("**Explanations**")
        image_method = st.selectbox("Image saliency", IMAGE_METHODS, key="settings.image_method",
                                    format_func=saliency_method_label)
        n_steps = st.slider("Integrated Gradients steps", 8, 100, key="settings.n_steps", step=4,
                            help="More steps: closer to the exact integral, slower.")
        context = st.radio("Attribute each modality", ("case", "alone"), key="settings.context",
                           format_func={"case": "with the others present", "alone": "by itself"}.get)
    return checkpoint, cohort, device, ExplainSettings(image_method=image_method, n_steps=n_steps, context=context)


# Streamlit leaves ~6rem above the page for its toolbar; with the minimal toolbar 3rem is enough, and a
# presenter's 1280x720 screen keeps the prediction, the attention and the importance on the first screen.
COMPACT_TOP = '<style>[data-testid="stMainBlockContainer"] { padding-top: 3rem; }</style>'


def disclaimer(synthetic: bool) -> None:
    """The line every page starts with, above its title, so it is on screen whatever the sidebar shows."""
    st.html(COMPACT_TOP)
    st.caption(DISCLAIMER.format(data=" on synthetic data" if synthetic else ""))


def _check_supported(config: ModelConfig, reader: CohortReader, checkpoint: str, cohort: str) -> None:
    """The pages draw cardio's four modalities and class probabilities; a survival model, another set of
    modalities, or a cohort that does not match the model is said to be so, with what to use instead."""
    names = [s.name for s in config.modality_specs]
    if config.outcome != "classification" or names != list(MODALITIES):
        raise CheckpointError(
            f"{checkpoint} is a {config.outcome} model of the {config.task} task with the modalities "
            f"{', '.join(names)}. The dashboard shows classification models on the cardio modalities "
            f"({', '.join(MODALITIES)}) so far; explain this model with `python -m explain case --checkpoint "
            f"{checkpoint} --data <cohort> --case-id <id>` and evaluate it with `python -m neurofusion.evaluate`.")
    cohort_names = [s.name for s in reader.modalities]
    if reader.outcome != config.outcome or cohort_names != names:
        raise CohortError(
            f"the cohort in {cohort} is a {reader.outcome} cohort with the modalities {', '.join(cohort_names)}; "
            f"the checkpoint {checkpoint} is a {config.outcome} model of {', '.join(names)}. Choose a cohort "
            "of the model's task (or the model trained on this cohort) under Advanced.")


def _load(checkpoint: str, cohort: str, device: str, settings: ExplainSettings) -> Context:
    try:
        model_key = checkpoint_key(checkpoint)
    except OSError:
        load_checkpoint(checkpoint, device="cpu")  # raises the specific reason (folder or file missing)
        raise CheckpointError(f"cannot read the checkpoint in {checkpoint}") from None
    try:
        data_key = cohort_key(cohort)
    except OSError:
        CohortReader(cohort)  # raises the specific reason
        raise CohortError(f"cannot read the cohort in {cohort}") from None
    loaded, predictor = load_model(checkpoint, device, model_key)
    reader = load_cohort(cohort, data_key)
    _check_supported(loaded.config, reader, checkpoint, cohort)
    unknown = sorted(set(reader.classes) - set(loaded.config.classes))
    if unknown:
        raise CohortError(f"the cohort's labels {unknown} are not classes of this model ({loaded.config.classes})")
    return Context(loaded, predictor, reader, model_key, data_key, settings)


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
st.session_state["app.context"] = context
with st.sidebar:
    device_note = f"{context.checkpoint.device.type.upper()}"
    synthetic = " · SYNTHETIC data" if context.cohort.info.get("synthetic") else ""
    st.caption(f"Running on {device_note} · {len(context.cohort)} cases{synthetic} · "
               f"{context.checkpoint.config.architecture}")
    for warning in context.checkpoint.warnings:
        st.warning(warning)

disclaimer(bool(context.cohort.info.get("synthetic")))
page.run()
