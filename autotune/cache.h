/* autotune/cache.h — the autotune cache: one SQLite database (WAL) per
 * user holding, per device fingerprint, kernel, kernel-source hash and shape
 * bucket, the best configuration found and how it was found; and every
 * evaluation ever made (failed ones too, with the reason), so an interrupted
 * search resumes without measuring again.
 *
 * Entries whose source hash differs from the kernel's current one are
 * stale: never returned by lookups, never deleted silently, listed with
 * stale = 1. Errors name the database file and what to do; a database that
 * cannot be opened for writing can still be opened read-only (lookups fall
 * back to defaults with a warning in the caller). */
#ifndef QV_AUTOTUNE_CACHE_H
#define QV_AUTOTUNE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct qv_tune_cache qv_tune_cache;

/* Which results an entry belongs to. All strings are NUL-terminated. */
typedef struct qv_tune_key {
    char fingerprint[17]; /* qv_device_info.fingerprint */
    char kernel[32];      /* kernel name */
    char src_hash[17];    /* hash of the kernel's source + build options */
    char bucket[64];      /* shape bucket, e.g. "M256:N1024:K1024:R0" */
} qv_tune_key;

/* The best configuration for a key. */
typedef struct qv_tune_entry {
    qv_tune_key key;
    char config[160];     /* qv_config_format text, "WG_X=16,WG_Y=1,..." */
    double median_ns;     /* device-timer median of the tuned config */
    double default_ns;    /* the same for the default configuration; 0 when
                             the default failed or is illegal on the device */
    double gflops;        /* at the tuning shape */
    int evals;            /* distinct configurations measured */
    int failures;         /* of which failed (verify, compile, launch) */
    char strategy[32];
    int64_t created_at;   /* unix seconds */
    char version[16];     /* qvac version that tuned it */
    /* device description, for listings and for seeding similar devices */
    char backend[16];
    char vendor[128];
    char device_name[256];
    int stale;            /* filled by listings: src_hash is not current */
} qv_tune_entry;

/* One evaluation of one configuration. */
typedef struct qv_tune_eval {
    char config[160];
    int ok;               /* 1: verified and timed; 0: failed */
    double median_ns;     /* when ok */
    char reason[256];     /* when failed: "verify: Y off by 0.3", "compile: ..." */
} qv_tune_eval;

/* Opens (creating if needed, with its folder) the database at path.
 * read_only opens an existing database without writing. A locked database
 * is retried for up to busy_ms before QV_ERR_IO with a message saying
 * which process to stop or which --db to use; a file that is not a qvac
 * cache (or is corrupt) is QV_ERR_CORRUPT naming the file. */
qv_status qv_tune_cache_open(const char *path, int read_only, int busy_ms,
                             qv_tune_cache **out, qv_err *err);
void qv_tune_cache_destroy(qv_tune_cache **cache);

/* Default path: $XDG_DATA_HOME/qvac/tune.db, else ~/.local/share/qvac/tune.db. */
qv_status qv_tune_cache_default_path(char *buf, size_t n, qv_err *err);

/* Best entry for exactly this key; QV_ERR_NOT_FOUND if none. */
qv_status qv_tune_cache_get(qv_tune_cache *c, const qv_tune_key *key,
                            qv_tune_entry *out, qv_err *err);

/* Stores e unless an entry for the same key with a lower median_ns exists
 * (unless force). Writes *stored = 1 when it stored. */
qv_status qv_tune_cache_put(qv_tune_cache *c, const qv_tune_entry *e,
                            int force, int *stored, qv_err *err);

/* Every non-stale entry for (fingerprint, kernel, src_hash), any bucket:
 * the caller picks the nearest bucket. *out is malloc'd (free it). */
qv_status qv_tune_cache_buckets(qv_tune_cache *c, const char *fingerprint,
                                const char *kernel, const char *src_hash,
                                qv_tune_entry **out, size_t *n, qv_err *err);

/* Entries of other devices with the same backend and vendor (best first),
 * current src_hash, same kernel and bucket: seeds for a new device. */
qv_status qv_tune_cache_similar(qv_tune_cache *c, const qv_tune_entry *like,
                                qv_tune_entry **out, size_t *n, qv_err *err);

/* Listing: every entry; current_src(kernel) gives the current hash of a
 * kernel on a backend so stale can be set (NULL: nothing is stale). */
qv_status qv_tune_cache_list(qv_tune_cache *c,
                             const char *(*current_src)(const char *backend,
                                                        const char *kernel,
                                                        void *user),
                             void *user, qv_tune_entry **out, size_t *n,
                             qv_err *err);

/* Evaluations: record one (replacing an earlier one for the same config),
 * and load all of a key's, to resume a search. *out is malloc'd. */
qv_status qv_tune_cache_record_eval(qv_tune_cache *c, const qv_tune_key *key,
                                    const qv_tune_eval *ev, qv_err *err);
qv_status qv_tune_cache_load_evals(qv_tune_cache *c, const qv_tune_key *key,
                                   qv_tune_eval **out, size_t *n, qv_err *err);
/* Forget a key's evaluations and entry (qvac tune --force). */
qv_status qv_tune_cache_forget(qv_tune_cache *c, const qv_tune_key *key,
                               qv_err *err);

/* Export every entry (not the evaluations) as JSON to path; import from a
 * JSON file written by export: each entry goes through put without force,
 * so an import never overwrites a better entry. A malformed file is
 * rejected as a whole (nothing imported) with QV_ERR_CORRUPT naming the
 * file and the first problem (entry index and field). */
qv_status qv_tune_cache_export(qv_tune_cache *c, const char *path,
                               size_t *n_written, qv_err *err);
qv_status qv_tune_cache_import(qv_tune_cache *c, const char *path,
                               size_t *n_stored, size_t *n_skipped,
                               qv_err *err);

#endif
