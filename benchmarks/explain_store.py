"""The explanation store (explain/store.py) on CPU at cohort scale: cases/s per process writing it with 1 and
with 2 processes (gloo barriers, one torch thread each) measured in one run, where each case's time goes
(reading, preparing, the model, rows, writing: the basis of the GPU projection), and how fast the dashboard's
cohort attention page opens from the store of a generated cohort (AppTest, server time): cold, in a new
session, on reruns, for one split and for every case.

    python -m neurofusion.data generate --task cardio --n 20000 --seed 2026 --interaction-share 0.4 \\
        --out build/cardio_20k
    python benchmarks/explain_store.py scaling --data build/cardio_20k --split test
    python benchmarks/explain_store.py full --data build/cardio_20k --store build/cardio_20k_store --processes 2
    python benchmarks/explain_store.py page --data build/cardio_20k --store build/cardio_20k_store
    python benchmarks/explain_store.py cold --data build/cardio_20k --store build/cardio_20k_store \\
        --tree before=/tmp/tree_before --tree this=. --repeats 3   # code trees compared in one run
        (a tree of a commit: mkdir /tmp/tree_before && git archive COMMIT | tar -x -C /tmp/tree_before)
    python benchmarks/explain_store.py survival --data sample_data/cancer   # a survival model's store
    python benchmarks/explain_store.py attributions --data sample_data/cardio --split test   # --attributions
    python benchmarks/explain_store.py icu --data sample_data/icu   # a time-stamped cohort's store, the ICU page's data
    python benchmarks/explain_store.py report      # benchmarks/results/explain_store.md from the .json

Each command adds its section to benchmarks/results/explain_store.json (``--results`` elsewhere; ``--label``
names the page section, e.g. ``page_before`` for the same script run from a checkout of the older code).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE_VARIABLE = "NF_BENCH_CODE"  # cold: the code tree (a copy of the repository) a measuring subprocess imports
CODE = Path(os.environ.get(TREE_VARIABLE) or ROOT)
sys.path.insert(0, str(CODE))

import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from explain.store import checkpoint_hash, cohort_hash, open_store, write_store  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "explain_store.json"
CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
SURVIVAL_CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "cancer_demo"
ICU_CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "icu_demo"
MAIN = str(CODE / "app" / "main.py")
COHORT_PAGE = "views/cohort_attention.py"
SHARD_SIZE = 250  # the test split of a 20,000-case cohort (2,000 cases): 8 shards, 4 per process with 2
RERUNS = 3


def _machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average "
            f"{os.getloadavg()[0]:.1f} at the start), Python {platform.python_version()}, torch {torch.__version__}")


def _rank(rank: int, world_size: int, port: int, cohort_root: str, split: str, out: str, reports: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    barrier = None
    if world_size > 1:
        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        barrier = dist.barrier
    ckpt = load_checkpoint(CHECKPOINT, device="cpu")
    cohort = CohortReader(cohort_root)
    ids = cohort.case_ids if split == "all" else cohort.ids(split)
    report = write_store(out, Predictor(ckpt.model, ckpt.tokenizer), cohort, ids,
                         checkpoint_sha=checkpoint_hash(CHECKPOINT), cohort_sha=cohort_hash(cohort),
                         settings={"split": split}, shard_size=SHARD_SIZE, rank=rank, world_size=world_size,
                         barrier=barrier)
    Path(reports, f"rank{rank}.json").write_text(json.dumps({"cases": report.cases, "seconds": report.seconds,
                                                             "stages": report.stage_seconds}))
    if barrier is not None:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_scaling(cohort_root: Path, split: str) -> dict:
    """The store of ``split`` written by 1, then by 2 processes (one run). Per process: cases explained /
    seconds explaining (model load and start-up excluded); overall: every case / the slowest process's
    explaining time. Stages: the 1-process run's seconds per case by stage."""
    rows = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for world_size in (1, 2):
            reports = tmp / f"reports{world_size}"
            reports.mkdir()
            start = time.perf_counter()
            mp.spawn(_rank, args=(world_size, _free_port(), str(cohort_root), split, str(tmp / f"store{world_size}"),
                                  str(reports)), nprocs=world_size)
            wall = time.perf_counter() - start
            ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in range(world_size)]
            cases = sum(r["cases"] for r in ranks)
            rows[world_size] = {"processes": world_size, "cases": cases,
                                "per_process_cases_per_s": [round(r["cases"] / r["seconds"], 1) for r in ranks],
                                "explaining_s": round(max(r["seconds"] for r in ranks), 1),
                                "overall_cases_per_s": round(cases / max(r["seconds"] for r in ranks), 1),
                                "wall_with_startup_s": round(wall, 1), "ranks": ranks}
        same = open_store(tmp / "store1").table.equals(open_store(tmp / "store2").table)
    one = rows[1]["ranks"][0]
    stages = {k: round(1000 * v / one["cases"], 2) for k, v in one["stages"].items()}
    return {"data": str(cohort_root), "split": split, "shard_size": SHARD_SIZE, "machine": _machine(),
            "runs": list(rows.values()),
            "speedup": round(rows[2]["overall_cases_per_s"] / rows[1]["overall_cases_per_s"], 2),
            "same_store": bool(same), "ms_per_case_by_stage": stages}


def _app(cohort_root: Path, store: Path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=3600)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.cohort"] = str(cohort_root)
    at.session_state["settings.explanation_store"] = str(store)
    return at


CPU_TIMES: dict[str, list[float]] = {}  # the process's CPU seconds of each timed run, by what was timed


def _timed_run(at, check_store: bool = True, what: str = "") -> float:
    """Wall seconds of one run of the page; its CPU seconds (this process, every thread: on a shared machine
    the wall time includes waiting for a core, the CPU time does not) go to CPU_TIMES[what]."""
    start, cpu = time.perf_counter(), time.process_time()
    at.run()
    seconds = time.perf_counter() - start
    CPU_TIMES.setdefault(what, []).append(round(time.process_time() - cpu, 2))
    if at.exception or at.error:
        raise RuntimeError(f"the page failed: {[e.value for e in (*at.exception, *at.error)]}")
    if check_store and not any(c.value.startswith("Read from the precomputed store") for c in at.caption):
        raise RuntimeError("the cohort page did not read the store")
    return round(seconds, 2)


def _clear_caches() -> None:
    """Every cache the dashboard fills: Streamlit's data and resource caches (the model, the cohort, the store,
    the predictions) and the process's own (the WFDB header names of the case keys)."""
    import streamlit as st

    import app.state as state

    st.cache_data.clear()
    st.cache_resource.clear()
    state._wfdb_data_files.cache_clear()


def page_open(cohort_root: Path, store: Path, repeats: int = RERUNS, quick: bool = False) -> dict:
    """Server time of the cohort attention page under AppTest, reading ``store``, each opening measured
    ``repeats`` times (the machine is shared: the median is reported): the case page opened first in a cold
    process (as a user arriving at the dashboard: it explains the one case shown), then the cohort page
    (the model, cohort and store already loaded by the case page), its reruns (a widget changed), cold
    (every cache emptied before the run: the model, the cohort and the store are loaded by it; the libraries
    are already imported), in a new session of a running server, and the same with every case selected
    instead of the default split. ``quick``: the first three only (for code whose cold open takes minutes)."""
    cohort = CohortReader(cohort_root)
    times: dict = {"cases": len(cohort), "page_cases": len(cohort.ids("test")), "repeats": repeats}
    at = _app(cohort_root, store)
    _clear_caches()
    times["case_page_cold_s"] = _timed_run(at, False, "case_page_cold_s")
    at.switch_page(COHORT_PAGE)
    times["after_case_page_s"] = [_timed_run(at, what="after_case_page_s")]
    times["reruns_s"] = [_timed_run(at, what="reruns_s") for _ in range(repeats)]
    if not quick:
        times["cold_s"] = []
        for _ in range(repeats):
            _clear_caches()
            times["cold_s"].append(_timed_run(at, what="cold_s"))
    times["new_session_s"] = []
    for _ in range(repeats):  # another user: the same server, a new session
        again = _app(cohort_root, store)
        again.run()
        again.switch_page(COHORT_PAGE)
        times["new_session_s"].append(_timed_run(again, what="new_session_s"))
    if not quick:
        again.selectbox(key="cohort.split").set_value("all")
        # the store cached, a new selection: its cohort result is built from the store's rows
        times["all_cases_first_s"] = [_timed_run(again, what="all_cases_first_s")]
        times["all_cases_reruns_s"] = [_timed_run(again, True, "all_cases_reruns_s") for _ in range(repeats)]
        times["all_cases_cold_s"] = []
        for _ in range(repeats):
            _clear_caches()
            times["all_cases_cold_s"].append(_timed_run(again, what="all_cases_cold_s"))

    start = time.perf_counter()
    read = open_store(store)
    read.importance(read.case_ids)
    times["reader_all_cases_s"] = round(time.perf_counter() - start, 2)
    times["store_rows"] = len(read.table)
    times["cpu_s"] = dict(CPU_TIMES)
    return times


def page_once(cohort_root: Path, store: Path, reruns: int = 2, colds: int = 2) -> dict:
    """One process's measurement for ``cold`` (run in a subprocess, the code from $NF_BENCH_CODE): the case
    page first (imports every page's modules, loads the model), then the cohort page, its reruns (warm), and
    cold openings (every cache emptied first: the model, the cohort, the store and the cohort hash are loaded
    by the run itself). Wall and CPU seconds of each."""
    CPU_TIMES.clear()
    at = _app(cohort_root, store)
    _clear_caches()
    _timed_run(at, False, "case_page")
    at.switch_page(COHORT_PAGE)
    _timed_run(at, what="first")
    warm = [_timed_run(at, what="warm") for _ in range(reruns)]
    cold = []
    for _ in range(colds):
        _clear_caches()
        cold.append(_timed_run(at, what="cold"))
    import explain.store

    return {"warm_s": warm, "cold_s": cold, "warm_cpu_s": CPU_TIMES["warm"], "cold_cpu_s": CPU_TIMES["cold"],
            "load": round(os.getloadavg()[0], 1), "code": str(Path(explain.store.__file__).resolve().parents[1])}


def compare_cold(cohort_root: Path, store: Path, trees: dict[str, Path], repeats: int) -> dict:
    """The cohort page's warm and cold openings from each code tree (a copy of the repository at some commit,
    with or without a change), measured in one run: one fresh process per tree and repeat, the trees taken in
    turn within each repeat so they share the machine's load. Per tree: the median of the openings over every
    repeat, and each tree's medians as ratios to the first tree's."""
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for repeat in range(repeats):
        for name, tree in trees.items():
            env = {**os.environ, TREE_VARIABLE: str(tree.resolve()), "OMP_NUM_THREADS": "1"}
            done = subprocess.run([sys.executable, __file__, "_once", "--data", str(cohort_root.resolve()),
                                   "--store", str(store.resolve())], env=env, cwd=tree, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"the {name} tree's run failed:\n{done.stderr[-3000:]}")
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            if Path(measured["code"]) != tree.resolve():
                raise RuntimeError(f"the {name} run imported its code from {measured['code']}, not {tree}")
            runs[name].append(measured)
            print(f"repeat {repeat + 1}/{repeats}, {name}: {runs[name][-1]}", file=sys.stderr)
    summary = {}
    for name, measured in runs.items():
        summary[name] = {key: round(statistics.median(v for run in measured for v in run[key]), 2)
                         for key in ("warm_s", "cold_s", "warm_cpu_s", "cold_cpu_s")}
    first = next(iter(trees))
    for name in trees:
        summary[name]["ratio_to_" + first] = {key: round(summary[name][key] / summary[first][key], 2)
                                              for key in ("warm_s", "cold_s", "warm_cpu_s", "cold_cpu_s")}
    return {"cases": len(CohortReader(cohort_root)), "trees": {k: str(v) for k, v in trees.items()},
            "repeats": repeats, "summary": summary, "runs": runs, "machine": _machine()}


def survival_store(cohort_root: Path) -> dict:
    """The cancer demo's store of every case of ``cohort_root`` (survival at its horizon), one process, one
    torch thread: cases/s writing it, its largest difference from cohort_importance computed without it, and
    the seconds to open it and rebuild the cohort result of every case."""
    from explain.cohort import cohort_importance

    torch.set_num_threads(1)
    ckpt = load_checkpoint(SURVIVAL_CHECKPOINT, device="cpu")
    predictor, cohort = Predictor(ckpt.model, ckpt.tokenizer), CohortReader(cohort_root)
    ids = cohort.case_ids
    with tempfile.TemporaryDirectory() as name:
        report = write_store(Path(name) / "store", predictor, cohort, ids,
                             checkpoint_sha=checkpoint_hash(SURVIVAL_CHECKPOINT), cohort_sha=cohort_hash(cohort),
                             settings={"split": "all"}, shard_size=64)
        start = time.perf_counter()
        store = open_store(Path(name) / "store")
        stored = store.importance(ids)
        reading = time.perf_counter() - start
    start = time.perf_counter()
    direct = cohort_importance(predictor, [cohort[i] for i in ids])
    computing = time.perf_counter() - start
    columns = [c for c in direct.table.columns if c not in ("case_id", "label", "predicted")]
    difference = float(max((stored.table[columns] - direct.table[columns]).abs().max().max(),
                           abs(stored.interactions - direct.interactions).max()))
    return {"data": str(cohort_root), "checkpoint": str(SURVIVAL_CHECKPOINT.relative_to(ROOT)), "cases": len(ids),
            "explained": store.explained, "write_s": round(report.seconds, 2),
            "cases_per_s": round(report.cases_per_second, 1), "open_and_importance_s": round(reading, 3),
            "cohort_importance_s": round(computing, 2), "max_abs_difference": difference, "machine": _machine()}


def icu_store(cohort_root: Path, repeats: int = 3) -> dict:
    """The ICU demo's store of every sample of the time-stamped cohort ``cohort_root`` (one process, one torch
    thread): samples/s writing it and where the time goes; then the ICU cohort page's data for every sample (figure
    2C and the risk metrics' inputs: label, risk, stay, hour), read from the store (open it, check its cohort hash,
    rebuild the per-sample arrays, aggregate) against computed as the page does without it (cohort_over_time, and
    Predictor.predict of every sample for the risk), alternated ``repeats`` times in one run. The stay bootstrap of
    the AUROC / AUPRC intervals is the same either way and not timed."""
    from explain.timeline import RISK_CLASS, cohort_over_time, figure_2c_rows
    from neurofusion.data.timed import open_cohort

    torch.set_num_threads(1)
    ckpt = load_checkpoint(ICU_CHECKPOINT, device="cpu")
    predictor, cohort = Predictor(ckpt.model, ckpt.tokenizer), open_cohort(cohort_root)
    ids = cohort.case_ids
    checkpoint_sha = checkpoint_hash(ICU_CHECKPOINT)
    with tempfile.TemporaryDirectory() as name:
        out = Path(name) / "store"
        report = write_store(out, predictor, cohort, ids, checkpoint_sha=checkpoint_sha, cohort_sha=cohort_hash(cohort),
                             settings={"split": "all"})
        size = sum(f.stat().st_size for f in out.iterdir())
        stored_s, computed_s = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            store = open_store(out)
            assert store.mismatch(checkpoint_sha, cohort_hash(cohort)) is None
            samples = store.sample_importance(ids)
            from_store = figure_2c_rows(samples, cohort)
            inputs = ((samples.label == RISK_CLASS).astype(int), samples.risk, samples.stay_ids, samples.hours)
            stored_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            computed = cohort_over_time(predictor, cohort, "all")
            labels, probabilities = predictor.predict([cohort[i] for i in ids])
            computed_s.append(time.perf_counter() - start)
    difference = float(max((from_store[["attention", "share"]] - computed[["attention", "share"]]).abs().max().max(),
                           abs(inputs[1] - probabilities[:, RISK_CLASS]).max()))
    stored, direct = statistics.median(stored_s), statistics.median(computed_s)
    return {"data": str(cohort_root), "checkpoint": str(ICU_CHECKPOINT.relative_to(ROOT)), "samples": len(ids),
            "stays": int(cohort.stays.shape[0]), "write_s": round(report.seconds, 2),
            "samples_per_s": round(report.cases_per_second, 1),
            "ms_per_sample_by_stage": {k: round(1000 * v / len(ids), 3) for k, v in report.stage_seconds.items()},
            "store_bytes": size, "page_data_from_store_s": [round(v, 3) for v in stored_s],
            "page_data_computed_s": [round(v, 2) for v in computed_s],
            "speedup_median": round(direct / stored, 1), "max_abs_difference": difference, "machine": _machine()}


def attributions_store(cohort_root: Path, split: str, compared: int = 10) -> dict:
    """``--attributions`` with the dashboard's explanation settings (app.state.DASHBOARD_SETTINGS; images by
    Grad-CAM, as the store takes them), one process, one torch thread, in one run: the store of ``split``
    written without attributions, then the attributions added to it (cases/s of each and their ratio), the
    store's bytes per case without and with them, and reading them back (every case; one case). Then, on the
    first ``compared`` cases alternating per case, seconds per case with the image integrated as the dashboard
    does (Integrated Gradients) against Grad-CAM: what storing no image map saves."""
    import dataclasses

    from app.state import DASHBOARD_SETTINGS
    from explain.attribution_table import attribution_table
    from explain.case import explain_case

    torch.set_num_threads(1)
    ckpt = load_checkpoint(CHECKPOINT, device="cpu")
    predictor, cohort = Predictor(ckpt.model, ckpt.tokenizer), CohortReader(cohort_root)
    ids = cohort.case_ids if split == "all" else cohort.ids(split)
    settings = dataclasses.replace(DASHBOARD_SETTINGS, image_method="grad_cam")
    load, machine = [os.getloadavg()[0]], _machine()
    with tempfile.TemporaryDirectory() as name:
        out = Path(name) / "store"
        common = {"checkpoint_sha": checkpoint_hash(CHECKPOINT), "cohort_sha": cohort_hash(cohort),
                  "settings": {"split": split}, "shard_size": SHARD_SIZE}
        core = write_store(out, predictor, cohort, ids, **common)
        core_bytes = sum(p.stat().st_size for p in [out / "manifest.json", *out.glob("part-*.parquet")])
        load.append(os.getloadavg()[0])
        added = write_store(out, predictor, cohort, ids, attributions=settings, **common)
        load.append(os.getloadavg()[0])
        attr_bytes = sum(p.stat().st_size for p in out.glob("attr-*.parquet"))
        start = time.perf_counter()
        store = open_store(out)
        rows = store.attributions()
        read_all = time.perf_counter() - start
        start = time.perf_counter()
        one = open_store(out).attributions([ids[len(ids) // 2]])
        read_one = time.perf_counter() - start
        errors = store.manifest["attribution_errors"]
    per_case: dict[str, list[float]] = {"integrated_gradients": [], "grad_cam": []}
    for case_id in ids[:compared]:
        case = cohort[case_id]
        for method in per_case:
            start = time.perf_counter()
            attribution_table(explain_case(predictor, case, dataclasses.replace(settings, image_method=method)))
            per_case[method].append(time.perf_counter() - start)
    load.append(os.getloadavg()[0])
    attr_seconds = added.stage_seconds["attributions"]
    core_rate, attr_rate = len(ids) / core.seconds, len(ids) / attr_seconds
    image_ig, image_cam = (statistics.median(v) for v in per_case.values())
    return {"data": str(cohort_root), "split": split, "cases": len(ids), "shard_size": SHARD_SIZE,
            "settings": {k: v for k, v in dataclasses.asdict(settings).items()
                         if k in ("image_method", "tolerance", "steps_method", "max_steps", "note_layer")},
            "core_write_s": round(core.seconds, 1), "core_cases_per_s": round(core_rate, 2),
            "attributions_s": round(attr_seconds, 1), "attributions_cases_per_s": round(attr_rate, 3),
            "attributions_add_s": round(added.seconds, 1), "core_shards_rewritten": len(added.written),
            "attributions_to_core_time_ratio": round(core_rate / attr_rate, 1),
            "bytes_per_case_without": round(core_bytes / len(ids)), "bytes_per_case_attributions":
            round(attr_bytes / len(ids)), "rows": len(rows), "rows_per_case": round(len(rows) / len(ids), 1),
            "rows_one_case": len(one), "attribution_errors": len(errors), "read_all_s": round(read_all, 3),
            "open_and_read_one_case_s": round(read_one, 3), "compared_cases": compared,
            "per_case_s_image_integrated_gradients": round(image_ig, 3), "per_case_s_image_grad_cam":
            round(image_cam, 3), "image_grad_cam_speedup": round(image_ig / image_cam, 2),
            "load_average": [round(v, 1) for v in load], "machine": machine}


def full_store(cohort_root: Path, store: Path, processes: int) -> dict:
    """``torchrun --nproc_per_node N -m explain cohort ... --out STORE --split all``: the command a user runs,
    each rank's JSON report read from its own log (torchrun --redirects), the wall time with start-up."""
    command = ["torchrun", "--standalone", "--nproc_per_node", str(processes), "-m", "explain", "cohort",
               "--checkpoint", str(CHECKPOINT.relative_to(ROOT)), "--data", str(cohort_root), "--out", str(store),
               "--split", "all", "--device", "cpu", "--json"]
    with tempfile.TemporaryDirectory() as logs:  # each rank's stdout (its JSON report) in a file of its own
        run = [str(Path(sys.executable).with_name("torchrun")), *command[1:4], "--log-dir", logs, "--redirects", "1",
               *command[4:]]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        subprocess.run(run, check=True, cwd=ROOT, env=env)
        wall = time.perf_counter() - start
        reports = [json.loads(path.read_text()) for path in sorted(Path(logs).rglob("stdout.log"))]
    if len(reports) != processes:
        raise RuntimeError(f"expected {processes} rank reports, found {len(reports)}")
    cases = sum(r["cases_explained"] for r in reports)
    explaining = max(r["seconds"] for r in reports)
    return {"command": " ".join(command), "processes": processes, "cases": reports[0]["cases"],
            "cases_explained": cases, "per_process_cases_per_s": [r["cases_per_second"] for r in reports],
            "explaining_s": round(explaining, 1),
            "overall_cases_per_s": round(cases / explaining, 1) if cases else None,
            "wall_with_startup_s": round(wall, 1), "skipped_shards": sum(len(r["skipped"]) for r in reports),
            "machine": _machine()}


def _merge(path: Path, section: str, content: dict) -> dict:
    result = json.loads(path.read_text()) if path.is_file() else {}
    result[section] = content
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("scaling", "full", "page", "cold", "survival", "attributions", "icu",
                                         "report", "_once"))
    parser.add_argument("--data", type=Path, help="a generated cohort")
    parser.add_argument("--split", default="test", help="scaling, attributions: the cases written (a split or all)")
    parser.add_argument("--store", type=Path, help="page: the cohort's store (written for --split all)")
    parser.add_argument("--label", default=None, help="the section of the results (default: the command)")
    parser.add_argument("--note", default="", help="a line saying what this run measured (the code's commit)")
    parser.add_argument("--processes", type=int, default=2, help="full: torchrun processes")
    parser.add_argument("--repeats", type=int, default=RERUNS, help="page: times each opening is measured")
    parser.add_argument("--quick", action="store_true", help="page: the case page, the cohort page after it and "
                        "its reruns only (for older code whose cold open takes minutes)")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=FOLDER",
                        help="cold: a code tree to measure (a copy of the repository), repeated; the first is the "
                             "baseline of the ratios")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.what != "report" and args.data is None:
        parser.error(f"{args.what} needs --data")
    if args.what in ("cold", "_once", "page") and args.store is None:
        parser.error(f"{args.what} needs --store")
    if args.what == "_once":
        print(json.dumps(page_once(args.data, args.store)))
        return
    if args.what == "cold":
        trees = dict(tree.split("=", 1) for tree in args.tree if "=" in tree)
        if len(trees) != len(args.tree) or not trees:
            parser.error("cold needs --tree NAME=FOLDER (one or more, each a copy of the repository)")
        missing = [f for f in trees.values() if not (Path(f) / "app" / "main.py").is_file()]
        if missing:
            parser.error(f"not a copy of the repository (no app/main.py): {', '.join(missing)}")
        _merge(args.results, args.label or "cold", {**compare_cold(args.data, args.store,
                                                                   {k: Path(v) for k, v in trees.items()},
                                                                   args.repeats), "note": args.note})
    if args.what == "survival":
        _merge(args.results, args.label or "survival", {**survival_store(args.data), "note": args.note})
    if args.what == "attributions":
        _merge(args.results, args.label or "attributions", {**attributions_store(args.data, args.split),
                                                            "command": "python benchmarks/explain_store.py "
                                                            f"attributions --data {args.data} --split {args.split}",
                                                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                            "note": args.note})
    if args.what == "icu":
        command = f"python benchmarks/explain_store.py icu --data {args.data}"
        _merge(args.results, args.label or "icu", {**icu_store(args.data, args.repeats), "command": command,
                                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                   "note": args.note})
    if args.what == "scaling":
        _merge(args.results, args.label or "scaling", {**write_scaling(args.data, args.split), "note": args.note})
    elif args.what == "full":
        if args.store is None:
            parser.error("full needs --store")
        _merge(args.results, args.label or "full_store", {**full_store(args.data, args.store, args.processes),
                                                          "note": args.note})
    elif args.what == "page":
        page = page_open(args.data, args.store, args.repeats, args.quick)
        _merge(args.results, args.label or "page", {**page, "data": str(args.data), "machine": _machine(),
                                                    "note": args.note})
    result = json.loads(args.results.read_text())
    args.results.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


def _icu_lines(icu: dict) -> list[str]:
    stages = icu["ms_per_sample_by_stage"]
    return [f"## A time-stamped (ICU) cohort's store ({icu['samples']:,} samples of {icu['stays']:,} stays, "
            f"{icu['data']}, {icu['checkpoint']})", "",
            f"`{icu['command']}` ({icu['date']}). Machine: {icu['machine']}. {icu.get('note', '')}", "",
            f"Written by one process, one torch thread, in {icu['write_s']} s: {icu['samples_per_s']} samples/s "
            f"(a sample is a stay as of a prediction hour; per sample, ms: "
            + ", ".join(f"{k} {v}" for k, v in stages.items()) + f"); {icu['store_bytes']:,} bytes on disk.", "",
            "The ICU cohort page's data for every sample (figure 2C and the risk metrics' inputs; the stay bootstrap "
            "of the intervals is the same either way and not timed), alternated in one run, seconds: from the "
            "store (open, check the cohort hash, rebuild, aggregate) "
            f"{', '.join(map(str, icu['page_data_from_store_s']))}; "
            f"computed as without a store (cohort_over_time and predicting every sample) "
            f"{', '.join(map(str, icu['page_data_computed_s']))}: **{icu['speedup_median']}x** faster from the "
            f"store (medians). Largest difference between the two (figure 2C's means, the risk): "
            f"{icu['max_abs_difference']:.1e}. GPU: not measured.", ""]


def _attribution_lines(attr: dict) -> list[str]:
    settings = ", ".join(f"{k} {v}" for k, v in attr["settings"].items())
    return [f"## The store with per-case attributions (`--attributions`, {attr['cases']:,} {attr['split']} cases of "
            f"{attr['data']})", "",
            f"`{attr['command']}`, {attr['date']}. Machine: {attr['machine']}; load average "
            f"{', '.join(f'{v:.1f}' for v in attr['load_average'])} (start, after the core store, after the "
            f"attributions, at the end). One process, one torch thread. Settings: the dashboard's ({settings}). "
            f"{attr.get('note', '')}", "",
            "| | seconds | cases/s | bytes per case |", "| --- | --- | --- | --- |",
            f"| the store without attributions (prediction, attention, Shapley, interactions) | "
            f"{attr['core_write_s']} | {attr['core_cases_per_s']} | {attr['bytes_per_case_without']:,} |",
            f"| the attributions, added to it ({attr['core_shards_rewritten']} core shards rewritten) | "
            f"{attr['attributions_s']} | {attr['attributions_cases_per_s']} | "
            f"{attr['bytes_per_case_attributions']:,} |", "",
            f"The attributions take {attr['attributions_to_core_time_ratio']}x the time of the rest of the store "
            f"per case (every modality's Integrated Gradients to a 5 % completeness error, against one batched "
            f"pass of 16 fusion subsets). {attr['rows_per_case']} rows per case ({attr['rows']:,} in all, "
            f"{attr['attribution_errors']} cases without). Reading them back: every case "
            f"{attr['read_all_s']} s; opening the store and one case's rows {attr['open_and_read_one_case_s']} s.",
            "", f"Images by Grad-CAM (no image map is stored): on the first {attr['compared_cases']} cases, "
            f"alternating per case, {attr['per_case_s_image_grad_cam']} s per case against "
            f"{attr['per_case_s_image_integrated_gradients']} s with the image integrated as the dashboard's case "
            f"page does (medians; {attr['image_grad_cam_speedup']}x). GPU figures are not measured.", ""]


def _scaling_lines(scaling: dict) -> list[str]:
    lines = ["| processes | cases/s per process | cases/s overall | explaining (s) | wall with start-up (s) |",
             "| --- | --- | --- | --- | --- |"]
    for run in scaling["runs"]:
        lines.append(f"| {run['processes']} | {', '.join(str(v) for v in run['per_process_cases_per_s'])} | "
                     f"{run['overall_cases_per_s']} | {run['explaining_s']} | {run['wall_with_startup_s']} |")
    caveat = (" More than 2x from 2 processes means the other jobs' load changed between the two runs: not a clean "
              "scaling figure." if scaling["speedup"] > 2 else "")
    return lines + ["", f"Scaling 1 -> 2 processes: {scaling['speedup']}x overall throughput.{caveat} The 2-process "
                        f"store equals the 1-process one: {scaling['same_store']}.", ""]


def _median(values: list[float]) -> str:
    """'median (min-max)' of repeated timings, or the one value."""
    if len(values) == 1:
        return f"{values[0]}"
    return f"{statistics.median(values):.2f} ({min(values)}-{max(values)})"


PAGE_ROWS = (
    ("case_page_cold_s", "the case page, opened first in a cold process (it explains the one case shown)"),
    ("after_case_page_s", "then the cohort page (model, cohort and store loaded by the case page)"),
    ("reruns_s", "its reruns (a widget changed; everything cached)"),
    ("cold_s", "cold: the cohort page with every cache empty (model, cohort, store loaded by it)"),
    ("new_session_s", "a new session of the running server (model, cohort and store cached)"),
    ("all_cases_first_s", "every case selected instead of the test split: first time (store cached)"),
    ("all_cases_reruns_s", "every case: reruns"),
    ("all_cases_cold_s", "every case: cold (every cache empty)"),
)


def _page_cells(page: dict) -> list[tuple[str, str]]:
    """(label, 'wall median (min-max) / CPU median') per opening ('not measured' where the run skipped it)."""
    cells = []
    for key, label in PAGE_ROWS:
        if key not in page:
            cells.append((label, "not measured"))
            continue
        wall = page[key] if isinstance(page[key], list) else [page[key]]
        cpu = page.get("cpu_s", {}).get(key)
        cells.append((label, _median(wall) + (f" / {statistics.median(cpu):.2f}" if cpu else "")))
    return cells


def _cold_lines(cold: dict) -> list[str]:
    """The markdown of one 'cold' comparison of code trees."""
    lines: list[str] = []
    names = list(cold["summary"])
    lines += [f"## Cold and warm openings of the cohort page, code trees compared in one run ({cold['cases']:,} "
              "cases)", "", f"Machine: {cold['machine']}. {cold.get('note', '')}", "",
              f"Each tree in a fresh process per repeat ({cold['repeats']} repeats, the trees in turn within each "
              "repeat): the case page first, then the cohort page's reruns (warm) and its openings with every "
              "cache emptied (cold: model, cohort, store and cohort hash loaded by the run; libraries imported). "
              f"Median seconds over the repeats; ratios to {names[0]} (below 1: faster). Load average during "
              f"the runs: {', '.join(str(r['load']) for runs in cold['runs'].values() for r in runs)}.", "",
              "| code | cold wall s | cold CPU s | warm wall s | warm CPU s | cold ratio (wall / CPU) | "
              "warm ratio (wall / CPU) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        row, ratio = cold["summary"][name], cold["summary"][name][f"ratio_to_{names[0]}"]
        lines.append(f"| {name} (`{cold['trees'][name]}`) | {row['cold_s']} | {row['cold_cpu_s']} | "
                     f"{row['warm_s']} | {row['warm_cpu_s']} | {ratio['cold_s']} / {ratio['cold_cpu_s']} | "
                     f"{ratio['warm_s']} / {ratio['warm_cpu_s']} |")
    lines.append("")
    return lines


def _markdown(result: dict) -> str:
    lines = ["# Explanation store at cohort scale: writing it across processes, opening the cohort page from it", "",
             "Simulated data (generated cardio cohorts). CPU only, one torch thread per process; the cardio_demo "
             "checkpoint. Each case: prediction, cross-modal attention, exact Shapley values (all 2^4 subsets), "
             "leave-one-out and pairwise interactions. Produced by `benchmarks/explain_store.py` (its docstring "
             "has the commands).", ""]
    if "scaling" in result:
        scaling = result["scaling"]
        cases = scaling["runs"][0]["cases"]
        lines += [f"## Writing the store: 1 vs 2 processes ({cases:,} cases: the {scaling['split']} split of "
                  f"{scaling['data']}, one run)", "", f"Machine: {scaling['machine']}.", ""]
        lines += _scaling_lines(scaling)
        stages = scaling["ms_per_case_by_stage"]
        total = sum(stages.values())
        lines += ["Where one process's time goes (ms per case, the 1-process run):", "",
                  "| read the files | prepare the batch | model (encode, 16 fusion passes) | rows | write Parquet | "
                  "total |", "| --- | --- | --- | --- | --- | --- |",
                  f"| {stages['read']} | {stages['prepare']} | {stages['model']} | {stages['rows']} | "
                  f"{stages['write']} | {total:.2f} |", ""]
        cpu_side = total - stages["model"]
        share = cpu_side / total
        lines += [f"**GPU: a projection, not a measurement** (no GPU here). A GPU speeds up the model stage only; "
                  f"reading the files, preparing the batch, rows and writing ({cpu_side:.1f} of {total:.1f} ms per "
                  f"case, {100 * share:.0f} %) stay on the process's CPU core (the store reads its cases in the "
                  f"process, not in DataLoader workers). Even with the model taking no time, one process would be at "
                  f"most {1 / share:.1f}x faster than on CPU (the seconds above include waiting for a core on a busy "
                  "machine; the shares are what the projection uses). More cases/s come from more processes "
                  "(torchrun, one per CPU core, sharing the GPU).", ""]
    if "full_store" in result:
        full = result["full_store"]
        lines += [f"## The store of every case ({full['cases']:,}), as a user writes it", "",
                  f"`{full['command']}`. Machine: {full['machine']}.",
                  "", f"{full['cases_explained']:,} cases explained in {full['explaining_s']} s "
                  f"({full['overall_cases_per_s']} cases/s overall; per process: "
                  f"{', '.join(str(v) for v in full['per_process_cases_per_s'])}); "
                  f"{full['wall_with_startup_s']} s wall time with start-up (loading the model, hashing the "
                  f"cohort). {full.get('note', '')}", ""]
    if "page" in result:
        page = result["page"]
        lines += [f"## The cohort attention page from the store of a {page['cases']:,}-case cohort", "",
                  f"Machine: {page['machine']}. {page.get('note', '')}", "",
                  f"Server time of the page run under AppTest, in seconds: wall time, the median of {page['repeats']} "
                  "(min-max), / the process's CPU time (median; on this shared machine the wall time includes "
                  "waiting for a core). "
                  f"The page shows the test split ({page['page_cases']:,} cases) by default.", ""]
        before = result.get("page_before")
        if before:
            lines += [f"| opening | this code | before ({before.get('note') or 'older code'}) |", "| --- | --- | --- |"]
            lines += [f"| {label} | {mine} | {theirs} |"
                      for (label, mine), (_, theirs) in zip(_page_cells(page), _page_cells(before))]
            lines += ["", f"Before: the same script run from a checkout of that commit, the same cohort and store; "
                          f"{before['machine']}; each opening measured {before['repeats']} time(s)."]
        else:
            lines += ["| opening | wall s / CPU s |", "| --- | --- |"]
            lines += [f"| {label} | {cell} |" for label, cell in _page_cells(page)]
        lines += ["", f"Reader alone (open every shard, check it, rebuild the cohort result of all "
                      f"{page['store_rows']:,} rows): {page['reader_all_cases_s']} s.", ""]
    for section in [k for k in result if k == "cold" or k.startswith("cold_") and "summary" in result[k]]:
        lines += _cold_lines(result[section])
    if "survival" in result:
        surv = result["survival"]
        lines += [f"## A survival model's store ({surv['cases']:,} cases of {surv['data']}, {surv['checkpoint']})", "",
                  f"Machine: {surv['machine']}. {surv.get('note', '')}", "",
                  f"Explained quantity: {surv['explained']}. Written by one process in {surv['write_s']} s "
                  f"({surv['cases_per_s']} cases/s); opening it and rebuilding the cohort result of every case: "
                  f"{surv['open_and_importance_s']} s, against {surv['cohort_importance_s']} s for cohort_importance "
                  f"without the store. Largest difference between the two (every score column and interaction): "
                  f"{surv['max_abs_difference']:.1e}.", ""]
    if "attributions" in result:
        lines += _attribution_lines(result["attributions"])
    for section in [k for k in result if k == "icu" or k.startswith("icu_")]:
        lines += _icu_lines(result[section])
    if "notes" in result:
        lines += ["## Notes", ""]
        for note in result["notes"]:
            lines += [note] if note.startswith("- ") or not note else [note, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
