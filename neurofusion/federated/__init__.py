"""Federated training across sites with Flower: one client per site holding only its own cases, FedAvg or FedProx
on the server, which holds the global weights and the numbers the sites report, never a case.

    python -m neurofusion.federated --config configs/cardio_federated.yaml --data DIR --out DIR [--eval-data DIR]
"""

import os

# before Flower or Ray is imported: nothing of a run reaches the internet (usage statistics, telemetry)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from neurofusion.federated.client import SiteClient, client_app, proximal_objective
from neurofusion.federated.config import (
    FederatedConfig,
    FederatedConfigError,
    FederatedExperiment,
    load_federated_experiment,
    parse_federated,
)
from neurofusion.federated.server import FederatedError, FederatedResult, pooled_metrics, server_app
from neurofusion.federated.sites import SiteCohort, check_sites, partition, site_names, site_view
from neurofusion.federated.statistics import combine_statistics, feature_statistics, set_normaliser

__all__ = [
    "FederatedConfig", "FederatedConfigError", "FederatedError", "FederatedExperiment", "FederatedResult",
    "SiteClient", "SiteCohort", "check_sites", "client_app", "combine_statistics", "feature_statistics",
    "load_federated_experiment", "parse_federated", "partition", "pooled_metrics", "proximal_objective",
    "server_app", "set_normaliser", "site_names", "site_view",
]
