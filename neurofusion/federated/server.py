"""The federated server: a Flower ``ServerApp`` that holds the global weights and the numbers the sites report,
never a case.

Before training it asks every site to describe itself (name, case counts, the model config its schema gives),
one site for the note vocabulary, and every site for the sums and counts that fit the tabular normalisers. Then
Flower's own FedAvg or FedProx runs the rounds; a thin subclass remembers, per round, which sites trained, their
weighted train loss and the validation metrics pooled from the sites' confusion matrices, and keeps the weights of
the round with the best pooled validation macro-F1.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Iterable

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from neurofusion.config import ModelConfig
from neurofusion.federated.client import load_state, tokenizer_from_text, tokenizer_to_text, transport_state
from neurofusion.federated.config import FederatedExperiment
from neurofusion.federated.statistics import STATISTICS, combine_statistics, set_normaliser
from neurofusion.models.model import MultiModalModel, build_model, tabular_normalisers
from neurofusion.data.tokenizer import load_tokenizer

__all__ = ["FederatedError", "FederatedResult", "pooled_metrics", "run_server", "server_app"]

WAIT_SECONDS = 120.0  # how long the server waits for min_clients sites to connect


class FederatedError(RuntimeError):
    """A federated run that cannot go on: a site failed, disagreed with the others, or never connected."""


@dataclasses.dataclass
class FederatedResult:
    """What the server ends with: the kept weights, the tokenizer, the per-round history and what each site sent."""

    model: MultiModalModel | None = None
    tokenizer: object | None = None
    history: list[dict] = dataclasses.field(default_factory=list)
    best_round: int = 0
    sites: dict[str, dict] = dataclasses.field(default_factory=dict)  # name -> counts and what it sent
    vocabulary_site: str | None = None
    minutes: float = 0.0
    setup_minutes: float = 0.0  # of ``minutes``: describing the sites, the vocabulary and the normaliser statistics
    error: BaseException | None = None


def pooled_metrics(confusions: Iterable[np.ndarray]) -> dict[str, float]:
    """Accuracy and macro-F1 of the pooled predictions from the sites' confusion matrices (C x C, rows true):
    the numbers the pooled cases would give, macro-F1 averaged over the classes with cases (as
    neurofusion.metrics.classification_metrics does)."""
    total = np.sum([np.asarray(c, dtype=np.int64) for c in confusions], axis=0)
    if total.ndim != 2 or total.shape[0] != total.shape[1]:
        raise ValueError(f"confusion matrices must be square (C, C), got {total.shape}")
    n = total.sum()
    true_positive = np.diag(total).astype(float)
    support, predicted = total.sum(1), total.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support + predicted > 0, 2 * true_positive / (support + predicted), 0.0)
    present = support > 0
    return {"val_accuracy": float(true_positive.sum() / n) if n else 0.0,
            "val_macro_f1": float(f1[present].mean()) if present.any() else 0.0}


def _evaluate_aggregation(n_classes: int):
    def aggregate(records: list[RecordDict], weighted_by: str) -> MetricRecord:
        confusions = [np.asarray(next(iter(r.metric_records.values()))["confusion"]).reshape(n_classes, n_classes)
                      for r in records]
        n = sum(int(next(iter(r.metric_records.values()))[weighted_by]) for r in records)
        return MetricRecord({**pooled_metrics(confusions), "val_cases": n})
    return aggregate


def _keeping_best(base: type, result: FederatedResult, node_sites: dict[int, str], start: float):
    """``base`` (Flower's FedAvg or FedProx) that refuses failed replies (Flower would average the others) and
    keeps the aggregated weights of the round with the best pooled validation macro-F1."""

    class KeepBest(base):
        latest: ArrayRecord | None = None
        best: ArrayRecord | None = None
        best_score = -1.0

        def _raise_failures(self, replies: list[Message], what: str) -> list[Message]:
            replies = list(replies)
            failed = [m for m in replies if m.has_error()]
            if failed:
                reasons = "; ".join(f"{node_sites.get(m.metadata.src_node_id, m.metadata.src_node_id)}: "
                                    f"{m.error.reason}" for m in failed)
                raise FederatedError(f"{what} failed at {len(failed)} site(s): {reasons}")
            return replies

        def aggregate_train(self, server_round, replies):
            replies = self._raise_failures(replies, f"round {server_round} training")
            arrays, metrics = super().aggregate_train(server_round, replies)
            self.latest = arrays
            record = {"round": server_round, "sites": sorted(node_sites[m.metadata.src_node_id] for m in replies)}
            if metrics is not None:
                record["train_loss"] = float(metrics["train_loss"])
            result.history.append(record)
            return arrays, metrics

        def aggregate_evaluate(self, server_round, replies):
            replies = self._raise_failures(replies, f"round {server_round} validation")
            metrics = super().aggregate_evaluate(server_round, replies)
            record = result.history[-1]
            record.update({k: float(v) for k, v in metrics.items()})
            record["minutes"] = (time.perf_counter() - start) / 60
            if record["val_macro_f1"] > self.best_score and self.latest is not None:
                self.best_score, self.best, result.best_round = record["val_macro_f1"], self.latest, server_round
            return metrics

    return KeepBest


def _ask(grid: Grid, nodes: list[int], step: str, config: ConfigRecord, node_sites: dict[int, str]) -> list[Message]:
    """Send one query step to ``nodes`` and return their replies; a failed site is a FederatedError."""
    content = ConfigRecord({**dict(config), "step": step})
    messages = [Message(RecordDict({"config": ConfigRecord(dict(content))}), dst_node_id=node,
                        message_type=MessageType.QUERY) for node in nodes]
    replies = list(grid.send_and_receive(messages, timeout=3600))
    failed = [m for m in replies if m.has_error()]
    if failed or len(replies) != len(nodes):
        reasons = "; ".join(f"{node_sites.get(m.metadata.src_node_id, m.metadata.src_node_id)}: {m.error.reason}"
                            for m in failed) or f"{len(replies)} of {len(nodes)} sites replied"
        raise FederatedError(f"the {step!r} step failed ({reasons})")
    return replies


def _wait_for_sites(grid: Grid, minimum: int) -> list[int]:
    deadline = time.monotonic() + WAIT_SECONDS
    while len(nodes := sorted(grid.get_node_ids())) < minimum:
        if time.monotonic() > deadline:
            raise FederatedError(f"only {len(nodes)} site(s) connected within {WAIT_SECONDS:.0f} s; "
                                 f"federated.min_clients is {minimum}")
        time.sleep(0.5)
    return nodes


def _setup(grid: Grid, spec: FederatedExperiment, result: FederatedResult) -> tuple[MultiModalModel, dict[int, str]]:
    """Describe the sites, get the vocabulary and the normaliser statistics; the global model before round 1."""
    federated, train = spec.federated, spec.experiment.train
    nodes = _wait_for_sites(grid, federated.min_clients)
    base = ConfigRecord({"model-config": json.dumps(spec.experiment.model.to_dict()),
                         "train-config": json.dumps(dataclasses.asdict(train))})
    described = _ask(grid, nodes, "describe", base, {})
    node_sites = {m.metadata.src_node_id: str(m.content["config"]["site"]) for m in described}
    configs = {node_sites[m.metadata.src_node_id]: json.loads(str(m.content["config"]["model-config"]))
               for m in described}
    names = sorted(configs)
    if len(set(names)) != len(nodes):
        raise FederatedError(f"two nodes claim the same site: {sorted(node_sites.values())}")
    first = configs[names[0]]
    differing = [name for name in names if configs[name] != first]
    if differing:
        keys = sorted(k for k in first if any(configs[n].get(k) != first[k] for n in differing))
        raise FederatedError(f"sites {', '.join(differing)} have another schema than {names[0]} ({', '.join(keys)}); "
                             f"every site needs the same modalities, classes and features")
    for m in described:
        config = m.content["config"]
        result.sites[str(config["site"])] = {"n_train": int(config["n-train"]), "n_val": int(config["n-val"]),
                                             "sent": ["train and val case counts",
                                                      "its cohort schema (modalities, classes, feature names)"]}
    config = ModelConfig.from_dict(first)

    if any(m.kind == "text" for m in config.modality_specs):
        if config.text.pretrained:
            result.tokenizer = load_tokenizer(config.text.pretrained)
        else:
            chosen = federated.vocabulary_site or max(names, key=lambda n: (result.sites[n]["n_train"], n))
            if chosen not in names:
                raise FederatedError(f"federated.vocabulary_site {chosen!r} is not one of the sites "
                                     f"({', '.join(names)})")
            node = next(n for n, s in node_sites.items() if s == chosen)
            reply = _ask(grid, [node], "vocabulary", base, node_sites)[0]
            result.tokenizer = tokenizer_from_text(str(reply.content["config"]["tokenizer"]))
            result.vocabulary_site = chosen
            result.sites[chosen]["sent"].append(f"its WordPiece vocabulary ({len(result.tokenizer)} word pieces "
                                                f"fitted to its train notes)")
            config.text.vocab_size = len(result.tokenizer)

    model = build_model(config)
    normalisers = tabular_normalisers(model)
    if normalisers:
        replies = _ask(grid, nodes, "statistics", base, node_sites)
        for name, normaliser in normalisers.items():
            per_site = [{stat: m.content["statistics"][f"{name}.{stat}"].numpy() for stat in STATISTICS}
                        for m in replies]
            set_normaliser(normaliser, combine_statistics(per_site))
        for site in result.sites.values():
            site["sent"].append("per numeric tabular feature: measured count, sums of x, x^2, x^3 and of log1p(x), "
                                "log1p(x)^2, and whether all values are >= 0")
    return model, node_sites


def server_app(spec: FederatedExperiment, result: FederatedResult) -> ServerApp:
    """The ServerApp of a federated run; what it ends with is written into ``result``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, spec, result)

    return app


def run_server(grid: Grid, spec: FederatedExperiment, result: FederatedResult) -> None:
    """The server's side of a federated run on ``grid`` (the body of :func:`server_app`'s main, also what a
    deployed ServerApp calls once it has read its run config); what it ends with is written into ``result``."""
    start = time.perf_counter()
    try:
        _run(grid, spec, result, start)
    except BaseException as err:  # kept for the caller: Flower's thread would only log it
        result.error = err
        raise


def _run(grid: Grid, spec: FederatedExperiment, result: FederatedResult, start: float) -> None:
    federated, train = spec.federated, spec.experiment.train
    random.seed(train.seed)  # Flower samples the round's sites with the random module
    torch.manual_seed(train.seed)
    model, node_sites = _setup(grid, spec, result)
    result.setup_minutes = (time.perf_counter() - start) / 60
    connected = len(node_sites)
    sampled = federated.sampled(connected)
    if sampled > connected:
        raise FederatedError(f"federated.clients_per_round asks for {sampled} sites per round but {connected} "
                             f"are connected")
    base = FedProx if federated.strategy == "fedprox" else FedAvg
    options = {"proximal_mu": federated.proximal_mu} if federated.strategy == "fedprox" else {}
    strategy = _keeping_best(base, result, node_sites, start)(
        fraction_train=sampled / connected, fraction_evaluate=1.0, min_train_nodes=sampled,
        min_evaluate_nodes=connected, min_available_nodes=federated.min_clients,
        evaluate_metrics_aggr_fn=_evaluate_aggregation(len(model.config.classes)), **options)
    shared = {"model-config": json.dumps(model.config.to_dict()), "train-config": json.dumps(dataclasses.asdict(train)),
              "tokenizer": tokenizer_to_text(result.tokenizer), "local-epochs": federated.local_epochs}
    strategy.start(grid=grid, initial_arrays=ArrayRecord(transport_state(model)), num_rounds=federated.rounds,
                   timeout=3600 * 24, train_config=ConfigRecord(dict(shared)),
                   evaluate_config=ConfigRecord(dict(shared)))
    if strategy.best is None:
        raise FederatedError("no round produced validated weights")
    load_state(model, strategy.best)
    model.eval()
    n_parameters = sum(p.numel() for p in model.parameters())
    for site in result.sites.values():
        site["sent"] += [f"per round it trained: its locally trained weights ({n_parameters:,} parameters plus "
                         f"batch-norm statistics), its train case count and mean train loss",
                         "per round: its val split's confusion matrix (class x class counts) and val case count"]
    result.model = model
    result.minutes = (time.perf_counter() - start) / 60
