"""Everything the dashboard shows for one case, computed together: prediction, cross-modal attention,
modality importance (attention, Shapley, leave-one-out), the attribution of each modality present, what
the model could not use of the case's inputs, and which inputs are unlike the training data.

Every declared modality the case has gets a panel (``CaseExplanation.panels``, by name, in declaration
order), chosen by the modality's kind: image saliency (grey or colour), note attributions, signal
attributions, or per-feature tabular attributions (e.g. per gene of a mutation panel). The cardio fields
``image``, ``note``, ``signal`` and ``tabular`` hold the panels of the modalities named image, text, signal
and tabular (cardio's); ``to_dict()`` is unchanged for cardio's declaration and adds ``panels`` for others.

The explanation is computed in steps, so a dashboard can show each part as soon as it exists
(:class:`CaseExplainer`): :meth:`CaseExplainer.first_view` (prediction, cross-modal attention, modality
importance, Grad-CAM of each image: one encoding pass and a few small backward passes), then
:meth:`CaseExplainer.panels` yields each modality's panel as its attribution finishes, then
:meth:`CaseExplainer.explanation` is the whole :class:`CaseExplanation`. A ``cancel`` event stops the work
between passes (:class:`explain.integrated.ExplanationCancelled`); a cancelled explainer never returns a
whole explanation. :func:`explain_case` is all of it in one call.

Integrated Gradients maps run on :mod:`explain.integrated`; each carries its ``completeness`` (steps used,
relative completeness error, whether it is within ``ExplainSettings.tolerance``).

A survival model is explained through one quantity (:class:`explain.targets.SurvivalTarget`, default 5-year
survival): ``classes`` is then that quantity's label, ``probabilities`` its value, and ``survival_curve``
the predicted curve.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from explain._forward import ModalityForward
from explain.image import IMAGE_METHODS, ImageSaliency, grad_cam_from_features, image_path, image_saliency
from explain.importance import ModalityImportance, modality_importance
from explain.integrated import (
    Cancel,
    Completeness,
    ExplanationCancelled,
    Integration,
    Prepared,
    check_cancel,
    integrate,
)
from explain.signal import SignalExplanation, signal_path
from explain.tabular import tabular_path
from explain.targets import SurvivalTarget, explained_values, is_survival
from explain.text import NoteExplanation, note_path
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.inference import Predictor, model_lock
from neurofusion.inputs import case_input_report
from neurofusion.ood import OODReference

Panel = ImageSaliency | NoteExplanation | SignalExplanation | pd.DataFrame
# The cardio field each kind's panel fills when the modality is named after its kind.
LEGACY_FIELDS = {"image": "image", "text": "note", "signal": "signal", "tabular": "tabular"}


@dataclass(frozen=True)
class ExplainSettings:
    image_method: str = "integrated_gradients"
    n_steps: int = 50  # Integrated Gradients path steps (image, note, ECG, labs)
    internal_batch_size: int | None = None  # steps per forward pass; default all at once
    target: int | None = None  # class to explain; default the predicted class
    context: str = "case"  # attributions with the other modalities as the case has them, or "alone"
    # relative completeness error each IG map must reach (explain.integrated); None: exactly n_steps steps
    tolerance: float | None = None
    steps_method: str = "gausslegendre"  # or "riemann_trapezoid" (explain.integrated.METHODS)
    max_steps: int = 128  # adaptive steps stop here (the map then says it did not converge)
    note_layer: int | None = None  # None: the note's word embeddings; j: hidden states entering BERT layer j
    reduced_precision: tuple[str, ...] = ()  # modality kinds whose encoder runs in bfloat16 on the path
    joint: bool = False  # every modality's path steps through one fusion pass (measured: no faster; panels at once)

    def __post_init__(self) -> None:
        if self.context not in ("case", "alone"):
            raise ValueError(f"context must be 'case' or 'alone', got {self.context!r}")
        if self.image_method not in IMAGE_METHODS:
            raise ValueError(f"image_method must be one of {IMAGE_METHODS}, got {self.image_method!r}")
        if self.n_steps < 2:
            raise ValueError(f"n_steps must be at least 2, got {self.n_steps}")
        if self.note_layer is not None and (not isinstance(self.note_layer, int) or self.note_layer < 1):
            raise ValueError(f"note_layer must be None (word embeddings) or a BERT layer >= 1, got {self.note_layer!r}")
        self.integration()  # validates the integration settings

    def integration(self) -> Integration:
        """How every Integrated Gradients path is integrated."""
        return Integration(n_steps=self.n_steps, method=self.steps_method, tolerance=self.tolerance,
                           start_steps=min(8, self.max_steps), max_steps=self.max_steps,
                           internal_batch_size=self.internal_batch_size, joint=self.joint,
                           reduced_precision=tuple(self.reduced_precision))


@dataclass
class CaseExplanation:
    case_id: str
    label: str
    classes: list[str]
    probabilities: np.ndarray  # (C,)
    target: int
    present: dict[str, bool]
    cross_attention: np.ndarray | None  # (heads, 4, 4)
    importance: ModalityImportance
    image: ImageSaliency | None
    note: NoteExplanation | None
    signal: SignalExplanation | None
    tabular: pd.DataFrame | None
    # modality -> {"distance", "threshold", "flagged", "false_alarm_rate"} for the modalities the case has
    # (neurofusion.ood); None when the checkpoint has no out-of-distribution reference
    ood: dict[str, dict] | None = None
    inputs: dict | None = None  # neurofusion.inputs.InputReport.to_dict(): what the model could not use
    # class subtracted from ``target`` (explain.contrast): the attributions explain target minus contrast
    contrast: int | None = None
    # modality -> why a part the case has carries no attribution here (e.g. Grad-CAM in a contrast)
    unexplained: dict[str, str] = field(default_factory=dict)
    # declared modality -> its explanation, for the modalities the case has (declaration order)
    panels: dict[str, Panel] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # declared modality -> kind, every declared one
    survival_curve: np.ndarray | None = None  # (K,) survival model: S at each time bin's end

    @property
    def completeness(self) -> dict[str, Completeness]:
        """Declared modality -> the completeness of its Integrated Gradients map (panels that have one)."""
        found = {}
        for name, panel in self.panels.items():
            value = panel.attrs.get("completeness") if isinstance(panel, pd.DataFrame) else getattr(
                panel, "completeness", None)
            if value is not None:
                found[name] = value
        return found

    @property
    def names(self) -> list[str]:
        """The declared modalities, in declaration order."""
        return list(self.present)

    @property
    def predicted(self) -> str:
        return self.classes[int(self.probabilities.argmax())]

    @property
    def explained(self) -> str:
        """What the attributions explain: a class name, or 'a - b' for a contrast."""
        name = self.classes[self.target]
        return name if self.contrast is None else f"{name} - {self.classes[self.contrast]}"

    def to_dict(self) -> dict:
        """JSON-ready nested dict (arrays as lists)."""
        importance = {m: self.importance.table(m).iloc[0].to_dict() for m in ("shapley", "leave_one_out")}
        if self.importance.attention is not None:
            importance["attention"] = self.importance.table("attention").iloc[0].to_dict()
        return jsonable({
            "case_id": self.case_id, "label": self.label, "predicted": self.predicted,
            "explained_class": self.classes[self.target],
            "contrast_class": None if self.contrast is None else self.classes[self.contrast],
            "probabilities": dict(zip(self.classes, self.probabilities.tolist())),
            "present": self.present,
            "cross_attention_mean": None if self.cross_attention is None else self.cross_attention.mean(0),
            "cross_attention_per_head": self.cross_attention,
            "modality_importance": importance,
            "probability_all_missing": float(self.importance.probability_none[0]),
            "image": None if self.image is None else dataclasses.asdict(self.image),
            "note": None if self.note is None else dataclasses.asdict(self.note),
            "signal": None if self.signal is None else dataclasses.asdict(self.signal),
            "tabular": None if self.tabular is None else self.tabular.to_dict(orient="records"),
            "ood": self.ood,
            "inputs": self.inputs,
            "unexplained": self.unexplained,
            **self._declared_dict(),
        })

    def _declared_dict(self) -> dict:
        """For a declaration other than cardio's: every panel by name with its kind, and a survival curve."""
        if tuple(self.present) == MODALITIES and self.survival_curve is None:
            return {}
        panels = {}
        for name, panel in self.panels.items():
            body = panel.to_dict(orient="records") if isinstance(panel, pd.DataFrame) else dataclasses.asdict(panel)
            panels[name] = {"kind": self.kinds.get(name), "explanation": body}
        return {"panels": panels, "kinds": self.kinds, "survival_curve": self.survival_curve}


@dataclass
class FirstView:
    """What can be shown before any attribution: the prediction, cross-modal attention, modality importance
    and Grad-CAM of each image modality the case has (a preview when the image panel is another method)."""

    case_id: str
    label: str
    classes: list[str]
    probabilities: np.ndarray  # (C,)
    target: int
    present: dict[str, bool]
    cross_attention: np.ndarray | None  # (heads, M, M)
    importance: ModalityImportance
    grad_cam: dict[str, ImageSaliency]  # image modality -> Grad-CAM map
    ood: dict[str, dict] | None
    inputs: dict
    kinds: dict[str, str]
    survival_curve: np.ndarray | None = None

    @property
    def predicted(self) -> str:
        return self.classes[int(self.probabilities.argmax())]


class CaseExplainer:
    """One case's explanation in steps (module docstring): ``first_view()``, then ``panels()`` yielding
    (modality, panel) as each finishes, then ``explanation()``. Each step uses the model under its lock and
    releases it between steps; ``cancel`` (a threading.Event or a callable returning True to stop) is checked
    before every pass, and once it fires every later call raises ExplanationCancelled."""

    def __init__(self, predictor: Predictor, case: Case, settings: ExplainSettings = ExplainSettings(), *,
                 ood: OODReference | None = None, survival: SurvivalTarget | None = None,
                 cancel: Cancel = None) -> None:
        self.predictor, self.case, self.settings = predictor, case, settings
        self.reference, self.survival, self.cancel = ood, survival, cancel
        self._first: FirstView | None = None
        self._forward: ModalityForward | None = None
        self._panels: dict[str, Panel] = {}
        self._cancelled = False

    def _check(self) -> None:
        if self._cancelled:
            raise ExplanationCancelled(f"the explanation of case {self.case.case_id} was cancelled")
        try:
            check_cancel(self.cancel, f"explanation of case {self.case.case_id}")
        except ExplanationCancelled:
            self._cancelled = True
            raise

    @property
    def forward(self) -> ModalityForward:
        """The case's forward functions with its encodings (after the first view, which computes them)."""
        self.first_view()
        return self._forward

    def first_view(self) -> FirstView:
        """Prediction, attention, importance and Grad-CAM: one encoding pass (computed once)."""
        if self._first is None:
            self._check()
            with model_lock(self.predictor.model):
                self._first = self._first_view()
        return self._first

    def _first_view(self) -> FirstView:
        model = self.predictor.model.eval()
        batch = self.predictor.batch([self.case])
        settings = self.settings
        target = None if settings.target is None else torch.tensor([settings.target], device=batch.present.device)
        # encodes once, keeping the last ResNet stage (Grad-CAM) and the note's states at its attributed layer
        forward = ModalityForward(model, batch, alone=settings.context == "alone", survival=self.survival,
                                  keep_features=True, note_layer=settings.note_layer)
        self._forward = forward
        importance = modality_importance(model, batch, target, encoded=forward.encoded, survival=self.survival)
        explained = int(importance.target[0])
        with torch.no_grad():
            output = model.fuse(forward.encoded, batch.present)
        grad_cam = {}
        for name in forward.of_kind("image"):
            if forward.has(name):
                self._check()
                shape = self.case.value(name).shape
                grad_cam[name] = (grad_cam_from_features(forward, forward.features[name], shape, explained, name)
                                  if name in forward.features else image_saliency(forward, shape, explained, "grad_cam",
                                                                                  modality=name))
        survival_model = is_survival(model)
        return FirstView(
            case_id=self.case.case_id,
            label=self.case.label,
            classes=[importance.explained] if survival_model else list(model.classes),
            probabilities=explained_values(model, output, self.survival)[0].float().cpu().numpy(),
            target=explained,
            present={m: bool(v) for m, v in zip(forward.names, batch.present[0].tolist())},
            cross_attention=None if output.cross_attention is None else output.cross_attention[0].float().cpu().numpy(),
            importance=importance,
            grad_cam=grad_cam,
            ood=None if self.reference is None else self.reference.assess(forward.encoded),  # the encoding, reused
            inputs=case_input_report(self.predictor.spec, self.case).to_dict(),
            kinds=dict(forward.kinds),
            survival_curve=output.survival[0].float().cpu().numpy() if survival_model else None,
        )

    def panels(self) -> Iterator[tuple[str, Panel]]:
        """(declared modality, panel) for every modality the case has: those already computed first, then
        the rest as each finishes (images by another method than IG first, then the Integrated Gradients
        paths: all of them through one fusion pass per step when ``joint``, the quick ones finishing first
        under a tolerance)."""
        first = self.first_view()
        forward, settings, target = self._forward, self.settings, first.target
        yield from list(self._panels.items())
        prepared: dict[str, Prepared] = {}  # in pending()'s order: the order the paths are integrated in
        for name in self.pending():
            self._check()
            kind, value = forward.kinds[name], self.case.value(name)
            with model_lock(forward.model):
                if kind == "image" and settings.image_method == "grad_cam" and name in first.grad_cam:
                    self._panels[name] = first.grad_cam[name]
                elif kind == "image" and settings.image_method != "integrated_gradients":
                    self._panels[name] = image_saliency(forward, value.shape, target, settings.image_method,
                                                        modality=name)
                elif kind == "image":
                    prepared[name] = image_path(forward, value.shape, target, name)
                elif kind == "text":
                    prepared[name] = note_path(forward, value, self.predictor.tokenizer, target, modality=name,
                                               layer=settings.note_layer)
                elif kind == "signal":
                    prepared[name] = signal_path(forward, target, value.duration_s, modality=name)
                else:
                    prepared[name] = tabular_path(forward, self.case, target, name)
            if name in self._panels:
                yield name, self._panels[name]
        for name in [n for n, p in prepared.items() if p.path is None]:
            self._panels[name] = prepared.pop(name).finish(None, None)
            yield name, self._panels[name]
        paths = [p.path for p in prepared.values()]
        try:
            for path, attributions, completeness in integrate(forward, paths, target, settings.integration(),
                                                              self._check):
                self._panels[path.modality] = prepared[path.modality].finish(attributions, completeness)
                yield path.modality, self._panels[path.modality]
        except ExplanationCancelled:
            self._cancelled = True
            raise

    def pending(self) -> list[str]:
        """The modalities the case has whose panels are not computed yet, in the order ``panels()`` computes
        them (after the first view; before it, every modality the case has)."""
        self.first_view()
        forward = self._forward
        waiting = [n for n in forward.names if forward.has(n) and n not in self._panels]
        integrated = self.settings.image_method == "integrated_gradients"
        quick = [n for n in waiting if forward.kinds[n] == "image" and not integrated]  # saliency other than IG
        rest = [n for n in waiting if n not in quick]
        return quick + sorted(rest, key=lambda n: INTEGRATION_ORDER.index(forward.kinds[n]))

    @property
    def done(self) -> list[str]:
        """The modalities whose panels are computed, in declaration order."""
        return [n for n in (self._forward.names if self._forward else ()) if n in self._panels]

    def partial(self) -> CaseExplanation:
        """The explanation as far as it is computed: the first view and the panels finished so far (the others
        absent from ``panels`` and their cardio fields None). Computes the first view if needed, nothing else;
        does not call ``cancel`` (a progress display may call this from its cancel callable)."""
        if self._cancelled:
            raise ExplanationCancelled(f"the explanation of case {self.case.case_id} was cancelled")
        first, forward = self.first_view(), self._forward
        panels = {n: self._panels[n] for n in forward.names if n in self._panels}
        legacy = {slot: panels.get(kind) if kind in forward.names and forward.kinds[kind] == kind else None
                  for kind, slot in LEGACY_FIELDS.items()}
        return CaseExplanation(
            case_id=first.case_id, label=first.label, classes=first.classes, probabilities=first.probabilities,
            target=first.target, present=first.present, cross_attention=first.cross_attention,
            importance=first.importance, ood=first.ood, inputs=first.inputs, panels=panels, kinds=first.kinds,
            survival_curve=first.survival_curve, **legacy)

    def explanation(self) -> CaseExplanation:
        """The whole explanation (computing whatever is left)."""
        for _ in self.panels():
            pass
        self._check()
        return self.partial()


# the order Integrated Gradients panels are integrated in (and, one path at a time, appear in): the cheap
# paths first, the note (BERT on every step) last
INTEGRATION_ORDER = ("image", "signal", "tabular", "text")


def explain_case(predictor: Predictor, case: Case, settings: ExplainSettings = ExplainSettings(), *,
                 ood: OODReference | None = None, survival: SurvivalTarget | None = None,
                 cancel: Cancel = None) -> CaseExplanation:
    """Every part of a case's explanation. ``ood`` is the checkpoint's out-of-distribution reference
    (``Checkpoint.ood``; None: no flags). ``survival``: the explained quantity of a survival model (default
    5-year survival; an error for a classification model). ``cancel``: stop between passes
    (ExplanationCancelled). Safe to call from several threads sharing one model: the model is used under
    its lock throughout."""
    with model_lock(predictor.model):
        return CaseExplainer(predictor, case, settings, ood=ood, survival=survival, cancel=cancel).explanation()


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value
