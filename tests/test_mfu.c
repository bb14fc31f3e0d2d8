/* tests/test_mfu.c — model FLOPs of a step against a hand count, the
 * launches of a step, the base matmul's measured peak, and tuning at the
 * model's shapes (opencl:0; skipped cleanly without it). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autotune/cache.h"
#include "kernels/backend.h"
#include "train/mfu.h"

/* 1 layer, D 8, 2 heads of 4 (1 kv head), FFN 16, vocab 10 */
static qv_model_config tiny(void)
{
    qv_model_config c = {
        .vocab = 10, .dim = 8, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
        .ffn_dim = 16, .ctx = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
        .act = QV_ACT_SILU, .sub_norm = 1, .tied = 1,
    };
    return c;
}

Test(mfu, step_flops_hand_count)
{
    qv_model_config c = tiny();
    unsigned qv = (1u << QV_LIN_Q) | (1u << QV_LIN_V);
    /* linears N x K: q 8x8, k 4x8, v 4x8, o 8x8, gate 16x8, up 16x8,
     * down 8x16: sum N*K = 64+32+32+64+128+128+128 = 576.
     * 6 tokens in 2 sequences of 3.
     *   base: (2 fwd + 2 bwd-input) * 576 * 6             = 13824
     *   LoRA rank 2: 6 * T * R * (N+K): q 6*6*2*16 = 1152,
     *                v 6*6*2*12 = 864                     =  2016
     *   attention: pairs 2 * (3*4/2) = 12; 12 * D * pairs =  1152
     *   head: 4 * V * D * T = 4 * 10 * 8 * 6              =  1920 */
    cr_assert_float_eq(qv_step_flops(&c, qv, 2, 6, 3, 0), 18912.0, 1e-9);
    /* no LoRA term without rank */
    cr_assert_float_eq(qv_step_flops(&c, qv, 0, 6, 3, 0), 18912.0 - 2016.0, 1e-9);
    /* full: weight gradients of every linear and the head, no LoRA:
     * 6*576*6 + 1152 + 6*10*8*6 */
    cr_assert_float_eq(qv_step_flops(&c, qv, 2, 6, 3, 1), 20736.0 + 1152.0 + 2880.0,
                       1e-9);
    /* tokens scale everything but attention's pairs linearly */
    double one = qv_step_flops(&c, 0, 0, 3, 3, 0);
    cr_assert_float_eq(qv_step_flops(&c, 0, 0, 6, 3, 0), 2 * one, 1e-9);
}

Test(mfu, mfu_ratio)
{
    cr_assert_float_eq(qv_mfu(2e9, 1.0, 4.0), 0.5, 1e-12);
    cr_assert_eq(qv_mfu(2e9, 0.0, 4.0), 0.0);
    cr_assert_eq(qv_mfu(2e9, 1.0, 0.0), 0.0);
}

static int has(const qv_train_launch *l, size_t n, const char *k, int M, int N,
               int K, int R)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(l[i].kernel, k) && l[i].s.M == M && l[i].s.N == N &&
            l[i].s.K == K && l[i].s.R == R)
            return 1;
    return 0;
}

Test(mfu, launches_of_a_step)
{
    qv_model_config c = tiny();
    qv_train_shape_opts o = {.weights = QV_WEIGHTS_TERNARY, .batch = 2, .seq = 3,
                             .rank = 2,
                             .targets = (1u << QV_LIN_Q) | (1u << QV_LIN_V)};
    qv_train_launch l[64];
    size_t n = qv_train_launches(&c, &o, l, 64);
    cr_assert_eq(n, 16, "got %zu", n);
    cr_assert_eq(qv_train_launches(&c, &o, NULL, 0), n);
    cr_assert(has(l, n, "quantize_act", 6, 0, 8, 0));
    cr_assert(has(l, n, "quantize_act", 6, 0, 16, 0));
    cr_assert(has(l, n, "ternary_matmul", 6, 4, 8, 0));
    cr_assert(has(l, n, "ternary_matmul", 6, 8, 16, 0));
    cr_assert(has(l, n, "lora_fwd", 6, 8, 8, 2));
    cr_assert(has(l, n, "lora_fwd", 6, 4, 8, 2));
    cr_assert(has(l, n, "lora_bwd", 6, 4, 8, 2));
    cr_assert(has(l, n, "ternary_matmul_t", 6, 16, 8, 0));
    cr_assert(has(l, n, "f32_matmul", 6, 10, 8, 0));  /* logits */
    cr_assert(has(l, n, "f32_matmul", 6, 8, 10, 0));  /* dxf */
    cr_assert(!has(l, n, "f16_matmul", 6, 10, 8, 0));
    /* f16 weights, f16-exact head */
    o.weights = QV_WEIGHTS_F16;
    o.head_f16 = 1;
    n = qv_train_launches(&c, &o, l, 64);
    cr_assert(!has(l, n, "quantize_act", 6, 0, 8, 0));
    cr_assert(has(l, n, "f16_matmul", 6, 8, 16, 0));
    cr_assert(has(l, n, "f16_matmul_t", 6, 8, 16, 0));
    cr_assert(has(l, n, "f16_matmul", 6, 10, 8, 0));
    cr_assert(has(l, n, "f16_matmul_t", 6, 10, 8, 0));
    /* a head larger than the largest buffer: blocks of 4 rows (4, 4, 2) */
    o.max_alloc = 4 * 8 * 2;
    n = qv_train_launches(&c, &o, l, 64);
    cr_assert(has(l, n, "f16_matmul", 6, 4, 8, 0));
    cr_assert(has(l, n, "f16_matmul", 6, 2, 8, 0));
    cr_assert(!has(l, n, "f16_matmul", 6, 10, 8, 0));
    /* full training: weight gradients */
    o = (qv_train_shape_opts){.weights = QV_WEIGHTS_TERNARY, .batch = 2, .seq = 3,
                              .full = 1};
    n = qv_train_launches(&c, &o, l, 64);
    cr_assert(has(l, n, "f32_matmul", 16, 8, 6, 0));
    cr_assert(has(l, n, "f32_matmul", 10, 8, 6, 0));
    cr_assert(!has(l, n, "lora_fwd", 6, 8, 8, 2));
}

/* ---- on a device ---------------------------------------------------------- */

static qv_model_config builtin_shape(void)
{
    qv_model_config c = {
        .vocab = 258, .dim = 256, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
        .ffn_dim = 512, .ctx = 2048, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
        .act = QV_ACT_RELU2, .sub_norm = 1, .tied = 0,
    };
    return c;
}

Test(mfu, gemm_peak_on_opencl, .timeout = 600)
{
    qv_devlist *dl = NULL;
    qv_err e = {0};
    cr_assert_eq(qv_devlist_open(&dl, &e), QV_OK, "%s", e.msg);
    qv_device *dev = qv_devlist_find(dl, "opencl:0");
    if (!dev) {
        qv_devlist_destroy(&dl);
        cr_skip_test("no opencl:0");
    }
    qv_model_config c = builtin_shape();
    double g[2] = {0, 0};
    for (int w = 0; w < 2; w++)
        cr_assert_eq(qv_gemm_peak(dev, NULL, &c, (qv_weights)w, 32, &g[w], &e),
                     QV_OK, "%s", e.msg);
    cr_log_info("gemm peak on opencl:0: ternary %.2f, f16 %.2f GFLOP/s", g[0], g[1]);
    cr_assert(g[0] > 0.01 && g[0] < 1e5, "ternary %g GFLOP/s", g[0]);
    cr_assert(g[1] > 0.01 && g[1] < 1e5, "f16 %g GFLOP/s", g[1]);
    cr_assert_eq(qv_gemm_peak(dev, NULL, &c, QV_WEIGHTS_F16, 0, &g[1], &e),
                 QV_ERR_INVALID);
    qv_devlist_destroy(&dl);
}

Test(mfu, train_tune_on_opencl, .timeout = 900)
{
    qv_devlist *dl = NULL;
    qv_err e = {0};
    cr_assert_eq(qv_devlist_open(&dl, &e), QV_OK, "%s", e.msg);
    qv_device *dev = qv_devlist_find(dl, "opencl:0");
    qv_device *ref = qv_devlist_find(dl, "ref");
    if (!dev || !ref) {
        qv_devlist_destroy(&dl);
        cr_skip_test("no opencl:0");
    }
    char path[] = "/tmp/qvac-test-mfu-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    unlink(path);
    qv_tune_cache *cache = NULL;
    cr_assert_eq(qv_tune_cache_open(path, 0, 2000, &cache, &e), QV_OK, "%s", e.msg);
    qv_model_config c = builtin_shape();
    qv_model *m = NULL;
    cr_assert_eq(qv_model_init_synthetic(&c, 5, &m, &e), QV_OK, "%s", e.msg);
    qv_train_shape_opts s = {.weights = QV_WEIGHTS_TERNARY, .batch = 1, .seq = 16,
                             .rank = 4, .targets = (1u << QV_LIN_Q) | (1u << QV_LIN_V),
                             .head_f16 = qv_model_head_f16(m),
                             .max_alloc = dev->info.max_alloc_bytes};
    qv_timing_opts quick = {.warmup = 1, .min_reps = 1, .max_reps = 3,
                            .min_total_ns = 1e6, .timeout_ns = 5e9};
    qv_train_tune_opts o = {.budget_evals = 2, .timing = &quick};
    qv_train_tune_result r;
    cr_assert_eq(qv_train_tune(cache, dev, ref, m, &s, &o, &r, &e), QV_OK, "%s",
                 e.msg);
    size_t n = qv_train_launches(&m->cfg, &s, NULL, 0);
    cr_log_info("train tune: %zu launches, %zu tuned, %zu cached, %.1f s", r.launches,
                r.tuned, r.cached, r.seconds);
    cr_assert(r.launches > 0 && r.launches <= n, "%zu of %zu", r.launches, n);
    cr_assert_eq(r.tuned + r.cached + r.failed, r.launches, "%s", r.note);
    cr_assert_eq(r.failed, 0, "%s", r.note);
    cr_assert(r.tuned > 0);
    cr_assert(r.seconds > 0);
    /* every launch now finds a tuned configuration */
    qv_train_launch l[64];
    n = qv_train_launches(&m->cfg, &s, l, 64);
    for (size_t i = 0; i < n; i++) {
        qv_config cfg;
        int tuned = 0;
        cr_assert_eq(qv_tune_lookup(cache, dev, qv_kernel_find(l[i].kernel), l[i].s,
                                    &cfg, &tuned, &e), QV_OK, "%s", e.msg);
        cr_assert(tuned, "%s not tuned", l[i].kernel);
    }
    /* a second call measures nothing */
    qv_train_tune_result r2;
    cr_assert_eq(qv_train_tune(cache, dev, ref, m, &s, &o, &r2, &e), QV_OK, "%s",
                 e.msg);
    cr_assert_eq(r2.tuned, 0);
    cr_assert_eq(r2.cached, r.launches);
    /* the peak with the tuned configurations */
    double g = 0;
    cr_assert_eq(qv_gemm_peak(dev, cache, &m->cfg, QV_WEIGHTS_TERNARY, 16, &g, &e),
                 QV_OK, "%s", e.msg);
    cr_assert(g > 0);
    /* errors are values */
    cr_assert_eq(qv_train_tune(NULL, dev, ref, m, &s, &o, &r2, &e), QV_ERR_INVALID);
    cr_assert(strstr(e.msg, "cache"));
    qv_model_free(&m);
    qv_tune_cache_destroy(&cache);
    unlink(path);
    char wal[64];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    unlink(wal);
    qv_devlist_destroy(&dl);
}
