#!/usr/bin/env bash
# MUSE end to end on the embedded news corpus (synthetic-news), offline: target and retrain models the MUSE way
# (fine-tuned on the chunked forget + retain articles / on retain only), unlearning (NPO, NPO+SAM, GradDiff),
# MUSE's evaluation (VerbMem on D_f, KnowMem on D_f and D_r, PrivLeak relative to the retrain model's own AUC),
# and the relearning attack on every unlearned model with the retrain model relearned the same way as control.
# Then MUSE's two other criteria as recipes: scalability (forget sets of growing size) and sustainability
# (K successive unlearning requests on successive forget folds, evaluated after each).
# Each step is skipped when its output exists (re-run after an interruption). Wall times go to $OUT/*.time.
#
# Usage: bash benchmarks/muse_recipes.sh [OUT] [all|main|scal|sust]     (default runs/muse, all)
#   MODEL=smollm2-135m (default) or tiny-llama for a smoke run; OBLIVIATE='python -m obliviate.cli' from a checkout;
#   NICE='nice -n 10' (default) keeps it at low priority; single-threaded with OMP_NUM_THREADS=1 (default).
# Needs `obliviate relearn` / `relearn-report` (src/obliviate/relearn/_cli.py) wired into the CLI.
set -euo pipefail
OUT=${1:-runs/muse}
WHAT=${2:-all}
MODEL=${MODEL:-smollm2-135m}
OBL=${OBLIVIATE:-obliviate}
NICE=${NICE:-nice -n 10}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
N_FORGET=${N_FORGET:-8}; N_RETAIN=${N_RETAIN:-8}; N_HOLDOUT=${N_HOLDOUT:-8}; SEED=${SEED:-0}
Q="?n_forget=$N_FORGET&n_retain=$N_RETAIN&n_holdout=$N_HOLDOUT&seed=$SEED"
FT="--epochs ${FT_EPOCHS:-5} --lr ${FT_LR:-2e-4} --batch-size 4 --warmup-ratio 0.1 --max-length ${MAX_LEN:-512}"
UL="--epochs ${UL_EPOCHS:-5} --lr ${UL_LR:-1e-5} --batch-size 4 --max-length ${MAX_LEN:-512}"
RELEARN="--steps ${RELEARN_STEPS:-10} --lr ${RELEARN_LR:-1e-5} --batch-size 2 --n-items ${RELEARN_ITEMS:-4}"
mkdir -p "$OUT"
t() { /usr/bin/time -f "%e s, %M KB" -o "$OUT/$1.time" $NICE "${@:2}"; }
done_() { [ -f "$1" ]; }

# the corpus as MUSE files: eval reads it with --benchmark muse-news --data-dir, through the real-MUSE code path
DATA="$OUT/data"
done_ "$DATA/news/raw/forget.txt" || $NICE python -c 'import sys; from obliviate.data.synthetic_news import main; sys.exit(main(sys.argv[1:]))' \
    "$DATA" --seed "$SEED" --n-forget "$N_FORGET" --n-retain "$N_RETAIN" --n-holdout "$N_HOLDOUT"

ev() {  # ev NAME MODEL_DIR [--retain-eval DIR]
  done_ "$OUT/eval-$1/summary.json" || t "eval-$1" $OBL eval --model "$2" --benchmark muse-news --data-dir "$DATA" \
      "${@:3}" --out "$OUT/eval-$1" --overwrite --quiet
}

main() {
  # target: forget + retain1 articles (MUSE's target saw both); retrain: retain1 only
  done_ "$OUT/target/model.safetensors" || t ft-target $OBL finetune --model "$MODEL" \
      --data "synthetic-news:raw/forget$Q+synthetic-news:raw/retain1$Q" $FT --out "$OUT/target" --overwrite --quiet
  done_ "$OUT/retrain/model.safetensors" || t ft-retrain $OBL finetune --model "$MODEL" \
      --data "synthetic-news:raw/retain1$Q" $FT --out "$OUT/retrain" --overwrite --quiet
  ev retrain "$OUT/retrain"
  ev target "$OUT/target" --retain-eval "$OUT/eval-retrain"

  # unlearning on the chunked forget corpus, retain1 as the retain set
  while IFS='|' read -r name method args; do
    done_ "$OUT/$name/model.safetensors" || t "ul-$name" $OBL unlearn --model "$OUT/target" --method "$method" \
        --forget "synthetic-news:raw/forget$Q" --retain "synthetic-news:raw/retain1$Q" $UL $args \
        --out "$OUT/$name" --overwrite --quiet
    ev "$name" "$OUT/$name" --retain-eval "$OUT/eval-retrain"
  done <<< "npo|npo|
npo_sam|npo|--sam-rho 0.01
grad_diff|grad_diff|"

  # the relearning attack: the same steps on the first forget articles for each unlearned model and for retrain
  for name in retrain npo npo_sam grad_diff; do
    done_ "$OUT/relearn-$name/model.safetensors" || t "relearn-$name" $OBL relearn --model "$OUT/$name" \
        --data "synthetic-news:raw/forget$Q" $RELEARN --max-length "${MAX_LEN:-512}" --out "$OUT/relearn-$name" --overwrite
    ev "relearn-$name" "$OUT/relearn-$name" --retain-eval "$OUT/eval-retrain"
  done
  for name in npo npo_sam grad_diff; do
    $OBL relearn-report --before "$OUT/eval-$name" --after "$OUT/eval-relearn-$name" \
        --retrain-before "$OUT/eval-retrain" --retrain-after "$OUT/eval-relearn-retrain" --target "$OUT/eval-target" \
        --out "$OUT/recovery-$name" > /dev/null
  done
  python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
keys = ["verbmem_f", "knowmem_f", "knowmem_r", "privleak"]
print("| model | " + " | ".join(keys) + " | wall (train / eval) |")
print("|---|" + "---|" * (len(keys) + 1))
for name in ["target", "retrain", "npo", "npo_sam", "grad_diff", "relearn-retrain", "relearn-npo", "relearn-npo_sam", "relearn-grad_diff"]:
    s = json.loads((out / f"eval-{name}" / "summary.json").read_text())
    tr = next((p for p in (out / f"ft-{name}.time", out / f"ul-{name}.time", out / f"{name}.time") if p.is_file()), None)
    wall = (tr.read_text().split(",")[0] if tr else "-") + " / " + (out / f"eval-{name}.time").read_text().split(",")[0]
    if name == "retrain":  # its own eval has no --retain-eval (MUSE's published constant): 0 against itself
        s["privleak"] = 0.0
    print(f"| {name} | " + " | ".join("-" if s.get(k) is None else f"{s[k]:.3f}" for k in keys) + f" | {wall} |")
PY
}

scal() {  # scalability: NPO from the same target on forget sets of growing size (synthetic-news:scal/forget_k = folds 1..k)
  for k in 1 2 3 4; do
    done_ "$OUT/scal-$k/model.safetensors" || t "ul-scal-$k" $OBL unlearn --model "$OUT/target" --method npo \
        --forget "synthetic-news:scal/forget_$k$Q" --retain "synthetic-news:raw/retain1$Q" $UL \
        --out "$OUT/scal-$k" --overwrite --quiet
    ev "scal-$k" "$OUT/scal-$k" --retain-eval "$OUT/eval-retrain"
  done
}

sust() {  # sustainability: 4 successive NPO requests, request k on fold k (synthetic-news:sust/forget_k), each
          # starting from the previous request's model; evaluated after each
  prev="$OUT/target"
  for k in 1 2 3 4; do
    done_ "$OUT/sust-$k/model.safetensors" || t "ul-sust-$k" $OBL unlearn --model "$prev" --method npo \
        --forget "synthetic-news:sust/forget_$k$Q" --retain "synthetic-news:raw/retain1$Q" $UL \
        --out "$OUT/sust-$k" --overwrite --quiet
    ev "sust-$k" "$OUT/sust-$k" --retain-eval "$OUT/eval-retrain"
    prev="$OUT/sust-$k"
  done
}

case "$WHAT" in
  main) main ;; scal) scal ;; sust) sust ;;
  all) main; scal; sust ;;
  *) echo "usage: $0 [OUT] [all|main|scal|sust]" >&2; exit 2 ;;
esac
