"""One bad case never takes the dashboard down: each kind of unreadable input is a message on that case
naming the file (or field), the case list still appears, and another case opens. Also: uploads are parsed
in memory under a hostile name, and an edited case file is re-explained rather than served from the cache.

Each test runs on a small copy of the sample cohort with one case corrupted. Messages are matched on their
stable parts (case id, file name, field) since the readers' wording may change.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from app.state import case_key, cases_key
from neurofusion.data import CohortReader
from tests.test_sample_data import SAMPLE

ROOT = Path(__file__).resolve().parents[2]
MAIN = str(ROOT / "app" / "main.py")
N_CASES = 5


def _complete_ids() -> list[str]:
    table = pd.read_csv(SAMPLE / "cohort.csv", dtype=str, keep_default_na=False)
    complete = table[[f"has_{m}" for m in ("image", "text", "signal", "tabular")]].eq("1").all(axis=1)
    return table.loc[complete & (table["split"] == "test"), "case_id"].tolist()[:N_CASES]


def _small_cohort(tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the sample cohort reduced to a few complete cases (annotations reduced to match)."""
    keep = _complete_ids()
    root = tmp_path / "cohort"
    shutil.copytree(SAMPLE, root)
    for name in ("cohort.csv", "clinician_rankings.csv", "ground_truth.csv"):
        table = pd.read_csv(root / name, dtype=str, keep_default_na=False)
        table[table["case_id"].isin(keep)].to_csv(root / name, index=False)
    return root, keep


def _app(root: Path, case_id: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.steps_mode"] = "fixed"
    at.session_state["settings.cohort"] = str(root)
    at.query_params["case"] = case_id
    return at.run()


def _another_case_opens(at: AppTest, bad: str, ids: list[str]) -> None:
    picker = at.selectbox(key="case.id")
    assert picker.value == bad
    assert [o for o in picker.options if o.endswith("unreadable")] == [picker.options[ids.index(bad)]]
    good = next(i for i in ids if i != bad)
    picker.set_value(good).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="case.id").value == good
    assert at.metric[0].label == "Predicted"


def _case_error(at: AppTest, case_id: str) -> str:
    assert not at.exception, [e.value for e in at.exception]
    messages = [e.value for e in at.error if case_id in e.value]
    assert messages, [e.value for e in at.error]
    assert not at.metric, "a failed case must not show a prediction"
    return messages[0]


def test_truncated_png_is_a_message_naming_the_file(tmp_path):
    root, ids = _small_cohort(tmp_path)
    bad = ids[0]
    png = root / "images" / f"{bad}.png"
    png.write_bytes(png.read_bytes()[:200])
    at = _app(root, bad)
    message = _case_error(at, bad)
    assert f"{bad}.png" in message
    _another_case_opens(at, bad, ids)


def test_note_that_is_not_utf8_is_a_message_naming_the_file(tmp_path):
    root, ids = _small_cohort(tmp_path)
    bad = ids[1]
    (root / "notes" / f"{bad}.txt").write_bytes("Patient r\u00e9ports chest pain on exertion.".encode("latin-1"))
    at = _app(root, bad)
    message = _case_error(at, bad)
    assert f"{bad}.txt" in message and "UTF-8" in message
    _another_case_opens(at, bad, ids)


def test_signal_with_zero_sampling_rate_is_a_message_naming_the_header(tmp_path):
    root, ids = _small_cohort(tmp_path)
    bad = ids[2]
    header = root / "signals" / f"{bad}.hea"
    lines = header.read_text().splitlines()
    record = lines[0].split()
    record[2] = "0"  # <name> <n_signals> <fs> <n_samples>
    header.write_text("\n".join([" ".join(record), *lines[1:]]) + "\n")
    at = _app(root, bad)
    message = _case_error(at, bad)
    assert f"{bad}.hea" in message
    _another_case_opens(at, bad, ids)


def test_category_the_checkpoint_does_not_know_is_a_message_naming_the_field(tmp_path):
    root, ids = _small_cohort(tmp_path)
    bad = ids[3]
    features = pd.read_csv(root / "features.csv", dtype=str, keep_default_na=False)
    features.loc[features["name"] == "smoker", "categories"] += ";vaper"  # the cohort declares it, the model never saw it
    features.to_csv(root / "features.csv", index=False)
    table = pd.read_csv(root / "cohort.csv", dtype=str, keep_default_na=False)
    table.loc[table["case_id"] == bad, "smoker"] = "vaper"
    table.to_csv(root / "cohort.csv", index=False)
    at = _app(root, bad)
    message = _case_error(at, bad)
    assert "smoker" in message and "vaper" in message
    _another_case_opens(at, bad, ids)


def test_bad_rankings_file_costs_only_the_clinician_section(tmp_path):
    root, ids = _small_cohort(tmp_path)
    bad = ids[0]
    rankings = pd.read_csv(root / "clinician_rankings.csv", dtype=str, keep_default_na=False)
    row = rankings.index[rankings["case_id"] == bad][0]
    rankings.loc[row, ["image", "text", "signal", "tabular"]] = ["1", "1", "2", "3"]  # a tie
    rankings.to_csv(root / "clinician_rankings.csv", index=False)
    at = _app(root, bad)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "clinician_rankings.csv" in errors[0] and bad in errors[0], errors
    assert at.metric[0].label == "Predicted"  # the rest of the case is shown
    picker = at.selectbox(key="case.id")
    picker.set_value(ids[1]).run()
    assert not at.exception and at.selectbox(key="case.id").value == ids[1]
    assert at.metric[0].label == "Predicted"


def test_cohort_pages_leave_an_unreadable_case_out_and_say_so(tmp_path):
    root, ids = _small_cohort(tmp_path)
    bad = ids[0]
    (root / "images" / f"{bad}.png").write_bytes(b"not a png")
    at = _app(root, ids[1])
    for page in ("views/cohort_attention.py", "views/agreement.py", "views/missing.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        warnings = [w.value for w in at.warning if bad in w.value]
        assert warnings and f"{bad}.png" in warnings[0], (page, [w.value for w in at.warning])


def test_upload_with_a_hostile_name_is_parsed_in_memory(tmp_path):
    root, ids = _small_cohort(tmp_path)
    at = _app(root, ids[0])
    at.switch_page("views/agreement.py").run()
    at.radio(key="agreement.source").set_value("upload a CSV").run()
    target = tmp_path / "outside" / "evil.csv"
    target.parent.mkdir()
    body = f"case_id,rater,image,text,signal,tabular\n{ids[0]},A,1,1,2,3\n".encode()
    for name in (str(target), f"../../../../../../{target}", "../evil.csv"):
        at.file_uploader(key="agreement.upload").set_value((name, body, "text/csv")).run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert errors and errors[0].startswith("The uploaded rankings were not used: evil.csv, line 2"), errors
        assert str(tmp_path) not in errors[0] and "/tmp" not in errors[0]
        assert not target.exists()
    good = f"case_id,rater,image,text,signal,tabular\n{ids[0]},A,1,2,3,4\n{ids[1]},A,2,1,4,3\n".encode()
    at.file_uploader(key="agreement.upload").set_value((str(target), good, "text/csv")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Mean tau" in m.label for m in at.metric)
    assert not target.exists()


def test_streamlit_config_limits_uploads_and_keeps_the_offline_settings():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert 1 <= config["server"]["maxUploadSize"] <= 10  # MB: a rankings file needs well under 1
    assert config["server"]["headless"] is True and config["browser"]["gatherUsageStats"] is False
    assert config["server"]["address"] == "127.0.0.1"


def test_edited_note_is_explained_again_not_served_from_the_cache(tmp_path):
    root, ids = _small_cohort(tmp_path)
    case_id = ids[0]
    at = _app(root, case_id)
    at.session_state["case.modality_tab"] = "Clinical note"
    at.run()
    assert not at.exception and not at.error
    before = _phrases(at)
    new_note = ("Zebra quokka narwhal. Wombat platypus axolotl seen in clinic. "
                "Pangolin capybara okapi noted on review.")
    (root / "notes" / f"{case_id}.txt").write_text(new_note, encoding="utf-8")
    at.run()
    assert not at.exception and not at.error
    after = _phrases(at)
    assert after != before
    words = set(new_note.lower().replace(".", "").split())
    assert all(set(p.lower().replace(".", "").split()) <= words for p in after), after


def _phrases(at: AppTest) -> list[str]:
    """The note phrases the explanation ranks highest (the one table with a phrase column)."""
    return next(d.value["phrase"].tolist() for d in at.dataframe if "phrase" in d.value.columns)


def test_case_key_follows_each_of_the_case_files(tmp_path):
    root, ids = _small_cohort(tmp_path)
    reader = CohortReader(root)
    case_id = ids[0]
    keys = {case_key(reader, i) for i in ids}
    assert len(keys) == len(ids)
    whole = cases_key(reader, "table")
    for path in (f"images/{case_id}.png", f"notes/{case_id}.txt", f"signals/{case_id}.hea",
                 f"signals/{case_id}.dat"):
        before = case_key(reader, case_id)
        others = {i: case_key(reader, i) for i in ids[1:]}
        file = root / path
        file.write_bytes(file.read_bytes() + b"\n")
        assert case_key(reader, case_id) != before, path
        assert {i: case_key(reader, i) for i in ids[1:]} == others  # only the edited case is invalidated
        assert cases_key(reader, "table") != whole
        whole = cases_key(reader, "table")
    assert case_key(reader, case_id) == case_key(reader, case_id)
