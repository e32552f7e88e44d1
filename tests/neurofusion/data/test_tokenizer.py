"""The WordPiece vocabulary fitted to a cohort's notes: deterministic across processes, learned as byte-pair
merges, and round-tripping through a saved tokenizer directory."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from neurofusion.data.tokenizer import SPECIAL_TOKENS, _wordpiece_pieces, load_tokenizer, train_wordpiece

ROOT = Path(__file__).resolve().parents[3]
NOTES = sorted((ROOT / "sample_data" / "cardio" / "notes").glob("*.txt"))

FIT_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
from neurofusion.data.tokenizer import train_wordpiece
notes = [Path(p).read_text() for p in sys.argv[1:]]
print(json.dumps(train_wordpiece(notes, 3000).get_vocab(), sort_keys=True))
"""


def _notes() -> list[str]:
    return [p.read_text() for p in NOTES]


def test_two_processes_fit_the_same_ids():
    """The hash-map order of one process must not decide the vocabulary (tokenizers' trainer's did)."""
    vocabularies = [subprocess.run([sys.executable, "-c", FIT_IN_A_NEW_PROCESS, *map(str, NOTES[:80])], check=True,
                                   capture_output=True, text=True, cwd=ROOT).stdout for _ in range(2)]
    assert json.loads(vocabularies[0]) == json.loads(vocabularies[1])
    assert json.loads(vocabularies[0]) == train_wordpiece([p.read_text() for p in NOTES[:80]], 3000).get_vocab()


def test_merges_follow_pair_frequency_and_break_ties_by_text():
    # "lo" occurs 5 + 3 times, every other adjacent pair fewer: it is merged first
    counts = Counter({"low": 5, "lot": 3, "at": 2})
    pieces = _wordpiece_pieces(counts, room=100, min_frequency=2)
    alphabet = ["##o", "##t", "##w", "a", "l"]
    assert pieces[:5] == alphabet
    assert pieces[5] == "lo"
    # then "low" (5) before "lot" (3); "at" (2) is kept; nothing below min_frequency is merged
    assert pieces[6:] == ["low", "lot", "at"]
    # a tie ("ab" and "cd" both twice) goes to the pair whose pieces sort first
    assert _wordpiece_pieces(Counter({"cd": 2, "ab": 2}), room=100, min_frequency=2)[4:] == ["ab", "cd"]


def test_room_and_min_frequency_bound_the_vocabulary():
    counts = Counter({"low": 5, "lot": 3, "at": 2})
    assert _wordpiece_pieces(counts, room=6, min_frequency=2) == ["##o", "##t", "##w", "a", "l", "lo"]
    assert _wordpiece_pieces(counts, room=100, min_frequency=9) == ["##o", "##t", "##w", "a", "l"]
    assert len(train_wordpiece(_notes(), 300)) == 300


def test_notes_encode_without_unknown_pieces_and_decode_back(tmp_path):
    notes = _notes()
    tokenizer = train_wordpiece(notes, 3000)
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(len(SPECIAL_TOKENS))] == SPECIAL_TOKENS
    ids = tokenizer(notes[0])["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids  # every character of a training note is in the alphabet
    words = " ".join([w for w in notes[0].lower().split() if w.isalpha()][:8])
    assert tokenizer.decode(tokenizer(words)["input_ids"], skip_special_tokens=True) == words
    tokenizer.save_pretrained(tmp_path / "tok")
    assert load_tokenizer(tmp_path / "tok")(notes[1])["input_ids"] == tokenizer(notes[1])["input_ids"]


@pytest.mark.parametrize("notes", [[], [""]])
def test_no_words_leave_only_the_special_tokens(notes):
    assert len(train_wordpiece(notes, 100)) == len(SPECIAL_TOKENS)
