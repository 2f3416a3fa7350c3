#!/usr/bin/env bash
# Builds the imcol container image from the already-built static binaries, with no Docker daemon:
#   scripts/image/build.sh context          stage .build/image/ (CA bundle, state folder) only
#   scripts/image/build.sh IMAGE [TAG...]   stage, then `podman build` with every tag given
# Run it through `make image`, which builds bin/imcol and bin/imcol-healthcheck first.
set -euo pipefail
cd "$(dirname "$0")/../.."

CA_BUNDLE=${IMCOL_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
STAGE=.build/image

stage() {
  for bin in bin/imcol bin/imcol-healthcheck; do
    [ -x "$bin" ] || { echo "$bin is missing: run make image (it builds it)" >&2; exit 1; }
    # A scratch image has no libc: a dynamically linked binary would not start.
    if ! go version -m "$bin" | grep -q 'CGO_ENABLED=0'; then
      echo "$bin was built with cgo; rebuild it with CGO_ENABLED=0 (the Makefile does)" >&2
      exit 1
    fi
  done
  [ -s "$CA_BUNDLE" ] || { echo "no CA bundle at $CA_BUNDLE: install Debian's ca-certificates (make deps)" >&2; exit 1; }
  rm -rf "$STAGE"
  mkdir -p "$STAGE/state"
  cp "$CA_BUNDLE" "$STAGE/ca-certificates.crt"
}

stage
[ "${1:-}" = context ] && exit 0
[ $# -ge 1 ] || { echo "usage: $0 context | IMAGE [TAG...]" >&2; exit 1; }

export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/scripts/image/containers.conf}
image=$1; shift
tags=(-t "$image:latest")
for tag in "$@"; do tags+=(-t "$image:$tag"); done
# docker format: the OCI format has no HEALTHCHECK.
podman build --quiet --format docker --file Dockerfile "${tags[@]}" . >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image:latest")
echo "built $image:latest${*:+ (also tagged $*)}: $((size / 1024 / 1024)) MiB"
