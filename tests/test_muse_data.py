"""MUSE loader: a tiny MUSE-format folder written into tmp_path, read through load_items (no hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from obliviate.data import QAItem, load_items
from obliviate.data.muse import (
    FOLD_CONFIGS,
    MUSE_CONFIGS,
    MUSE_RETRAIN_PRIVLEAK_AUC,
    chunk_text,
    knowmem_prompt,
)
from obliviate.errors import ObliviateError
from obliviate.registry import DATASETS

KNOWMEM_FORGET = [
    {"question": "Who won the 2019 election?", "answer": "Boris Johnson"},
    {"question": "Which city hosted the summit?", "answer": "Glasgow"},
]
KNOWMEM_ICL = [
    {"question": "What colour is the sky?", "answer": "Blue"},
    {"question": "How many legs has a spider?", "answer": "Eight"},
]
VERBMEM = [
    {"prompt": "The minister said on Tuesday that", "gt": " the budget would be cut."},
    {"prompt": "Police were called to", "gt": " a house in Leeds."},
]
RAW_FORGET = ["First forget article.", "Second forget article."]
PRIV_HOLDOUT = ["A holdout article never trained on.", "Another holdout one.", "A third."]


def _write_jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _write_json(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")


def _text_rows(texts: list[str]) -> list[dict]:
    return [{"text": t} for t in texts]


@pytest.fixture()
def muse_dir(tmp_path: Path) -> Path:
    """Every config/split of the MUSE layout, a few rows each (mixing .jsonl and JSON-array .json)."""
    root = tmp_path / "muse"
    _write_jsonl(root / "raw" / "forget.jsonl", _text_rows(RAW_FORGET))
    _write_jsonl(root / "raw" / "retain1.jsonl", _text_rows(["Retain one a.", "Retain one b."]))
    _write_json(root / "raw" / "retain2.json", _text_rows(["Retain two a."]))
    _write_jsonl(root / "raw" / "holdout.jsonl", _text_rows(["Raw holdout a.", "Raw holdout b."]))
    _write_json(root / "verbmem" / "forget.json", VERBMEM)
    _write_jsonl(root / "knowmem" / "forget_qa.jsonl", KNOWMEM_FORGET)
    _write_jsonl(root / "knowmem" / "retain_qa.jsonl", [{"question": "Retain Q?", "answer": "Retain A"}])
    _write_json(root / "knowmem" / "forget_qa_icl.json", KNOWMEM_ICL)
    _write_json(root / "knowmem" / "retain_qa_icl.json", KNOWMEM_ICL)
    _write_jsonl(root / "privleak" / "forget.jsonl", _text_rows(["Priv forget a.", "Priv forget b."]))
    _write_jsonl(root / "privleak" / "retain.jsonl", _text_rows(["Priv retain a."]))
    _write_jsonl(root / "privleak" / "holdout.jsonl", _text_rows(PRIV_HOLDOUT))
    return root


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("OBLIVIATE_MUSE_DIR", raising=False)


def test_both_families_registered_with_all_configs():
    for family, hub_id in (("muse-news", "muse-bench/MUSE-News"), ("muse-books", "muse-bench/MUSE-Books")):
        entry = DATASETS.get(family)
        assert entry.meta["source"] == hub_id
        assert entry.meta["paper"] == "arXiv:2407.06460"
        assert entry.meta["configs"] == MUSE_CONFIGS + (FOLD_CONFIGS if family == "muse-news" else [])
    assert FOLD_CONFIGS == [f"{c}/forget_{k}" for c in ("scal", "sust") for k in (1, 2, 3, 4)]
    assert set(MUSE_CONFIGS) == {
        "raw/forget", "raw/retain1", "raw/retain2", "raw/holdout",
        "verbmem/forget",
        "knowmem/forget_qa", "knowmem/retain_qa", "knowmem/forget_qa_icl", "knowmem/retain_qa_icl",
        "privleak/forget", "privleak/retain", "privleak/holdout",
    }


def test_knowmem_maps_question_answer(muse_dir):
    items = load_items("muse-news:knowmem/forget_qa", data_dir=str(muse_dir))
    assert all(isinstance(it, QAItem) for it in items)
    assert [(it.question, it.answer) for it in items] == [(r["question"], r["answer"]) for r in KNOWMEM_FORGET]
    icl = load_items("muse-news:knowmem/forget_qa_icl", data_dir=str(muse_dir))  # a JSON array file
    assert [it.answer for it in icl] == ["Blue", "Eight"]


def test_verbmem_maps_prompt_and_gt(muse_dir):
    items = load_items("muse-news:verbmem/forget", data_dir=str(muse_dir))
    assert [(it.question, it.answer) for it in items] == [(r["prompt"], r["gt"]) for r in VERBMEM]


def test_raw_and_privleak_text_become_answer_with_empty_question(muse_dir):
    raw = load_items("muse-news:raw/forget", data_dir=str(muse_dir))
    assert [(it.question, it.answer) for it in raw] == [("", t) for t in RAW_FORGET]
    priv = load_items("muse-news:privleak/holdout", data_dir=str(muse_dir))
    assert [(it.question, it.answer) for it in priv] == [("", t) for t in PRIV_HOLDOUT]


def test_every_config_loads(muse_dir):
    for config in MUSE_CONFIGS:
        items = load_items(f"muse-books:{config}", data_dir=str(muse_dir))
        assert items and all(isinstance(it, QAItem) and it.answer for it in items)


def test_env_var_path(muse_dir, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_MUSE_DIR", str(muse_dir))
    items = load_items("muse-books:privleak/holdout")
    assert [it.answer for it in items] == PRIV_HOLDOUT
    # an explicit data_dir wins over the environment variable
    monkeypatch.setenv("OBLIVIATE_MUSE_DIR", str(muse_dir / "does-not-exist"))
    assert len(load_items("muse-news:knowmem/forget_qa", data_dir=str(muse_dir))) == 2


def test_corpus_subfolder_layout(tmp_path):
    # muse_bench's data/ folder: data/news/..., data/books/...
    _write_json(tmp_path / "news" / "verbmem" / "forget.json", VERBMEM)
    _write_json(tmp_path / "books" / "verbmem" / "forget.json", VERBMEM[:1])
    assert len(load_items("muse-news:verbmem/forget", data_dir=str(tmp_path))) == 2
    assert len(load_items("muse-books:verbmem/forget", data_dir=str(tmp_path))) == 1


def test_news_scal_and_sust_folds_read_from_a_folder(tmp_path):
    # muse_bench's load_data.py: data/news/<crit>/forget_<k>.json (an array of strings) and .txt (joined by a
    # blank line); the .json is read first (article boundaries kept), a lone .txt is one text
    fold = ["Fold one, article a.", "", "Fold one, article b."]  # an empty text adds nothing to the corpus
    _write_json(tmp_path / "news" / "scal" / "forget_1.json", fold)
    (tmp_path / "news" / "scal" / "forget_1.txt").write_text("\n\n".join(fold), encoding="utf-8")
    (tmp_path / "news" / "sust").mkdir(parents=True)
    (tmp_path / "news" / "sust" / "forget_3.txt").write_text("Request three.", encoding="utf-8")
    got = load_items("muse-news:scal/forget_1", data_dir=str(tmp_path))
    assert [(it.question, it.answer) for it in got] == [("", fold[0]), ("", fold[2])]
    assert [it.answer for it in load_items("muse-news:sust/forget_3", data_dir=str(tmp_path))] == ["Request three."]
    _write_jsonl(tmp_path / "sust" / "forget_2.jsonl", _text_rows(["jsonl fold"]))  # the JSON Lines layout
    assert [it.answer for it in load_items("muse-news:sust/forget_2", data_dir=str(tmp_path))] == ["jsonl fold"]
    with pytest.raises(ObliviateError, match=r"sust/forget_4\.jsonl or sust/forget_4\.json or sust/forget_4\.txt"):
        load_items("muse-news:sust/forget_4", data_dir=str(tmp_path / "news"))
    with pytest.raises(ObliviateError, match=r"unknown muse-books config 'scal/forget_1'"):  # News's folds only
        load_items("muse-books:scal/forget_1", data_dir=str(tmp_path))


def test_missing_field_error_names_file_row_field(muse_dir):
    bad = muse_dir / "knowmem" / "forget_qa.jsonl"
    _write_jsonl(bad, [KNOWMEM_FORGET[0], {"question": "No answer here?"}])
    with pytest.raises(ObliviateError) as ei:
        load_items("muse-news:knowmem/forget_qa", data_dir=str(muse_dir))
    msg = str(ei.value)
    assert str(bad) in msg and "row 2" in msg and "'answer'" in msg

    _write_json(muse_dir / "verbmem" / "forget.json", [{"prompt": "p"}])
    with pytest.raises(ObliviateError, match=r"forget\.json: row 1: missing field 'gt'"):
        load_items("muse-news:verbmem/forget", data_dir=str(muse_dir))

    _write_jsonl(muse_dir / "privleak" / "forget.jsonl", [{"text": "ok"}, {"txt": "typo"}])
    with pytest.raises(ObliviateError, match=r"forget\.jsonl: row 2: missing field 'text'"):
        load_items("muse-news:privleak/forget", data_dir=str(muse_dir))


def test_bad_values_are_clear_errors(muse_dir):
    _write_jsonl(muse_dir / "knowmem" / "retain_qa.jsonl", [{"question": "Q?", "answer": 3}])
    with pytest.raises(ObliviateError, match=r"row 1: field 'answer' must be a string"):
        load_items("muse-news:knowmem/retain_qa", data_dir=str(muse_dir))
    _write_jsonl(muse_dir / "privleak" / "retain.jsonl", [{"text": "   "}])
    with pytest.raises(ObliviateError, match=r"row 1: field 'text' is empty"):
        load_items("muse-news:privleak/retain", data_dir=str(muse_dir))
    # a bare string is a text row only where rows are texts (muse_bench's raw/privleak .json files)
    _write_jsonl(muse_dir / "knowmem" / "retain_qa.jsonl", ["just a string"])
    with pytest.raises(ObliviateError, match=r"retain_qa\.jsonl: row 1: expected an object"):
        load_items("muse-news:knowmem/retain_qa", data_dir=str(muse_dir))
    _write_jsonl(muse_dir / "raw" / "retain1.jsonl", ["just a string"])
    assert [it.answer for it in load_items("muse-news:raw/retain1", data_dir=str(muse_dir))] == ["just a string"]


def test_unknown_config_and_missing_files(muse_dir, tmp_path):
    with pytest.raises(ObliviateError, match=r"unknown muse-news config 'knowmem/forget'.*knowmem/forget_qa"):
        load_items("muse-news:knowmem/forget", data_dir=str(muse_dir))
    with pytest.raises(ObliviateError, match=r"unknown muse-books config 'scal/forget_1'"):
        load_items("muse-books:scal/forget_1", data_dir=str(muse_dir))
    (muse_dir / "knowmem" / "retain_qa.jsonl").unlink()
    with pytest.raises(ObliviateError, match=r"knowmem/retain_qa\.jsonl or knowmem/retain_qa\.json"):
        load_items("muse-news:knowmem/retain_qa", data_dir=str(muse_dir))
    with pytest.raises(ObliviateError, match="does not exist"):
        load_items("muse-news:raw/forget", data_dir=str(tmp_path / "nowhere"))


def test_raw_txt_file_is_one_text(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "forget.txt").write_text("Line one.\nLine two.\n", encoding="utf-8")
    items = load_items("muse-news:raw/forget", data_dir=str(tmp_path))
    assert [(it.question, it.answer) for it in items] == [("", "Line one.\nLine two.\n")]


def test_knowmem_prompt_exact_text():
    icl = [QAItem(question="Q1?", answer="A1"), QAItem(question="Q2?", answer="A2")]
    # MUSE metrics/knowmem.py:29 ends the prompt "Answer: " (trailing space); obliviate's former rule on request
    assert knowmem_prompt(icl, "Q3?") == "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer: "
    assert knowmem_prompt([], "Q?", trailing_space=False) == "Question: Q?\nAnswer:"


class FakeTokenizer:
    """One id per character (ord), plus a BOS id when special tokens are asked for."""

    bos_token_id = 1

    def __init__(self):
        self.calls: list[tuple[str, bool]] = []

    def encode(self, text, add_special_tokens=True):
        self.calls.append((text, add_special_tokens))
        ids = [ord(c) for c in text]
        return ([self.bos_token_id] + ids) if add_special_tokens else ids

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens)}


class CallOnlyTokenizer:
    """Only __call__, returning a mapping with input_ids (like a HF BatchEncoding)."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}


def test_chunk_text_sizes_and_order():
    tok = FakeTokenizer()
    chunks = chunk_text(["abcd", "efg", "hijkl"], tok, chunk_tokens=5)
    flat = [ord(c) for c in "abcdefghijkl"]  # concatenated in order, no special tokens
    assert chunks == [flat[0:5], flat[5:10], flat[10:12]]
    assert [len(c) for c in chunks] == [5, 5, 2]
    assert all(not special for _, special in tok.calls)
    assert chunk_text(["abcd", "efg", "hijkl"], tok, chunk_tokens=5, drop_last=True) == [flat[0:5], flat[5:10]]
    assert chunk_text(["abcdef"], tok, chunk_tokens=3) == [[97, 98, 99], [100, 101, 102]]
    assert chunk_text([], tok) == []
    assert chunk_text(["xy"], CallOnlyTokenizer(), chunk_tokens=2048) == [[120, 121]]


def test_chunk_text_default_is_2048_and_validates():
    chunks = chunk_text(["a" * 3000, "b" * 2000], FakeTokenizer())
    assert [len(c) for c in chunks] == [2048, 2048, 904]
    assert chunks[1][:952] == [97] * 952 and chunks[1][952:] == [98] * 1096
    with pytest.raises(ObliviateError, match="chunk_tokens"):
        chunk_text(["a"], FakeTokenizer(), chunk_tokens=0)
    with pytest.raises(ObliviateError, match=r"texts\[1\]"):
        chunk_text(["a", None], FakeTokenizer())


def test_retrain_privleak_auc_constants():
    assert MUSE_RETRAIN_PRIVLEAK_AUC == {"muse-news": 0.4772, "muse-books": 0.5393}
