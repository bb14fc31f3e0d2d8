/* formats/tq.c — TQ2_0 / TQ1_0 (llama.cpp ternary blocks) <-> qvac's packed
 * ternary layout. See formats/tq.h and docs/formats.md. */
#include "formats/tq.h"

#include <math.h>
#include <string.h>

#include "common/half.h"

#define QK QV_TQ_QK_K
#define WORDS_PER_BLOCK (QK / 16) /* qvac words covering one block: 16 */

/* ---- sizes ------------------------------------------------------------ */

static int mul_ok(size_t a, size_t b, size_t *r)
{
    if (a != 0 && b > (size_t)-1 / a)
        return 0;
    *r = a * b;
    return 1;
}

static size_t tq_bytes(int32_t N, int32_t K, size_t block_bytes)
{
    size_t t;
    if (N < 1 || K < 1 || K % QK != 0)
        return 0;
    if (!mul_ok((size_t)N, (size_t)(K / QK), &t) || !mul_ok(t, block_bytes, &t))
        return 0;
    return t;
}

size_t qv_tq2_0_bytes(int32_t N, int32_t K)
{
    return tq_bytes(N, K, QV_TQ2_0_BLOCK_BYTES);
}

size_t qv_tq1_0_bytes(int32_t N, int32_t K)
{
    return tq_bytes(N, K, QV_TQ1_0_BLOCK_BYTES);
}

/* Shape checks shared by all four conversions; *total = exact byte size.
 * The packed side, N * (K/16) words, is checked too: it is no larger than
 * the TQ side in blocks, but its byte count must also fit a size_t. */
static qv_status check_shape(const char *name, int32_t N, int32_t K,
                             size_t block_bytes, size_t *total, qv_err *err)
{
    if (N < 1 || K < 1)
        return qv_fail(err, QV_ERR_INVALID, "%s: shape (%d, %d) is empty",
                       name, N, K);
    if (K % QK != 0)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: K = %d is not a multiple of %d; %s stores whole "
                       "256-weight blocks per row, so such a tensor cannot "
                       "exist in this format", name, K, QK, name);
    size_t words, pbytes;
    *total = tq_bytes(N, K, block_bytes);
    if (*total == 0 || !mul_ok((size_t)N, (size_t)(K / 16), &words) ||
        !mul_ok(words, 4, &pbytes))
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: shape (%d, %d) is too large for this host's "
                       "size_t", name, N, K);
    return QV_OK;
}

/* ---- the per-block scale d ------------------------------------------ */

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xffu);
    p[1] = (uint8_t)(v >> 8);
}

typedef struct dstate {
    int have;      /* a reference d has been seen */
    uint16_t bits; /* its f16 bits */
    size_t block;  /* the block it came from */
} dstate;

/* Before the codes: d must be finite and not negative. */
static qv_status d_value(const char *name, uint16_t bits, size_t blk,
                         qv_err *err)
{
    float d = qv_f16_to_f32(bits);
    if (!isfinite(d))
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s block %zu: scale d (f16 0x%04x) is not finite",
                       name, blk, bits);
    if (d < 0.0f)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s block %zu: scale d = %g is negative", name, blk,
                       (double)d);
    return QV_OK;
}

/* After the codes: d = 0 only on an all-zero block; otherwise d must be
 * bit-identical to the first non-zero d. */
static qv_status d_consistent(const char *name, uint16_t bits, int all_zero,
                              size_t blk, dstate *st, qv_err *err)
{
    float d = qv_f16_to_f32(bits);
    if (d == 0.0f) {
        if (all_zero)
            return QV_OK;
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s block %zu: scale d is 0 but the block has non-zero "
                       "weights", name, blk);
    }
    if (!st->have) {
        st->have = 1;
        st->bits = bits;
        st->block = blk;
        return QV_OK;
    }
    if (bits != st->bits)
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "%s block %zu: scale d = %g (f16 0x%04x) differs from "
                       "block %zu's d = %g (f16 0x%04x); qvac holds one scale "
                       "per ternary tensor (as BitNet b1.58 does), so a tensor "
                       "with per-block scales cannot be converted", name, blk,
                       (double)d, bits, st->block,
                       (double)qv_f16_to_f32(st->bits), st->bits);
    return QV_OK;
}

static qv_status d_final(const char *name, const dstate *st, float *scale,
                         qv_err *err)
{
    if (!st->have)
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "%s: every block is all-zero with d = 0, so the tensor "
                       "has no scale to recover", name);
    *scale = qv_f16_to_f32(st->bits);
    return QV_OK;
}

static qv_status scale_to_d(const char *name, float scale, uint16_t *d,
                            qv_err *err)
{
    if (!isfinite(scale) || !(scale > 0.0f))
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: scale %g must be finite and > 0", name,
                       (double)scale);
    uint16_t h = qv_f32_to_f16(scale);
    float back = qv_f16_to_f32(h);
    if (!isfinite(back) || !(back > 0.0f))
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: scale %g is outside the range of an f16 d "
                       "(it rounds to %g)", name, (double)scale, (double)back);
    *d = h;
    return QV_OK;
}

/* Codes of one 256-weight block from qvac words (w[0..15]); rejects 3. */
static qv_status block_codes(const char *name, const uint32_t *w, int32_t n,
                             int32_t b, uint8_t c[QK], qv_err *err)
{
    for (int i = 0; i < QK; i++) {
        uint32_t code = (w[i / 16] >> (2 * (i % 16))) & 3u;
        if (code == 3u)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "%s: packed W[%d][%d] holds the invalid code 3",
                           name, n, b * QK + i);
        c[i] = (uint8_t)code;
    }
    return QV_OK;
}

/* What both decoders check before reading a byte: shape, buffers, and a
 * tensor of exactly the size the shape needs. */
static qv_status decode_begin(const char *name, int32_t N, int32_t K,
                              size_t block_bytes, const uint8_t *data,
                              size_t nbytes, const uint32_t *packed,
                              const float *scale, qv_err *err)
{
    size_t total;
    qv_status st = check_shape(name, N, K, block_bytes, &total, err);
    if (st != QV_OK)
        return st;
    if (!data || !packed || !scale)
        return qv_fail(err, QV_ERR_INVALID, "%s: NULL buffer", name);
    if (nbytes != total)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: tensor data is %zu bytes but shape (%d, %d) needs "
                       "exactly %zu", name, nbytes, N, K, total);
    return QV_OK;
}

/* ---- TQ2_0 -----------------------------------------------------------
 * block: qs[64] then d. Byte p = 32*j + m (j = 0, 1; m = 0..31) holds, at
 * bits 2l..2l+1 (l = 0..3), the code q+1 of weight 128*j + 32*l + m. */

static int tq2_weight(int p, int l)
{
    return 128 * (p / 32) + 32 * l + p % 32;
}

qv_status qv_tq2_0_to_ternary(const uint8_t *data, size_t nbytes, int32_t N,
                              int32_t K, uint32_t *packed, float *scale,
                              qv_err *err)
{
    static const char *name = "TQ2_0";
    qv_status st = decode_begin(name, N, K, QV_TQ2_0_BLOCK_BYTES, data, nbytes, packed,
                                scale, err);
    if (st != QV_OK)
        return st;
    int32_t nb = K / QK;
    size_t KW = (size_t)(K / 16);
    dstate ds = {0, 0, 0};
    for (int32_t n = 0; n < N; n++) {
        for (int32_t b = 0; b < nb; b++) {
            size_t blk = (size_t)n * (size_t)nb + (size_t)b;
            const uint8_t *p = data + blk * QV_TQ2_0_BLOCK_BYTES;
            uint16_t d = rd16(p + QK / 4);
            if ((st = d_value(name, d, blk, err)) != QV_OK)
                return st;
            uint32_t w[WORDS_PER_BLOCK];
            memset(w, 0, sizeof w);
            int all_zero = 1;
            for (int i = 0; i < QK / 4; i++) {
                for (int l = 0; l < 4; l++) {
                    uint32_t code = (p[i] >> (2 * l)) & 3u;
                    int k = tq2_weight(i, l);
                    if (code == 3u)
                        return qv_fail(err, QV_ERR_CORRUPT,
                                       "%s block %zu: qs[%d] bits %d..%d hold "
                                       "the invalid code 3 (W[%d][%d])", name,
                                       blk, i, 2 * l, 2 * l + 1, n,
                                       b * QK + k);
                    all_zero &= code == 1u;
                    w[k / 16] |= code << (2 * (k % 16));
                }
            }
            if ((st = d_consistent(name, d, all_zero, blk, &ds, err)) != QV_OK)
                return st;
            memcpy(packed + (size_t)n * KW + (size_t)b * WORDS_PER_BLOCK, w,
                   sizeof w);
        }
    }
    return d_final(name, &ds, scale, err);
}

/* What both encoders check before writing: shape, buffers, exact output
 * size, and a scale that fits an f16 d. */
static qv_status encode_begin(const char *name, int32_t N, int32_t K,
                              size_t block_bytes, const uint32_t *packed,
                              const uint8_t *out, size_t out_bytes, float scale,
                              uint16_t *d, qv_err *err)
{
    size_t total;
    qv_status st = check_shape(name, N, K, block_bytes, &total, err);
    if (st != QV_OK)
        return st;
    if (!packed || !out)
        return qv_fail(err, QV_ERR_INVALID, "%s: NULL buffer", name);
    if (out_bytes != total)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: output is %zu bytes but shape (%d, %d) needs "
                       "exactly %zu", name, out_bytes, N, K, total);
    return scale_to_d(name, scale, d, err);
}

qv_status qv_ternary_to_tq2_0(const uint32_t *packed, int32_t N, int32_t K,
                              float scale, uint8_t *out, size_t out_bytes,
                              qv_err *err)
{
    static const char *name = "TQ2_0";
    uint16_t d;
    qv_status st = encode_begin(name, N, K, QV_TQ2_0_BLOCK_BYTES, packed, out, out_bytes,
                                scale, &d, err);
    if (st != QV_OK)
        return st;
    int32_t nb = K / QK;
    size_t KW = (size_t)(K / 16);
    uint8_t c[QK];
    for (int32_t n = 0; n < N; n++) {
        for (int32_t b = 0; b < nb; b++) {
            size_t blk = (size_t)n * (size_t)nb + (size_t)b;
            const uint32_t *w = packed + (size_t)n * KW + (size_t)b * WORDS_PER_BLOCK;
            if ((st = block_codes(name, w, n, b, c, err)) != QV_OK)
                return st;
            uint8_t *p = out + blk * QV_TQ2_0_BLOCK_BYTES;
            for (int i = 0; i < QK / 4; i++) {
                unsigned v = 0;
                for (int l = 0; l < 4; l++)
                    v |= (unsigned)c[tq2_weight(i, l)] << (2 * l);
                p[i] = (uint8_t)v;
            }
            wr16(p + QK / 4, d);
        }
    }
    return QV_OK;
}

/* ---- TQ1_0 -----------------------------------------------------------
 * block: qs[48], qh[4], d. A byte stores a 5-trit number
 * v = t0*81 + t1*27 + t2*9 + t3*3 + t4 (trit = code q+1) as
 * ceil(v * 256 / 243); trit n is read back as ((uint8_t)(byte * 3^n) * 3) >> 8.
 *   qs[m],      m = 0..31: trit n is weight      32*n + m   (0..159)
 *   qs[32 + m], m = 0..15: trit n is weight 160 + 16*n + m  (160..239)
 *   qh[j],      j = 0..3 : trit n (n < 4) is weight 240 + 4*n + j, t4 = 0 */

static const uint8_t pow3[5] = {1, 3, 9, 27, 81};

static unsigned tq1_trit(uint8_t byte, int n)
{
    uint8_t q = (uint8_t)(byte * pow3[n]);
    return ((unsigned)q * 3u) >> 8;
}

static uint8_t tq1_byte(unsigned v) /* v in 0..242 */
{
    return (uint8_t)((v * 256u + 242u) / 243u);
}

/* Weight (within the block) of trit n of byte i (0..51, qh = 48..51). */
static int tq1_weight(int i, int n)
{
    if (i < 32)
        return 32 * n + i;
    if (i < 48)
        return 160 + 16 * n + (i - 32);
    return 240 + 4 * n + (i - 48);
}

qv_status qv_tq1_0_to_ternary(const uint8_t *data, size_t nbytes, int32_t N,
                              int32_t K, uint32_t *packed, float *scale,
                              qv_err *err)
{
    static const char *name = "TQ1_0";
    qv_status st = decode_begin(name, N, K, QV_TQ1_0_BLOCK_BYTES, data, nbytes, packed,
                                scale, err);
    if (st != QV_OK)
        return st;
    int32_t nb = K / QK;
    size_t KW = (size_t)(K / 16);
    dstate ds = {0, 0, 0};
    for (int32_t n = 0; n < N; n++) {
        for (int32_t b = 0; b < nb; b++) {
            size_t blk = (size_t)n * (size_t)nb + (size_t)b;
            const uint8_t *p = data + blk * QV_TQ1_0_BLOCK_BYTES;
            uint16_t d = rd16(p + 52);
            if ((st = d_value(name, d, blk, err)) != QV_OK)
                return st;
            uint32_t w[WORDS_PER_BLOCK];
            memset(w, 0, sizeof w);
            int all_zero = 1;
            for (int i = 0; i < 52; i++) {
                unsigned t[5], v = 0;
                for (int t_n = 0; t_n < 5; t_n++) {
                    t[t_n] = tq1_trit(p[i], t_n); /* always 0..2 */
                    v = v * 3u + t[t_n];
                }
                int is_qh = i >= 48;
                if (tq1_byte(v) != p[i] || (is_qh && t[4] != 0u))
                    return qv_fail(err, QV_ERR_CORRUPT,
                                   "%s block %zu: %s[%d] = 0x%02x is not a "
                                   "canonical base-3 byte (llama.cpp never "
                                   "writes it)", name, blk,
                                   is_qh ? "qh" : "qs", is_qh ? i - 48 : i,
                                   p[i]);
                for (int t_n = 0; t_n < (is_qh ? 4 : 5); t_n++) {
                    int k = tq1_weight(i, t_n);
                    all_zero &= t[t_n] == 1u;
                    w[k / 16] |= (uint32_t)t[t_n] << (2 * (k % 16));
                }
            }
            if ((st = d_consistent(name, d, all_zero, blk, &ds, err)) != QV_OK)
                return st;
            memcpy(packed + (size_t)n * KW + (size_t)b * WORDS_PER_BLOCK, w,
                   sizeof w);
        }
    }
    return d_final(name, &ds, scale, err);
}

qv_status qv_ternary_to_tq1_0(const uint32_t *packed, int32_t N, int32_t K,
                              float scale, uint8_t *out, size_t out_bytes,
                              qv_err *err)
{
    static const char *name = "TQ1_0";
    uint16_t d;
    qv_status st = encode_begin(name, N, K, QV_TQ1_0_BLOCK_BYTES, packed, out, out_bytes,
                                scale, &d, err);
    if (st != QV_OK)
        return st;
    int32_t nb = K / QK;
    size_t KW = (size_t)(K / 16);
    uint8_t c[QK];
    for (int32_t n = 0; n < N; n++) {
        for (int32_t b = 0; b < nb; b++) {
            size_t blk = (size_t)n * (size_t)nb + (size_t)b;
            const uint32_t *w = packed + (size_t)n * KW + (size_t)b * WORDS_PER_BLOCK;
            if ((st = block_codes(name, w, n, b, c, err)) != QV_OK)
                return st;
            uint8_t *p = out + blk * QV_TQ1_0_BLOCK_BYTES;
            for (int i = 0; i < 52; i++) {
                unsigned v = 0;
                for (int t_n = 0; t_n < 5; t_n++)
                    v = v * 3u + (i < 48 || t_n < 4 ? c[tq1_weight(i, t_n)] : 0u);
                p[i] = tq1_byte(v);
            }
            wr16(p + 52, d);
        }
    }
    return QV_OK;
}
