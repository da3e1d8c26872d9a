#!/usr/bin/env bash
# The .deb carries a working gateway: builds the package with cpack, unpacks it
# with dpkg-deb -x into a temporary folder, starts that binary from another
# working directory (no web/ there), and loads /home/index and the JavaScript
# client from it. The unit's Documentation= must name files the package holds.
#   tests/install/package_test.sh <build dir>
set -euo pipefail
build=$(realpath "$1")
work=$(mktemp -d "${TMPDIR:-/tmp}/imgate-package-XXXXXX")
pid=
cleanup() {
  local status=$?
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -f $work/imgate.log ]]; then cat "$work/imgate.log" >&2; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

(cd "$build" && cpack -G DEB -B "$work/pkg" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log" >&2; exit 1; }
deb=$(ls "$work"/pkg/*.deb)
echo "package: $(basename "$deb")"
dpkg-deb -I "$deb" | grep -E "Package|Version|Depends" || true
dpkg-deb -x "$deb" "$work/root"
for f in usr/bin/imgate etc/imgate/app.yaml lib/systemd/system/imgate.service; do
  [[ -e $work/root/$f ]] || { echo "missing in the package: $f" >&2; exit 1; }
done
# The unit's Documentation= names imgate's own docs, shipped in the package.
docs=$(sed -n 's/^Documentation=//p' "$work/root/lib/systemd/system/imgate.service")
[[ -n $docs ]] || { echo "the unit has no Documentation=" >&2; exit 1; }
for uri in $docs; do
  [[ $uri == file:/* ]] || { echo "Documentation= $uri is not a file of the package" >&2; exit 1; }
  [[ -f $work/root/${uri#file:/} ]] || { echo "Documentation= $uri is missing in the package" >&2; exit 1; }
done

mkdir "$work/elsewhere"
cd "$work/elsewhere"
"$work/root/usr/bin/imgate" --config "$work/root/etc/imgate/app.yaml" --bind 127.0.0.1 \
  --ws-port 0 --http-port 0 --ready-file "$work/ready.json" >"$work/imgate.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [[ -f $work/ready.json ]] && break; kill -0 "$pid" || exit 1; sleep 0.05; done
[[ -f $work/ready.json ]] || { echo "not ready" >&2; exit 1; }
http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$work/ready.json")
page=$(curl -fsS "http://127.0.0.1:$http/home/index?appID=101")
grep -q "imgate" <<<"$page" || { echo "no chat page: $page" >&2; exit 1; }
grep -q "chat.js" <<<"$page" || { echo "the page does not load its script" >&2; exit 1; }
client=$(curl -fsS "http://127.0.0.1:$http/web/imgate-client.js")
grep -q "export class ImgateClient" <<<"$client" || { echo "no JavaScript client" >&2; exit 1; }
if grep -q "no chat page" "$work/imgate.log"; then echo "the gateway logged no chat page" >&2; exit 1; fi
echo "package_test: the unpacked binary serves /home/index and /web/imgate-client.js from $(pwd)"
