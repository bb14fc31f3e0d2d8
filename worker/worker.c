/* worker/worker.c — see worker.h. One network thread (the caller's) owns
 * the socket, the blob transfers and the job slots; each running job has
 * its own training thread, which shares only its slot's `mu`-guarded
 * fields (progress, checkpoint snapshot, result) and the stop flag. */
#include "worker/worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <zmq.h>

#include "formats/wire.h"
#include "kernels/backend.h"
#include "scheduler/client.h" /* qv_sha256_file */
#include "scheduler/keys.h"
#include "train/bench.h"
#include "worker/job.h"

#define PATH_CAP 1024
#define DIR_CAP 768   /* folders: file paths below them fit PATH_CAP */
#define BASE_CAP 512  /* the cache folder */
#define MAX_JOBS 64
#define MAX_XFERS 256
#define HASH_CAP 129
#define REPORT_EVERY_MS 3000
#define PROGRESS_MIN_MS 1000
#define PROGRESS_MAX_MS 3000
#define HELLO_TIMEOUT_MS 5000
#define SHUTDOWN_GRACE_MS 8000
#define BENCH_RESEND_MS 10000

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- hashing ------------------------------------------------------------ */

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- small file helpers ---------------------------------------------------- */

static qv_status mkdir_p(const char *dir, qv_err *err)
{
    char tmp[PATH_CAP];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return qv_fail(err, QV_ERR_INVALID, "%s: path too long", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) && errno != EEXIST)
                return qv_fail(err, QV_ERR_IO, "cannot create %s: %s", tmp,
                               strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0700) && errno != EEXIST)
        return qv_fail(err, QV_ERR_IO, "cannot create %s: %s", tmp,
                       strerror(errno));
    return QV_OK;
}

static void rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb))
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                    continue;
                char sub[PATH_CAP];
                if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) <
                    (int)sizeof sub)
                    rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Hard link, else copy. */
static qv_status link_or_copy(const char *from, const char *to, qv_err *err)
{
    unlink(to);
    if (!link(from, to))
        return QV_OK;
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    if (!a || !b) {
        if (a)
            fclose(a);
        return qv_fail(err, QV_ERR_IO, "cannot copy %s to %s: %s", from, to,
                       strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    int bad = 0;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        bad |= fwrite(buf, 1, n, b) != n;
    bad |= ferror(a);
    fclose(a);
    bad |= fclose(b) != 0;
    if (bad)
        return qv_fail(err, QV_ERR_IO, "cannot copy %s to %s", from, to);
    return QV_OK;
}

/* ---- the worker's state ----------------------------------------------------- */

typedef enum { J_FREE, J_FETCH, J_RUN, J_UPLOAD, J_REPORT } jstate;

typedef struct job {
    jstate state;
    uint64_t id, attempt;
    char device[QV_WIRE_MAX_NAME + 1];
    qv_device *dev;
    /* tuning at the job's shapes before its first step (qv_job_spec) */
    const char *tune_db;
    qv_device *ref;
    size_t tune_evals;
    char model[HASH_CAP], data[HASH_CAP], resume[HASH_CAP];
    uint64_t resume_step;
    qv_job_opts opts;
    char dir[640], out[DIR_CAP], resume_dir[DIR_CAP];
    /* the training thread */
    pthread_t th;
    bool th_started;
    volatile sig_atomic_t stop;
    pthread_mutex_t mu; /* guards the fields down to `result` */
    int64_t step, steps;
    double loss, tps;
    uint64_t peak;
    ino_t seen_ino;
    bool snap_ready;
    char snap_path[PATH_CAP], snap_hash[65];
    uint64_t snap_size;
    int64_t snap_step;
    bool finished;
    qv_status rs;
    qv_err rerr;
    bool interrupted;
    char adapter_hash[65], metrics_hash[65], final_ckpt_hash[65];
    uint64_t adapter_size, metrics_size, final_ckpt_size;
    int64_t final_step;
    /* network side */
    char ckpt_hash[65]; /* last uploaded checkpoint */
    int64_t ckpt_step;
    double last_progress_ms;
    int64_t last_sent_step;
    bool aborted, shutdown;
    char abort_reason[QV_WIRE_MAX_TEXT + 1];
    char reason[QV_WIRE_MAX_TEXT + 1];
    bool ok, retry;  /* REPORT: done (ok) or failed (retry) */
    double last_report_ms;
    int uploads;     /* uploads in flight that `done` waits for */
} job;

typedef enum { X_DOWN, X_UP } xkind;
typedef enum { P_BLOB, P_CKPT, P_RESULT, P_FINAL_CKPT } xpurpose;

typedef struct xfer {
    xkind kind;
    xpurpose purpose;
    char hash[HASH_CAP];
    uint64_t size;          /* up: file size; down: from the first chunk */
    bool size_known;
    char path[PATH_CAP];    /* up: the file; down: the cache's final path */
    char part[PATH_CAP + 8]; /* down: the partial file */
    uint64_t job, attempt;  /* the owner (uploads) */
    int64_t step;           /* P_CKPT */
    FILE *f;
    uint64_t off, credit;
    crypto_hash_sha256_state sha;
    bool started;
    bool awaiting_put;      /* up: blob_put sent, its answer (the offset) not in */
    int tries;
    bool sent_all;
    bool resync;            /* down: asked again after a gap */
    double last_ms;         /* down: last chunk (stalls restart it) */
} xfer;

/* The standard comparison of one device (train/bench.h), run once per
 * device, model and qvac version (kept in <cache>/bench/ so a restart or a
 * reconnection sends it again without running it again), uploaded with
 * `bench` until the scheduler's `bench_ok`. */
typedef enum { B_NONE, B_RUN, B_SEND, B_DONE, B_FAILED } bstate;

typedef struct wbench {
    bstate state;
    qv_device *dev;
    pthread_t th;
    bool th_started;
    volatile sig_atomic_t stop;
    const char *tune_db;
    qv_device *ref;
    size_t tune_evals;
    const char *model;
    char model_req[16];     /* asked for by the scheduler (bench_request) */
    bool force;             /* run it even when a kept result exists */
    char path[PATH_CAP];    /* the kept result */
    pthread_mutex_t mu;     /* guards finished, rs, err, json */
    bool finished;
    qv_status rs;
    qv_err err;
    char *json;             /* compact JSON to send (owned) */
    double last_send_ms;
} wbench;

typedef struct worker {
    const qv_worker_opts *o;
    wbench bench[QV_WIRE_MAX_DEVICES];
    char cache_dir[BASE_CAP], blob_dir[BASE_CAP + 8], jobs_dir[BASE_CAP + 8];
    char name[QV_WIRE_MAX_NAME + 1];
    qv_keypair kp;
    char server_pub[QV_KEY_Z85];
    qv_devlist *devs;
    qv_device *use[QV_WIRE_MAX_DEVICES];
    double tuned[QV_WIRE_MAX_DEVICES][32];
    const char *tuned_name[QV_WIRE_MAX_DEVICES][32];
    int n_tuned[QV_WIRE_MAX_DEVICES];
    size_t n_use;
    qv_tune_cache *tcache;
    /* connection */
    void *ctx, *sock;
    bool hello_sent, welcomed, ready;
    bool rejoining; /* enrolling again on this connection, as the scheduler asked */
    double connect_ms, last_rx_ms, last_hb_ms, next_connect_ms, backoff_ms;
    uint64_t lease_ms, chunk, credit;
    bool fatal;
    qv_err fatal_err;
    /* work */
    job jobs[MAX_JOBS];
    xfer *down[MAX_XFERS], *up[MAX_XFERS];
    size_t n_down, n_up;
    bool shutting_down;
    double shutdown_ms;
    /* enroll first, tune after: the tuning thread (tune_devices) */
    pthread_t tune_th;
    bool tune_started, tune_running;
    pthread_mutex_t tune_mu;   /* guards tune_done, tune_finished */
    uint64_t tune_done, tune_total;
    bool tune_finished;
    /* shared tunings: asked of the scheduler per fingerprint once enrolled,
     * adopted (verified, timed here) by the tuning thread before it tunes */
    bool tune_pending;          /* the thread waits for the fleet's answers */
    int tunings_waiting;        /* tunings_get without an answer yet */
    double tunings_asked_ms;
    qv_tune_entry *fleet;
    size_t n_fleet;
    size_t adopted, refused, tuned_now;
    char refused_why[256];
} worker;

static bool bench_running(worker *w, const qv_device *d);
static void ask_tunings(worker *w);
static void on_tunings(worker *w, const msgpack_object *b);

static void wlog(worker *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void wlog(worker *w, const char *fmt, ...)
{
    if (!w->o->log)
        return;
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    w->o->log(w->o->log_user, line);
}

/* ---- blob cache ------------------------------------------------------------- */

static void blob_path(worker *w, const char *hash, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", w->blob_dir, hash);
}

/* Whether the cache holds hash; marks it used (mtime) when it does. */
static bool blob_have(worker *w, const char *hash)
{
    char p[PATH_CAP];
    blob_path(w, hash, p, sizeof p);
    if (access(p, R_OK))
        return false;
    utimensat(AT_FDCWD, p, NULL, 0);
    return true;
}

static bool blob_pinned(worker *w, const char *hash)
{
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &w->jobs[i];
        if (j->state != J_FREE &&
            (!strcmp(j->model, hash) || !strcmp(j->data, hash) ||
             !strcmp(j->resume, hash)))
            return true;
    }
    return false;
}

typedef struct centry {
    char name[HASH_CAP];
    uint64_t size;
    struct timespec t;
} centry;

static int centry_cmp(const void *a, const void *b)
{
    const centry *x = a, *y = b;
    if (x->t.tv_sec != y->t.tv_sec)
        return x->t.tv_sec < y->t.tv_sec ? -1 : 1;
    if (x->t.tv_nsec != y->t.tv_nsec)
        return x->t.tv_nsec < y->t.tv_nsec ? -1 : 1;
    return 0;
}

/* Least recently used blobs go until the cache fits its cap. */
static void blob_evict(worker *w)
{
    uint64_t cap = w->o->cache_bytes ? w->o->cache_bytes : (20ull << 30);
    DIR *d = opendir(w->blob_dir);
    if (!d)
        return;
    centry *e = NULL;
    size_t n = 0, c = 0;
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) >= HASH_CAP || strchr(de->d_name, '.'))
            continue;
        char p[PATH_CAP];
        struct stat sb;
        blob_path(w, de->d_name, p, sizeof p);
        if (stat(p, &sb) || !S_ISREG(sb.st_mode))
            continue;
        if (n == c) {
            c = c ? 2 * c : 64;
            centry *ne = realloc(e, c * sizeof *e);
            if (!ne)
                break;
            e = ne;
        }
        memcpy(e[n].name, de->d_name, strlen(de->d_name) + 1);
        e[n].size = (uint64_t)sb.st_size;
        e[n].t = sb.st_mtim;
        total += e[n].size;
        n++;
    }
    closedir(d);
    if (total > cap && n)
        qsort(e, n, sizeof *e, centry_cmp);
    for (size_t i = 0; i < n && total > cap; i++) {
        if (blob_pinned(w, e[i].name))
            continue;
        char p[PATH_CAP];
        blob_path(w, e[i].name, p, sizeof p);
        if (!unlink(p)) {
            total -= e[i].size;
            wlog(w, "cache: evicted %.16s (%llu bytes)", e[i].name,
                 (unsigned long long)e[i].size);
        }
    }
    free(e);
}

/* ---- sending ---------------------------------------------------------------- */

static bool send_out(worker *w, qv_wire_out *out)
{
    bool ok = w->sock != NULL;
    for (int i = 0; i < QV_WIRE_FRAMES && ok; i++)
        ok = zmq_send(w->sock, out->frame[i].data, out->frame[i].size,
                      ZMQ_DONTWAIT | (i < QV_WIRE_FRAMES - 1 ? ZMQ_SNDMORE : 0)) >= 0;
    qv_wire_out_free(out);
    return ok;
}

/* Finishes and sends a writer's message; a message the schema refuses is
 * a bug here: it is logged, never sent. */
static bool send_w(worker *w, qv_wire_writer *wr)
{
    qv_wire_out out;
    qv_err e;
    if (qv_wire_finish(wr, &out, &e)) {
        qv_wire_writer_free(wr);
        wlog(w, "cannot encode a message: %s", e.msg);
        return false;
    }
    qv_wire_writer_free(wr);
    return send_out(w, &out);
}

static qv_wire_writer *writer(qv_wire_type t, size_t n)
{
    qv_wire_writer *wr = NULL;
    qv_err e;
    return qv_wire_writer_new(t, n, &wr, &e) ? NULL : wr;
}

static void send_error(worker *w, const char *code, const char *msg,
                       const char *re)
{
    qv_wire_out out;
    qv_err e;
    if (!qv_wire_error_reply(code, msg, re, &out, &e))
        send_out(w, &out);
}

/* ---- transfers ---------------------------------------------------------------- */

static xfer *find_down(worker *w, const char *hash)
{
    for (size_t i = 0; i < w->n_down; i++)
        if (!strcmp(w->down[i]->hash, hash))
            return w->down[i];
    return NULL;
}

static void xfer_free(xfer *x)
{
    if (x->f)
        fclose(x->f);
    free(x);
}

static void pop_front(xfer **q, size_t *n)
{
    memmove(q, q + 1, (*n - 1) * sizeof *q);
    (*n)--;
}

static void start_down(worker *w)
{
    if (!w->ready || !w->n_down)
        return;
    xfer *x = w->down[0];
    if (x->started)
        return;
    x->started = true;
    x->last_ms = now_ms();
    if (!x->f) {
        x->f = fopen(x->part, "wb");
        x->off = 0;
        crypto_hash_sha256_init(&x->sha);
        if (!x->f) {
            wlog(w, "cannot write %s: %s", x->part, strerror(errno));
            return;
        }
    }
    qv_wire_writer *wr = writer(QV_MSG_BLOB_GET, 3);
    qv_wire_kv_str(wr, "hash", x->hash);
    qv_wire_kv_u64(wr, "offset", x->off);
    qv_wire_kv_u64(wr, "credit", w->credit);
    send_w(w, wr);
}

static void queue_down(worker *w, const char *hash)
{
    if (find_down(w, hash) || w->n_down == MAX_XFERS)
        return;
    xfer *x = calloc(1, sizeof *x);
    if (!x)
        return;
    x->kind = X_DOWN;
    snprintf(x->hash, sizeof x->hash, "%s", hash);
    blob_path(w, hash, x->path, sizeof x->path);
    snprintf(x->part, sizeof x->part, "%s.part", x->path);
    w->down[w->n_down++] = x;
    wlog(w, "fetching blob %.16s", hash);
    start_down(w);
}

static void send_chunks(worker *w, xfer *x)
{
    /* (a blob the receiver holds whole, or an empty one, still ends with a
     * chunk of zero bytes at its end, which needs no credit) */
    while (!x->sent_all && (x->credit > 0 || x->off == x->size)) {
        uint64_t n = x->size - x->off;
        if (n > w->chunk)
            n = w->chunk;
        if (n > x->credit)
            n = x->credit;
        unsigned char *buf = malloc(n ? n : 1);
        if (!buf)
            return;
        if (n && (fseek(x->f, (long)x->off, SEEK_SET) ||
                  fread(buf, 1, n, x->f) != n)) {
            free(buf);
            wlog(w, "cannot read %s", x->path);
            return;
        }
        qv_wire_writer *wr = writer(QV_MSG_BLOB_CHUNK, 4);
        qv_wire_kv_str(wr, "hash", x->hash);
        qv_wire_kv_u64(wr, "offset", x->off);
        qv_wire_kv_u64(wr, "size", x->size);
        qv_wire_kv_bin(wr, "bytes", buf, n);
        send_w(w, wr);
        free(buf);
        x->off += n;
        x->credit -= n;
        x->sent_all = x->off == x->size;
    }
}

static void start_up(worker *w)
{
    if (!w->ready || !w->n_up)
        return;
    xfer *x = w->up[0];
    if (x->started)
        return;
    x->started = true;
    x->awaiting_put = true;
    x->off = 0;
    x->credit = 0;
    x->sent_all = false;
    if (!x->f)
        x->f = fopen(x->path, "rb");
    qv_wire_writer *wr = writer(QV_MSG_BLOB_PUT, 2);
    qv_wire_kv_str(wr, "hash", x->hash);
    qv_wire_kv_u64(wr, "size", x->size);
    send_w(w, wr);
}

static void queue_up(worker *w, job *j, xpurpose p, const char *path,
                     const char *hash, uint64_t size, int64_t step)
{
    xfer *x = calloc(1, sizeof *x);
    if (!x || w->n_up == MAX_XFERS) {
        free(x);
        return;
    }
    x->kind = X_UP;
    x->purpose = p;
    snprintf(x->hash, sizeof x->hash, "%s", hash);
    snprintf(x->path, sizeof x->path, "%s", path);
    x->size = size;
    x->job = j->id;
    x->attempt = j->attempt;
    x->step = step;
    if (p != P_CKPT)
        j->uploads++;
    w->up[w->n_up++] = x;
    start_up(w);
}

/* ---- jobs --------------------------------------------------------------------- */

static job *find_job(worker *w, uint64_t id, uint64_t attempt)
{
    for (int i = 0; i < MAX_JOBS; i++)
        if (w->jobs[i].state != J_FREE && w->jobs[i].id == id &&
            w->jobs[i].attempt == attempt)
            return &w->jobs[i];
    return NULL;
}

static void send_report(worker *w, job *j)
{
    if (!w->ready)
        return;
    j->last_report_ms = now_ms();
    qv_wire_writer *wr;
    if (j->ok) {
        wr = writer(QV_MSG_DONE, 4);
        qv_wire_kv_u64(wr, "job", j->id);
        qv_wire_kv_u64(wr, "attempt", j->attempt);
        qv_wire_kv_str(wr, "adapter", j->adapter_hash);
        qv_wire_kv_str(wr, "metrics", j->metrics_hash);
    } else {
        wr = writer(QV_MSG_FAILED, 4);
        qv_wire_kv_u64(wr, "job", j->id);
        qv_wire_kv_u64(wr, "attempt", j->attempt);
        qv_wire_kv_str(wr, "reason", j->reason);
        qv_wire_kv_bool(wr, "retry", j->retry);
    }
    send_w(w, wr);
}

/* The attempt's outcome is known: report it (until the ack). */
static void job_report(worker *w, job *j, bool ok, bool retry, const char *fmt,
                       ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
static void job_report(worker *w, job *j, bool ok, bool retry, const char *fmt,
                       ...)
{
    j->state = J_REPORT;
    j->ok = ok;
    j->retry = retry;
    j->reason[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->reason, sizeof j->reason, fmt, ap);
        va_end(ap);
    }
    if (ok)
        wlog(w, "job %llu attempt %llu: done (adapter %.16s)",
             (unsigned long long)j->id, (unsigned long long)j->attempt,
             j->adapter_hash);
    else
        wlog(w, "job %llu attempt %llu: failed%s: %s",
             (unsigned long long)j->id, (unsigned long long)j->attempt,
             retry ? " (to retry)" : "", j->reason);
    send_report(w, j);
}

static void job_free(worker *w, job *j)
{
    (void)w;
    if (j->th_started)
        pthread_join(j->th, NULL);
    pthread_mutex_destroy(&j->mu);
    rm_rf(j->dir);
    memset(j, 0, sizeof *j);
}

/* progress: the attempt's figures now; with ckpt, the checkpoint just
 * uploaded instead, with its step (the protocol's "a checkpoint at this
 * step"). */
static void send_progress_ex(worker *w, job *j, bool ckpt)
{
    if (!w->ready)
        return;
    pthread_mutex_lock(&j->mu);
    int64_t step = j->step, steps = j->steps;
    double loss = j->loss, tps = j->tps;
    uint64_t peak = j->peak;
    pthread_mutex_unlock(&j->mu);
    ckpt = ckpt && j->ckpt_hash[0];
    if (ckpt)
        step = j->ckpt_step;
    bool has_loss = isfinite(loss) && step > 0 && !ckpt;
    qv_wire_writer *wr = writer(QV_MSG_PROGRESS, 6 + has_loss + ckpt);
    qv_wire_kv_u64(wr, "job", j->id);
    qv_wire_kv_u64(wr, "attempt", j->attempt);
    qv_wire_kv_u64(wr, "step", (uint64_t)(step > 0 ? step : 0));
    qv_wire_kv_u64(wr, "steps", (uint64_t)(steps > 0 ? steps : 0));
    qv_wire_kv_f64(wr, "tokens_per_s", isfinite(tps) ? tps : 0.0);
    qv_wire_kv_u64(wr, "peak_bytes", peak);
    if (has_loss)
        qv_wire_kv_f64(wr, "loss", loss);
    if (ckpt)
        qv_wire_kv_str(wr, "checkpoint", j->ckpt_hash);
    send_w(w, wr);
    if (!ckpt) {
        j->last_progress_ms = now_ms();
        j->last_sent_step = step;
    }
}

static void send_progress(worker *w, job *j)
{
    send_progress_ex(w, j, false);
}

/* The training thread's progress callback. */
static int on_progress(void *user, const qv_train_progress *p)
{
    job *j = user;
    pthread_mutex_lock(&j->mu);
    j->step = p->step;
    j->steps = p->steps;
    if (p->phase && !strcmp(p->phase, "train")) {
        j->loss = p->loss;
        j->tps = p->tokens_per_s;
    }
    j->peak = p->peak_bytes;
    bool take = !j->snap_ready;
    pthread_mutex_unlock(&j->mu);
    /* a checkpoint written since the last call (after the previous step):
     * snapshot it (a hard link: the trainer replaces the file by rename)
     * for the network thread to upload */
    char ck[PATH_CAP + 32];
    struct stat sb;
    snprintf(ck, sizeof ck, "%s/checkpoint.gguf", j->out);
    if (take && p->phase && !strcmp(p->phase, "train") && !stat(ck, &sb) &&
        sb.st_ino != j->seen_ino) {
        j->seen_ino = sb.st_ino;
        /* written after the last step that is a multiple of ckpt_every
         * (this call may come a few steps later when the previous snapshot
         * was still being uploaded) */
        int64_t every = j->opts.train.ckpt_every > 0 ? j->opts.train.ckpt_every : 1;
        int64_t at = (p->step - 1) / every * every;
        char snap[PATH_CAP], hash[65];
        uint64_t size = 0;
        snprintf(snap, sizeof snap, "%s/ckpt-%lld.gguf", j->dir, (long long)at);
        if (!link_or_copy(ck, snap, NULL) &&
            !qv_sha256_file(snap, hash, &size, NULL)) {
            pthread_mutex_lock(&j->mu);
            snprintf(j->snap_path, sizeof j->snap_path, "%s", snap);
            memcpy(j->snap_hash, hash, 65);
            j->snap_size = size;
            j->snap_step = at;
            j->snap_ready = true;
            pthread_mutex_unlock(&j->mu);
        }
    }
    return j->stop ? 1 : 0;
}

static void *job_thread(void *arg)
{
    job *j = arg;
    qv_job_spec spec = {
        .model_path = NULL, .data_path = NULL, .out_dir = j->out,
        .resume_dir = j->resume[0] ? j->resume_dir : NULL,
        .tune_db = j->tune_db, .ref = j->ref, .tune_evals = j->tune_evals,
    };
    char mp[PATH_CAP], dp[PATH_CAP];
    /* blob paths were resolved by the network thread into dir/model, data */
    snprintf(mp, sizeof mp, "%s/model.gguf", j->dir);
    snprintf(dp, sizeof dp, "%s/data.jsonl", j->dir);
    spec.model_path = mp;
    spec.data_path = dp;
    qv_job_opts o = j->opts;
    o.train.progress = on_progress;
    o.train.progress_user = j;
    o.train.stop = &j->stop;
    qv_train_result r;
    qv_err e = {0};
    qv_status s = qv_job_run(j->dev, &spec, &o, &r, &e);
    free(r.losses);
    char path[PATH_CAP + 32];
    char ah[65] = "", mh[65] = "", ch[65] = "";
    uint64_t as = 0, ms = 0, cs = 0;
    if (!s && !r.interrupted) {
        snprintf(path, sizeof path, "%s/adapter.gguf", j->out);
        s = qv_sha256_file(path, ah, &as, &e);
        snprintf(path, sizeof path, "%s/metrics.json", j->out);
        if (!s)
            s = qv_sha256_file(path, mh, &ms, &e);
    }
    if (!s && r.interrupted) {
        snprintf(path, sizeof path, "%s/checkpoint.gguf", j->out);
        if (qv_sha256_file(path, ch, &cs, NULL))
            ch[0] = '\0';
    }
    pthread_mutex_lock(&j->mu);
    j->rs = s;
    j->rerr = e;
    j->interrupted = r.interrupted;
    memcpy(j->adapter_hash, ah, 65);
    memcpy(j->metrics_hash, mh, 65);
    memcpy(j->final_ckpt_hash, ch, 65);
    j->adapter_size = as;
    j->metrics_size = ms;
    j->final_ckpt_size = cs;
    j->final_step = r.steps_done;
    j->finished = true;
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* All blobs of a fetching job present: link them into its folder and start
 * its thread. */
static void job_try_start(worker *w, job *j)
{
    if (bench_running(w, j->dev))
        return; /* the device is benchmarking: started when it ends */
    const char *need[3] = {j->model, j->data, j->resume[0] ? j->resume : NULL};
    bool all = true;
    for (int i = 0; i < 3; i++)
        if (need[i] && !blob_have(w, need[i])) {
            all = false;
            queue_down(w, need[i]);
        }
    if (!all)
        return;
    qv_err e = {0};
    char src[PATH_CAP], dst[PATH_CAP + 32];
    static const char *names[3] = {"model.gguf", "data.jsonl",
                                   "resume/checkpoint.gguf"};
    qv_status s = QV_OK;
    for (int i = 0; i < 3 && !s; i++) {
        if (!need[i])
            continue;
        blob_path(w, need[i], src, sizeof src);
        snprintf(dst, sizeof dst, "%s/%s", j->dir, names[i]);
        s = link_or_copy(src, dst, &e);
    }
    if (s) {
        job_report(w, j, false, true, "worker: %s", e.msg);
        return;
    }
    j->state = J_RUN;
    j->stop = 0;
    if (pthread_create(&j->th, NULL, job_thread, j)) {
        job_report(w, j, false, true, "worker: cannot start a thread");
        return;
    }
    j->th_started = true;
    wlog(w, "job %llu attempt %llu: running on %s%s",
         (unsigned long long)j->id, (unsigned long long)j->attempt, j->device,
         j->resume[0] ? " (resumed)" : "");
}

/* A download failed: every job waiting for it fails. */
static void down_failed(worker *w, const char *hash, const char *why)
{
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &w->jobs[i];
        if (j->state == J_FETCH &&
            (!strcmp(j->model, hash) || !strcmp(j->data, hash) ||
             !strcmp(j->resume, hash)))
            job_report(w, j, false, true, "blob %.16s: %s", hash, why);
    }
}

/* The msgpack options map as the JSON object qv_job_opts_parse reads. */
static qv_status options_json(const msgpack_object *m, char **out, qv_err *err)
{
    *out = NULL;
    if (!m)
        return QV_OK;
    json_t *o = json_object();
    for (uint32_t i = 0; o && i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue;
        char key[QV_WIRE_MAX_KEY + 1];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.via.str.size,
                 kv->key.via.str.ptr);
        const msgpack_object *v = &kv->val;
        json_t *jv = NULL;
        switch (v->type) {
        case MSGPACK_OBJECT_BOOLEAN: jv = json_boolean(v->via.boolean); break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            jv = v->via.u64 > (uint64_t)INT64_MAX ? json_real((double)v->via.u64)
                                                  : json_integer((json_int_t)v->via.u64);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: jv = json_integer(v->via.i64); break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: jv = json_real(v->via.f64); break;
        case MSGPACK_OBJECT_STR:
            jv = json_stringn(v->via.str.ptr, v->via.str.size);
            break;
        case MSGPACK_OBJECT_NIL: continue;
        default:
            json_decref(o);
            return qv_fail(err, QV_ERR_INVALID,
                           "job options: '%s' must be a scalar", key);
        }
        json_object_set_new(o, key, jv);
    }
    *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return *out ? QV_OK : qv_fail(err, QV_ERR_NOMEM, "out of memory");
}

static qv_device *my_device(worker *w, const char *id)
{
    for (size_t i = 0; i < w->n_use; i++)
        if (!strcmp(w->use[i]->info.id, id))
            return w->use[i];
    return NULL;
}

static void on_assign(worker *w, const msgpack_object *b)
{
    uint64_t id = 0, attempt = 0, every = 0;
    char device[QV_WIRE_MAX_NAME + 1] = "", model[HASH_CAP] = "",
         data[HASH_CAP] = "", resume[HASH_CAP] = "";
    qv_wire_get_u64(b, "job", &id, NULL);
    qv_wire_get_u64(b, "attempt", &attempt, NULL);
    qv_wire_get_str(b, "device", device, sizeof device, NULL);
    qv_wire_get_str(b, "model", model, sizeof model, NULL);
    qv_wire_get_str(b, "data", data, sizeof data, NULL);
    qv_wire_get_str(b, "resume", resume, sizeof resume, NULL);
    qv_wire_get_u64(b, "checkpoint_every", &every, NULL);
    job *j = find_job(w, id, attempt);
    if (j) { /* the scheduler repeats itself (a reconnect): answer */
        if (j->state != J_REPORT)
            send_progress(w, j);
        return;
    }
    j = NULL;
    for (int i = 0; i < MAX_JOBS && !j; i++)
        if (w->jobs[i].state == J_FREE)
            j = &w->jobs[i];
    job tmp;
    job *slot = j ? j : &tmp;
    memset(slot, 0, sizeof *slot);
    slot->id = id;
    slot->attempt = attempt;
    pthread_mutex_init(&slot->mu, NULL);
    snprintf(slot->device, sizeof slot->device, "%s", device);
    memcpy(slot->model, model, sizeof model);
    memcpy(slot->data, data, sizeof data);
    memcpy(slot->resume, resume, sizeof resume);
    qv_wire_get_u64(b, "resume_step", &slot->resume_step, NULL);
    slot->step = (int64_t)slot->resume_step;
    slot->loss = NAN;
    slot->state = J_FETCH;
    if (!j) {
        job_report(w, slot, false, true, "worker: too many jobs at once");
        pthread_mutex_destroy(&slot->mu);
        return; /* (not kept: the scheduler requeues on the lease) */
    }
    wlog(w, "job %llu attempt %llu: assigned to %s", (unsigned long long)id,
         (unsigned long long)attempt, device);
    slot->dev = my_device(w, device);
    slot->tune_db = w->tcache ? w->o->tune_db : NULL;
    slot->ref = qv_devlist_find(w->devs, "ref");
    slot->tune_evals = w->o->no_tune ? 0
                       : w->o->tune_budget_evals ? w->o->tune_budget_evals : 12;
    if (!slot->dev) {
        job_report(w, j, false, true, "worker: no device '%s' here", device);
        return;
    }
    for (int i = 0; i < MAX_JOBS; i++) {
        job *o = &w->jobs[i];
        if (o != j && o->state >= J_FETCH && o->state <= J_UPLOAD &&
            o->dev == slot->dev) {
            job_report(w, j, false, true, "worker: device %s is busy with job "
                       "%llu", device, (unsigned long long)o->id);
            return;
        }
    }
    qv_err e = {0};
    char *json = NULL;
    const msgpack_object *opts = NULL;
    qv_wire_get_map(b, "options", &opts, NULL);
    qv_status s = options_json(opts, &json, &e);
    if (!s)
        s = qv_job_opts_parse(json, &j->opts, &e);
    free(json);
    if (s) {
        job_report(w, j, false, false, "%s", e.msg);
        return;
    }
    /* the job's own ckpt_every wins; else the scheduler's cadence */
    if (every && j->opts.train.ckpt_every <= 0)
        j->opts.train.ckpt_every = (int64_t)every;
    j->steps = j->opts.train.steps;
    snprintf(j->dir, sizeof j->dir, "%s/%llu-%llu", w->jobs_dir,
             (unsigned long long)id, (unsigned long long)attempt);
    snprintf(j->out, sizeof j->out, "%s/out", j->dir);
    snprintf(j->resume_dir, sizeof j->resume_dir, "%s/resume", j->dir);
    rm_rf(j->dir);
    if ((s = mkdir_p(j->out, &e)) || (s = mkdir_p(j->resume_dir, &e))) {
        job_report(w, j, false, true, "worker: %s", e.msg);
        return;
    }
    send_progress(w, j);
    job_try_start(w, j);
}

static void on_abort(worker *w, const msgpack_object *b)
{
    uint64_t id = 0, attempt = 0;
    char reason[QV_WIRE_MAX_TEXT + 1] = "cancelled";
    qv_wire_get_u64(b, "job", &id, NULL);
    qv_wire_get_u64(b, "attempt", &attempt, NULL);
    qv_wire_get_str(b, "reason", reason, sizeof reason, NULL);
    job *j = find_job(w, id, attempt);
    if (!j || j->state == J_REPORT)
        return;
    wlog(w, "job %llu attempt %llu: abort (%s)", (unsigned long long)id,
         (unsigned long long)attempt, reason);
    j->aborted = true;
    snprintf(j->abort_reason, sizeof j->abort_reason, "%s", reason);
    if (j->state == J_RUN)
        j->stop = 2; /* abandon: at the next micro-batch, no checkpoint */
    else
        job_report(w, j, false, false, "aborted: %.1000s", j->abort_reason);
}

/* Polls the jobs: snapshots to upload, finished threads, progress,
 * reports to resend. */
static void service_jobs(worker *w)
{
    double t = now_ms();
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &w->jobs[i];
        if (j->state == J_RUN) {
            pthread_mutex_lock(&j->mu);
            bool snap = j->snap_ready, fin = j->finished;
            int64_t step = j->step;
            pthread_mutex_unlock(&j->mu);
            if (snap) {
                queue_up(w, j, P_CKPT, j->snap_path, j->snap_hash, j->snap_size,
                         j->snap_step);
                pthread_mutex_lock(&j->mu);
                j->snap_ready = false;
                pthread_mutex_unlock(&j->mu);
            }
            if ((step != j->last_sent_step && t - j->last_progress_ms >= PROGRESS_MIN_MS) ||
                t - j->last_progress_ms >= PROGRESS_MAX_MS)
                send_progress(w, j);
            if (!fin)
                continue;
            pthread_join(j->th, NULL);
            j->th_started = false;
            send_progress(w, j);
            char path[PATH_CAP + 32];
            if (j->rs) {
                job_report(w, j, false, j->rs != QV_ERR_INVALID, "%s",
                           j->rerr.msg);
            } else if (j->aborted) {
                job_report(w, j, false, false, "aborted: %.1000s", j->abort_reason);
            } else if (j->interrupted) {
                /* shutting down: hand back the checkpoint, then the job */
                j->state = J_UPLOAD;
                if (j->final_ckpt_hash[0] && w->o->stop && *w->o->stop < 2) {
                    snprintf(path, sizeof path, "%s/checkpoint.gguf", j->out);
                    queue_up(w, j, P_FINAL_CKPT, path, j->final_ckpt_hash,
                             j->final_ckpt_size, j->final_step);
                }
            } else {
                j->state = J_UPLOAD;
                snprintf(path, sizeof path, "%s/adapter.gguf", j->out);
                queue_up(w, j, P_RESULT, path, j->adapter_hash, j->adapter_size, 0);
                snprintf(path, sizeof path, "%s/metrics.json", j->out);
                queue_up(w, j, P_RESULT, path, j->metrics_hash, j->metrics_size, 0);
            }
        }
        if (j->state == J_UPLOAD && j->uploads == 0) {
            if (j->interrupted)
                job_report(w, j, false, true, "worker shutting down (%s at "
                           "step %lld)", j->ckpt_hash[0] ? "checkpoint uploaded"
                           : "no checkpoint", (long long)j->ckpt_step);
            else
                job_report(w, j, true, false, NULL);
        } else if (j->state == J_REPORT && t - j->last_report_ms >= REPORT_EVERY_MS) {
            send_report(w, j);
        }
    }
}

static void up_done(worker *w, xfer *x)
{
    job *j = find_job(w, x->job, x->attempt);
    if (j && x->purpose != P_CKPT && j->uploads > 0)
        j->uploads--;
    if (j && (x->purpose == P_CKPT || x->purpose == P_FINAL_CKPT)) {
        memcpy(j->ckpt_hash, x->hash, 65);
        j->ckpt_step = x->step;
        wlog(w, "job %llu: checkpoint at step %lld uploaded",
             (unsigned long long)j->id, (long long)x->step);
        send_progress_ex(w, j, true);
    }
    if (x->purpose == P_CKPT)
        unlink(x->path);
}

/* ---- receiving ------------------------------------------------------------------ */

/* The front download cannot be written (a full cache disk, a file size
 * limit): the transfer ends, its partial file goes, and every job waiting
 * for the blob fails with retry so another worker takes it; the reason,
 * with the free space, reaches `qvac logs`. */
static void down_write_failed(worker *w, xfer *x, int e, uint64_t need)
{
    struct statvfs v;
    char room[640] = "";
    if (statvfs(w->blob_dir, &v) == 0)
        snprintf(room, sizeof room, "; %llu MiB free in %s",
                 (unsigned long long)((uint64_t)v.f_bavail * v.f_frsize >> 20), w->blob_dir);
    char why[1024];
    if (e)
        snprintf(why, sizeof why, "this worker cannot write it to its cache (%s%s); "
                 "another worker will take the job", strerror(e), room);
    else
        snprintf(why, sizeof why, "this worker's cache disk has no room for its %llu "
                 "bytes%s; another worker will take the job", (unsigned long long)need, room);
    wlog(w, "blob %.16s: %s", x->hash, why);
    if (x->f)
        fclose(x->f);
    x->f = NULL;
    unlink(x->part);
    pop_front(w->down, &w->n_down);
    down_failed(w, x->hash, why);
    xfer_free(x);
    start_down(w);
}

static void on_chunk(worker *w, const msgpack_object *b)
{
    char hash[HASH_CAP] = "";
    uint64_t off = 0, size = 0;
    const void *bytes = NULL;
    size_t n = 0;
    qv_wire_get_str(b, "hash", hash, sizeof hash, NULL);
    qv_wire_get_u64(b, "offset", &off, NULL);
    qv_wire_get_u64(b, "size", &size, NULL);
    qv_wire_get_bin(b, "bytes", &bytes, &n, QV_WIRE_MAX_CHUNK, NULL);
    xfer *x = w->n_down ? w->down[0] : NULL;
    if (!x || strcmp(x->hash, hash) || !x->f)
        return; /* a late chunk of a transfer given up */
    if (off != x->off) {
        /* a gap (a chunk lost): ask again from where we are, once; chunks
         * already in flight are dropped until the transfer is back */
        if (off > x->off && !x->resync) {
            send_error(w, "invalid", "wire: blob_chunk.offset: not where the "
                       "transfer is", "blob_chunk");
            x->resync = true;
            x->started = false;
            start_down(w);
        }
        return;
    }
    x->resync = false;
    x->last_ms = now_ms();
    if (off == 0 && size > 0) { /* the whole size is known now: is there room? */
        struct statvfs v;
        if (statvfs(w->blob_dir, &v) == 0 &&
            (uint64_t)v.f_bavail * v.f_frsize < size) {
            down_write_failed(w, x, 0, size);
            return;
        }
    }
    errno = 0;
    if (n && (fwrite(bytes, 1, n, x->f) != n || fflush(x->f) != 0)) {
        down_write_failed(w, x, errno ? errno : EIO, 0);
        return;
    }
    crypto_hash_sha256_update(&x->sha, bytes, n);
    x->off += n;
    x->size = size;
    if (x->off < size) {
        qv_wire_writer *wr = writer(QV_MSG_BLOB_CREDIT, 2);
        qv_wire_kv_str(wr, "hash", hash);
        qv_wire_kv_u64(wr, "credit", n ? n : w->chunk);
        send_w(w, wr);
        return;
    }
    /* complete: check it */
    unsigned char d[crypto_hash_sha256_BYTES];
    char hex[65];
    crypto_hash_sha256_final(&x->sha, d);
    hex_of(d, sizeof d, hex);
    int bad = fclose(x->f);
    x->f = NULL;
    pop_front(w->down, &w->n_down);
    if (bad || strcmp(hex, x->hash)) {
        unlink(x->part);
        wlog(w, "blob %.16s rejected: %s", x->hash,
             bad ? "cannot write it" : "its bytes do not have its hash");
        down_failed(w, x->hash, bad ? "cannot write it to the cache"
                                    : "hash mismatch: the bytes received do "
                                      "not have the blob's SHA-256");
    } else if (rename(x->part, x->path)) {
        unlink(x->part);
        down_failed(w, x->hash, "cannot store it in the cache");
    } else {
        wlog(w, "blob %.16s fetched (%llu bytes)", x->hash,
             (unsigned long long)x->size);
        blob_evict(w);
        for (int i = 0; i < MAX_JOBS; i++)
            if (w->jobs[i].state == J_FETCH)
                job_try_start(w, &w->jobs[i]);
    }
    xfer_free(x);
    start_down(w);
}

static void on_credit(worker *w, const msgpack_object *b, bool ok)
{
    char hash[HASH_CAP] = "";
    uint64_t credit = 0;
    qv_wire_get_str(b, "hash", hash, sizeof hash, NULL);
    xfer *x = w->n_up ? w->up[0] : NULL;
    if (!x || strcmp(x->hash, hash))
        return;
    if (!ok) {
        qv_wire_get_u64(b, "credit", &credit, NULL);
        uint64_t off = 0;
        if (qv_wire_get_u64(b, "offset", &off, NULL) == QV_OK) {
            /* the answer to blob_put: the scheduler holds [0, off) already
             * (a cut upload it kept); the stream starts again there */
            x->awaiting_put = false;
            x->off = off < x->size ? off : x->size;
            x->credit = credit;
            x->sent_all = false;
        } else if (x->awaiting_put) {
            return; /* credit for chunks sent before blob_put went again */
        } else {
            x->credit += credit;
        }
        if (x->f)
            send_chunks(w, x);
        return;
    }
    pop_front(w->up, &w->n_up);
    up_done(w, x);
    xfer_free(x);
    start_up(w);
}

static void tune_progress_of(worker *w, uint64_t *done, uint64_t *total)
{
    pthread_mutex_lock(&w->tune_mu);
    *done = w->tune_done;
    *total = w->tune_total;
    pthread_mutex_unlock(&w->tune_mu);
}

/* enroll.tuning / heartbeat.tuning: the progress while the worker tunes
 * (done < total, so the scheduler keeps it out of dispatch). */
static void kv_tuning(worker *w, qv_wire_writer *wr)
{
    uint64_t done, total;
    tune_progress_of(w, &done, &total);
    qv_wire_kv_map(wr, "tuning", 2);
    qv_wire_kv_u64(wr, "done", done < total ? done : total - 1);
    qv_wire_kv_u64(wr, "total", total);
}

static void send_enroll(worker *w, bool with_token)
{
    size_t nf = 3 + (with_token && w->o->token) + w->tune_running;
    qv_wire_writer *wr = writer(QV_MSG_ENROLL, nf);
    if (w->tune_running)
        kv_tuning(w, wr);
    if (with_token && w->o->token)
        qv_wire_kv_str(wr, "token", w->o->token);
    qv_wire_kv_str(wr, "key", w->kp.pub);
    qv_wire_kv_str(wr, "name", w->name);
    qv_wire_kv_array(wr, "devices", w->n_use);
    for (size_t i = 0; i < w->n_use; i++) {
        const qv_device_info *di = &w->use[i]->info;
        qv_wire_w_map(wr, 5);
        qv_wire_kv_str(wr, "id", di->id);
        qv_wire_kv_str(wr, "backend", di->backend);
        char nm[QV_WIRE_MAX_NAME + 1];
        snprintf(nm, sizeof nm, "%.120s", di->name);
        qv_wire_kv_str(wr, "name", nm);
        qv_wire_kv_u64(wr, "memory", di->global_mem_bytes);
        /* while the tuning thread fills them, no figures yet */
        int nt = w->tune_running ? 0 : w->n_tuned[i];
        qv_wire_kv_map(wr, "tuned", (size_t)nt);
        for (int k = 0; k < nt; k++)
            qv_wire_kv_f64(wr, w->tuned_name[i][k], w->tuned[i][k]);
    }
    send_w(w, wr);
}

static void send_heartbeat(worker *w)
{
    size_t n = 0;
    for (int i = 0; i < MAX_JOBS; i++)
        n += w->jobs[i].state >= J_FETCH && w->jobs[i].state <= J_UPLOAD;
    qv_wire_writer *wr = writer(QV_MSG_HEARTBEAT, 1 + w->tune_running);
    if (w->tune_running)
        kv_tuning(w, wr);
    qv_wire_kv_array(wr, "running", n);
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &w->jobs[i];
        if (!(j->state >= J_FETCH && j->state <= J_UPLOAD))
            continue;
        pthread_mutex_lock(&j->mu);
        int64_t step = j->step;
        pthread_mutex_unlock(&j->mu);
        qv_wire_w_map(wr, 4);
        qv_wire_kv_u64(wr, "job", j->id);
        qv_wire_kv_u64(wr, "attempt", j->attempt);
        qv_wire_kv_u64(wr, "step", (uint64_t)(step > 0 ? step : 0));
        qv_wire_kv_str(wr, "device", j->device);
    }
    send_w(w, wr);
    w->last_hb_ms = now_ms();
}

/* Enrolled: the session is usable. Resume whatever was cut. */
/* ---- the device benchmark ------------------------------------------------ */

static void bench_log(void *user, const char *line)
{
    (void)user;
    (void)line; /* the worker's log gets the start and the outcome */
}

static void *bench_thread(void *arg)
{
    wbench *b = arg;
    qv_err e = {0};
    qv_tune_cache *cache = NULL;
    if (b->tune_db && qv_tune_cache_open(b->tune_db, 0, 5000, &cache, &e))
        cache = NULL; /* run the default configurations */
    qv_bench_opts o = {.model = b->model, .cache = cache,
                       .ref = cache && b->tune_evals ? b->ref : NULL,
                       .tune_evals = b->tune_evals, .stop = &b->stop, .log = bench_log};
    qv_bench_result r;
    memset(&e, 0, sizeof e);
    qv_status s = qv_bench_run(b->dev, &o, &r, &e);
    qv_tune_cache_destroy(&cache);
    char *js = NULL;
    if (!s) {
        json_t *j = qv_bench_to_json(&r);
        js = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        if (!js)
            s = qv_fail(&e, QV_ERR_NOMEM, "bench: out of memory");
        else if (strlen(js) > QV_WIRE_MAX_BENCH)
            s = qv_fail(&e, QV_ERR_INVALID, "bench: the result is over %d bytes",
                        QV_WIRE_MAX_BENCH);
    }
    pthread_mutex_lock(&b->mu);
    b->rs = s;
    b->err = e;
    b->json = s ? NULL : js;
    b->finished = true;
    pthread_mutex_unlock(&b->mu);
    if (s)
        free(js);
    return NULL;
}

/* A kept result of this device, model and version, read back and checked
 * as the scheduler will; NULL when there is none (or it is not valid). */
static char *bench_kept(wbench *b)
{
    json_error_t je;
    json_t *j = json_load_file(b->path, JSON_REJECT_DUPLICATES, &je);
    qv_bench_result r;
    char *js = NULL;
    if (j && !qv_bench_from_json(j, &r, NULL) &&
        !strcmp(r.fingerprint, b->dev->info.fingerprint) && !strcmp(r.version, QV_VERSION))
        js = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return js;
}

static void bench_send(worker *w, wbench *b)
{
    if (!w->ready || !b->json)
        return;
    qv_wire_writer *wr = writer(QV_MSG_BENCH, 1);
    qv_wire_kv_str(wr, "result", b->json);
    send_w(w, wr);
    b->last_send_ms = now_ms();
}

static bool device_has_job(worker *w, const qv_device *d)
{
    for (int i = 0; i < MAX_JOBS; i++)
        if (w->jobs[i].state != J_FREE && w->jobs[i].dev == d)
            return true;
    return false;
}

static bool bench_running(worker *w, const qv_device *d)
{
    for (size_t i = 0; i < w->n_use; i++)
        if (w->bench[i].dev == d && w->bench[i].state == B_RUN)
            return true;
    return false;
}

static void job_try_start(worker *w, job *j);

static void service_bench(worker *w)
{
    const char *model = w->o->bench_model ? w->o->bench_model : "builtin";
    for (size_t i = 0; i < w->n_use; i++) {
        wbench *b = &w->bench[i];
        qv_device *d = w->use[i];
        if (w->o->no_bench && b->state == B_NONE && !b->force)
            continue; /* only what the scheduler asks for */
        if (b->state == B_NONE) {
            /* after the worker is visible, and on a device with no job */
            if (!w->ready || w->shutting_down || w->tune_running || device_has_job(w, d))
                continue;
            b->dev = d;
            b->model = b->model_req[0] ? b->model_req : model;
            char dir[BASE_CAP + 8];
            snprintf(dir, sizeof dir, "%s/bench", w->cache_dir);
            snprintf(b->path, sizeof b->path, "%s/%s-%s-%s.json", dir,
                     d->info.fingerprint, b->model, QV_VERSION);
            if (!b->force && (b->json = bench_kept(b))) {
                b->state = B_SEND;
                bench_send(w, b);
                continue;
            }
            mkdir_p(dir, NULL);
            b->tune_db = w->tcache ? w->o->tune_db : NULL;
            b->ref = qv_devlist_find(w->devs, "ref");
            b->tune_evals = w->o->no_tune ? 0 : 4;
            b->stop = 0;
            b->finished = false;
            pthread_mutex_init(&b->mu, NULL);
            if (pthread_create(&b->th, NULL, bench_thread, b)) {
                pthread_mutex_destroy(&b->mu);
                wlog(w, "bench %s on %s: cannot start a thread", model, d->info.id);
                b->state = B_FAILED;
                continue;
            }
            b->th_started = true;
            b->state = B_RUN;
            b->force = false;
            wlog(w, "bench %s on %s: running (ternary, then 16-bit weights)", b->model,
                 d->info.id);
        } else if (b->state == B_RUN) {
            pthread_mutex_lock(&b->mu);
            bool fin = b->finished;
            pthread_mutex_unlock(&b->mu);
            if (!fin)
                continue;
            pthread_join(b->th, NULL);
            b->th_started = false;
            pthread_mutex_destroy(&b->mu);
            if (b->rs) {
                wlog(w, "bench %s on %s: %s", b->model, d->info.id, b->err.msg);
                b->state = B_FAILED;
            } else {
                char tmp[PATH_CAP + 8];
                snprintf(tmp, sizeof tmp, "%s.tmp", b->path);
                FILE *f = fopen(tmp, "w");
                if (f && fputs(b->json, f) >= 0 && fclose(f) == 0)
                    rename(tmp, b->path);
                else if (f)
                    fclose(f);
                wlog(w, "bench %s on %s: done; sending it to the scheduler", b->model,
                     d->info.id);
                b->state = B_SEND;
                bench_send(w, b);
            }
            /* jobs that waited for the device */
            for (int k = 0; k < MAX_JOBS; k++)
                if (w->jobs[k].state == J_FETCH && w->jobs[k].dev == d)
                    job_try_start(w, &w->jobs[k]);
        } else if (b->state == B_SEND && now_ms() - b->last_send_ms >= BENCH_RESEND_MS) {
            bench_send(w, b);
        }
    }
}

/* The scheduler asks for a benchmark of one device now (`qvac submit
 * --bench`): measured again even when a result is kept. */
static void on_bench_request(worker *w, const msgpack_object *body)
{
    char dev[QV_WIRE_MAX_NAME + 1] = "", model[16] = "";
    int32_t bb, bs, bn;
    qv_wire_get_str(body, "device", dev, sizeof dev, NULL);
    qv_wire_get_str(body, "model", model, sizeof model, NULL);
    if (qv_bench_defaults(model, &bb, &bs, &bn, NULL)) {
        send_error(w, "invalid", "bench_request: unknown model", "bench_request");
        return;
    }
    for (size_t i = 0; i < w->n_use; i++) {
        wbench *b = &w->bench[i];
        if (strcmp(w->use[i]->info.id, dev))
            continue;
        if (b->state == B_RUN) {
            wlog(w, "bench on %s: already running; the request waits for it", dev);
            return;
        }
        free(b->json);
        b->json = NULL;
        snprintf(b->model_req, sizeof b->model_req, "%s", model);
        b->force = true;
        b->state = B_NONE;
        wlog(w, "bench %s on %s: asked by the scheduler", model, dev);
        return;
    }
    send_error(w, "not_found", "bench_request: no such device here", "bench_request");
}

static void on_bench_ok(worker *w, const msgpack_object *body)
{
    char dev[QV_WIRE_MAX_NAME + 1] = "";
    qv_wire_get_str(body, "device", dev, sizeof dev, NULL);
    for (size_t i = 0; i < w->n_use; i++) {
        wbench *b = &w->bench[i];
        if (b->state == B_SEND && b->dev && !strcmp(b->dev->info.id, dev)) {
            b->state = B_DONE;
            free(b->json);
            b->json = NULL;
            wlog(w, "bench on %s: stored by the scheduler", dev);
        }
    }
}

static void on_ready(worker *w)
{
    w->ready = true;
    w->backoff_ms = 0;
    send_heartbeat(w);
    if (w->n_down)
        w->down[0]->started = false;
    if (w->n_up)
        w->up[0]->started = false;
    start_down(w);
    start_up(w);
    ask_tunings(w);
    for (size_t i = 0; i < w->n_use; i++)
        if (w->bench[i].state == B_SEND)
            bench_send(w, &w->bench[i]);
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &w->jobs[i];
        if (j->state == J_REPORT)
            send_report(w, j);
        else if (j->state != J_FREE) {
            send_progress_ex(w, j, true);
            send_progress(w, j);
        }
    }
}

static void handle(worker *w, qv_wire_msg *m)
{
    const msgpack_object *b = qv_wire_msg_body(m);
    qv_wire_type t = qv_wire_msg_type(m);
    switch (t) {
    case QV_MSG_WELCOME: {
        uint64_t v = 0;
        bool enrolled = false;
        if (!qv_wire_get_u64(b, "lease_ms", &v, NULL) && v >= 300)
            w->lease_ms = v;
        if (!qv_wire_get_u64(b, "chunk", &v, NULL) && v > 0 &&
            v <= QV_WIRE_MAX_CHUNK)
            w->chunk = v;
        if (!qv_wire_get_u64(b, "credit", &v, NULL) && v > 0)
            w->credit = v;
        qv_wire_get_bool(b, "enrolled", &enrolled, NULL);
        char sname[QV_WIRE_MAX_NAME + 1] = "";
        qv_wire_get_str(b, "scheduler", sname, sizeof sname, NULL);
        wlog(w, "connected to scheduler %s (lease %llu ms)", sname,
             (unsigned long long)w->lease_ms);
        w->welcomed = true;
        send_enroll(w, !enrolled);
        break;
    }
    case QV_MSG_ENROLLED: {
        uint64_t id = 0;
        qv_wire_get_u64(b, "worker", &id, NULL);
        if (!w->ready)
            wlog(w, "enrolled as worker %llu with %zu device(s)",
                 (unsigned long long)id, w->n_use);
        if (!w->o->insecure && w->o->token && w->server_pub[0]) {
            char p[PATH_CAP];
            snprintf(p, sizeof p, "%s/scheduler.pub", w->cache_dir);
            qv_keys_write_public(p, w->server_pub, NULL);
        }
        /* a first enroll, or again on this connection because the
         * scheduler asked (it restarted, or took this worker for lost):
         * say what runs where and resume what was cut (an upload the old
         * scheduler never answered, reports it never acknowledged) */
        if (!w->ready || w->rejoining)
            on_ready(w);
        w->rejoining = false;
        break;
    }
    case QV_MSG_HEARTBEAT: {
        /* the scheduler does not know this connection (it restarted, or
         * took the worker for lost): enroll again; the next heartbeat
         * renews the running attempts */
        bool again = false;
        qv_wire_get_bool(b, "enroll", &again, NULL);
        if (again && w->ready) {
            wlog(w, "the scheduler asks this worker to enroll again (it restarted "
                 "or lost sight of it)");
            w->rejoining = true;
            send_enroll(w, false);
        }
        break;
    }
    case QV_MSG_ASSIGN:
        if (!w->ready)
            break;
        if (w->shutting_down) {
            /* not now: hand it back at once */
            uint64_t id = 0, at = 0;
            qv_wire_get_u64(b, "job", &id, NULL);
            qv_wire_get_u64(b, "attempt", &at, NULL);
            qv_wire_writer *wr = writer(QV_MSG_FAILED, 4);
            qv_wire_kv_u64(wr, "job", id);
            qv_wire_kv_u64(wr, "attempt", at);
            qv_wire_kv_str(wr, "reason", "worker shutting down");
            qv_wire_kv_bool(wr, "retry", true);
            send_w(w, wr);
            break;
        }
        on_assign(w, b);
        break;
    case QV_MSG_ABORT: on_abort(w, b); break;
    case QV_MSG_BENCH_OK: on_bench_ok(w, b); break;
    case QV_MSG_BENCH_REQUEST: on_bench_request(w, b); break;
    case QV_MSG_TUNINGS: on_tunings(w, b); break;
    case QV_MSG_TUNINGS_OK: break;
    case QV_MSG_ACK: {
        uint64_t id = 0, at = 0;
        qv_wire_get_u64(b, "job", &id, NULL);
        qv_wire_get_u64(b, "attempt", &at, NULL);
        job *j = find_job(w, id, at);
        if (j && j->state == J_REPORT)
            job_free(w, j);
        break;
    }
    case QV_MSG_BLOB_CHUNK: on_chunk(w, b); break;
    case QV_MSG_BLOB_CREDIT: on_credit(w, b, false); break;
    case QV_MSG_BLOB_OK: on_credit(w, b, true); break;
    case QV_MSG_BLOB_GET: /* the worker serves no blobs */
        send_error(w, "not_found", "this worker holds no blobs for others",
                   "blob_get");
        break;
    case QV_MSG_ERROR: {
        char code[64] = "", msg[QV_WIRE_MAX_TEXT + 1] = "", re[32] = "";
        qv_wire_get_str(b, "code", code, sizeof code, NULL);
        qv_wire_get_str(b, "message", msg, sizeof msg, NULL);
        qv_wire_get_str(b, "re", re, sizeof re, NULL);
        wlog(w, "scheduler: %s: %s%s%s%s", code, msg, re[0] ? " (re " : "",
             re, re[0] ? ")" : "");
        if (!strcmp(code, "denied") &&
            (!strcmp(re, "hello") || !strcmp(re, "enroll") || !re[0])) {
            w->fatal = true;
            qv_fail(&w->fatal_err, QV_ERR_INVALID,
                    "the scheduler refused this worker: %s%s", msg,
                    w->o->token ? "" : " (enroll it with --token T, from "
                                       "`qvac token`)");
        } else if (!strcmp(re, "tunings_get")) {
            if (w->tunings_waiting > 0)
                w->tunings_waiting--;
        } else if (!strcmp(re, "bench")) {
            /* refused (or a scheduler without benches): not sent again */
            for (size_t i = 0; i < w->n_use; i++)
                if (w->bench[i].state == B_SEND) {
                    w->bench[i].state = B_FAILED;
                    free(w->bench[i].json);
                    w->bench[i].json = NULL;
                }
        } else if (!strcmp(re, "blob_get") && w->n_down) {
            xfer *x = w->down[0];
            pop_front(w->down, &w->n_down);
            if (x->f) {
                fclose(x->f);
                x->f = NULL;
            }
            unlink(x->part);
            down_failed(w, x->hash, msg);
            xfer_free(x);
            start_down(w);
        } else if ((!strcmp(re, "blob_put") || !strcmp(re, "blob_chunk")) &&
                   w->n_up) {
            xfer *x = w->up[0];
            /* a chunk sent before blob_put went again (into a scheduler
             * that restarted, say): refused, and nothing to do about it */
            if (!strcmp(re, "blob_chunk") && x->awaiting_put)
                break;
            if (++x->tries < 3) {
                x->started = false;
                start_up(w);
            } else {
                pop_front(w->up, &w->n_up);
                job *j = find_job(w, x->job, x->attempt);
                if (j && x->purpose != P_CKPT && j->state == J_UPLOAD)
                    job_report(w, j, false, true, "upload of %.16s refused: %s",
                               x->hash, msg);
                xfer_free(x);
                start_up(w);
            }
        }
        break;
    }
    default:
        send_error(w, "unsupported", "a worker does not take this message",
                   qv_wire_type_name(t));
        break;
    }
}

/* Reads every message waiting on the socket. */
static void drain(worker *w)
{
    for (;;) {
        zmq_msg_t part[4];
        size_t n = 0;
        bool more = true, got = false;
        while (more) {
            zmq_msg_t p;
            zmq_msg_init(&p);
            if (zmq_msg_recv(&p, w->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&p);
                break;
            }
            got = true;
            more = zmq_msg_more(&p);
            if (n < 4)
                part[n++] = p;
            else
                zmq_msg_close(&p);
        }
        if (!got)
            return;
        w->last_rx_ms = now_ms();
        qv_wire_frame fr[4];
        for (size_t i = 0; i < n; i++)
            fr[i] = (qv_wire_frame){zmq_msg_data(&part[i]), zmq_msg_size(&part[i])};
        qv_wire_msg *m = NULL;
        qv_err e = {0};
        qv_status s = qv_wire_decode(fr, n, &m, &e);
        bool was_error = n == 3 && fr[1].size == 5 && !memcmp(fr[1].data, "error", 5);
        char re[QV_WIRE_MAX_TYPE + 1] = "";
        if (n >= 2 && fr[1].size <= QV_WIRE_MAX_TYPE)
            snprintf(re, sizeof re, "%.*s", (int)fr[1].size, (const char *)fr[1].data);
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&part[i]);
        if (s) {
            wlog(w, "refused a message from the scheduler: %s", e.msg);
            if (!was_error)
                send_error(w, qv_wire_error_code(s), e.msg, re);
            continue;
        }
        handle(w, m);
        qv_wire_msg_free(m);
    }
}

/* ---- connection ------------------------------------------------------------------ */

static void disconnect(worker *w)
{
    if (w->sock) {
        int zero = 0;
        zmq_setsockopt(w->sock, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(w->sock);
    }
    w->sock = NULL;
    w->hello_sent = w->welcomed = w->ready = w->rejoining = false;
}

static qv_status connect_now(worker *w, qv_err *err)
{
    disconnect(w);
    w->sock = zmq_socket(w->ctx, ZMQ_DEALER);
    if (!w->sock)
        return qv_fail(err, QV_ERR_IO, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    int linger = 500, hwm = 10000;
    zmq_setsockopt(w->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(w->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(w->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (!w->o->insecure) {
        qv_status s = qv_sock_curve_client(w->sock, &w->kp, w->server_pub, err);
        if (s)
            return s;
    }
    if (zmq_connect(w->sock, w->o->join))
        return qv_fail(err, QV_ERR_INVALID, "cannot connect to %s: %s",
                       w->o->join, zmq_strerror(zmq_errno()));
    qv_wire_writer *wr = writer(QV_MSG_HELLO, 3);
    qv_wire_kv_str(wr, "role", "worker");
    qv_wire_kv_str(wr, "name", w->name);
    qv_wire_kv_str(wr, "version", QV_VERSION);
    send_w(w, wr);
    w->hello_sent = true;
    w->connect_ms = w->last_rx_ms = now_ms();
    return QV_OK;
}

/* ---- set-up: keys, devices, tuning ------------------------------------------------- */

static qv_status setup_keys(worker *w, qv_err *err)
{
    char p[PATH_CAP];
    snprintf(p, sizeof p, "%s/worker.key", w->cache_dir);
    qv_status s = qv_keys_load_or_create(p, &w->kp, err);
    if (s || w->o->insecure)
        return s;
    char pub[QV_KEY_Z85] = "";
    if (w->o->server_key) {
        snprintf(pub, sizeof pub, "%s", w->o->server_key);
    } else if (w->o->token) {
        if ((s = qv_token_split(w->o->token, NULL, pub, err)))
            return s;
    }
    if (!pub[0]) {
        snprintf(p, sizeof p, "%s/scheduler.pub", w->cache_dir);
        if (qv_keys_load_public(p, pub, NULL)) {
            const char *env = getenv("QVAC_SCHEDULER_KEY");
            char d[PATH_CAP - 32];
            if (env && *env)
                snprintf(pub, sizeof pub, "%s", env);
            else if (!qv_paths_data_dir(d, sizeof d, NULL)) {
                snprintf(p, sizeof p, "%s/scheduler.pub", d);
                if (qv_keys_load_public(p, pub, NULL))
                    pub[0] = '\0';
            }
        }
    }
    if (qv_keys_valid(pub))
        return qv_fail(err, QV_ERR_INVALID,
                       "no public key of the scheduler: enroll with --token T "
                       "(from `qvac token`), or pass --scheduler-key");
    memcpy(w->server_pub, pub, sizeof pub);
    return QV_OK;
}

static qv_status setup_devices(worker *w, qv_err *err)
{
    if (w->o->devs) {
        w->devs = w->o->devs;
    } else {
        qv_status s = qv_devlist_open(&w->devs, err);
        if (s)
            return s;
    }
    const char *list = w->o->devices;
    if (list) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", list);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            qv_device *d = qv_devlist_find(w->devs, t);
            if (!d)
                return qv_fail(err, QV_ERR_NOT_FOUND,
                               "no device '%s' here (see `qvac devices`)", t);
            bool dup = false;
            for (size_t i = 0; i < w->n_use; i++)
                dup |= w->use[i] == d;
            if (!dup && w->n_use < QV_WIRE_MAX_DEVICES)
                w->use[w->n_use++] = d;
        }
    } else {
        for (size_t i = 0; i < w->devs->n && w->n_use < QV_WIRE_MAX_DEVICES; i++)
            if (strcmp(w->devs->dev[i]->info.backend, "ref"))
                w->use[w->n_use++] = w->devs->dev[i];
    }
    if (!w->n_use)
        return qv_fail(err, QV_ERR_NOT_FOUND,
                       "no device to run jobs on (only the reference was found; "
                       "--devices ref uses it)");
    return QV_OK;
}

/* Tunes the cold kernels of every device (not ref) and collects the tuned
 * GFLOP/s of each kernel for enroll. */
static void tune_step(worker *w)
{
    pthread_mutex_lock(&w->tune_mu);
    w->tune_done++;
    pthread_mutex_unlock(&w->tune_mu);
}

static void tune_devices(worker *w)
{
    qv_device *ref = qv_devlist_find(w->devs, "ref");
    qv_shape shape = {256, 1024, 1024, 16};
    qv_tune_opts to = {
        .budget_evals = w->o->tune_budget_evals ? w->o->tune_budget_evals : 12,
        .seed = 1, .progress = w->o->tune_progress,
        .progress_user = w->o->tune_progress_user, .stop = w->o->stop,
    };
    for (size_t d = 0; d < w->n_use; d++) {
        qv_device *dev = w->use[d];
        if (!strcmp(dev->info.backend, "ref") || !w->tcache || !ref)
            continue;
        for (int k = 0; qv_kernels[k] && w->n_tuned[d] < 32; k++) {
            if (w->o->stop && *w->o->stop)
                return;
            const qv_kernel_decl *kd = qv_kernels[k];
            qv_tune_entry e;
            qv_err err = {0};
            qv_status s;
            if (w->o->no_tune) {
                qv_tune_key key;
                memset(&key, 0, sizeof key);
                qv_shape at;
                snprintf(key.fingerprint, sizeof key.fingerprint, "%s",
                         dev->info.fingerprint);
                snprintf(key.kernel, sizeof key.kernel, "%s", kd->name);
                qv_tune_bucket(kd, shape, key.bucket, sizeof key.bucket, &at);
                s = qv_kernel_source_hash(dev, kd, key.src_hash, &err);
                if (!s)
                    s = qv_tune_cache_get(w->tcache, &key, &e, &err);
                if (s)
                    continue;
            } else {
                int cached = 0, interrupted = 0;
                s = qv_tune_kernel(w->tcache, dev, ref, kd, shape, &to, &e,
                                   &cached, &interrupted, &err);
                if (s) {
                    wlog(w, "tune %s %s: %s", dev->info.id, kd->name, err.msg);
                    continue;
                }
                if (interrupted)
                    return;
                if (!cached) {
                    w->tuned_now++;
                    wlog(w, "tuned %s %s: %.3g ms (%.2f GFLOP/s)", dev->info.id,
                         kd->name, e.median_ns / 1e6, e.gflops);
                }
            }
            if (isfinite(e.gflops) && e.gflops > 0) {
                w->tuned_name[d][w->n_tuned[d]] = kd->name;
                w->tuned[d][w->n_tuned[d]++] = e.gflops;
            }
            tune_step(w);
        }
    }
}

/* Kernels tune_devices would tune: its progress's total. */
static uint64_t tune_count(worker *w)
{
    uint64_t n = 0, nk = 0;
    while (qv_kernels[nk])
        nk++;
    if (!qv_devlist_find(w->devs, "ref") || !w->tcache)
        return 0;
    for (size_t d = 0; d < w->n_use; d++)
        if (strcmp(w->use[d]->info.backend, "ref"))
            n += nk < 32 ? nk : 32;
    return n;
}

/* The fleet's results for this worker's devices, each verified and timed
 * on the device before it is cached (qv_tune_adopt). */
static void adopt_fleet(worker *w)
{
    qv_device *ref = qv_devlist_find(w->devs, "ref");
    for (size_t i = 0; i < w->n_fleet && ref && w->tcache; i++) {
        if (w->o->stop && *w->o->stop)
            return;
        for (size_t d = 0; d < w->n_use; d++) {
            qv_device *dev = w->use[d];
            if (strcmp(dev->info.fingerprint, w->fleet[i].key.fingerprint))
                continue;
            int stored = 0;
            char why[256];
            qv_err e = {0};
            if (qv_tune_adopt(w->tcache, dev, ref, &w->fleet[i], &stored, why, sizeof why,
                              &e)) {
                snprintf(why, sizeof why, "%.200s", e.msg);
            }
            if (why[0]) {
                if (!w->refused++)
                    snprintf(w->refused_why, sizeof w->refused_why, "%.31s: %.200s",
                             dev->info.id, why);
            } else {
                w->adopted += (size_t)stored;
            }
            break;
        }
    }
}

static void *tune_thread(void *arg)
{
    worker *w = arg;
    adopt_fleet(w);
    tune_devices(w);
    pthread_mutex_lock(&w->tune_mu);
    w->tune_finished = true;
    pthread_mutex_unlock(&w->tune_mu);
    return NULL;
}

/* This worker's own results for its devices (current sources only), to the
 * scheduler for the others of the same fingerprint. */
static void share_tunings(worker *w)
{
    qv_tune_entry *all = NULL;
    size_t n = 0;
    if (!w->tcache || qv_tune_cache_list(w->tcache, NULL, NULL, &all, &n, NULL))
        return;
    size_t *pick = malloc((n ? n : 1) * sizeof *pick), np = 0;
    for (size_t i = 0; pick && i < n; i++)
        for (size_t d = 0; d < w->n_use; d++) {
            const qv_kernel_decl *k = qv_kernel_find(all[i].key.kernel);
            char src[17];
            if (k && !strcmp(all[i].key.fingerprint, w->use[d]->info.fingerprint) &&
                !qv_kernel_source_hash(w->use[d], k, src, NULL) &&
                !strcmp(src, all[i].key.src_hash) && all[i].median_ns > 0) {
                pick[np++] = i;
                break;
            }
        }
    for (size_t off = 0; off < np; off += 512) {
        size_t m = np - off < 512 ? np - off : 512;
        qv_wire_writer *wr = writer(QV_MSG_TUNINGS_PUT, 1);
        qv_wire_kv_array(wr, "entries", m);
        for (size_t i = 0; i < m; i++) {
            const qv_tune_entry *e = &all[pick[off + i]];
            qv_wire_w_map(wr, 10);
            qv_wire_kv_str(wr, "fingerprint", e->key.fingerprint);
            qv_wire_kv_str(wr, "kernel", e->key.kernel);
            qv_wire_kv_str(wr, "src_hash", e->key.src_hash);
            qv_wire_kv_str(wr, "bucket", e->key.bucket);
            qv_wire_kv_str(wr, "config", e->config);
            qv_wire_kv_f64(wr, "median_ns", e->median_ns);
            qv_wire_kv_f64(wr, "gflops", isfinite(e->gflops) ? e->gflops : 0);
            qv_wire_kv_str(wr, "backend", e->backend);
            char v[QV_WIRE_MAX_NAME + 1];
            snprintf(v, sizeof v, "%.120s", e->vendor);
            qv_wire_kv_str(wr, "vendor", v);
            qv_wire_kv_str(wr, "device_name", e->device_name);
        }
        send_w(w, wr);
    }
    if (np)
        wlog(w, "shared %zu tuning result(s) with the fleet", np);
    free(pick);
    free(all);
}

/* The scheduler's answer to tunings_get: entries to verify and adopt. */
static void on_tunings(worker *w, const msgpack_object *b)
{
    const msgpack_object *items = NULL;
    size_t n = 0;
    if (w->tunings_waiting > 0)
        w->tunings_waiting--;
    if (!w->tune_pending ||
        qv_wire_get_array(b, "entries", &items, &n, QV_WIRE_MAX_ARRAY, NULL) || !n)
        return;
    qv_tune_entry *grown = realloc(w->fleet, (w->n_fleet + n) * sizeof *grown);
    if (!grown)
        return;
    w->fleet = grown;
    for (size_t i = 0; i < n; i++) {
        qv_tune_entry *e = &w->fleet[w->n_fleet];
        memset(e, 0, sizeof *e);
        if (qv_wire_get_str(&items[i], "fingerprint", e->key.fingerprint,
                            sizeof e->key.fingerprint, NULL) ||
            qv_wire_get_str(&items[i], "kernel", e->key.kernel, sizeof e->key.kernel, NULL) ||
            qv_wire_get_str(&items[i], "src_hash", e->key.src_hash, sizeof e->key.src_hash,
                            NULL) ||
            qv_wire_get_str(&items[i], "bucket", e->key.bucket, sizeof e->key.bucket, NULL) ||
            qv_wire_get_str(&items[i], "config", e->config, sizeof e->config, NULL) ||
            qv_wire_get_f64(&items[i], "median_ns", &e->median_ns, NULL))
            continue; /* not one we can hold: ignored */
        w->n_fleet++;
    }
}

/* Enrolled and tuning: when the thread ends, enroll again with the tuned
 * figures and no `tuning`, so the scheduler starts giving jobs. */
static void service_tune(worker *w)
{
    if (w->tune_pending && w->ready &&
        (w->tunings_waiting == 0 || now_ms() - w->tunings_asked_ms > 5000)) {
        w->tune_pending = false;
        if (pthread_create(&w->tune_th, NULL, tune_thread, w) == 0) {
            w->tune_started = true;
        } else {
            tune_devices(w);
            w->tune_finished = true;
        }
        return;
    }
    if (!w->tune_running || !w->tune_started) {
        if (w->tune_running && w->tune_finished && !w->tune_pending)
            goto finished;
        return;
    }
    pthread_mutex_lock(&w->tune_mu);
    bool fin = w->tune_finished;
    pthread_mutex_unlock(&w->tune_mu);
    if (!fin)
        return;
    pthread_join(w->tune_th, NULL);
    w->tune_started = false;
finished:
    w->tune_running = false;
    if (w->n_fleet) {
        char why[4 * sizeof w->refused_why + 1];
        qv_printable(why, sizeof why, w->refused_why);
        wlog(w, "the fleet's tunings: %zu adopted (verified here), %zu refused%s%s",
             w->adopted, w->refused, w->refused ? "; first: " : "", why);
    }
    free(w->fleet);
    w->fleet = NULL;
    w->n_fleet = 0;
    wlog(w, "tuning done: %zu kernel shape(s) tuned here, %llu looked up on %zu "
         "device(s): ready for jobs", w->tuned_now, (unsigned long long)w->tune_done,
         w->n_use);
    if (w->ready) {
        send_enroll(w, false);
        share_tunings(w);
    }
}

/* Once enrolled: ask the fleet for each fingerprint's tunings. */
static void ask_tunings(worker *w)
{
    if (!w->tune_pending || w->tunings_asked_ms > 0)
        return;
    w->tunings_asked_ms = now_ms();
    for (size_t d = 0; d < w->n_use; d++) {
        const qv_device_info *di = &w->use[d]->info;
        bool seen = !strcmp(di->backend, "ref");
        for (size_t k = 0; k < d && !seen; k++)
            seen = !strcmp(w->use[k]->info.fingerprint, di->fingerprint);
        if (seen)
            continue;
        qv_wire_writer *wr = writer(QV_MSG_TUNINGS_GET, 1);
        qv_wire_kv_str(wr, "fingerprint", di->fingerprint);
        send_w(w, wr);
        w->tunings_waiting++;
    }
}

qv_status qv_worker_default_cache_dir(char *buf, size_t n, qv_err *err)
{
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    int r;
    if (x && *x)
        r = snprintf(buf, n, "%s/qvac/worker", x);
    else if (h && *h)
        r = snprintf(buf, n, "%s/.cache/qvac/worker", h);
    else
        return qv_fail(err, QV_ERR_NOT_FOUND,
                       "neither XDG_CACHE_HOME nor HOME is set: pass --cache-dir");
    if (r < 0 || (size_t)r >= n)
        return qv_fail(err, QV_ERR_INVALID, "cache folder path too long");
    return QV_OK;
}

/* ---- the loop ---------------------------------------------------------------------- */

static bool all_free(worker *w)
{
    for (int i = 0; i < MAX_JOBS; i++)
        if (w->jobs[i].state != J_FREE)
            return false;
    return true;
}

static void begin_shutdown(worker *w)
{
    w->shutting_down = true;
    w->shutdown_ms = now_ms();
    wlog(w, "shutting down: stopping jobs at their next step");
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &w->jobs[i];
        if (j->state == J_RUN) {
            j->shutdown = true;
            j->stop = 1;
        } else if (j->state == J_FETCH) {
            job_report(w, j, false, true, "worker shutting down");
        }
    }
}

static qv_status run_loop(worker *w, qv_err *err)
{
    w->lease_ms = 10000;
    w->chunk = 1u << 20;
    w->credit = 8u << 20;
    w->next_connect_ms = 0;
    while (!w->fatal) {
        double t = now_ms();
        bool hard = w->o->stop && *w->o->stop >= 2;
        if (w->o->stop && *w->o->stop && !w->shutting_down)
            begin_shutdown(w);
        if (w->shutting_down) {
            bool threads = false;
            for (int i = 0; i < MAX_JOBS; i++)
                threads |= w->jobs[i].state == J_RUN;
            if (all_free(w))
                break;
            /* the scheduler is gone or slow: hand back what we can */
            if (!threads && (hard || t - w->shutdown_ms > SHUTDOWN_GRACE_MS)) {
                for (int i = 0; i < MAX_JOBS; i++) {
                    job *j = &w->jobs[i];
                    if (j->state == J_UPLOAD)
                        job_report(w, j, false, true, "worker shutting down");
                }
                if (hard || t - w->shutdown_ms > 2 * SHUTDOWN_GRACE_MS)
                    break;
            }
        }
        if (!w->sock && t >= w->next_connect_ms) {
            qv_status s = connect_now(w, err);
            if (s) {
                disconnect(w);
                return s;
            }
        }
        if (w->sock) {
            zmq_pollitem_t pi = {w->sock, 0, ZMQ_POLLIN, 0};
            zmq_poll(&pi, 1, 100);
            drain(w);
        } else {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        t = now_ms();
        if (w->sock) {
            double silent = t - w->last_rx_ms;
            bool lost = w->ready ? silent > (double)w->lease_ms
                                 : silent > HELLO_TIMEOUT_MS;
            if (lost) {
                w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 500;
                if (w->backoff_ms > 16000)
                    w->backoff_ms = 16000;
                wlog(w, "no answer from the scheduler at %s for %.0f s: "
                     "reconnecting in %.1f s", w->o->join, silent / 1e3,
                     w->backoff_ms / 1e3);
                disconnect(w);
                w->next_connect_ms = t + w->backoff_ms;
            } else if (w->ready) {
                double hb = (double)w->lease_ms / 3.0;
                if (hb > 2000)
                    hb = 2000;
                if (t - w->last_hb_ms >= hb)
                    send_heartbeat(w);
            }
        }
        /* a download that stalls (a lost chunk or credit) asks again */
        if (w->ready && w->n_down && w->down[0]->started &&
            t - w->down[0]->last_ms > 20000) {
            wlog(w, "blob %.16s: stalled, asking again", w->down[0]->hash);
            w->down[0]->started = false;
            start_down(w);
        }
        service_jobs(w);
        service_tune(w);
        service_bench(w);
    }
    if (w->fatal)
        *err = w->fatal_err;
    return w->fatal ? w->fatal_err.code : QV_OK;
}

qv_status qv_worker_run(const qv_worker_opts *o, qv_err *err)
{
    if (!o || !o->join)
        return qv_fail(err, QV_ERR_INVALID, "worker: --join URL is needed");
    if (sodium_init() < 0)
        return qv_fail(err, QV_ERR_UNSUPPORTED, "libsodium failed to start");
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory");
    w->o = o;
    qv_status s = QV_OK;
    if (o->cache_dir)
        snprintf(w->cache_dir, sizeof w->cache_dir, "%s", o->cache_dir);
    else
        s = qv_worker_default_cache_dir(w->cache_dir, sizeof w->cache_dir, err);
    snprintf(w->blob_dir, sizeof w->blob_dir, "%s/blobs", w->cache_dir);
    snprintf(w->jobs_dir, sizeof w->jobs_dir, "%s/jobs", w->cache_dir);
    /* what a killed worker left: job folders and partial blobs */
    if (!s)
        rm_rf(w->jobs_dir);
    if (!s)
        s = mkdir_p(w->blob_dir, err);
    if (!s)
        s = mkdir_p(w->jobs_dir, err);
    if (!s) {
        DIR *d = opendir(w->blob_dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            size_t n = strlen(de->d_name);
            char p[PATH_CAP];
            if (n > 5 && !strcmp(de->d_name + n - 5, ".part") && n < HASH_CAP + 5) {
                snprintf(p, sizeof p, "%s/%.*s", w->blob_dir, (int)n, de->d_name);
                unlink(p);
            }
        }
        if (d)
            closedir(d);
    }
    if (o->name) {
        snprintf(w->name, sizeof w->name, "%s", o->name);
    } else {
        char h[256] = "worker";
        gethostname(h, sizeof h - 1);
        h[sizeof h - 1] = '\0';
        snprintf(w->name, sizeof w->name, "%.128s", h);
    }
    if (!s)
        s = setup_keys(w, err);
    if (!s)
        s = setup_devices(w, err);
    if (!s && o->tune_db) {
        qv_err te = {0};
        if (qv_tune_cache_open(o->tune_db, 0, 2000, &w->tcache, &te))
            wlog(w, "tune cache: %s (running untuned)", te.msg);
    }
    pthread_mutex_init(&w->tune_mu, NULL);
    if (!s) {
        /* enroll first, tune after: a cold device is tuned in a thread while
         * the worker is already listed (as "tuning"); with no_tune the cached
         * figures are only read, at once */
        w->tune_total = w->o->no_tune ? 0 : tune_count(w);
        if (!w->tune_total)
            tune_devices(w);
        else /* the thread starts once enrolled and the fleet answered */
            w->tune_running = w->tune_pending = true;
        for (size_t i = 0; i < w->n_use; i++)
            wlog(w, "device %s: %s (%s)", w->use[i]->info.id,
                 w->use[i]->info.name, w->use[i]->info.backend);
        w->ctx = zmq_ctx_new();
        if (!w->ctx)
            s = qv_fail(err, QV_ERR_IO, "zmq_ctx_new failed");
    }
    if (!s && !(o->stop && *o->stop))
        s = run_loop(w, err);
    /* stop and join every thread before anything they use goes away */
    if (w->tune_started)
        pthread_join(w->tune_th, NULL); /* it stops on *o->stop */
    free(w->fleet);
    pthread_mutex_destroy(&w->tune_mu);
    for (size_t i = 0; i < QV_WIRE_MAX_DEVICES; i++) {
        wbench *b = &w->bench[i];
        if (b->th_started) {
            b->stop = 1;
            pthread_join(b->th, NULL);
            pthread_mutex_destroy(&b->mu);
        }
        free(b->json);
    }
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &w->jobs[i];
        if (j->state != J_FREE) {
            j->stop = 1;
            if (j->th_started)
                pthread_join(j->th, NULL);
            j->th_started = false;
            pthread_mutex_destroy(&j->mu);
            rm_rf(j->dir);
        }
    }
    for (size_t i = 0; i < w->n_down; i++) {
        if (w->down[i]->f)
            unlink(w->down[i]->part);
        xfer_free(w->down[i]);
    }
    for (size_t i = 0; i < w->n_up; i++)
        xfer_free(w->up[i]);
    disconnect(w);
    if (w->ctx)
        zmq_ctx_term(w->ctx);
    qv_tune_cache_destroy(&w->tcache);
    if (!o->devs)
        qv_devlist_destroy(&w->devs);
    free(w);
    return s;
}
