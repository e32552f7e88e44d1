"""The `study` command: set up and run an expert-ranking study from the command line.

    python -m explain study create --db URL --name N --cohort DIR --checkpoint DIR [--cases all|split|stratified]
          [--split test] [--n 40] [--seed 0] --raters "a,b,c" [--protocol blinded|unblinded] [--allow-ties]
          [--no-reveal] [--reveal-method shapley]
    python -m explain study list --db URL
    python -m explain study progress --db URL --study NAME
    python -m explain study export --db URL --study NAME --out rankings.csv [--history history.csv]
    python -m explain study import --db URL --study NAME --rankings rankings.csv [--protocol blinded|unblinded]
    python -m explain study withdraw --db URL --study NAME [--rater R] --reason TEXT

--db is an SQLAlchemy URL: sqlite:///path/studies.sqlite, or postgresql+psycopg://user@host/db for a study shared
across sites. Default: $NEUROFUSION_STUDY_DB, else studies.sqlite in $NEUROFUSION_STUDY_DIR or in the
repository's studies/ folder.

create: the cases are every case of the cohort (--cases all), one split (--cases split --split test), or a
stratified sample of --n cases by class (survival: event) and missingness pattern, drawn with --seed from the
whole cohort, or from one split with --split (the paper's figure 2D: --cases stratified --split test --n 100).
--raters is a comma-separated list of names; "name <email>" binds a rater to the identity they log in with
(Streamlit OIDC), so only that login can rate as them. The cohort's and checkpoint's SHA-256 hashes are
recorded; the model's weights are not loaded (only config.json).
--no-reveal keeps the model's answer hidden from raters even after they submit; --reveal-method is the
ranking then revealed.

export writes the cohort's clinician_rankings.csv format (the latest ranking per rater and case; skips and
withdrawn rows left out), so a study's results load anywhere that file does; --history also writes every
submission row (revisions, skips, withdrawn rows) as a CSV. import reads such a file into the study:
validated against the study's cohort and each case's modalities, raters not yet in the study are added, and
importing the same file twice adds nothing. withdraw marks a rater (with --rater) or the whole study as
withdrawn, with the reason; nothing is deleted.

Errors are printed as "error: ..." and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from neurofusion.data.cohort import CohortReader
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import SPLITS
from neurofusion.studies import (PROTOCOLS, REVEAL_METHODS, SELECTIONS, Study, StudyError, StudyStore,
                                 add_raters_identities, create_study, default_url, masked_url, parse_raters,
                                 study_history)

DEFAULT_SAMPLE = 40


# ------------------------------------------------------------------------------------------- shared
def study_cohort(study: Study) -> CohortReader | None:
    """The study's cohort for validating imports, or None when its folder is gone (the study's own cases and
    modalities still validate every row)."""
    return CohortReader(study.cohort_dir) if Path(study.cohort_dir).is_dir() else None


# ------------------------------------------------------------------------------------------- parser
def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `study` and its subcommands on ``python -m explain``'s subcommands."""
    study = commands.add_parser("study", help="set up and manage an expert-ranking study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = study.add_subparsers(dest="action", required=True)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help)
        sub.add_argument("--db", default=None, help="SQLAlchemy URL of the study database (default: "
                                                    "$NEUROFUSION_STUDY_DB, else the SQLite file under studies/)")
        return sub

    create = action("create", "create a study for a cohort and checkpoint")
    create.add_argument("--name", required=True)
    create.add_argument("--cohort", required=True, help="the cohort folder")
    create.add_argument("--checkpoint", required=True, help="the checkpoint folder (only config.json is read)")
    create.add_argument("--cases", default="all", choices=SELECTIONS,
                        help="every case, one split, or a stratified sample by class and missingness pattern")
    create.add_argument("--split", default=None, choices=SPLITS,
                        help="--cases split: the split (default test); --cases stratified: sample within this split "
                             "(default: the whole cohort)")
    create.add_argument("--n", type=int, default=None, help=f"stratified: how many cases (default {DEFAULT_SAMPLE})")
    create.add_argument("--seed", type=int, default=0, help="the stratified sample's seed; it also orders each "
                                                            "rater's queue")
    create.add_argument("--raters", required=True, help='comma-separated rater names, "name <email>" binds an identity')
    create.add_argument("--protocol", default="blinded", choices=PROTOCOLS,
                        help="blinded: raters see no model output before submitting")
    create.add_argument("--allow-ties", action="store_true", help="raters may give two modalities the same rank")
    create.add_argument("--no-reveal", dest="reveal", action="store_false",
                        help="do not show the model's answer after a rater submits")
    create.add_argument("--reveal-method", default="shapley", choices=REVEAL_METHODS,
                        help="the model ranking revealed after submitting")
    create.add_argument("--created-by", default="", help="who set the study up (recorded)")

    action("list", "list the studies in the database")
    for name, help in (("progress", "per rater: ranked, skipped, to do"),
                       ("export", "write the study's rankings as clinician_rankings.csv"),
                       ("import", "read a clinician_rankings.csv into the study"),
                       ("withdraw", "withdraw a rater or the whole study (rows are marked, never deleted)")):
        sub = action(name, help)
        sub.add_argument("--study", required=True, help="the study's name")
        if name == "export":
            sub.add_argument("--out", required=True, help="the rankings CSV to write")
            sub.add_argument("--history", help="also write every submission row (revisions, skips, withdrawals)")
        elif name == "import":
            sub.add_argument("--rankings", required=True, help="a clinician_rankings.csv file")
            sub.add_argument("--protocol", default=None, choices=PROTOCOLS,
                             help="the protocol the file's raters rated under (default: the study's)")
        elif name == "withdraw":
            sub.add_argument("--rater", help="withdraw this rater only (default: the whole study)")
            sub.add_argument("--reason", required=True, help="why (recorded with the withdrawal)")


def run(args: argparse.Namespace) -> int:
    """Run a parsed `study` command; errors are printed as "error: ..." with exit status 2."""
    url = args.db or default_url()
    try:
        store = _open(url)
        try:
            print(_ACTIONS[args.action](store, args))
        finally:
            store.close()
    except (StudyError, CohortError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m explain.study_cli ...`` = ``python -m explain study ...``."""
    parser = argparse.ArgumentParser(prog="python -m explain")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["study", *(sys.argv[1:] if argv is None else argv)]))


def _open(url: str) -> StudyStore:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return StudyStore(url)
    except SQLAlchemyError as err:  # a malformed URL, an unreachable server, a file that is not a database
        raise StudyError(f"cannot open the study database {masked_url(url)}: {err.__class__.__name__}: "
                         f"{str(err).splitlines()[0]}") from None


# ------------------------------------------------------------------------------------------- actions
def _create(store: StudyStore, args: argparse.Namespace) -> str:
    raters = parse_raters(args.raters.split(","))
    if args.cases != "stratified" and args.n is not None:
        raise StudyError(f"--n applies to --cases stratified, not --cases {args.cases}")
    if args.cases == "all" and args.split is not None:
        raise StudyError("--split applies to --cases split or --cases stratified, not --cases all (every case of the "
                         "cohort)")
    split = (args.split or "test") if args.cases == "split" else args.split
    n = (DEFAULT_SAMPLE if args.n is None else args.n) if args.cases == "stratified" else None
    study = create_study(store, args.name, cohort_dir=args.cohort, checkpoint_dir=args.checkpoint,
                         selection=args.cases, split=split, n=n, seed=args.seed, raters=[r[0] for r in raters],
                         protocol=args.protocol, allow_ties=args.allow_ties, reveal=args.reveal,
                         reveal_method=args.reveal_method, created_by=args.created_by)
    try:
        add_raters_identities(store, study.name, raters)
    except StudyError as err:
        raise StudyError(f"study {study.name!r} was created, but a rater's login was not bound: {err} (those raters "
                         "can claim their names when they first log in)") from None
    return "\n".join([f"created study {study.name!r} in {store.url}", *_describe(store, study)])


def _describe(store: StudyStore, study: Study) -> list[str]:
    raters = store.raters(study.name)
    reveal = f"after submitting: the model's {study.reveal_method} ranking" if study.reveal else "never"
    return [f"  task {study.task} ({study.outcome}), modalities {', '.join(study.modalities)}",
            f"  cases: {len(store.cases(study.name))} ({study.selection})",
            f"  cohort {study.cohort_dir}  sha256 {study.cohort_sha256}",
            f"  checkpoint {study.checkpoint_dir}  sha256 {study.checkpoint_sha256}",
            f"  protocol {study.protocol}; ties {'allowed' if study.allow_ties else 'not allowed'}; reveal {reveal}",
            "  raters: " + ", ".join(r.name + (f" <{r.identity}>" if r.identity else "") for r in raters)]


def _list(store: StudyStore, args: argparse.Namespace) -> str:
    studies = store.studies(include_withdrawn=True)
    if not studies:
        return f"no studies in {store.url}"
    table = pd.DataFrame([{
        "name": s.name, "task": s.task, "cases": len(store.cases(s.name)), "raters": len(store.raters(s.name)),
        "protocol": s.protocol, "created (UTC)": s.created_at.strftime("%Y-%m-%d %H:%M"),
        "status": f"withdrawn: {s.withdrawn_reason}" if s.withdrawn_at else "open"} for s in studies])
    count = f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}"
    return f"{count} in {store.url}\n{table.to_string(index=False)}"


def _progress(store: StudyStore, args: argparse.Namespace) -> str:
    study = store.study(args.study)
    progress = store.progress(study.name)
    lines = [f"study {study.name!r}: {len(store.cases(study.name))} cases ({study.selection})"]
    if progress.empty:
        return "\n".join(lines + ["  no raters (all withdrawn)"])
    done = int(progress["ranked"].sum() + progress["skipped"].sum())
    lines.append(progress.to_string(index=False))
    lines.append(f"overall: {done} of {int(progress['total'].sum())} done "
                 f"({int(progress['ranked'].sum())} ranked, {int(progress['skipped'].sum())} skipped)")
    return "\n".join(lines)


def _export(store: StudyStore, args: argparse.Namespace) -> str:
    study = store.study(args.study)
    rows = store.export_csv(study.name, args.out)
    lines = [f"wrote {rows} rankings of study {study.name!r} to {args.out}"]
    if args.history:
        history = study_history(store, study.name)
        history.to_csv(args.history, index=False)
        lines.append(f"wrote {len(history)} submission rows (every revision, skip and withdrawal) to {args.history}")
    return "\n".join(lines)


def _import(store: StudyStore, args: argparse.Namespace) -> str:
    study = store.study(args.study)
    path = Path(args.rankings)
    if not path.is_file():
        raise StudyError(f"--rankings: no file {path}")
    added = store.import_csv(study.name, path, cohort=study_cohort(study), protocol=args.protocol)
    if added == 0:
        return f"nothing new in {path}: every ranking is already in study {study.name!r}"
    return f"imported {added} rankings from {path} into study {study.name!r}"


def _withdraw(store: StudyStore, args: argparse.Namespace) -> str:
    study = store.study(args.study)
    if not args.reason.strip():
        raise StudyError("--reason is empty: say why (it is recorded with the withdrawal)")
    if args.rater is not None:
        store.withdraw_rater(study.name, args.rater, args.reason)
        return f"withdrew rater {args.rater!r} from study {study.name!r} (their rows are kept, marked withdrawn)"
    store.withdraw_study(study.name, args.reason)
    return f"withdrew study {study.name!r} (its rows are kept, marked withdrawn)"


_ACTIONS = {"create": _create, "list": _list, "progress": _progress, "export": _export, "import": _import,
            "withdraw": _withdraw}


if __name__ == "__main__":
    sys.exit(main())
