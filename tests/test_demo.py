"""``obliviate demo``: the whole story (fine-tunes, sweep, blind selection, report, card) on tiny-llama."""

import json

import pytest

# minutes on a loaded 2-core machine (two fine-tunes, a sweep, evaluations with generation)
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


def test_demo_quick_on_tiny_llama(tmp_path, capsys):
    from huggingface_hub import ModelCard

    from obliviate.demo import run_demo

    out = tmp_path / "demo"
    assert run_demo(str(out), quick=True, model="tiny-llama", eval_limit=3) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "demo_summary.json").read_text())
    assert text.rstrip().endswith(f"report: {(out / 'report.html').resolve()}")
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    sel = json.loads((out / "sweep" / "selection.json").read_text())
    assert sel["rank1"]["run_dir"] == summary["selected"]
    card = ModelCard.load(summary["card"])
    assert "npo" in card.data.tags and sel["grid_hash"] in card.text
    assert "=== [" in text and "[sweep]" in text  # progress on screen
