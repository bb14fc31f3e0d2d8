/* tests/fuzz/fuzz_dataset.c — libFuzzer target for the JSON Lines loader
 * and the batcher (formats/dataset.c), which read untrusted files.
 *
 * Input: byte 0 picks the mode (bit 0: packed text instead of JSON Lines;
 * bit 1: JSON Lines with a chat template (bits 2-4 pick it) and a length
 * limit of 8 * (bits 5-6) tokens, truncating when bit 7) and byte 1 the
 * batch shape; the rest is the file. Whatever the bytes,
 * loading must return a status without reading out of bounds or leaking;
 * when it succeeds, every drawn batch must hold only vocabulary tokens,
 * targets that are -1 or the next token, and be identical when drawn
 * twice from the same cursor.
 *
 *   make fuzz              # runs for FUZZ_SECONDS (default 30)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/chat.h"
#include "formats/dataset.h"
#include "formats/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_batch(const int32_t *tok, const int32_t *tgt, int B, int S)
{
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < S; ++t) {
            int32_t x = tok[b * S + t], y = tgt[b * S + t];
            if (x < 0 || x >= QV_TOK_VOCAB)
                abort();
            if (y != -1 && (y < 0 || y >= QV_TOK_VOCAB || y == QV_TOK_BOS))
                abort();
            if (y != -1 && t + 1 < S && tok[b * S + t + 1] != y)
                abort(); /* a target is the next input token */
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int packed = data[0] & 1;
    int B = 1 + (data[1] & 3);
    int S = 1 + (data[1] >> 2);
    size_t n = size - 2;
    /* an exact-size copy so ASan sees any over-read */
    char *copy = malloc(n ? n : 1);
    memcpy(copy, data + 2, n);
    qv_dataset *ds = NULL;
    qv_err err;
    qv_dataset_opts o = {.vocab = NULL, .chat = (data[0] >> 2 & 7) % QV_CHAT_COUNT,
                         .max_tokens = 8u * (data[0] >> 5 & 3),
                         .long_policy = data[0] >> 7 ? QV_LONG_TRUNCATE : QV_LONG_SKIP};
    qv_status s = packed ? qv_dataset_from_text(copy, n, "fuzz", &ds, &err)
                  : data[0] & 2 ? qv_dataset_load_mem_ex(copy, n, "fuzz", &o, &ds, &err)
                                : qv_dataset_load_mem(copy, n, "fuzz", &ds, &err);
    if (s == QV_OK) {
        size_t ns = 0;
        qv_dataset_issues(ds, &ns);
        if (ns > QV_DATASET_MAX_ISSUES || ns > qv_dataset_n_issues(ds) ||
            qv_dataset_n_examples(ds) < 1 || qv_dataset_n_trained(ds) >= qv_dataset_n_tokens(ds))
            abort();
        int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * S);
        int32_t *tgt = malloc(sizeof(int32_t) * (size_t)B * S);
        int32_t *tok2 = malloc(sizeof(int32_t) * (size_t)B * S);
        int32_t *tgt2 = malloc(sizeof(int32_t) * (size_t)B * S);
        qv_cursor c = {0, 0};
        for (int k = 0; k < 3; ++k) {
            qv_cursor again = c;
            if (qv_dataset_next_batch(ds, &c, 7, B, S, tok, tgt, &err) != QV_OK ||
                qv_dataset_next_batch(ds, &again, 7, B, S, tok2, tgt2, &err) != QV_OK)
                abort();
            check_batch(tok, tgt, B, S);
            if (memcmp(tok, tok2, sizeof(int32_t) * (size_t)B * S) != 0 ||
                memcmp(tgt, tgt2, sizeof(int32_t) * (size_t)B * S) != 0 ||
                memcmp(&c, &again, sizeof c) != 0)
                abort();
        }
        qv_cursor ec = {0, 0};
        int rows = 1;
        for (int k = 0; k < 4 && rows > 0; ++k) {
            if (qv_dataset_eval_batch(ds, &ec, B, S, tok, tgt, &rows, &err) != QV_OK)
                abort();
            check_batch(tok, tgt, B, S);
        }
        qv_dataset *tr = NULL, *va = NULL;
        if (qv_dataset_split(ds, 0.25, 3, &tr, &va, &err) != QV_OK)
            abort();
        if (qv_dataset_n_tokens(tr) + qv_dataset_n_tokens(va) != qv_dataset_n_tokens(ds))
            abort();
        qv_dataset_free(tr);
        qv_dataset_free(va);
        free(tok);
        free(tgt);
        free(tok2);
        free(tgt2);
        qv_dataset_free(ds);
    } else if (ds != NULL) {
        abort();
    }
    free(copy);
    return 0;
}
