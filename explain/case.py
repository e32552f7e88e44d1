"""Everything the dashboard shows for one case, computed together: prediction, cross-modal attention,
modality importance (attention, Shapley, leave-one-out), the attribution of each modality present, what
the model could not use of the case's inputs, and which inputs are unlike the training data."""

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
from explain.text import NoteExplanation, explain_note
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.inference import Predictor, model_lock
from neurofusion.inputs import case_input_report
from neurofusion.ood import OODReference


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
        })


def explain_case(predictor: Predictor, case: Case, settings: ExplainSettings = ExplainSettings(), *,
                 ood: OODReference | None = None) -> CaseExplanation:
    """Every part of a case's explanation. ``ood`` is the checkpoint's out-of-distribution reference
    (``Checkpoint.ood``; None: no flags). Safe to call from several threads sharing one model: the model is
    used under its lock throughout."""
    with model_lock(predictor.model):
        return _explain_case(predictor, case, settings, ood)


def _explain_case(predictor: Predictor, case: Case, settings: ExplainSettings,
                  reference: OODReference | None) -> CaseExplanation:
    model = predictor.model.eval()
    batch = predictor.batch([case])
    target = None if settings.target is None else torch.tensor([settings.target], device=batch.present.device)
    forward = ModalityForward(model, batch, alone=settings.context == "alone")  # encodes the case once for all
    importance = modality_importance(model, batch, target, encoded=forward.encoded)
    explained = int(importance.target[0])
    with torch.no_grad():
        output = model.fuse(forward.encoded, batch.present)
    steps = {"n_steps": settings.n_steps, "internal_batch_size": settings.internal_batch_size}
    return CaseExplanation(
        case_id=case.case_id,
        label=case.label,
        classes=list(model.classes),
        probabilities=output.probabilities[0].float().cpu().numpy(),
        target=explained,
        present={m: bool(v) for m, v in zip(MODALITIES, batch.present[0].tolist())},
        cross_attention=None if output.cross_attention is None else output.cross_attention[0].float().cpu().numpy(),
        importance=importance,
        image=image_saliency(forward, case.image.shape, explained, settings.image_method, **steps)
        if forward.has("image") else None,
        note=explain_note(forward, case.note, predictor.tokenizer, explained, **steps) if forward.has("text") else None,
        signal=explain_signal(forward, explained, case.signal.duration_s, **steps) if forward.has("signal") else None,
        tabular=explain_tabular(forward, case, explained, **steps) if forward.has("tabular") else None,
        ood=None if reference is None else reference.assess(forward.encoded),  # the case's encoding, reused
        inputs=case_input_report(predictor.spec, case).to_dict(),
    )


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
