"""Clinician rankings and ground truth: round trips and every malformed-file error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neurofusion.data import CohortError, CohortReader, read_rankings, write_rankings
from neurofusion.data.annotations import read_ground_truth

HEADER = "case_id,rater,image,text,signal,tabular\n"


def _rankings(tmp_path, body: str, header: str = HEADER):
    path = tmp_path / "r.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_round_trip_with_blank_for_missing_modality(tmp_path):
    frame = pd.DataFrame(
        {"case_id": ["P0", "P0", "P1"], "rater": ["A", "B", "A"], "image": [1, 2, pd.NA],
         "text": [2, 1, 2], "signal": [3, 4, 1], "tabular": [4, 3, 3]}
    )
    write_rankings(tmp_path / "r.csv", frame)
    back = read_rankings(tmp_path / "r.csv")
    assert back["image"].isna().tolist() == [False, False, True]
    assert back.loc[2, ["text", "signal", "tabular"]].tolist() == [2, 1, 3]


@pytest.mark.parametrize(
    "body, message",
    [
        ("P0,A,1,1,2,3\n", r"line 2, case P0, field 'rank': ranks must be a permutation of 1\.\.k.*image=1, text=1"),
        ("P0,A,1,2,4,5\n", "ranks must be a permutation of 1..k"),
        ("P0,A,,2,3,4\n", "ranks must be a permutation of 1..k"),
        ("P0,A,1,2,x,4\n", r"field 'signal': rank 'x' is not a number"),
        ("P0,A,1,2,3.5,4\n", r"rank '3.5' is not a whole number >= 1"),
        ("P0,A,0,1,2,3\n", r"rank '0' is not a whole number >= 1"),
        ("P0,A,,,,\n", "no modality is ranked"),
        (",A,1,2,3,4\n", "field 'case_id': case_id is empty"),
        ("P0,A,1,2,3,4\nP0,A,2,1,3,4\n", r"line 3, case P0, field 'rater': rater 'A' ranks this case twice"),
    ],
)
def test_malformed_rankings_are_specific_errors(tmp_path, body, message):
    with pytest.raises(CohortError, match=message):
        read_rankings(_rankings(tmp_path, body))


@pytest.mark.parametrize("row, ranks", [
    ("P0,A,1,1,3,4\n", [1, 1, 3, 4]),
    ("P0,A,1,2,2,4\n", [1, 2, 2, 4]),
    ("P0,A,1,1,1,1\n", [1, 1, 1, 1]),
    ("P0,A,,1,1,3\n", [None, 1, 1, 3]),
    ("P0,A,2,1,,2\n", [2, 1, None, 2]),
])
def test_ties_in_standard_competition_form_are_accepted(tmp_path, row, ranks):
    back = read_rankings(_rankings(tmp_path, row))
    assert [None if pd.isna(v) else int(v) for v in back.loc[0, ["image", "text", "signal", "tabular"]]] == ranks


@pytest.mark.parametrize("row", ["P0,A,1,1,2,3\n", "P0,A,1,2,2,3\n", "P0,A,2,2,3,4\n", "P0,A,1,1,4,4\n",
                                 "P0,A,1,3,,\n"])
def test_ties_with_a_gap_missing_or_gaps_are_rejected(tmp_path, row):
    with pytest.raises(CohortError, match=r"ties in standard competition form \(1, 1, 3"):
        read_rankings(_rankings(tmp_path, row))


def test_rankings_missing_a_modality_column(tmp_path):
    path = _rankings(tmp_path, "P0,A,1,2,3\n", header="case_id,rater,image,text,signal\n")
    with pytest.raises(CohortError, match=r"field 'tabular': required column\(s\) tabular missing"):
        read_rankings(path)


def test_rankings_checked_against_the_cohort(small_cohort, tmp_path):
    cohort = CohortReader(small_cohort[0])
    with pytest.raises(CohortError, match="case 'P999' is not in the cohort"):
        read_rankings(_rankings(tmp_path, "P999,A,1,2,3,4\n"), cohort=cohort)
    # P001 has no image: a rater cannot rank it
    with pytest.raises(CohortError, match="case P001, field 'image': the rater ranked image, but this case has no image"):
        read_rankings(_rankings(tmp_path, "P001,A,1,2,3,4\n"), cohort=cohort)
    ok = read_rankings(_rankings(tmp_path, "P001,A,,1,3,2\n"), cohort=cohort)
    assert ok.loc[0, "text"] == 1


def test_cohort_reads_its_rankings_file(small_cohort):
    root, _ = small_cohort
    (root / "clinician_rankings.csv").write_text(HEADER + "P000,A,1,2,3,4\nP003,A,2,1,3,\n")
    assert CohortReader(root).rankings()["rater"].tolist() == ["A", "A"]
    (root / "clinician_rankings.csv").write_text(HEADER + "P003,A,2,1,3,4\n")  # P003 has no tabular
    with pytest.raises(CohortError, match="clinician_rankings.csv, line 2, case P003, field 'tabular'"):
        CohortReader(root).rankings()


def test_ground_truth_validation(small_cohort, tmp_path):
    cohort = CohortReader(small_cohort[0])
    header = "case_id,strength_image,strength_text,strength_signal,strength_tabular\n"
    path = tmp_path / "g.csv"
    path.write_text(header + "P000,0.9,0.1,0.2,0.3\nP001,,0.5,0.5,0.5\n")
    truth = read_ground_truth(path, cohort=cohort)
    assert truth["strength_image"].isna().tolist() == [False, True]
    path.write_text(header + "P000,1.4,0.1,0.2,0.3\n")
    with pytest.raises(CohortError, match=r"field 'strength_image': strength '1.4' is outside \[0, 1\]"):
        read_ground_truth(path)
    path.write_text(header + "P001,0.3,0.1,0.2,0.3\n")
    with pytest.raises(CohortError, match="a strength is given for image, but this case has no image"):
        read_ground_truth(path, cohort=cohort)


def test_ground_truth_interaction_strength_is_a_number(tmp_path):
    """The cardio generator's interaction_strength: blank = 0 (no rule decides the case), else a float >= 0;
    the rule's other columns stay text."""
    header = ("case_id,strength_image,strength_text,strength_signal,strength_tabular,interaction_rule,"
              "interaction_strength\n")
    path = tmp_path / "g.csv"
    path.write_text(header + "P000,0.9,0.1,0.2,0.3,,\nP001,0.3,0.5,0.5,0.5,af_with_dilated_lv,0.625\n")
    truth = read_ground_truth(path)
    assert truth["interaction_strength"].tolist() == [0.0, 0.625]
    assert truth["interaction_rule"].tolist()[1] == "af_with_dilated_lv"
    path.write_text(header + "P000,0.9,0.1,0.2,0.3,x,-0.2\n")
    with pytest.raises(CohortError, match="field 'interaction_strength': interaction strength '-0.2' is negative"):
        read_ground_truth(path)
    path.write_text("case_id,strength_image,strength_text,strength_signal,strength_tabular,interaction_term,"
                    "interaction_from_h\nP000,0.9,0.1,0.2,0.3,,\nP001,0.9,0.1,0.2,0.3,-2.5,12\n")
    truth = read_ground_truth(path)  # cancer's log-hazard term (blank = 0), ICU's hour (blank = none)
    assert truth["interaction_term"].tolist() == [0.0, -2.5]
    assert np.isnan(truth.loc[0, "interaction_from_h"]) and truth.loc[1, "interaction_from_h"] == 12.0
    path.write_text(header + "P000,0.9,0.1,0.2,0.3,x,strong\n")
    with pytest.raises(CohortError, match="interaction strength 'strong' is not a number"):
        read_ground_truth(path)


@pytest.mark.parametrize("name", ["../../etc/evil.csv", "/tmp/evil.csv", "..\\..\\evil.csv", "C:\\Users\\x\\evil.csv"])
def test_uploaded_rankings_are_read_in_memory_and_named_by_their_bare_name(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # a name used as a path would resolve (and write) from here
    good = read_rankings((HEADER + "P0,A,1,2,3,4\n").encode(), name=name)
    assert good.loc[0, ["image", "tabular"]].tolist() == [1, 4]
    with pytest.raises(CohortError) as err:
        read_rankings((HEADER + "P0,A,1,1,2,3\n").encode(), name=name)
    assert str(err.value).startswith("evil.csv, line 2, case P0, field 'rank': ranks must be a permutation")
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "evil.csv").exists()


def test_uploaded_rankings_from_a_file_object_and_their_errors(small_cohort):
    import io

    cohort = CohortReader(small_cohort[0])
    ok = read_rankings(io.BytesIO(("\ufeff" + HEADER + "P001,A,,1,3,2\n").encode()), name="r.csv", cohort=cohort)
    assert ok.loc[0, "text"] == 1 and pd.isna(ok.loc[0, "image"])
    with pytest.raises(CohortError, match=r"^r\.csv: file is not UTF-8 text \(invalid start byte at byte 40\)"):
        read_rankings(HEADER.encode() + b"\xffP0,A,1,2,3,4\n", name="r.csv")
    with pytest.raises(CohortError, match=r"^r\.csv, field 'tabular': required column\(s\) tabular missing"):
        read_rankings(b"case_id,rater,image,text,signal\nP0,A,1,2,3\n", name="r.csv")
    with pytest.raises(CohortError, match=r"^r\.csv: the file has no rows"):
        read_rankings(HEADER.encode(), name="r.csv")
    with pytest.raises(CohortError, match="^uploaded file, line 2, case P001, field 'image': the rater ranked image"):
        read_rankings((HEADER + "P001,A,1,2,3,4\n").encode(), name="", cohort=cohort)


def test_every_row_error_is_reported_with_its_line(small_cohort, tmp_path):
    """Three bad rows (and a good one between them) -> three errors, each with its own line, not only one."""
    from neurofusion.data.annotations import RankingErrors

    cohort = CohortReader(small_cohort[0])
    body = "P000,A,1,1,2,3\nP000,B,1,2,3,4\nP000,C,1,2,x,4\nP999,A,1,2,3,4\nP001,A,1,2,3,4\n"
    with pytest.raises(RankingErrors) as err:
        read_rankings(_rankings(tmp_path, body), cohort=cohort)
    found = [(e.line, e.field) for e in err.value.errors]
    assert found == [(2, "rank"), (4, "signal"), (5, "case_id"), (6, "image")]
    message = str(err.value)
    assert message.startswith("4 errors:\n") and message.count("\n") == 4
    for line in (2, 4, 5, 6):
        assert f"r.csv, line {line}, case" in message
    assert "line 3" not in message  # the good row is not blamed
    assert err.value.line == 2 and isinstance(err.value, CohortError)  # the first error's place, as before


def test_a_bad_cell_is_not_also_reported_as_a_bad_ranking(tmp_path):
    with pytest.raises(CohortError) as err:
        read_rankings(_rankings(tmp_path, "P0,A,1,2,3.5,4\n"))
    assert len(err.value.errors) == 1 and "3.5" in str(err.value) and "permutation" not in str(err.value)


def test_a_long_list_of_errors_is_cut_in_the_message_but_kept_whole(tmp_path):
    body = "".join(f"P{i},A,1,1,2,3\n" for i in range(30))
    with pytest.raises(CohortError) as err:
        read_rankings(_rankings(tmp_path, body))
    assert len(err.value.errors) == 30 and [e.line for e in err.value.errors] == list(range(2, 32))
    assert str(err.value).endswith("... and 10 more")
