/* formats/i2s.c — bitnet.cpp's I2_S tensors <-> qvac's packed ternary
 * layout. See formats/i2s.h and docs/formats.md. */
#include "formats/i2s.h"

#include <math.h>
#include <string.h>

#define QK QV_I2S_BLOCK          /* 128 weights per code block */
#define BLOCK_BYTES (QK / 4)     /* 32 bytes per code block */
#define WORDS_PER_BLOCK (QK / 16) /* qvac words covering one block: 8 */

static const char *const NAME = "I2_S";

/* ---- sizes ------------------------------------------------------------ */

static int mul_ok(size_t a, size_t b, size_t *r)
{
    if (a != 0 && b > (size_t)-1 / a)
        return 0;
    *r = a * b;
    return 1;
}

qv_status qv_i2s_bytes(int32_t N, int32_t K, size_t *nbytes, qv_err *err)
{
    if (!nbytes)
        return qv_fail(err, QV_ERR_INVALID, "%s: NULL size pointer", NAME);
    *nbytes = 0;
    if (N < 1 || K < 1)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: shape (%d, %d) is empty; N and K must be >= 1",
                       NAME, N, K);
    if (K % QK != 0)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: K = %d is not a multiple of %d; bitnet.cpp's I2_S "
                       "matmul reads whole %d-weight blocks per row, so such "
                       "a tensor cannot exist in this format (store it as F16 "
                       "or pad K)", NAME, K, QK, QK);
    size_t codes;
    /* N*K/4 bytes of codes; the packed side, N*(K/16) words of 4 bytes, is
     * the same number of bytes, so one check covers both. */
    if (!mul_ok((size_t)N, (size_t)(K / 4), &codes) ||
        codes > (size_t)-1 - QV_I2S_TAIL_BYTES)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: shape (%d, %d) is too large for this host's "
                       "size_t", NAME, N, K);
    *nbytes = codes + QV_I2S_TAIL_BYTES;
    return QV_OK;
}

/* ---- the tensor scale: f32, little-endian, right after the codes ----- */

static float rd_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
                 ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void wr_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    p[0] = (uint8_t)(u & 0xffu);
    p[1] = (uint8_t)((u >> 8) & 0xffu);
    p[2] = (uint8_t)((u >> 16) & 0xffu);
    p[3] = (uint8_t)(u >> 24);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ---- decode -----------------------------------------------------------
 * Row n starts at byte n*K/4 (K is a multiple of 128, so no block straddles
 * two rows). Block b of a row is 32 bytes; byte m (0..31) of it holds, at
 * bits 7-2g .. 6-2g (g = 0..3), the code of weight 128*b + 32*g + m. */

qv_status qv_i2s_to_ternary(const void *data, size_t nbytes, int32_t N,
                            int32_t K, uint32_t *packed, float *scale,
                            qv_err *err)
{
    size_t total;
    qv_status st = qv_i2s_bytes(N, K, &total, err);
    if (st != QV_OK)
        return st;
    if (!data || !packed || !scale)
        return qv_fail(err, QV_ERR_INVALID, "%s: NULL buffer", NAME);
    if (nbytes != total)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: tensor data is %zu bytes but shape (%d, %d) needs "
                       "exactly %zu (N*K/4 code bytes + a 32-byte tail with "
                       "the f32 scale)", NAME, nbytes, N, K, total);
    const uint8_t *bytes = data;
    size_t code_bytes = total - QV_I2S_TAIL_BYTES;
    float s = rd_f32(bytes + code_bytes);
    if (!isfinite(s))
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: tensor scale at byte %zu (f32 0x%08x) is not "
                       "finite", NAME, code_bytes, (unsigned)f32_bits(s));
    if (s < 0.0f)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: tensor scale at byte %zu is %g; it must be > 0",
                       NAME, code_bytes, (double)s);

    size_t row_bytes = (size_t)(K / 4);
    size_t KW = (size_t)(K / 16);
    int32_t nb = K / QK;
    int all_zero = 1;
    for (int32_t n = 0; n < N; n++) {
        for (int32_t b = 0; b < nb; b++) {
            size_t off = (size_t)n * row_bytes + (size_t)b * BLOCK_BYTES;
            const uint8_t *p = bytes + off;
            uint32_t w[WORDS_PER_BLOCK];
            memset(w, 0, sizeof w);
            for (int m = 0; m < BLOCK_BYTES; m++) {
                unsigned v = p[m];
                /* a code is 3 exactly when both of its bits are set */
                if ((v & (v >> 1) & 0x55u) != 0u) {
                    for (int g = 0; g < 4; g++) {
                        int hi = 7 - 2 * g;
                        if (((v >> (hi - 1)) & 3u) == 3u)
                            return qv_fail(
                                err, QV_ERR_CORRUPT,
                                "%s: byte %zu (0x%02x) bits %d..%d hold the "
                                "invalid code 3 (W[%d][%d]); I2_S codes are "
                                "0, 1, 2 for -1, 0, +1", NAME, off + (size_t)m,
                                v, hi - 1, hi, n, b * QK + 32 * g + m);
                    }
                }
                for (int g = 0; g < 4; g++) {
                    uint32_t code = (v >> (6 - 2 * g)) & 3u;
                    int k = 32 * g + m; /* weight within the block */
                    all_zero &= code == 1u;
                    w[k / 16] |= code << (2 * (k % 16));
                }
            }
            memcpy(packed + (size_t)n * KW + (size_t)b * WORDS_PER_BLOCK, w,
                   sizeof w);
        }
    }
    if (s == 0.0f) {
        if (all_zero)
            return qv_fail(err, QV_ERR_UNSUPPORTED,
                           "%s: every weight is zero and the tensor scale is "
                           "0, so there is no scale to recover (qvac needs a "
                           "scale > 0; store the tensor as zeros in another "
                           "type)", NAME);
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: tensor scale at byte %zu is 0 but the tensor has "
                       "non-zero weights", NAME, code_bytes);
    }
    *scale = s;
    return QV_OK;
}

/* ---- encode ----------------------------------------------------------- */

qv_status qv_ternary_to_i2s(const uint32_t *packed, int32_t N, int32_t K,
                            float scale, void *out, size_t out_bytes,
                            qv_err *err)
{
    size_t total;
    qv_status st = qv_i2s_bytes(N, K, &total, err);
    if (st != QV_OK)
        return st;
    if (!packed || !out)
        return qv_fail(err, QV_ERR_INVALID, "%s: NULL buffer", NAME);
    if (out_bytes != total)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: output is %zu bytes but shape (%d, %d) needs "
                       "exactly %zu", NAME, out_bytes, N, K, total);
    if (!isfinite(scale) || !(scale > 0.0f))
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: scale %g must be finite and > 0", NAME,
                       (double)scale);

    uint8_t *bytes = out;
    size_t row_bytes = (size_t)(K / 4);
    size_t KW = (size_t)(K / 16);
    int32_t nb = K / QK;
    for (int32_t n = 0; n < N; n++) {
        for (int32_t b = 0; b < nb; b++) {
            const uint32_t *w =
                packed + (size_t)n * KW + (size_t)b * WORDS_PER_BLOCK;
            uint8_t c[QK];
            for (int k = 0; k < QK; k++) {
                uint32_t code = (w[k / 16] >> (2 * (k % 16))) & 3u;
                if (code == 3u)
                    return qv_fail(err, QV_ERR_CORRUPT,
                                   "%s: packed W[%d][%d] holds the invalid "
                                   "code 3", NAME, n, b * QK + k);
                c[k] = (uint8_t)code;
            }
            uint8_t *p = bytes + (size_t)n * row_bytes + (size_t)b * BLOCK_BYTES;
            for (int m = 0; m < BLOCK_BYTES; m++)
                p[m] = (uint8_t)((c[m] << 6) | (c[32 + m] << 4) |
                                 (c[64 + m] << 2) | c[96 + m]);
        }
    }
    uint8_t *tail = bytes + (total - QV_I2S_TAIL_BYTES);
    wr_f32(tail, scale);
    memset(tail + 4, 0, QV_I2S_TAIL_BYTES - 4);
    return QV_OK;
}
