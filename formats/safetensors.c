/* formats/safetensors.c — see safetensors.h and docs/formats.md
 * ("safetensors files").
 *
 * The header is parsed by jansson (JSON_REJECT_DUPLICATES: a name given
 * twice is refused, never silently replaced) and then checked entry by
 * entry before anything is handed out. Depends on common/ and jansson
 * only: the fuzz build links it without the rest of the library. */
#include "formats/safetensors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/file.h"
#include "common/half.h"

static const char *const dtype_names[] = {"F32", "F16", "BF16"};
static const size_t dtype_size[] = {4, 2, 2};

/* The other dtypes of the format (tensor.rs' Dtype and later additions):
 * named in the refusal as a dtype qvac does not read, not as garbage. */
static const char *const other_dtypes[] = {
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16",
    "I32", "U32", "F64", "I64", "U64", "F4", "F6_E2M3", "F6_E3M2", "C64",
};

const char *qv_st_dtype_name(qv_st_dtype d)
{
    return (unsigned)d < 3 ? dtype_names[d] : NULL;
}

/* ---- reading -------------------------------------------------------- */

struct qv_st {
    qv_st_tensor *tensors; /* by begin offset */
    size_t n_tensors;
    const qv_st_tensor **by_name; /* into tensors, sorted by name */
    char **meta;           /* key0, value0, key1, value1, ... */
    size_t n_meta;
    void *map;             /* qv_st_open's mapping */
    size_t map_len;
};

void qv_st_free(qv_st *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_tensors; ++i)
        free((char *)st->tensors[i].name);
    free(st->tensors);
    free(st->by_name);
    for (size_t i = 0; i < 2 * st->n_meta; ++i)
        free(st->meta[i]);
    free(st->meta);
    qv_file_unmap(st->map, st->map_len);
    free(st);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (c)
        memcpy(c, s, n + 1);
    return c;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}


typedef struct rd {
    const char *what;
    qv_err *err;
    uint64_t data_n; /* bytes after the header */
} rd;

static qv_status corrupt(rd *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static qv_status corrupt(rd *r, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qv_fail(r->err, QV_ERR_CORRUPT, "safetensors '%s': %s", r->what,
                   msg);
}

/* A non-negative JSON integer (reals, negatives and other types refused). */
static int nonneg_int(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static qv_status rd_meta(rd *r, qv_st *st, const json_t *m)
{
    if (!json_is_object(m))
        return corrupt(r, "__metadata__ is %s, not an object of strings",
                       json_kind(m));
    size_t n = json_object_size(m);
    st->meta = calloc(2 * n + 1, sizeof *st->meta);
    if (!st->meta)
        return qv_fail(r->err, QV_ERR_NOMEM, "out of memory reading '%s'",
                       r->what);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v) {
        char pk[80];
        qv_printable(pk, sizeof pk, k);
        if (!json_is_string(v))
            return corrupt(r, "__metadata__ '%s' is %s, not a string", pk,
                           json_kind(v));
        /* jansson refuses \u0000 unless asked (JSON_ALLOW_NUL): no NUL */
        char *ck = dup_str(k), *cv = dup_str(json_string_value(v));
        st->meta[2 * st->n_meta] = ck;
        st->meta[2 * st->n_meta + 1] = cv;
        st->n_meta++;
        if (!ck || !cv)
            return qv_fail(r->err, QV_ERR_NOMEM, "out of memory reading '%s'",
                           r->what);
    }
    return QV_OK;
}

static qv_status rd_tensor(rd *r, qv_st_tensor *t, const char *name,
                           const json_t *e)
{
    char pn[120];
    qv_printable(pn, sizeof pn, name);
    if (!*name)
        return corrupt(r, "a tensor has an empty name");
    if (!json_is_object(e))
        return corrupt(r, "tensor '%s' is %s, not an object with dtype, "
                       "shape and data_offsets", pn, json_kind(e));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)e, k, v) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") &&
            strcmp(k, "data_offsets")) {
            char pk[80];
            qv_printable(pk, sizeof pk, k);
            return corrupt(r, "tensor '%s': unknown field '%s' (an entry "
                           "holds dtype, shape and data_offsets only)", pn, pk);
        }
    }

    /* dtype */
    const json_t *dt = json_object_get(e, "dtype");
    if (!dt)
        return corrupt(r, "tensor '%s' has no dtype", pn);
    if (!json_is_string(dt))
        return corrupt(r, "tensor '%s': dtype is %s, not a string", pn,
                       json_kind(dt));
    const char *ds = json_string_value(dt);
    int d = -1;
    for (int i = 0; i < 3; ++i)
        if (!strcmp(ds, dtype_names[i]))
            d = i;
    if (d < 0) {
        char pd[40];
        qv_printable(pd, sizeof pd, ds);
        for (size_t i = 0; i < sizeof other_dtypes / sizeof other_dtypes[0]; ++i)
            if (!strcmp(ds, other_dtypes[i]))
                return qv_fail(r->err, QV_ERR_UNSUPPORTED,
                               "safetensors '%s': tensor '%s' has dtype %s, "
                               "which qvac does not read (F32, F16 and BF16 "
                               "only); convert the file to one of those",
                               r->what, pn, pd);
        return corrupt(r, "tensor '%s' has dtype '%s', which is not a "
                       "safetensors dtype", pn, pd);
    }
    t->dtype = (qv_st_dtype)d;

    /* shape */
    const json_t *sh = json_object_get(e, "shape");
    if (!sh)
        return corrupt(r, "tensor '%s' has no shape", pn);
    if (!json_is_array(sh))
        return corrupt(r, "tensor '%s': shape is %s, not an array", pn,
                       json_kind(sh));
    size_t nd = json_array_size(sh);
    if (nd > QV_ST_MAX_DIMS)
        return corrupt(r, "tensor '%s' has %zu dimensions (qvac reads at "
                       "most %d)", pn, nd, QV_ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    uint64_t elems = 1;
    int overflow = 0, zero = 0;
    for (size_t i = 0; i < nd; ++i) {
        uint64_t dim;
        const json_t *x = json_array_get(sh, i);
        if (!nonneg_int(x, &dim))
            return corrupt(r, "tensor '%s': shape[%zu] is %s%s, not a "
                           "non-negative integer", pn, i, json_kind(x),
                           json_is_integer(x) ? " below 0" : "");
        t->shape[i] = (int64_t)dim;
        if (!dim)
            zero = 1;
        else if (elems > UINT64_MAX / dim)
            overflow = 1;
        else
            elems *= dim;
    }
    /* a zero anywhere makes the product 0, whatever came before it */
    if (zero) {
        elems = 0;
        overflow = 0;
    }
    if (overflow || elems > UINT64_MAX / dtype_size[d] ||
        elems * dtype_size[d] > SIZE_MAX)
        return corrupt(r, "tensor '%s': the shape's byte size overflows",
                       pn);
    t->n_elems = elems;

    /* data_offsets */
    const json_t *off = json_object_get(e, "data_offsets");
    if (!off)
        return corrupt(r, "tensor '%s' has no data_offsets", pn);
    uint64_t b = 0, en = 0;
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !nonneg_int(json_array_get(off, 0), &b) ||
        !nonneg_int(json_array_get(off, 1), &en))
        return corrupt(r, "tensor '%s': data_offsets is not [begin, end] "
                       "of two non-negative integers", pn);
    if (b > en)
        return corrupt(r, "tensor '%s': data_offsets [%llu, %llu] ends "
                       "before it begins", pn, (unsigned long long)b,
                       (unsigned long long)en);
    if (en > r->data_n)
        return corrupt(r, "tensor '%s': data_offsets [%llu, %llu] run past "
                       "the end of the data (%llu bytes)", pn,
                       (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)r->data_n);
    uint64_t want = elems * dtype_size[d];
    if (en - b != want)
        return corrupt(r, "tensor '%s': data_offsets [%llu, %llu] hold %llu "
                       "bytes, but %s of %llu elements is %llu bytes", pn,
                       (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)(en - b), dtype_names[d],
                       (unsigned long long)elems, (unsigned long long)want);
    t->begin = b;
    t->end = en;
    t->nbytes = (size_t)want;
    return QV_OK;
}

static int cmp_begin(const void *pa, const void *pb)
{
    const qv_st_tensor *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int cmp_name(const void *pa, const void *pb)
{
    const qv_st_tensor *const *a = pa, *const *b = pb;
    return strcmp((*a)->name, (*b)->name);
}

static qv_status parse(rd *r, qv_st *st, const uint8_t *p, size_t n)
{
    if (n < 8)
        return corrupt(r, "%zu bytes is shorter than the 8-byte header "
                       "length", n);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i)
        hlen |= (uint64_t)p[i] << (8 * i);
    if (hlen > QV_ST_MAX_HEADER)
        return corrupt(r, "header length %llu exceeds the limit of %u bytes",
                       (unsigned long long)hlen, QV_ST_MAX_HEADER);
    if (hlen > n - 8)
        return corrupt(r, "header length %llu runs past the end of the file "
                       "(%zu bytes after the length)",
                       (unsigned long long)hlen, n - 8);
    if (hlen < 2 || p[8] != '{')
        return corrupt(r, "the header does not start with '{' (not a "
                       "safetensors file?)");
    r->data_n = (uint64_t)(n - 8 - hlen);
    json_error_t je;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen,
                              JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_duplicate_key)
            return corrupt(r, "a name appears twice in the header (at byte "
                           "%d of it)", je.position);
        if (json_error_code(&je) == json_error_out_of_memory)
            return qv_fail(r->err, QV_ERR_NOMEM, "out of memory reading '%s'",
                           r->what);
        return corrupt(r, "the header is not valid JSON: %s (at byte %d of "
                       "it)", je.text, je.position);
    }
    qv_status s = QV_OK;
    if (!json_is_object(root)) {
        s = corrupt(r, "the header is %s, not an object", json_kind(root));
        goto done;
    }
    size_t cap = json_object_size(root);
    st->tensors = calloc(cap + 1, sizeof *st->tensors);
    st->by_name = calloc(cap + 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name) {
        s = qv_fail(r->err, QV_ERR_NOMEM, "out of memory reading '%s'",
                    r->what);
        goto done;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__")) {
            if ((s = rd_meta(r, st, v)))
                goto done;
            continue;
        }
        qv_st_tensor *t = &st->tensors[st->n_tensors];
        if ((s = rd_tensor(r, t, k, v)))
            goto done;
        if (!(t->name = dup_str(k))) {
            s = qv_fail(r->err, QV_ERR_NOMEM, "out of memory reading '%s'",
                        r->what);
            goto done;
        }
        st->n_tensors++;
    }

    /* The data is covered exactly: in offset order each tensor begins
     * where the one before it ended, and the last ends at the end of the
     * file (the reference's validate(): no gap, no overlap, nothing
     * after). */
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, cmp_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < st->n_tensors; ++i) {
        qv_st_tensor *t = &st->tensors[i];
        char pn[120];
        qv_printable(pn, sizeof pn, t->name);
        if (t->begin < at) {
            char po[120];
            qv_printable(po, sizeof po, st->tensors[i - 1].name);
            s = corrupt(r, "tensor '%s' [%llu, %llu) overlaps tensor '%s' "
                        "[%llu, %llu)", pn, (unsigned long long)t->begin,
                        (unsigned long long)t->end, po,
                        (unsigned long long)st->tensors[i - 1].begin,
                        (unsigned long long)st->tensors[i - 1].end);
            goto done;
        }
        if (t->begin > at) {
            s = corrupt(r, "data bytes [%llu, %llu) before tensor '%s' belong "
                        "to no tensor", (unsigned long long)at,
                        (unsigned long long)t->begin, pn);
            goto done;
        }
        at = t->end;
        t->data = p + 8 + hlen + t->begin;
    }
    if (at != r->data_n) {
        s = corrupt(r, "the data holds %llu bytes after the last tensor "
                    "(its tensors cover %llu of %llu)",
                    (unsigned long long)(r->data_n - at),
                    (unsigned long long)at, (unsigned long long)r->data_n);
        goto done;
    }
    for (size_t i = 0; i < st->n_tensors; ++i)
        st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, st->n_tensors, sizeof *st->by_name, cmp_name);
done:
    json_decref(root);
    return s;
}

qv_status qv_st_parse(const void *bytes, size_t n, const char *name,
                      qv_st **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "qv_st_parse: out is NULL");
    *out = NULL;
    if ((!bytes && n) || !name)
        return qv_fail(err, QV_ERR_INVALID, "qv_st_parse: NULL argument");
    qv_st *st = calloc(1, sizeof *st);
    if (!st)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory reading '%s'", name);
    rd r = {.what = name, .err = err};
    qv_status s = parse(&r, st, bytes ? bytes : (const void *)"", n);
    if (s) {
        qv_st_free(st);
        return s;
    }
    *out = st;
    return QV_OK;
}

qv_status qv_st_open(const char *path, qv_st **out, qv_err *err)
{
    if (!out || !path)
        return qv_fail(err, QV_ERR_INVALID, "qv_st_open: NULL argument");
    *out = NULL;
    void *map = NULL;
    size_t len = 0;
    qv_status s = qv_file_map(path, "safetensors", &map, &len, err);
    if (s)
        return s;
    s = qv_st_parse(map, len, path, out, err);
    if (s) {
        qv_file_unmap(map, len);
        return s;
    }
    (*out)->map = map;
    (*out)->map_len = len;
    return QV_OK;
}

size_t qv_st_count(const qv_st *st) { return st ? st->n_tensors : 0; }

const qv_st_tensor *qv_st_at(const qv_st *st, size_t i)
{
    return st && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const qv_st_tensor *qv_st_find(const qv_st *st, const char *name)
{
    if (!st || !name)
        return NULL;
    size_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const qv_st_tensor *t = st->by_name[mid];
        int c = strcmp(name, t->name);
        if (!c)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t qv_st_meta_count(const qv_st *st) { return st ? st->n_meta : 0; }

int qv_st_meta_at(const qv_st *st, size_t i, const char **key,
                  const char **value)
{
    if (!st || i >= st->n_meta)
        return 0;
    if (key)
        *key = st->meta[2 * i];
    if (value)
        *value = st->meta[2 * i + 1];
    return 1;
}

const char *qv_st_meta_get(const qv_st *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (size_t i = 0; i < st->n_meta; ++i)
        if (!strcmp(st->meta[2 * i], key))
            return st->meta[2 * i + 1];
    return NULL;
}

qv_status qv_st_read_f32(const qv_st_tensor *t, float *out, size_t n,
                         qv_err *err)
{
    if (!t || (!out && n))
        return qv_fail(err, QV_ERR_INVALID, "qv_st_read_f32: NULL argument");
    if ((uint64_t)n != t->n_elems)
        return qv_fail(err, QV_ERR_INVALID,
                       "tensor '%s' holds %llu values, not %zu", t->name,
                       (unsigned long long)t->n_elems, n);
    const uint8_t *p = t->data;
    for (size_t i = 0; i < n; ++i) {
        uint32_t u;
        switch (t->dtype) {
        case QV_ST_F32:
            u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(&out[i], &u, 4);
            break;
        case QV_ST_F16:
            out[i] = qv_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
            break;
        default: /* BF16: the high 16 bits of a binary32 */
            u = ((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8) << 16;
            memcpy(&out[i], &u, 4);
            break;
        }
    }
    return QV_OK;
}

/* ---- writing -------------------------------------------------------- */

typedef struct wtensor {
    char *name;
    uint32_t n_dims;
    int64_t shape[QV_ST_MAX_DIMS];
    const float *data;
    size_t nbytes;
} wtensor;

struct qv_st_writer {
    wtensor *t;
    size_t n, cap;
    char **meta; /* key, value pairs */
    size_t n_meta, cap_meta;
};

void qv_st_writer_free(qv_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; ++i)
        free(w->t[i].name);
    free(w->t);
    for (size_t i = 0; i < 2 * w->n_meta; ++i)
        free(w->meta[i]);
    free(w->meta);
    free(w);
}

qv_status qv_st_writer_new(qv_st_writer **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "qv_st_writer_new: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory for a safetensors "
                       "writer");
    return QV_OK;
}

/* Valid UTF-8 without NUL (what jansson will accept as a string). */
static int utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

qv_status qv_st_writer_set_meta(qv_st_writer *w, const char *key,
                                const char *value, qv_err *err)
{
    if (!w || !key || !value)
        return qv_fail(err, QV_ERR_INVALID,
                       "qv_st_writer_set_meta: NULL argument");
    if (!utf8_ok(key) || !utf8_ok(value))
        return qv_fail(err, QV_ERR_INVALID,
                       "safetensors metadata: key or value is not UTF-8");
    char *v = dup_str(value);
    if (!v)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < w->n_meta; ++i)
        if (!strcmp(w->meta[2 * i], key)) {
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return QV_OK;
        }
    if (w->n_meta == w->cap_meta) {
        size_t nc = w->cap_meta ? 2 * w->cap_meta : 4;
        char **m = realloc(w->meta, 2 * nc * sizeof *m);
        if (!m) {
            free(v);
            return qv_fail(err, QV_ERR_NOMEM, "out of memory");
        }
        w->meta = m;
        w->cap_meta = nc;
    }
    char *k = dup_str(key);
    if (!k) {
        free(v);
        return qv_fail(err, QV_ERR_NOMEM, "out of memory");
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return QV_OK;
}

qv_status qv_st_writer_add_f32(qv_st_writer *w, const char *name,
                               uint32_t n_dims, const int64_t *shape,
                               const float *data, qv_err *err)
{
    if (!w || !name || (!shape && n_dims))
        return qv_fail(err, QV_ERR_INVALID,
                       "qv_st_writer_add_f32: NULL argument");
    if (!*name || !strcmp(name, "__metadata__") || !utf8_ok(name))
        return qv_fail(err, QV_ERR_INVALID,
                       "safetensors tensor name '%.64s' is empty, reserved "
                       "or not UTF-8", name);
    if (n_dims > QV_ST_MAX_DIMS)
        return qv_fail(err, QV_ERR_INVALID,
                       "safetensors tensor '%.64s': %u dimensions (at most "
                       "%d)", name, n_dims, QV_ST_MAX_DIMS);
    /* as the reader: a zero anywhere makes the product 0 */
    int zero = 0;
    for (uint32_t i = 0; i < n_dims; ++i) {
        if (shape[i] < 0)
            return qv_fail(err, QV_ERR_INVALID,
                           "safetensors tensor '%.64s': shape[%u] = %lld",
                           name, i, (long long)shape[i]);
        zero |= shape[i] == 0;
    }
    uint64_t elems = zero ? 0 : 1;
    for (uint32_t i = 0; i < n_dims && !zero; ++i) {
        if (elems > (uint64_t)INT64_MAX / 4 / (uint64_t)shape[i])
            return qv_fail(err, QV_ERR_INVALID,
                           "safetensors tensor '%.64s': the shape is too "
                           "large", name);
        elems *= (uint64_t)shape[i];
    }
    if (elems * 4 > SIZE_MAX || (!data && elems))
        return qv_fail(err, QV_ERR_INVALID,
                       "safetensors tensor '%.64s': no data or too large",
                       name);
    for (size_t i = 0; i < w->n; ++i)
        if (!strcmp(w->t[i].name, name))
            return qv_fail(err, QV_ERR_INVALID,
                           "safetensors tensor '%.64s' added twice", name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 16;
        wtensor *t = realloc(w->t, nc * sizeof *t);
        if (!t)
            return qv_fail(err, QV_ERR_NOMEM, "out of memory");
        w->t = t;
        w->cap = nc;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = dup_str(name)))
        return qv_fail(err, QV_ERR_NOMEM, "out of memory");
    t->n_dims = n_dims;
    for (uint32_t i = 0; i < n_dims; ++i)
        t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = (size_t)(elems * 4);
    w->n++;
    return QV_OK;
}

static int cmp_wname(const void *pa, const void *pb)
{
    const wtensor *const *a = pa, *const *b = pb;
    return strcmp((*a)->name, (*b)->name);
}

/* The 8-byte length and the padded header (*hdr, malloc'd, *hlen bytes
 * including the length), and the tensors in file order (*order). */
static qv_status build_header(const qv_st_writer *w, uint8_t **hdr,
                              size_t *hlen, const wtensor ***order,
                              qv_err *err)
{
    *hdr = NULL;
    *order = malloc((w->n + 1) * sizeof **order);
    json_t *root = json_object();
    qv_status s = QV_OK;
    if (!*order || !root) {
        s = qv_fail(err, QV_ERR_NOMEM, "out of memory writing safetensors");
        goto done;
    }
    for (size_t i = 0; i < w->n; ++i)
        (*order)[i] = &w->t[i];
    qsort(*order, w->n, sizeof **order, cmp_wname);
    int bad = 0;
    if (w->n_meta) {
        json_t *m = json_object();
        bad |= json_object_set_new(root, "__metadata__", m);
        for (size_t i = 0; i < w->n_meta && m; ++i)
            bad |= json_object_set_new(m, w->meta[2 * i],
                                       json_string(w->meta[2 * i + 1]));
    }
    uint64_t at = 0;
    for (size_t i = 0; i < w->n; ++i) {
        const wtensor *t = (*order)[i];
        json_t *e = json_object(), *sh = json_array(), *off = json_array();
        bad |= json_object_set_new(root, t->name, e);
        bad |= json_object_set_new(e, "dtype", json_string("F32"));
        bad |= json_object_set_new(e, "shape", sh);
        bad |= json_object_set_new(e, "data_offsets", off);
        for (uint32_t d = 0; d < t->n_dims && sh; ++d)
            bad |= json_array_append_new(sh, json_integer(t->shape[d]));
        if (off) {
            bad |= json_array_append_new(off, json_integer((json_int_t)at));
            bad |= json_array_append_new(
                off, json_integer((json_int_t)(at + t->nbytes)));
        }
        at += t->nbytes;
    }
    size_t jn = bad ? 0 : json_dumpb(root, NULL, 0, JSON_COMPACT);
    if (!jn) {
        s = qv_fail(err, QV_ERR_NOMEM, "out of memory writing safetensors");
        goto done;
    }
    size_t padded = (jn + 7) / 8 * 8;
    *hdr = malloc(8 + padded);
    if (!*hdr) {
        s = qv_fail(err, QV_ERR_NOMEM, "out of memory writing safetensors");
        goto done;
    }
    for (int i = 0; i < 8; ++i)
        (*hdr)[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    json_dumpb(root, (char *)*hdr + 8, jn, JSON_COMPACT);
    memset(*hdr + 8 + jn, ' ', padded - jn);
    *hlen = 8 + padded;
done:
    json_decref(root);
    if (s) {
        free(*order);
        *order = NULL;
    }
    return s;
}

qv_status qv_st_write_mem(const qv_st_writer *w, uint8_t **out, size_t *n,
                          qv_err *err)
{
    if (!w || !out || !n)
        return qv_fail(err, QV_ERR_INVALID, "qv_st_write_mem: NULL argument");
    *out = NULL;
    *n = 0;
    uint8_t *hdr;
    size_t hlen;
    const wtensor **order;
    qv_status s = build_header(w, &hdr, &hlen, &order, err);
    if (s)
        return s;
    size_t total = hlen;
    for (size_t i = 0; i < w->n; ++i)
        total += order[i]->nbytes;
    uint8_t *b = realloc(hdr, total);
    if (!b) {
        free(hdr);
        free(order);
        return qv_fail(err, QV_ERR_NOMEM, "out of memory writing safetensors");
    }
    size_t at = hlen;
    for (size_t i = 0; i < w->n; ++i) {
        if (order[i]->nbytes)
            memcpy(b + at, order[i]->data, order[i]->nbytes);
        at += order[i]->nbytes;
    }
    free(order);
    *out = b;
    *n = total;
    return QV_OK;
}

qv_status qv_st_write_file(const qv_st_writer *w, const char *path,
                           qv_err *err)
{
    if (!w || !path || !*path)
        return qv_fail(err, QV_ERR_INVALID, "qv_st_write_file: NULL argument");
    uint8_t *hdr;
    size_t hlen;
    const wtensor **order;
    qv_status s = build_header(w, &hdr, &hlen, &order, err);
    if (s)
        return s;
    qv_file_part *parts = malloc((w->n + 1) * sizeof *parts);
    if (!parts) {
        free(hdr);
        free(order);
        return qv_fail(err, QV_ERR_NOMEM, "out of memory writing '%s'", path);
    }
    parts[0] = (qv_file_part){hdr, hlen};
    for (size_t i = 0; i < w->n; ++i)
        parts[i + 1] = (qv_file_part){order[i]->data, order[i]->nbytes};
    s = qv_file_write_atomic(path, "safetensors", parts, w->n + 1, err);
    free(parts);
    free(hdr);
    free(order);
    return s;
}
