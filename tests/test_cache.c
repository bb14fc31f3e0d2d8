/* tests/test_cache.c — the autotune cache (autotune/cache.h): round trips,
 * "never replace a better entry", buckets / similar devices / stale
 * listings, evaluation resume, JSON export / import (and malformed imports
 * rejected as a whole), and the failure modes a user meets: a file that is
 * not a database, a database locked by another process, a read-only
 * database, a path that cannot be created. Each test gets its own temporary
 * folder under /tmp, removed afterwards. */
#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "autotune/cache.h"

#define FP_A "0123456789abcdef"
#define FP_B "fedcba9876543210"
#define FP_C "00000000000000c0"
#define FP_D "00000000000000d0"
#define SRC1 "1111111111111111"
#define SRC2 "2222222222222222"

static char dir[64];

static void mk_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/qvac_cache_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void rm_tmp(void) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

TestSuite(cache, .init = mk_tmp, .fini = rm_tmp);

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static qv_tune_cache *open_db(const char *name, int ro)
{
    char p[256];
    path_in(p, sizeof p, name);
    qv_tune_cache *c = NULL;
    qv_err e = {0};
    cr_assert_eq(qv_tune_cache_open(p, ro, 1000, &c, &e), QV_OK, "%s", e.msg);
    cr_assert_not_null(c);
    return c;
}

static qv_tune_key key_of(const char *fp, const char *kernel, const char *src,
                          const char *bucket)
{
    qv_tune_key k;
    memset(&k, 0, sizeof k);
    snprintf(k.fingerprint, sizeof k.fingerprint, "%s", fp);
    snprintf(k.kernel, sizeof k.kernel, "%s", kernel);
    snprintf(k.src_hash, sizeof k.src_hash, "%s", src);
    snprintf(k.bucket, sizeof k.bucket, "%s", bucket);
    return k;
}

static qv_tune_entry entry_of(const char *fp, const char *kernel,
                              const char *src, const char *bucket,
                              double median)
{
    qv_tune_entry e;
    memset(&e, 0, sizeof e);
    e.key = key_of(fp, kernel, src, bucket);
    snprintf(e.config, sizeof e.config, "WG_X=16,WG_Y=%d,TX=2", (int)median % 7);
    e.median_ns = median;
    e.default_ns = median * 3.25 + 0.125;
    e.gflops = 1e12 / median + 0.5;
    e.evals = 297;
    e.failures = 12;
    snprintf(e.strategy, sizeof e.strategy, "exhaustive");
    e.created_at = 1700000000 + (int64_t)median;
    snprintf(e.version, sizeof e.version, "0.1.0");
    snprintf(e.backend, sizeof e.backend, "opencl");
    snprintf(e.vendor, sizeof e.vendor, "Advanced Micro Devices, Inc.");
    snprintf(e.device_name, sizeof e.device_name, "gfx1100 (Radeon \"7900\")");
    return e;
}

static void expect_entry_eq(const qv_tune_entry *a, const qv_tune_entry *b)
{
    cr_expect_str_eq(a->key.fingerprint, b->key.fingerprint);
    cr_expect_str_eq(a->key.kernel, b->key.kernel);
    cr_expect_str_eq(a->key.src_hash, b->key.src_hash);
    cr_expect_str_eq(a->key.bucket, b->key.bucket);
    cr_expect_str_eq(a->config, b->config);
    cr_expect_eq(a->median_ns, b->median_ns);
    cr_expect_eq(a->default_ns, b->default_ns);
    cr_expect_eq(a->gflops, b->gflops);
    cr_expect_eq(a->evals, b->evals);
    cr_expect_eq(a->failures, b->failures);
    cr_expect_str_eq(a->strategy, b->strategy);
    cr_expect_eq(a->created_at, b->created_at);
    cr_expect_str_eq(a->version, b->version);
    cr_expect_str_eq(a->backend, b->backend);
    cr_expect_str_eq(a->vendor, b->vendor);
    cr_expect_str_eq(a->device_name, b->device_name);
}

static void put_ok(qv_tune_cache *c, const qv_tune_entry *e, int force,
                   int want_stored)
{
    int stored = -1;
    qv_err err = {0};
    cr_assert_eq(qv_tune_cache_put(c, e, force, &stored, &err), QV_OK, "%s",
                 err.msg);
    cr_assert_eq(stored, want_stored);
}

static size_t count_entries(qv_tune_cache *c)
{
    qv_tune_entry *v = NULL;
    size_t n = 99;
    cr_assert_eq(qv_tune_cache_list(c, NULL, NULL, &v, &n, NULL), QV_OK);
    free(v);
    return n;
}

Test(cache, round_trip_every_field_and_folder_created)
{
    qv_tune_cache *c = open_db("a/b/tune.db", 0);
    char sub[256];
    path_in(sub, sizeof sub, "a/b");
    struct stat sb;
    cr_assert_eq(stat(sub, &sb), 0);
    cr_expect_eq(sb.st_mode & 0777, 0700);
    qv_tune_entry e = entry_of(FP_A, "matmul_tq2", SRC1, "M256:N1024:K1024:R0",
                               12345.678);
    put_ok(c, &e, 0, 1);
    qv_tune_entry got;
    memset(&got, 0x5a, sizeof got);
    qv_err err = {0};
    cr_assert_eq(qv_tune_cache_get(c, &e.key, &got, &err), QV_OK, "%s", err.msg);
    expect_entry_eq(&got, &e);
    cr_expect_eq(got.stale, 0);
    qv_tune_key other = key_of(FP_A, "matmul_tq2", SRC1, "M1:N1:K1:R0");
    cr_expect_eq(qv_tune_cache_get(c, &other, &got, &err), QV_ERR_NOT_FOUND);
    qv_tune_cache_destroy(&c);
    cr_expect_null(c);
    qv_tune_cache_destroy(&c);
    qv_tune_cache_destroy(NULL);
    /* survives a reopen */
    c = open_db("a/b/tune.db", 0);
    cr_assert_eq(qv_tune_cache_get(c, &e.key, &got, &err), QV_OK, "%s", err.msg);
    expect_entry_eq(&got, &e);
    qv_tune_cache_destroy(&c);
}

Test(cache, put_keeps_better_entry_unless_forced)
{
    qv_tune_cache *c = open_db("t.db", 0);
    qv_tune_entry e = entry_of(FP_A, "k", SRC1, "b", 100.0), got;
    put_ok(c, &e, 0, 1);
    qv_tune_entry worse = entry_of(FP_A, "k", SRC1, "b", 200.0);
    put_ok(c, &worse, 0, 0);
    cr_assert_eq(qv_tune_cache_get(c, &e.key, &got, NULL), QV_OK);
    cr_expect_eq(got.median_ns, 100.0);
    cr_expect_str_eq(got.config, e.config);
    qv_tune_entry better = entry_of(FP_A, "k", SRC1, "b", 50.0);
    put_ok(c, &better, 0, 1);
    cr_assert_eq(qv_tune_cache_get(c, &e.key, &got, NULL), QV_OK);
    cr_expect_eq(got.median_ns, 50.0);
    put_ok(c, &worse, 1, 1);
    cr_assert_eq(qv_tune_cache_get(c, &e.key, &got, NULL), QV_OK);
    expect_entry_eq(&got, &worse);
    cr_expect_eq(count_entries(c), 1);
    qv_tune_cache_destroy(&c);
}

Test(cache, put_rejects_invalid_entries)
{
    qv_tune_cache *c = open_db("t.db", 0);
    qv_err err = {0};
    int stored = 7;
    qv_tune_entry e = entry_of(FP_A, "k", SRC1, "b", 100.0);
    e.median_ns = NAN;
    cr_expect_eq(qv_tune_cache_put(c, &e, 0, &stored, &err), QV_ERR_INVALID);
    cr_expect_eq(stored, 0);
    cr_expect(strstr(err.msg, "median_ns") != NULL, "%s", err.msg);
    e = entry_of("nothex!!nothex!!", "k", SRC1, "b", 100.0);
    cr_expect_eq(qv_tune_cache_put(c, &e, 0, &stored, &err), QV_ERR_INVALID);
    cr_expect(strstr(err.msg, "fingerprint") != NULL, "%s", err.msg);
    e = entry_of(FP_A, "k", SRC1, "b", 100.0);
    memset(e.vendor, 'x', sizeof e.vendor); /* not terminated */
    cr_expect_eq(qv_tune_cache_put(c, &e, 0, &stored, &err), QV_ERR_INVALID);
    cr_expect_eq(count_entries(c), 0);
    qv_tune_cache_destroy(&c);
}

Test(cache, buckets_of_one_device_kernel_and_source)
{
    qv_tune_cache *c = open_db("t.db", 0);
    const char *bk[3] = {"M1:N4096:K4096:R0", "M256:N1024:K1024:R0",
                         "M64:N64:K64:R1"};
    for (int i = 0; i < 3; i++) {
        qv_tune_entry e = entry_of(FP_A, "matmul", SRC1, bk[i], 100.0 + i);
        put_ok(c, &e, 0, 1);
    }
    qv_tune_entry x = entry_of(FP_A, "matmul", SRC2, bk[0], 1.0);
    put_ok(c, &x, 0, 1);
    x = entry_of(FP_B, "matmul", SRC1, bk[0], 1.0);
    put_ok(c, &x, 0, 1);
    x = entry_of(FP_A, "gemv", SRC1, bk[0], 1.0);
    put_ok(c, &x, 0, 1);
    qv_tune_entry *v = (qv_tune_entry *)1;
    size_t n = 0;
    qv_err err = {0};
    cr_assert_eq(qv_tune_cache_buckets(c, FP_A, "matmul", SRC1, &v, &n, &err),
                 QV_OK, "%s", err.msg);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        cr_expect_str_eq(v[i].key.bucket, bk[i]);
        cr_expect_str_eq(v[i].key.fingerprint, FP_A);
        cr_expect_str_eq(v[i].key.src_hash, SRC1);
        cr_expect_eq(v[i].median_ns, 100.0 + (double)i);
    }
    free(v);
    cr_assert_eq(qv_tune_cache_buckets(c, FP_C, "matmul", SRC1, &v, &n, &err),
                 QV_OK);
    cr_expect_eq(n, 0);
    free(v);
    qv_tune_cache_destroy(&c);
}

Test(cache, similar_devices_same_backend_vendor_kernel_bucket_source)
{
    qv_tune_cache *c = open_db("t.db", 0);
    qv_tune_entry like = entry_of(FP_A, "matmul", SRC1, "B", 100.0);
    put_ok(c, &like, 0, 1);
    qv_tune_entry b = entry_of(FP_B, "matmul", SRC1, "B", 300.0);
    qv_tune_entry cc = entry_of(FP_C, "matmul", SRC1, "B", 200.0);
    put_ok(c, &b, 0, 1);
    put_ok(c, &cc, 0, 1);
    qv_tune_entry no = entry_of(FP_D, "matmul", SRC1, "B", 1.0);
    snprintf(no.vendor, sizeof no.vendor, "NVIDIA Corporation");
    put_ok(c, &no, 0, 1);
    no = entry_of(FP_D, "matmul", SRC2, "B", 2.0); /* other source */
    put_ok(c, &no, 0, 1);
    no = entry_of(FP_D, "matmul", SRC1, "other", 3.0); /* other bucket */
    put_ok(c, &no, 0, 1);
    no = entry_of(FP_D, "gemv", SRC1, "B", 4.0); /* other kernel */
    put_ok(c, &no, 0, 1);
    no = entry_of("00000000000000e0", "matmul", SRC1, "B", 5.0);
    snprintf(no.backend, sizeof no.backend, "vulkan");
    put_ok(c, &no, 0, 1);
    qv_tune_entry *v = NULL;
    size_t n = 0;
    qv_err err = {0};
    cr_assert_eq(qv_tune_cache_similar(c, &like, &v, &n, &err), QV_OK, "%s",
                 err.msg);
    cr_assert_eq(n, 2);
    expect_entry_eq(&v[0], &cc); /* best first */
    expect_entry_eq(&v[1], &b);
    free(v);
    qv_tune_cache_destroy(&c);
}

static const char *cur_src2(const char *backend, const char *kernel, void *u)
{
    cr_expect_str_eq(backend, "opencl");
    (*(int *)u)++;
    return strcmp(kernel, "matmul") == 0 ? SRC2 : NULL;
}

Test(cache, stale_entries_listed_never_found_never_deleted)
{
    qv_tune_cache *c = open_db("t.db", 0);
    qv_tune_entry old = entry_of(FP_A, "matmul", SRC1, "B", 100.0);
    qv_tune_entry other = entry_of(FP_A, "gemv", SRC1, "B", 100.0);
    put_ok(c, &old, 0, 1);
    put_ok(c, &other, 0, 1);
    /* the kernel source changed: the current key does not find it */
    qv_tune_key now = key_of(FP_A, "matmul", SRC2, "B");
    qv_tune_entry got;
    cr_expect_eq(qv_tune_cache_get(c, &now, &got, NULL), QV_ERR_NOT_FOUND);
    qv_tune_entry *v = NULL;
    size_t n = 0;
    cr_assert_eq(qv_tune_cache_buckets(c, FP_A, "matmul", SRC2, &v, &n, NULL),
                 QV_OK);
    cr_expect_eq(n, 0);
    free(v);
    int calls = 0;
    cr_assert_eq(qv_tune_cache_list(c, cur_src2, &calls, &v, &n, NULL), QV_OK);
    cr_assert_eq(n, 2);
    cr_expect_eq(calls, 2);
    for (size_t i = 0; i < n; i++) {
        int is_matmul = strcmp(v[i].key.kernel, "matmul") == 0;
        cr_expect_eq(v[i].stale, is_matmul, "%s", v[i].key.kernel);
        cr_expect_str_eq(v[i].key.src_hash, SRC1);
    }
    free(v);
    cr_assert_eq(qv_tune_cache_list(c, NULL, NULL, &v, &n, NULL), QV_OK);
    cr_assert_eq(n, 2);
    cr_expect_eq(v[0].stale + v[1].stale, 0);
    free(v);
    /* a new entry for the new source lives beside the stale one */
    qv_tune_entry fresh = entry_of(FP_A, "matmul", SRC2, "B", 500.0);
    put_ok(c, &fresh, 0, 1);
    cr_assert_eq(qv_tune_cache_get(c, &now, &got, NULL), QV_OK);
    cr_expect_eq(got.median_ns, 500.0);
    cr_expect_eq(count_entries(c), 3);
    qv_tune_cache_destroy(&c);
}

static qv_tune_eval eval_of(const char *cfg, int ok, double ns,
                            const char *reason)
{
    qv_tune_eval ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.config, sizeof ev.config, "%s", cfg);
    ev.ok = ok;
    ev.median_ns = ns;
    snprintf(ev.reason, sizeof ev.reason, "%s", reason);
    return ev;
}

Test(cache, evals_record_replace_resume_forget)
{
    qv_tune_cache *c = open_db("t.db", 0);
    qv_tune_key k = key_of(FP_A, "matmul", SRC1, "B");
    qv_tune_key k2 = key_of(FP_B, "matmul", SRC1, "B");
    qv_tune_eval evs[3] = {eval_of("WG_X=8", 1, 1000.5, ""),
                           eval_of("WG_X=16", 0, 0, "verify: Y off by 0.3"),
                           eval_of("WG_X=32", 1, 900.25, "")};
    qv_err err = {0};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(qv_tune_cache_record_eval(c, &k, &evs[i], &err), QV_OK,
                     "%s", err.msg);
    cr_assert_eq(qv_tune_cache_record_eval(c, &k2, &evs[0], &err), QV_OK);
    /* replace the failed one */
    qv_tune_eval fixed = eval_of("WG_X=16", 1, 800.0, "");
    cr_assert_eq(qv_tune_cache_record_eval(c, &k, &fixed, &err), QV_OK);
    /* "interrupted": close midway, reopen, resume */
    qv_tune_cache_destroy(&c);
    c = open_db("t.db", 0);
    qv_tune_eval *v = NULL;
    size_t n = 0;
    cr_assert_eq(qv_tune_cache_load_evals(c, &k, &v, &n, &err), QV_OK, "%s",
                 err.msg);
    cr_assert_eq(n, 3);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].config, "WG_X=8") == 0) {
            cr_expect_eq(v[i].ok, 1);
            cr_expect_eq(v[i].median_ns, 1000.5);
            seen |= 1;
        } else if (strcmp(v[i].config, "WG_X=16") == 0) {
            cr_expect_eq(v[i].ok, 1);
            cr_expect_eq(v[i].median_ns, 800.0);
            cr_expect_str_eq(v[i].reason, "");
            seen |= 2;
        } else if (strcmp(v[i].config, "WG_X=32") == 0) {
            cr_expect_eq(v[i].median_ns, 900.25);
            seen |= 4;
        }
    }
    cr_expect_eq(seen, 7);
    free(v);
    /* failed evaluations keep their reason */
    qv_tune_eval bad = eval_of("WG_X=64", 0, NAN, "compile: out of registers");
    cr_assert_eq(qv_tune_cache_record_eval(c, &k, &bad, &err), QV_OK);
    cr_assert_eq(qv_tune_cache_load_evals(c, &k, &v, &n, &err), QV_OK);
    cr_assert_eq(n, 4);
    cr_expect_eq(v[3].ok, 0);
    cr_expect_str_eq(v[3].reason, "compile: out of registers");
    free(v);
    /* forget drops the key's evaluations and entry, nothing else */
    qv_tune_entry e = entry_of(FP_A, "matmul", SRC1, "B", 800.0);
    put_ok(c, &e, 0, 1);
    cr_assert_eq(qv_tune_cache_forget(c, &k, &err), QV_OK, "%s", err.msg);
    cr_assert_eq(qv_tune_cache_load_evals(c, &k, &v, &n, &err), QV_OK);
    cr_expect_eq(n, 0);
    free(v);
    qv_tune_entry got;
    cr_expect_eq(qv_tune_cache_get(c, &k, &got, NULL), QV_ERR_NOT_FOUND);
    cr_assert_eq(qv_tune_cache_load_evals(c, &k2, &v, &n, &err), QV_OK);
    cr_expect_eq(n, 1);
    free(v);
    qv_tune_cache_destroy(&c);
}

static void fill(qv_tune_cache *c, int n)
{
    for (int i = 0; i < n; i++) {
        char b[32];
        snprintf(b, sizeof b, "M%d:N1024:K1024:R0", 1 << i);
        qv_tune_entry e = entry_of(i % 2 ? FP_A : FP_B, "matmul", SRC1, b,
                                   1000.0 / 3.0 * (i + 1));
        put_ok(c, &e, 0, 1);
    }
}

Test(cache, export_import_same_entries)
{
    qv_tune_cache *a = open_db("a.db", 0), *b = open_db("b.db", 0);
    fill(a, 5);
    char js[256], tmp[300];
    path_in(js, sizeof js, "out.json");
    size_t nw = 0, ns = 9, nk = 9;
    qv_err err = {0};
    cr_assert_eq(qv_tune_cache_export(a, js, &nw, &err), QV_OK, "%s", err.msg);
    cr_expect_eq(nw, 5);
    snprintf(tmp, sizeof tmp, "%s.tmp", js);
    cr_expect_neq(access(tmp, F_OK), 0);
    cr_assert_eq(qv_tune_cache_import(b, js, &ns, &nk, &err), QV_OK, "%s",
                 err.msg);
    cr_expect_eq(ns, 5);
    cr_expect_eq(nk, 0);
    qv_tune_entry *va = NULL, *vb = NULL;
    size_t na = 0, nb = 0;
    cr_assert_eq(qv_tune_cache_list(a, NULL, NULL, &va, &na, NULL), QV_OK);
    cr_assert_eq(qv_tune_cache_list(b, NULL, NULL, &vb, &nb, NULL), QV_OK);
    cr_assert_eq(na, 5);
    cr_assert_eq(nb, 5);
    for (size_t i = 0; i < na; i++)
        expect_entry_eq(&va[i], &vb[i]);
    free(va);
    free(vb);
    qv_tune_cache_destroy(&a);
    qv_tune_cache_destroy(&b);
}

Test(cache, import_never_overwrites_better_entry)
{
    qv_tune_cache *a = open_db("a.db", 0), *b = open_db("b.db", 0);
    fill(a, 3);
    qv_tune_entry *va = NULL;
    size_t na = 0;
    cr_assert_eq(qv_tune_cache_list(a, NULL, NULL, &va, &na, NULL), QV_OK);
    cr_assert_eq(na, 3);
    qv_tune_entry better = va[0], worse = va[1];
    better.median_ns = va[0].median_ns / 2;
    snprintf(better.config, sizeof better.config, "BETTER");
    worse.median_ns = va[1].median_ns * 2;
    put_ok(b, &better, 0, 1);
    put_ok(b, &worse, 0, 1);
    char js[256];
    path_in(js, sizeof js, "out.json");
    size_t ns = 0, nk = 0;
    qv_err err = {0};
    cr_assert_eq(qv_tune_cache_export(a, js, NULL, &err), QV_OK, "%s", err.msg);
    cr_assert_eq(qv_tune_cache_import(b, js, &ns, &nk, &err), QV_OK, "%s",
                 err.msg);
    cr_expect_eq(ns, 2);
    cr_expect_eq(nk, 1);
    qv_tune_entry got;
    cr_assert_eq(qv_tune_cache_get(b, &better.key, &got, NULL), QV_OK);
    expect_entry_eq(&got, &better);
    cr_assert_eq(qv_tune_cache_get(b, &worse.key, &got, NULL), QV_OK);
    expect_entry_eq(&got, &va[1]);
    free(va);
    qv_tune_cache_destroy(&a);
    qv_tune_cache_destroy(&b);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

#define GOOD_ENTRY(fp, med)                                                  \
    "{\"fingerprint\":\"" fp "\",\"kernel\":\"matmul\",\"src_hash\":\"" SRC1 \
    "\",\"bucket\":\"B\",\"config\":\"WG_X=4\",\"median_ns\":" med           \
    ",\"default_ns\":900.0,\"gflops\":12.5,\"evals\":10,\"failures\":1,"     \
    "\"strategy\":\"random\",\"created_at\":1700000000,\"version\":\"0.1.0\"," \
    "\"backend\":\"opencl\",\"vendor\":\"v\",\"device_name\":\"d\"}"
#define WRAP(entries) \
    "{\"format\":\"qvac-tune\",\"version\":1,\"entries\":[" entries "]}"

Test(cache, malformed_imports_rejected_whole)
{
    qv_tune_cache *c = open_db("t.db", 0);
    fill(c, 2);
    struct { const char *text, *needle; } cases[] = {
        {"this is { not json", "not JSON"},
        {"", "not JSON"},
        {"[1,2,3]", "qvac-tune"},
        {"{\"format\":\"other\",\"version\":1,\"entries\":[]}", "qvac-tune"},
        {"{\"format\":\"qvac-tune\",\"version\":2,\"entries\":[]}", "version"},
        {"{\"format\":\"qvac-tune\",\"version\":1}", "entries"},
        {WRAP(GOOD_ENTRY(FP_C, "100.0") ",{\"kernel\":\"k\"}"),
         "entry 2: field 'fingerprint' is missing"},
        {WRAP(GOOD_ENTRY(FP_C, "100.0") "," GOOD_ENTRY(FP_D, "-5")),
         "entry 2: field 'median_ns' must be a positive number"},
        {WRAP(GOOD_ENTRY(FP_C, "\"fast\"")), "entry 1: field 'median_ns'"},
        {WRAP(GOOD_ENTRY("0123456789abcdeX", "100.0")),
         "field 'fingerprint' must be 16 hex digits"},
        {WRAP(GOOD_ENTRY("0123456789abcdef0", "100.0")), "'fingerprint'"},
        {WRAP("{\"fingerprint\":\"" FP_C "\",\"kernel\":\"a_kernel_name_that_"
              "is_much_too_long_for_its_buffer\"}"), "field 'kernel' is too long"},
        {WRAP(GOOD_ENTRY(FP_C, "100.0") ",7"), "entry 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char js[256];
        path_in(js, sizeof js, "bad.json");
        write_file(js, cases[i].text, strlen(cases[i].text));
        size_t ns = 9, nk = 9;
        qv_err err = {0};
        cr_expect_eq(qv_tune_cache_import(c, js, &ns, &nk, &err),
                     QV_ERR_CORRUPT, "case %zu", i);
        cr_expect(strstr(err.msg, cases[i].needle) != NULL, "case %zu: %s", i,
                  err.msg);
        cr_expect(strstr(err.msg, js) != NULL, "case %zu: %s", i, err.msg);
        cr_expect_eq(ns, 0);
        cr_expect_eq(nk, 0);
        cr_expect_eq(count_entries(c), 2, "case %zu", i);
    }
    /* the good first entry of a bad file was not imported */
    qv_tune_key k = key_of(FP_C, "matmul", SRC1, "B");
    qv_tune_entry got;
    cr_expect_eq(qv_tune_cache_get(c, &k, &got, NULL), QV_ERR_NOT_FOUND);
    /* and the well-formed file is */
    char js[256];
    path_in(js, sizeof js, "good.json");
    const char *good = WRAP(GOOD_ENTRY(FP_C, "100") "," GOOD_ENTRY(FP_D, "7.5"));
    write_file(js, good, strlen(good));
    size_t ns = 0, nk = 0;
    qv_err err = {0};
    cr_assert_eq(qv_tune_cache_import(c, js, &ns, &nk, &err), QV_OK, "%s",
                 err.msg);
    cr_expect_eq(ns, 2);
    cr_assert_eq(qv_tune_cache_get(c, &k, &got, NULL), QV_OK);
    cr_expect_eq(got.median_ns, 100.0);
    cr_expect_eq(got.evals, 10);
    path_in(js, sizeof js, "missing.json");
    cr_expect_eq(qv_tune_cache_import(c, js, &ns, &nk, &err), QV_ERR_NOT_FOUND);
    qv_tune_cache_destroy(&c);
}

static size_t read_all(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

Test(cache, garbage_file_is_corrupt_and_untouched)
{
    char p[256];
    path_in(p, sizeof p, "garbage.db");
    static unsigned char junk[8192], back[16384];
    unsigned x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char)(x >> 16);
    }
    write_file(p, junk, sizeof junk);
    for (int ro = 0; ro < 2; ro++) {
        qv_tune_cache *c = (qv_tune_cache *)1;
        qv_err err = {0};
        cr_expect_eq(qv_tune_cache_open(p, ro, 100, &c, &err), QV_ERR_CORRUPT,
                     "%s", err.msg);
        cr_expect_null(c);
        cr_expect(strstr(err.msg, p) != NULL, "%s", err.msg);
        cr_expect(strstr(err.msg, "--db") != NULL, "%s", err.msg);
    }
    cr_expect_eq(read_all(p, back, sizeof back), sizeof junk);
    cr_expect_eq(memcmp(back, junk, sizeof junk), 0);
}

static void sql(sqlite3 *db, const char *q)
{
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, q, NULL, NULL, &msg), SQLITE_OK, "%s: %s", q,
                 msg ? msg : "");
}

Test(cache, other_programs_database_is_corrupt)
{
    char p[256];
    path_in(p, sizeof p, "other.db");
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    sql(db, "CREATE TABLE foo (x INTEGER); INSERT INTO foo VALUES (1);");
    sqlite3_close(db);
    qv_tune_cache *c = NULL;
    qv_err err = {0};
    cr_expect_eq(qv_tune_cache_open(p, 0, 100, &c, &err), QV_ERR_CORRUPT);
    cr_expect(strstr(err.msg, "not a qvac cache") != NULL, "%s", err.msg);
    path_in(p, sizeof p, "app.db");
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    sql(db, "PRAGMA application_id = 42");
    sqlite3_close(db);
    cr_expect_eq(qv_tune_cache_open(p, 0, 100, &c, &err), QV_ERR_CORRUPT);
    cr_expect_null(c);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

Test(cache, locked_database_gives_io_error_quickly)
{
    qv_tune_cache *c = open_db("t.db", 0);
    qv_tune_entry e = entry_of(FP_A, "k", SRC1, "b", 100.0);
    put_ok(c, &e, 0, 1);
    qv_tune_cache_destroy(&c);
    char p[256];
    path_in(p, sizeof p, "t.db");
    sqlite3 *other = NULL;
    cr_assert_eq(sqlite3_open(p, &other), SQLITE_OK);
    sql(other, "BEGIN EXCLUSIVE");
    qv_err err = {0};
    cr_assert_eq(qv_tune_cache_open(p, 0, 100, &c, &err), QV_OK, "%s", err.msg);
    qv_tune_entry better = entry_of(FP_A, "k", SRC1, "b", 50.0);
    int stored = 5;
    double t0 = now_s();
    cr_expect_eq(qv_tune_cache_put(c, &better, 0, &stored, &err), QV_ERR_IO);
    double dt = now_s() - t0;
    cr_expect(dt >= 0.05 && dt < 1.5, "took %.3f s", dt);
    cr_expect_eq(stored, 0);
    cr_expect(strstr(err.msg, "locked") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, p) != NULL, "%s", err.msg);
    qv_tune_key k = e.key;
    qv_tune_eval ev = eval_of("X=1", 1, 5.0, "");
    cr_expect_eq(qv_tune_cache_record_eval(c, &k, &ev, &err), QV_ERR_IO);
    /* readers still work (WAL) */
    qv_tune_entry got;
    cr_expect_eq(qv_tune_cache_get(c, &k, &got, &err), QV_OK, "%s", err.msg);
    cr_expect_eq(got.median_ns, 100.0);
    sql(other, "COMMIT");
    sqlite3_close(other);
    put_ok(c, &better, 0, 1);
    qv_tune_cache_destroy(&c);
}

Test(cache, read_only_open_reads_but_never_writes)
{
    qv_tune_cache *c = open_db("t.db", 0);
    qv_tune_entry e = entry_of(FP_A, "k", SRC1, "b", 100.0);
    put_ok(c, &e, 0, 1);
    char js[256];
    path_in(js, sizeof js, "x.json");
    cr_assert_eq(qv_tune_cache_export(c, js, NULL, NULL), QV_OK);
    qv_tune_cache_destroy(&c);
    c = open_db("t.db", 1);
    qv_tune_entry got;
    qv_err err = {0};
    cr_assert_eq(qv_tune_cache_get(c, &e.key, &got, &err), QV_OK, "%s", err.msg);
    expect_entry_eq(&got, &e);
    qv_tune_entry better = entry_of(FP_A, "k", SRC1, "b", 1.0);
    int stored = 3;
    cr_expect_eq(qv_tune_cache_put(c, &better, 1, &stored, &err), QV_ERR_IO);
    cr_expect_eq(stored, 0);
    cr_expect(strstr(err.msg, "read-only") != NULL, "%s", err.msg);
    qv_tune_eval ev = eval_of("X=1", 1, 5.0, "");
    cr_expect_eq(qv_tune_cache_record_eval(c, &e.key, &ev, &err), QV_ERR_IO);
    cr_expect_eq(qv_tune_cache_forget(c, &e.key, &err), QV_ERR_IO);
    size_t ns, nk;
    cr_expect_eq(qv_tune_cache_import(c, js, &ns, &nk, &err), QV_ERR_IO);
    cr_assert_eq(qv_tune_cache_get(c, &e.key, &got, &err), QV_OK);
    cr_expect_eq(got.median_ns, 100.0);
    qv_tune_cache_destroy(&c);
    /* read-only open of a missing file does not create it */
    char p[256];
    path_in(p, sizeof p, "missing.db");
    cr_expect_eq(qv_tune_cache_open(p, 1, 100, &c, &err), QV_ERR_NOT_FOUND);
    cr_expect_null(c);
    cr_expect_neq(access(p, F_OK), 0);
}

Test(cache, unwritable_location_is_a_clear_error)
{
    qv_tune_cache *c = (qv_tune_cache *)1;
    qv_err err = {0};
    qv_status s = qv_tune_cache_open("/proc/qvac/x.db", 0, 100, &c, &err);
    cr_expect_eq(s, QV_ERR_IO, "%s", err.msg);
    cr_expect_null(c);
    cr_expect(strstr(err.msg, "/proc/qvac") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "--db") != NULL, "%s", err.msg);
    s = qv_tune_cache_open("/proc/x.db", 0, 100, &c, &err);
    cr_expect_eq(s, QV_ERR_IO, "%s", err.msg);
    cr_expect_null(c);
    cr_expect_eq(qv_tune_cache_open("", 0, 100, &c, &err), QV_ERR_INVALID);
    /* export to a folder that does not exist */
    c = open_db("t.db", 0);
    cr_expect_eq(qv_tune_cache_export(c, "/proc/qvac/x.json", NULL, &err),
                 QV_ERR_IO);
    cr_expect(strstr(err.msg, "/proc/qvac/x.json") != NULL, "%s", err.msg);
    qv_tune_cache_destroy(&c);
}

Test(cache, default_path_from_environment)
{
    char buf[256];
    qv_err err = {0};
    setenv("XDG_DATA_HOME", "/xdg/data", 1);
    setenv("HOME", "/home/u", 1);
    cr_assert_eq(qv_tune_cache_default_path(buf, sizeof buf, &err), QV_OK);
    cr_expect_str_eq(buf, "/xdg/data/qvac/tune.db");
    unsetenv("XDG_DATA_HOME");
    cr_assert_eq(qv_tune_cache_default_path(buf, sizeof buf, &err), QV_OK);
    cr_expect_str_eq(buf, "/home/u/.local/share/qvac/tune.db");
    cr_expect_eq(qv_tune_cache_default_path(buf, 8, &err), QV_ERR_INVALID);
    cr_expect_str_eq(buf, "");
    unsetenv("HOME");
    cr_expect_neq(qv_tune_cache_default_path(buf, sizeof buf, &err), QV_OK);
    cr_expect(strstr(err.msg, "HOME") != NULL, "%s", err.msg);
}
