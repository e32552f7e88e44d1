"""Checks that the explanations say something true about the model.

- Model randomisation (Adebayo et al. 2018): re-initialise the model's layers from the top down; saliency
  that depends on what the model learned must become less similar to the original at each step.
- Deletion curves: remove the most-attributed parts first (image pixels, ECG samples, note words) and
  watch the explained class's probability fall, against removing them in random order.
- ERASER comprehensiveness / sufficiency for note phrases (DeYoung et al. 2020).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from explain._forward import ModalityForward
from explain.image import image_saliency
from explain.signal import explain_signal
from explain.text import explain_note
from neurofusion.data.schema import Case
from neurofusion.inference import Predictor, model_lock

DELETION_FRACTIONS = np.linspace(0, 1, 11)


@dataclass
class DeletionCurve:
    fractions: np.ndarray  # (K,) share of the modality removed
    attributed: np.ndarray  # (K,) p(target) removing the most-attributed first
    random: np.ndarray  # (K,) p(target) removing in random order

    @property
    def area_attributed(self) -> float:
        return float(np.trapezoid(self.attributed, self.fractions))

    @property
    def area_random(self) -> float:
        return float(np.trapezoid(self.random, self.fractions))


def cascade_groups(model) -> list[tuple[str, list[torch.nn.Module]]]:
    """Layer groups from the output back to the input, in the order they are re-initialised."""
    groups: list[tuple[str, list[torch.nn.Module]]] = [("heads", [model.heads])]
    if hasattr(model, "fusion"):
        groups.append(("fusion", [model.fusion, model.missing]))
    encoders = model.encoders
    if "image" in encoders:
        stages = list(encoders["image"].backbone.encoder.stages)
        groups.append(("image attention pool", [encoders["image"].pool]))
        groups += [(f"image stage {k + 1}", [stages[k]]) for k in reversed(range(len(stages)))]
        groups.append(("image stem", [encoders["image"].backbone.embedder]))
    if "signal" in encoders:
        signal = encoders["signal"]
        groups.append(("signal LSTM + attention", [signal.lstm, signal.pool, signal.project]))
        groups.append(("signal convolutions", [signal.conv]))
    if "text" in encoders:
        layers = list(encoders["text"].bert.encoder.layer)
        groups += [(f"text layer {k + 1}", [layers[k]]) for k in reversed(range(len(layers)))]
    return groups


def randomisation_check(predictor: Predictor, cases: Sequence[Case], *, n_steps: int = 16,
                        seed: int = 0) -> pd.DataFrame:
    """Spearman rank correlation between each case's |saliency| under the trained model and under the
    model with the top k layer groups re-initialised (cumulatively), for the image (Integrated
    Gradients) and the ECG (Integrated Gradients). One row per cascade step, mean over cases.

    Only inputs that differ from the Integrated Gradients baseline (non-black pixels, non-zero ECG
    samples) are compared: the others get zero attribution under any model at all, and counting them would
    keep the correlation high whatever the model learned."""
    targets = [int(k) for k in predictor.predict(cases)[1].argmax(1)]  # the trained model's class throughout
    original = _saliencies(predictor.model, predictor, cases, targets, n_steps)
    randomised = copy.deepcopy(predictor.model).eval()
    # the re-initialisation draws where the weights live: a CPU generator cannot fill CUDA parameters
    generator = torch.Generator(device=next(randomised.parameters()).device).manual_seed(seed)
    rows = [{"step": 0, "re_initialised": "none", **_similarity(original, original)}]
    for k, (name, modules) in enumerate(cascade_groups(randomised), start=1):
        for module in modules:
            _reinitialise(module, generator)
        rows.append({"step": k, "re_initialised": name,
                     **_similarity(original, _saliencies(randomised, predictor, cases, targets, n_steps))})
    return pd.DataFrame(rows)


def _saliencies(model, predictor: Predictor, cases: Sequence[Case], targets: Sequence[int],
                n_steps: int) -> dict[str, list]:
    """{modality: [(attribution, input), ...]} in the model's input frame."""
    runner = Predictor(model, predictor.tokenizer, predictor.device)
    maps: dict[str, list] = {"image": [], "signal": []}
    with model_lock(model):
        for case, target in zip(cases, targets):
            batch = runner.batch([case])
            forward = ModalityForward(model, batch)
            if forward.has("image"):
                saliency = image_saliency(forward, case.image.shape, target, "integrated_gradients", n_steps=n_steps)
                maps["image"].append((saliency.model_map, batch.image[0, 0].cpu().numpy()))
            if forward.has("signal"):
                signal = explain_signal(forward, target, case.signal.duration_s, n_steps=n_steps)
                maps["signal"].append((signal.attributions, batch.signal[0].cpu().numpy()))
    return maps


def _similarity(a: dict[str, list], b: dict[str, list]) -> dict[str, float]:
    out = {}
    for modality in a:
        values = [spearmanr(np.abs(x)[inputs != 0], np.abs(y)[inputs != 0]).statistic
                  for (x, inputs), (y, _) in zip(a[modality], b[modality])]
        out[f"{modality}_similarity"] = float(np.nanmean(values)) if values else float("nan")
    return out


@torch.no_grad()
def _reinitialise(module: torch.nn.Module, generator: torch.Generator) -> None:
    for sub in module.modules():
        for name, parameter in sub.named_parameters(recurse=False):
            if parameter.dim() >= 2:
                torch.nn.init.xavier_normal_(parameter, generator=generator)
            elif "weight" in name:
                parameter.fill_(1.0)
            else:
                parameter.normal_(0, 0.02, generator=generator)


@torch.no_grad()
def deletion_curve(score: Callable[[np.ndarray], float], attribution: np.ndarray, *, seed: int = 0,
                   fractions: np.ndarray = DELETION_FRACTIONS) -> DeletionCurve:
    """``score(keep)`` gives p(target) with only the elements where ``keep`` (same shape as attribution)
    is True left in. Elements are removed in order of decreasing attribution, and in a random order."""
    order = np.argsort(-attribution.ravel(), kind="stable")
    random_order = np.random.default_rng(seed).permutation(attribution.size)
    curves = []
    for ranking in (order, random_order):
        values = []
        for fraction in fractions:
            keep = np.ones(attribution.size, dtype=bool)
            keep[ranking[:int(round(fraction * attribution.size))]] = False
            values.append(score(keep.reshape(attribution.shape)))
        curves.append(np.array(values))
    return DeletionCurve(np.asarray(fractions), curves[0], curves[1])


def modality_deletion_curves(predictor: Predictor, case: Case, target: int, *, n_steps: int = 32,
                             seed: int = 0) -> dict[str, DeletionCurve]:
    """Deletion curves for the image (pixels -> black), ECG (samples -> 0) and note (words -> [PAD])."""
    model = predictor.model
    with model_lock(model):
        batch = predictor.batch([case])
        forward = ModalityForward(model, batch)
        curves = {}

        def probability(logits: torch.Tensor) -> float:
            return float(torch.softmax(logits, -1)[0, target])

        def kept(keep: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(keep).to(batch.present.device)  # the mask goes where the inputs are

        if forward.has("image"):
            saliency = image_saliency(forward, case.image.shape, target, "integrated_gradients", n_steps=n_steps)
            image = batch.image
            curves["image"] = deletion_curve(
                lambda keep: probability(forward.image(image * kept(keep)[None, None].to(image.dtype))),
                saliency.model_map, seed=seed)
        if forward.has("signal"):
            signal_result = explain_signal(forward, target, case.signal.duration_s, n_steps=n_steps)
            signal = batch.signal
            curves["signal"] = deletion_curve(
                lambda keep: probability(forward.signal(signal * kept(keep)[None].to(signal.dtype))),
                signal_result.attributions, seed=seed)
        if forward.has("text"):
            note = explain_note(forward, case.note, predictor.tokenizer, target, n_steps=n_steps)
            curves["text"] = deletion_curve(
                lambda keep: probability(forward.text_ids(_mask_tokens(batch, predictor.tokenizer, keep))),
                note.token_scores[1:-1], seed=seed)
    return curves


def _mask_tokens(batch, tokenizer, keep: np.ndarray) -> torch.Tensor:
    """Replace the word pieces (between [CLS] and [SEP]) not kept by [PAD]."""
    ids = batch.tokens["input_ids"].clone()
    inner = ids[0, 1:-1]
    inner[~torch.from_numpy(keep).to(ids.device)] = tokenizer.pad_token_id
    ids[0, 1:-1] = inner
    return ids


def eraser_scores(predictor: Predictor, case: Case, target: int, *, top_share: float = 0.2,
                  n_steps: int = 32) -> dict[str, float]:
    """ERASER for the note: the rationale is the top ``top_share`` of word pieces by attribution.
    comprehensiveness = p(full) - p(note without the rationale); sufficiency = p(full) - p(rationale only).
    High comprehensiveness and low sufficiency mean the highlighted words really carry the prediction."""
    model = predictor.model
    with model_lock(model):
        batch = predictor.batch([case])
        forward = ModalityForward(model, batch)
        if not forward.has("text"):
            raise ValueError("this case has no note")
        note = explain_note(forward, case.note, predictor.tokenizer, target, n_steps=n_steps)
        scores = note.token_scores[1:-1]
        k = max(1, int(round(top_share * len(scores))))
        rationale = np.zeros(len(scores), dtype=bool)
        rationale[np.argsort(-scores)[:k]] = True

        def p(keep: np.ndarray) -> float:
            return float(torch.softmax(forward.text_ids(_mask_tokens(batch, predictor.tokenizer, keep)), -1)[0, target])

        with torch.no_grad():
            full = p(np.ones(len(scores), dtype=bool))
            return {"full": full, "comprehensiveness": full - p(~rationale), "sufficiency": full - p(rationale),
                    "rationale_tokens": int(k)}
