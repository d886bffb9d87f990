"""The protocol beyond eval: finetune and unlearn format their QA items as the protocol says (and record it),
idk methods take the protocol's refusals, PALU's sensitive mask and the audit's probe land on the tokens the
protocol scores, eval's --pad-mask switch, the default protocol, and the warning when a retain evaluation was
made under another protocol."""

import json

import pytest

from obliviate.data.formatting import Formatter
from obliviate.data.schema import QAItem
from obliviate.errors import ObliviateError
from obliviate.protocols import get_protocol
from obliviate.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(epochs=1, lr=1e-3, batch_size=4, progress=False, warmup_ratio=0.0, checkpoint_every_epoch=False)
Q, A = "Who wrote the book?", "The book was written by Ana Belo."
ANA = [{"word": "Ana Belo", "start": A.index("Ana"), "end": A.index("Ana") + len("Ana Belo")}]


def _spy_formatters(monkeypatch, module):
    seen = []
    orig = module.encode_items

    def spy(fmt, items, *a, **k):
        seen.append(fmt)
        return orig(fmt, items, *a, **k)

    monkeypatch.setattr(module, "encode_items", spy)
    return seen


# -- finetune / unlearn ---------------------------------------------------------------------------------------------
def test_finetune_trains_on_the_protocols_prompts_and_records_it(tmp_path, monkeypatch):
    import obliviate.finetune as ft

    seen = _spy_formatters(monkeypatch, ft)
    ft.run_finetune("tiny-llama", "synthetic:forget01", tmp_path / "ou", TrainConfig(**SMALL))
    fmt = seen[-1]  # default: open-unlearning's prompts, the ones eval shows the model by default
    assert fmt.joint and fmt.system_prompt == "You are a helpful assistant." and fmt.date_string == "10 Apr 2025"
    cfg = json.loads((tmp_path / "ou" / "run.json").read_text())["config"]
    assert cfg["protocol"] == "open-unlearning" and cfg["system_prompt"] == "You are a helpful assistant."
    ft.run_finetune("tiny-llama", "synthetic:forget01", tmp_path / "tofu", TrainConfig(**SMALL), protocol="tofu")
    fmt = seen[-1]
    assert fmt.style == "plain" and fmt.score_answer_tag and fmt.max_length == 500 and fmt.system_prompt is None
    cfg = json.loads((tmp_path / "tofu" / "run.json").read_text())["config"]
    assert (cfg["protocol"], cfg["style"], cfg["max_length"]) == ("tofu", "plain", 500)


def test_cli_protocol_flags_and_config_round_trip(tmp_path, monkeypatch):
    import obliviate.finetune as ft
    from obliviate.cli import main
    from obliviate.config import FinetuneConfig, read_config

    seen = _spy_formatters(monkeypatch, ft)
    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--epochs", "1", "--quiet",
                 "--protocol", "obliviate", "--date-string", "1 Jan 2020", "--out", str(tmp_path / "a")]) == 0
    assert not seen[-1].joint and seen[-1].system_prompt is None and seen[-1].date_string == "1 Jan 2020"
    d = read_config(FinetuneConfig, tmp_path / "a" / "run.json", "finetune").format
    assert (d.protocol, d.date_string, d.system_prompt) == ("obliviate", "1 Jan 2020", None)
    assert d.resolved_protocol() == get_protocol("obliviate", date_string="1 Jan 2020")
    # a run.json from before protocols repeats under obliviate's format
    old = {"command": "finetune", "config": {"model": "tiny-llama", "data": "synthetic:forget01", "style": "chat",
                                             "system_prompt": None, "max_length": 512, "n_items": 10, "train": {}}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert read_config(FinetuneConfig, tmp_path / "old.json", "finetune").format.protocol == "obliviate"
    # the legacy styles still refuse a system prompt, with the flag's words
    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--protocol", "tofu",
                 "--system-prompt", "Be brief.", "--out", str(tmp_path / "b")]) == 2


def test_unlearn_formats_with_the_protocol_and_evaluates_under_it(tmp_path, monkeypatch):
    import obliviate.unlearn as ul

    seen = []
    orig = ul.prepare_unlearning

    def spy(*a, **k):
        seen.append(k["formatter"])
        return orig(*a, **k)

    monkeypatch.setattr(ul, "prepare_unlearning", spy)
    got = {}

    def evaluator(model, tok, **kw):
        got.update(kw)
        return {"forget_quality": None}, []

    ul.run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", tmp_path / "u", cfg=TrainConfig(**SMALL),
                   protocol="tofu", eval_every_epoch=True, evaluator=evaluator)
    assert seen[-1].style == "plain" and seen[-1].joint and seen[-1].score_answer_tag
    assert got["formatter"] is seen[-1]
    run = json.loads((tmp_path / "u" / "run.json").read_text())
    assert run["config"]["protocol"] == "tofu" and run["config"]["style"] == "plain"
    plan = ul.plan_unlearning("tiny-llama", "grad_ascent", "synthetic:forget01", eval_every_epoch=True)
    assert plan.ev_extra["protocol"].name == "open-unlearning"  # the default evaluator gets the run's protocol


def test_idk_methods_default_to_the_protocols_refusals(tofu_dir, monkeypatch, capsys):
    from obliviate.refusals import REFUSALS
    from obliviate.unlearn import plan_unlearning

    monkeypatch.delenv("OBLIVIATE_TOFU_DIR", raising=False)
    lines = [x.strip() for x in (tofu_dir / "idontknow.jsonl").read_text().splitlines() if x.strip()]
    plan = plan_unlearning("tiny-llama", "idk_nll", "tofu:forget01", retain="tofu:retain99", data_dir=str(tofu_dir))
    assert plan.refusals == lines and plan.config["idk_file"] == str(tofu_dir / "idontknow.jsonl")
    plan = plan_unlearning("tiny-llama", "idk_dpo", "tofu:forget01", retain="tofu:retain99", data_dir=str(tofu_dir),
                           protocol="obliviate")
    assert plan.refusals == list(REFUSALS) and plan.config["idk_file"] is None
    # TOFU's list belongs to TOFU: synthetic data with no TOFU folder known keeps obliviate's, and says so
    plan = plan_unlearning("tiny-llama", "idk_nll", "synthetic:forget01", retain="synthetic:retain99")
    assert plan.refusals == list(REFUSALS) and "no TOFU data folder is known" in capsys.readouterr().err
    monkeypatch.setenv("OBLIVIATE_TOFU_DIR", str(tofu_dir))
    plan = plan_unlearning("tiny-llama", "idk_nll", "synthetic:forget01", retain="synthetic:retain99", protocol="tofu")
    assert plan.refusals == lines


def test_muse_raw_files_unlearn_as_bos_chunks_whatever_the_protocol(tiny, tmp_path, monkeypatch):
    """MUSE's corpus on fixture files (muse_bench's raw/forget.txt layout) trains as BOS + (L-1)-token chunks of
    the text itself: no chat template or system prompt, under the default (open-unlearning) protocol too."""
    import obliviate.unlearn as ul

    _, tok = tiny
    text = "The minister said on Tuesday that the budget would be cut by a tenth. " * 6
    (tmp_path / "muse" / "raw").mkdir(parents=True)
    (tmp_path / "muse" / "raw" / "forget.txt").write_text(text, encoding="utf-8")
    rows = []

    class Spy(ul.UnlearnBatches):
        def __init__(self, forget, *a, **k):
            rows.extend(forget)
            super().__init__(forget, *a, **k)

    monkeypatch.setattr(ul, "UnlearnBatches", Spy)
    ul.run_unlearn("tiny-llama", "grad_ascent", "muse-news:raw/forget", tmp_path / "u", data_dir=str(tmp_path / "muse"),
                   max_length=16, cfg=TrainConfig(**SMALL))
    ids = tok(text, add_special_tokens=False).input_ids
    assert len(rows) == -(-len(ids) // 15) > 1
    assert all(len(e) == 16 and e.prompt_len == 0 and e.input_ids[0] == tok.bos_token_id
               and e.labels == [-100] + e.input_ids[1:] for e in rows)
    assert rows[0].input_ids[1:] == ids[:15] and rows[1].input_ids[1:] == ids[15:30]


# -- PALU and the probe on the protocol's tokens ---------------------------------------------------------------------
def _flagged(tok, ids, codes) -> str:
    return tok.decode([i for i, c in zip(ids, codes) if c]).strip()


@pytest.mark.parametrize("proto", ["open-unlearning", "obliviate", "tofu"])
def test_palu_mask_covers_the_span_on_the_scored_tokens(tiny, proto):
    from obliviate.methods.palu import PREFIX, SPAN, sensitive_codes

    _, tok = tiny
    fmt = Formatter.from_protocol(tok, get_protocol(proto))
    item = QAItem(question=Q, answer=A, target_words=ANA)
    p, a = fmt.pair_ids(Q, A)
    codes = sensitive_codes(fmt, item, 1)
    assert len(codes) == len(a)  # one code per scored token, the template's tokens after the answer included
    assert _flagged(tok, a, codes) in ("Ana Belo", "Ana Belo.")  # the pieces overlapping the span
    flagged = [c for c in codes if c]
    assert flagged[0] == PREFIX and all(c == SPAN for c in flagged[1:])
    assert codes[-1] == 0 and a[-1] == tok.eos_token_id


def test_palu_mask_follows_joint_tokenization_across_a_merged_boundary(tmp_path):
    """A SentencePiece-style tokenizer: jointly, 'Answer: ' + 'The' merge into '▁The', which the reference's
    boundary (len(tokenize(prompt))) puts in the prompt, so the scored answer tokens are one piece shorter than
    the answer tokenized alone; the mask must follow the joint pieces."""
    from test_protocol_formatting import _save_tokenizer

    from obliviate.methods.palu import sensitive_codes, sensitive_mask

    tok = _save_tokenizer(tmp_path, None, metaspace=True)
    joint = Formatter(tok, style="plain", plain_trailing_space=True, joint=True)
    item = QAItem(question=Q, answer=A, target_words=ANA)
    p, a = joint.pair_ids(Q, A)
    assert joint.boundary_mismatches == 1
    pieces = tok.convert_ids_to_tokens(a)
    assert pieces[0] == "▁book" and pieces[-1] == "</s>"  # "▁The" went to the prompt
    codes = sensitive_codes(joint, item, -1)
    assert [x for x, c in zip(pieces, codes) if c] == ["▁Ana", "▁Belo."]  # every piece overlapping "Ana Belo"
    # the answer tokenized on its own (the old rule) has one more piece ("▁The"): laid on the scored tokens, its
    # mask is one position late, on "▁Belo." and the EOS
    alone = sensitive_mask(tok, joint.answer_text(A), A, Q, ANA, -1)
    assert [x for x, c in zip(pieces, alone) if c] == ["▁Belo.", "</s>"]


def test_probe_input_stops_before_the_key_spans_first_joint_token(tiny):
    from obliviate.audit.format_shift_leak import key_span
    from obliviate.audit.masked_probe import probe_inputs

    _, tok = tiny
    fmt = Formatter.from_protocol(tok, get_protocol("open-unlearning"))
    it = QAItem(question=Q, answer=A, target_words=ANA)
    span = key_span(it)
    (ids, target), = probe_inputs(fmt, [it])
    p, a = fmt.pair_ids(Q, A)
    k = len(ids) - len(p)
    assert ids == p + a[:k] and target == a[k]
    assert A[span[0]:span[1]].startswith(tok.decode([target]).strip())  # the key span's first token


# -- eval: --pad-mask, the default protocol, the retain eval's protocol -----------------------------------------------
def test_pad_mask_flag_and_open_unlearning_default(tmp_path, capsys):
    from obliviate.cli import main
    from obliviate.evaluate import run_tofu_eval

    kw = dict(data="synthetic", split="forget01", limit=2, utility_limit=1, generation=False, gradnorm=False,
              progress=False)
    s = run_tofu_eval("tiny-llama", tmp_path / "d", **kw)
    assert s["protocol"] == "open-unlearning"  # TOFU's default
    run_tofu_eval("tiny-llama", tmp_path / "e", pad_mask="eos", **kw)
    cfg = json.loads((tmp_path / "e" / "run.json").read_text())["config"]["protocol"]
    assert cfg["name"] == "open-unlearning" and cfg["pad_mask"] == "eos"
    items = {}
    for name in ("d", "e"):
        items[name] = [json.loads(x) for x in (tmp_path / name / "items.jsonl").read_text().splitlines()]
    # SmolLM2's <|im_end|> (its EOS, OU's pad) closes the system and user turns: masked, every NLL moves
    assert all(abs(x["avg_nll"] - y["avg_nll"]) > 1e-5 for x, y in zip(items["d"], items["e"]))
    assert main(["eval", "--model", "tiny-llama", "--benchmark", "muse-news", "--pad-mask", "eos",
                 "--out", str(tmp_path / "m")]) == 2
    assert "--pad-mask" in capsys.readouterr().err


def test_retain_eval_of_another_protocol_is_flagged(tmp_path):
    from obliviate.protocols import protocol_mismatch

    ou = get_protocol("open-unlearning")
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "items.jsonl").write_text("")
    assert protocol_mismatch(ev, ou) is None  # no run.json: another tool's logs, protocol unknown
    (ev / "run.json").write_text(json.dumps({"command": "eval", "config": {"protocol": get_protocol("obliviate").as_dict()}}))
    msg = protocol_mismatch(ev, ou)
    assert msg.startswith("warning: --retain-eval") and "'obliviate'" in msg and "'open-unlearning'" in msg
    assert "joint_tokenization False vs True" in msg and "\n" not in msg
    assert protocol_mismatch(ev / "items.jsonl", get_protocol("obliviate")) is None
    assert protocol_mismatch(ev, get_protocol("obliviate", date_string="1 Jan 2020")).count("date_string") == 1
    (ev / "run.json").write_text(json.dumps({"command": "eval", "config": {"model": "m"}}))  # before protocols
    assert "'obliviate'" in protocol_mismatch(ev, ou)


def test_audit_refuses_greedy_answers_of_another_protocol(tmp_path):
    from obliviate.audit.run import reuse_answers

    ev = tmp_path / "ev"
    ev.mkdir()
    it = QAItem(question=Q, answer=A)
    (ev / "items.jsonl").write_text(json.dumps({"set": "forget", "index": 0, "question": Q, "generation": A}) + "\n")
    (ev / "run.json").write_text(json.dumps({"command": "eval", "config": {
        "model": "tiny-llama", "protocol": get_protocol("obliviate").as_dict()}}))
    with pytest.raises(ObliviateError, match=r"^--reuse-eval .* under protocol 'obliviate', this run under "
                                             r"'open-unlearning'.*give the audit that --protocol"):
        reuse_answers(str(ev), [it], "tiny-llama", get_protocol("open-unlearning"))
    assert reuse_answers(str(ev), [it], "tiny-llama", get_protocol("obliviate")) == {Q: A}
