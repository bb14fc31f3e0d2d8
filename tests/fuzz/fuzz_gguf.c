/* tests/fuzz/fuzz_gguf.c — libFuzzer target for the GGUF reader
 * (formats/gguf.c), which reads untrusted model files.
 *
 * The input is the file. Whatever the bytes, qv_gguf_parse must return a
 * status without reading out of bounds. When it accepts them, every KV and
 * tensor accessor is walked (and every byte of every tensor read), then the
 * file is written again with the writer and parsed back: the same KVs and
 * tensor bytes must come out.
 *
 *   make fuzz              # runs for FUZZ_SECONDS (default 30)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

/* Copies kv i of g into w; returns 0 when the writer cannot hold it (a
 * string with a NUL byte, a general.alignment other than 32). */
static int copy_kv(const qv_gguf *g, const qv_gguf_kv *kv, qv_gguf_writer *w)
{
    qv_err err;
    if (!strcmp(kv->key, "general.alignment"))
        return qv_gguf_alignment(g) == 32;
    if (kv->type == QV_GGUF_STRING) {
        const char *s;
        size_t len;
        if (qv_gguf_get_str(g, kv->key, &s, &len, &err) != QV_OK)
            abort();
        if (strlen(s) != len)
            return 0;
        return qv_gguf_writer_set_str(w, kv->key, s, &err) == QV_OK ? 1 : -1;
    }
    if (kv->type == QV_GGUF_ARRAY && kv->elem_type == QV_GGUF_STRING) {
        const char *const *strs;
        const size_t *lens;
        size_t n;
        if (qv_gguf_get_str_arr(g, kv->key, &strs, &lens, &n, &err) != QV_OK)
            abort();
        for (size_t i = 0; i < n; ++i)
            if (strlen(strs[i]) != lens[i])
                return 0;
        return qv_gguf_writer_set_str_arr(w, kv->key, strs, n, &err) == QV_OK
                   ? 1 : -1;
    }
    if (kv->type == QV_GGUF_ARRAY) {
        const void *arr;
        size_t n;
        if (qv_gguf_get_arr(g, kv->key, kv->elem_type, &arr, &n, &err) != QV_OK)
            abort();
        if (n != kv->n)
            abort();
        return qv_gguf_writer_set_arr(w, kv->key, kv->elem_type, arr, n, &err)
                       == QV_OK ? 1 : -1;
    }
    uint64_t v = 0;
    if (qv_gguf_get_val(g, kv->key, kv->type, &v, &err) != QV_OK)
        abort();
    return qv_gguf_writer_set_val(w, kv->key, kv->type, &v, &err) == QV_OK
               ? 1 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy so ASan sees any over-read */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    qv_gguf *g = NULL;
    qv_err err;
    if (qv_gguf_parse(copy, size, &g, &err) != QV_OK) {
        if (g || !err.msg[0] || err.code == QV_OK)
            abort(); /* a failure must leave nothing and say why */
        free(copy);
        return 0;
    }

    qv_gguf_writer *w = NULL;
    int writable = qv_gguf_writer_new(&w, &err) == QV_OK;
    size_t n_kv = qv_gguf_kv_count(g);
    for (size_t i = 0; i < n_kv; ++i) {
        const qv_gguf_kv *kv = qv_gguf_kv_at(g, i);
        if (!kv || qv_gguf_find_kv(g, kv->key) != kv)
            abort();
        sink += strlen(kv->key) + kv->n;
        /* every typed getter: the right one succeeds, the others refuse */
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f32;
        bool b;
        const char *s;
        size_t len;
        if ((qv_gguf_get_u32(g, kv->key, &u32, &err) == QV_OK) !=
            (kv->type == QV_GGUF_UINT32))
            abort();
        if ((qv_gguf_get_i32(g, kv->key, &i32, &err) == QV_OK) !=
            (kv->type == QV_GGUF_INT32))
            abort();
        if ((qv_gguf_get_u64(g, kv->key, &u64, &err) == QV_OK) !=
            (kv->type == QV_GGUF_UINT64))
            abort();
        if ((qv_gguf_get_f32(g, kv->key, &f32, &err) == QV_OK) !=
            (kv->type == QV_GGUF_FLOAT32))
            abort();
        if ((qv_gguf_get_bool(g, kv->key, &b, &err) == QV_OK) !=
            (kv->type == QV_GGUF_BOOL))
            abort();
        if (qv_gguf_get_str(g, kv->key, &s, &len, &err) == QV_OK) {
            if (kv->type != QV_GGUF_STRING)
                abort();
            for (size_t k = 0; k < len; ++k)
                sink += (uint8_t)s[k];
            if (s[len] != '\0')
                abort();
        }
        const char *const *strs;
        const size_t *lens;
        size_t n;
        if (qv_gguf_get_str_arr(g, kv->key, &strs, &lens, &n, &err) == QV_OK) {
            for (size_t k = 0; k < n; ++k)
                sink += lens[k] + (uint8_t)strs[k][lens[k]];
        }
        const void *arr;
        if (kv->type == QV_GGUF_ARRAY && kv->elem_type != QV_GGUF_STRING &&
            qv_gguf_get_arr(g, kv->key, kv->elem_type, &arr, &n, &err) == QV_OK) {
            for (size_t k = 0; k < n; ++k)
                sink += ((const uint8_t *)arr)[k];
        }
        if (writable) {
            int c = copy_kv(g, kv, w);
            if (c < 0)
                abort(); /* a parsed value the writer refuses */
            if (c == 0)
                writable = 0;
        }
    }
    if (qv_gguf_kv_at(g, n_kv) != NULL)
        abort();

    size_t n_t = qv_gguf_tensor_count(g);
    for (size_t i = 0; i < n_t; ++i) {
        const qv_gguf_tensor *t = qv_gguf_tensor_at(g, i);
        if (!t || qv_gguf_find_tensor(g, t->name) != t)
            abort();
        size_t nb;
        if (qv_ggml_nbytes(t->type, t->n_dims, t->ne, &nb, &err) != QV_OK ||
            nb != t->nbytes)
            abort();
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; ++k)
            sink += p[k];
        if (writable &&
            qv_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type,
                                      t->data, t->nbytes, &err) != QV_OK)
            abort();
    }

    if (writable) {
        uint8_t *out;
        size_t n_out;
        qv_gguf *g2;
        if (qv_gguf_write_mem(w, &out, &n_out, &err) != QV_OK)
            abort();
        if (qv_gguf_parse(out, n_out, &g2, &err) != QV_OK)
            abort(); /* the writer wrote a file the reader refuses */
        /* the writer puts general.alignment first when the file had none */
        size_t extra = qv_gguf_find_kv(g, "general.alignment") ? 0 : 1;
        if (qv_gguf_kv_count(g2) != n_kv + extra ||
            qv_gguf_tensor_count(g2) != n_t)
            abort();
        for (size_t i = 0; i < n_t; ++i) {
            const qv_gguf_tensor *a = qv_gguf_tensor_at(g, i);
            const qv_gguf_tensor *b2 = qv_gguf_tensor_at(g2, i);
            if (strcmp(a->name, b2->name) || a->nbytes != b2->nbytes ||
                memcmp(a->data, b2->data, a->nbytes) != 0)
                abort();
        }
        qv_gguf_free(g2);
        free(out);
    }
    qv_gguf_writer_free(w);
    qv_gguf_free(g);
    free(copy);
    return 0;
}
