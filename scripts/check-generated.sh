#!/usr/bin/env bash
# Fails when the committed generated code (ocb's cmd/imcol, mdatagen's internal/metadata and
# documentation) is not what `make generate` writes today. It regenerates in place, so after a
# failure the working tree holds the fresh output, ready to commit.
set -euo pipefail
cd "$(dirname "$0")/.."

generated() {
  { ls cmd/imcol/*.go | grep -v '_test.go$'
    ls configs/prometheus/slo-rules.yaml 2>/dev/null || true
    find processors connectors \( -path '*/internal/metadata/generated_*' -o -name 'generated_*_test.go' \
      -o -name documentation.md \) 2>/dev/null || true
  } | sort -u
}

snapshot() { generated | xargs -r sha256sum; }

before=$(snapshot)
make --no-print-directory generate >/dev/null
after=$(snapshot)
if [ "$before" != "$after" ]; then
  echo "Generated code is stale; 'make generate' changed:"
  diff <(echo "$before") <(echo "$after") | grep '^[<>]' | awk '{print "  " $3}' | sort -u
  exit 1
fi
echo "generated code is up to date"
