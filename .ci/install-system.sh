#!/usr/bin/env bash
# Installs the system packages the test suite needs and Debian does not ship by default:
# Mesa's software Vulkan driver (lavapipe) from bookworm-backports, for the WebGPU tests (Dawn needs a
# newer Mesa than Debian 12's own). Idempotent: does nothing when the driver is already there.
set -euo pipefail
# Open MPI for @residual/distributed (its binding builds at pnpm install; .ci/run requires it).
if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null; then
  S=""; [[ $(id -u) -ne 0 ]] && S=sudo
  $S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $S apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
  echo "install-system: Open MPI installed"
fi
ICD=/usr/share/vulkan/icd.d/lvp_icd.json
if [[ -f $ICD ]] && ldconfig -p | grep -q libvulkan.so.1; then
  echo "install-system: lavapipe already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-system: apt-get not found; install Mesa's Vulkan drivers (lavapipe) and libvulkan1 by hand" >&2
  exit 1
fi
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
src=/etc/apt/sources.list.d/debian.sources
backports=/etc/apt/sources.list.d/residual-backports.sources
if [[ $codename == bookworm && ! -f $backports ]]; then
  # Same mirror and key as the system's own Debian source, so nothing new is trusted.
  if [[ -f $src ]]; then
    uris=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$src")
    key=$(awk '/^Signed-By:/ {print $2; exit}' "$src")
  else
    uris=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
    key=/usr/share/keyrings/debian-archive-keyring.gpg
  fi
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' "$uris" "$key" | $SUDO tee $backports >/dev/null
fi
$SUDO apt-get update -qq
if [[ $codename == bookworm ]]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
else
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
echo "install-system: lavapipe installed ($ICD)"
