#!/usr/bin/env bash
# Installs the Debian packages ukernel and its tests need, only those missing.
# ukernel itself needs: qemu-system-x86 (run), erofs-utils (pack), Go (guest init build).
# The tests also use the reference tools: gdisk, cpio, squashfs-tools, diffoscope, curl, ...
set -euo pipefail
pkgs=(qemu-system-x86 erofs-utils gdisk cpio lz4 busybox-static e2fsprogs curl ca-certificates
      dosfstools mtools squashfs-tools python3 postgresql-client librsvg2-bin cryptsetup-bin)
if [ "${1:-}" = "--tests" ]; then
  pkgs+=(diffoscope-minimal docker-registry skopeo minisign openssh-server openssh-client systemd)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "deps: installing ${missing[*]}" >&2
  log=$(mktemp)
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "deps: apt-get failed (above)" >&2
    exit 1
  fi
  rm -f "$log"
fi
command -v go >/dev/null || { echo "deps: Go 1.26 or newer is required (https://go.dev/doc/install)" >&2; exit 1; }
