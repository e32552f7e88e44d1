"""Command line: explain one case, or a cohort.

    python -m explain case --checkpoint DIR --data DIR --case-id ID [--image-method M] [--n-steps N] [--json]
    python -m explain cohort --checkpoint DIR --data DIR [--split test] [--rankings CSV] [--method shapley] [--json]

Modalities are the checkpoint's declared ones. A survival model is explained through one quantity:
--quantity survival (S(horizon), the default) or risk (1 - S(horizon)), at --horizon (default the model's,
5 years for cancer).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from explain.attention import cohort_attention
from explain.case import ExplainSettings, explain_case, jsonable
from explain.cohort import clinician_agreement, cohort_importance, ground_truth_agreement
from explain.image import IMAGE_METHODS
from explain.importance import METHODS
from explain.targets import SURVIVAL_QUANTITIES, SurvivalTarget, is_survival
from neurofusion.checkpoint import CheckpointError, load_checkpoint
from neurofusion.data.annotations import read_rankings
from neurofusion.data.cohort import CohortReader
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import SPLITS
from neurofusion.inference import Predictor
from neurofusion.ood import OODReference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("case", "cohort"):
        sub = commands.add_parser(name)
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
            sub.add_argument("--n-steps", type=int, default=50)
            sub.add_argument("--context", default="case", choices=("case", "alone"),
                             help="attribute with the other modalities present (case) or hidden (alone)")
        else:
            sub.add_argument("--split", default="test", choices=SPLITS)
            sub.add_argument("--rankings", help="clinician rankings CSV (default: the cohort's own, if any)")
            sub.add_argument("--method", default="shapley", choices=METHODS)
    args = parser.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint, device=args.device)
        for warning in ckpt.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        cohort = CohortReader(args.data)
        predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
        if args.command == "case":
            result = _case(args, cohort, predictor, ckpt.ood)
        else:
            result = _cohort(args, cohort, predictor)
    except (CheckpointError, CohortError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(jsonable(result), indent=2) if args.json else _text(result))
    return 0


def _survival(args, predictor: Predictor) -> SurvivalTarget | None:
    """The explained quantity of a survival model; None for a classifier (which has no such choice)."""
    if not is_survival(predictor.model):
        if args.horizon is not None or args.quantity != "survival":
            raise ValueError("--quantity and --horizon apply to survival models; this model is a classifier")
        return None
    return SurvivalTarget(args.quantity, args.horizon)


def _case(args, cohort: CohortReader, predictor: Predictor, ood: OODReference | None) -> dict:
    case = cohort[args.case_id]
    settings = ExplainSettings(args.image_method, args.n_steps, context=args.context)
    survival = _survival(args, predictor)
    result = explain_case(predictor, case, settings, ood=ood, survival=survival).to_dict()
    if survival is not None:  # a classifier's output stays as it was: its classes say what is explained
        result["explained"] = survival.label(predictor.model)
    return result


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
    if predictor.model.config.architecture == "neurofusion":
        attention = cohort_attention(predictor, cases)
        result["attention_by_true_class"] = {c: m.tolist() for c, m in attention.by_true.items()}
        result["attention_by_predicted_class"] = {c: m.tolist() for c, m in attention.by_predicted.items()}
    rankings = read_rankings(args.rankings, cohort=cohort) if args.rankings else cohort.rankings()
    if rankings is not None:
        agreement = clinician_agreement(importance, rankings, args.method)
        result["clinician_agreement"] = agreement["summary"].to_dict(orient="index")
        result["inter_rater"] = agreement["inter_rater"]
    truth = cohort.ground_truth()
    if truth is not None:
        result["ground_truth_agreement"] = ground_truth_agreement(importance, truth).to_dict(orient="index")
    return result


def _text(result: dict) -> str:
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
    return "\n".join(lines)


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
