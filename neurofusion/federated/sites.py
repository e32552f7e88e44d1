"""Site views of a cohort: what one federated client holds. A view lists, and reads, only its own site's cases;
asking it for another site's case is a KeyError, so a client cannot open another site's files by mistake.

In a deployment each hospital's SuperNode opens its own cohort folder and needs no view; in the simulation on one
machine every client opens the same folder, and the view is what keeps the sites apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neurofusion.data.cohort import COHORT_CSV, CaseSequence, CohortReader
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import Case
from neurofusion.federated.config import PARTITIONS

SITE_COLUMN = "site"


def site_names(cohort: CohortReader) -> list[str]:
    """The cohort's sites (its ``site`` column's values), sorted; a CohortError when it has none."""
    table = cohort.table
    sites = (table[SITE_COLUMN].fillna("").astype(str).str.strip() if SITE_COLUMN in table.columns
             else None)  # the reader fills an absent column with ''
    if sites is None or (sites == "").all():
        raise CohortError(f"federated training needs a '{SITE_COLUMN}' column naming each case's site (a hospital, "
                          f"say); this cohort.csv has none", path=cohort.root / COHORT_CSV)
    if (sites == "").any():
        raise CohortError(f"{int((sites == '').sum())} case(s) have no '{SITE_COLUMN}'; every case must name the site "
                          f"that holds it", path=cohort.root / COHORT_CSV)
    return sorted(sites.unique())


def partition(cohort: CohortReader, scheme: str = "site", *, parts: int | None = None,
              seed: int = 0) -> dict[str, list[str]]:
    """{client name: its case ids}. ``site``: one client per site. ``iid``: the same number of clients as sites
    (or ``parts``), each a random, equal-sized share of every split, so the clients differ only by chance (the
    benchmark's control for what the sites' differences cost)."""
    if scheme not in PARTITIONS:
        raise ValueError(f"partition must be one of {', '.join(PARTITIONS)}, got {scheme!r}")
    sites = site_names(cohort)
    table = cohort.table
    if scheme == "site":
        named = table[SITE_COLUMN].fillna("").astype(str).str.strip()
        return {site: table.loc[named == site, "case_id"].tolist() for site in sites}
    n = parts or len(sites)
    rng = np.random.default_rng(seed)
    shares: dict[str, list[str]] = {f"iid_{k + 1}": [] for k in range(n)}
    for split in ("train", "val", "test"):
        ids = cohort.ids(split)
        for k, chunk in enumerate(np.array_split(rng.permutation(len(ids)), n)):
            shares[f"iid_{k + 1}"] += [ids[i] for i in sorted(chunk)]
    return shares


def check_sites(cohort: CohortReader, min_clients: int, scheme: str = "site", *,
                seed: int = 0) -> dict[str, list[str]]:
    """The partition's clients, checked: at least ``min_clients`` of them, each with train and val cases."""
    clients = partition(cohort, scheme, seed=seed)
    where = cohort.root / COHORT_CSV
    if len(clients) < min_clients:
        raise CohortError(f"the cohort has {len(clients)} site(s) ({', '.join(clients)}) but federated.min_clients "
                          f"is {min_clients}; lower min_clients or use a cohort with more sites", path=where)
    splits = cohort.table.set_index("case_id")["split"]
    for name, ids in clients.items():
        held = set(splits.loc[ids])
        missing = [s for s in ("train", "val") if s not in held]
        if missing:
            raise CohortError(f"site {name!r} has no cases in its {' or '.join(missing)} split; every site trains on "
                              f"its train split and validates on its val split", path=where)
    return clients


class SiteCohort(CaseSequence):
    """The cases of one site of a cohort, read through the cohort's own reader: ``ids``, ``table`` and indexing
    see only this site; another site's case id is a KeyError. ``read`` lists the case ids read so far (what a
    test checks)."""

    _missing = "case {case_id!r} is not held by this site ({root})"

    def __init__(self, cohort: CohortReader, name: str, ids: Sequence[str]) -> None:
        self.cohort, self.name = cohort, name
        keep = cohort.table["case_id"].isin(set(ids))
        self.table = cohort.table.loc[keep].reset_index(drop=True)
        self._rows = [int(i) for i in np.flatnonzero(keep.to_numpy())]  # positions in the full cohort
        self._position = {case_id: i for i, case_id in enumerate(self.table["case_id"])}
        self.root: Path = cohort.root
        for attribute in ("modalities", "features", "classes", "outcome", "info", "tabular_features"):
            setattr(self, attribute, getattr(cohort, attribute))
        self.read: list[str] = []

    def load(self, key: int | str) -> Case:
        i = self.position(key) if isinstance(key, str) else int(key)
        if not 0 <= i < len(self.table):
            raise IndexError(f"site {self.name!r} holds {len(self.table)} cases, asked for case {i}")
        self.read.append(self.table["case_id"].iat[i])
        return self.cohort.load(self._rows[i])

    def __repr__(self) -> str:
        return f"SiteCohort({self.name!r}, {len(self)} cases of {self.root})"


def site_view(data: str | Path, name: str, scheme: str = "site", *, seed: int = 0) -> SiteCohort:
    """Open the cohort at ``data`` and keep only the client ``name`` of its partition."""
    cohort = CohortReader(data)
    clients = partition(cohort, scheme, seed=seed)
    if name not in clients:
        raise CohortError(f"no site {name!r} in the cohort (its sites: {', '.join(clients)})",
                          path=Path(data) / COHORT_CSV)
    return SiteCohort(cohort, name, clients[name])
