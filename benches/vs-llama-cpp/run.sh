#!/usr/bin/env bash
# edgesim beside llama.cpp on this machine: builds llama.cpp from a pinned PyPI sdist, requantizes
# the SmolLM2 GGUF, then times both side by side in interleaved rounds (A/B/A/B). Documented in
# docs/kernels.md ("Side by side with llama.cpp"); not run by CI (it takes tens of minutes).
#
#   benches/vs-llama-cpp/run.sh all        # build, quantize, model, gemv, perplexity
#   benches/vs-llama-cpp/run.sh build      # download the sdist, build native + AVX2-only
#   benches/vs-llama-cpp/run.sh build-edgesim  # rebuild only edgesim's two benches
#   benches/vs-llama-cpp/run.sh quantize   # Q8_0, Q4_K_M, Q3_K_S, Q2_K from the Q4_1 file
#   benches/vs-llama-cpp/run.sh model      # llama-bench vs edgesim's llm_model, ROUNDS rounds
#   benches/vs-llama-cpp/run.sh gemv       # the ggml GEMV harness vs edgesim's kernels_table
#   benches/vs-llama-cpp/run.sh perplexity # llama-perplexity on each file (quality table)
#
# Prerequisites: the README's two (a Rust toolchain; Python 3 with pip and access to PyPI),
# plus cmake and a C/C++ compiler (`apt-get install cmake g++`). The SmolLM2 GGUF must be in
# edgesim's cache (`edgesim model fetch smollm2`). Everything is written under
# target/vs-llama-cpp/; nothing of llama.cpp enters the repository.
#
# Environment: ROUNDS (default 4), THREADS (default "1 2"), QUIET (a command prefix that runs a
# timing round alone, e.g. /work/bin/quiet; default none), HEAVY (prefix for builds; default none),
# JOBS (build jobs, default 2).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/target/vs-llama-cpp"
mkdir -p "$out"

# The pin: llama-cpp-python 0.3.36 vendors llama.cpp's source in vendor/llama.cpp. The SHA-256 is
# the one PyPI lists for the sdist; a different download is refused.
LLAMA_CPP_PYTHON=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
src="$out/llama_cpp_python-$LLAMA_CPP_PYTHON/vendor/llama.cpp"

ROUNDS="${ROUNDS:-4}"
THREADS="${THREADS:-1 2}"
QUIET="${QUIET:-}"
HEAVY="${HEAVY:-}"
JOBS="${JOBS:-2}"
BUILDS="native avx2"

log() { echo "[vs-llama-cpp] $*" >&2; }
die() { echo "[vs-llama-cpp] error: $*" >&2; exit 2; }
load() { cut -d' ' -f1 /proc/loadavg; }

model_dir() {
    for d in "${EDGESIM_CACHE:-}" "${XDG_CACHE_HOME:+$XDG_CACHE_HOME/edgesim/models}" \
        "$HOME/.cache/edgesim/models"; do
        if [ -n "$d" ] && [ -f "$d/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
            echo "$d"
            return
        fi
    done
    die "SmolLM2-135M-Instruct.Q4_1.gguf is not in edgesim's cache: run 'edgesim model fetch smollm2'"
}

fetch() {
    local tarball="$out/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz"
    if [ ! -f "$tarball" ]; then
        command -v python3 >/dev/null || die "python3 is needed to download the sdist"
        log "downloading llama-cpp-python==$LLAMA_CPP_PYTHON (sdist) from PyPI"
        # --no-binary for this package only: its build backend's own dependencies come as
        # wheels (building them from source too takes many minutes and is not what we test).
        python3 -m pip download "llama-cpp-python==$LLAMA_CPP_PYTHON" \
            --no-binary llama-cpp-python --no-deps -d "$out" >&2
    fi
    echo "$SDIST_SHA256  $tarball" | sha256sum -c --quiet - ||
        die "$tarball does not have the pinned SHA-256 $SDIST_SHA256"
    if [ ! -f "$src/CMakeLists.txt" ]; then
        tar xzf "$tarball" -C "$out"
    fi
}

# build NAME: configure and build llama.cpp's CPU backend in $out/build-NAME.
#   native: -march=native (GGML_NATIVE), i.e. every ISA extension this CPU has;
#   avx2:   AVX2 + FMA + F16C + BMI2 only, no AVX-512 (what a build for older x86 gets).
build_one() {
    local name="$1" dir="$out/build-$1" flags
    command -v cmake >/dev/null || die "cmake is needed: apt-get install cmake"
    case "$name" in
        native) flags="-DGGML_NATIVE=ON" ;;
        avx2) flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
            -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
            -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF" ;;
        *) die "unknown build $name" ;;
    esac
    if [ ! -x "$dir/bin/llama-bench" ] || [ ! -x "$dir/bin/vs-ggml-gemv" ]; then
        log "building llama.cpp ($name) in $dir"
        # shellcheck disable=SC2086
        $HEAVY cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
            -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DGGML_CCACHE=OFF $flags >"$dir.cmake.log" 2>&1 ||
            die "cmake configure failed, see $dir.cmake.log"
        $HEAVY cmake --build "$dir" -j "$JOBS" --target llama-bench llama-quantize llama-perplexity \
            >"$dir.build.log" 2>&1 || die "build failed, see $dir.build.log"
        build_harness "$name"
    fi
}

# The GEMV harness (gemv.c) links ggml's static libraries of that build.
build_harness() {
    local dir="$out/build-$1" libs march
    libs="$(find "$dir" -name 'libggml*.a' | sort -r | tr '\n' ' ')"
    case "$1" in
        native) march="-march=native" ;;
        avx2) march="-mavx2 -mfma -mf16c" ;;
    esac
    # shellcheck disable=SC2086
    $HEAVY g++ -O2 $march -x c "$here/gemv.c" -x none -I "$src/ggml/include" -o "$dir/bin/vs-ggml-gemv" \
        -Wl,--start-group $libs -Wl,--end-group -fopenmp -lpthread -lm ||
        die "the GEMV harness did not build"
}

build() {
    fetch
    for b in $BUILDS; do build_one "$b"; done
    log "built: $(for b in $BUILDS; do printf '%s ' "$out/build-$b/bin"; done)"
    build_edgesim
}

# edgesim's own benches, built once and copied to $out/bin, so a timing round never compiles
# and editing the source while the rounds run cannot change what they measure.
build_edgesim() {
    local name exe
    mkdir -p "$out/bin"
    for name in llm_model kernels_table; do
        exe="$(cd "$repo" && $HEAVY cargo bench --no-run --bench "$name" --message-format=json 2>/dev/null |
            python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["executable"])' | tail -n 1)"
        [ -x "$exe" ] || die "cargo bench --no-run --bench $name did not give an executable"
        cp "$exe" "$out/bin/edgesim-$name"
    done
    (cd "$repo" && git log -1 --format='edgesim benches built at commit %h%n' >&2; git status --short >&2)
}

# The requantized files: llama-quantize from the Q4_1 file (requantizing, as the only SmolLM2
# GGUF edgesim fetches is Q4_1: these files carry that rounding too, as edgesim's formats do).
QUANTS="Q8_0 Q4_K_M Q3_K_S Q2_K"
quantize() {
    local models q
    models="$(model_dir)"
    mkdir -p "$out/models"
    ln -sf "$models/SmolLM2-135M-Instruct.Q4_1.gguf" "$out/models/smollm2-Q4_1.gguf"
    for q in $QUANTS; do
        [ -f "$out/models/smollm2-$q.gguf" ] && continue
        log "llama-quantize --allow-requantize → $q"
        $HEAVY "$out/build-native/bin/llama-quantize" --allow-requantize \
            "$out/models/smollm2-Q4_1.gguf" "$out/models/smollm2-$q.gguf" "$q" \
            >"$out/models/quantize-$q.log" 2>&1 || die "llama-quantize $q failed, see $out/models/quantize-$q.log"
        # What the file holds per tensor type (K-quants fall back where rows are not 256-wide).
        grep -E "^\[|converting to|type" "$out/models/quantize-$q.log" | tail -n 3 >&2 || true
    done
}

# One llama-bench process for one file and thread count: prints "PREFILL,DECODE" tokens/s
# (pp128 and tg64, each the mean of 3 repetitions after llama-bench's warm-up).
llama_rates() {
    local build="$1" file="$2" threads="$3"
    "$out/build-$build/bin/llama-bench" -m "$out/models/smollm2-$file.gguf" -t "$threads" \
        -p 128 -n 64 -r 3 -o csv 2>/dev/null | python3 -c '
import csv, sys
rows = {(int(r["n_prompt"]), int(r["n_gen"])): r["avg_ts"] for r in csv.DictReader(sys.stdin)}
print(rows[(128, 0)] + "," + rows[(0, 64)])'
}

# One edgesim process: llm_model's machine-readable mode prints
# "csv,FORMAT,THREADS,PREFILL,DECODE" (pp128 and 64 decode steps, median of 3 after a warm-up).
edgesim_rates() {
    local spec="$1" threads="$2"
    (cd "$repo" && LLM_MODEL_THREADS="$threads" LLM_MODEL_DECODE_TOKENS=64 LLM_MODEL_REPEATS=3 \
        LLM_MODEL_CSV=1 "$out/bin/edgesim-llm_model" "$spec" 2>/dev/null | grep '^csv,' |
        cut -d, -f2,4,5)
}

# Busy and total CPU ticks of the whole machine (/proc/stat; busy counts steal time too).
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
# CPU ticks of this shell and the children it has waited for.
own_ticks() { awk '{print $14+$15+$16+$17}' "/proc/$$/stat"; }

# One timed measurement (run under $QUIET): the measurement's output, then the 1-minute load
# average before and after it, then the share (%) of the machine's CPU time that went to other
# processes (or to the hypervisor, as steal) while it ran: the load average lags by a minute,
# this does not.
measure() {
    local before busy0 total0 own0 output busy1 total1 own1
    before="$(load)"
    read -r busy0 total0 < <(machine_ticks)
    own0="$(own_ticks)"
    output="$("$@")"
    read -r busy1 total1 < <(machine_ticks)
    own1="$(own_ticks)"
    echo "$output,$before,$(load),$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) \
        -v o=$((own1 - own0)) 'BEGIN { x = t > 0 ? 100 * (b - o) / t : 0; printf "%.1f", x < 0 ? 0 : x }')"
}

# The pairs compared, edgesim format spec : llama.cpp file. Like bytes with like bytes where
# llama.cpp's types apply: edgesim's 8-bit vs Q8_0, 4-bit (groups of 32, fp16 scale and centre:
# 5.0 bits/weight) vs the Q4_1 file itself (5.0); the K-quant files fall back to Q4_0/Q5_0 for
# SmolLM2's 576-wide rows, so they read more bytes than the edgesim format set beside them
# (bits/weight of both are in docs/kernels.md).
PAIRS="${PAIRS:-8:Q8_0 4:Q4_1 4:Q4_K_M 3:Q3_K_S 2:Q2_K}"

model() {
    local r pair spec file t build line fmt prefill decode l0 l1 other results="$out/model-rounds.csv"
    [ -x "$out/build-native/bin/llama-bench" ] || die "run '$0 build' first"
    [ -f "$out/models/smollm2-Q2_K.gguf" ] || die "run '$0 quantize' first"
    echo "round,side,build,format,file,threads,test,tokens_per_s,load_before,load_after,others_cpu_percent" >"$results"
    for r in $(seq 1 "$ROUNDS"); do
        for pair in $PAIRS; do
            spec="${pair%%:*}"
            file="${pair#*:}"
            for t in $THREADS; do
                # A: edgesim, then B: each llama.cpp build, back to back in the same round.
                line="$($QUIET "$0" _measure edgesim_rates "$spec" "$t")"
                IFS=, read -r fmt prefill decode l0 l1 other <<<"$line"
                [ -n "$decode" ] || die "edgesim's llm_model printed nothing for '$spec' (is the model cached?)"
                echo "$r,edgesim,-,$fmt,$file,$t,prefill,$prefill,$l0,$l1,$other" >>"$results"
                echo "$r,edgesim,-,$fmt,$file,$t,decode,$decode,$l0,$l1,$other" >>"$results"
                for build in $BUILDS; do
                    line="$($QUIET "$0" _measure llama_rates "$build" "$file" "$t")"
                    IFS=, read -r prefill decode l0 l1 other <<<"$line"
                    [ -n "$decode" ] || die "llama-bench ($build) failed on $file"
                    echo "$r,llama.cpp,$build,$file,$file,$t,prefill,$prefill,$l0,$l1,$other" >>"$results"
                    echo "$r,llama.cpp,$build,$file,$file,$t,decode,$decode,$l0,$l1,$other" >>"$results"
                done
                log "round $r: edgesim $spec vs $file, $t thread(s) (load $(load))"
            done
        done
    done
    python3 "$here/ratios.py" model "$results" | tee "$out/model-table.md"
}

edgesim_gemv() {
    (cd "$repo" && KERNEL_THREADS="$1" KERNEL_CSV=1 KERNEL_SKIP_F32=1 KERNEL_BITS=2,3,4,8 \
        "$out/bin/edgesim-kernels_table" 4096x4096 2>/dev/null | grep '^csv,' | cut -d, -f2-)
}

ggml_gemv() {
    "$out/build-$1/bin/vs-ggml-gemv" "$2" 2>/dev/null | grep '^csv,' | cut -d, -f2-
}

# Lines "KERNEL,BITS,THREADS,MODE,US" of one side, each followed by the round's loads and the
# others' CPU share (the last three fields of the line measure() prints).
tag() {
    local prefix="$1" line l0 l1 other rest
    IFS= read -r line
    other="${line##*,}"
    rest="${line%,*}"
    l1="${rest##*,}"
    rest="${rest%,*}"
    l0="${rest##*,}"
    rest="${rest%,*}"
    # rest holds the measurement's lines joined by spaces (measure() echoes one line).
    for m in $rest; do
        echo "$prefix,${m//|/ },$l0,$l1,$other"
    done
}

gemv() {
    local r build t results="$out/gemv-rounds.csv"
    [ -x "$out/build-native/bin/vs-ggml-gemv" ] || die "run '$0 build' first"
    echo "round,side,build,kernel,bits_per_weight,threads,mode,us,load_before,load_after,others_cpu_percent" >"$results"
    for r in $(seq 1 "$ROUNDS"); do
        for t in $THREADS; do
            $QUIET "$0" _measure joined edgesim_gemv "$t" | tag "$r,edgesim,-" >>"$results"
            for build in $BUILDS; do
                $QUIET "$0" _measure joined ggml_gemv "$build" "$t" | tag "$r,ggml,$build" >>"$results"
            done
            log "gemv round $r, $t thread(s) done (load $(load))"
        done
    done
    python3 "$here/ratios.py" gemv "$results" | tee "$out/gemv-table.md"
}

# Runs a command and joins its output lines into one (spaces in a line become '|').
joined() {
    "$@" | tr ' ' '|' | tr '\n' ' ' | sed 's/ $//'
}

# llama.cpp's perplexity on the evaluation text, for docs/real-model.md's quality table. Its
# method: windows of 512 tokens, the second half of each scored.
perplexity() {
    local f
    for f in Q4_1 $QUANTS; do
        $HEAVY "$out/build-native/bin/llama-perplexity" -m "$out/models/smollm2-$f.gguf" \
            -f "$repo/data-public/kjv-genesis-1-12.txt" -c 512 -t 2 2>&1 |
            grep -E "Final estimate" | sed "s/^/$f: /"
    done
}

case "${1:-all}" in
    _measure) shift && measure "$@" ;;
    build) build ;;
    build-edgesim) build_edgesim ;;
    quantize) quantize ;;
    model) model ;;
    gemv) gemv ;;
    perplexity) perplexity ;;
    all) build && quantize && model && gemv && perplexity ;;
    *) die "unknown step '$1' (build, quantize, model, gemv, perplexity, all)" ;;
esac
