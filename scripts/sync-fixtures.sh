#!/usr/bin/env bash
# Copy what is new or changed in the project's shared fixtures folder into the
# repository's copy (tests/fixtures), so the two never drift.
#
#   scripts/sync-fixtures.sh [SOURCE]      SOURCE defaults to ../shared/fixtures
#   scripts/sync-fixtures.sh --check [SOURCE]
#                                          only list the differences; exit 1 if any
#
# Model files (hf/, onnx/) are compared byte for byte; tests/fixtures/README.md is
# the repository's own (provenance and licence) and is never overwritten. Files
# that exist only in tests/fixtures are reported, not deleted: remove them by hand
# if the shared folder dropped them on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
case "${1:-}" in -h|--help) sed -n '2,13p' "$0"; exit 0 ;; esac
src=${1:-../shared/fixtures}
dst=tests/fixtures
if [ ! -d "$src" ]; then
  echo "sync-fixtures: no fixtures folder at '$src' (pass its path as the argument)" >&2
  exit 2
fi
differ=0
copied=0
while IFS= read -r -d '' f; do
  rel=${f#"$src"/}
  case "$rel" in README.md) continue ;; esac
  if [ -f "$dst/$rel" ] && cmp -s "$f" "$dst/$rel"; then continue; fi
  differ=$((differ + 1))
  if [ "$check" -eq 1 ]; then
    if [ -f "$dst/$rel" ]; then echo "differs: $rel"; else echo "missing: $rel"; fi
  else
    mkdir -p "$(dirname "$dst/$rel")"
    # temp file + rename: a reader never sees a half-copied fixture
    cp "$f" "$dst/$rel.sync-tmp" && chmod u+w "$dst/$rel.sync-tmp" && mv "$dst/$rel.sync-tmp" "$dst/$rel"
    echo "copied: $rel"; copied=$((copied + 1))
  fi
done < <(find "$src" -type f -print0 | sort -z)
while IFS= read -r -d '' f; do
  rel=${f#"$dst"/}
  case "$rel" in README.md) continue ;; esac
  [ -f "$src/$rel" ] || echo "only in $dst: $rel (not in $src)"
done < <(find "$dst" -type f -print0 | sort -z)
if [ "$check" -eq 1 ]; then
  [ "$differ" -eq 0 ] && echo "sync-fixtures: $dst matches $src" && exit 0
  echo "sync-fixtures: $differ file(s) differ; run scripts/sync-fixtures.sh to copy them" >&2
  exit 1
fi
echo "sync-fixtures: $copied file(s) copied from $src"
