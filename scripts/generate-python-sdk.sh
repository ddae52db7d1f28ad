#!/usr/bin/env bash
# Generates the Python SDK's message modules (*_pb2.py, with *_pb2.pyi type
# stubs) and gRPC stubs (*_pb2_grpc.py) from proto/drover, and the vendored
# buf/validate/validate.proto our protos import, into sdk/python/drover_sdk/gen,
# with Debian's protoc (3.21.12) and grpc_python_plugin (1.51.1): the same
# family as the runtime (python3-protobuf, python3-grpcio). Stubs from a newer
# grpcio-tools do not import on that runtime (sdk/python/README.md has the
# version pairing).
#
# Usage: scripts/generate-python-sdk.sh [OUT]   (OUT defaults to sdk/python/drover_sdk/gen)
#
# The generated code is committed and never edited by hand; running this again
# gives no diff (integration/sdk_python.test.ts checks it). The layout mirrors
# the proto paths, because the generated modules import each other by them
# (`from drover.common.v1 import exec_pb2`): OUT is the root that drover_sdk
# puts on sys.path. Every directory gets an empty __init__.py so the packages
# are regular ones. The google.protobuf well-known types are not generated:
# python3-protobuf ships them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/sdk/python/drover_sdk/gen}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# OUT is replaced wholesale below: refuse one that holds anything but
# generated code and Python's byte-code caches (a mistyped OUT such as
# sdk/python or the repository itself).
if [ -n "$(find "$out" -type f ! -name '*_pb2.py' ! -name '*_pb2.pyi' ! -name '*_pb2_grpc.py' \
  ! -name '__init__.py' ! -path '*/__pycache__/*' -print -quit)" ]; then
  echo "generate-python-sdk: $out holds files that are not generated code; refusing to replace it" >&2
  exit 1
fi

command -v protoc >/dev/null 2>&1 || {
  echo "generate-python-sdk: protoc not found; install Debian's protobuf-compiler" >&2
  exit 1
}
plugin=/usr/bin/grpc_python_plugin
[ -x "$plugin" ] || {
  echo "generate-python-sdk: $plugin not found; install Debian's protobuf-compiler-grpc" >&2
  exit 1
}
# The well-known types our protos and validate.proto import (descriptor,
# duration, field_mask, timestamp).
wkt=/usr/include
[ -f "$wkt/google/protobuf/descriptor.proto" ] || {
  echo "generate-python-sdk: $wkt/google/protobuf/descriptor.proto not found; install Debian's libprotobuf-dev" >&2
  exit 1
}

cd "$root"
# Sorted, so the protoc command line (and so its output) does not depend on
# the order the filesystem lists files in.
mapfile -t drover_protos < <(cd proto && find drover -name '*.proto' | LC_ALL=C sort)
protos=("${drover_protos[@]}" buf/validate/validate.proto)

# Generate into a scratch directory and swap it in only when protoc succeeded,
# so a failed run never leaves half an SDK behind; a module whose proto is gone
# disappears with the old tree.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
protoc -I proto -I proto-vendor -I "$wkt" \
  --python_out="$scratch" --pyi_out="$scratch" \
  --plugin=protoc-gen-grpc="$plugin" --grpc_out="$scratch" \
  "${protos[@]}"
find "$scratch" -mindepth 1 -type d -exec touch {}/__init__.py \;

rm -rf "$out"
mkdir -p "$out"
cp -R "$scratch"/. "$out"/
