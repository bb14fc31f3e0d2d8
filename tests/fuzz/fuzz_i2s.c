/* tests/fuzz/fuzz_i2s.c — libFuzzer target for the I2_S decoder
 * (formats/i2s.c), which will read untrusted GGUF tensor bytes.
 *
 * Input: byte 0 picks the rows N (1..4), byte 1 the 128-weight blocks per
 * row (1..3), byte 2 a claimed-size skew; the rest is tensor data. Whatever
 * the bytes, the decoder must return a status without reading out of
 * bounds; when it accepts them, the packed result must be a valid qvac
 * matrix, and encoding it again must reproduce the input's code bytes and
 * scale exactly (only the 28 unspecified tail bytes may differ).
 *
 *   make fuzz              # runs for FUZZ_SECONDS (default 30)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/i2s.h"
#include "kernels/ternary.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int32_t N = 1 + data[0] % 4;
    int32_t K = QV_I2S_BLOCK * (1 + data[1] % 3);
    size_t body = size - 3;
    /* usually claim the true size; sometimes claim less */
    size_t claimed = body;
    if ((data[2] & 0x80) && body >= (size_t)(data[2] & 0x7f))
        claimed = body - (data[2] & 0x7f);
    /* copy into an exact-size allocation so ASan sees any over-read */
    uint8_t *copy = malloc(claimed ? claimed : 1);
    if (!copy)
        return 0;
    memcpy(copy, data + 3, claimed);
    uint32_t *packed = malloc(qv_ternary_bytes(N, K));
    if (!packed) {
        free(copy);
        return 0;
    }
    float scale = 0.0f;
    qv_err err;
    qv_status s = qv_i2s_to_ternary(copy, claimed, N, K, packed, &scale, &err);
    if (s == QV_OK) {
        size_t need = 0;
        if (qv_i2s_bytes(N, K, &need, NULL) != QV_OK || need != claimed)
            abort(); /* accepted a tensor of the wrong size */
        if (!(scale > 0.0f))
            abort(); /* handed back an unusable scale */
        int8_t *w = malloc((size_t)N * (size_t)K);
        if (w && qv_ternary_unpack(packed, N, K, w, NULL) != QV_OK)
            abort(); /* decoder produced an invalid packed matrix */
        free(w);
        uint8_t *again = malloc(claimed);
        if (again) {
            if (qv_ternary_to_i2s(packed, N, K, scale, again, claimed, &err) != QV_OK)
                abort(); /* the encoder refused what the decoder produced */
            if (memcmp(again, copy, claimed - (QV_I2S_TAIL_BYTES - 4)) != 0)
                abort(); /* not the exact inverse */
            free(again);
        }
    }
    free(packed);
    free(copy);
    return 0;
}
