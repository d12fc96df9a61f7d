#!/usr/bin/env bash
# The prepared GPU training run of issue 10: on a machine with a CUDA GPU, continue the shipped
# model on the group split's train side (training/splits/dsb2018_groups.json) with the recipe of
# training cycle 5 at a GPU's batch size, validate on the held-out groups as it goes, stop within
# a wall-clock budget (SIGTERM: the run checkpoints and stops), and copy back what the CPU side
# needs to judge and ship the weights: best.pt (~8 MB), log.csv, config.json, model_card.json
# (when the run completed), train.log, versions.json. On a machine without a CUDA GPU it says so
# and exits 0.
#
#   scripts/gpu_train.sh OUTDIR
#
# The data travels as a pack (the GPU machine gets the repo and what `carry` names, 64 MiB in all;
# the DSB2018 folder is 68 MB, its pack 46 MiB):
#   .venv/bin/python scripts/pack_data.py ../shared/data/dsb2018/stage1_train .gpu/dsb2018
#   echo /.gpu/ >> .git/info/exclude
#   device run: carry [".gpu"], command "scripts/gpu_train.sh $OUT", timeout_s 600
# Then, on the CPU: benchmarks/generalization.py --model OUTDIR/best.pt (the group split, per kind,
# 0.5x / 2x), and scripts/ship_default.py to ship it if it wins.
#
# Never installs anything and uses no network: needs torch (CUDA build), numpy and opencv; tqdm,
# tifffile and matplotlib are optional (curves.png is skipped without matplotlib). Settings (env):
#   DATA (default .gpu/dsb2018)  INIT (default: the shipped model)  STEPS (4000)  BATCH (32)
#   LR (3e-4)  SEED (6)  SPLIT (the group split; empty: a seeded split)  WORKERS (CPU cores - 2)
#   GPU_TRAIN_S (wall-clock budget of training,
#   default 420 s; threshold tuning at the end of a completed run is inside it)  PYTHON.
set -u -o pipefail

. "$(dirname "$0")/_gpu_common.sh"
gpu_script_setup gpu_train.sh "the weights and logs are written to" "$@"
DEVICE=${GPU_TRAIN_DEVICE:-cuda}  # "cpu": a dry run of the same steps (the script's own test)
if [ "$CUDA_OK" != "1" ] && [ "$DEVICE" = cuda ]; then
    echo "gpu_train: no CUDA GPU visible to $PYTHON's torch on this machine (or no torch); nothing to train, exiting 0"
    exit 0
fi
DATA=${DATA:-$REPO/.gpu/dsb2018}
if [ ! -d "$DATA/images" ]; then
    echo "gpu_train: no dataset at $DATA (expected images/ and labels/): pack it with scripts/pack_data.py and carry it, or set DATA" >&2
    exit 1
fi
mkdir -p "$OUT" || { echo "gpu_train: cannot create $OUT" >&2; exit 1; }
OUT=$(cd "$OUT" && pwd)
RUN=$(mktemp -d)/run  # last.pt (weights + optimizer, ~24 MB) stays on the machine
CORES=$(nproc 2>/dev/null || echo 4)
WORKERS=${WORKERS:-$(( CORES > 3 ? CORES - 2 : 1 ))}
BUDGET=${GPU_TRAIN_S:-420}
SPLIT=${SPLIT-training/splits/dsb2018_groups.json}
split_args=()
[ -n "$SPLIT" ] && split_args=(--split "$SPLIT")

"$PYTHON" - >"$OUT/versions.json" 2>"$OUT/train.log" <<'PY'
import json, os, platform, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count()}
for mod in ("numpy", "cv2", "tqdm", "matplotlib", "edgeseg"):
    try:
        info[mod] = __import__(mod).__version__
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        info[mod] = f"unavailable ({type(exc).__name__})"
print(json.dumps(info, indent=2))
PY

echo "gpu_train: training on $DATA for at most ${BUDGET}s (steps ${STEPS:-4000}, batch ${BATCH:-32}, $WORKERS workers); run folder $RUN"
start=$(date +%s)
(cd "$REPO" && timeout -s TERM -k 60 "$BUDGET" "$PYTHON" -m edgeseg.cli -v train \
    --init "${INIT:-default}" --data "$DATA" --out "$RUN" --device "$DEVICE" \
    "${split_args[@]}" --steps "${STEPS:-4000}" --batch-size "${BATCH:-32}" \
    --lr "${LR:-3e-4}" --warmup-steps 200 --val-every 500 --ckpt-every 500 --log-every 50 \
    --scale-min 0.4 --scale-max 2.5 --kind-balance 0.6 --stain-jitter 0.08 --seed "${SEED:-6}" \
    --no-freeze-bn --workers "$WORKERS") >>"$OUT/train.log" 2>&1
rc=$?
echo "gpu_train: training exit code $rc after $(( $(date +%s) - start ))s (124: stopped by the budget, the run checkpointed)"
for f in best.pt log.csv config.json model_card.json; do
    [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/$f"
done
tail -n 3 "$OUT/train.log"
if [ ! -f "$OUT/best.pt" ]; then
    echo "gpu_train: no best.pt was written (see train.log)" >&2
    exit 1
fi
echo "gpu_train: wrote $(ls "$OUT" | tr '\n' ' ')"
exit 0
