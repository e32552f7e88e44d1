"""Checks that the explanations say something true about the model.

- Model randomisation (Adebayo et al. 2018): re-initialise the model's layers from the top down; saliency
  that depends on what the model learned must become less similar to the original at each step.
- Deletion curves: remove the most-attributed parts first (image pixels, ECG samples, note words) and
  watch the explained class's probability fall, against removing them in random order.
- ERASER comprehensiveness / sufficiency for note phrases (DeYoung et al. 2020).

Every declared image, signal and text modality is checked, keyed by its name (cardio: image, signal,
text), kinds in that order and each kind's modalities in declaration order. A survival model's explained
value is its chosen quantity (:class:`explain.targets.SurvivalTarget`) instead of p(target).
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
from explain.targets import SurvivalTarget, is_survival
from explain.text import explain_note
from neurofusion.data.modalities import CARDIO_MODALITIES
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


def checked_modalities(model, kind: str) -> list[str]:
    """The model's encoded modalities of ``kind``, in declaration order (cardio's for a model that
    declares none)."""
    specs = getattr(model, "specs", None) or CARDIO_MODALITIES
    return [s.name for s in specs if s.kind == kind and s.name in model.encoders]


def cascade_groups(model) -> list[tuple[str, list[torch.nn.Module]]]:
    """Layer groups from the output back to the input, in the order they are re-initialised: heads,
    fusion, then each image, signal and text encoder (named by its modality) from its top layer down."""
    groups: list[tuple[str, list[torch.nn.Module]]] = [("heads", [model.heads])]
    if hasattr(model, "fusion"):
        groups.append(("fusion", [model.fusion, model.missing]))
    encoders = model.encoders
    for name in checked_modalities(model, "image"):
        stages = list(encoders[name].backbone.encoder.stages)
        groups.append((f"{name} attention pool", [encoders[name].pool]))
        groups += [(f"{name} stage {k + 1}", [stages[k]]) for k in reversed(range(len(stages)))]
        groups.append((f"{name} stem", [encoders[name].backbone.embedder]))
    for name in checked_modalities(model, "signal"):
        signal = encoders[name]
        groups.append((f"{name} LSTM + attention", [signal.lstm, signal.pool, signal.project]))
        groups.append((f"{name} convolutions", [signal.conv]))
    for name in checked_modalities(model, "text"):
        layers = list(encoders[name].bert.encoder.layer)
        groups += [(f"{name} layer {k + 1}", [layers[k]]) for k in reversed(range(len(layers)))]
    return groups


def randomisation_check(predictor: Predictor, cases: Sequence[Case], *, n_steps: int = 16,
                        seed: int = 0) -> pd.DataFrame:
    """Spearman rank correlation between each case's |saliency| under the trained model and under the
    model with the top k layer groups re-initialised (cumulatively), for the image (Integrated
    Gradients) and the ECG (Integrated Gradients). One row per cascade step, mean over cases.

    Only inputs that differ from the Integrated Gradients baseline (non-black pixels, non-zero ECG
    samples) are compared: the others get zero attribution under any model at all, and counting them would
    keep the correlation high whatever the model learned."""
    # the trained model's class throughout (a survival model: its one explained quantity)
    survival = is_survival(predictor.model)
    targets = [0] * len(cases) if survival else [int(k) for k in predictor.predict(cases)[1].argmax(1)]
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
    """{modality: [(attribution, input), ...]} in the model's input frame, for every image and signal
    modality (a colour image's input: its channel sum, where the summed map lives)."""
    runner = Predictor(model, predictor.tokenizer, predictor.device)
    images, signals = checked_modalities(model, "image"), checked_modalities(model, "signal")
    maps: dict[str, list] = {name: [] for name in images + signals}
    with model_lock(model):
        for case, target in zip(cases, targets):
            batch = runner.batch([case])
            forward = ModalityForward(model, batch)
            for name in images:
                if forward.has(name):
                    saliency = image_saliency(forward, case.value(name).shape, target, "integrated_gradients",
                                              n_steps=n_steps, modality=name)
                    maps[name].append((saliency.model_map, batch.inputs[name]["image"][0].sum(0).cpu().numpy()))
            for name in signals:
                if forward.has(name):
                    signal = explain_signal(forward, target, case.value(name).duration_s, n_steps=n_steps,
                                            modality=name)
                    maps[name].append((signal.attributions, batch.inputs[name]["signal"][0].cpu().numpy()))
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
                             seed: int = 0, survival: SurvivalTarget | None = None) -> dict[str, DeletionCurve]:
    """Deletion curves, by modality name, for every image (pixels -> black, all channels of a pixel
    together), signal (samples -> 0) and text (words -> [PAD]) modality the case has. A survival model:
    the curve of its explained quantity ``survival`` (target 0)."""
    model = predictor.model
    survival_model = is_survival(model)
    with model_lock(model):
        batch = predictor.batch([case])
        forward = ModalityForward(model, batch, survival=survival)
        curves = {}

        def probability(scores: torch.Tensor) -> float:
            return float(scores[0, target]) if survival_model else float(torch.softmax(scores, -1)[0, target])

        def kept(keep: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(keep).to(batch.present.device)  # the mask goes where the inputs are

        for name in [n for n in checked_modalities(model, "image") if forward.has(n)]:
            saliency = image_saliency(forward, case.value(name).shape, target, "integrated_gradients",
                                      n_steps=n_steps, modality=name)
            image, function = batch.inputs[name]["image"], forward.function(name)
            curves[name] = deletion_curve(
                lambda keep, image=image, function=function: probability(
                    function(image * kept(keep)[None, None].to(image.dtype))),
                saliency.model_map, seed=seed)
        for name in [n for n in checked_modalities(model, "signal") if forward.has(n)]:
            signal_result = explain_signal(forward, target, case.value(name).duration_s, n_steps=n_steps,
                                           modality=name)
            signal, function = batch.inputs[name]["signal"], forward.function(name)
            curves[name] = deletion_curve(
                lambda keep, signal=signal, function=function: probability(
                    function(signal * kept(keep)[None].to(signal.dtype))),
                signal_result.attributions, seed=seed)
        for name in [n for n in checked_modalities(model, "text") if forward.has(n)]:
            note = explain_note(forward, case.value(name), predictor.tokenizer, target, n_steps=n_steps,
                                modality=name)
            function = forward.function(name)
            curves[name] = deletion_curve(
                lambda keep, name=name, function=function: probability(
                    function(_mask_tokens(batch, predictor.tokenizer, keep, name))),
                note.token_scores[1:-1], seed=seed)
    return curves


def _mask_tokens(batch, tokenizer, keep: np.ndarray, modality: str | None = None) -> torch.Tensor:
    """Replace the word pieces (between [CLS] and [SEP]) of text modality ``modality`` (default the first)
    not kept by [PAD]."""
    ids = (batch.tokens if modality is None else batch.inputs[modality])["input_ids"].clone()
    inner = ids[0, 1:-1]
    inner[~torch.from_numpy(keep).to(ids.device)] = tokenizer.pad_token_id
    ids[0, 1:-1] = inner
    return ids


def eraser_scores(predictor: Predictor, case: Case, target: int, *, top_share: float = 0.2,
                  n_steps: int = 32, modality: str | None = None) -> dict[str, float]:
    """ERASER for the note (text modality ``modality``, default the first): the rationale is the top
    ``top_share`` of word pieces by attribution. comprehensiveness = p(full) - p(note without the
    rationale); sufficiency = p(full) - p(rationale only). High comprehensiveness and low sufficiency mean
    the highlighted words really carry the prediction. A classifier only (p is a class probability)."""
    model = predictor.model
    if is_survival(model):
        raise ValueError("ERASER scores compare class probabilities; this model predicts survival")
    with model_lock(model):
        batch = predictor.batch([case])
        forward = ModalityForward(model, batch)
        name = forward.first("text") if modality is None else modality
        if name is None or not forward.has(name):
            raise ValueError("this case has no note")
        function = forward.function(name)
        note = explain_note(forward, case.value(name), predictor.tokenizer, target, n_steps=n_steps, modality=name)
        scores = note.token_scores[1:-1]
        k = max(1, int(round(top_share * len(scores))))
        rationale = np.zeros(len(scores), dtype=bool)
        rationale[np.argsort(-scores)[:k]] = True

        def p(keep: np.ndarray) -> float:
            return float(torch.softmax(function(_mask_tokens(batch, predictor.tokenizer, keep, name)), -1)[0, target])

        with torch.no_grad():
            full = p(np.ones(len(scores), dtype=bool))
            return {"full": full, "comprehensiveness": full - p(~rationale), "sufficiency": full - p(rationale),
                    "rationale_tokens": int(k)}
