"""runtime/dist in one process (what every ordinary run sees) and the refusals of a multi-process run,
checked without launching one (tests/test_distributed.py launches two); progress lines off a terminal."""

from __future__ import annotations

import io
import sys

import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.runtime import dist
from obliviate.runtime.progress import LineProgress, progress_bar


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


def test_one_process_without_a_launcher():
    assert (dist.rank(), dist.world_size(), dist.local_rank(), dist.is_main()) == (0, 1, 0, True)
    assert dist.init() is False  # nothing to join
    assert dist.all_gather({"a": 1}) == [{"a": 1}]
    assert dist.broadcast(3) == 3
    t = torch.tensor([1.0, 2.0])
    assert dist.all_reduce_sum(t) is t
    assert dist.on_main(lambda x: x + 1, 1) == 2
    dist.barrier()
    assert dist.device() == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))


def test_the_launchers_environment_names_the_process(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (dist.rank(), dist.world_size(), dist.local_rank(), dist.is_main()) == (3, 4, 1, False)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    monkeypatch.setattr(sys, "stdout", out)
    dist.log_on_main("hello")
    dist.print_main("hello", file=out)
    with dist.stdout_on_main():
        print("a result")
    assert out.getvalue() == ""  # only rank 0 speaks


def test_shards_are_strided_disjoint_and_cover_everything():
    items = list("abcdefg")
    parts = [dist.shard(items, r, 3) for r in range(3)]
    assert parts == [["a", "d", "g"], ["b", "e"], ["c", "f"]]
    assert sorted(x for p in parts for x in p) == items
    assert dist.shard(items) == items  # one process: all


@pytest.mark.parametrize("n,world,sizes", [(8, 2, [4, 4]), (5, 2, [3, 2]), (7, 3, [3, 2, 2]), (4, 1, [4])])
def test_split_rows_gives_contiguous_blocks(n, world, sizes):
    blocks = [dist.split_rows(n, r, world) for r in range(world)]
    assert [s.stop - s.start for s in blocks] == sizes
    assert blocks[0].start == 0 and blocks[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))


def test_global_batch_must_split_evenly():
    assert dist.check_global_batch(8, 2) == 4
    assert dist.check_global_batch(8, 1) == 8
    with pytest.raises(ObliviateError, match=r"^--batch-size 7 is the global batch .* 3 processes: give 6 or 9$"):
        dist.check_global_batch(7, 3)
    with pytest.raises(ObliviateError, match=r"processes: give 4$"):
        dist.check_global_batch(3, 4)


def test_mean_is_the_plain_mean_in_one_process():
    x = torch.tensor([1.0, 2.0, 6.0])
    assert dist.mean(x).item() == x.mean().item()
    assert torch.isnan(dist.mean(torch.zeros(0)))
    e = torch.zeros(0, requires_grad=True)
    z = dist.mean(e, empty_zero=True)
    assert z.item() == 0.0 and z.requires_grad


def test_global_mean_formula_over_uneven_shards():
    """What N processes compute, written out: each process's ``sum * N / global count`` averaged over the N
    processes (gradient averaging) is the mean over the global batch, whatever the split."""
    x = torch.tensor([0.5, 1.5, 2.0, 4.0, 7.0])
    for world in (2, 3):
        parts = [x[dist.split_rows(len(x), r, world)] for r in range(world)]
        per_rank = [p.sum() * world / len(x) for p in parts]
        assert torch.isclose(sum(per_rank) / world, x.mean())


class _Batches:
    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def plan(self, epoch):
        return [list(range(s)) for s in self.sizes]

    def epoch(self, epoch, rank=0, world=1):
        return iter(())


def test_multi_process_refusals_name_the_reason():
    from obliviate.robust import SAM, GradPenalty
    from obliviate.train import TrainConfig, check_distributed, nll_loss

    cfg = TrainConfig(batch_size=4)
    check_distributed(_Batches([4, 4, 2]), nll_loss, cfg, 2)  # fine
    with pytest.raises(ObliviateError, match="last batch of each epoch has 1 rows"):
        check_distributed(_Batches([4, 1]), nll_loss, cfg, 2)
    with pytest.raises(ObliviateError, match="--batch-size 4 .* 3 processes"):
        check_distributed(_Batches([4]), nll_loss, cfg, 3)
    with pytest.raises(ObliviateError, match="^--sam-rho: SAM .* one process only"):
        check_distributed(_Batches([4]), SAM(object(), 0.01), cfg, 2)
    with pytest.raises(ObliviateError, match="^--grad-penalty: .* one process only"):
        check_distributed(_Batches([4]), GradPenalty(object(), 0.1), cfg, 2)

    class NoShard(_Batches):
        def epoch(self, epoch):
            return iter(())

    with pytest.raises(ObliviateError, match="NoShard cannot split its batches over 2 processes"):
        check_distributed(NoShard([4]), nll_loss, cfg, 2)


@pytest.mark.parametrize("mode", ["FSDP", "DEEPSPEED"])
def test_sharded_accelerate_modes_are_refused(mode):
    from obliviate.train import check_accelerate_mode

    with pytest.raises(ObliviateError, match=f"accelerate's {mode} mode is not supported.*--multi_gpu"):
        check_accelerate_mode(mode)
    for fine in ("NO", "MULTI_CPU", "MULTI_GPU"):
        check_accelerate_mode(fine)


def test_line_progress_writes_one_line_at_the_end(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)  # not a terminal
    bar = progress_bar(range(5), total=5, desc="TOFU scoring")
    assert isinstance(bar, LineProgress)
    assert list(bar) == [0, 1, 2, 3, 4]
    assert err.getvalue() == ""  # nothing while it runs
    bar.close()
    bar.close()
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("TOFU scoring: 5 items in ") and "items/s" in lines[0]
    quiet = progress_bar(total=3, desc="x", enabled=False)
    quiet.update(3)
    quiet.close()
    assert len(err.getvalue().splitlines()) == 1


def test_epoch_line_has_rate_and_eta():
    from obliviate.train import epoch_line, format_duration

    line = epoch_line("finetune", 1, 6, {"mean_loss": 2.5, "seconds": 4.0, "tokens": 800}, 10, 8.0)
    # two epochs took 8 s: four more take 16 s
    assert line == "finetune epoch 2/6: mean loss 2.5000 (4.0s, 2.50 batches/s, 200 tokens/s, ETA 16s)"
    assert [format_duration(s) for s in (5, 185, 7620)] == ["5s", "3m 05s", "2h 07m"]


def test_a_fine_tune_outside_a_terminal_logs_one_line_per_epoch(tmp_path, capfd, one_torch_thread):
    """The issue's measurement: a 6-epoch tiny fine-tune in a log file wrote ~200 KB of bar frames."""
    from obliviate.cli import main

    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--epochs", "6",
                 "--batch-size", "2", "--out", str(tmp_path / "ft")]) == 0
    err = capfd.readouterr().err
    assert len(err.encode()) < 2000, err[:500]
    epochs = [x for x in err.splitlines() if x.startswith("finetune epoch ")]
    assert [x.split(":")[0] for x in epochs] == [f"finetune epoch {e}/6" for e in range(1, 7)]
    assert all("batches/s" in x and "ETA" in x for x in epochs)
    assert "\r" not in err
