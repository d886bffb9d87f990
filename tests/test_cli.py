import json
import subprocess
import sys

from obliviate.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ls_json_lists_registries(capsys):
    code, out, _ = run_cli(capsys, "ls", "--json")
    data = json.loads(out)
    assert code == 0
    assert {"models", "datasets", "methods", "metrics", "benchmarks"} <= data.keys()
    assert {"smollm2-135m", "tiny-llama"} <= {e["name"] for e in data["models"]}
    assert {"tofu", "synthetic", "muse-news", "muse-books"} <= {e["name"] for e in data["datasets"]}
    code, out, _ = run_cli(capsys, "ls", "models")
    assert "smollm2-135m" in out
    code, out, _ = run_cli(capsys, "ls", "benchmarks", "--json")
    assert {"tofu", "muse"} <= {e["name"] for e in json.loads(out)}  # every benchmark `eval --benchmark` takes


def test_data_inspect_tofu(capsys, tofu_dir):
    code, out, _ = run_cli(capsys, "data", "inspect", "tofu:forget10_perturbed", "--data-dir", str(tofu_dir), "--json")
    info = json.loads(out)
    assert code == 0 and info["rows"] == 400 and "paraphrased_answer" in info["fields"]
    assert info["perturbed_per_item"] == [5]


def test_data_inspect_synthetic(capsys):
    code, out, _ = run_cli(capsys, "data", "inspect", "synthetic:forget10_perturbed", "--json")
    info = json.loads(out)
    assert info["perturbed_per_item"] == [5] and info["rows"] > 0


def test_errors_are_one_line_exit_2(capsys):
    code, out, err = run_cli(capsys, "data", "inspect", "tofu:forget11", "--data-dir", "/tmp")
    assert code == 2 and err.startswith("obliviate: error: unknown tofu config 'forget11'")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "generate", "--model", "nope-model", "hi")
    assert code == 2 and "built-in names: smollm2-135m, tiny-llama" in err


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "obliviate.cli", "ls", "datasets"], capture_output=True, text=True)
    assert r.returncode == 0 and "synthetic" in r.stdout
