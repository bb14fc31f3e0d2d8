#!/usr/bin/env bash
# scripts/deps.sh — install what qvac needs to build, test and run.
#
# Debian/Ubuntu: installs the missing packages with apt (as root, or through
# sudo). Idempotent and quiet when everything is already there.
# macOS and Fedora: prints the equivalent command (nothing is run).
set -euo pipefail

DEB_PKGS=(
  build-essential pkg-config clang
  libzmq3-dev libmsgpack-dev libsodium-dev libsqlite3-dev
  ocl-icd-opencl-dev opencl-headers ocl-icd-libopencl1 pocl-opencl-icd clinfo
  libvulkan-dev mesa-vulkan-drivers glslc vulkan-tools
  libcriterion-dev libjansson-dev libxxhash-dev
  libclblast-dev
)

print_other() {
  cat <<'MSG'
qvac deps: this script installs packages on Debian/Ubuntu only.
  macOS (Homebrew):
    brew install pkg-config zeromq msgpack libsodium sqlite criterion jansson xxhash \
                 shaderc vulkan-loader vulkan-headers molten-vk clblast
    (OpenCL comes with macOS; install Xcode's command line tools for clang)
  Fedora:
    sudo dnf install gcc clang make pkgconf-pkg-config zeromq-devel msgpack-devel libsodium-devel \
                 sqlite-devel ocl-icd-devel opencl-headers pocl clinfo \
                 vulkan-loader-devel vulkan-headers mesa-vulkan-drivers glslc \
                 vulkan-tools criterion-devel jansson-devel xxhash-devel clblast-devel
MSG
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  print_other
  case "$(uname -s)" in
    Darwin) exit 0 ;;
    *) exit 1 ;;
  esac
fi

missing=()
for p in "${DEB_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "qvac deps: missing packages: ${missing[*]}" >&2
    echo "qvac deps: run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

echo "qvac deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "qvac deps: done"
