/* kernels/ternary.c — packing, unpacking and absmean quantisation of
 * ternary weights on the host. */
#include "kernels/ternary.h"

#include <math.h>
#include <string.h>

qv_status qv_ternary_pack(const int8_t *w, int32_t N, int32_t K, uint32_t *out,
                          qv_err *err)
{
    if (N < 1 || K < 1)
        return qv_fail(err, QV_ERR_INVALID, "ternary pack: shape (%d, %d) is empty",
                       N, K);
    int32_t KW = qv_ternary_row_words(K);
    for (int32_t n = 0; n < N; n++) {
        for (int32_t j = 0; j < KW; j++) {
            uint32_t word = 0;
            for (int32_t i = 0; i < 16; i++) {
                int32_t k = j * 16 + i;
                uint32_t code = 1; /* padding is zero */
                if (k < K) {
                    int v = w[(size_t)n * (size_t)K + (size_t)k];
                    if (v < -1 || v > 1)
                        return qv_fail(err, QV_ERR_INVALID,
                                       "ternary pack: W[%d][%d] = %d is not "
                                       "in {-1, 0, +1}", n, k, v);
                    code = (uint32_t)(v + 1);
                }
                word |= code << (2 * i);
            }
            out[(size_t)n * (size_t)KW + (size_t)j] = word;
        }
    }
    return QV_OK;
}

qv_status qv_ternary_unpack(const uint32_t *packed, int32_t N, int32_t K,
                            int8_t *w, qv_err *err)
{
    if (N < 1 || K < 1)
        return qv_fail(err, QV_ERR_INVALID,
                       "ternary unpack: shape (%d, %d) is empty", N, K);
    int32_t KW = qv_ternary_row_words(K);
    for (int32_t n = 0; n < N; n++) {
        for (int32_t j = 0; j < KW; j++) {
            uint32_t word = packed[(size_t)n * (size_t)KW + (size_t)j];
            for (int32_t i = 0; i < 16; i++) {
                int32_t k = j * 16 + i;
                uint32_t code = (word >> (2 * i)) & 3u;
                if (code == 3u)
                    return qv_fail(err, QV_ERR_CORRUPT,
                                   "ternary unpack: row %d word %d holds the "
                                   "invalid code 3", n, j);
                if (k >= K) {
                    if (code != 1u)
                        return qv_fail(err, QV_ERR_CORRUPT,
                                       "ternary unpack: row %d padding weight "
                                       "%d is not zero", n, k);
                    continue;
                }
                w[(size_t)n * (size_t)K + (size_t)k] = (int8_t)((int)code - 1);
            }
        }
    }
    return QV_OK;
}

qv_status qv_ternary_quantize(const float *w, int32_t N, int32_t K,
                              int8_t *wq, float *scale, qv_err *err)
{
    if (N < 1 || K < 1)
        return qv_fail(err, QV_ERR_INVALID,
                       "ternary quantize: shape (%d, %d) is empty", N, K);
    size_t n = (size_t)N * (size_t)K;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(w[i]))
            return qv_fail(err, QV_ERR_INVALID,
                           "ternary quantize: weight %zu is not finite", i);
        sum += fabs((double)w[i]);
    }
    float s = (float)(sum / (double)n);
    if (s < 1e-5f)
        s = 1e-5f;
    for (size_t i = 0; i < n; i++) {
        float r = roundf(w[i] / s);
        wq[i] = (int8_t)(r > 1.0f ? 1 : r < -1.0f ? -1 : (int)r);
    }
    *scale = s;
    return QV_OK;
}
