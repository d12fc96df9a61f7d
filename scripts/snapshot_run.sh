#!/usr/bin/env bash
# Copy the resumable state of the default training run into training/default/ so that it can be
# committed and the run continued on another machine (scripts/train_default.sh picks it up).
# The run is paused (SIGSTOP) while its files are copied, so the copy is consistent.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${EDGESEG_RUN_DIR:-runs/default}
DEST=training/default
[ -f "$RUN/last.pt" ] || { echo "no $RUN/last.pt to snapshot" >&2; exit 1; }
PID=$(pgrep -f "edgeseg.cli -v train" | head -1 || true)
[ -n "$PID" ] && kill -STOP "$PID"
trap '[ -n "$PID" ] && kill -CONT "$PID"' EXIT
mkdir -p "$DEST"
for f in config.json split.json last.pt best.pt log.csv; do
  [ -f "$RUN/$f" ] && cp "$RUN/$f" "$DEST/.$f.tmp" && mv "$DEST/.$f.tmp" "$DEST/$f"
done
echo "snapshot of $RUN at step $(tail -1 "$DEST/log.csv" | cut -d, -f1) in $DEST"
