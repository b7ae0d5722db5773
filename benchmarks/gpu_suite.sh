#!/usr/bin/env bash
# Every GPU measurement of docs/performance.md in one command, sized for a short loan of one GPU (at most 570 s,
# the sum of the steps' limits): throughput of a paper-size training and attack step in fp32 and bf16, both layouts;
# where a paper-size PGD-10 adversarial-training step goes (torch.profiler, fp32 and bf16); eager against
# compiled attack steps (torch.compile, CUDA graphs); the prepared-data loader against a training step.
#
#     bash benchmarks/gpu_suite.sh            # from the repository root, with robench importable
#
# Each figure lands in benchmarks/results/NAME-SUFFIX.md (SUFFIX from the GPU's name, e.g. -h100), beside the
# CPU figures, and in $OUT when that is set (a remote machine's folder that comes back). A step that fails or
# runs past its limit is reported and the next one runs.
set -u
cd "$(dirname "$0")/.."
export ROBENCH_DEVICE=cuda PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower() if torch.cuda.is_available() else '')")
if [ -z "$gpu" ]; then echo "no CUDA device: nothing to measure" >&2; exit 2; fi
export ROBENCH_BENCH_SUFFIX="-$gpu"
step() {  # step SECONDS SCRIPT ARGS...
    local limit=$1; shift
    echo "== python benchmarks/$*   (limit ${limit} s)"
    timeout "$limit" python3 "benchmarks/$@" || echo "== failed or stopped at ${limit} s: $*"
}
step 90 model_throughput.py --sizes paper --batch 16 --amp --repeats 5
step 90 profile_step.py --size paper --batch 16 --steps 10 --channels-last
ROBENCH_BENCH_SUFFIX="-$gpu-bf16" step 90 profile_step.py --size paper --batch 16 --steps 10 --channels-last --amp
step 240 compiled_step.py --size paper --batch 16 --steps 10 --repeats 3 --skip "compiled model"
step 60 loader_throughput.py --clips 256 --workers 0,4,8
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*"$ROBENCH_BENCH_SUFFIX"*.md "$OUT"/ 2>/dev/null; fi
