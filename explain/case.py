"""Everything the dashboard shows for one case, computed together: prediction, cross-modal attention,
modality importance (attention, Shapley, leave-one-out), the attribution of each modality present, what
the model could not use of the case's inputs, and which inputs are unlike the training data.

Every declared modality the case has gets a panel (``CaseExplanation.panels``, by name, in declaration
order), chosen by the modality's kind: image saliency (grey or colour), note attributions, signal
attributions, or per-feature tabular attributions (e.g. per gene of a mutation panel). The cardio fields
``image``, ``note``, ``signal`` and ``tabular`` hold the panels of the modalities named image, text, signal
and tabular (cardio's); ``to_dict()`` is unchanged for cardio's declaration and adds ``panels`` for others.

A survival model is explained through one quantity (:class:`explain.targets.SurvivalTarget`, default 5-year
survival): ``classes`` is then that quantity's label, ``probabilities`` its value, and ``survival_curve``
the predicted curve.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from explain._forward import ModalityForward
from explain.image import IMAGE_METHODS, ImageSaliency, image_saliency
from explain.importance import ModalityImportance, modality_importance
from explain.signal import SignalExplanation, explain_signal
from explain.tabular import explain_tabular
from explain.targets import SurvivalTarget, explained_values, is_survival
from explain.text import NoteExplanation, explain_note
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

    def __post_init__(self) -> None:
        if self.context not in ("case", "alone"):
            raise ValueError(f"context must be 'case' or 'alone', got {self.context!r}")
        if self.image_method not in IMAGE_METHODS:
            raise ValueError(f"image_method must be one of {IMAGE_METHODS}, got {self.image_method!r}")
        if self.n_steps < 2:
            raise ValueError(f"n_steps must be at least 2, got {self.n_steps}")


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


def explain_case(predictor: Predictor, case: Case, settings: ExplainSettings = ExplainSettings(), *,
                 ood: OODReference | None = None, survival: SurvivalTarget | None = None) -> CaseExplanation:
    """Every part of a case's explanation. ``ood`` is the checkpoint's out-of-distribution reference
    (``Checkpoint.ood``; None: no flags). ``survival``: the explained quantity of a survival model (default
    5-year survival; an error for a classification model). Safe to call from several threads sharing one
    model: the model is used under its lock throughout."""
    with model_lock(predictor.model):
        return _explain_case(predictor, case, settings, ood, survival)


def _explain_case(predictor: Predictor, case: Case, settings: ExplainSettings,
                  reference: OODReference | None, survival: SurvivalTarget | None) -> CaseExplanation:
    model = predictor.model.eval()
    batch = predictor.batch([case])
    target = None if settings.target is None else torch.tensor([settings.target], device=batch.present.device)
    forward = ModalityForward(model, batch, alone=settings.context == "alone", survival=survival)  # encodes once
    importance = modality_importance(model, batch, target, encoded=forward.encoded, survival=survival)
    explained = int(importance.target[0])
    with torch.no_grad():
        output = model.fuse(forward.encoded, batch.present)
    panels = {name: _panel(forward, predictor, case, name, explained, settings) for name in forward.names
              if forward.has(name)}
    legacy = {slot: panels.get(kind) if kind in forward.names and forward.kinds[kind] == kind else None
              for kind, slot in LEGACY_FIELDS.items()}
    survival_model = is_survival(model)
    curve = None
    if survival_model:
        curve = output.survival[0].float().cpu().numpy()
    return CaseExplanation(
        case_id=case.case_id,
        label=case.label,
        classes=[importance.explained] if survival_model else list(model.classes),
        probabilities=explained_values(model, output, survival)[0].float().cpu().numpy(),
        target=explained,
        present={m: bool(v) for m, v in zip(forward.names, batch.present[0].tolist())},
        cross_attention=None if output.cross_attention is None else output.cross_attention[0].float().cpu().numpy(),
        importance=importance,
        ood=None if reference is None else reference.assess(forward.encoded),  # the case's encoding, reused
        inputs=case_input_report(predictor.spec, case).to_dict(),
        panels=panels,
        kinds=dict(forward.kinds),
        survival_curve=curve,
        **legacy,
    )


def _panel(forward: ModalityForward, predictor: Predictor, case: Case, name: str, target: int,
           settings: ExplainSettings) -> Panel:
    """The explanation of one present modality, chosen by its kind."""
    steps = {"n_steps": settings.n_steps, "internal_batch_size": settings.internal_batch_size, "modality": name}
    kind, value = forward.kinds[name], case.value(name)
    if kind == "image":
        return image_saliency(forward, value.shape, target, settings.image_method, **steps)
    if kind == "text":
        return explain_note(forward, value, predictor.tokenizer, target, **steps)
    if kind == "signal":
        return explain_signal(forward, target, value.duration_s, **steps)
    return explain_tabular(forward, case, target, **steps)


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
