"""The Python API: the README's example runs exactly as written; the calls write nothing without ``out=``."""

import math
import re
from pathlib import Path

import obliviate

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_python_example_runs_as_written(capsys, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1 and len(blocks[0].strip().splitlines()) < 10
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})
    tr, mu = map(float, capsys.readouterr().out.split())
    assert 0 < tr and 0 <= mu <= 1
    assert list(tmp_path.iterdir()) == []  # in memory: nothing written


def test_in_memory_finetune_changes_the_model_and_out_writes_the_run(tmp_path):
    model, tok = obliviate.load_model("tiny-llama")
    items = obliviate.load_data("synthetic:forget01")
    before = next(model.parameters()).detach().clone()
    model, rec = obliviate.finetune(model, tok, items, obliviate.TrainConfig(epochs=1, lr=1e-3, batch_size=4,
                                                                          progress=False))
    assert not next(model.parameters()).detach().equal(before)
    assert rec["status"] == "done" and math.isfinite(rec["final_loss"]) and rec["config"]["n_items"] == len(items)
    _, rec2 = obliviate.finetune(model, tok, "synthetic:forget01", obliviate.TrainConfig(epochs=1, progress=False),
                                 out=tmp_path / "ft")
    assert (tmp_path / "ft" / "run.json").is_file() and (tmp_path / "ft" / "model.safetensors").is_file()
    import obliviate.unlearn as module  # the module and the API function are one object

    assert callable(obliviate.unlearn) and module.run_unlearn
