"""Two processes launched by accelerate (gloo on the CPU) against one process: the same training steps, the
same evaluation records, one writer.

One launch runs a fine-tune and a TOFU evaluation in the same two processes (a launch costs seconds); the
same two commands run once more in this process as the reference. A ``sitecustomize`` put on the launched
processes' path logs every file each rank creates, renames or deletes under the output folders, so "only
the main process writes" is observed, not assumed.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~45 s: two launches of two processes each, and the one-process reference

REPO = Path(__file__).resolve().parents[1]

FINETUNE = ["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--epochs", "2",
            "--batch-size", "4", "--lr", "1e-3", "--warmup-ratio", "0.25"]
# 10 items of forget01 in batches of 4: 4, 4, 2 rows; two processes train on 2, 2, 1 rows of each
# methods whose forward passes bypass a DDP wrapper: RMU's layer hook (and its frozen reference), NPO's
# chunked answer head with cached references and an NLL retain term, through LoRA adapters (their random
# initialisation must be the same on every process); retain draws split like the forget rows
UNLEARN = {
    "rmu": ["unlearn", "--model", "tiny-llama", "--method", "rmu", "--forget", "synthetic:forget01", "--retain",
            "synthetic:retain90", "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--quiet",
            "layer=1", "update_layers=0,1", "steering_coeff=2", "alpha=10"],
    "npo": ["unlearn", "--model", "tiny-llama", "--method", "npo", "--forget", "synthetic:forget01", "--retain",
            "synthetic:retain90", "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--quiet",
            "--alpha", "1", "--lora"],
}
EVAL = ["eval", "--model", "tiny-llama", "--data", "synthetic", "--split", "forget01", "--limit", "5",
        "--utility-limit", "3", "--no-generation", "--quiet"]

DRIVER = """
import json, sys
from obliviate.cli import main
sys.exit(max(main(argv) for argv in json.loads(sys.argv[1])))
"""


def _commands(out: dict) -> list[list[str]]:
    """Each command's argv with its --out (before a method's KEY=VALUE options)."""
    cmds = {"ft": FINETUNE, "ev": EVAL, **UNLEARN}
    return [_with_out(cmds[k], out[k]) for k in out]


def _with_out(argv: list[str], out) -> list[str]:
    i = next((i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")), len(argv))
    return argv[:i] + ["--out", str(out)] + argv[i:]

SITECUSTOMIZE = """
import os
_log_dir = os.environ.get("OBLIVIATE_TEST_WRITE_LOG")
if _log_dir and "RANK" in os.environ:
    _log = open(os.path.join(_log_dir, "rank%s.log" % os.environ["RANK"]), "a", buffering=1)
    _roots = os.environ["OBLIVIATE_TEST_WATCH"].split(os.pathsep)

    def _wrap(name):
        real = getattr(os, name)

        def f(*args, **kwargs):
            if name == "open" and not (args[1] if len(args) > 1 else kwargs.get("flags", 0)) & (
                    os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                return real(*args, **kwargs)  # a read
            for a in args[:2]:
                p = os.path.abspath(os.fsdecode(a)) if isinstance(a, (str, bytes, os.PathLike)) else ""
                if any(p.startswith(r) for r in _roots):
                    _log.write("%s %s\\n" % (name, p))
            return real(*args, **kwargs)
        setattr(os, name, f)

    for _n in ("replace", "rename", "unlink", "rmdir", "mkdir", "open"):
        _wrap(_n)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_cmd(n: int, port: int, script: Path, *args: str) -> list[str]:
    """``accelerate launch`` for N CPU processes. accelerate's own ``--cpu`` multi-process launch needs MPI;
    ``--multi_gpu`` starts torchrun's launcher, which works on a CPU-only machine (gloo)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port), str(script), *args]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("dist")
    driver = base / "driver.py"
    driver.write_text(DRIVER)
    hook = base / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    logs = base / "writes"
    logs.mkdir()
    two = {k: base / f"{k}2" for k in ("ft", "ev", *UNLEARN)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "OBLIVIATE_MALLOC": "system",
           "HF_HUB_OFFLINE": "1", "OBLIVIATE_TEST_WRITE_LOG": str(logs),
           "OBLIVIATE_TEST_WATCH": os.pathsep.join(str(p) for p in two.values())}
    proc = subprocess.run(_launch_cmd(2, _free_port(), driver, json.dumps(_commands(two))), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    import torch

    from obliviate.cli import main

    one = {k: base / f"{k}1" for k in two}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for argv in _commands(one):
            assert main(argv) == 0, argv
    finally:
        torch.set_num_threads(threads)
    return {"one": one, "two": two, "logs": logs, "stdout": proc.stdout, "stderr": proc.stderr}


def _run_json(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def test_two_processes_train_like_one_with_the_same_global_batch(runs):
    one, two = _run_json(runs["one"]["ft"]), _run_json(runs["two"]["ft"])
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert two["status"] == "done"
    assert two["config"]["train"]["batch_size"] == 4  # the global batch, as given
    assert _rel(two["final_loss"], one["final_loss"]) < 1e-4
    for e1, e2 in zip(one["history"]["epochs"], two["history"]["epochs"], strict=True):
        assert _rel(e2["mean_loss"], e1["mean_loss"]) < 1e-4
        assert e2["tokens"] == e1["tokens"]  # every row trained once, on one of the two processes
    _same_weights(runs["one"]["ft"], runs["two"]["ft"])


def _same_weights(a: Path, b: Path) -> None:
    """The saved weights agree: the loss of a random tiny model is nearly the same under any split (its
    per-token NLLs are all ~log V), so a per-process mean instead of the global one moves the final loss by
    only ~1e-5 of itself, but the weights after lr 1e-3 steps by far more than float noise."""
    from safetensors.torch import load_file

    w1, w2 = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        assert (w1[k] - w2[k]).abs().max().item() < 1e-5 * max(1.0, w1[k].abs().max().item()), k


def _close(a, b, tol=1e-5) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        if math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= tol * max(1.0, abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    return a == b


@pytest.mark.parametrize("method", sorted(UNLEARN))
def test_two_processes_unlearn_like_one(runs, method):
    one, two = _run_json(runs["one"][method]), _run_json(runs["two"][method])
    assert two["world_size"] == 2 and two["status"] == "done"
    assert _rel(two["final_loss"], one["final_loss"]) < 1e-4
    _same_weights(runs["one"][method], runs["two"][method])


def test_two_process_eval_gathers_the_records_of_a_one_process_eval(runs):
    rows = {}
    for n in ("one", "two"):
        lines = (runs[n]["ev"] / "items.jsonl").read_text().splitlines()
        rows[n] = [json.loads(x) for x in lines]
    assert [(r["set"], r["index"]) for r in rows["two"]] == [(r["set"], r["index"]) for r in rows["one"]]
    for r1, r2 in zip(rows["one"], rows["two"]):
        # Min-K%++ is (log p - mean) / std of log p under the model's next-token distribution, which is nearly
        # uniform in the random tiny model (std ~ 1e-3): it magnifies the ~1e-7 float noise of other batch
        # shapes (each process batches and pads its own shard) to ~1e-3; its inputs are checked at 1e-5.
        m1, m2 = r1.pop("token_minkpp", None), r2.pop("token_minkpp", None)
        assert _close(m2, m1, tol=1e-2), (r1["set"], r1["index"])
        assert _close(r2, r1), (r1["set"], r1["index"], [k for k in r1 if not _close(r2.get(k), r1[k])])
    s1 = json.loads((runs["one"]["ev"] / "summary.json").read_text())
    s2 = json.loads((runs["two"]["ev"] / "summary.json").read_text())
    assert _close(s2, s1)
    assert "processes" not in s2  # who scored what goes to run.json


def test_each_rank_scored_only_its_strided_shard(runs):
    rec = _run_json(runs["two"]["ev"])
    n = sum(1 for _ in (runs["one"]["ev"] / "items.jsonl").open())
    assert n == 5 + 5 + 3 + 3 + 5  # forget, retain, real authors, world facts, holdout
    assert rec["world_size"] == 2
    assert rec["processes"]["items_per_rank"] == [(n + 1) // 2, n // 2]  # item k on rank k mod 2


def test_only_the_main_process_writes(runs):
    logs = runs["logs"]
    rank1 = (logs / "rank1.log").read_text() if (logs / "rank1.log").exists() else ""
    assert rank1 == "", rank1.splitlines()[:5]
    rank0 = (logs / "rank0.log").read_text().splitlines()
    for folder in runs["two"].values():
        assert any(line.endswith(str(folder / "run.json")) for line in rank0)
        # one run.json, no temp file left behind, no second writer's leftovers
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert (runs["two"]["ft"] / "model.safetensors").is_file()
    assert (runs["two"]["ev"] / "items.jsonl").is_file()


def test_only_the_main_process_prints_progress(runs):
    lines = [x for x in runs["stderr"].splitlines() if "finetune epoch" in x]
    assert len(lines) == 2, lines  # one line per epoch, from the main process only
    wrote = [x for x in runs["stdout"].splitlines() if x.startswith("wrote ")]
    assert len(wrote) == 2 + len(UNLEARN), wrote  # each command's result once (eval: "wrote .../summary.json")
