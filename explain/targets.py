"""What an explanation explains: the scalar each method (Shapley, leave-one-out, attributions, ablation)
reads off the model's output.

A classification model is explained per class: Shapley values and ablation in probability units of the
class, attributions in logit units (a confident softmax saturates, which would leave every attribution near
zero). A survival model (primary head ``SurvivalHead``: one hazard logit per time bin) is explained through
one chosen quantity of its predicted survival curve (:class:`SurvivalTarget`): the probability of surviving
past a horizon (5 years by default) or the risk score ``1 - S(horizon)``
(:meth:`neurofusion.survival.SurvivalBins.risk_score`). That quantity is already a probability, so
Shapley values, ablation and attributions are all in its units; it is differentiable, so Captum's methods
work on it unchanged (as a one-column "class" 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from neurofusion.models.model import ModelOutput

if TYPE_CHECKING:  # neurofusion.survival loads scikit-survival, which explaining a classifier never needs
    from neurofusion.survival import SurvivalBins

SURVIVAL_QUANTITIES = ("survival", "risk")


@dataclass(frozen=True)
class SurvivalTarget:
    """The explained quantity of a survival model. quantity: "survival" = S(horizon), the probability of
    surviving past ``horizon``; "risk" = 1 - S(horizon), the risk score. horizon in the model's time unit;
    None = the model's own (``model.config.horizon``: 60 months = 5 years for cancer)."""

    quantity: str = "survival"
    horizon: float | None = None

    def __post_init__(self) -> None:
        if self.quantity not in SURVIVAL_QUANTITIES:
            raise ValueError(f"survival quantity must be one of {SURVIVAL_QUANTITIES}, got {self.quantity!r}")
        if self.horizon is not None and not (isinstance(self.horizon, (int, float)) and self.horizon >= 0):
            raise ValueError(f"survival horizon must be a time >= 0 in the model's unit, got {self.horizon!r}")

    def resolved(self, model) -> tuple[SurvivalBins, float]:
        """The model's time grid and the horizon (checked against the grid)."""
        bins: SurvivalBins = model.config.survival_bins
        horizon = float(model.config.horizon if self.horizon is None else self.horizon)
        if not 0.0 <= horizon <= bins.edges[-1]:
            raise ValueError(f"survival horizon {horizon:g} {bins.unit} lies outside the model's time grid "
                             f"[0, {bins.edges[-1]:g}] {bins.unit}; choose a horizon within it")
        return bins, horizon

    def label(self, model) -> str:
        """What is explained, for tables and titles, e.g. 'survival at 60 months'."""
        bins, horizon = self.resolved(model)
        what = "survival" if self.quantity == "survival" else "risk (1 - survival)"
        return f"{what} at {horizon:g} {bins.unit}"

    def value(self, model, output: ModelOutput) -> torch.Tensor:
        """(n,) the explained quantity from a survival output (differentiable)."""
        bins, horizon = self.resolved(model)
        survival = bins.survival_at(output.survival, horizon)
        return survival if self.quantity == "survival" else 1.0 - survival


def is_survival(model) -> bool:
    """True when the model's primary head is a survival head (``config.outcome == "survival"``)."""
    config = getattr(model, "config", None)
    return getattr(config, "outcome", "classification") == "survival"


def explained_values(model, output: ModelOutput, survival: SurvivalTarget | None = None) -> torch.Tensor:
    """(n, C) values the importance methods read: class probabilities, or for a survival model one column,
    the :class:`SurvivalTarget` quantity (default: survival at the model's horizon)."""
    if not is_survival(model):
        if survival is not None:
            raise ValueError(f"a survival quantity was given but the model's primary head is "
                             f"{model.config.heads[0].kind}, not survival")
        return output.probabilities
    return (SurvivalTarget() if survival is None else survival).value(model, output)[:, None]


def explained_scores(model, output: ModelOutput, survival: SurvivalTarget | None = None) -> torch.Tensor:
    """(n, C) scores attributions explain: class logits, or for a survival model the one-column quantity."""
    if not is_survival(model):
        return output.logits
    return explained_values(model, output, survival)


def explained_label(model, survival: SurvivalTarget | None = None) -> str:
    """'probability' for a classifier, else the survival quantity's label."""
    if not is_survival(model):
        return "probability"
    return (SurvivalTarget() if survival is None else survival).label(model)
