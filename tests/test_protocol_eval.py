"""The protocol threaded through the TOFU evaluation: run.json records it, summary.json names it, and
open-unlearning's pad=eos mask (a bug-compatibility switch) changes scores where EOS-valued tokens sit inside
the prompt — and nowhere else."""

import json

import pytest

from obliviate.data.formatting import Formatter
from obliviate.engine.protocol_scoring import score_answers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_eos_mask_moves_scores_only_when_the_prompt_holds_eos(tiny):
    model, tok = tiny
    q, answers = "Who wrote the book?", ["Ana Belo wrote it.", "Nobody did."]
    chat = Formatter(tok)  # SmolLM2's template: <|im_end|> (= EOS) closes the system and user turns
    assert tok.eos_token_id in chat.prompt_ids(q)
    right = score_answers(model, chat, [(q, answers)])[0]
    bug = score_answers(model, chat, [(q, answers)], pad_mask="eos")[0]
    assert all(abs(r.avg_nll - b.avg_nll) > 1e-4 for r, b in zip(right, bug))
    # no EOS inside the prompt: the plain path with the eos mask reproduces the fast engine's numbers
    plain = Formatter(tok, style="plain")
    assert tok.eos_token_id not in plain.prompt_ids(q)
    a = score_answers(model, plain, [(q, answers)])[0]
    b = score_answers(model, plain, [(q, answers)], pad_mask="eos")[0]
    for x, y in zip(a, b):
        assert y.avg_nll == pytest.approx(x.avg_nll, rel=1e-4)
        assert y.token_minkpp == pytest.approx(x.token_minkpp, rel=5e-3, abs=5e-3)  # z: a ratio of small differences
        assert y.argmax_hits == x.argmax_hits


def test_tofu_eval_records_the_resolved_protocol(tmp_path):
    from obliviate.evaluate import run_tofu_eval

    s = run_tofu_eval("tiny-llama", tmp_path / "ou", data="synthetic", limit=2, utility_limit=2, generation=False,
                      gradnorm=True, progress=False, protocol="open-unlearning", date_string="1 Jan 2020")
    assert s["protocol"] == "open-unlearning" and list(s)[-2:] == ["n_items", "missing"]
    assert s["truncated_answers"] == 0
    cfg = json.loads((tmp_path / "ou" / "run.json").read_text())["config"]
    assert cfg["protocol"]["name"] == "open-unlearning" and cfg["protocol"]["date_string"] == "1 Jan 2020"
    assert cfg["protocol"]["system_prompt"] == "You are a helpful assistant." and cfg["protocol"]["gradnorm"] == "mean_tensor"
    items = [json.loads(x) for x in (tmp_path / "ou" / "items.jsonl").read_text().splitlines()]
    assert "You are a helpful assistant." in items[0]["prompt"]
    assert all(r["gradnorm"] > 0 for r in items if r["set"] in ("forget", "holdout"))
