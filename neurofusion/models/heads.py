"""Task heads on the fused vector and the multi-task loss: classification (softmax), regression, and
discrete-time survival (hazard per time bin -> survival curve), for the cardio, ICU and cancer tasks."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from neurofusion.config import HeadConfig


class ClassificationHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, num_classes)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.linear(fused)  # (B, D) -> (B, C) logits

    @staticmethod
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """target: (B,) class index, -1 = unlabelled (ignored)."""
        return F.cross_entropy(logits, target, ignore_index=-1)


class RegressionHead(nn.Module):
    def __init__(self, in_dim: int, num_outputs: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, num_outputs)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.linear(fused)  # (B, D) -> (B, K)

    @staticmethod
    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """target: (B, K) with NaN where unknown (ignored)."""
        known = ~torch.isnan(target)
        if not known.any():
            return prediction.sum() * 0.0
        return F.mse_loss(prediction[known], target[known])


class SurvivalHead(nn.Module):
    """Discrete-time hazard model: logits h_k for K time bins; S(t_k) = prod_{j<=k} (1 - sigmoid(h_j))."""

    def __init__(self, in_dim: int, num_bins: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, num_bins)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.linear(fused)  # (B, D) -> (B, K) hazard logits

    @staticmethod
    def survival_curve(hazard_logits: torch.Tensor) -> torch.Tensor:
        """(B, K) -> (B, K) probability of surviving past the end of each bin, non-increasing in k. Computed in
        float32 at least (float64 stays float64): a bfloat16 product over K bins would drift by percents."""
        return torch.cumprod(1 - torch.sigmoid(_at_least_float32(hazard_logits)), dim=1)

    @staticmethod
    def loss(hazard_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """target: (B, 2) = (bin index of the event or censoring, event 1 / censored 0); bin -1 = unknown.

        Negative log-likelihood: survive every bin before k, then the event in bin k (or survive bin k too
        when censored)."""
        bins, event = target[:, 0].long(), target[:, 1].float()
        known = bins >= 0
        if not known.any():
            return hazard_logits.sum() * 0.0
        logits, bins, event = _at_least_float32(hazard_logits[known]), bins[known], event[known]
        k = torch.arange(logits.shape[1], device=logits.device)[None, :]
        log_survive = F.logsigmoid(-logits)  # log(1 - h)
        log_hazard = F.logsigmoid(logits)  # log(h)
        before = (k < bins[:, None]).float()
        at = (k == bins[:, None]).float()
        ll = (before * log_survive).sum(1) + (at * (event[:, None] * log_hazard + (1 - event[:, None]) * log_survive)).sum(1)
        return -ll.mean()


def _at_least_float32(values: torch.Tensor) -> torch.Tensor:
    """bfloat16 / float16 (autocast) -> float32; float32 and float64 unchanged."""
    return values.to(torch.promote_types(values.dtype, torch.float32))


HEADS = {"classification": ClassificationHead, "regression": RegressionHead, "survival": SurvivalHead}


def build_heads(configs: list[HeadConfig], in_dim: int) -> nn.ModuleDict:
    unknown = [h.kind for h in configs if h.kind not in HEADS]
    if unknown:
        raise ValueError(f"unknown head kind(s) {unknown}; expected one of {sorted(HEADS)}")
    return nn.ModuleDict({h.name: HEADS[h.kind](in_dim, h.num_outputs) for h in configs})


def multitask_loss(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], configs: list[HeadConfig]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of each head's loss over the heads that have targets -> (total, {name: value})."""
    total, parts = None, {}
    for head in configs:
        if head.name not in targets:
            continue
        value = HEADS[head.kind].loss(outputs[head.name], targets[head.name])
        parts[head.name] = float(value.detach())
        total = head.weight * value if total is None else total + head.weight * value
    if total is None:
        raise ValueError(f"no targets for any head; heads are {[h.name for h in configs]}")
    return total, parts
