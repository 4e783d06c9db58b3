#!/usr/bin/env bash
# The prepared GPU check (issue 8): one JSON line per figure, under 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh          # on a CUDA machine, from the repository root
#   bash benchmarks/gpu_check.sh --cpu    # the same checks end to end on the CPU at a tiny size
#   ... --only comfy,parity / --skip comfy  # some parts: official modes footprint parity comfy
#                                             # rasterizer profile kernels compile long parallel
#
# Needs: torch, numpy, pillow, transformers, safetensors, and diffusers (on a machine without network,
# `bash devtools/stage_device.sh` stages its wheel in .wheels/, installed into .gpu-check-site/ first,
# the official folder in .official/, a parity case in .parity/ (MIMO_PARITY_DIR=.parity), and ComfyUI
# with the wheels it needs in .comfy/, unpacked and installed there; it prints the two calls to make).
# OFFICIAL=path of the official pipeline folder (default ../shared/official_mimo or .official).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PARTS="official modes footprint parity comfy rasterizer profile kernels compile long parallel"
CPU=0; ONLY=; SKIP=
while [ $# -gt 0 ]; do
    case $1 in
        --cpu) CPU=1 ;;
        --only) ONLY=${2:-}; shift ;;
        --skip) SKIP=${2:-}; shift ;;
        *) echo "gpu_check.sh: unknown argument $1 (--cpu, --only PARTS, --skip PARTS; parts: $PARTS)" >&2; exit 2 ;;
    esac
    shift
done
for p in ${ONLY//,/ } ${SKIP//,/ }; do
    case " $PARTS " in *" $p "*) ;; *) echo "gpu_check.sh: unknown part '$p' (parts: $PARTS)" >&2; exit 2 ;; esac
done
part() {  # is this part asked for?
    { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; } && [[ ",$SKIP," != *",$1,"* ]]
}
status=0
run() { "$@" || status=1; }   # a failed figure is reported and the others still run

WHEELS=$(ls .wheels/*.whl 2>/dev/null; part comfy && ls .comfy/wheels/*.whl 2>/dev/null)
if [ -n "$WHEELS" ]; then
    # shellcheck disable=SC2086
    $PY -m pip install -q --no-index --no-deps --target .gpu-check-site $WHEELS >/dev/null 2>&1 \
        || { echo '{"check": "setup", "ok": false, "error": "installing the staged wheels failed"}'; status=1; }
    export PYTHONPATH="$PWD/.gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
fi
COMFY_ARGS=()
if part comfy && [ -f .comfy/ComfyUI.tar.xz ]; then  # staged ComfyUI: used as is, nothing is installed by pip
    rm -rf .gpu-check-comfy && mkdir -p .gpu-check-comfy && tar -C .gpu-check-comfy -xJf .comfy/ComfyUI.tar.xz \
        && COMFY_ARGS=(--comfyui "$PWD/.gpu-check-comfy/ComfyUI" --front-end-root "$PWD/.comfy/frontend") \
        || { echo '{"check": "setup", "ok": false, "error": "unpacking .comfy/ComfyUI.tar.xz failed"}'; status=1; }
fi
OFFICIAL=${OFFICIAL:-}
for d in .official ../shared/official_mimo; do [ -z "$OFFICIAL" ] && [ -f "$d/run_official.sh" ] && OFFICIAL=$d; done
PARITY=${MIMO_PARITY_DIR:-../shared/parity}

if [ $CPU = 1 ]; then
    DEV=cpu; SIZES="64"; FRAMES="8 24"; DT=fp32; TINY=--tiny; STEPS=2
else
    DEV=cuda; SIZES="784 512"; FRAMES="24 72"; DT=fp16; TINY=; STEPS=4
fi
S=${SIZES%% *}

# 1. the official pipeline beside ours, same machine, same run; the ratio last (ours: every frame count
#    in one process, so the networks are built once)
if part official; then
    OURS=$($PY -m benchmarks.bench_sampler $TINY --device $DEV --dtype $DT --steps $STEPS --no-decode \
           --runs $(for f in $FRAMES; do echo "${S}x${S}x$f:fast"; done)) || status=1
    echo "$OURS"
    for f in $FRAMES; do
        ours=$(echo "$OURS" | grep "\"frames\": $f," | tail -1)
        if [ -n "$OFFICIAL" ] && [ $CPU = 0 ] && [ -n "$ours" ]; then
            official=$(bash "$OFFICIAL/run_official.sh" $S $S $f $STEPS fp16 | tail -1) || status=1
            echo "$official"
            $PY -c 'import json,sys; o,a=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print(json.dumps({"check":"speedup_vs_official","frames":int(sys.argv[3]),"official_s_per_step":a["step_s_median"],"ours_s_per_step":o["step_s_median"],"ratio":round(a["step_s_median"]/o["step_s_median"],3),"official_peak_gib":a["peak_gib"],"ours_peak_gib":o["peak_gib"]}))' "$ours" "$official" $f || status=1
        else
            reason="no official folder"; [ -z "$ours" ] && reason="ours failed"; [ $CPU = 1 ] && reason="cpu run"
            echo "{\"check\": \"speedup_vs_official\", \"frames\": $f, \"skipped\": \"$reason\"}"
        fi
    done
fi
# 2. fast and low-VRAM modes, each size (one process)
part modes && run $PY -m benchmarks.bench_sampler $TINY --device $DEV --dtype $DT --steps $STEPS --no-decode \
    --runs $(for s in $SIZES; do for m in fast low; do echo "${s}x${s}x24:$m"; done; done)
# 2b. the same modes counted on fake tensors (bench_footprint), to set beside the measured peaks
part footprint && for s in $SIZES; do run $PY -m benchmarks.bench_footprint --width $s --height $s --frames 24 --memory fast low; done
# 3. parity cases on the device: fp32 within the bound; then ours in fp16/bf16 against ours in fp32,
#    beside the official fp16 against the official fp32, same inputs, same device (precision_bound)
part parity && for case in "$PARITY"/case_*; do
    [ -d "$case" ] || { echo "{\"check\": \"parity\", \"ok\": false, \"error\": \"no cases in $PARITY\"}"; status=1; break; }
    run $PY tests/tools/parity.py "$case" --device $DEV --dtype fp32
    if [ -n "$OFFICIAL" ]; then run $PY -m benchmarks.precision_bound "$case" --device $DEV --official "$OFFICIAL"
    else echo '{"check": "precision_bound", "skipped": "no official folder"}'; fi
done
# 4. a real ComfyUI on the device: the demo workflows, Cancel mid-run, the next run, memory after
if part comfy; then
    if [ $CPU = 1 ]; then run $PY -m benchmarks.gpu_comfy --cpu "${COMFY_ARGS[@]}"; else
        run $PY -m benchmarks.gpu_comfy "${COMFY_ARGS[@]}"; run $PY -m benchmarks.gpu_comfy --lowvram "${COMFY_ARGS[@]}"; fi
fi
# 5. the torch rasterizer (goal on a GPU: >= 400 frames/s at 784x784)
part rasterizer && run $PY -m benchmarks.bench_rasterizer --width $S --height $S --frames 8 --device $DEV --backend torch
# 5a. where a fast step's time goes: kernel time by kind and the largest kernels (torch.profiler)
part profile && run $PY -m benchmarks.bench_sampler $TINY --device $DEV --dtype $DT --width $S --height $S --frames 24 \
    --steps 3 --memory fast --no-decode --profile
# 5b. the hot layers one at a time, in the variants worth choosing between (attention back ends,
#     layouts, GroupNorm+SiLU eager or compiled, the GEGLU gate before and after its rewrite)
part kernels && run $PY -m benchmarks.bench_kernels $([ $CPU = 1 ] && echo --cpu)
# 5c. torch.compile (GroupNorm+SiLU, GEGLU), last of the timed parts as it compiles first: fast mode at
#     the first size (compiled in its first step; step_s_median is the compiled speed), then the
#     precision bound with ours compiled
if part compile; then
    run $PY -m benchmarks.bench_sampler $TINY --device $DEV --dtype $DT --width $S --height $S --frames 24 \
        --steps $STEPS --memory fast --no-decode --compile
    for case in "$PARITY"/case_*; do
        [ -d "$case" ] || continue
        if [ -n "$OFFICIAL" ]; then run $PY -m benchmarks.precision_bound "$case" --device $DEV --official "$OFFICIAL" --compile
        else echo '{"check": "precision_bound", "compile": true, "skipped": "no official folder"}'; fi
    done
fi
# 5d. videos of any length: s/frame and peak memory at 100, 300 and 1,000 frames, one process each
#     (bench_long; its last line gives the ratios: 1.0 = linear time, flat memory)
if part long; then
    if [ $CPU = 1 ]; then run $PY -m benchmarks.bench_long --tiny --width 64 --height 64 --steps 2 --device cpu --dtype fp32 --frames 30 60
    else run $PY -m benchmarks.bench_long --width $S --height $S --steps 2 --dtype $DT; fi
fi
# 6. the window-parallel sampler (needs ray): every CUDA device one worker, or two workers on one GPU
#    (same bits as one device, and the overhead per step); tiny weights on the CPU run
if ! part parallel; then :
elif $PY -c "import ray" 2>/dev/null; then
    if [ $CPU = 1 ]; then
        run $PY -m benchmarks.bench_distributed --workers 2 --windows-per-worker 1 2 --steps 3
    else
        N=$($PY -c "import torch; print(torch.cuda.device_count())")
        DEVS=$($PY -c "import sys; n=int(sys.argv[1]); print(','.join(f'cuda:{i}' for i in range(n)) if n > 1 else 'cuda:0')" "$N")
        run $PY -m benchmarks.bench_distributed --devices $DEVS --workers 1 2 $([ "$N" -ge 4 ] && echo 4) \
            --windows-per-worker 1 2 --full --width 512 --height 512 --dtype fp16 --context-frames 24 --overlap 4 --steps 3
    fi
else
    echo '{"check": "window_parallel", "skipped": "ray is not installed (pip install ray)"}'
fi
exit $status
