/* autotune/search.h — search strategies over a kernel's configuration
 * space. Knows nothing of devices: a strategy asks a cost function for the
 * cost of configuration i (lower is better; INFINITY = the candidate failed)
 * and never asks twice for the same i (costs are memoised here).
 *
 * Strategies:
 *   exhaustive  every legal configuration, in enumeration order
 *   random      a seeded random order, until the budget is spent
 *   anneal      simulated annealing over the neighbour graph
 *   greedy      from the start points, repeatedly measure the unmeasured
 *               neighbours of the best configurations found so far;
 *               a random unmeasured point when every neighbour is known
 * Two configurations are neighbours when they differ in one parameter by
 * one step of its value list. */
#ifndef QV_AUTOTUNE_SEARCH_H
#define QV_AUTOTUNE_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "kernels/kernel.h"

typedef struct qv_space {
    const qv_kernel_decl *k;
    size_t n;                       /* legal configurations */
    qv_config *cfg;                 /* (n) */
    uint8_t (*vi)[QV_MAX_PARAMS];   /* (n, n_params) value index per param */
} qv_space;

/* Every configuration of k legal under lim (NULL: no device limits). */
qv_status qv_space_new(const qv_kernel_decl *k, const qv_limits *lim,
                       qv_space **out, qv_err *err);
void qv_space_destroy(qv_space **s);
/* Index of c in the space, or -1. */
long qv_space_find(const qv_space *s, const qv_config *c);
/* Writes up to cap neighbour indices of i; returns how many. */
size_t qv_space_neighbours(const qv_space *s, size_t i, size_t *out,
                           size_t cap);

/* Cost of configuration idx; INFINITY for a failed candidate; NAN to stop
 * the search (interrupted). */
typedef double (*qv_cost_fn)(void *user, size_t idx);

typedef struct qv_search_opts {
    const char *strategy;  /* see above; NULL = QV_DEFAULT_STRATEGY */
    size_t budget_evals;   /* distinct configurations; 0 = no limit */
    double budget_s;       /* wall seconds; 0 = no limit */
    uint64_t seed;
    const size_t *start;   /* start points (the default config, seeds from
                              similar devices), measured first */
    size_t n_start;
    const double *known;   /* (n) costs already measured (resume), NAN =
                              unknown; they count as evaluations */
    /* called after every evaluation; non-zero return stops the search */
    int (*progress)(void *user, size_t evals, size_t budget, double best);
    void *progress_user;
} qv_search_opts;

typedef struct qv_search_result {
    long best;             /* index, -1 if every candidate failed */
    double best_cost;
    size_t evals;          /* distinct configurations measured (incl. known) */
    size_t failures;
    int interrupted;
} qv_search_result;

#define QV_DEFAULT_STRATEGY "greedy"

/* Names of the strategies, NULL-terminated. */
extern const char *const qv_strategies[];

qv_status qv_search_run(const qv_space *s, const qv_search_opts *o,
                        qv_cost_fn cost, void *user, qv_search_result *res,
                        qv_err *err);

#endif
