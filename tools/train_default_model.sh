#!/usr/bin/env bash
# Trains the shipped default model (models/default.bitt) within a time budget (CPU, or DEVICE=cuda):
# a BPE tokenizer on the TinyStories training text, a short probe to measure seconds per step, then
# as many steps as fit the budget (so the cosine schedule ends where the run ends), export to .bitt,
# validation loss and sample stories. Usage:
#   DATA=../shared/data/tinystories OUT=runs/default BUDGET_S=300 THREADS=0 tools/train_default_model.sh
# On a GPU: DEVICE=cuda, and STEPS=N to give the step count directly (a 12-step probe of a
# millisecond step would time only the program's start), e.g.
#   DEVICE=cuda STEPS=20000 MODEL_FLAGS="--dim 256 --layers 8 --context-len 128 --batch-size 64" ...
set -euo pipefail
DATA=${DATA:-../shared/data/tinystories}
OUT=${OUT:-runs/default}
BUDGET_S=${BUDGET_S:-300}
THREADS=${THREADS:-0}
BITTTT=${BITTTT:-build/bitttt}
VOCAB=${VOCAB:-4096}
MODEL_FLAGS=${MODEL_FLAGS:---dim 256 --layers 4 --context-len 128 --batch-size 16}
LR=${LR:-1.5e-3}
DEVICE=${DEVICE:-cpu}
STEPS=${STEPS:-}

mkdir -p "$OUT"
echo "== tokenizer ($VOCAB tokens)"
"$BITTTT" tokenizer train "$DATA/train.txt.gz" --vocab-size "$VOCAB" -o "$OUT/tokenizer.json" -t "$THREADS"

common=(--data "$DATA/train.txt.gz" --val-data "$DATA/valid.txt.gz" --tokenizer "$OUT/tokenizer.json"
        $MODEL_FLAGS --threads "$THREADS" --lr "$LR" --min-lr 1e-4 --device "$DEVICE")
if [ -n "$STEPS" ]; then
    steps=$STEPS
    echo "== training $steps steps on $DEVICE"
else
    echo "== probe"
    "$BITTTT" train "${common[@]}" --steps 12 --warmup-steps 1 --eval-interval 0 --save-interval 0 \
        --out "$OUT/probe" --quiet  # also builds the token cache
    start=$(date +%s.%N)
    "$BITTTT" train "${common[@]}" --steps 12 --warmup-steps 1 --eval-interval 0 --save-interval 0 \
        --out "$OUT/probe2" --quiet
    end=$(date +%s.%N)
    steps=$(python3 -c "print(max(20, int($BUDGET_S / (($end - $start) / 12.0))))")
    echo "== training $steps steps ($(python3 -c "print(round(($end - $start) / 12.0, 3))") s/step)"
fi
"$BITTTT" train "${common[@]}" --steps "$steps" --warmup-steps $((steps / 20 + 1)) \
    --eval-interval $((steps / 10 + 1)) --eval-batches 16 --save-interval 0 --out "$OUT/run"
cp "$OUT/run/model.bitt" "$OUT/default.bitt"
echo "== eval"
"$BITTTT" eval "$OUT/default.bitt" "$DATA/valid.txt.gz" --reset-every 128 -q
"$BITTTT" eval "$OUT/default.bitt" "$DATA/valid.txt.gz" -q
echo "== samples"
for seed in 1 2 3 4 5; do
    echo "--- seed $seed"
    "$BITTTT" generate "$OUT/default.bitt" -p "Once upon a time" -n 200 --seed "$seed"
    echo
done
