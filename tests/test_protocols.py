import dataclasses

import pytest

from obliviate.errors import ObliviateError
from obliviate.protocols import PRESETS, Protocol, get_protocol, protocol_from_dict
from obliviate.registry import PROTOCOLS


def test_presets_are_registered_and_listed():
    assert set(PROTOCOLS.names()) >= {"open-unlearning", "tofu", "muse", "obliviate"}
    assert PROTOCOLS.get("muse").obj is PRESETS["muse"]


def test_open_unlearning_choices_match_its_configs():
    p = get_protocol("open-unlearning")
    # configs/model/Llama-3.2-1B-Instruct.yaml: system prompt and fixed date
    assert p.system_prompt == "You are a helpful assistant." and p.date_string == "10 Apr 2025"
    assert p.joint_tokenization and p.min_k_count == "floor" and p.gradnorm == "mean_tensor" and p.es_floor
    assert p.pad_mask == "correct"  # the bug-compatibility switch is never on by default


def test_every_preset_has_a_fixed_date():
    for p in PRESETS.values():
        assert p.date_string  # no prompt may depend on today's date


def test_overrides_and_none_passthrough():
    p = get_protocol("open-unlearning", system_prompt=None, date_string="1 Jan 2020", pad_mask="eos")
    assert p.system_prompt == "You are a helpful assistant."  # None = flag not given
    assert p.date_string == "1 Jan 2020" and p.pad_mask == "eos"
    assert get_protocol("open-unlearning").pad_mask == "correct"  # presets are not mutated
    assert protocol_from_dict(p.as_dict()) == p


def test_errors_name_the_field():
    with pytest.raises(ObliviateError, match="--protocol 'nope'"):
        get_protocol("nope")
    with pytest.raises(ObliviateError, match="not a protocol field"):
        get_protocol("muse", colour="red")
    with pytest.raises(ObliviateError, match="pad_mask"):
        get_protocol("muse", pad_mask="left")
    with pytest.raises(ObliviateError, match="max_length"):
        dataclasses.replace(PRESETS["tofu"], max_length=0)


def test_protocol_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["muse"].style = "chat"  # type: ignore[misc]
    assert isinstance(PRESETS["obliviate"], Protocol)


def test_preview_shows_the_boundary_exactly(tiny):
    from obliviate.data import load_items
    from obliviate.data.formatting import Formatter
    from obliviate.protocols import preview_prompts

    _, tok = tiny
    items = load_items("synthetic:forget01")[:2]
    out = preview_prompts(tok, items, "open-unlearning", n=1)
    assert "--- item 1" in out and "--- item 2" not in out
    p, a = Formatter.from_protocol(tok, get_protocol("open-unlearning")).pair_ids(items[0].question, items[0].answer)
    assert f"({len(p)} + {len(a)} tokens)" in out
    assert repr(tok.decode(p + a, skip_special_tokens=False)) in out
    assert f"{p[-1]}:{tok.convert_ids_to_tokens(p[-1])!r}  ||  {a[0]}:" in out
    assert "You are a helpful assistant." in out and "(EOS scored)" in out
    tofu = preview_prompts(tok, items, "tofu", n=1)  # plain style, "Answer: " scored
    assert "Question: " in tofu and "'Answer'" in tofu.split("||")[1]


def test_show_prompts_checks_before_loading(tmp_path):
    from obliviate.protocols import show_prompts

    with pytest.raises(ObliviateError, match="--protocol 'x'"):
        show_prompts("synthetic:forget01", "tiny-llama", protocol="x")
    out = show_prompts("synthetic:forget01", "tiny-llama", protocol="obliviate", n=2)
    assert "--- item 2" in out and "protocol obliviate" in out


def test_legacy_style_override_drops_the_presets_system_prompt():
    p = get_protocol("open-unlearning", style="plain")
    assert p.style == "plain" and p.system_prompt is None  # a legacy prompt has no system turn
    q = get_protocol("open-unlearning", style="chat", system_prompt="Be brief.")
    assert q.system_prompt == "Be brief."
