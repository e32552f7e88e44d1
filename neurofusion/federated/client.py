"""The federated client: one site's side of the training, as a Flower ``ClientApp``.

A client holds one site's cases (a :class:`~neurofusion.federated.sites.SiteCohort`) and answers the server's
messages with numbers about them, never the cases:

- query ``describe``: its name, train/val case counts and the model config completed from its cohort's schema
  (modalities, classes, feature names: no values);
- query ``vocabulary`` (the vocabulary site only): the WordPiece vocabulary fitted to its train notes;
- query ``statistics``: per numeric tabular feature, counts and sums of powers (neurofusion.federated.statistics);
- train: the global weights trained for ``local_epochs`` passes over its train split with
  ``neurofusion.train.train_epoch`` (FedProx: plus the proximal term, an Objective), returned with its train case
  count and mean loss;
- evaluate: the global weights' confusion matrix on its val split and its val case count.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import transformers
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from sklearn.metrics import confusion_matrix
from tokenizers import Tokenizer

from neurofusion.checkpoint import resolve_device
from neurofusion.config import ModelConfig, TrainConfig
from neurofusion.data.augment import AugmentConfig
from neurofusion.data.dataset import CaseDataset
from neurofusion.data.tokenizer import make_tokenize
from neurofusion.federated.sites import SiteCohort, site_view
from neurofusion.federated.statistics import STATISTICS, feature_statistics
from neurofusion.loader import EpochSampler, SplitCases, TrainingCases, TrainingCollate, case_loader
from neurofusion.models.model import MultiModalModel, build_model, tabular_normalisers
from neurofusion.train import Objective, _no_text, _notes, _tokenizer, configure_model, train_epoch

__all__ = ["SiteClient", "client_app", "load_state", "proximal_objective", "tokenizer_from_text",
           "tokenizer_to_text", "transport_state"]


def proximal_objective(model: torch.nn.Module, global_parameters: Sequence[torch.Tensor], mu: float) -> Objective:
    """FedProx's local objective: the task loss plus (mu / 2) * ||w - w_global||^2 over the model's parameters,
    ``global_parameters`` being the round's global weights in ``model.parameters()`` order (detached copies)."""
    parameters = list(model.parameters())
    if len(parameters) != len(global_parameters):
        raise ValueError(f"global_parameters has {len(global_parameters)} tensors, the model {len(parameters)}")

    def objective(batch, kept, output, task_loss: torch.Tensor) -> torch.Tensor:
        distance = sum(torch.sum((w - g) ** 2) for w, g in zip(parameters, global_parameters))
        return task_loss + 0.5 * mu * distance

    return objective


def transport_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state as it travels between server and sites: every entry as float32 (FedAvg averages them
    all: parameters, batch-norm statistics; the fixed normaliser buffers are the same at every site)."""
    return {k: v.detach().cpu().float() for k, v in model.state_dict().items()}


def load_state(model: torch.nn.Module, arrays: ArrayRecord) -> None:
    """Load travelled weights into ``model``, each entry cast back to the model's own dtype."""
    own = model.state_dict()
    received = arrays.to_torch_state_dict()
    if set(received) != set(own):
        missing, extra = sorted(set(own) - set(received)), sorted(set(received) - set(own))
        raise ValueError(f"the weights received do not fit the model (missing {missing[:3]}, extra {extra[:3]})")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in received.items()})


def tokenizer_to_text(tokenizer: transformers.PreTrainedTokenizerFast | None) -> str:
    """The tokenizer as the JSON text that travels in a message ('' for none)."""
    return tokenizer.backend_tokenizer.to_str() if tokenizer is not None else ""


def tokenizer_from_text(text: str) -> transformers.PreTrainedTokenizerFast | None:
    """The tokenizer back from :func:`tokenizer_to_text` (None for '')."""
    if not text:
        return None
    return transformers.BertTokenizerFast(tokenizer_object=Tokenizer.from_str(text), do_lower_case=True)


@dataclasses.dataclass
class SiteClient:
    """One site's work on its own cases (what the ClientApp's handlers call; usable without Flower in tests)."""

    site: SiteCohort
    index: int = 0  # the site's position among the federation's sites: seeds its local training apart

    def describe(self, model: ModelConfig) -> dict:
        """Name, case counts and the model config completed from this site's cohort schema."""
        return {"site": self.site.name, "n_train": len(self.site.ids("train")), "n_val": len(self.site.ids("val")),
                "model_config": configure_model(model, self.site).to_dict()}

    def vocabulary(self, model: ModelConfig) -> transformers.PreTrainedTokenizerFast:
        """The WordPiece vocabulary fitted to this site's train notes."""
        config = configure_model(model, self.site)
        return _tokenizer(_notes(self.site, self.site.ids("train"), config, False), config, self.site)

    def statistics(self, model: ModelConfig, train: TrainConfig) -> dict[str, dict[str, np.ndarray]]:
        """{tabular modality: per-feature sums and counts of its train split's numeric values}."""
        model_instance = build_model(configure_model(model, self.site))
        normalisers = tabular_normalisers(model_instance)
        spec = model_instance.config.input_spec()
        tabular = dataclasses.replace(spec, modalities=tuple(m for m in spec.modalities if m.name in normalisers))
        out = {}
        for name, normaliser in normalisers.items():
            loader = case_loader(CaseDataset(SplitCases(self.site, self.site.ids("train")), tabular),
                                 batch_size=train.batch_size, collate=TrainingCollate(None),
                                 num_workers=train.num_workers)
            batches = ((s.batch.inputs[name]["numeric"], s.batch.inputs[name]["numeric_mask"]) for s in loader)
            out[name] = feature_statistics(batches, normaliser.mean.shape[0])
        return out

    def train(self, model: MultiModalModel, tokenizer, train: TrainConfig, *, server_round: int, local_epochs: int,
              proximal_mu: float = 0.0) -> dict:
        """Train ``model`` (holding the global weights) in place on this site's train split: ``local_epochs``
        passes of train_epoch with a fresh Adam, FedProx's proximal term when ``proximal_mu`` > 0. Returns the
        train case count and mean loss."""
        device = next(model.parameters()).device
        torch.manual_seed(train.seed + 1009 * server_round + self.index)
        ids = self.site.ids("train")
        spec = model.config.input_spec()
        tokenize = make_tokenize(tokenizer, model.config.text.max_length) if tokenizer is not None else _no_text
        seed = train.seed + 7919 * self.index  # each site shuffles and augments its own cases its own way
        cases = TrainingCases(SplitCases(self.site, ids), spec, augment=AugmentConfig() if train.augment else None,
                              modality_dropout=train.modality_dropout, seed=seed)
        sampler = EpochSampler(len(ids), seed=seed)
        loader = case_loader(cases, batch_size=train.batch_size, collate=TrainingCollate(tokenize),
                             num_workers=train.num_workers, sampler=sampler, device=device, seed=seed)
        optimiser = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        objective = None
        if proximal_mu > 0:
            anchor = [p.detach().clone() for p in model.parameters()]
            objective = proximal_objective(model, anchor, proximal_mu)
        losses: list[float] = []
        for epoch in range(local_epochs):
            sampler.set_epoch((server_round - 1) * local_epochs + epoch + 1)
            model.train()
            losses += train_epoch(model, model, loader, optimiser, train.grad_clip, device=device, objective=objective)
        model.eval()
        return {"num-examples": len(ids), "train_loss": float(np.mean(losses))}

    @torch.no_grad()
    def evaluate(self, model: MultiModalModel, tokenizer, train: TrainConfig) -> dict:
        """The model's confusion matrix (C x C counts, rows true) on this site's val split, and its case count."""
        device = next(model.parameters()).device
        ids = self.site.ids("val")
        tokenize = make_tokenize(tokenizer, model.config.text.max_length) if tokenizer is not None else _no_text
        loader = case_loader(CaseDataset(SplitCases(self.site, ids), model.config.input_spec()),
                             batch_size=train.batch_size, collate=TrainingCollate(tokenize),
                             num_workers=train.num_workers, device=device)
        model.eval()
        labels, predicted = [], []
        for streamed in loader:
            batch = streamed.batch.to(device)
            labels.append(batch.labels.cpu().numpy())
            predicted.append(model(batch).probabilities.float().argmax(1).cpu().numpy())
        classes = range(len(model.config.classes))
        matrix = confusion_matrix(np.concatenate(labels), np.concatenate(predicted), labels=list(classes))
        return {"num-examples": len(ids), "confusion": matrix.reshape(-1).astype(int).tolist()}


# ------------------------------------------------------------------------------------------------ Flower glue
_SITES: dict[tuple, SiteCohort] = {}  # per process: a Ray worker opens its site once, not every round


def _site_client(context: Context, data: str, names: Sequence[str], scheme: str, seed: int) -> SiteClient:
    """This node's site. Simulation: the node's partition-id indexes the sorted client names. A deployed
    SuperNode names its folder and site with ``--node-config "data='/path' site='site_a'"``; its site's index
    (which seeds its local training apart from the others') is then derived from the site's name."""
    node = context.node_config
    if "site" in node:
        name = str(node["site"])
    elif "partition-id" in node and names:
        name = names[int(node["partition-id"])]
    else:
        raise ValueError(f"this SuperNode names no site: start it with --node-config \"data='/path/to/cohort' "
                         f"site='site_a'\" (its node config has {', '.join(sorted(node)) or 'no keys'})")
    folder = str(node.get("data", data))
    if not folder:
        raise ValueError(f"the SuperNode of site {name!r} names no cohort folder: start it with --node-config "
                         f"\"data='/path/to/cohort' site='{name}'\"")
    key = (folder, name, scheme, seed)
    if key not in _SITES:
        _SITES[key] = site_view(folder, name, scheme, seed=seed)
    index = list(names).index(name) if name in names else zlib.crc32(name.encode()) % 10007
    return SiteClient(_SITES[key], index)


def _model(config: ConfigRecord, device: torch.device, arrays: ArrayRecord) -> MultiModalModel:
    model = build_model(ModelConfig.from_dict(json.loads(str(config["model-config"])))).to(device)
    load_state(model, arrays)
    return model.to(device)


def client_app(data: str | Path, names: Sequence[str], scheme: str = "site", *, seed: int = 0) -> ClientApp:
    """The ClientApp of a cohort folder's sites (``names``: the partition's client names, sorted)."""
    app = ClientApp()
    data, names = str(data), list(names)

    @app.query()
    def query(message: Message, context: Context) -> Message:
        client = _site_client(context, data, names, scheme, seed)
        config = message.content["config"]
        step = str(config["step"])
        model = ModelConfig.from_dict(json.loads(str(config["model-config"])))
        if step == "describe":
            described = client.describe(model)
            reply = ConfigRecord({"site": described["site"], "n-train": described["n_train"],
                                  "n-val": described["n_val"], "model-config": json.dumps(described["model_config"])})
            return Message(RecordDict({"config": reply}), reply_to=message)
        if step == "vocabulary":
            tokenizer = client.vocabulary(model)
            reply = ConfigRecord({"site": client.site.name, "tokenizer": tokenizer_to_text(tokenizer)})
            return Message(RecordDict({"config": reply}), reply_to=message)
        if step == "statistics":
            train = TrainConfig(**json.loads(str(config["train-config"])))
            statistics = client.statistics(model, train)
            arrays = ArrayRecord({f"{name}.{stat}": Array(np.asarray(values[stat], dtype=np.float64))
                                  for name, values in statistics.items() for stat in STATISTICS})
            return Message(RecordDict({"statistics": arrays, "config": ConfigRecord({"site": client.site.name})}),
                           reply_to=message)
        raise ValueError(f"unknown query step {step!r} (expected describe, vocabulary or statistics)")

    @app.train()
    def train(message: Message, context: Context) -> Message:
        client = _site_client(context, data, names, scheme, seed)
        config = message.content["config"]
        settings = TrainConfig(**json.loads(str(config["train-config"])))
        device = resolve_device(settings.device)
        model = _model(config, device, message.content["arrays"])
        result = client.train(model, tokenizer_from_text(str(config["tokenizer"])), settings,
                              server_round=int(config["server-round"]), local_epochs=int(config["local-epochs"]),
                              proximal_mu=float(config.get("proximal-mu", 0.0)))
        reply = RecordDict({"arrays": ArrayRecord(transport_state(model)), "metrics": MetricRecord(result)})
        return Message(reply, reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        client = _site_client(context, data, names, scheme, seed)
        config = message.content["config"]
        settings = TrainConfig(**json.loads(str(config["train-config"])))
        model = _model(config, resolve_device(settings.device), message.content["arrays"])
        result = client.evaluate(model, tokenizer_from_text(str(config["tokenizer"])), settings)
        return Message(RecordDict({"metrics": MetricRecord(result)}), reply_to=message)

    return app
