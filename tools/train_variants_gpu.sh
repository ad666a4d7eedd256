#!/usr/bin/env bash
# Trains several Bit-TTT variants side by side on one GPU (`bitttt train --device cuda`, the same
# tokens for each) and measures each with `bitttt eval` as soon as it is trained (while the others
# still train): validation loss with the memory reset every 128 tokens (on the whole text, and on
# the document stream of training with --documents) and every training context,
# never reset, the memory effect and the loss at positions 1024-2048 vs 0-128. Summary in
# $OUT/results.txt, one line per model in $OUT/summary.txt. A variant is NAME:CONTEXT:BATCH:FLAGS,
# FLAGS being `bitttt train` options joined by commas, e.g.
#   VARIANTS="d128:128:64:--ttt-rule,delta d1024:1024:8:--ttt-rule,delta,--inner-lr,1.0" \
#   DATA=../shared/data/tinystories OUT=runs/variants TOKENS=24000000 tools/train_variants_gpu.sh
# FLAGS may set --lr, --min-lr or --warmup-steps: they then replace the defaults below.
# ATTENTION="NAME:CONTEXT:BATCH:FLAGS ..." also trains causal-attention baselines on the same
# tokens with bench/torch_train.py (FLAGS: its options, e.g. --lr,3e-3; default MLP width
# $ATTN_MLP, which matches the parameters of the default Bit-TTT shape), at the same time.
# TRAIN_TIMEOUT=S stops a training run after S seconds (it then has no model; the rest go on).
set -euo pipefail
DATA=${DATA:-../shared/data/tinystories}
OUT=${OUT:-runs/variants}
BITTTT=${BITTTT:-build/bitttt}
PYTHON=${PYTHON:-python3}
TOKENS=${TOKENS:-24000000}
VOCAB=${VOCAB:-8192}
DIM=${DIM:-256}
LAYERS=${LAYERS:-8}
LR=${LR:-1.5e-3}
MIN_LR=${MIN_LR:-1e-4}
ATTN_MLP=${ATTN_MLP:-728}
THREADS=${THREADS:-2}
DEVICE=${DEVICE:-cuda}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-0}
VARIANTS=${VARIANTS:-}
ATTENTION=${ATTENTION:-}
[ -n "$VARIANTS$ATTENTION" ] || { echo "set VARIANTS and/or ATTENTION (see the header)" >&2; exit 2; }

mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/results.txt"; }
[ -f "$OUT/tok$VOCAB.json" ] ||
    "$BITTTT" tokenizer train "$DATA/train.txt.gz" --vocab-size "$VOCAB" -o "$OUT/tok$VOCAB.json" -t 4

# The schedule options of a run: the defaults unless FLAGS (comma-joined) give their own.
schedule() {  # FLAGS STEPS
    local s=""
    [[ ",$1," == *",--lr,"* ]] || s+=" --lr $LR"
    [[ ",$1," == *",--min-lr,"* ]] || s+=" --min-lr $MIN_LR"
    [[ ",$1," == *",--warmup-steps,"* ]] || s+=" --warmup-steps $(($2 / 20 + 1))"
    echo "$s"
}
limited() { if [ "$TRAIN_TIMEOUT" -gt 0 ]; then timeout "$TRAIN_TIMEOUT" "$@"; else "$@"; fi; }

# Train one variant, then measure it; the figures go to $OUT/NAME.res (collected at the end).
variant() {  # NAME CTX BATCH FLAGS
    local name=$1 ctx=$2 batch=$3 flags=$4 steps t0 m res
    steps=$((TOKENS / (batch * ctx)))
    res="$OUT/$name.res"
    t0=$(date +%s)
    # shellcheck disable=SC2046,SC2086 # FLAGS and the schedule are separate options
    if ! limited "$BITTTT" train --device "$DEVICE" --data "$DATA/train.txt.gz" \
        --val-data "$DATA/valid.txt.gz" --tokenizer "$OUT/tok$VOCAB.json" --dim "$DIM" \
        --layers "$LAYERS" --context-len "$ctx" --batch-size "$batch" --steps "$steps" \
        $(schedule "$flags" "$steps") --eval-interval $((steps / 5 + 1)) --eval-batches 32 \
        --save-interval 0 --threads "$THREADS" --quiet --out "$OUT/$name" ${flags//,/ } \
        >"$OUT/$name.log" 2>&1; then
        echo "== $name: training FAILED or timed out after $(($(date +%s) - t0)) s (see $name.log)" >"$res"
        echo "$name FAILED" >"$OUT/$name.sum"
        return 0
    fi
    local secs=$(($(date +%s) - t0))
    m="$OUT/$name/model_bf16.bitt"
    "$BITTTT" export "$OUT/$name/model" "$m" --dtype bf16 >/dev/null
    ev() { "$BITTTT" eval "$m" "$@" -q -t "$THREADS"; }
    local params r128 rdoc rctx="" never mem long
    params=$("$BITTTT" info "$m" | awk -F'[()]' '/^parameters:/ {printf "%.2f", $2 / 1e6}')
    r128=$(ev "$DATA/valid.txt.gz" --reset-every 128 | tr '\n' ' ')
    rdoc=$(ev "$DATA/valid.txt.gz" --reset-every 128 --documents | tr '\n' ' ')
    [ "$ctx" = 128 ] || rctx=$(ev "$DATA/valid.txt.gz" --reset-every "$ctx" | tr '\n' ' ')
    never=$(ev "$DATA/valid.txt.gz" | tr '\n' ' ')
    mem=$(ev --memory-effect | tail -n 3 | tr '\n' ' ')
    long=$(ev "$DATA/valid.txt.gz" --long-positions | tail -n 3 | tr '\n' ' ')
    {
        echo "== $name (context $ctx, batch $batch, $steps steps, $flags): $params M parameters, trained in $secs s"
        echo "reset 128: $r128"
        echo "reset 128, document stream (the tokens of training and the attention baseline): $rdoc"
        [ -z "$rctx" ] || echo "reset $ctx: $rctx"
        echo "never reset: $never"
        echo "memory effect: $mem"
        echo "long positions: $long"
    } >"$res"
    # name, parameters (M), loss reset every 128, bits/byte, never reset, far/near, copy2/copy1, s,
    # loss reset every 128 on the document stream
    printf '%s %s %s %s %s %s %s %s %s\n' "$name" "$params" \
        "$(awk '{for (i = 1; i < NF; i++) if ($i == "loss:") print $(i + 1)}' <<<"$r128")" \
        "$(awk '{for (i = 1; i < NF; i++) if ($i == "bits/byte:") print $(i + 1)}' <<<"$r128")" \
        "$(awk '{for (i = 1; i < NF; i++) if ($i == "loss:") print $(i + 1)}' <<<"$never")" \
        "$(awk '{for (i = 1; i < NF; i++) if ($i == "near:") print $(i + 1)}' <<<"$long")" \
        "$(awk '{for (i = 1; i < NF; i++) if ($i == "1:") print $(i + 1)}' <<<"$mem")" \
        "$secs" "$(awk '{for (i = 1; i < NF; i++) if ($i == "loss:") print $(i + 1)}' <<<"$rdoc")" \
        >"$OUT/$name.sum"
}

attention() {  # NAME CTX BATCH FLAGS
    local name=$1 ctx=$2 batch=$3 flags=$4 steps t0
    steps=$((TOKENS / (batch * ctx)))
    t0=$(date +%s)
    # shellcheck disable=SC2046,SC2086
    if PYTHONUNBUFFERED=1 limited "$PYTHON" bench/torch_train.py --model attention \
        --data "$DATA/train.txt.gz" --val-data "$DATA/valid.txt.gz" --tokenizer "$OUT/tok$VOCAB.json" \
        --out "$OUT/$name" --dim "$DIM" --layers "$LAYERS" --mlp-dim "$ATTN_MLP" --context-len "$ctx" \
        --batch-size "$batch" --steps "$steps" $(schedule "$flags" "$steps") --save-interval 0 \
        --eval-interval 0 $([ "$DEVICE" = cuda ] && echo --compile) ${flags//,/ } \
        >"$OUT/$name.log" 2>&1; then
        "$PYTHON" -c "import json, sys; r = json.load(open(sys.argv[1])); \
print('== %s (attention, context %s, batch %s, %s steps, %s): %.2f M parameters, trained in %s s' \
% (sys.argv[2], r['context_len'], r['batch_size'], r['steps'], sys.argv[3], r['parameters'] / 1e6, sys.argv[4])); \
print('validation (document stream): %.6f nats/token, %.4f bits/byte' % (r['val_loss_nats_per_token'], r['val_bits_per_byte'])); \
open(sys.argv[5], 'w').write('%s %.2f - - - - - %s %.6f\n' % (sys.argv[2], r['parameters'] / 1e6, \
sys.argv[4], r['val_loss_nats_per_token']))" \
            "$OUT/$name/result.json" "$name" "$flags" "$(($(date +%s) - t0))" "$OUT/$name.sum" >"$OUT/$name.res"
    else
        echo "== $name: attention baseline FAILED or timed out (see $name.log)" >"$OUT/$name.res"
        echo "$name FAILED" >"$OUT/$name.sum"
    fi
}

start=$(date +%s)
log "== $TOKENS tokens per run, D=$DIM L=$LAYERS vocab $VOCAB; variants: $VARIANTS; attention: $ATTENTION"
pids=()
for v in $ATTENTION; do
    IFS=: read -r name ctx batch flags <<<"$v"
    attention "$name" "$ctx" "$batch" "$flags" &
    pids+=($!)
done
for v in $VARIANTS; do
    IFS=: read -r name ctx batch flags <<<"$v"
    variant "$name" "$ctx" "$batch" "$flags" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
log "trained and measured $(echo "$VARIANTS" "$ATTENTION" | wc -w) runs of $TOKENS tokens in $(($(date +%s) - start)) s"
for v in $ATTENTION $VARIANTS; do
    IFS=: read -r name _ <<<"$v"
    cat "$OUT/$name.res" >>"$OUT/results.txt"
done
{
    echo "# name params_M loss_reset128 bits_per_byte loss_never_reset far_over_near copy2_over_copy1 train_s loss_reset128_documents"
    for v in $ATTENTION $VARIANTS; do
        IFS=: read -r name _ <<<"$v"
        cat "$OUT/$name.sum"
    done
} | tee "$OUT/summary.txt" >>"$OUT/results.txt"
