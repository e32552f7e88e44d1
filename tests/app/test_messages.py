"""app.messages: one message for every error of a file (each with its line), capped at SHOWN_ERRORS."""

from __future__ import annotations

from app.messages import SHOWN_ERRORS, errors_text
from neurofusion.data.annotations import read_rankings
from neurofusion.data.errors import CohortError


def test_a_single_error_is_one_line():
    assert errors_text("Not used", CohortError("rankings.csv: no case_id column")) == \
        "Not used: rankings.csv: no case_id column"


def test_every_error_of_a_file_is_listed_with_its_line():
    body = "case_id,rater,image,text\nA,dr_a,1,x\nB,dr_a,1,y\n"
    try:
        read_rankings(body.encode(), name="bad.csv", modalities=("image", "text"))
    except CohortError as err:
        text = errors_text("bad.csv was not imported", err)
    else:
        raise AssertionError("read_rankings accepted two bad ranks")
    head, listed = text.split("\n\n")
    assert head == "bad.csv was not imported: 2 errors"
    lines = listed.splitlines()
    assert len(lines) == 2 and "line 2" in lines[0] and "line 3" in lines[1], lines


def test_the_list_is_capped_and_the_rest_counted():
    err = CohortError("many")
    err.errors = [f"line {i}: bad" for i in range(2, 2 + SHOWN_ERRORS + 7)]
    lines = errors_text("Not used", err).split("\n\n")[1].splitlines()
    assert len(lines) == SHOWN_ERRORS + 1 and lines[0] == "- line 2: bad" and lines[-1] == "- ... and 7 more"
