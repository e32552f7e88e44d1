"""Inputs unlike the training data, per modality: how far a case's encoder output lies from the training
cases' (Mahalanobis distance under a Ledoit-Wolf covariance), flagged above a threshold set on held-out cases.

    python -m neurofusion.ood fit --checkpoint DIR --data COHORT [--reference-split train] [--heldout-split val]

The reference is taken on each modality's encoder output, before fusion: the modality tokens after
cross-modal attention mix in the other modalities, so an odd note would move the image's score.

The threshold is the split-conformal ``quantile`` (0.99) of the distances of n held-out cases (never seen by
the encoders nor the covariance): the ceil((n + 1) q)-th smallest, the largest when n < 99, so a new case
from the training distribution is flagged with probability at most 1 - q on average (the plain empirical
quantile of 200 heavy-tailed distances flagged 1.7-3.6 % of new cases instead of 1 %). The false-alarm rate
stated with it is measured, not assumed: the held-out cases are split in two halves, a threshold set on one
half is applied to the other (both ways), and the flagged fraction is reported. Stored as
``ood.safetensors`` in the checkpoint folder (means and precision matrices as tensors, the rest as JSON
metadata; never pickled).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.covariance import LedoitWolf

from neurofusion.data.dataset import Batch
from neurofusion.data.schema import MODALITIES
from neurofusion.inference import model_lock
from neurofusion.models.model import Encoded, MultiModalModel

OOD_FILE = "ood.safetensors"
OOD_VERSION = 1
DEFAULT_QUANTILE = 0.99
MIN_CASES = 20  # fewer reference or held-out cases of a modality cannot support a 99th-percentile threshold


class OODError(ValueError):
    """An out-of-distribution reference that cannot be fitted or read; the message says why."""


@dataclass
class ModalityReference:
    """One modality's training distribution: mean (d,) and precision (d, d) of its encoder outputs."""

    mean: np.ndarray
    precision: np.ndarray
    threshold: float  # distances above it are flagged
    false_alarm_rate: float  # fraction of held-out in-distribution cases flagged (measured, see module doc)
    n_reference: int
    n_heldout: int

    def distances(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, d) encoder outputs -> (B,) Mahalanobis distances, float64 on the vectors' device."""
        mean = torch.as_tensor(self.mean, dtype=torch.float64, device=vectors.device)
        precision = torch.as_tensor(self.precision, dtype=torch.float64, device=vectors.device)
        centred = vectors.detach().to(torch.float64) - mean  # (B, d)
        return ((centred @ precision) * centred).sum(dim=1).clamp_min(0).sqrt()

    def info(self) -> dict:
        return {"threshold": self.threshold, "false_alarm_rate": self.false_alarm_rate,
                "n_reference": self.n_reference, "n_heldout": self.n_heldout, "dim": int(len(self.mean))}


@dataclass
class OODReference:
    """Per-modality references of one model's weights (``weights_fingerprint``, see
    :func:`neurofusion.checkpoint.weights_fingerprint`); ``source`` says which data they came from."""

    modalities: dict[str, ModalityReference]
    quantile: float
    weights_fingerprint: str
    source: dict = field(default_factory=dict)
    columns: tuple[str, ...] = MODALITIES  # the model's declared modalities: the presence mask's columns

    def distances(self, encoded: Encoded) -> dict[str, torch.Tensor]:
        """{modality: (B,) distance}, NaN for cases without the modality, on the model's device."""
        out = {}
        for m, reference in self.modalities.items():
            distance = reference.distances(encoded.vectors[m])
            present = encoded.present[:, self.columns.index(m)]
            out[m] = torch.where(present, distance, torch.full_like(distance, float("nan")))
        return out

    def flags(self, encoded: Encoded) -> dict[str, torch.Tensor]:
        """{modality: (B,) bool}: the case has the modality and it lies beyond the threshold."""
        return {m: d > self.modalities[m].threshold for m, d in self.distances(encoded).items()}  # NaN > t is False

    def assess(self, encoded: Encoded, row: int = 0) -> dict[str, dict]:
        """One case (``row`` of the batch): {modality: {distance, threshold, flagged, false_alarm_rate}} for
        the modalities it has."""
        result = {}
        for m, distance in self.distances(encoded).items():
            if bool(encoded.present[row, self.columns.index(m)]):
                reference = self.modalities[m]
                value = float(distance[row])
                result[m] = {"distance": value, "threshold": reference.threshold,
                             "flagged": value > reference.threshold, "false_alarm_rate": reference.false_alarm_rate}
        return result

    def summary(self) -> dict:
        return {"quantile": self.quantile, "feature": "encoder output", "source": self.source,
                "modalities": {m: r.info() for m, r in self.modalities.items()}}


def encoder_vectors(model: MultiModalModel, batches: Iterable[Batch]) -> dict[str, np.ndarray]:
    """{modality: (n_m, d) encoder outputs of the cases that have it} over all batches (float64, CPU)."""
    if not model.encoders:
        raise OODError(f"the {model.config.architecture} architecture has no modality encoders to take a "
                       f"reference on")
    parts: dict[str, list[np.ndarray]] = {m: [] for m in model.encoders}
    model.eval()
    with torch.no_grad():
        for batch in batches:
            with model_lock(model):
                encoded = model.encode(batch)
            for m in parts:
                rows = encoded.present[:, model.names.index(m)]
                parts[m].append(encoded.vectors[m][rows].double().cpu().numpy())
    return {m: np.concatenate(p) if p else np.zeros((0, model.dims[m])) for m, p in parts.items()}


def fit_modality(reference: np.ndarray, heldout: np.ndarray, *, quantile: float = DEFAULT_QUANTILE,
                 seed: int = 0, modality: str = "modality") -> ModalityReference:
    """Ledoit-Wolf mean and precision of ``reference`` (n, d); threshold = ``quantile`` of the ``heldout``
    (m, d) distances; false-alarm rate = the 2-fold estimate described in the module docstring."""
    if not 0.5 < quantile < 1:
        raise OODError(f"quantile must be in (0.5, 1), e.g. 0.99, got {quantile}")
    for name, data in (("reference", reference), ("held-out", heldout)):
        if len(data) < MIN_CASES:
            raise OODError(f"{modality}: {len(data)} {name} cases have it, at least {MIN_CASES} are needed")
    estimator = LedoitWolf().fit(reference)
    fitted = ModalityReference(estimator.location_, estimator.precision_, 0.0, 0.0, len(reference), len(heldout))
    distances = fitted.distances(torch.from_numpy(heldout)).numpy()
    fitted.threshold = conformal_threshold(distances, quantile)
    order = np.random.default_rng(seed).permutation(len(distances))
    halves = (distances[order[: len(order) // 2]], distances[order[len(order) // 2:]])
    flagged = [np.mean(test > conformal_threshold(calibration, quantile))
               for calibration, test in (halves, halves[::-1])]
    fitted.false_alarm_rate = float(np.mean(flagged))
    return fitted


def conformal_threshold(distances: np.ndarray, quantile: float) -> float:
    """The ceil((n + 1) * quantile)-th smallest of n distances (the largest if that exceeds n)."""
    rank = min(int(np.ceil((len(distances) + 1) * quantile)), len(distances))
    return float(np.sort(distances)[rank - 1])


def fit_reference(model: MultiModalModel, reference: Iterable[Batch], heldout: Iterable[Batch], *,
                  quantile: float = DEFAULT_QUANTILE, source: dict | None = None) -> OODReference:
    """A reference for every encoder of ``model`` from batches of in-distribution cases: ``reference`` (the
    train split) for the distribution, ``heldout`` (the val split) for the threshold."""
    fit, held = encoder_vectors(model, reference), encoder_vectors(model, heldout)
    modalities = {m: fit_modality(fit[m], held[m], quantile=quantile, modality=m) for m in fit}
    return OODReference(modalities, quantile, weights_fingerprint(model.state_dict()), dict(source or {}),
                        tuple(model.names))


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and stored bytes: the weights a reference was fitted
    to. Rewriting only the weights file's metadata keeps it."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_ood(reference: OODReference, path: str | Path) -> Path:
    tensors, info = {}, {}
    for m, r in reference.modalities.items():
        tensors[f"{m}.mean"] = torch.from_numpy(np.ascontiguousarray(r.mean, dtype=np.float64))
        tensors[f"{m}.precision"] = torch.from_numpy(np.ascontiguousarray(r.precision, dtype=np.float64))
        info[m] = r.info()
    header = {"version": OOD_VERSION, "quantile": reference.quantile,
              "weights_fingerprint": reference.weights_fingerprint, "source": reference.source, "modalities": info,
              "columns": list(reference.columns)}
    save_file(tensors, str(path), metadata={"neurofusion.ood": json.dumps(header, sort_keys=True)})
    return Path(path)


def read_ood(path: str | Path) -> OODReference:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {})["neurofusion.ood"])
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise OODError(f"{path} is not a readable safetensors file ({err})") from None
    except (KeyError, json.JSONDecodeError):
        raise OODError(f"{path} has no readable 'neurofusion.ood' metadata: "
                       f"not an out-of-distribution reference") from None
    if header.get("version") != OOD_VERSION:
        raise OODError(f"{path}: version {header.get('version')!r} is not {OOD_VERSION}")
    columns = tuple(header.get("columns", MODALITIES))  # a reference written before declared modalities: cardio's
    unknown = sorted(set(header["modalities"]) - set(columns))
    if unknown:
        raise OODError(f"{path}: modality {unknown[0]!r} is not one of its columns ({', '.join(columns)})")
    modalities = {}
    for m, info in sorted(header["modalities"].items(), key=lambda item: columns.index(item[0])):
        if f"{m}.mean" not in tensors or f"{m}.precision" not in tensors:
            raise OODError(f"{path}: the tensors of modality {m!r} are missing")
        modalities[m] = ModalityReference(tensors[f"{m}.mean"].numpy(), tensors[f"{m}.precision"].numpy(),
                                          float(info["threshold"]), float(info["false_alarm_rate"]),
                                          int(info["n_reference"]), int(info["n_heldout"]))
    return OODReference(modalities, float(header["quantile"]), header["weights_fingerprint"], header.get("source", {}),
                        columns)


def main(argv: list[str] | None = None) -> int:
    # imported here: neurofusion.checkpoint reads references with this module, so it cannot be imported at its top
    from neurofusion.checkpoint import CheckpointError, load_checkpoint
    from neurofusion.data.timed import open_cohort
    from neurofusion.data.errors import CohortError
    from neurofusion.data.schema import SPLITS
    from neurofusion.inference import Predictor

    parser = argparse.ArgumentParser(prog="python -m neurofusion.ood", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit the reference of an existing checkpoint and save it in its folder")
    fit.add_argument("--checkpoint", required=True)
    fit.add_argument("--data", required=True, help="the cohort the checkpoint was trained on")
    fit.add_argument("--reference-split", default="train", choices=SPLITS)
    fit.add_argument("--heldout-split", default="val", choices=SPLITS)
    fit.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE)
    fit.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        if args.reference_split == args.heldout_split:
            raise OODError("the held-out split must differ from the reference split")
        ckpt = load_checkpoint(args.checkpoint, device=args.device)
        cohort = open_cohort(args.data)
        predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
        cases = {}
        for split in (args.reference_split, args.heldout_split):
            ids = cohort.ids(split)
            if not ids:
                raise OODError(f"{cohort.root} has no cases in split '{split}'")
            cases[split] = [cohort[i] for i in ids]
        source = {"data": str(args.data), "reference_split": args.reference_split, "heldout_split": args.heldout_split}
        reference = fit_reference(ckpt.model, predictor.batches(cases[args.reference_split]),
                                  predictor.batches(cases[args.heldout_split]), quantile=args.quantile, source=source)
        write_ood(reference, Path(args.checkpoint) / OOD_FILE)
    except (CheckpointError, CohortError, OODError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(reference.summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
