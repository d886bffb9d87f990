#!/usr/bin/env bash
# The docs/results.md unlearning table on the embedded default: smollm2-135m fine-tuned on obliviate's
# synthetic authors (full = 40 authors / 400 QA, retain90 = 36 authors), then NPO and GradDiff on forget10.
# Every step is skipped when its output exists, so the script can be re-run after an interruption.
# Usage: bash benchmarks/results_table.sh [OUT]   (default runs/results; several hours on a 2-core CPU)
set -euo pipefail
OUT=${1:-runs/results}
OBL=${OBLIVIATE:-obliviate}
mkdir -p "$OUT"
t() { /usr/bin/time -f "%e s, %M KB" -o "$OUT/$1.time" "${@:2}"; }

for name in full retain90; do
  [ -f "$OUT/$name/model.safetensors" ] || t "ft-$name" $OBL finetune --model smollm2-135m --data "synthetic:$name" \
      --epochs 3 --lr 2e-4 --batch-size 8 --warmup-ratio 0.1 --out "$OUT/$name" --overwrite --quiet
done
[ -f "$OUT/eval-retain90/summary.json" ] || t eval-retain90 $OBL eval --model "$OUT/retain90" --data synthetic \
    --split forget10 --out "$OUT/eval-retain90" --overwrite --quiet
[ -f "$OUT/eval-full/summary.json" ] || t eval-full $OBL eval --model "$OUT/full" --data synthetic --split forget10 \
    --retain-eval "$OUT/eval-retain90" --out "$OUT/eval-full" --overwrite --quiet

METHOD_ARGS_npo=${METHOD_ARGS_npo:-"--epochs 5 --lr 5e-5 --batch-size 8"}
METHOD_ARGS_grad_diff=${METHOD_ARGS_grad_diff:-"--epochs 5 --lr 2e-5 --batch-size 8"}
for m in npo grad_diff; do
  var="METHOD_ARGS_$m"
  [ -f "$OUT/$m/model.safetensors" ] || t "unlearn-$m" $OBL unlearn --model "$OUT/full" --method $m \
      --forget synthetic:forget10 --retain synthetic:retain90 ${!var} --out "$OUT/$m" --overwrite --quiet
  [ -f "$OUT/eval-$m/summary.json" ] || t "eval-$m" $OBL eval --model "$OUT/$m" --data synthetic --split forget10 \
      --retain-eval "$OUT/eval-retain90" --out "$OUT/eval-$m" --overwrite --quiet
done
python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
keys = ["forget_quality", "model_utility", "forget_truth_ratio"]
full = json.loads((out / "eval-full/summary.json").read_text())
print(f"| model | {' | '.join(keys)} | MU / full | wall time |\n|---|---|---|---|---|---|")
for name in ["full", "retain90", "npo", "grad_diff"]:
    s = json.loads((out / f"eval-{name}/summary.json").read_text())
    tf = out / (f"ft-{name}.time" if name in ("full", "retain90") else f"unlearn-{name}.time")
    wall = tf.read_text().split(",")[0] if tf.exists() else "-"
    fmt = lambda v: "-" if v is None else f"{v:.4g}"
    print(f"| {name} | {' | '.join(fmt(s.get(k)) for k in keys)} | "
          f"{s['model_utility'] / full['model_utility']:.1%} | {wall} |")
PY
