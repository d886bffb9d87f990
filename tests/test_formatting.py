import torch

from obliviate.data.formatting import Formatter, collate


def test_chat_prompt_masks_and_eos(tiny):
    _, tok = tiny
    fmt = Formatter(tok)
    enc = fmt.encode("Who wrote it?", "Ana Belo wrote it.")
    prompt = tok(fmt.prompt_text("Who wrote it?"), add_special_tokens=False).input_ids
    assert enc.prompt_len == len(prompt)
    assert enc.labels[: enc.prompt_len] == [-100] * enc.prompt_len
    answer = enc.labels[enc.prompt_len :]
    assert answer[-1] == tok.eos_token_id
    assert tok.decode(answer[:-1]) == "Ana Belo wrote it."
    assert "<|im_start|>assistant\n" in tok.decode(enc.input_ids[: enc.prompt_len])


def test_system_prompt_is_used(tiny):
    _, tok = tiny
    text = Formatter(tok, system_prompt="Be brief.").prompt_text("Q?")
    assert "<|im_start|>system\nBe brief.<|im_end|>" in text
    assert "SmolLM" not in text


def test_plain_and_llama2_styles(tiny):
    _, tok = tiny
    plain = Formatter(tok, style="plain")
    assert plain.prompt_text("Q?").endswith("Question: Q?\nAnswer:")
    enc = plain.encode("Q?", "Yes.")
    assert tok.decode(enc.labels[enc.prompt_len : -1]) == " Yes."
    assert Formatter(tok, style="llama2").prompt_text("Q?").endswith("[INST] Q? [/INST]")


def test_no_chat_template_falls_back_with_warning(tiny):
    import copy

    import pytest

    _, tok = tiny
    tok2 = copy.deepcopy(tok)
    tok2.chat_template = None
    with pytest.warns(UserWarning, match="no chat template"):
        fmt = Formatter(tok2)
    assert fmt.style == "plain"


def test_collate_pads_with_real_pad_and_masks_by_length(tiny):
    _, tok = tiny
    assert tok.pad_token_id != tok.eos_token_id
    fmt = Formatter(tok)
    a = fmt.encode("Q?", "A long answer with several words.")
    b = fmt.encode("Q?", "Short.")
    batch = collate([a, b], tok.pad_token_id)
    assert batch["attention_mask"][1].sum().item() == len(b)
    assert batch["attention_mask"][0].sum().item() == len(a)
    pad_pos = batch["attention_mask"][1] == 0
    assert (batch["input_ids"][1][pad_pos] == tok.pad_token_id).all()
    assert (batch["labels"][1][pad_pos] == -100).all()
    # The EOS inside the prompt (<|im_end|> closes every chat turn) stays attended.
    eos_in_prompt = (batch["input_ids"][1, : b.prompt_len] == tok.eos_token_id)
    assert eos_in_prompt.any() and batch["attention_mask"][1, : b.prompt_len][eos_in_prompt].all()
    left = collate([a, b], tok.pad_token_id, side="left")
    assert left["attention_mask"][1, -len(b):].all() and not left["attention_mask"][1, : len(a) - len(b)].any()


def test_pad_not_attended_changes_nothing(tiny):
    """Logits of a sequence are the same alone and right-padded in a batch (pad positions masked)."""
    model, tok = tiny
    fmt = Formatter(tok)
    a = fmt.encode("Q?", "A long answer with several words.")
    b = fmt.encode("Q?", "Short.")
    batch = collate([a, b], tok.pad_token_id)
    alone = collate([b], tok.pad_token_id)
    with torch.no_grad():
        lb = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[1, : len(b)]
        la = model(**{k: v for k, v in alone.items() if k != "labels"}).logits[0]
    assert torch.allclose(lb, la, atol=1e-5)
