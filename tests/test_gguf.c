/* tests/test_gguf.c — GGUF v3 reader and writer (formats/gguf.c).
 *
 * Files for the reader's hostile cases are built here byte by byte with a
 * test-local builder that follows the GGUF spec and ggml's gguf.cpp, never
 * with the writer under test; the writer's output is checked against such
 * hand-built bytes too. */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/half.h"
#include "formats/gguf.h"

/* ---- a hand-made GGUF builder (independent of the writer) ----------- */

typedef struct bb {
    uint8_t p[8192];
    size_t n;
} bb;

static void b_raw(bb *b, const void *s, size_t k)
{
    cr_assert(b->n + k <= sizeof b->p);
    memcpy(b->p + b->n, s, k);
    b->n += k;
}
static void b_le(bb *b, uint64_t v, size_t k)
{
    for (size_t i = 0; i < k; ++i)
        b->p[b->n++] = (uint8_t)(v >> (8 * i));
}
static void b_u32(bb *b, uint32_t v) { b_le(b, v, 4); }
static void b_u64(bb *b, uint64_t v) { b_le(b, v, 8); }
static void b_str(bb *b, const char *s)
{
    b_u64(b, strlen(s));
    b_raw(b, s, strlen(s));
}
static void b_pad(bb *b, size_t align)
{
    while (b->n % align)
        b->p[b->n++] = 0;
}
static void b_header(bb *b, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    b_raw(b, "GGUF", 4);
    b_u32(b, 3);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}
/* tensor info: name, n_dims, dims, type, offset */
static void b_tinfo(bb *b, const char *name, uint32_t nd, const uint64_t *ne,
                    uint32_t type, uint64_t off)
{
    b_str(b, name);
    b_u32(b, nd);
    for (uint32_t d = 0; d < nd; ++d)
        b_u64(b, ne[d]);
    b_u32(b, type);
    b_u64(b, off);
}
static void b_fill(bb *b, size_t k, uint8_t v)
{
    cr_assert(b->n + k <= sizeof b->p);
    memset(b->p + b->n, v, k);
    b->n += k;
}

/* Parses a copy in an exact-size allocation (so ASan sees any over-read);
 * returns the status, keeps the message. */
static qv_status parse_copy(const uint8_t *p, size_t n, qv_gguf **g, qv_err *e)
{
    uint8_t *c = malloc(n ? n : 1);
    cr_assert_not_null(c);
    memcpy(c, p, n);
    qv_status s = qv_gguf_parse(c, n, g, e);
    if (s == QV_OK) {
        /* the caller wants the parse to outlive the copy: keep it simple,
         * tests that accept look at metadata only after re-parsing b */
        qv_gguf_free(*g);
        *g = NULL;
    }
    free(c);
    return s;
}

static void expect_corrupt(const bb *b, const char *needle)
{
    qv_gguf *g = (qv_gguf *)1;
    qv_err e;
    qv_err_clear(&e);
    qv_status s = parse_copy(b->p, b->n, &g, &e);
    cr_assert_eq(s, QV_ERR_CORRUPT, "status %s, msg: %s", qv_status_name(s),
                 e.msg);
    cr_assert_eq(e.code, QV_ERR_CORRUPT);
    cr_assert_null(g);
    cr_assert_not_null(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg,
                       needle);
}

/* ---- a writer holding every kind of value --------------------------- */

static float f32_data[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
static uint16_t f16_data[16];
static uint8_t tq2_data[2 * 66];
static int8_t i8_data[5] = {-128, -1, 0, 1, 127};
static int32_t i32_data[3] = {INT32_MIN, 7, INT32_MAX};
static uint8_t tq1_data[54];

static const char *vocab[] = {"<s>", "", "hello world", "\xe2\x96\x81the"};

static qv_gguf_writer *full_writer(void)
{
    for (int i = 0; i < 16; ++i)
        f16_data[i] = qv_f32_to_f16((float)i * 0.5f - 3.0f);
    for (size_t i = 0; i < sizeof tq2_data; ++i)
        tq2_data[i] = (uint8_t)(0x55 ^ (i * 7));
    for (size_t i = 0; i < sizeof tq1_data; ++i)
        tq1_data[i] = (uint8_t)(i * 13 + 1);
    qv_gguf_writer *w;
    qv_err e;
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK, "%s", e.msg);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = INT64_MIN + 5;
    double f64 = -1.0 / 3.0;
#define OK(x) cr_assert_eq((x), QV_OK, "%s", e.msg)
    OK(qv_gguf_writer_set_str(w, "general.architecture", "bitnet-b1.58", &e));
    OK(qv_gguf_writer_set_val(w, "t.u8", QV_GGUF_UINT8, &u8, &e));
    OK(qv_gguf_writer_set_val(w, "t.i8", QV_GGUF_INT8, &i8, &e));
    OK(qv_gguf_writer_set_val(w, "t.u16", QV_GGUF_UINT16, &u16, &e));
    OK(qv_gguf_writer_set_val(w, "t.i16", QV_GGUF_INT16, &i16, &e));
    OK(qv_gguf_writer_set_u32(w, "t.u32", 4000000000u, &e));
    OK(qv_gguf_writer_set_i32(w, "t.i32", -2000000000, &e));
    OK(qv_gguf_writer_set_f32(w, "t.f32", 0.1f, &e));
    OK(qv_gguf_writer_set_bool(w, "t.bool", true, &e));
    OK(qv_gguf_writer_set_bool(w, "t.bool0", false, &e));
    OK(qv_gguf_writer_set_u64(w, "t.u64", UINT64_MAX - 1, &e));
    OK(qv_gguf_writer_set_val(w, "t.i64", QV_GGUF_INT64, &i64, &e));
    OK(qv_gguf_writer_set_val(w, "t.f64", QV_GGUF_FLOAT64, &f64, &e));
    OK(qv_gguf_writer_set_str(w, "t.empty", "", &e));
    OK(qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", vocab, 4, &e));
    float fa[3] = {1.5f, -0.25f, 1e10f};
    OK(qv_gguf_writer_set_f32_arr(w, "t.f32s", fa, 3, &e));
    int32_t ia[4] = {-1, 0, 1, INT32_MAX};
    OK(qv_gguf_writer_set_i32_arr(w, "t.i32s", ia, 4, &e));
    uint8_t ba[3] = {1, 0, 1};
    OK(qv_gguf_writer_set_arr(w, "t.bools", QV_GGUF_BOOL, ba, 3, &e));
    uint16_t u16a[2] = {1, 65535};
    OK(qv_gguf_writer_set_arr(w, "t.u16s", QV_GGUF_UINT16, u16a, 2, &e));
    double f64a[2] = {1e300, -2.0};
    OK(qv_gguf_writer_set_arr(w, "t.f64s", QV_GGUF_FLOAT64, f64a, 2, &e));
    OK(qv_gguf_writer_set_arr(w, "t.none", QV_GGUF_INT64, NULL, 0, &e));

    int64_t ne_f32[2] = {3, 2}, ne_f16[1] = {16}, ne_tq2[2] = {256, 2};
    int64_t ne_i8[1] = {5}, ne_i32[3] = {1, 3, 1}, ne_tq1[4] = {256, 1, 1, 1};
    OK(qv_gguf_writer_add_tensor(w, "a.f32", 2, ne_f32, QV_GGML_F32, f32_data,
                                 sizeof f32_data, &e));
    OK(qv_gguf_writer_add_tensor(w, "b.f16", 1, ne_f16, QV_GGML_F16, f16_data,
                                 sizeof f16_data, &e));
    OK(qv_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", 2, ne_tq2,
                                 QV_GGML_TQ2_0, tq2_data, sizeof tq2_data, &e));
    OK(qv_gguf_writer_add_tensor(w, "i8", 1, ne_i8, QV_GGML_I8, i8_data,
                                 sizeof i8_data, &e));
    OK(qv_gguf_writer_add_tensor(w, "i32", 3, ne_i32, QV_GGML_I32, i32_data,
                                 sizeof i32_data, &e));
    OK(qv_gguf_writer_add_tensor(w, "tq1", 4, ne_tq1, QV_GGML_TQ1_0, tq1_data,
                                 sizeof tq1_data, &e));
#undef OK
    return w;
}

static void check_full(const qv_gguf *g, const uint8_t *file, size_t n)
{
    qv_err e;
#define OK(x) cr_assert_eq((x), QV_OK, "%s", e.msg)
    cr_assert_eq(qv_gguf_alignment(g), 32);
    cr_assert_eq(qv_gguf_kv_count(g), 22);
    cr_assert_str_eq(qv_gguf_kv_at(g, 0)->key, "general.alignment");
    cr_assert_str_eq(qv_gguf_kv_at(g, 1)->key, "general.architecture");
    cr_assert_str_eq(qv_gguf_kv_at(g, 21)->key, "t.none");
    cr_assert_null(qv_gguf_kv_at(g, 22));

    uint32_t u32;
    OK(qv_gguf_get_u32(g, "general.alignment", &u32, &e));
    cr_assert_eq(u32, 32);
    const char *s;
    size_t len;
    OK(qv_gguf_get_str(g, "general.architecture", &s, &len, &e));
    cr_assert_str_eq(s, "bitnet-b1.58");
    cr_assert_eq(len, 12);
    OK(qv_gguf_get_str(g, "t.empty", &s, &len, &e));
    cr_assert_str_eq(s, "");
    cr_assert_eq(len, 0);

    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    int32_t i32;
    float f32;
    bool b;
    uint64_t u64;
    int64_t i64;
    double f64;
    OK(qv_gguf_get_val(g, "t.u8", QV_GGUF_UINT8, &u8, &e));
    cr_assert_eq(u8, 200);
    OK(qv_gguf_get_val(g, "t.i8", QV_GGUF_INT8, &i8, &e));
    cr_assert_eq(i8, -100);
    OK(qv_gguf_get_val(g, "t.u16", QV_GGUF_UINT16, &u16, &e));
    cr_assert_eq(u16, 60000);
    OK(qv_gguf_get_val(g, "t.i16", QV_GGUF_INT16, &i16, &e));
    cr_assert_eq(i16, -30000);
    OK(qv_gguf_get_u32(g, "t.u32", &u32, &e));
    cr_assert_eq(u32, 4000000000u);
    OK(qv_gguf_get_i32(g, "t.i32", &i32, &e));
    cr_assert_eq(i32, -2000000000);
    OK(qv_gguf_get_f32(g, "t.f32", &f32, &e));
    cr_assert_eq(f32, 0.1f);
    OK(qv_gguf_get_bool(g, "t.bool", &b, &e));
    cr_assert_eq(b, true);
    OK(qv_gguf_get_bool(g, "t.bool0", &b, &e));
    cr_assert_eq(b, false);
    OK(qv_gguf_get_u64(g, "t.u64", &u64, &e));
    cr_assert_eq(u64, UINT64_MAX - 1);
    OK(qv_gguf_get_val(g, "t.i64", QV_GGUF_INT64, &i64, &e));
    cr_assert_eq(i64, INT64_MIN + 5);
    OK(qv_gguf_get_val(g, "t.f64", QV_GGUF_FLOAT64, &f64, &e));
    cr_assert_eq(f64, -1.0 / 3.0);

    const char *const *strs;
    const size_t *lens;
    size_t n_el;
    OK(qv_gguf_get_str_arr(g, "tokenizer.ggml.tokens", &strs, &lens, &n_el, &e));
    cr_assert_eq(n_el, 4);
    for (int i = 0; i < 4; ++i) {
        cr_assert_str_eq(strs[i], vocab[i]);
        cr_assert_eq(lens[i], strlen(vocab[i]));
    }
    const void *arr;
    OK(qv_gguf_get_arr(g, "t.f32s", QV_GGUF_FLOAT32, &arr, &n_el, &e));
    cr_assert_eq(n_el, 3);
    cr_assert_eq(((const float *)arr)[0], 1.5f);
    cr_assert_eq(((const float *)arr)[1], -0.25f);
    cr_assert_eq(((const float *)arr)[2], 1e10f);
    OK(qv_gguf_get_arr(g, "t.i32s", QV_GGUF_INT32, &arr, &n_el, &e));
    cr_assert_eq(n_el, 4);
    cr_assert_eq(((const int32_t *)arr)[0], -1);
    cr_assert_eq(((const int32_t *)arr)[3], INT32_MAX);
    OK(qv_gguf_get_arr(g, "t.bools", QV_GGUF_BOOL, &arr, &n_el, &e));
    cr_assert_eq(n_el, 3);
    cr_assert_eq(memcmp(arr, "\1\0\1", 3), 0);
    OK(qv_gguf_get_arr(g, "t.u16s", QV_GGUF_UINT16, &arr, &n_el, &e));
    cr_assert_eq(((const uint16_t *)arr)[1], 65535);
    OK(qv_gguf_get_arr(g, "t.f64s", QV_GGUF_FLOAT64, &arr, &n_el, &e));
    cr_assert_eq(((const double *)arr)[0], 1e300);
    cr_assert_eq(((const double *)arr)[1], -2.0);
    OK(qv_gguf_get_arr(g, "t.none", QV_GGUF_INT64, &arr, &n_el, &e));
    cr_assert_eq(n_el, 0);
    const qv_gguf_kv *kv = qv_gguf_find_kv(g, "t.none");
    cr_assert_not_null(kv);
    cr_assert_eq(kv->type, QV_GGUF_ARRAY);
    cr_assert_eq(kv->elem_type, QV_GGUF_INT64);

    /* tensors: order, shapes, consecutive 32-aligned offsets, exact bytes */
    cr_assert_eq(qv_gguf_tensor_count(g), 6);
    struct {
        const char *name;
        uint32_t nd;
        int64_t ne[4];
        uint32_t type;
        const void *data;
        size_t nbytes;
        uint64_t off;
    } want[6] = {
        {"a.f32", 2, {3, 2, 1, 1}, QV_GGML_F32, f32_data, 24, 0},
        {"b.f16", 1, {16, 1, 1, 1}, QV_GGML_F16, f16_data, 32, 32},
        {"blk.0.attn_q.weight", 2, {256, 2, 1, 1}, QV_GGML_TQ2_0, tq2_data, 132, 64},
        {"i8", 1, {5, 1, 1, 1}, QV_GGML_I8, i8_data, 5, 224},
        {"i32", 3, {1, 3, 1, 1}, QV_GGML_I32, i32_data, 12, 256},
        {"tq1", 4, {256, 1, 1, 1}, QV_GGML_TQ1_0, tq1_data, 54, 288},
    };
    uint64_t data_off = qv_gguf_data_offset(g);
    cr_assert_eq(data_off % 32, 0);
    cr_assert_eq(n, data_off + 288 + 64, "file is %zu bytes", n);
    for (int i = 0; i < 6; ++i) {
        const qv_gguf_tensor *t = qv_gguf_tensor_at(g, (size_t)i);
        cr_assert_not_null(t);
        cr_assert_str_eq(t->name, want[i].name);
        cr_assert_eq(t->n_dims, want[i].nd);
        for (int d = 0; d < 4; ++d)
            cr_assert_eq(t->ne[d], want[i].ne[d], "%s ne[%d]", t->name, d);
        cr_assert_eq(t->type, want[i].type);
        cr_assert_eq(t->nbytes, want[i].nbytes);
        cr_assert_eq(t->offset, want[i].off, "%s offset %llu", t->name,
                     (unsigned long long)t->offset);
        cr_assert_eq((const uint8_t *)t->data, file + data_off + want[i].off);
        cr_assert_eq(memcmp(t->data, want[i].data, want[i].nbytes), 0);
        /* zero padding after each tensor */
        for (size_t k = want[i].nbytes; k % 32; ++k)
            cr_assert_eq(((const uint8_t *)t->data)[k], 0);
        cr_assert_eq(qv_gguf_find_tensor(g, want[i].name), t);
    }
    cr_assert_null(qv_gguf_tensor_at(g, 6));
    cr_assert_null(qv_gguf_find_tensor(g, "nope"));
#undef OK
}

/* ---- round trips ----------------------------------------------------- */

Test(gguf, round_trip_memory_every_type)
{
    qv_gguf_writer *w = full_writer();
    uint8_t *buf;
    size_t n;
    qv_err e;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK, "%s", e.msg);
    qv_gguf *g;
    cr_assert_eq(qv_gguf_parse(buf, n, &g, &e), QV_OK, "%s", e.msg);
    check_full(g, buf, n);
    /* writing the same writer twice gives the same bytes */
    uint8_t *buf2;
    size_t n2;
    cr_assert_eq(qv_gguf_write_mem(w, &buf2, &n2, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(n2, n);
    cr_assert_eq(memcmp(buf, buf2, n), 0);
    free(buf2);
    qv_gguf_free(g);
    free(buf);
    qv_gguf_writer_free(w);
}

Test(gguf, round_trip_file)
{
    char dir[] = "/tmp/qv_gguf_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], tmp[260];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    qv_gguf_writer *w = full_writer();
    qv_err e;
    cr_assert_eq(qv_gguf_write_file(w, path, &e), QV_OK, "%s", e.msg);
    cr_assert_neq(access(tmp, F_OK), 0, "the .tmp file was left behind");
    uint8_t *mem;
    size_t n;
    cr_assert_eq(qv_gguf_write_mem(w, &mem, &n, &e), QV_OK, "%s", e.msg);
    /* the file's bytes are the memory image */
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    uint8_t *disk = malloc(n + 1);
    cr_assert_eq(fread(disk, 1, n + 1, f), n);
    fclose(f);
    cr_assert_eq(memcmp(disk, mem, n), 0);
    qv_gguf *g;
    cr_assert_eq(qv_gguf_open(path, &g, &e), QV_OK, "%s", e.msg);
    const qv_gguf_tensor *t0 = qv_gguf_tensor_at(g, 0);
    check_full(g, (const uint8_t *)t0->data - qv_gguf_data_offset(g), n);
    qv_gguf_free(g);
    free(disk);
    free(mem);
    qv_gguf_writer_free(w);
    unlink(path);
    rmdir(dir);
}

/* The writer's bytes for a tiny file, written out by hand from the spec:
 * the layout llama.cpp's gguf_write_to_buf produces. */
Test(gguf, writer_bytes_match_hand_layout)
{
    qv_gguf_writer *w;
    qv_err e;
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_i32(w, "x", -2, &e), QV_OK);
    float v[3] = {1.0f, 2.0f, -1.0f};
    int64_t ne[1] = {3};
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "w", 1, ne, QV_GGML_F32, v,
                                           sizeof v, &e), QV_OK, "%s", e.msg);
    uint8_t *buf;
    size_t n;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK);

    bb x;
    b_header(&x, 1, 2);
    b_str(&x, "general.alignment");
    b_u32(&x, 4); /* u32 */
    b_u32(&x, 32);
    b_str(&x, "x");
    b_u32(&x, 5); /* i32 */
    b_u32(&x, 0xfffffffeu);
    uint64_t ne3 = 3;
    b_tinfo(&x, "w", 1, &ne3, 0, 0);
    b_pad(&x, 32);
    size_t data_at = x.n;
    b_raw(&x, "\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x80\xbf", 12);
    b_pad(&x, 32);
    cr_assert_eq(data_at, 128); /* 24 + 33 + 17 + 33 = 107, padded */
    cr_assert_eq(n, x.n, "writer %zu bytes, hand layout %zu", n, x.n);
    cr_assert_eq(memcmp(buf, x.p, n), 0);
    free(buf);
    qv_gguf_writer_free(w);
}

Test(gguf, empty_writer_is_a_valid_file)
{
    qv_gguf_writer *w;
    qv_err e;
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK);
    uint8_t *buf;
    size_t n;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK);
    cr_assert_eq(n, 64); /* 24 header + 33 alignment KV, padded to 32 */
    qv_gguf *g;
    cr_assert_eq(qv_gguf_parse(buf, n, &g, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_gguf_tensor_count(g), 0);
    cr_assert_eq(qv_gguf_kv_count(g), 1);
    cr_assert_eq(qv_gguf_data_offset(g), 64);
    qv_gguf_free(g);
    free(buf);
    qv_gguf_writer_free(w);
}

/* llama.cpp's vocabulary-only files (models/ggml-vocab-*.gguf) end right
 * after the KVs: with no tensors there is no data section to pad to, and
 * gguf_init_from_file does not seek to one. */
Test(gguf, no_tensors_needs_no_padding)
{
    qv_gguf_writer *w;
    qv_err e;
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK);
    uint8_t *buf;
    size_t n;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK);
    qv_gguf *g = NULL;
    cr_assert_eq(qv_gguf_parse(buf, 57, &g, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_gguf_tensor_count(g), 0);
    cr_assert_eq(qv_gguf_data_offset(g), 57);
    qv_gguf_free(g);
    /* a KV cut short is still truncation */
    cr_assert_eq(qv_gguf_parse(buf, 56, &g, &e), QV_ERR_CORRUPT);
    free(buf);
    qv_gguf_writer_free(w);
}

Test(gguf, hand_file_alignment_64_and_unordered_offsets)
{
    bb x;
    b_header(&x, 2, 1);
    b_str(&x, "general.alignment");
    b_u32(&x, 4);
    b_u32(&x, 64);
    uint64_t ne[1] = {4};
    b_tinfo(&x, "late", 1, ne, 0, 64);  /* second in the data section */
    b_tinfo(&x, "early", 1, ne, 0, 0);
    b_pad(&x, 64);
    size_t start = x.n;
    b_fill(&x, 16, 0xaa);
    b_fill(&x, 48, 0);
    b_fill(&x, 16, 0xbb);
    b_fill(&x, 48, 0);
    qv_gguf *g;
    qv_err e;
    cr_assert_eq(qv_gguf_parse(x.p, x.n, &g, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_gguf_alignment(g), 64);
    cr_assert_eq(qv_gguf_data_offset(g), start);
    cr_assert_eq(start % 64, 0);
    const qv_gguf_tensor *t;
    cr_assert_eq(qv_gguf_get_tensor(g, "late", &t, &e), QV_OK);
    cr_assert_eq(((const uint8_t *)t->data)[0], 0xbb);
    cr_assert_eq(qv_gguf_get_tensor(g, "early", &t, &e), QV_OK);
    cr_assert_eq(((const uint8_t *)t->data)[15], 0xaa);
    cr_assert_eq(qv_gguf_get_tensor(g, "missing", &t, &e), QV_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(e.msg, "missing"));
    qv_gguf_free(g);
}

/* ---- truncation ------------------------------------------------------ */

Test(gguf, truncated_at_every_length_is_rejected)
{
    qv_gguf_writer *w = full_writer();
    uint8_t *buf;
    size_t n;
    qv_err e;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK);
    for (size_t len = 0; len < n; ++len) {
        qv_gguf *g = (qv_gguf *)1;
        qv_err_clear(&e);
        qv_status s = parse_copy(buf, len, &g, &e);
        cr_assert_eq(s, QV_ERR_CORRUPT, "length %zu of %zu: %s (%s)", len, n,
                     qv_status_name(s), e.msg);
        cr_assert_null(g);
        cr_assert_neq(e.msg[0], '\0');
    }
    qv_gguf *g = NULL;
    cr_assert_eq(parse_copy(buf, n, &g, &e), QV_OK, "%s", e.msg);
    /* trailing bytes after the data section are allowed */
    uint8_t *more = malloc(n + 7);
    memcpy(more, buf, n);
    memset(more + n, 0xee, 7);
    cr_assert_eq(parse_copy(more, n + 7, &g, &e), QV_OK, "%s", e.msg);
    free(more);
    free(buf);
    qv_gguf_writer_free(w);
}

/* ---- lying headers --------------------------------------------------- */

Test(gguf, wrong_magic)
{
    bb x;
    b_header(&x, 0, 0);
    memcpy(x.p, "GGUG", 4);
    b_pad(&x, 32);
    expect_corrupt(&x, "magic 'GGUG'");
    expect_corrupt(&x, "at byte 0");
}

Test(gguf, version_2_is_named)
{
    bb x;
    b_header(&x, 0, 0);
    x.p[4] = 2;
    b_pad(&x, 32);
    expect_corrupt(&x, "version 2");
    expect_corrupt(&x, "at byte 4");
    x.p[4] = 0;
    x.p[7] = 3; /* 3 big-endian */
    expect_corrupt(&x, "big-endian");
}

Test(gguf, tensor_count_too_large_fails_fast)
{
    bb x;
    b_header(&x, (uint64_t)1 << 60, 0);
    b_pad(&x, 32);
    expect_corrupt(&x, "tensor count 1152921504606846976");
    expect_corrupt(&x, "at byte 8");
    b_header(&x, UINT64_MAX, 0);
    expect_corrupt(&x, "tensor count");
}

Test(gguf, kv_count_too_large_fails_fast)
{
    bb x;
    b_header(&x, 0, (uint64_t)1 << 60);
    b_str(&x, "a");
    b_u32(&x, 0);
    b_le(&x, 1, 1);
    b_pad(&x, 32);
    expect_corrupt(&x, "kv count 1152921504606846976");
    expect_corrupt(&x, "at byte 16");
    /* more KVs than there are bytes for, though each count alone fits */
    b_header(&x, 0, 3);
    b_str(&x, "a");
    b_u32(&x, 0);
    b_le(&x, 1, 1);
    b_pad(&x, 32);
    expect_corrupt(&x, "kv count 3");
}

Test(gguf, string_length_too_large)
{
    bb x;
    b_header(&x, 0, 1);
    b_str(&x, "general.name");
    b_u32(&x, 8); /* string */
    b_u64(&x, (uint64_t)1 << 60);
    b_fill(&x, 40, 'a');
    expect_corrupt(&x, "string length 1152921504606846976");
    expect_corrupt(&x, "kv[0] 'general.name'");
    expect_corrupt(&x, "at byte 48"); /* 24 + 8 + 12 + 4 */
    /* a key length that lies */
    b_header(&x, 0, 1);
    b_u64(&x, UINT64_MAX);
    b_fill(&x, 40, 'k');
    expect_corrupt(&x, "key length 18446744073709551615");
}

Test(gguf, array_count_too_large)
{
    bb x;
    b_header(&x, 0, 1);
    b_str(&x, "tokenizer.ggml.tokens");
    b_u32(&x, 9); /* array */
    b_u32(&x, 8); /* of strings */
    b_u64(&x, (uint64_t)1 << 60);
    b_str(&x, "a");
    b_pad(&x, 32);
    expect_corrupt(&x, "array count 1152921504606846976");
    expect_corrupt(&x, "kv[0] 'tokenizer.ggml.tokens'");
    /* of u32: 5 elements claimed, 4 present */
    b_header(&x, 0, 1);
    b_str(&x, "a");
    b_u32(&x, 9);
    b_u32(&x, 4);
    b_u64(&x, 5);
    b_fill(&x, 16, 1);
    expect_corrupt(&x, "array count 5");
}

Test(gguf, nested_array_is_unsupported)
{
    bb x;
    b_header(&x, 0, 1);
    b_str(&x, "a");
    b_u32(&x, 9);
    b_u32(&x, 9);
    b_u64(&x, 0);
    b_pad(&x, 32);
    qv_gguf *g;
    qv_err e;
    cr_assert_eq(qv_gguf_parse(x.p, x.n, &g, &e), QV_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(e.msg, "nested arrays"), "%s", e.msg);
}

Test(gguf, bad_value_types)
{
    bb x;
    b_header(&x, 0, 1);
    b_str(&x, "a");
    b_u32(&x, 13);
    b_u32(&x, 0);
    b_pad(&x, 32);
    expect_corrupt(&x, "value type 13");
    b_header(&x, 0, 1);
    b_str(&x, "a");
    b_u32(&x, 7);
    b_le(&x, 2, 1);
    b_pad(&x, 32);
    expect_corrupt(&x, "bool value 2");
    b_header(&x, 0, 1);
    b_str(&x, "a");
    b_u32(&x, 9);
    b_u32(&x, 77);
    b_u64(&x, 0);
    b_pad(&x, 32);
    expect_corrupt(&x, "array element type 77");
}

Test(gguf, duplicate_key)
{
    bb x;
    b_header(&x, 0, 3);
    b_str(&x, "b");
    b_u32(&x, 4);
    b_u32(&x, 1);
    b_str(&x, "a");
    b_u32(&x, 4);
    b_u32(&x, 1);
    b_str(&x, "b");
    b_u32(&x, 6);
    b_u32(&x, 0);
    b_pad(&x, 32);
    expect_corrupt(&x, "duplicate key 'b' (kv[0] and kv[2])");
}

Test(gguf, empty_key_and_nul_in_key)
{
    bb x;
    b_header(&x, 0, 1);
    b_str(&x, "");
    b_u32(&x, 4);
    b_u32(&x, 1);
    b_pad(&x, 32);
    expect_corrupt(&x, "key length 0");
    b_header(&x, 0, 1);
    b_u64(&x, 3);
    b_raw(&x, "a\0b", 3);
    b_u32(&x, 4);
    b_u32(&x, 1);
    b_pad(&x, 32);
    expect_corrupt(&x, "NUL");
}

Test(gguf, bad_alignment_kv)
{
    bb x;
    b_header(&x, 0, 1);
    b_str(&x, "general.alignment");
    b_u32(&x, 4);
    b_u32(&x, 48);
    b_pad(&x, 32);
    expect_corrupt(&x, "general.alignment 48 is not a power of two");
    b_header(&x, 0, 1);
    b_str(&x, "general.alignment");
    b_u32(&x, 4);
    b_u32(&x, 0);
    b_pad(&x, 32);
    expect_corrupt(&x, "general.alignment 0");
    b_header(&x, 0, 1);
    b_str(&x, "general.alignment");
    b_u32(&x, 10);
    b_u64(&x, 32);
    b_pad(&x, 32);
    expect_corrupt(&x, "must be u32");
}

/* One tensor info followed by a data section of data_bytes. */
static void one_tensor(bb *x, uint32_t nd, const uint64_t *ne, uint32_t type,
                       uint64_t off, size_t data_bytes)
{
    b_header(x, 1, 0);
    b_tinfo(x, "t", nd, ne, type, off);
    b_pad(x, 32);
    b_fill(x, data_bytes, 0);
}

Test(gguf, dims_zero_and_overflow)
{
    bb x;
    uint64_t ne0[2] = {4, 0};
    one_tensor(&x, 2, ne0, QV_GGML_F32, 0, 32);
    expect_corrupt(&x, "dims[1] = 0");
    expect_corrupt(&x, "tensor[0] 't'");
    uint64_t big[2] = {(uint64_t)1 << 32, (uint64_t)1 << 32};
    one_tensor(&x, 2, big, QV_GGML_F32, 0, 32);
    expect_corrupt(&x, "dims product overflows");
    uint64_t neg[1] = {UINT64_MAX};
    one_tensor(&x, 1, neg, QV_GGML_F32, 0, 32);
    expect_corrupt(&x, "dims[0] = 18446744073709551615");
    /* elements fit int64, bytes do not fit 64 bits */
    uint64_t huge[2] = {(uint64_t)1 << 31, (uint64_t)1 << 31};
    one_tensor(&x, 2, huge, QV_GGML_F32, 0, 32);
    expect_corrupt(&x, "byte size 4611686018427387904 x 4 overflows");
    /* bytes fit 64 bits but not the file */
    uint64_t large[2] = {(uint64_t)1 << 30, (uint64_t)1 << 31};
    one_tensor(&x, 2, large, QV_GGML_F32, 0, 32);
    expect_corrupt(&x, "past the end");
    /* 2^64 - 4 bytes: rounding up to the alignment must not wrap to 0 */
    uint64_t wrap[1] = {((uint64_t)1 << 62) - 1};
    one_tensor(&x, 1, wrap, QV_GGML_F32, 0, 32);
    expect_corrupt(&x, "offset 0 + 18446744073709551612 bytes");
    expect_corrupt(&x, "past the end");
    uint64_t ne1[5] = {4, 1, 1, 1, 1};
    one_tensor(&x, 5, ne1, QV_GGML_F32, 0, 32);
    expect_corrupt(&x, "n_dims 5");
    one_tensor(&x, 0, ne1, QV_GGML_F32, 0, 32);
    expect_corrupt(&x, "n_dims 0");
}

Test(gguf, block_types_need_whole_blocks)
{
    bb x;
    uint64_t ne[2] = {100, 2};
    one_tensor(&x, 2, ne, QV_GGML_TQ2_0, 0, 160);
    expect_corrupt(&x, "not a multiple of the TQ2_0 block size 256");
    uint64_t ok[2] = {512, 2};
    one_tensor(&x, 2, ok, QV_GGML_TQ1_0, 0, 4 * 54 + 8); /* padded to 224 */
    qv_gguf *g;
    qv_err e;
    cr_assert_eq(qv_gguf_parse(x.p, x.n, &g, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_gguf_tensor_at(g, 0)->nbytes, 4 * 54);
    qv_gguf_free(g);
    /* one byte of the last tensor's padding missing */
    x.n -= 1;
    expect_corrupt(&x, "past the end");
}

Test(gguf, unsupported_tensor_type)
{
    bb x;
    uint64_t ne[1] = {32};
    one_tensor(&x, 1, ne, 2 /* Q4_0 */, 0, 32);
    qv_gguf *g;
    qv_err e;
    cr_assert_eq(qv_gguf_parse(x.p, x.n, &g, &e), QV_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(e.msg, "unsupported tensor type 2"), "%s", e.msg);
    one_tensor(&x, 1, ne, 0xffffffffu, 0, 32);
    cr_assert_eq(qv_gguf_parse(x.p, x.n, &g, &e), QV_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(e.msg, "unsupported tensor type 4294967295"),
                       "%s", e.msg);
}

Test(gguf, offset_beyond_data_section)
{
    bb x;
    uint64_t ne[1] = {8};
    one_tensor(&x, 1, ne, QV_GGML_F32, 64, 64);
    expect_corrupt(&x, "offset 64 + 32 bytes");
    expect_corrupt(&x, "past the end of the data section");
    one_tensor(&x, 1, ne, QV_GGML_F32, UINT64_MAX - 31, 64);
    expect_corrupt(&x, "offset 18446744073709551584");
    /* the offset field is named with its byte: 24 + 9 + 4 + 8 + 4 = 49 */
    one_tensor(&x, 1, ne, QV_GGML_F32, 1 << 20, 64);
    expect_corrupt(&x, "at byte 49");
}

Test(gguf, misaligned_offset)
{
    bb x;
    uint64_t ne[1] = {4};
    one_tensor(&x, 1, ne, QV_GGML_F32, 16, 64);
    expect_corrupt(&x, "offset 16 is not a multiple of the alignment 32");
}

Test(gguf, overlapping_tensors)
{
    bb x;
    b_header(&x, 2, 0);
    uint64_t ne_a[1] = {16}, ne_b[1] = {8};
    b_tinfo(&x, "a", 1, ne_a, QV_GGML_F32, 0); /* bytes 0..64 */
    b_tinfo(&x, "b", 1, ne_b, QV_GGML_F32, 32);
    b_pad(&x, 32);
    b_fill(&x, 96, 0);
    expect_corrupt(&x, "tensor[1] 'b' offset 32 overlaps tensor[0] 'a' (bytes 0..64)");
}

Test(gguf, duplicate_tensor_name)
{
    bb x;
    b_header(&x, 2, 0);
    uint64_t ne[1] = {8};
    b_tinfo(&x, "w", 1, ne, QV_GGML_F32, 0);
    b_tinfo(&x, "w", 1, ne, QV_GGML_F32, 32);
    b_pad(&x, 32);
    b_fill(&x, 64, 0);
    expect_corrupt(&x, "duplicate tensor name 'w' (tensor[0] and tensor[1])");
}

Test(gguf, tensor_name_too_long)
{
    bb x;
    char name[65];
    memset(name, 'n', 64);
    name[64] = '\0';
    b_header(&x, 1, 0);
    uint64_t ne[1] = {8};
    b_tinfo(&x, name, 1, ne, QV_GGML_F32, 0);
    b_pad(&x, 32);
    b_fill(&x, 32, 0);
    expect_corrupt(&x, "name length 64 is not in 1..63");
}

/* ---- getters --------------------------------------------------------- */

Test(gguf, getters_check_types)
{
    qv_gguf_writer *w = full_writer();
    uint8_t *buf;
    size_t n;
    qv_err e;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK);
    qv_gguf *g;
    cr_assert_eq(qv_gguf_parse(buf, n, &g, &e), QV_OK);
    uint32_t u32 = 7;
    cr_assert_eq(qv_gguf_get_u32(g, "t.i32", &u32, &e), QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, "'t.i32'"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "is i32, expected u32"), "%s", e.msg);
    cr_assert_eq(u32, 7);
    cr_assert_eq(qv_gguf_get_u32(g, "no.such", &u32, &e), QV_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(e.msg, "no.such"));
    const char *s;
    cr_assert_eq(qv_gguf_get_str(g, "tokenizer.ggml.tokens", &s, NULL, &e),
                 QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, "an array of string, expected string"),
                       "%s", e.msg);
    const void *arr;
    size_t cnt;
    cr_assert_eq(qv_gguf_get_arr(g, "t.f32s", QV_GGUF_INT32, &arr, &cnt, &e),
                 QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, "an array of f32, expected an array of i32"),
                       "%s", e.msg);
    cr_assert_eq(qv_gguf_get_arr(g, "t.u32", QV_GGUF_UINT32, &arr, &cnt, &e),
                 QV_ERR_CORRUPT);
    cr_assert_eq(qv_gguf_get_arr(g, "t.f32s", QV_GGUF_STRING, &arr, &cnt, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_gguf_get_val(g, "t.empty", QV_GGUF_STRING, &u32, &e),
                 QV_ERR_INVALID);
    const char *const *strs;
    cr_assert_eq(qv_gguf_get_str_arr(g, "t.i32s", &strs, NULL, &cnt, &e),
                 QV_ERR_CORRUPT);
    qv_gguf_free(g);
    free(buf);
    qv_gguf_writer_free(w);
}

/* ---- writer validation ----------------------------------------------- */

Test(gguf, writer_rejects_bad_input)
{
    qv_gguf_writer *w;
    qv_err e;
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK);
    float d[256 * 2] = {0};
    int64_t ne[2] = {4, 1};
    char name[65];
    memset(name, 'x', 64);
    name[64] = '\0';
    cr_assert_eq(qv_gguf_writer_add_tensor(w, name, 1, ne, QV_GGML_F32, d, 16, &e),
                 QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "64 bytes"), "%s", e.msg);
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "", 1, ne, QV_GGML_F32, d, 16, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "a", 1, ne, QV_GGML_F32, d, 12, &e),
                 QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "12 bytes given"), "%s", e.msg);
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "a", 1, ne, 2, d, 16, &e),
                 QV_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(e.msg, "unsupported tensor type 2"), "%s", e.msg);
    int64_t tq[1] = {100};
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "a", 1, tq, QV_GGML_TQ2_0, d, 66, &e),
                 QV_ERR_INVALID);
    int64_t zero[2] = {4, 0};
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "a", 2, zero, QV_GGML_F32, d, 0, &e),
                 QV_ERR_INVALID);
    int64_t ne5[5] = {4, 1, 1, 1, 1};
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "a", 5, ne5, QV_GGML_F32, d, 16, &e),
                 QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "n_dims 5"), "%s", e.msg);
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "a", 1, ne, QV_GGML_F32, d, 16, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "a", 1, ne, QV_GGML_F32, d, 16, &e),
                 QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "added twice"), "%s", e.msg);

    cr_assert_eq(qv_gguf_writer_set_u32(w, "general.alignment", 64, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_gguf_writer_set_u64(w, "general.alignment", 32, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_gguf_writer_set_u32(w, "general.alignment", 32, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_u32(w, "", 1, &e), QV_ERR_INVALID);
    uint8_t two = 2;
    cr_assert_eq(qv_gguf_writer_set_val(w, "b", QV_GGUF_BOOL, &two, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_gguf_writer_set_val(w, "b", QV_GGUF_STRING, "x", &e),
                 QV_ERR_INVALID);

    /* setting a key again replaces it in place, type and all */
    cr_assert_eq(qv_gguf_writer_set_u32(w, "k", 1, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_str(w, "z", "last", &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_str(w, "k", "now a string", &e), QV_OK);
    uint8_t *buf;
    size_t n;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK);
    qv_gguf *g;
    cr_assert_eq(qv_gguf_parse(buf, n, &g, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_gguf_kv_count(g), 3);
    cr_assert_str_eq(qv_gguf_kv_at(g, 1)->key, "k");
    const char *s;
    cr_assert_eq(qv_gguf_get_str(g, "k", &s, NULL, &e), QV_OK);
    cr_assert_str_eq(s, "now a string");
    qv_gguf_free(g);
    free(buf);
    qv_gguf_writer_free(w);
}

/* ---- I/O errors ------------------------------------------------------- */

Test(gguf, write_into_missing_folder_names_path)
{
    qv_gguf_writer *w = full_writer();
    qv_err e;
    const char *path = "/tmp/qv-gguf-no-such-dir-31337/x.gguf";
    cr_assert_eq(qv_gguf_write_file(w, path, &e), QV_ERR_IO);
    cr_assert_not_null(strstr(e.msg, path), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "No such file"), "%s", e.msg);
    qv_gguf_writer_free(w);
}

/* A file size limit makes write() fail (EFBIG) halfway, as a full disk
 * (ENOSPC) would: the error names the path, the old file survives and no
 * .tmp is left. Criterion runs each test in its own process, so the limit
 * stays here. */
Test(gguf, write_error_keeps_old_file)
{
    char dir[] = "/tmp/qv_gguf_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], tmp[260];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs("old", f);
    fclose(f);

    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {.rlim_cur = 100, .rlim_max = RLIM_INFINITY};
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    rl.rlim_max = old.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0, "%s", strerror(errno));
    qv_gguf_writer *w = full_writer();
    qv_err e;
    qv_status s = qv_gguf_write_file(w, path, &e);
    setrlimit(RLIMIT_FSIZE, &old);
    cr_assert_eq(s, QV_ERR_IO, "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, path), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "write"), "%s", e.msg);
    cr_assert_neq(access(tmp, F_OK), 0, ".tmp left behind");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 3, "the old file was replaced");
    qv_gguf_writer_free(w);
    unlink(path);
    rmdir(dir);
}

Test(gguf, open_errors)
{
    qv_gguf *g = (qv_gguf *)1;
    qv_err e;
    cr_assert_eq(qv_gguf_open("/tmp/qv-gguf-does-not-exist.gguf", &g, &e),
                 QV_ERR_NOT_FOUND);
    cr_assert_null(g);
    cr_assert_not_null(strstr(e.msg, "qv-gguf-does-not-exist.gguf"));
    char path[] = "/tmp/qv_gguf_empty_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(qv_gguf_open(path, &g, &e), QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, path), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "magic"), "%s", e.msg);
    unlink(path);
}
