/* scheduler/store.h — the scheduler's durable state: one data folder holding
 * an SQLite database (the only truth about jobs, attempts, events, workers,
 * devices, blobs, clients and enrollment tokens) and a content-addressed
 * blob store (data/blobs/ab/cdef...).
 *
 * Durability: WAL with synchronous=FULL, so a function that returned QV_OK
 * has committed and fsynced its change; a submit's id is handed out only
 * after COMMIT, and survives kill -9 of the process (and power loss, as far
 * as the disk honours fsync). Every change is one BEGIN IMMEDIATE
 * transaction, rolled back on any error. A database locked by another
 * process past the busy timeout is an error that says so.
 *
 * Time is passed in by the caller (`now_ms`, milliseconds since the epoch,
 * see qv_store_now_ms) so leases and expiry are deterministic in tests.
 *
 * Job states: queued -> assigned -> running -> succeeded | failed |
 * cancelled. Each hand-out is an attempt with a number (1, 2, ...) and a
 * lease; results, heartbeats, progress and checkpoints name (job, attempt),
 * and those from an attempt that is no longer current are ignored, with a
 * verdict saying so (a job never counts twice). A failed, expired or lost
 * attempt sends the job back to the queue until max_attempts are used, then
 * the job fails with the reason of its last attempt. Every state change is an
 * event in the job's log.
 *
 * Blob hashes are SHA-256 (libsodium), written as 64 lower-case hex
 * digits: what docs/protocol.md names in `welcome.hash`, so that a client in
 * any language (Python's hashlib) names blobs as the scheduler does. A blob
 * already stored is never replaced.
 *
 * One owner per allocation: a qv_store owns its connection; records filled
 * by the list functions are owned by the caller and freed with the matching
 * *_free; a qv_blob_upload is owned by the caller until finish/abort, and
 * must not outlive its store. A qv_store is not thread-safe: one thread (the
 * ROUTER loop) uses it.
 */
#ifndef QV_SCHED_STORE_H
#define QV_SCHED_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define QV_STORE_SCHEMA 4           /* latest schema version (user_version) */
#define QV_STORE_MAX_ATTEMPTS 3     /* default max attempts of a job */
#define QV_BLOB_HEX 65              /* 64 hex digits (SHA-256) + NUL */
#define QV_TOKEN_HEX 33             /* enrollment tokens: 32 hex digits */
#define QV_STORE_ID_MAX 128         /* worker / device ids, names, keys */

typedef struct qv_store qv_store;

typedef enum qv_job_state {
    QV_JOB_QUEUED = 0,
    QV_JOB_ASSIGNED,
    QV_JOB_RUNNING,
    QV_JOB_SUCCEEDED,
    QV_JOB_FAILED,
    QV_JOB_CANCELLED
} qv_job_state;

/* "queued", "assigned", ...; parse returns 0 on an unknown name. */
const char *qv_job_state_name(qv_job_state s);
int qv_job_state_parse(const char *name, qv_job_state *out);

/* ---- open / close ------------------------------------------------------ */

typedef struct qv_store_opts {
    int busy_ms;      /* how long to wait for a lock; 0 -> 5000 */
    int schema_limit; /* migrate only up to this version (tests); 0 -> latest */
} qv_store_opts;

/* Opens (creating if needed, mode 0700) the data folder `dir`:
 * dir/scheduler.db and dir/blobs/. Applies pending migrations in one
 * transaction. opts may be NULL. */
qv_status qv_store_open(const char *dir, const qv_store_opts *opts,
                        qv_store **out, qv_err *err);
void qv_store_close(qv_store **store);

/* Group commit. Between begin and end every change of this handle is a
 * savepoint of one transaction (a failed change is still undone alone), and
 * end commits them all with one fsync. Nothing changed in a group is durable
 * before end returns QV_OK, so a caller holds back every acknowledgement
 * until then; when end fails, the whole group is rolled back. */
qv_status qv_store_group_begin(qv_store *store, qv_err *err);
qv_status qv_store_group_end(qv_store *store, qv_err *err);

/* The schema version of the open database (PRAGMA user_version). */
int qv_store_schema_version(const qv_store *store);

/* PRAGMA integrity_check: QV_ERR_CORRUPT with SQLite's first complaint. */
qv_status qv_store_check(qv_store *store, qv_err *err);

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t qv_store_now_ms(void);

/* ---- jobs -------------------------------------------------------------- */

typedef struct qv_job_spec {
    const char *name;         /* NULL -> "" */
    int priority;             /* higher first */
    const char *options_json; /* a JSON object; NULL -> "{}" */
    const char *model_hash;   /* a stored blob, or NULL */
    const char *data_hash;    /* a stored blob, or NULL */
    const char *backend;      /* "opencl", "vulkan", "ref"; NULL/"" = any */
    uint64_t min_memory;      /* bytes of device memory the job needs */
    int max_attempts;         /* 0 -> QV_STORE_MAX_ATTEMPTS */
} qv_job_spec;

typedef struct qv_job {
    int64_t id;
    char name[QV_STORE_ID_MAX];
    int priority;
    qv_job_state state;
    int64_t created_ms, updated_ms;
    char *options_json;  /* owned by the record (qv_job_clear) */
    char *progress_json; /* last progress report or NULL; owned likewise */
    char model_hash[QV_BLOB_HEX], data_hash[QV_BLOB_HEX]; /* "" if none */
    char backend[32];    /* needed backend, "" = any */
    uint64_t min_memory;
    int attempts;        /* attempts used = number of the current/last one */
    int max_attempts;
    char checkpoint_hash[QV_BLOB_HEX];
    char adapter_hash[QV_BLOB_HEX], metrics_hash[QV_BLOB_HEX]; /* results */
    char reason[512];    /* reason of the last failure, "" if none */
    int cancel_requested;
    char worker[QV_STORE_ID_MAX], device[QV_STORE_ID_MAX]; /* current attempt */
    int64_t lease_expiry_ms; /* current attempt's lease, 0 if none */
    int runnable;        /* 1 if some enrolled device can ever run it */
} qv_job;

void qv_job_clear(qv_job *job);
void qv_jobs_free(qv_job **jobs, size_t n);

/* Validates the spec (JSON object, blobs present, hashes well formed),
 * inserts the job as queued with a "submitted" event and commits; *id is set
 * only after COMMIT succeeded. */
qv_status qv_store_submit(qv_store *store, const qv_job_spec *spec,
                          int64_t now_ms, int64_t *id, qv_err *err);
/* n submissions in one transaction (one fsync): all or none. ids[n]. */
qv_status qv_store_submit_batch(qv_store *store, const qv_job_spec *specs,
                                size_t n, int64_t now_ms, int64_t *ids,
                                qv_err *err);

qv_status qv_store_job(qv_store *store, int64_t id, qv_job *out, qv_err *err);

/* Jobs by id ascending; all = 0 lists only queued/assigned/running. */
qv_status qv_store_list_jobs(qv_store *store, int all, qv_job **jobs,
                             size_t *n, qv_err *err);

/* Ids of queued jobs that no enrolled device (of a worker not revoked) can
 * ever run: wrong backend or too little memory everywhere. */
qv_status qv_store_unrunnable(qv_store *store, int64_t **ids, size_t *n,
                              qv_err *err);

/* The queued job that a device with this backend and memory should run
 * next: highest priority, then oldest. *job_id = 0 when none. */
qv_status qv_store_next_job(qv_store *store, const char *backend,
                            uint64_t memory, int64_t *job_id, qv_err *err);

typedef struct qv_assignment {
    int64_t job;
    int attempt;              /* 1, 2, ... */
    int64_t lease_expiry_ms;
    char checkpoint_hash[QV_BLOB_HEX]; /* resume from this, "" = from step 0 */
} qv_assignment;

/* queued -> assigned: a new attempt on (worker, device) whose lease runs
 * until now + lease_ms. QV_ERR_INVALID if the job is not queued. */
qv_status qv_store_assign(qv_store *store, int64_t job, const char *worker,
                          const char *device, int64_t now_ms, int64_t lease_ms,
                          qv_assignment *out, qv_err *err);

/* next_job + assign in one transaction; out->job = 0 when nothing fits. */
qv_status qv_store_dispatch(qv_store *store, const char *worker,
                            const char *device, const char *backend,
                            uint64_t memory, int64_t now_ms, int64_t lease_ms,
                            qv_assignment *out, qv_err *err);

/* What the store made of a message naming (job, attempt). */
typedef enum qv_verdict {
    QV_VERDICT_ACCEPTED = 0, /* applied */
    QV_VERDICT_STALE,        /* not the current attempt: ignored, nothing changed */
    QV_VERDICT_CANCEL        /* applied; the job is to be cancelled: tell the worker */
} qv_verdict;

typedef struct qv_ack {
    qv_verdict verdict;
    int current_attempt;     /* the job's current attempt number */
    qv_job_state state;      /* the job's state after the call */
    char note[256];          /* why, when not ACCEPTED */
} qv_ack;

/* Heartbeat: renews the lease of (job, attempt) to now + lease_ms. */
qv_status qv_store_renew(qv_store *store, int64_t job, int attempt,
                         int64_t now_ms, int64_t lease_ms, qv_ack *ack,
                         qv_err *err);
/* assigned -> running (also renews the lease). */
qv_status qv_store_running(qv_store *store, int64_t job, int attempt,
                           int64_t now_ms, int64_t lease_ms, qv_ack *ack,
                           qv_err *err);
/* Records a progress report (a JSON object: step, loss, ...) as the job's
 * progress and a "progress" event; renews the lease; assigned -> running. */
qv_status qv_store_progress(qv_store *store, int64_t job, int attempt,
                            const char *progress_json, int64_t now_ms,
                            int64_t lease_ms, qv_ack *ack, qv_err *err);
/* The job's latest checkpoint (a stored blob): the next attempt resumes
 * from it. */
qv_status qv_store_set_checkpoint(qv_store *store, int64_t job, int attempt,
                                  const char *hash, int64_t now_ms,
                                  qv_ack *ack, qv_err *err);
/* -> succeeded with its results (stored blobs; metrics may be NULL). */
qv_status qv_store_complete(qv_store *store, int64_t job, int attempt,
                            const char *adapter_hash, const char *metrics_hash,
                            int64_t now_ms, qv_ack *ack, qv_err *err);
/* The attempt failed for `reason`: back to queued while attempts remain,
 * else failed; cancelled if a cancel was requested. */
qv_status qv_store_fail(qv_store *store, int64_t job, int attempt,
                        const char *reason, int64_t now_ms, qv_ack *ack,
                        qv_err *err);
/* The same; retry 0 (the worker's failed {retry: false}: another attempt
 * cannot help) fails the job now, whatever attempts remain. */
qv_status qv_store_fail_ex(qv_store *store, int64_t job, int attempt, const char *reason,
                           int retry, int64_t now_ms, qv_ack *ack, qv_err *err);

/* Every assigned/running job whose lease ended before now_ms: its attempt
 * ends as "expired"; the job goes back to queued, or to failed when its
 * attempts are used up (cancelled if a cancel was requested). Counts may be
 * NULL. */
qv_status qv_store_expire_leases(qv_store *store, int64_t now_ms,
                                 int *requeued, int *failed, qv_err *err);

typedef enum qv_cancel_result {
    QV_CANCEL_DONE = 0,    /* was queued: cancelled now */
    QV_CANCEL_REQUESTED    /* assigned/running: flagged; tell `worker` */
} qv_cancel_result;

/* Cancels a job; QV_ERR_INVALID if it already ended. When REQUESTED, worker
 * (>= QV_STORE_ID_MAX bytes, may be NULL) receives the worker to tell. */
qv_status qv_store_cancel(qv_store *store, int64_t job, int64_t now_ms,
                          qv_cancel_result *result, char *worker,
                          qv_err *err);

typedef struct qv_attempt_row {
    int64_t job;
    int number;
    char worker[QV_STORE_ID_MAX], device[QV_STORE_ID_MAX];
    int64_t started_ms, lease_expiry_ms;
    int64_t ended_ms;        /* 0 while open */
    char outcome[16];        /* "" while open; succeeded, failed, expired, lost */
    char reason[512];
} qv_attempt_row;

/* Every attempt of a job, by number. */
qv_status qv_store_attempts(qv_store *store, int64_t job,
                            qv_attempt_row **rows, size_t *n, qv_err *err);
void qv_attempts_free(qv_attempt_row **rows);

typedef struct qv_event {
    int64_t id, job, time_ms;
    char kind[24];
    char text[512];
} qv_event;

/* Events of a job with id > after_id, oldest first, at most max (0 = all). */
qv_status qv_store_events(qv_store *store, int64_t job, int64_t after_id,
                          size_t max, qv_event **events, size_t *n,
                          qv_err *err);
void qv_events_free(qv_event **events);

/* ---- workers, devices, clients, tokens --------------------------------- */

typedef enum qv_key_role {
    QV_KEY_UNKNOWN = 0,
    QV_KEY_CLIENT,
    QV_KEY_WORKER
} qv_key_role;

/* Enrolls or updates a worker (state "active", last seen now). */
qv_status qv_store_worker_upsert(qv_store *store, const char *worker,
                                 const char *pubkey, const char *name,
                                 int64_t now_ms, qv_err *err);
/* A message from the worker: last seen = now, state "active". */
qv_status qv_store_worker_seen(qv_store *store, const char *worker,
                               int64_t now_ms, qv_err *err);
/* Many heartbeats in one change: worker ids[i] was last seen at times[i]
 * (a time never moves back); state "active". Unknown ids are skipped. */
qv_status qv_store_workers_seen(qv_store *store,
                                const char (*ids)[QV_STORE_ID_MAX],
                                const int64_t *times, size_t n, qv_err *err);
/* The id of the worker enrolled with pubkey (indexed), "" when none. */
qv_status qv_store_worker_by_key(qv_store *store, const char *pubkey,
                                 char id[QV_STORE_ID_MAX], qv_err *err);
/* The largest numeric worker id (0 when there is none). */
qv_status qv_store_worker_max_id(qv_store *store, uint64_t *max_id, qv_err *err);
/* Queued jobs that dispatch could hand out (not being cancelled), counted
 * up to limit (the cost grows with the limit, not with the queue). */
qv_status qv_store_queued_count(qv_store *store, int64_t limit, int64_t *n,
                                qv_err *err);
/* Removes a worker for good: state "revoked" (its key is refused from then
 * on, and enrolling again fails), every attempt it holds ends and its job
 * goes back to the queue (or fails when out of attempts). QV_ERR_NOT_FOUND
 * when there is no such worker. */
qv_status qv_store_worker_revoke(qv_store *store, const char *worker,
                                 int64_t now_ms, int *requeued, qv_err *err);
/* The ids of the removed workers (*ids freed with free()). */
qv_status qv_store_revoked_workers(qv_store *store, char (**ids)[QV_STORE_ID_MAX],
                                   size_t *n, qv_err *err);
/* SQLite's data_version: it changes when another connection (a `qvac
 * clients` or `qvac workers remove` beside the scheduler) commits. */
qv_status qv_store_data_version(qv_store *store, int64_t *v, qv_err *err);
/* Marks the worker "lost"; every job it holds goes back to the queue (or
 * fails when out of attempts, or is cancelled if requested). */
qv_status qv_store_worker_lost(qv_store *store, const char *worker,
                               const char *reason, int64_t now_ms,
                               int *requeued, qv_err *err);
/* Workers with state "active" whose last message is older than
 * now - silence_ms, up to max of them, written into ids[max][QV_STORE_ID_MAX]. */
qv_status qv_store_silent_workers(qv_store *store, int64_t now_ms,
                                  int64_t silence_ms,
                                  char (*ids)[QV_STORE_ID_MAX], size_t max,
                                  size_t *n, qv_err *err);

/* Replaces (or adds) one device of a worker with its tuned figures (JSON). */
qv_status qv_store_device_put(qv_store *store, const char *worker,
                              const char *device, const char *backend,
                              const char *name, uint64_t memory,
                              const char *tuned_json, qv_err *err);

typedef struct qv_worker_row {
    char id[QV_STORE_ID_MAX], pubkey[QV_STORE_ID_MAX], name[QV_STORE_ID_MAX];
    char state[16];
    int64_t last_seen_ms;
    int devices;         /* number of devices */
    int running;         /* jobs it holds now */
} qv_worker_row;

qv_status qv_store_list_workers(qv_store *store, qv_worker_row **rows,
                                size_t *n, qv_err *err);
void qv_workers_free(qv_worker_row **rows);

/* ---- bench results (issue 13) ---- */

/* Replaces (or adds) the bench result of a worker's device for one model
 * and qvac version: result_json is the validated object of train/bench.h. */
qv_status qv_store_bench_put(qv_store *store, const char *worker, const char *device,
                             const char *model, const char *version,
                             const char *fingerprint, const char *result_json,
                             int64_t now_ms, qv_err *err);

typedef struct qv_bench_row {
    char worker[QV_STORE_ID_MAX], worker_name[QV_STORE_ID_MAX];
    char device[QV_STORE_ID_MAX], model[32], version[32], fingerprint[32];
    char *result;          /* the JSON object (owned) */
    int64_t received_ms;
} qv_bench_row;

/* Every stored result (of model, or of all models when NULL), ordered by
 * model, worker name, worker, device and version. */
qv_status qv_store_bench_list(qv_store *store, const char *model, qv_bench_row **rows,
                              size_t *n, qv_err *err);
void qv_bench_rows_free(qv_bench_row **rows, size_t n);

/* ---- metrics (issue 13: the scheduler's /metrics) ---- */

#define QV_METRICS_RUNNING 256
typedef struct qv_store_metrics {
    int64_t jobs[6];           /* by qv_job_state */
    int64_t blobs, blob_bytes; /* the blob store */
    int64_t oldest_queued_ms;  /* created_ms of the oldest queued job; 0: none */
    int64_t workers_lost;      /* enrolled workers not active (lost, revoked) */
    size_t n_running;          /* running jobs, at most QV_METRICS_RUNNING */
    struct {
        int64_t job;
        double tokens_per_s;   /* last progress; NaN when none yet */
    } running[QV_METRICS_RUNNING];
} qv_store_metrics;

qv_status qv_store_metrics_read(qv_store *store, qv_store_metrics *m, qv_err *err);

/* ---- shared tunings (issue 13) ---- */

#define QV_TUNINGS_KEEP 4 /* configurations kept per key, the fastest claimed */

/* Records one autotune result a worker sent (entry_json: the entry as the
 * wire carried it, validated). The same configuration again replaces it
 * only when faster; a key keeps its QV_TUNINGS_KEEP fastest. *stored = 1
 * when this one was written. */
qv_status qv_store_tuning_put(qv_store *store, const char *worker, const char *fingerprint,
                              const char *kernel, const char *src_hash,
                              const char *bucket, const char *config, double median_ns,
                              const char *entry_json, int64_t now_ms, int *stored,
                              qv_err *err);
/* Every stored entry (JSON text) of a fingerprint, at most 1024, grouped by
 * key, fastest first. Free with qv_strings_free. */
qv_status qv_store_tunings_of(qv_store *store, const char *fingerprint, char ***entries,
                              size_t *n, qv_err *err);
void qv_strings_free(char ***v, size_t n);

qv_status qv_store_client_add(qv_store *store, const char *pubkey,
                              const char *name, int64_t now_ms, qv_err *err);
/* Removes an admitted client key (QV_ERR_NOT_FOUND when it is not one). */
qv_status qv_store_client_remove(qv_store *store, const char *pubkey, qv_err *err);
typedef struct qv_client_row {
    char pubkey[QV_STORE_ID_MAX], name[QV_STORE_ID_MAX];
    int64_t added_ms;
} qv_client_row;
/* The admitted client keys, oldest first (*rows freed with free()). */
qv_status qv_store_list_clients(qv_store *store, qv_client_row **rows, size_t *n,
                                qv_err *err);
/* Who holds this public key: a client, a worker (not revoked) or nobody. */
qv_status qv_store_key_role(qv_store *store, const char *pubkey,
                            qv_key_role *role, qv_err *err);

/* A new one-time enrollment token (32 hex digits from /dev/urandom),
 * valid until now + ttl_ms. */
qv_status qv_store_token_new(qv_store *store, int64_t now_ms, int64_t ttl_ms,
                             char token[QV_TOKEN_HEX], qv_err *err);
/* Consumes a token for `pubkey`: QV_ERR_NOT_FOUND if unknown, QV_ERR_INVALID
 * if already used or expired (the message says which). */
qv_status qv_store_token_use(qv_store *store, const char *token,
                             const char *pubkey, int64_t now_ms, qv_err *err);

/* ---- blobs ------------------------------------------------------------- */

/* 1 if hex is exactly 32 lower-case hex digits. */
int qv_blob_hash_valid(const char *hex);
/* SHA-256 of the bytes as 64 lower-case hex digits. */
void qv_blob_hash(const void *data, size_t n, char out[QV_BLOB_HEX]);

/* Stores the bytes (if expected is not NULL, they must hash to it: else
 * QV_ERR_CORRUPT); out (may be NULL) receives the hash. */
qv_status qv_store_blob_put(qv_store *store, const void *data, size_t n,
                            const char *expected, int64_t now_ms,
                            char out[QV_BLOB_HEX], qv_err *err);
/* *has = 1 and *size (may be NULL) if the blob is stored. */
qv_status qv_store_blob_has(qv_store *store, const char *hash, int *has,
                            uint64_t *size, qv_err *err);
/* The file's path (QV_ERR_NOT_FOUND if not stored). */
qv_status qv_store_blob_path(qv_store *store, const char *hash, char *path,
                             size_t path_size, qv_err *err);
/* Up to len bytes from offset; *got < len only at the end of the blob. */
qv_status qv_store_blob_read(qv_store *store, const char *hash,
                             uint64_t offset, void *buf, size_t len,
                             size_t *got, qv_err *err);

/* Streaming upload: begin with the expected hash and size, append chunks in
 * order (offset must equal the bytes received so far), finish: the hash of
 * what arrived is checked, the file fsynced and renamed into place, the
 * blob recorded. A mismatch deletes the partial file and is QV_ERR_CORRUPT.
 * finish and abort consume the upload (set *up = NULL) whatever happens. */
typedef struct qv_blob_upload qv_blob_upload;

/* Bytes free for uploads on the blob folder's file system. */
qv_status qv_store_blob_space(qv_store *store, uint64_t *avail, qv_err *err);
/* Removes partial uploads (the .part files in blobs/tmp) untouched for
 * max_age_s seconds (0: all), except those of the blobs named in keep (in
 * progress). The scheduler, holding its lock, calls it at start (an hour:
 * a restart leaves time to resume) and every minute (ten minutes: a
 * client that vanished). */
qv_status qv_store_blob_tmp_clean(qv_store *store, int64_t max_age_s,
                                  const char *const *keep, size_t nkeep,
                                  int *removed, qv_err *err);
/* Starts (or resumes) the upload of blob `expected` of `size` bytes into
 * blobs/tmp/<hash>.part: bytes a cut-short upload left there are hashed
 * again and kept, and qv_blob_upload_received says where to go on. */
qv_status qv_store_blob_begin(qv_store *store, const char *expected,
                              uint64_t size, qv_blob_upload **up, qv_err *err);
qv_status qv_blob_upload_append(qv_blob_upload *up, uint64_t offset,
                                const void *data, size_t n, qv_err *err);
uint64_t qv_blob_upload_received(const qv_blob_upload *up);
qv_status qv_store_blob_finish(qv_store *store, qv_blob_upload **up,
                               int64_t now_ms, qv_err *err);
/* Ends an upload and deletes its partial file (a failed write, a client
 * that broke the protocol, a replaced upload). */
void qv_blob_upload_abort(qv_blob_upload **up);
/* Ends an upload and keeps its partial file for a resume (a connection that
 * went quiet, a scheduler stopping); the scheduler's sweep removes it when
 * nobody comes back for it. */
void qv_blob_upload_detach(qv_blob_upload **up);

#endif
