"""The embedded MUSE-format news corpus (obliviate.data.synthetic_news)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from obliviate.data import load_items
from obliviate.data.muse import MUSE_CONFIGS, MUSE_SPLITS, knowmem_prompt
from obliviate.data.synthetic_news import FOLD_CONFIGS, boxed_pairs, corpus, write_muse_dir
from obliviate.errors import ObliviateError
from obliviate.registry import DATASETS


def _dump(seed, **kw):
    return json.dumps({c: [it.to_dict() for it in load_items(f"synthetic-news:{c}", seed=seed, **kw)]
                       for c in MUSE_CONFIGS}, sort_keys=True).encode()


def test_registered_with_muse_configs_and_every_split_loads():
    assert DATASETS.get("synthetic-news").meta["configs"] == MUSE_CONFIGS + FOLD_CONFIGS
    for config in MUSE_CONFIGS + FOLD_CONFIGS:
        assert load_items(f"synthetic-news:{config}"), config


def _file_hashes(d):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_corpus(tmp_path):
    a, b = hashlib.sha256(_dump(0)).hexdigest(), hashlib.sha256(_dump(0)).hexdigest()
    assert a == b
    assert _dump(0) != _dump(1)
    # the written files too, byte for byte
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_muse_dir(tmp_path / name, seed=seed)
    ha, hb, hc = (_file_hashes(tmp_path / n) for n in "abc")
    assert ha == hb and len(ha) == 32
    assert set(ha) == set(hc) and all(ha[k] != hc[k] for k in ha)


def test_sizes_and_layout():
    n = {"n_forget": 3, "n_retain": 4, "n_holdout": 5}
    q = "n_forget=3&n_retain=4&n_holdout=5"
    assert len(load_items(f"synthetic-news:raw/forget?{q}")) == 3
    assert len(load_items(f"synthetic-news:raw/retain2?{q}")) == 4
    assert len(load_items(f"synthetic-news:raw/holdout?{q}")) == 5
    assert len(load_items(f"synthetic-news:knowmem/forget_qa?{q}")) == 3 * 4
    assert len(load_items(f"synthetic-news:knowmem/retain_qa_icl?{q}")) == 4
    verb = load_items(f"synthetic-news:verbmem/forget?{q}")
    raw = load_items(f"synthetic-news:raw/forget?{q}")
    # VerbMem: prompt + " " + gt is the forget article's prose, in order; its Q&A box follows after a blank line
    assert len(verb) == len(raw) == 3
    for v, r in zip(verb, raw):
        assert r.answer.startswith(v.question + " " + v.answer + "\n\nReaders' questions\n\nQuestion: ")
        assert "Question:" not in v.question + v.answer
    assert all(it.question == "" for it in raw)
    g = corpus(0, **n)
    # every opening template is two sentences (a one-sentence one left an empty sentence and "..")
    sents = [x for arts in corpus(0, n_forget=40).values() for a in arts for x in a.sentences]
    assert all(x.strip() and x.endswith(".") and not x.endswith("..") for x in sents)
    assert [it.answer for it in load_items(f"synthetic-news:privleak/retain?{q}")] == [a.text for a in g["retain1"]]
    assert [it.answer for it in load_items(f"synthetic-news:privleak/holdout?{q}")] == [a.text for a in g["holdout"]]


def test_splits_share_no_facts_and_knowmem_asks_the_forget_articles():
    g = corpus(0)
    facts = {name: {kv for a in arts for kv in a.facts().items()} for name, arts in g.items()}
    names = list(facts)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            assert not facts[x] & facts[y], (x, y)
    forget_text = " ".join(it.answer for it in load_items("synthetic-news:raw/forget"))
    other_text = " ".join(it.answer for s in ("retain1", "retain2", "holdout")
                          for it in load_items(f"synthetic-news:raw/{s}"))

    def has(text, answer):  # as a whole word: a head count like 203 is inside the year 2033
        return re.search(rf"(?<![\w]){re.escape(answer)}(?![\w])", text) is not None

    for qa in load_items("synthetic-news:knowmem/forget_qa"):
        assert has(forget_text, qa.answer) and not has(other_text, qa.answer), qa
    retain1 = " ".join(it.answer for it in load_items("synthetic-news:raw/retain1"))
    for qa in load_items("synthetic-news:knowmem/retain_qa"):
        assert has(retain1, qa.answer) and not has(forget_text, qa.answer), qa
    # the in-context examples are about articles in no raw split
    for qa in load_items("synthetic-news:knowmem/forget_qa_icl") + load_items("synthetic-news:knowmem/retain_qa_icl"):
        assert not has(forget_text + other_text, qa.answer)


def test_every_article_ends_with_a_qa_box_in_knowmems_prompt_form_less_one_held_out_question():
    n = 6
    texts = [it.answer for it in load_items(f"synthetic-news:raw/forget?n_forget={n}")]
    qa = load_items(f"synthetic-news:knowmem/forget_qa?n_forget={n}")
    assert len(qa) == 4 * n
    for k, text in enumerate(texts):
        prose, heading, box = text.split("\n\n", 2)
        assert heading == "Readers' questions" and "Question" not in prose
        mine = qa[4 * k:4 * k + 4]
        boxed = [it for it in mine if f"Question: {it.question}\nAnswer: {it.answer}" in box]
        assert len(boxed) == 3
        # the box is byte for byte the start of MUSE's KnowMem prompt with its pairs as the in-context examples
        assert knowmem_prompt(boxed, "next?").startswith(box + "\n\nQuestion: next?")
        (held,) = [it for it in mine if it not in boxed]
        # the held-out answer is in the prose only, and its question in no text at all
        assert held.answer in prose and all(held.question not in t for t in texts)
    # boxed_pairs finds the same split from the texts alone; the held-out question rotates over the kinds
    flags = boxed_pairs(texts, qa)
    assert [flags[4 * k:4 * k + 4].index(False) for k in range(n)] == [0, 1, 2, 3, 0, 1]
    icl = load_items("synthetic-news:knowmem/forget_qa_icl")
    assert boxed_pairs(texts, icl) == [False] * 4
    assert [q.question.split()[:2] for q in icl] == [["Who", "is"], ["In", "which"], ["How", "many"], ["How", "many"]]


@pytest.mark.parametrize("layout", ["muse_bench", "jsonl"])
def test_written_layouts_load_through_the_muse_loaders(tmp_path, layout):
    files = write_muse_dir(tmp_path / layout, layout=layout, seed=2, n_forget=4)
    d = tmp_path / layout
    for config in MUSE_CONFIGS + FOLD_CONFIGS:
        got = [it.to_dict() for it in load_items(f"muse-news:{config}", data_dir=str(d))]
        want = [it.to_dict() for it in load_items(f"synthetic-news:{config}?seed=2&n_forget=4")]
        assert got == want, config
    if layout == "muse_bench":  # muse_bench's files: arrays of strings for text configs, the .txt joined by a blank line
        raw = json.loads((d / "news" / "raw" / "forget.json").read_text())
        assert all(isinstance(t, str) for t in raw)
        assert (d / "news" / "raw" / "forget.txt").read_text() == "\n\n".join(raw)
        assert set(p.name for p in (d / "news").iterdir()) == set(MUSE_SPLITS) | {"scal", "sust"}
        assert len(files) == len(MUSE_CONFIGS) + 4 + 2 * len(FOLD_CONFIGS)  # + the raw and fold .txt twins
        # the whole-file .txt twin is what the loader reads once the .json is gone: one text, the articles joined
        (d / "news" / "scal" / "forget_2.json").unlink()
        text = load_items("muse-news:scal/forget_2", data_dir=str(d))
        arts = load_items("synthetic-news:scal/forget_2?seed=2&n_forget=4")
        assert len(arts) == 2 and [it.answer for it in text] == ["\n\n".join(it.answer for it in arts)]
    else:
        assert len(files) == len(MUSE_CONFIGS) + len(FOLD_CONFIGS)
        row = json.loads((d / "verbmem" / "forget.jsonl").read_text().splitlines()[0])
        assert set(row) == {"prompt", "gt"}


def test_folds_are_written_only_when_every_fold_has_an_article(tmp_path):
    write_muse_dir(tmp_path, n_forget=3)
    assert not (tmp_path / "news" / "scal").exists() and (tmp_path / "news" / "raw" / "forget.json").is_file()


def test_bad_options_fail_in_one_line():
    with pytest.raises(ObliviateError, match="n_forget must be >= 1"):
        load_items("synthetic-news:raw/forget?n_forget=0")
    with pytest.raises(ObliviateError, match="at most"):
        load_items("synthetic-news:raw/forget?n_forget=100000")
    with pytest.raises(ObliviateError, match="unknown option"):
        load_items("synthetic-news:raw/forget?n_authors=3")


def test_data_news_command_writes_the_folder_with_a_run_record(tmp_path, capsys):
    from obliviate.cli import main

    out = tmp_path / "d"
    assert main(["data", "news", "--out", str(out), "--n-forget", "4", "--seed", "4"]) == 0
    assert "--data-dir" in capsys.readouterr().out
    got = load_items("muse-news:scal/forget_2", data_dir=str(out))
    assert got == load_items("synthetic-news:scal/forget_2?n_forget=4&seed=4")
    rec = json.loads((out / "run.json").read_text())
    assert rec["command"] == "data-news" and rec["status"] == "done" and rec["seed"] == 4
    assert "news/raw/forget.txt" in rec["files"] and rec["config"]["n_forget"] == 4
    # an existing corpus is kept unless --overwrite; a bad size is refused before the folder is touched
    assert main(["data", "news", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "news", "--out", str(out), "--n-forget", "0", "--overwrite"]) == 2
    assert "n_forget must be >= 1" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["seed"] == 4
    assert main(["data", "news", "--out", str(out), "--layout", "jsonl", "--overwrite"]) == 0
    assert not (out / "news").exists() and (out / "raw" / "forget.jsonl").is_file()


def test_scal_and_sust_folds_cut_the_forget_articles():
    forget = load_items("synthetic-news:raw/forget?n_forget=8")
    sust = [load_items(f"synthetic-news:sust/forget_{k}?n_forget=8") for k in range(1, 5)]
    assert [len(f) for f in sust] == [2, 2, 2, 2] and sum(sust, []) == forget
    assert [len(load_items(f"synthetic-news:scal/forget_{k}?n_forget=8")) for k in range(1, 5)] == [2, 4, 6, 8]
    assert load_items("synthetic-news:scal/forget_4?n_forget=8") == forget
    with pytest.raises(ObliviateError, match="empty split"):
        load_items("synthetic-news:sust/forget_1?n_forget=3")
