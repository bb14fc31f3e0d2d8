#!/usr/bin/env bash
# scripts/demo.sh — what `make demo` runs: the main job end to end on the
# embedded defaults. Fine-tunes the built-in BitNet model on the built-in
# pirate dataset (data/finetune/pirate.jsonl) on the fastest device found,
# shows what the model writes before and after, and the ternary-vs-16-bit
# comparison on the same device.
set -euo pipefail
BUILD=${BUILD:-build}
Q="$BUILD/qvac"
OUT="$BUILD/demo"
STEPS=${DEMO_STEPS:-80}

"$Q" devices
DEV=${DEMO_DEVICE:-$("$Q" devices --best)}
echo

# A worker tunes its kernels once per device; a short search at the demo's
# shape (cached: a second demo skips it).
for k in ternary_matmul ternary_matmul_t lora_fwd lora_bwd f32_matmul f16_matmul f16_matmul_t; do
    "$Q" tune --device "$DEV" --kernel "$k" --shape 512,256,256,8 --budget-evals 8 | sed -n 2p
done
echo

# The before/after prompts (docs/data.md): questions end in a newline, as in
# the training data.
mapfile -t PROMPTS < data/finetune/pirate_prompts.txt

sample() { # $1: label, then extra generate options
    local label=$1
    shift
    echo "== $label"
    for p in "${PROMPTS[@]}"; do
        case "$p" in *. | *\?) p="$p"$'\n' ;; esac
        "$Q" generate --device "$DEV" --prompt "$p" --tokens 90 --temperature 0 "$@" | sed 's/^/   | /'
    done
    echo
}

sample "before fine-tuning (built-in model)"

rm -rf "$OUT"
"$Q" finetune --device "$DEV" --out "$OUT" --steps "$STEPS" --targets all \
    --rank 8 --alpha 16 --lr 5e-3 --batch 4 --seq-len 128 --eval-batches 4
echo

sample "after fine-tuning (built-in model + $OUT/adapter.gguf)" --adapter "$OUT/adapter.gguf"

"$Q" compare --device "$DEV" --steps 6 --targets all --rank 8 --batch 4 --seq-len 128
