/* autotune/tune.h — tuning one kernel at one shape bucket on one device:
 * the search (autotune/search.h) driven by real measurements. Every
 * candidate is first verified against the reference on a small instance
 * (a wrong result, a compile error, an out-of-resources launch or a timeout
 * fails it, with the reason recorded), then timed with the device's own
 * timer: warm-up launches, then repeats until a minimum time and count,
 * and the median is the figure. Results go to the cache (autotune/cache.h);
 * a warm cache answers without measuring.
 *
 * Shape buckets: M falls in one of three classes (1; 2..127 tuned at 64;
 * 128 and up tuned at 256); N, K and R are the layer's own. At run time
 * qv_tune_lookup returns the configuration of the nearest tuned bucket, or
 * the default when nothing is cached. */
#ifndef QV_AUTOTUNE_TUNE_H
#define QV_AUTOTUNE_TUNE_H

#include <signal.h>

#include "autotune/cache.h"
#include "autotune/search.h"
#include "kernels/backend.h"
#include "kernels/verify.h"

/* Timing policy. */
typedef struct qv_timing_opts {
    int warmup;            /* launches before timing (the first compiles) */
    int min_reps, max_reps;
    double min_total_ns;   /* keep repeating until this much device time */
    double timeout_ns;     /* one launch slower than this fails the candidate */
} qv_timing_opts;

extern const qv_timing_opts qv_timing_default;

/* Median device time of kernel inst->k in configuration c. */
qv_status qv_time_config(qv_instance *inst, const qv_config *c,
                         const qv_timing_opts *t, double *median_ns,
                         qv_err *err);

/* Bucket of a shape for kernel k ("M256:N1024:K1024:R16"), and the shape
 * it is tuned at. */
void qv_tune_bucket(const qv_kernel_decl *k, qv_shape s, char *buf, size_t n,
                    qv_shape *tuned_at);

typedef struct qv_tune_progress {
    const char *device, *kernel, *bucket;
    size_t evals, budget, failures;
    double best_ns, default_ns;
} qv_tune_progress;

typedef struct qv_tune_opts {
    const char *strategy;      /* NULL: QV_DEFAULT_STRATEGY */
    size_t budget_evals;       /* 0 and budget_s 0: the whole space */
    double budget_s;
    uint64_t seed;
    int force;                 /* forget cached results and evaluations */
    const qv_timing_opts *timing; /* NULL: qv_timing_default */
    /* called after every evaluation; return non-zero to stop */
    int (*progress)(void *user, const qv_tune_progress *p);
    void *progress_user;
    volatile sig_atomic_t *stop; /* set asynchronously (SIGINT) to stop */
} qv_tune_opts;

/* Tunes k on dev at shape s. With a cache hit (and no force), returns the
 * cached entry and *from_cache = 1 without measuring. cache may be NULL
 * (nothing stored or resumed). An interrupted search keeps the evaluations
 * it recorded (the next run resumes from them), stores no entry, and
 * returns QV_OK with *interrupted = 1 and out->evals so far. */
qv_status qv_tune_kernel(qv_tune_cache *cache, qv_device *dev, qv_device *ref,
                         const qv_kernel_decl *k, qv_shape s,
                         const qv_tune_opts *o, qv_tune_entry *out,
                         int *from_cache, int *interrupted, qv_err *err);

/* The configuration to run k at shape s on dev: the nearest tuned bucket's
 * (current source only), else the default. *tuned says which. cache may be
 * NULL. */
qv_status qv_tune_lookup(qv_tune_cache *cache, const qv_device *dev,
                         const qv_kernel_decl *k, qv_shape s, qv_config *out,
                         int *tuned, qv_err *err);

/* Adopts another machine's result for this device (issue 13: shared
 * tunings), trusting nothing it claims: the entry must be for dev's
 * fingerprint and the kernel's current source on dev, its configuration
 * must parse as legal for the kernel and its bucket name the bucket of its
 * own shape; then one launch is verified against ref (at that shape cut to
 * at most 64 x 128 x 256, rank 16: `qvac check`'s largest, as every kernel
 * takes any shape) and the configuration is timed here at the bucket's
 * shape (a few launches). Stored (without force, so a
 * faster entry already cached stays) with the local time. *stored = 1 when
 * stored; a refusal is QV_OK with *stored = 0 and the reason in why. A
 * device error is a status. */
qv_status qv_tune_adopt(qv_tune_cache *cache, qv_device *dev, qv_device *ref,
                        const qv_tune_entry *e, int *stored, char *why, size_t why_n,
                        qv_err *err);

#endif
