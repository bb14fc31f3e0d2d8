/* tests/test_ref.c — the reference kernels against numbers worked out by
 * hand, identities, and finite differences: the reference is the truth the
 * devices are held to, so it is checked against something else. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/ternary.h"
#include "kernels/verify.h"

Test(ref, quantize_act_by_hand)
{
    /* row 0: amax 1 -> s 127; 0.5*127 = 63.5 rounds away from zero to 64
     * row 1: all zero -> amax clamps to 1e-5, codes stay 0
     * row 2: amax 2 -> s 63.5; -0.01*63.5 = -0.635 -> -1 */
    float x[3 * 4] = {0.5f, -1.0f, 0.25f, 0.0f, 0, 0, 0, 0,
                      2.0f, -0.01f, -2.0f, 1.0f};
    int8_t q[12];
    float s[3];
    qv_ref_quantize_act(x, q, s, 3, 4);
    int8_t want[12] = {64, -127, 32, 0, 0, 0, 0, 0, 127, -1, -127, 64};
    for (int i = 0; i < 12; i++)
        cr_expect_eq(q[i], want[i], "q[%d] = %d, want %d", i, q[i], want[i]);
    cr_expect_float_eq(s[0], 127.0f, 1e-6);
    cr_expect_float_eq(s[1], 127.0f / 1e-5f, 1.0f);
    cr_expect_float_eq(s[2], 63.5f, 1e-6);
}

Test(ref, ternary_matmul_by_hand)
{
    /* K = 17 crosses a packed word. W row 0 = +1 everywhere, row 1 =
     * alternating -1, 0, +1 ... ; X row = 1..17 */
    enum { M = 1, N = 2, K = 17 };
    int8_t w[N * K], xq[M * K];
    for (int k = 0; k < K; k++) {
        w[k] = 1;
        w[K + k] = (int8_t)(k % 3 - 1);
        xq[k] = (int8_t)(k + 1);
    }
    uint32_t packed[N * 2];
    cr_assert_eq(qv_ternary_pack(w, N, K, packed, NULL), QV_OK);
    float xs[1] = {2.0f}, y[2];
    qv_ref_ternary_matmul(xq, xs, packed, y, M, N, K, 0.5f);
    /* row 0: sum 1..17 = 153 -> 153 / 2 * 0.5 = 38.25
     * row 1: sum over k of (k+1)*(k%3-1): k%3==0 -> -(k+1), k%3==2 -> +(k+1)
     *   -(1+4+7+10+13+16) + (3+6+9+12+15) = -51 + 45 = -6 -> -1.5 */
    cr_expect_float_eq(y[0], 38.25f, 1e-6);
    cr_expect_float_eq(y[1], -1.5f, 1e-6);
}

Test(ref, ternary_matmul_t_is_the_adjoint)
{
    /* <dY, X.W^T> == <dY.W, X> for any X, dY: checks the transposed product
     * against the forward one with no shared code path. */
    enum { M = 5, N = 7, K = 37 };
    qv_rng r = {42};
    int8_t w[N * K];
    for (int i = 0; i < N * K; i++)
        w[i] = (int8_t)((int)(qv_rng_next(&r) % 3) - 1);
    uint32_t packed[N * 3];
    cr_assert_eq(qv_ternary_pack(w, N, K, packed, NULL), QV_OK);
    float x[M * K], dy[M * N], dx[M * K];
    for (int i = 0; i < M * K; i++)
        x[i] = qv_rng_uniform(&r, -1, 1);
    for (int i = 0; i < M * N; i++)
        dy[i] = qv_rng_uniform(&r, -1, 1);
    qv_ref_ternary_matmul_t(dy, packed, dx, M, N, K, 0.25f);
    double lhs = 0, rhs = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double xw = 0;
            for (int k = 0; k < K; k++)
                xw += x[m * K + k] * w[n * K + k];
            lhs += dy[m * N + n] * 0.25 * xw;
        }
    for (int i = 0; i < M * K; i++)
        rhs += (double)dx[i] * x[i];
    cr_expect(fabs(lhs - rhs) < 1e-4 * (1 + fabs(lhs)), "%g vs %g", lhs, rhs);
}

Test(ref, f16_matmul_by_hand)
{
    /* halves chosen exactly representable */
    float x[2 * 3] = {1, 2, 3, -1, 0.5f, 0.25f};
    float wf[2 * 3] = {0.5f, -0.25f, 2, 1, 1, 1};
    uint16_t w[6];
    for (int i = 0; i < 6; i++)
        w[i] = qv_f32_to_f16(wf[i]);
    float y[4];
    qv_ref_f16_matmul(x, w, y, 2, 2, 3);
    cr_expect_float_eq(y[0], 0.5f - 0.5f + 6.0f, 1e-6);
    cr_expect_float_eq(y[1], 6.0f, 1e-6);
    cr_expect_float_eq(y[2], -0.5f - 0.125f + 0.5f, 1e-6);
    cr_expect_float_eq(y[3], -1.0f + 0.5f + 0.25f, 1e-6);
}

/* L(X, A, B) = sum(G o (Y0 + s (X A^T) B^T)); dL/dY = G. */
static double lora_loss(const float *x, const float *a, const float *b,
                        const float *g, int M, int N, int K, int R, float s)
{
    float *h = calloc((size_t)M * R, 4), *y = calloc((size_t)M * N, 4);
    qv_ref_lora_fwd(x, a, b, h, y, M, N, K, R, s);
    double l = 0;
    for (int i = 0; i < M * N; i++)
        l += (double)g[i] * y[i];
    free(h);
    free(y);
    return l;
}

Test(ref, lora_bwd_matches_finite_differences)
{
    enum { M = 3, N = 5, K = 6, R = 2 };
    const float s = 1.5f;
    qv_rng r = {7};
    float x[M * K], a[R * K], b[N * R], g[M * N];
    float *bufs[] = {x, a, b, g};
    int lens[] = {M * K, R * K, N * R, M * N};
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < lens[j]; i++)
            bufs[j][i] = qv_rng_uniform(&r, -1, 1);
    float h[M * R], y[M * N] = {0}, dh[M * R], da[R * K], db[N * R];
    float dx[M * K] = {0};
    qv_ref_lora_fwd(x, a, b, h, y, M, N, K, R, s);
    qv_ref_lora_bwd(x, a, b, h, g, dh, da, db, dx, M, N, K, R, s);
    const float eps = 1e-2f; /* the loss is bilinear: central differences
                                are exact up to rounding */
    float *params[] = {x, a, b};
    float *grads[] = {dx, da, db};
    int plen[] = {M * K, R * K, N * R};
    for (int p = 0; p < 3; p++)
        for (int i = 0; i < plen[p]; i++) {
            float keep = params[p][i];
            params[p][i] = keep + eps;
            double lp = lora_loss(x, a, b, g, M, N, K, R, s);
            params[p][i] = keep - eps;
            double lm = lora_loss(x, a, b, g, M, N, K, R, s);
            params[p][i] = keep;
            double fd = (lp - lm) / (2 * eps);
            cr_expect(fabs(fd - grads[p][i]) < 1e-3,
                      "param %d[%d]: finite difference %g, backward %g", p, i,
                      fd, grads[p][i]);
        }
}

Test(ref, lora_fwd_accumulates_into_y)
{
    float x[2] = {1, 2}, a[2] = {3, 4}, b[1] = {0.5f}, h[1], y[1] = {10};
    qv_ref_lora_fwd(x, a, b, h, y, 1, 1, 2, 1, 2.0f);
    cr_expect_float_eq(h[0], 11.0f, 1e-6);        /* 1*3 + 2*4 */
    cr_expect_float_eq(y[0], 10.0f + 11.0f, 1e-6); /* + 2 * 11 * 0.5 */
}

Test(ref, half_conversion)
{
    cr_expect_eq(qv_f32_to_f16(1.0f), 0x3c00);
    cr_expect_eq(qv_f32_to_f16(-2.0f), 0xc000);
    cr_expect_eq(qv_f32_to_f16(65504.0f), 0x7bff);
    cr_expect_eq(qv_f32_to_f16(1e6f), 0x7c00);           /* overflow -> inf */
    cr_expect_eq(qv_f32_to_f16(5.9604645e-08f), 0x0001); /* smallest subnormal */
    cr_expect_eq(qv_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    cr_expect_eq(qv_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02); /* tie to even */
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half */
        cr_assert_eq(qv_f32_to_f16(qv_f16_to_f32((uint16_t)h)), h, "0x%04x", h);
}

Test(ref, act_round_q8k_by_hand)
{
    /* one row of two blocks. Block 0: the largest magnitude is -127/64,
     * met first, so iscale = -127 / (-127/64) = 64 and every code is
     * rint(64 x) (ties to even), written back as code / 64. Block 1: all
     * zero stays zero (llama.cpp: d = 0). */
    float x[512] = {0};
    x[0] = -127.0f / 64.0f; /* -> -127 */
    x[1] = 1.0f / 128.0f;   /* 0.5 -> 0 */
    x[2] = 3.0f / 128.0f;   /* 1.5 -> 2 */
    x[3] = 5.0f / 128.0f;   /* 2.5 -> 2 */
    x[4] = -3.0f / 128.0f;  /* -1.5 -> -2 */
    x[5] = 127.0f / 64.0f;  /* the same magnitude, later: 127 */
    x[6] = 1.0f;            /* 64 */
    qv_ref_act_round(x, 1, 512, 3);
    float want[7] = {-127.0f / 64, 0.0f, 2.0f / 64, 2.0f / 64, -2.0f / 64,
                     127.0f / 64, 1.0f};
    for (int i = 0; i < 7; i++)
        cr_expect_eq(x[i], want[i], "x[%d] = %.9g, want %.9g", i, x[i], want[i]);
    for (int i = 256; i < 512; i++)
        cr_expect_eq(x[i], 0.0f);
    /* a positive maximum flips the sign of iscale: -amax still maps to a
     * code of magnitude 127 (the clamp at +127 is reached exactly) */
    float y[256] = {0};
    y[0] = 2.0f;
    y[1] = -2.0f;
    y[2] = 0.75f; /* 0.75 * 63.5 = 47.625 -> 48 */
    qv_ref_act_round(y, 1, 256, 3);
    cr_expect_eq(y[0], 2.0f);
    cr_expect_eq(y[1], -2.0f);
    cr_expect_float_eq(y[2], 48.0f / 63.5f, 1e-7);
}

Test(ref, act_round_half_and_bfloat_by_hand)
{
    float h[6] = {1.0f + 0x1p-11f,     /* tie -> even: 1 */
                  1.0f + 3 * 0x1p-11f, /* tie -> even: 1 + 2^-9 */
                  65519.0f,            /* -> 65504, the largest half */
                  65520.0f,            /* tie at the top -> infinity */
                  0x1p-25f,            /* half of the smallest subnormal: 0 */
                  3 * 0x1p-25f};       /* 1.5 subnormal steps -> 2 */
    qv_ref_act_round(h, 1, 6, 1);
    cr_expect_eq(h[0], 1.0f);
    cr_expect_eq(h[1], 1.0f + 0x1p-9f);
    cr_expect_eq(h[2], 65504.0f);
    cr_expect(isinf(h[3]) && h[3] > 0);
    cr_expect_eq(h[4], 0.0f);
    cr_expect_eq(h[5], 0x1p-23f);
    float b[2] = {1.0f + 0x1p-8f, -(1.0f + 3 * 0x1p-8f)};
    qv_ref_act_round(b, 1, 2, 2);
    cr_expect_eq(b[0], 1.0f);
    cr_expect_eq(b[1], -(1.0f + 0x1p-6f));
    /* and the same as common/half.h's conversion on many values */
    uint64_t r = 12345;
    for (int i = 0; i < 100000; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(r >> 32);
        float v;
        memcpy(&v, &u, 4);
        if (isnan(v))
            continue;
        float w = v;
        qv_ref_act_round(&w, 1, 1, 1);
        float want = qv_f16_to_f32(qv_f32_to_f16(v));
        cr_assert(w == want || (isinf(w) && isinf(want) && (w > 0) == (want > 0)),
                  "%a -> %a, half.h gives %a", (double)v, (double)w, (double)want);
    }
}
