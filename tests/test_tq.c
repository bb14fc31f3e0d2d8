/* tests/test_tq.c — TQ2_0 / TQ1_0 <-> qvac packed ternary (formats/tq.c).
 *
 * The expected bytes here are written by hand or by test-local ports of
 * llama.cpp's reference functions (quantize_row_tq{1,2}_0_ref and
 * dequantize_row_tq{1,2}_0 in ggml/src/ggml-quants.c), never by the
 * encoder under test. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "formats/tq.h"
#include "kernels/ternary.h"
#define TT_SEED 0x9e3779b97f4a7c15ull
#include "tests/support/ternary_test.h"

/* ---- helpers -------------------------------------------------------- */

/* llama.cpp's TQ1_0 byte: ceil(v * 256 / 243), v = 5-trit number. */
static uint8_t llama_tq1_byte(unsigned v)
{
    return (uint8_t)((v * 256u + (243u - 1u)) / 243u);
}

/* ---- independent decoders: direct transcriptions of llama.cpp's
 * dequantize_row_tq2_0 / dequantize_row_tq1_0, producing xi - 1 in
 * {-1,0,1} (row-major over all blocks) and the per-block d as float. ----- */

static void ref_dequant_tq2_0(const uint8_t *x, int64_t nblocks, int8_t *y,
                              float *d)
{
    for (int64_t i = 0; i < nblocks; ++i) {
        const uint8_t *qs = x + i * 66;
        d[i] = qv_f16_to_f32((uint16_t)(qs[64] | (qs[65] << 8)));
        for (size_t j = 0; j < 64; j += 32)
            for (size_t l = 0; l < 4; ++l)
                for (size_t m = 0; m < 32; ++m) {
                    int8_t q = (int8_t)((qs[j + m] >> (l * 2)) & 3);
                    *y++ = (int8_t)(q - 1);
                }
    }
}

static void ref_dequant_tq1_0(const uint8_t *x, int64_t nblocks, int8_t *y,
                              float *d)
{
    const uint8_t pow3[6] = {1, 3, 9, 27, 81, 243};
    for (int64_t i = 0; i < nblocks; ++i) {
        const uint8_t *qs = x + i * 54; /* qs[48] */
        const uint8_t *qh = qs + 48;    /* qh[4]  */
        d[i] = qv_f16_to_f32((uint16_t)(qs[52] | (qs[53] << 8)));
        for (size_t j = 0; j < 48 - 48 % 32; j += 32)
            for (size_t n = 0; n < 5; ++n)
                for (size_t m = 0; m < 32; ++m) {
                    uint8_t q = (uint8_t)(qs[j + m] * pow3[n]);
                    int16_t xi = (int16_t)(((uint16_t)q * 3) >> 8);
                    *y++ = (int8_t)(xi - 1);
                }
        for (size_t j = 48 - 48 % 32; j < 48; j += 16)
            for (size_t n = 0; n < 5; ++n)
                for (size_t m = 0; m < 16; ++m) {
                    uint8_t q = (uint8_t)(qs[j + m] * pow3[n]);
                    int16_t xi = (int16_t)(((uint16_t)q * 3) >> 8);
                    *y++ = (int8_t)(xi - 1);
                }
        for (size_t n = 0; n < 4; ++n)
            for (size_t j = 0; j < 4; ++j) {
                uint8_t q = (uint8_t)(qh[j] * pow3[n]);
                int16_t xi = (int16_t)(((uint16_t)q * 3) >> 8);
                *y++ = (int8_t)(xi - 1);
            }
    }
}

/* ---- test-local ports of llama.cpp's quantize_row_tq{2,1}_0_ref ------- */

static void ref_quant_tq2_0(const float *x, uint8_t *y, int64_t k)
{
    for (int64_t i = 0; i < k / 256; i++) {
        uint8_t *qs = y + i * 66;
        float amax = 0.0f;
        for (int j = 0; j < 256; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = qv_f32_to_f16(d);
        qs[64] = (uint8_t)(h & 0xff);
        qs[65] = (uint8_t)(h >> 8);
        for (size_t j = 0; j < 64; j += 32) {
            for (size_t m = 0; m < 32; ++m) {
                uint8_t q = 0;
                for (size_t n = 0; n < 4; ++n) {
                    int xi = (int)lroundf(x[m + n * 32] * id) + 1;
                    q = (uint8_t)(q + ((xi & 3) << (2 * n)));
                }
                qs[j + m] = q;
            }
            x += 4 * 32;
        }
    }
}

static void ref_quant_tq1_0(const float *x, uint8_t *y, int64_t k)
{
    for (int64_t i = 0; i < k / 256; i++) {
        uint8_t *qs = y + i * 54, *qh = qs + 48;
        float amax = 0.0f;
        for (int j = 0; j < 256; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = qv_f32_to_f16(d);
        qs[52] = (uint8_t)(h & 0xff);
        qs[53] = (uint8_t)(h >> 8);
        for (size_t j = 0; j < 48 - 48 % 32; j += 32) {
            for (size_t m = 0; m < 32; ++m) {
                uint8_t q = 0;
                for (size_t n = 0; n < 5; ++n) {
                    int xi = (int)lroundf(x[m + n * 32] * id) + 1;
                    q = (uint8_t)(q * 3 + xi);
                }
                qs[j + m] = (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243);
            }
            x += 5 * 32;
        }
        for (size_t j = 48 - 48 % 32; j < 48; j += 16) {
            for (size_t m = 0; m < 16; ++m) {
                uint8_t q = 0;
                for (size_t n = 0; n < 5; ++n) {
                    int xi = (int)lroundf(x[m + n * 16] * id) + 1;
                    q = (uint8_t)(q * 3 + xi);
                }
                qs[j + m] = (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243);
            }
            x += 5 * 16;
        }
        for (size_t j = 0; j < 4; ++j) {
            uint8_t q = 0;
            for (size_t m = 0; m < 4; ++m) {
                int xi = (int)lroundf(x[j + m * 4] * id) + 1;
                q = (uint8_t)(q * 3 + xi);
            }
            q = (uint8_t)(q * 3);
            qh[j] = (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243);
        }
        x += 16;
    }
}

/* Random valid blocks written the way llama.cpp would, with one common d. */
static void random_tq2_0(uint8_t *data, int64_t nblocks, uint16_t d)
{
    for (int64_t i = 0; i < nblocks; i++) {
        uint8_t *p = data + i * 66;
        for (int j = 0; j < 64; j++) {
            unsigned v = 0;
            for (int l = 0; l < 4; l++)
                v |= (rnd() % 3u) << (2 * l);
            p[j] = (uint8_t)v;
        }
        p[64] = (uint8_t)(d & 0xff);
        p[65] = (uint8_t)(d >> 8);
    }
}

static void random_tq1_0(uint8_t *data, int64_t nblocks, uint16_t d)
{
    for (int64_t i = 0; i < nblocks; i++) {
        uint8_t *p = data + i * 54;
        for (int j = 0; j < 48; j++)
            p[j] = llama_tq1_byte(rnd() % 243u);
        for (int j = 48; j < 52; j++)
            p[j] = llama_tq1_byte((rnd() % 81u) * 3u);
        p[52] = (uint8_t)(d & 0xff);
        p[53] = (uint8_t)(d >> 8);
    }
}

/* ---- sizes ---------------------------------------------------------- */

Test(tq, sizes)
{
    cr_assert_eq(qv_tq2_0_bytes(1, 256), 66u);
    cr_assert_eq(qv_tq1_0_bytes(1, 256), 54u);
    cr_assert_eq(qv_tq2_0_bytes(3, 768), 9u * 66u);
    cr_assert_eq(qv_tq1_0_bytes(3, 768), 9u * 54u);
    cr_assert_eq(qv_tq2_0_bytes(1, 255), 0u);
    cr_assert_eq(qv_tq2_0_bytes(1, 257), 0u);
    cr_assert_eq(qv_tq1_0_bytes(0, 256), 0u);
    cr_assert_eq(qv_tq1_0_bytes(-1, 256), 0u);
    cr_assert_eq(qv_tq2_0_bytes(4, -256), 0u);
}

/* ---- hand-made TQ2_0 ------------------------------------------------ */

Test(tq2_0, hand_made_block)
{
    uint8_t blk[66];
    memset(blk, 0x55, 64); /* every code 1: all weights 0 */
    /* qs[0] = 0b10'01'00'10: l=0 code 2 -> W[0] = +1, l=1 code 0 ->
     * W[32] = -1, l=2 code 1 -> W[64] = 0, l=3 code 2 -> W[96] = +1. */
    blk[0] = 0x92;
    /* qs[33] (chunk j=1, m=1) = 0b01'10'00'00: W[129] = -1, W[161] = -1,
     * W[193] = +1, W[225] = 0. */
    blk[33] = 0x60;
    /* qs[63] (j=1, m=31) = 0b00'01'01'01: W[255] = -1, the rest 0. */
    blk[63] = 0x15;
    blk[64] = 0x00; /* d = 0x3c00 = 1.0, little endian */
    blk[65] = 0x3c;

    uint32_t packed[16];
    float scale = 0.0f;
    qv_err e;
    cr_assert_eq(qv_tq2_0_to_ternary(blk, sizeof blk, 1, 256, packed, &scale, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(scale, 1.0f);

    int8_t want[256] = {0};
    want[0] = 1;
    want[32] = -1;
    want[96] = 1;
    want[129] = -1;
    want[161] = -1;
    want[193] = 1;
    want[255] = -1;
    int8_t *w = unpack_all(packed, 1, 256);
    for (int k = 0; k < 256; k++)
        cr_assert_eq(w[k], want[k], "W[%d] = %d, want %d", k, w[k], want[k]);
    free(w);

    /* qvac words, literally: word 0 = W[0..15]: W[0] = +1 (code 2), rest 0. */
    cr_assert_eq(packed[0], 0x55555556u);
    cr_assert_eq(packed[2], 0x55555554u);  /* W[32] = -1 -> code 0 */
    cr_assert_eq(packed[6], 0x55555556u);  /* W[96] = +1 */
    cr_assert_eq(packed[8], 0x55555551u);  /* W[129] = -1 at bits 2..3 */
    cr_assert_eq(packed[15], 0x15555555u); /* W[255] = -1 at bits 30..31 */
    cr_assert_eq(packed[1], 0x55555555u);
}

Test(tq2_0, hand_made_two_rows_two_blocks)
{
    /* (2, 512): 4 blocks; block b of row n is at byte (2n + b) * 66. Put
     * one +1 at byte 5 bits 4..5 of each block: weight 32*2 + 5 = 69 of the
     * block, i.e. W[n][256*b + 69]; d = 0x2e66 everywhere. */
    uint8_t data[4 * 66];
    for (int i = 0; i < 4; i++) {
        memset(data + i * 66, 0x55, 64);
        data[i * 66 + 5] = (uint8_t)(0x55 & ~0x30) | 0x20;
        data[i * 66 + 64] = 0x66;
        data[i * 66 + 65] = 0x2e;
    }
    data[3 * 66 + 0] = 0x54; /* last block, qs[0] l=0: W[1][256] = -1 */
    uint32_t packed[2 * 32];
    float scale;
    qv_err e;
    cr_assert_eq(qv_tq2_0_to_ternary(data, sizeof data, 2, 512, packed, &scale, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(scale, qv_f16_to_f32(0x2e66));
    int8_t *w = unpack_all(packed, 2, 512);
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < 512; k++) {
            int want = (k % 256 == 69) ? 1 : (n == 1 && k == 256) ? -1 : 0;
            cr_assert_eq(w[n * 512 + k], want, "W[%d][%d]", n, k);
        }
    free(w);
}

/* ---- hand-made TQ1_0 ------------------------------------------------ */

Test(tq1_0, hand_made_block)
{
    uint8_t blk[54];
    /* all-zero 5-trit byte: v = 121 -> ceil(121*256/243) = 128 = 0x80;
     * all-zero qh byte: v = 40*3 = 120 -> ceil(120*256/243) = 127 = 0x7f. */
    memset(blk, 0x80, 48);
    memset(blk + 48, 0x7f, 4);
    /* qs[0]: weights 0, 32, 64, 96, 128 = (+1,-1,0,0,+1), codes
     * (2,0,1,1,2): v = 162+0+9+3+2 = 176 -> ceil(45056/243) = 186. */
    blk[0] = 186;
    /* qs[1]: weights 1, 33, 65, 97, 129 all -1: v = 0 -> 0. */
    blk[1] = 0;
    /* qs[31]: weights 31, 63, 95, 127, 159 all +1: v = 242 -> 255. */
    blk[31] = 255;
    /* qs[37] (second part, m = 5): weights 165, 181, 197, 213, 229 =
     * (-1,+1,+1,0,-1), codes (0,2,2,1,0): v = 54+18+3 = 75 -> 80. */
    blk[37] = 80;
    /* qh[2]: weights 242, 246, 250, 254 = (+1,0,-1,+1), codes (2,1,0,2):
     * v = (54+9+0+2)*3 = 195 -> ceil(49920/243) = 206. */
    blk[50] = 206;
    blk[52] = 0x00; /* d = 0x3800 = 0.5 */
    blk[53] = 0x38;

    int8_t want[256] = {0};
    want[0] = 1; want[32] = -1; want[128] = 1;
    want[1] = want[33] = want[65] = want[97] = want[129] = -1;
    want[31] = want[63] = want[95] = want[127] = want[159] = 1;
    want[165] = -1; want[181] = 1; want[197] = 1; want[229] = -1;
    want[242] = 1; want[250] = -1; want[254] = 1;

    uint32_t packed[16];
    float scale = 0.0f;
    qv_err e;
    cr_assert_eq(qv_tq1_0_to_ternary(blk, sizeof blk, 1, 256, packed, &scale, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(scale, 0.5f);
    int8_t *w = unpack_all(packed, 1, 256);
    for (int k = 0; k < 256; k++)
        cr_assert_eq(w[k], want[k], "W[%d] = %d, want %d", k, w[k], want[k]);
    free(w);
    /* word 0 = W[0..15]: W[0] = +1 (code 2), W[1] = -1 (code 0). */
    cr_assert_eq(packed[0], 0x55555552u);

    /* The test's own llama.cpp-style decoder agrees with the hand values. */
    int8_t y[256];
    float d;
    ref_dequant_tq1_0(blk, 1, y, &d);
    cr_assert_eq(memcmp(y, want, 256), 0);
    cr_assert_eq(d, 0.5f);
}

/* Every one of the 243 canonical bytes in qs[0] decodes to its digits. */
Test(tq1_0, every_canonical_byte)
{
    uint8_t blk[54];
    memset(blk, 0x80, 48);
    memset(blk + 48, 0x7f, 4);
    blk[52] = 0x00;
    blk[53] = 0x3c;
    for (unsigned v = 0; v < 243; v++) {
        blk[0] = llama_tq1_byte(v);
        uint32_t packed[16];
        float scale;
        qv_err e;
        qv_status st = qv_tq1_0_to_ternary(blk, sizeof blk, 1, 256, packed, &scale, &e);
        cr_assert_eq(st, QV_OK, "v = %u: %s", v, e.msg);
        unsigned rest = v;
        for (int n = 4; n >= 0; n--) {
            int want = (int)(rest % 3u) - 1;
            rest /= 3u;
            cr_assert_eq(qv_ternary_get(packed, 256, 0, 32 * n), want,
                         "v = %u trit %d", v, n);
        }
    }
}

/* The fixed-point read-back can never yield a trit > 2, so that error
 * cannot exist; what can exist are the 13 bytes llama.cpp never writes. */
Test(tq1_0, no_trit_above_two_and_noncanonical_rejected)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    int canonical[256] = {0};
    for (unsigned v = 0; v < 243; v++)
        canonical[llama_tq1_byte(v)] = 1;
    int n_non = 0;
    for (int b = 0; b < 256; b++) {
        for (int n = 0; n < 5; n++) {
            uint8_t q = (uint8_t)(b * pow3[n]);
            cr_assert_leq(((uint16_t)q * 3) >> 8, 2);
        }
        n_non += !canonical[b];
    }
    cr_assert_eq(n_non, 13);

    uint8_t blk[54];
    for (int b = 0; b < 256; b++) {
        if (canonical[b])
            continue;
        static const int where[3] = {0, 37, 49}; /* qs[0], qs[37], qh[1] */
        for (int wi = 0; wi < 3; wi++) {
            int pos = where[wi];
            memset(blk, 0x80, 48);
            memset(blk + 48, 0x7f, 4);
            blk[52] = 0x00;
            blk[53] = 0x3c;
            blk[pos] = (uint8_t)b;
            uint32_t packed[16];
            float scale;
            qv_err e;
            cr_assert_eq(qv_tq1_0_to_ternary(blk, sizeof blk, 1, 256, packed,
                                             &scale, &e), QV_ERR_CORRUPT,
                         "byte 0x%02x at %d accepted", b, pos);
        }
    }
    /* A canonical qs byte whose last trit is non-zero is not a valid qh
     * byte: v = 121 + 1 (t4 = 2) in qh[0]. */
    memset(blk, 0x80, 48);
    memset(blk + 48, 0x7f, 4);
    blk[48] = llama_tq1_byte(122);
    blk[52] = 0x00;
    blk[53] = 0x3c;
    uint32_t packed[16];
    float scale;
    qv_err e;
    cr_assert_eq(qv_tq1_0_to_ternary(blk, sizeof blk, 1, 256, packed, &scale, &e),
                 QV_ERR_CORRUPT);
    cr_assert(strstr(e.msg, "qh[0]") != NULL, "%s", e.msg);
}

/* ---- agreement with the independent decoders on random blocks -------- */

static void agree(int which, int32_t N, int32_t K)
{
    int64_t nblocks = (int64_t)N * (K / 256);
    size_t bytes = which == 2 ? qv_tq2_0_bytes(N, K) : qv_tq1_0_bytes(N, K);
    uint8_t *data = malloc(bytes);
    uint32_t *packed = malloc(qv_ternary_bytes(N, K));
    int8_t *y = malloc((size_t)N * (size_t)K);
    float *d = malloc((size_t)nblocks * sizeof(float));
    cr_assert(data && packed && y && d);
    uint16_t dh = (uint16_t)(0x2000u + rnd() % 0x3000u); /* positive normal */
    if (which == 2)
        random_tq2_0(data, nblocks, dh);
    else
        random_tq1_0(data, nblocks, dh);
    float scale = -1.0f;
    qv_err e;
    qv_status st = which == 2
        ? qv_tq2_0_to_ternary(data, bytes, N, K, packed, &scale, &e)
        : qv_tq1_0_to_ternary(data, bytes, N, K, packed, &scale, &e);
    cr_assert_eq(st, QV_OK, "%s", e.msg);
    if (which == 2)
        ref_dequant_tq2_0(data, nblocks, y, d);
    else
        ref_dequant_tq1_0(data, nblocks, y, d);
    int8_t *w = unpack_all(packed, N, K);
    for (size_t i = 0; i < (size_t)N * (size_t)K; i++)
        cr_assert_eq(w[i], y[i], "TQ%d_0 (%d,%d) element %zu: %d vs ref %d",
                     which, N, K, i, w[i], y[i]);
    for (int64_t i = 0; i < nblocks; i++)
        cr_assert_eq(scale, d[i]);
    free(w);
    free(data);
    free(packed);
    free(y);
    free(d);
}

Test(tq2_0, agrees_with_reference_decoder)
{
    for (int r = 0; r < 20; r++)
        agree(2, 1 + (int32_t)(rnd() % 5u), 256 * (1 + (int32_t)(rnd() % 6u)));
}

Test(tq1_0, agrees_with_reference_decoder)
{
    for (int r = 0; r < 20; r++)
        agree(1, 1 + (int32_t)(rnd() % 5u), 256 * (1 + (int32_t)(rnd() % 6u)));
}

/* ---- round trips ---------------------------------------------------- */

static void round_trip(int which, int32_t N, int32_t K, float scale_in)
{
    size_t n = (size_t)N * (size_t)K;
    int8_t *w = malloc(n);
    float *x = malloc(n * sizeof(float));
    uint32_t *packed = malloc(qv_ternary_bytes(N, K));
    uint32_t *packed2 = malloc(qv_ternary_bytes(N, K));
    size_t bytes = which == 2 ? qv_tq2_0_bytes(N, K) : qv_tq1_0_bytes(N, K);
    uint8_t *tq = malloc(bytes), *ref = malloc(bytes);
    cr_assert(w && x && packed && packed2 && tq && ref);
    for (size_t i = 0; i < n; i++)
        w[i] = (int8_t)((int)(rnd() % 3u) - 1);
    /* every block gets at least one non-zero so llama.cpp's absmax d is
     * the tensor scale in every block */
    for (size_t i = 0; i < n; i += 256)
        w[i] = 1;
    qv_err e;
    cr_assert_eq(qv_ternary_pack(w, N, K, packed, &e), QV_OK, "%s", e.msg);
    qv_status st = which == 2
        ? qv_ternary_to_tq2_0(packed, N, K, scale_in, tq, bytes, &e)
        : qv_ternary_to_tq1_0(packed, N, K, scale_in, tq, bytes, &e);
    cr_assert_eq(st, QV_OK, "%s", e.msg);

    /* byte-identical to llama.cpp's reference quantiser on w * scale */
    for (size_t i = 0; i < n; i++)
        x[i] = (float)w[i] * scale_in;
    if (which == 2)
        ref_quant_tq2_0(x, ref, (int64_t)n);
    else
        ref_quant_tq1_0(x, ref, (int64_t)n);
    for (size_t i = 0; i < bytes; i++)
        cr_assert_eq(tq[i], ref[i], "TQ%d_0 byte %zu: 0x%02x vs llama 0x%02x",
                     which, i, tq[i], ref[i]);

    float scale = 0.0f;
    st = which == 2 ? qv_tq2_0_to_ternary(tq, bytes, N, K, packed2, &scale, &e)
                    : qv_tq1_0_to_ternary(tq, bytes, N, K, packed2, &scale, &e);
    cr_assert_eq(st, QV_OK, "%s", e.msg);
    cr_assert_eq(memcmp(packed, packed2, qv_ternary_bytes(N, K)), 0);
    cr_assert_eq(scale, qv_f16_to_f32(qv_f32_to_f16(scale_in)));
    free(w);
    free(x);
    free(packed);
    free(packed2);
    free(tq);
    free(ref);
}

Test(tq2_0, round_trip_exact)
{
    round_trip(2, 1, 256, 1.0f);
    round_trip(2, 3, 768, 0.0625f);
    round_trip(2, 7, 2560, 0.0123f); /* not an f16: d is its f16 rounding */
}

Test(tq1_0, round_trip_exact)
{
    round_trip(1, 1, 256, 1.0f);
    round_trip(1, 3, 768, 0.0625f);
    round_trip(1, 7, 2560, 0.0123f);
}

/* TQ -> ternary -> TQ reproduces llama.cpp-written bytes exactly. */
Test(tq, bytes_round_trip)
{
    for (int which = 1; which <= 2; which++) {
        int32_t N = 4, K = 1024;
        size_t bytes = which == 2 ? qv_tq2_0_bytes(N, K) : qv_tq1_0_bytes(N, K);
        uint8_t *a = malloc(bytes), *b = malloc(bytes);
        uint32_t *packed = malloc(qv_ternary_bytes(N, K));
        cr_assert(a && b && packed);
        if (which == 2)
            random_tq2_0(a, N * (K / 256), 0x2c00);
        else
            random_tq1_0(a, N * (K / 256), 0x2c00);
        float scale;
        qv_err e;
        qv_status st = which == 2
            ? qv_tq2_0_to_ternary(a, bytes, N, K, packed, &scale, &e)
            : qv_tq1_0_to_ternary(a, bytes, N, K, packed, &scale, &e);
        cr_assert_eq(st, QV_OK, "%s", e.msg);
        st = which == 2 ? qv_ternary_to_tq2_0(packed, N, K, scale, b, bytes, &e)
                        : qv_ternary_to_tq1_0(packed, N, K, scale, b, bytes, &e);
        cr_assert_eq(st, QV_OK, "%s", e.msg);
        cr_assert_eq(memcmp(a, b, bytes), 0, "TQ%d_0", which);
        free(a);
        free(b);
        free(packed);
    }
}

/* ---- bad input ------------------------------------------------------ */

typedef qv_status (*dec_fn)(const uint8_t *, size_t, int32_t, int32_t,
                            uint32_t *, float *, qv_err *);

static void valid_zero_blocks(int which, uint8_t *data, int nblocks, uint16_t d)
{
    int bb = which == 2 ? 66 : 54;
    for (int i = 0; i < nblocks; i++) {
        uint8_t *p = data + i * bb;
        if (which == 2) {
            memset(p, 0x55, 64);
        } else {
            memset(p, 0x80, 48);
            memset(p + 48, 0x7f, 4);
        }
        p[bb - 2] = (uint8_t)(d & 0xff);
        p[bb - 1] = (uint8_t)(d >> 8);
    }
    /* one +1 per block (weight 0) so d = 0 is not allowed on it */
    for (int i = 0; i < nblocks; i++)
        data[i * bb] = which == 2 ? 0x56 : llama_tq1_byte(2 * 81 + 40);
}

static void set_d(int which, uint8_t *data, int blk, uint16_t d)
{
    int bb = which == 2 ? 66 : 54;
    data[blk * bb + bb - 2] = (uint8_t)(d & 0xff);
    data[blk * bb + bb - 1] = (uint8_t)(d >> 8);
}

static qv_status dec(int which, const uint8_t *data, size_t nbytes, int32_t N,
                     int32_t K, uint32_t *packed, float *scale, qv_err *e)
{
    dec_fn f = which == 2 ? qv_tq2_0_to_ternary : qv_tq1_0_to_ternary;
    return f(data, nbytes, N, K, packed, scale, e);
}

Test(tq, bad_sizes_and_shapes)
{
    for (int which = 1; which <= 2; which++) {
        int bb = which == 2 ? 66 : 54;
        uint8_t data[4 * 66];
        uint32_t packed[64];
        float scale;
        qv_err e;
        valid_zero_blocks(which, data, 4, 0x3c00);
        size_t ok = (size_t)(4 * bb);
        cr_assert_eq(dec(which, data, ok, 2, 512, packed, &scale, &e), QV_OK, "%s", e.msg);
        cr_assert_eq(dec(which, data, ok - 1, 2, 512, packed, &scale, &e), QV_ERR_CORRUPT);
        cr_assert_eq(dec(which, data, ok + 1, 2, 512, packed, &scale, &e), QV_ERR_CORRUPT);
        cr_assert_eq(dec(which, data, 0, 2, 512, packed, &scale, &e), QV_ERR_CORRUPT);
        cr_assert_eq(dec(which, data, ok, 1, 512, packed, &scale, &e), QV_ERR_CORRUPT);
        /* K not a multiple of 256 */
        cr_assert_eq(dec(which, data, ok, 2, 500, packed, &scale, &e), QV_ERR_INVALID);
        cr_assert(strstr(e.msg, "multiple of 256") != NULL, "%s", e.msg);
        cr_assert_eq(dec(which, data, ok, 2, 16, packed, &scale, &e), QV_ERR_INVALID);
        cr_assert_eq(dec(which, data, ok, 0, 512, packed, &scale, &e), QV_ERR_INVALID);
        cr_assert_eq(dec(which, data, ok, -2, 512, packed, &scale, &e), QV_ERR_INVALID);
        cr_assert_eq(dec(which, data, ok, 2, -512, packed, &scale, &e), QV_ERR_INVALID);
        cr_assert_eq(dec(which, NULL, ok, 2, 512, packed, &scale, &e), QV_ERR_INVALID);

        /* encoder side */
        uint8_t out[4 * 66];
        uint32_t zw[64];
        for (int i = 0; i < 64; i++)
            zw[i] = 0x55555555u;
        qv_status (*enc)(const uint32_t *, int32_t, int32_t, float, uint8_t *,
                         size_t, qv_err *) =
            which == 2 ? qv_ternary_to_tq2_0 : qv_ternary_to_tq1_0;
        cr_assert_eq(enc(zw, 2, 512, 1.0f, out, ok, &e), QV_OK, "%s", e.msg);
        cr_assert_eq(enc(zw, 2, 512, 1.0f, out, ok - 1, &e), QV_ERR_INVALID);
        cr_assert_eq(enc(zw, 2, 500, 1.0f, out, ok, &e), QV_ERR_INVALID);
        cr_assert_eq(enc(zw, 2, 512, 0.0f, out, ok, &e), QV_ERR_INVALID);
        cr_assert_eq(enc(zw, 2, 512, -1.0f, out, ok, &e), QV_ERR_INVALID);
        cr_assert_eq(enc(zw, 2, 512, NAN, out, ok, &e), QV_ERR_INVALID);
        cr_assert_eq(enc(zw, 2, 512, INFINITY, out, ok, &e), QV_ERR_INVALID);
        cr_assert_eq(enc(zw, 2, 512, 1e6f, out, ok, &e), QV_ERR_INVALID); /* f16 inf */
        cr_assert_eq(enc(zw, 2, 512, 1e-9f, out, ok, &e), QV_ERR_INVALID); /* f16 0 */
        zw[37] = 0x55555557u; /* code 3 in packed */
        cr_assert_eq(enc(zw, 2, 512, 1.0f, out, ok, &e), QV_ERR_CORRUPT);
    }
}

Test(tq, huge_shapes_no_overflow)
{
    int32_t N = INT32_MAX, K = INT32_MAX & ~255;
    size_t r2 = qv_tq2_0_bytes(N, K), r1 = qv_tq1_0_bytes(N, K);
    /* N * K/256 = 2^31 * 2^23 roughly: fits in 64 bits, times 66 too;
     * a 32-bit size_t must report 0 rather than a wrapped value. */
    if (SIZE_MAX / 66u / (size_t)(K / 256) >= (size_t)N) {
        cr_assert_eq(r2 / 66u, (size_t)N * (size_t)(K / 256));
        cr_assert_eq(r2 % 66u, 0u);
        cr_assert_eq(r1 / 54u, (size_t)N * (size_t)(K / 256));
    } else {
        cr_assert_eq(r2, 0u);
        cr_assert_eq(r1, 0u);
    }
    /* hostile header: huge shape, a few bytes of data -> an error, no read
     * or write past the small buffers */
    uint8_t data[66] = {0};
    uint32_t packed[16];
    float scale;
    qv_err e;
    qv_status st = qv_tq2_0_to_ternary(data, sizeof data, N, K, packed, &scale, &e);
    cr_assert(st == QV_ERR_CORRUPT || st == QV_ERR_INVALID, "%d", st);
    cr_assert_eq(qv_tq1_0_to_ternary(data, 54, N, K, packed, &scale, &e), st);
    /* nbytes chosen to equal the wrapped 32-bit product is still refused */
    size_t wrapped = (size_t)((uint32_t)((uint64_t)N * (uint64_t)(K / 256) * 66u));
    st = qv_tq2_0_to_ternary(data, wrapped, N, K, packed, &scale, &e);
    cr_assert_neq(st, QV_OK);
    uint8_t out[66];
    cr_assert_neq(qv_ternary_to_tq2_0(packed, N, K, 1.0f, out, sizeof out, &e), QV_OK);
}

Test(tq2_0, code_3_rejected)
{
    uint8_t data[2 * 66];
    uint32_t packed[32];
    float scale;
    qv_err e;
    valid_zero_blocks(2, data, 2, 0x3c00);
    data[66 + 40] = 0x55 | 0xc0; /* block 1, qs[40], bits 6..7 = 3 */
    cr_assert_eq(qv_tq2_0_to_ternary(data, sizeof data, 1, 512, packed, &scale, &e),
                 QV_ERR_CORRUPT);
    cr_assert(strstr(e.msg, "block 1") != NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "code 3") != NULL, "%s", e.msg);
}

Test(tq, unequal_d_unsupported)
{
    for (int which = 1; which <= 2; which++) {
        int bb = which == 2 ? 66 : 54;
        uint8_t data[6 * 66];
        uint32_t packed[96];
        float scale;
        qv_err e;
        valid_zero_blocks(which, data, 6, 0x3c00);
        set_d(which, data, 3, 0x3c01); /* block 3 = row 1, block 1 */
        set_d(which, data, 5, 0x4000);
        cr_assert_eq(dec(which, data, (size_t)(6 * bb), 2, 768, packed, &scale, &e),
                     QV_ERR_UNSUPPORTED);
        cr_assert(strstr(e.msg, "block 3:") != NULL, "%s", e.msg);
        cr_assert(strstr(e.msg, "block 0's") != NULL, "%s", e.msg);
    }
}

Test(tq, bad_d_rejected)
{
    const uint16_t bad[] = {0x7e00 /* NaN */, 0x7c00 /* +inf */,
                            0xfc00 /* -inf */, 0xbc00 /* -1 */,
                            0x0000 /* 0 on non-zero weights */,
                            0x8000 /* -0 likewise */};
    for (int which = 1; which <= 2; which++) {
        int bb = which == 2 ? 66 : 54;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            uint8_t data[2 * 66];
            uint32_t packed[32];
            float scale;
            qv_err e;
            valid_zero_blocks(which, data, 2, 0x3c00);
            set_d(which, data, 1, bad[i]);
            cr_assert_eq(dec(which, data, (size_t)(2 * bb), 1, 512, packed, &scale, &e),
                         QV_ERR_CORRUPT, "TQ%d_0 d = 0x%04x", which, bad[i]);
            cr_assert(strstr(e.msg, "block 1") != NULL, "%s", e.msg);
            /* same in block 0 (no reference d seen yet) */
            valid_zero_blocks(which, data, 2, 0x3c00);
            set_d(which, data, 0, bad[i]);
            cr_assert_eq(dec(which, data, (size_t)(2 * bb), 1, 512, packed, &scale, &e),
                         QV_ERR_CORRUPT, "TQ%d_0 d = 0x%04x", which, bad[i]);
        }
    }
}

/* llama.cpp's absmax quantiser writes d = 0 for an all-zero block; that
 * block carries no scale and is accepted. A tensor of only such blocks
 * has no scale at all. */
Test(tq, zero_block_with_zero_d)
{
    for (int which = 1; which <= 2; which++) {
        int bb = which == 2 ? 66 : 54;
        uint8_t data[3 * 66];
        uint32_t packed[48];
        float scale = 0.0f;
        qv_err e;
        valid_zero_blocks(which, data, 3, 0x3555);
        /* make block 0 all zero with d = 0 */
        data[0] = which == 2 ? 0x55 : 0x80;
        set_d(which, data, 0, 0x0000);
        cr_assert_eq(dec(which, data, (size_t)(3 * bb), 1, 768, packed, &scale, &e),
                     QV_OK, "%s", e.msg);
        cr_assert_eq(scale, qv_f16_to_f32(0x3555));
        cr_assert_eq(qv_ternary_get(packed, 768, 0, 0), 0);
        cr_assert_eq(qv_ternary_get(packed, 768, 0, 256), 1);

        uint8_t z[66];
        memcpy(z, data, (size_t)bb); /* one all-zero block, d = 0 */
        cr_assert_eq(dec(which, z, (size_t)bb, 1, 256, packed, &scale, &e),
                     QV_ERR_UNSUPPORTED);
    }
}
