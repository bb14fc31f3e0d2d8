/* tests/test_worker.c — `qvac worker` (worker/worker.h) against a fake
 * scheduler: a ROUTER socket on loopback driven by the test itself
 * (--insecure), speaking docs/protocol.md. The worker runs in a thread on
 * the reference device with a tiny model. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "autotune/cache.h"
#include "autotune/tune.h"
#include "formats/wire.h"
#include "kernels/kernel.h"
#include "train/model.h"
#include "worker/worker.h"

#define CHUNK 1024 /* small, so a model (and an adapter) takes many chunks */
#define MAX_BLOBS 32

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct blob {
    char hash[65];
    unsigned char *bytes;
    size_t size, got; /* got: uploads in progress */
    int gets;         /* blob_get requests that started at offset 0 */
    uint64_t off, credit; /* serving state */
} blob;

typedef struct fake {
    void *ctx, *sock;
    char ep[128];
    unsigned char id[256];
    size_t id_len;
    int enrolled, heartbeats, hellos;
    blob served[MAX_BLOBS], uploaded[MAX_BLOBS];
    int n_served, n_uploaded;
    /* what the worker said about jobs */
    uint64_t last_job;
    int64_t last_step;
    int progress_msgs, ckpt_progress;
    int done, failed;
    uint64_t done_job, failed_job;
    bool failed_retry;
    char ckpt[129];   /* the last checkpoint announced, and its step */
    int64_t ckpt_step;
    char adapter[129], metrics[129], reason[1100];
    /* enroll first, tune after: what enroll and heartbeats said */
    const char *want_dev;          /* the device the worker enrolls (NULL: ref) */
    int enroll_tuning, hb_tuning;  /* messages that carried `tuning` */
    uint64_t tune_done, tune_total;
    int last_enroll_tuning;        /* the latest enroll carried `tuning` */
    /* shared tunings: what it offers on tunings_get, what it was sent */
    const qv_tune_entry *offer;
    size_t n_offer;
    int tunings_gets, tunings_put;
    /* a scheduler that dies and comes back on the same address within the
     * worker's patience: blob_put goes unanswered (the old one died with
     * it), and the next heartbeat answer asks the worker to enroll again */
    bool drop_puts, ask_enroll;
    int puts_dropped;
    /* uploads stop being taken at this many bytes (0: never): a scheduler
     * that went away in the middle of one */
    size_t stall_at;
    int chunks_dropped;
} fake;

typedef struct wthread {
    pthread_t th;
    qv_worker_opts o;
    volatile sig_atomic_t stop;
    qv_status rc;
    qv_err err;
    char dir[64];
    qv_devlist *devs;
} wthread;

static void sha_hex(const void *d, size_t n, char out[65])
{
    unsigned char h[32];
    crypto_hash_sha256(h, d, n);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[h[i] >> 4];
        out[2 * i + 1] = hx[h[i] & 15];
    }
    out[64] = '\0';
}

static void *worker_main(void *arg)
{
    wthread *t = arg;
    t->rc = qv_worker_run(&t->o, &t->err);
    return NULL;
}

static void start_worker_cap(wthread *t, const char *ep, uint64_t cap)
{
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/qvac-worker-XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir));
    t->o.join = ep;
    t->o.devices = "ref";
    t->o.cache_dir = t->dir;
    t->o.insecure = true;
    t->o.no_tune = true;
    t->o.no_bench = true;
    t->o.name = "test-worker";
    t->o.stop = &t->stop;
    t->o.cache_bytes = cap;
    /* opened here, on the main thread: PoCL's start-up threads trip
     * AddressSanitizer's alternate-stack check when the devices are opened
     * from another thread */
    qv_err e;
    cr_assert_eq(qv_devlist_open(&t->devs, &e), QV_OK, "%s", e.msg);
    t->o.devs = t->devs;
    cr_assert_eq(pthread_create(&t->th, NULL, worker_main, t), 0);
}

static void stop_worker(wthread *t)
{
    t->stop = 1;
    pthread_join(t->th, NULL);
    qv_devlist_destroy(&t->devs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", t->dir);
    cr_expect_eq(system(cmd), 0);
}

static void fake_open(fake *f)
{
    memset(f, 0, sizeof *f);
    f->ctx = zmq_ctx_new();
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(f->sock, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_bind(f->sock, "tcp://127.0.0.1:*"), 0);
    size_t n = sizeof f->ep;
    zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->ep, &n);
}

static void fake_close(fake *f)
{
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
    for (int i = 0; i < f->n_served; i++)
        free(f->served[i].bytes);
    for (int i = 0; i < f->n_uploaded; i++)
        free(f->uploaded[i].bytes);
}

static void fsend(fake *f, qv_wire_writer *w)
{
    qv_wire_out out;
    qv_err e;
    cr_assert_eq(qv_wire_finish(w, &out, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    zmq_send(f->sock, f->id, f->id_len, ZMQ_SNDMORE);
    for (int i = 0; i < 3; i++)
        zmq_send(f->sock, out.frame[i].data, out.frame[i].size, i < 2 ? ZMQ_SNDMORE : 0);
    qv_wire_out_free(&out);
}

static qv_wire_writer *W(qv_wire_type t, size_t n)
{
    qv_wire_writer *w = NULL;
    qv_err e;
    cr_assert_eq(qv_wire_writer_new(t, n, &w, &e), QV_OK);
    return w;
}

/* Adds bytes to serve under hash (NULL: their own SHA-256). */
static const char *serve(fake *f, const void *d, size_t n, const char *hash)
{
    blob *b = &f->served[f->n_served++];
    memset(b, 0, sizeof *b);
    b->bytes = malloc(n ? n : 1);
    memcpy(b->bytes, d, n);
    b->size = n;
    if (hash)
        snprintf(b->hash, sizeof b->hash, "%s", hash);
    else
        sha_hex(d, n, b->hash);
    return b->hash;
}

static blob *find_blob(blob *arr, int n, const char *hash)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(arr[i].hash, hash))
            return &arr[i];
    return NULL;
}

static void send_chunks(fake *f, blob *b)
{
    while (b->credit > 0 && b->off <= b->size) {
        size_t n = b->size - b->off;
        if (n > CHUNK)
            n = CHUNK;
        if (n > b->credit)
            n = b->credit;
        qv_wire_writer *w = W(QV_MSG_BLOB_CHUNK, 4);
        qv_wire_kv_str(w, "hash", b->hash);
        qv_wire_kv_u64(w, "offset", b->off);
        qv_wire_kv_u64(w, "size", b->size);
        qv_wire_kv_bin(w, "bytes", b->bytes + b->off, n);
        fsend(f, w);
        b->off += n;
        b->credit -= n;
        if (b->off == b->size) {
            b->off = b->size + 1; /* all sent */
            break;
        }
    }
}

static void handle(fake *f, qv_wire_msg *m)
{
    const msgpack_object *b = qv_wire_msg_body(m);
    char hash[129] = "";
    uint64_t u = 0, job = 0;
    switch (qv_wire_msg_type(m)) {
    case QV_MSG_HELLO: {
        f->hellos++;
        qv_wire_writer *w = W(QV_MSG_WELCOME, 7);
        qv_wire_kv_str(w, "scheduler", "fake");
        qv_wire_kv_str(w, "version", "0.1.0");
        qv_wire_kv_str(w, "hash", "sha256");
        qv_wire_kv_u64(w, "lease_ms", 3000);
        qv_wire_kv_u64(w, "chunk", CHUNK);
        qv_wire_kv_u64(w, "credit", 4 * CHUNK);
        qv_wire_kv_bool(w, "enrolled", false);
        fsend(f, w);
        break;
    }
    case QV_MSG_ENROLL: {
        const msgpack_object *devs = NULL;
        size_t n = 0;
        cr_expect_eq(qv_wire_get_array(b, "devices", &devs, &n, 64, NULL), QV_OK);
        cr_expect_eq(n, 1u);
        char id[64] = "";
        if (n)
            qv_wire_get_str(&devs[0], "id", id, sizeof id, NULL);
        cr_expect_str_eq(id, f->want_dev ? f->want_dev : "ref");
        const msgpack_object *tn = NULL;
        f->last_enroll_tuning = qv_wire_has(b, "tuning");
        if (qv_wire_get_map(b, "tuning", &tn, NULL) == QV_OK && tn) {
            f->enroll_tuning++;
            qv_wire_get_u64(tn, "done", &f->tune_done, NULL);
            qv_wire_get_u64(tn, "total", &f->tune_total, NULL);
        }
        f->enrolled++;
        qv_wire_writer *w = W(QV_MSG_ENROLLED, 1);
        qv_wire_kv_u64(w, "worker", 7);
        fsend(f, w);
        break;
    }
    case QV_MSG_HEARTBEAT:
        f->heartbeats++;
        f->hb_tuning += qv_wire_has(b, "tuning");
        if (f->ask_enroll) {
            f->ask_enroll = false;
            qv_wire_writer *w = W(QV_MSG_HEARTBEAT, 1);
            qv_wire_kv_bool(w, "enroll", true);
            fsend(f, w);
        } else {
            fsend(f, W(QV_MSG_HEARTBEAT, 0));
        }
        break;
    case QV_MSG_BLOB_GET: {
        qv_wire_get_str(b, "hash", hash, sizeof hash, NULL);
        blob *x = find_blob(f->served, f->n_served, hash);
        if (!x) {
            qv_wire_out out;
            qv_wire_error_reply("not_found", "no such blob", "blob_get", &out, NULL);
            zmq_send(f->sock, f->id, f->id_len, ZMQ_SNDMORE);
            for (int i = 0; i < 3; i++)
                zmq_send(f->sock, out.frame[i].data, out.frame[i].size, i < 2 ? ZMQ_SNDMORE : 0);
            qv_wire_out_free(&out);
            break;
        }
        qv_wire_get_u64(b, "offset", &x->off, NULL);
        qv_wire_get_u64(b, "credit", &x->credit, NULL);
        if (x->off == 0)
            x->gets++;
        send_chunks(f, x);
        break;
    }
    case QV_MSG_BLOB_CREDIT: {
        qv_wire_get_str(b, "hash", hash, sizeof hash, NULL);
        blob *x = find_blob(f->served, f->n_served, hash);
        qv_wire_get_u64(b, "credit", &u, NULL);
        if (x) {
            x->credit += u;
            send_chunks(f, x);
        }
        break;
    }
    case QV_MSG_TUNINGS_GET: {
        f->tunings_gets++;
        qv_wire_get_str(b, "fingerprint", hash, sizeof hash, NULL);
        qv_wire_writer *w = W(QV_MSG_TUNINGS, 2);
        qv_wire_kv_str(w, "fingerprint", hash);
        qv_wire_kv_array(w, "entries", f->n_offer);
        for (size_t i = 0; i < f->n_offer; i++) {
            const qv_tune_entry *e = &f->offer[i];
            qv_wire_w_map(w, 6);
            qv_wire_kv_str(w, "fingerprint", e->key.fingerprint);
            qv_wire_kv_str(w, "kernel", e->key.kernel);
            qv_wire_kv_str(w, "src_hash", e->key.src_hash);
            qv_wire_kv_str(w, "bucket", e->key.bucket);
            qv_wire_kv_str(w, "config", e->config);
            qv_wire_kv_f64(w, "median_ns", e->median_ns);
        }
        fsend(f, w);
        break;
    }
    case QV_MSG_TUNINGS_PUT: {
        const msgpack_object *items = NULL;
        size_t n = 0;
        qv_wire_get_array(b, "entries", &items, &n, 1024, NULL);
        f->tunings_put += (int)n;
        qv_wire_writer *w = W(QV_MSG_TUNINGS_OK, 1);
        qv_wire_kv_u64(w, "stored", n);
        fsend(f, w);
        break;
    }
    case QV_MSG_BLOB_PUT: {
        if (f->drop_puts) {
            f->puts_dropped++;
            break;
        }
        qv_wire_get_str(b, "hash", hash, sizeof hash, NULL);
        qv_wire_get_u64(b, "size", &u, NULL);
        blob *x = find_blob(f->uploaded, f->n_uploaded, hash);
        if (x && x->got == x->size) {
            qv_wire_writer *w = W(QV_MSG_BLOB_OK, 2);
            qv_wire_kv_str(w, "hash", hash);
            qv_wire_kv_u64(w, "size", u);
            fsend(f, w);
            break;
        }
        if (!x) {
            x = &f->uploaded[f->n_uploaded++];
            memset(x, 0, sizeof *x);
            snprintf(x->hash, sizeof x->hash, "%.64s", hash);
        }
        if (!x->bytes || x->size != u) { /* else: go on from the bytes held */
            free(x->bytes);
            x->bytes = malloc(u ? u : 1);
            x->size = u;
            x->got = 0;
        }
        qv_wire_writer *w = W(QV_MSG_BLOB_CREDIT, 3);
        qv_wire_kv_str(w, "hash", hash);
        qv_wire_kv_u64(w, "credit", 2 * CHUNK);
        qv_wire_kv_u64(w, "offset", x->got);
        fsend(f, w);
        break;
    }
    case QV_MSG_BLOB_CHUNK: {
        const void *d = NULL;
        size_t n = 0;
        qv_wire_get_str(b, "hash", hash, sizeof hash, NULL);
        qv_wire_get_u64(b, "offset", &u, NULL);
        qv_wire_get_bin(b, "bytes", &d, &n, QV_WIRE_MAX_CHUNK, NULL);
        blob *x = find_blob(f->uploaded, f->n_uploaded, hash);
        cr_assert_not_null(x);
        if (f->stall_at && x->got >= f->stall_at) {
            f->chunks_dropped++;
            break;
        }
        cr_assert_eq(u, x->got, "chunk at %llu, expected %zu", (unsigned long long)u, x->got);
        cr_assert_leq(x->got + n, x->size);
        memcpy(x->bytes + x->got, d, n);
        x->got += n;
        qv_wire_writer *w;
        if (x->got < x->size) {
            w = W(QV_MSG_BLOB_CREDIT, 2);
            qv_wire_kv_str(w, "hash", hash);
            qv_wire_kv_u64(w, "credit", n);
        } else {
            char h[65];
            sha_hex(x->bytes, x->size, h);
            cr_assert_str_eq(h, hash, "uploaded bytes do not have their hash");
            w = W(QV_MSG_BLOB_OK, 2);
            qv_wire_kv_str(w, "hash", hash);
            qv_wire_kv_u64(w, "size", x->size);
        }
        fsend(f, w);
        break;
    }
    case QV_MSG_PROGRESS:
        f->progress_msgs++;
        qv_wire_get_u64(b, "job", &f->last_job, NULL);
        qv_wire_get_u64(b, "step", &u, NULL);
        if (!qv_wire_has(b, "checkpoint"))
            f->last_step = (int64_t)u;
        else {
            qv_wire_get_str(b, "checkpoint", hash, sizeof hash, NULL);
            blob *x = find_blob(f->uploaded, f->n_uploaded, hash);
            cr_expect(x && x->got == x->size, "progress names a checkpoint "
                      "not uploaded");
            f->ckpt_progress++;
            snprintf(f->ckpt, sizeof f->ckpt, "%.64s", hash);
            f->ckpt_step = (int64_t)u;
        }
        break;
    case QV_MSG_DONE: {
        qv_wire_get_u64(b, "job", &job, NULL);
        qv_wire_get_u64(b, "attempt", &u, NULL);
        f->done++;
        f->done_job = job;
        qv_wire_get_str(b, "adapter", f->adapter, sizeof f->adapter, NULL);
        qv_wire_get_str(b, "metrics", f->metrics, sizeof f->metrics, NULL);
        qv_wire_writer *w = W(QV_MSG_ACK, 2);
        qv_wire_kv_u64(w, "job", job);
        qv_wire_kv_u64(w, "attempt", u);
        fsend(f, w);
        break;
    }
    case QV_MSG_FAILED: {
        qv_wire_get_u64(b, "job", &job, NULL);
        qv_wire_get_u64(b, "attempt", &u, NULL);
        f->failed++;
        f->failed_job = job;
        f->failed_retry = false;
        qv_wire_get_bool(b, "retry", &f->failed_retry, NULL);
        qv_wire_get_str(b, "reason", f->reason, sizeof f->reason, NULL);
        qv_wire_writer *w = W(QV_MSG_ACK, 2);
        qv_wire_kv_u64(w, "job", job);
        qv_wire_kv_u64(w, "attempt", u);
        fsend(f, w);
        break;
    }
    case QV_MSG_ERROR: {
        char msg[1100] = "";
        qv_wire_get_str(b, "message", msg, sizeof msg, NULL);
        cr_log_warn("worker says error: %s", msg);
        break;
    }
    default:
        cr_expect_fail("unexpected message %s", qv_wire_type_name(qv_wire_msg_type(m)));
    }
}

/* Serves the worker until cond(f) or timeout; returns cond(f). */
static bool pump(fake *f, double timeout_ms, bool (*cond)(fake *, void *), void *arg)
{
    double end = now_ms() + timeout_ms;
    while (!(cond && cond(f, arg)) && now_ms() < end) {
        zmq_pollitem_t pi = {f->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, 50) <= 0)
            continue;
        zmq_msg_t part[5];
        int n = 0;
        int more = 1;
        while (more) {
            zmq_msg_t p;
            zmq_msg_init(&p);
            if (zmq_msg_recv(&p, f->sock, 0) < 0)
                break;
            more = zmq_msg_more(&p);
            if (n < 5)
                part[n++] = p;
            else
                zmq_msg_close(&p);
        }
        cr_assert_eq(n, 4, "a worker message has 3 frames after the identity");
        f->id_len = zmq_msg_size(&part[0]);
        memcpy(f->id, zmq_msg_data(&part[0]), f->id_len);
        qv_wire_frame fr[3];
        for (int i = 0; i < 3; i++)
            fr[i] = (qv_wire_frame){zmq_msg_data(&part[i + 1]), zmq_msg_size(&part[i + 1])};
        qv_wire_msg *m = NULL;
        qv_err e;
        cr_assert_eq(qv_wire_decode(fr, 3, &m, &e), QV_OK, "%s", e.msg);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&part[i]);
        handle(f, m);
        qv_wire_msg_free(m);
    }
    return cond ? cond(f, arg) : true;
}

static bool is_enrolled(fake *f, void *a) { (void)a; return f->enrolled > 0 && f->heartbeats > 0; }
static bool is_done(fake *f, void *a) { return f->done_job == *(uint64_t *)a; }
static bool is_failed(fake *f, void *a) { return f->failed_job == *(uint64_t *)a; }
static bool is_stepping(fake *f, void *a) { return f->last_job == *(uint64_t *)a && f->last_step >= 2; }

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void start_worker(wthread *t, const char *ep)
{
    start_worker_cap(t, ep, 0);
}

/* ---- fixtures ---------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s", path);
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *d = malloc((size_t)sz + 1);
    cr_assert_eq(fread(d, 1, (size_t)sz, fp), (size_t)sz);
    fclose(fp);
    *n = (size_t)sz;
    return d;
}

/* A tiny model, as bytes. */
static unsigned char *tiny_model(size_t *n)
{
    char path[] = "/tmp/qvac-wmodel-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    qv_model_config cfg = {
        .vocab = 258, .dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
        .ffn_dim = 48, .ctx = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
        .act = QV_ACT_RELU2, .sub_norm = 1, .tied = 0,
    };
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_random(&cfg, 1, &m, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_model_save(m, path, &e), QV_OK, "%s", e.msg);
    qv_model_free(&m);
    unsigned char *d = slurp(path, n);
    unlink(path);
    return d;
}

static char *tiny_data(int variant, size_t *n)
{
    char *d = malloc(8192);
    size_t k = 0;
    for (int i = 0; i < 20; i++)
        k += (size_t)snprintf(d + k, 8192 - k, "{\"prompt\": \"Q%d?\\n\", "
                              "\"completion\": \"A%d, matey%d.\"}\n", i, i * 7, variant);
    *n = k;
    return d;
}

static void assign_resume(fake *f, uint64_t job, const char *model,
                          const char *data, int steps, uint64_t ckpt_every,
                          const char *resume, uint64_t resume_step)
{
    qv_wire_writer *w = W(QV_MSG_ASSIGN, resume ? 9 : 7);
    if (resume) {
        qv_wire_kv_str(w, "resume", resume);
        qv_wire_kv_u64(w, "resume_step", resume_step);
    }
    qv_wire_kv_u64(w, "job", job);
    qv_wire_kv_u64(w, "attempt", 1);
    qv_wire_kv_str(w, "device", "ref");
    qv_wire_kv_str(w, "model", model);
    qv_wire_kv_str(w, "data", data);
    qv_wire_kv_u64(w, "checkpoint_every", ckpt_every);
    qv_wire_kv_map(w, "options", 7);
    qv_wire_kv_u64(w, "steps", (uint64_t)steps);
    qv_wire_kv_u64(w, "rank", 2);
    qv_wire_kv_u64(w, "batch", 2);
    qv_wire_kv_u64(w, "seq_len", 24);
    qv_wire_kv_u64(w, "eval_batches", 1);
    qv_wire_kv_f64(w, "lr", 0.01);
    qv_wire_kv_u64(w, "warmup", 1);
    fsend(f, w);
}

static void assign(fake *f, uint64_t job, const char *model, const char *data,
                   int steps, uint64_t ckpt_every)
{
    assign_resume(f, job, model, data, steps, ckpt_every, NULL, 0);
}

/* What most tests start from: a fake scheduler serving the tiny model and a
 * one-example data set, and a worker on ref enrolled with it. */
typedef struct rig {
    fake f;
    wthread t;
    unsigned char *model;
    char *data;
    char mh[65], dh[65];
} rig;

static void rig_start(rig *r)
{
    cr_assert_geq(sodium_init(), 0);
    fake_open(&r->f);
    size_t mn, dn;
    r->model = tiny_model(&mn);
    r->data = tiny_data(1, &dn);
    snprintf(r->mh, sizeof r->mh, "%s", serve(&r->f, r->model, mn, NULL));
    snprintf(r->dh, sizeof r->dh, "%s", serve(&r->f, r->data, dn, NULL));
    start_worker(&r->t, r->f.ep);
    cr_assert(pump(&r->f, 60000, is_enrolled, NULL));
}

/* After the worker has stopped. */
static void rig_close(rig *r)
{
    fake_close(&r->f);
    free(r->model);
    free(r->data);
}

/* ---- tests -------------------------------------------------------------------- */

Test(worker, enrolls_runs_uploads_and_caches, .timeout = 240)
{
    cr_assert_geq(sodium_init(), 0);
    fake f;
    fake_open(&f);
    size_t mn, dn, d2n;
    unsigned char *model = tiny_model(&mn);
    char *data = tiny_data(1, &dn), *data2 = tiny_data(2, &d2n);
    char mh[65], dh[65], d2h[65];
    snprintf(mh, sizeof mh, "%s", serve(&f, model, mn, NULL));
    snprintf(dh, sizeof dh, "%s", serve(&f, data, dn, NULL));
    snprintf(d2h, sizeof d2h, "%s", serve(&f, data2, d2n, NULL));
    wthread t;
    start_worker(&t, f.ep);
    cr_assert(pump(&f, 60000, is_enrolled, NULL), "the worker did not enroll");

    uint64_t job = 1;
    assign(&f, job, mh, dh, 6, 2);
    cr_assert(pump(&f, 90000, is_done, &job), "job 1 not done (failed: %s)", f.reason);
    cr_expect_eq(f.failed, 0, "%s", f.reason);
    cr_expect_geq(f.progress_msgs, 3);
    cr_expect_eq(f.last_step, 6);
    cr_expect_geq(f.ckpt_progress, 1, "no checkpoint was uploaded");
    /* done names blobs that were uploaded, whole, with these hashes */
    blob *a = find_blob(f.uploaded, f.n_uploaded, f.adapter);
    blob *m = find_blob(f.uploaded, f.n_uploaded, f.metrics);
    cr_assert_not_null(a, "adapter %s not uploaded", f.adapter);
    cr_assert_not_null(m, "metrics %s not uploaded", f.metrics);
    char h[65];
    sha_hex(a->bytes, a->size, h);
    cr_expect_str_eq(h, f.adapter);
    cr_expect(a->size > 16 && !memcmp(a->bytes, "GGUF", 4));
    sha_hex(m->bytes, m->size, h);
    cr_expect_str_eq(h, f.metrics);
    cr_expect(m->size > 2 && m->bytes[0] == '{');
    cr_expect_eq(find_blob(f.served, f.n_served, mh)->gets, 1);
    cr_expect_eq(find_blob(f.served, f.n_served, dh)->gets, 1);
    char path[300];
    snprintf(path, sizeof path, "%s/blobs/%s", t.dir, mh);
    cr_expect_eq(access(path, R_OK), 0, "the model is not in the cache");

    /* a second job on the same model: the model comes from the cache */
    job = 2;
    assign(&f, job, mh, d2h, 3, 0);
    cr_assert(pump(&f, 90000, is_done, &job), "job 2 not done (failed: %s)", f.reason);
    cr_expect_eq(find_blob(f.served, f.n_served, mh)->gets, 1,
                 "the model was downloaded twice");
    cr_expect_eq(find_blob(f.served, f.n_served, d2h)->gets, 1);

    /* a retried attempt resumes from job 1's checkpoint, not from step 0 */
    cr_assert(f.ckpt[0]);
    cr_expect(f.ckpt_step == 2 || f.ckpt_step == 4, "checkpoint at step %lld",
              (long long)f.ckpt_step);
    blob *ck = find_blob(f.uploaded, f.n_uploaded, f.ckpt);
    cr_assert_not_null(ck);
    serve(&f, ck->bytes, ck->size, NULL);
    int64_t from = f.ckpt_step;
    job = 3;
    assign_resume(&f, job, mh, dh, 6, 2, f.ckpt, (uint64_t)from);
    cr_assert(pump(&f, 90000, is_done, &job), "job 3 not done (failed: %s)", f.reason);
    m = find_blob(f.uploaded, f.n_uploaded, f.metrics);
    cr_assert_not_null(m);
    char want[64];
    snprintf(want, sizeof want, "\"start_step\": %lld", (long long)from);
    char *txt = strndup((const char *)m->bytes, m->size);
    cr_expect_not_null(strstr(txt, want), "metrics of the resumed job: %s", txt);
    free(txt);
    stop_worker(&t);
    cr_expect_eq(t.rc, QV_OK, "%s", t.err.msg);
    fake_close(&f);
    free(model);
    free(data);
    free(data2);
}

Test(worker, abort_stops_a_running_job_quickly, .timeout = 240)
{
    rig r;
    rig_start(&r);
    uint64_t job = 5;
    assign(&r.f, job, r.mh, r.dh, 1000000, 0);
    cr_assert(pump(&r.f, 60000, is_stepping, &job), "the job did not start");
    qv_wire_writer *w = W(QV_MSG_ABORT, 3);
    qv_wire_kv_u64(w, "job", job);
    qv_wire_kv_u64(w, "attempt", 1);
    qv_wire_kv_str(w, "reason", "cancelled by the test");
    fsend(&r.f, w);
    double t0 = now_ms();
    cr_assert(pump(&r.f, 10000, is_failed, &job), "no failed after abort");
    double dt = now_ms() - t0;
    cr_expect_lt(dt, 2000.0, "abort took %.0f ms", dt);
    cr_expect_not(r.f.failed_retry);
    cr_expect_not_null(strstr(r.f.reason, "cancelled by the test"), "%s", r.f.reason);
    cr_expect_eq(r.f.done, 0);
    stop_worker(&r.t);
    cr_expect_eq(r.t.rc, QV_OK, "%s", r.t.err.msg);
    rig_close(&r);
}

Test(worker, shutdown_hands_back_with_a_checkpoint, .timeout = 240)
{
    rig r;
    rig_start(&r);
    uint64_t job = 6;
    assign(&r.f, job, r.mh, r.dh, 1000000, 0);
    cr_assert(pump(&r.f, 60000, is_stepping, &job), "the job did not start");
    r.t.stop = 1; /* SIGINT */
    cr_assert(pump(&r.f, 15000, is_failed, &job), "no failed on shutdown");
    cr_expect(r.f.failed_retry, "a job handed back on shutdown is retried");
    cr_expect_geq(r.f.ckpt_progress, 1, "the checkpoint was not uploaded first");
    cr_expect_not_null(strstr(r.f.reason, "shutting down"), "%s", r.f.reason);
    pthread_join(r.t.th, NULL);
    qv_devlist_destroy(&r.t.devs);
    cr_expect_eq(r.t.rc, QV_OK, "%s", r.t.err.msg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", r.t.dir);
    cr_expect_eq(system(cmd), 0);
    rig_close(&r);
}

Test(worker, rejects_a_blob_whose_bytes_do_not_match, .timeout = 240)
{
    cr_assert_geq(sodium_init(), 0);
    fake f;
    fake_open(&f);
    size_t mn, dn;
    unsigned char *model = tiny_model(&mn);
    char *data = tiny_data(1, &dn);
    char mh[65], wrong[65];
    snprintf(mh, sizeof mh, "%s", serve(&f, model, mn, NULL));
    sha_hex("something else", 14, wrong);
    serve(&f, data, dn, wrong); /* these bytes under another blob's name */
    wthread t;
    start_worker(&t, f.ep);
    cr_assert(pump(&f, 60000, is_enrolled, NULL));
    uint64_t job = 9;
    assign(&f, job, mh, wrong, 3, 0);
    cr_assert(pump(&f, 30000, is_failed, &job), "the bad blob was not refused");
    cr_expect_not_null(strstr(f.reason, "hash"), "%s", f.reason);
    cr_expect_eq(f.done, 0);
    char path[300];
    snprintf(path, sizeof path, "%s/blobs/%s", t.dir, wrong);
    cr_expect_neq(access(path, F_OK), 0, "the bad blob is in the cache");
    snprintf(path, sizeof path, "%s/blobs/%s.part", t.dir, wrong);
    cr_expect_neq(access(path, F_OK), 0, "the bad blob's bytes were kept");
    stop_worker(&t);
    fake_close(&f);
    free(model);
    free(data);
}

static bool rehello(fake *f, void *a)
{
    return f->hellos >= 2 && f->enrolled >= 2 && f->last_job == *(uint64_t *)a &&
           f->last_step > 0;
}

Test(worker, reconnects_and_carries_on_with_its_job, .timeout = 240)
{
    rig r;
    rig_start(&r);
    uint64_t job = 11;
    assign(&r.f, job, r.mh, r.dh, 1000000, 0);
    cr_assert(pump(&r.f, 60000, is_stepping, &job), "the job did not start");
    int64_t before = r.f.last_step;
    /* the scheduler goes away for longer than its lease, then comes back
     * on the same address */
    zmq_close(r.f.sock);
    sleep_ms(4000);
    r.f.sock = zmq_socket(r.f.ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(r.f.sock, ZMQ_LINGER, &zero, sizeof zero);
    int rc = -1;
    for (int i = 0; i < 50 && rc; i++) {
        rc = zmq_bind(r.f.sock, r.f.ep);
        if (rc)
            sleep_ms(100);
    }
    cr_assert_eq(rc, 0, "cannot bind %s again", r.f.ep);
    r.f.last_step = 0;
    cr_assert(pump(&r.f, 30000, rehello, &job), "the worker did not come back "
              "with its job (hellos %d)", r.f.hellos);
    cr_expect_gt(r.f.last_step, before, "the job did not carry on");
    cr_expect_eq(r.f.failed, 0, "%s", r.f.reason);
    qv_wire_writer *w = W(QV_MSG_ABORT, 2);
    qv_wire_kv_u64(w, "job", job);
    qv_wire_kv_u64(w, "attempt", 1);
    fsend(&r.f, w);
    cr_assert(pump(&r.f, 10000, is_failed, &job));
    stop_worker(&r.t);
    cr_expect_eq(r.t.rc, QV_OK, "%s", r.t.err.msg);
    rig_close(&r);
}

static bool put_dropped(fake *f, void *a) { (void)a; return f->puts_dropped > 0; }

/* The scheduler restarted while the worker uploaded its result: the old
 * one never answered blob_put, the new one asked the worker to enroll
 * again on the same connection, and the upload was never sent again, so
 * the job stayed running for good (seen in e2e under load). Now the worker
 * resumes what was cut when it enrolls again. */
Test(worker, enrolled_again_it_resumes_a_cut_upload, .timeout = 240)
{
    rig r;
    rig_start(&r);
    r.f.drop_puts = true;
    uint64_t job = 21;
    assign(&r.f, job, r.mh, r.dh, 2, 0);
    cr_assert(pump(&r.f, 60000, put_dropped, NULL), "the worker uploaded nothing");
    r.f.drop_puts = false;
    r.f.ask_enroll = true;
    int enrolled = r.f.enrolled;
    cr_expect(pump(&r.f, 15000, is_done, &job), "the cut upload was not sent again "
              "(enrolls %d -> %d, done %d)", enrolled, r.f.enrolled, r.f.done);
    cr_expect_gt(r.f.enrolled, enrolled, "the worker did not enroll again");
    stop_worker(&r.t);
    cr_expect_eq(r.t.rc, QV_OK, "%s", r.t.err.msg);
    rig_close(&r);
}

static bool chunk_dropped(fake *f, void *a) { (void)a; return f->chunks_dropped > 0; }

/* The same, cut in the middle of the upload: the worker sent its upload
 * again from byte 0 whatever the scheduler said it held, and the scheduler
 * refused the chunks it had already. It goes on from the offset in the
 * answer to blob_put. */
Test(worker, enrolled_again_it_goes_on_from_the_bytes_the_scheduler_holds, .timeout = 240)
{
    rig r;
    rig_start(&r);
    r.f.stall_at = CHUNK; /* after the first chunk */
    uint64_t job = 22;
    assign(&r.f, job, r.mh, r.dh, 2, 0);
    cr_assert(pump(&r.f, 60000, chunk_dropped, NULL), "the upload was not cut (done %d)", r.f.done);
    r.f.stall_at = 0;
    r.f.ask_enroll = true;
    cr_expect(pump(&r.f, 15000, is_done, &job), "the cut upload did not complete "
              "(done %d, failed %d: %s)", r.f.done, r.f.failed, r.f.reason);
    stop_worker(&r.t);
    cr_expect_eq(r.t.rc, QV_OK, "%s", r.t.err.msg);
    rig_close(&r);
}

Test(worker, cache_evicts_least_recently_used_unpinned_blobs, .timeout = 240)
{
    cr_assert_geq(sodium_init(), 0);
    fake f;
    fake_open(&f);
    size_t mn, dn, d2n;
    unsigned char *model = tiny_model(&mn);
    char *data = tiny_data(1, &dn), *data2 = tiny_data(2, &d2n);
    char mh[65], dh[65], d2h[65];
    snprintf(mh, sizeof mh, "%s", serve(&f, model, mn, NULL));
    snprintf(dh, sizeof dh, "%s", serve(&f, data, dn, NULL));
    snprintf(d2h, sizeof d2h, "%s", serve(&f, data2, d2n, NULL));
    wthread t;
    start_worker_cap(&t, f.ep, mn + d2n);
    cr_assert(pump(&f, 60000, is_enrolled, NULL));
    uint64_t job = 21;
    assign(&f, job, mh, dh, 2, 0);
    cr_assert(pump(&f, 60000, is_done, &job), "%s", f.reason);
    /* job 2 needs the model (cached, pinned) and new data: the old data,
     * least recently used and no longer needed, makes room */
    job = 22;
    assign(&f, job, mh, d2h, 2, 0);
    cr_assert(pump(&f, 60000, is_done, &job), "%s", f.reason);
    char path[300];
    snprintf(path, sizeof path, "%s/blobs/%s", t.dir, dh);
    cr_expect_neq(access(path, F_OK), 0, "the least recently used blob stayed");
    snprintf(path, sizeof path, "%s/blobs/%s", t.dir, mh);
    cr_expect_eq(access(path, F_OK), 0, "the model was evicted");
    cr_expect_eq(find_blob(f.served, f.n_served, mh)->gets, 1);
    stop_worker(&t);
    fake_close(&f);
    free(model);
    free(data);
    free(data2);
}

/* Enroll first, tune after: with a cold tune cache the worker enrolls at
 * once, saying it is tuning (done < total), heartbeats say so too, and it
 * stops tuning when told to stop. */
Test(worker, enrolls_before_tuning, .timeout = 240)
{
    cr_assert_geq(sodium_init(), 0);
    fake f;
    fake_open(&f);
    wthread t;
    memset(&t, 0, sizeof t);
    snprintf(t.dir, sizeof t.dir, "/tmp/qvac-worker-XXXXXX");
    cr_assert_not_null(mkdtemp(t.dir));
    char db[128];
    snprintf(db, sizeof db, "%s/tune.db", t.dir);
    qv_err e;
    cr_assert_eq(qv_devlist_open(&t.devs, &e), QV_OK, "%s", e.msg);
    const char *dev = qv_devlist_find(t.devs, "opencl:0") ? "opencl:0"
                    : qv_devlist_find(t.devs, "vulkan:0") ? "vulkan:0" : NULL;
    if (!dev) {
        qv_devlist_destroy(&t.devs);
        fake_close(&f);
        cr_skip_test("no OpenCL or Vulkan device to tune here");
    }
    f.want_dev = dev;
    t.o.join = f.ep;
    t.o.devices = dev;
    t.o.cache_dir = t.dir;
    t.o.insecure = true;
    t.o.no_bench = true;
    t.o.tune_db = db;
    t.o.tune_budget_evals = 2;
    t.o.name = "tuning-worker";
    t.o.stop = &t.stop;
    t.o.devs = t.devs;
    double t0 = now_ms();
    cr_assert_eq(pthread_create(&t.th, NULL, worker_main, &t), 0);
    cr_assert(pump(&f, 30000, is_enrolled, NULL), "the worker did not enroll");
    double enrolled_ms = now_ms() - t0;
    cr_expect_eq(f.enroll_tuning, 1, "the first enroll says it is tuning");
    cr_expect_lt(f.tune_done, f.tune_total);
    cr_expect_geq(f.tune_total, 10, "every kernel of the device: %llu",
                  (unsigned long long)f.tune_total);
    cr_expect_lt(enrolled_ms, 10000, "enrolled after %.0f ms: it tuned first?", enrolled_ms);
    cr_expect_geq(f.hb_tuning, 1, "heartbeats carry the tuning progress");
    double s0 = now_ms();
    stop_worker(&t);
    cr_expect_lt(now_ms() - s0, 60000, "stopping took %.0f ms", now_ms() - s0);
    cr_expect_eq(t.rc, QV_OK, "%s", t.err.msg);
    fake_close(&f);
}

static bool tuned_and_shared(fake *f, void *a)
{
    (void)a;
    return f->enrolled >= 2 && !f->last_enroll_tuning && f->tunings_put > 0;
}

/* Shared tunings: worker B of a fingerprint the fleet knows adopts the
 * fleet's configurations after verifying each on its own device, tunes
 * nothing itself, and refuses what does not hold (a configuration that is
 * not legal for the kernel, one for another kernel source); then it shares
 * its results back. */
Test(worker, adopts_verified_fleet_tunings_and_refuses_tampered_ones, .timeout = 240)
{
    cr_assert_geq(sodium_init(), 0);
    fake f;
    fake_open(&f);
    wthread t;
    memset(&t, 0, sizeof t);
    snprintf(t.dir, sizeof t.dir, "/tmp/qvac-worker-XXXXXX");
    cr_assert_not_null(mkdtemp(t.dir));
    char db[128];
    snprintf(db, sizeof db, "%s/tune.db", t.dir);
    qv_err e;
    cr_assert_eq(qv_devlist_open(&t.devs, &e), QV_OK, "%s", e.msg);
    qv_device *dev = qv_devlist_find(t.devs, "opencl:0");
    if (!dev)
        dev = qv_devlist_find(t.devs, "vulkan:0");
    if (!dev) {
        qv_devlist_destroy(&t.devs);
        fake_close(&f);
        cr_skip_test("no OpenCL or Vulkan device here");
    }
    /* the fleet's offer: every kernel's default configuration at the shape
     * the worker tunes, as another machine of this fingerprint would send */
    static qv_tune_entry offer[64];
    size_t n = 0, nk = 0;
    for (; qv_kernels[nk] && n < 60; nk++) {
        const qv_kernel_decl *k = qv_kernels[nk];
        qv_tune_entry *o = &offer[n++];
        memset(o, 0, sizeof *o);
        snprintf(o->key.fingerprint, sizeof o->key.fingerprint, "%s", dev->info.fingerprint);
        snprintf(o->key.kernel, sizeof o->key.kernel, "%s", k->name);
        cr_assert_eq(qv_kernel_source_hash(dev, k, o->key.src_hash, &e), QV_OK, "%s", e.msg);
        qv_shape at;
        qv_tune_bucket(k, (qv_shape){256, 1024, 1024, 16}, o->key.bucket,
                       sizeof o->key.bucket, &at);
        qv_config c;
        qv_kernel_default_config(k, &c);
        qv_config_format(k, &c, o->config, sizeof o->config);
        o->median_ns = 1000;
    }
    /* tampered: WG_X=3 is no legal value; a source this device does not run */
    qv_tune_entry *bad1 = &offer[n++], *bad2 = &offer[n++];
    *bad1 = offer[0];
    snprintf(bad1->config, sizeof bad1->config, "WG_X=3");
    bad1->median_ns = 1;
    *bad2 = offer[1];
    snprintf(bad2->key.src_hash, sizeof bad2->key.src_hash, "00000000deadbeef");
    f.offer = offer;
    f.n_offer = n;
    f.want_dev = dev->info.id;
    t.o.join = f.ep;
    t.o.devices = dev->info.id;
    t.o.cache_dir = t.dir;
    t.o.insecure = true;
    t.o.no_bench = true;
    t.o.tune_db = db;
    t.o.tune_budget_evals = 2;
    t.o.name = "worker-b";
    t.o.stop = &t.stop;
    t.o.devs = t.devs;
    cr_assert_eq(pthread_create(&t.th, NULL, worker_main, &t), 0);
    cr_assert(pump(&f, 200000, tuned_and_shared, NULL),
              "worker B did not finish with the fleet's tunings (enrolls %d, shared %d)",
              f.enrolled, f.tunings_put);
    cr_expect_eq(f.tunings_gets, 1, "one fingerprint asked once");
    cr_expect_eq(f.enroll_tuning, 1);
    t.stop = 1;
    pthread_join(t.th, NULL);
    cr_expect_eq(t.rc, QV_OK, "%s", t.err.msg);
    /* what B's cache holds: every kernel from the fleet, timed here, and
     * nothing of the tampered entries */
    qv_tune_cache *c = NULL;
    cr_assert_eq(qv_tune_cache_open(db, 1, 2000, &c, &e), QV_OK, "%s", e.msg);
    qv_tune_entry *all = NULL;
    size_t na = 0;
    cr_assert_eq(qv_tune_cache_list(c, NULL, NULL, &all, &na, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(na, nk, "%zu entries for %zu kernels", na, nk);
    for (size_t i = 0; i < na; i++) {
        cr_expect_str_eq(all[i].strategy, "fleet", "%s was tuned here", all[i].key.kernel);
        cr_expect_neq(all[i].median_ns, 1000.0, "the peer's time was trusted");
        cr_expect_str_neq(all[i].config, "WG_X=3");
        cr_expect_str_neq(all[i].key.src_hash, "00000000deadbeef");
    }
    free(all);
    qv_tune_cache_destroy(&c);
    cr_expect_eq(f.tunings_put, (int)nk, "B shares what it holds");
    qv_devlist_destroy(&t.devs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", t.dir);
    cr_expect_eq(system(cmd), 0);
    fake_close(&f);
}
