/* autotune/search.c — see search.h. */
#include "autotune/search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/verify.h" /* qv_rng */

const char *const qv_strategies[] = {"exhaustive", "random", "anneal",
                                     "greedy", NULL};

typedef struct space_build {
    qv_space *s;
    size_t cap;
    qv_status st;
} space_build;

static int add_config(const qv_config *c, void *user)
{
    space_build *b = user;
    qv_space *s = b->s;
    if (s->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        qv_config *cfg = realloc(s->cfg, cap * sizeof *cfg);
        if (cfg)
            s->cfg = cfg;
        uint8_t(*vi)[QV_MAX_PARAMS] = realloc(s->vi, cap * sizeof *vi);
        if (vi)
            s->vi = vi;
        if (!cfg || !vi) {
            b->st = QV_ERR_NOMEM;
            return 1;
        }
        b->cap = cap;
    }
    s->cfg[s->n] = *c;
    for (int p = 0; p < s->k->n_params; p++)
        for (int v = 0; v < s->k->params[p].n_values; v++)
            if (s->k->params[p].values[v] == c->v[p])
                s->vi[s->n][p] = (uint8_t)v;
    s->n++;
    return 0;
}

qv_status qv_space_new(const qv_kernel_decl *k, const qv_limits *lim,
                       qv_space **out, qv_err *err)
{
    *out = NULL;
    qv_space *s = calloc(1, sizeof *s);
    if (!s)
        return qv_fail(err, QV_ERR_NOMEM, "autotune: out of host memory");
    s->k = k;
    space_build b = {s, 0, QV_OK};
    qv_kernel_foreach_config(k, lim, add_config, &b);
    if (b.st) {
        qv_space_destroy(&s);
        return qv_fail(err, QV_ERR_NOMEM, "autotune: out of host memory");
    }
    if (s->n == 0) {
        qv_space_destroy(&s);
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "%s: no configuration fits this device's limits",
                       k->name);
    }
    *out = s;
    return QV_OK;
}

void qv_space_destroy(qv_space **ps)
{
    if (!ps || !*ps)
        return;
    free((*ps)->cfg);
    free((*ps)->vi);
    free(*ps);
    *ps = NULL;
}

long qv_space_find(const qv_space *s, const qv_config *c)
{
    for (size_t i = 0; i < s->n; i++)
        if (memcmp(s->cfg[i].v, c->v, sizeof(int) * (size_t)s->k->n_params) == 0)
            return (long)i;
    return -1;
}

size_t qv_space_neighbours(const qv_space *s, size_t i, size_t *out,
                           size_t cap)
{
    size_t n = 0;
    int np = s->k->n_params;
    for (size_t j = 0; j < s->n && n < cap; j++) {
        int diff = 0, step_ok = 1;
        for (int p = 0; p < np && diff <= 1; p++) {
            int d = (int)s->vi[j][p] - (int)s->vi[i][p];
            if (d) {
                diff++;
                step_ok = d == 1 || d == -1;
            }
        }
        if (diff == 1 && step_ok)
            out[n++] = j;
    }
    return n;
}

/* ---- the driver shared by all strategies -------------------------------- */

typedef struct run {
    const qv_space *s;
    const qv_search_opts *o;
    qv_cost_fn cost;
    void *user;
    double *c;        /* (n) memoised costs, NAN = unknown */
    size_t evals, failures;
    long best;
    int stop;
    struct timespec t0;
    qv_rng rng;
} run;

static double elapsed_s(const run *r)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - r->t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - r->t0.tv_nsec);
}

static int budget_left(const run *r)
{
    if (r->stop)
        return 0;
    if (r->o->budget_evals && r->evals >= r->o->budget_evals)
        return 0;
    if (r->o->budget_s > 0 && elapsed_s(r) >= r->o->budget_s)
        return 0;
    return r->evals < r->s->n;
}

/* Cost of i, measuring it if unknown and the budget allows; NAN if not. */
static double eval(run *r, size_t i)
{
    if (!isnan(r->c[i]))
        return r->c[i];
    if (!budget_left(r))
        return NAN;
    double v = r->cost(r->user, i);
    if (isnan(v)) {
        r->stop = 1;
        return NAN;
    }
    r->c[i] = v;
    r->evals++;
    if (isinf(v))
        r->failures++;
    else if (r->best < 0 || v < r->c[r->best])
        r->best = (long)i;
    if (r->o->progress &&
        r->o->progress(r->o->progress_user, r->evals, r->o->budget_evals,
                       r->best >= 0 ? r->c[r->best] : INFINITY))
        r->stop = 1;
    return v;
}

static size_t rand_below(run *r, size_t n) { return (size_t)(qv_rng_next(&r->rng) % n); }

static long random_unknown(run *r)
{
    size_t unknown = 0;
    for (size_t i = 0; i < r->s->n; i++)
        unknown += isnan(r->c[i]) ? 1 : 0;
    if (!unknown)
        return -1;
    size_t pick = rand_below(r, unknown);
    for (size_t i = 0; i < r->s->n; i++)
        if (isnan(r->c[i]) && pick-- == 0)
            return (long)i;
    return -1;
}

static void strat_exhaustive(run *r)
{
    for (size_t i = 0; i < r->s->n && budget_left(r); i++)
        eval(r, i);
}

static void strat_random(run *r)
{
    long i;
    while (budget_left(r) && (i = random_unknown(r)) >= 0)
        eval(r, (size_t)i);
}

static void strat_greedy(run *r, size_t *nb)
{
    size_t n = r->s->n;
    char *expanded = calloc(n, 1);
    if (!expanded)
    {
        strat_random(r);
        return;
    }
    while (budget_left(r)) {
        /* the best measured point whose neighbourhood is not done yet */
        long pick = -1;
        for (size_t i = 0; i < n; i++)
            if (!isnan(r->c[i]) && !isinf(r->c[i]) && !expanded[i] &&
                (pick < 0 || r->c[i] < r->c[pick]))
                pick = (long)i;
        if (pick < 0) {
            long j = random_unknown(r);
            if (j < 0)
                break;
            eval(r, (size_t)j);
            continue;
        }
        size_t k = qv_space_neighbours(r->s, (size_t)pick, nb, n);
        /* visit the neighbours in a random order; stop early when one
         * improves on the point, and move there */
        for (size_t a = k; a > 1; a--) {
            size_t b = rand_below(r, a), t = nb[a - 1];
            nb[a - 1] = nb[b];
            nb[b] = t;
        }
        int moved = 0;
        for (size_t a = 0; a < k && budget_left(r); a++) {
            if (!isnan(r->c[nb[a]]))
                continue;
            double v = eval(r, nb[a]);
            if (!isnan(v) && v < r->c[pick]) {
                moved = 1;
                break;
            }
        }
        if (!moved)
            expanded[pick] = 1;
    }
    free(expanded);
}

static void strat_anneal(run *r, size_t *nb)
{
    long cur = r->best >= 0 ? r->best : random_unknown(r);
    if (cur < 0)
        return;
    if (isnan(eval(r, (size_t)cur)))
        return;
    double T = 0.3; /* in log(cost) units: accepts 30% worse early on */
    size_t steps = 0, cap = 50 * (r->o->budget_evals ? r->o->budget_evals : r->s->n);
    while (budget_left(r) && steps++ < cap) {
        size_t k = qv_space_neighbours(r->s, (size_t)cur, nb, r->s->n);
        size_t unknown = 0;
        for (size_t a = 0; a < k; a++)
            unknown += isnan(r->c[nb[a]]) ? 1 : 0;
        long next;
        if (k == 0 || (unknown == 0 && rand_below(r, 4) == 0))
            next = random_unknown(r); /* restart */
        else
            next = (long)nb[rand_below(r, k)];
        if (next < 0)
            break;
        double vc = r->c[cur], vn = eval(r, (size_t)next);
        if (isnan(vn))
            break;
        double d = isinf(vn) ? INFINITY : log(vn) - (isinf(vc) ? log(vn) + 1 : log(vc));
        double u = (double)(qv_rng_next(&r->rng) >> 11) * (1.0 / 9007199254740992.0);
        if (d <= 0 || u < exp(-d / T))
            cur = next;
        T *= 0.97;
        if (T < 0.01)
            T = 0.01;
    }
}

qv_status qv_search_run(const qv_space *s, const qv_search_opts *o,
                        qv_cost_fn cost, void *user, qv_search_result *res,
                        qv_err *err)
{
    memset(res, 0, sizeof *res);
    res->best = -1;
    const char *name = o->strategy ? o->strategy : QV_DEFAULT_STRATEGY;
    int which = -1;
    for (int i = 0; qv_strategies[i]; i++)
        if (!strcmp(name, qv_strategies[i]))
            which = i;
    if (which < 0)
        return qv_fail(err, QV_ERR_INVALID,
                       "autotune: no strategy named '%s' (exhaustive, random, "
                       "anneal, greedy)", name);
    run r = {.s = s, .o = o, .cost = cost, .user = user, .best = -1};
    r.rng.s = o->seed ^ 0x5eedull;
    clock_gettime(CLOCK_MONOTONIC, &r.t0);
    r.c = malloc(s->n * sizeof *r.c);
    size_t *nb = malloc(s->n * sizeof *nb);
    if (!r.c || !nb) {
        free(r.c);
        free(nb);
        return qv_fail(err, QV_ERR_NOMEM, "autotune: out of host memory");
    }
    for (size_t i = 0; i < s->n; i++) {
        r.c[i] = o->known ? o->known[i] : NAN;
        if (!isnan(r.c[i])) {
            r.evals++;
            if (isinf(r.c[i]))
                r.failures++;
            else if (r.best < 0 || r.c[i] < r.c[r.best])
                r.best = (long)i;
        }
    }
    for (size_t i = 0; i < o->n_start && !r.stop; i++)
        if (o->start[i] < s->n)
            eval(&r, o->start[i]);
    switch (which) {
    case 0: strat_exhaustive(&r); break;
    case 1: strat_random(&r); break;
    case 2: strat_anneal(&r, nb); break;
    default: strat_greedy(&r, nb); break;
    }
    res->best = r.best;
    res->best_cost = r.best >= 0 ? r.c[r.best] : INFINITY;
    res->evals = r.evals;
    res->failures = r.failures;
    res->interrupted = r.stop;
    free(r.c);
    free(nb);
    return QV_OK;
}
