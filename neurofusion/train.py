"""Train a model on a cohort's train split, early-stopped on its val split, and save a checkpoint.

    python -m neurofusion.train --config configs/cardio_demo.yaml --data DIR --out DIR [--eval-data DIR]

Adam with the config's learning rate and batch size; modality dropout so the missing embeddings are
learned; per-modality augmentation; mixed precision (bfloat16) on a GPU. A classifier keeps the epoch with
the best validation macro-F1; a survival model (primary head ``survival``, a survival cohort) is trained on
``(bin, event)`` targets from each case's time and event (``SurvivalBins.encode``; cases without an outcome
add nothing) and keeps the epoch with the best validation C-index of its risk score 1 - S(horizon). At the
end, the per-modality out-of-distribution reference (neurofusion.ood) is fitted on the train split with its
threshold on the val split, and saved with the checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from sklearn.metrics import f1_score, roc_auc_score
from tqdm import tqdm

from neurofusion.checkpoint import resolve_device, save_checkpoint
from neurofusion.config import ExperimentConfig, ModelConfig, TrainConfig, load_experiment
from neurofusion.data.augment import AugmentConfig, augment_batch
from neurofusion.data.cohort import COHORT_CSV, CohortReader
from neurofusion.data.dataset import Batch, Collate, prepare_case
from neurofusion.data.errors import CohortError
from neurofusion.data.modalities import modalities_to_dicts
from neurofusion.data.timed import open_cohort
from neurofusion.data.tokenizer import load_tokenizer, make_tokenize, train_wordpiece
from neurofusion.evaluate import censoring_reference, survival_report, timed_risk_report
from neurofusion.inference import Predictor
from neurofusion.metrics import classification_metrics
from neurofusion.models.heads import SurvivalHead, multitask_loss
from neurofusion.models.model import MultiModalModel, build_model, tabular_normalisers
from neurofusion.ood import OODError, OODReference, fit_reference
from neurofusion.survival import concordance_index


@dataclasses.dataclass
class TrainResult:
    model: MultiModalModel
    tokenizer: transformers.PreTrainedTokenizerFast
    history: list[dict]
    best_epoch: int
    minutes: float
    ood: OODReference | None = None  # None when the cohort is too small for one: ``ood_note`` says why
    ood_note: str = ""


def configure_model(config: ModelConfig, cohort: CohortReader) -> ModelConfig:
    """The model config completed from the cohort: its declared modalities, classes and tabular features
    (and as many outputs of the classification head as it has classes). The caller's config is left
    unchanged; a config whose primary head does not fit the cohort's outcome is a ValueError."""
    if config.outcome != cohort.outcome:
        raise ValueError(f"the config's primary head {config.heads[0].name!r} is a {config.heads[0].kind} head but "
                         f"the cohort {cohort.root} records {cohort.outcome} outcomes; use a config for this task "
                         f"(e.g. configs/cancer_demo.yaml for survival, configs/cardio_demo.yaml for classes)")
    data = config.to_dict()
    data["modalities"] = modalities_to_dicts(cohort.modalities)
    data["classes"] = list(cohort.classes)
    data["features"] = [dataclasses.asdict(f) for f in cohort.features.values()]
    if data["heads"][0]["kind"] == "classification":
        data["heads"][0]["num_outputs"] = len(cohort.classes)
    layout = getattr(cohort, "signal_layout", None)  # a time-stamped cohort's vitals grid (channels, rate, length)
    if layout is not None:
        data["signal"].update(layout)
    return ModelConfig.from_dict(data)  # validates


def fit(cohort: CohortReader, config: ModelConfig, train: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Train on the cohort's train split; keep the weights of the epoch with the best validation macro-F1
    (classification) or C-index (survival)."""
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    device = resolve_device(train.device)
    train_ids, val_ids = cohort.ids("train"), cohort.ids("val")
    if not train_ids or not val_ids:
        raise CohortError("training needs cases in both the 'train' and 'val' splits", path=cohort.root / COHORT_CSV)

    config = configure_model(config, cohort)
    if config.outcome == "survival":
        _check_survival_splits(cohort, train_ids, val_ids)
    spec = config.input_spec()
    # Decode every file once: the prepared tensors are reused each epoch (augmentation works on them).
    prepared = {"train": [], "val": []}
    for split, ids in (("train", train_ids), ("val", val_ids)):
        for case_id in tqdm(ids, desc=f"loading {split}", disable=not progress, file=sys.stderr):
            prepared[split].append(prepare_case(cohort[case_id], spec))
    reads_text = any(m.kind == "text" for m in config.modality_specs)
    tokenizer = (_tokenizer([note for item in prepared["train"] for note in item["texts"].values()], config, cohort)
                 if reads_text else None)
    if reads_text and not config.text.pretrained:
        config.text.vocab_size = len(tokenizer)

    model = build_model(config).to(device)
    normalisers = tabular_normalisers(model)
    if normalisers:
        stacked = Collate()(prepared["train"])
        for name, normaliser in normalisers.items():
            tensors = stacked.inputs[name]
            normaliser.fit(tensors["numeric"].to(device), tensors["numeric_mask"].to(device))
    optimiser = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    tokenize = make_tokenize(tokenizer, config.text.max_length) if tokenizer is not None else _no_text
    plain = Collate()
    augment = AugmentConfig() if train.augment else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    history, best = [], (-1.0, 0, None)
    start = time.perf_counter()
    for epoch in range(1, train.max_epochs + 1):
        model.train()
        order = rng.permutation(len(prepared["train"]))
        losses = []
        bar = tqdm(range(0, len(order), train.batch_size), desc=f"epoch {epoch}", disable=not progress,
                   file=sys.stderr, leave=False)
        for first in bar:
            batch = plain([prepared["train"][i] for i in order[first:first + train.batch_size]])
            if augment is not None:
                batch = augment_batch(batch, augment, rng)
            for name, notes in batch.texts.items():  # tokenised after augmentation rewrote the notes
                batch.inputs[name] = dict(tokenize([n or "" for n in notes]))
            batch = batch.to(device)
            present = modality_dropout(batch.present, train.modality_dropout, rng)
            with autocast:
                output = model(batch, present=present)
            loss, _ = multitask_loss(output.heads, {config.heads[0].name: primary_targets(config, batch)},
                                     config.heads)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses):.3f}")
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                  **_validation_record(model, prepared["val"], tokenize, device),
                  "minutes": (time.perf_counter() - start) / 60}
        history.append(record)
        score = record[selected_by(config)]
        if progress:
            shown = ", ".join(f"{k.removeprefix('val_')} {v:.3f}" for k, v in record.items() if k.startswith("val_"))
            print(f"epoch {epoch}: loss {record['train_loss']:.3f}, val {shown} ({record['minutes']:.1f} min)",
                  file=sys.stderr)
        if score > best[0]:
            best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if epoch - best[1] >= train.patience:
            break
        if train.max_minutes is not None and record["minutes"] >= train.max_minutes:
            break
    model.load_state_dict(best[2])
    model.eval()
    minutes = (time.perf_counter() - start) / 60
    ood, note = _fit_ood(model, prepared, Collate(tokenize), device, cohort)
    if note and progress:
        print(f"warning: {note}", file=sys.stderr)
    return TrainResult(model, tokenizer, history, best[1], minutes, ood, note)


def _fit_ood(model: MultiModalModel, prepared: dict[str, list[dict]], collate: Collate, device: torch.device,
             cohort: CohortReader) -> tuple[OODReference | None, str]:
    """The out-of-distribution reference of the trained weights (train split; threshold on val), or why not."""
    def batches(items: list[dict]):
        for first in range(0, len(items), 64):
            yield collate(items[first:first + 64]).to(device)

    source = {"data": str(cohort.root), "reference_split": "train", "heldout_split": "val"}
    try:
        return fit_reference(model, batches(prepared["train"]), batches(prepared["val"]), source=source), ""
    except OODError as err:
        return None, (f"no out-of-distribution reference was fitted ({err}); "
                      f"inputs will not be checked against the training data")


# The validation number each outcome's early stopping follows (higher is better).
_SELECTED_BY = {"classification": "val_macro_f1", "survival": "val_c_index"}


def selected_by(config: ModelConfig) -> str:
    """The validation number that picks the kept epoch: macro-F1 of a classifier, AUROC of a two-class risk
    model (the ICU task's 48-hour mortality, where 1 in 8 samples is positive and F1 at argmax mostly measures
    the threshold), C-index of a survival model."""
    if config.outcome == "classification" and len(config.classes) == 2:
        return "val_auroc"
    return _SELECTED_BY[config.outcome]


def primary_targets(config: ModelConfig, batch: Batch) -> torch.Tensor:
    """The primary head's training targets for a batch: (B,) class indices (-1 unlabelled), or for a survival
    head (B, 2) ``(bin, event)`` from ``batch.outcomes`` by its bins' ``encode`` (bin -1, ignored: no
    outcome, or censored in the first half of bin 0)."""
    if config.outcome != "survival":
        return batch.labels
    outcomes = batch.outcomes.detach().cpu().double().numpy()
    event = np.nan_to_num(outcomes[:, 1], nan=0.0)  # ignored where the time is unknown
    return torch.from_numpy(config.survival_bins.encode(outcomes[:, 0], event)).to(batch.labels.device)


def _check_survival_splits(cohort: CohortReader, train_ids: list[str], val_ids: list[str]) -> None:
    """A survival model needs train events to learn from and a val split that defines the C-index."""
    where = cohort.root / COHORT_CSV
    table = cohort.table.set_index("case_id")
    train_time, train_event = _known(table.loc[train_ids])
    if not train_event.any():
        raise CohortError(f"the train split has no event among its {len(train_time)} cases with an outcome: a "
                          f"survival model has nothing to learn from", path=where)
    val_time, val_event = _known(table.loc[val_ids])
    c_index = concordance_index(val_time, val_event, np.zeros(len(val_time)), n_boot=1) if len(val_time) else None
    if c_index is None or c_index.value is None:
        why = "no case has an outcome" if c_index is None else c_index.reason
        raise CohortError(f"the val split cannot define the C-index that early stopping follows ({why}); give "
                          f"it cases with events and longer follow-up", path=where)


def _known(rows) -> tuple[np.ndarray, np.ndarray]:
    time = rows["time"].to_numpy(dtype=float)
    event = rows["event"].to_numpy(dtype=float)
    keep = ~np.isnan(time)
    return time[keep], event[keep].astype(bool)


def modality_dropout(present: torch.Tensor, p: float, rng: np.random.Generator) -> torch.Tensor:
    """Hide each present modality with probability p, always keeping at least one per case, so the model
    learns its missing embeddings on cases it has seen complete."""
    if p <= 0:
        return present
    keep = torch.from_numpy(rng.random(tuple(present.shape)) >= p).to(present.device) & present
    empty = ~keep.any(dim=1)
    if empty.any():
        # restore one random present modality for cases that lost them all
        scores = torch.from_numpy(rng.random(tuple(present.shape))).to(present.device) * present
        restore = torch.nn.functional.one_hot(scores.argmax(1), present.shape[1]).bool()
        keep = torch.where(empty[:, None], restore & present, keep)
    return keep


def data_hash(cohort: CohortReader, ids: list[str]) -> str:
    """SHA-256 over cohort.csv and every file of the given cases: which data a checkpoint was trained on (a
    time-stamped cohort: cohort.csv and its long tables)."""
    if getattr(cohort, "timed", False):
        return cohort.data_hash()
    digest = hashlib.sha256((cohort.root / COHORT_CSV).read_bytes())
    table = cohort.table.set_index("case_id").loc[ids]
    for column in [c for c in table.columns if c.endswith("_file")]:  # every file-backed modality's
        for rel in table[column]:
            if rel:
                digest.update((cohort.root / rel).read_bytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurofusion.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (configs/cardio_demo.yaml)")
    parser.add_argument("--data", required=True, help="cohort folder with train and val splits")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument("--eval-data", help="cohort whose test split is evaluated after training (default: --data)")
    parser.add_argument("--architecture", help="override the config's architecture (baselines)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--max-minutes", type=float)
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        experiment = load_experiment(args.config)
        experiment = _override(experiment, args)
        cohort = open_cohort(args.data)
        result = fit(cohort, experiment.model, experiment.train, progress=not args.quiet)
        evaluation = open_cohort(args.eval_data) if args.eval_data else cohort
        metrics = _final_metrics(result, cohort, evaluation)
        training = {
            "command": "python -m neurofusion.train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            "data": str(Path(args.data)),
            "data_hash": data_hash(cohort, cohort.ids("train") + cohort.ids("val")),
            "train_config": dataclasses.asdict(experiment.train),
            "selected_by": selected_by(result.model.config),
            "best_epoch": result.best_epoch,
            "epochs": len(result.history),
            "minutes": round(result.minutes, 2),
            "out_of_distribution": result.ood.summary() if result.ood is not None else result.ood_note,
            "history": result.history,
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "transformers": transformers.__version__},
        }
        save_checkpoint(args.out, result.model, result.tokenizer, metrics=metrics, training=training, ood=result.ood)
    except (CohortError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    test = metrics.get("test")
    key, name = ("c_index", "C-index") if result.model.config.outcome == "survival" else ("accuracy", "accuracy")
    value = test[key]["value"] if test else None
    summary = (f"test {name} {value:.3f}" if value is not None else f"test {name} not defined: {test[key]['reason']}"
               ) if test else "no test split evaluated"
    print(f"saved {args.out} (best epoch {result.best_epoch}, {result.minutes:.1f} min, {summary})")
    return 0


def _final_metrics(result: TrainResult, cohort: CohortReader, evaluation: CohortReader) -> dict:
    """Metrics of the kept weights on the val split and the evaluation cohort's test split; survival metrics
    weight censoring by the training cohort's train outcomes."""
    predictor = Predictor(result.model, result.tokenizer, next(result.model.parameters()).device)
    metrics = {}
    for name, reader in (("val", cohort), ("test", evaluation)):
        ids = reader.ids(name)
        if not ids:
            continue
        cases = [reader[i] for i in ids]
        if result.model.config.outcome == "survival":
            reference = censoring_reference(cohort, cohort.ids("train"), "the training cohort's train split")
            metrics[name] = survival_report(predictor.predict_survival(cases), reference)
        else:
            labels, probabilities = predictor.predict(cases)
            metrics[name] = classification_metrics(labels, probabilities, result.model.classes, split=name)
            if getattr(reader, "timed", False):
                metrics[name]["risk"] = timed_risk_report(reader, ids, labels, probabilities)
    return metrics


@torch.no_grad()
def _validation_record(model: MultiModalModel, items: list[dict], tokenize, device) -> dict[str, float]:
    """The val split's numbers for one epoch: accuracy and macro-F1 of a classifier; C-index of the risk score
    1 - S(horizon) and the mean negative log-likelihood of a survival model (cases with an outcome)."""
    model.eval()
    collate = Collate(tokenize)
    config = model.config
    rows: dict[str, list[np.ndarray]] = {"labels": [], "scores": [], "outcomes": [], "nll": []}
    for first in range(0, len(items), 64):
        batch: Batch = collate(items[first:first + 64]).to(device)
        output = model(batch)
        if config.outcome == "survival":
            targets = primary_targets(config, batch)
            known = int((targets[:, 0] >= 0).sum())
            rows["nll"].append(np.array([float(SurvivalHead.loss(output.hazard_logits.float(), targets)) * known,
                                         known]))
            rows["scores"].append(output.survival.float().cpu().numpy())
            rows["outcomes"].append(batch.outcomes.cpu().numpy())
        else:
            rows["labels"].append(batch.labels.cpu().numpy())
            rows["scores"].append(output.probabilities.float().cpu().numpy())
    scores = np.concatenate(rows["scores"])
    if config.outcome == "survival":
        outcomes = np.concatenate(rows["outcomes"]).astype(float)
        keep = ~np.isnan(outcomes[:, 0])
        risk = config.survival_bins.risk_score(scores.astype(float), config.horizon)
        c_index = concordance_index(outcomes[keep, 0], outcomes[keep, 1], risk[keep], n_boot=1).value
        nll = np.sum(rows["nll"], axis=0)
        return {"val_c_index": float(c_index), "val_nll": float(nll[0] / max(nll[1], 1))}
    labels, predicted = np.concatenate(rows["labels"]), scores.argmax(1)
    record = {"val_accuracy": float((predicted == labels).mean()),
              "val_macro_f1": float(f1_score(labels, predicted, average="macro", labels=range(len(config.classes)),
                                             zero_division=0))}
    if len(config.classes) == 2:  # 0.5 when the split has one class only (no ranking to judge)
        record["val_auroc"] = float(roc_auc_score(labels, scores[:, 1])) if len(set(labels)) == 2 else 0.5
    return record


def _no_text(notes: list[str]) -> dict[str, torch.Tensor]:
    return {}


def _tokenizer(notes: list[str | None], config: ModelConfig, cohort: CohortReader):
    if config.text.pretrained:
        return load_tokenizer(config.text.pretrained)
    notes = [note for note in notes if note]
    if not notes:
        raise CohortError("the train split has no notes to build a vocabulary from", path=cohort.root / COHORT_CSV)
    return train_wordpiece(notes, config.text.vocab_size)


def _override(experiment: ExperimentConfig, args: argparse.Namespace) -> ExperimentConfig:
    data = {"model": experiment.model.to_dict(), "train": dataclasses.asdict(experiment.train)}
    if args.architecture:
        data["model"]["architecture"] = args.architecture
    for name, key in (("seed", "seed"), ("max_epochs", "max_epochs"), ("max_minutes", "max_minutes"),
                      ("device", "device")):
        if getattr(args, name) is not None:
            data["train"][key] = getattr(args, name)
    return ExperimentConfig.from_dict(data)


if __name__ == "__main__":
    sys.exit(main())
