"""python -m explain study: create -> progress -> import -> export round trip on a temporary SQLite database,
withdrawal, and bad input as "error: ..." with exit status 2 (never a traceback), without loading the model."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import explain.__main__ as cli
from explain.__main__ import main
from neurofusion.data.annotations import read_rankings, write_rankings
from neurofusion.data.cohort import CohortReader
from neurofusion.studies import StudyStore
from tests.test_sample_data import DEMO, SAMPLE

SHA256 = re.compile(r"sha256 [0-9a-f]{64}\b")


@pytest.fixture
def db(tmp_path, monkeypatch) -> str:
    # the model's weights are never needed: loading a checkpoint fails the test
    monkeypatch.setattr(cli, "load_checkpoint", lambda *a, **k: pytest.fail("the study command loaded a model"))
    return f"sqlite:///{tmp_path / 'studies.sqlite'}"


def _study(db: str, capsys, *extra: str, name: str = "fig2d") -> str:
    args = ["study", "create", "--db", db, "--name", name, "--cohort", str(SAMPLE), "--checkpoint", str(DEMO),
            "--cases", "stratified", "--n", "6", "--seed", "3", "--raters", "dr_a, dr_b <b@clinic.org>", *extra]
    assert main(args) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def write_split_cohort(folder: Path) -> Path:
    """A copy of the cardio sample (a test split only) with its cases spread over the three splits: every third
    case in val, every fifth remaining one in train, the rest (107 of 200) in test."""
    shutil.copytree(SAMPLE, folder)
    table = pd.read_csv(folder / "cohort.csv", dtype=str, keep_default_na=False)
    table["split"] = ["val" if i % 3 == 0 else "train" if i % 5 == 0 else "test" for i in range(len(table))]
    table.to_csv(folder / "cohort.csv", index=False)
    return folder


def _rankings(store: StudyStore, study: str, raters: tuple[str, ...], n_cases: int) -> pd.DataFrame:
    """Rankings of the study's first ``n_cases`` cases by each rater: a permutation of the case's available
    modalities, different per rater, blank where the case lacks a modality."""
    record = store.study(study)
    rows = []
    for case in store.cases(study)[:n_cases]:
        for shift, rater in enumerate(raters):
            k = len(case.available)
            ranks = {m: (j + shift) % k + 1 for j, m in enumerate(case.available)}
            rows.append({"case_id": case.case_id, "rater": rater, **{m: ranks.get(m) for m in record.modalities}})
    frame = pd.DataFrame(rows)
    for m in record.modalities:
        frame[m] = frame[m].astype("Int64")
    return frame


def test_create_progress_import_export_round_trip(db, tmp_path, capsys):
    out = _study(db, capsys)
    assert "created study 'fig2d'" in out and "cases: 6 (stratified sample of 6" in out
    assert len(SHA256.findall(out)) == 2 and "raters: dr_a, dr_b <b@clinic.org>" in out

    assert main(["study", "list", "--db", db]) == 0
    listed = capsys.readouterr().out
    assert "1 study in" in listed and re.search(r"fig2d\s+cardio\s+6\s+2\s+blinded", listed), listed

    assert main(["study", "progress", "--db", db, "--study", "fig2d"]) == 0
    progress = capsys.readouterr().out
    assert re.search(r"dr_a\s+blinded\s+0\s+0\s+6\s+6", progress), progress
    assert "overall: 0 of 12 done" in progress

    store = StudyStore(db)
    assert store.rater("fig2d", "dr_b").identity == "b@clinic.org"
    written = _rankings(store, "fig2d", ("dr_a", "dr_b"), 3)
    source = tmp_path / "in.csv"
    write_rankings(source, written, store.study("fig2d").modalities)
    assert main(["study", "import", "--db", db, "--study", "fig2d", "--rankings", str(source)]) == 0
    assert "imported 6 rankings" in capsys.readouterr().out
    assert main(["study", "import", "--db", db, "--study", "fig2d", "--rankings", str(source)]) == 0
    assert "nothing new" in capsys.readouterr().out  # the same file twice adds nothing

    assert main(["study", "progress", "--db", db, "--study", "fig2d"]) == 0
    assert re.search(r"dr_b\s+blinded\s+3\s+0\s+3\s+6", capsys.readouterr().out)

    exported, history = tmp_path / "rankings.csv", tmp_path / "history.csv"
    assert main(["study", "export", "--db", db, "--study", "fig2d", "--out", str(exported),
                 "--history", str(history)]) == 0
    assert "wrote 6 rankings" in capsys.readouterr().out
    expected = written.sort_values(["case_id", "rater"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(read_rankings(exported, cohort=None, modalities=store.study("fig2d").modalities),
                                  expected)
    rows = pd.read_csv(history)
    assert len(rows) == 6 and set(rows["source"]) == {"import"} and rows["counts"].all()
    assert set(rows["kind"]) == {"ranking"} and (rows["revision"] == 1).all()

    assert main(["study", "withdraw", "--db", db, "--study", "fig2d", "--rater", "dr_b", "--reason", "moved"]) == 0
    assert "withdrew rater 'dr_b'" in capsys.readouterr().out
    assert main(["study", "export", "--db", db, "--study", "fig2d", "--out", str(exported),
                 "--history", str(history)]) == 0
    assert set(read_rankings(exported, modalities=store.study("fig2d").modalities)["rater"]) == {"dr_a"}
    rows = pd.read_csv(history, keep_default_na=False)
    assert len(rows) == 6  # nothing deleted: dr_b's rows are still there, marked withdrawn, no longer counting
    assert rows.loc[rows["rater"] == "dr_b", "withdrawn_reason"].str.contains("moved").all()
    assert not rows.loc[rows["rater"] == "dr_b", "counts"].any()
    store.close()


def test_a_stratified_sample_of_one_split(db, tmp_path, capsys):
    cohort = write_split_cohort(tmp_path / "cardio")

    def create(name: str, *extra: str, folder: Path = cohort, cases: str = "stratified") -> int:
        return main(["study", "create", "--db", db, "--name", name, "--cohort", str(folder), "--checkpoint", str(DEMO),
                     "--raters", "dr_a", "--cases", cases, *extra])

    assert create("fig2d", "--split", "test", "--n", "20", "--seed", "7") == 0, capsys.readouterr().err
    assert "cases: 20 (stratified sample of 20 of the test split by class and missingness pattern (seed 7))" in \
        capsys.readouterr().out
    with StudyStore(db) as store:
        chosen = [c.case_id for c in store.cases("fig2d")]
    test_ids = CohortReader(cohort).ids("test")
    assert len(chosen) == 20 and set(chosen) <= set(test_ids) and len(test_ids) == 107

    assert create("big", "--split", "test", "--n", "108") == 2
    assert "n must be between 1 and the test split's 107 cases, got 108" in capsys.readouterr().err
    assert create("empty", "--split", "train", "--n", "5", folder=SAMPLE) == 2
    assert "the cohort has no cases in the train split" in capsys.readouterr().err
    assert create("every", "--split", "test", cases="all") == 2
    assert "--split applies to --cases split or --cases stratified, not --cases all" in capsys.readouterr().err


def test_errors_exit_2_with_a_specific_message(db, tmp_path, capsys):
    _study(db, capsys)
    assert main(["study", "progress", "--db", db, "--study", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err and "fig2d" in err  # the known names are listed

    store = StudyStore(db)
    case = store.cases("fig2d")[0].case_id
    store.close()
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,rater,image,text,signal,tabular\n"
                   f"{case},dr_a,1,2,x,4\n"          # line 2: not a number
                   "CV-99999,dr_a,1,2,3,4\n")        # line 3: not in the cohort
    assert main(["study", "import", "--db", db, "--study", "fig2d", "--rankings", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.csv, line 2" in err and "'x' is not a number" in err
    assert "CV-99999" in err
    assert main(["study", "progress", "--db", db, "--study", "fig2d"]) == 0
    assert "overall: 0 of 12 done" in capsys.readouterr().out  # all-or-nothing: nothing was imported

    assert main(["study", "import", "--db", db, "--study", "fig2d", "--rankings", str(tmp_path / "none.csv")]) == 2
    assert "--rankings: no file" in capsys.readouterr().err
    assert main(["study", "create", "--db", db, "--name", "fig2d", "--cohort", str(SAMPLE), "--checkpoint", str(DEMO),
                 "--raters", "dr_c"]) == 2
    assert "fig2d" in capsys.readouterr().err  # a duplicate name
    assert main(["study", "create", "--db", db, "--name", "other", "--cohort", str(SAMPLE), "--checkpoint", str(DEMO),
                 "--n", "5", "--raters", "dr_c"]) == 2
    assert "--n applies to --cases stratified" in capsys.readouterr().err
    assert main(["study", "create", "--db", db, "--name", "other", "--cohort", str(SAMPLE), "--checkpoint", str(DEMO),
                 "--raters", "dr_c, dr_c"]) == 2
    assert "'dr_c' is given more than once" in capsys.readouterr().err
    assert main(["study", "create", "--db", db, "--name", "other", "--cohort", str(tmp_path / "nowhere"),
                 "--checkpoint", str(DEMO), "--raters", "dr_c"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["study", "withdraw", "--db", db, "--study", "fig2d", "--reason", "  "]) == 2
    assert "--reason is empty" in capsys.readouterr().err
    assert main(["study", "list", "--db", "notadialect://x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "notadialect" in err and "database URL" in err


def test_help_documents_every_action(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["study", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for action in ("create", "list", "progress", "export", "import", "withdraw"):
        assert f"python -m explain study {action} --db URL" in text


def test_rater_entries():
    from neurofusion.studies import StudyError, parse_raters

    assert parse_raters([" dr_a ", "", "Dr B <b@clinic.org>"]) == [("dr_a", None), ("Dr B", "b@clinic.org")]
    for entries, message in ((["<b@clinic.org>"], "needs a name"), (["dr_a <b@clinic.org"], "not of the form"),
                             (["a <x@y.org>", "b <x@y.org>"], "identity 'x@y.org' is given more than once"),
                             (["", " "], "at least one rater")):
        with pytest.raises(StudyError, match=message):
            parse_raters(entries)


def test_python_m_explain_study_answers_without_importing_the_model_stack(tmp_path):
    """`python -m explain study ...` returns before the model stack is imported (transformers and Captum: the
    model commands need them, the study database does not)."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'studies.sqlite'}"
    probe = ("import runpy, sys\n"
             f"sys.argv = ['explain', 'study', 'list', '--db', {url!r}]\n"
             "try:\n    runpy.run_module('explain', run_name='__main__', alter_sys=True)\n"
             "except SystemExit as done:\n"
             "    print(any(m in sys.modules for m in ('transformers', 'captum')), done.code)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip().splitlines()[-1] == "False 0", out.stdout + out.stderr
    assert "no studies in" in out.stdout.lower()
