#!/usr/bin/env bash
# The one prepared GPU check for ttkernels (run it in every task lent a GPU), from the repository root:
#
#     bash benchmarks/gpu_check.sh            # writes logs, the benchmark JSON, .md table and .png plot to $OUT
#
# Steps, each under `timeout`, inside a total budget (GPU_CHECK_BUDGET_S, default 560 s, so that it fits one
# 10-minute device command with the machine's start outside it):
#   1. nvidia-smi and versions
#   2. pip install -e . with the CUDA extension (TTKERNELS_BUILD_CUDA=1); a failed build is reported and the run
#      continues without it (the cuda provider is then skipped with the reason)
#   3. python -m ttkernels info
#   4. GPU tests: tests/test_triton_kernels.py tests/test_cuda_backend.py tests/test_ops.py (those that exist), with
#      TTKERNELS_TRITON_AUTOTUNE=0 (the first fitting config per launch; step 6 covers the others); then the
#      backward tests again with TTKERNELS_BWD_G_IN_LOOP=0 (dx with g from the pre-pass, the design before the
#      in-loop g became the default)
#   5. compute-sanitizer --tool memcheck on benchmarks/gpu_sanitize.py (cuda backend), if the extension built
#   6. benchmarks/gpu_diag_configs.py: every autotune config of the fused kernel forced once, against float64;
#      then benchmarks/host_cost.py (host-bound cost per call at T=1, and where a training step spends it)
#   7. the Hopper benchmark set (TTKERNELS_BENCH=full, bf16) with --benchmark-json into $OUT; conftest renders
#      <card>-<date>.md/.png beside it. The set runs headline shapes first and skips what the deadline leaves out.
#   8. one final table: step results and the compact benchmark table
#
# Environment: OUT (default ./gpu_out), PYTHON (default python3), GPU_CHECK_BUDGET_S, GPU_CHECK_SKIP (comma list
# of: build,tests,sanitizer,diag,hostcost,bench), TTKERNELS_BENCH (default full), MAX_JOBS, TORCH_CUDA_ARCH_LIST (default: the
# card present, 9.0a on Hopper), GPU_CHECK_TEST_WORKERS (pytest-xdist workers and diagnostic processes, default 12).
# Nothing here changes the GPU's settings (clocks, power, MIG, persistence) or resets it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-560}
SKIP=",${GPU_CHECK_SKIP:-},"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} # importable from the tree even if the install step fails
export PATH=$PATH:/usr/local/cuda/bin
export TTKERNELS_BENCH=${TTKERNELS_BENCH:-full}
# build the extension for the card in this machine only (sm_90a on Hopper): one arch instead of csrc's five
if [[ -z ${TORCH_CUDA_ARCH_LIST:-} ]]; then
    TORCH_CUDA_ARCH_LIST=$("$PY" -c "import torch; m, n = torch.cuda.get_device_capability(); \
print(f'{m}.{n}' + ('a' if (m, n) == (9, 0) else ''))" 2>/dev/null || true)
    [[ -n $TORCH_CUDA_ARCH_LIST ]] && export TORCH_CUDA_ARCH_LIST || unset TORCH_CUDA_ARCH_LIST
fi

exec > >(tee -a "$OUT/gpu_check.log") 2>&1
TEE_PID=$!

SUMMARY=()
LAST_RC=0

left() { echo $((DEADLINE - $(date +%s))); }

# cap WANT RESERVE: WANT seconds, or less so that RESERVE seconds stay for the later steps (at least 10)
cap() {
    local want=$1 reserve=$2 avail
    avail=$(($(left) - reserve))
    ((avail < want)) && want=$avail
    ((want < 10)) && want=10
    echo "$want"
}

skipped() { [[ $SKIP == *",$1,"* ]]; }

# run NAME SECONDS CMD...: run under timeout, record the outcome, never abort the script
run() {
    local name=$1 secs=$2 t0 dt status
    shift 2
    t0=$(date +%s)
    echo
    echo "=== [$name] timeout ${secs}s: $* ==="
    LAST_RC=0
    timeout --signal=TERM --kill-after=15 "$secs" "$@" || LAST_RC=$?
    dt=$(($(date +%s) - t0))
    if ((LAST_RC == 124 || LAST_RC == 137)); then
        status="TIMEOUT"
    elif ((LAST_RC != 0)); then
        status="FAILED (rc=$LAST_RC)"
    else
        status="ok"
    fi
    echo "=== [$name] $status in ${dt}s ==="
    SUMMARY+=("$(printf '%-34s %-14s %4ss' "$name" "$status" "$dt")")
}

note() {
    echo "NOTE: $*"
    SUMMARY+=("$(printf '%-34s %s' "note" "$*")")
}

# 1. the card and the software
run "nvidia-smi" 20 nvidia-smi
run "versions" 60 "$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', \
torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None); \
import triton; print('triton', triton.__version__)"

# 2. install with the CUDA extension (no network on the device machine: --no-index --no-deps)
EXT_OK=0
if skipped build; then
    note "build skipped (GPU_CHECK_SKIP)"
else
    run "pip install -e . (cuda ext)" "$(cap 240 200)" bash -c "TTKERNELS_BUILD_CUDA=1 MAX_JOBS=\${MAX_JOBS:-16} \
        '$PY' -m pip install -e . --no-build-isolation --no-deps --no-index >'$OUT/build.log' 2>&1"
    if ((LAST_RC != 0)); then
        tail -n 40 "$OUT/build.log" || true
        note "the CUDA extension did not build (see build.log); continuing without it"
    fi
fi
if "$PY" -c "import ttkernels._C" >/dev/null 2>&1; then
    EXT_OK=1
else
    note "ttkernels._C is not importable: cuda backend benchmarks/sanitizer are skipped"
fi

# 3. what ttkernels sees
run "python -m ttkernels info" 60 "$PY" -m ttkernels info

# 4. GPU tests (files written by others; run those that exist)
TESTS=()
for f in tests/test_triton_kernels.py tests/test_cuda_backend.py tests/test_ops.py; do
    if [[ -f $f ]]; then TESTS+=("$f"); else note "$f does not exist"; fi
done
if skipped tests; then
    note "tests skipped (GPU_CHECK_SKIP)"
elif ((${#TESTS[@]})); then
    # xdist (where installed) spreads the Triton JIT compiles over the machine's cores
    XDIST=()
    "$PY" -c "import xdist" >/dev/null 2>&1 && XDIST=(-n "${GPU_CHECK_TEST_WORKERS:-12}")
    # one config per launch (TTKERNELS_TRITON_AUTOTUNE=0): timing every config of every kernel variant would cost
    # minutes of compiles; step 6 checks the configs one by one
    run "pytest GPU tests" "$(cap 150 150)" env TTKERNELS_TRITON_AUTOTUNE=0 "$PY" -m pytest "${TESTS[@]}" -q --maxfail=10 -p no:cacheprovider \
        "${XDIST[@]}" -rfE
    # the backward with g from the skinny pre-pass (the default accumulates it in the fused kernel's loop; see
    # ttkernels/ops/triton/configs.py bwd_g_in_loop_enabled)
    run "pytest bwd, pre-pass g" "$(cap 120 150)" env TTKERNELS_TRITON_AUTOTUNE=0 TTKERNELS_BWD_G_IN_LOOP=0 "$PY" -m pytest \
        tests/test_triton_kernels.py tests/test_ops.py -k "bwd or backward or grad" -q -p no:cacheprovider "${XDIST[@]}" -rfE
fi

# 5. memcheck on the cuda backend
if skipped sanitizer; then
    note "sanitizer skipped (GPU_CHECK_SKIP)"
elif ((EXT_OK)) && command -v compute-sanitizer >/dev/null 2>&1; then
    run "compute-sanitizer memcheck" "$(cap 90 120)" bash -c "set -o pipefail; PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
        compute-sanitizer --tool memcheck --error-exitcode 1 '$PY' -m benchmarks.gpu_sanitize --backend cuda \
        2>&1 | tee '$OUT/sanitize.log' | tail -n 30"
else
    note "compute-sanitizer not run (extension built: $EXT_OK; compute-sanitizer on PATH: \
$(command -v compute-sanitizer >/dev/null 2>&1 && echo yes || echo no))"
fi

# 6. every autotune config of the fused kernel, forced one at a time, against float64 (the autotuner proves only
#    the config it picks; see benchmarks/gpu_diag_configs.py)
if skipped diag; then
    note "config diagnostic skipped (GPU_CHECK_SKIP)"
else
    DIAG_S=$(cap 120 180)
    run "fused configs vs float64" "$DIAG_S" "$PY" -m benchmarks.gpu_diag_configs --jobs "${GPU_CHECK_TEST_WORKERS:-12}" \
        --budget $((DIAG_S - 15)) --out "$OUT"
fi

# 6b. host cost per call at T=1 (the issue rate of Python + dispatch + launches; what dominates small-T timings)
if skipped hostcost; then
    note "host cost skipped (GPU_CHECK_SKIP)"
else
    run "host cost per call (T=1)" "$(cap 60 150)" bash -c "set -o pipefail; TTKERNELS_TRITON_AUTOTUNE=0 '$PY' -m benchmarks.host_cost --profile 100 \
        2>&1 | tee '$OUT/host_cost.txt'"
fi

# 7. benchmarks: a deadline inside pytest makes late cases skip (and say so) instead of losing the JSON
STEM=$("$PY" -c "from benchmarks.harness import bench_device, result_stem; print(result_stem(bench_device()))" \
    2>/dev/null || echo "gpu-$(date +%F)")
JSON=$OUT/$STEM.json
if skipped bench; then
    note "benchmarks skipped (GPU_CHECK_SKIP)"
else
    BENCH_S=$(cap 480 25)
    # 40 s after the deadline: the case in flight ends and conftest writes the JSON and renders the report
    export TTKERNELS_BENCH_DEADLINE=$(($(date +%s) + BENCH_S - 40))
    export TTKERNELS_BENCH_TARGET_S=${TTKERNELS_BENCH_TARGET_S:-0.1}
    run "benchmarks ($TTKERNELS_BENCH set)" "$BENCH_S" bash -c "'$PY' -m pytest benchmarks --benchmark-only -q \
        -p no:cacheprovider --benchmark-json='$JSON' --benchmark-columns=median,iqr,rounds \
        >'$OUT/bench_pytest.log' 2>&1"
    grep -E "passed|failed|error" "$OUT/bench_pytest.log" | tail -n 3 || true
    if ((LAST_RC != 0)); then
        grep -E "^(FAILED|ERROR)" "$OUT/bench_pytest.log" | head -n 20 || true
    fi
    if [[ -f $JSON && ! -f ${JSON%.json}.md ]]; then
        run "render report" 60 "$PY" -m benchmarks.report "$JSON"
    fi
fi

# 8. one final table
echo
echo "================ gpu_check summary ($(($(date +%s) - START))s of ${BUDGET}s) ================"
printf '%s\n' "${SUMMARY[@]}"
if [[ -f $JSON ]]; then
    echo
    "$PY" -m benchmarks.report "$JSON" --compact || true
    echo
    echo "files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
fi
exec 1>&- 2>&-
wait "$TEE_PID" 2>/dev/null || true
