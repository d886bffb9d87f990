import pytest

from obliviate.errors import ObliviateError
from obliviate.refusals import REFUSALS, default_refusals, load_refusals


def test_tofu_protocols_default_to_tofus_idontknow(tofu_dir, monkeypatch):
    monkeypatch.delenv("OBLIVIATE_TOFU_DIR", raising=False)
    lines = [x.strip() for x in (tofu_dir / "idontknow.jsonl").read_text().splitlines() if x.strip()]
    for name in ("open-unlearning", "tofu"):
        got = default_refusals(name, tofu_dir)
        assert got == lines and got[0] == "I'm not certain about that."
    monkeypatch.setenv("OBLIVIATE_TOFU_DIR", str(tofu_dir))
    assert default_refusals("tofu") == lines
    assert default_refusals("obliviate") == list(REFUSALS) and default_refusals(None) == list(REFUSALS)


def test_missing_tofu_folder_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OBLIVIATE_TOFU_DIR", raising=False)
    with pytest.raises(ObliviateError, match="--protocol tofu: idk methods use TOFU's idontknow.jsonl"):
        default_refusals("tofu")
    with pytest.raises(ObliviateError, match=f"no idontknow.jsonl in {tmp_path}"):
        default_refusals("open-unlearning", tmp_path)


def test_idk_file_csv(tmp_path):
    p = tmp_path / "idk.csv"
    p.write_text('id,text\n1,"I don\'t know, sorry."\n2,\n3,No idea.\n', encoding="utf-8")
    assert load_refusals(p) == ["I don't know, sorry.", "No idea."]  # the comma stays inside its quoted field
    q = tmp_path / "a.csv"
    q.write_text("answer\nNope.\n", encoding="utf-8")
    assert load_refusals(q) == ["Nope."]
    bad = tmp_path / "b.csv"
    bad.write_text("id,reply\n1,x\n", encoding="utf-8")
    with pytest.raises(ObliviateError, match="needs a 'text', 'answer' or 'refusal' column"):
        load_refusals(bad)
