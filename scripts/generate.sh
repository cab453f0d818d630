#!/usr/bin/env bash
# Regenerates everything under gen/ from proto/.
#
# The Buf Schema Registry is out of reach, so the third-party files the proto
# imports are gathered into the git-ignored .cache/proto: google/api's HTTP
# annotations and google/rpc's Status and error details from the npm package
# google-proto-files, pinned by version and checksum, and the OpenAPI options
# from the grpc-gateway Go module. buf and
# the protoc plugins are Go tools pinned in go.mod, so nothing needs
# installing by hand.
#
# With --deps-only it only gathers those third-party files, which is what
# `go tool buf lint` and `buf build` need on a fresh clone (buf.yaml names
# .cache/proto as a module), and generates nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

deps_only=0
case "${1:-}" in
  "") ;;
  --deps-only) deps_only=1 ;;
  *) echo "usage: $0 [--deps-only]" >&2; exit 2 ;;
esac

proto_files_version=6.0.1
proto_files_sha256=711763f77ea15bbc7436aac53db013b421d2c7b86ae27f4013723970ce54a96e

third_party=.cache/proto
google_files=(google/api/annotations.proto google/api/http.proto google/rpc/status.proto google/rpc/error_details.proto)
missing=0
for f in "${google_files[@]}"; do [ -f "$third_party/$f" ] || missing=1; done
if [ "$missing" = 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  npm pack --silent "google-proto-files@$proto_files_version" --pack-destination "$tmp" >/dev/null
  tarball="$tmp/google-proto-files-$proto_files_version.tgz"
  echo "$proto_files_sha256  $tarball" | sha256sum --check --quiet
  tar -xzf "$tarball" -C "$tmp" "${google_files[@]/#/package/}"
  for f in "${google_files[@]}"; do
    mkdir -p "$third_party/$(dirname "$f")"
    cp "$tmp/package/$f" "$third_party/$f"
  done
fi

# The OpenAPI options come with the grpc-gateway Go module, pinned in go.mod.
gateway_dir=$(go list -m -f '{{.Dir}}' github.com/grpc-ecosystem/grpc-gateway/v2)
mkdir -p "$third_party/protoc-gen-openapiv2/options"
cp "$gateway_dir"/protoc-gen-openapiv2/options/{annotations,openapiv2}.proto "$third_party/protoc-gen-openapiv2/options/"
chmod u+w "$third_party"/protoc-gen-openapiv2/options/*.proto
[ "$deps_only" = 1 ] && exit 0

# protoc-gen-es, for gen/ts, comes from npm, pinned by its lock file.
if [ ! -x scripts/protoc-gen-es/node_modules/.bin/protoc-gen-es ]; then
  npm ci --silent --no-audit --no-fund --prefix scripts/protoc-gen-es
fi

# Build buf and the protoc plugins (Go tools pinned in go.mod) before
# anything is generated: on a first run that takes minutes, and gen/ stays
# as it is meanwhile, so the tree keeps compiling.
go build tool

# Generate into a temporary tree and put it in place at the end: a failure
# half way leaves gen/ as it was, never half generated.
out=$(mktemp -d)
trap 'rm -rf "$out" ${tmp:+"$tmp"}' EXIT
go tool buf generate -o "$out"
# The List operation as it is served (NDJSON and SSE), not as a bare stream.
go run ./scripts/openapi-list "$out/gen/openapiv2/cbkgate.swagger.json"
# The descriptor set holds the API with all its imports, and google/rpc's
# Status and error details besides: the API never imports them, yet every
# error carries them, and a client holding only this file must decode them.
go tool buf build . --path proto/cbkgate --path "$third_party/google/rpc/status.proto" \
  --path "$third_party/google/rpc/error_details.proto" -o "$out/gen/cbkgate.binpb"
# gen/ts is generated from that descriptor set (buf.gen.ts.yaml's input is
# the committed one; here it is the new one).
go tool buf generate "$out/gen/cbkgate.binpb" --template buf.gen.ts.yaml -o "$out"

# Only the generated files are swapped: hand-written ones in gen/ (the
# OpenAPI embed) stay.
rm -rf gen/cbkgate gen/cbkgate.binpb gen/openapiv2/*.json gen/ts
mkdir -p gen/openapiv2
mv "$out/gen/cbkgate" "$out/gen/cbkgate.binpb" "$out/gen/ts" gen/
mv "$out"/gen/openapiv2/*.json gen/openapiv2/
