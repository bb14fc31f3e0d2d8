/* formats/tokenizer.c — see tokenizer.h. */
#include "formats/tokenizer.h"

#include <stdio.h>

void qv_tok_encode(const char *s, size_t n, int32_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; ++i)
        out[i] = (int32_t)u[i];
}

size_t qv_tok_decode(const int32_t *ids, int n, char *out, size_t cap)
{
    size_t w = 0;
    for (int i = 0; i < n && w < cap; ++i)
        if (ids[i] >= 0 && ids[i] < 256)
            out[w++] = (char)(unsigned char)ids[i];
    return w;
}

int qv_tok_is_printable(int32_t id)
{
    return id >= 0x20 && id <= 0x7e;
}

const char *qv_tok_describe(int32_t id, char out[12])
{
    if (id == QV_TOK_BOS)
        snprintf(out, 12, "<BOS>");
    else if (id == QV_TOK_EOS)
        snprintf(out, 12, "<EOS>");
    else if (id < 0 || id >= QV_TOK_VOCAB)
        snprintf(out, 12, "<?%d>", id < -9999999 ? -9999999 : id > 99999999 ? 99999999 : (int)id);
    else if (id == '\n')
        snprintf(out, 12, "\\n");
    else if (id == '\t')
        snprintf(out, 12, "\\t");
    else if (id == '\\')
        snprintf(out, 12, "\\\\");
    else if (qv_tok_is_printable(id))
        snprintf(out, 12, "%c", (char)id);
    else
        snprintf(out, 12, "\\x%02x", (unsigned)id);
    return out;
}
