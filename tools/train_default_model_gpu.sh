#!/usr/bin/env bash
# Issue 8 on one GPU: trains the default-model candidates with `bitttt train --device "$DEVICE"` and the
# attention baseline with bench/torch_train.py on the same tokens, measures them with `bitttt eval`
# and writes everything under $OUT (results.txt is the summary). Steps:
#   1. a BPE tokenizer per vocabulary in $VOCABS, trained on the training text;
#   2. `reconstruct` at each vocabulary (the vocabulary is chosen by validation bits per byte);
#   3. at the chosen vocabulary: `delta`, and the same-size causal-attention Llama in PyTorch
#      (bf16, no quantization; its MLP narrowed so its parameters match `reconstruct`'s);
#   4. every Bit-TTT model: validation loss (memory reset every context_len tokens, as trained, on
#      the file encoded whole and on the document stream the baseline is scored on; never reset),
#      the memory effect and the loss at positions 1024-2048 vs 0-128;
#   5. the best Bit-TTT model (lowest validation loss) as $OUT/default.bitt, and five samples.
# Runs share the GPU (each uses a small part of an H100). Usage (repository root, after a CUDA build):
#   DATA=../shared/data/tinystories OUT=runs/gpu TOKENS=20000000 tools/train_default_model_gpu.sh
set -euo pipefail
DATA=${DATA:-../shared/data/tinystories}
OUT=${OUT:-runs/gpu}
BITTTT=${BITTTT:-build/bitttt}
PYTHON=${PYTHON:-python3}
TOKENS=${TOKENS:-20000000}  # training tokens of every run
VOCABS=${VOCABS:-8192 16384}
DIM=${DIM:-256}
LAYERS=${LAYERS:-8}
CTX=${CTX:-128}
BATCH=${BATCH:-64}
LR=${LR:-1.5e-3}
ATTN_MLP=${ATTN_MLP:-728}  # 4·D² attention + 3·D·728 ≈ reconstruct's 2·D·(D/4) + 3·D·4D per layer
THREADS=${THREADS:-2}
DEVICE=${DEVICE:-cuda}  # cpu: a quick local check of this script with a tiny config

mkdir -p "$OUT"
steps=$((TOKENS / (BATCH * CTX)))
warmup=$((steps / 20 + 1))
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/results.txt"; }

train_ttt() {  # NAME VOCAB RULE
    "$BITTTT" train --device "$DEVICE" --data "$DATA/train.txt.gz" --val-data "$DATA/valid.txt.gz" \
        --tokenizer "$OUT/tok$2.json" --ttt-rule "$3" --dim "$DIM" --layers "$LAYERS" \
        --context-len "$CTX" --batch-size "$BATCH" --steps "$steps" --lr "$LR" --min-lr 1e-4 \
        --warmup-steps "$warmup" --eval-interval $((steps / 5 + 1)) --eval-batches 32 \
        --save-interval 0 --threads "$THREADS" --quiet --out "$OUT/$1" >"$OUT/$1.log" 2>&1
}
# Validation bits per byte of a trained model (memory reset every context as in training).
bpb() { "$BITTTT" eval "$OUT/$1/model.bitt" "$DATA/valid.txt.gz" --reset-every "$CTX" -q -t "$THREADS" |
            awk '/^bits\/byte/ {print $2}'; }

log "== $steps steps x $BATCH x $CTX = $((steps * BATCH * CTX)) tokens per run, D=$DIM L=$LAYERS"
for v in $VOCABS; do
    "$BITTTT" tokenizer train "$DATA/train.txt.gz" --vocab-size "$v" -o "$OUT/tok$v.json" -t 4
done
start=$(date +%s)
for v in $VOCABS; do train_ttt "reconstruct_v$v" "$v" reconstruct & done
wait
log "vocabulary runs done in $(($(date +%s) - start)) s"
best_v="" best_bpb=""
for v in $VOCABS; do
    b=$(bpb "reconstruct_v$v")
    log "reconstruct, vocab $v: validation $b bits/byte"
    if [ -z "$best_bpb" ] || awk "BEGIN {exit !($b < $best_bpb)}"; then best_v=$v best_bpb=$b; fi
done
log "chosen vocabulary: $best_v"

start=$(date +%s)
train_ttt "delta_v$best_v" "$best_v" delta &
delta_pid=$!
PYTHONUNBUFFERED=1 "$PYTHON" bench/torch_train.py --model attention --data "$DATA/train.txt.gz" \
    --val-data "$DATA/valid.txt.gz" --cache-dir "$OUT/reconstruct_v$best_v/cache" \
    --tokenizer "$OUT/tok$best_v.json" --out "$OUT/attention_v$best_v" --dim "$DIM" \
    --layers "$LAYERS" --mlp-dim "$ATTN_MLP" --context-len "$CTX" --batch-size "$BATCH" \
    --steps "$steps" --lr "$LR" --min-lr 1e-4 --warmup-steps "$warmup" $([ "$DEVICE" = cuda ] && echo --compile) \
    >"$OUT/attention_v$best_v.log" 2>&1 &
attn_pid=$!
wait $delta_pid
log "delta done in $(($(date +%s) - start)) s"
if wait $attn_pid; then
    log "attention baseline: $("$PYTHON" -c "import json, sys; r = json.load(open(sys.argv[1])); print('validation', r['val_loss_nats_per_token'], 'nats/token,', r['val_bits_per_byte'], 'bits/byte,', r['parameters'], 'parameters,', r['train_time_s'], 's')" "$OUT/attention_v$best_v/result.json")"
else
    log "attention baseline FAILED: $(tail -n 5 "$OUT/attention_v$best_v.log")"
fi

best="" best_loss=""
for name in "reconstruct_v$best_v" "delta_v$best_v"; do
    # Evaluated as shipped: a .bitt with bf16 embed and lm_head (half the file of fp32).
    m="$OUT/$name/model_bf16.bitt"
    "$BITTTT" export "$OUT/$name/model" "$m" --dtype bf16 >/dev/null
    log "== $name: $("$BITTTT" info "$m" | grep -i -m1 'param' || true)"
    "$BITTTT" eval "$m" "$DATA/valid.txt.gz" --reset-every "$CTX" -q -t "$THREADS" | tee -a "$OUT/results.txt"
    loss=$("$BITTTT" eval "$m" "$DATA/valid.txt.gz" --reset-every "$CTX" -q -t "$THREADS" | awk '/^loss/ {print $2}')
    log "-- reset every $CTX, document stream (the tokens the attention baseline is scored on):"
    "$BITTTT" eval "$m" "$DATA/valid.txt.gz" --reset-every "$CTX" --documents -q -t "$THREADS" |
        tee -a "$OUT/results.txt"
    log "-- never reset:"
    "$BITTTT" eval "$m" "$DATA/valid.txt.gz" -q -t "$THREADS" | tee -a "$OUT/results.txt"
    log "-- memory effect:"
    "$BITTTT" eval "$m" --memory-effect -q -t "$THREADS" | tee -a "$OUT/results.txt"
    log "-- long positions:"
    "$BITTTT" eval "$m" "$DATA/valid.txt.gz" --long-positions -q -t "$THREADS" | tee -a "$OUT/results.txt"
    if [ -z "$best_loss" ] || awk "BEGIN {exit !($loss < $best_loss)}"; then best=$name best_loss=$loss; fi
done
log "best Bit-TTT model: $best ($best_loss nats/token)"
cp "$OUT/$best/model_bf16.bitt" "$OUT/default.bitt"
for seed in 1 2 3 4 5; do
    echo "--- seed $seed" >>"$OUT/samples.txt"
    "$BITTTT" generate "$OUT/default.bitt" -p "Once upon a time" -n 200 --seed "$seed" \
        -t "$THREADS" >>"$OUT/samples.txt" 2>/dev/null
    echo >>"$OUT/samples.txt"
done
log "samples: $OUT/samples.txt"
