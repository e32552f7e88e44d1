"""The deployed Flower App (deploy/flower) run the way a hospital network runs it, on loopback: a SuperLink, one
SuperNode per site, each SuperNode holding a cohort folder with only its own site's cases, and ``flwr run`` submitting
the app with a run config. Without TLS (flower-superlink --insecure) and with TLS (a CA and a server certificate for
127.0.0.1 made here). The checkpoint written at the SuperLink loads, names both sites and 2 rounds, and each site's
case counts are those of its own folder; a bad run config is a specific error in the run's log.

Each deployment (a SuperLink, 2 SuperNodes, a Flower process per message) takes about 2.5 min on 2 shared cores.
Every process is killed at the end, also on failure. Telemetry is off; nothing leaves the machine.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from tests.conftest import tiny_config
from tests.neurofusion.test_federated import SMALL_TRAIN

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "deploy" / "flower"
BIN = Path(sys.executable).parent
SITES = ("site_a", "site_b")
RUN_SECONDS = 420


def _site_folders(cohort: CohortReader, sites, out: Path) -> dict[str, Path]:
    """One cohort folder per site holding only that site's cases (its rows of every per-case CSV and its files):
    what each hospital's SuperNode reads."""
    folders = {}
    for site in sites:
        rows = cohort.table[cohort.table["site"] == site]
        ids = set(rows["case_id"])
        folder = out / site
        folder.mkdir(parents=True)
        for path in cohort.root.iterdir():
            if path.suffix == ".csv":
                table = pd.read_csv(path, dtype=str, keep_default_na=False)
                if "case_id" in table.columns:
                    table = table[table["case_id"].isin(ids)]
                table.to_csv(folder / path.name, index=False)
            elif path.is_file():
                shutil.copy(path, folder / path.name)
        for column in ("image_file", "signal_file", "note_file"):
            for relative in rows[column]:
                for source in cohort.root.glob(str(Path(relative).with_suffix(".*")) if relative else "-"):
                    target = folder / source.relative_to(cohort.root)
                    target.parent.mkdir(exist_ok=True)
                    shutil.copy(source, target)
        folders[site] = folder
    return folders


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (unencrypted PEM files in ``folder``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "NeuroFusion test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                          x509.DNSName("localhost")]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.crt", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                                      serialization.NoEncryption()))
    return paths


class _Deployment:
    """A SuperLink and one SuperNode per site on loopback, as separate processes; ``close`` kills them all (and the
    SuperExec processes each starts, which run in sessions of their own)."""

    def __init__(self, tmp: Path, folders: dict[str, Path], tls: dict[str, Path] | None) -> None:
        self.tmp, self.processes, self.logs = tmp, [], []
        self.home = tmp / "flwr_home"
        self.home.mkdir()
        link_port, *node_ports = _free_ports(1 + len(folders))
        self.address = f"127.0.0.1:{link_port}"
        self.env = {**os.environ, "FLWR_HOME": str(self.home), "FLWR_TELEMETRY_ENABLED": "0",
                    "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ['PATH']}",
                    "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        # the shipped Flower configuration file, pointed at this SuperLink's port and this test's CA certificate
        connections = (APP / "flower-config.toml").read_text().replace("127.0.0.1:9093", self.address)
        if tls is not None:
            connections = connections.replace('"certs/ca.crt"', f'"{tls["ca"]}"')
        (self.home / "config.toml").write_text(connections)
        security = (["--ssl-ca-certfile", str(tls["ca"]), "--ssl-certfile", str(tls["cert"]),
                     "--ssl-keyfile", str(tls["key"])] if tls else ["--insecure"])
        self._start("superlink", ["flower-superlink", *security, "--host", "127.0.0.1", "--port", str(link_port),
                                  "--disable-runtime-dependency-installation"])
        self._wait_for_port(link_port)
        trust = ["--root-certificates", str(tls["ca"])] if tls else ["--insecure"]
        for (site, folder), port in zip(folders.items(), node_ports):
            self._start(f"supernode_{site}", ["flower-supernode", *trust, "--superlink", self.address,
                                              "--port", str(port), "--node-config",
                                              f"data='{folder}' site='{site}'"])

    def _start(self, name: str, command: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "wb")
        self.logs.append(log)
        command[0] = str(BIN / command[0])
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                               cwd=self.tmp, start_new_session=True))

    def _wait_for_port(self, port: int, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.processes[-1].poll() is not None:
                raise RuntimeError(f"the SuperLink exited: {(self.tmp / 'superlink.log').read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the SuperLink did not listen on {port} within {seconds} s")

    def flwr_run(self, connection: str, run_config: str) -> subprocess.CompletedProcess:
        """``flwr run deploy/flower <connection> --run-config ... --stream`` from the repository root."""
        return subprocess.run([str(BIN / "flwr"), "run", str(APP), connection, "--run-config", run_config,
                               "--stream"], capture_output=True, text=True, env=self.env, cwd=ROOT,
                              timeout=RUN_SECONDS)

    def close(self) -> None:
        mine = [p.pid for p in self.processes]
        # the SuperExec each SuperLink/SuperNode starts (new session, --parent-pid) and the app processes it runs
        executors = []
        for entry in Path("/proc").iterdir():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--parent-pid" in words:
                parent = words[words.index(b"--parent-pid") + 1]
                if parent.isdigit() and int(parent) in mine:
                    executors.append(int(entry.name))
        for pgid in [*mine, *executors]:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in self.processes:
            process.wait(timeout=30)
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def sites(tiny_cohort, tiny_tokenizer, tmp_path_factory):
    """Two sites' own cohort folders, the federated experiment YAML (2 rounds, min_clients 2) and the counts
    each site holds."""
    tmp = tmp_path_factory.mktemp("deployment")
    folders = _site_folders(tiny_cohort, SITES, tmp / "hospitals")
    config = tiny_config(tiny_cohort, tiny_tokenizer).to_dict()
    config.pop("classes"), config.pop("features")
    experiment = tmp / "fed.yaml"
    experiment.write_text(yaml.safe_dump({"model": config, "train": dict(SMALL_TRAIN),
                                          "federated": {"strategy": "fedavg", "rounds": 2, "local_epochs": 1,
                                                        "min_clients": 2}}))
    counts = {site: {split: len(CohortReader(folder).ids(split)) for split in ("train", "val")}
              for site, folder in folders.items()}
    return {"folders": folders, "config": experiment, "counts": counts}


def _run_and_check(tmp: Path, sites: dict, tiny_cohort, tls: dict | None, connection: str) -> None:
    deployment = _Deployment(tmp, sites["folders"], tls)
    try:
        if tls is None:  # a wrong run config fails the run with the reason, before any site is asked
            bad = deployment.flwr_run(connection, f"config='{tmp / 'missing.yaml'}' out='{tmp / 'never'}'")
            assert "no federated experiment YAML at" in bad.stdout + bad.stderr, bad.stdout[-3000:]
            assert not (tmp / "never").exists()
        out = tmp / "checkpoint"
        started = time.perf_counter()
        run = deployment.flwr_run(connection, f"config='{sites['config']}' out='{out}' "
                                              f"eval-data='{tiny_cohort.root}' seed=3")
        seconds = time.perf_counter() - started
        logs = {p.name: p.read_text(errors="replace")[-1500:] for p in tmp.glob("*.log")}
        assert run.returncode == 0 and (out / "training.json").exists(), (run.stdout[-4000:], run.stderr, logs)
    finally:
        deployment.close()
    print(f"{connection}: flwr run took {seconds:.0f} s")
    superlink_log = (tmp / "superlink.log").read_text(errors="replace")
    assert ("Starting insecure HTTP server" in superlink_log) == (tls is None)  # TLS really on with the certificates
    checkpoint = load_checkpoint(out, device="cpu")
    training = checkpoint.training
    assert [r["round"] for r in training["history"]] == [1, 2]
    assert all(r["sites"] == list(SITES) for r in training["history"])
    assert training["train_config"]["seed"] == 3  # the --run-config override reached the experiment
    assert training["command"].startswith("flwr run deploy/flower --run-config")
    federated = training["federated"]
    assert federated["strategy"] == "fedavg" and federated["rounds"] == 2
    # each SuperNode read its own folder only: the counts it reported are its folder's, and they differ per site
    reported = {site: {"train": s["n_train"], "val": s["n_val"]} for site, s in federated["sites"].items()}
    assert reported == sites["counts"]
    full = tiny_cohort.table
    for site in SITES:
        assert reported[site]["train"] == int(((full["site"] == site) & (full["split"] == "train")).sum())
    assert checkpoint.metrics["test"]["n"] == len(tiny_cohort.ids("test"))  # evaluated at the SuperLink
    best = next(r for r in training["history"] if r["round"] == training["best_epoch"])
    assert checkpoint.metrics["val"]["macro_f1"]["value"] == best["val_macro_f1"]


@pytest.mark.skipif(os.environ.get("NEUROFUSION_ALL_DEPLOYMENTS") != "1",
                    reason="the same run as the TLS test without certificates (2-3 min): NEUROFUSION_ALL_DEPLOYMENTS=1 "
                           "runs it; make test runs the TLS deployment, the one hospitals use")
def test_a_superlink_and_two_supernodes_without_tls_write_the_checkpoint(sites, tiny_cohort, tmp_path):
    _run_and_check(tmp_path, sites, tiny_cohort, None, "local-deployment")


def test_the_same_deployment_over_tls_with_a_ca_made_here(sites, tiny_cohort, tmp_path):
    tls = _certificates(tmp_path)
    _run_and_check(tmp_path, sites, tiny_cohort, tls, "tls-deployment")


def test_bad_run_config_values_are_specific_errors(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(APP))
    from neurofusion_flower.apps import deployment_settings

    (tmp_path / "fed.yaml").write_text("model: {}\n")
    good = {"config": "fed.yaml", "out": "ckpt", "eval-data": "", "strategy": "", "rounds": 0, "seed": -1}
    settings = deployment_settings(good, tmp_path)
    assert settings.config == tmp_path / "fed.yaml" and settings.out == tmp_path / "ckpt"
    assert (settings.eval_data, settings.strategy, settings.rounds, settings.seed) == (None, None, None, None)
    overridden = deployment_settings({**good, "strategy": "fedprox", "rounds": 4, "seed": 0}, tmp_path)
    assert (overridden.strategy, overridden.rounds, overridden.seed) == ("fedprox", 4, 0)
    for change, message in [({"config": "nope.yaml"}, "run config config: no federated experiment YAML at"),
                            ({"out": ""}, "run config out must name a path"),
                            ({"eval-data": "nowhere"}, "run config eval-data: no cohort folder at"),
                            ({"strategy": "fedsgd"}, "run config strategy must be one of fedavg, fedprox"),
                            ({"rounds": -1}, "run config rounds must be an integer >= 1 (0: the config's), got -1"),
                            ({"rounds": 2.5}, "run config rounds must be an integer >= 1"),
                            ({"seed": "7"}, "run config seed must be an integer >= 0 (-1: the config's)"),
                            ({"config": 3}, "run config config must be a string, got 3")]:
        with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            deployment_settings({**good, **change}, tmp_path)
    with pytest.raises(ValueError, match="run config lacks seed"):
        deployment_settings({k: v for k, v in good.items() if k != "seed"}, tmp_path)


def test_a_supernode_without_its_site_or_folder_is_a_specific_error(sites):
    from flwr.app import Context, RecordDict

    from neurofusion.federated.client import _site_client

    def context(node_config: dict) -> Context:
        return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})

    with pytest.raises(ValueError, match="this SuperNode names no site: start it with --node-config"):
        _site_client(context({"data": str(sites["folders"]["site_a"])}), "", [], "site", 0)
    with pytest.raises(ValueError, match="the SuperNode of site 'site_a' names no cohort folder"):
        _site_client(context({"site": "site_a"}), "", [], "site", 0)
    client = _site_client(context({"site": "site_b", "data": str(sites["folders"]["site_b"])}), "", [], "site", 0)
    assert client.site.name == "site_b" and len(client.site.ids("train")) == sites["counts"]["site_b"]["train"]
    other = _site_client(context({"site": "site_a", "data": str(sites["folders"]["site_a"])}), "", [], "site", 0)
    assert other.index != client.index  # the sites' local training is seeded apart without a shared list of names
