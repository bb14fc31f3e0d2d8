/* worker/worker.h — `qvac worker`: a machine that runs fine-tuning jobs for
 * the scheduler (issue 5, docs/protocol.md).
 *
 * qv_worker_run opens the devices (every device but the reference unless
 * opts.devices names them), then connects one DEALER socket to the
 * scheduler's ROUTER (CURVE unless opts.insecure; the worker's keypair is
 * <cache-dir>/worker.key, so a restarted worker keeps its identity), says
 * hello, enrolls (with the token the first time) and heartbeats every
 * lease/3 (at most every 2 s) with the jobs it runs. Enroll first, tune
 * after: unless opts.no_tune, a thread tunes every kernel on every device
 * (the cached ones answer at once) while enroll and heartbeats carry
 * `tuning {done, total}`, so the scheduler lists the worker as tuning and
 * gives it no job; when it ends the worker enrolls again with the tuned
 * figures. Then, unless opts.no_bench, it runs the standard benchmark
 * (train/bench.h) on each device with no job, once per device, model and
 * qvac version, and sends it (`bench`) until the scheduler stores it.
 *
 * Jobs: on `assign` the worker fetches the model, the data and the resume
 * checkpoint it lacks into its blob cache (<cache-dir>/blobs, named by
 * SHA-256, checked on arrival, capped in size, least recently used evicted
 * first: a blob it holds is never downloaded again), then runs the job with
 * qv_job_run in a thread, one job per device at a time, its kernels in the
 * tune cache's configurations, tuned first at the job's own model shapes
 * when the cache lacks them (unless opts.no_tune). It streams
 * `progress` (at least every 3 s), uploads the checkpoint every
 * checkpoint_every steps (or the job's ckpt_every), then the adapter and
 * the metrics, then sends `done` (or `failed` with the reason), resending
 * it until the scheduler's `ack`. `abort` stops the attempt at the next
 * step. A scheduler that falls silent for its lease is reconnected to with
 * back-off, and running jobs carry on meanwhile.
 *
 * Shutdown: when *opts.stop becomes non-zero, running jobs stop at the next
 * step (a checkpoint is written and uploaded), each is handed back with
 * `failed` retry=true, and qv_worker_run returns QV_OK once the scheduler
 * acknowledged them (or after a few seconds without it). *stop >= 2: hand
 * back without waiting for uploads.
 *
 * Nothing here prints: what happens goes to opts.log as lines. */
#ifndef QV_WORKER_WORKER_H
#define QV_WORKER_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autotune/tune.h"
#include "common/status.h"
#include "kernels/backend.h"

typedef struct qv_worker_opts {
    const char *join;        /* scheduler endpoint, e.g. tcp://host:5555 */
    const char *token;       /* enrollment token ("<32 hex>_<Z85>"), or NULL */
    const char *server_key;  /* the scheduler's public key (Z85); NULL: from
                                the token, else <cache-dir>/scheduler.pub
                                (saved at enrollment), else env
                                QVAC_SCHEDULER_KEY, else this account's
                                scheduler's <data>/scheduler.pub */
    const char *devices;     /* "ref,opencl:0"; NULL: every device but ref */
    qv_devlist *devs;        /* devices already open (the caller keeps them);
                                NULL: qv_worker_run opens them */
    const char *cache_dir;   /* NULL: qv_worker_default_cache_dir */
    const char *tune_db;     /* tune cache; NULL: none (nothing tuned) */
    const char *name;        /* shown in listings; NULL: the host name */
    bool insecure;           /* no CURVE (the scheduler runs --insecure) */
    bool no_tune;            /* never tune (neither at enrollment nor at a
                                job's shapes); use what the cache holds */
    size_t tune_budget_evals;/* per kernel; 0: 12 */
    bool no_bench;           /* never run the device benchmark */
    const char *bench_model; /* the benchmark's model (train/bench.h); NULL:
                                "builtin" */
    uint64_t cache_bytes;    /* blob cache cap; 0: 20 GiB */
    volatile sig_atomic_t *stop; /* set (by a signal) to shut down */
    void (*log)(void *user, const char *line);
    void *log_user;
    /* autotuning progress (see autotune/tune.h); may be NULL */
    int (*tune_progress)(void *user, const qv_tune_progress *p);
    void *tune_progress_user;
} qv_worker_opts;

/* $XDG_CACHE_HOME/qvac/worker, else $HOME/.cache/qvac/worker. */
qv_status qv_worker_default_cache_dir(char *buf, size_t n, qv_err *err);

/* Runs the worker until *opts->stop (QV_OK), or a fatal error: no usable
 * device, a key or token the scheduler refuses (QV_ERR_INVALID). */
qv_status qv_worker_run(const qv_worker_opts *opts, qv_err *err);

#endif
