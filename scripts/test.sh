#!/usr/bin/env bash
# The README's test command: installs the build dependencies (Debian packages), builds the release
# preset (with the CUDA backend when nvcc is present) and runs the whole CTest suite. GPU tests
# skip themselves without a device. Extra arguments go to ctest (e.g. -L golden, -R Tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
ctest --preset release -j"$(nproc)" "$@"
