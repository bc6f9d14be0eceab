// GEMV harness for ggml's CPU kernels, through ggml's public API only (ggml.h, ggml-backend.h,
// ggml-alloc.h, ggml-cpu.h): y = W·x for one activation vector, W 4096×4096 in each ggml type,
// hot (one matrix reused) and cold (cycling over copies totalling COLD_BYTES, 16× this machine's
// 32 MiB L3), with the same timing rules as edgesim's `benches/kernels_table.rs`: hot = median of
// 21 samples of ≥ 2 ms each, cold = median of 7 passes over all copies after one warm-up pass.
//
// Each timed call is one ggml_backend_graph_compute of a one-node graph (MUL_MAT), so it
// includes quantizing x to the kernel's activation type (Q8_0 / Q8_K), as edgesim's times
// include building the activation's lookup tables, and one wake-up of ggml's thread pool, as
// edgesim's include one rayon fork/join.
//
// "repack" rows put W in the CPU backend's CPU_REPACK buffer type (what llama.cpp does by
// default for the types it can interleave: Q4_0 → q4_0_8x8, Q4_K → q4_K_8x8, Q2_K → q2_K_8x8
// with AVX-512); a type the buffer does not repack on this CPU is reported as not repacked.
//
// Usage: vs-ggml-gemv THREADS   → lines "csv,KERNEL,BITS_PER_WEIGHT,THREADS,MODE,MICROSECONDS"
// Written for edgesim (benches/vs-llama-cpp/); not part of llama.cpp.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

enum { ROWS = 4096, COLS = 4096, HOT_SAMPLES = 21, COLD_PASSES = 7 };
static const size_t COLD_BYTES = (size_t) 512 << 20;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void * a, const void * b) {
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double median(double * v, int n) {
    qsort(v, n, sizeof *v, by_value);
    return v[n / 2];
}

// ChaCha is not needed here: a fixed xorshift stream gives the same matrix every run.
static uint64_t state = 42;
static float uniform(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (float) ((state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static ggml_backend_buffer_type_t repack_buffer_type(void) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    ggml_backend_dev_get_extra_bufts_t get =
        (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    if (!get) {
        return NULL;
    }
    for (ggml_backend_buffer_type_t * b = get(dev); b && *b; b++) {
        if (strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) {
            return *b;
        }
    }
    return NULL;
}

// Runs one type (plain or in the repack buffer); returns 0 when it ran.
static int run(enum ggml_type type, int repack, int threads, const float * w, const float * x) {
    ggml_backend_buffer_type_t buft = ggml_backend_cpu_buffer_type();
    if (repack) {
        buft = repack_buffer_type();
        if (!buft) {
            return 1;
        }
    }
    const size_t bytes = ggml_row_size(type, COLS) * ROWS;
    const int copies = (int) ((COLD_BYTES + bytes - 1) / bytes);
    void * quantized = malloc(bytes);
    ggml_quantize_chunk(type, w, quantized, 0, ROWS, COLS, NULL);

    struct ggml_init_params wp = { ggml_tensor_overhead() * (copies + 1), NULL, true };
    struct ggml_context * wctx = ggml_init(wp);
    struct ggml_tensor ** mats = malloc(sizeof *mats * copies);
    for (int i = 0; i < copies; i++) {
        mats[i] = ggml_new_tensor_2d(wctx, type, COLS, ROWS);
    }
    ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, buft);
    if (repack && mats[0]->extra == NULL) {
        // The repack buffer does not interleave this type on this CPU.
        ggml_backend_buffer_free(wbuf);
        ggml_free(wctx);
        free(mats);
        free(quantized);
        return 1;
    }
    for (int i = 0; i < copies; i++) {
        ggml_backend_tensor_set(mats[i], quantized, 0, bytes);
    }

    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, threads);
    struct ggml_init_params gp = { ggml_tensor_overhead() * (2 * copies + 2) + ggml_graph_overhead() * copies, NULL, true };
    struct ggml_context * gctx = ggml_init(gp);
    struct ggml_tensor * xt = ggml_new_tensor_1d(gctx, GGML_TYPE_F32, COLS);
    struct ggml_cgraph ** graphs = malloc(sizeof *graphs * copies);
    struct ggml_tensor ** ys = malloc(sizeof *ys * copies);
    for (int i = 0; i < copies; i++) {
        ys[i] = ggml_mul_mat(gctx, mats[i], xt);
        graphs[i] = ggml_new_graph(gctx);
        ggml_build_forward_expand(graphs[i], ys[i]);
    }
    ggml_backend_buffer_t gbuf = ggml_backend_alloc_ctx_tensors(gctx, backend);
    ggml_backend_tensor_set(xt, x, 0, sizeof(float) * COLS);

    // Check the result against the dequantized weights (rows 0..63), so a wrong path shows.
    ggml_backend_graph_compute(backend, graphs[0]);
    float * y = malloc(sizeof(float) * ROWS);
    ggml_backend_tensor_get(ys[0], y, 0, sizeof(float) * ROWS);
    float * row = malloc(sizeof(float) * COLS);
    double err = 0, norm = 0;
    for (int r = 0; r < 64; r++) {
        ggml_get_type_traits(type)->to_float((const char *) quantized + r * ggml_row_size(type, COLS), row, COLS);
        double exact = 0;
        for (int k = 0; k < COLS; k++) {
            exact += (double) row[k] * x[k];
        }
        err += (y[r] - exact) * (y[r] - exact);
        norm += exact * exact;
    }
    if (sqrt(err / norm) > 0.05) {
        fprintf(stderr, "%s%s: relative error %.3f against the dequantized weights\n", ggml_type_name(type),
                repack ? " repack" : "", sqrt(err / norm));
        exit(1);
    }

    char name[64];
    snprintf(name, sizeof name, "ggml %s%s", ggml_type_name(type), repack ? " repack" : "");
    const double bpw = 8.0 * ggml_row_size(type, COLS) / COLS;

    // Hot.
    for (int i = 0; i < 3; i++) {
        ggml_backend_graph_compute(backend, graphs[0]);
    }
    double t0 = now();
    ggml_backend_graph_compute(backend, graphs[0]);
    double once = fmax(now() - t0, 1e-7);
    int reps = (int) ceil(2e-3 / once);
    reps = reps < 1 ? 1 : reps > 10000 ? 10000 : reps;
    double samples[HOT_SAMPLES > COLD_PASSES ? HOT_SAMPLES : COLD_PASSES];
    for (int s = 0; s < HOT_SAMPLES; s++) {
        t0 = now();
        for (int i = 0; i < reps; i++) {
            ggml_backend_graph_compute(backend, graphs[0]);
        }
        samples[s] = (now() - t0) / reps;
    }
    printf("csv,%s,%.3f,%d,hot,%.2f\n", name, bpw, threads, median(samples, HOT_SAMPLES) * 1e6);

    // Cold.
    for (int i = 0; i < copies; i++) {
        ggml_backend_graph_compute(backend, graphs[i]);
    }
    for (int s = 0; s < COLD_PASSES; s++) {
        t0 = now();
        for (int i = 0; i < copies; i++) {
            ggml_backend_graph_compute(backend, graphs[i]);
        }
        samples[s] = (now() - t0) / copies;
    }
    printf("csv,%s,%.3f,%d,cold,%.2f\n", name, bpw, threads, median(samples, COLD_PASSES) * 1e6);
    fflush(stdout);

    free(row);
    free(y);
    ggml_backend_buffer_free(gbuf);
    ggml_free(gctx);
    ggml_backend_free(backend);
    ggml_backend_buffer_free(wbuf);
    ggml_free(wctx);
    free(graphs);
    free(ys);
    free(mats);
    free(quantized);
    return 0;
}

int main(int argc, char ** argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1) {
        fprintf(stderr, "usage: %s THREADS\n", argv[0]);
        return 2;
    }
    float * w = malloc(sizeof(float) * ROWS * COLS);
    float * x = malloc(sizeof(float) * COLS);
    for (size_t i = 0; i < (size_t) ROWS * COLS; i++) {
        w[i] = uniform();
    }
    for (int i = 0; i < COLS; i++) {
        x[i] = uniform();
    }
    fprintf(stderr, "ggml CPU features: avx2 %d avx512 %d avx512_vnni %d avx512_vbmi %d amx_int8 %d\n", ggml_cpu_has_avx2(),
            ggml_cpu_has_avx512(), ggml_cpu_has_avx512_vnni(), ggml_cpu_has_avx512_vbmi(), ggml_cpu_has_amx_int8());
    const enum ggml_type types[] = { GGML_TYPE_TQ2_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_0,
                                     GGML_TYPE_Q4_K,  GGML_TYPE_Q8_0 };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        run(types[i], 0, threads, w, x);
        if (run(types[i], 1, threads, w, x) != 0) {
            fprintf(stderr, "ggml %s: not repacked on this CPU (plain kernel only)\n", ggml_type_name(types[i]));
        }
    }
    free(w);
    free(x);
    ggml_quantize_free();
    return 0;
}
