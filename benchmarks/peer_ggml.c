/* benchmarks/peer_ggml.c — the peer line for qvac's kernel table: ggml's
 * own CPU matmul (what llama.cpp runs) timed at the shapes qvac's kernels
 * are timed at. Not built by `make`: benchmarks/peer_ggml.sh builds ggml
 * alone from a source tree the user gives and compiles this against it.
 *
 *   peer_ggml [--threads N] [--min-ms MS] TYPE:M,N,K ...
 *
 * TYPE is tq2_0, f16 or f32 (the weight's type); the product is
 * C (M, N) = B (M, K) . A (N, K)^T with B in f32, as ggml_mul_mat(A, B):
 * M tokens, N output features, K input features, the same M, N, K as
 * `qvac tune --shape M,N,K`. ggml's MUL_MAT includes quantising B to the
 * weight type's vec_dot_type (q8_K for TQ2_0, f16 for F16), as qvac's
 * figure includes quantize_act. Weights are random (TQ2_0: random floats
 * quantised by ggml_quantize_chunk). Each case runs once to warm up, then
 * until --min-ms (default 500) have passed and at least 5 times; the median
 * is reported. One JSON object per line on stdout:
 *   {"peer":"ggml-cpu","type":"tq2_0","m":512,"n":2048,"k":2048,
 *    "threads":2,"runs":9,"ms":12.3,"gflops":349.1}
 * GFLOP/s counts 2*M*N*K, as qvac's do. Errors: a message on stderr, exit 1.
 *
 * Built with -DPEER_GGML_VULKAN (benchmarks/peer_ggml.sh --backend vulkan)
 * it also takes --vulkan DEV: the same cases on ggml's Vulkan backend,
 * physical device DEV (ggml-vulkan skips CPU-type devices such as lavapipe
 * unless GGML_VK_VISIBLE_DEVICES names them, so DEV is passed that way).
 * Tensors are uploaded once; each run is ggml_backend_graph_compute
 * (submit and wait), wall clock, so submission overhead is counted, as
 * test-backend-ops perf counts it. Lines read "peer":"ggml-vulkan" and carry
 * "device"; a type the backend cannot multiply prints "supported":false
 * (ggml-vulkan has no TQ2_0 kernels) instead of figures, and is no error. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ggml-cpu.h"
#include "ggml.h"
#ifdef PEER_GGML_VULKAN
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-vulkan.h"
static ggml_backend_t g_vk; /* NULL: the CPU path */
static char g_vk_name[256];
#endif

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static float rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

#ifdef PEER_GGML_VULKAN
/* Weights of `type` for row n of A into dst (random, as the CPU path's). */
static void fill_row(enum ggml_type type, float *row, long long K, void *dst)
{
    for (long long k = 0; k < K; k++)
        row[k] = rnd();
    if (type == GGML_TYPE_F32)
        memcpy(dst, row, (size_t)K * 4);
    else if (type == GGML_TYPE_F16)
        ggml_fp32_to_fp16_row(row, (ggml_fp16_t *)dst, K);
    else
        ggml_quantize_chunk(type, row, dst, 0, 1, K, NULL);
}

static int run_case_vk(const char *spec, const char *tname, enum ggml_type type, long long M,
                       long long N, long long K, double min_ms)
{
    struct ggml_init_params ip = {.mem_size = ggml_tensor_overhead() * 8 + ggml_graph_overhead(),
                                  .mem_buffer = NULL, .no_alloc = true};
    struct ggml_context *ctx = ggml_init(ip);
    if (!ctx) {
        fprintf(stderr, "peer_ggml: %s: ggml_init failed\n", spec);
        return 1;
    }
    struct ggml_tensor *a = ggml_new_tensor_2d(ctx, type, K, N);
    struct ggml_tensor *b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, M);
    struct ggml_tensor *c = ggml_mul_mat(ctx, a, b);
    if (!ggml_backend_supports_op(g_vk, c)) {
        printf("{\"peer\":\"ggml-vulkan\",\"device\":\"%s\",\"type\":\"%s\",\"m\":%lld,"
               "\"n\":%lld,\"k\":%lld,\"supported\":false}\n", g_vk_name, tname, M, N, K);
        fflush(stdout);
        ggml_free(ctx);
        return 0;
    }
    struct ggml_cgraph *gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, c);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, g_vk);
    size_t rb = ggml_row_size(type, K);
    float *row = malloc((size_t)K * 4);
    char *host = malloc(rb * (size_t)N > (size_t)(M * K * 4) ? rb * (size_t)N : (size_t)(M * K * 4));
    if (!buf || !row || !host) {
        fprintf(stderr, "peer_ggml: %s: out of %s memory\n", spec, buf ? "host" : "device");
        free(row);
        free(host);
        if (buf)
            ggml_backend_buffer_free(buf);
        ggml_free(ctx);
        return 1;
    }
    for (long long n = 0; n < N; n++)
        fill_row(type, row, K, host + (size_t)n * rb);
    ggml_backend_tensor_set(a, host, 0, rb * (size_t)N);
    float *bf = (float *)host;
    for (long long i = 0; i < M * K; i++)
        bf[i] = rnd();
    ggml_backend_tensor_set(b, host, 0, (size_t)(M * K * 4));
    free(row);
    free(host);
    double times[1000];
    int runs = 0, rc = 0;
    double t_start = 0;
    for (int i = 0; i < 1001; i++) {
        double t0 = now_ms();
        if (ggml_backend_graph_compute(g_vk, gf) != GGML_STATUS_SUCCESS) {
            fprintf(stderr, "peer_ggml: %s: ggml_backend_graph_compute failed\n", spec);
            rc = 1;
            break;
        }
        double t1 = now_ms();
        if (i == 0) { /* warm-up: pipelines compiled, buffers settled */
            t_start = t1;
            continue;
        }
        times[runs++] = t1 - t0;
        if ((runs >= 5 && t1 - t_start >= min_ms) || runs == 1000)
            break;
    }
    if (!rc) {
        qsort(times, (size_t)runs, sizeof times[0], cmp_d);
        double ms = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
        printf("{\"peer\":\"ggml-vulkan\",\"device\":\"%s\",\"type\":\"%s\",\"m\":%lld,"
               "\"n\":%lld,\"k\":%lld,\"runs\":%d,\"ms\":%.4f,\"gflops\":%.2f}\n",
               g_vk_name, tname, M, N, K, runs, ms,
               2.0 * (double)M * (double)N * (double)K / (ms * 1e6));
        fflush(stdout);
    }
    ggml_backend_buffer_free(buf);
    ggml_free(ctx);
    return rc;
}

/* Opens ggml-vulkan on physical device dev (see the header). */
static int open_vk(long dev)
{
    if (!getenv("GGML_VK_VISIBLE_DEVICES")) {
        char v[32];
        snprintf(v, sizeof v, "%ld", dev);
        setenv("GGML_VK_VISIBLE_DEVICES", v, 1);
        dev = 0;
    }
    if (ggml_backend_vk_get_device_count() <= dev) {
        fprintf(stderr, "peer_ggml: ggml-vulkan sees %d device(s), none at index %ld\n",
                ggml_backend_vk_get_device_count(), dev);
        return 1;
    }
    ggml_backend_vk_get_device_description((int)dev, g_vk_name, sizeof g_vk_name);
    for (char *p = g_vk_name; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 32)
            *p = ' ';
    g_vk = ggml_backend_vk_init((size_t)dev);
    if (!g_vk) {
        fprintf(stderr, "peer_ggml: ggml_backend_vk_init(%ld) failed\n", dev);
        return 1;
    }
    fprintf(stderr, "peer_ggml: ggml-vulkan on %s\n", g_vk_name);
    return 0;
}
#endif

static int run_case(const char *spec, int threads, double min_ms)
{
    char tname[16];
    long long M, N, K;
    if (sscanf(spec, "%15[^:]:%lld,%lld,%lld", tname, &M, &N, &K) != 4 || M < 1 || N < 1 ||
        K < 1 || M > 65536 || N > 262144 || K > 262144) {
        fprintf(stderr, "peer_ggml: '%s' is not TYPE:M,N,K (TYPE tq2_0, f16 or f32)\n", spec);
        return 1;
    }
    enum ggml_type type;
    if (!strcmp(tname, "tq2_0"))
        type = GGML_TYPE_TQ2_0;
    else if (!strcmp(tname, "f16"))
        type = GGML_TYPE_F16;
    else if (!strcmp(tname, "f32"))
        type = GGML_TYPE_F32;
    else {
        fprintf(stderr, "peer_ggml: type '%s': use tq2_0, f16 or f32\n", tname);
        return 1;
    }
    if (type == GGML_TYPE_TQ2_0 && K % 256) {
        fprintf(stderr, "peer_ggml: %s: TQ2_0 needs K %% 256 == 0\n", spec);
        return 1;
    }
    size_t wbytes = ggml_row_size(type, K) * (size_t)N;
    /* the tensors and the graph; the work buffer is planned and allocated
     * apart (ggml_graph_plan), so its size is ggml's own figure */
    size_t need = wbytes + (size_t)M * (size_t)K * 4 + (size_t)M * (size_t)N * 4 +
                  ggml_graph_overhead() + 8 * ggml_tensor_overhead() + ((size_t)1 << 20);
#ifdef PEER_GGML_VULKAN
    if (g_vk)
        return run_case_vk(spec, tname, type, M, N, K, min_ms);
#endif
    struct ggml_init_params ip = {.mem_size = need, .mem_buffer = NULL, .no_alloc = false};
    struct ggml_context *ctx = ggml_init(ip);
    if (!ctx) {
        fprintf(stderr, "peer_ggml: %s: cannot allocate %zu bytes\n", spec, need);
        return 1;
    }
    struct ggml_tensor *a = ggml_new_tensor_2d(ctx, type, K, N);
    struct ggml_tensor *b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, M);
    float *bf = (float *)b->data;
    for (long long i = 0; i < M * K; i++)
        bf[i] = rnd();
    float *row = malloc((size_t)K * 4);
    if (!row) {
        ggml_free(ctx);
        fprintf(stderr, "peer_ggml: out of memory\n");
        return 1;
    }
    for (long long n = 0; n < N; n++) {
        for (long long k = 0; k < K; k++)
            row[k] = rnd();
        char *dst = (char *)a->data + (size_t)n * ggml_row_size(type, K);
        if (type == GGML_TYPE_F32)
            memcpy(dst, row, (size_t)K * 4);
        else if (type == GGML_TYPE_F16)
            ggml_fp32_to_fp16_row(row, (ggml_fp16_t *)dst, K);
        else
            ggml_quantize_chunk(type, row, dst, 0, 1, K, NULL);
    }
    free(row);
    struct ggml_tensor *c = ggml_mul_mat(ctx, a, b);
    struct ggml_cgraph *gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, c);
    struct ggml_cplan plan = ggml_graph_plan(gf, threads, NULL);
    uint8_t *work = plan.work_size ? malloc(plan.work_size) : NULL;
    if (plan.work_size && !work) {
        ggml_free(ctx);
        fprintf(stderr, "peer_ggml: %s: cannot allocate %zu bytes of work buffer\n", spec,
                plan.work_size);
        return 1;
    }
    plan.work_data = work;
    double times[1000];
    int runs = 0;
    double t_start = 0;
    for (int i = 0; i < 1001; i++) {
        double t0 = now_ms();
        if (ggml_graph_compute(gf, &plan) != GGML_STATUS_SUCCESS) {
            free(work);
            ggml_free(ctx);
            fprintf(stderr, "peer_ggml: %s: ggml_graph_compute failed\n", spec);
            return 1;
        }
        double t1 = now_ms();
        if (i == 0) { /* warm-up */
            t_start = t1;
            continue;
        }
        times[runs++] = t1 - t0;
        if ((runs >= 5 && t1 - t_start >= min_ms) || runs == 1000)
            break;
    }
    qsort(times, (size_t)runs, sizeof times[0], cmp_d);
    double ms = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
    printf("{\"peer\":\"ggml-cpu\",\"type\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,"
           "\"threads\":%d,\"runs\":%d,\"ms\":%.4f,\"gflops\":%.2f}\n",
           tname, M, N, K, threads, runs, ms, 2.0 * (double)M * (double)N * (double)K / (ms * 1e6));
    fflush(stdout);
    free(work);
    ggml_free(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 0, rc = 0, cases = 0;
    double min_ms = 500.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: peer_ggml [--threads N] [--min-ms MS] [--vulkan DEV] TYPE:M,N,K ...\n"
                   "  ggml's CPU (or, with --vulkan, Vulkan) mul_mat at C(M,N) = B(M,K) . A(N,K)^T,\n"
                   "  A of TYPE (tq2_0, f16, f32)\n");
            return 0;
        }
        if (!strcmp(argv[i], "--vulkan") && i + 1 < argc) {
#ifdef PEER_GGML_VULKAN
            char *end = NULL;
            long dev = strtol(argv[i + 1], &end, 10);
            if (!*argv[i + 1] || *end || dev < 0 || dev > 64) {
                fprintf(stderr, "peer_ggml: --vulkan needs a device index\n");
                return 1;
            }
            if (g_vk || open_vk(dev))
                return 1;
            i++;
            continue;
#else
            fprintf(stderr, "peer_ggml: built without ggml-vulkan (peer_ggml.sh --backend vulkan)\n");
            return 1;
#endif
        }
        if ((!strcmp(argv[i], "--threads") || !strcmp(argv[i], "--min-ms")) && i + 1 < argc) {
            char *end = NULL;
            double v = strtod(argv[i + 1], &end);
            if (!*argv[i + 1] || *end || v < 1 || v > 1e6) {
                fprintf(stderr, "peer_ggml: %s needs a positive number\n", argv[i]);
                return 1;
            }
            if (!strcmp(argv[i], "--threads"))
                threads = (int)v;
            else
                min_ms = v;
            i++;
            continue;
        }
        if (!threads) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            threads = n > 0 ? (int)n : 1;
        }
        cases++;
        if (run_case(argv[i], threads, min_ms))
            rc = 1;
    }
#ifdef PEER_GGML_VULKAN
    if (g_vk)
        ggml_backend_free(g_vk);
#endif
    if (!cases) {
        fprintf(stderr, "peer_ggml: no case given (TYPE:M,N,K ...; see --help)\n");
        return 1;
    }
    return rc;
}
