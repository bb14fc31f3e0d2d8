#!/usr/bin/env bash
# scripts/demo.sh — what `make demo` runs: the whole product on one machine,
# on the embedded defaults. Starts a scheduler and two workers (OpenCL and
# Vulkan: PoCL and lavapipe here), submits the built-in fine-tune (the
# built-in BitNet model on the built-in pirate dataset), follows it, fetches
# the adapter, shows what the model writes before and after, then the
# ternary-vs-16-bit comparison, publishes the fleet's report (the bench each
# worker ran on its device) in benchmarks/reports/fleet/, and stops
# everything it started.
set -euo pipefail
BUILD=${BUILD:-build}
Q="$(pwd)/$BUILD/qvac"
OUT="$(pwd)/$BUILD/demo"
STEPS=${DEMO_STEPS:-80}
PORT=${DEMO_PORT:-$((20000 + RANDOM % 20000))}
export QVAC_SCHEDULER="tcp://127.0.0.1:$PORT"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

rm -rf "$OUT"
mkdir -p "$OUT"
"$Q" devices
echo

# ---- the scheduler and two workers ---------------------------------------
"$Q" scheduler --bind "$QVAC_SCHEDULER" --data "$OUT/scheduler" >"$OUT/scheduler.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$OUT/scheduler/scheduler.pub" ] && break; sleep 0.1; done
QVAC_SCHEDULER_KEY=$(awk '{print $NF; exit}' "$OUT/scheduler/scheduler.pub")
export QVAC_SCHEDULER_KEY
echo "scheduler on $QVAC_SCHEDULER (log: $OUT/scheduler.log)"

# A worker tunes its cold kernels when it enrolls; on this 2-core machine a
# full tune of every kernel takes minutes, so the demo tunes the kernels the
# fine-tune uses, at its shape, on the device the job will run on (cached: a
# second demo skips it) and starts the workers with --no-tune.
tune_for_demo() { # $1: device
    for k in ternary_matmul ternary_matmul_t lora_fwd lora_bwd f32_matmul f16_matmul f16_matmul_t; do
        "$Q" tune --device "$1" --kernel "$k" --shape 512,256,256,8 --budget-evals 8 | sed -n 2p
    done
}
start_worker() { # $1: device, $2: name
    local token
    token=$("$Q" token --data "$OUT/scheduler" | tail -n 1)
    "$Q" worker --join "$QVAC_SCHEDULER" --token "$token" --devices "$1" \
        --cache-dir "$OUT/$2" --no-tune --name "$2" >"$OUT/$2.log" 2>&1 &
    PIDS+=($!)
    echo "worker $2 on $1 (log: $OUT/$2.log)"
}
# Each worker benchmarks its device once enrolled (`qvac bench`: ternary, then
# 16-bit weights) and sends the result to the scheduler; the demo waits for
# it before the next worker starts, so no two measurements share the CPU.
benches() { "$Q" report --out "$OUT/fleet" --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["devices"]))' 2>/dev/null || echo 0; }
wait_benches() { # $1: how many results
    for _ in $(seq 600); do [ "$(benches)" -ge "$1" ] && return 0; sleep 0.5; done
    echo "demo: only $(benches) of $1 bench results arrived (see the worker logs)" >&2
}
DEVS=$("$Q" devices --json | python3 -c 'import json,sys; print(" ".join(d["id"] for d in json.load(sys.stdin)))' 2>/dev/null || echo "")
OCL=$(echo "$DEVS" | tr ' ' '\n' | grep -m1 '^opencl:' || true)
VK=$(echo "$DEVS" | tr ' ' '\n' | grep -m1 '^vulkan:' || true)
BACKEND=${OCL:+opencl}
BACKEND=${BACKEND:-${VK:+vulkan}}
BACKEND=${BACKEND:-ref}
JOBDEV=${OCL:-${VK:-ref}}
[ "$JOBDEV" != ref ] && tune_for_demo "$JOBDEV"
WANT=0
[ -n "$OCL" ] && start_worker "$OCL" worker-opencl && WANT=$((WANT + 1)) && wait_benches "$WANT"
[ -n "$VK" ] && start_worker "$VK" worker-vulkan && WANT=$((WANT + 1)) && wait_benches "$WANT"
if [ "$WANT" = 0 ]; then
    start_worker ref worker-ref
    WANT=1
    wait_benches 1
fi
for _ in $(seq 600); do
    n=$("$Q" workers --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("workers",d) if isinstance(d,dict) else d; print(len(d))' 2>/dev/null || echo 0)
    [ "$n" -ge "$WANT" ] && break
    sleep 0.5
done
"$Q" workers
echo

# ---- before -----------------------------------------------------------------
# The before/after prompts (docs/data.md): questions end in a newline, as in
# the training data.
mapfile -t PROMPTS < data/finetune/pirate_prompts.txt
sample() { # $1: label, then extra generate options
    local label=$1
    shift
    echo "== $label"
    for p in "${PROMPTS[@]}"; do
        case "$p" in *. | *\?) p="$p"$'\n' ;; esac
        "$Q" generate --prompt "$p" --tokens 90 --temperature 0 "$@" | sed 's/^/   | /'
    done
    echo
}
sample "before fine-tuning (built-in model)"

# ---- the job -------------------------------------------------------------------
"$Q" submit --name pirate --backend "$BACKEND" --steps "$STEPS" --targets all \
    --rank 8 --alpha 16 --lr 5e-3 --batch 4 --seq-len 128 --eval-batches 4 \
    --ckpt-every 20 --wait | tee "$OUT/submit.txt"
JOB=$("$Q" jobs --all --json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("jobs",d) if isinstance(d,dict) else d; print(max(j["id"] for j in d))')
"$Q" fetch "$JOB" -o "$OUT/fetched"
echo
"$Q" jobs --all
echo
sample "after fine-tuning (built-in model + the fetched adapter)" --adapter "$OUT/fetched/adapter.gguf"

# ---- ternary against 16-bit weights, on the fastest device ------------------------
"$Q" compare --steps 6 --targets all --rank 8 --batch 4 --seq-len 128

# ---- the fleet's report ------------------------------------------------------------
# Each worker ran `qvac bench` on its device once enrolled (ternary, then 16-bit
# weights) and sent the result to the scheduler; the report is built from those.
FLEET=${DEMO_FLEET_DIR:-benchmarks/reports/fleet}
wait_benches "$WANT"
echo
"$Q" report --out "$FLEET"
sed -n '/^## Model/,$p' "$FLEET/fleet.md"
