/* tests/fuzz/fuzz_tune_import.c — libFuzzer target for the autotune cache's
 * JSON import: arbitrary bytes must never crash it; a rejected file must
 * leave the database empty; an accepted one must hold only valid entries
 * that survive export and re-import into a second database unchanged.
 * Two databases in a temporary folder are created once and emptied after
 * every input (qv_tune_cache_forget). */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autotune/cache.h"

static char dir[64], in_path[128], out_path[128];
static qv_tune_cache *db_a, *db_b;

static void cleanup(void)
{
    char p[160];
    qv_tune_cache_destroy(&db_a);
    qv_tune_cache_destroy(&db_b);
    const char *names[] = {"a.db", "a.db-wal", "a.db-shm", "b.db", "b.db-wal",
                           "b.db-shm", "in.json", "out.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void setup_once(void)
{
    char p[160];
    snprintf(dir, sizeof dir, "/tmp/qvac_fuzz_XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(in_path, sizeof in_path, "%s/in.json", dir);
    snprintf(out_path, sizeof out_path, "%s/out.json", dir);
    snprintf(p, sizeof p, "%s/a.db", dir);
    if (qv_tune_cache_open(p, 0, 1000, &db_a, NULL) != QV_OK)
        abort();
    snprintf(p, sizeof p, "%s/b.db", dir);
    if (qv_tune_cache_open(p, 0, 1000, &db_b, NULL) != QV_OK)
        abort();
    atexit(cleanup);
}

/* Lists every entry; aborts on error. */
static qv_tune_entry *all(qv_tune_cache *c, size_t *n)
{
    qv_tune_entry *v = NULL;
    if (qv_tune_cache_list(c, NULL, NULL, &v, n, NULL) != QV_OK)
        abort();
    return v;
}

static void empty(qv_tune_cache *c)
{
    size_t n = 0;
    qv_tune_entry *v = all(c, &n);
    for (size_t i = 0; i < n; i++)
        if (qv_tune_cache_forget(c, &v[i].key, NULL) != QV_OK)
            abort();
    free(v);
}

static int same(const qv_tune_entry *x, const qv_tune_entry *y)
{
    return memcmp(&x->key, &y->key, sizeof x->key) == 0 &&
           strcmp(x->config, y->config) == 0 && x->median_ns == y->median_ns &&
           x->default_ns == y->default_ns && x->gflops == y->gflops &&
           x->evals == y->evals && x->failures == y->failures &&
           strcmp(x->strategy, y->strategy) == 0 &&
           x->created_at == y->created_at &&
           strcmp(x->version, y->version) == 0 &&
           strcmp(x->backend, y->backend) == 0 &&
           strcmp(x->vendor, y->vendor) == 0 &&
           strcmp(x->device_name, y->device_name) == 0;
}

static void check_round_trip(void)
{
    size_t na = 0, nb = 0, nw = 0, ns = 0, nk = 0;
    qv_tune_entry *va = all(db_a, &na);
    for (size_t i = 0; i < na; i++)
        if (!isfinite(va[i].median_ns) || va[i].median_ns <= 0 ||
            va[i].evals < 1 || va[i].failures < 0 ||
            strlen(va[i].key.fingerprint) != 16)
            abort();
    if (qv_tune_cache_export(db_a, out_path, &nw, NULL) != QV_OK || nw != na)
        abort();
    if (qv_tune_cache_import(db_b, out_path, &ns, &nk, NULL) != QV_OK ||
        ns != na || nk != 0)
        abort();
    qv_tune_entry *vb = all(db_b, &nb);
    if (nb != na)
        abort();
    for (size_t i = 0; i < na; i++)
        if (!same(&va[i], &vb[i]))
            abort();
    free(va);
    free(vb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db_a)
        setup_once();
    FILE *f = fopen(in_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    size_t ns = 0, nk = 0, n = 0;
    qv_err err;
    qv_status s = qv_tune_cache_import(db_a, in_path, &ns, &nk, &err);
    if (s == QV_OK) {
        check_round_trip();
    } else {
        if (s != QV_ERR_CORRUPT || ns != 0 || nk != 0 || !err.msg[0])
            abort();
        free(all(db_a, &n));
        if (n != 0) /* nothing imported from a rejected file */
            abort();
    }
    empty(db_a);
    empty(db_b);
    return 0;
}
