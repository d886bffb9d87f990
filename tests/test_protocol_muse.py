"""MUSE's own encoding (muse_bench metrics/*.py) under the `muse` protocol, on fixture files: BOS on every
prompt and text, every PrivLeak text token scored, no truncation, KnowMem's trailing space."""

import copy
import json

import pytest

from obliviate.data.muse import knowmem_prompt, muse_ids, privleak_pair, verbmem_reference
from obliviate.data.schema import QAItem
from obliviate.errors import ObliviateError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _with_bos(tok):
    """tiny-llama's tokenizer, made to add a BOS like Llama-2's (MUSE's models)."""
    from tokenizers import processors

    t = copy.deepcopy(tok)
    bos = t.convert_tokens_to_ids("<|im_start|>")
    t._tokenizer.post_processor = processors.TemplateProcessing(single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)])
    assert t("Hello there").input_ids[0] == bos
    return t


def test_privleak_pair_scores_every_text_token_after_bos(tiny):
    _, tok = tiny
    btok = _with_bos(tok)
    text = "The minister said on Tuesday that the budget would be cut."
    plain = btok(text, add_special_tokens=False).input_ids
    p, scored = privleak_pair(btok, text)
    assert p == [btok.convert_tokens_to_ids("<|im_start|>")] and scored == plain  # MUSE privleak.py:14,22
    p, scored = privleak_pair(btok, text, special_tokens=False, max_tokens=5)  # obliviate's former rule
    assert p == plain[:1] and scored == plain[1:5]
    with pytest.raises(ObliviateError, match="row 3"):
        privleak_pair(btok, "a", special_tokens=False, where="muse-news:privleak/forget row 3")


def test_verbmem_reference_counts_the_bos_in_its_128(tiny):
    _, tok = tiny
    btok = _with_bos(tok)
    gt = " the budget would be cut, the minister said, and nobody was surprised at all."
    ids = btok(gt, add_special_tokens=False).input_ids
    n = 6
    assert verbmem_reference(btok, gt, n) == btok.decode(ids[: n - 1], skip_special_tokens=True)  # BOS + 5 tokens
    assert verbmem_reference(btok, gt, n, special_tokens=False) == btok.decode(ids[:n], skip_special_tokens=True)
    assert muse_ids(btok, gt)[1:] == ids


def test_knowmem_prompt_keeps_the_trailing_space():
    icl = [QAItem("Q1?", "A1")]
    assert knowmem_prompt(icl, "Q?").endswith("Question: Q?\nAnswer: ")
    assert knowmem_prompt(icl, "Q?", trailing_space=False).endswith("Answer:")


def _fixture(root):
    import test_muse_data as tm

    tm._write_jsonl(root / "verbmem" / "forget.jsonl", tm.VERBMEM)
    tm._write_jsonl(root / "knowmem" / "forget_qa.jsonl", tm.KNOWMEM_FORGET)
    tm._write_jsonl(root / "knowmem" / "retain_qa.jsonl", tm.KNOWMEM_FORGET)
    tm._write_jsonl(root / "knowmem" / "forget_qa_icl.jsonl", tm.KNOWMEM_ICL)
    tm._write_jsonl(root / "knowmem" / "retain_qa_icl.jsonl", tm.KNOWMEM_ICL)
    tm._write_jsonl(root / "privleak" / "forget.jsonl", tm._text_rows(["Priv forget text one.", "Priv forget two."]))
    tm._write_jsonl(root / "privleak" / "holdout.jsonl", tm._text_rows(tm.PRIV_HOLDOUT))


def test_muse_eval_protocols_on_fixture(tmp_path, tiny, monkeypatch):
    import obliviate.models as models
    from obliviate.evaluate import run_muse_eval

    model, tok = tiny
    btok = _with_bos(tok)
    monkeypatch.setattr(models, "load_model", lambda spec, *a, **k: (model, btok))
    root = tmp_path / "data"
    _fixture(root)
    out = {}
    for name, given in (("muse", None), ("obliviate", "obliviate")):  # None: MUSE's default protocol is muse
        s = run_muse_eval("tiny-llama", tmp_path / f"out-{name}", corpus="muse-news", data_dir=str(root), progress=False,
                          protocol=given)
        assert s["protocol"] == name and list(s)[-1] == "missing"
        run = json.loads((tmp_path / f"out-{name}" / "run.json").read_text())
        assert run["config"]["protocol"]["name"] == name and run["config"]["protocol"]["muse_special_tokens"] == (name == "muse")
        out[name] = [json.loads(x) for x in (tmp_path / f"out-{name}" / "items.jsonl").read_text().splitlines()]
    texts = ["Priv forget text one.", "Priv forget two."]
    for name, extra in (("muse", 0), ("obliviate", -1)):
        pf = [r for r in out[name] if r["set"] == "privleak_forget"]
        # muse: every text token (+ the EOS the records carry); obliviate: the first text token is the prompt
        assert [r["num_tokens"] for r in pf] == [len(btok(t, add_special_tokens=False).input_ids) + 1 + extra for t in texts]
    km = [r for r in out["muse"] if r["set"] == "knowmem_forget"]
    assert all(r["prompt"].endswith("Answer: ") for r in km)
    assert all(r["prompt"].endswith("Answer:") for r in out["obliviate"] if r["set"] == "knowmem_forget")
