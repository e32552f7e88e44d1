"""Run a federated training in Flower's simulation engine on one machine: one virtual SuperNode (ClientApp) per
site of a cohort folder, the ServerApp in a thread of this process, Ray running the clients.

Nothing reaches the internet: Ray's usage statistics and Flower's telemetry are switched off before either is
imported, and Ray's dashboard is not started.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before Ray is imported anywhere
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

import torch  # noqa: E402

from neurofusion.data.cohort import CohortReader  # noqa: E402
from neurofusion.federated.client import client_app  # noqa: E402
from neurofusion.federated.config import FederatedExperiment  # noqa: E402
from neurofusion.federated.server import FederatedError, FederatedResult, server_app  # noqa: E402
from neurofusion.federated.sites import check_sites  # noqa: E402

__all__ = ["run_federated"]


def run_federated(spec: FederatedExperiment, data: str | Path, *, parallel_sites: int = 1,
                  quiet: bool = False) -> FederatedResult:
    """Train ``spec`` across the sites of the cohort at ``data`` in Flower's simulation and return the server's
    result (kept weights, tokenizer, per-round history, what each site sent). ``parallel_sites``: how many
    clients Ray runs at once (one CPU each; 1 runs the sites one after another). Raises CohortError for a cohort
    without enough sites, FederatedError when the run fails."""
    cohort = CohortReader(data)
    # the simulation's stand-in for "each hospital has its own folder": which clients exist, checked up front
    names = sorted(check_sites(cohort, spec.federated.min_clients, spec.federated.partition,
                               seed=spec.experiment.train.seed))
    if parallel_sites < 1:
        raise ValueError(f"parallel_sites must be >= 1, got {parallel_sites}")
    import ray
    from flwr.simulation import run_simulation

    logging.getLogger("flwr").setLevel(logging.WARNING if quiet else logging.INFO)
    result = FederatedResult()
    gpu = torch.cuda.is_available() and spec.experiment.train.device != "cpu"
    resources = {"num_cpus": 1, "num_gpus": (1.0 / parallel_sites) if gpu else 0.0}
    backend = {"init_args": {"num_cpus": parallel_sites, "num_gpus": 1 if gpu else 0, "include_dashboard": False,
                             "object_store_memory": 256 * 2**20, "logging_level": "error",
                             "log_to_driver": not quiet},
               "client_resources": resources}
    try:
        run_simulation(server_app(spec, result), client_app(data, names, spec.federated.partition,
                                                            seed=spec.experiment.train.seed),
                       num_supernodes=len(names), backend_config=backend)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    if result.error is not None:
        raise result.error
    if result.model is None:
        raise FederatedError("the simulation ended without a trained model (see Flower's log above)")
    return result
