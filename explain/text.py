"""Note explanations for one case: Layer Integrated Gradients per token, merged to words (word pieces joined)
and to phrases (sentences, and runs of same-sign salient words), each with character offsets into the note
as written, so the app can highlight the original text.

Where the note is attributed (``layer``):
- None (the default): BERT's word embeddings, as Captum's LayerIntegratedGradients on ``word_embeddings``
  does (the same attributions, tested). A token's score is what its word contributes, every layer of BERT
  on the path; each step runs all of BERT.
- j (1 .. layers - 1): the hidden states entering BERT layer j (``output_hidden_states[j]``), from those of
  the baseline note (every word piece replaced by [PAD]) to the case's. The layers below j are computed once
  per case, only the layers from j up run on the path, so a step costs (layers - j) / layers of a full one.
  A token's score is then what its *position's layer-j representation* contributes: that state already mixes
  in the other words the first j layers attended to, so it credits a position with its context, not a word
  alone. The scores still add up to the change in the explained score from the baseline note to the case's
  (completeness holds), and the words, sentences and phrases are formed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from explain._forward import ModalityForward, model_lock
from explain.ablation import sentences
from explain.integrated import Cancel, Completeness, Integration, IntegrationPath, Prepared, integrate
from neurofusion.data.tokenizer import encode


@dataclass
class Span:
    start: int  # character offsets into the note: note[start:end] is the text
    end: int
    text: str
    score: float  # signed, in logit units: positive = evidence for the explained class


@dataclass
class NoteExplanation:
    target: int
    tokens: list[str]  # word pieces as the model saw them, [CLS] ... [SEP]
    token_scores: np.ndarray  # (N,)
    words: list[Span]
    sentences: list[Span]
    phrases: list[Span]  # runs of adjacent words with the same sign and at least 10 % of the top |score|
    truncated: bool  # the note was longer than the model reads
    covered_chars: int  # the model read note[:covered_chars]
    convergence_delta: float
    completeness: Completeness | None = None  # steps, relative completeness error, converged
    layer: str = "word_embeddings"  # where the note was attributed: word embeddings, or "hidden_states[j]"


def explain_note(forward: ModalityForward, note: str, tokenizer, target: int, *, n_steps: int = 50,
                 internal_batch_size: int | None = None, modality: str | None = None, layer: int | None = None,
                 integration: Integration | None = None, cancel: Cancel = None) -> NoteExplanation:
    """Token, word, sentence and phrase attributions of text modality ``modality`` (default the first
    declared; ``note`` is its text as written). ``layer``: where the note is attributed (module docstring;
    None: the word embeddings). ``integration``: how the path is integrated (default exactly ``n_steps``
    Gauss-Legendre steps)."""
    prepared = note_path(forward, note, tokenizer, target, modality=modality, layer=layer)
    integration = integration or Integration(n_steps=n_steps, internal_batch_size=internal_batch_size)
    ((_, attributions, completeness),) = integrate(forward, [prepared.path], target, integration, cancel)
    return prepared.finish(attributions, completeness)


class _Captured(Exception):
    """Raised by the capturing hook to stop BERT's forward pass once layer j's inputs are known."""


def note_path(forward: ModalityForward, note: str, tokenizer, target: int, *, modality: str | None = None,
              layer: int | None = None) -> Prepared:
    """The Integrated Gradients path of a text modality, at its word embeddings (``layer`` None) or at the
    hidden states entering BERT layer ``layer``, and how its attributions become the panel."""
    name = forward.first("text") if modality is None else modality
    if name is None or not forward.has(name):
        raise ValueError("this case has no note to explain")
    model = forward.model
    max_length = model.config.text.max_length
    encoded = encode(tokenizer, note, truncation=True, max_length=max_length, return_offsets_mapping=True)
    ids = forward.inputs(name)["input_ids"]  # (1, N): what the model read
    if ids.shape[1] != len(encoded["input_ids"]) or ids[0].tolist() != encoded["input_ids"]:
        raise ValueError("the batch was tokenised differently from this tokenizer; explain with the checkpoint's own")
    special = torch.tensor(tokenizer.get_special_tokens_mask(encoded["input_ids"], already_has_special_tokens=True),
                           dtype=torch.bool, device=ids.device)[None]  # (1, N), beside the ids it selects from
    baseline = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))
    encoder = model.encoders[name]
    mask = forward.inputs(name)["attention_mask"]
    if layer is None:
        words = encoder.bert.embeddings.word_embeddings
        with model_lock(model), torch.no_grad():
            inputs, base = words(ids), words(baseline)  # (1, N, H) each
        embed = lambda e: encoder(None, mask.expand(e.shape[0], -1), inputs_embeds=e).embedding  # noqa: E731
        where = "word_embeddings"
    else:
        layers = len(encoder.bert.encoder.layer)
        if not isinstance(layer, int) or not 1 <= layer < layers:
            raise ValueError(f"note layer must be an integer from 1 to {layers - 1} (the hidden states entering "
                             f"that BERT layer) or None (the word embeddings), got {layer!r}")
        kept = forward.layer_inputs.get(name) if forward.note_layer == layer else None
        # the case's states from its encoding pass when it kept them; the baseline note's from a pass up to j
        inputs, args, kwargs = kept if kept is not None else _layer_inputs(encoder, ids, mask, layer)
        base, _, _ = _layer_inputs(encoder, baseline, mask, layer)
        embed = partial(_from_layer, encoder, layer, args, kwargs)
        where = f"hidden_states[{layer}]"
    path = IntegrationPath(name, "text", inputs, base, embed)

    def finish(attributions: torch.Tensor, completeness: Completeness) -> NoteExplanation:
        scores = attributions[0].sum(-1).float().cpu().numpy()  # (N, H) -> (N,)
        offsets = encoded["offset_mapping"]
        words = _merge_words(note, scores, offsets, encoded.word_ids())
        covered = max((end for _, end in offsets), default=0)
        full_length = len(encode(tokenizer, note, truncation=False)["input_ids"])
        return NoteExplanation(
            target=target,
            tokens=tokenizer.convert_ids_to_tokens(encoded["input_ids"]),
            token_scores=scores,
            words=words,
            sentences=_sentence_spans(note, words),
            phrases=_salient_runs(note, words),
            truncated=full_length > max_length,
            covered_chars=covered,
            convergence_delta=completeness.delta,
            completeness=completeness,
            layer=where,
        )

    return Prepared(path, finish)


def _layer_inputs(encoder, ids: torch.Tensor, mask: torch.Tensor, layer: int) -> tuple[torch.Tensor, tuple, dict]:
    """What BERT passes to layer ``layer`` for ``ids`` (1, N): the hidden states (1, N, H) and the other
    arguments (the attention mask as BERT prepared it). The layers above are not run."""
    captured = {}

    def hook(module, args, kwargs):
        captured["args"], captured["kwargs"] = args, kwargs
        raise _Captured

    handle = encoder.bert.encoder.layer[layer].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            encoder.bert(input_ids=ids, attention_mask=mask)
    except _Captured:
        pass
    finally:
        handle.remove()
    if "args" not in captured:
        raise RuntimeError(f"BERT never reached layer {layer}; cannot attribute the note there")
    args = captured["args"]
    return args[0].detach(), args[1:], captured["kwargs"]


def _from_layer(encoder, layer: int, args: tuple, kwargs: dict, hidden: torch.Tensor) -> torch.Tensor:
    """BERT's layers from ``layer`` up on hidden states (n, N, H) -> the note's [CLS] embedding (n, H)."""
    n = hidden.shape[0]

    def expand(a):  # the mask BERT prepared for one row, for n rows
        return a.expand(n, *a.shape[1:]) if isinstance(a, torch.Tensor) and a.shape[:1] == (1,) else a

    args = tuple(expand(a) for a in args)
    kwargs = {k: expand(v) for k, v in kwargs.items()}
    for block in encoder.bert.encoder.layer[layer:]:
        hidden = block(hidden, *args, **kwargs)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    return hidden[:, 0]


def _merge_words(note: str, scores: np.ndarray, offsets, word_ids) -> list[Span]:
    """Word pieces of one pre-tokenised word (same word id) -> one span with the summed score."""
    words: dict[int, list] = {}
    for score, (start, end), word in zip(scores, offsets, word_ids):
        if word is None:  # [CLS], [SEP]
            continue
        entry = words.setdefault(word, [start, end, 0.0])
        entry[0], entry[1] = min(entry[0], start), max(entry[1], end)
        entry[2] += float(score)
    return [Span(s, e, note[s:e], score) for s, e, score in (words[k] for k in sorted(words))]


def _sentence_spans(note: str, words: list[Span], bounds: list[tuple[int, int]] | None = None) -> list[Span]:
    """Each sentence (``bounds``, default the note's sentences) with the summed score of its words."""
    spans = []
    for start, end in sentences(note) if bounds is None else bounds:
        score = sum(w.score for w in words if w.start >= start and w.end <= end)
        spans.append(Span(start, end, note[start:end], score))
    return spans


def _salient_runs(note: str, words: list[Span], share: float = 0.1,
                  bounds: list[tuple[int, int]] | None = None) -> list[Span]:
    """Maximal runs of adjacent words (with letters or digits) in one sentence (``bounds``, default the
    note's sentences) whose scores share a sign and reach ``share`` of the largest |score|: the phrases a
    reader sees highlighted."""
    if not words:
        return []
    threshold = share * max(abs(w.score) for w in words)
    ends = [end for _, end in (sentences(note) if bounds is None else bounds)]
    sentence_of = np.searchsorted(ends, [w.start for w in words], side="right")
    runs, current = [], []
    for i, word in enumerate(words):
        # punctuation may sit inside a phrase but is not a phrase a reader looks for by itself
        salient = abs(word.score) >= threshold and word.score != 0 and any(ch.isalnum() for ch in word.text)
        same = current and np.sign(current[-1].score) == np.sign(word.score) and sentence_of[i] == sentence_of[i - 1]
        if salient and (not current or same):
            current.append(word)
            continue
        if current:
            runs.append(current)
        current = [word] if salient else []
    if current:
        runs.append(current)
    return sorted((Span(r[0].start, r[-1].end, note[r[0].start:r[-1].end], sum(w.score for w in r)) for r in runs),
                  key=lambda s: -abs(s.score))
