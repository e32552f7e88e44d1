"""Command line: ``python -m neurofusion.data {generate,validate,summary,preview}``."""

from __future__ import annotations

import argparse
import json
import sys

from neurofusion.data.cohort import CohortReader, check_cohort, cohort_summary
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import SPLITS
from neurofusion.data.tasks import TASKS
from neurofusion.data.timed import is_timed, open_cohort, timed_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurofusion.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate a synthetic cohort with known ground truth")
    gen.add_argument("--task", choices=sorted(TASKS), default="cardio")
    gen.add_argument("--n", type=int, required=True, help="number of cases in the whole cohort")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, help="an empty or new folder")
    gen.add_argument("--splits", default=",".join(SPLITS),
                     help="comma-separated splits to write (default: all); the cases are the same either way")
    gen.add_argument("--signal-format", choices=("16", "212"), default="16",
                     help="WFDB storage: 16-bit (1 uV) or packed 12-bit 212 (5 uV, 25%% smaller)")
    gen.add_argument("--colour-format", choices=("rgb", "palette"), default="rgb",
                     help="colour images (histopathology): lossless 8-bit RGB PNG, or 8-bit palette PNG "
                          "(256 colours per image, each channel within a few levels; about 45%% of the size)")
    gen.add_argument("--interaction-share", type=_share, default=0.0,
                     help="probability in [0, 1] that a case is decided by a cross-modal interaction rule "
                          "(cardio, cancer, icu; default 0: the additive cohort)")
    gen.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")

    val = commands.add_parser("validate", help="read every file of a cohort folder and report all problems")
    val.add_argument("folder")
    val.add_argument("--checkpoint", default=None,
                     help="also report what this checkpoint's model can use of the cohort: columns it expects "
                          "under other names, columns it ignores, unknown categories, ECG leads")
    val.add_argument("--max-warnings", type=int, default=20, help="warnings to print before a count (default 20)")

    summ = commands.add_parser("summary", help="print a cohort's counts and missingness")
    summ.add_argument("folder")
    summ.add_argument("--json", action="store_true", help="print JSON instead of text")

    prev = commands.add_parser("preview", help="render one case's four modalities to a PNG")
    prev.add_argument("folder")
    prev.add_argument("--case-id", required=True)
    prev.add_argument("--out", required=True, help="PNG file to write (its folder is created if needed)")
    prev.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            from neurofusion.data.synthetic.generate import generate_cohort  # renderers load only when needed

            splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
            out = generate_cohort(args.task, args.n, args.seed, args.out, splits=splits,
                                  workers=args.workers, signal_format=args.signal_format,
                                  colour_format=args.colour_format, interaction_share=args.interaction_share)
            reader = open_cohort(out)
            what = f"{len(reader.stays)} stays ({len(reader)} samples)" if getattr(reader, "timed", False) else (
                f"{len(reader)} cases")
            print(f"wrote {what} to {out}")
        elif args.command == "validate":
            if _is_timed_folder(args.folder):
                return _validate_timed(args.folder)
            return _validate(args.folder, args.checkpoint, args.max_warnings)
        elif args.command == "preview":
            from neurofusion.data.preview import render_case_preview

            reader = CohortReader(args.folder)
            if args.case_id not in reader.case_ids:
                raise CohortError(f"case {args.case_id!r} is not in the cohort", path=reader.root)
            print(f"wrote {render_case_preview(reader, args.case_id, args.out, overwrite=args.force)}")
        elif _is_timed_folder(args.folder):
            summary = timed_summary(open_cohort(args.folder))
            print(json.dumps(summary, indent=2) if args.json else _format_timed_summary(summary))
        else:
            summary = cohort_summary(CohortReader(args.folder))
            print(json.dumps(summary, indent=2) if args.json else _format_summary(summary))
    except (CohortError, ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _share(text: str) -> float:
    """--interaction-share: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (a share of cases), got {text}")
    return value


def _validate(folder: str, checkpoint: str | None, max_warnings: int) -> int:
    """Errors (exit 1) and warnings for every file; with a checkpoint, what its model can use of the data."""
    spec, case_reports = None, []
    if checkpoint is not None:
        spec = _checkpoint_spec(checkpoint)
        from neurofusion.inputs import case_input_report

    def on_case(case) -> None:
        if spec is not None:
            case_reports.append(case_input_report(spec, case))

    check = check_cohort(folder, on_case=on_case)
    for problem in check.errors:
        print(f"error: {problem}", file=sys.stderr)
    _print_capped([f"warning: {w}" for w in check.warnings], max_warnings)
    if spec is not None and check.reader is not None:
        from neurofusion.inputs import cohort_input_report

        report = cohort_input_report(spec, check.reader, case_reports)
        messages = report.messages()
        print(f"inputs of the model in {checkpoint}: {len(report.matched)} of "
              f"{len(report.matched) + len(report.unmatched)} tabular features found"
              + ("; everything the cohort holds is usable" if not messages else ""))
        _print_capped([f"input: {m}" for m in messages], max_warnings)
    if check.errors:
        print(f"{len(check.errors)} problem(s) found in {folder}", file=sys.stderr)
        return 1
    warned = f", {len(check.warnings)} warning(s)" if check.warnings else ""
    print(f"{folder}: valid ({len(check.reader)} cases, every file read{warned})")
    return 0


def _is_timed_folder(folder: str) -> bool:
    from pathlib import Path

    from neurofusion.data._cohort_table import _read_info

    return Path(folder).is_dir() and is_timed(_read_info(Path(folder) / "cohort.json"))


def _validate_timed(folder: str) -> int:
    """A time-stamped cohort: opening it checks every row of its tables (stay, time within the stay, unit,
    monotonic streams); then every sample is built as of its hour."""
    reader = open_cohort(folder)
    for case_id in reader.case_ids:
        reader[case_id]
    artefacts = sum(reader.vitals.artefacts.values()) + sum(reader.labs.artefacts.values())
    print(f"{folder}: valid ({len(reader.stays)} stays, {len(reader)} samples at hours "
          f"{', '.join(f'{h:g}' for h in reader.hours)}; {len(reader.vitals.rows)} vital-sign and "
          f"{len(reader.labs.rows)} lab rows, {artefacts} outside their plausible range (kept, as recorded), "
          f"{len(reader.notes)} notes)")
    return 0


def _format_timed_summary(s: dict) -> str:
    kind = "SYNTHETIC cohort" if s["synthetic"] else "cohort"
    lines = [f"{kind} {s['root']} (time-stamped, task {s['task']}): {s['stays']} stays, {s['samples']} samples",
             "  splits    " + ", ".join(f"{k} {v}" for k, v in s["splits"].items()),
             f"  outcome   {s['died']} died in the ICU ({s['mortality_pct']}%), median stay {s['median_stay_h']} h",
             "  samples   " + ", ".join(f"{h} h: {n} ({p}% die within 48 h)" for h, n, p in s["by_hour"]),
             "  modality  per stay " + ", ".join(f"{k} {v}%" for k, v in s["stay_modality_pct"].items()),
             "  missing   per stay " + ", ".join(f"{k} {v}%" for k, v in s["stays_missing_pct"].items())]
    return "\n".join(lines)


def _checkpoint_spec(path: str):
    """The input spec from a checkpoint's config.json (weights are loaded and checked too, on the CPU)."""
    from neurofusion.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path, device="cpu").config.input_spec()
    except CheckpointError as err:
        raise CohortError(f"--checkpoint: {err}") from None


def _print_capped(lines: list[str], cap: int) -> None:
    for line in lines[:cap]:
        print(line)
    if len(lines) > cap:
        print(f"... and {len(lines) - cap} more (see --max-warnings)")


def _format_summary(s: dict) -> str:
    kind = "SYNTHETIC cohort" if s["synthetic"] else "cohort"
    lines = [f"{kind} {s['root']} ({s['task'] or 'task not stated'}): {s['cases']} cases"]
    for key in ("splits", "classes", "sites"):
        if key == "classes" and s.get("outcome") == "survival":
            lines.append(f"  outcome   survival: {s['events']} events, {s['censored']} censored, "
                         f"median follow-up {s['median_time']}")
            continue
        lines.append(f"  {key:<9} " + ", ".join(f"{k} {v}" for k, v in s[key].items()))
    lines.append("  modality  " + ", ".join(f"{k} {v}%" for k, v in s["modality_available_pct"].items()))
    lines.append(
        f"  missing   complete {s['complete_pct']}%, one modality {s['missing_one_pct']}%, "
        f"two or more {s['missing_two_plus_pct']}% ({s['mean_modalities_per_case']} modalities per case)"
    )
    lines.append(f"  tabular   {s['tabular_features']} columns")
    raters = ", ".join(s["raters"]) or "none"
    lines.append(f"  rankings  {s['ranked_cases']} cases ranked by {raters}")
    lines.append(f"  ground truth: {'yes' if s['ground_truth'] else 'no'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
