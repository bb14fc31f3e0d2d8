/* scheduler/server.c — the scheduler daemon loop (see server.h and
 * docs/protocol.md). */
#include "scheduler/server.h"

#include <errno.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "common/sbuf.h"
#include "formats/wire.h"
#include "scheduler/keys.h"
#include "scheduler/fleet.h"
#include "scheduler/http.h"
#include "scheduler/store.h"
#include "train/bench.h"

#ifndef QV_VERSION
#define QV_VERSION "0"
#endif

#define DEF_MAX_SESS 65536  /* connections; o.max_sessions */
#define DEF_MAX_UNKNOWN 1024 /* of them from keys not admitted; o.max_unknown */
#define JUNK_LIMIT 32        /* refused messages before a key is muted */
#define MUTE_MS 60000        /* how long a muted connection is ignored */
#define MAX_XFER 4
#define MAX_FOLLOW 4
#define MAX_DEV QV_WIRE_MAX_DEVICES
#define CHUNK (1u << 20)
#define CREDIT (8u << 20)
#define MAX_PARTS 8
#define HELD_MAX (16u << 20)    /* reply bytes a group may hold back */
#define BLOB_RESERVE (256u << 20) /* free disk an upload may not take */
#define DEF_MAX_BLOB (64ull << 30)  /* o.max_blob */

enum { ROLE_NONE = 0, ROLE_CLIENT, ROLE_WORKER };

typedef struct dev {
    char id[QV_STORE_ID_MAX], backend[32], name[QV_STORE_ID_MAX];
    uint64_t memory;
    double score; /* tuned GFLOP/s of ternary_matmul (0: not reported) */
    int64_t job;
    int attempt;
    /* the worker still runs an attempt of this job that is no longer its
     * own (the lease ended while this scheduler was down, say): aborted,
     * and the device busy until a heartbeat no longer lists it */
    int64_t held;
    int held_attempt;
} dev;

static int dev_idle(const dev *d) { return !d->job && !d->held; }

typedef struct upload {
    qv_blob_upload *u;
    char hash[QV_BLOB_HEX];
    uint64_t size;
    uint64_t granted; /* bytes of the blob the client may have sent so far */
} upload;

typedef struct download {
    int active;
    char hash[QV_BLOB_HEX];
    uint64_t size, off, credit;
} download;

typedef struct follow {
    int active;
    int64_t job, after;
} follow_t;

typedef struct sess {
    struct sess *next; /* the hash chain */
    size_t at;         /* index in qv_server.all */
    uint64_t h;
    /* the key is admitted (a client, an enrolled worker, or insecure):
     * connections that are not count against o.max_unknown */
    int admitted;
    /* refused messages (denied, malformed) with none accepted; at
     * JUNK_LIMIT the connection is muted until mute_until */
    unsigned junk;
    int64_t mute_until;
    int64_t deny_log_ms; /* the last "denied" line; others are counted */
    uint64_t denied_quiet;
    /* heartbeats are kept here and written to the store at the tick */
    int64_t seen_ms, flushed_ms;
    /* the key was removed (`qvac clients remove`, `qvac workers remove`)
     * while connected: treated as unknown from then on */
    int revoked;
    int client_hint; /* the handshake said "client" (CURVE) */
    int await_hb;    /* enrolled holding attempts: no job before a heartbeat */
    uint8_t rid[256];
    size_t rid_len;
    char key[QV_KEY_Z85];
    int64_t last_ms;
    char worker[QV_STORE_ID_MAX]; /* after enroll */
    int enrolled;
    /* the worker handed a job back (failed, retry = true: it is shutting
     * down or cannot run it now): no new jobs on this connection for a
     * lease, so the retry goes to another worker instead of burning
     * attempts here (a worker that shuts down is gone by then) */
    int64_t drain_until_ms;
    /* the worker enrolled before tuning its kernels: visible, but given no
     * job until it says it is done (issue 13) */
    int tuning;
    uint64_t tune_done, tune_total;
    dev devs[MAX_DEV];
    int ndev;
    upload ups[MAX_XFER];
    download downs[MAX_XFER];
    follow_t fol[MAX_FOLLOW];
} sess;

struct qv_server {
    qv_server_opts o;
    qv_http *http;                 /* --http: /metrics and the fleet report */
    int64_t next_metrics_ms, next_html_ms;
    char data_dir[4096];
    char name[QV_STORE_ID_MAX];
    char endpoint[256];
    qv_keypair kp;
    void *ctx, *router, *zap;
    pthread_t zap_thread;
    int zap_started;
    int lock_fd, locked;           /* <data>/scheduler.lock, held while open */
    qv_store *store;
    atomic_int stop;
    /* the session table (see find_sess) */
    sess **all, **bucket;
    size_t nsess, cap, nbucket, nunknown;
    uint64_t denied, ignored, busy;   /* counters for /metrics */
    uint64_t max_worker_id;           /* the largest worker id handed out */
    int dispatch_due;                 /* something may have become runnable */
    int64_t next_dispatch_ms;         /* the periodic safety pass */
    int64_t data_version;             /* the store's, at the last look */
    int64_t next_part_sweep_ms;       /* partial uploads nobody holds */
    /* group commit: replies held until the group's changes are durable */
    int grouping;
    struct held { uint8_t rid[256]; size_t rid_len; qv_wire_out out; } *held;
    size_t nheld, held_cap, held_bytes;
    uint8_t *buf; /* CHUNK bytes for downloads */
};

/* ---- small helpers ----------------------------------------------------- */

static void logf_(qv_server *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void logf_(qv_server *s, const char *fmt, ...)
{
    if (!s->o.log)
        return;
    char line[1600], safe[1600 * 4 + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* a log line is one line: control characters a peer put in its strings
     * (a newline that would forge a line, terminal escapes) are escaped */
    qv_printable(safe, sizeof safe, line);
    s->o.log(s->o.log_ud, safe);
}

/* A short name of a peer for log lines: its key, else its routing id. */
static const char *peer(const sess *p, char *buf, size_t n)
{
    if (p->key[0]) {
        snprintf(buf, n, "key %s", p->key);
        return buf;
    }
    size_t o = (size_t)snprintf(buf, n, "peer ");
    for (size_t i = 0; i < p->rid_len && o + 3 < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%02x", p->rid[i]);
    return buf;
}

static void send_raw(qv_server *s, const uint8_t *rid, size_t rid_len,
                     const qv_wire_out *out)
{
    if (zmq_send(s->router, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    for (int i = 0; i < QV_WIRE_FRAMES; i++)
        zmq_send(s->router, out->frame[i].data, out->frame[i].size,
                 (i + 1 < QV_WIRE_FRAMES ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
}

/* Sends, or inside a store group holds the message until the group is
 * committed: an acknowledgement never runs ahead of the disk. The message
 * is moved (out is left empty). */
static void send_rid(qv_server *s, const uint8_t *rid, size_t rid_len,
                     qv_wire_out *out)
{
    if (!s->grouping) {
        send_raw(s, rid, rid_len, out);
        return;
    }
    if (s->nheld == s->held_cap) {
        size_t nc = s->held_cap ? 2 * s->held_cap : 64;
        struct held *h = realloc(s->held, nc * sizeof *h);
        if (!h) { /* the peer times out and asks again; nothing is acknowledged */
            logf_(s, "out of memory: a reply dropped");
            return;
        }
        s->held = h, s->held_cap = nc;
    }
    struct held *h = &s->held[s->nheld++];
    memcpy(h->rid, rid, rid_len);
    h->rid_len = rid_len;
    h->out = *out;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < QV_WIRE_FRAMES; i++)
        s->held_bytes += h->out.frame[i].size;
}

static void send_out(qv_server *s, sess *p, qv_wire_out *out)
{
    send_rid(s, p->rid, p->rid_len, out);
}

/* Ends a group: commit, then send what it held (or, when the commit
 * failed, drop it: the peers ask again, nothing was acknowledged). */
static void group_end(qv_server *s)
{
    if (!s->grouping)
        return;
    s->grouping = 0;
    qv_err e = {0};
    int ok = qv_store_group_end(s->store, &e) == QV_OK;
    if (!ok)
        logf_(s, "cannot commit: %s; %zu repl%s withheld, the peers will ask again",
              e.msg, s->nheld, s->nheld == 1 ? "y" : "ies");
    for (size_t i = 0; i < s->nheld; i++) {
        if (ok)
            send_raw(s, s->held[i].rid, s->held[i].rid_len, &s->held[i].out);
        qv_wire_out_free(&s->held[i].out);
    }
    s->nheld = 0;
    s->held_bytes = 0;
}

static void group_begin(qv_server *s)
{
    qv_err e = {0};
    if (!s->grouping && qv_store_group_begin(s->store, &e) == QV_OK)
        s->grouping = 1;
    else if (!s->grouping) /* each change commits alone, as before */
        logf_(s, "cannot begin a group commit: %s", e.msg);
}

/* Finishes and sends a writer; a build failure is logged (a bug). */
static void send_w(qv_server *s, sess *p, qv_wire_writer *w)
{
    qv_wire_out out = {0};
    qv_err e = {0};
    if (qv_wire_finish(w, &out, &e) == QV_OK)
        send_out(s, p, &out);
    else
        logf_(s, "internal: cannot build a reply: %s", e.msg);
    qv_wire_out_free(&out);
    qv_wire_writer_free(w);
}

static void send_error_rid(qv_server *s, const uint8_t *rid, size_t rid_len,
                           const char *code, const char *msg, const char *re)
{
    qv_wire_out out = {0};
    if (qv_wire_error_reply(code, msg, re, &out, NULL) == QV_OK)
        send_rid(s, rid, rid_len, &out);
    qv_wire_out_free(&out);
}

static void send_error(qv_server *s, sess *p, const char *code,
                       const char *msg, const char *re)
{
    send_error_rid(s, p->rid, p->rid_len, code, msg, re);
}

static qv_wire_writer *wnew(qv_wire_type t, size_t n)
{
    qv_wire_writer *w = NULL;
    if (qv_wire_writer_new(t, n, &w, NULL) != QV_OK)
        return NULL;
    return w;
}

/* ---- the session table ---------------------------------------------------
 * One entry per connection (routing id), found through a chained hash that
 * doubles with the table, scanned through the dense array s->all. It grows
 * with the fleet up to o.max_sessions; connections from keys that are not
 * admitted may hold at most o.max_unknown of them, the least recently
 * active one making room for a new one, so a flood of unknown keys cannot
 * keep a worker with a token (or anyone admitted) out. */

static uint64_t rid_hash(const void *rid, size_t n)
{
    const uint8_t *b = rid;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static sess *find_sess(qv_server *s, const void *rid, size_t n)
{
    if (!s->nbucket)
        return NULL;
    uint64_t h = rid_hash(rid, n);
    for (sess *p = s->bucket[h & (s->nbucket - 1)]; p; p = p->next)
        if (p->h == h && p->rid_len == n && memcmp(p->rid, rid, n) == 0)
            return p;
    return NULL;
}

static int table_grow(qv_server *s)
{
    if (s->nsess < s->cap)
        return 0;
    size_t nc = s->cap ? 2 * s->cap : 256;
    sess **all = realloc(s->all, nc * sizeof *all);
    if (!all)
        return -1;
    s->all = all;
    sess **nb = calloc(nc, sizeof *nb); /* as many buckets as entries */
    if (!nb)
        return -1;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *p = s->all[i];
        p->next = nb[p->h & (nc - 1)];
        nb[p->h & (nc - 1)] = p;
    }
    free(s->bucket);
    s->bucket = nb;
    s->nbucket = nc;
    s->cap = nc;
    return 0;
}

static void sess_set_admitted(qv_server *s, sess *p, int admitted)
{
    if (p->admitted == admitted)
        return;
    p->admitted = admitted;
    if (admitted)
        s->nunknown--;
    else
        s->nunknown++;
}

static void sess_drop(qv_server *s, sess *p)
{
    /* its uploads stay on disk for a resume; the sweep removes them when
     * nobody comes back within ten minutes */
    for (int i = 0; i < MAX_XFER; i++)
        if (p->ups[i].u)
            qv_blob_upload_detach(&p->ups[i].u);
    sess **pp = &s->bucket[p->h & (s->nbucket - 1)];
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    size_t at = p->at;
    s->all[at] = s->all[--s->nsess];
    s->all[at]->at = at;
    if (!p->admitted)
        s->nunknown--;
    free(p);
}

/* The least recently active connection of a key that is not admitted. */
static sess *oldest_unknown(qv_server *s)
{
    sess *o = NULL;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *p = s->all[i];
        if (!p->admitted && (!o || p->last_ms < o->last_ms))
            o = p;
    }
    return o;
}

/* A new connection's entry; NULL (and a `busy` reply) when the table is
 * full of admitted connections or out of memory. */
static sess *sess_new(qv_server *s, const void *rid, size_t n, int admitted,
                      int64_t now)
{
    if (n > sizeof ((sess *)0)->rid)
        return NULL;
    int full = s->nsess >= (size_t)s->o.max_sessions;
    if (full || (!admitted && s->nunknown >= (size_t)s->o.max_unknown)) {
        sess *o = oldest_unknown(s);
        if (o)
            sess_drop(s, o);
    }
    sess *p = NULL;
    if (s->nsess < (size_t)s->o.max_sessions && table_grow(s) == 0)
        p = calloc(1, sizeof *p);
    if (!p) {
        s->busy++;
        send_error_rid(s, rid, n, "busy", "the scheduler holds as many connections "
                       "as it may (--max-sessions); try again in a few seconds", NULL);
        return NULL;
    }
    memcpy(p->rid, rid, n);
    p->rid_len = n;
    p->last_ms = now;
    p->h = rid_hash(rid, n);
    p->admitted = 1;
    sess_set_admitted(s, p, admitted);
    p->at = s->nsess;
    s->all[s->nsess++] = p;
    p->next = s->bucket[p->h & (s->nbucket - 1)];
    s->bucket[p->h & (s->nbucket - 1)] = p;
    return p;
}

static sess *worker_sess(qv_server *s, const char *worker)
{
    sess *best = NULL;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *p = s->all[i];
        if (p->enrolled && strcmp(p->worker, worker) == 0 &&
            (!best || p->last_ms > best->last_ms))
            best = p;
    }
    return best;
}

static int is_terminal(qv_job_state st)
{
    return st == QV_JOB_SUCCEEDED || st == QV_JOB_FAILED ||
           st == QV_JOB_CANCELLED;
}

/* The worker id of a key, "" when none (the store's index on keys). */
static qv_status worker_of_key(qv_server *s, const char *key, char *id,
                               qv_err *err)
{
    return qv_store_worker_by_key(s->store, key, id, err);
}

/* ---- options: msgpack map <-> JSON object ------------------------------ */

static qv_status opts_to_json(const msgpack_object *map, char **out,
                              qv_err *err)
{
    json_t *o = json_object();
    if (!o)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory");
    if (map) {
        for (uint32_t i = 0; i < map->via.map.size; i++) {
            const msgpack_object *k = &map->via.map.ptr[i].key;
            const msgpack_object *v = &map->via.map.ptr[i].val;
            char key[QV_WIRE_MAX_KEY + 1];
            if (k->type != MSGPACK_OBJECT_STR ||
                k->via.str.size > QV_WIRE_MAX_KEY) {
                json_decref(o);
                return qv_fail(err, QV_ERR_CORRUPT, "submit.options: keys must be strings");
            }
            memcpy(key, k->via.str.ptr, k->via.str.size);
            key[k->via.str.size] = '\0';
            json_t *jv = NULL;
            switch (v->type) {
            case MSGPACK_OBJECT_NIL: jv = json_null(); break;
            case MSGPACK_OBJECT_BOOLEAN: jv = json_boolean(v->via.boolean); break;
            case MSGPACK_OBJECT_POSITIVE_INTEGER:
                if (v->via.u64 <= INT64_MAX)
                    jv = json_integer((json_int_t)v->via.u64);
                break;
            case MSGPACK_OBJECT_NEGATIVE_INTEGER: jv = json_integer(v->via.i64); break;
            case MSGPACK_OBJECT_FLOAT32:
            case MSGPACK_OBJECT_FLOAT64: jv = json_real(v->via.f64); break;
            case MSGPACK_OBJECT_STR: jv = json_stringn(v->via.str.ptr, v->via.str.size); break;
            default: break;
            }
            if (!jv) {
                json_decref(o);
                return qv_fail(err, QV_ERR_CORRUPT,
                               "submit.options.%s: must be nil, a bool, a number "
                               "(that fits an i64) or a string", key);
            }
            json_object_set_new(o, key, jv);
        }
    }
    *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return *out ? QV_OK : qv_fail(err, QV_ERR_NOMEM, "out of memory");
}

static void w_opts(qv_wire_writer *w, const char *json)
{
    json_t *o = json ? json_loads(json, 0, NULL) : NULL;
    size_t n = 0;
    const char *k;
    json_t *v;
    if (o && json_is_object(o))
        json_object_foreach(o, k, v)
            if (!json_is_object(v) && !json_is_array(v))
                n++;
    qv_wire_kv_map(w, "options", n);
    if (o && json_is_object(o))
        json_object_foreach(o, k, v) {
            if (json_is_object(v) || json_is_array(v))
                continue;
            qv_wire_w_key(w, k);
            if (json_is_integer(v)) qv_wire_w_i64(w, json_integer_value(v));
            else if (json_is_real(v)) qv_wire_w_f64(w, json_real_value(v));
            else if (json_is_string(v)) qv_wire_w_str(w, json_string_value(v));
            else if (json_is_boolean(v)) qv_wire_w_bool(w, json_is_true(v));
            else qv_wire_w_nil(w);
        }
    json_decref(o);
}

/* ---- job records ------------------------------------------------------- */

typedef struct prog {
    int has_step, has_steps, has_loss, has_tps, has_peak;
    uint64_t step, steps, peak;
    double loss, tps;
} prog;

static void parse_prog(const char *json, prog *g)
{
    memset(g, 0, sizeof *g);
    json_t *o = json ? json_loads(json, 0, NULL) : NULL;
    if (!o)
        return;
    json_t *v;
    if ((v = json_object_get(o, "step")) && json_is_integer(v) && json_integer_value(v) >= 0)
        g->has_step = 1, g->step = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(o, "steps")) && json_is_integer(v) && json_integer_value(v) >= 0)
        g->has_steps = 1, g->steps = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(o, "peak_bytes")) && json_is_integer(v) && json_integer_value(v) >= 0)
        g->has_peak = 1, g->peak = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(o, "loss")) && json_is_number(v))
        g->has_loss = 1, g->loss = json_number_value(v);
    if ((v = json_object_get(o, "tokens_per_s")) && json_is_number(v))
        g->has_tps = 1, g->tps = json_number_value(v);
    json_decref(o);
}

/* Writes (pass 1) or counts (pass 0) the fields of a job record. */
static size_t w_job_fields(qv_wire_writer *w, const qv_job *j, const prog *g,
                           int fleet, int pass)
{
    size_t n = 0;
#define F(cond, stmt) do { if (cond) { n++; if (pass) { stmt; } } } while (0)
    char unr[256], need[128] = "";
    size_t o = 0;
    if (j->backend[0])
        o += (size_t)snprintf(need + o, sizeof need - o, " with backend %s", j->backend);
    if (j->min_memory)
        snprintf(need + o, sizeof need - o, "%s %.1f GiB of memory",
                 j->backend[0] ? " and" : " with",
                 (double)j->min_memory / (1024.0 * 1024 * 1024));
    if (fleet) /* devices are enrolled, none fits */
        snprintf(unr, sizeof unr, "no enrolled device%s", need[0] ? need : " at all");
    else
        snprintf(unr, sizeof unr, "waiting for a worker%s (none is connected; "
                 "enroll one with `qvac token` and `qvac worker`)",
                 need[0] ? need : " with any device");
    F(1, qv_wire_kv_u64(w, "id", (uint64_t)j->id));
    F(1, qv_wire_kv_str(w, "name", j->name));
    F(1, qv_wire_kv_str(w, "state", qv_job_state_name(j->state)));
    F(1, qv_wire_kv_i64(w, "priority", j->priority));
    F(1, qv_wire_kv_u64(w, "attempt", (uint64_t)j->attempts));
    F(1, qv_wire_kv_u64(w, "max_attempts", (uint64_t)j->max_attempts));
    F(g->has_step, qv_wire_kv_u64(w, "step", g->step));
    F(g->has_steps, qv_wire_kv_u64(w, "steps", g->steps));
    F(g->has_loss, qv_wire_kv_f64(w, "loss", g->loss));
    F(g->has_tps, qv_wire_kv_f64(w, "tokens_per_s", g->tps));
    F(g->has_peak, qv_wire_kv_u64(w, "peak_bytes", g->peak));
    F(j->worker[0], qv_wire_kv_str(w, "worker", j->worker));
    F(j->device[0], qv_wire_kv_str(w, "device", j->device));
    F(j->reason[0], qv_wire_kv_str(w, "reason", j->reason));
    F(j->state == QV_JOB_QUEUED && !j->runnable, qv_wire_kv_str(w, "unrunnable", unr));
    F(j->created_ms > 0, qv_wire_kv_u64(w, "submitted_ms", (uint64_t)j->created_ms));
    F(j->updated_ms > 0, qv_wire_kv_u64(w, "updated_ms", (uint64_t)j->updated_ms));
    F(j->model_hash[0], qv_wire_kv_str(w, "model", j->model_hash));
    F(j->data_hash[0], qv_wire_kv_str(w, "data", j->data_hash));
    F(j->adapter_hash[0], qv_wire_kv_str(w, "adapter", j->adapter_hash));
    F(j->metrics_hash[0], qv_wire_kv_str(w, "metrics", j->metrics_hash));
    F(j->checkpoint_hash[0], qv_wire_kv_str(w, "checkpoint", j->checkpoint_hash));
#undef F
    return n;
}

static void w_job(qv_wire_writer *w, const qv_job *j, int fleet)
{
    prog g;
    parse_prog(j->progress_json, &g);
    qv_wire_w_map(w, w_job_fields(w, j, &g, fleet, 0));
    w_job_fields(w, j, &g, fleet, 1);
}

/* ---- dispatch ---------------------------------------------------------- */

static void send_abort(qv_server *s, sess *p, int64_t job, int attempt,
                       const char *reason)
{
    qv_wire_writer *w = wnew(QV_MSG_ABORT, 3);
    if (!w)
        return;
    qv_wire_kv_u64(w, "job", (uint64_t)job);
    qv_wire_kv_u64(w, "attempt", (uint64_t)attempt);
    qv_wire_kv_str(w, "reason", reason);
    send_w(s, p, w);
}

static void send_assign(qv_server *s, sess *p, dev *d, const qv_assignment *a)
{
    qv_job j = {0};
    qv_err e = {0};
    if (qv_store_job(s->store, a->job, &j, &e) != QV_OK) {
        logf_(s, "assign job %" PRId64 ": %s", a->job, e.msg);
        return;
    }
    int resume = a->checkpoint_hash[0] != '\0';
    qv_wire_writer *w = wnew(QV_MSG_ASSIGN, 7 + (size_t)resume);
    if (w) {
        qv_wire_kv_u64(w, "job", (uint64_t)a->job);
        qv_wire_kv_u64(w, "attempt", (uint64_t)a->attempt);
        qv_wire_kv_str(w, "device", d->id);
        qv_wire_kv_str(w, "model", j.model_hash);
        qv_wire_kv_str(w, "data", j.data_hash);
        w_opts(w, j.options_json);
        qv_wire_kv_u64(w, "checkpoint_every", (uint64_t)s->o.checkpoint_every);
        if (resume)
            qv_wire_kv_str(w, "resume", a->checkpoint_hash);
        send_w(s, p, w);
    }
    d->job = a->job;
    d->attempt = a->attempt;
    logf_(s, "job %" PRId64 " attempt %d -> worker %s device %s%s%s", a->job,
          a->attempt, p->worker, d->id, resume ? ", resuming from " : "",
          resume ? a->checkpoint_hash : "");
    qv_job_clear(&j);
}

typedef struct idle_dev {
    sess *p;
    dev *d;
    int order; /* position in the scan, for a stable sort */
} idle_dev;

/* The fastest device first (tuned ternary_matmul throughput reported at
 * enrollment), then the order of enrollment. */
static int by_score(const void *a, const void *b)
{
    const idle_dev *x = a, *y = b;
    if (x->d->score != y->d->score)
        return x->d->score > y->d->score ? -1 : 1;
    return x->order - y->order;
}

/* Hands queued jobs to idle devices: the device with the best tuned
 * figures asks the store first, so the highest-priority job goes to the
 * fastest device that can run it. It runs on events (a job submitted, a
 * device enrolled or freed, a lease ended), never per heartbeat, and stops
 * as soon as the queue is empty: an idle fleet with an empty queue costs one
 * count query. */
static void dispatch(qv_server *s, int64_t now)
{
    s->dispatch_due = 0;
    size_t n = 0;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *p = s->all[i];
        if (p->enrolled && p->drain_until_ms <= now && !p->tuning && !p->await_hb)
            for (int k = 0; k < p->ndev; k++)
                n += dev_idle(&p->devs[k]);
    }
    if (!n)
        return;
    int64_t queued = 0;
    qv_err e = {0};
    if (qv_store_queued_count(s->store, (int64_t)n, &queued, &e) != QV_OK) {
        logf_(s, "dispatch: %s; retried on the next tick", e.msg);
        s->dispatch_due = 1;
        return;
    }
    if (!queued)
        return;
    idle_dev *idle = malloc(n * sizeof *idle);
    if (!idle) {
        logf_(s, "dispatch: out of memory; retried on the next tick");
        s->dispatch_due = 1;
        return;
    }
    n = 0;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *p = s->all[i];
        if (!p->enrolled || p->drain_until_ms > now || p->tuning || p->await_hb)
            continue;
        for (int k = 0; k < p->ndev; k++)
            if (dev_idle(&p->devs[k])) {
                idle[n] = (idle_dev){p, &p->devs[k], (int)n};
                n++;
            }
    }
    qsort(idle, n, sizeof idle[0], by_score);
    for (size_t i = 0; i < n && queued > 0; i++) {
        sess *p = idle[i].p;
        dev *d = idle[i].d;
        qv_assignment a = {0};
        if (qv_store_dispatch(s->store, p->worker, d->id, d->backend, d->memory,
                              now, s->o.lease_ms, &a, &e) != QV_OK) {
            logf_(s, "dispatch to worker %s device %s: %s", p->worker, d->id, e.msg);
            continue;
        }
        if (a.job) {
            send_assign(s, p, d, &a);
            queued--;
        }
    }
    free(idle);
}

/* Frees devices whose job is no longer theirs (ended, expired, requeued). */
static void reconcile(qv_server *s, sess *p)
{
    for (int k = 0; k < p->ndev; k++) {
        dev *d = &p->devs[k];
        if (!d->job)
            continue;
        qv_job j = {0};
        if (qv_store_job(s->store, d->job, &j, NULL) != QV_OK ||
            (j.state != QV_JOB_ASSIGNED && j.state != QV_JOB_RUNNING) ||
            j.attempts != d->attempt || strcmp(j.worker, p->worker) != 0) {
            d->job = 0, d->attempt = 0;
            s->dispatch_due = 1;
        }
        qv_job_clear(&j);
    }
}

/* The attempt ended: its device is free (whether it ran there as the
 * job's attempt or held it as a stale one). */
static void free_dev_of(sess *p, int64_t job, int attempt)
{
    for (int k = 0; k < p->ndev; k++) {
        dev *d = &p->devs[k];
        if (d->job == job && d->attempt == attempt)
            d->job = 0, d->attempt = 0;
        if (d->held == job && d->held_attempt == attempt)
            d->held = 0, d->held_attempt = 0;
    }
}

/* The worker says it runs job on device devid, which is not its attempt
 * any more: aborted, and the device kept from dispatch until it ends. */
static void hold_dev(qv_server *s, sess *p, const char *devid, uint64_t job,
                     uint64_t attempt, const char *why)
{
    send_abort(s, p, (int64_t)job, (int)attempt, why);
    for (int k = 0; k < p->ndev; k++)
        if (strcmp(p->devs[k].id, devid) == 0)
            p->devs[k].held = (int64_t)job, p->devs[k].held_attempt = (int)attempt;
}

/* ---- session messages -------------------------------------------------- */

#define GET(call) do { if ((st = (call)) != QV_OK) goto bad; } while (0)
#define OPT(call) do { st = (call); if (st != QV_OK && st != QV_ERR_NOT_FOUND) goto bad; } while (0)

static void on_hello(qv_server *s, sess *p, const msgpack_object *b, int known_worker)
{
    qv_err e = {0};
    qv_status st;
    char role[16], name[QV_WIRE_MAX_NAME + 1];
    GET(qv_wire_get_str(b, "role", role, sizeof role, &e));
    GET(qv_wire_get_str(b, "name", name, sizeof name, &e));
    if (strcmp(role, "client") != 0 && strcmp(role, "worker") != 0) {
        send_error(s, p, "malformed", "hello.role: must be \"client\" or \"worker\"", "hello");
        logf_(s, "hello with role '%s' refused", role);
        return;
    }
    qv_wire_writer *w = wnew(QV_MSG_WELCOME, 7);
    if (!w)
        return;
    qv_wire_kv_str(w, "scheduler", s->name);
    qv_wire_kv_str(w, "version", QV_VERSION);
    qv_wire_kv_str(w, "hash", "sha256");
    qv_wire_kv_u64(w, "lease_ms", (uint64_t)s->o.lease_ms);
    qv_wire_kv_u64(w, "chunk", CHUNK);
    qv_wire_kv_u64(w, "credit", CREDIT);
    qv_wire_kv_bool(w, "enrolled", known_worker);
    send_w(s, p, w);
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "hello");
}

/* enroll.tuning / heartbeat.tuning: present while the worker tunes. */
static void read_tuning(sess *p, const msgpack_object *b)
{
    const msgpack_object *t = NULL;
    uint64_t done = 0, total = 0;
    if (qv_wire_get_map(b, "tuning", &t, NULL) == QV_OK && t &&
        qv_wire_get_u64(t, "done", &done, NULL) == QV_OK &&
        qv_wire_get_u64(t, "total", &total, NULL) == QV_OK && done < total) {
        p->tuning = 1;
        p->tune_done = done;
        p->tune_total = total;
    } else {
        p->tuning = 0;
        p->tune_done = p->tune_total = 0;
    }
}

static void on_enroll(qv_server *s, sess *p, const msgpack_object *b,
                      int known_worker, int64_t now)
{
    qv_err e = {0};
    qv_status st;
    char key[QV_WIRE_MAX_KEY + 1], name[QV_WIRE_MAX_NAME + 1], token[QV_WIRE_MAX_NAME + 1];
    char buf[200];
    const msgpack_object *devs = NULL;
    size_t nd = 0;
    GET(qv_wire_get_str(b, "key", key, sizeof key, &e));
    GET(qv_wire_get_str(b, "name", name, sizeof name, &e));
    GET(qv_wire_get_array(b, "devices", &devs, &nd, QV_WIRE_MAX_DEVICES, &e));
    token[0] = '\0';
    OPT(qv_wire_get_str(b, "token", token, sizeof token, &e));
    if (qv_keys_valid(key) != QV_OK) {
        send_error(s, p, "invalid", "enroll.key: not a 40-character Z85 public key", "enroll");
        logf_(s, "enroll from %s: bad key field", peer(p, buf, sizeof buf));
        return;
    }
    if (p->key[0] && strcmp(key, p->key) != 0) {
        send_error(s, p, "denied", "enroll.key: not the key of this connection", "enroll");
        logf_(s, "enroll denied: %s announced another key %s", peer(p, buf, sizeof buf), key);
        return;
    }
    /* Device fields first: nothing changes unless all are good. */
    dev nds[MAX_DEV];
    char *tuned[MAX_DEV] = {0};
    memset(nds, 0, sizeof nds);
    for (size_t i = 0; i < nd; i++) {
        const msgpack_object *m = &devs[i];
        GET(qv_wire_get_str(m, "id", nds[i].id, sizeof nds[i].id, &e));
        GET(qv_wire_get_str(m, "backend", nds[i].backend, sizeof nds[i].backend, &e));
        GET(qv_wire_get_str(m, "name", nds[i].name, sizeof nds[i].name, &e));
        GET(qv_wire_get_u64(m, "memory", &nds[i].memory, &e));
    }
    int known = known_worker || s->o.insecure;
    char id[QV_STORE_ID_MAX];
    st = worker_of_key(s, key, id, &e);
    if (st != QV_OK)
        goto internal;
    if (id[0]) { /* a removed worker stays removed */
        qv_key_role kr = QV_KEY_UNKNOWN;
        if (qv_store_key_role(s->store, key, &kr, NULL) == QV_OK && kr == QV_KEY_UNKNOWN) {
            send_error(s, p, "denied", "enroll: this worker was removed (`qvac workers "
                       "remove`); its key is refused", "enroll");
            logf_(s, "enroll denied: worker %s was removed", id);
            return;
        }
    }
    if (!id[0] || !known_worker) {
        if (!known && !token[0]) {
            send_error(s, p, "denied", "enroll: this key is not admitted; pass the "
                       "token from `qvac token` (qvac worker --token T)", "enroll");
            logf_(s, "enroll denied: unknown %s and no token", peer(p, buf, sizeof buf));
            return;
        }
        if (token[0] && !(known_worker && id[0])) {
            char secret[33];
            st = qv_token_split(token, secret, NULL, &e);
            if (st == QV_OK)
                st = qv_store_token_use(s->store, secret, key, now, &e);
            if (st != QV_OK) {
                send_error(s, p, "denied", e.msg, "enroll");
                logf_(s, "enroll denied for key %s: %s", key, e.msg);
                return;
            }
        }
    }
    int fresh = !id[0];
    if (fresh)
        snprintf(id, sizeof id, "%" PRIu64, s->max_worker_id + 1);
    st = qv_store_worker_upsert(s->store, id, key, name, now, &e);
    if (st != QV_OK)
        goto internal;
    if (fresh)
        s->max_worker_id++;
    for (size_t i = 0; i < nd; i++) {
        const msgpack_object *tm = NULL;
        json_t *tj = json_object();
        if (qv_wire_get_map(&devs[i], "tuned", &tm, NULL) == QV_OK && tm)
            for (uint32_t k = 0; k < tm->via.map.size; k++) {
                const msgpack_object *kk = &tm->via.map.ptr[k].key, *vv = &tm->via.map.ptr[k].val;
                if (kk->type != MSGPACK_OBJECT_STR || kk->via.str.size > 64)
                    continue;
                char kn[65];
                memcpy(kn, kk->via.str.ptr, kk->via.str.size);
                kn[kk->via.str.size] = '\0';
                double v = vv->type == MSGPACK_OBJECT_FLOAT32 || vv->type == MSGPACK_OBJECT_FLOAT64 ? vv->via.f64
                         : vv->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double)vv->via.u64
                         : vv->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? (double)vv->via.i64 : -1;
                if (v >= 0)
                    json_object_set_new(tj, kn, json_real(v));
                if (v >= 0 && !strcmp(kn, "ternary_matmul"))
                    nds[i].score = v;
            }
        tuned[i] = json_dumps(tj, JSON_COMPACT);
        json_decref(tj);
        st = qv_store_device_put(s->store, id, nds[i].id, nds[i].backend,
                                 nds[i].name, nds[i].memory, tuned[i] ? tuned[i] : "{}", &e);
        free(tuned[i]);
        if (st != QV_OK)
            goto internal;
    }
    int again = p->enrolled; /* enrolled on this connection already (tuned) */
    /* Keep the running jobs of devices that stay. */
    for (size_t i = 0; i < nd; i++)
        for (int k = 0; k < p->ndev; k++)
            if (strcmp(p->devs[k].id, nds[i].id) == 0)
                nds[i].job = p->devs[k].job, nds[i].attempt = p->devs[k].attempt,
                nds[i].held = p->devs[k].held,
                nds[i].held_attempt = p->devs[k].held_attempt;
    memcpy(p->devs, nds, sizeof nds);
    p->ndev = (int)nd;
    snprintf(p->worker, sizeof p->worker, "%s", id);
    if (!p->key[0])
        memcpy(p->key, key, QV_KEY_Z85);
    p->enrolled = 1;
    p->drain_until_ms = 0;
    p->seen_ms = p->flushed_ms = now; /* the upsert wrote last_seen */
    sess_set_admitted(s, p, 1);
    /* a worker that comes back (this scheduler restarted, or took it for
     * lost) may still run attempts, even ones the store has requeued since
     * (their lease ended while this scheduler was down): no job for it
     * until its first heartbeat (sent as soon as it is enrolled) says which
     * devices are busy; one enrolled on this connection already (it says
     * it is tuned) keeps what this scheduler knows of its devices */
    if (!again)
        p->await_hb = !fresh;
    int was_tuning = p->tuning;
    read_tuning(p, b);
    qv_wire_writer *w = wnew(QV_MSG_ENROLLED, 1);
    if (w) {
        qv_wire_kv_u64(w, "worker", strtoull(id, NULL, 10));
        send_w(s, p, w);
    }
    if (p->tuning)
        logf_(s, "worker %s (%s, key %s) enrolled with %zu device(s), tuning them "
              "(%" PRIu64 "/%" PRIu64 "): no job until it is done", id, name, key, nd,
              p->tune_done, p->tune_total);
    else if (was_tuning)
        logf_(s, "worker %s (%s) tuned its %zu device(s): ready for jobs", id, name, nd);
    else
        logf_(s, "worker %s (%s, key %s) enrolled with %zu device(s)", id, name, key, nd);
    reconcile(s, p);
    s->dispatch_due = 1;
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "enroll");
    return;
internal:
    send_error(s, p, "internal", e.msg, "enroll");
    logf_(s, "enroll of key %s failed: %s", key, e.msg);
}

/* The worker id of this connection (after enroll, or from its key). */
static int sess_worker(qv_server *s, sess *p)
{
    if (p->worker[0])
        return 1;
    if (!p->key[0])
        return 0;
    char id[QV_STORE_ID_MAX];
    if (worker_of_key(s, p->key, id, NULL) != QV_OK || !id[0])
        return 0;
    snprintf(p->worker, sizeof p->worker, "%s", id);
    return 1;
}

static void on_heartbeat(qv_server *s, sess *p, const msgpack_object *b, int64_t now)
{
    qv_err e = {0};
    qv_status st;
    const msgpack_object *run = NULL;
    size_t n = 0;
    OPT(qv_wire_get_array(b, "running", &run, &n, QV_WIRE_MAX_DEVICES, &e));
    if (st == QV_ERR_NOT_FOUND)
        n = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t job, attempt;
        GET(qv_wire_get_u64(&run[i], "job", &job, &e));
        GET(qv_wire_get_u64(&run[i], "attempt", &attempt, &e));
    }
    if (sess_worker(s, p))
        p->seen_ms = now; /* written to the store at the tick */
    if (p->enrolled) {
        int was = p->tuning;
        read_tuning(p, b);
        if (was && !p->tuning)
            s->dispatch_due = 1; /* tuned: ready for jobs */
    }
    /* a device held by a stale attempt stays held while it is listed */
    int was_held = 0;
    for (int k = 0; k < p->ndev; k++) {
        was_held |= p->devs[k].held != 0;
        p->devs[k].held = 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t job = 0, attempt = 0;
        char devid[QV_STORE_ID_MAX] = "";
        qv_wire_get_u64(&run[i], "job", &job, NULL);
        qv_wire_get_u64(&run[i], "attempt", &attempt, NULL);
        qv_wire_get_str(&run[i], "device", devid, sizeof devid, NULL);
        qv_ack ack = {0};
        qv_err e2 = {0};
        if (qv_store_renew(s->store, (int64_t)job, (int)attempt, now, s->o.lease_ms,
                           &ack, &e2) != QV_OK) {
            logf_(s, "heartbeat job %" PRIu64 " attempt %" PRIu64 ": %s", job, attempt, e2.msg);
            hold_dev(s, p, devid, job, attempt, e2.msg);
            continue;
        }
        if (ack.verdict == QV_VERDICT_CANCEL) {
            send_abort(s, p, (int64_t)job, (int)attempt, "cancelled");
        } else if (ack.verdict == QV_VERDICT_STALE) {
            logf_(s, "stale heartbeat for job %" PRIu64 " attempt %" PRIu64 " ignored: %s",
                  job, attempt, ack.note);
            hold_dev(s, p, devid, job, attempt, ack.note[0] ? ack.note : "stale attempt");
        } else {
            for (int k = 0; k < p->ndev; k++)
                if (strcmp(p->devs[k].id, devid) == 0)
                    p->devs[k].job = (int64_t)job, p->devs[k].attempt = (int)attempt;
        }
    }
    for (int k = 0; k < p->ndev && was_held; k++)
        if (!p->devs[k].held)
            s->dispatch_due = 1; /* a held device was let go */
    reconcile(s, p);
    if (p->await_hb && p->enrolled) { /* its running attempts are known now */
        p->await_hb = 0;
        s->dispatch_due = 1;
    }
    /* a heartbeat on a connection that did not enroll (this scheduler
     * restarted, or declared the worker lost): ask it to enroll again, so
     * its devices come back and its running attempts are renewed */
    qv_wire_writer *w = wnew(QV_MSG_HEARTBEAT, p->enrolled ? 0 : 1);
    if (w) {
        if (!p->enrolled)
            qv_wire_kv_bool(w, "enroll", true);
        send_w(s, p, w);
    }
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "heartbeat");
    logf_(s, "heartbeat refused: %s", e.msg);
}

static void on_progress(qv_server *s, sess *p, const msgpack_object *b, int64_t now)
{
    qv_err e = {0};
    qv_status st;
    uint64_t job, attempt, step, u;
    double f;
    char ckpt[QV_WIRE_HASH_MAX + 1] = "";
    GET(qv_wire_get_u64(b, "job", &job, &e));
    GET(qv_wire_get_u64(b, "attempt", &attempt, &e));
    GET(qv_wire_get_u64(b, "step", &step, &e));
    OPT(qv_wire_get_str(b, "checkpoint", ckpt, sizeof ckpt, &e));
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer((json_int_t)step));
    if (qv_wire_get_u64(b, "steps", &u, NULL) == QV_OK)
        json_object_set_new(o, "steps", json_integer((json_int_t)u));
    if (qv_wire_get_u64(b, "peak_bytes", &u, NULL) == QV_OK)
        json_object_set_new(o, "peak_bytes", json_integer((json_int_t)u));
    if (qv_wire_get_f64(b, "loss", &f, NULL) == QV_OK)
        json_object_set_new(o, "loss", json_real(f));
    if (qv_wire_get_f64(b, "tokens_per_s", &f, NULL) == QV_OK)
        json_object_set_new(o, "tokens_per_s", json_real(f));
    char *js = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (sess_worker(s, p))
        p->seen_ms = now; /* written to the store at the tick */
    qv_ack ack = {0};
    st = qv_store_progress(s->store, (int64_t)job, (int)attempt, js ? js : "{}",
                           now, s->o.lease_ms, &ack, &e);
    free(js);
    if (st != QV_OK) {
        logf_(s, "progress of job %" PRIu64 " refused: %s", job, e.msg);
        send_error(s, p, qv_wire_error_code(st), e.msg, "progress");
        return;
    }
    if (ack.verdict == QV_VERDICT_ACCEPTED && ckpt[0]) {
        qv_ack a2 = {0};
        if (qv_store_set_checkpoint(s->store, (int64_t)job, (int)attempt, ckpt, now, &a2, &e) != QV_OK)
            logf_(s, "checkpoint %s of job %" PRIu64 " not recorded: %s", ckpt, job, e.msg);
    }
    if (ack.verdict == QV_VERDICT_STALE) {
        logf_(s, "stale progress for job %" PRIu64 " attempt %" PRIu64 " ignored: %s",
              job, attempt, ack.note);
        send_abort(s, p, (int64_t)job, (int)attempt, ack.note[0] ? ack.note : "stale attempt");
    } else if (ack.verdict == QV_VERDICT_CANCEL) {
        send_abort(s, p, (int64_t)job, (int)attempt, "cancelled");
    }
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "progress");
    logf_(s, "progress refused: %s", e.msg);
}

static void send_ack(qv_server *s, sess *p, uint64_t job, uint64_t attempt)
{
    qv_wire_writer *w = wnew(QV_MSG_ACK, 2);
    if (!w)
        return;
    qv_wire_kv_u64(w, "job", job);
    qv_wire_kv_u64(w, "attempt", attempt);
    send_w(s, p, w);
}

static void on_result(qv_server *s, sess *p, qv_wire_type t,
                      const msgpack_object *b, int64_t now)
{
    qv_err e = {0};
    qv_status st;
    const char *tn = qv_wire_type_name(t);
    uint64_t job, attempt;
    char adapter[QV_WIRE_HASH_MAX + 1] = "", metrics[QV_WIRE_HASH_MAX + 1] = "";
    char reason[QV_WIRE_MAX_TEXT + 1] = "";
    bool retry = true;
    GET(qv_wire_get_u64(b, "job", &job, &e));
    GET(qv_wire_get_u64(b, "attempt", &attempt, &e));
    if (t == QV_MSG_DONE) {
        GET(qv_wire_get_str(b, "adapter", adapter, sizeof adapter, &e));
        GET(qv_wire_get_str(b, "metrics", metrics, sizeof metrics, &e));
    } else {
        GET(qv_wire_get_str(b, "reason", reason, sizeof reason, &e));
        OPT(qv_wire_get_bool(b, "retry", &retry, &e));
    }
    if (sess_worker(s, p))
        p->seen_ms = now; /* written to the store at the tick */
    qv_ack ack = {0};
    if (t == QV_MSG_DONE)
        st = qv_store_complete(s->store, (int64_t)job, (int)attempt, adapter,
                               metrics, now, &ack, &e);
    else
        st = qv_store_fail_ex(s->store, (int64_t)job, (int)attempt, reason, retry, now,
                              &ack, &e);
    if (st != QV_OK) {
        logf_(s, "%s of job %" PRIu64 " attempt %" PRIu64 " refused: %s", tn, job, attempt, e.msg);
        send_error(s, p, qv_wire_error_code(st), e.msg, tn);
        return;
    }
    if (ack.verdict == QV_VERDICT_STALE)
        logf_(s, "stale %s for job %" PRIu64 " attempt %" PRIu64 " ignored: %s", tn,
              job, attempt, ack.note);
    else
        logf_(s, "job %" PRIu64 " attempt %" PRIu64 " %s%s%s -> %s", job, attempt, tn,
              reason[0] ? ": " : "", reason, qv_job_state_name(ack.state));
    if (t == QV_MSG_FAILED && !retry)
        logf_(s, "job %" PRIu64 ": the worker says retrying cannot help: not retried",
              job);
    if (t == QV_MSG_FAILED && retry && ack.verdict != QV_VERDICT_STALE) {
        p->drain_until_ms = now + s->o.lease_ms;
        logf_(s, "worker %s handed job %" PRIu64 " back: no new jobs for it "
              "for %" PRId64 " ms", p->worker, job, (int64_t)s->o.lease_ms);
    }
    free_dev_of(p, (int64_t)job, (int)attempt);
    send_ack(s, p, job, attempt);
    s->dispatch_due = 1;
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, tn);
    logf_(s, "%s refused: %s", tn, e.msg);
}

/* ---- client messages --------------------------------------------------- */

static void on_submit(qv_server *s, sess *p, const msgpack_object *b, int64_t now)
{
    qv_err e = {0};
    qv_status st;
    char name[QV_WIRE_MAX_NAME + 1] = "", model[QV_WIRE_HASH_MAX + 1],
         data[QV_WIRE_HASH_MAX + 1], backend[32] = "";
    int64_t prio = 0;
    uint64_t mem = 0;
    const msgpack_object *opts = NULL, *needs = NULL;
    char *json = NULL;
    OPT(qv_wire_get_str(b, "name", name, sizeof name, &e));
    OPT(qv_wire_get_i64(b, "priority", &prio, &e));
    GET(qv_wire_get_str(b, "model", model, sizeof model, &e));
    GET(qv_wire_get_str(b, "data", data, sizeof data, &e));
    OPT(qv_wire_get_map(b, "options", &opts, &e));
    OPT(qv_wire_get_map(b, "needs", &needs, &e));
    if (needs) {
        OPT(qv_wire_get_str(needs, "backend", backend, sizeof backend, &e));
        OPT(qv_wire_get_u64(needs, "memory", &mem, &e));
    }
    if (backend[0] && strcmp(backend, "opencl") && strcmp(backend, "vulkan") &&
        strcmp(backend, "ref") && strcmp(backend, "any")) {
        send_error(s, p, "invalid", "submit.needs.backend: must be opencl, vulkan, ref or any", "submit");
        return;
    }
    if (prio < -1000000000 || prio > 1000000000) {
        send_error(s, p, "invalid", "submit.priority: must be within +-1e9", "submit");
        return;
    }
    GET(opts_to_json(opts, &json, &e));
    qv_job_spec spec = {
        .name = name, .priority = (int)prio, .options_json = json,
        .model_hash = model, .data_hash = data,
        .backend = strcmp(backend, "any") ? backend : "",
        .min_memory = mem, .max_attempts = s->o.max_attempts,
    };
    int64_t id = 0;
    st = qv_store_submit(s->store, &spec, now, &id, &e);
    free(json);
    if (st != QV_OK) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "submit");
        logf_(s, "submit refused: %s", e.msg);
        return;
    }
    qv_wire_writer *w = wnew(QV_MSG_SUBMITTED, 1);
    if (w) {
        qv_wire_kv_u64(w, "job", (uint64_t)id);
        send_w(s, p, w);
    }
    logf_(s, "job %" PRId64 " submitted (%s)", id, name);
    s->dispatch_due = 1;
    return;
bad:
    free(json);
    send_error(s, p, qv_wire_error_code(st), e.msg, "submit");
    logf_(s, "submit refused: %s", e.msg);
}

static void on_jobs(qv_server *s, sess *p, const msgpack_object *b)
{
    qv_err e = {0};
    qv_status st;
    uint64_t job = 0, after = 0, limit = 1000;
    bool all = false;
    OPT(qv_wire_get_u64(b, "job", &job, &e));
    OPT(qv_wire_get_bool(b, "all", &all, &e));
    OPT(qv_wire_get_u64(b, "after", &after, &e));
    OPT(qv_wire_get_u64(b, "limit", &limit, &e));
    if (limit == 0 || limit > 1000)
        limit = 1000;
    qv_job *jobs = NULL, one = {0};
    size_t n = 0;
    if (job) {
        st = qv_store_job(s->store, (int64_t)job, &one, &e);
        if (st != QV_OK) {
            send_error(s, p, qv_wire_error_code(st), e.msg, "jobs");
            return;
        }
    } else {
        st = qv_store_list_jobs(s->store, all, &jobs, &n, &e);
        if (st != QV_OK) {
            send_error(s, p, qv_wire_error_code(st), e.msg, "jobs");
            return;
        }
    }
    size_t first = 0, cnt = 0;
    while (first < n && (uint64_t)jobs[first].id <= after)
        first++;
    cnt = n - first;
    bool more = cnt > limit;
    if (more)
        cnt = (size_t)limit;
    if (job)
        cnt = 1;
    int fleet = 0; /* a connected worker has devices */
    for (size_t i = 0; i < s->nsess && !fleet; i++)
        fleet = s->all[i]->enrolled && s->all[i]->ndev > 0;
    qv_wire_writer *w = wnew(QV_MSG_JOB_LIST, 2);
    if (w) {
        qv_wire_kv_array(w, "jobs", cnt);
        for (size_t i = 0; i < cnt; i++)
            w_job(w, job ? &one : &jobs[first + i], fleet);
        qv_wire_kv_bool(w, "more", more);
        send_w(s, p, w);
    }
    qv_job_clear(&one);
    qv_jobs_free(&jobs, n);
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "jobs");
}

static void on_workers(qv_server *s, sess *p)
{
    qv_err e = {0};
    qv_worker_row *rows = NULL;
    size_t n = 0;
    qv_status st = qv_store_list_workers(s->store, &rows, &n, &e);
    if (st != QV_OK) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "workers");
        return;
    }
    if (n > 1024)
        n = 1024;
    qv_wire_writer *w = wnew(QV_MSG_WORKER_LIST, 1);
    if (w) {
        qv_wire_kv_array(w, "workers", n);
        for (size_t i = 0; i < n; i++) {
            sess *ws = worker_sess(s, rows[i].id);
            const char *state = strcmp(rows[i].state, "active") ? "lost"
                              : rows[i].running > 0 ? "busy"
                              : ws && ws->tuning ? "tuning" : "idle";
            int tuning = ws && ws->tuning;
            qv_wire_w_map(w, (ws ? 5 : 4) + tuning);
            if (tuning) {
                qv_wire_kv_map(w, "tuning", 2);
                qv_wire_kv_u64(w, "done", ws->tune_done);
                qv_wire_kv_u64(w, "total", ws->tune_total);
            }
            uint64_t wid = strtoull(rows[i].id, NULL, 10);
            qv_wire_kv_u64(w, "id", wid ? wid : i + 1);
            qv_wire_kv_str(w, "name", rows[i].name);
            qv_wire_kv_str(w, "state", state);
            qv_wire_kv_u64(w, "last_seen_ms", (uint64_t)rows[i].last_seen_ms);
            if (ws) {
                qv_wire_kv_array(w, "devices", (size_t)ws->ndev);
                for (int k = 0; k < ws->ndev; k++) {
                    qv_wire_w_map(w, 4);
                    qv_wire_kv_str(w, "id", ws->devs[k].id);
                    qv_wire_kv_str(w, "backend", ws->devs[k].backend);
                    qv_wire_kv_str(w, "name", ws->devs[k].name);
                    qv_wire_kv_u64(w, "memory", ws->devs[k].memory);
                }
            }
        }
        send_w(s, p, w);
    }
    qv_workers_free(&rows);
}

static void on_cancel(qv_server *s, sess *p, const msgpack_object *b, int64_t now)
{
    qv_err e = {0};
    qv_status st;
    uint64_t job;
    GET(qv_wire_get_u64(b, "job", &job, &e));
    qv_cancel_result res;
    char worker[QV_STORE_ID_MAX] = "";
    st = qv_store_cancel(s->store, (int64_t)job, now, &res, worker, &e);
    if (st != QV_OK && st != QV_ERR_INVALID) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "cancel");
        return;
    }
    qv_job j = {0};
    if (qv_store_job(s->store, (int64_t)job, &j, &e) != QV_OK) {
        send_error(s, p, "internal", e.msg, "cancel");
        return;
    }
    if (st == QV_OK && res == QV_CANCEL_REQUESTED) {
        sess *ws = worker_sess(s, worker);
        if (ws)
            send_abort(s, ws, (int64_t)job, j.attempts, "cancelled by a client");
        logf_(s, "job %" PRIu64 ": cancel requested, worker %s told", job, worker);
    } else if (st == QV_OK) {
        logf_(s, "job %" PRIu64 " cancelled", job);
    }
    qv_wire_writer *w = wnew(QV_MSG_CANCELLED, 2);
    if (w) {
        qv_wire_kv_u64(w, "job", job);
        qv_wire_kv_str(w, "state", qv_job_state_name(j.state));
        send_w(s, p, w);
    }
    qv_job_clear(&j);
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "cancel");
}

/* Sends the events of job after `after` (in batches); returns the last id
 * sent (or after), *ended = whether the job is over. */
static int64_t send_events(qv_server *s, sess *p, int64_t job, int64_t after,
                           int follow, int always, int *ended)
{
    qv_job j = {0};
    *ended = 1;
    if (qv_store_job(s->store, job, &j, NULL) != QV_OK)
        return after;
    int term = is_terminal(j.state);
    qv_job_clear(&j);
    *ended = term || !follow;
    for (;;) {
        qv_event *ev = NULL;
        size_t n = 0;
        qv_err e = {0};
        if (qv_store_events(s->store, job, after, 512, &ev, &n, &e) != QV_OK) {
            send_error(s, p, "internal", e.msg, "logs");
            *ended = 1;
            return after;
        }
        int last = n < 512;
        if (n || (last && (always || *ended))) {
            qv_wire_writer *w = wnew(QV_MSG_LOG, 3);
            if (w) {
                qv_wire_kv_u64(w, "job", (uint64_t)job);
                qv_wire_kv_array(w, "events", n);
                for (size_t i = 0; i < n; i++) {
                    qv_job_state js;
                    int has = qv_job_state_parse(ev[i].kind, &js);
                    qv_wire_w_map(w, has ? 5 : 4);
                    qv_wire_kv_u64(w, "seq", (uint64_t)ev[i].id);
                    qv_wire_kv_u64(w, "t_ms", (uint64_t)ev[i].time_ms);
                    qv_wire_kv_str(w, "kind", ev[i].kind);
                    qv_wire_kv_str(w, "text", ev[i].text);
                    if (has)
                        qv_wire_kv_str(w, "state", ev[i].kind);
                }
                qv_wire_kv_bool(w, "end", last && *ended);
                send_w(s, p, w);
            }
        }
        if (n)
            after = ev[n - 1].id;
        qv_events_free(&ev);
        if (last)
            return after;
    }
}

static void on_logs(qv_server *s, sess *p, const msgpack_object *b)
{
    qv_err e = {0};
    qv_status st;
    uint64_t job, from = 0;
    bool follow = false;
    GET(qv_wire_get_u64(b, "job", &job, &e));
    OPT(qv_wire_get_bool(b, "follow", &follow, &e));
    OPT(qv_wire_get_u64(b, "from", &from, &e));
    qv_job j = {0};
    st = qv_store_job(s->store, (int64_t)job, &j, &e);
    qv_job_clear(&j);
    if (st != QV_OK)
        goto bad;
    int ended;
    int64_t last = send_events(s, p, (int64_t)job, from ? (int64_t)from - 1 : 0,
                               follow, 1, &ended);
    if (!ended) {
        int slot = -1;
        for (int i = 0; i < MAX_FOLLOW; i++)
            if (!p->fol[i].active || p->fol[i].job == (int64_t)job) {
                slot = i;
                break;
            }
        if (slot < 0)
            slot = 0; /* the oldest follow gives way */
        p->fol[slot] = (follow_t){1, (int64_t)job, last};
    }
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "logs");
}

static void on_fetch(qv_server *s, sess *p, const msgpack_object *b)
{
    qv_err e = {0};
    qv_status st;
    uint64_t job;
    GET(qv_wire_get_u64(b, "job", &job, &e));
    qv_job j = {0};
    GET(qv_store_job(s->store, (int64_t)job, &j, &e));
    if (j.state != QV_JOB_SUCCEEDED) {
        char msg[200];
        snprintf(msg, sizeof msg, "job %" PRIu64 " is %s, not succeeded: nothing to fetch yet",
                 job, qv_job_state_name(j.state));
        send_error(s, p, "invalid", msg, "fetch");
        qv_job_clear(&j);
        return;
    }
    uint64_t asz = 0, msz = 0;
    int has = 0;
    if (j.adapter_hash[0])
        qv_store_blob_has(s->store, j.adapter_hash, &has, &asz, NULL);
    if (j.metrics_hash[0])
        qv_store_blob_has(s->store, j.metrics_hash, &has, &msz, NULL);
    int na = j.adapter_hash[0] != 0, nm = j.metrics_hash[0] != 0;
    qv_wire_writer *w = wnew(QV_MSG_RESULT, 2 + 2 * (size_t)na + 2 * (size_t)nm);
    if (w) {
        qv_wire_kv_u64(w, "job", job);
        qv_wire_kv_str(w, "state", "succeeded");
        if (na) {
            qv_wire_kv_str(w, "adapter", j.adapter_hash);
            qv_wire_kv_u64(w, "adapter_size", asz);
        }
        if (nm) {
            qv_wire_kv_str(w, "metrics", j.metrics_hash);
            qv_wire_kv_u64(w, "metrics_size", msz);
        }
        send_w(s, p, w);
    }
    qv_job_clear(&j);
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "fetch");
}

/* ---- blobs ------------------------------------------------------------- */

/* with_offset (the answer to blob_put): the sender goes on from offset,
 * the bytes the scheduler holds (0 for a new upload). */
static void send_credit_at(qv_server *s, sess *p, const char *hash, uint64_t c,
                           int with_offset, uint64_t offset)
{
    qv_wire_writer *w = wnew(QV_MSG_BLOB_CREDIT, with_offset ? 3 : 2);
    if (!w)
        return;
    qv_wire_kv_str(w, "hash", hash);
    qv_wire_kv_u64(w, "credit", c);
    if (with_offset)
        qv_wire_kv_u64(w, "offset", offset);
    send_w(s, p, w);
}

static void send_credit(qv_server *s, sess *p, const char *hash, uint64_t c)
{
    send_credit_at(s, p, hash, c, 0, 0);
}

static void send_blob_ok(qv_server *s, sess *p, const char *hash, uint64_t size)
{
    qv_wire_writer *w = wnew(QV_MSG_BLOB_OK, 2);
    if (!w)
        return;
    qv_wire_kv_str(w, "hash", hash);
    qv_wire_kv_u64(w, "size", size);
    send_w(s, p, w);
}

static int sha_ok(const char *h) { return qv_blob_hash_valid(h); }

static void on_blob_put(qv_server *s, sess *p, const msgpack_object *b)
{
    qv_err e = {0};
    qv_status st;
    char hash[QV_WIRE_HASH_MAX + 1];
    uint64_t size;
    GET(qv_wire_get_str(b, "hash", hash, sizeof hash, &e));
    GET(qv_wire_get_u64(b, "size", &size, &e));
    if (!sha_ok(hash)) {
        send_error(s, p, "invalid", "blob_put.hash: this scheduler names blobs by "
                   "SHA-256 (64 lower-case hex digits)", "blob_put");
        return;
    }
    int has = 0;
    uint64_t have = 0;
    GET(qv_store_blob_has(s->store, hash, &has, &have, &e));
    if (has) {
        send_blob_ok(s, p, hash, have);
        return;
    }
    if (size > s->o.max_blob) {
        char msg[256];
        snprintf(msg, sizeof msg, "blob_put.size: %" PRIu64 " bytes is over this "
                 "scheduler's limit of %" PRIu64 " bytes (qvac scheduler --max-blob)",
                 size, s->o.max_blob);
        send_error(s, p, "invalid", msg, "blob_put");
        logf_(s, "blob_put of %" PRIu64 " bytes refused: over --max-blob", size);
        return;
    }
    int slot = -1;
    /* one pass: this blob's upload in progress on any connection, and the
     * uploads of this key (per connection when there is no key: insecure),
     * which may be at most MAX_XFER */
    upload *held = NULL;
    sess *holder = NULL;
    int mine = 0;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *q = s->all[i];
        int same = q == p || (p->key[0] && strcmp(q->key, p->key) == 0);
        for (int k = 0; k < MAX_XFER; k++) {
            if (!q->ups[k].u)
                continue;
            mine += same;
            if (!held && strcmp(q->ups[k].hash, hash) == 0)
                held = &q->ups[k], holder = q;
        }
    }
    /* another connection's upload of this blob is taken over only when it
     * went quiet (a client that reconnected) and is the same key's */
    if (held && holder != p &&
        ((!s->o.insecure && strcmp(holder->key, p->key) != 0) ||
         p->last_ms - holder->last_ms < 2000)) {
        send_error(s, p, "busy", "blob_put: this blob is being uploaded on another "
                   "connection now; try again in a few seconds", "blob_put");
        return;
    }
    if (held && holder == p)
        slot = (int)(held - p->ups);
    for (int i = 0; slot < 0 && i < MAX_XFER; i++)
        if (!p->ups[i].u)
            slot = i;
    if (held && (holder == p || (p->key[0] && !strcmp(holder->key, p->key))))
        mine--; /* the same upload, asked again or taken over */
    if (slot < 0 || mine >= MAX_XFER) {
        send_error(s, p, "busy", "blob_put: 4 uploads of this key are already in "
                   "progress; finish one first", "blob_put");
        return;
    }
    uint64_t avail = 0;
    if (qv_store_blob_space(s->store, &avail, NULL) == QV_OK &&
        (avail < BLOB_RESERVE || size > avail - BLOB_RESERVE)) {
        char msg[256];
        snprintf(msg, sizeof msg, "blob_put: the scheduler's disk has %" PRIu64
                 " MiB free, not enough for %" PRIu64 " MiB and its reserve of %u MiB; "
                 "try again later", avail >> 20, size >> 20, BLOB_RESERVE >> 20);
        send_error(s, p, "busy", msg, "blob_put");
        logf_(s, "blob_put of %" PRIu64 " bytes refused: %" PRIu64 " MiB free on disk",
              size, avail >> 20);
        return;
    }
    if (held && held->size == size) {
        /* the client reconnected (or asks again): it goes on from where the
         * bytes stop, on this connection */
        if (holder != p) {
            p->ups[slot] = *held;
            held->u = NULL;
        }
    } else {
        if (held)
            qv_blob_upload_abort(&held->u);
        GET(qv_store_blob_begin(s->store, hash, size, &p->ups[slot].u, &e));
        memcpy(p->ups[slot].hash, hash, QV_BLOB_HEX); /* sha_ok: 64 digits + NUL */
        p->ups[slot].size = size;
    }
    uint64_t got = qv_blob_upload_received(p->ups[slot].u);
    p->ups[slot].granted = size - got < CREDIT ? size : got + CREDIT;
    if (got)
        logf_(s, "blob %.16s: upload resumed at byte %" PRIu64 " of %" PRIu64, hash, got,
              size);
    send_credit_at(s, p, hash, p->ups[slot].granted - got, 1, got);
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "blob_put");
    logf_(s, "blob_put refused: %s", e.msg);
}

/* The window moves on by n bytes consumed, never past the blob. */
static void grant(qv_server *s, sess *p, upload *u, const char *hash, uint64_t n)
{
    uint64_t more = u->size - u->granted < n ? u->size - u->granted : n;
    if (more) {
        u->granted += more;
        send_credit(s, p, hash, more);
    }
}

static void on_blob_chunk(qv_server *s, sess *p, const msgpack_object *b, int64_t now)
{
    qv_err e = {0};
    qv_status st;
    char hash[QV_WIRE_HASH_MAX + 1];
    uint64_t off, size;
    const void *bytes;
    size_t n;
    GET(qv_wire_get_str(b, "hash", hash, sizeof hash, &e));
    GET(qv_wire_get_u64(b, "offset", &off, &e));
    GET(qv_wire_get_u64(b, "size", &size, &e));
    GET(qv_wire_get_bin(b, "bytes", &bytes, &n, QV_WIRE_MAX_CHUNK, &e));
    upload *u = NULL;
    for (int i = 0; i < MAX_XFER; i++)
        if (p->ups[i].u && strcmp(p->ups[i].hash, hash) == 0)
            u = &p->ups[i];
    if (!u) {
        send_error(s, p, "invalid", "blob_chunk: no upload of this blob in progress; "
                   "send blob_put first", "blob_chunk");
        return;
    }
    if (size != u->size) {
        send_error(s, p, "invalid", "blob_chunk.size: not the size announced in blob_put", "blob_chunk");
        return;
    }
    /* bytes sent again after a resume (the sender went back to the offset
     * a blob_put answered while chunks it had sent before were still on the
     * way, and were taken): those the upload holds are skipped, and their
     * credit given back */
    uint64_t have = qv_blob_upload_received(u->u), back = 0;
    if (off < have) {
        back = have - off < n ? have - off : n;
        bytes = (const unsigned char *)bytes + back;
        n -= (size_t)back;
        off += back;
        if (!n) {
            grant(s, p, u, hash, back);
            return;
        }
    }
    /* a chunk past the bytes held (one from before a resume, sent into a
     * cut connection) is refused below without harm; one that is where
     * the upload is but past the credit is a client that ignores credit */
    if (off == have && n > u->granted - off) {
        send_error(s, p, "invalid", "blob_chunk: more bytes than the credit granted; "
                   "the upload is abandoned, send blob_put again", "blob_chunk");
        logf_(s, "blob %s: a chunk over the credit, upload abandoned", hash);
        qv_blob_upload_abort(&u->u);
        return;
    }
    st = qv_blob_upload_append(u->u, off, bytes, n, &e);
    if (st != QV_OK) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "blob_chunk");
        if (st == QV_ERR_IO) { /* a full disk: give the space back at once */
            logf_(s, "blob %s: %s; upload abandoned", hash, e.msg);
            qv_blob_upload_abort(&u->u);
        }
        return;
    }

    if (qv_blob_upload_received(u->u) == u->size) {
        st = qv_store_blob_finish(s->store, &u->u, now, &e);
        if (st == QV_ERR_CORRUPT) {
            send_error(s, p, "hash_mismatch", e.msg, "blob_chunk");
            logf_(s, "blob %s: hash mismatch, discarded", hash);
        } else if (st != QV_OK) {
            send_error(s, p, qv_wire_error_code(st), e.msg, "blob_chunk");
            logf_(s, "blob %s: %s", hash, e.msg);
        } else {
            send_blob_ok(s, p, hash, size);
        }
        return;
    }
    grant(s, p, u, hash, n + back);
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "blob_chunk");
}

static void pump(qv_server *s, sess *p, download *d)
{
    while (d->active) {
        uint64_t left = d->size - d->off;
        size_t n = (size_t)(left < CHUNK ? left : CHUNK);
        if (n > d->credit)
            n = (size_t)d->credit;
        if (n == 0 && left > 0)
            return; /* out of credit */
        size_t got = 0;
        qv_err e = {0};
        if (n && (qv_store_blob_read(s->store, d->hash, d->off, s->buf, n, &got, &e) != QV_OK || got != n)) {
            send_error(s, p, "internal", e.msg[0] ? e.msg : "blob read came short", "blob_get");
            d->active = 0;
            return;
        }
        qv_wire_writer *w = wnew(QV_MSG_BLOB_CHUNK, 4);
        if (!w)
            return;
        qv_wire_kv_str(w, "hash", d->hash);
        qv_wire_kv_u64(w, "offset", d->off);
        qv_wire_kv_u64(w, "size", d->size);
        qv_wire_kv_bin(w, "bytes", s->buf, n);
        send_w(s, p, w);
        d->off += n;
        d->credit -= n;
        if (d->off == d->size)
            d->active = 0;
    }
}

static void on_blob_get(qv_server *s, sess *p, const msgpack_object *b)
{
    qv_err e = {0};
    qv_status st;
    char hash[QV_WIRE_HASH_MAX + 1];
    uint64_t off = 0, credit;
    GET(qv_wire_get_str(b, "hash", hash, sizeof hash, &e));
    OPT(qv_wire_get_u64(b, "offset", &off, &e));
    GET(qv_wire_get_u64(b, "credit", &credit, &e));
    int has = 0;
    uint64_t size = 0;
    if (sha_ok(hash))
        GET(qv_store_blob_has(s->store, hash, &has, &size, &e));
    if (!has) {
        send_error(s, p, "not_found", "blob_get: no such blob on the scheduler", "blob_get");
        return;
    }
    if (off > size) {
        send_error(s, p, "invalid", "blob_get.offset: past the end of the blob", "blob_get");
        return;
    }
    int slot = -1;
    for (int i = 0; i < MAX_XFER; i++)
        if (p->downs[i].active && strcmp(p->downs[i].hash, hash) == 0)
            slot = i;
    for (int i = 0; slot < 0 && i < MAX_XFER; i++)
        if (!p->downs[i].active)
            slot = i;
    if (slot < 0) {
        send_error(s, p, "busy", "blob_get: 4 downloads already in progress on this connection", "blob_get");
        return;
    }
    download *d = &p->downs[slot];
    d->active = 1;
    memcpy(d->hash, hash, QV_BLOB_HEX);
    d->size = size;
    d->off = off;
    d->credit = credit;
    pump(s, p, d);
    return;
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "blob_get");
}

static void on_blob_credit(qv_server *s, sess *p, const msgpack_object *b)
{
    qv_err e = {0};
    qv_status st;
    char hash[QV_WIRE_HASH_MAX + 1];
    uint64_t credit;
    GET(qv_wire_get_str(b, "hash", hash, sizeof hash, &e));
    GET(qv_wire_get_u64(b, "credit", &credit, &e));
    for (int i = 0; i < MAX_XFER; i++)
        if (p->downs[i].active && strcmp(p->downs[i].hash, hash) == 0) {
            p->downs[i].credit += credit;
            pump(s, p, &p->downs[i]);
        }
    return; /* credit for a finished transfer is normal: ignored */
bad:
    send_error(s, p, qv_wire_error_code(st), e.msg, "blob_credit");
}

/* ---- the loop ---------------------------------------------------------- */

static int client_msg(qv_wire_type t)
{
    return t == QV_MSG_SUBMIT || t == QV_MSG_JOBS || t == QV_MSG_WORKERS ||
           t == QV_MSG_CANCEL || t == QV_MSG_LOGS || t == QV_MSG_FETCH ||
           t == QV_MSG_BENCHES || t == QV_MSG_BENCH_RUN;
}

static int worker_msg(qv_wire_type t)
{
    return t == QV_MSG_HEARTBEAT || t == QV_MSG_PROGRESS || t == QV_MSG_DONE ||
           t == QV_MSG_FAILED || t == QV_MSG_BENCH || t == QV_MSG_TUNINGS_PUT ||
           t == QV_MSG_TUNINGS_GET;
}

/* A worker's bench result of one of its devices: validated field by field
 * (train/bench.h), stored in its canonical form, answered with bench_ok. */
static void on_bench(qv_server *s, sess *p, const msgpack_object *b, int64_t now)
{
    qv_err e = {0};
    const char *txt = NULL;
    size_t len = 0;
    qv_status st = qv_wire_get_strv(b, "result", &txt, &len, QV_WIRE_MAX_BENCH, &e);
    json_t *j = NULL;
    qv_bench_result r;
    if (st == QV_OK && !sess_worker(s, p))
        st = qv_fail(&e, QV_ERR_INVALID, "bench: enroll first");
    if (st == QV_OK) {
        json_error_t je;
        j = json_loadb(txt, len, JSON_REJECT_DUPLICATES, &je);
        if (!j)
            st = qv_fail(&e, QV_ERR_CORRUPT, "bench.result: not JSON (%s at byte %d)",
                         je.text, je.position);
    }
    if (st == QV_OK)
        st = qv_bench_from_json(j, &r, &e);
    json_decref(j);
    j = NULL;
    int mine = 0;
    for (int k = 0; st == QV_OK && k < p->ndev; k++)
        mine |= !strcmp(p->devs[k].id, r.device);
    if (st == QV_OK && !mine)
        st = qv_fail(&e, QV_ERR_NOT_FOUND, "bench: device %s is not one this worker "
                     "enrolled", r.device);
    char *canon = NULL;
    if (st == QV_OK) {
        j = qv_bench_to_json(&r);
        canon = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        if (!canon)
            st = qv_fail(&e, QV_ERR_NOMEM, "bench: out of memory");
    }
    if (st == QV_OK)
        st = qv_store_bench_put(s->store, p->worker, r.device, r.model, r.version,
                                r.fingerprint, canon, now, &e);
    free(canon);
    if (st != QV_OK) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "bench");
        logf_(s, "bench result of worker %s refused: %s", p->worker[0] ? p->worker : "?",
              e.msg);
        return;
    }
    logf_(s, "bench %s on worker %s %s: ternary %.1f tokens/s, f16 %.1f; peak %.1f%% "
          "below f16", r.model, p->worker, r.device, r.mode[0].tokens_per_s,
          r.mode[1].tokens_per_s, r.mode[1].peak_bytes
          ? 100.0 * (1.0 - (double)r.mode[0].peak_bytes / (double)r.mode[1].peak_bytes) : 0);
    qv_wire_writer *w = wnew(QV_MSG_BENCH_OK, 1);
    if (w) {
        qv_wire_kv_str(w, "device", r.device);
        send_w(s, p, w);
    }
}

/* The string fields of a tuning entry, in wire order. */
static const char *const TUNE_STR[] = {"fingerprint", "kernel", "src_hash", "bucket",
                                       "config", "backend", "vendor", "device_name"};
#define N_TUNE_STR 8
#define N_TUNE_REQ 5 /* the first five are required */

/* A worker's autotune results (`tunings_put`): kept per key for the other
 * workers of the same fingerprint, which verify before they trust them. */
static void on_tunings_put(qv_server *s, sess *p, const msgpack_object *b, int64_t now)
{
    qv_err e = {0};
    const msgpack_object *items = NULL;
    size_t n = 0, stored = 0;
    qv_status st = qv_wire_get_array(b, "entries", &items, &n, QV_WIRE_MAX_ARRAY, &e);
    if (st == QV_OK && !sess_worker(s, p))
        st = qv_fail(&e, QV_ERR_INVALID, "tunings_put: enroll first");
    for (size_t i = 0; st == QV_OK && i < n; i++) {
        char v[N_TUNE_STR][256];
        double med = 0, gf = 0;
        json_t *j = json_object();
        for (int k = 0; k < N_TUNE_STR; k++) {
            v[k][0] = 0;
            qv_wire_get_str(&items[i], TUNE_STR[k], v[k], sizeof v[k], NULL);
            json_object_set_new(j, TUNE_STR[k], json_string(v[k]));
        }
        qv_wire_get_f64(&items[i], "median_ns", &med, NULL);
        json_object_set_new(j, "median_ns", json_real(med));
        if (qv_wire_get_f64(&items[i], "gflops", &gf, NULL) == QV_OK)
            json_object_set_new(j, "gflops", json_real(gf));
        char *txt = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        int one = 0;
        qv_err e2 = {0};
        if (txt && qv_store_tuning_put(s->store, p->worker, v[0], v[1], v[2], v[3], v[4],
                                       med, txt, now, &one, &e2) != QV_OK)
            logf_(s, "tuning %zu from worker %s not kept: %s", i, p->worker, e2.msg);
        stored += (size_t)one;
        free(txt);
    }
    if (st != QV_OK) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "tunings_put");
        return;
    }
    logf_(s, "worker %s shared %zu tuning result(s), %zu kept", p->worker, n, stored);
    qv_wire_writer *w = wnew(QV_MSG_TUNINGS_OK, 1);
    if (w) {
        qv_wire_kv_u64(w, "stored", stored);
        send_w(s, p, w);
    }
}

/* `tunings_get`: what the fleet shared for a fingerprint. */
static void on_tunings_get(qv_server *s, sess *p, const msgpack_object *b)
{
    qv_err e = {0};
    char fp[QV_WIRE_MAX_NAME + 1] = "";
    char **rows = NULL;
    size_t n = 0;
    qv_status st = qv_wire_get_str(b, "fingerprint", fp, sizeof fp, &e);
    if (st == QV_OK)
        st = qv_store_tunings_of(s->store, fp, &rows, &n, &e);
    if (st != QV_OK) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "tunings_get");
        return;
    }
    json_t **js = calloc(n ? n : 1, sizeof *js);
    size_t good = 0;
    for (size_t i = 0; js && i < n; i++)
        if ((js[good] = json_loads(rows[i], 0, NULL)))
            good++;
    qv_wire_writer *w = js ? wnew(QV_MSG_TUNINGS, 2) : NULL;
    if (w) {
        qv_wire_kv_str(w, "fingerprint", fp);
        qv_wire_kv_array(w, "entries", good);
        for (size_t i = 0; i < good; i++) {
            int nf = 1 + json_is_number(json_object_get(js[i], "gflops"));
            for (int k = 0; k < N_TUNE_STR; k++)
                nf += k < N_TUNE_REQ || (json_string_value(json_object_get(js[i], TUNE_STR[k])) &&
                                         *json_string_value(json_object_get(js[i], TUNE_STR[k])));
            qv_wire_w_map(w, (size_t)nf);
            for (int k = 0; k < N_TUNE_STR; k++) {
                const char *v = json_string_value(json_object_get(js[i], TUNE_STR[k]));
                if (k < N_TUNE_REQ || (v && *v))
                    qv_wire_kv_str(w, TUNE_STR[k], v ? v : "");
            }
            qv_wire_kv_f64(w, "median_ns", json_number_value(json_object_get(js[i], "median_ns")));
            if (json_is_number(json_object_get(js[i], "gflops")))
                qv_wire_kv_f64(w, "gflops", json_number_value(json_object_get(js[i], "gflops")));
        }
        send_w(s, p, w);
    }
    for (size_t i = 0; js && i < good; i++)
        json_decref(js[i]);
    free(js);
    qv_strings_free(&rows, n);
}

/* Whether "WORKER/DEVICE", "DEVICE" or "all" in the comma-separated list
 * names device dev of worker `worker` (its id or name). */
static int names_device(const char *list, const char *worker, const char *wname,
                        const char *devid)
{
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        char item[256];
        snprintf(item, sizeof item, "%.*s", (int)len, p);
        char *slash = strchr(item, '/');
        if (!strcmp(item, "all") || !strcmp(item, devid))
            return 1;
        if (slash) {
            *slash = 0;
            if ((!strcmp(item, worker) || !strcmp(item, wname)) && !strcmp(slash + 1, devid))
                return 1;
        }
        p += len + (c ? 1 : 0);
    }
    return 0;
}

/* `qvac submit --bench`: asks the connected workers' chosen devices to run
 * the benchmark now; their results come back as `bench` and are stored. */
static void on_bench_run(qv_server *s, sess *p, const msgpack_object *b)
{
    qv_err e = {0};
    char model[16] = "", devs[QV_WIRE_MAX_TEXT + 1] = "";
    int32_t bb, bs, bn;
    qv_status st = qv_wire_get_str(b, "model", model, sizeof model, &e);
    if (st == QV_OK)
        st = qv_wire_get_str(b, "devices", devs, sizeof devs, &e);
    if (st == QV_OK)
        st = qv_bench_defaults(model, &bb, &bs, &bn, &e);
    if (st != QV_OK) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "bench_run");
        return;
    }
    uint64_t sent = 0;
    qv_worker_row *rows = NULL; /* for the workers' names, read once */
    size_t nr = 0;
    if (qv_store_list_workers(s->store, &rows, &nr, NULL) != QV_OK)
        nr = 0;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *w = s->all[i];
        if (!w->enrolled)
            continue;
        const char *wname = "";
        for (size_t k = 0; k < nr; k++)
            if (!strcmp(rows[k].id, w->worker))
                wname = rows[k].name;
        for (int k = 0; k < w->ndev; k++) {
            if (!names_device(devs, w->worker, wname, w->devs[k].id))
                continue;
            qv_wire_writer *wr = wnew(QV_MSG_BENCH_REQUEST, 2);
            if (!wr)
                continue;
            qv_wire_kv_str(wr, "device", w->devs[k].id);
            qv_wire_kv_str(wr, "model", model);
            send_w(s, w, wr);
            sent++;
        }
    }
    qv_workers_free(&rows);
    logf_(s, "bench %s asked of %" PRIu64 " device(s)", model, sent);
    qv_wire_writer *w = wnew(QV_MSG_BENCH_QUEUED, 1);
    if (w) {
        qv_wire_kv_u64(w, "sent", sent);
        send_w(s, p, w);
    }
}

/* The stored results, for `qvac report`. */
static void on_benches(qv_server *s, sess *p, const msgpack_object *b)
{
    qv_err e = {0};
    char model[QV_WIRE_MAX_NAME + 1] = "";
    qv_status st = qv_wire_get_str(b, "model", model, sizeof model, &e);
    if (st != QV_OK && st != QV_ERR_NOT_FOUND) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "benches");
        return;
    }
    qv_bench_row *rows = NULL;
    size_t n = 0;
    st = qv_store_bench_list(s->store, model[0] ? model : NULL, &rows, &n, &e);
    if (st != QV_OK) {
        send_error(s, p, qv_wire_error_code(st), e.msg, "benches");
        return;
    }
    size_t cnt = n > QV_WIRE_MAX_ARRAY ? QV_WIRE_MAX_ARRAY : n;
    qv_wire_writer *w = wnew(QV_MSG_BENCH_LIST, 2);
    if (w) {
        qv_wire_kv_array(w, "benches", cnt);
        for (size_t i = 0; i < cnt; i++) {
            qv_wire_w_map(w, 4);
            qv_wire_kv_str(w, "worker", rows[i].worker);
            qv_wire_kv_str(w, "worker_name", rows[i].worker_name);
            qv_wire_kv_str(w, "result", rows[i].result);
            qv_wire_kv_u64(w, "received_ms", (uint64_t)rows[i].received_ms);
        }
        qv_wire_kv_bool(w, "more", n > cnt);
        send_w(s, p, w);
    }
    qv_bench_rows_free(&rows, n);
}

/* What an unknown key costs: a counter, one log line per connection a
 * minute (with how many were not logged), and after JUNK_LIMIT refusals
 * with nothing accepted, a minute of silence (messages ignored unanswered). */
static void refused_unknown(qv_server *s, sess *p, const char *re, int64_t now,
                            const char *why)
{
    char buf[200];
    s->denied++;
    if (++p->junk >= JUNK_LIMIT) {
        p->mute_until = now + MUTE_MS;
        p->junk = 0;
        logf_(s, "%s sent %d refused messages and nothing else: ignored for %d s",
              peer(p, buf, sizeof buf), JUNK_LIMIT, MUTE_MS / 1000);
        return;
    }
    if (p->deny_log_ms && now - p->deny_log_ms < 60000) {
        p->denied_quiet++;
        return;
    }
    if (p->denied_quiet)
        logf_(s, "denied %s from %s (%s); %" PRIu64 " more refused in the last minute",
              re ? re : "?", peer(p, buf, sizeof buf), why, p->denied_quiet);
    else
        logf_(s, "denied %s from %s (%s)", re ? re : "?", peer(p, buf, sizeof buf), why);
    p->deny_log_ms = now;
    p->denied_quiet = 0;
}

static void handle(qv_server *s, zmq_msg_t *parts, int np, int64_t now)
{
    const char *uid = NULL, *key = NULL;
    if (!s->o.insecure) {
        uid = zmq_msg_gets(&parts[1], "User-Id");
        key = zmq_msg_gets(&parts[1], "X-Key");
    }
    sess *p = find_sess(s, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]));
    if (!p) {
        int admitted = s->o.insecure ||
                       (uid && (!strcmp(uid, "client") || !strcmp(uid, "worker")));
        p = sess_new(s, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), admitted, now);
        if (!p)
            return; /* answered `busy` */
        p->client_hint = uid && !strcmp(uid, "client");
    }
    p->last_ms = now;
    if (p->mute_until > now) { /* a connection that sent only junk */
        s->ignored++;
        return;
    }
    char buf[200];
    if (key && !p->key[0] && qv_keys_valid(key) == QV_OK)
        snprintf(p->key, sizeof p->key, "%s", key);
    qv_wire_frame fr[MAX_PARTS];
    for (int i = 1; i < np; i++)
        fr[i - 1] = (qv_wire_frame){zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i])};
    const char *re = NULL;
    qv_wire_type t;
    if (np >= 3 && qv_wire_type_parse(fr[1].data, fr[1].size, &t, NULL) == QV_OK)
        re = qv_wire_type_name(t);
    qv_wire_msg *m = NULL;
    qv_err e = {0};
    qv_status st = qv_wire_decode(fr, (size_t)(np - 1), &m, &e);
    if (st != QV_OK) {
        send_error(s, p, qv_wire_error_code(st), e.msg, re);
        if (!p->admitted)
            refused_unknown(s, p, re, now, e.msg);
        else
            logf_(s, "refused a message from %s: %s", peer(p, buf, sizeof buf), e.msg);
        return;
    }
    t = qv_wire_msg_type(m);
    const msgpack_object *b = qv_wire_msg_body(m);
    /* Who is it? */
    int role = ROLE_NONE;
    if (s->o.insecure) {
        role = ROLE_CLIENT | ROLE_WORKER;
    } else {
        if (uid && strcmp(uid, "client") == 0) role = ROLE_CLIENT;
        else if (uid && strcmp(uid, "worker") == 0) role = ROLE_WORKER;
        if (role == ROLE_NONE && p->key[0] && t != QV_MSG_HELLO) {
            qv_key_role kr = QV_KEY_UNKNOWN;
            if (qv_store_key_role(s->store, p->key, &kr, NULL) == QV_OK)
                role = kr == QV_KEY_CLIENT ? ROLE_CLIENT : kr == QV_KEY_WORKER ? ROLE_WORKER : ROLE_NONE;
        }
        if (role == ROLE_NONE && p->enrolled)
            role = ROLE_WORKER;
    }
    if (p->revoked)
        role = ROLE_NONE;
    int allowed = t == QV_MSG_HELLO || t == QV_MSG_ENROLL || t == QV_MSG_ERROR ||
                  (client_msg(t) && (role & ROLE_CLIENT)) ||
                  (worker_msg(t) && (role & ROLE_WORKER)) ||
                  (!client_msg(t) && !worker_msg(t) && role != ROLE_NONE);
    if (!allowed) {
        send_error(s, p, "denied", role == ROLE_NONE
                   ? "this key is not admitted: add it with `qvac clients add KEY` "
                     "on the scheduler, or enroll with a token"
                   : "this key's role may not send this message", re);
        if (role == ROLE_NONE)
            refused_unknown(s, p, re, now, "unknown key");
        else
            logf_(s, "denied %s from %s (wrong role)", re ? re : "?", peer(p, buf, sizeof buf));
        qv_wire_msg_free(m);
        return;
    }
    p->junk = 0;
    switch (t) {
    case QV_MSG_HELLO: on_hello(s, p, b, role == ROLE_WORKER); break;
    case QV_MSG_ENROLL: on_enroll(s, p, b, role == ROLE_WORKER, now); break;
    case QV_MSG_HEARTBEAT: on_heartbeat(s, p, b, now); break;
    case QV_MSG_PROGRESS: on_progress(s, p, b, now); break;
    case QV_MSG_DONE:
    case QV_MSG_FAILED: on_result(s, p, t, b, now); break;
    case QV_MSG_SUBMIT: on_submit(s, p, b, now); break;
    case QV_MSG_JOBS: on_jobs(s, p, b); break;
    case QV_MSG_WORKERS: on_workers(s, p); break;
    case QV_MSG_CANCEL: on_cancel(s, p, b, now); break;
    case QV_MSG_LOGS: on_logs(s, p, b); break;
    case QV_MSG_FETCH: on_fetch(s, p, b); break;
    case QV_MSG_BENCH: on_bench(s, p, b, now); break;
    case QV_MSG_BENCHES: on_benches(s, p, b); break;
    case QV_MSG_TUNINGS_PUT: on_tunings_put(s, p, b, now); break;
    case QV_MSG_BENCH_RUN: on_bench_run(s, p, b); break;
    case QV_MSG_TUNINGS_GET: on_tunings_get(s, p, b); break;
    case QV_MSG_BLOB_PUT: on_blob_put(s, p, b); break;
    case QV_MSG_BLOB_CHUNK: on_blob_chunk(s, p, b, now); break;
    case QV_MSG_BLOB_GET: on_blob_get(s, p, b); break;
    case QV_MSG_BLOB_CREDIT: on_blob_credit(s, p, b); break;
    case QV_MSG_BLOB_OK: break; /* a receiver's confirmation: nothing to do */
    case QV_MSG_ERROR: {
        char code[64] = "", msg[QV_WIRE_MAX_TEXT + 1] = "";
        qv_wire_get_str(b, "code", code, sizeof code, NULL);
        qv_wire_get_str(b, "message", msg, sizeof msg, NULL);
        logf_(s, "error from %s: %s: %s", peer(p, buf, sizeof buf), code, msg);
        break; /* never answered */
    }
    default:
        send_error(s, p, "unsupported", "the scheduler does not accept this message type", re);
        logf_(s, "refused %s from %s: not a message the scheduler accepts", re ? re : "?",
              peer(p, buf, sizeof buf));
        break;
    }
    qv_wire_msg_free(m);
}

/* ---- the HTTP view (--http) ------------------------------------------------ */

static void metric_head(qv_sbuf *b, const char *name, const char *help)
{
    qv_sbuf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

/* The Prometheus text of the scheduler's state now. */
static char *render_metrics(qv_server *s, int64_t now)
{
    qv_sbuf b = {0};
    qv_store_metrics *m = calloc(1, sizeof *m);
    qv_err e = {0};
    if (!m || qv_store_metrics_read(s->store, m, &e) != QV_OK) {
        logf_(s, "metrics: %s", m ? e.msg : "out of memory");
        free(m);
        return NULL;
    }
    metric_head(&b, "qvac_jobs", "Jobs by state.");
    for (int i = 0; i < 6; i++)
        qv_sbuf_printf(&b, "qvac_jobs{state=\"%s\"} %" PRId64 "\n", qv_job_state_name((qv_job_state)i),
           m->jobs[i]);
    int64_t w_idle = 0, w_busy = 0, w_tuning = 0, d_idle = 0, d_busy = 0, d_tuning = 0;
    double lag_max = 0, lag_sum = 0;
    int64_t lag_n = 0;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *p = s->all[i];
        if (!p->enrolled)
            continue;
        int busy = 0;
        for (int k = 0; k < p->ndev; k++) {
            busy |= p->devs[k].job != 0;
            d_busy += p->devs[k].job != 0;
            d_tuning += !p->devs[k].job && p->tuning;
            d_idle += !p->devs[k].job && !p->tuning;
        }
        w_busy += busy;
        w_tuning += !busy && p->tuning;
        w_idle += !busy && !p->tuning;
        double lag = (double)(now - p->last_ms) / 1e3;
        lag_max = lag > lag_max ? lag : lag_max;
        lag_sum += lag;
        lag_n++;
    }
    int64_t w_lost = m->workers_lost;
    metric_head(&b, "qvac_workers", "Workers by state (connected: idle, busy, tuning; "
                "lost: silent past their lease).");
    qv_sbuf_printf(&b, "qvac_workers{state=\"idle\"} %" PRId64 "\nqvac_workers{state=\"busy\"} %" PRId64
           "\nqvac_workers{state=\"tuning\"} %" PRId64 "\nqvac_workers{state=\"lost\"} %"
           PRId64 "\n", w_idle, w_busy, w_tuning, w_lost);
    metric_head(&b, "qvac_devices", "Devices of connected workers by state.");
    qv_sbuf_printf(&b, "qvac_devices{state=\"idle\"} %" PRId64 "\nqvac_devices{state=\"busy\"} %" PRId64
           "\nqvac_devices{state=\"tuning\"} %" PRId64 "\n", d_idle, d_busy, d_tuning);
    metric_head(&b, "qvac_job_tokens_per_second",
                "Training throughput of each running job, from its last progress report.");
    for (size_t i = 0; i < m->n_running; i++) {
        if (isnan(m->running[i].tokens_per_s))
            qv_sbuf_printf(&b, "qvac_job_tokens_per_second{job=\"%" PRId64 "\"} NaN\n", m->running[i].job);
        else
            qv_sbuf_printf(&b, "qvac_job_tokens_per_second{job=\"%" PRId64 "\"} %.6g\n",
               m->running[i].job, m->running[i].tokens_per_s);
    }
    metric_head(&b, "qvac_queue_wait_seconds", "How long the oldest queued job has waited.");
    qv_sbuf_printf(&b, "qvac_queue_wait_seconds %.3f\n",
       m->oldest_queued_ms ? (double)(now - m->oldest_queued_ms) / 1e3 : 0.0);
    metric_head(&b, "qvac_heartbeat_lag_seconds", "Time since the last message of each "
                "connected worker: the largest and the mean.");
    qv_sbuf_printf(&b, "qvac_heartbeat_lag_seconds{stat=\"max\"} %.3f\n"
           "qvac_heartbeat_lag_seconds{stat=\"mean\"} %.3f\n",
       lag_max, lag_n ? lag_sum / (double)lag_n : 0.0);
    metric_head(&b, "qvac_blob_store_bytes", "Bytes held in the blob store.");
    qv_sbuf_printf(&b, "qvac_blob_store_bytes %" PRId64 "\n", m->blob_bytes);
    metric_head(&b, "qvac_blobs", "Blobs held in the blob store.");
    qv_sbuf_printf(&b, "qvac_blobs %" PRId64 "\n", m->blobs);
    free(m);
    return qv_sbuf_take(&b);
}

/* The fleet report page from the stored bench results. */
static char *render_html(qv_server *s, int64_t now)
{
    qv_bench_row *rows = NULL;
    size_t n = 0;
    qv_err e = {0};
    if (qv_store_bench_list(s->store, NULL, &rows, &n, &e) != QV_OK) {
        logf_(s, "fleet page: %s", e.msg);
        return NULL;
    }
    qv_fleet_row *fr = calloc(n ? n : 1, sizeof *fr);
    size_t nf = 0;
    for (size_t i = 0; fr && i < n; i++) {
        json_t *j = json_loads(rows[i].result, 0, NULL);
        qv_fleet_row *f = &fr[nf];
        snprintf(f->worker, sizeof f->worker, "%s", rows[i].worker);
        snprintf(f->worker_name, sizeof f->worker_name, "%s", rows[i].worker_name);
        f->received_ms = rows[i].received_ms;
        if (j && qv_bench_from_json(j, &f->r, NULL) == QV_OK)
            nf++;
        json_decref(j);
    }
    qv_bench_rows_free(&rows, n);
    qv_fleet_meta meta = {.scheduler = s->name, .generated_ms = now};
    char *html = fr ? qv_fleet_html(fr, nf, &meta) : NULL;
    free(fr);
    return html;
}

static void refresh_http(qv_server *s, int64_t now)
{
    if (!s->http)
        return;
    char *m = NULL, *h = NULL;
    if (now >= s->next_metrics_ms) {
        m = render_metrics(s, now);
        s->next_metrics_ms = now + 1000;
    }
    if (now >= s->next_html_ms) {
        h = render_html(s, now);
        s->next_html_ms = now + 5000;
    }
    qv_http_set(s->http, m, h);
    free(m);
    free(h);
}

int qv_server_http_port(const qv_server *s) { return s ? qv_http_port(s->http) : 0; }

/* Writes the heartbeats kept in memory to the store, one change for all:
 * a worker's stored last_seen lags at most lease/4 plus a tick, well inside
 * the lease that declares it lost. */
static void flush_seen(qv_server *s, int64_t now, int all)
{
    size_t n = 0, cap = 0;
    char (*ids)[QV_STORE_ID_MAX] = NULL;
    int64_t *times = NULL;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *p = s->all[i];
        if (!p->worker[0] || p->seen_ms <= p->flushed_ms ||
            (!all && now - p->flushed_ms < s->o.lease_ms / 4))
            continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 256;
            void *a = realloc(ids, nc * sizeof *ids), *b = NULL;
            if (a)
                ids = a;
            if (a && (b = realloc(times, nc * sizeof *times)))
                times = b;
            if (!a || !b)
                break;
            cap = nc;
        }
        memcpy(ids[n], p->worker, QV_STORE_ID_MAX);
        times[n++] = p->seen_ms;
    }
    qv_err e = {0};
    if (qv_store_workers_seen(s->store, (const char (*)[QV_STORE_ID_MAX])ids, times, n, &e) != QV_OK)
        logf_(s, "cannot record heartbeats: %s", e.msg);
    else
        for (size_t i = 0, k = 0; i < s->nsess && k < n; i++) {
            sess *p = s->all[i];
            if (p->worker[0] && p->seen_ms > p->flushed_ms &&
                (all || now - p->flushed_ms >= s->o.lease_ms / 4))
                p->flushed_ms = p->seen_ms, k++;
        }
    free(ids);
    free(times);
}

/* Another process changed the store (`qvac clients remove`, `qvac workers
 * remove`, ...): connections whose key was removed lose their role at once;
 * a removed worker's running attempts are aborted (the store requeued
 * their jobs) and it gets no more. */
static void check_revocations(qv_server *s)
{
    int64_t v = 0;
    if (qv_store_data_version(s->store, &v, NULL) != QV_OK || v == s->data_version)
        return;
    s->data_version = v;
    char (*ids)[QV_STORE_ID_MAX] = NULL;
    size_t n = 0;
    if (qv_store_revoked_workers(s->store, &ids, &n, NULL) != QV_OK)
        return;
    for (size_t i = 0; i < s->nsess; i++) {
        sess *p = s->all[i];
        if (p->revoked)
            continue;
        int gone = 0;
        for (size_t k = 0; k < n && p->worker[0] && !gone; k++)
            gone = strcmp(p->worker, ids[k]) == 0;
        if (!gone && p->client_hint && p->key[0] && !s->o.insecure) {
            qv_key_role kr = QV_KEY_UNKNOWN;
            gone = qv_store_key_role(s->store, p->key, &kr, NULL) == QV_OK &&
                   kr != QV_KEY_CLIENT;
        }
        if (!gone)
            continue;
        for (int k = 0; k < p->ndev; k++)
            if (p->devs[k].job)
                send_abort(s, p, p->devs[k].job, p->devs[k].attempt,
                           "this worker was removed (qvac workers remove)");
        logf_(s, "%s %s was removed: its connection is refused from now on",
              p->worker[0] ? "worker" : "client key", p->worker[0] ? p->worker : p->key);
        p->revoked = 1;
        p->enrolled = 0;
        p->ndev = 0;
        sess_set_admitted(s, p, 0);
    }
    free(ids);
    /* they count as unknown now: back under the limit, oldest first */
    while (s->nunknown > (size_t)s->o.max_unknown) {
        sess *o = oldest_unknown(s);
        if (!o)
            break;
        sess_drop(s, o);
    }
}

static void tick(qv_server *s, int64_t now)
{
    qv_err e = {0};
    int rq = 0, fl = 0;
    flush_seen(s, now, 0);
    check_revocations(s);
    if (qv_store_expire_leases(s->store, now, &rq, &fl, &e) != QV_OK)
        logf_(s, "lease expiry: %s", e.msg);
    else if (rq || fl)
        logf_(s, "leases expired: %d job(s) requeued, %d failed", rq, fl);
    char ids[16][QV_STORE_ID_MAX];
    size_t n = 0;
    if (qv_store_silent_workers(s->store, now, s->o.lease_ms, ids, 16, &n, &e) == QV_OK) {
        for (size_t i = 0; i < n; i++) {
            int req = 0;
            if (qv_store_worker_lost(s->store, ids[i], "silent past its lease", now, &req, &e) == QV_OK)
                logf_(s, "worker %s lost (silent for %" PRId64 " ms); %d job(s) requeued",
                      ids[i], s->o.lease_ms, req);
            for (size_t k = 0; k < s->nsess; k++)
                if (strcmp(s->all[k]->worker, ids[i]) == 0) {
                    s->all[k]->enrolled = 0;
                    s->all[k]->ndev = 0;
                }
        }
    }
    /* the store changed under the sessions (or a lease went by): see which
     * devices are free again */
    int recon = rq || fl || n || now >= s->next_dispatch_ms;
    for (size_t i = s->nsess; i-- > 0;) {
        sess *p = s->all[i];
        int live = 0;
        for (int k = 0; k < MAX_FOLLOW; k++) {
            follow_t *f = &p->fol[k];
            if (!f->active)
                continue;
            int ended;
            f->after = send_events(s, p, f->job, f->after, 1, 0, &ended);
            if (ended)
                f->active = 0;
            else
                live = 1;
        }
        if (p->enrolled && recon)
            reconcile(s, p);
        /* a connection from a key not admitted is forgotten sooner */
        int64_t idle = p->admitted ? 3 * s->o.lease_ms : s->o.lease_ms;
        if (!live && now - p->last_ms > idle) {
            if (p->worker[0] && p->seen_ms > p->flushed_ms)
                flush_seen(s, now, 1);
            sess_drop(s, p);
        }
    }
    if (rq || fl || n)
        s->dispatch_due = 1;
    if (now >= s->next_part_sweep_ms) {
        /* a partial upload no connection holds, untouched for ten minutes:
         * its client vanished; its space comes back */
        s->next_part_sweep_ms = now + 60000;
        size_t nk = 0;
        const char **keep = NULL;
        for (size_t i = 0; i < s->nsess; i++)
            for (int k = 0; k < MAX_XFER; k++)
                nk += s->all[i]->ups[k].u != NULL;
        if (nk && !(keep = malloc(nk * sizeof *keep)))
            nk = 0;
        size_t j = 0;
        for (size_t i = 0; i < s->nsess && j < nk; i++)
            for (int k = 0; k < MAX_XFER && j < nk; k++)
                if (s->all[i]->ups[k].u)
                    keep[j++] = s->all[i]->ups[k].hash;
        int gone = 0;
        if (qv_store_blob_tmp_clean(s->store, 600, keep, j, &gone, &e) == QV_OK && gone)
            logf_(s, "removed %d partial upload(s) no client has touched for 10 minutes", gone);
        free(keep);
    }
    /* a pass now and then whatever happened: cheap with an empty queue */
    if (s->dispatch_due || now >= s->next_dispatch_ms) {
        dispatch(s, now);
        s->next_dispatch_ms = now + s->o.lease_ms / 2;
    }
    refresh_http(s, now);
}

/* The loop: every message that is ready (up to 256) is handled inside one
 * store group, dispatch runs once for all of them, and the group's commit
 * (one fsync) comes before any of their replies leaves. */
qv_status qv_server_run(qv_server *s, qv_err *err)
{
    int64_t next_tick = 0;
    while (!atomic_load(&s->stop)) {
        int64_t now = qv_store_now_ms();
        if (now >= next_tick) {
            group_begin(s);
            tick(s, now);
            group_end(s);
            next_tick = now + s->o.tick_ms;
        }
        zmq_pollitem_t it = {s->router, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, (long)(next_tick - now > 0 ? next_tick - now : 0));
        if (rc < 0) {
            if (zmq_errno() == EINTR)
                continue;
            if (zmq_errno() == ETERM)
                break;
            return qv_fail(err, QV_ERR_IO, "scheduler: poll failed (%s)", zmq_strerror(zmq_errno()));
        }
        if (rc == 0)
            continue;
        group_begin(s);
        for (int budget = 0; budget < 256 && !atomic_load(&s->stop); budget++) {
            zmq_msg_t parts[MAX_PARTS];
            int np = 0, more = 1, extra = 0, failed = 0;
            while (more) {
                zmq_msg_t *m = np < MAX_PARTS ? &parts[np] : NULL;
                zmq_msg_t scratch;
                if (!m)
                    m = &scratch;
                zmq_msg_init(m);
                if (zmq_msg_recv(m, s->router, (np == 0 && !extra) ? ZMQ_DONTWAIT : 0) < 0) {
                    zmq_msg_close(m);
                    failed = 1;
                    break;
                }
                more = zmq_msg_more(m);
                if (m == &scratch) {
                    zmq_msg_close(m);
                    extra++;
                } else {
                    np++;
                }
            }
            if (failed && np == 0)
                break;
            now = qv_store_now_ms();
            if (!failed && np >= 2 && !extra) {
                handle(s, parts, np, now);
            } else if (!failed && np >= 2) {
                char msg[128];
                snprintf(msg, sizeof msg, "a message has %d frames; the protocol has 3",
                         np - 1 + extra);
                if (zmq_msg_size(&parts[0]) <= 256)
                    send_error_rid(s, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]),
                                   "malformed", msg, NULL);
                logf_(s, "refused a message of %d frames", np - 1 + extra);
            }
            for (int i = 0; i < np; i++)
                zmq_msg_close(&parts[i]);
            if (s->held_bytes > HELD_MAX) { /* downloads: do not hold too much */
                if (s->dispatch_due)
                    dispatch(s, now);
                group_end(s);
                group_begin(s);
            }
        }
        if (s->dispatch_due)
            dispatch(s, qv_store_now_ms());
        group_end(s);
    }
    group_begin(s);
    flush_seen(s, qv_store_now_ms(), 1);
    group_end(s);
    return QV_OK;
}

/* ---- hooks for tests and the fuzz target ------------------------------------ */

void qv_server_feed(qv_server *s, const void *rid, size_t rid_len,
                    const void *const *frames, const size_t *lens, int n,
                    int64_t now)
{
    if (!s || n < 1 || n > MAX_PARTS - 1 || rid_len == 0 || rid_len > 255)
        return;
    zmq_msg_t parts[MAX_PARTS];
    zmq_msg_init_size(&parts[0], rid_len);
    memcpy(zmq_msg_data(&parts[0]), rid, rid_len);
    for (int i = 0; i < n; i++) {
        zmq_msg_init_size(&parts[i + 1], lens[i]);
        if (lens[i])
            memcpy(zmq_msg_data(&parts[i + 1]), frames[i], lens[i]);
    }
    group_begin(s);
    if (n + 1 >= 2)
        handle(s, parts, n + 1, now);
    if (s->dispatch_due)
        dispatch(s, now);
    group_end(s);
    for (int i = 0; i < n + 1; i++)
        zmq_msg_close(&parts[i]);
}

void qv_server_tick(qv_server *s, int64_t now)
{
    if (!s)
        return;
    group_begin(s);
    tick(s, now);
    group_end(s);
}

int qv_server_check(const qv_server *s, char *why, size_t n)
{
#define BAD(...) do { snprintf(why, n, __VA_ARGS__); return 0; } while (0)
    size_t unknown = 0, chained = 0;
    if (s->nsess > s->cap || s->nsess > (size_t)s->o.max_sessions)
        BAD("%zu sessions, capacity %zu, limit %d", s->nsess, s->cap, s->o.max_sessions);
    for (size_t i = 0; i < s->nsess; i++) {
        const sess *p = s->all[i];
        if (p->at != i)
            BAD("session %zu says it is at %zu", i, p->at);
        if (p->h != rid_hash(p->rid, p->rid_len))
            BAD("session %zu: a stale hash", i);
        if (find_sess((qv_server *)s, p->rid, p->rid_len) != p)
            BAD("session %zu cannot be found by its routing id", i);
        unknown += !p->admitted;
        if (p->ndev < 0 || p->ndev > MAX_DEV)
            BAD("session %zu has %d devices", i, p->ndev);
    }
    for (size_t b = 0; b < s->nbucket; b++)
        for (const sess *p = s->bucket[b]; p; p = p->next) {
            if ((p->h & (s->nbucket - 1)) != b)
                BAD("a session in bucket %zu hashes elsewhere", b);
            if (++chained > s->nsess)
                BAD("the hash chains hold more entries than the table");
        }
    if (chained != s->nsess)
        BAD("the chains hold %zu sessions, the table %zu", chained, s->nsess);
    if (unknown != s->nunknown)
        BAD("%zu sessions of unknown keys, counted %zu", unknown, s->nunknown);
    if (s->nunknown > (size_t)s->o.max_unknown)
        BAD("%zu sessions of unknown keys, limit %d", s->nunknown, s->o.max_unknown);
    if (s->grouping || s->nheld)
        BAD("a group left open");
    return 1;
#undef BAD
}

void qv_server_stop(qv_server *s)
{
    if (s)
        atomic_store(&s->stop, 1);
}

/* ---- ZAP --------------------------------------------------------------- */


static void *zap_main(void *argp)
{
    qv_server *s = argp;
    void *sock = s->zap;
    qv_store *st = NULL;
    qv_store_open(s->data_dir, NULL, &st, NULL);
    for (;;) {
        zmq_msg_t fr[8];
        int n = 0, more = 1, fail = 0;
        while (more) {
            zmq_msg_t junk;
            zmq_msg_t *m = n < 8 ? &fr[n] : &junk;
            zmq_msg_init(m);
            if (zmq_msg_recv(m, sock, 0) < 0) {
                zmq_msg_close(m);
                fail = 1;
                break;
            }
            more = zmq_msg_more(m);
            if (m == &junk)
                zmq_msg_close(m);
            else
                n++;
        }
        if (fail) {
            for (int i = 0; i < n; i++)
                zmq_msg_close(&fr[i]);
            if (zmq_errno() == ETERM)
                break;
            continue;
        }
        const char *role = "unknown";
        char key[QV_KEY_Z85] = "";
        int ok = n >= 7 && zmq_msg_size(&fr[5]) == 5 &&
                 memcmp(zmq_msg_data(&fr[5]), "CURVE", 5) == 0 &&
                 zmq_msg_size(&fr[6]) == 32;
        if (ok && zmq_z85_encode(key, zmq_msg_data(&fr[6]), 32)) {
            qv_key_role kr = QV_KEY_UNKNOWN;
            if (st && qv_store_key_role(st, key, &kr, NULL) == QV_OK)
                role = kr == QV_KEY_CLIENT ? "client" : kr == QV_KEY_WORKER ? "worker" : "unknown";
        }
        /* version, request id, status, text, user id, metadata */
        uint8_t meta[64];
        size_t ml = 0;
        if (key[0]) {
            meta[ml++] = 5;
            memcpy(meta + ml, "X-Key", 5), ml += 5;
            meta[ml++] = 0, meta[ml++] = 0, meta[ml++] = 0, meta[ml++] = 40;
            memcpy(meta + ml, key, 40), ml += 40;
        }
        zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
        if (n >= 2)
            zmq_send(sock, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]), ZMQ_SNDMORE);
        else
            zmq_send(sock, "", 0, ZMQ_SNDMORE);
        zmq_send(sock, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        zmq_send(sock, ok ? "OK" : "not CURVE", ok ? 2 : 9, ZMQ_SNDMORE);
        zmq_send(sock, role, strlen(role), ZMQ_SNDMORE);
        zmq_send(sock, meta, ml, 0);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&fr[i]);
    }
    zmq_close(sock);
    qv_store_close(&st);
    return NULL;
}

/* ---- open / close ------------------------------------------------------ */

qv_status qv_server_open(const qv_server_opts *opts, qv_server **out, qv_err *err)
{
    *out = NULL;
    qv_server *s = calloc(1, sizeof *s);
    if (!s)
        return qv_fail(err, QV_ERR_NOMEM, "scheduler: out of memory");
    s->buf = malloc(CHUNK);
    if (!s->buf) {
        qv_server_close(&s);
        return qv_fail(err, QV_ERR_NOMEM, "scheduler: out of memory");
    }
    if (opts)
        s->o = *opts;
    if (!s->o.bind) s->o.bind = "tcp://*:5555";
    if (s->o.lease_ms <= 0) s->o.lease_ms = 10000;
    if (s->o.max_attempts <= 0) s->o.max_attempts = QV_STORE_MAX_ATTEMPTS;
    if (s->o.checkpoint_every <= 0) s->o.checkpoint_every = 100;
    if (s->o.max_sessions <= 0) s->o.max_sessions = DEF_MAX_SESS;
    if (!s->o.max_blob) s->o.max_blob = DEF_MAX_BLOB;
    if (s->o.max_unknown <= 0) s->o.max_unknown = DEF_MAX_UNKNOWN;
    if (s->o.max_unknown > s->o.max_sessions) s->o.max_unknown = s->o.max_sessions;
    if (s->o.tick_ms <= 0) {
        s->o.tick_ms = (int)(s->o.lease_ms / 4);
        if (s->o.tick_ms > 250) s->o.tick_ms = 250;
        if (s->o.tick_ms < 10) s->o.tick_ms = 10;
    }
    qv_status st = QV_OK;
    if (s->o.data_dir)
        snprintf(s->data_dir, sizeof s->data_dir, "%s", s->o.data_dir);
    else
        st = qv_paths_data_dir(s->data_dir, sizeof s->data_dir, err);
    if (st == QV_OK)
        st = qv_paths_mkdir(s->data_dir, err);
    if (st == QV_OK) { /* one data folder, one scheduler */
        char lp[4200];
        snprintf(lp, sizeof lp, "%s/scheduler.lock", s->data_dir);
        s->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (s->lock_fd < 0) {
            st = qv_fail(err, QV_ERR_IO, "scheduler: cannot open %s: %s", lp,
                         strerror(errno));
        } else if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            char pid[32] = "";
            ssize_t n = pread(s->lock_fd, pid, sizeof pid - 1, 0);
            pid[n > 0 ? n : 0] = 0;
            pid[strcspn(pid, "\n")] = 0;
            st = qv_fail(err, QV_ERR_INVALID, "scheduler: another scheduler (pid %s) "
                         "already runs on %s; stop it, or give this one another --data",
                         pid[0] ? pid : "?", s->data_dir);
            close(s->lock_fd);
        } else {
            s->locked = 1;
            char pid[32];
            int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
            if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, pid, (size_t)n, 0) != n)
                logf_(s, "scheduler: cannot write the pid into %s", lp);
        }
    }
    if (st == QV_OK)
        st = qv_store_open(s->data_dir, NULL, &s->store, err);
    if (st == QV_OK)
        st = qv_store_worker_max_id(s->store, &s->max_worker_id, err);
    if (st == QV_OK)
        st = qv_store_data_version(s->store, &s->data_version, err);
    /* uploads an earlier run left: kept an hour to be resumed, then gone
     * (we hold the lock: no other scheduler writes there) */
    int stale = 0;
    if (st == QV_OK && qv_store_blob_tmp_clean(s->store, 3600, NULL, 0, &stale, NULL) == QV_OK &&
        stale)
        logf_(s, "removed %d partial upload(s) an earlier run left over an hour ago", stale);
    if (st != QV_OK) {
        qv_server_close(&s);
        return st;
    }
    /* a connection is a file descriptor: a fleet needs more than the usual
     * soft limit of 1024, up to what the system allows this process */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (s->o.name)
        snprintf(s->name, sizeof s->name, "%s", s->o.name);
    else if (gethostname(s->name, sizeof s->name - 1) != 0)
        snprintf(s->name, sizeof s->name, "qvac");
    if (s->o.http && (st = qv_http_start(s->o.http, &s->http, err)) != QV_OK) {
        qv_server_close(&s);
        return st;
    }
    s->ctx = zmq_ctx_new();
    if (!s->ctx) {
        qv_server_close(&s);
        return qv_fail(err, QV_ERR_IO, "scheduler: zmq_ctx_new failed");
    }
    if (!s->o.insecure) {
        if (!qv_curve_available()) {
            qv_server_close(&s);
            return qv_fail(err, QV_ERR_UNSUPPORTED, "scheduler: this libzmq has no "
                           "CURVE; install libzmq with libsodium, or run with --insecure");
        }
        char path[4200];
        snprintf(path, sizeof path, "%s/scheduler.key", s->data_dir);
        st = qv_keys_load_or_create(path, &s->kp, err);
        if (st == QV_OK) {
            snprintf(path, sizeof path, "%s/scheduler.pub", s->data_dir);
            st = qv_keys_write_public(path, s->kp.pub, err);
        }
        if (st == QV_OK && (!s->o.client_key || s->o.client_key[0])) {
            qv_keypair ck;
            char cdir[4096];
            if (s->o.client_key) {
                snprintf(path, sizeof path, "%s", s->o.client_key);
            } else {
                st = qv_paths_config_dir(cdir, sizeof cdir, err);
                snprintf(path, sizeof path, "%s/client.key", cdir);
            }
            if (st == QV_OK)
                st = qv_keys_load_or_create(path, &ck, err);
            if (st == QV_OK)
                st = qv_store_client_add(s->store, ck.pub, "account", qv_store_now_ms(), err);
        }
        if (st == QV_OK) {
            s->zap = zmq_socket(s->ctx, ZMQ_REP);
            if (!s->zap || zmq_bind(s->zap, "inproc://zeromq.zap.01") != 0)
                st = qv_fail(err, QV_ERR_IO, "scheduler: ZAP handler: %s", zmq_strerror(zmq_errno()));
        }
        if (st == QV_OK) {
            if (pthread_create(&s->zap_thread, NULL, zap_main, s) != 0)
                st = qv_fail(err, QV_ERR_IO, "scheduler: cannot start the ZAP thread");
            else
                s->zap_started = 1;
        }
        if (st != QV_OK) {
            qv_server_close(&s);
            return st;
        }
    }
    s->router = zmq_socket(s->ctx, ZMQ_ROUTER);
    /* bodies over the protocol's 16 MiB up to 4 times that get a `malformed`
     * reply from the decoder; libzmq drops the connection of a larger one
     * before it is read (docs/protocol.md, Limits) */
    int64_t maxmsg = 4 * (int64_t)QV_WIRE_MAX_BODY + 4096;
    int linger = 0, hwm = 10000;
    if (!s->router) {
        qv_server_close(&s);
        return qv_fail(err, QV_ERR_IO, "scheduler: zmq_socket failed");
    }
    zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(s->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    /* per peer: a client that sends chunks past its credit queues at most
     * this many messages here, not its whole file */
    int rcvhwm = 64;
    zmq_setsockopt(s->router, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    if (!s->o.insecure) {
        st = qv_sock_curve_server(s->router, &s->kp, err);
        zmq_setsockopt(s->router, ZMQ_ZAP_DOMAIN, "qvac", 4);
        if (st != QV_OK) {
            qv_server_close(&s);
            return st;
        }
    }
    if (zmq_bind(s->router, s->o.bind) != 0) {
        st = qv_fail(err, QV_ERR_IO, "scheduler: cannot bind %s (%s); is another "
                     "scheduler running? pick another --bind", s->o.bind,
                     zmq_strerror(zmq_errno()));
        qv_server_close(&s);
        return st;
    }
    size_t el = sizeof s->endpoint;
    zmq_getsockopt(s->router, ZMQ_LAST_ENDPOINT, s->endpoint, &el);
    logf_(s, "scheduler %s listening on %s (%s), data %s", s->name, s->endpoint,
          s->o.insecure ? "INSECURE: no CURVE" : "CURVE", s->data_dir);
    *out = s;
    return QV_OK;
}

const char *qv_server_endpoint(const qv_server *s) { return s->endpoint; }
const char *qv_server_public_key(const qv_server *s) { return s->kp.pub; }

void qv_server_close(qv_server **sp)
{
    if (!sp || !*sp)
        return;
    qv_server *s = *sp;
    while (s->nsess)
        sess_drop(s, s->all[s->nsess - 1]);
    for (size_t i = 0; i < s->nheld; i++)
        qv_wire_out_free(&s->held[i].out);
    free(s->held);
    if (s->router)
        zmq_close(s->router);
    if (s->ctx) {
        if (s->zap_started) {
            zmq_ctx_shutdown(s->ctx);
            pthread_join(s->zap_thread, NULL);
        } else if (s->zap) {
            zmq_close(s->zap);
        }
        zmq_ctx_term(s->ctx);
    }
    qv_http_stop(&s->http);
    qv_store_close(&s->store);
    if (s->locked)
        close(s->lock_fd); /* releases the lock */
    free(s->all);
    free(s->bucket);
    free(s->buf);
    free(s);
    *sp = NULL;
}
