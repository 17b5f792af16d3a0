#!/usr/bin/env bash
# Train the small model on ONE GPU from the parts bundled in the package, inside a wall-clock
# budget, and leave the exported model folder under $OUT. Made for a lent device machine
# (15 minutes in all, files back at most 16 MiB each): nothing is installed, the repository's
# src/ is put on PYTHONPATH (torch, safetensors, tokenizers, pyarrow, PIL must be there).
#
#   OUT=/path/out TRAIN_MINUTES=7 bash scripts/train_small_gpu.sh [KEY=VALUE overrides]
#
# 0. (SMOKE=1, the default, on a GPU) tests/test_gpu.py: CUDA codes, losses, sampling agree
#    with the CPU, ~1 min; set -o pipefail stops the script if they fail;
# 1. FaceForge small (20,000 faces, seed 0: the CPU run's data) with one worker per core;
# 2. pretokenise with the bundled image tokenizer on the GPU;
# 3. a PROBE_STEPS-step probe at the real batch size measures seconds per step, and the run
#    gets as many steps as fit in TRAIN_MINUTES (warm-up: 10 % of them, at most 500);
# 4. export (8-bit block weights, bf16 tokenizer), packed as $OUT/model.tar.part-aa, -ab, ...
#    (15 MiB each; `cat model.tar.part-* | tar -x` restores model/), plus the run's
#    metrics.jsonl, its config and the log lines of this script.
# Defaults: batch 128 (one micro-batch), lr 1e-3; any run-config override can follow.
set -euo pipefail

OUT="${OUT:-runs/gpu-out}"
WORK="${WORK:-/tmp/unif2ace-gpu}"
NUM="${NUM:-20000}"
WORKERS="${WORKERS:-$(nproc)}"
BATCH="${BATCH:-128}"
LR="${LR:-1e-3}"
TRAIN_MINUTES="${TRAIN_MINUTES:-7}"
PROBE_STEPS="${PROBE_STEPS:-30}"
TOKENIZER="${TOKENIZER:-bundled}"

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
u() { python3 -m unif2ace.cli "$@"; }
say() { echo "[train_small_gpu $(date +%H:%M:%S)] $*" | tee -a "$OUT/steps.log"; }

mkdir -p "$OUT" "$WORK"
t0=$(date +%s)
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if [ "${SMOKE:-1}" = 1 ] && python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    say "smoke: pytest -m gpu (CUDA agrees with the CPU)"
    python3 -m pytest -q -m gpu tests/test_gpu.py -x -p no:cacheprovider 2>&1 | tail -n 15 |
        tee -a "$OUT/steps.log"
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
u train model "${common[@]}" --out "$WORK/probe" --steps "$PROBE_STEPS" \
    "${over[@]}" train.log_every=1 train.ckpt_every=1000000 "$@" > "$WORK/probe.log" 2>&1 ||
    { tail -30 "$WORK/probe.log"; exit 1; }

# steps that fit: seconds per step over the probe's second half (compile and warm-up left out)
read -r STEPS WARMUP < <(python3 - "$WORK/probe/metrics.jsonl" "$TRAIN_MINUTES" "$t0" <<'EOF'
import json, sys, time
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
rows = [r for r in rows if "elapsed_s" in r]
a, b = rows[len(rows) // 2 - 1], rows[-1]
per_step = (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"])
budget = float(sys.argv[2]) * 60
steps = max(2, int(budget / per_step))
print(steps, min(500, max(1, steps // 10)))
print(f"{per_step:.3f} s/step -> {steps} steps in {budget:.0f} s", file=sys.stderr)
EOF
)
say "run: $STEPS steps (warm-up $WARMUP)"
rm -rf "$WORK/run"
u train model "${common[@]}" --out "$WORK/run" --steps "$STEPS" \
    "${over[@]}" "train.optim.warmup_steps=$WARMUP" "train.ckpt_every=$((STEPS / 4 + 1))" train.log_every=10 \
    "$@" 2>&1 | tail -n 40 | tee -a "$OUT/steps.log"

say "export"
rm -rf "$WORK/model"
share=()  # the bundled tokenizers are already in the package: record them, don't copy
[ "$TOKENIZER" = bundled ] && share=(--share-bundled-tokenizers)
u export --checkpoint "$WORK/run" --out "$WORK/model" --weights-format q8 --tokenizer-dtype bf16 \
    "${share[@]}"
rm -f "$OUT"/model.tar.part-*
tar -C "$WORK" -cf - model | split -b 15m - "$OUT/model.tar.part-"
cp "$WORK/run/metrics.jsonl" "$OUT/metrics.jsonl"
cp "$WORK/run/config.json" "$OUT/run_config.json"
say "done in $(( $(date +%s) - t0 )) s: $(ls "$OUT" | tr '\n' ' ')"
