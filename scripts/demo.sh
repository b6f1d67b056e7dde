#!/usr/bin/env bash
# End-to-end StyleTalker demo on the real sample video (make demo).
#
#   preprocess franck.webm -> reconstruct (cpu preset) -> edit with a built-in prompt
#   -> animate the edited avatar with another person's video -> orbit video
#
# Everything goes to out/demo/ (override with DEMO_OUT=...). Every step is resumable: rerun the
# script after an interruption and finished steps are skipped. Settings can be overridden with
# the environment variables below.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${DEMO_OUT:-out/demo}"
WORK="$OUT/work"
VIDEO="${DEMO_VIDEO:-data/videos/franck.webm}"
DRIVER="${DEMO_DRIVER:-data/videos/cap13_edit2.mp4}"
PROMPT="${DEMO_PROMPT:-clown make-up}"
EDIT_NAME="${DEMO_EDIT_NAME:-clown}"
START="${DEMO_START:-10}"          # seconds into the sample video
DURATION="${DEMO_DURATION:-20}"    # seconds of video to reconstruct from
FPS="${DEMO_FPS:-5}"               # frames per second kept
SIZE="${DEMO_SIZE:-256}"           # head crop size in pixels
PRESET="${DEMO_PRESET:-cpu}"       # reconstruct preset (cpu: sized for 2 CPU cores)
EDIT_ITERS="${DEMO_EDIT_ITERS:-400}"
DRIVER_SECONDS="${DEMO_DRIVER_SECONDS:-8}"

st() { "$PY" -m styletalker "$@"; }

for f in "$VIDEO" "$DRIVER"; do
  if [ ! -s "$f" ]; then
    echo "demo: $f is missing; run 'make data' (scripts/fetch_data.sh) first" >&2
    exit 2
  fi
done
mkdir -p "$OUT"

echo "== 1/5 preprocess $VIDEO (${DURATION}s from ${START}s at ${FPS} fps, ${SIZE}px) -> $WORK/preprocess"
st preprocess "$VIDEO" "$WORK" --start "$START" --duration "$DURATION" --fps "$FPS" --size "$SIZE"

echo "== 2/5 reconstruct (preset $PRESET) -> $WORK/reconstruct"
st reconstruct "$WORK" --preset "$PRESET"

echo "== 3/5 edit: \"$PROMPT\" -> $WORK/edits/$EDIT_NAME"
st edit "$WORK" --prompt "$PROMPT" --name "$EDIT_NAME" --iters "$EDIT_ITERS"

ANIM="$OUT/animate_$EDIT_NAME.mp4"
echo "== 4/5 animate the edited avatar with $DRIVER -> $ANIM"
if [ ! -s "$ANIM" ]; then
  st animate "$WORK" --edit "$EDIT_NAME" --driver "$DRIVER" --duration "$DRIVER_SECONDS" --side-by-side -o "$ANIM"
else
  echo "$ANIM exists; skipping (delete it to redo)"
fi

echo "== 5/5 orbit videos (reconstructed and edited) -> $OUT/orbit.mp4, $OUT/orbit_$EDIT_NAME.mp4"
[ -s "$OUT/orbit.mp4" ] || st render "$WORK" --orbit -o "$OUT/orbit.mp4"
[ -s "$OUT/orbit_$EDIT_NAME.mp4" ] || st render "$WORK" --edit "$EDIT_NAME" --orbit -o "$OUT/orbit_$EDIT_NAME.mp4"

cat <<MSG

demo finished. Outputs:
  preprocessing check video : $WORK/preprocess/overlay.mp4
  reconstruction            : $WORK/reconstruct/avatar.pt  (metrics: $WORK/reconstruct/metrics.json)
  edited avatar             : $WORK/edits/$EDIT_NAME/avatar.pt  (previews: $WORK/edits/$EDIT_NAME/previews/, metrics.json)
  animation (driver | avatar): $ANIM
  orbit videos              : $OUT/orbit.mp4  $OUT/orbit_$EDIT_NAME.mp4
MSG
