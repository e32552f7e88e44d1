"""StudyStore on SQLite and PostgreSQL: submissions, revisions, skips, validation, withdrawal, the rater's
queue, and the round trip through the cohort's clinician_rankings.csv format."""

from __future__ import annotations

from datetime import timezone

import pandas as pd
import pytest

from neurofusion.data.annotations import RankingErrors, read_rankings
from neurofusion.data.cohort import CohortReader
from neurofusion.studies import STUDY_DB_ENV, STUDY_DIR_ENV, StudyError, StudyStore, create_study, default_url
from tests.neurofusion.studies.conftest import CANCER, CARDIO, CARDIO_DEMO, case_with, ranking


def test_export_writes_what_rankings_returns_and_read_rankings_reads_it_back(store, demo, tmp_path):
    cases = store.cases("demo")
    three = case_with(store, "demo", 3)
    store.submit("demo", "ann", cases[0].case_id, ranking(cases[0], [2, 1, 4, 3]), token="a0")
    store.submit("demo", "bob", cases[0].case_id, ranking(cases[0]), token="b0")
    store.submit("demo", "ann", three.case_id, ranking(three, [3, 1, 2]), token="a3")
    store.skip("demo", "bob", cases[1].case_id, "image unreadable", token="b1")
    path = tmp_path / "rankings.csv"
    assert store.export_csv("demo", path) == 3
    back = read_rankings(path, modalities=demo.modalities)
    pd.testing.assert_frame_equal(store.rankings("demo"), back)
    # against the cohort too: every exported case exists and no modality a case lacks is ranked
    pd.testing.assert_frame_equal(read_rankings(path, cohort=CohortReader(CARDIO)), back)
    row = back[(back["case_id"] == three.case_id) & (back["rater"] == "ann")].iloc[0]
    missing = next(m for m in demo.modalities if m not in three.available)
    assert pd.isna(row[missing]) and [row[m] for m in three.available] == [3, 1, 2]


def test_a_revision_is_a_new_row_and_the_latest_counts(store, demo):
    case = store.cases("demo")[0]
    first = store.submit("demo", "ann", case.case_id, ranking(case, [1, 2, 3, 4]), token="t1", confidence=2)
    second = store.submit("demo", "ann", case.case_id, ranking(case, [4, 3, 2, 1]), token="t2", confidence=5,
                          reason="the ECG, on a second look")
    assert (first.revision, second.revision) == (1, 2)
    history = store.history("demo", "ann", case.case_id)
    assert [(s.revision, s.ranks, s.confidence) for s in history] == [
        (1, ranking(case, [1, 2, 3, 4]), 2), (2, ranking(case, [4, 3, 2, 1]), 5)]
    assert [s.token for s in store.latest("demo", "ann")] == ["t2"]
    row = store.rankings("demo").iloc[0]
    assert [row[m] for m in case.available] == [4, 3, 2, 1]


def test_a_revision_after_the_reveal_is_stored_as_unblinded(store, demo):
    """The dashboard reveals the model's view after a ranking: a blinded rater's later revision of that case is
    no longer blind, and counts with the unblinded rankings; a skip, an import or a study without the reveal
    reveals nothing."""
    first, second = store.cases("demo")[:2]
    assert demo.reveal and store.rater("demo", "ann").protocol == "blinded"
    store.skip("demo", "ann", first.case_id, "first look: unsure", token="k1")
    before = store.submit("demo", "ann", first.case_id, ranking(first), token="k2")
    after = store.submit("demo", "ann", first.case_id, ranking(first), token="k3")
    assert (before.protocol, after.protocol) == ("blinded", "unblinded")
    store.submit("demo", "ann", second.case_id, ranking(second), token="k4", source="cli")
    assert store.submit("demo", "ann", second.case_id, ranking(second), token="k5").protocol == "blinded"
    assert store.rankings("demo", protocol="unblinded")["case_id"].tolist() == [first.case_id]
    assert store.rankings("demo", protocol="blinded")["case_id"].tolist() == [second.case_id]
    everything, by_protocol = store.rankings_by_protocol("demo")  # one reading, the same frames
    pd.testing.assert_frame_equal(everything, store.rankings("demo"))
    for protocol in ("blinded", "unblinded"):
        pd.testing.assert_frame_equal(by_protocol[protocol], store.rankings("demo", protocol=protocol))
    create_study(store, "no-reveal", cohort_dir=CARDIO, checkpoint_dir=CARDIO_DEMO, selection="stratified", n=3,
                 raters=["ann"], reveal=False)
    case = store.cases("no-reveal")[0]
    store.submit("no-reveal", "ann", case.case_id, ranking(case), token="n1")
    assert store.submit("no-reveal", "ann", case.case_id, ranking(case), token="n2").protocol == "blinded"


def test_skip_needs_a_reason_and_leaves_the_rankings(store, demo):
    case = store.cases("demo")[0]
    with pytest.raises(StudyError, match="skipping a case needs a reason"):
        store.skip("demo", "ann", case.case_id, "  ", token="s0")
    skipped = store.skip("demo", "ann", case.case_id, "note missing pages", token="s1")
    assert (skipped.kind, skipped.ranks, skipped.reason) == ("skip", {}, "note missing pages")
    assert store.rankings("demo").empty
    assert store.progress("demo").set_index("rater").loc["ann", ["ranked", "skipped", "to_do"]].tolist() == [0, 1, 11]
    # ranking it after all: the revision is a ranking and now counts
    store.submit("demo", "ann", case.case_id, ranking(case), token="s2")
    assert len(store.rankings("demo")) == 1 and [s.revision for s in store.history("demo", "ann")] == [1, 2]


def test_ties_are_refused_unless_the_study_allows_them(store, demo):
    case = case_with(store, "demo", 4)
    with pytest.raises(StudyError, match="does not allow ties.*permutation of 1..4"):
        store.submit("demo", "ann", case.case_id, ranking(case, [1, 1, 3, 4]), token="x1")
    tied = create_study(store, "tied", cohort_dir=CARDIO, checkpoint_dir=CARDIO_DEMO, selection="stratified", n=12,
                        seed=3, raters=["ann"], allow_ties=True)
    assert tied.allow_ties
    accepted = store.submit("tied", "ann", case.case_id, ranking(case, [1, 1, 3, 3]), token="x2")
    assert accepted.ranks == ranking(case, [1, 1, 3, 3])
    with pytest.raises(StudyError, match="standard competition form"):
        store.submit("tied", "ann", case.case_id, ranking(case, [1, 1, 2, 3]), token="x3")
    # and the tie survives the CSV round trip (read_rankings accepts competition ranks)
    row = store.rankings("tied").iloc[0]
    assert [row[m] for m in case.available] == [1, 1, 3, 3]


@pytest.mark.parametrize("change, message", [
    ("drop", r"missing (image|text|signal|tabular)"),
    ("extra", r"not available for this case"),
    ("zero", r"between 1 and"),
    ("float", r"whole number"),
])
def test_ranks_must_cover_exactly_the_cases_modalities(store, demo, change, message):
    three = case_with(store, "demo", 3)
    ranks = ranking(three)
    missing = next(m for m in demo.modalities if m not in three.available)
    if change == "drop":
        ranks.pop(three.available[-1])
        message = f"missing {three.available[-1]}"
    elif change == "extra":
        ranks[missing] = 4
        message = f"{missing} is not available for this case"
    elif change == "zero":
        ranks[three.available[0]] = 0
    else:
        ranks[three.available[0]] = 1.5
    with pytest.raises(StudyError, match=message):
        store.submit("demo", "ann", three.case_id, ranks, token="r")
    assert store.history("demo") == []


def test_diagnosis_and_confidence_are_checked(store, demo):
    case = store.cases("demo")[0]
    with pytest.raises(StudyError, match="'flu' is not one of the model's classes: normal, coronary_artery_disease"):
        store.submit("demo", "ann", case.case_id, ranking(case), token="d1", diagnosis="flu")
    with pytest.raises(StudyError, match="confidence must be a whole number 1..5"):
        store.submit("demo", "ann", case.case_id, ranking(case), token="d2", confidence=6)
    stored = store.submit("demo", "ann", case.case_id, ranking(case), token="d3", diagnosis="heart_failure",
                          confidence=4)
    assert (stored.diagnosis, stored.confidence) == ("heart_failure", 4)
    assert store.history("demo")[0].diagnosis == "heart_failure"


def test_the_same_token_twice_stores_one_row(store, demo):
    case = store.cases("demo")[0]
    first = store.submit("demo", "ann", case.case_id, ranking(case), token="same")
    again = store.submit("demo", "ann", case.case_id, ranking(case, [4, 3, 2, 1]), token="same")
    assert not first.duplicate and again.duplicate
    assert (again.id, again.revision, again.ranks) == (first.id, 1, first.ranks)
    assert len(store.history("demo")) == 1
    with pytest.raises(StudyError, match="token 'same' was already used by submission"):
        store.submit("demo", "bob", case.case_id, ranking(case), token="same")


def test_a_withdrawn_rater_leaves_the_rankings_but_not_the_history(store, demo):
    case = store.cases("demo")[0]
    store.submit("demo", "ann", case.case_id, ranking(case), token="a")
    store.submit("demo", "bob", case.case_id, ranking(case), token="b")
    store.withdraw_rater("demo", "bob", "consent withdrawn")
    assert store.rankings("demo")["rater"].tolist() == ["ann"]
    bob = store.history("demo", "bob")
    assert len(bob) == 1 and bob[0].withdrawn_reason == "rater withdrawn: consent withdrawn"
    assert bob[0].withdrawn_at is not None
    assert [r.name for r in store.raters("demo")] == ["ann"]
    assert [r.name for r in store.raters("demo", include_withdrawn=True)] == ["ann", "bob"]
    assert store.progress("demo")["rater"].tolist() == ["ann"]
    with pytest.raises(StudyError, match="rater 'bob' was withdrawn"):
        store.submit("demo", "bob", store.cases("demo")[1].case_id, ranking(store.cases("demo")[1]), token="b2")


def test_a_withdrawn_submission_no_longer_counts(store, demo):
    case = store.cases("demo")[0]
    first = store.submit("demo", "ann", case.case_id, ranking(case, [1, 2, 3, 4]), token="w1")
    second = store.submit("demo", "ann", case.case_id, ranking(case, [4, 3, 2, 1]), token="w2")
    store.withdraw_submission(second.id, "entered by mistake")
    assert [s.id for s in store.latest("demo")] == [first.id]
    with pytest.raises(StudyError, match="already withdrawn"):
        store.withdraw_submission(second.id, "again")
    with pytest.raises(StudyError, match="there is no submission 999999"):
        store.withdraw_submission(999999, "x")


def test_a_withdrawn_study_refuses_submissions(store, demo):
    case = store.cases("demo")[0]
    store.withdraw_study("demo", "protocol changed")
    with pytest.raises(StudyError, match="study 'demo' was withdrawn \\(protocol changed\\)"):
        store.submit("demo", "ann", case.case_id, ranking(case), token="z")
    with pytest.raises(StudyError, match="was withdrawn"):
        store.add_rater("demo", "cat")
    assert store.studies() == [] and [s.name for s in store.studies(include_withdrawn=True)] == ["demo"]
    assert store.study("demo").withdrawn_reason == "protocol changed"


def test_import_twice_adds_nothing_the_second_time(store, demo, tmp_path):
    cases = store.cases("demo")
    lines = ["case_id,rater,image,text,signal,tabular"]
    for case in cases[:4]:
        ranks = ranking(case)
        lines.append(",".join([case.case_id, "carol"] + [str(ranks.get(m, "")) for m in demo.modalities]))
    path = tmp_path / "carol.csv"
    path.write_text("\n".join(lines) + "\n")
    assert store.import_csv("demo", path) == 4
    assert store.import_csv("demo", path) == 0
    assert store.import_csv("demo", path.read_bytes(), name="carol.csv") == 0  # same bytes, same tokens
    assert {s.source for s in store.history("demo")} == {"import"} and len(store.history("demo")) == 4
    assert store.rater("demo", "carol").protocol == "blinded"
    pd.testing.assert_frame_equal(store.rankings("demo"), read_rankings(path, modalities=demo.modalities)
                                  .sort_values(["case_id", "rater"], ignore_index=True))
    # a study's own export imports into another study and reads back the same
    create_study(store, "copy", cohort_dir=CARDIO, checkpoint_dir=CARDIO_DEMO, selection="stratified", n=12, seed=3,
                 raters=[])
    store.export_csv("demo", tmp_path / "out.csv")
    assert store.import_csv("copy", tmp_path / "out.csv", protocol="unblinded") == 4
    pd.testing.assert_frame_equal(store.rankings("copy"), store.rankings("demo"))
    assert store.rankings("copy", protocol="blinded").empty and len(store.rankings("copy", protocol="unblinded")) == 4


def test_import_of_a_bad_file_writes_nothing(store, demo, tmp_path):
    cases = store.cases("demo")
    good = ",".join([cases[0].case_id, "carol"] + [str(ranking(cases[0]).get(m, "")) for m in demo.modalities])
    tie = next(c for c in cases[1:] if len(c.available) == 4)
    bad = path = tmp_path / "bad.csv"
    bad.write_text(f"case_id,rater,image,text,signal,tabular\n{good}\n{tie.case_id},carol,1,1,2,3\n")
    with pytest.raises(RankingErrors, match="bad.csv, line 3, .*ranks must be a permutation"):
        store.import_csv("demo", path)
    # valid for read_rankings, but a case outside the study and a tie the study forbids: the study refuses
    path = tmp_path / "outside.csv"
    outside = next(c for c in CohortReader(CARDIO).case_ids if c not in {x.case_id for x in cases})
    path.write_text(f"case_id,rater,image,text,signal,tabular\n{good}\n{outside},carol,1,2,3,4\n"
                    f"{tie.case_id},carol,1,1,3,4\n")
    with pytest.raises(StudyError, match=f"(?s)2 row\\(s\\) of outside.csv do not fit.*line 3.*{outside!r} is not "
                                         "in study 'demo'.*line 4.*does not allow ties"):
        store.import_csv("demo", path)
    assert store.history("demo") == [] and [r.name for r in store.raters("demo")] == ["ann", "bob"]


def test_queue_is_a_stable_permutation_that_differs_between_raters(store, demo, study_url):
    ids = [c.case_id for c in store.cases("demo")]
    ann = store.queue("demo", "ann")
    assert sorted(ann) == sorted(ids) and len(ann) == len(ids)
    assert ann != store.queue("demo", "bob")
    with StudyStore(study_url) as other:  # another process opening the same database: the same order
        assert other.queue("demo", "ann") == ann


def test_next_case_skips_done_cases_and_ends_with_none(store, demo):
    cases = {c.case_id: c for c in store.cases("demo")}
    queue = store.queue("demo", "ann")
    assert store.next_case("demo", "ann") == queue[0]
    store.submit("demo", "ann", queue[1], ranking(cases[queue[1]]), token="n1")  # out of order
    store.skip("demo", "ann", queue[0], "later", token="n0")
    assert store.next_case("demo", "ann") == queue[2]
    for i, case_id in enumerate(queue[2:]):
        store.submit("demo", "ann", case_id, ranking(cases[case_id]), token=f"n{i + 2}")
    assert store.next_case("demo", "ann") is None
    assert store.next_case("demo", "bob") == store.queue("demo", "bob")[0]
    progress = store.progress("demo").set_index("rater")
    assert progress.loc["ann"].tolist() == ["blinded", 11, 1, 0, 12]
    assert progress.loc["bob"].tolist() == ["blinded", 0, 0, 12, 12]


def test_times_are_utc_aware(store, demo):
    case = store.cases("demo")[0]
    stored = store.submit("demo", "ann", case.case_id, ranking(case), token="u")
    read = store.history("demo")[0]
    for value in (demo.created_at, store.study("demo").created_at, store.rater("demo", "ann").added_at,
                  stored.submitted_at, read.submitted_at):
        assert value.tzinfo is not None and value.utcoffset().total_seconds() == 0
    assert read.submitted_at == stored.submitted_at
    assert read.submitted_at.tzinfo == timezone.utc


def test_unknown_names_are_errors_that_list_the_known_ones(store, demo):
    with pytest.raises(StudyError, match="there is no study 'nope'; studies: demo"):
        store.study("nope")
    with pytest.raises(StudyError, match="study 'demo' has no rater 'eve'; raters: ann, bob"):
        store.submit("demo", "eve", store.cases("demo")[0].case_id, {}, token="e")
    with pytest.raises(StudyError, match="case 'CV-99999' is not one of the 12 cases of study 'demo'"):
        store.submit("demo", "ann", "CV-99999", {}, token="e")


def test_raters_identities_and_protocols(store, demo):
    cat = store.add_rater("demo", "cat", protocol="unblinded")
    assert (cat.protocol, cat.identity) == ("unblinded", None)
    with pytest.raises(StudyError, match="already has a rater 'cat'"):
        store.add_rater("demo", "cat")
    with pytest.raises(StudyError, match="protocol must be one of blinded, unblinded"):
        store.add_rater("demo", "dan", protocol="open")
    assert store.bind_identity("demo", "ann", "ann@example.org").identity == "ann@example.org"
    assert store.bind_identity("demo", "ann", "ann@example.org").identity == "ann@example.org"  # again: no-op
    assert store.rater_for_identity("demo", "ann@example.org").name == "ann"
    assert store.rater_for_identity("demo", "bob@example.org") is None
    with pytest.raises(StudyError, match="already bound to another login"):
        store.bind_identity("demo", "ann", "eve@example.org")
    with pytest.raises(StudyError, match="login 'ann@example.org' is already bound to rater 'ann'"):
        store.bind_identity("demo", "bob", "ann@example.org")
    case = store.cases("demo")[0]
    assert store.submit("demo", "cat", case.case_id, ranking(case), token="c").protocol == "unblinded"
    store.submit("demo", "ann", case.case_id, ranking(case), token="a")
    assert store.rankings("demo", protocol="unblinded")["rater"].tolist() == ["cat"]
    assert store.rankings("demo", protocol="blinded")["rater"].tolist() == ["ann"]


def test_create_study_checks_its_inputs(store, demo):
    assert demo.selection == "stratified sample of 12 by class and missingness pattern (seed 3)"
    assert len(demo.cohort_sha256) == 64 and len(demo.checkpoint_sha256) == 64
    assert demo.modalities == ("image", "text", "signal", "tabular") and demo.classes[0] == "normal"
    labels = CohortReader(CARDIO).table.set_index("case_id")["label"]
    assert all(c.label == labels[c.case_id] for c in store.cases("demo"))
    with pytest.raises(StudyError, match="a study named 'demo' already exists"):
        create_study(store, "demo", cohort_dir=CARDIO, checkpoint_dir=CARDIO_DEMO, raters=["x"])
    with pytest.raises(StudyError, match="the cohort's outcome is survival, the model's classification"):
        create_study(store, "wrong", cohort_dir=CANCER, checkpoint_dir=CARDIO_DEMO, raters=["x"])
    with pytest.raises(StudyError, match="raters must be distinct; named twice: x"):
        create_study(store, "twice", cohort_dir=CARDIO, checkpoint_dir=CARDIO_DEMO, raters=["x", "y", "x"])
    with pytest.raises(StudyError, match="config.json not found"):
        create_study(store, "nockpt", cohort_dir=CARDIO, checkpoint_dir=CARDIO, raters=["x"])
    assert [s.name for s in store.studies()] == ["demo"]


def test_default_url_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(STUDY_DB_ENV, raising=False)
    monkeypatch.setenv(STUDY_DIR_ENV, str(tmp_path / "where"))
    assert default_url() == f"sqlite:///{tmp_path / 'where' / 'studies.sqlite'}"
    with StudyStore() as store:
        assert (tmp_path / "where" / "studies.sqlite").is_file() and store.studies() == []
    monkeypatch.setenv(STUDY_DB_ENV, "sqlite:///elsewhere.sqlite")
    assert default_url() == "sqlite:///elsewhere.sqlite"


def test_a_url_that_is_not_one_is_a_clear_error():
    with pytest.raises(StudyError, match="'not a url' is not an SQLAlchemy database URL"):
        StudyStore("not a url")


def test_an_unreachable_server_is_a_clear_error_without_the_password(tmp_path):
    url = f"postgresql://nf:secret-pw@/studies?host={tmp_path / 'no-server-here'}"
    with pytest.raises(StudyError, match="cannot use the study database postgresql\\+psycopg://nf:\\*\\*\\*@/studies") \
            as err:
        StudyStore(url)
    assert "secret-pw" not in str(err.value)


def test_a_survival_study_has_no_classes_and_takes_no_diagnosis(store):
    from tests.neurofusion.studies.conftest import CANCER_DEMO

    study = create_study(store, "cancer", cohort_dir=CANCER, checkpoint_dir=CANCER_DEMO, selection="stratified",
                         n=10, seed=4, raters=["onc"], protocol="unblinded", reveal_method="leave_one_out")
    assert (study.outcome, study.classes, study.protocol) == ("survival", (), "unblinded")
    assert study.selection == "stratified sample of 10 by event and missingness pattern (seed 4)"
    assert study.modalities == CohortReader(CANCER).modality_names
    case = store.cases("cancer")[0]
    assert case.label is None and set(case.available) <= set(study.modalities)
    with pytest.raises(StudyError, match="this study's model has no classes \\(a survival model\\)"):
        store.submit("cancer", "onc", case.case_id, ranking(case), token="c1", diagnosis="normal")
    stored = store.submit("cancer", "onc", case.case_id, ranking(case), token="c2")
    assert stored.protocol == "unblinded" and store.rankings("cancer", protocol="unblinded").shape[0] == 1
