/* kernels/ternary.h — qvac's packed ternary weight layout (see
 * docs/formats.md for the byte-exact description).
 *
 * W (N, K) with values in {-1, 0, +1}: each row is padded to a multiple of
 * 16 weights and stored as ceil(K/16) little-endian uint32 words; weight k
 * of a row lives in word k/16 at bits 2*(k%16) .. 2*(k%16)+1 as the code
 * w + 1 (0 -> -1, 1 -> 0, 2 -> +1; 3 is invalid). Padding weights are code
 * 1 (zero). One f32 scale per tensor multiplies the whole matrix. */
#ifndef QV_TERNARY_H
#define QV_TERNARY_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "kernels/kernel.h"

/* Bytes of a packed (N, K) matrix. */
static inline size_t qv_ternary_bytes(int32_t N, int32_t K)
{
    return (size_t)N * (size_t)qv_ternary_row_words(K) * 4u;
}

/* w (N, K) int8 in {-1,0,1} -> out (N, ceil(K/16)) words. */
qv_status qv_ternary_pack(const int8_t *w, int32_t N, int32_t K, uint32_t *out,
                          qv_err *err);
/* The inverse; rejects code 3 and non-zero padding as corrupt. */
qv_status qv_ternary_unpack(const uint32_t *packed, int32_t N, int32_t K,
                            int8_t *w, qv_err *err);
/* One weight, read from the packed form. */
static inline int qv_ternary_get(const uint32_t *packed, int32_t K, int32_t n,
                                 int32_t k)
{
    uint32_t word = packed[(size_t)n * (size_t)qv_ternary_row_words(K) + (size_t)(k / 16)];
    return (int)((word >> (2 * (k % 16))) & 3u) - 1;
}

/* BitNet b1.58 "absmean" quantisation of f32 weights (N, K):
 * scale = mean|w| (at least 1e-5), w_q = clamp(round(w / scale), -1, 1). */
qv_status qv_ternary_quantize(const float *w, int32_t N, int32_t K,
                              int8_t *wq, float *scale, qv_err *err);

#endif
