#!/usr/bin/env bash
# Creates the demo project (the python minimal preset) and runs it: lock, build, pack and boot
# happen on demand inside `ukernel run`.
set -euo pipefail
bin=$(realpath "$1"); dir=$2
mkdir -p "$dir"
if [ ! -f "$dir/ukernel.toml" ]; then
  "$bin" -C "$dir" init --name hello --lang python --template minimal
fi
exec "$bin" -C "$dir" run
