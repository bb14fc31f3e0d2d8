/* tests/support/ternary_test.h — what the tests of the ternary weight
 * formats (test_tq.c, test_i2s.c) share: a seeded xorshift generator and
 * packing helpers that fail the test on error. Define TT_SEED before
 * including it. */
#ifndef QV_TESTS_TERNARY_TEST_H
#define QV_TESTS_TERNARY_TEST_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/ternary.h"

static uint64_t rng_state = TT_SEED;

static inline uint32_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return (uint32_t)(x >> 32);
}

/* The codes of a packed (N, K) matrix, one a byte (malloc'd). */
static inline int8_t *unpack_all(const uint32_t *packed, int32_t N, int32_t K)
{
    int8_t *w = malloc((size_t)N * (size_t)K);
    cr_assert_not_null(w);
    qv_err e;
    cr_assert_eq(qv_ternary_unpack(packed, N, K, w, &e), QV_OK, "%s", e.msg);
    return w;
}

/* The packed form of (N, K) codes (malloc'd). */
static inline uint32_t *pack_all(const int8_t *w, int32_t N, int32_t K)
{
    uint32_t *p = malloc(qv_ternary_bytes(N, K));
    cr_assert_not_null(p);
    qv_err e;
    cr_assert_eq(qv_ternary_pack(w, N, K, p, &e), QV_OK, "%s", e.msg);
    return p;
}

#endif
