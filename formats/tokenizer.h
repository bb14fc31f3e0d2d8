/* formats/tokenizer.h — the byte tokenizer used for training.
 *
 * The vocabulary has 258 tokens: ids 0..255 are the bytes themselves,
 * QV_TOK_BOS (256) starts every example and QV_TOK_EOS (257) ends it.
 * Encoding never fails and is one token per byte, so any byte string
 * (NUL bytes and invalid UTF-8 included) round-trips exactly.
 * docs/formats.md, "Datasets (JSON Lines) and the byte tokenizer". */
#ifndef QV_FORMATS_TOKENIZER_H
#define QV_FORMATS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define QV_TOK_BOS 256
#define QV_TOK_EOS 257
#define QV_TOK_VOCAB 258

/* Writes n tokens to out[0..n): out[i] = (unsigned char)s[i]. */
void qv_tok_encode(const char *s, size_t n, int32_t *out);

/* Writes the bytes of ids[0..n) to out, skipping BOS, EOS and any id
 * outside 0..QV_TOK_VOCAB-1; stops when cap bytes are written. Writes no
 * terminating NUL. Returns the number of bytes written. n <= 0 writes
 * nothing. */
size_t qv_tok_decode(const int32_t *ids, int n, char *out, size_t cap);

/* 1 when id is a byte that displays as itself: printable ASCII 0x20..0x7e.
 * 0 for other bytes, the specials and ids out of range. */
int qv_tok_is_printable(int32_t id);

/* A short display form of one token, NUL-terminated in out[12]: the
 * character for printable bytes, "\n", "\t", "\\", "\xHH" for other bytes,
 * "<BOS>", "<EOS>", or "<?N>" for an id out of range. Returns out. */
const char *qv_tok_describe(int32_t id, char out[12]);

#endif
