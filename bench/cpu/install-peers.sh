#!/usr/bin/env bash
# Installs the JS peers of bench/cpu/run.mjs, which the ONNX export tests (apps/cli) also load, into
# bench/cpu/.peers (ignored by git), outside the workspace and its lockfile: CI installs the workspace
# frozen and must not fetch them there.
#
#   bash bench/cpu/install-peers.sh
#
# onnxruntime-node's npm package already ships its CPU binaries; its install script would only fetch
# the GPU ones, so ONNXRUNTIME_NODE_INSTALL=skip keeps it from downloading anything more.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/.peers"
mkdir -p "$dir"
ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "$dir" --no-audit --no-fund --save-exact onnxruntime-node@1.30.0
