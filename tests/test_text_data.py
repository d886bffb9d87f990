"""Plain texts as MUSE's chunked language-model data (obliviate.data.text)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from obliviate.data import load_items
from obliviate.data.schema import QAItem
from obliviate.data.text import encode_items, is_text, text_chunks
from obliviate.errors import ObliviateError


class CharTok:
    """One token per character (id = code point), BOS 1: chunks can be computed by hand."""
    bos_token_id = 1

    def __call__(self, text, add_special_tokens=True):
        assert add_special_tokens is False  # MUSE tokenizes the corpus without special tokens
        return SimpleNamespace(input_ids=[ord(c) for c in text])


def test_chunks_are_bos_plus_l_minus_1_tokens_and_the_last_is_filled_from_the_first():
    tok = CharTok()
    # "ab" + "\n\n" + "cdefg" = 9 tokens; L = 4: pieces of 3 after BOS
    got = text_chunks(tok, ["ab", "cdefg"], 4)
    a, b, c, d, e, f, g, nl = (ord(x) for x in "abcdefg\n")
    assert got == [[1, a, b, nl], [1, nl, c, d], [1, e, f, g]]
    # 10 tokens: the last piece has one token; MUSE fills it from the first row: ([1, x] + [1, a, b, nl])[:4]
    got = text_chunks(tok, ["ab", "cdefgh"], 4)
    assert got[-1] == [1, ord("h"), 1, a]
    assert all(len(r) == 4 for r in got)


def test_no_bos_tokenizer_cuts_l_token_pieces():
    tok = CharTok()
    tok.bos_token_id = None
    assert text_chunks(tok, ["abcde"], 2) == [[97, 98], [99, 100], [101, 97]]


def test_encode_items_scores_every_token_and_caps_the_chunk_at_max_length():
    fmt = SimpleNamespace(tokenizer=CharTok(), max_length=5, encode=None)
    rows = encode_items(fmt, [QAItem(question="", answer="abcdefgh")])
    assert [r.input_ids for r in rows] == [[1, 97, 98, 99, 100], [1, 101, 102, 103, 104]]
    assert [r.labels for r in rows] == [[-100, 97, 98, 99, 100], [-100, 101, 102, 103, 104]]
    assert all(r.prompt_len == 0 for r in rows)
    rows = encode_items(fmt, [QAItem(question="", answer="abcdefgh")], chunk_tokens=3)
    assert rows[0].input_ids == [1, 97, 98]


def test_qa_items_still_go_through_the_formatter_and_mixing_is_refused():
    calls = []
    fmt = SimpleNamespace(tokenizer=CharTok(), max_length=8, encode=lambda q, a: calls.append((q, a)) or (q, a))
    assert encode_items(fmt, [QAItem(question="q?", answer="a")]) == [("q?", "a")]
    with pytest.raises(ObliviateError, match="mixes 1 plain texts"):
        is_text([QAItem(question="", answer="t"), QAItem(question="q?", answer="a")])


def test_plus_spec_concatenates_splits():
    both = load_items("synthetic-news:raw/forget+synthetic-news:raw/retain1")
    assert both == load_items("synthetic-news:raw/forget") + load_items("synthetic-news:raw/retain1")


def test_real_tokenizer_chunks_of_muse_raw(tiny):
    _, tok = tiny
    texts = [it.answer for it in load_items("synthetic-news:raw/forget")]
    rows = text_chunks(tok, texts, 64)
    ids = tok("\n\n".join(texts), add_special_tokens=False).input_ids
    if tok.bos_token_id is not None:
        assert all(r[0] == tok.bos_token_id and len(r) == 64 for r in rows)
        assert [t for r in rows[:-1] for t in r[1:]] == ids[:63 * (len(rows) - 1)]
