/* tests/test_i2s.c — bitnet.cpp I2_S <-> qvac packed ternary (formats/i2s.c).
 *
 * The expected bytes here are written by hand from the layout rule
 * (docs/formats.md: weight j of a 128-weight block is in byte j % 32 of the
 * block's 32 bytes, at bits 7-2*(j/32) .. 6-2*(j/32), as the code w + 1;
 * the f32 scale follows the N*K/4 code bytes, then 28 unspecified bytes),
 * or were produced by bitnet.cpp's own quantize_i2_s, never by the encoder
 * under test. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/i2s.h"
#include "kernels/ternary.h"
#define TT_SEED 0x243f6a8885a308d3ull
#include "tests/support/ternary_test.h"

/* ---- helpers -------------------------------------------------------- */

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

static size_t i2s_size(int32_t N, int32_t K)
{
    size_t n = 0;
    qv_err e;
    cr_assert_eq(qv_i2s_bytes(N, K, &n, &e), QV_OK, "%s", e.msg);
    return n;
}

/* A scalar transliteration of the fork's AVX2 ggml_vec_dot_i2_i8_s
 * (microsoft/BitNet 488dc1e, src/ggml-bitnet-mad.cpp:94-186) for one row:
 * for each 128-weight block i, 32 bytes x[32i..32i+31]; (byte >> 6) & 3
 * multiplies y[128i + 0..31], (byte >> 4) & 3 y[128i + 32..63],
 * (byte >> 2) & 3 y[128i + 64..95], byte & 3 y[128i + 96..127]. The caller
 * (ggml_compute_forward_mul_mat_one_chunk in the fork's ggml.c) then takes
 * (sum - sum(y)) * scale, i.e. the codes minus one times the scale. */
static float ref_row_dot(const uint8_t *x, const float *y, int32_t K,
                         float scale)
{
    double sum = 0.0, ysum = 0.0;
    for (int32_t i = 0; i < K / 128; i++)
        for (int j = 0; j < 32; j++) {
            unsigned b = x[32 * i + j];
            sum += (double)((b >> 6) & 3u) * y[128 * i + j];
            sum += (double)((b >> 4) & 3u) * y[128 * i + 32 + j];
            sum += (double)((b >> 2) & 3u) * y[128 * i + 64 + j];
            sum += (double)(b & 3u) * y[128 * i + 96 + j];
        }
    for (int32_t k = 0; k < K; k++)
        ysum += y[k];
    return (float)((sum - ysum) * scale);
}

/* ---- sizes ---------------------------------------------------------- */

Test(i2s, sizes)
{
    cr_assert_eq(i2s_size(1, 128), 128u / 4u + 32u);
    cr_assert_eq(i2s_size(2, 256), 160u);
    cr_assert_eq(i2s_size(3, 384), 3u * 96u + 32u);
    /* bitnet-b1.58-2B-4T shapes (ggml ne = {K, N}) */
    cr_assert_eq(i2s_size(2560, 6912), 4423712u); /* ffn_down {6912, 2560} */
    cr_assert_eq(i2s_size(6912, 2560), 4423712u); /* ffn_up / ffn_gate */
    cr_assert_eq(i2s_size(640, 2560), 409632u);   /* attn_k / attn_v */
    cr_assert_eq(i2s_size(2560, 2560), 1638432u); /* attn_q / attn_output */

    size_t n = 12345;
    qv_err e;
    cr_assert_eq(qv_i2s_bytes(1, 64, &n, &e), QV_ERR_INVALID);
    cr_assert(strstr(e.msg, "multiple of 128") != NULL, "%s", e.msg);
    cr_assert_eq(n, 0u);
    cr_assert_eq(qv_i2s_bytes(1, 130, &n, NULL), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_bytes(1, 192, &n, NULL), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_bytes(0, 128, &n, NULL), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_bytes(-1, 128, &n, NULL), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_bytes(1, 0, &n, NULL), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_bytes(1, -128, &n, NULL), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_bytes(1, 128, NULL, NULL), QV_ERR_INVALID);
}

Test(i2s, huge_shapes_no_overflow)
{
    int32_t K = INT32_MAX - INT32_MAX % 128;
    size_t n = 0;
    qv_status s = qv_i2s_bytes(INT32_MAX, K, &n, NULL);
    if (sizeof(size_t) >= 8) {
        cr_assert_eq(s, QV_OK);
        cr_assert_eq(n, (size_t)INT32_MAX * (size_t)(K / 4) + 32u);
    } else {
        cr_assert_eq(s, QV_ERR_INVALID);
    }
    /* the decoder refuses before touching anything: the size cannot match */
    uint8_t b[64] = {0};
    uint32_t p[8];
    float sc;
    qv_err e;
    cr_assert_neq(qv_i2s_to_ternary(b, sizeof b, INT32_MAX, K, p, &sc, &e), QV_OK);
}

/* ---- hand-made bytes ------------------------------------------------ */

Test(i2s, hand_made_one_block)
{
    /* (1, 128): one block of 32 code bytes, then the tail. */
    uint8_t d[64];
    memset(d, 0x55, 32); /* every code 1: all weights 0 */
    /* byte 0 = 0b10'00'01'10: bits 7:6 code 2 -> W[0] = +1, bits 5:4
     * code 0 -> W[32] = -1, bits 3:2 code 1 -> W[64] = 0, bits 1:0 code 2
     * -> W[96] = +1. */
    d[0] = 0x86;
    /* byte 5 = 0b00'10'01'01: W[5] = -1, W[37] = +1, W[69] = W[101] = 0 */
    d[5] = 0x25;
    /* byte 31 = 0b01'01'01'00: W[127] = -1, W[31] = W[63] = W[95] = 0 */
    d[31] = 0x54;
    /* scale 0.5 = f32 0x3f000000 little-endian at byte N*K/4 = 32 */
    d[32] = 0x00;
    d[33] = 0x00;
    d[34] = 0x00;
    d[35] = 0x3f;
    memset(d + 36, 0xab, 28); /* tail bytes quantize_i2_s never writes */

    uint32_t packed[8];
    float scale = 0.0f;
    qv_err e;
    cr_assert_eq(qv_i2s_to_ternary(d, sizeof d, 1, 128, packed, &scale, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(scale, 0.5f);

    int8_t want[128] = {0};
    want[0] = 1;
    want[32] = -1;
    want[96] = 1;
    want[5] = -1;
    want[37] = 1;
    want[127] = -1;
    int8_t *w = unpack_all(packed, 1, 128);
    for (int k = 0; k < 128; k++)
        cr_assert_eq(w[k], want[k], "W[%d] = %d, want %d", k, w[k], want[k]);
    free(w);

    /* qvac words, literally (weight k at bits 2*(k%16) of word k/16) */
    cr_assert_eq(packed[0], 0x55555156u); /* W[0] = +1 (2), W[5] = -1 (0) */
    cr_assert_eq(packed[1], 0x55555555u);
    cr_assert_eq(packed[2], 0x55555954u); /* W[32] = -1, W[37] = +1 */
    cr_assert_eq(packed[4], 0x55555555u); /* W[64..79]: zeros */
    cr_assert_eq(packed[6], 0x55555556u); /* W[96] = +1 */
    cr_assert_eq(packed[7], 0x15555555u); /* W[127] = -1 at bits 30..31 */

    /* and back: the same code bytes and scale, the tail zeroed */
    uint8_t again[64];
    cr_assert_eq(qv_ternary_to_i2s(packed, 1, 128, scale, again, sizeof again, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(memcmp(again, d, 36), 0);
    for (int i = 36; i < 64; i++)
        cr_assert_eq(again[i], 0, "tail byte %d", i);
}

Test(i2s, hand_made_two_rows_two_blocks)
{
    /* (2, 256): row n starts at byte n*64, its block b at n*64 + 32*b. */
    uint8_t d[160];
    memset(d, 0x55, 128);
    /* W[1][128 + 70]: row 1, block 1, j = 70 -> group 2 (bits 3:2), byte
     * 70 % 32 = 6 of the block: byte 64 + 32 + 6 = 102, code 2 (+1). */
    d[102] = 0x59;
    /* W[0][255]: row 0, block 1, j = 127 -> bits 1:0 of byte 32 + 31 = 63,
     * code 0 (-1). */
    d[63] = 0x54;
    /* W[1][0]: byte 64 bits 7:6, code 0 (-1); W[1][32]: bits 5:4 code 2. */
    d[64] = 0x25;
    put_f32(d + 128, 2.0f);
    memset(d + 132, 0, 28);

    uint32_t packed[2 * 16];
    float scale = 0.0f;
    qv_err e;
    cr_assert_eq(qv_i2s_to_ternary(d, sizeof d, 2, 256, packed, &scale, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(scale, 2.0f);
    int8_t *w = unpack_all(packed, 2, 256);
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < 256; k++) {
            int want = 0;
            if (n == 1 && k == 198)
                want = 1;
            if (n == 0 && k == 255)
                want = -1;
            if (n == 1 && k == 0)
                want = -1;
            if (n == 1 && k == 32)
                want = 1;
            cr_assert_eq(w[n * 256 + k], want, "W[%d][%d] = %d, want %d", n, k,
                         w[n * 256 + k], want);
        }
    free(w);
}

/* Every byte value in every position of a block decodes as the rule says,
 * and a byte with a code 3 anywhere is refused. */
Test(i2s, every_byte_value)
{
    uint8_t d[64];
    uint32_t packed[8];
    float scale;
    qv_err e;
    for (int pos = 0; pos < 32; pos += 7) {
        for (unsigned v = 0; v < 256; v++) {
            memset(d, 0x55, 32);
            d[pos] = (uint8_t)v;
            put_f32(d + 32, 1.0f);
            memset(d + 36, 0, 28);
            int has3 = 0;
            for (int g = 0; g < 4; g++)
                has3 |= ((v >> (6 - 2 * g)) & 3u) == 3u;
            qv_status s = qv_i2s_to_ternary(d, sizeof d, 1, 128, packed, &scale, &e);
            if (has3) {
                cr_assert_eq(s, QV_ERR_CORRUPT, "byte 0x%02x at %d accepted", v, pos);
                continue;
            }
            cr_assert_eq(s, QV_OK, "byte 0x%02x at %d: %s", v, pos, e.msg);
            for (int k = 0; k < 128; k++) {
                int want = 0;
                if (k % 32 == pos)
                    want = (int)((v >> (6 - 2 * (k / 32))) & 3u) - 1;
                cr_assert_eq(qv_ternary_get(packed, 128, 0, k), want,
                             "byte 0x%02x at %d: W[%d]", v, pos, k);
            }
        }
    }
}

/* ---- bytes made by bitnet.cpp's own quantiser ------------------------
 * Produced by quantize_i2_s copied verbatim from microsoft/BitNet commit
 * 488dc1e876b79ad60745a3a7338d34600d7be00d, src/ggml-bitnet-mad.cpp lines
 * 46-92 (QK_I2_S = 128; ggml_row_size(I2_S, n) = n as in the fork's
 * ggml.c), compiled standalone with g++, called as
 * quantize_i2_s(w, dst, 2, 256, NULL) with
 *   w[n][k] = 0.625f * ((n*7 + k*5 + k/3) % 3 - 1)
 * into a buffer pre-filled with 0xee: the last 28 bytes show that the
 * quantiser leaves the tail after the scale unwritten. It returned 160. */
static const uint8_t fork_2x256[160] = {
    0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95,
    0x50, 0x02, 0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a, 0xa5, 0x54, 0x40, 0x0a,
    0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02,
    0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95,
    0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a,
    0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50,
    0xa9, 0x95, 0x50, 0x02, 0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a, 0xa5, 0x54,
    0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a, 0xa5, 0x54, 0x40, 0x0a, 0xa9, 0x95, 0x50, 0x02, 0x2a,
    0x00, 0x00, 0x20, 0x3f, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee,
    0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee,
};

static int fork_weight(int n, int k)
{
    return (n * 7 + k * 5 + k / 3) % 3 - 1;
}

Test(i2s, matches_fork_quantize_i2_s)
{
    uint32_t packed[2 * 16];
    float scale = 0.0f;
    qv_err e;
    cr_assert_eq(qv_i2s_to_ternary(fork_2x256, sizeof fork_2x256, 2, 256, packed,
                                   &scale, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(scale, 0.625f);
    int8_t *w = unpack_all(packed, 2, 256);
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < 256; k++)
            cr_assert_eq(w[n * 256 + k], fork_weight(n, k), "W[%d][%d]", n, k);
    free(w);

    /* the encoder writes the fork's code bytes and scale exactly */
    uint8_t again[160];
    cr_assert_eq(qv_ternary_to_i2s(packed, 2, 256, scale, again, sizeof again, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(memcmp(again, fork_2x256, 132), 0);
    for (int i = 132; i < 160; i++)
        cr_assert_eq(again[i], 0, "tail byte %d", i);
}

/* The decoded weights give the same matrix-vector product as the fork's
 * vec_dot reading the same bytes. */
Test(i2s, agrees_with_fork_vec_dot)
{
    const int32_t N = 3, K = 640;
    size_t nb = i2s_size(N, K);
    uint8_t *d = malloc(nb);
    for (size_t i = 0; i < nb - 32; i++) {
        unsigned v = 0;
        for (int g = 0; g < 4; g++)
            v |= (rnd() % 3u) << (2 * g);
        d[i] = (uint8_t)v;
    }
    put_f32(d + nb - 32, 0.3125f);
    memset(d + nb - 28, 0x7f, 28);
    uint32_t *packed = malloc(qv_ternary_bytes(N, K));
    float scale;
    qv_err e;
    cr_assert_eq(qv_i2s_to_ternary(d, nb, N, K, packed, &scale, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(scale, 0.3125f);
    float y[640];
    for (int k = 0; k < K; k++)
        y[k] = (float)((int)(rnd() % 255u) - 127); /* int8 activations */
    for (int32_t n = 0; n < N; n++) {
        double mine = 0.0;
        for (int32_t k = 0; k < K; k++)
            mine += qv_ternary_get(packed, K, n, k) * (double)y[k];
        mine *= scale;
        float ref = ref_row_dot(d + (size_t)n * (size_t)(K / 4), y, K, scale);
        cr_assert_float_eq((float)mine, ref, 1e-3, "row %d: %g vs %g", n, mine,
                           (double)ref);
    }
    free(packed);
    free(d);
}

/* ---- round trips ---------------------------------------------------- */

Test(i2s, round_trips)
{
    static const int32_t shapes[][2] = {
        {1, 128}, {3, 128}, {2, 384}, {5, 640}, {7, 1024}, {4, 6912}, {33, 256},
    };
    static const float scales[] = {1.0f, 0.625f, 2.1631613f, 1e-30f, 3.0e38f};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int32_t N = shapes[s][0], K = shapes[s][1];
        float sc = scales[s % (sizeof scales / sizeof scales[0])];
        int8_t *w = malloc((size_t)N * (size_t)K);
        for (size_t i = 0; i < (size_t)N * (size_t)K; i++)
            w[i] = (int8_t)((int)(rnd() % 3u) - 1);
        uint32_t *p = pack_all(w, N, K);
        size_t nb = i2s_size(N, K);
        uint8_t *d = malloc(nb);
        qv_err e;
        cr_assert_eq(qv_ternary_to_i2s(p, N, K, sc, d, nb, &e), QV_OK, "%s", e.msg);

        /* independent check of the encoder's bytes against the layout rule */
        for (int32_t n = 0; n < N; n++)
            for (int32_t k = 0; k < K; k++) {
                size_t g = (size_t)n * (size_t)K + (size_t)k;
                size_t byte = 32 * (g / 128) + (g % 128) % 32;
                int shift = 6 - 2 * (int)((g % 128) / 32);
                int code = (d[byte] >> shift) & 3;
                cr_assert_eq(code - 1, w[g], "(%d,%d) W[%d][%d]", N, K, n, k);
            }
        float back_scale = 0.0f;
        memcpy(&back_scale, d + nb - 32, 4); /* little-endian host */
        cr_assert_eq(back_scale, sc);

        uint32_t *q = malloc(qv_ternary_bytes(N, K));
        float sc2 = 0.0f;
        cr_assert_eq(qv_i2s_to_ternary(d, nb, N, K, q, &sc2, &e), QV_OK, "%s", e.msg);
        cr_assert_eq(sc2, sc);
        cr_assert_eq(memcmp(p, q, qv_ternary_bytes(N, K)), 0, "(%d,%d)", N, K);

        /* bytes -> qvac -> bytes is the identity (tail zero) */
        uint8_t *d2 = malloc(nb);
        cr_assert_eq(qv_ternary_to_i2s(q, N, K, sc2, d2, nb, &e), QV_OK, "%s", e.msg);
        cr_assert_eq(memcmp(d, d2, nb), 0, "(%d,%d)", N, K);
        free(d2);
        free(q);
        free(d);
        free(p);
        free(w);
    }
}

/* ---- refusals ------------------------------------------------------- */

static uint8_t *valid_tensor(int32_t N, int32_t K, float scale, size_t *nb)
{
    *nb = i2s_size(N, K);
    uint8_t *d = malloc(*nb + 1);
    for (size_t i = 0; i < *nb - 32; i++)
        d[i] = (uint8_t)(0x55 ^ ((i % 3 == 0) ? 0x40 : 0x00)); /* some -1s */
    put_f32(d + *nb - 32, scale);
    memset(d + *nb - 28, 0, 29);
    return d;
}

Test(i2s, wrong_size_refused)
{
    size_t nb;
    uint8_t *d = valid_tensor(2, 256, 1.0f, &nb);
    uint32_t p[32];
    float sc;
    qv_err e;
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, &sc, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_i2s_to_ternary(d, nb - 1, 2, 256, p, &sc, &e), QV_ERR_CORRUPT);
    cr_assert(strstr(e.msg, "159 bytes") != NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "exactly 160") != NULL, "%s", e.msg);
    cr_assert_eq(qv_i2s_to_ternary(d, nb + 1, 2, 256, p, &sc, &e), QV_ERR_CORRUPT);
    /* the codes alone, without the 32-byte tail (a reader that used
     * ggml_row_size's N*K/4 would hand over this much) */
    cr_assert_eq(qv_i2s_to_ternary(d, nb - 32, 2, 256, p, &sc, &e), QV_ERR_CORRUPT);
    /* N*K bytes, what plain ggml_row_size(I2_S) = K per row would give */
    cr_assert_eq(qv_i2s_to_ternary(d, 2 * 256, 2, 256, p, &sc, &e), QV_ERR_CORRUPT);
    cr_assert_eq(qv_i2s_to_ternary(d, 0, 2, 256, p, &sc, &e), QV_ERR_CORRUPT);
    /* the same bytes claimed as another shape of a different size */
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 3, 256, p, &sc, &e), QV_ERR_CORRUPT);
    /* a shape that cannot be I2_S, and NULLs */
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 1, 64, p, &sc, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 0, 256, p, &sc, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_to_ternary(NULL, nb, 2, 256, p, &sc, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, NULL, &sc, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, NULL, &e), QV_ERR_INVALID);
    free(d);
}

Test(i2s, bad_scale_refused)
{
    static const float bad[] = {NAN, INFINITY, -INFINITY, -1.0f, -1e-30f};
    uint32_t p[32];
    qv_err e;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t nb;
        uint8_t *d = valid_tensor(2, 256, bad[i], &nb);
        float sc = 7.0f;
        cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, &sc, &e), QV_ERR_CORRUPT,
                     "scale %g accepted", (double)bad[i]);
        cr_assert(strstr(e.msg, "byte 128") != NULL, "%s", e.msg);
        cr_assert_eq(sc, 7.0f); /* not written on error */
        free(d);
    }
    /* scale 0 with non-zero weights: corrupt */
    size_t nb;
    uint8_t *d = valid_tensor(2, 256, 0.0f, &nb);
    float sc;
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, &sc, &e), QV_ERR_CORRUPT);
    cr_assert(strstr(e.msg, "is 0") != NULL, "%s", e.msg);
    /* scale 0 (or -0) on an all-zero tensor, what quantize_i2_s writes for
     * one: valid bytes, but no scale for qvac */
    memset(d, 0x55, nb - 32);
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, &sc, &e), QV_ERR_UNSUPPORTED);
    put_f32(d + nb - 32, -0.0f);
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, &sc, &e), QV_ERR_UNSUPPORTED);
    /* an all-zero tensor with a real scale is fine */
    put_f32(d + nb - 32, 1e-5f);
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, &sc, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(sc, 1e-5f);
    free(d);
}

Test(i2s, code_3_refused)
{
    size_t nb;
    uint8_t *d = valid_tensor(2, 256, 1.0f, &nb);
    uint32_t p[32];
    float sc;
    qv_err e;
    /* byte 101 = row 1, block 1, m = 5; bits 5:4 are group 1 -> weight
     * 128 + 32 + 5 = 165 */
    d[101] = 0x75; /* 0b01'11'01'01 */
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, &sc, &e), QV_ERR_CORRUPT);
    cr_assert(strstr(e.msg, "byte 101") != NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "bits 4..5") != NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "W[1][165]") != NULL, "%s", e.msg);
    d[101] = 0x55;
    d[0] = 0xc5; /* code 3 in bits 7:6 of the first byte: W[0][0] */
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, &sc, &e), QV_ERR_CORRUPT);
    cr_assert(strstr(e.msg, "W[0][0]") != NULL, "%s", e.msg);
    d[0] = 0x55;
    d[127] = 0x57; /* last code byte, bits 1:0: W[1][255] */
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 2, 256, p, &sc, &e), QV_ERR_CORRUPT);
    cr_assert(strstr(e.msg, "W[1][255]") != NULL, "%s", e.msg);
    free(d);
}

Test(i2s, tail_bytes_ignored)
{
    size_t nb;
    uint8_t *d = valid_tensor(1, 128, 0.75f, &nb);
    uint32_t p1[8], p2[8];
    float s1, s2;
    qv_err e;
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 1, 128, p1, &s1, &e), QV_OK, "%s", e.msg);
    memset(d + nb - 28, 0xff, 28);
    cr_assert_eq(qv_i2s_to_ternary(d, nb, 1, 128, p2, &s2, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(memcmp(p1, p2, sizeof p1), 0);
    cr_assert_eq(s1, 0.75f);
    cr_assert_eq(s2, 0.75f);
    free(d);
}

Test(i2s, encoder_refusals)
{
    int8_t w[2 * 256];
    for (int i = 0; i < 512; i++)
        w[i] = (int8_t)(i % 3 - 1);
    uint32_t *p = pack_all(w, 2, 256);
    uint8_t out[161];
    qv_err e;
    cr_assert_eq(qv_ternary_to_i2s(p, 2, 256, 1.0f, out, 160, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_ternary_to_i2s(p, 2, 256, 1.0f, out, 161, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_ternary_to_i2s(p, 2, 256, 1.0f, out, 159, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_ternary_to_i2s(p, 2, 256, 0.0f, out, 160, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_ternary_to_i2s(p, 2, 256, -1.0f, out, 160, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_ternary_to_i2s(p, 2, 256, NAN, out, 160, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_ternary_to_i2s(p, 2, 256, INFINITY, out, 160, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_ternary_to_i2s(p, 1, 64, 1.0f, out, 48, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_ternary_to_i2s(NULL, 2, 256, 1.0f, out, 160, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_ternary_to_i2s(p, 2, 256, 1.0f, NULL, 160, &e), QV_ERR_INVALID);
    /* code 3 in the packed input: W[1][200] */
    p[16 + 200 / 16] |= 3u << (2 * (200 % 16));
    cr_assert_eq(qv_ternary_to_i2s(p, 2, 256, 1.0f, out, 160, &e), QV_ERR_CORRUPT);
    cr_assert(strstr(e.msg, "W[1][200]") != NULL, "%s", e.msg);
    free(p);
}
