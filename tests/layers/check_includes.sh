#!/bin/sh
# The source layers (docs/architecture.md, "Source layers"), lowest first. A file
# under src/<dir>/ may include "<other>/..." only from its own level or a lower
# one; directories on one line share a level. Prints every include that runs
# back up, and every src/ directory missing from the list, and fails.
# Usage: check_includes.sh <src dir>
set -eu
src=${1:?usage: check_includes.sh <src dir>}

levels='websocket
metrics
config security
registry
protocol
cluster
backend
http net
echo'

level_of() {
  echo "$levels" | awk -v d="$1" '{ for (i = 1; i <= NF; i++) if ($i == d) { print NR; exit } }'
}

status=0
for dir in "$src"/*/; do
  dir=$(basename "$dir")
  own=$(level_of "$dir")
  if [ -z "$own" ]; then
    echo "src/$dir/ is in no layer: add it to docs/architecture.md and $0"
    status=1
    continue
  fi
  # "file:line:#include "other/…"" for every quoted include of another directory.
  out=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[^"/]+/' "$src/$dir" || true)
  [ -n "$out" ] || continue
  while IFS= read -r hit; do
    target=$(echo "$hit" | sed -E 's/^[^:]*:[0-9]+:[[:space:]]*#[[:space:]]*include[[:space:]]+"([^"/]+)\/.*/\1/')
    theirs=$(level_of "$target")
    [ -n "$theirs" ] || continue  # not a layer (generated code, a relative path)
    if [ "$theirs" -gt "$own" ]; then
      echo "src/${hit#"$src"/}: $dir (level $own) includes $target (level $theirs)"
      status=1
    fi
  done <<EOF
$out
EOF
done
[ "$status" -eq 0 ] && echo "includes follow the layer order"
exit "$status"
