"""Tiny models on declared modalities for the explain tests: the 5-modality toy cohort of
tests/neurofusion/declared.py (RGB image, text, two tabular, signal; classification or survival) and any
subset of it, an in-memory 8-modality declaration (colour image, signal, six tabular panels), and planted
presence models (classification and survival) over any names whose exact Shapley values are known."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from neurofusion.config import HeadConfig, ModelConfig
from neurofusion.data import STANDARD_LEADS, Case, CohortReader, FeatureSpec, Signal
from neurofusion.data.dataset import Batch
from neurofusion.data.modalities import ModalitySpec, modalities_to_dicts
from neurofusion.data.tokenizer import train_wordpiece
from neurofusion.inference import Predictor
from neurofusion.models import build_model
from neurofusion.models.model import Encoded, ModelOutput
from neurofusion.survival import SurvivalBins
from tests.neurofusion.declared import tiny_encoders, write_toy_cohort

SURVIVAL_BINS = 10  # 12-month bins over 0-120 months (HeadConfig's default grid for 10 outputs)


def small_config(specs, features, classes, vocab_size: int = 0, survival: bool = False) -> ModelConfig:
    """A tiny config over declared modalities ``specs`` (ModalitySpec) and their ``features``."""
    head = (HeadConfig(name="survival", kind="survival", num_outputs=SURVIVAL_BINS) if survival
            else HeadConfig(num_outputs=len(classes)))
    return ModelConfig(
        task="toy", architecture="neurofusion", classes=[] if survival else list(classes),
        features=[dataclasses.asdict(f) for f in features],
        modalities=modalities_to_dicts(specs),
        **tiny_encoders(max(vocab_size, 8)),
        heads=[head],
    )


@dataclasses.dataclass
class Toy:
    """A built model with its predictor and cases (declaration order = ``predictor.model.names``)."""

    predictor: Predictor
    cases: list[Case]
    root: Path | None = None  # the cohort folder, when the cases were written to one

    @property
    def model(self):
        return self.predictor.model


def toy_model(root: Path, names: tuple[str, ...] | None = None, *, survival: bool = False, n: int = 16,
              seed: int = 0) -> Toy:
    """The toy cohort's model over ``names`` (default all five) with random weights (seeded)."""
    path, _ = write_toy_cohort(root, survival=survival, n=n)
    reader = CohortReader(path)
    specs = [m for m in reader.modalities if names is None or m.name in names]
    kept = {m.name for m in specs}
    tokenizer = None
    if "report" in kept:
        tokenizer = train_wordpiece([c.value("report") for c in reader if c.value("report")], 200)
    features = [f for f in reader.features.values() if f.modality in kept]
    config = small_config(specs, features, reader.classes, len(tokenizer) if tokenizer else 0, survival)
    torch.manual_seed(seed)
    model = build_model(config).eval()
    cases = [c if names is None else _restrict(c, specs) for c in reader]
    return Toy(Predictor(model, tokenizer), cases, path)


def _restrict(case: Case, specs) -> Case:
    values = {m.name: case.value(m.name) for m in specs}
    return Case.from_values(case.case_id, case.label, case.split, values, tuple(specs), site=case.site,
                            outcome=case.outcome)


EIGHT = (ModalitySpec("slide", "image", colour=True), ModalitySpec("wave", "signal"),
         *(ModalitySpec(f"panel_{j}", "tabular") for j in range(6)))
EIGHT_FEATURES = [f for j in range(6) for f in (
    FeatureSpec(f"x{j}", modality=f"panel_{j}"),
    FeatureSpec(f"c{j}", kind="categorical", categories=("a", "b"), modality=f"panel_{j}"))]


def eight_modality_model(n_cases: int = 6, seed: int = 0) -> Toy:
    """8 declared modalities (colour image, signal, six 2-feature tabular panels), in memory; case i lacks
    modality i % 8 when i >= 8 (the first cases have everything)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n_cases):
        values = {"slide": rng.random((3, 12, 12)).astype(np.float32),
                  "wave": Signal(rng.normal(0, 0.3, (12, 100)).astype(np.float32), 50.0, STANDARD_LEADS)}
        values.update({f"panel_{j}": {f"x{j}": float(rng.normal()), f"c{j}": ("a", "b")[int(rng.integers(2))]}
                       for j in range(6)})
        if i >= 8:
            values.pop(EIGHT[i % 8].name)
        cases.append(Case.from_values(f"E{i:02d}", ("low", "high")[i % 2], "test", values, EIGHT))
    torch.manual_seed(seed)
    model = build_model(small_config(EIGHT, EIGHT_FEATURES, ("low", "high"))).eval()
    return Toy(Predictor(model, None), cases)


class PlantedPresenceModel:
    """Two classes over declared ``names``; logit of class 1 = sum_m weight[m] [m present] + interaction
    [a and b present] for the pair ``pair``. Equal weights in the pair make a and b symmetric players; a
    zero weight outside the pair is a dummy."""

    def __init__(self, names: tuple[str, ...], weights: list[float], pair: tuple[str, str], interaction: float) -> None:
        self.names = names
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.pair = tuple(names.index(m) for m in pair)
        self.interaction = interaction

    def encode(self, batch: Batch) -> Encoded:
        b = batch.present.shape[0]
        return Encoded({m: torch.zeros(b, 1) for m in self.names}, batch.present)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = encoded.present if present is None else present & encoded.present
        a, b = self.pair
        logit = (mask.float() * self.weights).sum(1) + self.interaction * (mask[:, a] & mask[:, b]).float()
        logits = torch.stack([torch.zeros_like(logit), logit], 1)
        return ModelOutput(logits=logits, probabilities=torch.softmax(logits, -1), present=mask)


def planted_batch(names: tuple[str, ...], present: list[list[bool]]) -> Batch:
    specs = tuple(ModalitySpec(n, "tabular") for n in names)
    b = len(present)
    return Batch(case_ids=[f"p{i}" for i in range(b)], present=torch.tensor(present),
                 labels=torch.zeros(b, dtype=torch.long), modalities=specs)


class PlantedSurvivalModel:
    """A survival model over declared ``names`` whose hazard in every time bin is
    ``base + sum_m weight[m] [m present]``: a modality with a positive weight raises risk, one with weight
    0 is ignored. ``config`` carries what explain reads of a survival model (outcome, grid, horizon)."""

    def __init__(self, names: tuple[str, ...], weights: list[float], base: float = -2.5) -> None:
        self.names = names
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.base = base
        self.config = SimpleNamespace(outcome="survival", survival_bins=SurvivalBins(), horizon=60.0)

    def encode(self, batch: Batch) -> Encoded:
        b = batch.present.shape[0]
        return Encoded({m: torch.zeros(b, 1) for m in self.names}, batch.present)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = encoded.present if present is None else present & encoded.present
        hazard = (self.base + (mask.float() * self.weights).sum(1))[:, None].expand(-1, SURVIVAL_BINS)
        return ModelOutput(logits=None, probabilities=None, present=mask, hazard_logits=hazard,
                           survival=torch.cumprod(1 - torch.sigmoid(hazard), dim=1))
