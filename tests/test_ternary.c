/* tests/test_ternary.c — the packed ternary layout (kernels/ternary.h,
 * docs/formats.md): bit positions by hand, round trips, bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/ternary.h"
#include "kernels/verify.h"

Test(ternary, layout_by_hand)
{
    /* weights -1, 0, +1, +1 -> codes 0, 1, 2, 2 at bits 0,2,4,6 = 0xA4;
     * the 12 padding weights are code 1: 0x55555500. */
    int8_t w[4] = {-1, 0, 1, 1};
    uint32_t p[1];
    cr_assert_eq(qv_ternary_pack(w, 1, 4, p, NULL), QV_OK);
    cr_expect_eq(p[0], 0x555555A4u, "got 0x%08x", p[0]);
    /* byte view (little endian): first byte holds weights 0..3 */
    unsigned char bytes[4];
    memcpy(bytes, p, 4);
    cr_expect_eq(bytes[0], 0xA4);
    cr_expect_eq(qv_ternary_get(p, 4, 0, 0), -1);
    cr_expect_eq(qv_ternary_get(p, 4, 0, 2), 1);
    cr_expect_eq(qv_ternary_bytes(3, 17), 3u * 2u * 4u);
}

Test(ternary, round_trip_many_shapes)
{
    int shapes[][2] = {{1, 1}, {3, 15}, {2, 16}, {5, 17}, {7, 255}, {4, 1000}};
    qv_rng r = {1};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], K = shapes[s][1];
        int8_t *w = malloc((size_t)N * K), *back = malloc((size_t)N * K);
        uint32_t *p = malloc(qv_ternary_bytes(N, K));
        for (int i = 0; i < N * K; i++)
            w[i] = (int8_t)((int)(qv_rng_next(&r) % 3) - 1);
        cr_assert_eq(qv_ternary_pack(w, N, K, p, NULL), QV_OK);
        cr_assert_eq(qv_ternary_unpack(p, N, K, back, NULL), QV_OK);
        cr_expect_eq(memcmp(w, back, (size_t)N * K), 0, "N=%d K=%d", N, K);
        for (int i = 0; i < N * K; i++)
            cr_assert_eq(qv_ternary_get(p, K, i / K, i % K), w[i]);
        free(w);
        free(back);
        free(p);
    }
}

Test(ternary, bad_input)
{
    int8_t w[2] = {0, 2};
    uint32_t p[1];
    qv_err e;
    cr_expect_eq(qv_ternary_pack(w, 1, 2, p, &e), QV_ERR_INVALID);
    cr_expect(strstr(e.msg, "W[0][1]") != NULL, "%s", e.msg);
    cr_expect_eq(qv_ternary_pack(w, 0, 2, p, &e), QV_ERR_INVALID);
    int8_t out[16];
    uint32_t bad = 0x55555557u; /* weight 0 has code 3 */
    cr_expect_eq(qv_ternary_unpack(&bad, 1, 16, out, &e), QV_ERR_CORRUPT);
    uint32_t pad = 0x00000055u; /* K = 4, padding weight 4 is code 0 */
    cr_expect_eq(qv_ternary_unpack(&pad, 1, 4, out, &e), QV_ERR_CORRUPT);
}

Test(ternary, absmean_quantisation)
{
    /* mean |w| = (0.2 + 0.4 + 0.6 + 0.0) / 4 = 0.3
     * w / 0.3 = 0.667, -1.333, 2, 0 -> round 1, -1, 2 -> clamp 1, 0 */
    float w[4] = {0.2f, -0.4f, 0.6f, 0.0f};
    int8_t q[4];
    float s;
    cr_assert_eq(qv_ternary_quantize(w, 2, 2, q, &s, NULL), QV_OK);
    cr_expect_float_eq(s, 0.3f, 1e-6);
    int8_t want[4] = {1, -1, 1, 0};
    cr_expect_eq(memcmp(q, want, 4), 0, "%d %d %d %d", q[0], q[1], q[2], q[3]);
    float bad[2] = {1.0f, NAN};
    cr_expect_eq(qv_ternary_quantize(bad, 1, 2, q, &s, NULL), QV_ERR_INVALID);
}
