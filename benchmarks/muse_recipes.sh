#!/usr/bin/env bash
# MUSE end to end on the embedded news corpus (synthetic-news), offline: target and retrain models the MUSE way
# (fine-tuned on the chunked forget + retain articles / on retain only), unlearning (NPO, NPO+SAM, GradDiff),
# MUSE's evaluation (VerbMem on D_f, KnowMem on D_f and D_r, PrivLeak relative to the retrain model's own AUC),
# and the relearning attack on every unlearned model with the retrain model relearned the same way as control.
# Then MUSE's two other criteria as recipes: scalability (forget sets of growing size) and sustainability
# (K successive unlearning requests on successive forget folds, evaluated after each).
# The corpus is written by `obliviate data news` in muse_bench's file layout and read back as muse-news with
# --data-dir, the code path of the real MUSE-News files (DATA=path/to/muse_bench/data runs the recipe on those).
# Each step is skipped when its output exists (re-run after an interruption). Wall times go to $OUT/*.time.
#   UNLEARNED: the unlearned models of main (default "npo npo_sam grad_diff");
#   sizes: N_FORGET, N_RETAIN, N_HOLDOUT (articles, default 8 each; scal/sust need N_FORGET >= 4), SEED;
#   training: MAX_LEN (chunk tokens, 128), FT_EPOCHS / FT_LR / FT_BATCH (10, 2e-4, 4), UL_EPOCHS / UL_LR /
#   UL_BATCH (10, 5e-5, 2), RELEARN_STEPS / RELEARN_LR / RELEARN_BATCH / RELEARN_ITEMS (10 steps, 5e-5, 2, on the
#   first 4 forget articles). CPU time grows with the tokens seen, not the steps: a smaller batch is more steps
#   for the same time.
#
# Usage: bash benchmarks/muse_recipes.sh [OUT] [all|main|scal|sust|table]     (default runs/muse, all)
#   MODEL=smollm2-135m (default) or tiny-llama for a smoke run; OBLIVIATE='python -m obliviate.cli' from a checkout
#   (then PYTHON=python too, for the boxed / held-out KnowMem columns of the table);
#   NICE='nice -n 10' (default) keeps it at low priority (NICE= runs it at normal priority); single-threaded with OMP_NUM_THREADS=1 (default).
# After each part, a markdown table of every evaluation so far (and the relearning recovery) is printed; `table`
# prints it again.
set -euo pipefail
OUT=${1:-runs/muse}
WHAT=${2:-all}
MODEL=${MODEL:-smollm2-135m}
OBL=${OBLIVIATE:-obliviate}
PY=${PYTHON:-python3}  # prints the tables; with obliviate importable it splits KnowMem into boxed / held-out questions
NICE=${NICE-nice -n 10}  # NICE= (empty): normal priority
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
UNLEARNED=${UNLEARNED:-npo npo_sam grad_diff}  # which unlearned models main() makes (and relearns)
N_FORGET=${N_FORGET:-8}; N_RETAIN=${N_RETAIN:-8}; N_HOLDOUT=${N_HOLDOUT:-8}; SEED=${SEED:-0}
NOCK="$OUT/no-checkpoints.toml"  # written below
MAX_LEN=${MAX_LEN:-128}  # tokens per training chunk (MUSE: 2048); short chunks give a few steps per epoch here
FT="--config $NOCK --epochs ${FT_EPOCHS:-10} --lr ${FT_LR:-2e-4} --batch-size ${FT_BATCH:-4} --warmup-ratio 0.1"
FT="$FT --max-length $MAX_LEN"
UL="--config $NOCK --epochs ${UL_EPOCHS:-10} --lr ${UL_LR:-5e-5} --batch-size ${UL_BATCH:-2} --max-length $MAX_LEN"
RELEARN="--steps ${RELEARN_STEPS:-10} --lr ${RELEARN_LR:-5e-5} --batch-size ${RELEARN_BATCH:-2} --n-items ${RELEARN_ITEMS:-4}"
mkdir -p "$OUT"
# no per-epoch checkpoints (each is the model plus AdamW's two moments, ~1.6 GB on smollm2): an interrupted step
# reruns from its start
printf '[train]\ncheckpoint_every_epoch = false\n' > "$NOCK"
t() { /usr/bin/time -f "%e s, %M KB" -o "$OUT/$1.time" $NICE "${@:2}"; }
done_() { [ -f "$1" ]; }

# the corpus as MUSE files (muse_bench's layout); every step reads it as muse-news with --data-dir, the code path of
# the real MUSE-News files (point DATA at muse_bench's data/ folder to run the same recipe on them)
DATA=${DATA:-$OUT/data}
D="--data-dir $DATA"
done_ "$DATA/news/raw/forget.txt" || $NICE $OBL data news --out "$DATA" --seed "$SEED" --n-forget "$N_FORGET" \
    --n-retain "$N_RETAIN" --n-holdout "$N_HOLDOUT" --overwrite > /dev/null

# EVAL_PROTOCOL=P: every evaluation under `--protocol P` (default: the benchmark's own, muse), into $E-<name>; the
# models are reused, so a second pass with EVAL_PROTOCOL set evaluates the same models under another protocol
E=eval${EVAL_PROTOCOL:+-$EVAL_PROTOCOL}; R=${EVAL_PROTOCOL:+$EVAL_PROTOCOL-}
PROTO=${EVAL_PROTOCOL:+--protocol $EVAL_PROTOCOL}
ev() {  # ev NAME MODEL_DIR [--retain-eval DIR]
  done_ "$OUT/$E-$1/summary.json" || t "$E-$1" $OBL eval --model "$2" --benchmark muse-news --data-dir "$DATA" \
      $PROTO "${@:3}" --out "$OUT/$E-$1" --overwrite --quiet
}

main() {
  # target: forget + retain1 articles (MUSE's target saw both); retrain: retain1 only
  done_ "$OUT/target/model.safetensors" || t ft-target $OBL finetune --model "$MODEL" \
      --data "muse-news:raw/forget+muse-news:raw/retain1" $D $FT --out "$OUT/target" --overwrite --quiet
  done_ "$OUT/retrain/model.safetensors" || t ft-retrain $OBL finetune --model "$MODEL" \
      --data muse-news:raw/retain1 $D $FT --out "$OUT/retrain" --overwrite --quiet
  ev retrain "$OUT/retrain"
  ev target "$OUT/target" --retain-eval "$OUT/$E-retrain"

  # unlearning on the chunked forget corpus, retain1 as the retain set
  while IFS='|' read -r name method args; do
    case " $UNLEARNED " in *" $name "*) ;; *) continue ;; esac
    done_ "$OUT/$name/model.safetensors" || t "ul-$name" $OBL unlearn --model "$OUT/target" --method "$method" \
        --forget muse-news:raw/forget --retain muse-news:raw/retain1 $D $UL $args \
        --out "$OUT/$name" --overwrite --quiet
    ev "$name" "$OUT/$name" --retain-eval "$OUT/$E-retrain"
  done <<< "npo|npo|
npo_sam|npo|--sam-rho 0.01
grad_diff|grad_diff|"

  # the relearning attack: the same steps on the first forget articles for each unlearned model and for retrain
  for name in retrain $UNLEARNED; do
    done_ "$OUT/relearn-$name/model.safetensors" || t "relearn-$name" $OBL relearn --model "$OUT/$name" \
        --data muse-news:raw/forget $D $RELEARN --max-length "$MAX_LEN" --out "$OUT/relearn-$name" --overwrite
    ev "relearn-$name" "$OUT/relearn-$name" --retain-eval "$OUT/$E-retrain"
  done
  for name in $UNLEARNED; do
    $OBL relearn-report --before "$OUT/$E-$name" --after "$OUT/$E-relearn-$name" \
        --retrain-before "$OUT/$E-retrain" --retrain-after "$OUT/$E-relearn-retrain" --target "$OUT/$E-target" \
        --out "$OUT/${R}recovery-$name" > /dev/null
  done
}

scal() {  # scalability: NPO from the same target on forget sets of growing size (scal/forget_k = folds 1..k)
  for k in 1 2 3 4; do
    done_ "$OUT/scal-$k/model.safetensors" || t "ul-scal-$k" $OBL unlearn --model "$OUT/target" --method npo \
        --forget "muse-news:scal/forget_$k" --retain muse-news:raw/retain1 $D $UL \
        --out "$OUT/scal-$k" --overwrite --quiet
    ev "scal-$k" "$OUT/scal-$k" --retain-eval "$OUT/$E-retrain"
  done
}

sust() {  # sustainability: 4 successive NPO requests, request k on fold k (sust/forget_k), each
          # starting from the previous request's model; evaluated after each
  prev="$OUT/target"
  for k in 1 2 3 4; do
    done_ "$OUT/sust-$k/model.safetensors" || t "ul-sust-$k" $OBL unlearn --model "$prev" --method npo \
        --forget "muse-news:sust/forget_$k" --retain muse-news:raw/retain1 $D $UL \
        --out "$OUT/sust-$k" --overwrite --quiet
    ev "sust-$k" "$OUT/sust-$k" --retain-eval "$OUT/$E-retrain"
    prev="$OUT/sust-$k"
  done
}

table() {  # every evaluation so far: MUSE's numbers and wall times; then the relearning recovery
  $PY - "$OUT" "$DATA" "$E" <<'PY'
import json, sys, pathlib
out, data, E = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
keys = ["verbmem_f", "knowmem_f", "knowmem_r", "privleak_auc", "privleak"]
try:  # KnowMem on D_f split into the questions in the articles' Q&A boxes and the held-out ones (transfer)
    from obliviate.data import QAItem, load_items
    from obliviate.data.synthetic_news import boxed_pairs
    from obliviate.metrics.muse import knowmem
    texts = [it.answer for it in load_items("muse-news:raw/forget", data_dir=data)]
except ImportError:  # obliviate not importable by $PY: no split
    texts = None
def split(name):
    recs = [json.loads(x) for x in (out / f"{E}-{name}" / "items.jsonl").read_text().splitlines()]
    recs = [r for r in recs if r.get("set") == "knowmem_forget"]
    flags = boxed_pairs(texts, [QAItem(question=r["question"], answer=r["answer"]) for r in recs])
    return [knowmem([r["generation"] for r, f in zip(recs, flags) if f == want],
                    [r["answer"] for r, f in zip(recs, flags) if f == want]) if want in flags else None
            for want in (True, False)]
def wall(name):
    tr = next((p for p in (out / f"ft-{name}.time", out / f"ul-{name}.time", out / f"{name}.time") if p.is_file()), None)
    ev = out / f"{E}-{name}.time"
    return (tr.read_text().split(",")[0] if tr else "-") + " / " + (ev.read_text().split(",")[0] if ev.is_file() else "-")
names = ["target", "retrain", "npo", "npo_sam", "grad_diff", "relearn-retrain", "relearn-npo", "relearn-npo_sam",
         "relearn-grad_diff"] + [f"{c}-{k}" for c in ("scal", "sust") for k in range(1, 5)]
cols = keys[:2] + ["knowmem_f boxed", "knowmem_f held-out"] + keys[2:]
print("| model | " + " | ".join(cols) + " | wall (train / eval) |")
print("|---|" + "---|" * (len(cols) + 1))
for name in names:
    f = out / f"{E}-{name}" / "summary.json"
    if not f.is_file():
        continue
    s = json.loads(f.read_text())
    if name == "retrain":  # its own eval has no --retain-eval (MUSE's published constant): 0 against itself
        s["privleak"] = 0.0
    if texts is not None:
        s["knowmem_f boxed"], s["knowmem_f held-out"] = split(name)
    print(f"| {name} | " + " | ".join("-" if s.get(k) is None else f"{s[k]:.3f}" for k in cols) + f" | {wall(name)} |")
R = "" if E == "eval" else E[len("eval-"):] + "-"
rows = [(n, json.loads((out / f"{R}recovery-{n}" / "recovery.json").read_text())["metrics"])
        for n in ("npo", "npo_sam", "grad_diff") if (out / f"{R}recovery-{n}" / "recovery.json").is_file()]
rec_keys = ("verbmem_f", "knowmem_f", "privleak_auc")
if rows:
    print()
    print("| relearned model | " + " | ".join(f"{k}: recovery (retrain control), gap fraction (control)" for k in rec_keys) + " |")
    print("|---|" + "---|" * len(rec_keys))
    fmt = lambda v: "n/a" if v is None else f"{v:+.3f}" if isinstance(v, float) else str(v)
    for n, m in rows:
        print(f"| {n} | " + " | ".join(f"{fmt(m[k]['recovery'])} ({fmt(m[k].get('control_recovery'))}), "
                                      f"{fmt(m[k].get('fraction'))} ({fmt(m[k].get('control_fraction'))})" if k in m else "-"
                                      for k in rec_keys) + " |")
PY
}

case "$WHAT" in
  main) main; table ;; scal) scal; table ;; sust) sust; table ;; table) table ;;
  all) main; scal; sust; table ;;
  *) echo "usage: $0 [OUT] [all|main|scal|sust|table]" >&2; exit 2 ;;
esac
