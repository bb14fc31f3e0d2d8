/* tests/test_autotune.c — the autotuner: the search space fits the device,
 * every strategy finds a planted optimum, a wrong kernel variant is never
 * picked, an interrupted search resumes without measuring again, and the
 * run-time lookup returns the nearest tuned bucket or the default. */
#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autotune/tune.h"

static qv_devlist *devs;
static char dir[64];

static void setup(void)
{
    qv_err e;
    cr_assert_eq(qv_devlist_open(&devs, &e), QV_OK, "%s", e.msg);
    strcpy(dir, "/tmp/qvac-autotune-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    qv_devlist_destroy(&devs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(autotune, .init = setup, .fini = teardown, .timeout = 600);

/* ---- the space fits the device ------------------------------------------ */

static long pick_max(const qv_space *s, int by_local)
{
    long best = 0;
    if (by_local && !s->k->local_bytes)
        by_local = 0; /* no local memory: the largest group instead */
    for (size_t i = 1; i < s->n; i++) {
        uint64_t a = by_local ? s->k->local_bytes(&s->cfg[i])
                              : (uint64_t)s->cfg[i].v[0] * s->cfg[i].v[1];
        uint64_t b = by_local ? s->k->local_bytes(&s->cfg[best])
                              : (uint64_t)s->cfg[best].v[0] * s->cfg[best].v[1];
        if (a > b)
            best = (long)i;
    }
    return best;
}

Test(autotune, filtered_configurations_launch_on_every_device)
{
    qv_device *ref = qv_devlist_find(devs, "ref");
    for (size_t d = 0; d < devs->n; d++) {
        qv_device *dev = devs->dev[d];
        for (int ki = 0; qv_kernels[ki]; ki++) {
            const qv_kernel_decl *k = qv_kernels[ki];
            qv_space *s = NULL;
            qv_err e;
            cr_assert_eq(qv_space_new(k, &dev->info.limits, &s, &e), QV_OK, "%s", e.msg);
            /* the extremes (most local memory, largest group) and a few
             * random ones must all be accepted and right */
            long pick[4] = {pick_max(s, 1), pick_max(s, 0),
                            (long)(s->n / 3), (long)(s->n * 2 / 3)};
            for (int p = 0; p < 4; p++) {
                qv_verify_result r;
                qv_shape sh = {7, 33, 70, 5};
                qv_status st = qv_verify(dev, ref, k, &s->cfg[pick[p]], sh, 3, &r, &e);
                char txt[160];
                qv_config_format(k, &s->cfg[pick[p]], txt, sizeof txt);
                cr_expect_eq(st, QV_OK, "%s %s [%s]: %s", dev->info.id, k->name, txt, e.msg);
                cr_expect(r.pass, "%s %s [%s]: off by %g", dev->info.id, k->name, txt, r.max_err);
            }
            qv_space_destroy(&s);
        }
    }
}

Test(autotune, space_neighbours_differ_in_one_step)
{
    const qv_kernel_decl *k = qv_kernel_find("ternary_matmul");
    qv_space *s = NULL;
    cr_assert_eq(qv_space_new(k, NULL, &s, NULL), QV_OK);
    cr_expect_eq(s->n, 540u);
    size_t nb[540];
    qv_config def;
    qv_kernel_default_config(k, &def);
    long i = qv_space_find(s, &def);
    cr_assert(i >= 0);
    size_t n = qv_space_neighbours(s, (size_t)i, nb, 540);
    /* default WG_X=16,WG_Y=1,TX=4,TY=4,LOCAL=0,KT=1: WG_X 8|32, WG_Y 2,
     * TX 2|8, TY 2|8, LOCAL 1 (KT stays 1) = 8 neighbours */
    cr_expect_eq(n, 8u);
    for (size_t j = 0; j < n; j++) {
        int diff = 0;
        for (int p = 0; p < k->n_params; p++)
            diff += s->cfg[nb[j]].v[p] != def.v[p];
        cr_expect_eq(diff, 1);
    }
    qv_space_destroy(&s);
}

/* ---- strategies on a synthetic cost with a known optimum --------------- */

typedef struct synth {
    const qv_space *s;
    size_t calls;
} synth;

/* A smooth bowl over the value indices with its minimum at a planted
 * point (WG_X=32, WG_Y=2, TX=4, TY=2, LOCAL=1, KT=4), plus a ridge of
 * failures (TX=1 with TY=4) that strategies must step around. */
static double synth_cost(void *user, size_t i)
{
    synth *y = user;
    y->calls++;
    const uint8_t *v = y->s->vi[i];
    static const int opt[6] = {2, 1, 2, 1, 1, 1};
    if (v[2] == 0 && v[3] == 2)
        return INFINITY;
    double c = 1.0;
    for (int p = 0; p < 6; p++)
        c += (double)((v[p] - opt[p]) * (v[p] - opt[p]));
    return c;
}

Test(autotune, every_strategy_finds_the_planted_optimum)
{
    const qv_kernel_decl *k = qv_kernel_find("f16_matmul");
    qv_space *s = NULL;
    cr_assert_eq(qv_space_new(k, NULL, &s, NULL), QV_OK);
    qv_config want;
    cr_assert_eq(qv_config_parse(k, "WG_X=32,WG_Y=2,TX=4,TY=2,LOCAL=1,KT=4", &want, NULL), QV_OK);
    long target = qv_space_find(s, &want);
    cr_assert(target >= 0);
    qv_config def;
    qv_kernel_default_config(k, &def);
    size_t start = (size_t)qv_space_find(s, &def);
    struct { const char *name; size_t budget; } cases[] = {
        {"exhaustive", 0}, {"random", 297}, {"greedy", 45}, {"anneal", 120},
    };
    for (size_t c = 0; c < 4; c++) {
        synth y = {s, 0};
        qv_search_opts o = {.strategy = cases[c].name, .budget_evals = cases[c].budget,
                            .seed = 7, .start = &start, .n_start = 1};
        qv_search_result r;
        cr_assert_eq(qv_search_run(s, &o, synth_cost, &y, &r, NULL), QV_OK);
        cr_expect_eq(r.best, target, "%s found %ld, want %ld", cases[c].name, r.best, target);
        cr_expect_float_eq(r.best_cost, 1.0, 1e-12);
        cr_expect_eq(y.calls, r.evals, "%s measured a configuration twice", cases[c].name);
        if (cases[c].budget)
            cr_expect(r.evals <= cases[c].budget, "%s: %zu evals", cases[c].name, r.evals);
        else
            cr_expect_eq(r.evals, s->n);
        cr_expect(r.failures > 0 || strcmp(cases[c].name, "exhaustive"),
                  "exhaustive must meet the failure ridge");
    }
    qv_search_result r;
    qv_search_opts bad = {.strategy = "nope"};
    qv_err e;
    cr_expect_eq(qv_search_run(s, &bad, synth_cost, NULL, &r, &e), QV_ERR_INVALID);
    qv_space_destroy(&s);
}

/* ---- a wrong variant is never picked ------------------------------------ */

static const qv_backend_iface *ref_iface;
static size_t launches;
static int liar_breaks_default; /* corrupt the default config instead of TX=4 */

/* The reference, except that configurations with TX=4 corrupt Y and
 * every launch is counted. */
static qv_status liar_launch(qv_device *dev, const qv_kernel_decl *k,
                             const qv_config *c, const qv_arg *args,
                             uint64_t *ns, qv_err *err)
{
    launches++;
    qv_status s = ref_iface->launch(dev, k, c, args, ns, err);
    qv_config def;
    qv_kernel_default_config(k, &def);
    int bad = liar_breaks_default ? !memcmp(c, &def, sizeof def) : c->v[2] == 4;
    if (!s && bad && !strcmp(k->name, "ternary_matmul")) {
        float v = 0;
        qv_buffer_read(args[3].u.buf, 0, &v, 4, NULL);
        v = v * 1.5f + 1.0f;
        qv_buffer_write(args[3].u.buf, 0, &v, 4, NULL);
    }
    return s;
}

static qv_device *make_liar(qv_device *ref, qv_backend_iface *iface)
{
    ref_iface = ref->iface;
    *iface = *ref->iface;
    iface->launch = liar_launch;
    qv_device *d = calloc(1, sizeof *d);
    *d = *ref;
    d->iface = iface;
    d->cur_bytes = d->peak_bytes = 0;
    strcpy(d->info.id, "liar");
    strcpy(d->info.fingerprint, "00000000000000aa");
    return d;
}

static const qv_timing_opts quick = {0, 1, 1, 0, 5e9};

Test(autotune, a_wrong_variant_is_rejected)
{
    qv_backend_iface iface;
    qv_device *ref = qv_devlist_find(devs, "ref");
    qv_device *liar = make_liar(ref, &iface);
    char db[128];
    snprintf(db, sizeof db, "%s/t.db", dir);
    qv_tune_cache *cache = NULL;
    qv_err e;
    cr_assert_eq(qv_tune_cache_open(db, 0, 1000, &cache, &e), QV_OK, "%s", e.msg);
    const qv_kernel_decl *k = qv_kernel_find("ternary_matmul");
    qv_tune_opts o = {.strategy = "exhaustive", .timing = &quick};
    qv_tune_entry ent;
    int cached, intr;
    qv_shape sh = {16, 48, 64, 1};
    cr_assert_eq(qv_tune_kernel(cache, liar, ref, k, sh, &o, &ent, &cached, &intr, &e),
                 QV_OK, "%s", e.msg);
    qv_config best;
    cr_assert_eq(qv_config_parse(k, ent.config, &best, NULL), QV_OK);
    cr_expect_neq(best.v[2], 4, "picked a corrupting configuration: %s", ent.config);
    /* TX=4 configurations: 3 WG_X x 3 WG_Y x (TY 1,2,4,8) x 3 (LOCAL,KT) =
     * 108 of 3 x 3 x (TX 1,2,4,8,16 x TY 1,2,4,8) x 3 = 540 */
    cr_expect_eq(ent.failures, 108);
    cr_expect_eq(ent.evals, 540);
    qv_tune_eval *ev = NULL;
    size_t n = 0;
    cr_assert_eq(qv_tune_cache_load_evals(cache, &ent.key, &ev, &n, NULL), QV_OK);
    cr_expect_eq(n, 540u);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!ev[i].ok) {
            bad++;
            cr_expect(strstr(ev[i].reason, "verify: Y off by") != NULL, "%s", ev[i].reason);
        }
    cr_expect_eq(bad, 108u);
    free(ev);
    qv_tune_cache_destroy(&cache);
    free(liar);
}

/* ---- interruption and resume -------------------------------------------- */

static int stop_after(void *user, const qv_tune_progress *p)
{
    volatile sig_atomic_t *stop = user;
    if (p->evals >= 5)
        *stop = 1;
    return 0;
}

Test(autotune, an_interrupted_search_resumes_without_measuring_again)
{
    qv_backend_iface iface;
    qv_device *ref = qv_devlist_find(devs, "ref");
    qv_device *dev = make_liar(ref, &iface);
    char db[128];
    snprintf(db, sizeof db, "%s/r.db", dir);
    qv_tune_cache *cache = NULL;
    cr_assert_eq(qv_tune_cache_open(db, 0, 1000, &cache, NULL), QV_OK);
    const qv_kernel_decl *k = qv_kernel_find("f16_matmul");
    volatile sig_atomic_t stop = 0;
    qv_tune_opts o = {.strategy = "random", .budget_evals = 12, .seed = 3,
                      .timing = &quick, .progress = stop_after,
                      .progress_user = (void *)&stop, .stop = &stop};
    qv_tune_entry ent;
    int cached, intr;
    qv_shape sh = {16, 48, 64, 1};
    cr_assert_eq(qv_tune_kernel(cache, dev, ref, k, sh, &o, &ent, &cached, &intr, NULL), QV_OK);
    cr_expect_eq(intr, 1);
    qv_tune_entry none;
    cr_expect_eq(qv_tune_cache_get(cache, &ent.key, &none, NULL), QV_ERR_NOT_FOUND);
    qv_tune_cache_destroy(&cache); /* as if the process had died */

    cr_assert_eq(qv_tune_cache_open(db, 0, 1000, &cache, NULL), QV_OK);
    qv_tune_eval *ev = NULL;
    size_t n = 0;
    cr_assert_eq(qv_tune_cache_load_evals(cache, &ent.key, &ev, &n, NULL), QV_OK);
    free(ev);
    cr_expect(n >= 5 && n <= 6, "%zu evaluations saved", n);
    stop = 0;
    o.progress = NULL;
    launches = 0;
    cr_assert_eq(qv_tune_kernel(cache, dev, ref, k, sh, &o, &ent, &cached, &intr, NULL), QV_OK);
    cr_expect_eq(intr, 0);
    cr_expect_eq(ent.evals, 12);
    /* only the missing ones were measured: each costs one verify launch
     * and one timed launch */
    cr_expect_eq(launches, 2 * (12 - n), "%zu launches for %zu new configurations",
                 launches, 12 - n);
    /* and now the cache answers */
    launches = 0;
    cr_assert_eq(qv_tune_kernel(cache, dev, ref, k, sh, &o, &ent, &cached, &intr, NULL), QV_OK);
    cr_expect_eq(cached, 1);
    cr_expect_eq(launches, 0u);
    qv_tune_cache_destroy(&cache);
    free(dev);
}

/* ---- run-time lookup ----------------------------------------------------- */

Test(autotune, lookup_picks_the_nearest_bucket_or_the_default)
{
    qv_device *ref = qv_devlist_find(devs, "ref");
    const qv_kernel_decl *k = qv_kernel_find("ternary_matmul");
    qv_config c, def;
    qv_kernel_default_config(k, &def);
    int tuned = -1;
    qv_shape sh = {1, 2048, 2048, 0};
    cr_assert_eq(qv_tune_lookup(NULL, ref, k, sh, &c, &tuned, NULL), QV_OK);
    cr_expect_eq(tuned, 0);
    cr_expect_eq(memcmp(&c, &def, sizeof c), 0);

    char db[128];
    snprintf(db, sizeof db, "%s/l.db", dir);
    qv_tune_cache *cache = NULL;
    cr_assert_eq(qv_tune_cache_open(db, 0, 1000, &cache, NULL), QV_OK);
    cr_assert_eq(qv_tune_lookup(cache, ref, k, sh, &c, &tuned, NULL), QV_OK);
    cr_expect_eq(tuned, 0, "an empty cache gives the default");
    const char *cfgs[2] = {"WG_X=8,TX=2", "WG_X=32,WG_Y=4,TY=4"};
    qv_shape at[2] = {{1, 2048, 2048, 1}, {256, 2048, 2048, 1}};
    for (int i = 0; i < 2; i++) {
        qv_tune_entry e;
        memset(&e, 0, sizeof e);
        strcpy(e.key.fingerprint, ref->info.fingerprint);
        strcpy(e.key.kernel, k->name);
        cr_assert_eq(qv_kernel_source_hash(ref, k, e.key.src_hash, NULL), QV_OK);
        qv_tune_bucket(k, at[i], e.key.bucket, sizeof e.key.bucket, NULL);
        qv_config x;
        qv_config_parse(k, cfgs[i], &x, NULL);
        qv_config_format(k, &x, e.config, sizeof e.config);
        e.median_ns = 1000;
        e.default_ns = 2000;
        e.gflops = 1;
        e.evals = 1;
        strcpy(e.strategy, "greedy");
        strcpy(e.backend, "ref");
        strcpy(e.vendor, "qvac");
        int stored = 0;
        cr_assert_eq(qv_tune_cache_put(cache, &e, 0, &stored, NULL), QV_OK);
    }
    qv_shape ask[3] = {{1, 2048, 2048, 0}, {300, 2048, 2048, 0}, {512, 1024, 4096, 0}};
    int want[3] = {0, 1, 1};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(qv_tune_lookup(cache, ref, k, ask[i], &c, &tuned, NULL), QV_OK);
        cr_expect_eq(tuned, 1);
        qv_config x;
        qv_config_parse(k, cfgs[want[i]], &x, NULL);
        cr_expect_eq(memcmp(&c, &x, sizeof c), 0, "shape %d picked the wrong bucket", i);
    }
    /* another kernel (nothing cached for it) still gets its default */
    const qv_kernel_decl *k2 = qv_kernel_find("f16_matmul");
    cr_assert_eq(qv_tune_lookup(cache, ref, k2, sh, &c, &tuned, NULL), QV_OK);
    cr_expect_eq(tuned, 0);
    qv_tune_cache_destroy(&cache);
}

Test(autotune, a_failing_default_still_stores_the_best)
{
    qv_backend_iface iface;
    qv_device *ref = qv_devlist_find(devs, "ref");
    qv_device *liar = make_liar(ref, &iface);
    liar_breaks_default = 1;
    char db[128];
    snprintf(db, sizeof db, "%s/d.db", dir);
    qv_tune_cache *cache = NULL;
    cr_assert_eq(qv_tune_cache_open(db, 0, 1000, &cache, NULL), QV_OK);
    qv_tune_opts o = {.strategy = "greedy", .budget_evals = 10, .seed = 1, .timing = &quick};
    qv_tune_entry ent;
    int cached, intr;
    qv_err e;
    qv_shape sh = {16, 48, 64, 1};
    cr_assert_eq(qv_tune_kernel(cache, liar, ref, qv_kernel_find("ternary_matmul"), sh,
                                &o, &ent, &cached, &intr, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(ent.default_ns, 0.0, "the failed default has no time");
    cr_expect(ent.failures >= 1);
    cr_expect(ent.median_ns > 0);
    qv_tune_entry back;
    cr_assert_eq(qv_tune_cache_get(cache, &ent.key, &back, NULL), QV_OK);
    cr_expect_str_eq(back.config, ent.config);
    liar_breaks_default = 0;
    qv_tune_cache_destroy(&cache);
    free(liar);
}
