#!/usr/bin/env bash
# Trains several Bit-TTT variants side by side on one GPU (`bitttt train --device cuda`, the same
# tokens for each) and measures each with `bitttt eval`: validation loss with the memory reset every
# 128 tokens and every training context, never reset, the memory effect and the loss at positions
# 1024-2048 vs 0-128. Summary in $OUT/results.txt. A variant is NAME:CONTEXT:BATCH:FLAGS, FLAGS
# being `bitttt train` options joined by commas, e.g.
#   VARIANTS="d128:128:64:--ttt-rule,delta d1024:1024:8:--ttt-rule,delta,--inner-lr,1.0" \
#   DATA=../shared/data/tinystories OUT=runs/variants TOKENS=24000000 tools/train_variants_gpu.sh
set -euo pipefail
DATA=${DATA:-../shared/data/tinystories}
OUT=${OUT:-runs/variants}
BITTTT=${BITTTT:-build/bitttt}
TOKENS=${TOKENS:-24000000}
VOCAB=${VOCAB:-8192}
DIM=${DIM:-256}
LAYERS=${LAYERS:-8}
LR=${LR:-1.5e-3}
THREADS=${THREADS:-2}
DEVICE=${DEVICE:-cuda}
VARIANTS=${VARIANTS:?set VARIANTS (see the header)}

mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/results.txt"; }
[ -f "$OUT/tok$VOCAB.json" ] ||
    "$BITTTT" tokenizer train "$DATA/train.txt.gz" --vocab-size "$VOCAB" -o "$OUT/tok$VOCAB.json" -t 4

start=$(date +%s)
pids=()
for v in $VARIANTS; do
    IFS=: read -r name ctx batch flags <<<"$v"
    steps=$((TOKENS / (batch * ctx)))
    # shellcheck disable=SC2086 # FLAGS are separate options
    "$BITTTT" train --device "$DEVICE" --data "$DATA/train.txt.gz" --val-data "$DATA/valid.txt.gz" \
        --tokenizer "$OUT/tok$VOCAB.json" --dim "$DIM" --layers "$LAYERS" --context-len "$ctx" \
        --batch-size "$batch" --steps "$steps" --lr "$LR" --min-lr 1e-4 \
        --warmup-steps $((steps / 20 + 1)) --eval-interval $((steps / 5 + 1)) --eval-batches 32 \
        --save-interval 0 --threads "$THREADS" --quiet --out "$OUT/$name" ${flags//,/ } \
        >"$OUT/$name.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || log "a training run failed (see $OUT/*.log)"; done
log "trained $(echo $VARIANTS | wc -w) variants of $TOKENS tokens in $(($(date +%s) - start)) s"

for v in $VARIANTS; do
    IFS=: read -r name ctx batch flags <<<"$v"
    m="$OUT/$name/model_bf16.bitt"
    [ -f "$OUT/$name/model/config.json" ] || { log "== $name: no model"; continue; }
    "$BITTTT" export "$OUT/$name/model" "$m" --dtype bf16 >/dev/null
    ev() { "$BITTTT" eval "$m" "$@" -q -t "$THREADS"; }
    log "== $name (context $ctx, batch $batch, $flags): $("$BITTTT" info "$m" | grep -i -m1 'param' || true)"
    log "reset 128: $(ev "$DATA/valid.txt.gz" --reset-every 128 | tr '\n' ' ')"
    [ "$ctx" = 128 ] || log "reset $ctx: $(ev "$DATA/valid.txt.gz" --reset-every "$ctx" | tr '\n' ' ')"
    log "never reset: $(ev "$DATA/valid.txt.gz" | tr '\n' ' ')"
    log "memory effect: $(ev --memory-effect | tail -n 3 | tr '\n' ' ')"
    log "long positions: $(ev "$DATA/valid.txt.gz" --long-positions | tail -n 3 | tr '\n' ' ')"
done
