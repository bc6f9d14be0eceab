#!/usr/bin/env bash
# Builds and runs one fuzz target with libFuzzer on the stable toolchain (docs/fuzzing.md).
#
#   fuzz/run.sh TARGET [RUNS] [extra libFuzzer flags...]
#
# TARGET: trace_reader scenario experiment mixtral_jsonl gguf store_index tokenizer (or `list`).
# RUNS: executions to make (default 1000000; 0 runs until stopped).
# The seed corpus is written fresh from the bundled files into fuzz/corpus/TARGET (kept between
# runs, so what a run finds seeds the next); crashes and hangs go to fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
targets="trace_reader scenario experiment mixtral_jsonl gguf store_index tokenizer"
target="${1:?usage: fuzz/run.sh TARGET [RUNS] [libFuzzer flags] (targets: $targets)}"
if [ "$target" = list ]; then echo "$targets"; exit 0; fi
case " $targets " in *" $target "*) ;; *) echo "unknown target $target (known: $targets)" >&2; exit 2;; esac
runs="${2:-1000000}"
shift $(( $# >= 2 ? 2 : 1 ))

# The flags cargo-fuzz passes, minus the nightly-only -Zsanitizer: SanitizerCoverage's
# 8-bit counters, PC table and comparison tracing feed libFuzzer's coverage guidance.
# Overflow checks and debug assertions stay on, so arithmetic bugs are found too.
# --target keeps these flags off build scripts and proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
cargo build --release --manifest-path fuzz/Cargo.toml --target "$host" --bin "$target"
unset RUSTFLAGS

seeds="fuzz/corpus/.seeds"
rm -rf "$seeds"
cargo run --quiet --example fuzz_corpus -- "$seeds"
mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
cp -n "$seeds/$target"/* "fuzz/corpus/$target/" 2>/dev/null || true

exec "fuzz/target/$host/release/$target" "fuzz/corpus/$target" \
    -runs="$runs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" "$@"
