/* formats/gguf.c — see gguf.h and docs/formats.md ("GGUF files").
 *
 * Depends only on common/ and libc (+ POSIX for files): the fuzz build
 * links it without the rest of the library. */
#include "formats/gguf.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"

/* ---- type tables ---------------------------------------------------- */

static const char *const gguf_type_names[] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
    "string", "array", "u64", "i64", "f64",
};

const char *qv_gguf_type_name(uint32_t type)
{
    if (type < sizeof gguf_type_names / sizeof gguf_type_names[0])
        return gguf_type_names[type];
    return NULL;
}

/* Size of a fixed-size value type; 0 for STRING, ARRAY and unknown. */
static size_t gguf_scalar_size(uint32_t type)
{
    switch (type) {
    case QV_GGUF_UINT8: case QV_GGUF_INT8: case QV_GGUF_BOOL: return 1;
    case QV_GGUF_UINT16: case QV_GGUF_INT16: return 2;
    case QV_GGUF_UINT32: case QV_GGUF_INT32: case QV_GGUF_FLOAT32: return 4;
    case QV_GGUF_UINT64: case QV_GGUF_INT64: case QV_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Returns 1 and fills block size / bytes per block for qvac's types. */
static int ggml_type_info(uint32_t type, uint64_t *blck, uint64_t *bytes)
{
    switch (type) {
    case QV_GGML_F32: *blck = 1; *bytes = 4; return 1;
    case QV_GGML_F16: *blck = 1; *bytes = 2; return 1;
    case QV_GGML_BF16: *blck = 1; *bytes = 2; return 1;
    case QV_GGML_Q8_0: *blck = 32; *bytes = 34; return 1;
    case QV_GGML_Q6_K: *blck = 256; *bytes = 210; return 1;
    case QV_GGML_I8: *blck = 1; *bytes = 1; return 1;
    case QV_GGML_I32: *blck = 1; *bytes = 4; return 1;
    case QV_GGML_TQ1_0: *blck = 256; *bytes = 54; return 1;
    case QV_GGML_TQ2_0: *blck = 256; *bytes = 66; return 1;
    /* 4 weights a byte; the 32-byte tail is added in tensor_nbytes */
    case QV_GGML_I2_S: *blck = 128; *bytes = 32; return 1;
    default: return 0;
    }
}

const char *qv_ggml_type_name(uint32_t type)
{
    switch (type) {
    case QV_GGML_F32: return "F32";
    case QV_GGML_F16: return "F16";
    case QV_GGML_BF16: return "BF16";
    case QV_GGML_Q8_0: return "Q8_0";
    case QV_GGML_Q6_K: return "Q6_K";
    case QV_GGML_I8: return "I8";
    case QV_GGML_I32: return "I32";
    case QV_GGML_TQ1_0: return "TQ1_0";
    case QV_GGML_TQ2_0: return "TQ2_0";
    case QV_GGML_I2_S: return "I2_S";
    default: return NULL;
    }
}

#define SUPPORTED_TYPES "F32 (0), F16 (1), Q8_0 (8), Q6_K (14), I8 (24), I32 (26), BF16 (30), TQ1_0 (34), TQ2_0 (35), I2_S (36)"

/* Shape/size check shared by reader and writer. Returns 0 on success, 1 for
 * an unsupported type, 2 for a bad shape (why says which). ne are u64 so
 * the reader can pass the file's values before any conversion. */
static int tensor_nbytes(uint32_t type, uint32_t n_dims, const uint64_t *ne,
                         uint64_t *nbytes, char *why, size_t whylen)
{
    uint64_t blck, bsize;
    if (!ggml_type_info(type, &blck, &bsize))
        return 1;
    if (n_dims < 1 || n_dims > QV_GGUF_MAX_DIMS) {
        snprintf(why, whylen, "n_dims %u is not in 1..4", n_dims);
        return 2;
    }
    uint64_t elems = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
        if (ne[d] < 1 || ne[d] > (uint64_t)INT64_MAX) {
            snprintf(why, whylen, "dims[%u] = %llu is not in 1..2^63-1", d,
                     (unsigned long long)ne[d]);
            return 2;
        }
        if (elems > (uint64_t)INT64_MAX / ne[d]) {
            snprintf(why, whylen,
                     "dims product overflows int64 at dims[%u] = %llu", d,
                     (unsigned long long)ne[d]);
            return 2;
        }
        elems *= ne[d];
    }
    if (ne[0] % blck != 0) {
        snprintf(why, whylen,
                 "dims[0] = %llu is not a multiple of the %s block size %llu",
                 (unsigned long long)ne[0], qv_ggml_type_name(type),
                 (unsigned long long)blck);
        return 2;
    }
    uint64_t blocks = elems / blck;
    if (blocks > SIZE_MAX / bsize) {
        snprintf(why, whylen, "byte size %llu x %llu overflows",
                 (unsigned long long)blocks, (unsigned long long)bsize);
        return 2;
    }
    *nbytes = blocks * bsize;
    if (type == QV_GGML_I2_S) { /* the fork's ggml_nbytes: + 32 for the scale */
        if (*nbytes > SIZE_MAX - 32) {
            snprintf(why, whylen, "byte size overflows");
            return 2;
        }
        *nbytes += 32;
    }
    return 0;
}

qv_status qv_ggml_nbytes(uint32_t type, uint32_t n_dims, const int64_t *ne,
                         size_t *nbytes, qv_err *err)
{
    if (!ne || !nbytes)
        return qv_fail(err, QV_ERR_INVALID, "qv_ggml_nbytes: NULL argument");
    if (n_dims < 1 || n_dims > QV_GGUF_MAX_DIMS) /* before reading ne */
        return qv_fail(err, QV_ERR_INVALID,
                       "tensor shape: n_dims %u is not in 1..4", n_dims);
    uint64_t une[QV_GGUF_MAX_DIMS] = {1, 1, 1, 1};
    for (uint32_t d = 0; d < n_dims; ++d)
        une[d] = ne[d] < 1 ? 0 : (uint64_t)ne[d];
    char why[160];
    uint64_t nb = 0;
    switch (tensor_nbytes(type, n_dims, une, &nb, why, sizeof why)) {
    case 1:
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "unsupported tensor type %u (qvac handles " SUPPORTED_TYPES ")",
                       type);
    case 2:
        return qv_fail(err, QV_ERR_INVALID, "tensor shape: %s", why);
    }
    *nbytes = (size_t)nb;
    return QV_OK;
}

/* ---- little-endian helpers ------------------------------------------ */

static uint64_t le_load(const uint8_t *p, size_t k)
{
    uint64_t v = 0;
    for (size_t i = 0; i < k; ++i)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Stores a k-byte value (the low k bytes of v) natively at dst. */
static void native_store(void *dst, uint64_t v, size_t k)
{
    switch (k) {
    case 1: { uint8_t x = (uint8_t)v; memcpy(dst, &x, 1); break; }
    case 2: { uint16_t x = (uint16_t)v; memcpy(dst, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(dst, &x, 4); break; }
    default: memcpy(dst, &v, 8); break;
    }
}

static uint64_t native_load(const void *src, size_t k)
{
    switch (k) {
    case 1: { uint8_t x; memcpy(&x, src, 1); return x; }
    case 2: { uint16_t x; memcpy(&x, src, 2); return x; }
    case 4: { uint32_t x; memcpy(&x, src, 4); return x; }
    default: { uint64_t x; memcpy(&x, src, 8); return x; }
    }
}

/* ---- arena: the reader's metadata, freed at once -------------------- */

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    max_align_t data[];
} chunk;

static void *arena_alloc(chunk **arena, size_t n)
{
    const size_t al = alignof(max_align_t);
    if (n > SIZE_MAX - al)
        return NULL;
    n = (n + al - 1) / al * al;
    if (n == 0)
        n = al;
    chunk *c = *arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (cap > SIZE_MAX - sizeof(chunk))
            return NULL;
        c = malloc(sizeof(chunk) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = *arena;
        *arena = c;
    }
    void *p = (uint8_t *)c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(chunk *c)
{
    while (c) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
}

/* ---- the parsed file ------------------------------------------------ */

typedef union kv_scalar {
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    float f32;
    uint64_t u64;
    int64_t i64;
    double f64;
} kv_scalar;

typedef struct kv_entry {
    qv_gguf_kv pub;           /* first: a qv_gguf_kv * is a kv_entry * */
    size_t key_pos;           /* byte offset of the key, for messages */
    kv_scalar v;              /* scalars */
    const char *str;          /* STRING */
    size_t str_len;
    void *arr;                /* numeric arrays, native */
    const char **strs;        /* string arrays */
    size_t *lens;
} kv_entry;

typedef struct tensor_entry {
    qv_gguf_tensor pub;
    size_t info_pos;          /* byte offset of the tensor info */
    size_t offset_pos;        /* byte offset of its offset field */
} tensor_entry;

struct qv_gguf {
    const uint8_t *bytes;
    size_t n;
    void *map;                /* qv_gguf_open's mapping, else NULL */
    size_t map_len;
    chunk *arena;
    kv_entry *kvs;
    size_t n_kv, cap_kv;
    tensor_entry *tensors;
    size_t n_tensors, cap_tensors;
    kv_entry **kv_sorted;     /* by key, for lookup */
    tensor_entry **t_sorted;  /* by name, for lookup */
    uint32_t alignment;
    uint64_t data_offset;
};

/* ---- reader --------------------------------------------------------- */

typedef struct rd {
    const uint8_t *b;
    size_t n, pos;
    qv_err *err;
    qv_gguf *g;
    char item[112];           /* "kv[3] 'general.name'" etc., for messages */
} rd;

/* Copies up to 60 bytes of s into a printable form. */
static void printable(char *dst, size_t dstlen, const uint8_t *s, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 4 < dstlen; ++i) {
        if (i == 60) {
            memcpy(dst + j, "...", 3);
            j += 3;
            break;
        }
        dst[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    }
    dst[j] = '\0';
}

#define CORRUPT(r, pos, ...) corrupt_at((r), (pos), __VA_ARGS__)

static qv_status corrupt_at(rd *r, size_t pos, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static qv_status corrupt_at(rd *r, size_t pos, const char *fmt, ...)
{
    char detail[360];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return qv_fail(r->err, QV_ERR_CORRUPT, "GGUF %s%sat byte %zu: %s",
                   r->item, r->item[0] ? " " : "", pos, detail);
}

static qv_status need(rd *r, size_t k, const char *field)
{
    if (r->n - r->pos < k)
        return CORRUPT(r, r->pos,
                       "file truncated: %s needs %zu bytes, only %zu left "
                       "(file is %zu bytes)",
                       field, k, r->n - r->pos, r->n);
    return QV_OK;
}

static qv_status rd_uint(rd *r, size_t k, const char *field, uint64_t *v)
{
    qv_status s = need(r, k, field);
    if (s)
        return s;
    *v = le_load(r->b + r->pos, k);
    r->pos += k;
    return QV_OK;
}

static qv_status nomem(rd *r, size_t bytes)
{
    return qv_fail(r->err, QV_ERR_NOMEM,
                   "out of memory allocating %zu bytes for GGUF metadata (%s)",
                   bytes, r->item);
}

/* Reads a string (u64 length + bytes) into the arena, NUL-terminated.
 * no_nul: reject NUL bytes inside (keys, names); max: 0 or upper bound. */
static qv_status rd_str(rd *r, const char *field, size_t min, size_t max,
                        int no_nul, const char **out, size_t *len)
{
    size_t at = r->pos;
    uint64_t n;
    qv_status s = rd_uint(r, 8, field, &n);
    if (s)
        return s;
    if (n > r->n - r->pos)
        return CORRUPT(r, at,
                       "%s length %llu is larger than the %zu bytes left in "
                       "the file",
                       field, (unsigned long long)n, r->n - r->pos);
    if (n < min || (max && n > max))
        return CORRUPT(r, at, "%s length %llu is not in %zu..%zu", field,
                       (unsigned long long)n, min, max);
    const uint8_t *src = r->b + r->pos;
    if (no_nul && memchr(src, 0, (size_t)n))
        return CORRUPT(r, at, "%s contains a NUL byte", field);
    char *dst = arena_alloc(&r->g->arena, (size_t)n + 1);
    if (!dst)
        return nomem(r, (size_t)n + 1);
    memcpy(dst, src, (size_t)n);
    dst[n] = '\0';
    r->pos += (size_t)n;
    *out = dst;
    if (len)
        *len = (size_t)n;
    return QV_OK;
}

static qv_status rd_kv(rd *r, size_t i)
{
    qv_gguf *g = r->g;
    snprintf(r->item, sizeof r->item, "kv[%zu]", i);
    if (g->n_kv == g->cap_kv) {
        size_t cap = g->cap_kv ? g->cap_kv * 2 : 16;
        kv_entry *k = realloc(g->kvs, cap * sizeof *k);
        if (!k)
            return nomem(r, cap * sizeof *k);
        g->kvs = k;
        g->cap_kv = cap;
    }
    kv_entry *e = &g->kvs[g->n_kv];
    memset(e, 0, sizeof *e);
    e->key_pos = r->pos;
    size_t key_len = 0;
    qv_status s = rd_str(r, "key", 1, QV_GGUF_MAX_KEY, 1, &e->pub.key, &key_len);
    if (s)
        return s;
    char shown[80];
    printable(shown, sizeof shown, (const uint8_t *)e->pub.key, key_len);
    snprintf(r->item, sizeof r->item, "kv[%zu] '%s'", i, shown);

    size_t type_pos = r->pos;
    uint64_t type;
    if ((s = rd_uint(r, 4, "value type", &type)))
        return s;
    if (type > QV_GGUF_FLOAT64)
        return CORRUPT(r, type_pos, "value type %llu is not a GGUF type (0..12)",
                       (unsigned long long)type);
    e->pub.type = (qv_gguf_type)type;
    e->pub.elem_type = (qv_gguf_type)type;
    e->pub.n = 1;

    if (type == QV_GGUF_STRING)
        return rd_str(r, "string", 0, 0, 0, &e->str, &e->str_len);
    if (type != QV_GGUF_ARRAY) {
        size_t k = gguf_scalar_size((uint32_t)type);
        size_t at = r->pos;
        uint64_t v;
        if ((s = rd_uint(r, k, "value", &v)))
            return s;
        if (type == QV_GGUF_BOOL && v > 1)
            return CORRUPT(r, at, "bool value %llu is not 0 or 1",
                           (unsigned long long)v);
        native_store(&e->v, v, k);
        return QV_OK;
    }

    size_t et_pos = r->pos;
    uint64_t et;
    if ((s = rd_uint(r, 4, "array element type", &et)))
        return s;
    if (et == QV_GGUF_ARRAY)
        return qv_fail(r->err, QV_ERR_UNSUPPORTED,
                       "GGUF %s at byte %zu: nested arrays are not supported "
                       "(llama.cpp rejects them too)",
                       r->item, et_pos);
    if (et > QV_GGUF_FLOAT64)
        return CORRUPT(r, et_pos,
                       "array element type %llu is not a GGUF type (0..12)",
                       (unsigned long long)et);
    e->pub.elem_type = (qv_gguf_type)et;
    size_t n_pos = r->pos;
    uint64_t n;
    if ((s = rd_uint(r, 8, "array count", &n)))
        return s;
    size_t left = r->n - r->pos;
    size_t min_elem = et == QV_GGUF_STRING ? 8 : gguf_scalar_size((uint32_t)et);
    if (n > left / min_elem)
        return CORRUPT(r, n_pos,
                       "array count %llu of %s needs at least %llu x %zu "
                       "bytes, only %zu left",
                       (unsigned long long)n, qv_gguf_type_name((uint32_t)et),
                       (unsigned long long)n, min_elem, left);
    e->pub.n = (size_t)n;
    if (n == 0)
        return QV_OK;
    if (et == QV_GGUF_STRING) {
        /* n <= left / 8, so these sizes cannot overflow */
        e->strs = arena_alloc(&g->arena, (size_t)n * sizeof *e->strs);
        e->lens = arena_alloc(&g->arena, (size_t)n * sizeof *e->lens);
        if (!e->strs || !e->lens)
            return nomem(r, (size_t)n * (sizeof *e->strs + sizeof *e->lens));
        for (size_t j = 0; j < n; ++j)
            if ((s = rd_str(r, "array string", 0, 0, 0, &e->strs[j],
                            &e->lens[j])))
                return s;
        return QV_OK;
    }
    size_t k = min_elem;
    e->arr = arena_alloc(&g->arena, (size_t)n * k);
    if (!e->arr)
        return nomem(r, (size_t)n * k);
    const uint8_t *src = r->b + r->pos;
    for (size_t j = 0; j < n; ++j) {
        uint64_t v = le_load(src + j * k, k);
        if (et == QV_GGUF_BOOL && v > 1)
            return CORRUPT(r, r->pos + j, "bool element %zu is %llu, not 0 or 1",
                           j, (unsigned long long)v);
        native_store((uint8_t *)e->arr + j * k, v, k);
    }
    r->pos += (size_t)n * k;
    return QV_OK;
}

static qv_status rd_tensor_info(rd *r, size_t i)
{
    qv_gguf *g = r->g;
    snprintf(r->item, sizeof r->item, "tensor[%zu]", i);
    if (g->n_tensors == g->cap_tensors) {
        size_t cap = g->cap_tensors ? g->cap_tensors * 2 : 16;
        tensor_entry *t = realloc(g->tensors, cap * sizeof *t);
        if (!t)
            return nomem(r, cap * sizeof *t);
        g->tensors = t;
        g->cap_tensors = cap;
    }
    tensor_entry *e = &g->tensors[g->n_tensors];
    memset(e, 0, sizeof *e);
    e->info_pos = r->pos;
    size_t name_len = 0;
    qv_status s = rd_str(r, "name", 1, QV_GGUF_MAX_NAME, 1, &e->pub.name,
                         &name_len);
    if (s)
        return s;
    char shown[80];
    printable(shown, sizeof shown, (const uint8_t *)e->pub.name, name_len);
    snprintf(r->item, sizeof r->item, "tensor[%zu] '%s'", i, shown);

    size_t nd_pos = r->pos;
    uint64_t nd;
    if ((s = rd_uint(r, 4, "n_dims", &nd)))
        return s;
    if (nd < 1 || nd > QV_GGUF_MAX_DIMS)
        return CORRUPT(r, nd_pos, "n_dims %llu is not in 1..4",
                       (unsigned long long)nd);
    e->pub.n_dims = (uint32_t)nd;
    size_t dims_pos = r->pos;
    uint64_t ne[QV_GGUF_MAX_DIMS] = {1, 1, 1, 1};
    for (uint32_t d = 0; d < nd; ++d)
        if ((s = rd_uint(r, 8, "dims", &ne[d])))
            return s;
    size_t type_pos = r->pos;
    uint64_t type;
    if ((s = rd_uint(r, 4, "type", &type)))
        return s;
    e->offset_pos = r->pos;
    uint64_t off;
    if ((s = rd_uint(r, 8, "offset", &off)))
        return s;

    char why[160];
    uint64_t nbytes = 0;
    switch (tensor_nbytes((uint32_t)type, (uint32_t)nd, ne, &nbytes, why,
                          sizeof why)) {
    case 1:
        return qv_fail(r->err, QV_ERR_UNSUPPORTED,
                       "GGUF %s at byte %zu: unsupported tensor type %llu "
                       "(qvac reads " SUPPORTED_TYPES ")",
                       r->item, type_pos, (unsigned long long)type);
    case 2:
        return CORRUPT(r, dims_pos, "%s", why);
    }
    for (uint32_t d = 0; d < QV_GGUF_MAX_DIMS; ++d)
        e->pub.ne[d] = (int64_t)ne[d];
    e->pub.type = (uint32_t)type;
    e->pub.offset = off;
    e->pub.nbytes = (size_t)nbytes;
    return QV_OK;
}

static int cmp_kv(const void *a, const void *b)
{
    const kv_entry *x = *(kv_entry *const *)a, *y = *(kv_entry *const *)b;
    int c = strcmp(x->pub.key, y->pub.key);
    if (c)
        return c;
    return (x > y) - (x < y);
}

static int cmp_tname(const void *a, const void *b)
{
    const tensor_entry *x = *(tensor_entry *const *)a;
    const tensor_entry *y = *(tensor_entry *const *)b;
    int c = strcmp(x->pub.name, y->pub.name);
    if (c)
        return c;
    return (x > y) - (x < y);
}

static int cmp_toff(const void *a, const void *b)
{
    const tensor_entry *x = *(tensor_entry *const *)a;
    const tensor_entry *y = *(tensor_entry *const *)b;
    if (x->pub.offset != y->pub.offset)
        return x->pub.offset < y->pub.offset ? -1 : 1;
    return (x > y) - (x < y);
}

static qv_status parse(rd *r)
{
    qv_gguf *g = r->g;
    qv_status s;
    r->item[0] = '\0';

    if (r->n < 4 || memcmp(r->b, "GGUF", 4) != 0) {
        char shown[16];
        printable(shown, sizeof shown, r->b, r->n < 4 ? r->n : 4);
        return CORRUPT(r, 0, "magic '%s' is not 'GGUF': not a GGUF file",
                       shown);
    }
    r->pos = 4;
    uint64_t version, n_tensors, n_kv;
    if ((s = rd_uint(r, 4, "version", &version)))
        return s;
    if (version != QV_GGUF_VERSION) {
        if ((version & 0xffff) == 0)
            return CORRUPT(r, 4,
                           "version 0x%08llx: a big-endian GGUF? qvac reads "
                           "only little-endian version 3",
                           (unsigned long long)version);
        return CORRUPT(r, 4,
                       "version %llu: qvac reads only GGUF version 3 "
                       "(re-convert the model with a current llama.cpp)",
                       (unsigned long long)version);
    }
    if ((s = rd_uint(r, 8, "tensor count", &n_tensors)))
        return s;
    if ((s = rd_uint(r, 8, "kv count", &n_kv)))
        return s;
    /* A KV takes at least 14 bytes (u64 key length, 1-byte key, u32 type,
     * 1-byte value), a tensor info at least 29 (u64 name length, 1-byte
     * name, u32 n_dims, one u64 dim, u32 type, u64 offset). */
    size_t left = r->n - r->pos;
    if (n_tensors > left / 29)
        return CORRUPT(r, 8,
                       "tensor count %llu is impossible: each tensor info "
                       "takes at least 29 bytes and only %zu follow the header",
                       (unsigned long long)n_tensors, left);
    if (n_kv > left / 14 || n_kv * 14 > left - n_tensors * 29)
        return CORRUPT(r, 16,
                       "kv count %llu is impossible: each KV takes at least 14 "
                       "bytes and only %zu follow the header",
                       (unsigned long long)n_kv, left);

    for (size_t i = 0; i < n_kv; ++i) {
        if ((s = rd_kv(r, i)))
            return s;
        g->n_kv++;
    }
    r->item[0] = '\0';
    if (g->n_kv) {
        g->kv_sorted = arena_alloc(&g->arena, g->n_kv * sizeof *g->kv_sorted);
        if (!g->kv_sorted)
            return nomem(r, g->n_kv * sizeof *g->kv_sorted);
        for (size_t i = 0; i < g->n_kv; ++i)
            g->kv_sorted[i] = &g->kvs[i];
        qsort(g->kv_sorted, g->n_kv, sizeof *g->kv_sorted, cmp_kv);
        for (size_t i = 1; i < g->n_kv; ++i)
            if (!strcmp(g->kv_sorted[i - 1]->pub.key, g->kv_sorted[i]->pub.key)) {
                kv_entry *a = g->kv_sorted[i - 1], *b = g->kv_sorted[i];
                char shown[80];
                printable(shown, sizeof shown, (const uint8_t *)a->pub.key,
                          strlen(a->pub.key));
                return CORRUPT(r, b->key_pos,
                               "duplicate key '%s' (kv[%zu] and kv[%zu])",
                               shown, (size_t)(a - g->kvs),
                               (size_t)(b - g->kvs));
            }
    }

    g->alignment = QV_GGUF_DEFAULT_ALIGNMENT;
    const qv_gguf_kv *al = qv_gguf_find_kv(g, "general.alignment");
    if (al) {
        const kv_entry *e = (const kv_entry *)al;
        snprintf(r->item, sizeof r->item, "kv[%zu] 'general.alignment'",
                 (size_t)(e - g->kvs));
        if (al->type != QV_GGUF_UINT32)
            return CORRUPT(r, e->key_pos, "general.alignment has type %s, "
                           "must be u32", qv_gguf_type_name(al->type));
        if (e->v.u32 == 0 || (e->v.u32 & (e->v.u32 - 1)) != 0)
            return CORRUPT(r, e->key_pos,
                           "general.alignment %u is not a power of two",
                           e->v.u32);
        g->alignment = e->v.u32;
        r->item[0] = '\0';
    }

    for (size_t i = 0; i < n_tensors; ++i) {
        if ((s = rd_tensor_info(r, i)))
            return s;
        g->n_tensors++;
    }
    r->item[0] = '\0';

    /* data section: after the infos, padded to the alignment. Without
     * tensors there is none, and llama.cpp (gguf_init_from_file_impl) does
     * not ask for the padding: its vocabulary-only files end right after
     * the KVs. */
    uint64_t start = ((uint64_t)r->pos + g->alignment - 1) /
                     g->alignment * g->alignment;
    if (n_tensors == 0 && start > r->n)
        start = r->pos;
    if (start > r->n)
        return CORRUPT(r, r->pos,
                       "file truncated: padding to the data section needs "
                       "%llu bytes, only %zu left",
                       (unsigned long long)(start - r->pos), r->n - r->pos);
    g->data_offset = start;
    size_t data_size = r->n - (size_t)start;

    for (size_t i = 0; i < g->n_tensors; ++i) {
        tensor_entry *e = &g->tensors[i];
        char shown[80];
        printable(shown, sizeof shown, (const uint8_t *)e->pub.name,
                  strlen(e->pub.name));
        snprintf(r->item, sizeof r->item, "tensor[%zu] '%s'", i, shown);
        uint64_t off = e->pub.offset;
        if (off % g->alignment)
            return CORRUPT(r, e->offset_pos,
                           "offset %llu is not a multiple of the alignment %u",
                           (unsigned long long)off, g->alignment);
        /* the tensor and its padding must lie in the data section, as
         * llama.cpp reads the padded size */
        uint64_t nb = e->pub.nbytes;
        uint64_t padded = nb > UINT64_MAX - (g->alignment - 1)
                              ? UINT64_MAX /* no wrap-around */
                              : (nb + g->alignment - 1) / g->alignment *
                                    g->alignment;
        if (off > data_size || padded > data_size - off)
            return CORRUPT(r, e->offset_pos,
                           "offset %llu + %zu bytes (%llu padded) runs past "
                           "the end of the data section (%zu bytes from byte "
                           "%llu)",
                           (unsigned long long)off, e->pub.nbytes,
                           (unsigned long long)padded, data_size,
                           (unsigned long long)start);
        e->pub.data = r->b + start + off;
    }
    r->item[0] = '\0';

    if (g->n_tensors) {
        size_t nt = g->n_tensors;
        g->t_sorted = arena_alloc(&g->arena, nt * sizeof *g->t_sorted);
        if (!g->t_sorted)
            return nomem(r, nt * sizeof *g->t_sorted);
        for (size_t i = 0; i < nt; ++i)
            g->t_sorted[i] = &g->tensors[i];
        qsort(g->t_sorted, nt, sizeof *g->t_sorted, cmp_toff);
        for (size_t i = 1; i < nt; ++i) {
            tensor_entry *a = g->t_sorted[i - 1], *b = g->t_sorted[i];
            if (a->pub.offset + a->pub.nbytes > b->pub.offset) {
                char sa[80], sb[80];
                printable(sa, sizeof sa, (const uint8_t *)a->pub.name,
                          strlen(a->pub.name));
                printable(sb, sizeof sb, (const uint8_t *)b->pub.name,
                          strlen(b->pub.name));
                return CORRUPT(r, b->offset_pos,
                               "tensor[%zu] '%s' offset %llu overlaps "
                               "tensor[%zu] '%s' (bytes %llu..%llu)",
                               (size_t)(b - g->tensors), sb,
                               (unsigned long long)b->pub.offset,
                               (size_t)(a - g->tensors), sa,
                               (unsigned long long)a->pub.offset,
                               (unsigned long long)(a->pub.offset +
                                                    a->pub.nbytes));
            }
        }
        qsort(g->t_sorted, nt, sizeof *g->t_sorted, cmp_tname);
        for (size_t i = 1; i < nt; ++i) {
            tensor_entry *a = g->t_sorted[i - 1], *b = g->t_sorted[i];
            if (!strcmp(a->pub.name, b->pub.name)) {
                char sa[80];
                printable(sa, sizeof sa, (const uint8_t *)a->pub.name,
                          strlen(a->pub.name));
                return CORRUPT(r, b->info_pos,
                               "duplicate tensor name '%s' (tensor[%zu] and "
                               "tensor[%zu])",
                               sa, (size_t)(a - g->tensors),
                               (size_t)(b - g->tensors));
            }
        }
    }
    return QV_OK;
}

qv_status qv_gguf_parse(const void *bytes, size_t n, qv_gguf **out,
                        qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "qv_gguf_parse: out is NULL");
    *out = NULL;
    if (!bytes && n)
        return qv_fail(err, QV_ERR_INVALID, "qv_gguf_parse: bytes is NULL");
    qv_gguf *g = calloc(1, sizeof *g);
    if (!g)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory for a GGUF file");
    g->bytes = bytes;
    g->n = n;
    rd r = {.b = bytes ? bytes : (const void *)"", .n = n, .err = err, .g = g};
    qv_status s = parse(&r);
    if (s) {
        qv_gguf_free(g);
        return s;
    }
    *out = g;
    return QV_OK;
}

qv_status qv_gguf_open(const char *path, qv_gguf **out, qv_err *err)
{
    if (!out || !path)
        return qv_fail(err, QV_ERR_INVALID, "qv_gguf_open: NULL argument");
    *out = NULL;
    void *map = NULL;
    size_t len = 0;
    qv_status s = qv_file_map(path, "GGUF", &map, &len, err);
    if (s)
        return s;
    qv_gguf *g = NULL;
    qv_err inner;
    s = qv_gguf_parse(map, len, &g, &inner);
    if (s) {
        qv_file_unmap(map, len);
        return qv_fail(err, s, "'%s': %s", path, inner.msg);
    }
    g->map = map;
    g->map_len = len;
    *out = g;
    return QV_OK;
}

void qv_gguf_free(qv_gguf *g)
{
    if (!g)
        return;
    qv_file_unmap(g->map, g->map_len);
    arena_free(g->arena);
    free(g->kvs);
    free(g->tensors);
    free(g);
}

uint32_t qv_gguf_alignment(const qv_gguf *g) { return g ? g->alignment : 0; }
uint64_t qv_gguf_data_offset(const qv_gguf *g) { return g ? g->data_offset : 0; }
size_t qv_gguf_kv_count(const qv_gguf *g) { return g ? g->n_kv : 0; }
size_t qv_gguf_tensor_count(const qv_gguf *g) { return g ? g->n_tensors : 0; }

const qv_gguf_kv *qv_gguf_kv_at(const qv_gguf *g, size_t i)
{
    return g && i < g->n_kv ? &g->kvs[i].pub : NULL;
}

const qv_gguf_tensor *qv_gguf_tensor_at(const qv_gguf *g, size_t i)
{
    return g && i < g->n_tensors ? &g->tensors[i].pub : NULL;
}

const qv_gguf_kv *qv_gguf_find_kv(const qv_gguf *g, const char *key)
{
    if (!g || !key)
        return NULL;
    size_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, g->kv_sorted[mid]->pub.key);
        if (c == 0)
            return &g->kv_sorted[mid]->pub;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const qv_gguf_tensor *qv_gguf_find_tensor(const qv_gguf *g, const char *name)
{
    if (!g || !name)
        return NULL;
    size_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, g->t_sorted[mid]->pub.name);
        if (c == 0)
            return &g->t_sorted[mid]->pub;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

qv_status qv_gguf_get_tensor(const qv_gguf *g, const char *name,
                             const qv_gguf_tensor **out, qv_err *err)
{
    if (!g || !name || !out)
        return qv_fail(err, QV_ERR_INVALID, "qv_gguf_get_tensor: NULL argument");
    *out = qv_gguf_find_tensor(g, name);
    if (!*out)
        return qv_fail(err, QV_ERR_NOT_FOUND,
                       "GGUF has no tensor '%s' (%zu tensors)", name,
                       g->n_tensors);
    return QV_OK;
}

/* Finds key and checks its type (elem_type for arrays). */
static qv_status find_typed(const qv_gguf *g, const char *key, int is_array,
                            qv_gguf_type type, const kv_entry **out,
                            qv_err *err)
{
    if (!g || !key)
        return qv_fail(err, QV_ERR_INVALID, "GGUF getter: NULL argument");
    const qv_gguf_kv *kv = qv_gguf_find_kv(g, key);
    if (!kv)
        return qv_fail(err, QV_ERR_NOT_FOUND, "GGUF has no key '%s'", key);
    const kv_entry *e = (const kv_entry *)kv;
    if (is_array) {
        if (kv->type != QV_GGUF_ARRAY || kv->elem_type != type)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "GGUF key '%s' (at byte %zu) is %s%s, expected "
                           "an array of %s",
                           key, e->key_pos,
                           kv->type == QV_GGUF_ARRAY ? "an array of " : "",
                           qv_gguf_type_name(kv->elem_type),
                           qv_gguf_type_name(type));
    } else if (kv->type != type) {
        return qv_fail(err, QV_ERR_CORRUPT,
                       "GGUF key '%s' (at byte %zu) is %s%s, expected %s", key,
                       e->key_pos,
                       kv->type == QV_GGUF_ARRAY ? "an array of " : "",
                       qv_gguf_type_name(kv->elem_type),
                       qv_gguf_type_name(type));
    }
    *out = e;
    return QV_OK;
}

qv_status qv_gguf_get_val(const qv_gguf *g, const char *key,
                          qv_gguf_type type, void *out, qv_err *err)
{
    size_t k = gguf_scalar_size((uint32_t)type);
    if (!k || !out)
        return qv_fail(err, QV_ERR_INVALID,
                       "qv_gguf_get_val: type %d is not a numeric scalar type "
                       "or out is NULL (use qv_gguf_get_str / _arr)",
                       (int)type);
    const kv_entry *e;
    qv_status s = find_typed(g, key, 0, type, &e, err);
    if (s)
        return s;
    memcpy(out, &e->v, k);
    return QV_OK;
}

qv_status qv_gguf_get_u32(const qv_gguf *g, const char *key, uint32_t *out,
                          qv_err *err)
{
    return qv_gguf_get_val(g, key, QV_GGUF_UINT32, out, err);
}

qv_status qv_gguf_get_i32(const qv_gguf *g, const char *key, int32_t *out,
                          qv_err *err)
{
    return qv_gguf_get_val(g, key, QV_GGUF_INT32, out, err);
}

qv_status qv_gguf_get_u64(const qv_gguf *g, const char *key, uint64_t *out,
                          qv_err *err)
{
    return qv_gguf_get_val(g, key, QV_GGUF_UINT64, out, err);
}

qv_status qv_gguf_get_f32(const qv_gguf *g, const char *key, float *out,
                          qv_err *err)
{
    return qv_gguf_get_val(g, key, QV_GGUF_FLOAT32, out, err);
}

qv_status qv_gguf_get_bool(const qv_gguf *g, const char *key, bool *out,
                           qv_err *err)
{
    uint8_t b = 0;
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "qv_gguf_get_bool: out is NULL");
    qv_status s = qv_gguf_get_val(g, key, QV_GGUF_BOOL, &b, err);
    if (s == QV_OK)
        *out = b != 0;
    return s;
}

qv_status qv_gguf_get_str(const qv_gguf *g, const char *key,
                          const char **out, size_t *len, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "qv_gguf_get_str: out is NULL");
    const kv_entry *e;
    qv_status s = find_typed(g, key, 0, QV_GGUF_STRING, &e, err);
    if (s)
        return s;
    *out = e->str;
    if (len)
        *len = e->str_len;
    return QV_OK;
}

qv_status qv_gguf_get_arr(const qv_gguf *g, const char *key,
                          qv_gguf_type elem_type, const void **data,
                          size_t *n, qv_err *err)
{
    if (!gguf_scalar_size((uint32_t)elem_type) || !data || !n)
        return qv_fail(err, QV_ERR_INVALID,
                       "qv_gguf_get_arr: element type %d is not numeric or an "
                       "output is NULL (use qv_gguf_get_str_arr for strings)",
                       (int)elem_type);
    const kv_entry *e;
    qv_status s = find_typed(g, key, 1, elem_type, &e, err);
    if (s)
        return s;
    *data = e->arr;
    *n = e->pub.n;
    return QV_OK;
}

qv_status qv_gguf_get_str_arr(const qv_gguf *g, const char *key,
                              const char *const **strs, const size_t **lens,
                              size_t *n, qv_err *err)
{
    if (!strs || !n)
        return qv_fail(err, QV_ERR_INVALID,
                       "qv_gguf_get_str_arr: NULL argument");
    const kv_entry *e;
    qv_status s = find_typed(g, key, 1, QV_GGUF_STRING, &e, err);
    if (s)
        return s;
    *strs = (const char *const *)e->strs;
    if (lens)
        *lens = e->lens;
    *n = e->pub.n;
    return QV_OK;
}

/* ---- writer --------------------------------------------------------- */

typedef struct wkv {
    char *key;
    qv_gguf_type type;        /* ARRAY for arrays */
    qv_gguf_type elem_type;
    size_t n;
    uint64_t bits;            /* scalars, as their little-endian value */
    char *str;                /* STRING */
    void *arr;                /* numeric arrays: n native elements */
    char **strs;              /* string arrays */
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t n_dims;
    uint64_t ne[QV_GGUF_MAX_DIMS];
    uint32_t type;
    const void *data;
    size_t nbytes;
    uint64_t offset;
} wtensor;

struct qv_gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint64_t data_size;       /* sum of padded tensor sizes */
};

#define WALIGN QV_GGUF_DEFAULT_ALIGNMENT

static void wkv_clear(wkv *k)
{
    free(k->str);
    free(k->arr);
    if (k->strs)
        for (size_t i = 0; i < k->n; ++i)
            free(k->strs[i]);
    free(k->strs);
    k->str = NULL;
    k->arr = NULL;
    k->strs = NULL;
}

void qv_gguf_writer_free(qv_gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; ++i) {
        wkv_clear(&w->kvs[i]);
        free(w->kvs[i].key);
    }
    free(w->kvs);
    for (size_t i = 0; i < w->n_tensors; ++i)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}

qv_status qv_gguf_writer_new(qv_gguf_writer **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "qv_gguf_writer_new: out is NULL");
    *out = NULL;
    qv_gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory for a GGUF writer");
    qv_status s = qv_gguf_writer_set_u32(w, "general.alignment", WALIGN, err);
    if (s) {
        qv_gguf_writer_free(w);
        return s;
    }
    *out = w;
    return QV_OK;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

/* Finds or appends the KV `key`, cleared, ready for a new value. */
static qv_status wkv_slot(qv_gguf_writer *w, const char *key, wkv **out,
                          qv_err *err)
{
    if (!w || !key)
        return qv_fail(err, QV_ERR_INVALID, "GGUF writer: NULL argument");
    size_t len = strlen(key);
    if (len < 1 || len > QV_GGUF_MAX_KEY)
        return qv_fail(err, QV_ERR_INVALID,
                       "GGUF key of %zu bytes: keys must be 1..65535 bytes",
                       len);
    for (size_t i = 0; i < w->n_kv; ++i)
        if (!strcmp(w->kvs[i].key, key)) {
            wkv_clear(&w->kvs[i]);
            *out = &w->kvs[i];
            return QV_OK;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *k = realloc(w->kvs, cap * sizeof *k);
        if (!k)
            return qv_fail(err, QV_ERR_NOMEM, "out of memory adding GGUF key '%s'",
                           key);
        w->kvs = k;
        w->cap_kv = cap;
    }
    wkv *k = &w->kvs[w->n_kv];
    memset(k, 0, sizeof *k);
    k->key = dup_str(key);
    if (!k->key)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory adding GGUF key '%s'",
                       key);
    w->n_kv++;
    *out = k;
    return QV_OK;
}

static qv_status check_alignment_key(const char *key, qv_gguf_type type,
                                     const void *value, qv_err *err)
{
    if (!key || strcmp(key, "general.alignment"))
        return QV_OK;
    if (type != QV_GGUF_UINT32 || native_load(value, 4) != WALIGN)
        return qv_fail(err, QV_ERR_INVALID,
                       "general.alignment can only be u32 %d: the writer "
                       "always aligns tensor data to %d bytes",
                       WALIGN, WALIGN);
    return QV_OK;
}

qv_status qv_gguf_writer_set_val(qv_gguf_writer *w, const char *key,
                                 qv_gguf_type type, const void *value,
                                 qv_err *err)
{
    size_t k = gguf_scalar_size((uint32_t)type);
    if (!k || !value)
        return qv_fail(err, QV_ERR_INVALID,
                       "GGUF key '%s': type %d is not a numeric scalar type "
                       "or value is NULL",
                       key ? key : "(null)", (int)type);
    if (type == QV_GGUF_BOOL && native_load(value, 1) > 1)
        return qv_fail(err, QV_ERR_INVALID,
                       "GGUF key '%s': bool value must be 0 or 1", key ? key : "(null)");
    qv_status s = check_alignment_key(key, type, value, err);
    if (s)
        return s;
    wkv *kv;
    if ((s = wkv_slot(w, key, &kv, err)))
        return s;
    kv->type = kv->elem_type = type;
    kv->n = 1;
    kv->bits = native_load(value, k);
    return QV_OK;
}

qv_status qv_gguf_writer_set_u32(qv_gguf_writer *w, const char *key,
                                 uint32_t v, qv_err *err)
{
    return qv_gguf_writer_set_val(w, key, QV_GGUF_UINT32, &v, err);
}

qv_status qv_gguf_writer_set_i32(qv_gguf_writer *w, const char *key,
                                 int32_t v, qv_err *err)
{
    return qv_gguf_writer_set_val(w, key, QV_GGUF_INT32, &v, err);
}

qv_status qv_gguf_writer_set_u64(qv_gguf_writer *w, const char *key,
                                 uint64_t v, qv_err *err)
{
    return qv_gguf_writer_set_val(w, key, QV_GGUF_UINT64, &v, err);
}

qv_status qv_gguf_writer_set_f32(qv_gguf_writer *w, const char *key,
                                 float v, qv_err *err)
{
    return qv_gguf_writer_set_val(w, key, QV_GGUF_FLOAT32, &v, err);
}

qv_status qv_gguf_writer_set_bool(qv_gguf_writer *w, const char *key,
                                  bool v, qv_err *err)
{
    uint8_t b = v ? 1 : 0;
    return qv_gguf_writer_set_val(w, key, QV_GGUF_BOOL, &b, err);
}

qv_status qv_gguf_writer_set_str(qv_gguf_writer *w, const char *key,
                                 const char *v, qv_err *err)
{
    if (!v)
        return qv_fail(err, QV_ERR_INVALID, "GGUF key '%s': string is NULL",
                       key ? key : "(null)");
    qv_status s = check_alignment_key(key, QV_GGUF_STRING, NULL, err);
    if (s)
        return s;
    char *copy = dup_str(v);
    if (!copy)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory copying GGUF string");
    wkv *kv;
    if ((s = wkv_slot(w, key, &kv, err))) {
        free(copy);
        return s;
    }
    kv->type = kv->elem_type = QV_GGUF_STRING;
    kv->n = 1;
    kv->str = copy;
    return QV_OK;
}

qv_status qv_gguf_writer_set_arr(qv_gguf_writer *w, const char *key,
                                 qv_gguf_type elem_type, const void *data,
                                 size_t n, qv_err *err)
{
    size_t k = gguf_scalar_size((uint32_t)elem_type);
    if (!k || (!data && n))
        return qv_fail(err, QV_ERR_INVALID,
                       "GGUF key '%s': array element type %d is not numeric "
                       "or data is NULL",
                       key ? key : "(null)", (int)elem_type);
    if (n > SIZE_MAX / k)
        return qv_fail(err, QV_ERR_INVALID, "GGUF key '%s': array too large",
                       key ? key : "(null)");
    if (elem_type == QV_GGUF_BOOL)
        for (size_t i = 0; i < n; ++i)
            if (((const uint8_t *)data)[i] > 1)
                return qv_fail(err, QV_ERR_INVALID,
                               "GGUF key '%s': bool element %zu is not 0 or 1",
                               key ? key : "(null)", i);
    qv_status s = check_alignment_key(key, QV_GGUF_ARRAY, NULL, err);
    if (s)
        return s;
    void *copy = malloc(n ? n * k : 1);
    if (!copy)
        return qv_fail(err, QV_ERR_NOMEM,
                       "out of memory copying a GGUF array of %zu elements", n);
    if (n)
        memcpy(copy, data, n * k);
    wkv *kv;
    if ((s = wkv_slot(w, key, &kv, err))) {
        free(copy);
        return s;
    }
    kv->type = QV_GGUF_ARRAY;
    kv->elem_type = elem_type;
    kv->n = n;
    kv->arr = copy;
    return QV_OK;
}

qv_status qv_gguf_writer_set_f32_arr(qv_gguf_writer *w, const char *key,
                                     const float *v, size_t n, qv_err *err)
{
    return qv_gguf_writer_set_arr(w, key, QV_GGUF_FLOAT32, v, n, err);
}

qv_status qv_gguf_writer_set_i32_arr(qv_gguf_writer *w, const char *key,
                                     const int32_t *v, size_t n, qv_err *err)
{
    return qv_gguf_writer_set_arr(w, key, QV_GGUF_INT32, v, n, err);
}

qv_status qv_gguf_writer_set_str_arr(qv_gguf_writer *w, const char *key,
                                     const char *const *v, size_t n,
                                     qv_err *err)
{
    if (!v && n)
        return qv_fail(err, QV_ERR_INVALID, "GGUF key '%s': strings are NULL",
                       key ? key : "(null)");
    if (n > SIZE_MAX / sizeof(char *))
        return qv_fail(err, QV_ERR_INVALID, "GGUF key '%s': array too large",
                       key ? key : "(null)");
    qv_status s = check_alignment_key(key, QV_GGUF_ARRAY, NULL, err);
    if (s)
        return s;
    char **copy = calloc(n ? n : 1, sizeof *copy);
    if (!copy)
        return qv_fail(err, QV_ERR_NOMEM,
                       "out of memory copying %zu GGUF strings", n);
    for (size_t i = 0; i < n; ++i) {
        if (!v[i] || !(copy[i] = dup_str(v[i]))) {
            for (size_t j = 0; j < i; ++j)
                free(copy[j]);
            free(copy);
            return v[i] ? qv_fail(err, QV_ERR_NOMEM,
                                  "out of memory copying %zu GGUF strings", n)
                        : qv_fail(err, QV_ERR_INVALID,
                                  "GGUF key '%s': string %zu is NULL",
                                  key ? key : "(null)", i);
        }
    }
    wkv *kv;
    if ((s = wkv_slot(w, key, &kv, err))) {
        for (size_t j = 0; j < n; ++j)
            free(copy[j]);
        free(copy);
        return s;
    }
    kv->type = QV_GGUF_ARRAY;
    kv->elem_type = QV_GGUF_STRING;
    kv->n = n;
    kv->strs = copy;
    return QV_OK;
}

qv_status qv_gguf_writer_add_tensor(qv_gguf_writer *w, const char *name,
                                    uint32_t n_dims, const int64_t *ne,
                                    uint32_t type, const void *data,
                                    size_t nbytes, qv_err *err)
{
    if (!w || !name || !ne || !data)
        return qv_fail(err, QV_ERR_INVALID,
                       "qv_gguf_writer_add_tensor: NULL argument");
    size_t len = strlen(name);
    if (len < 1 || len > QV_GGUF_MAX_NAME)
        return qv_fail(err, QV_ERR_INVALID,
                       "GGUF tensor name '%.80s' is %zu bytes: llama.cpp "
                       "accepts 1..%d",
                       name, len, QV_GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_tensors; ++i)
        if (!strcmp(w->tensors[i].name, name))
            return qv_fail(err, QV_ERR_INVALID,
                           "GGUF tensor '%s' added twice", name);
    size_t want;
    qv_err inner;
    qv_status s = qv_ggml_nbytes(type, n_dims, ne, &want, &inner);
    if (s)
        return qv_fail(err, s, "GGUF tensor '%s': %s", name, inner.msg);
    if (nbytes != want)
        return qv_fail(err, QV_ERR_INVALID,
                       "GGUF tensor '%s': %zu bytes given, the %s shape needs "
                       "%zu",
                       name, nbytes, qv_ggml_type_name(type), want);
    uint64_t padded = ((uint64_t)want + WALIGN - 1) / WALIGN * WALIGN;
    if (padded < want || w->data_size > UINT64_MAX - padded ||
        w->data_size + padded > SIZE_MAX)
        return qv_fail(err, QV_ERR_INVALID,
                       "GGUF tensor '%s': the data section would overflow",
                       name);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        wtensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t)
            return qv_fail(err, QV_ERR_NOMEM,
                           "out of memory adding GGUF tensor '%s'", name);
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = dup_str(name)))
        return qv_fail(err, QV_ERR_NOMEM,
                       "out of memory adding GGUF tensor '%s'", name);
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < QV_GGUF_MAX_DIMS; ++d)
        t->ne[d] = d < n_dims ? (uint64_t)ne[d] : 1;
    t->type = type;
    t->data = data;
    t->nbytes = nbytes;
    t->offset = w->data_size;
    w->data_size += padded;
    w->n_tensors++;
    return QV_OK;
}

/* Growable byte buffer with a sticky out-of-memory flag. */
typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} wbuf;

static void put(wbuf *b, const void *src, size_t k)
{
    if (b->oom || k == 0)
        return;
    if (b->cap - b->n < k) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < k) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, k);
    b->n += k;
}

static void put_le(wbuf *b, uint64_t v, size_t k)
{
    uint8_t t[8];
    for (size_t i = 0; i < k; ++i)
        t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, k);
}

static void put_str(wbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_le(b, n, 8);
    put(b, s, n);
}

static void put_zeros(wbuf *b, size_t k)
{
    static const uint8_t z[WALIGN];
    while (k) {
        size_t c = k < sizeof z ? k : sizeof z;
        put(b, z, c);
        k -= c;
    }
}

/* Header, KVs, tensor infos and the padding up to the data section. */
static qv_status build_header(const qv_gguf_writer *w, wbuf *b, qv_err *err)
{
    put(b, "GGUF", 4);
    put_le(b, QV_GGUF_VERSION, 4);
    put_le(b, w->n_tensors, 8);
    put_le(b, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; ++i) {
        const wkv *k = &w->kvs[i];
        put_str(b, k->key);
        put_le(b, k->type, 4);
        if (k->type == QV_GGUF_STRING) {
            put_str(b, k->str);
        } else if (k->type != QV_GGUF_ARRAY) {
            put_le(b, k->bits, gguf_scalar_size(k->type));
        } else {
            put_le(b, k->elem_type, 4);
            put_le(b, k->n, 8);
            if (k->elem_type == QV_GGUF_STRING) {
                for (size_t j = 0; j < k->n; ++j)
                    put_str(b, k->strs[j]);
            } else {
                size_t es = gguf_scalar_size(k->elem_type);
                for (size_t j = 0; j < k->n; ++j)
                    put_le(b, native_load((const uint8_t *)k->arr + j * es, es),
                           es);
            }
        }
    }
    for (size_t i = 0; i < w->n_tensors; ++i) {
        const wtensor *t = &w->tensors[i];
        put_str(b, t->name);
        put_le(b, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; ++d)
            put_le(b, t->ne[d], 8);
        put_le(b, t->type, 4);
        put_le(b, t->offset, 8);
    }
    put_zeros(b, (WALIGN - b->n % WALIGN) % WALIGN);
    if (b->oom) {
        free(b->p);
        b->p = NULL;
        return qv_fail(err, QV_ERR_NOMEM, "out of memory building a GGUF header");
    }
    return QV_OK;
}

qv_status qv_gguf_write_mem(const qv_gguf_writer *w, uint8_t **out,
                            size_t *n, qv_err *err)
{
    if (!w || !out || !n)
        return qv_fail(err, QV_ERR_INVALID, "qv_gguf_write_mem: NULL argument");
    *out = NULL;
    *n = 0;
    wbuf b = {0};
    qv_status s = build_header(w, &b, err);
    if (s)
        return s;
    if (w->data_size > SIZE_MAX - b.n) {
        free(b.p);
        return qv_fail(err, QV_ERR_NOMEM, "GGUF too large for memory");
    }
    for (size_t i = 0; i < w->n_tensors; ++i) {
        const wtensor *t = &w->tensors[i];
        put(&b, t->data, t->nbytes);
        put_zeros(&b, (WALIGN - t->nbytes % WALIGN) % WALIGN);
    }
    if (b.oom) {
        free(b.p);
        return qv_fail(err, QV_ERR_NOMEM,
                       "out of memory writing a GGUF of %llu data bytes",
                       (unsigned long long)w->data_size);
    }
    *out = b.p;
    *n = b.n;
    return QV_OK;
}

qv_status qv_gguf_write_file(const qv_gguf_writer *w, const char *path,
                             qv_err *err)
{
    if (!w || !path || !*path)
        return qv_fail(err, QV_ERR_INVALID, "qv_gguf_write_file: NULL argument");
    static const uint8_t z[WALIGN];
    wbuf b = {0};
    qv_status s = build_header(w, &b, err);
    if (s)
        return s;
    /* the header, then each tensor's bytes and its padding */
    qv_file_part *parts = malloc((1 + 2 * w->n_tensors) * sizeof *parts);
    if (!parts) {
        free(b.p);
        return qv_fail(err, QV_ERR_NOMEM, "out of memory writing '%s'", path);
    }
    size_t np = 0;
    parts[np++] = (qv_file_part){b.p, b.n};
    for (size_t i = 0; i < w->n_tensors; ++i) {
        const wtensor *t = &w->tensors[i];
        parts[np++] = (qv_file_part){t->data, t->nbytes};
        parts[np++] = (qv_file_part){z, (WALIGN - t->nbytes % WALIGN) % WALIGN};
    }
    s = qv_file_write_atomic(path, "GGUF", parts, np, err);
    free(parts);
    free(b.p);
    return s;
}
