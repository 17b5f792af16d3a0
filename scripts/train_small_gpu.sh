#!/usr/bin/env bash
# Train the small model on ONE GPU from the parts bundled in the package, inside a wall-clock
# budget for the WHOLE script, and leave the exported model folder under $OUT. Made for a lent
# device machine (a command may run 10 minutes, a session has 15 in all; files come back at
# most 16 MiB each, 8 files): nothing is installed, the repository's src/ is put on
# PYTHONPATH (torch, safetensors, tokenizers, pyarrow, PIL must be there).
#
#   OUT=/path/out BUDGET_MINUTES=8.5 bash scripts/train_small_gpu.sh [KEY=VALUE overrides]
#
# 0. (SMOKE=1, the default, on a GPU) tests/test_gpu.py: CUDA codes, losses and outputs agree
#    with the CPU, ~1 min; the script stops if they fail;
# 1. FaceForge small (20,000 faces, seed 0: the CPU run's data) with one worker per core;
# 2. pretokenise with the bundled image tokenizer on the GPU (TF32 off: the CPU's codes);
# 3. a PROBE_STEPS-step probe at the real batch size measures seconds per step; the run gets
#    the steps that fit in what is left of BUDGET_MINUTES after RESERVE_S for start-up,
#    checkpoints and export (at most MAX_STEPS; warm-up 10 % of the steps, at most 500; EMA
#    decay 1 - 10/steps, at most 0.999, so the exported EMA keeps no trace of the initial
#    weights); a `timeout` TERM at the deadline makes the trainer checkpoint and stop;
# 4. export (8-bit block weights; the bundled tokenizers recorded, not copied), packed as
#    $OUT/model.tar.part-aa, -ab, ... (15 MiB each; `cat model.tar.part-* | tar -x` restores
#    model/), plus the run's metrics.jsonl, its config, train.log and steps.log.
# Defaults: batch 128 (one micro-batch), lr 1e-3, 2 batches prefetched; any run-config
# override can follow (KEY=VALUE).
set -euo pipefail

OUT="${OUT:-runs/gpu-out}"
WORK="${WORK:-/tmp/unif2ace-gpu}"
NUM="${NUM:-20000}"
WORKERS="${WORKERS:-$(nproc)}"
BATCH="${BATCH:-128}"
LR="${LR:-1e-3}"
BUDGET_MINUTES="${BUDGET_MINUTES:-8.5}"
RESERVE_S="${RESERVE_S:-75}"
PROBE_STEPS="${PROBE_STEPS:-30}"
MAX_STEPS="${MAX_STEPS:-100000}"
TOKENIZER="${TOKENIZER:-bundled}"

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
u() { python3 -m unif2ace.cli "$@"; }
say() { echo "[train_small_gpu $(date +%H:%M:%S)] $*" | tee -a "$OUT/steps.log"; }
fail() { say "FAILED: $*"; exit 1; }

mkdir -p "$OUT" "$WORK"
t0=$(date +%s)
deadline=$(python3 -c "print(int($t0 + float('$BUDGET_MINUTES') * 60))")
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# every part this run needs, checked before any work
parts="text_tokenizer semantic_encoder face_encoder"
[ "$TOKENIZER" = bundled ] && parts="image_tokenizer $parts"
python3 -c "import sys; from unif2ace import bundled
[bundled.resolve('bundled', p) for p in sys.argv[1:]]" $parts ||
    fail "a bundled part is missing (see the error above)"

if [ "${SMOKE:-1}" = 1 ] && python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    say "smoke: pytest -m gpu (CUDA agrees with the CPU)"
    python3 -m pytest -q -m gpu tests/test_gpu.py -x -p no:cacheprovider > "$WORK/smoke.log" 2>&1 ||
        { tail -n 30 "$WORK/smoke.log" | tee -a "$OUT/steps.log"; fail "smoke tests"; }
    tail -n 1 "$WORK/smoke.log" | tee -a "$OUT/steps.log"
fi

say "data: $NUM faces, $WORKERS workers"
[ -f "$WORK/data/build.json" ] ||
    u data build --preset small --num "$NUM" --seed 0 --out "$WORK/data" --workers "$WORKERS"
say "pretokenise ($TOKENIZER tokenizer)"
u data pretokenize --tokenizer "$TOKENIZER" --data "$WORK/data" --device auto --batch-size 256

# flags first, then KEY=VALUE overrides (argparse takes the overrides as one trailing list)
common=(--preset small --bundled --tokenizer "$TOKENIZER" --data "$WORK/data"
    --batch-size "$BATCH" --micro-batch-size "$BATCH")
over=(train.sample_every=0 train.prefetch=2 "train.optim.lr=$LR")
say "probe: $PROBE_STEPS steps at batch $BATCH"
rm -rf "$WORK/probe"
u train model "${common[@]}" --out "$WORK/probe" --steps "$PROBE_STEPS" "${over[@]}" "$@" \
    train.log_every=1 train.ckpt_every=1000000 > "$WORK/probe.log" 2>&1 ||
    { tail -n 30 "$WORK/probe.log" | tee -a "$OUT/steps.log"; fail "probe run"; }

# steps that fit: seconds per step over the probe's second half (start-up left out)
sizing=$(python3 - "$WORK/probe/metrics.jsonl" "$deadline" "$RESERVE_S" "$MAX_STEPS" <<'EOF'
import json, sys, time
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
rows = [r for r in rows if "elapsed_s" in r]
if len(rows) < 4:
    sys.exit(f"the probe logged {len(rows)} steps; need >= 4 (PROBE_STEPS, train.log_every=1)")
a, b = rows[len(rows) // 2 - 1], rows[-1]
per_step = (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"])
left = float(sys.argv[2]) - time.time() - float(sys.argv[3])
if per_step <= 0 or left <= 0:
    sys.exit(f"no time left to train ({left:.0f} s after the reserve; {per_step:.3f} s/step)")
steps = min(int(sys.argv[4]), max(2, int(left / per_step)))
ema = min(0.999, max(0.0, 1 - 10 / steps))
print(steps, min(500, max(1, steps // 10)), f"{ema:.5f}", int(left))
print(f"{per_step:.3f} s/step -> {steps} steps in {left:.0f} s", file=sys.stderr)
EOF
) || fail "probe sizing"
read -r STEPS WARMUP EMA LEFT <<< "$sizing"
say "run: $STEPS steps (warm-up $WARMUP, EMA decay $EMA, $LEFT s)"
rm -rf "$WORK/run"
set +e
timeout --preserve-status -s TERM -k 60 "$LEFT" python3 -m unif2ace.cli train model \
    "${common[@]}" --out "$WORK/run" --steps "$STEPS" "${over[@]}" \
    "train.optim.warmup_steps=$WARMUP" "train.optim.ema_decay=$EMA" \
    "train.ckpt_every=$((STEPS / 2 + 1))" train.log_every=10 "$@" > "$OUT/train.log" 2>&1
rc=$?
set -e
tail -n 3 "$OUT/train.log" | tee -a "$OUT/steps.log"
[ "$rc" = 0 ] || fail "training exited $rc (train.log)"

say "export"
rm -rf "$WORK/model"
share=() # the bundled tokenizers are already in the package: record them, don't copy
[ "$TOKENIZER" = bundled ] && share=(--share-bundled-tokenizers)
u export --checkpoint "$WORK/run" --out "$WORK/model" --weights-format q8 --tokenizer-dtype bf16 \
    "${share[@]}"
rm -f "$OUT"/model.tar.part-*
tar -C "$WORK" -cf - model | split -b 15m - "$OUT/model.tar.part-"
cp "$WORK/run/metrics.jsonl" "$OUT/metrics.jsonl"
cp "$WORK/run/config.json" "$OUT/run_config.json"
say "done in $(($(date +%s) - t0)) s: $(ls "$OUT" | tr '\n' ' ')"
