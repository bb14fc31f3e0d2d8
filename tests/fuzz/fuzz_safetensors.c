/* tests/fuzz/fuzz_safetensors.c — libFuzzer target for the safetensors
 * reader (formats/safetensors.c), which reads untrusted PEFT adapters.
 *
 * Each input is parsed twice: as the whole file, and (so that the fuzzer
 * reaches the JSON without first guessing a length prefix) as a header and
 * data split at the first 0xff byte, with the 8-byte length put in front
 * here. Whatever the bytes, qv_st_parse must return a status without
 * reading out of bounds, and a failure must leave nothing and say why.
 * When it accepts them, every accessor is walked (every value read as
 * f32), the tensors are written again as F32 with the writer and parsed
 * back: the same names, shapes, values and metadata must come out.
 *
 *   make fuzz              # runs for FUZZ_SECONDS (default 30)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void check(const uint8_t *data, size_t size)
{
    /* an exact-size copy so ASan sees any over-read */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return;
    memcpy(copy, data, size);
    qv_st *st = NULL;
    qv_err err;
    qv_err_clear(&err);
    if (qv_st_parse(copy, size, "fuzz", &st, &err) != QV_OK) {
        if (st || !err.msg[0] || err.code == QV_OK)
            abort(); /* a failure must leave nothing and say why */
        free(copy);
        return;
    }

    size_t n = qv_st_count(st);
    float **vals = calloc(n + 1, sizeof *vals);
    qv_st_writer *w = NULL;
    if (!vals || qv_st_writer_new(&w, &err) != QV_OK)
        abort();
    uint64_t prev_begin = 0, total = 0;
    for (size_t i = 0; i < n; ++i) {
        const qv_st_tensor *t = qv_st_at(st, i);
        if (!t || qv_st_find(st, t->name) != t || !t->name[0])
            abort();
        if (t->begin < prev_begin || t->end < t->begin ||
            t->end - t->begin != t->nbytes)
            abort();
        prev_begin = t->begin;
        total += t->nbytes;
        uint64_t elems = 1;
        for (uint32_t d = 0; d < t->n_dims; ++d)
            elems *= (uint64_t)t->shape[d];
        if (t->n_dims > QV_ST_MAX_DIMS || elems != t->n_elems ||
            t->nbytes != t->n_elems * (t->dtype == QV_ST_F32 ? 4u : 2u) ||
            !qv_st_dtype_name(t->dtype))
            abort();
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; ++k)
            sink += p[k];
        vals[i] = malloc(t->n_elems ? t->n_elems * sizeof(float) : 1);
        if (!vals[i] ||
            qv_st_read_f32(t, vals[i], (size_t)t->n_elems, &err) != QV_OK)
            abort();
        if (qv_st_writer_add_f32(w, t->name, t->n_dims, t->shape, vals[i],
                                 &err) != QV_OK)
            abort(); /* a tensor the reader accepts, the writer refuses */
    }
    if (qv_st_at(st, n) != NULL)
        abort();
    /* the data is covered exactly: nothing outside the tensors */
    if (size < 8 || total > size - 8)
        abort();
    const char *k, *v;
    for (size_t i = 0; qv_st_meta_at(st, i, &k, &v); ++i) {
        if (qv_st_meta_get(st, k) != v)
            abort();
        if (qv_st_writer_set_meta(w, k, v, &err) != QV_OK)
            abort();
    }

    uint8_t *out;
    size_t n_out;
    qv_st *st2 = NULL;
    if (qv_st_write_mem(w, &out, &n_out, &err) != QV_OK)
        abort();
    if (qv_st_parse(out, n_out, "rewritten", &st2, &err) != QV_OK)
        abort(); /* the writer wrote a file the reader refuses */
    if (qv_st_count(st2) != n || qv_st_meta_count(st2) != qv_st_meta_count(st))
        abort();
    for (size_t i = 0; i < n; ++i) {
        const qv_st_tensor *a = qv_st_at(st, i);
        const qv_st_tensor *b = qv_st_find(st2, a->name);
        if (!b || b->dtype != QV_ST_F32 || b->n_dims != a->n_dims ||
            b->n_elems != a->n_elems ||
            memcmp(b->shape, a->shape, a->n_dims * sizeof a->shape[0]))
            abort();
        float *back = malloc(b->n_elems ? b->n_elems * sizeof(float) : 1);
        if (!back || qv_st_read_f32(b, back, (size_t)b->n_elems, &err) != QV_OK)
            abort();
        if (b->n_elems &&
            memcmp(back, vals[i], (size_t)b->n_elems * sizeof(float)))
            abort(); /* the f32 values changed on the way */
        free(back);
    }
    for (size_t i = 0; qv_st_meta_at(st, i, &k, &v); ++i) {
        const char *v2 = qv_st_meta_get(st2, k);
        if (!v2 || strcmp(v, v2))
            abort();
    }
    qv_st_free(st2);
    free(out);
    qv_st_writer_free(w);
    for (size_t i = 0; i < n; ++i)
        free(vals[i]);
    free(vals);
    qv_st_free(st);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size);
    /* header | 0xff | data, with the length prefix made here */
    const uint8_t *sep = memchr(data, 0xff, size);
    size_t hn = sep ? (size_t)(sep - data) : size;
    size_t dn = sep ? size - hn - 1 : 0;
    uint8_t *f = malloc(8 + hn + dn + 1);
    if (!f)
        return 0;
    for (int i = 0; i < 8; ++i)
        f[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    if (hn)
        memcpy(f + 8, data, hn);
    if (dn)
        memcpy(f + 8 + hn, sep + 1, dn);
    check(f, 8 + hn + dn);
    free(f);
    return 0;
}
