"""Protocol options of the formatter: a fixed chat-template date, joint tokenization, truncation counts,
open-unlearning's pad=eos mask. Every tokenizer here is built by the test (no download)."""

import datetime as _dt

import pytest
import torch

from obliviate.data.formatting import Formatter, collate
from obliviate.errors import ObliviateError

# A Llama-3.x-style template: reads `date_string`, else today's date through `strftime_now`.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}{%- set date_string = '26 Jul 2024' %}{%- endif %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "<|start_header_id|>system<|end_header_id|>\n\nToday Date: {{ date_string }}\n\n{{ system_message }}<|eot_id|>"
    "{%- for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{%- endfor %}"
    "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}"
)
# A template that calls strftime_now directly, with no date_string variable at all.
STRFTIME_ONLY_TEMPLATE = (
    "Day {{ strftime_now('%Y-%m-%d') }}\n{%- for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{%- endfor %}"
    "{%- if add_generation_prompt %}<assistant>{%- endif %}"
)

CORPUS = [
    "Question: Who wrote the book?\nAnswer: The book was written by Ana Belo.",
    "Question: Where was she born?\nAnswer: She was born in Estmoor, a northern city.",
    "Answer: Yes. Answer: No. The answer is yes and the answer is no.",
    "Who where when what why how Ana Belo Estmoor northern city book written born",
] * 20


def _save_tokenizer(tmp_path, template, metaspace=False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    if metaspace:  # SentencePiece-style: a word-initial space is the "▁" of the next piece
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.Metaspace()])
        tk.decoder = decoders.Metaspace()
    else:
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if not metaspace else []))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                      special_tokens=[("<s>", tk.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="<|eot_id|>" if template else "</s>",
                                   pad_token="<pad>", unk_token="<unk>")
    if template:
        fast.chat_template = template
    fast.save_pretrained(tmp_path)
    return AutoTokenizer.from_pretrained(tmp_path)


class _FakeDate(_dt.datetime):
    today_value = _dt.datetime(2024, 1, 2)

    @classmethod
    def now(cls, tz=None):
        return cls.today_value

    @classmethod
    def today(cls):
        return cls.today_value


def _prompt_on(monkeypatch, tok, day, **kw):
    import transformers.utils.chat_template_utils as ctu

    _FakeDate.today_value = day
    monkeypatch.setattr(ctu, "datetime", _FakeDate, raising=False)
    return Formatter(tok, **kw).prompt_text("Who wrote the book?")


def test_llama3_template_gives_one_prompt_on_any_date(tmp_path, monkeypatch):
    tok = _save_tokenizer(tmp_path, LLAMA3_TEMPLATE)
    a = _prompt_on(monkeypatch, tok, _dt.datetime(2024, 1, 2), system_prompt="You are a helpful assistant.")
    b = _prompt_on(monkeypatch, tok, _dt.datetime(2031, 7, 9), system_prompt="You are a helpful assistant.")
    assert a == b
    assert "Today Date: 10 Apr 2025\n\nYou are a helpful assistant." in a
    # Without a date the same template would follow the (patched) clock: the test can fail.
    c = _prompt_on(monkeypatch, tok, _dt.datetime(2031, 7, 9), date_string=None)
    d = _prompt_on(monkeypatch, tok, _dt.datetime(2024, 1, 2), date_string=None)
    assert c != d and "09 Jul 2031" in c


def test_template_that_only_reads_the_clock_is_flagged(tmp_path, monkeypatch):
    tok = _save_tokenizer(tmp_path, STRFTIME_ONLY_TEMPLATE)
    with pytest.warns(UserWarning, match="today's date"):
        a = _prompt_on(monkeypatch, tok, _dt.datetime(2024, 1, 2))
    assert a.startswith("Day 2024-01-02")
    tok3 = _save_tokenizer(tmp_path / "l3", LLAMA3_TEMPLATE)
    with pytest.warns(UserWarning, match="no --date-string"):
        Formatter(tok3, date_string=None)


def test_joint_chat_matches_the_rendered_conversation(tmp_path):
    tok = _save_tokenizer(tmp_path, LLAMA3_TEMPLATE)
    fmt = Formatter(tok, system_prompt="S", joint=True)
    p, a = fmt.pair_ids("Who wrote the book?", "The book was written by Ana Belo.")
    whole = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Who wrote the book?"},
         {"role": "assistant", "content": "The book was written by Ana Belo."}],
        tokenize=False, date_string="10 Apr 2025")
    assert p + a == tok(whole, add_special_tokens=False).input_ids  # ends with <|eot_id|> = EOS: none added
    assert a[-1] == tok.eos_token_id and tok.decode(p + a[:-1]).endswith("<|end_header_id|>\n\nThe book was written by Ana Belo.")
    assert len(p) == len(fmt.prompt_ids("Who wrote the book?"))  # the reference's boundary: len(prompt alone)


def test_joint_vs_separate_on_a_sentencepiece_style_tokenizer(tmp_path):
    tok = _save_tokenizer(tmp_path, None, metaspace=True)
    q, ans = "Who wrote the book?", "The book was written by Ana Belo."
    sep = Formatter(tok, style="plain", plain_trailing_space=True)
    joint = Formatter(tok, style="plain", plain_trailing_space=True, joint=True)
    ps, as_ = sep.pair_ids(q, ans)
    pj, aj = joint.pair_ids(q, ans)
    full = tok("Question: " + q + "\nAnswer: " + ans).input_ids  # with BOS, like Llama-2's tokenizer
    assert full[0] == tok.bos_token_id
    # joint: the sequence is the whole text tokenized at once, plus EOS; the prompt is its first len(prompt) tokens
    assert pj + aj == full + [tok.eos_token_id]
    assert len(pj) == len(tok("Question: " + q + "\nAnswer: ").input_ids)
    # separate: the trailing space of "Answer: " is a piece of its own and the answer starts with a fresh "▁The";
    # jointly, " The" is one piece, so the sequences differ and the reference's boundary falls inside the answer
    assert ps + as_ != pj + aj
    assert joint.boundary_mismatches == 1 and sep.boundary_mismatches == 0
    # the default legacy rule (obliviate): "Answer:" then " The..." — jointly the same pieces as one text
    plain = Formatter(tok, style="plain", joint=True)
    p2, a2 = plain.pair_ids(q, ans)
    assert plain.boundary_mismatches == 0 and tok.decode(a2[:-1]).strip() == ans


def test_tofu_scores_the_answer_tag(tmp_path):
    tok = _save_tokenizer(tmp_path, None, metaspace=True)
    fmt = Formatter(tok, style="plain", joint=True, score_answer_tag=True)
    p, a = fmt.pair_ids("Who wrote the book?", "Ana Belo.")
    pieces = tok.convert_ids_to_tokens(p + a)
    assert pieces[len(p) - 1] == "▁\n" and pieces[len(p)] == "▁Answer:"  # "Answer: " is scored (TOFU)
    assert a[-1] == tok.eos_token_id
    assert fmt.generation_prompt_text("Q?").endswith("Question: Q?\n")  # TOFU generates "Answer: ..." itself


def test_truncated_answers_are_counted(tiny):
    _, tok = tiny
    fmt = Formatter(tok, max_length=40)
    n_prompt = len(fmt.prompt_ids("Q?"))
    long = " ".join(["word"] * 60)
    e = fmt.encode("Q?", long)
    assert len(e) == 40 and e.prompt_len == n_prompt
    fmt.encode("Q?", long)  # the same pair twice counts once
    fmt.encode("Q?", "Short.")
    assert fmt.truncated_answers == 1


def test_pad_mask_eos_masks_every_eos_valued_token(tiny):
    _, tok = tiny
    fmt = Formatter(tok)
    a, b = fmt.encode("Q?", "A long answer with words."), fmt.encode("Q?", "Short.")
    right = collate([a, b], tok.pad_token_id)
    bug = collate([a, b], tok.pad_token_id, pad_mask="eos", eos_id=tok.eos_token_id)
    eos = tok.eos_token_id
    assert (bug["attention_mask"] == (bug["input_ids"] != eos).long()).all()
    # the prompt's turn ends (<|im_end|> is tiny-llama's EOS) are attended in the correct mask, not in the bug's
    inside = torch.tensor(a.input_ids) == eos
    assert inside[: a.prompt_len].any()
    assert right["attention_mask"][0][: len(a)].all() and not bug["attention_mask"][0][: len(a)][inside].any()
    with pytest.raises(ObliviateError, match="pad_mask"):
        collate([a], tok.pad_token_id, pad_mask="lengths")
