"""Federated training (neurofusion.federated): 2 rounds of Flower's simulation on a small 3-site cohort give a
checkpoint that loads and predicts; FedAvg's aggregate is the example-weighted mean of the weights the sites
returned; FedProx's objective adds exactly mu/2 ||w - w_global||^2; a site reads only its own cases and the server
none; the normalisers and the pooled validation numbers equal what the pooled cases would give; bad configs and
cohorts are specific errors.

The simulation (Ray starting, 3 clients, 2 rounds) takes about 30 s on 2 shared cores; it runs once per module.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import f1_score

from neurofusion.checkpoint import load_checkpoint
from neurofusion.config import TrainConfig
from neurofusion.data import CohortReader
from neurofusion.data.errors import CohortError
from neurofusion.federated import (
    FederatedConfigError,
    SiteClient,
    check_sites,
    combine_statistics,
    feature_statistics,
    load_federated_experiment,
    partition,
    pooled_metrics,
    proximal_objective,
    set_normaliser,
    site_view,
)
from neurofusion.federated.__main__ import main as federated_main
from neurofusion.inference import Predictor
from neurofusion.metrics import classification_metrics
from neurofusion.models import build_model
from neurofusion.models.encoders import FeatureNormaliser
from neurofusion.train import configure_model
from tests.conftest import tiny_config

SMALL_TRAIN = {"lr": 0.003, "batch_size": 16, "augment": False, "modality_dropout": 0.0}


def _experiment(cohort, tokenizer, **federated) -> dict:
    config = tiny_config(cohort, tokenizer).to_dict()
    config.pop("classes"), config.pop("features")
    return {"model": config, "train": dict(SMALL_TRAIN),
            "federated": {"strategy": "fedavg", "rounds": 2, "local_epochs": 1, "min_clients": 3, **federated}}


def _write(tmp_path, data: dict, name: str = "fed.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def federated_run(tiny_cohort, tiny_tokenizer, tmp_path_factory):
    """One 2-round FedProx run in Flower's simulation through the command line, with the server side watched:
    the replies the strategy aggregated, the aggregates, and any case the server process loaded."""
    from flwr.serverapp.strategy import FedAvg

    tmp = tmp_path_factory.mktemp("federated")
    config = _write(tmp, _experiment(tiny_cohort, tiny_tokenizer, strategy="fedprox", proximal_mu=0.05))
    watched: dict[str, list] = {"rounds": [], "loaded": []}
    original_aggregate, original_load = FedAvg.aggregate_train, CohortReader.load

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        arrays, metrics = original_aggregate(self, server_round, replies)
        watched["rounds"].append(([(float(m.content["metrics"]["num-examples"]),
                                    m.content["arrays"].to_torch_state_dict()) for m in replies],
                                  arrays.to_torch_state_dict()))
        return arrays, metrics

    def load(self, key):
        watched["loaded"].append(key)
        return original_load(self, key)

    out = tmp / "ckpt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FedAvg, "aggregate_train", aggregate_train)
        patch.setattr(CohortReader, "load", load)
        # no --eval-data test split evaluation inside the watch: run_federated's part is what is watched
        import neurofusion.federated.__main__ as cli

        loaded_before_eval: list = []
        original_metrics = cli._metrics

        def metrics(result, evaluation):
            loaded_before_eval.extend(watched["loaded"])
            return original_metrics(result, evaluation)

        patch.setattr(cli, "_metrics", metrics)
        code = federated_main(["--config", str(config), "--data", str(tiny_cohort.root), "--out", str(out),
                               "--quiet"])
    return {"code": code, "out": out, "watched": watched, "server_loaded": loaded_before_eval}


def test_two_rounds_in_simulation_give_a_checkpoint_that_loads_and_predicts(federated_run, tiny_cohort):
    assert federated_run["code"] == 0
    checkpoint = load_checkpoint(federated_run["out"], device="cpu")
    training = checkpoint.training
    assert training["federated"]["strategy"] == "fedprox" and training["federated"]["proximal_mu"] == 0.05
    assert [r["round"] for r in training["history"]] == [1, 2]
    assert training["selected_by"] == "val_macro_f1" and "flwr" in training["versions"]
    assert training["command"].startswith("python -m neurofusion.federated --config")
    assert all(r["sites"] == ["site_a", "site_b", "site_c"] for r in training["history"])
    best = max(training["history"], key=lambda r: r["val_macro_f1"])
    assert training["best_epoch"] == best["round"]
    assert checkpoint.metrics["val"]["macro_f1"]["value"] == best["val_macro_f1"]
    sites = training["federated"]["sites"]
    assert set(sites) == {"site_a", "site_b", "site_c"}
    for name, site in sites.items():
        assert site["n_train"] == len([i for i in tiny_cohort.ids("train")
                                       if tiny_cohort[i].site == name])
        assert any("confusion matrix" in s for s in site["sent"])
    vocabulary_site = training["federated"]["vocabulary_site"]
    assert any("WordPiece vocabulary" in s for s in sites[vocabulary_site]["sent"])
    assert sum(any("WordPiece" in s for s in site["sent"]) for site in sites.values()) == 1
    cases = [tiny_cohort[i] for i in tiny_cohort.ids("test")]
    labels, probabilities = Predictor(checkpoint.model, checkpoint.tokenizer).predict(cases)
    assert probabilities.shape == (len(cases), len(tiny_cohort.classes))
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert checkpoint.metrics["test"]["n"] == len(cases)
    from app.figures import training_curves  # the model card's training curve reads the rounds as epochs

    training_curves(training["history"], training["best_epoch"])


def test_fedavg_aggregate_is_the_example_weighted_mean_of_the_sites_weights(federated_run, tiny_cohort):
    rounds = federated_run["watched"]["rounds"]
    assert len(rounds) == 2
    train_counts = sorted(len([i for i in tiny_cohort.ids("train") if tiny_cohort[i].site == s])
                          for s in ("site_a", "site_b", "site_c"))
    for replies, aggregate in rounds:
        assert sorted(n for n, _ in replies) == train_counts
        total = sum(n for n, _ in replies)
        for key, value in aggregate.items():
            expected = sum(n * weights[key].double() for n, weights in replies) / total
            torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
        moved = [k for k in aggregate if not torch.equal(replies[0][1][k], replies[1][1][k])]
        assert moved, "the sites returned identical weights: the check above would prove nothing"


def test_the_server_process_never_loads_a_case(federated_run):
    assert federated_run["code"] == 0
    assert federated_run["server_loaded"] == []


def test_fedprox_objective_adds_exactly_half_mu_times_the_squared_distance(tiny_cohort, tiny_tokenizer):
    torch.manual_seed(0)
    model = build_model(tiny_config(tiny_cohort, tiny_tokenizer))
    anchor = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    mu = 0.3
    task_loss = torch.tensor(1.25)
    loss = proximal_objective(model, anchor, mu)(None, None, None, task_loss)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    reference = torch.cat([a.flatten() for a in anchor]).double()
    expected = 1.25 + mu / 2 * float(((flat - reference) ** 2).sum())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    loss.backward()  # its gradient is mu (w - w_global)
    first = next(model.parameters())
    torch.testing.assert_close(first.grad, mu * (first.detach() - anchor[0]), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="global_parameters has 1 tensors"):
        proximal_objective(model, anchor[:1], mu)


def test_a_client_reads_only_its_own_sites_case_files(tiny_cohort, tiny_tokenizer, monkeypatch):
    import neurofusion.data.cohort as cohort_module
    import neurofusion.train as train_module

    opened: list[str] = []

    def spy(reader):
        def read(path, *args, **kwargs):
            opened.append(str(path))
            return reader(path, *args, **kwargs)
        return read

    for module, name in ((cohort_module, "read_image"), (cohort_module, "read_note"), (cohort_module, "read_signal"),
                         (train_module, "read_note")):
        monkeypatch.setattr(module, name, spy(getattr(module, name)))
    site = site_view(tiny_cohort.root, "site_b")
    own = set(site.ids())
    assert own == {i for i in tiny_cohort.ids() if tiny_cohort.table.set_index("case_id").loc[i, "site"] == "site_b"}
    client = SiteClient(site, 1)
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    train = TrainConfig(**SMALL_TRAIN)
    client.describe(config)
    tokenizer = client.vocabulary(config)
    client.statistics(config, train)
    model = build_model(configure_model(config, site))
    client.train(model, tokenizer, train, server_round=1, local_epochs=1)
    client.evaluate(model, tokenizer, train)
    assert opened, "the spies saw no file: the check below would prove nothing"
    read_ids = {path.rsplit("/", 1)[-1].split(".")[0] for path in opened}
    assert read_ids <= own, sorted(read_ids - own)
    assert set(site.read) <= own
    other = next(i for i in tiny_cohort.ids() if i not in own)
    with pytest.raises(KeyError, match="not held by this site"):
        site[other]


def test_normalisers_from_site_statistics_equal_the_pooled_fit():
    rng = np.random.default_rng(0)
    numeric = torch.from_numpy(np.column_stack([rng.normal(50, 10, 300), rng.lognormal(2, 1.2, 300),
                                                rng.normal(0, 1, 300)])).float()
    mask = torch.from_numpy(rng.random((300, 3)) > 0.2)
    mask[:, 2] = False
    mask[0, 2] = True  # one measured value: the statistics stay at their defaults
    central = FeatureNormaliser(3)
    central.fit(numeric, mask)
    parts = [slice(0, 120), slice(120, 210), slice(210, 300)]
    sites = [feature_statistics([(numeric[p][:50], mask[p][:50]), (numeric[p][50:], mask[p][50:])], 3) for p in parts]
    federated = FeatureNormaliser(3)
    set_normaliser(federated, combine_statistics(sites))
    assert central.log_scale.tolist() == federated.log_scale.tolist() == [False, True, False]
    torch.testing.assert_close(federated.mean, central.mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(federated.std, central.std, rtol=1e-5, atol=1e-5)


def test_pooled_validation_numbers_equal_those_of_the_pooled_predictions():
    rng = np.random.default_rng(1)
    from sklearn.metrics import confusion_matrix

    sites = [(rng.integers(0, 4, n), rng.integers(0, 4, n)) for n in (30, 12, 7)]
    sites[2] = (np.zeros(7, int), rng.integers(0, 4, 7))
    confusions = [confusion_matrix(t, p, labels=range(4)) for t, p in sites]
    pooled = pooled_metrics(confusions)
    labels, predicted = np.concatenate([t for t, _ in sites]), np.concatenate([p for _, p in sites])
    assert pooled["val_accuracy"] == pytest.approx(float((labels == predicted).mean()))
    assert pooled["val_macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    onehot = np.eye(4)[predicted] * 0.9 + 0.025
    reference = classification_metrics(labels, onehot, ["a", "b", "c", "d"], n_bootstrap=10)
    assert pooled["val_macro_f1"] == pytest.approx(reference["macro_f1"]["value"])


@pytest.mark.parametrize("change, message", [
    ({"strategy": "fedsgd"}, "federated.strategy must be one of fedavg, fedprox, got 'fedsgd'"),
    ({"rounds": 0}, "federated.rounds must be an integer >= 1, got 0"),
    ({"local_epochs": 1.5}, "federated.local_epochs must be an integer >= 1, got 1.5"),
    ({"clients_per_round": 1.5}, "federated.clients_per_round must be a fraction in (0, 1] or a count >= 1"),
    ({"clients_per_round": 0}, "federated.clients_per_round must be a fraction in (0, 1] or a count >= 1, got 0"),
    ({"strategy": "fedprox", "proximal_mu": 0.0}, "federated.proximal_mu must be > 0 with strategy fedprox"),
    ({"proximal_mu": -1}, "federated.proximal_mu must be a number >= 0, got -1"),
    ({"proximal_mu": 0.1}, "federated.proximal_mu must be 0 with strategy fedavg"),
    ({"min_clients": "three"}, "federated.min_clients must be an integer >= 1, got 'three'"),
    ({"partition": "random"}, "federated.partition must be one of site, iid, got 'random'"),
    ({"rounds_per_day": 2}, "unknown key(s) in 'federated': rounds_per_day"),
])
def test_bad_federated_fields_are_specific_errors(tmp_path, tiny_cohort, tiny_tokenizer, change, message):
    path = _write(tmp_path, _experiment(tiny_cohort, tiny_tokenizer, **change))
    with pytest.raises(FederatedConfigError) as err:
        load_federated_experiment(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_config_without_a_federated_section_or_with_a_schedule_is_refused(tmp_path, tiny_cohort, tiny_tokenizer,
                                                                              capsys):
    data = _experiment(tiny_cohort, tiny_tokenizer)
    data.pop("federated")
    path = _write(tmp_path, data)
    with pytest.raises(FederatedConfigError, match="no 'federated' section"):
        load_federated_experiment(path)
    data = _experiment(tiny_cohort, tiny_tokenizer)
    data["train"]["lr_schedule"] = "cosine"
    with pytest.raises(FederatedConfigError, match="train.lr_schedule must be 'constant'"):
        load_federated_experiment(_write(tmp_path, data, "cosine.yaml"))
    bad = _experiment(tiny_cohort, tiny_tokenizer, rounds=-2)
    code = federated_main(["--config", str(_write(tmp_path, bad, "bad.yaml")), "--data", str(tiny_cohort.root),
                           "--out", str(tmp_path / "x")])
    assert code == 2 and "federated.rounds must be an integer >= 1, got -2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_cohort_without_sites_or_with_too_few_is_a_specific_error(tmp_path, tiny_cohort, tiny_tokenizer, capsys):
    no_site = tmp_path / "no_site"
    shutil.copytree(tiny_cohort.root, no_site)
    table = pd.read_csv(no_site / "cohort.csv", dtype=str, keep_default_na=False)
    table.drop(columns="site").to_csv(no_site / "cohort.csv", index=False)
    with pytest.raises(CohortError, match="federated training needs a 'site' column"):
        check_sites(CohortReader(no_site), 3)
    config = _write(tmp_path, _experiment(tiny_cohort, tiny_tokenizer))
    assert federated_main(["--config", str(config), "--data", str(no_site), "--out", str(tmp_path / "x")]) == 2
    assert "needs a 'site' column" in capsys.readouterr().err
    with pytest.raises(CohortError, match=r"has 3 site\(s\) \(site_a, site_b, site_c\) but federated.min_clients is 4"):
        check_sites(tiny_cohort, 4)
    four = _write(tmp_path, _experiment(tiny_cohort, tiny_tokenizer, min_clients=4), "four.yaml")
    assert federated_main(["--config", str(four), "--data", str(tiny_cohort.root), "--out", str(tmp_path / "y")]) == 2
    assert "federated.min_clients is 4" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_iid_parts_are_equal_shares_of_every_split(tiny_cohort):
    parts = partition(tiny_cohort, "iid", seed=3)
    assert sorted(parts) == ["iid_1", "iid_2", "iid_3"]
    everyone = [i for ids in parts.values() for i in ids]
    assert sorted(everyone) == sorted(tiny_cohort.ids())
    splits = tiny_cohort.table.set_index("case_id")["split"]
    for split in ("train", "val"):
        sizes = [int((splits.loc[ids] == split).sum()) for ids in parts.values()]
        assert max(sizes) - min(sizes) <= 1
    assert partition(tiny_cohort, "iid", seed=3) == parts != partition(tiny_cohort, "iid", seed=4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_site_trains_on_the_gpu(tiny_cohort, tiny_tokenizer):
    site = site_view(tiny_cohort.root, "site_a")
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    model = build_model(configure_model(config, site)).to("cuda")
    result = SiteClient(site).train(model, tiny_tokenizer, TrainConfig(**SMALL_TRAIN, device="cuda"),
                                    server_round=1, local_epochs=1, proximal_mu=0.01)
    assert np.isfinite(result["train_loss"]) and next(model.parameters()).device.type == "cuda"


def test_clients_per_round_is_a_fraction_or_a_count_never_below_min_clients():
    from neurofusion.federated import FederatedConfig

    assert FederatedConfig(clients_per_round=0.5, min_clients=1).sampled(3) == 2  # ceil(1.5)
    assert FederatedConfig(clients_per_round=1.0, min_clients=1).sampled(3) == 3
    assert FederatedConfig(clients_per_round=2, min_clients=1).sampled(5) == 2
    assert FederatedConfig(clients_per_round=0.2, min_clients=3).sampled(5) == 3
