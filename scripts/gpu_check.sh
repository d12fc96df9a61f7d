#!/usr/bin/env bash
# The prepared GPU check of issue 11: on a machine with a CUDA GPU and the CUDA build of torch,
# run the `gpu`-marked tests and `edgeseg bench` on CUDA, and write everything under OUTDIR
# (JUnit XML and log of the tests, bench JSON and log, nvidia-smi, pip freeze, versions) in
# under 5 minutes. On a machine without a CUDA GPU it says so and exits 0.
#
#   scripts/gpu_check.sh OUTDIR            # e.g. benchmarks/results/$(date +%F)-h100
#
# Needs torch (CUDA build), numpy, opencv, onnx / onnxruntime already installed: it never
# installs torch and uses no network. edgeseg is imported from this checkout (PYTHONPATH), or
# installed with `pip install --no-deps -e .` when that works offline. PYTHON picks the
# interpreter (default: .venv/bin/python if present, else python3). GPU_CHECK_BUDGET_S caps
# the whole run (default 280 s: the tests get ~60% of it, bench the rest).
set -u -o pipefail

. "$(dirname "$0")/_gpu_common.sh"
gpu_script_setup gpu_check.sh "the results are written to" "$@"
BUDGET=${GPU_CHECK_BUDGET_S:-280}
if [ "$CUDA_OK" != "1" ]; then
    echo "gpu_check: no CUDA GPU visible to $PYTHON's torch on this machine (or no torch); nothing to check, exiting 0"
    exit 0
fi

mkdir -p "$OUT" || { echo "gpu_check: cannot create $OUT" >&2; exit 1; }
OUT=$(cd "$OUT" && pwd)
start=$(date +%s)
echo "gpu_check: CUDA GPU found; results go to $OUT (budget ${BUDGET}s)"

# edgeseg itself: this checkout on PYTHONPATH; an offline editable install only if it is not importable
if ! "$PYTHON" -c 'import edgeseg' 2>/dev/null; then
    "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index -e "$REPO" >"$OUT/pip_install.log" 2>&1 \
        || echo "gpu_check: pip install --no-deps -e . failed (see pip_install.log); relying on PYTHONPATH"
fi

(nvidia-smi || true) >"$OUT/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$OUT/gpu.csv" 2>/dev/null || true
"$PYTHON" -m pip freeze >"$OUT/pip-freeze.txt" 2>/dev/null || true
"$PYTHON" - >"$OUT/versions.json" 2>"$OUT/versions.err" <<'PY'
import json, platform, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "gpu": torch.cuda.get_device_name(0),
        "capability": list(torch.cuda.get_device_capability(0))}
for mod in ("numpy", "cv2", "onnx", "onnxruntime", "cupy", "edgeseg"):
    try:
        info[mod] = __import__(mod).__version__
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        info[mod] = f"unavailable ({type(exc).__name__})"
flags = set()
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
except OSError:
    pass
info["cpu_flags"] = sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "fma"))
print(json.dumps(info, indent=2))
PY

status=0
tests_s=$(( BUDGET * 6 / 10 ))
echo "gpu_check: gpu-marked tests (limit ${tests_s}s)"
(cd "$REPO" && timeout "$tests_s" "$PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT/gpu-tests.xml" tests) >"$OUT/gpu-tests.log" 2>&1
rc=$?
echo "gpu_check: tests exit code $rc (log: gpu-tests.log)"
[ $rc -ne 0 ] && status=1

left=$(( BUDGET - ($(date +%s) - start) ))
if [ $left -lt 30 ]; then left=30; fi
echo "gpu_check: edgeseg bench on CUDA (limit ${left}s)"
bench() { (cd "$REPO" && timeout "$left" "$PYTHON" -m edgeseg.cli bench "$@") >>"$OUT/bench.log" 2>&1; }
# `bench --quick` (issue 11 item 5) where this edgeseg has it, the plain bench otherwise
if (cd "$REPO" && "$PYTHON" -m edgeseg.cli bench --help 2>/dev/null) | grep -q -- '--quick'; then
    bench --quick --device cuda --json "$OUT/bench.json"
else
    bench --device cuda --backend torch --diameter none --sizes 256 512 1024 --json "$OUT/bench.json"
fi
rc=$?
echo "gpu_check: bench exit code $rc (log: bench.log)"
[ $rc -ne 0 ] && status=1
echo "gpu_check: done in $(( $(date +%s) - start ))s; results in $OUT"
exit $status
