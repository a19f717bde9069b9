#!/usr/bin/env bash
# The WebGPU backend on a machine with an NVIDIA GPU and nothing but this repository (Node 20 and
# npm, Debian or Ubuntu, root): installs what it needs, runs the WebGPU test suite (the conformance
# kit among it) with RESIDUAL_REQUIRE_WEBGPU=1, then the benchmarks of bench/webgpu, and writes
# every figure as a JSON line to the results file. Each phase has a time limit, so that the whole
# stays under 8 minutes even where a phase hangs.
#
#   bash bench/gpu.sh [results.jsonl]        (default: runs/gpu-<UTC time>.jsonl)
#
# SKIP_INSTALL=1 skips installing and building, for a machine where that is done already.
#
# It runs on the NVIDIA driver's Vulkan ICD only (found where the driver or the container runtime
# puts it). To run it on another Vulkan driver, name that driver's ICD file in VK_ICD_FILENAMES
# (e.g. lavapipe's, to try this script on a machine without a GPU); a software adapter then gets
# shorter benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-runs/gpu-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
mkdir -p "$(dirname "$results")"
: >"$results"
start=$SECONDS
say() { echo "gpu.sh [$((SECONDS - start))s] $*" >&2; }
record() { echo "$1" | tee -a "$results"; }
# Runs a phase under a time limit, its output to the results file too (`results`) or to stderr only
# (`log`), and records its outcome; a failed phase does not stop the others.
failures=0
phase() {
  local name=$1 limit=$2 output=$3
  shift 3
  say "$name (limit ${limit}s)"
  local t=$SECONDS rc=0
  if [[ $output == results ]]; then
    timeout "$limit" "$@" > >(tee -a "$results") || rc=$?
  else
    timeout "$limit" "$@" >&2 || rc=$?
  fi
  record "{\"bench\":\"gpu.sh phase\",\"phase\":\"$name\",\"exit\":$rc,\"seconds\":$((SECONDS - t))}"
  if [[ $rc -ne 0 ]]; then
    failures=$((failures + 1))
    say "$name failed (exit $rc$([[ $rc -eq 124 ]] && echo ', timed out'))"
  fi
}

# 1. The Vulkan loader, and the NVIDIA driver's ICD (Dawn reaches the GPU through Vulkan).
if [[ -z ${SKIP_INSTALL:-} ]] && ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  say 'installing the Vulkan loader (libvulkan1)'
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 >/dev/null
fi
if [[ -z ${VK_ICD_FILENAMES:-} && -z ${VK_DRIVER_FILES:-} ]]; then
  icd=$(find /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/nvidia /usr/local/share/vulkan -name 'nvidia_icd*.json' 2>/dev/null | head -n 1 || true)
  if [[ -z $icd ]]; then
    say "no NVIDIA Vulkan ICD (nvidia_icd.json) found: the driver's Vulkan part is missing. In a container, run it with NVIDIA_DRIVER_CAPABILITIES=all (or 'graphics,compute,utility')."
    exit 1
  fi
  # Only this driver: a software Vulkan driver installed beside it can never be the one measured.
  export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
  say "Vulkan driver: $icd"
fi
if command -v nvidia-smi >/dev/null; then
  record "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1 |
    awk -F', ' '{printf "{\"bench\":\"gpu.sh gpu\",\"gpu\":\"%s\",\"driver\":\"%s\",\"memory\":\"%s\"}", $1, $2, $3}')"
fi

# 2. The workspace: pnpm, the locked dependencies, and the packages the tests and benchmarks use.
export TURBO_TELEMETRY_DISABLED=1
if [[ -z ${SKIP_INSTALL:-} ]]; then
  if [[ $(pnpm --version 2>/dev/null) != 12.4.2 ]]; then
    say 'installing pnpm 12.4.2'
    npm i -g pnpm@12.4.2 >/dev/null
  fi
  say 'pnpm install'
  pnpm install --frozen-lockfile --reporter=silent
  say 'building the packages the benchmarks use'
  pnpm exec turbo run build --filter=@residual/bench... --output-logs=errors-only
fi

# 3. Which adapter Dawn gives: a GPU, unless a software driver was asked for by name.
probe="const { createWebGpuBackend } = await import('@residual/backend-webgpu');
  const b = await createWebGpuBackend();
  console.log(JSON.stringify({ bench: 'gpu.sh adapter', device: b.device, gemmKernel: b.gemmKernel }));
  b.dispose();"
if ! adapter=$(cd bench && node --input-type=module -e "$probe" 2>/dev/null); then
  say 'no WebGPU adapter:'
  (cd bench && node --input-type=module -e "$probe") || true
  exit 1
fi
record "$adapter"
software=false
# A CPU adapter (lavapipe, SwiftShader) is the one the subgroup-strips GEMM is chosen for.
if [[ $adapter == *'"gemmKernel":"subgroup-strips"'* ]]; then
  software=true
  if [[ -z ${VK_ICD_FILENAMES:-} || ${VK_ICD_FILENAMES} == *nvidia* ]]; then
    say 'Dawn found only a software adapter, not the GPU; check the NVIDIA driver (vulkaninfo --summary)'
    exit 1
  fi
  say 'software adapter (asked for by VK_ICD_FILENAMES): shorter benchmarks'
fi

# 4. The WebGPU test suite, which must find the adapter (no skips). A CPU driver builds each
# pipeline slowly (about 3 minutes for the suite before its shader cache is warm).
report=$(mktemp)
phase 'webgpu tests' "$($software && echo 300 || echo 150)" log env RESIDUAL_REQUIRE_WEBGPU=1 pnpm --dir packages/backend-webgpu exec vitest run --reporter=dot --reporter=json --outputFile.json="$report"
[[ -s $report ]] && record "$(node -e "
  const r = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'));
  console.log(JSON.stringify({ bench: 'webgpu tests', passed: r.numPassedTests, failed: r.numFailedTests, skipped: r.numPendingTests, total: r.numTotalTests }));
" "$report")"
rm -f "$report"

# 5. The benchmarks, with the CPU backend as the peer where it runs in reasonable time.
if $software; then
  phase 'webgpu benchmarks' 200 results node bench/webgpu/run.mjs --samples=3 --r50-batch=1 --step-batch=16
  phase 'webgpu memory' 90 results node bench/webgpu/memory.mjs --steps=1000 --every=250
else
  phase 'webgpu benchmarks' 150 results node bench/webgpu/run.mjs --peer --r50-batch=32
  phase 'webgpu memory' 45 results node bench/webgpu/memory.mjs --model=resnet20 --steps=1000
fi

say "done in $((SECONDS - start))s; $failures phase(s) failed; results in $results"
exit $((failures > 0))
