#!/usr/bin/env bash
# Installs the system packages the test suite needs and Debian does not ship by default:
# - oneDNN's headers (libdnnl-dev), for the CPU backend's native provider, built at `pnpm install`;
# - Open MPI (openmpi-bin, libopenmpi-dev), for @residual/distributed's binding, built at `pnpm install`;
# - the ONNX project's Python package (python3-onnx), whose checker the ONNX export tests run;
# - PyTorch and torchvision (python3-torchvision, which brings python3-torch), for the tests that read
#   checkpoints torch.save writes at test time (never a dependency of the packages);
# - Mesa's software Vulkan driver (lavapipe) from bookworm-backports, for the WebGPU tests (Dawn needs a
#   newer Mesa than Debian 12's own).
# Idempotent: installs only what is missing.
set -euo pipefail
if ! command -v apt-get >/dev/null; then
  echo "install-system: apt-get not found; install libdnnl-dev, openmpi-bin, libopenmpi-dev, python3-onnx, python3-torchvision, Mesa's Vulkan drivers (lavapipe) and libvulkan1 by hand" >&2
  exit 1
fi
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
updated=""
update() { [[ -n $updated ]] || { $SUDO apt-get update -qq; updated=1; }; }

# Debian's own packages: installed when their marker file is missing.
for pkg_file in libdnnl-dev:/usr/include/oneapi/dnnl/dnnl.hpp openmpi-bin:/usr/bin/mpirun libopenmpi-dev:/usr/bin/mpicc \
  python3-onnx:/usr/lib/python3/dist-packages/onnx/__init__.py \
  python3-torchvision:/usr/lib/python3/dist-packages/torchvision/__init__.py; do
  pkg=${pkg_file%%:*}; file=${pkg_file#*:}
  if [[ ! -e $file ]]; then
    update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$pkg" >/dev/null
    echo "install-system: $pkg installed"
  fi
done

ICD=/usr/share/vulkan/icd.d/lvp_icd.json
if [[ -f $ICD ]] && ldconfig -p | grep libvulkan.so.1 >/dev/null; then
  echo "install-system: lavapipe already installed"
  exit 0
fi
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
updated=""
update
if [[ $codename == bookworm ]]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
else
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
echo "install-system: lavapipe installed ($ICD)"
