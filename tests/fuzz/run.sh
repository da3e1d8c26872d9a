#!/usr/bin/env bash
# Builds the frame-parser fuzz target with clang++-14 (libFuzzer + ASan +
# UBSan) from the parser sources only, and runs it for a bounded time from the
# checked-in seed corpus. Exits non-zero on a crash, a sanitizer report or a
# mismatch with the reference decoder (the input is saved in OUT/artifacts/).
#
#   tests/fuzz/run.sh [SOURCE_DIR [OUT_DIR]]
#
# SOURCE_DIR: the repository (default: this script's); OUT_DIR: where the
# binary and artifacts go (default: SOURCE_DIR/build/fuzz).
# Environment: IMGATE_FUZZ_SECONDS (default 60), IMGATE_FUZZ_TLS_SECONDS (the TLS 1.3
# record layer's target, default 20), IMGATE_FUZZ_CXX (default
# clang++-14), IMGATE_FUZZ_PARSER_SRC (directory holding websocket/*.cpp and
# .hpp, default SOURCE_DIR/src: point it at a modified copy to check that the
# fuzzer catches a planted bug).
# Reproduce a saved input: OUT_DIR/frame_parser_fuzz OUT_DIR/artifacts/crash-...
set -euo pipefail

src=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
out=${2:-$src/build/fuzz}
seconds=${IMGATE_FUZZ_SECONDS:-60}
cxx=${IMGATE_FUZZ_CXX:-clang++-14}
parser=${IMGATE_FUZZ_PARSER_SRC:-$src/src}

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz: $cxx not found (scripts/bootstrap --test installs clang-14, libclang-rt-14-dev and libfuzzer-14-dev)" >&2
  exit 1
fi

mkdir -p "$out/artifacts"
# build BINARY SOURCES-AND-FLAGS...: one libFuzzer target with the sanitizers.
build() {
  local bin=$1
  shift
  echo "fuzz: building $bin"
  "$cxx" -std=c++20 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Wall -Wextra -Wno-missing-field-initializers -Werror "$@" -o "$bin"
}
bin=$out/frame_parser_fuzz
echo "fuzz: frame parser sources from $parser"
build "$bin" -I"$parser" -I"$src/tests/fuzz" \
  "$parser/websocket/frame_parser.cpp" "$parser/websocket/utf8.cpp" "$parser/websocket/frame.cpp" \
  "$src/tests/fuzz/frame_parser_fuzz.cpp"
# The TLS 1.3 record layer (net/tls13_records.cpp): OpenSSL does its crypto.
tls_bin=$out/tls13_records_fuzz
build "$tls_bin" -I"$src/src" "$src/src/net/tls13_records.cpp" "$src/tests/fuzz/tls13_records_fuzz.cpp" \
  -lssl -lcrypto

# Work on a copy of the seeds: inputs the fuzzer finds stay out of the repository.
work=$(mktemp -d "${TMPDIR:-/tmp}/imgate-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/tls-corpus"
cp "$src/tests/fuzz/corpus/frame_parser/"* "$work/corpus/"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# run WHAT BINARY SECONDS MAX_LEN CORPUS ARTIFACT_PREFIX: fuzzes; exits on a failure.
run() {
  local what=$1 bin=$2 secs=$3 max_len=$4 corpus=$5 prefix=$6 status=0
  echo "fuzz: $what for ${secs}s from $(ls "$corpus" | wc -l) seeds"
  "$bin" -max_total_time="$secs" -max_len="$max_len" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$prefix" "$corpus" || status=$?
  if ((status != 0)); then
    echo "fuzz: $what FAILED (exit $status); inputs saved in $out/artifacts/; reproduce with: $bin <file>" >&2
    exit "$status"
  fi
}
tls_seconds=${IMGATE_FUZZ_TLS_SECONDS:-20}
run "frame parser" "$bin" "$seconds" 4096 "$work/corpus" "$out/artifacts/"
run "TLS record layer" "$tls_bin" "$tls_seconds" 8192 "$work/tls-corpus" "$out/artifacts/tls-"
echo "fuzz: passed (${seconds}s + ${tls_seconds}s, no crash, no mismatch)"
