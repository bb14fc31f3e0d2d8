#!/usr/bin/env bash
# scripts/parity-llamacpp.sh — proves that llama.cpp computes what qvac
# computes, on the built-in model (with and without a fresh adapter) and on
# synthetic models (TQ2_0 and F16 weights, grouped-query attention, scale
# tensors), and writes benchmarks/reports/parity.md and parity.json.
#
#   scripts/parity-llamacpp.sh LLAMA_CPP_SOURCE_DIR_OR_GIT_URL
#
# Not part of `make test`: it builds llama.cpp (CPU backend only) in
# build/llamacpp (libllama takes ~15 minutes on 2 cores; a second run reuses
# it), then for every case runs `qvac eval --dump` and the same tokens through
# llama.cpp (tools/llamacpp_logits.c, our own program against llama.h), and
# compares the logits (tools/parity_report.py). Environment: QVAC_DEVICE (the
# device qvac runs on; default: qvac's choice), PARITY_FT_STEPS (steps of the
# fresh fine-tune, default 80), PARITY_CLEAN=1 (rebuild llama.cpp).
set -euo pipefail
if [ $# -ne 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
for mod in numpy:python3-numpy torch:python3-torch; do
    "$PY" -c "import ${mod%%:*}" 2>/dev/null ||
        { echo "parity: $PY cannot import ${mod%%:*}; install it (Debian: apt-get install ${mod#*:})" >&2; exit 1; }
done
LB=build/llamacpp
W=build/parity
STEPS=${PARITY_FT_STEPS:-80}
DEV=()
[ -n "${QVAC_DEVICE:-}" ] && DEV=(--device "$QVAC_DEVICE")
say() { printf '\n== %s\n' "$*" >&2; }

# ---- llama.cpp -----------------------------------------------------------------
SRC=$1
case "$SRC" in
*://* | git@*)
    if [ ! -d build/llamacpp-src/.git ]; then
        say "cloning $SRC into build/llamacpp-src"
        git clone --depth 1 "$SRC" build/llamacpp-src
    fi
    SRC=build/llamacpp-src
    ;;
esac
SRC=$(cd "$SRC" && pwd)
[ -f "$SRC/include/llama.h" ] || { echo "parity: $SRC is not a llama.cpp source tree (no include/llama.h)" >&2; exit 1; }
LLAMA_COMMIT=$(git -C "$SRC" rev-parse --short=9 HEAD 2>/dev/null || echo unknown)
[ "${PARITY_CLEAN:-0}" = 1 ] && rm -rf "$LB"
if [ ! -f "$LB/build.ninja" ] && [ ! -f "$LB/Makefile" ]; then
    say "configuring llama.cpp $LLAMA_COMMIT (CPU only) in $LB"
    GEN=()
    command -v ninja >/dev/null && GEN=(-G Ninja)
    cmake -S "$SRC" -B "$LB" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DGGML_VULKAN=OFF -DGGML_OPENCL=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_APP=OFF >&2
fi
say "building llama.cpp (libllama, llama-completion, llama-perplexity)"
cmake --build "$LB" -j "$(nproc)" --target llama-completion llama-perplexity >&2
BIN=$LB/bin
COMPLETION=$BIN/llama-completion
[ -x "$COMPLETION" ] || COMPLETION=$BIN/llama-cli
cc -O2 -std=c11 -I "$SRC/include" -I "$SRC/ggml/include" tools/llamacpp_logits.c \
    -L "$BIN" -lllama -lggml -lggml-base -Wl,-rpath,"$ROOT/$BIN" -o "$LB/llamacpp_logits"
LOGITS=$LB/llamacpp_logits

# ---- qvac --------------------------------------------------------------------------
say "building qvac"
make -j"$(nproc)" build/qvac build/synth_model >&2
Q=build/qvac
rm -rf "$W"
mkdir -p "$W"
MODEL=data/model/qvac-tiny.gguf
# the held-out text: the corpus's last 2% (what pretraining validated on)
HELD=$W/heldout.txt
bytes=$(wc -c <data/corpus/stories.txt)
tail -c $((bytes / 50)) data/corpus/stories.txt >"$HELD"
SEQ=128

say "a fresh fine-tune of the built-in model ($STEPS steps, all modules)"
"$Q" finetune --model "$MODEL" "${DEV[@]}" --steps "$STEPS" --targets all --rank 8 --alpha 16 \
    --lr 5e-3 --batch 4 --seq-len 128 --eval-batches 4 --out "$W/ft" >&2
ADAPTER=$W/ft/adapter.gguf

say "synthetic models"
build/synth_model --arch bitnet --vocab-from "$MODEL" -o "$W/synth-tq2_0.gguf" --dim 256 --layers 2 \
    --heads 4 --kv-heads 2 --ffn 512 --ctx 128 --weights tq2_0 --emb f16 --scales 1 --seed 7 >&2
build/synth_model --arch bitnet --vocab-from "$MODEL" -o "$W/synth-f16.gguf" --dim 256 --layers 2 \
    --heads 8 --kv-heads 2 --ffn 768 --ctx 128 --weights f16 --emb f32 --seed 8 >&2

CASES=$W/cases.jsonl
: >"$CASES"
# case LABEL MODEL ADAPTER|- WHAT(text|val) — qvac in both modes, llama.cpp once
case_run() {
    local label=$1 model=$2 adapter=$3 what=$4 ad=() la=() src=()
    [ "$adapter" != - ] && ad=(--adapter "$adapter") && la=(--lora "$adapter")
    if [ "$what" = text ]; then src=(--text "$HELD" --seq-len "$SEQ"); else src=(--split val --seq-len "$SEQ"); fi
    local d=$W/$label
    for mode in llamacpp bitnet; do
        say "qvac eval: $label, act-quant $mode"
        "$Q" eval --model "$model" "${ad[@]}" "${src[@]}" --act-quant "$mode" "${DEV[@]}" \
            --dump "$d-$mode" --json >"$d-$mode.json"
    done
    say "llama.cpp: $label"
    "$LOGITS" -m "$model" "${la[@]}" --tokens "$d-llamacpp/tokens.i32" --seq "$SEQ" -o "$d.llama.f32" >&2
    for mode in llamacpp bitnet; do
        cmp -s "$d-llamacpp/tokens.i32" "$d-$mode/tokens.i32" || { echo "parity: token mismatch" >&2; exit 1; }
        $PY - "$label" "$model" "$adapter" "$mode" "$d-$mode" "$d.llama.f32" "$what" >>"$CASES" <<'EOF'
import json, sys
label, model, adapter, mode, qdir, lf, what = sys.argv[1:]
print(json.dumps({"model": label.rsplit("+", 1)[0] if "+" in label else label,
                  "model_path": model, "act_quant": mode,
                  "adapter": None if adapter == "-" else "fresh fine-tune",
                  "data": what, "qvac_dir": qdir, "llama_logits": lf}))
EOF
    done
}
case_run qvac-tiny "$MODEL" - text
case_run qvac-tiny+ft "$MODEL" "$ADAPTER" text
case_run qvac-tiny-val "$MODEL" - val
case_run qvac-tiny-val+ft "$MODEL" "$ADAPTER" val
case_run synth-tq2_0 "$W/synth-tq2_0.gguf" - text
case_run synth-f16 "$W/synth-f16.gguf" - text
# The floor: qvac against itself, the reference backend (f64 sums) against
# the device above (f32 sums), both with llama.cpp's rule. Values that sit
# within an ulp of a rounding boundary flip there too, and a flipped key or
# value moves every later position of its row.
floor_run() { # LABEL MODEL
    local d=$W/$1
    say "qvac eval on the reference backend: $1"
    "$Q" eval --model "$2" --text "$HELD" --seq-len "$SEQ" --act-quant llamacpp --device ref \
        --dump "$d-ref" --json >"$d-ref.json"
    cmp -s "$d-llamacpp/tokens.i32" "$d-ref/tokens.i32" || { echo "parity: token mismatch" >&2; exit 1; }
    $PY - "$1" "$2" "$d-ref" "$d-llamacpp/logits.f32" >>"$CASES" <<'EOF'
import json, sys
label, model, qdir, lf = sys.argv[1:]
print(json.dumps({"model": label + " [floor: qvac ref vs qvac device, no llama.cpp]", "model_path": model,
                  "act_quant": "llamacpp", "adapter": None, "data": "text", "qvac_dir": qdir,
                  "llama_logits": lf}))
EOF
}
floor_run synth-tq2_0 "$W/synth-tq2_0.gguf"
floor_run synth-f16 "$W/synth-f16.gguf"

say "greedy continuations of the demo's prompts"
CONT=$W/continuations.jsonl
: >"$CONT"
while IFS= read -r p; do
    case "$p" in *. | *\?) p="$p"$'\n' ;; esac
    q=$("$Q" generate --model "$MODEL" --adapter "$ADAPTER" --prompt "$p" --temperature 0 --tokens 60 \
        --act-quant llamacpp "${DEV[@]}")
    qb=$("$Q" generate --model "$MODEL" --adapter "$ADAPTER" --prompt "$p" --temperature 0 --tokens 60 \
        --act-quant bitnet "${DEV[@]}")
    # flash attention off: the attention qvac computes (llama.cpp's default,
    # on, sums its softmax differently: the report shows both)
    l=$("$COMPLETION" -m "$MODEL" --lora "$ADAPTER" -p "$p" --temp 0 -n 60 -ctk f32 -ctv f32 \
        -fa off -no-cnv --no-warmup -t "$(nproc)" 2>/dev/null </dev/null)
    lf=$("$COMPLETION" -m "$MODEL" --lora "$ADAPTER" -p "$p" --temp 0 -n 60 -ctk f32 -ctv f32 \
        -no-cnv --no-warmup -t "$(nproc)" 2>/dev/null </dev/null)
    $PY - "$p" "$q" "$l" "$qb" "$lf" >>"$CONT" <<'EOF'
import json, sys
p, q, l, qb, lf = sys.argv[1:]
def cont(out):  # what follows the prompt (both print the prompt first; llama.cpp ends with [end of text] at EOS)
    out = out.rstrip("\n").removesuffix(" [end of text]").rstrip("\n")
    return out[len(p):] if out.startswith(p) else out
print(json.dumps({"prompt": p, "qvac": cont(q), "llamacpp": cont(l), "qvac_bitnet": cont(qb),
                  "llamacpp_fa": cont(lf)}))
EOF
done <data/finetune/pirate_prompts.txt

say "PEFT: export, and a plain PyTorch model of the exported directory"
"$Q" export "$ADAPTER" --format peft -o "$W/peft" --force >&2
$PY tools/peft_check.py --model "$MODEL" --peft "$W/peft" --dump "$W/qvac-tiny-val+ft-bitnet" --json \
    >"$W/peft.json" || true

say "report"
CMD="scripts/parity-llamacpp.sh $1"
$PY - "$W" "$CMD" "$LLAMA_COMMIT" "$STEPS" <<'EOF'
import json, sys
w, cmd, commit, steps = sys.argv[1:]
cases = [json.loads(l) for l in open(f"{w}/cases.jsonl")]
conts = [json.loads(l) for l in open(f"{w}/continuations.jsonl")]
for c in cases:
    if c["model"] == "qvac-tiny" and c["adapter"] and c["act_quant"] == "llamacpp" and c["data"] == "text":
        c["continuations"] = conts
notes = [
    f"adapter: a fresh `qvac finetune` of the built-in model, {steps} steps, rank 8, alpha 16, all seven modules.",
    "Models: qvac-tiny is the built-in model (TQ2_0, F32 embedding) on the corpus's held-out last 2% "
    "(llama-perplexity's windows of 128) and qvac-tiny-val on the fine-tune's validation set; synth-tq2_0 "
    "(TQ2_0, blk.N.*.scale tensors, F16 tied head, 4 query / 2 key-value heads) and synth-f16 (F16 ternary "
    "weights, F32 head, 8 / 2 heads) have random weights (`build/synth_model`).",
    "act_quant llamacpp is llama.cpp's rule (q8_K blocks for TQ2_0 inputs, half for F16 weights and heads); "
    "bitnet is BitNet b1.58's per-token int8, what qvac trains with, so its rows measure what the rule costs.",
    "Boundary flips: where a value sits within an ulp of an int8 (q8_K) or half rounding boundary, the two "
    "programs' last-bit differences (their sums run in different orders) round it differently. A flipped key "
    "or value moves every later position of its row: on the random-weight models flips are frequent enough "
    "that most rows have one early, and the median moves with them. "
    "The floor rows measure the same thing between two qvac backends (f64 and f32 sums) with no llama.cpp "
    "involved.",
    "Continuations: llama.cpp's default flash attention (on for the CPU) sums the softmax in another order "
    "than its plain path and than qvac; where the greedy choice is a near-tie that order decides it. The "
    "comparison is therefore made with `-fa off`; the flash-attention column shows the default.",
]
plan = {"command": cmd, "llama_cpp": commit, "cases": cases, "notes": notes}
try:
    plan["peft"] = json.load(open(f"{w}/peft.json"))
except Exception as e:
    plan["peft"] = {"error": str(e)}
json.dump(plan, open(f"{w}/plan.json", "w"), indent=1)
EOF
$PY tools/parity_report.py "$W/plan.json" --md benchmarks/reports/parity.md \
    --json benchmarks/reports/parity.json
echo "parity: wrote benchmarks/reports/parity.md and parity.json" >&2
