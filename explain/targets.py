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

from dataclasses import dataclass, field

import torch

from neurofusion.models.model import ModelOutput
from neurofusion.survival import SurvivalBins

SURVIVAL_QUANTITIES = ("survival", "risk")


@dataclass(frozen=True)
class SurvivalTarget:
    """The explained quantity of a survival model. quantity: "survival" = S(horizon), the probability of
    surviving past ``horizon``; "risk" = 1 - S(horizon), the risk score. horizon in ``bins.unit`` (60 months
    = 5 years by default). bins: the time grid of the model's survival head (its number of bins must match
    the head's outputs)."""

    quantity: str = "survival"
    horizon: float = 60.0
    bins: SurvivalBins = field(default_factory=SurvivalBins)

    def __post_init__(self) -> None:
        if self.quantity not in SURVIVAL_QUANTITIES:
            raise ValueError(f"survival quantity must be one of {SURVIVAL_QUANTITIES}, got {self.quantity!r}")
        if not 0.0 <= float(self.horizon) <= self.bins.edges[-1]:
            raise ValueError(f"horizon must lie in [0, {self.bins.edges[-1]}] {self.bins.unit} (the survival head's "
                             f"last bin edge), got {self.horizon}")

    @property
    def label(self) -> str:
        """What is explained, for tables and titles, e.g. 'survival at 60 months'."""
        what = "survival" if self.quantity == "survival" else "risk (1 - survival)"
        return f"{what} at {self.horizon:g} {self.bins.unit}"

    def value(self, hazard_logits: torch.Tensor) -> torch.Tensor:
        """(n, K) hazard logits -> (n,) the explained quantity, differentiable."""
        if hazard_logits.shape[-1] != self.bins.num_bins:
            raise ValueError(f"the survival head has {hazard_logits.shape[-1]} time bins but the explained quantity's "
                             f"grid has {self.bins.num_bins} ({list(self.bins.edges)}); pass the model's SurvivalBins")
        curve = torch.cumprod(1 - torch.sigmoid(hazard_logits), dim=1)  # SurvivalHead.survival_curve
        survival = self.bins.survival_at(curve, float(self.horizon))
        return survival if self.quantity == "survival" else 1.0 - survival


def is_survival(model) -> bool:
    """True when the model's primary head is a survival head (``config.outcome == "survival"``)."""
    config = getattr(model, "config", None)
    return getattr(config, "outcome", "classification") == "survival"


def _survival_target(model, survival: SurvivalTarget | None) -> SurvivalTarget:
    return SurvivalTarget() if survival is None else survival


def explained_values(model, output: ModelOutput, survival: SurvivalTarget | None = None) -> torch.Tensor:
    """(n, C) values the importance methods read: class probabilities, or for a survival model one column,
    the :class:`SurvivalTarget` quantity (default: survival at 60 months)."""
    if not is_survival(model):
        if survival is not None:
            raise ValueError(f"a survival quantity was given but the model's primary head is "
                             f"{model.config.heads[0].kind}, not survival")
        return output.probabilities
    head = model.config.heads[0].name
    return _survival_target(model, survival).value(output.heads[head])[:, None]


def explained_scores(model, output: ModelOutput, survival: SurvivalTarget | None = None) -> torch.Tensor:
    """(n, C) scores attributions explain: class logits, or for a survival model the one-column quantity."""
    if not is_survival(model):
        return output.logits
    return explained_values(model, output, survival)
