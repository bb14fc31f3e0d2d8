/* tests/test_safetensors.c — the safetensors reader and writer
 * (formats/safetensors.c).
 *
 * The writer is checked against the bytes the reference implementation's
 * own tests expect (huggingface/safetensors, safetensors/src/tensor.rs:
 * test_serialization, test_serialization_forced_alignement, test_empty).
 * Hostile files are built here from a header string and data bytes, never
 * with the writer under test, and parsed from an exact-size copy so that
 * ASan sees any over-read. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/half.h"
#include "formats/safetensors.h"

/* ---- hand-made files ------------------------------------------------ */

typedef struct hf {
    uint8_t p[4096];
    size_t n;
} hf;

/* 8-byte length (of the header as given), the header, then data. */
static void mk(hf *f, const char *header, const void *data, size_t dn)
{
    size_t hn = strlen(header);
    cr_assert(8 + hn + dn <= sizeof f->p);
    for (int i = 0; i < 8; ++i)
        f->p[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(f->p + 8, header, hn);
    if (dn)
        memcpy(f->p + 8 + hn, data, dn);
    f->n = 8 + hn + dn;
}

static qv_status parse_copy(const uint8_t *p, size_t n, qv_err *e)
{
    uint8_t *c = malloc(n ? n : 1);
    cr_assert_not_null(c);
    memcpy(c, p, n);
    qv_st *st = (qv_st *)1;
    qv_err_clear(e);
    qv_status s = qv_st_parse(c, n, "t.safetensors", &st, e);
    if (s)
        cr_assert_null(st, "a failed parse must leave *out NULL");
    qv_st_free(st);
    free(c);
    return s;
}

static void refused(const hf *f, qv_status want, const char *needle)
{
    qv_err e;
    qv_status s = parse_copy(f->p, f->n, &e);
    cr_assert_eq(s, want, "status %s (want %s), msg: %s", qv_status_name(s),
                 qv_status_name(want), e.msg);
    cr_assert_eq(e.code, want);
    cr_assert_not_null(strstr(e.msg, "t.safetensors"),
                       "message '%s' does not name the file", e.msg);
    cr_assert_not_null(strstr(e.msg, needle), "message '%s' lacks '%s'",
                       e.msg, needle);
}

/* A header with one F32 tensor "x" of `shape` and `offsets`, over dn
 * zero bytes of data. */
static void refused_entry(const char *entry, size_t dn, qv_status want,
                          const char *needle)
{
    char h[1024];
    snprintf(h, sizeof h, "{\"x\":%s}", entry);
    uint8_t zeros[256] = {0};
    cr_assert(dn <= sizeof zeros);
    hf f;
    mk(&f, h, zeros, dn);
    refused(&f, want, needle);
}

static const uint8_t *le_f32(float v, uint8_t b[4])
{
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int i = 0; i < 4; ++i)
        b[i] = (uint8_t)(u >> (8 * i));
    return b;
}

/* ---- the reference implementation's bytes --------------------------- */

/* tensor.rs test_serialization: "attn.0" F32 [1,2,3] = 0..5 */
static const uint8_t ref_serialization[] = {
    64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123,
    34, 100, 116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115,
    104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97,
    116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50,
    52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64,
    0, 0, 128, 64, 0, 0, 160, 64,
};
/* test_serialization_forced_alignement: "attn0" F32 [1,1,2,3] = 0..5 */
static const uint8_t ref_forced_alignment[] = {
    72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123,
    34, 100, 116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115,
    104, 97, 112, 101, 34, 58, 91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34,
    100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48,
    44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32, 32, 32, 0, 0, 0, 0, 0, 0,
    128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
};
/* test_empty: no tensors; then with {"framework": "pt"} */
static const uint8_t ref_empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125,
                                    32, 32, 32, 32, 32, 32};
static const uint8_t ref_empty_meta[] = {
    40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97,
    116, 97, 95, 95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114,
    107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32,
};

static const float zero_to_five[6] = {0, 1, 2, 3, 4, 5};

static void expect_bytes(qv_st_writer *w, const uint8_t *want, size_t n)
{
    uint8_t *out;
    size_t len;
    qv_err e;
    cr_assert_eq(qv_st_write_mem(w, &out, &len, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(len, n, "wrote %zu bytes, the reference %zu", len, n);
    cr_assert(memcmp(out, want, n) == 0, "bytes differ from the reference");
    free(out);
}

Test(safetensors, writer_matches_the_reference_bytes)
{
    qv_err e;
    qv_st_writer *w;
    cr_assert_eq(qv_st_writer_new(&w, &e), QV_OK);
    int64_t s3[3] = {1, 2, 3};
    cr_assert_eq(qv_st_writer_add_f32(w, "attn.0", 3, s3, zero_to_five, &e),
                 QV_OK, "%s", e.msg);
    expect_bytes(w, ref_serialization, sizeof ref_serialization);
    qv_st_writer_free(w);

    cr_assert_eq(qv_st_writer_new(&w, &e), QV_OK);
    int64_t s4[4] = {1, 1, 2, 3};
    cr_assert_eq(qv_st_writer_add_f32(w, "attn0", 4, s4, zero_to_five, &e),
                 QV_OK, "%s", e.msg);
    expect_bytes(w, ref_forced_alignment, sizeof ref_forced_alignment);
    qv_st_writer_free(w);

    cr_assert_eq(qv_st_writer_new(&w, &e), QV_OK);
    expect_bytes(w, ref_empty, sizeof ref_empty);
    cr_assert_eq(qv_st_writer_set_meta(w, "framework", "pt", &e), QV_OK);
    expect_bytes(w, ref_empty_meta, sizeof ref_empty_meta);
    qv_st_writer_free(w);
}

Test(safetensors, reads_the_reference_bytes)
{
    qv_err e;
    qv_st *st;
    cr_assert_eq(qv_st_parse(ref_serialization, sizeof ref_serialization,
                             "ref", &st, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_st_count(st), 1);
    const qv_st_tensor *t = qv_st_find(st, "attn.0");
    cr_assert_not_null(t);
    cr_assert_eq(t, qv_st_at(st, 0));
    cr_assert_eq(t->dtype, QV_ST_F32);
    cr_assert_eq(t->n_dims, 3);
    cr_assert_eq(t->shape[0], 1);
    cr_assert_eq(t->shape[1], 2);
    cr_assert_eq(t->shape[2], 3);
    cr_assert_eq(t->n_elems, 6);
    cr_assert_eq(t->nbytes, 24);
    float v[6];
    cr_assert_eq(qv_st_read_f32(t, v, 6, &e), QV_OK, "%s", e.msg);
    cr_assert(memcmp(v, zero_to_five, sizeof v) == 0);
    cr_assert_eq(qv_st_meta_count(st), 0);
    cr_assert_null(qv_st_find(st, "attn.1"));
    cr_assert_null(qv_st_at(st, 1));
    qv_st_free(st);

    cr_assert_eq(qv_st_parse(ref_empty_meta, sizeof ref_empty_meta, "ref",
                             &st, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_st_count(st), 0);
    cr_assert_str_eq(qv_st_meta_get(st, "framework"), "pt");
    const char *k, *val;
    cr_assert(qv_st_meta_at(st, 0, &k, &val));
    cr_assert_str_eq(k, "framework");
    cr_assert_str_eq(val, "pt");
    cr_assert(!qv_st_meta_at(st, 1, &k, &val));
    qv_st_free(st);
}

/* ---- round trips ---------------------------------------------------- */

Test(safetensors, round_trip_exact_values)
{
    /* awkward floats: signed zeros, subnormals, extremes, infinities, NaN
     * payloads — the bits must come back unchanged */
    const uint32_t bits[] = {0x00000000u, 0x80000000u, 0x00000001u,
                             0x807fffffu, 0x7f7fffffu, 0xff7fffffu,
                             0x7f800000u, 0xff800000u, 0x7fc00001u,
                             0x3f800000u, 0xbeaaaaabu, 0x3dcccccdu};
    enum { NB = sizeof bits / sizeof bits[0] };
    float a[NB], b[3 * 5], c[1] = {42.5f};
    memcpy(a, bits, sizeof a);
    for (int i = 0; i < 15; ++i)
        b[i] = (float)i * -0.37f + 1e-3f * (float)(i * i);
    qv_err e;
    qv_st_writer *w;
    cr_assert_eq(qv_st_writer_new(&w, &e), QV_OK);
    int64_t sa[2] = {3, 4}, sb[2] = {3, 5}, se[2] = {0, 7};
    /* added out of name order: the file orders them by name */
    cr_assert_eq(qv_st_writer_add_f32(w, "z.last", 2, sb, b, &e), QV_OK);
    cr_assert_eq(qv_st_writer_add_f32(w, "a.first", 2, sa, a, &e), QV_OK);
    cr_assert_eq(qv_st_writer_add_f32(w, "m.scalar", 0, NULL, c, &e), QV_OK);
    cr_assert_eq(qv_st_writer_add_f32(w, "m.empty", 2, se, NULL, &e), QV_OK,
                 "%s", e.msg);
    cr_assert_eq(qv_st_writer_set_meta(w, "format", "pt", &e), QV_OK);
    cr_assert_eq(qv_st_writer_set_meta(w, "note", "first", &e), QV_OK);
    cr_assert_eq(qv_st_writer_set_meta(w, "note", "\xc3\xa9t\xc3\xa9", &e),
                 QV_OK);
    uint8_t *out;
    size_t len;
    cr_assert_eq(qv_st_write_mem(w, &out, &len, &e), QV_OK, "%s", e.msg);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i)
        hlen |= (uint64_t)out[i] << (8 * i);
    cr_assert_eq(hlen % 8, 0, "header padded to a multiple of 8");
    cr_assert_eq(len, 8 + hlen + sizeof a + sizeof b + sizeof c);
    cr_assert_eq(out[8], '{');

    qv_st *st;
    cr_assert_eq(qv_st_parse(out, len, "mem", &st, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_st_count(st), 4);
    /* data order = name order */
    cr_assert_str_eq(qv_st_at(st, 0)->name, "a.first");
    cr_assert_str_eq(qv_st_at(st, 1)->name, "m.empty");
    cr_assert_str_eq(qv_st_at(st, 2)->name, "m.scalar");
    cr_assert_str_eq(qv_st_at(st, 3)->name, "z.last");
    cr_assert_str_eq(qv_st_meta_get(st, "format"), "pt");
    cr_assert_str_eq(qv_st_meta_get(st, "note"), "\xc3\xa9t\xc3\xa9");
    cr_assert_eq(qv_st_meta_count(st), 2);

    float ra[NB], rb[15], rc[1];
    const qv_st_tensor *t = qv_st_find(st, "a.first");
    cr_assert_eq(t->n_dims, 2);
    cr_assert_eq(t->shape[0], 3);
    cr_assert_eq(t->shape[1], 4);
    cr_assert_eq(qv_st_read_f32(t, ra, NB, &e), QV_OK);
    cr_assert(memcmp(ra, a, sizeof a) == 0, "a.first bits changed");
    t = qv_st_find(st, "z.last");
    cr_assert_eq(qv_st_read_f32(t, rb, 15, &e), QV_OK);
    cr_assert(memcmp(rb, b, sizeof b) == 0, "z.last bits changed");
    t = qv_st_find(st, "m.scalar");
    cr_assert_eq(t->n_dims, 0);
    cr_assert_eq(t->n_elems, 1);
    cr_assert_eq(qv_st_read_f32(t, rc, 1, &e), QV_OK);
    cr_assert_eq(rc[0], 42.5f);
    t = qv_st_find(st, "m.empty");
    cr_assert_eq(t->n_elems, 0);
    cr_assert_eq(t->nbytes, 0);
    cr_assert_eq(qv_st_read_f32(t, NULL, 0, &e), QV_OK);
    /* asking for the wrong count is refused */
    cr_assert_eq(qv_st_read_f32(qv_st_find(st, "z.last"), rb, 14, &e),
                 QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "z.last"));
    qv_st_free(st);
    free(out);
    qv_st_writer_free(w);
}

Test(safetensors, write_file_is_atomic_and_opens)
{
    char dir[] = "/tmp/qvac-st-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    float v[4] = {1, -2, 3.5f, -0.0f};
    int64_t sh[2] = {2, 2};
    qv_err e;
    qv_st_writer *w;
    cr_assert_eq(qv_st_writer_new(&w, &e), QV_OK);
    cr_assert_eq(qv_st_writer_add_f32(w, "w", 2, sh, v, &e), QV_OK);
    cr_assert_eq(qv_st_write_file(w, path, &e), QV_OK, "%s", e.msg);
    cr_assert_neq(access(tmp, F_OK), 0, "the .tmp file is left behind");
    qv_st *st;
    cr_assert_eq(qv_st_open(path, &st, &e), QV_OK, "%s", e.msg);
    float r[4];
    cr_assert_eq(qv_st_read_f32(qv_st_find(st, "w"), r, 4, &e), QV_OK);
    cr_assert(memcmp(r, v, sizeof v) == 0);
    qv_st_free(st);

    /* a folder that does not exist: named, nothing left */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/a.safetensors", dir);
    cr_assert_eq(qv_st_write_file(w, bad, &e), QV_ERR_IO);
    cr_assert_not_null(strstr(e.msg, bad), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "safetensors"), "%s", e.msg);
    qv_st_writer_free(w);

    /* open: missing file, a folder */
    cr_assert_eq(qv_st_open(bad, &st, &e), QV_ERR_NOT_FOUND);
    cr_assert_null(st);
    cr_assert_not_null(strstr(e.msg, bad));
    cr_assert_eq(qv_st_open(dir, &st, &e), QV_ERR_IO);
    cr_assert_not_null(strstr(e.msg, "not a regular file"), "%s", e.msg);
    /* a corrupt file names its path */
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite("\x02\0\0\0\0\0\0\0{}x", 1, 11, f);
    fclose(f);
    cr_assert_eq(qv_st_open(path, &st, &e), QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, path), "%s", e.msg);
    remove(path);
    rmdir(dir);
}

/* ---- F16 / BF16 ----------------------------------------------------- */

Test(safetensors, f16_and_bf16_convert_exactly)
{
    /* F16: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), -0, inf,
     * 0.333251953125 (0x3555) */
    const uint16_t h[7] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00,
                           0x3555};
    const float hf_want[7] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f,
                              -0.0f, INFINITY, 0.333251953125f};
    /* BF16: 1, -3, the smallest subnormal 2^-133, 3.3895314e38 (largest),
     * 0.1 rounded (0x3dcd = 0.10009765625) */
    const uint16_t bf[5] = {0x3f80, 0xc040, 0x0001, 0x7f7f, 0x3dcd};
    const float bf_want[5] = {1.0f, -3.0f, 0x1p-133f, 0x1.fep127f,
                              0.10009765625f};
    uint8_t data[14 + 10];
    for (int i = 0; i < 7; ++i) {
        data[2 * i] = (uint8_t)h[i];
        data[2 * i + 1] = (uint8_t)(h[i] >> 8);
    }
    for (int i = 0; i < 5; ++i) {
        data[14 + 2 * i] = (uint8_t)bf[i];
        data[14 + 2 * i + 1] = (uint8_t)(bf[i] >> 8);
    }
    hf f;
    mk(&f, "{\"h\":{\"dtype\":\"F16\",\"shape\":[7],\"data_offsets\":[0,14]},"
           "\"b\":{\"dtype\":\"BF16\",\"shape\":[5,1],\"data_offsets\":[14,24]}}",
       data, sizeof data);
    qv_err e;
    qv_st *st;
    cr_assert_eq(qv_st_parse(f.p, f.n, "conv", &st, &e), QV_OK, "%s", e.msg);
    const qv_st_tensor *t = qv_st_find(st, "h");
    cr_assert_eq(t->dtype, QV_ST_F16);
    cr_assert_str_eq(qv_st_dtype_name(t->dtype), "F16");
    float out[7];
    cr_assert_eq(qv_st_read_f32(t, out, 7, &e), QV_OK);
    for (int i = 0; i < 7; ++i) {
        cr_assert(memcmp(&out[i], &hf_want[i], 4) == 0,
                  "F16 %04x -> %a, want %a", h[i], (double)out[i],
                  (double)hf_want[i]);
        /* and the project's own half conversion agrees */
        cr_assert(memcmp(&out[i], &(float){qv_f16_to_f32(h[i])}, 4) == 0);
    }
    t = qv_st_find(st, "b");
    cr_assert_eq(t->dtype, QV_ST_BF16);
    cr_assert_str_eq(qv_st_dtype_name(t->dtype), "BF16");
    cr_assert_eq(qv_st_read_f32(t, out, 5, &e), QV_OK);
    for (int i = 0; i < 5; ++i)
        cr_assert(memcmp(&out[i], &bf_want[i], 4) == 0,
                  "BF16 %04x -> %a, want %a", bf[i], (double)out[i],
                  (double)bf_want[i]);
    /* F16 NaN stays NaN */
    uint8_t nan[2] = {0x01, 0x7e};
    mk(&f, "{\"n\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]}}",
       nan, 2);
    qv_st_free(st);
    cr_assert_eq(qv_st_parse(f.p, f.n, "nan", &st, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_st_read_f32(qv_st_find(st, "n"), out, 1, &e), QV_OK);
    cr_assert(isnan(out[0]));
    qv_st_free(st);
}

/* ---- the file as a whole -------------------------------------------- */

Test(safetensors, too_short_and_bad_lengths)
{
    hf f = {.n = 0};
    refused(&f, QV_ERR_CORRUPT, "shorter than the 8-byte header length");
    f.n = 7;
    memset(f.p, 0, 7);
    refused(&f, QV_ERR_CORRUPT, "shorter than the 8-byte header length");

    /* the limit: 100,000,001 is refused before anything else is looked at */
    mk(&f, "{}", NULL, 0);
    uint64_t big = 100000001u;
    for (int i = 0; i < 8; ++i)
        f.p[i] = (uint8_t)(big >> (8 * i));
    refused(&f, QV_ERR_CORRUPT, "exceeds the limit of 100000000 bytes");
    /* 2^64-1: no overflow in the check */
    memset(f.p, 0xff, 8);
    refused(&f, QV_ERR_CORRUPT, "exceeds the limit");
    /* longer than the file */
    mk(&f, "{}", NULL, 0);
    f.p[0] = 3;
    refused(&f, QV_ERR_CORRUPT, "runs past the end of the file");
    /* zero-length header */
    f.p[0] = 0;
    refused(&f, QV_ERR_CORRUPT, "does not start with '{'");
}

Test(safetensors, header_must_be_a_json_object)
{
    hf f;
    mk(&f, "[1,2]   ", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "does not start with '{'");
    mk(&f, " {}     ", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "does not start with '{'");
    mk(&f, "{\"x\":", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "not valid JSON");
    mk(&f, "{} x", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "not valid JSON");
    /* NUL padding is not whitespace */
    mk(&f, "{}", NULL, 0);
    memcpy(f.p + 10, "\0\0\0\0\0\0", 6);
    f.p[0] = 8;
    f.n = 16;
    refused(&f, QV_ERR_CORRUPT, "not valid JSON");
    /* a string escape jansson refuses without JSON_ALLOW_NUL */
    mk(&f, "{\"a\\u0000b\":{}}", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "not valid JSON");
    /* invalid UTF-8 in a name */
    mk(&f, "{\"\xff\":{}}", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "not valid JSON");
    /* spaces after the object are fine (the reference pads with them) */
    mk(&f, "{}      ", NULL, 0);
    qv_err e;
    cr_assert_eq(parse_copy(f.p, f.n, &e), QV_OK, "%s", e.msg);
}

Test(safetensors, metadata_must_be_strings)
{
    hf f;
    mk(&f, "{\"__metadata__\":[1]}", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "__metadata__ is an array, not an object");
    mk(&f, "{\"__metadata__\":{\"format\":1}}", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "__metadata__ 'format' is an integer, not a "
                                "string");
    mk(&f, "{\"__metadata__\":{\"a\":null}}", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "__metadata__ 'a' is null");
}

Test(safetensors, duplicate_names_are_refused)
{
    float one = 1.0f;
    uint8_t d[8];
    le_f32(one, d);
    le_f32(one, d + 4);
    hf f;
    mk(&f, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       d, 8);
    refused(&f, QV_ERR_CORRUPT, "a name appears twice");
    mk(&f, "{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "a name appears twice");
}

/* ---- one entry ------------------------------------------------------ */

Test(safetensors, entry_shape_and_fields)
{
    refused_entry("[1]", 0, QV_ERR_CORRUPT,
                  "tensor 'x' is an array, not an object");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],"
                  "\"extra\":1}", 4, QV_ERR_CORRUPT,
                  "tensor 'x': unknown field 'extra'");
    refused_entry("{\"shape\":[1],\"data_offsets\":[0,4]}", 4, QV_ERR_CORRUPT,
                  "tensor 'x' has no dtype");
    refused_entry("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}", 4,
                  QV_ERR_CORRUPT, "tensor 'x' has no shape");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1]}", 4, QV_ERR_CORRUPT,
                  "tensor 'x' has no data_offsets");
    hf f;
    mk(&f, "{\"\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
       NULL, 0);
    refused(&f, QV_ERR_CORRUPT, "empty name");
}

Test(safetensors, dtypes)
{
    refused_entry("{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}", 4,
                  QV_ERR_CORRUPT, "tensor 'x': dtype is an integer, not a "
                                  "string");
    /* the format's other dtypes: unsupported, named with the tensor */
    const char *others[] = {"I8", "U8", "BOOL", "I32", "F64", "I64",
                            "F8_E4M3", "U16"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; ++i) {
        char entry[200], needle[100];
        snprintf(entry, sizeof entry,
                 "{\"dtype\":\"%s\",\"shape\":[1],\"data_offsets\":[0,8]}",
                 others[i]);
        snprintf(needle, sizeof needle, "tensor 'x' has dtype %s, which qvac "
                 "does not read", others[i]);
        refused_entry(entry, 8, QV_ERR_UNSUPPORTED, needle);
    }
    refused_entry("{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4,
                  QV_ERR_CORRUPT, "dtype 'f32', which is not a safetensors "
                                  "dtype");
}

Test(safetensors, shapes)
{
    refused_entry("{\"dtype\":\"F32\",\"shape\":7,\"data_offsets\":[0,4]}", 4,
                  QV_ERR_CORRUPT, "shape is an integer, not an array");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}",
                  4, QV_ERR_CORRUPT, "shape[0] is an integer below 0");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}",
                  4, QV_ERR_CORRUPT, "shape[0] is a real number");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}",
                  8, QV_ERR_CORRUPT, "shape[1] is a string");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                  "\"data_offsets\":[0,4]}", 4, QV_ERR_CORRUPT,
                  "has 9 dimensions");
    /* the product overflows 64 bits; with the element size too */
    refused_entry("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],"
                  "\"data_offsets\":[0,4]}", 4, QV_ERR_CORRUPT,
                  "byte size overflows");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                  "\"data_offsets\":[0,4]}", 4, QV_ERR_CORRUPT,
                  "byte size overflows");
    /* an integer beyond 64 bits is not even JSON jansson reads */
    refused_entry("{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
                  "\"data_offsets\":[0,4]}", 4, QV_ERR_CORRUPT,
                  "not valid JSON");
    /* a zero after an overflowing prefix: 0 elements, which is fine */
    hf f;
    mk(&f, "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],"
           "\"data_offsets\":[0,0]}}", NULL, 0);
    qv_err e;
    cr_assert_eq(parse_copy(f.p, f.n, &e), QV_OK, "%s", e.msg);
}

Test(safetensors, data_offsets)
{
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}", 4,
                  QV_ERR_CORRUPT, "data_offsets is not [begin, end]");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}",
                  8, QV_ERR_CORRUPT, "data_offsets is not [begin, end]");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}",
                  4, QV_ERR_CORRUPT, "data_offsets is not [begin, end]");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\"}",
                  4, QV_ERR_CORRUPT, "data_offsets is not [begin, end]");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}",
                  8, QV_ERR_CORRUPT, "ends before it begins");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}",
                  4, QV_ERR_CORRUPT, "run past the end of the data (4 bytes)");
    refused_entry("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}",
                  4, QV_ERR_CORRUPT,
                  "hold 4 bytes, but F32 of 2 elements is 8 bytes");
    refused_entry("{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}",
                  16, QV_ERR_CORRUPT,
                  "hold 16 bytes, but BF16 of 4 elements is 8 bytes");
}

Test(safetensors, data_is_covered_exactly)
{
    uint8_t d[16] = {0};
    hf f;
    /* overlap */
    mk(&f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
       d, 12);
    refused(&f, QV_ERR_CORRUPT, "tensor 'b' [4, 12) overlaps tensor 'a' [0, 8)");
    /* the same bytes twice */
    mk(&f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}",
       d, 8);
    refused(&f, QV_ERR_CORRUPT, "overlaps");
    /* a gap between tensors */
    mk(&f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
       d, 12);
    refused(&f, QV_ERR_CORRUPT, "data bytes [4, 8) before tensor 'b' belong "
                                "to no tensor");
    /* a gap at the start */
    mk(&f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       d, 8);
    refused(&f, QV_ERR_CORRUPT, "data bytes [0, 4) before tensor 'a'");
    /* bytes after the last tensor */
    mk(&f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
       d, 5);
    refused(&f, QV_ERR_CORRUPT, "holds 1 bytes after the last tensor");
    mk(&f, "{}", d, 3);
    refused(&f, QV_ERR_CORRUPT, "holds 3 bytes after the last tensor");
    /* out of order in the header is fine, and zero-size tensors sit
     * anywhere */
    mk(&f, "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
           "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
       d, 8);
    qv_err e;
    qv_st *st;
    cr_assert_eq(qv_st_parse(f.p, f.n, "ok", &st, &e), QV_OK, "%s", e.msg);
    cr_assert_str_eq(qv_st_at(st, 0)->name, "a");
    cr_assert_str_eq(qv_st_at(st, 2)->name, "b");
    cr_assert_eq(qv_st_find(st, "e")->n_elems, 0);
    qv_st_free(st);
}

/* Every prefix of a good file is refused, never over-read. */
Test(safetensors, truncated_at_every_length)
{
    qv_err e;
    qv_st_writer *w;
    cr_assert_eq(qv_st_writer_new(&w, &e), QV_OK);
    int64_t s3[3] = {1, 2, 3};
    cr_assert_eq(qv_st_writer_add_f32(w, "attn.0", 3, s3, zero_to_five, &e),
                 QV_OK);
    cr_assert_eq(qv_st_writer_set_meta(w, "format", "pt", &e), QV_OK);
    uint8_t *out;
    size_t len;
    cr_assert_eq(qv_st_write_mem(w, &out, &len, &e), QV_OK);
    for (size_t n = 0; n < len; ++n)
        cr_assert_eq(parse_copy(out, n, &e), QV_ERR_CORRUPT,
                     "a %zu-byte prefix of %zu was accepted", n, len);
    cr_assert_eq(parse_copy(out, len, &e), QV_OK, "%s", e.msg);
    free(out);
    qv_st_writer_free(w);
}

Test(safetensors, writer_refusals)
{
    qv_err e;
    qv_st_writer *w;
    cr_assert_eq(qv_st_writer_new(&w, &e), QV_OK);
    float v[2] = {1, 2};
    int64_t sh[1] = {2}, neg[1] = {-2};
    cr_assert_eq(qv_st_writer_add_f32(w, "a", 1, sh, v, &e), QV_OK);
    cr_assert_eq(qv_st_writer_add_f32(w, "a", 1, sh, v, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "added twice"), "%s", e.msg);
    cr_assert_eq(qv_st_writer_add_f32(w, "__metadata__", 1, sh, v, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_st_writer_add_f32(w, "", 1, sh, v, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_st_writer_add_f32(w, "\xff", 1, sh, v, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_st_writer_add_f32(w, "b", 1, neg, v, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "shape[0] = -2"), "%s", e.msg);
    cr_assert_eq(qv_st_writer_add_f32(w, "c", 9, sh, v, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_st_writer_add_f32(w, "d", 1, sh, NULL, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_st_writer_set_meta(w, "k", "\xc3", &e), QV_ERR_INVALID);
    /* what was refused left nothing behind */
    uint8_t *out;
    size_t len;
    cr_assert_eq(qv_st_write_mem(w, &out, &len, &e), QV_OK);
    qv_st *st;
    cr_assert_eq(qv_st_parse(out, len, "w", &st, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_st_count(st), 1);
    cr_assert_eq(qv_st_meta_count(st), 0);
    qv_st_free(st);
    free(out);
    qv_st_writer_free(w);
}
