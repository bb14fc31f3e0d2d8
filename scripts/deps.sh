#!/usr/bin/env bash
# scripts/deps.sh — install what qvac needs to build, test and run, then
# check that the build will find it.
#
# The Makefile runs this before it reads any compiler or linker flag (see
# the top of the Makefile), so a fresh machine builds in one `make`.
#
# Debian/Ubuntu: installs the missing packages with apt (as root, or through
# sudo). Elsewhere nothing is installed. On every system it then checks that
# pkg-config finds each library the build links (QV_PKGS, set by the
# Makefile; all of them by default) and that the tools are on PATH; what is
# missing stops the build here, before anything is compiled, with one
# message that names the package and the command that installs it.
# Idempotent, quiet and quick (one dpkg-query, one pkg-config per library)
# when everything is there.
set -euo pipefail

DEB_PKGS=(
  build-essential pkg-config clang
  libzmq3-dev libmsgpack-dev libsodium-dev libsqlite3-dev
  ocl-icd-opencl-dev opencl-headers ocl-icd-libopencl1 pocl-opencl-icd clinfo
  libvulkan-dev mesa-vulkan-drivers glslc vulkan-tools
  libcriterion-dev libjansson-dev libxxhash-dev libpcre2-dev
  libclblast-dev libmicrohttpd-dev curl
)

# What the build needs, checked on every system:
#   kind:name  debian-package  homebrew-formula  fedora-package
REQS=(
  "cmd:cc          build-essential    -                    gcc"
  "cmd:pkg-config  pkg-config         pkg-config           pkgconf-pkg-config"
  "cmd:glslc       glslc              shaderc              glslc"
  "pc:OpenCL       ocl-icd-opencl-dev opencl-icd-loader    ocl-icd-devel"
  "pc:vulkan       libvulkan-dev      vulkan-loader        vulkan-loader-devel"
  "pc:jansson      libjansson-dev     jansson              jansson-devel"
  "pc:libxxhash    libxxhash-dev      xxhash               xxhash-devel"
  "pc:sqlite3      libsqlite3-dev     sqlite               sqlite-devel"
  "pc:libzmq       libzmq3-dev        zeromq               zeromq-devel"
  "pc:msgpack      libmsgpack-dev     msgpack              msgpack-devel"
  "pc:libsodium    libsodium-dev      libsodium            libsodium-devel"
  "pc:libpcre2-8   libpcre2-dev       pcre2                pcre2-devel"
  "pc:criterion    libcriterion-dev   criterion            criterion-devel"
  "pc:libmicrohttpd libmicrohttpd-dev libmicrohttpd        libmicrohttpd-devel"
)
QV_PKGS=${QV_PKGS:-OpenCL vulkan jansson libxxhash sqlite3 libzmq msgpack libsodium libpcre2-8 libmicrohttpd}

say() { printf 'qvac deps: %s\n' "$*" >&2; }

# ---- Debian/Ubuntu: install what is missing --------------------------------
if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${DEB_PKGS[@]}" 2>/dev/null |
              awk '$NF == "installed" && $(NF-1) == "ok" { print $1 }' || true)
  missing=()
  for p in "${DEB_PKGS[@]}"; do
    grep -qx -- "$p" <<<"$installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        say "missing ${missing[*]}; install them as root and run make again: apt-get install -y ${missing[*]}"
        exit 1
      fi
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp)
    if ! { $SUDO apt-get update -qq &&
           $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
      tail -n 15 "$log" >&2; rm -f "$log"
      say "could not install ${missing[*]}; run as root and then make again: apt-get update && apt-get install -y ${missing[*]}"
      exit 1
    fi
    rm -f "$log"
    say "done"
  fi
  OS=debian
else
  case "$(uname -s)" in
    Darwin) OS=macos ;;
    *) if command -v dnf >/dev/null 2>&1; then OS=fedora; else OS=other; fi ;;
  esac
fi

# ---- every system: will the build find it? ---------------------------------
need=()
for r in "${REQS[@]}"; do
  read -r what deb brew dnf <<<"$r"
  kind=${what%%:*} name=${what#*:}
  case $kind in
    cmd) command -v "$name" >/dev/null 2>&1 && continue ;;
    pc)  case " $QV_PKGS criterion " in *" $name "*) ;; *) continue ;; esac
         command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$name" && continue ;;
  esac
  case $OS in
    debian) need+=("$name=$deb") ;;
    macos)  need+=("$name=$brew") ;;
    fedora) need+=("$name=$dnf") ;;
    *)      need+=("$name=$deb") ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0

names=() pkgs=()
for n in "${need[@]}"; do names+=("${n%%=*}"); [ "${n#*=}" != "-" ] && pkgs+=("${n#*=}"); done
case $OS in
  debian) cmd="apt-get install -y ${pkgs[*]}" ;;
  macos)  cmd="brew install ${pkgs[*]} (cc: xcode-select --install; or build without a backend: make WITH_OPENCL=0 / WITH_VULKAN=0)" ;;
  fedora) cmd="sudo dnf install ${pkgs[*]}" ;;
  *)      cmd="install the equivalent of Debian's ${pkgs[*]} (pkg-config must find ${names[*]})" ;;
esac
say "the build needs ${names[*]}, which this machine lacks; install it and run make again: $cmd"
exit 1
