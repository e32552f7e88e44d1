"""The explanation store (explain/store.py) on CPU: cases/s per process writing it with 1 and with 2
processes (gloo barriers, one torch thread each) on the bundled 200-case cohort, measured in one run; and
how fast the cohort attention page opens from the store of a larger generated cohort (AppTest, server time),
with the reader alone on a store of 10x the rows (the larger store's rows repeated under new ids).

    python benchmarks/explain_store.py [--cases 2000]   # writes benchmarks/results/explain_store.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from explain.store import (MANIFEST, ExplanationStore, checkpoint_hash, cohort_hash, open_store,  # noqa: E402
                           shard_name, write_store)
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
SAMPLE = ROOT / "sample_data" / "cardio"
MAIN = str(ROOT / "app" / "main.py")
SHARD_SIZE = 25  # 8 shards of the 200-case cohort: 4 per process with 2


def _rank(rank: int, world_size: int, port: int, cohort_root: str, out: str, reports: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    barrier = None
    if world_size > 1:
        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        barrier = dist.barrier
    ckpt = load_checkpoint(CHECKPOINT, device="cpu")
    cohort = CohortReader(cohort_root)
    report = write_store(out, Predictor(ckpt.model, ckpt.tokenizer), cohort, cohort.case_ids,
                         checkpoint_sha=checkpoint_hash(CHECKPOINT), cohort_sha=cohort_hash(cohort),
                         settings={"split": "all"}, shard_size=SHARD_SIZE, rank=rank, world_size=world_size,
                         barrier=barrier)
    Path(reports, f"rank{rank}.json").write_text(json.dumps({"cases": report.cases, "seconds": report.seconds}))
    if barrier is not None:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_scaling(tmp: Path, cohort_root: Path = SAMPLE) -> dict:
    """Per process: cases explained / seconds explaining (model load and start-up excluded); overall: every
    case / wall time of the slowest process's explaining."""
    rows = {}
    for world_size in (1, 2):
        reports = tmp / f"reports{world_size}"
        reports.mkdir()
        start = time.perf_counter()
        mp.spawn(_rank, args=(world_size, _free_port(), str(cohort_root), str(tmp / f"store{world_size}"),
                              str(reports)), nprocs=world_size)
        wall = time.perf_counter() - start
        ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in range(world_size)]
        cases = sum(r["cases"] for r in ranks)
        rows[world_size] = {"processes": world_size, "cases": cases,
                            "per_process_cases_per_s": [round(r["cases"] / r["seconds"], 1) for r in ranks],
                            "explaining_s": round(max(r["seconds"] for r in ranks), 2),
                            "overall_cases_per_s": round(cases / max(r["seconds"] for r in ranks), 1),
                            "wall_with_startup_s": round(wall, 1)}
    same = open_store(tmp / "store1").table.drop(columns=["cross_attention", "interactions"]).equals(
        open_store(tmp / "store2").table.drop(columns=["cross_attention", "interactions"]))
    return {"runs": list(rows.values()), "speedup": round(rows[2]["overall_cases_per_s"]
                                                          / rows[1]["overall_cases_per_s"], 2),
            "same_store": bool(same)}


def page_open(tmp: Path, n_cases: int) -> dict:
    """Generate ``n_cases``, write their store (1 process), then time the cohort attention page under
    AppTest: cold (predictions and store read), store caches cleared (predictions cached), all cached."""
    from streamlit.testing.v1 import AppTest

    import app.state as state
    from neurofusion.data.synthetic.generate import generate_cohort

    root = tmp / f"cardio{n_cases}"
    start = time.perf_counter()
    generate_cohort("cardio", n_cases, 2026, root, progress=False)
    generate_s = time.perf_counter() - start
    cohort = CohortReader(root)
    ckpt = load_checkpoint(CHECKPOINT, device="cpu")
    store = tmp / f"store{n_cases}"
    start = time.perf_counter()
    report = write_store(store, Predictor(ckpt.model, ckpt.tokenizer), cohort, cohort.case_ids,
                         checkpoint_sha=checkpoint_hash(CHECKPOINT), cohort_sha=cohort_hash(cohort),
                         settings={"split": "all"}, shard_size=256)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    read = open_store(store)
    read.importance(cohort.case_ids)
    reader_s = time.perf_counter() - start

    at = AppTest.from_file(MAIN, default_timeout=1200)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.cohort"] = str(root)
    at.session_state["settings.explanation_store"] = str(store)
    start = time.perf_counter()
    at.run()  # the case page: it computes the cohort predictions (the model over every case)
    times = {"case_page_s": round(time.perf_counter() - start, 2)}
    store_caches = (state._read_store, state._stored_importance, state._cohort_sha, state._checkpoint_sha)
    for name, clear in (("first_s", ()), ("store_caches_cleared_s", store_caches),
                        ("predictions_and_store_caches_cleared_s", (*store_caches, state.cohort_predictions)),
                        ("all_cached_s", ())):
        for cache in clear:
            cache.clear()
        start = time.perf_counter()
        at.switch_page("views/cohort_attention.py").run()
        times[name] = round(time.perf_counter() - start, 2)
        if at.exception or at.error:
            raise RuntimeError(f"the cohort page failed: {[e.value for e in (*at.exception, *at.error)]}")
        if not any(c.value.startswith("Read from the precomputed store") for c in at.caption):
            raise RuntimeError("the cohort page did not read the store")
        at.switch_page("views/model_card.py").run()  # leave the page, so the next switch opens it afresh
    # the same pages without the store, in the same run: the model predicts every case and explains the shown ones
    for cache in (*store_caches, state.cohort_predictions, state.cohort_explanation):
        cache.clear()
    plain = AppTest.from_file(MAIN, default_timeout=1200)
    plain.session_state["settings.n_steps"] = 8
    plain.session_state["settings.cohort"] = str(root)
    start = time.perf_counter()
    plain.run()
    times["case_page_without_store_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    plain.switch_page("views/cohort_attention.py").run()
    times["cohort_page_without_store_s"] = round(time.perf_counter() - start, 2)
    shown = len(cohort.ids("test"))
    return {"cases": n_cases, "page_cases": shown, "generate_s": round(generate_s, 1),
            "write_store_s": round(write_s, 1),
            "write_cases_per_s": round(report.cases / report.seconds, 1), "reader_all_cases_s": round(reader_s, 2),
            **times, "store": store}


def reader_at_scale(tmp: Path, store: Path, factor: int) -> dict:
    """The reader alone on a store of ``factor`` x the rows: the rows repeated under new case ids (no model,
    no cohort: a measure of reading and averaging, not of explaining)."""
    big = tmp / f"store_x{factor}"
    big.mkdir()
    manifest = json.loads((store / MANIFEST).read_text())
    table = pa.concat_tables([pq.read_table(store / s["file"]) for s in manifest["shards"]])
    shards = []
    for k in range(factor):
        part = table.set_column(0, "case_id", pa.array([f"{i}-r{k}" for i in table["case_id"].to_pylist()]))
        meta = {b"neurofusion.store": json.dumps({"key": None}).encode()}
        pq.write_table(part.replace_schema_metadata(meta), big / shard_name(k))
        shards.append({"file": shard_name(k), "case_ids": part["case_id"].to_pylist()})
    manifest.update(shards=shards, cases=len(table) * factor)
    (big / MANIFEST).write_text(json.dumps(manifest))
    # the repeated shards carry no store key: read them as open_store does once the key check has passed
    start = time.perf_counter()
    frame = pa.concat_tables([pq.read_table(big / s["file"]) for s in shards]).to_pandas()
    loaded = ExplanationStore(big, manifest, frame)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    loaded.importance(loaded.case_ids)
    importance_s = time.perf_counter() - start
    return {"rows": len(frame), "read_s": round(read_s, 2), "importance_all_s": round(importance_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000, help="cases of the generated cohort for the page")
    parser.add_argument("--skip-page", action="store_true", help="only the 1 vs 2 process measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs; load average "
                             f"{os.getloadavg()[0]:.1f} at the start)",
                  "torch_threads_per_process": 1, "scaling": write_scaling(tmp)}
        if not args.skip_page:
            page = page_open(tmp, args.cases)
            result["reader_x10"] = reader_at_scale(tmp, page.pop("store"), 10)
            result["page"] = page
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "explain_store.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "explain_store.md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(result: dict) -> str:
    scaling = result["scaling"]
    lines = ["# Explanation store: writing it across processes, opening the cohort page from it", "",
             f"Machine: {result['machine']}; CPU only; {result['torch_threads_per_process']} torch thread per "
             "process. Produced by `python benchmarks/explain_store.py`. Each case: prediction, cross-modal "
             "attention, exact Shapley values (all 2^4 subsets), leave-one-out and pairwise interactions "
             "(cardio_demo checkpoint).", "",
             "## Writing the store of the bundled 200-case cohort, 1 vs 2 processes (one run)", "",
             "| processes | cases/s per process | cases/s overall | explaining (s) | wall with start-up (s) |",
             "| --- | --- | --- | --- | --- |"]
    for run in scaling["runs"]:
        lines.append(f"| {run['processes']} | {', '.join(str(v) for v in run['per_process_cases_per_s'])} | "
                     f"{run['overall_cases_per_s']} | {run['explaining_s']} | {run['wall_with_startup_s']} |")
    lines += ["", f"Scaling 1 -> 2 processes: {scaling['speedup']}x overall throughput. The 2-process store equals "
              f"the 1-process one: {scaling['same_store']}.", ""]
    if "page" in result:
        page = result["page"]
        big = result["reader_x10"]
        lines += [f"## The cohort attention page from the store of a generated {page['cases']}-case cohort", "",
                  f"Generated in {page['generate_s']} s; store written by one process in {page['write_store_s']} s "
                  f"({page['write_cases_per_s']} cases/s). The page shows the test split ({page['page_cases']} "
                  "cases). Server time of the page run under AppTest:", "",
                  "| opening | s |", "| --- | --- |",
                  f"| the case page first (the cohort predictions read from the store; the model explains the one "
                  f"case shown) | {page['case_page_s']} |",
                  f"| then the cohort page (explanations read from the store) | {page['first_s']} |",
                  f"| store caches cleared | {page['store_caches_cleared_s']} |",
                  f"| store and prediction caches cleared (both read from the store again, no model pass) | "
                  f"{page['predictions_and_store_caches_cleared_s']} |",
                  f"| everything cached | {page['all_cached_s']} |",
                  f"| without the store, same run: the case page first (the model predicts every case) | "
                  f"{page['case_page_without_store_s']} |",
                  f"| without the store: then the cohort page (the model explains the shown cases) | "
                  f"{page['cohort_page_without_store_s']} |", "",
                  "The store holds every case, so the cohort predictions every page shares are read from it too: "
                  "with the store no page runs the model over the cohort.", "",
                  f"Reader alone, every case of the {page['cases']}-case store: {page['reader_all_cases_s']} s "
                  "(open, check every shard, rebuild cohort_importance's result).", "",
                  f"Reader alone on {big['rows']} rows (the {page['cases']}-case store's rows repeated 10x under new "
                  f"ids, not a generated cohort): read {big['read_s']} s, cohort result of every row "
                  f"{big['importance_all_s']} s.", "",
                  "Not measured: a generated 20,000-case cohort's page (generation alone takes about 15 min on this "
                  "machine), and any GPU figure."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
