#!/usr/bin/env bash
# Build the example against the OpenVINO of the `openvino` Python wheel (its headers and CMake config).
#   examples/cpp/build.sh [BUILD_DIR]      (default examples/cpp/build; the binary is BUILD_DIR/classify)
# PYTHON picks the interpreter whose openvino is used (default: the repository's .venv, else python3);
# OpenVINO_DIR, when set, is used instead (e.g. an OpenVINO archive's runtime/cmake).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/build}"
if [[ -z "${OpenVINO_DIR:-}" ]]; then
  python="${PYTHON:-}"
  if [[ -z "$python" ]]; then
    if [[ -x "$here/../../.venv/bin/python" ]]; then python="$here/../../.venv/bin/python"; else python=python3; fi
  fi
  OpenVINO_DIR="$("$python" -c 'import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), "cmake"))' 2>/dev/null)" || {
    echo "error: $python has no openvino package (pip install openvino, or PYTHON=/path/to/python with it, or OpenVINO_DIR=...)" >&2
    exit 2
  }
fi
[[ -f "$OpenVINO_DIR/OpenVINOConfig.cmake" ]] || { echo "error: no OpenVINOConfig.cmake in $OpenVINO_DIR" >&2; exit 2; }
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$here" -B "$build" "${generator[@]}" -DOpenVINO_DIR="$OpenVINO_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --parallel "${JOBS:-2}"
echo "$build/classify"
