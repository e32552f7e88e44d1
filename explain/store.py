"""A precomputed cohort explanation on disk: every case's prediction, cross-modal attention, exact Shapley
values, leave-one-out and pairwise interactions in Parquet shards, so the cohort pages read it instead of
running the model.

A store is a folder: ``manifest.json`` (format version, checkpoint and cohort hashes, settings, columns, the
shard list with each shard's case ids) and ``part-NNNNN.parquet`` shards, each written atomically (temporary
file, then rename). Writing is resumable (a shard that is present and carries the same key is skipped) and
sharded across processes: process ``rank`` of ``world_size`` writes the shards ``i % world_size == rank``;
rank 0 writes the manifest before (``complete: false``) and after (``complete: true``, written time) them.
With attributions (``--attributions``) each shard has an ``attr-NNNNN.parquet`` beside it, written by the same
process, resumable the same way: every case's :func:`explain.attribution_table.attribution_table` for what the
case page explains by default, computed with the ExplainSettings the manifest's ``attributions`` records
(``attributions_complete`` once every attr shard is there). The store's key does not include them: a store
without attributions keeps its key, and adding them rewrites no core shard (the store stays readable meanwhile).
Classifier and survival models on cohorts of cases; a two-class risk model on a time-stamped (ICU) cohort. A
survival model's store holds one explained quantity (:class:`explain.targets.SurvivalTarget`, default survival
at the model's horizon): the manifest's ``explained`` names it, each row has its ``value`` and the predicted
``curve`` (S at the end of each time bin) instead of class probabilities, and its cases form the one group "all"
as in :func:`explain.cohort.cohort_importance`. A classifier's manifest has no ``explained``: stores written before
survival stores existed keep their key and stay valid. A time-stamped cohort's store has one row per sample (a stay
as of a prediction hour: case_id is the sample id, with stay_id and hour), explains the risk (the probability of
class :data:`explain.timeline.RISK_CLASS`, as figure 2C does) whatever the predicted class, and its manifest's
``timed`` says so; its cohort hash covers the cohort's long tables (vitals, labs, notes). No attributions: the
cohort pages of such a cohort have no attribution view."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from explain.attention import ClassAttentionAverager
from explain.attribution_table import ARROW_SCHEMA, explain_attributions, from_arrow, to_arrow
from explain.case import ExplainSettings
from explain.cohort import SURVIVAL_GROUP, CohortImportance
from explain.importance import METHODS, modality_importance, modality_names
from explain.interactions import shapley_interactions
from explain.targets import SURVIVAL_QUANTITIES, SurvivalTarget, is_survival
from explain.timeline import RISK_CLASS, SampleImportance, check_risk_model
from neurofusion.checkpoint import CONFIG, WEIGHTS
from neurofusion.data.cohort import COHORT_CSV, CohortReader
from neurofusion.data.formats import wfdb_data_files
from neurofusion.hashing import sha256_file
from neurofusion.inference import Predictor, model_lock
from neurofusion.loader import SplitCases

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE_FOLDER = "explanations"  # <cohort>/explanations/<checkpoint hash prefix>/ is the default location
HASH_PREFIX = 16
_KEY = b"neurofusion.store"  # the Parquet schema metadata entry that ties a shard to its store


class StoreError(ValueError):
    """A store that cannot be written or read as asked: another checkpoint or cohort, a missing or
    inconsistent shard, an unsupported model or cohort. The message says what and what to do."""


def checkpoint_hash(folder: str | Path) -> str:
    """SHA-256 over the checkpoint's config and weights (content, not path or time): what the explanations
    depend on (the out-of-distribution reference does not change them)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        digest.update(f"{name}:{sha256_file(folder / name)}\n".encode())
    return digest.hexdigest()


def cohort_hash(cohort: CohortReader, file_stats: str | None = None) -> str:
    """SHA-256 over cohort.csv and cohort.json (content) and the relative path, size and modification time
    of every case file (and the data files its WFDB headers name; a time-stamped cohort's long tables): an edited
    or replaced case file changes it without reading gigabytes of images. Moving the cohort folder with its times
    kept keeps it. ``file_stats``: :func:`case_file_stats` of this cohort taken moments before (the dashboard's
    case keys stat the same files: one pass serves both); None: taken here."""
    root = str(cohort.root)
    digest = hashlib.sha256()
    for name in (COHORT_CSV, "cohort.json"):
        if os.path.isfile(os.path.join(root, name)):
            digest.update(f"{name}:{sha256_file(Path(root, name))}\n".encode())
    digest.update((case_file_stats(cohort) if file_stats is None else file_stats).encode())
    return digest.hexdigest()


def case_file_stats(cohort: CohortReader) -> str:
    """One line ``<relative path>:<size>:<mtime ns>`` (or ``<relative path>:missing``) per case file, in
    cohort.csv's order, file column by file column, each WFDB header followed by the data files it names:
    what :func:`cohort_hash` hashes. One pass, one ``os.stat`` per file and little else (a 20,000-case cohort
    has about 72,000; the stat itself is most of the time); each header's data-file names come from
    :func:`signal_data_files` (read once per header version and process). A time-stamped cohort's cases are read
    from its long tables (``cohort.table_files``: vitals, labs, notes), which are its case files here."""
    if getattr(cohort, "timed", False):
        return "".join(file_stat_lines(str(cohort.root), [os.path.relpath(path, cohort.root)
                                                          for path in cohort.table_files]))
    relatives = [str(relative) for column in [m.file_column for m in cohort.modalities if m.file_backed]
                 for relative in cohort.table[column].tolist() if relative]
    return "".join(file_stat_lines(str(cohort.root), relatives))


def file_stat_lines(root: str, relatives: Sequence[str]) -> list[str]:
    """:func:`case_file_stats`' lines of the files ``relatives`` (paths under ``root``; with ``root`` "" any
    paths, named as given), each WFDB header followed by the data files it names."""
    lines: list[str] = []
    add, stat, join, dirname, splitext = lines.append, os.stat, os.path.join, os.path.dirname, os.path.splitext
    for relative in relatives:
        path = join(root, relative)
        try:
            found = stat(path)
        except OSError:
            add(f"{relative}:missing\n")
            continue
        add(f"{relative}:{found.st_size}:{found.st_mtime_ns}\n")
        if relative[-4:].lower() == ".hea" and splitext(relative)[1].lower() == ".hea" and S_ISREG(found.st_mode):
            folder = dirname(relative)
            for data in signal_data_files(path, found.st_size, found.st_mtime_ns):
                name = join(folder, data)
                try:
                    found = stat(join(root, name))
                    add(f"{name}:{found.st_size}:{found.st_mtime_ns}\n")
                except OSError:
                    add(f"{name}:missing\n")
    return lines


@functools.lru_cache(maxsize=1 << 17)
def signal_data_files(header: str, size: int, mtime_ns: int) -> tuple[str, ...]:
    """:func:`header_data_files` of one version of a header (its size and modification time are part of the
    cache key): each header is read once per process, by whichever of the store's cohort hash and the
    dashboard's case keys needs it first."""
    return header_data_files(header)


def header_data_files(path: str | Path) -> tuple[str, ...]:
    """The signal file names a single-segment WFDB header lists, read from its signal lines (about 100 times
    faster than parsing the header with wfdb, which matters for a 20,000-case cohort: about 10 us a header);
    anything else (a multi-segment record, an unexpected line) is read by
    :func:`neurofusion.data.formats.wfdb_data_files`."""
    try:
        lines = [line for line in _read_bytes(os.fspath(path)).decode().splitlines()
                 if line.strip() and not line.startswith("#")]
        record = lines[0].split()
        count = int(record[1])
        if "/" in record[0] or len(lines) < 1 + count:
            return wfdb_data_files(path)
        names = {line.split(None, 1)[0] for line in lines[1:1 + count]}
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return wfdb_data_files(path)
    return tuple(sorted(n for n in names if n and n != "~" and "/" not in n and "\\" not in n))


def _read_bytes(path: str) -> bytes:
    """The file's bytes through os.open / os.read: a third of the time of Path.read_text for a 1 kB header
    (no file object, no text layer), which is most of a 20,000-case cohort's header reading."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(descriptor, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def default_location(cohort_root: str | Path, checkpoint_sha: str) -> Path:
    """<cohort>/explanations/<first 16 hex digits of the checkpoint hash>/."""
    return Path(cohort_root) / STORE_FOLDER / checkpoint_sha[:HASH_PREFIX]


def check_supported(predictor: Predictor, cohort: CohortReader, survival: SurvivalTarget | None = None,
                    attributions: bool = False) -> None:
    """StoreError for what the store does not hold: a survival quantity asked of a classifier, a survival horizon
    outside the model's time grid, a time-stamped cohort with a model other than a two-class risk model or with
    ``attributions``."""
    if survival is not None and not is_survival(predictor.model):
        raise StoreError("a survival quantity (--quantity / --horizon) applies to survival models; this checkpoint "
                         "is a classifier")
    if is_survival(predictor.model):
        try:
            (survival or SurvivalTarget()).resolved(predictor.model)
        except ValueError as err:
            raise StoreError(str(err)) from None
    if getattr(cohort, "timed", False):
        try:
            check_risk_model(predictor)
        except ValueError as err:
            raise StoreError(f"{cohort.root} is a time-stamped (ICU) cohort: {err}") from None
        if attributions:
            raise StoreError(f"--attributions does not apply to a time-stamped (ICU) cohort ({cohort.root}): the "
                             "stored attributions are the case page's default explanation of the predicted class, "
                             f"while an ICU sample is explained as the risk of death at its hour (class {RISK_CLASS}), "
                             "and the ICU cohort page has no attribution view to read them; write the store without "
                             "--attributions (explain a stay's hours with python -m explain case --hours)")


STAGES = ("read", "prepare", "model", "rows", "write")  # where a shard's time goes (WriteReport.stage_seconds)


@dataclass
class WriteReport:
    """What one process did: shards written and skipped (already complete), cases explained, seconds, and
    those seconds by stage: reading the case files, preparing the batches (tokenising, resizing, stacking),
    the model (encoding, the 2^M fusion passes of the exact Shapley values), building the rows, writing the
    Parquet files: what a GPU would speed up (the model) and what it would not."""

    path: Path
    rank: int
    world_size: int
    shards: int
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    cases: int = 0
    seconds: float = 0.0
    complete: bool = False
    attributions_written: list[int] = field(default_factory=list)  # attr shards (with attributions)
    attributions_skipped: list[int] = field(default_factory=list)
    attributed_cases: int = 0  # cases of the attr shards written (explained or named as not explainable)
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def cases_per_second(self) -> float:
        return self.cases / self.seconds if self.seconds > 0 else float("nan")


def plan_shards(case_ids: Sequence[str], shard_size: int) -> list[list[str]]:
    """The case ids cut into consecutive shards of ``shard_size`` (the last may be smaller)."""
    if shard_size < 1:
        raise StoreError(f"--shard-size must be a positive number of cases, got {shard_size}")
    return [list(case_ids[i:i + shard_size]) for i in range(0, len(case_ids), shard_size)]


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def attribution_name(index: int) -> str:
    """The attributions of the cases of shard ``index``."""
    return f"attr-{index:05d}.parquet"


def attribution_settings(settings: ExplainSettings) -> dict:
    """What the manifest's ``attributions`` records of the settings (JSON types): every ExplainSettings field.
    A store explains what the case page shows by default, so ``target`` must be None (the predicted class)."""
    if settings.target is not None:
        raise StoreError(f"the store's attributions explain each case's predicted class (or a survival model's "
                         f"quantity), as the case page does by default; got ExplainSettings(target={settings.target})")
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def write_store(out: str | Path, predictor: Predictor, cohort: CohortReader, case_ids: Sequence[str], *,
                checkpoint_sha: str, cohort_sha: str, settings: dict, shard_size: int = 256, batch_size: int = 32,
                rank: int = 0, world_size: int = 1, overwrite: bool = False,
                barrier: Callable[[], None] | None = None, progress: bool = False, num_workers: int = 0,
                survival: SurvivalTarget | None = None, attributions: ExplainSettings | None = None) -> WriteReport:
    """Explain ``case_ids`` of ``cohort`` into the store ``out``; this process writes the shards
    ``i % world_size == rank``, its cases read and prepared by ``num_workers`` DataLoader worker processes
    (0: this one; the store is the same whatever the number). ``barrier``: waits for every process
    (torch.distributed.barrier under torchrun; None for one process). A manifest of another checkpoint, cohort,
    settings or explained quantity is refused (StoreError) unless ``overwrite``, which removes the old store
    first. ``survival``: a survival model's explained quantity (None: survival at the model's horizon).
    ``attributions``: also write each shard's attr shard with these settings (None: none); a store without
    attributions gets them added (its complete core shards skipped, the store readable meanwhile), one with other
    attribution settings is refused unless ``overwrite``."""
    if not 0 <= rank < world_size:
        raise StoreError(f"rank must be in 0..{world_size - 1}, got {rank}")
    check_supported(predictor, cohort, survival, attributions is not None)
    wait = barrier or (lambda: None)
    out = Path(out)
    shards = plan_shards(list(case_ids), shard_size)
    manifest = _manifest(predictor, checkpoint_sha, cohort_sha, settings, shards, survival,
                         timed=getattr(cohort, "timed", False))
    if attributions is not None:
        manifest.update(attributions=attribution_settings(attributions), attributions_complete=False)
    existing = (out / MANIFEST).is_file()
    if existing and not overwrite:
        old = _read_manifest(out)
        _check_same(old, manifest, out)
        if old.get("complete"):  # the core shards are complete: the store stays readable while attributions are added
            manifest.update({k: old[k] for k in ("complete", "written", "errors") if k in old})
    wait()  # every process has checked the old manifest before rank 0 replaces it
    if rank == 0:
        if existing and overwrite:  # only the store's own files: anything else in the folder stays
            for old in [out / MANIFEST, *out.glob("part-*.parquet"), *out.glob(".part-*.tmp"),
                        *out.glob("attr-*.parquet"), *out.glob(".attr-*.tmp")]:
                old.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / MANIFEST, manifest)
    wait()
    report = WriteReport(out, rank, world_size, len(shards))
    start = time.perf_counter()
    key = _store_key(manifest)
    attribution_key = _attribution_key(manifest)
    mine = [i for i in range(len(shards)) if i % world_size == rank]
    for index in tqdm(mine, desc=f"shards (rank {rank})", disable=not progress, file=sys.stderr):
        path = out / shard_name(index)
        if _shard_complete(path, key, shards[index]):
            report.skipped.append(index)
        else:
            table = explain_shard(predictor, cohort, shards[index], manifest, batch_size,
                                  stages=report.stage_seconds, num_workers=num_workers)
            _write_shard(path, table, {"key": key, "index": index, "case_ids": shards[index]}, report.stage_seconds)
            report.written.append(index)
            report.cases += len(shards[index])
        if attributions is not None:
            _write_attributions(out, index, shards[index], predictor, cohort, manifest, attributions, report)
    report.seconds = time.perf_counter() - start
    wait()  # every shard is on disk
    if rank == 0:
        missing = [shard_name(i) for i in range(len(shards))
                   if not _shard_complete(out / shard_name(i), key, shards[i])]
        if attributions is not None:
            missing += [attribution_name(i) for i in range(len(shards))
                        if not _shard_complete(out / attribution_name(i), attribution_key, shards[i])]
        if missing:
            raise StoreError(f"{len(missing)} shard(s) of {out} are missing or inconsistent after writing: "
                             f"{', '.join(missing[:5])}; run the command again to resume")
        manifest["complete"] = True
        manifest["written"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest["errors"] = _shard_errors(out, [shard_name(i) for i in range(len(shards))])
        if attributions is not None:
            manifest["attributions_complete"] = True
            manifest["attribution_errors"] = _shard_errors(out, [attribution_name(i) for i in range(len(shards))])
        _write_json(out / MANIFEST, manifest)
    wait()
    report.complete = True
    return report


def _write_shard(path: Path, table: pa.Table, info: dict, stages: dict[str, float]) -> None:
    """``table`` written to ``path`` atomically (a reader or a resumed run never sees half a shard), ``info``
    (its store's key, index, case ids) in its schema metadata beside what the table carries (the unreadable
    cases)."""
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _KEY: json.dumps(info)})
    started = time.perf_counter()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    stages["write"] += time.perf_counter() - started


def _write_attributions(out: Path, index: int, case_ids: list[str], predictor: Predictor, cohort: CohortReader,
                        manifest: dict, settings: ExplainSettings, report: WriteReport) -> None:
    """The attr shard of shard ``index`` (skipped when present with this store's and settings' key): each case's
    attribution table; a case that cannot be read or explained is named with its reason in the schema's
    errors. Its seconds are ``report.stage_seconds["attributions"]`` (reading the case included)."""
    path, key = out / attribution_name(index), _attribution_key(manifest)
    if _shard_complete(path, key, case_ids):
        report.attributions_skipped.append(index)
        return
    started = time.perf_counter()
    rows, errors = explain_attributions(predictor, cohort, case_ids, settings, _survival_target(manifest))
    table = to_arrow(rows).replace_schema_metadata({b"errors": json.dumps(errors)})
    stages = report.stage_seconds
    stages["attributions"] = stages.get("attributions", 0.0) + time.perf_counter() - started
    _write_shard(path, table, {"key": key, "store_key": _store_key(manifest), "index": index, "case_ids": case_ids},
                 stages)
    report.attributions_written.append(index)
    report.attributed_cases += len(case_ids)


@torch.no_grad()
def explain_shard(predictor: Predictor, cohort: CohortReader, case_ids: Sequence[str], manifest: dict,
                  batch_size: int = 32, stages: dict[str, float] | None = None, num_workers: int = 0) -> pa.Table:
    """One row per readable case of ``case_ids``: case_id, label, label_index (-1 = unlabelled), predicted,
    target, p_<class> (a survival model: value, its explained quantity with the case's modalities, and curve,
    S at the end of each time bin; label and predicted "all", label_index and target 0), present_<m>,
    <method>_<m> (NaN where absent, as CohortImportance.table), cross_attention and interactions ((M, M) each,
    flattened row-major; cross_attention null without cross-modal attention). A time-stamped cohort's store
    (manifest ``timed``): stay_id and hour after case_id, and the importance is that of the risk (target
    RISK_CLASS), predicted the most probable class. A case that cannot be read is left out and named in the
    schema's errors; one the model cannot read (prepare_case's CohortError) stops the shard with that error.

    The cases are read and prepared through ``predictor.loader`` (``num_workers`` DataLoader worker processes,
    0: this one) while this process runs the model. ``stages``: seconds are added to its "read" and "prepare"
    entries (measured where that work ran: summed over the workers when there are some, so they may exceed the
    wall time) and "model" and "rows"."""
    model = predictor.model
    model.eval()
    classes, names = manifest["classes"], manifest["modalities"]
    survival = _survival_target(manifest)
    timed = "timed" in manifest
    where = cohort.table.set_index("case_id").loc[list(case_ids), ["stay_id", "hour"]] if timed else None
    clock = _StageClock(stages)
    errors: dict[str, str] = {}
    rows: list[dict] = []
    for streamed in predictor.loader(SplitCases(cohort, case_ids), batch_size=batch_size, num_workers=num_workers):
        streamed.raise_errors(unreadable=False)  # an unreadable case is left out; one the model cannot read stops
        errors.update(streamed.errors)
        clock.add("read", streamed.read_seconds)
        clock.add("prepare", streamed.prepare_seconds)
        if streamed.batch is None:  # every case of this batch was unreadable
            continue
        batch = streamed.batch.to(predictor.device)
        clock.lap(None)  # the wait for the loader is the read and prepare time added above
        with model_lock(model):
            encoded = model.encode(batch)
            output = model.fuse(encoded, batch.present)
            # (B, C) class probabilities, or a survival model's (B, K) curve
            predicted = (output.probabilities if survival is None else output.survival).double().cpu().numpy()
            target = torch.full((len(batch.present),), RISK_CLASS, dtype=torch.long, device=batch.present.device) \
                if timed else None  # a time-stamped sample: the risk, whatever the predicted class
            result = modality_importance(model, batch, target, encoded=encoded, survival=survival)
        clock.lap("model")  # .cpu() above and in modality_importance: a GPU's queued work is finished here
        labels = batch.labels.cpu().numpy() if survival is None else np.zeros(len(result.case_ids), dtype=int)
        interactions = shapley_interactions(result)  # (B, M, M)
        present = result.present
        for i, case_id in enumerate(result.case_ids):
            row = {"case_id": case_id}
            if timed:
                row.update({"stay_id": str(where.at[case_id, "stay_id"]), "hour": float(where.at[case_id, "hour"])})
            row.update({"label": classes[labels[i]] if labels[i] >= 0 else None, "label_index": int(labels[i]),
                        "predicted": classes[int(predicted[i].argmax() if timed else result.target[i])],
                        "target": int(result.target[i])})
            if survival is None:
                row.update({f"p_{c}": float(predicted[i, k]) for k, c in enumerate(classes)})
            else:
                row.update({"value": float(result.probability_full[i]), "curve": predicted[i].tolist()})
            row.update({f"present_{m}": bool(present[i, j]) for j, m in enumerate(names)})
            for method in METHODS:
                values = getattr(result, method)  # attention: None without cross-modal attention
                row.update({f"{method}_{m}": float(values[i, j]) if values is not None and present[i, j]
                            else float("nan") for j, m in enumerate(names)})
            row["cross_attention"] = (None if result.cross_attention is None
                                      else result.cross_attention[i].astype(float).ravel().tolist())
            row["interactions"] = interactions[i].astype(float).ravel().tolist()
            rows.append(row)
        clock.lap("rows")
    table = pa.Table.from_pylist(rows, schema=_schema(manifest))
    clock.lap("rows")
    return table.replace_schema_metadata({b"errors": json.dumps(errors)})


class _StageClock:
    """Adds the seconds since the previous lap to ``stages[name]`` (nothing when ``stages`` is None; a lap named
    None is not counted), or seconds measured elsewhere (a DataLoader worker) with :meth:`add`."""

    def __init__(self, stages: dict[str, float] | None) -> None:
        self.stages, self.last = stages, time.perf_counter()

    def lap(self, name: str | None) -> None:
        now = time.perf_counter()
        if name is not None:
            self.add(name, now - self.last)
        self.last = now

    def add(self, name: str, seconds: float) -> None:
        if self.stages is not None:
            self.stages[name] = self.stages.get(name, 0.0) + seconds


@dataclass
class ExplanationStore:
    """A complete store, read: ``table`` (every case's row, all shards) and its ``manifest``."""

    path: Path
    manifest: dict
    table: pd.DataFrame

    @property
    def written(self) -> str:
        return self.manifest.get("written", "")

    @property
    def case_ids(self) -> list[str]:
        return self.table["case_id"].tolist()

    @property
    def survival(self) -> bool:
        """A survival model's store: rows hold its explained quantity (value) and curve, not class probabilities."""
        return "explained" in self.manifest

    @property
    def explained(self) -> str:
        """What the scores are in: "probability" (a classifier's class), or the survival quantity's label."""
        return self.manifest["explained"]["label"] if self.survival else "probability"

    def explains(self, model, survival: SurvivalTarget | None = None) -> str | None:
        """Why this store does not hold what ``model`` is asked to explain (None when it does): a survival
        model's store holds one quantity (``survival``; None: survival at the model's horizon); a classifier's
        store, its classes."""
        if not is_survival(model):
            if survival is not None:
                return "a survival quantity was asked of a classifier"
            return "it holds a survival model's explanation, the loaded model is a classifier" if self.survival \
                else None
        if not self.survival:
            return "it holds a classifier's explanation, the loaded model is a survival model"
        target = survival or SurvivalTarget()
        try:
            _, horizon = target.resolved(model)
        except ValueError as err:
            return str(err)
        held = self.manifest["explained"]
        if held["quantity"] != target.quantity or float(held["horizon"]) != horizon:
            return f"it holds {held['label']}, the page explains {target.label(model)}"
        return None

    def curves(self) -> np.ndarray:
        """(N, K) a survival store's predicted curves (S at the end of each time bin), rows in table order."""
        if not self.survival:
            raise StoreError(f"the store {self.path} holds a classifier's explanation: no survival curves")
        return _matrices(self.table["curve"], 0, flat=True)

    @property
    def timed(self) -> bool:
        """A time-stamped cohort's store: one row per sample (with stay_id and hour), the importance of the risk."""
        return "timed" in self.manifest

    def sample_importance(self, case_ids: Sequence[str] | None = None) -> SampleImportance:
        """What :func:`explain.timeline.sample_importance` computes for the samples ``case_ids`` (default every
        stored sample), in that order, read from a time-stamped cohort's store without running the model: figure
        2C's rows are :func:`explain.timeline.figure_2c_rows` of it. The store keeps NaN where a modality is
        absent; here, as computed, its attention and Shapley value are 0 (attention NaN throughout for a model
        without cross-modal attention). StoreError for another store or a sample it does not hold."""
        if not self.timed:
            raise StoreError(f"the store {self.path} holds a cohort of cases, not the samples of a time-stamped "
                             "(ICU) cohort")
        ids = self.case_ids if case_ids is None else list(case_ids)
        missing = self.missing(ids)
        if missing:
            raise StoreError(f"the store {self.path} has no explanation of {len(missing)} of the asked samples "
                             f"({', '.join(missing[:5])}); write it with --split all or the split you need")
        frame = self.table.set_index("case_id").loc[ids]
        names = tuple(self.manifest["modalities"])
        present = frame[[f"present_{n}" for n in names]].to_numpy(dtype=bool)
        shapley = np.where(present, frame[[f"shapley_{n}" for n in names]].to_numpy(dtype=float), 0.0)
        attention = (np.where(present, frame[[f"attention_{n}" for n in names]].to_numpy(dtype=float), 0.0)
                     if self.has_attention else np.full(shapley.shape, np.nan))
        risk = frame[f"p_{self.manifest['timed']['risk']}"].to_numpy(dtype=float)
        return SampleImportance(ids, frame["stay_id"].to_numpy(dtype=object), frame["hour"].to_numpy(dtype=float),
                                frame["label_index"].to_numpy(dtype=int), risk, attention, shapley, present, names)

    @property
    def has_attention(self) -> bool:
        """The model has cross-modal attention: every stored case carries its (M, M) map."""
        return bool(self.table["cross_attention"].notna().all())

    @property
    def has_attributions(self) -> bool:
        """The store holds each case's attribution table (written with --attributions, every attr shard done)."""
        return "attributions" in self.manifest and bool(self.manifest.get("attributions_complete"))

    def attributions(self, case_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """The attribution tables (columns :data:`explain.attribution_table.ATTRIBUTION_COLUMNS`) of ``case_ids``
        (default: every case), case by case in that order, each case's rows as
        :func:`explain.attribution_table.attribution_table` gave them; a case named in the manifest's
        ``attribution_errors`` (not readable or explainable) has none. Reads only the attr shards holding those
        cases. StoreError when the store has no attributions, does not plan one of the cases, or an attr shard
        it needs is missing, damaged or of other settings."""
        if not self.has_attributions:
            how = ("their writing did not finish: run the same python -m explain cohort --out ... --attributions "
                   "command again" if "attributions" in self.manifest else
                   "write them with python -m explain cohort --out ... --attributions")
            raise StoreError(f"the store {self.path} holds no attributions ({how})")
        shards = self.manifest["shards"]
        where = {case_id: index for index, shard in enumerate(shards) for case_id in shard["case_ids"]}
        ids = list(dict.fromkeys(self.case_ids if case_ids is None else case_ids))
        unknown = [i for i in ids if i not in where]
        if unknown:
            raise StoreError(f"the store {self.path} has no attributions of {len(unknown)} of the asked cases "
                             f"({', '.join(unknown[:5])}); write it with --split all or the split you need")
        key, parts = _attribution_key(self.manifest), []
        for index in sorted({where[i] for i in ids}):
            name = attribution_name(index)
            file = _open_shard(self.path / name)
            if file is None or not _shard_matches(file.schema_arrow.metadata, key, shards[index]["case_ids"]):
                raise StoreError(f"the store {self.path} lacks {name} or it belongs to other attribution settings or "
                                 "another store: run the python -m explain cohort --out ... --attributions command "
                                 "again to rewrite it")
            try:
                parts.append(file.read(use_threads=False))
            except (pa.ArrowInvalid, OSError) as err:
                raise StoreError(f"the store {self.path} has a damaged {name} ({err}): run the python -m explain "
                                 "cohort --out ... --attributions command again to rewrite it") from None
        table = pa.concat_tables(parts) if parts else ARROW_SCHEMA.empty_table()
        if case_ids is not None:  # filtered in Arrow: a shard holds the rows of hundreds of cases
            table = table.filter(pc.is_in(table["case_id"], value_set=pa.array(ids, pa.string())))
        frame = from_arrow(table)
        order = frame["case_id"].map({case_id: k for k, case_id in enumerate(ids)}).to_numpy()
        return frame.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)

    def mismatch(self, checkpoint_sha: str, cohort_sha: str) -> str | None:
        """Why this store is not the loaded checkpoint's and cohort's explanation (None when it is)."""
        problems = []
        if self.manifest["checkpoint_sha256"] != checkpoint_sha:
            problems.append(f"it was written for checkpoint {self.manifest['checkpoint_sha256'][:12]}, the loaded "
                            f"one is {checkpoint_sha[:12]}")
        if self.manifest["cohort_sha256"] != cohort_sha:
            problems.append(f"it was written for cohort {self.manifest['cohort_sha256'][:12]}, the loaded one is "
                            f"{cohort_sha[:12]} (a case file or cohort.csv changed since)")
        return "; ".join(problems) or None

    def missing(self, case_ids: Sequence[str]) -> list[str]:
        """The ids of ``case_ids`` the store has no row for."""
        held = set(self.table["case_id"])
        return [i for i in case_ids if i not in held]

    def predictions(self) -> pd.DataFrame:
        """case_id, label, predicted and p_<class> of every stored case; a survival store: case_id, value (the
        explained quantity) and curve_<k> (S at the end of time bin k, k = 1..K, as the dashboard's survival
        table names them)."""
        if not self.survival:
            return self.table[["case_id", "label", "predicted", *[f"p_{c}" for c in self.manifest["classes"]]]]
        curves = self.curves()
        frame = self.table[["case_id", "value"]].copy()
        for k in range(curves.shape[1]):
            frame[f"curve_{k + 1}"] = curves[:, k]
        return frame

    def importance(self, case_ids: Sequence[str] | None = None) -> CohortImportance:
        """What :func:`explain.cohort.cohort_importance` returns for ``case_ids`` (default: every stored
        case), in that order, without running the model."""
        frame = self.table.set_index("case_id")
        ids = self.case_ids if case_ids is None else list(case_ids)
        missing = self.missing(ids)
        if missing:
            raise StoreError(f"the store {self.path} has no explanation of {len(missing)} of the asked cases "
                             f"({', '.join(missing[:5])}); write it with --split all or the split you need")
        frame = frame.loc[ids]
        names, classes = tuple(self.manifest["modalities"]), list(self.manifest["classes"])
        m = len(names)
        present = frame[[f"present_{n}" for n in names]].to_numpy(dtype=bool)
        methods = [m for m in METHODS if m != "attention" or self.has_attention]
        columns = [f"{method}_{n}" for method in methods for n in names]
        table = frame.reset_index()[["case_id", "label", "predicted", *columns]]
        for column in ("case_id", "label", "predicted"):  # the dtype pandas infers for cohort_importance's rows
            values = table[column].to_numpy(dtype=object, na_value=None).tolist()  # 4x faster than iterating
            table[column] = pd.Series(values, index=table.index)
        interactions = _matrices(frame["interactions"], m)
        attention = None
        if self.has_attention:
            averager = ClassAttentionAverager(classes, m, names)
            averager.add(_matrices(frame["cross_attention"], m), present, frame["label_index"].to_numpy(),
                         frame["target"].to_numpy())
            attention = averager.result()
        return CohortImportance(table, attention, names, self.explained, self.survival, interactions)


def open_store(path: str | Path) -> ExplanationStore:
    """Read a complete store (every shard of its manifest, consistent with it); StoreError saying what is
    wrong otherwise (not a store, written by another format version, incomplete, a shard missing)."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise StoreError(f"{path} is not an explanation store: no {MANIFEST} (write one with "
                         "python -m explain cohort --out)")
    manifest = _read_manifest(path)
    if not manifest.get("complete"):
        raise StoreError(f"the store {path} is incomplete (a run was interrupted): run the same "
                         "python -m explain cohort --out command again to finish it")
    key = _store_key(manifest)
    parts = []
    for shard in manifest["shards"]:
        file = _open_shard(path / shard["file"])  # opened once: its key checked, then its rows read
        if file is None or not _shard_matches(file.schema_arrow.metadata, key, shard["case_ids"]):
            raise StoreError(f"the store {path} lacks {shard['file']} or it belongs to another store: run the "
                             "python -m explain cohort --out command again to rewrite it")
        try:
            parts.append(file.read(use_threads=False))  # 80 small shards: threads cost more than they save
        except (pa.ArrowInvalid, OSError) as err:
            raise StoreError(f"the store {path} has a damaged {shard['file']} ({err}): run the python -m explain "
                             "cohort --out command again to rewrite it") from None
    table = pa.concat_tables(parts).to_pandas() if parts else _schema(manifest).empty_table().to_pandas()
    return ExplanationStore(path, manifest, table)


def _matrices(column: pd.Series, m: int, flat: bool = False) -> np.ndarray:
    """(N, M, M) from a column of flattened (M*M) lists; ``flat``: (N, length of each list)."""
    if not len(column):
        return np.zeros((0, m) if flat else (0, m, m))
    stacked = np.stack(column.to_numpy()).astype(float)
    return stacked if flat else stacked.reshape(len(column), m, m)


def _manifest(predictor: Predictor, checkpoint_sha: str, cohort_sha: str, settings: dict,
              shards: list[list[str]], survival: SurvivalTarget | None = None, timed: bool = False) -> dict:
    model = predictor.model
    names = list(modality_names(model))
    manifest = {"format_version": FORMAT_VERSION, "checkpoint_sha256": checkpoint_sha, "cohort_sha256": cohort_sha,
                "settings": settings, "classes": [SURVIVAL_GROUP] if is_survival(model) else list(model.classes),
                "modalities": names, "complete": False}
    if is_survival(model):
        target = survival or SurvivalTarget()
        bins, horizon = target.resolved(model)
        manifest["explained"] = {"quantity": target.quantity, "horizon": horizon, "unit": bins.unit,
                                 "label": target.label(model), "time_bins": list(map(float, bins.edges))}
    if timed:  # samples of a time-stamped cohort, their importance that of the risk
        manifest["timed"] = {"risk_class": RISK_CLASS, "risk": list(model.classes)[RISK_CLASS]}
    manifest.update({"cases": sum(len(s) for s in shards),
                     "shards": [{"file": shard_name(i), "case_ids": ids} for i, ids in enumerate(shards)]})
    manifest["columns"] = _schema(manifest).names
    return manifest


def _schema(manifest: dict) -> pa.Schema:
    names, methods = manifest["modalities"], METHODS  # attention_<m> and cross_attention are null without attention
    fields = [pa.field("case_id", pa.string())]
    if "timed" in manifest:  # a time-stamped cohort's sample: its stay and prediction hour
        fields += [pa.field("stay_id", pa.string()), pa.field("hour", pa.float64())]
    fields += [pa.field("label", pa.string()), pa.field("label_index", pa.int64()),
              pa.field("predicted", pa.string()), pa.field("target", pa.int64())]
    if "explained" in manifest:  # a survival model: its explained quantity and predicted curve
        fields += [pa.field("value", pa.float64()), pa.field("curve", pa.list_(pa.float64()))]
    else:
        fields += [pa.field(f"p_{c}", pa.float64()) for c in manifest["classes"]]
    fields += [pa.field(f"present_{m}", pa.bool_()) for m in names]
    fields += [pa.field(f"{method}_{m}", pa.float64()) for method in methods for m in names]
    fields += [pa.field("cross_attention", pa.list_(pa.float64())), pa.field("interactions", pa.list_(pa.float64()))]
    return pa.schema(fields)


def _store_key(manifest: dict) -> str:
    """What a shard must carry to belong to this store: hashes, settings, format and the shard plan."""
    content = {k: manifest[k] for k in ("format_version", "checkpoint_sha256", "cohort_sha256", "settings",
                                        "classes", "modalities")}
    content["shards"] = [len(s["case_ids"]) for s in manifest["shards"]]
    for optional in ("explained", "timed"):  # a survival store's quantity, a time-stamped cohort's risk: only
        if optional in manifest:  # when present, so a classifier's key is as before these stores existed
            content[optional] = manifest[optional]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _attribution_key(manifest: dict) -> str | None:
    """What an attr shard must carry: the store's key and the attribution settings (None: no attributions)."""
    if "attributions" not in manifest:
        return None
    content = {"store": _store_key(manifest), "attributions": manifest["attributions"]}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _shard_complete(path: Path, key: str, case_ids: Sequence[str]) -> bool:
    """The shard file is there, readable, and carries this store's key and these case ids."""
    file = _open_shard(path)
    return file is not None and _shard_matches(file.schema_arrow.metadata, key, case_ids)


def _open_shard(path: Path) -> pq.ParquetFile | None:
    """The shard's Parquet file, opened (its footer read), or None when it is missing or not readable Parquet."""
    if not path.is_file():
        return None
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError):
        return None  # a damaged file is rewritten


def _shard_matches(metadata: dict | None, key: str, case_ids: Sequence[str]) -> bool:
    """The shard's schema metadata carries this store's key and these case ids."""
    try:
        info = json.loads((metadata or {}).get(_KEY, b"{}"))
    except json.JSONDecodeError:
        return False
    return isinstance(info, dict) and info.get("key") == key and info.get("case_ids") == list(case_ids)


def _shard_errors(out: Path, names: Sequence[str]) -> dict[str, str]:
    """{case_id: why it could not be read (or explained)} over the shards ``names``."""
    errors: dict[str, str] = {}
    for name in names:
        metadata = pq.read_schema(out / name).metadata or {}
        errors.update(json.loads(metadata.get(b"errors", b"{}")))
    return errors


def _check_same(existing: dict, manifest: dict, out: Path) -> None:
    for field_name, what in (("format_version", "store format version"), ("checkpoint_sha256", "checkpoint"),
                             ("cohort_sha256", "cohort"), ("settings", "settings"),
                             ("explained", "explained quantity (--quantity / --horizon)"),
                             ("timed", "kind of cohort (time-stamped or not)"),
                             ("shards", "shard plan (cases or --shard-size)")):
        if existing.get(field_name) != manifest.get(field_name):
            raise StoreError(f"{out} holds a store of another {what} ({field_name} differs): refusing to mix them; "
                             "choose another --out or pass --overwrite to replace it")
    held, asked = existing.get("attributions"), manifest.get("attributions")
    if held is not None and held != asked:  # none held: this run adds them to the store
        raise StoreError(f"{out} holds attributions of other settings ({_settings_difference(held, asked)}): it holds "
                         f"them computed with {_settings_text(held)}; this run asks for "
                         f"{_settings_text(asked) if asked else 'none (no --attributions)'}: refusing to mix them; "
                         "give the same settings, choose another --out or pass --overwrite to replace the store")


def _settings_text(settings: dict) -> str:
    return "(" + ", ".join(f"{k} {v}" for k, v in settings.items()) + ")"


def _settings_difference(held: dict, asked: dict | None) -> str:
    if asked is None:
        return "this run asks for none"
    return "they differ in " + ", ".join(f"{k} ({held.get(k)} held, {asked.get(k)} asked)"
                                         for k in dict.fromkeys([*held, *asked]) if held.get(k) != asked.get(k))


def _survival_target(manifest: dict) -> SurvivalTarget | None:
    """The survival quantity a manifest's store explains (None: a classifier's store)."""
    explained = manifest.get("explained")
    return None if explained is None else SurvivalTarget(explained["quantity"], explained["horizon"])


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise StoreError(f"cannot read {path / MANIFEST}: {err}") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise StoreError(f"{path / MANIFEST} has format_version {version!r}; this version reads "
                         f"{FORMAT_VERSION}: write the store again (--overwrite)")
    for key in ("checkpoint_sha256", "cohort_sha256", "settings", "classes", "modalities", "shards"):
        if key not in manifest:
            raise StoreError(f"{path / MANIFEST} lacks the field {key!r}: it is not a complete manifest")
    explained = manifest.get("explained")
    if explained is not None and not (isinstance(explained, dict) and isinstance(explained.get("label"), str)
                                      and explained.get("quantity") in SURVIVAL_QUANTITIES
                                      and isinstance(explained.get("horizon"), (int, float))):
        raise StoreError(f"{path / MANIFEST} has an unreadable 'explained' field {explained!r}: expected "
                         f"{{quantity: one of {SURVIVAL_QUANTITIES}, horizon: a number, label: text}}")
    return manifest


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, path)
