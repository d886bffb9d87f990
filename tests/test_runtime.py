"""The run lifecycle (runtime/run.py): when the folder is touched, what run.json says, who writes."""

import json

import pytest

from obliviate.errors import ObliviateError
from obliviate.runtime.run import Run
from obliviate.train import TrainConfig
from obliviate.unlearn import run_unlearn

SMALL = dict(epochs=1, lr=1e-3, batch_size=4, progress=False, warmup_ratio=0.0)


def test_nothing_is_written_before_start_and_a_failure_after_it_is_recorded(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(ObliviateError, match="refused"):
        with Run("x", out, {"a": 1}):
            raise ObliviateError("refused")
    assert not out.exists()
    with pytest.raises(ObliviateError):
        with Run("x", out, {"a": 1}) as run:
            run.start()
            assert json.loads((out / "run.json").read_text())["status"] == "running"
            raise ObliviateError("broke")
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "failed" and rec["error"] == "broke" and rec["world_size"] == 1


def test_results_are_written_atomically_and_the_run_ends_done(tmp_path):
    out = tmp_path / "r"
    with Run("x", out, {"a": 1}, seed=3) as run:
        run.write_json("sub/summary.json", {"m": 0.5})
        run.write_jsonl("items.jsonl", [{"v": float("nan")}, {"v": 1}])
        run.write_text("note.txt", "hi\n")
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "done" and rec["config"] == {"a": 1} and rec["seed"] == 3
    assert json.loads((out / "sub" / "summary.json").read_text()) == {"m": 0.5}
    assert (out / "items.jsonl").read_text() == '{"v": null}\n{"v": 1}\n'
    assert sorted(p.name for p in out.iterdir()) == ["items.jsonl", "note.txt", "run.json", "sub"]


def test_in_memory_and_other_ranks_write_nothing(tmp_path, monkeypatch):
    with Run("x", None, {}) as run:
        run.write_json("s.json", {})
        run.start()
    assert run.data["status"] == "done" and run.dir is None
    monkeypatch.setenv("RANK", "1")
    import obliviate.runtime.run as rr

    monkeypatch.setattr(rr, "is_main", lambda: False)
    out = tmp_path / "r1"
    with Run("x", out, {}) as run:
        run.write_json("s.json", {})
    assert not out.exists()


def test_a_refusal_after_the_model_loads_leaves_an_overwritten_folder_as_it_was(tmp_path):
    out = tmp_path / "rmu"
    out.mkdir()
    (out / "run.json").write_text('{"status": "done"}')
    (out / "model.safetensors").write_text("old weights")
    with pytest.raises(ObliviateError, match=r"layer=7 but the model has 2 decoder layers"):
        run_unlearn("tiny-llama", "rmu", "synthetic:forget01", out, retain="synthetic:retain99",
                    cfg=TrainConfig(**SMALL), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "run.json"]
    assert (out / "run.json").read_text() == '{"status": "done"}'
