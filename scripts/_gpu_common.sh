# Sourced by scripts/gpu_check.sh and scripts/gpu_train.sh: the OUTDIR argument, the repository,
# the interpreter (PYTHON; default .venv/bin/python if present, else python3) with this checkout
# on PYTHONPATH, and CUDA_OK=1 when that interpreter's torch sees a CUDA GPU.
#   gpu_script_setup NAME WHAT "$@"   (WHAT: what OUTDIR receives, for the usage line)
gpu_script_setup() {
    local name=$1 what=$2
    shift 2
    if [ $# -ne 1 ] || [ -z "$1" ]; then
        echo "usage: scripts/$name OUTDIR (the folder $what)" >&2
        exit 2
    fi
    OUT=$1
    REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ -z "${PYTHON:-}" ]; then
        if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
    fi
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
    CUDA_OK=$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
}
