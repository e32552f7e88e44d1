"""Command line: explain one case, or a cohort.

    python -m explain case --checkpoint DIR --data DIR --case-id ID [--image-method M] [--n-steps N] [--json]
        [--tolerance FLOAT] [--steps-method M] [--max-steps N] [--note-layer J] [--reduced-precision KIND[,KIND]]
        [--joint]
    python -m explain case --checkpoint DIR --data ICU_DIR --case-id ICU-00012 --hours 0,6,12,24,36,48 [--json]
    python -m explain cohort --checkpoint DIR --data DIR [--split test] [--rankings CSV] [--method shapley] [--json]
    python -m explain cohort --checkpoint DIR --data DIR --out [STORE] [--split all] [--shard-size N] [--overwrite]
        [--num-workers N] [--attributions [--n-steps N | --tolerance FLOAT ...]]
    torchrun --nproc_per_node N -m explain cohort ... --out STORE   (each process writes its share of the shards)
    python -m explain study create|list|progress|export|import|withdraw ...  (an expert-ranking study; study --help)

`cohort --out` precomputes every case's prediction, attention, exact Shapley values, leave-one-out and
pairwise interactions into a Parquet store (explain/store.py) that the dashboard's cohort pages read; STORE
defaults to <cohort>/explanations/<checkpoint hash prefix>/. A re-run resumes: complete shards are skipped.
A survival model's store holds one quantity (--quantity, --horizon; the dashboard reads the default one,
survival at the model's horizon) and each case's predicted curve. With --attributions the store also holds each
case's attribution table (what the case page's attributions CSV holds, for the predicted class or the survival
quantity: modality importance, note words, ECG leads and segments, tabular values) computed with the engine flags
as `case` takes them (default exactly 50 Gauss-Legendre steps; the dashboard's: --tolerance 0.05 --steps-method
gauss_then_trapezoid --max-steps 128); an image map is not stored, so images take Grad-CAM (no path integral).
Adding --attributions to a complete store computes only them.

A time-stamped (ICU) cohort is explained as of hours of a stay: --case-id is a stay with --hours, or one
sample id ("ICU-00012@24h") without. Each hour gives the risk of death within 48 h, the cross-modal
attention, the exact Shapley importance of the risk and the strongest attributions of each modality; an hour
at or after the stay's end is reported as not scored. `cohort` on such a cohort adds figure 2C: mean
attention and Shapley share per prediction hour, by outcome, beside the paper's numbers. `cohort --out` on such
a cohort stores one row per sample (a stay as of a prediction hour: sample id, stay id, hour) with the risk, the
attention each modality receives, the exact Shapley values of the risk and what was recorded: what figure 2C
and the dashboard's AUROC / AUPRC by hour are computed from (no --attributions: the ICU pages explain the risk
at an hour, not the predicted class, and have no attribution view).

Modalities are the checkpoint's declared ones. A survival model is explained through one quantity:
--quantity survival (S(horizon), the default) or risk (1 - S(horizon)), at --horizon (default the model's,
5 years for cancer).

`case` reports beside each Integrated Gradients map how well it adds up (steps, relative completeness error,
whether it is within --tolerance, precision). The engine's settings trade exactness for time: a paper-size
checkpoint (ResNet-50, BERT-base) explains in seconds with `--tolerance 0.05 --note-layer 11
--reduced-precision text` (benchmarks/results/paper_explain_latency.md); without them every map takes
exactly --n-steps Gauss-Legendre steps in float32, the note attributed at its word embeddings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys

from explain import study_cli

if __name__ == "__main__" and sys.argv[1:2] == ["study"]:
    # The study database needs no model: answer before the model stack is imported (transformers, Captum and
    # the encoders take seconds), so `python -m explain study ...` starts in about a third of the time.
    sys.exit(study_cli.main(sys.argv[2:]))

import torch  # noqa: E402

from explain.case import ExplainSettings, explain_case, jsonable  # noqa: E402
from explain.cohort import clinician_agreement, cohort_importance, ground_truth_agreement  # noqa: E402
from explain.image import IMAGE_METHODS  # noqa: E402
from explain.importance import METHODS  # noqa: E402
from explain.integrated import METHODS as STEPS_METHODS  # noqa: E402
from explain.store import (check_supported, checkpoint_hash, cohort_hash, default_location,  # noqa: E402
                           write_store)
from explain.targets import SURVIVAL_QUANTITIES, SurvivalTarget, explained_label, is_survival  # noqa: E402
from explain.timeline import (OUTCOME_GROUPS, PAPER_FIGURE_2C, cohort_over_time, explain_hours,  # noqa: E402
                              hour_summary, split_hours)
from neurofusion.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from neurofusion.data.annotations import read_rankings  # noqa: E402
from neurofusion.data.cohort import CohortReader  # noqa: E402
from neurofusion.data.errors import CohortError  # noqa: E402
from neurofusion.data.modalities import KINDS  # noqa: E402
from neurofusion.data.schema import SPLITS  # noqa: E402
from neurofusion.data.timed import open_cohort, parse_sample_id  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402
from neurofusion.ood import OODReference  # noqa: E402

# as the dashboard's case page (app/case_panels.py): a map whose relative completeness error is above this is
# called approximate when no tolerance was asked for
COMPLETE_ENOUGH = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    subparsers = {}
    for name in ("case", "cohort"):
        sub = subparsers[name] = commands.add_parser(name)
        sub.add_argument("--checkpoint", required=True)
        sub.add_argument("--data", required=True)
        sub.add_argument("--device", default="auto")
        sub.add_argument("--json", action="store_true")
        sub.add_argument("--quantity", default="survival", choices=SURVIVAL_QUANTITIES,
                         help="survival models: explain S(horizon) or the risk 1 - S(horizon)")
        sub.add_argument("--horizon", type=float, default=None,
                         help="survival models: the horizon in the model's time unit (default the model's)")
        if name == "case":
            sub.add_argument("--case-id", required=True)
            sub.add_argument("--image-method", default="integrated_gradients", choices=IMAGE_METHODS)
            sub.add_argument("--n-steps", type=_integer(2), default=None, metavar="N",
                             help="Integrated Gradients steps of every map (default 50; 16 per hour of a "
                                  "time-stamped stay); --tolerance chooses them per map instead")
            sub.add_argument("--hours", help="time-stamped cohorts: comma-separated hours of the stay --case-id, "
                                             "e.g. 0,6,12,24,36,48")
            sub.add_argument("--context", default="case", choices=("case", "alone"),
                             help="attribute with the other modalities present (case) or hidden (alone)")
            _add_engine_arguments(sub)
        else:
            sub.add_argument("--split", default=None, choices=("all", *SPLITS),
                             help="the cases explained (default test; all: every case, with --out only)")
            sub.add_argument("--rankings", help="clinician rankings CSV (default: the cohort's own, if any)")
            sub.add_argument("--method", default="shapley", choices=METHODS)
            sub.add_argument("--out", nargs="?", const="", default=None, metavar="STORE",
                             help="write the explanation store here (no value: <cohort>/explanations/<checkpoint "
                                  "hash prefix>/); under torchrun each process writes its share of the shards")
            sub.add_argument("--shard-size", type=int, default=256, help="cases per Parquet shard (with --out)")
            sub.add_argument("--num-workers", type=int, default=0,
                             help="DataLoader worker processes reading and preparing the cases of each shard "
                                  "(with --out; 0: this process)")
            sub.add_argument("--overwrite", action="store_true",
                             help="replace a store of another checkpoint, cohort or settings at --out")
            sub.add_argument("--attributions", action="store_true",
                             help="with --out: also store each case's attribution table (the case page's CSV) "
                                  "with the engine flags below")
            sub.add_argument("--n-steps", type=_integer(2), default=None, metavar="N",
                             help="with --attributions: Integrated Gradients steps of every map (default 50); "
                                  "--tolerance chooses them per map instead")
            _add_engine_arguments(sub)
    study_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "study":  # the study database: no model is loaded
        return study_cli.run(args)
    if args.command == "case":
        _check_engine_arguments(args, subparsers["case"])
    elif args.command == "cohort":
        _check_attribution_arguments(args, subparsers["cohort"])
    try:
        storing = args.command == "cohort" and args.out is not None
        if args.command == "cohort" and not storing:
            if args.split == "all":
                raise ValueError("--split all applies to --out (the explanation store); explain one split here")
            args.split = args.split or "test"
        ckpt = load_checkpoint(args.checkpoint, device=_rank_device(args.device) if storing else args.device)
        for warning in ckpt.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        cohort = open_cohort(args.data)
        predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
        if args.command == "case":
            _check_model_arguments(args, ckpt.model, subparsers["case"])
            result = _case(args, cohort, predictor, ckpt.ood)
        elif storing:
            if args.attributions:
                _check_model_arguments(args, ckpt.model, subparsers["cohort"])
            result = _store(args, cohort, predictor)
        else:
            result = _cohort(args, cohort, predictor)
    except (CheckpointError, CohortError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(jsonable(result), indent=2) if args.json else _text(result))
    return 0


def _add_engine_arguments(sub: argparse.ArgumentParser) -> None:
    """The Integrated Gradients engine's settings (ExplainSettings, explain.integrated); without them every
    map takes exactly --n-steps Gauss-Legendre steps in float32, the note attributed at its word embeddings."""
    engine = sub.add_argument_group(
        "Integrated Gradients engine", "how each attribution map is integrated: exactness traded for time (each "
        "map reports its steps and relative completeness error |sum of attributions - (f(x) - f(baseline))| / "
        "|f(x) - f(baseline)|)")
    engine.add_argument("--tolerance", type=_tolerance, default=None, metavar="FLOAT",
                        help="the relative completeness error each map must reach, in (0, 1), e.g. 0.05: steps are "
                             "chosen per map, doubling from 8 until the error is within it or --max-steps is "
                             "reached (the map then says it did not converge); default: exactly --n-steps steps")
    engine.add_argument("--steps-method", default="gausslegendre", choices=STEPS_METHODS,
                        help="quadrature of the path integral: gausslegendre (default, Captum's; fewest steps for "
                             "an error) or riemann_trapezoid (nested grids: a refinement reuses every gradient)")
    engine.add_argument("--max-steps", type=_integer(2), default=None, metavar="N",
                        help=f"with --tolerance: the most steps a map may take (default "
                             f"{ExplainSettings.max_steps}); more bounds the error better, fewer bounds the time")
    engine.add_argument("--note-layer", type=_integer(1), default=None, metavar="J",
                        help="attribute the note at the hidden states entering BERT layer J (1 to the model's "
                             "layers - 1) instead of its word embeddings: the layers below J run once per case, so "
                             "a step costs (layers - J) / layers of a full one. A token's score is then what its "
                             "position's layer-J representation contributes, which already mixes in the words the "
                             "first J layers attended to (context credited to a position), not what the word alone "
                             "contributes")
    engine.add_argument("--reduced-precision", type=_kinds, default=(), metavar="KIND[,KIND]",
                        help=f"modality kinds ({', '.join(KINDS)}) whose encoder runs in bfloat16 on the path: "
                             "measured 1.2-1.8x faster per path on a 2-core CPU, at some error in the map (the "
                             "fusion, the end points and the reported completeness error stay float32)")
    engine.add_argument("--joint", action="store_true",
                        help="every modality's path steps through one fusion pass (the panels finish together; "
                             "measured no faster on a 2-core CPU)")


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:  # also NaN
        raise argparse.ArgumentTypeError(f"expected a relative completeness error between 0 and 1 (exclusive), "
                                         f"e.g. 0.05, got {text!r}")
    return value


def _integer(minimum: int):
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, got {text!r}")
        return value
    return parse


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        what = f"unknown modality kind {', '.join(map(repr, unknown))}" if unknown else "no modality kind"
        raise argparse.ArgumentTypeError(f"{what}: expected comma-separated kinds from {', '.join(KINDS)}, "
                                         f"e.g. text or image,text, got {text!r}")
    return kinds


def _check_engine_arguments(args, parser: argparse.ArgumentParser) -> None:
    """The engine's flags that only make sense together (argparse-style error, exit code 2)."""
    if args.tolerance is None and args.max_steps is not None:
        parser.error(f"argument --max-steps: applies with --tolerance (steps chosen per map); without it every map "
                     f"takes exactly --n-steps steps, got --max-steps {args.max_steps} and no --tolerance")
    if args.tolerance is not None and args.n_steps is not None:
        parser.error(f"argument --n-steps: fixes every map's steps, --tolerance {args.tolerance:g} chooses them per "
                     f"map (up to --max-steps): give one of the two, got --n-steps {args.n_steps}")


def _check_attribution_arguments(args, parser: argparse.ArgumentParser) -> None:
    """cohort: --attributions needs --out, the engine's flags need --attributions (argparse-style error)."""
    if args.attributions and args.out is None:
        parser.error("argument --attributions: applies to --out (the explanation store); give --out STORE")
    given = [flag for flag in ("--n-steps", "--tolerance", "--max-steps", "--steps-method", "--note-layer",
                               "--reduced-precision", "--joint")
             if getattr(args, _dest(flag)) != parser.get_default(_dest(flag))]
    if given and not args.attributions:
        parser.error(f"argument {given[0]}: sets how the stored attributions are computed; it applies with "
                     "--attributions (and --out)")
    _check_engine_arguments(args, parser)


def _dest(flag: str) -> str:
    """The namespace attribute of a long option: "--n-steps" -> "n_steps"."""
    return flag.removeprefix("--").replace("-", "_")


def _check_model_arguments(args, model, parser: argparse.ArgumentParser) -> None:
    """The engine's flags against the loaded model: --note-layer a layer of each of its BERT note encoders other
    than the first, --reduced-precision kinds it declares (argparse-style error, exit code 2)."""
    declared = {spec.kind for spec in getattr(model, "specs", ())}
    absent = [kind for kind in args.reduced_precision if declared and kind not in declared]
    if absent:
        parser.error(f"argument --reduced-precision: this model has no {' or '.join(absent)} modality (its "
                     f"modalities' kinds: {', '.join(k for k in KINDS if k in declared)}), got "
                     f"{','.join(args.reduced_precision)}")
    if args.note_layer is None:
        return
    encoders = getattr(model, "encoders", {})
    layers = {name: len(encoder.bert.encoder.layer) for name, encoder in encoders.items()
              if getattr(encoder, "bert", None) is not None}
    if not layers:
        parser.error(f"argument --note-layer: this model has no BERT note encoder to attribute at layer "
                     f"{args.note_layer}; leave --note-layer out")
    for name, count in layers.items():
        if count < 2:
            parser.error(f"argument --note-layer: the model's note encoder ({name}) has 1 BERT layer, so its note "
                         f"can only be attributed at its word embeddings; leave --note-layer out, got "
                         f"{args.note_layer}")
        if args.note_layer >= count:
            parser.error(f"argument --note-layer: the model's note encoder ({name}) has {count} BERT layers, so the "
                         f"note can be attributed at the hidden states entering layers 1 to {count - 1}, got "
                         f"{args.note_layer}")


def _settings(args, n_steps: int, target: int | None = None) -> ExplainSettings:
    """The case command's ExplainSettings; ``n_steps``: the default when --n-steps is not given."""
    return ExplainSettings(args.image_method, n_steps if args.n_steps is None else args.n_steps,
                           target=target, context=args.context, **_engine_settings(args))


def _attribution_settings(args) -> ExplainSettings | None:
    """cohort --attributions: the stored attributions' ExplainSettings (None without the flag). No image map is
    stored (too large for a table), so an image takes Grad-CAM, which needs no path integral."""
    if not args.attributions:
        return None
    return ExplainSettings("grad_cam", 50 if args.n_steps is None else args.n_steps, **_engine_settings(args))


def _engine_settings(args) -> dict:
    """The engine's flags as ExplainSettings fields (--max-steps only when given: the default is the dataclass')."""
    engine = {} if args.max_steps is None else {"max_steps": args.max_steps}
    return {"tolerance": args.tolerance, "steps_method": args.steps_method, "note_layer": args.note_layer,
            "reduced_precision": args.reduced_precision, "joint": args.joint, **engine}


def _completeness(explanation) -> dict[str, dict]:
    """Declared modality -> its Integrated Gradients map's completeness, JSON-ready (maps by other methods:
    absent)."""
    return {name: jsonable(dataclasses.asdict(value)) for name, value in explanation.completeness.items()}


def _rank_device(device: str) -> str:
    """Under torchrun on a GPU machine each process takes its own GPU (LOCAL_RANK); otherwise ``device``."""
    if device == "auto" and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return device


def _store(args, cohort: CohortReader, predictor: Predictor) -> dict:
    """Write (or resume) the explanation store of --split; under torchrun (RANK / WORLD_SIZE set) this
    process writes the shards i % world_size == rank, with gloo barriers around rank 0's manifest."""
    split = args.split or "test"
    survival = _survival(args, predictor)  # a classifier given --quantity / --horizon: ValueError naming them
    check_supported(predictor, cohort, survival, args.attributions)  # a time-stamped cohort: no attributions
    ids = cohort.case_ids if split == "all" else cohort.ids(split)
    if not ids:
        raise CohortError(f"no cases in split '{split}'", path=cohort.root)
    checkpoint_sha = checkpoint_hash(args.checkpoint)
    out = args.out or str(default_location(cohort.root, checkpoint_sha))
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    barrier = None
    if world_size > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo")  # barriers only: no tensor is exchanged, so gloo serves CPU and GPU
        barrier = dist.barrier
    try:
        report = write_store(out, predictor, cohort, ids, checkpoint_sha=checkpoint_sha,
                             cohort_sha=cohort_hash(cohort), settings={"split": split}, shard_size=args.shard_size,
                             rank=rank, world_size=world_size, overwrite=args.overwrite, barrier=barrier,
                             progress=True, num_workers=args.num_workers, survival=survival,
                             attributions=_attribution_settings(args))
    finally:
        if barrier is not None:
            dist.destroy_process_group()
    seconds = report.seconds - report.stage_seconds.get("attributions", 0.0)  # the core shards' (attributions apart)
    return {"store": str(out), "cases": len(ids), "split": split,
            "explained": explained_label(predictor.model, survival), "rank": rank, "world_size": world_size,
            "shards": report.shards, "written": report.written, "skipped": report.skipped,
            "cases_explained": report.cases, "seconds": round(seconds, 3),
            "cases_per_second": round(report.cases / seconds, 2) if report.cases and seconds > 0 else None,
            **({} if not args.attributions else {
                "attributions_written": report.attributions_written,
                "attributions_skipped": report.attributions_skipped, "attributed_cases": report.attributed_cases,
                "attribution_seconds": round(report.stage_seconds.get("attributions", 0.0), 3)})}


def _survival(args, predictor: Predictor) -> SurvivalTarget | None:
    """The explained quantity of a survival model; None for a classifier (which has no such choice)."""
    if not is_survival(predictor.model):
        if args.horizon is not None or args.quantity != "survival":
            raise ValueError("--quantity and --horizon apply to survival models; this model is a classifier")
        return None
    return SurvivalTarget(args.quantity, args.horizon)


def _case(args, cohort: CohortReader, predictor: Predictor, ood: OODReference | None) -> dict:
    if getattr(cohort, "timed", False):
        return _stay_hours(args, cohort, predictor, ood)
    if args.hours is not None:
        raise ValueError(f"--hours applies to a time-stamped (ICU) cohort; {cohort.root} is not one")
    case = cohort[args.case_id]
    settings = _settings(args, n_steps=50)
    survival = _survival(args, predictor)
    explanation = explain_case(predictor, case, settings, ood=ood, survival=survival)
    result = explanation.to_dict()
    if survival is not None:  # a classifier's output stays as it was: its classes say what is explained
        result["explained"] = survival.label(predictor.model)
    result["completeness"] = _completeness(explanation)
    return result


def _stay_hours(args, cohort, predictor: Predictor, ood: OODReference | None) -> dict:
    """A stay explained at each of --hours (or a sample id at its hour): hour_summary per scored hour, and
    "not scored" with the reason for an hour at or after the stay's end."""
    if "@" in args.case_id:
        if args.hours is not None:
            raise ValueError(f"--case-id {args.case_id} is a sample id (a stay at one hour); give the stay id "
                             f"({args.case_id.rpartition('@')[0]}) with --hours, or leave --hours out")
        stay_id, hour = parse_sample_id(args.case_id)
        hours = [hour]
    elif args.hours is None:
        raise ValueError(f"{cohort.root} is a time-stamped cohort: give --hours (e.g. 0,6,12,24,36,48) with the stay "
                         f"{args.case_id}, or a sample id such as {args.case_id}@24h")
    else:
        stay_id, hours = args.case_id, _hours(args.hours)
    if args.quantity != "survival" or args.horizon is not None:
        raise ValueError("--quantity and --horizon apply to survival models; an ICU stay is explained through its "
                         "risk of death within 48 h")
    settings = _settings(args, n_steps=16, target=1)
    inside, outside = split_hours(cohort, stay_id, hours)
    explained = {item.hour: item for item in explain_hours(predictor, cohort, stay_id, inside, settings, ood=ood)}
    stay = cohort.stays.loc[stay_id]
    entries = []
    for hour in hours:
        if hour in outside:
            entries.append({"hour": hour, "scored": False, "message": outside[hour]})
            continue
        item = explained[hour]
        entries.append({"scored": True, **hour_summary(item), "ood": item.explanation.ood,
                        "input_messages": (item.explanation.inputs or {}).get("messages", []),
                        "completeness": _completeness(item.explanation)})
    return {"stay_id": stay_id, "stay_hours": float(stay["stay_hours"]), "died": bool(stay["died"]),
            "explained": f"risk: probability of {predictor.model.classes[1]} (death within "
                         f"{cohort.horizon_h:g} h) from what was recorded by each hour",
            "titles": {m.name: m.title for m in cohort.modalities}, "hours": entries,
            "recorded_in_stay": cohort.recorded_in_stay(stay_id)}


def _hours(text: str) -> list[float]:
    try:
        hours = [float(h) for h in text.split(",") if h.strip()]
    except ValueError:
        raise ValueError(f"--hours must be comma-separated hours since admission, e.g. 0,6,12,24, got {text!r}"
                         ) from None
    if not hours:
        raise ValueError("--hours is empty: give comma-separated hours since admission, e.g. 0,6,12,24")
    return hours


def _cohort(args, cohort: CohortReader, predictor: Predictor) -> dict:
    ids = cohort.ids(args.split)
    if not ids:
        raise CohortError(f"no cases in split '{args.split}'", path=cohort.root)
    cases = [cohort[i] for i in ids]
    importance = cohort_importance(predictor, cases, progress=True, survival=_survival(args, predictor))
    survival_model = is_survival(predictor.model)
    classes = sorted(set(importance.table["label"].dropna())) if survival_model else predictor.model.classes
    result = {"cases": len(cases), "split": args.split, "method": args.method, "explained": importance.explained,
              "modalities": list(importance.names), "not_defined": {}}
    for key, group in (("importance_by_true_class", "label"), ("importance_by_predicted_class", "predicted")):
        result[key] = importance.by_class(args.method, group, classes).to_dict(orient="index")
        for cls, cells in importance.not_defined(args.method, group, classes, f"{args.split} cases").items():
            if len(set(cells.values())) == 1 and len(cells) == len(result[key][cls]):  # the class has no cases
                result["not_defined"][f"{key}.{cls}"] = next(iter(cells.values()))
            else:
                result["not_defined"].update({f"{key}.{cls}.{m}": reason for m, reason in cells.items()})
    if importance.attention is not None:  # an architecture with cross-modal attention, from the same pass
        attention = importance.attention
        result["attention_by_true_class"] = {c: m.tolist() for c, m in attention.by_true.items()}
        result["attention_by_predicted_class"] = {c: m.tolist() for c, m in attention.by_predicted.items()}
    rankings = read_rankings(args.rankings, cohort=cohort) if args.rankings else cohort.rankings()
    if rankings is not None:
        agreement = clinician_agreement(importance, rankings, args.method)
        result["clinician_agreement"] = agreement["summary"].to_dict(orient="index")
        result["inter_rater"] = agreement["inter_rater"]
    truth = cohort.ground_truth()
    if truth is not None and not getattr(cohort, "timed", False):  # a timed cohort's truth is per stay, not per sample
        result["ground_truth_agreement"] = ground_truth_agreement(importance, truth).to_dict(orient="index")
    if getattr(cohort, "timed", False):
        figure = cohort_over_time(predictor, cohort, args.split)
        result["figure_2c"] = figure.to_dict(orient="records")
        result["paper_figure_2c"] = {f"{h:g}": v for h, v in PAPER_FIGURE_2C.items()}
    return result


def _text(result: dict) -> str:
    if "store" in result:
        speed = "" if result["cases_per_second"] is None else f", {result['cases_per_second']:.1f} cases/s"
        return (f"explanation store {result['store']}: {result['cases']} {result['split']} cases in "
                f"{result['shards']} shards; rank {result['rank']} of {result['world_size']} wrote "
                f"{len(result['written'])} ({result['cases_explained']} cases in {result['seconds']:.1f} s{speed}), "
                f"skipped {len(result['skipped'])} already complete; explains {result['explained']}"
                + ("" if "attributions_written" not in result else
                   f"; attributions: wrote {len(result['attributions_written'])} shard(s) "
                   f"({result['attributed_cases']} cases in {result['attribution_seconds']:.1f} s), skipped "
                   f"{len(result['attributions_skipped'])} already complete"))
    if "stay_id" in result:
        return _stay_text(result)
    if "case_id" in result:
        probabilities = ", ".join(f"{c} {p:.2f}" for c, p in result["probabilities"].items())
        shapley = result["modality_importance"]["shapley"]
        explained = result.get("explained", "probability")
        what = "probability of the predicted class" if explained == "probability" else explained
        lines = [f"case {result['case_id']}: label {result['label']}, "
                 + (f"predicted {result['predicted']}" if explained == "probability" else
                    f"{explained} {next(iter(result['probabilities'].values())):.3f}"),
                 *([f"  probabilities: {probabilities}"] if explained == "probability" else []),
                 f"  Shapley ({what}): "
                 + ", ".join(f"{m} {'missing' if v is None else f'{v:+.3f}'}" for m, v in shapley.items())]
        panels = result.get("panels")
        if panels is None:  # cardio's declaration: its four fields
            panels = {name: {"kind": kind, "explanation": result[field]}
                      for name, kind, field in (("note", "text", "note"), ("ECG", "signal", "signal")) if result[field]}
        for name, panel in panels.items():
            lines += _panel_lines(name, panel["kind"], panel["explanation"])
        lines += _completeness_lines(result["completeness"])
        lines += _ood_lines(result["ood"])
        messages = (result["inputs"] or {}).get("messages", [])
        lines += [f"  input: {m}" for m in messages] or ["  inputs: the model can use everything the case holds"]
        return "\n".join(lines)
    lines = [f"{result['cases']} {result['split']} cases, importance = {result['method']}"]
    for cls, row in result["importance_by_true_class"].items():
        lines.append(f"  {cls:<26} " + ", ".join(f"{m} {_number(v, '+.3f')}" for m, v in row.items()))
    lines += [f"  n/a {where.split('.', 1)[1]}: {reason}" for where, reason in result["not_defined"].items()
              if where.startswith("importance_by_true_class.")]
    if "clinician_agreement" in result:
        overall = result["clinician_agreement"]["all"]
        ceiling = result["inter_rater"]["mean_pairwise_tau"]
        lines.append(f"  Kendall tau vs clinicians: {_mean_ci(overall)} (inter-rater {_number(ceiling['mean'])}, "
                     f"W {_number(result['inter_rater']['kendalls_w'])})")
        reasons = [overall.get("reason"), ceiling.get("reason"), result["inter_rater"].get("kendalls_w_reason")]
        lines += [f"  n/a: {reason}" for reason in dict.fromkeys(r for r in reasons if r)]
    if "ground_truth_agreement" in result:
        for method, row in result["ground_truth_agreement"].items():
            lines.append(f"  vs ground truth, {method}: tau {_number(row['mean_tau'])}, "
                         f"Spearman {_number(row['spearman_score_vs_strength'])}"
                         + (f" ({row['reason']})" if row.get("reason") else ""))
    if "figure_2c" in result:
        lines += _figure_2c_lines(result["figure_2c"])
    return "\n".join(lines)


def _stay_text(result: dict) -> str:
    """Per hour: the risk, what was recorded, Shapley importance and attention, and the strongest evidence."""
    titles = result["titles"]
    ending = "death" if result["died"] else "discharge"
    lines = [f"stay {result['stay_id']}: ended by {ending} at {result['stay_hours']:.1f} h; {result['explained']}",
             "(Shapley values in risk units; attributions of vital signs, labs, notes and demographics in logit "
             "units of the risk: + raises it)"]
    for entry in result["hours"]:
        if not entry["scored"]:
            lines.append(f"hour {entry['hour']:g}: {entry['message']}")
            continue
        recorded = [titles[m] for m, ok in entry["present"].items() if ok]
        later = [titles[m] for m, ok in entry["present"].items() if not ok and result["recorded_in_stay"][m]]
        never = [titles[m] for m, ok in entry["present"].items() if not ok and not result["recorded_in_stay"][m]]
        lines.append(f"hour {entry['hour']:g}: risk {entry['risk']:.3f} (label {entry['label']}; "
                     f"{entry['risk_nothing_recorded']:.3f} with nothing recorded)")
        lines.append(f"  recorded: {', '.join(recorded) or 'nothing'}"
                     + (f"; nothing yet of {', '.join(later)}" if later else "")
                     + (f"; never in this stay: {', '.join(never)}" if never else ""))
        lines.append("  importance (exact Shapley, share): " + ", ".join(
            f"{titles[m]} {v:+.3f} ({_percent(entry['share'][m])})" for m, v in entry["shapley"].items()
            if entry["present"][m]))
        if entry["attention_received"] is not None:
            lines.append("  attention received: " + ", ".join(
                f"{titles[m]} {v:.2f}" for m, v in entry["attention_received"].items() if entry["present"][m]))
        for name, body in entry["attributions"].items():
            lines.append(f"  {titles.get(name, name)}: {_attribution_text(body)}")
        if entry["completeness"]:
            lines.append("  Integrated Gradients completeness: " + "; ".join(
                f"{titles.get(m, m)} {_map_completeness(c)}" for m, c in entry["completeness"].items()))
        lines += [f"  {line.strip()}" for line in _ood_lines(entry["ood"]) if "OUT OF" in line]
        lines += [f"  input: {m}" for m in entry["input_messages"]]
    return "\n".join(lines)


def _attribution_text(body: dict) -> str:
    """One line of a modality's strongest attributions (risk logit units; + raises the risk)."""
    if "top_variables" in body:
        period = body["top_period"]
        return (", ".join(f"{v['variable'].replace('_', ' ')} {_score(v['attribution'])}"
                          for v in body["top_variables"][:3])
                + f"; most attribution {period['start_h']:.1f}-{period['end_h']:.1f} h")
    if "phrases" in body:
        return "; ".join(f"\"{p['text']}\"" + (f" (written at {p['written_h']:.1f} h)" if p["written_h"] is not None
                                                else "") + f" {_score(p['score'])}" for p in body["phrases"][:3])
    return ", ".join(f"{r['name'].replace('_', ' ')} {_value(r['value'])}{' ' + r['unit'] if r['unit'] else ''}"
                     + (f" ({r['age_h']:.1f} h old)" if r["age_h"] is not None else "")
                     + (" [out of range]" if r["outside_range"] else "") + f" {_score(r['score'])}"
                     for r in body["top"][:3])


def _figure_2c_lines(records: list[dict]) -> list[str]:
    """Mean attention received (|Shapley| share) per hour and modality, by outcome and over all samples,
    with the paper's attention beside it."""
    lines = ["  figure 2C: mean attention received / mean |Shapley| share of the risk, per hour and outcome "
             "(n samples); paper: attention, section 7.2",
             f"  {'hour':>5} {'modality':<14} " + "".join(f"{g:<22}" for g in OUTCOME_GROUPS) + f"{'all':<14} paper"]
    cells: dict[tuple[float, str], dict[str, dict]] = {}
    for row in records:
        cells.setdefault((row["hour"], row["modality"]), {})[row["outcome"]] = row
    for (hour, modality), groups in cells.items():
        pooled = {key: _pooled(groups.values(), key) for key in ("attention", "share")}
        paper = PAPER_FIGURE_2C.get(hour, {}).get(modality)
        lines.append(f"  {hour:>5g} {modality:<14} "
                     + "".join(f"{_pair(groups[g]) + ' (' + str(groups[g]['n']) + ')':<22}" for g in OUTCOME_GROUPS)
                     + f"{_pair(pooled):<14} {'' if paper is None else f'{paper:.2f}'}")
    return lines


def _pooled(groups, key: str) -> float | None:
    """The groups' means pooled, weighted by the samples each mean is over; None when no group has one."""
    defined = [g for g in groups if g["n_explained"] and g[key] is not None and not math.isnan(g[key])]
    n = sum(g["n_explained"] for g in defined)
    return sum(g[key] * g["n_explained"] for g in defined) / n if n else None


def _pair(row: dict) -> str:
    return f"{_number(row['attention'], '.2f')} / {_number(row['share'], '.2f')}"


def _score(value: float) -> str:
    """An attribution in logit units, 3 significant digits (small ones are not rounded away to +0.000)."""
    return f"{value:+.3g}"


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _panel_lines(name: str, kind: str, body) -> list[str]:
    """One line summarising a modality's explanation (text: top phrases; signal: strongest segment;
    tabular: the three features with the largest |score|)."""
    if kind == "text":
        return [f"  {name} phrases: " + "; ".join(f"\"{p['text']}\" {p['score']:+.3f}" for p in body["phrases"][:3])]
    if kind == "signal":
        seg = body["segments"][0]
        return [f"  {name}: strongest segment {seg['start_s']:.1f}-{seg['end_s']:.1f} s"]
    if kind == "tabular":
        scored = sorted((r for r in body if r["score"] is not None), key=lambda r: -abs(r["score"]))[:3]
        return [f"  {name}: " + ", ".join(f"{r['name']} {r['score']:+.3f}" for r in scored)] if scored else []
    return []


def _completeness_lines(completeness: dict[str, dict]) -> list[str]:
    """How well each Integrated Gradients map adds up, one line per map."""
    if not completeness:
        return []
    return ["  Integrated Gradients completeness (relative error |sum of attributions - (f(x) - f(baseline))| / "
            "|f(x) - f(baseline)|):", *(f"    {m}: {_map_completeness(c)}" for m, c in completeness.items())]


def _map_completeness(c: dict) -> str:
    """'50 gausslegendre steps, error 0.9 %' and, as they apply, whether it is within the tolerance, a warning
    above COMPLETE_ENOUGH without one, and the encoder's reduced precision."""
    text = f"{c['n_steps']} {c['method']} steps, error {_error(c['relative_error'])}"
    if c["converged"] is True:
        text += f", within the tolerance {_error(c['tolerance'])}"
    elif c["converged"] is False:
        text += f", NOT within the tolerance {_error(c['tolerance'])} at --max-steps: the map is approximate"
    elif c["relative_error"] is not None and c["relative_error"] > COMPLETE_ENOUGH:
        text += (f" (above {_error(COMPLETE_ENOUGH)}: the map is approximate; raise --n-steps or give "
                 "--tolerance)")
    if c["precision"] != "float32":
        text += f", encoder in {c['precision']}"
    return text


def _error(value: float) -> str:
    """A relative error as a percentage, 2 significant digits (0.00053 -> 0.053 %); None (NaN) -> n/a."""
    return "n/a" if value is None else f"{100 * value:.2g} %"


def _number(value, spec: str = ".3f") -> str:
    """A number, or "n/a" for one that is not defined (None in JSON, NaN in memory); the reason is printed
    beside it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def _mean_ci(row: dict) -> str:
    return f"{_number(row['mean'])} [{_number(row['ci_low'])}, {_number(row['ci_high'])}]"


def _ood_lines(ood: dict | None) -> list[str]:
    if ood is None:
        return ["  out of distribution: not checked (the checkpoint has no reference; "
                "python -m neurofusion.ood fit adds one)"]
    lines = [f"  OUT OF DISTRIBUTION: {m} is unlike the training data (distance {c['distance']:.1f} > threshold "
             f"{c['threshold']:.1f}, exceeded by {100 * c['false_alarm_rate']:.1f} % of held-out training cases)"
             for m, c in ood.items() if c["flagged"]]
    within = [m for m, c in ood.items() if not c["flagged"]]
    if within:
        lines.append(f"  within the training data's range: {', '.join(within)}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
