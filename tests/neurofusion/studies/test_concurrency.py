"""Concurrent submissions on both engines: threads, each with its own StudyStore (as separate dashboard
sessions or processes would be), submit at once. No row may be lost, stored twice or mixed with another
thread's, and revisions of one (rater, case) must count 1..n without gaps."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest

from neurofusion.studies import StudyStore, create_study
from tests.neurofusion.studies.conftest import CARDIO, CARDIO_DEMO

THREADS, PER_THREAD = 8, 25


def _run_threads(work, count: int) -> None:
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a submitting thread hung"
    if errors:
        raise errors[0]


def test_concurrent_submissions_are_all_stored_once_and_unmixed(study_url):
    with StudyStore(study_url) as store:
        create_study(store, "busy", cohort_dir=CARDIO, checkpoint_dir=CARDIO_DEMO, selection="stratified", n=50,
                     seed=5, raters=["r0", "r1", "r2", "r3", "shared", "reviser"])
        cases = store.cases("busy")
    four = [c for c in cases if len(c.available) == 4]
    revised = four[0]
    # threads 0-3: one rater each; 4-5: the same rater, disjoint cases; 6-7: the same (rater, case), revised
    plans: list[list[tuple[str, object]]] = []
    for i in range(THREADS):
        if i < 4:
            plans.append([(f"r{i}", c) for c in cases[:PER_THREAD]])
        elif i < 6:
            plans.append([("shared", c) for c in cases[(i - 4) * PER_THREAD:(i - 3) * PER_THREAD]])
        else:
            plans.append([("reviser", revised)] * PER_THREAD)
    sent: dict[str, tuple[str, str, dict[str, int]]] = {}
    lock = threading.Lock()

    def work(i: int) -> None:
        rng = np.random.default_rng(i)
        with StudyStore(study_url) as own:
            for j, (rater, case) in enumerate(plans[i]):
                ranks = dict(zip(case.available, (rng.permutation(len(case.available)) + 1).tolist()))
                token = f"thread{i}-{j}"
                with lock:
                    sent[token] = (rater, case.case_id, ranks)
                stored = own.submit("busy", rater, case.case_id, ranks, token=token, confidence=1 + j % 5)
                assert not stored.duplicate and stored.ranks == ranks

    _run_threads(work, THREADS)

    with StudyStore(study_url) as store:
        history = store.history("busy")
    assert len(history) == THREADS * PER_THREAD == len(sent)
    assert Counter(s.token for s in history) == Counter(sent.keys())  # every submission exactly once
    for row in history:
        assert (row.rater, row.case_id, row.ranks) == sent[row.token], row  # no mixing between threads
    revisions = sorted(s.revision for s in history if s.rater == "reviser")
    assert revisions == list(range(1, 2 * PER_THREAD + 1))  # no gaps, no duplicates
    assert all(s.revision == 1 for s in history if s.rater != "reviser")
    assert len({s.id for s in history}) == len(history)


def test_the_same_token_from_several_threads_stores_one_row(study_url):
    with StudyStore(study_url) as store:
        create_study(store, "retry", cohort_dir=CARDIO, checkpoint_dir=CARDIO_DEMO, selection="stratified", n=12,
                     seed=1, raters=["ann"])
        case = store.cases("retry")[0]
    ranks = dict(zip(case.available, range(1, len(case.available) + 1)))
    results = []

    def work(i: int) -> None:
        with StudyStore(study_url) as own:
            for j in range(10):  # ten requests, each sent by four threads at once (a client retrying)
                results.append(own.submit("retry", "ann", case.case_id, ranks, token=f"request-{j}"))

    _run_threads(work, 4)
    with StudyStore(study_url) as store:
        history = store.history("retry")
    assert sorted(s.token for s in history) == sorted(f"request-{j}" for j in range(10))
    assert sorted(s.revision for s in history) == list(range(1, 11))
    assert sum(not r.duplicate for r in results) == 10 and sum(r.duplicate for r in results) == 30
    by_token = {s.token: s.id for s in history}
    assert all(r.id == by_token[r.token] for r in results)


@pytest.mark.parametrize("count", [6])
def test_concurrent_imports_of_one_file_add_its_rows_once(study_url, tmp_path, count):
    with StudyStore(study_url) as store:
        create_study(store, "imports", cohort_dir=CARDIO, checkpoint_dir=CARDIO_DEMO, selection="stratified", n=12,
                     seed=2, raters=[])
        cases = store.cases("imports")
        modalities = store.study("imports").modalities
    lines = ["case_id,rater," + ",".join(modalities)]
    for rater in ("x", "y"):
        for case in cases:
            ranks = dict(zip(case.available, range(1, len(case.available) + 1)))
            lines.append(",".join([case.case_id, rater] + [str(ranks.get(m, "")) for m in modalities]))
    path = tmp_path / "ranks.csv"
    path.write_text("\n".join(lines) + "\n")
    added: list[int] = []

    def work(i: int) -> None:
        with StudyStore(study_url) as own:
            added.append(own.import_csv("imports", path))

    _run_threads(work, count)
    assert sum(added) == 2 * len(cases) and sorted(added)[:-1] == [0] * (count - 1)
    with StudyStore(study_url) as store:
        assert len(store.history("imports")) == 2 * len(cases)
        assert [r.name for r in store.raters("imports")] == ["x", "y"]


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(study_url):
    from sqlalchemy import select

    from neurofusion.studies import LATEST_VERSION, MIGRATIONS
    from neurofusion.studies.engine import make_engine
    from neurofusion.studies.schema import schema_version

    versions: list[int] = []

    def work(i: int) -> None:
        with StudyStore(study_url) as own:
            versions.append(own.schema_version)

    _run_threads(work, 6)
    assert versions == [LATEST_VERSION] * 6
    engine = make_engine(study_url)
    with engine.connect() as conn:
        assert conn.execute(select(schema_version.c.version).order_by(schema_version.c.version)).scalars().all() \
            == [m.version for m in MIGRATIONS]
    engine.dispose()
