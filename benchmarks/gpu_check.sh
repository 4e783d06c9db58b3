#!/usr/bin/env bash
# The prepared GPU check (issue 8): one JSON line per figure, within a time budget on one H100/H200.
#
#   bash benchmarks/gpu_check.sh          # on a CUDA machine, from the repository root
#   bash benchmarks/gpu_check.sh --cpu    # the same checks end to end on the CPU at a tiny size
#   ... --only comfy,parity / --skip comfy  # some parts (the list below, in the order they run)
#   ... --budget 300                      # seconds for the whole check (default 470 on a GPU, none with --cpu)
#
# Parts run in order of need: the issue's figures first (official modes parity comfy rasterizer long),
# then what helps the next speed-up (profile kernels compile), then footprint (fake tensors, no GPU
# needed) and parallel (needs ray). Each part runs within what is left of the budget: one that would
# start with under 20 s left is reported as skipped, one still running when the budget ends is stopped
# (its figures so far are kept) and reported as timed out. Every part prints a line with its seconds.
# The lines also go to $GPU_CHECK_LOG (default $OUT/gpu_check.jsonl when OUT is set), and a short
# table of the main figures (benchmarks/gpu_summary.py) comes last.
#
# Needs: torch, numpy, pillow, transformers, safetensors, and diffusers (on a machine without network,
# `bash devtools/stage_device.sh` stages its wheel in .wheels/, installed into .gpu-check-site/ first,
# the official folder in .official/, the parity cases in .parity/ and .parity-a/ (GPU_CHECK_PARITY=
# ".parity .parity-a": folders of cases, space-separated; default $MIMO_PARITY_DIR), and ComfyUI
# with the wheels it needs in .comfy/, unpacked and installed there; it prints the three calls to make).
# OFFICIAL=path of the official pipeline folder (default ../shared/official_mimo or .official).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PARTS="official modes parity comfy rasterizer long profile kernels compile footprint parallel"
MIN_PART_S=${GPU_CHECK_MIN_PART_S:-20}  # a part is not started with less left than this
CPU=0; ONLY=; SKIP=; BUDGET=
while [ $# -gt 0 ]; do
    case $1 in
        --cpu) CPU=1 ;;
        --only) ONLY=${2:-}; shift ;;
        --skip) SKIP=${2:-}; shift ;;
        --budget) BUDGET=${2:-}; shift
            [[ $BUDGET =~ ^[0-9]+$ ]] || { echo "gpu_check.sh: --budget takes whole seconds (0: none), not '$BUDGET'" >&2; exit 2; } ;;
        *) echo "gpu_check.sh: unknown argument $1 (--cpu, --only PARTS, --skip PARTS, --budget SECONDS; parts: $PARTS)" >&2; exit 2 ;;
    esac
    shift
done
for p in ${ONLY//,/ } ${SKIP//,/ }; do
    case " $PARTS " in *" $p "*) ;; *) echo "gpu_check.sh: unknown part '$p' (parts: $PARTS)" >&2; exit 2 ;; esac
done
wanted() {  # is this part asked for?
    { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; } && [[ ",$SKIP," != *",$1,"* ]]
}
[ -n "$BUDGET" ] || { [ $CPU = 1 ] && BUDGET=0 || BUDGET=470; }
START=$SECONDS
LOG=${GPU_CHECK_LOG:-${OUT:+$OUT/gpu_check.jsonl}}
[ -n "$LOG" ] || LOG=$(mktemp /tmp/gpu_check.XXXXXX.jsonl)
: > "$LOG"
status=0
say() { echo "$1" | tee -a "$LOG"; }

WHEELS=$(ls .wheels/*.whl 2>/dev/null; wanted comfy && ls .comfy/wheels/*.whl 2>/dev/null)
if [ -n "$WHEELS" ]; then
    # shellcheck disable=SC2086
    $PY -m pip install -q --no-index --no-deps --target .gpu-check-site $WHEELS >/dev/null 2>&1 \
        || { say '{"check": "setup", "ok": false, "error": "installing the staged wheels failed"}'; status=1; }
    export PYTHONPATH="$PWD/.gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
fi
COMFY_ARGS=
if wanted comfy && [ -f .comfy/ComfyUI.tar.xz ]; then  # staged ComfyUI: used as is, nothing is installed by pip
    rm -rf .gpu-check-comfy && mkdir -p .gpu-check-comfy && tar -C .gpu-check-comfy -xJf .comfy/ComfyUI.tar.xz \
        && COMFY_ARGS="--comfyui $PWD/.gpu-check-comfy/ComfyUI --front-end-root $PWD/.comfy/frontend" \
        || { say '{"check": "setup", "ok": false, "error": "unpacking .comfy/ComfyUI.tar.xz failed"}'; status=1; }
fi
OFFICIAL=${OFFICIAL:-}
for d in .official ../shared/official_mimo; do [ -z "$OFFICIAL" ] && [ -f "$d/run_official.sh" ] && OFFICIAL=$d; done
PARITY=${GPU_CHECK_PARITY:-${MIMO_PARITY_DIR:-../shared/parity}}  # folders of parity cases, space-separated

if [ $CPU = 1 ]; then
    DEV=cpu; SIZES="64"; FRAMES="8 24"; DT=fp32; TINY=--tiny; STEPS=2
else
    DEV=cuda; SIZES="784 512"; FRAMES="24 72"; DT=fp16; TINY=; STEPS=4
fi
S=${SIZES%% *}
export PY CPU DEV SIZES FRAMES DT TINY STEPS S OFFICIAL PARITY COMFY_ARGS

# Each part is a function run in its own process group (so the budget can stop it with its children);
# run() keeps going after a failed figure and the part's exit status says whether any failed.
run() { "$@" || failed=1; }
cases() { local dir; for dir in $PARITY; do ls -d "$dir"/case_* 2>/dev/null; done; }

# 1. the official pipeline beside ours, same machine, same run; the ratio last (ours: every frame count
#    in one process, so the networks are built once)
part_official() {
    local failed=0 ours official reason f
    ours=$($PY -m benchmarks.bench_sampler $TINY --device $DEV --dtype $DT --steps $STEPS --no-decode \
           --runs $(for f in $FRAMES; do echo "${S}x${S}x$f:fast"; done)) || failed=1
    echo "$ours"
    for f in $FRAMES; do
        ours=$(echo "$ours" | grep "\"frames\": $f," | tail -1)
        if [ -n "$OFFICIAL" ] && [ $CPU = 0 ] && [ -n "$ours" ]; then
            official=$(bash "$OFFICIAL/run_official.sh" $S $S $f $STEPS fp16 | tail -1) || failed=1
            echo "$official"
            $PY -c 'import json,sys; o,a=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print(json.dumps({"check":"speedup_vs_official","frames":int(sys.argv[3]),"official_s_per_step":a["step_s_median"],"ours_s_per_step":o["step_s_median"],"ratio":round(a["step_s_median"]/o["step_s_median"],3),"official_peak_gib":a["peak_gib"],"ours_peak_gib":o["peak_gib"]}))' "$ours" "$official" $f || failed=1
        else
            reason="no official folder"; [ -z "$ours" ] && reason="ours failed"; [ $CPU = 1 ] && reason="cpu run"
            echo "{\"check\": \"speedup_vs_official\", \"frames\": $f, \"skipped\": \"$reason\"}"
        fi
    done
    return $failed
}
# 2. fast and low-VRAM modes, each size (one process)
part_modes() {
    $PY -m benchmarks.bench_sampler $TINY --device $DEV --dtype $DT --steps $STEPS --no-decode \
        --runs $(for s in $SIZES; do for m in fast low; do echo "${s}x${s}x24:$m"; done; done)
}
# 3. parity cases on the device: fp32 within the bound; then ours in fp16/bf16 against ours in fp32,
#    beside the official fp16 against the official fp32, same inputs, same device (precision_bound)
part_parity() {
    local failed=0 case list
    list=$(cases)
    [ -n "$list" ] || { echo "{\"check\": \"parity\", \"ok\": false, \"error\": \"no cases in $PARITY\"}"; return 1; }
    for case in $list; do
        run $PY tests/tools/parity.py "$case" --device $DEV --dtype fp32
        if [ -n "$OFFICIAL" ]; then run $PY -m benchmarks.precision_bound "$case" --device $DEV --official "$OFFICIAL"
        else echo '{"check": "precision_bound", "skipped": "no official folder"}'; fi
    done
    return $failed
}
# 4. a real ComfyUI on the device: the demo workflows, Cancel mid-run, the next run, memory after
part_comfy() {
    local failed=0
    # shellcheck disable=SC2086
    if [ $CPU = 1 ]; then run $PY -m benchmarks.gpu_comfy --cpu $COMFY_ARGS; else
        run $PY -m benchmarks.gpu_comfy $COMFY_ARGS; run $PY -m benchmarks.gpu_comfy --lowvram $COMFY_ARGS; fi
    return $failed
}
# 5. the torch rasterizer (goal on a GPU: >= 400 frames/s at 784x784)
part_rasterizer() {
    $PY -m benchmarks.bench_rasterizer --width $S --height $S --frames 8 --device $DEV --backend torch
}
# 6. videos of any length: s/frame and peak memory at 100, 300 and 1,000 frames, one process each
#    (bench_long; its last line gives the ratios: 1.0 = linear time, flat memory)
part_long() {
    if [ $CPU = 1 ]; then $PY -m benchmarks.bench_long --tiny --width 64 --height 64 --steps 2 --device cpu --dtype fp32 --frames 30 60
    else $PY -m benchmarks.bench_long --width $S --height $S --steps 2 --dtype $DT; fi
}
# 7. where a fast step's time goes: kernel time by kind and the largest kernels (torch.profiler)
part_profile() {
    $PY -m benchmarks.bench_sampler $TINY --device $DEV --dtype $DT --width $S --height $S --frames 24 \
        --steps 3 --memory fast --no-decode --profile
}
# 8. the hot layers one at a time, in the variants worth choosing between (attention back ends,
#    layouts, GroupNorm+SiLU eager or compiled, the GEGLU gate before and after its rewrite), then
#    whole fast steps with each attention back end forced (one process)
part_kernels() {
    local failed=0
    run $PY -m benchmarks.bench_kernels $([ $CPU = 1 ] && echo --cpu)
    run $PY -m benchmarks.bench_sampler $TINY --device $DEV --dtype $DT --steps 3 --no-decode \
        --runs "${S}x${S}x24:fast" --sdpa $([ $CPU = 1 ] && echo flash math || echo cudnn flash efficient)
    return $failed
}
# 9. torch.compile (the memory-bound steps): fast mode at the first size (compiled in its first step;
#    step_s_median is the compiled speed), then the precision bound with ours compiled
part_compile() {
    local failed=0 case
    run $PY -m benchmarks.bench_sampler $TINY --device $DEV --dtype $DT --width $S --height $S --frames 24 \
        --steps $STEPS --memory fast --no-decode --compile
    for case in $(cases); do
        if [ -n "$OFFICIAL" ]; then run $PY -m benchmarks.precision_bound "$case" --device $DEV --official "$OFFICIAL" --compile
        else echo '{"check": "precision_bound", "compile": true, "skipped": "no official folder"}'; fi
    done
    return $failed
}
# 10. the modes counted on fake tensors (bench_footprint, no GPU needed), to set beside the measured peaks
part_footprint() {
    local failed=0 s
    for s in $SIZES; do run $PY -m benchmarks.bench_footprint --width $s --height $s --frames 24 --memory fast low; done
    return $failed
}
# 11. the window-parallel sampler (needs ray): every CUDA device one worker, or two workers on one GPU
#     (same bits as one device, and the overhead per step); tiny weights on the CPU run
part_parallel() {
    local n devs
    if ! $PY -c "import ray" 2>/dev/null; then
        echo '{"check": "window_parallel", "skipped": "ray is not installed (pip install ray)"}'; return 0
    fi
    if [ $CPU = 1 ]; then
        $PY -m benchmarks.bench_distributed --workers 2 --windows-per-worker 1 2 --steps 3
    else
        n=$($PY -c "import torch; print(torch.cuda.device_count())")
        devs=$($PY -c "import sys; n=int(sys.argv[1]); print(','.join(f'cuda:{i}' for i in range(n)) if n > 1 else 'cuda:0')" "$n")
        $PY -m benchmarks.bench_distributed --devices $devs --workers 1 2 $([ "$n" -ge 4 ] && echo 4) \
            --windows-per-worker 1 2 --full --width 512 --height 512 --dtype fp16 --context-frames 24 --overlap 4 --steps 3
    fi
}
export -f run cases part_official part_modes part_parity part_comfy part_rasterizer part_long part_profile part_kernels \
    part_compile part_footprint part_parallel

for name in $PARTS; do
    wanted "$name" || continue
    left=$(( BUDGET - (SECONDS - START) ))
    if [ "$BUDGET" -gt 0 ] && [ "$left" -lt $MIN_PART_S ]; then
        say "{\"check\": \"part\", \"part\": \"$name\", \"skipped\": \"budget: ${left} s of $BUDGET s left\"}"
        status=1
        continue
    fi
    t0=$SECONDS
    if [ "$BUDGET" -gt 0 ]; then
        timeout --kill-after=10 "$left" bash -c "part_$name" < /dev/null | tee -a "$LOG"
    else
        bash -c "part_$name" < /dev/null | tee -a "$LOG"
    fi
    rc=${PIPESTATUS[0]}
    timed_out=false; { [ $rc = 124 ] || [ $rc = 137 ]; } && [ "$BUDGET" -gt 0 ] && timed_out=true
    [ $rc = 0 ] || status=1
    say "{\"check\": \"part\", \"part\": \"$name\", \"s\": $(( SECONDS - t0 )), \"ok\": $([ $rc = 0 ] && echo true || echo false), \"timed_out\": $timed_out}"
done
say "{\"check\": \"total\", \"s\": $(( SECONDS - START )), \"budget_s\": $BUDGET, \"ok\": $([ $status = 0 ] && echo true || echo false)}"
$PY -m benchmarks.gpu_summary "$LOG" || status=1
exit $status
