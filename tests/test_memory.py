"""The C heap: release_memory() gives freed memory back to the operating system (each evaluation phase starts
from what it needs, not from the previous phase's high-water mark), under glibc and under tcmalloc; the
training commands of ``obliviate`` re-execute themselves under tcmalloc when it is installed (OBLIVIATE_MALLOC
opts out)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from obliviate.engine import memory
from obliviate.engine.memory import AllocatorError, allocator, find_tcmalloc, release_memory, use_tcmalloc

TCMALLOC = find_tcmalloc()
needs_tcmalloc = pytest.mark.skipif(TCMALLOC is None or not sys.platform.startswith("linux"),
                                    reason="no tcmalloc library installed (Debian: apt-get install libtcmalloc-minimal4)")


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", memory.ENV, memory._REEXEC_MARK)}
    env.update(extra)
    return env


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux") or allocator() != "glibc",
                    reason="needs glibc's malloc (this process's allocator), malloc_trim and /proc (Linux)")
def test_release_memory_returns_freed_heap_pages():
    junk = [torch.ones(8192) for _ in range(8000)]  # 8000 x 32 KB = 262 MB, below the mmap threshold: heap
    pin = torch.ones(8192)  # allocated last: the top of the heap stays in use, so free() cannot shrink it
    before = _rss()
    del junk
    freed_only = _rss()
    release_memory()
    after = _rss()
    assert before - freed_only < 64e6  # free() alone keeps the pages
    assert freed_only - after > 200e6, (before, freed_only, after)
    assert pin.sum().item() == 8192


@needs_tcmalloc
def test_release_memory_returns_tcmalloc_free_pages():
    code = textwrap.dedent("""
        import torch
        from obliviate.engine.memory import allocator, release_memory
        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * 4096
        junk = [torch.ones(1 << 20) for _ in range(100)]  # 100 x 4 MB
        pin = torch.ones(1 << 20)
        before = rss(); del junk; freed = rss(); release_memory(); after = rss()
        print(allocator(), before - freed, freed - after)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_clean_env(LD_PRELOAD=TCMALLOC))
    assert r.returncode == 0, r.stderr
    name, dropped_by_free, dropped_by_release = r.stdout.split()
    assert name == "tcmalloc"
    assert int(dropped_by_free) < 64e6  # tcmalloc keeps freed spans for reuse...
    assert int(dropped_by_release) > 300e6, r.stdout  # ...until release_memory() hands them back


SCRIPT = os.path.join(os.path.dirname(sys.executable), "obliviate")  # the console script of this environment


def _cli(*argv, cwd=None, **env) -> subprocess.CompletedProcess:
    cmd = [SCRIPT] if os.path.exists(SCRIPT) else [sys.executable, "-m", "obliviate.cli"]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, env=_clean_env(**env), cwd=cwd)


def _finetune_allocator(out, **env) -> str:
    out.mkdir()
    (out / "json.py").write_text("raise SystemExit('the working folder shadowed the json module')\n")
    r = _cli("finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--epochs", "1", "--out", "ft",
             cwd=out, **env)
    assert r.returncode == 0, r.stderr
    run = json.loads((out / "ft" / "run.json").read_text())
    assert run["argv"][1:] == ["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--epochs", "1",
                               "--out", "ft"]
    if os.path.exists(SCRIPT):
        assert run["argv"][0] == SCRIPT  # the command the user ran, not the re-executed module
    return run["versions"]["allocator"]


@pytest.mark.slow  # 34 s
@needs_tcmalloc
def test_training_commands_reexecute_under_tcmalloc_and_the_others_do_not(tmp_path):
    assert _finetune_allocator(tmp_path / "a") == "tcmalloc"
    assert _finetune_allocator(tmp_path / "b", OBLIVIATE_MALLOC="tcmalloc") == "tcmalloc"
    r = _cli("--version")  # evaluation-side commands keep glibc (it peaks lower there)
    assert r.returncode == 0 and "(allocator: glibc)" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.skipif(not sys.platform.startswith("linux") or allocator() != "glibc",
                    reason="needs Linux with glibc's malloc (LD_PRELOAD, and the allocator named glibc)")
@pytest.mark.slow  # 16 s
def test_malloc_system_keeps_glibc_and_a_bad_value_is_named(tmp_path):
    assert _finetune_allocator(tmp_path / "a", OBLIVIATE_MALLOC="system") == "glibc"
    r = _cli("unlearn", "--help", OBLIVIATE_MALLOC="jemalloc")
    assert r.returncode == 2 and "OBLIVIATE_MALLOC='jemalloc': expected auto, tcmalloc or system" in r.stderr
    assert "Traceback" not in r.stderr


def test_use_tcmalloc_execs_python_m_with_the_library_preloaded(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "allocator", lambda: "glibc")
    monkeypatch.setattr(memory, "find_tcmalloc", lambda: "/opt/lib/libtcmalloc_minimal.so.4")
    monkeypatch.setattr(memory.sys, "platform", "linux")
    monkeypatch.setattr(memory.os, "execve", lambda exe, args, env: calls.append((exe, args, env)))
    monkeypatch.delenv(memory.ENV, raising=False)
    monkeypatch.delenv(memory._REEXEC_MARK, raising=False)
    monkeypatch.setenv("LD_PRELOAD", "/opt/lib/libother.so")
    use_tcmalloc(["unlearn", "--model", "m"])
    (exe, args, env), = calls
    assert exe == sys.executable
    assert args == [sys.executable, "-P", "-m", "obliviate.cli", "unlearn", "--model", "m"]
    assert env["LD_PRELOAD"] == "/opt/lib/libtcmalloc_minimal.so.4:/opt/lib/libother.so"
    assert env[memory._REEXEC_MARK] == "1" and env[memory._ARGV0] == sys.argv[0]

    calls.clear()  # the re-executed process does not loop, even if the preload did not take...
    monkeypatch.setattr(memory.sys, "argv", ["/x/obliviate/cli.py", "ls"])
    monkeypatch.setenv(memory._REEXEC_MARK, "1")
    monkeypatch.setenv(memory._ARGV0, "/venv/bin/obliviate")
    use_tcmalloc(["ls"])
    assert calls == [] and memory.sys.argv[0] == "/venv/bin/obliviate"  # ...gets its argv[0] back...
    assert memory._REEXEC_MARK not in os.environ and memory._ARGV0 not in os.environ  # ...and passes neither on
    monkeypatch.setenv(memory._REEXEC_MARK, "1")
    monkeypatch.setenv(memory.ENV, "tcmalloc")  # tcmalloc demanded but not loaded: said so
    with pytest.raises(AllocatorError, match="tcmalloc did not load"):
        use_tcmalloc(["ls"])

    monkeypatch.setattr(memory, "find_tcmalloc", lambda: None)
    with pytest.raises(AllocatorError, match="apt-get install libtcmalloc-minimal4"):
        use_tcmalloc(["ls"])
    monkeypatch.setenv(memory.ENV, "auto")  # auto without the library: the system allocator, silently
    use_tcmalloc(["ls"])
    assert calls == []
