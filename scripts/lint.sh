#!/usr/bin/env bash
# gofmt check, go vet, and staticcheck when it can be installed.
set -euo pipefail
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change these files (run 'gofmt -w' on them):" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
staticcheck=$(go env GOPATH)/bin/staticcheck
if [ ! -x "$staticcheck" ]; then
  go install honnef.co/go/tools/cmd/staticcheck@latest >/dev/null 2>&1 || true
fi
if [ -x "$staticcheck" ]; then
  "$staticcheck" ./...
else
  echo "lint: staticcheck could not be installed; skipped it (gofmt and go vet passed)" >&2
fi
echo "lint: ok"
