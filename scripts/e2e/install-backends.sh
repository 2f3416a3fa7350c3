#!/usr/bin/env bash
# Installs the real servers the end-to-end suite runs on loopback, idempotently:
#   Prometheus + promtool + Alertmanager, and podman + runc + ca-certificates for the container image
#   (make image, e2e/image_test.go), from Debian; Loki and Jaeger v2 built from their Go modules
#   (their go.mod has replace directives, so `go install pkg@version` refuses them) and cached in
#   $IMCOL_E2E_CACHE (default ~/.cache/imcol-e2e/bin), outside the repository. A warm run does nothing.
set -euo pipefail

LOKI_MODULE=github.com/grafana/loki/v3@v3.7.8
JAEGER_MODULE=github.com/jaegertracing/jaeger@v1.76.0
BIN_DIR=${IMCOL_E2E_CACHE:-$HOME/.cache/imcol-e2e}/bin
mkdir -p "$BIN_DIR"

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

install_debian() {
  local missing=()
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
  # podman's own settings for this machine come from scripts/image/containers.conf (CONTAINERS_CONF):
  # nothing under /etc/containers is written.
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  [ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} from Debian"
  # Keep apt from starting the packaged services on their default ports: tests start their own.
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' RETURN
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
}

# build_module NAME MODULE@VERSION PACKAGE [PREPARE...]: builds PACKAGE of the module into $BIN_DIR/NAME.
build_module() {
  local name=$1 module=$2 pkg=$3; shift 3
  local stamp="$BIN_DIR/$name.version"
  if [ -x "$BIN_DIR/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$module" ]; then return 0; fi
  echo "building $name from $module (several minutes, once)"
  local dir src work
  dir=$(GOFLAGS= go mod download -json "$module" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "cannot download $module" >&2; return 1; }
  work=$(mktemp -d)
  src="$work/src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  (cd "$src" && "$@" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$BIN_DIR/$name.tmp" "$pkg")
  mv "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
  echo "$module" > "$stamp"
  rm -rf "$work"
}

install_debian
# Loki's nested push module is not in its zip; the published one at the same version works.
build_module loki "$LOKI_MODULE" ./cmd/loki go mod edit -dropreplace github.com/grafana/loki/pkg/push
build_module jaeger "$JAEGER_MODULE" ./cmd/jaeger true
echo "backends ready in $BIN_DIR"
