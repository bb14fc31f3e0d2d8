/* scheduler/client.c — see client.h. */
#include "scheduler/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "scheduler/keys.h"

#ifndef QV_VERSION
#define QV_VERSION "0.0.0"
#endif

struct qv_client {
    void *ctx, *sock;
    char address[512];
    int timeout_ms;
    qv_client_welcome welcome;
    char last_code[32], last_re[32];
    bool timed_out;
    /* for a new socket (qv_client_reconnect): CURVE keys, when used */
    bool curve;
    qv_keypair kp;
    char spub[QV_KEY_Z85];
};

/* ---- small helpers -------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hex_of(const unsigned char d[crypto_hash_sha256_BYTES],
                   char hex[QV_SHA256_HEX])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < crypto_hash_sha256_BYTES; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[2 * crypto_hash_sha256_BYTES] = '\0';
}

static void sodium_once(void)
{
    /* sodium_init is idempotent and thread-safe; crypto_hash_sha256 works
     * without it, but it picks the fastest implementation. */
    if (sodium_init() < 0)
        return; /* the portable code paths are used */
}

void qv_sha256_mem(const void *data, size_t n, char hex[QV_SHA256_HEX])
{
    unsigned char d[crypto_hash_sha256_BYTES];
    sodium_once();
    crypto_hash_sha256(d, n ? data : (const void *)"", n);
    hex_of(d, hex);
}

qv_status qv_sha256_file(const char *path, char hex[QV_SHA256_HEX],
                         uint64_t *size, qv_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return qv_fail(err, errno == ENOENT ? QV_ERR_NOT_FOUND : QV_ERR_IO,
                       "%s: %s", path, strerror(errno));
    sodium_once();
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned char *buf = malloc(1 << 20);
    if (!buf) {
        fclose(f);
        return qv_fail(err, QV_ERR_NOMEM, "%s: out of memory", path);
    }
    uint64_t total = 0;
    size_t got;
    while ((got = fread(buf, 1, 1 << 20, f)) > 0) {
        crypto_hash_sha256_update(&st, buf, got);
        total += got;
    }
    int bad = ferror(f);
    fclose(f);
    free(buf);
    if (bad)
        return qv_fail(err, QV_ERR_IO, "%s: read error", path);
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&st, d);
    hex_of(d, hex);
    if (size)
        *size = total;
    return QV_OK;
}

const char *qv_client_address_for(const qv_client_opts *o)
{
    if (o && o->address && *o->address)
        return o->address;
    const char *env = getenv("QVAC_SCHEDULER");
    if (env && *env)
        return env;
    return QV_CLIENT_DEFAULT_ADDR;
}

qv_status qv_client_error_status(const char *code)
{
    if (!code)
        return QV_ERR_IO;
    if (!strcmp(code, "not_found"))
        return QV_ERR_NOT_FOUND;
    if (!strcmp(code, "malformed") || !strcmp(code, "hash_mismatch"))
        return QV_ERR_CORRUPT;
    if (!strcmp(code, "unsupported"))
        return QV_ERR_UNSUPPORTED;
    if (!strcmp(code, "busy"))
        return QV_ERR_NOMEM;
    if (!strcmp(code, "invalid") || !strcmp(code, "denied"))
        return QV_ERR_INVALID;
    return QV_ERR_IO;
}

const char *qv_client_address(const qv_client *c) { return c->address; }
const qv_client_welcome *qv_client_welcome_info(const qv_client *c)
{
    return &c->welcome;
}
const char *qv_client_last_error_code(const qv_client *c)
{
    return c->last_code;
}
bool qv_client_timed_out(const qv_client *c) { return c->timed_out; }
void qv_client_set_timeout(qv_client *c, int timeout_ms)
{
    if (timeout_ms > 0)
        c->timeout_ms = timeout_ms;
}

/* ---- sending and receiving ------------------------------------------------ */

qv_status qv_client_send(qv_client *c, const qv_wire_out *msg, qv_err *err)
{
    for (int i = 0; i < QV_WIRE_FRAMES; i++) {
        int flags = i + 1 < QV_WIRE_FRAMES ? ZMQ_SNDMORE : 0;
        if (zmq_send(c->sock, msg->frame[i].data, msg->frame[i].size, flags) < 0)
            return qv_fail(err, QV_ERR_IO, "sending to the scheduler at %s: %s",
                           c->address, zmq_strerror(errno));
    }
    return QV_OK;
}

static qv_status timeout_error(qv_client *c, qv_err *err)
{
    return qv_fail(err, QV_ERR_IO,
                   "no answer from the scheduler at %s within %.1f s: is it "
                   "running (`qvac scheduler`), and is the address right "
                   "(--scheduler or QVAC_SCHEDULER)? With CURVE, a wrong "
                   "--scheduler-key or a client key the scheduler does not "
                   "admit (`qvac keys`, then `qvac clients add KEY` on the "
                   "scheduler) also looks like silence",
                   c->address, c->timeout_ms / 1000.0);
}

/* Turns an `error` message into a status; remembers its code. */
static qv_status error_reply(qv_client *c, const qv_wire_msg *m, qv_err *err)
{
    const msgpack_object *b = qv_wire_msg_body(m);
    char code[32] = "", re[32] = "", text[QV_WIRE_MAX_TEXT + 1] = "";
    qv_wire_get_str(b, "code", code, sizeof code, NULL);
    qv_wire_get_str(b, "message", text, sizeof text, NULL);
    qv_wire_get_str(b, "re", re, sizeof re, NULL);
    snprintf(c->last_code, sizeof c->last_code, "%s", code);
    snprintf(c->last_re, sizeof c->last_re, "%s", re);
    qv_status st = qv_client_error_status(code);
    if (re[0])
        return qv_fail(err, st, "scheduler refused '%s' (%s): %s", re, code,
                       text);
    return qv_fail(err, st, "scheduler: %s (%s)", text, code);
}

qv_status qv_client_recv(qv_client *c, qv_wire_msg **out, qv_err *err)
{
    *out = NULL;
    c->timed_out = false;
    int64_t deadline = mono_ms() + c->timeout_ms;
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left < 0)
            left = 0;
        zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, (long)left);
        if (rc < 0) {
            if (errno == EINTR && mono_ms() < deadline)
                continue;
            return qv_fail(err, QV_ERR_IO, "waiting for the scheduler at %s: %s",
                           c->address, zmq_strerror(errno));
        }
        if (rc == 0) {
            c->timed_out = true;
            return timeout_error(c, err);
        }

        /* One multipart message; more than 3 frames is refused below. */
        zmq_msg_t parts[QV_WIRE_FRAMES + 1];
        size_t n = 0;
        int more = 1, failed = 0;
        while (more) {
            zmq_msg_t tmp;
            zmq_msg_init(&tmp);
            if (zmq_msg_recv(&tmp, c->sock, 0) < 0) {
                zmq_msg_close(&tmp);
                failed = errno;
                break;
            }
            more = zmq_msg_more(&tmp);
            if (n < QV_WIRE_FRAMES + 1)
                parts[n++] = tmp; /* moves the message */
            else
                zmq_msg_close(&tmp);
        }
        qv_status st = QV_OK;
        qv_wire_msg *m = NULL;
        if (failed) {
            st = qv_fail(err, QV_ERR_IO, "receiving from the scheduler at %s: %s",
                         c->address, zmq_strerror(failed));
        } else {
            qv_wire_frame fr[QV_WIRE_FRAMES + 1];
            for (size_t i = 0; i < n; i++) {
                fr[i].data = zmq_msg_data(&parts[i]);
                fr[i].size = zmq_msg_size(&parts[i]);
            }
            qv_err de;
            qv_err_clear(&de);
            st = qv_wire_decode(fr, n, &m, &de);
            if (st)
                qv_fail(err, st, "the scheduler at %s sent what this client "
                        "cannot read (is it a qvac %s scheduler?): %s",
                        c->address, QV_VERSION, de.msg);
        }
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
        if (st)
            return st;
        if (qv_wire_msg_type(m) == QV_MSG_ERROR) {
            st = error_reply(c, m, err);
            qv_wire_msg_free(m);
            return st;
        }
        *out = m;
        return QV_OK;
    }
}

qv_status qv_client_request(qv_client *c, const qv_wire_out *msg,
                            qv_wire_type want, qv_wire_msg **reply,
                            qv_err *err)
{
    *reply = NULL;
    qv_status st = qv_client_send(c, msg, err);
    if (st)
        return st;
    for (;;) {
        qv_wire_msg *m = NULL;
        if ((st = qv_client_recv(c, &m, err)))
            return st;
        if (qv_wire_msg_type(m) == want) {
            *reply = m;
            return QV_OK;
        }
        qv_wire_msg_free(m); /* something late from an earlier exchange */
    }
}

/* ---- connect ------------------------------------------------------------- */

static qv_status setup_curve(qv_client *c, const qv_client_opts *o, qv_err *err)
{
    if (!qv_curve_available())
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "this libzmq has no CURVE support; use --insecure only "
                       "against a scheduler started with --insecure");
    char path[1100], dir[1024];
    qv_status st;
    const char *kpath = o ? o->client_key : NULL;
    if (!kpath) {
        if ((st = qv_paths_config_dir(dir, sizeof dir, err)))
            return st;
        snprintf(path, sizeof path, "%s/client.key", dir);
        kpath = path;
    }
    qv_keypair kp;
    if ((st = qv_keys_load_or_create(kpath, &kp, err)))
        return qv_err_prefix(err, st, "the client key");

    char spub[QV_KEY_Z85] = "";
    const char *given = o ? o->server_key : NULL;
    const char *from = "--scheduler-key";
    if (!given || !*given) {
        given = getenv("QVAC_SCHEDULER_KEY");
        from = "QVAC_SCHEDULER_KEY";
    }
    if (given && *given) {
        if (strlen(given) != 40 || qv_keys_valid(given))
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: not a CURVE public key (40 Z85 characters, as "
                           "the scheduler prints it)", from);
        memcpy(spub, given, 41);
    } else {
        char pubpath[1100];
        if ((st = qv_paths_data_dir(dir, sizeof dir, err)))
            return st;
        snprintf(pubpath, sizeof pubpath, "%s/scheduler.pub", dir);
        if (access(pubpath, R_OK))
            return qv_fail(err, QV_ERR_NOT_FOUND,
                           "no scheduler public key: pass --scheduler-key KEY "
                           "or set QVAC_SCHEDULER_KEY (the scheduler's machine "
                           "has it in <data dir>/scheduler.pub); %s does not "
                           "exist. A scheduler started with --insecure needs "
                           "--insecure here", pubpath);
        if ((st = qv_keys_load_public(pubpath, spub, err)))
            return qv_err_prefix(err, st, "the scheduler's public key");
    }
    c->curve = true;
    c->kp = kp;
    memcpy(c->spub, spub, sizeof c->spub);
    return qv_sock_curve_client(c->sock, &kp, spub, err);
}

qv_status qv_client_reconnect(qv_client *c, qv_err *err)
{
    void *ns = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!ns)
        return qv_fail(err, QV_ERR_IO, "client: ZeroMQ socket: %s", zmq_strerror(errno));
    int zero = 0;
    zmq_setsockopt(ns, ZMQ_LINGER, &zero, sizeof zero);
    qv_status st = c->curve ? qv_sock_curve_client(ns, &c->kp, c->spub, err) : QV_OK;
    if (!st && zmq_connect(ns, c->address))
        st = qv_fail(err, QV_ERR_IO, "cannot connect to '%s' (%s)", c->address,
                     zmq_strerror(errno));
    if (st) {
        zmq_close(ns);
        return st;
    }
    zmq_close(c->sock); /* LINGER 0: what was queued for the old one goes */
    c->sock = ns;
    return QV_OK;
}

static void default_name(char *buf, size_t n)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1))
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    const char *user = getenv("USER");
    if (!user || !*user)
        user = "client";
    snprintf(buf, n, "%.48s@%.64s", user, host);
}

static qv_status hello(qv_client *c, const qv_client_opts *o, qv_err *err)
{
    char name[QV_WIRE_MAX_NAME + 1];
    if (o && o->name && *o->name)
        snprintf(name, sizeof name, "%s", o->name);
    else
        default_name(name, sizeof name);
    qv_wire_writer *w = NULL;
    qv_wire_out out = {0};
    qv_status st = qv_wire_writer_new(QV_MSG_HELLO, 3, &w, err);
    if (st)
        return st;
    qv_wire_kv_str(w, "role", "client");
    qv_wire_kv_str(w, "name", name);
    qv_wire_kv_str(w, "version", QV_VERSION);
    st = qv_wire_finish(w, &out, err);
    qv_wire_writer_free(w);
    if (st)
        return st;
    qv_wire_msg *m = NULL;
    st = qv_client_request(c, &out, QV_MSG_WELCOME, &m, err);
    qv_wire_out_free(&out);
    if (st)
        return st;
    const msgpack_object *b = qv_wire_msg_body(m);
    qv_client_welcome *wl = &c->welcome;
    qv_wire_get_str(b, "scheduler", wl->scheduler, sizeof wl->scheduler, NULL);
    qv_wire_get_str(b, "version", wl->version, sizeof wl->version, NULL);
    qv_wire_get_str(b, "hash", wl->hash, sizeof wl->hash, NULL);
    qv_wire_get_u64(b, "lease_ms", &wl->lease_ms, NULL);
    qv_wire_get_u64(b, "chunk", &wl->chunk, NULL);
    qv_wire_get_u64(b, "credit", &wl->credit, NULL);
    qv_wire_msg_free(m);
    if (strcmp(wl->hash, "sha256"))
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "the scheduler at %s names blobs with '%s'; this client "
                       "knows sha256 only", c->address, wl->hash);
    if (wl->chunk == 0 || wl->chunk > QV_WIRE_MAX_CHUNK)
        wl->chunk = QV_WIRE_MAX_CHUNK;
    if (wl->credit < wl->chunk)
        wl->credit = wl->chunk * 8;
    return QV_OK;
}

qv_status qv_client_connect(const qv_client_opts *o, qv_client **out,
                            qv_err *err)
{
    *out = NULL;
    qv_client *c = calloc(1, sizeof *c);
    if (!c)
        return qv_fail(err, QV_ERR_NOMEM, "client: out of memory");
    snprintf(c->address, sizeof c->address, "%s", qv_client_address_for(o));
    c->timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : QV_CLIENT_TIMEOUT_MS;
    qv_status st = QV_OK;
    c->ctx = zmq_ctx_new();
    c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_DEALER) : NULL;
    if (!c->sock) {
        st = qv_fail(err, QV_ERR_IO, "client: ZeroMQ socket: %s",
                     zmq_strerror(errno));
        goto fail;
    }
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (!(o && o->insecure) && (st = setup_curve(c, o, err)))
        goto fail;
    if (zmq_connect(c->sock, c->address)) {
        st = qv_fail(err, QV_ERR_INVALID,
                     "cannot connect to '%s' (%s): the scheduler's address "
                     "looks like tcp://HOST:PORT", c->address,
                     zmq_strerror(errno));
        goto fail;
    }
    if ((st = hello(c, o, err)))
        goto fail;
    *out = c;
    return QV_OK;
fail:
    qv_client_close(&c);
    return st;
}

void qv_client_close(qv_client **pc)
{
    if (!pc || !*pc)
        return;
    qv_client *c = *pc;
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    free(c);
    *pc = NULL;
}

/* ---- blobs ---------------------------------------------------------------- */

typedef struct src {
    FILE *f;
    const unsigned char *mem;
    uint64_t size;
    uint64_t pos; /* where f is */
    const char *label;
} src;

static qv_status src_read(src *s, uint64_t off, void *buf, size_t n, qv_err *err)
{
    if (s->mem) {
        memcpy(buf, s->mem + off, n);
        return QV_OK;
    }
    if (off != s->pos && fseeko(s->f, (off_t)off, SEEK_SET) != 0)
        return qv_fail(err, QV_ERR_IO, "%s: cannot seek to byte %llu: %s", s->label,
                       (unsigned long long)off, strerror(errno));
    s->pos = off + n;
    if (fread(buf, 1, n, s->f) != n)
        return qv_fail(err, QV_ERR_IO, "%s: short read at byte %llu (did it "
                       "change during the upload?)", s->label,
                       (unsigned long long)off);
    return QV_OK;
}

static qv_status send_simple(qv_client *c, qv_wire_type t, const char *hash,
                             const char *k2, uint64_t v2, const char *k3,
                             uint64_t v3, qv_err *err)
{
    qv_wire_writer *w = NULL;
    qv_wire_out out = {0};
    qv_status st = qv_wire_writer_new(t, 1 + (k2 != NULL) + (k3 != NULL), &w,
                                      err);
    if (st)
        return st;
    qv_wire_kv_str(w, "hash", hash);
    if (k2)
        qv_wire_kv_u64(w, k2, v2);
    if (k3)
        qv_wire_kv_u64(w, k3, v3);
    st = qv_wire_finish(w, &out, err);
    qv_wire_writer_free(w);
    if (!st)
        st = qv_client_send(c, &out, err);
    qv_wire_out_free(&out);
    return st;
}

static int hash_is(const qv_wire_msg *m, const char *hash)
{
    char h[QV_WIRE_HASH_MAX + 1];
    return !qv_wire_get_str(qv_wire_msg_body(m), "hash", h, sizeof h, NULL) &&
           !strcmp(h, hash);
}

/* Uploads s as blob hash. The scheduler may say where to go on (`offset`
 * in its first credit: it holds the bytes before); when it goes silent (a
 * restart, a network cut) the client asks again with blob_put, up to
 * UPLOAD_RETRIES times, and goes on from the bytes it holds. */
#define UPLOAD_RETRIES 12

static qv_status upload(qv_client *c, src *s, const char *hash, bool *sent,
                        qv_client_progress_fn fn, void *user, qv_err *err)
{
    if (sent)
        *sent = false;
    qv_status st = send_simple(c, QV_MSG_BLOB_PUT, hash, "size", s->size, NULL,
                               0, err);
    if (st)
        return st;
    uint64_t off = 0, credit = 0;
    bool all = false, any = false, any_credit = false;
    int retries = 0;
    size_t cap = (size_t)c->welcome.chunk;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return qv_fail(err, QV_ERR_NOMEM, "%s: out of memory", s->label);
    for (;;) {
        qv_wire_msg *m = NULL;
        if ((st = qv_client_recv(c, &m, err))) {
            /* silence (the scheduler restarted, the network was cut), or a
             * chunk refused as not where the upload is (one that waited in
             * the socket while the scheduler restarted): a new connection,
             * without what was queued for the old one, and blob_put again;
             * the reply says from which byte to go on */
            int stale = !qv_client_timed_out(c) && !strcmp(c->last_code, "invalid") &&
                        !strcmp(c->last_re, "blob_chunk");
            /* busy (the blob is being uploaded on another connection, the
             * key's other uploads, the disk): a moment later it may go */
            int busy = !qv_client_timed_out(c) && !strcmp(c->last_code, "busy") &&
                       !strcmp(c->last_re, "blob_put");
            if ((!qv_client_timed_out(c) && !stale && !busy) || ++retries > UPLOAD_RETRIES)
                break;
            if (busy) {
                struct timespec ts = {1, 0};
                nanosleep(&ts, NULL);
            }
            credit = 0;
            all = false;
            any_credit = false;
            if ((st = qv_client_reconnect(c, err)) ||
                (st = send_simple(c, QV_MSG_BLOB_PUT, hash, "size", s->size, NULL, 0, err)))
                break;
            continue;
        }
        qv_wire_type t = qv_wire_msg_type(m);
        const msgpack_object *b = qv_wire_msg_body(m);
        if (t == QV_MSG_BLOB_OK && hash_is(m, hash)) {
            qv_wire_msg_free(m);
            if (sent) /* false: it held the blob, or completed it alone */
                *sent = any;
            break;
        }
        if (t != QV_MSG_BLOB_CREDIT || !hash_is(m, hash)) {
            qv_wire_msg_free(m);
            continue;
        }
        uint64_t more = 0, at = 0;
        qv_wire_get_u64(b, "credit", &more, NULL);
        if (qv_wire_get_u64(b, "offset", &at, NULL) == QV_OK && at <= s->size) {
            off = at; /* the answer to blob_put: the scheduler holds [0, at) */
            credit = 0;
            all = off == s->size;
        } else if (retries && !any_credit) {
            off = 0; /* a scheduler that does not say: it starts over */
        }
        any_credit = true;
        qv_wire_msg_free(m);
        credit = credit + more < credit ? UINT64_MAX : credit + more;
        while (!all && (credit > 0 || s->size == 0)) {
            uint64_t n = s->size - off;
            if (n > cap)
                n = cap;
            if (n > credit)
                n = credit;
            if ((st = src_read(s, off, buf, (size_t)n, err)))
                goto done;
            qv_wire_writer *w = NULL;
            qv_wire_out out = {0};
            if ((st = qv_wire_writer_new(QV_MSG_BLOB_CHUNK, 4, &w, err)))
                goto done;
            qv_wire_kv_str(w, "hash", hash);
            qv_wire_kv_u64(w, "offset", off);
            qv_wire_kv_u64(w, "size", s->size);
            qv_wire_kv_bin(w, "bytes", buf, (size_t)n);
            st = qv_wire_finish(w, &out, err);
            qv_wire_writer_free(w);
            if (!st)
                st = qv_client_send(c, &out, err);
            qv_wire_out_free(&out);
            if (st)
                goto done;
            off += n;
            credit -= n;
            any = true;
            all = off == s->size;
            if (fn)
                fn(user, off, s->size);
        }
    }
done:
    free(buf);
    if (st)
        return qv_err_prefix(err, st, "uploading %s", s->label);
    return QV_OK;
}

qv_status qv_client_upload_file(qv_client *c, const char *path,
                                char hex[QV_SHA256_HEX], bool *sent,
                                qv_client_progress_fn fn, void *user,
                                qv_err *err)
{
    uint64_t size = 0;
    qv_status st = qv_sha256_file(path, hex, &size, err);
    if (st)
        return st;
    src s = {.f = fopen(path, "rb"), .size = size, .label = path};
    if (!s.f)
        return qv_fail(err, QV_ERR_IO, "%s: %s", path, strerror(errno));
    st = upload(c, &s, hex, sent, fn, user, err);
    fclose(s.f);
    return st;
}

qv_status qv_client_upload_mem(qv_client *c, const void *data, size_t n,
                               char hex[QV_SHA256_HEX], bool *sent,
                               qv_client_progress_fn fn, void *user,
                               qv_err *err)
{
    qv_sha256_mem(data, n, hex);
    src s = {.mem = data, .size = n, .label = "a blob from memory"};
    return upload(c, &s, hex, sent, fn, user, err);
}

qv_status qv_client_download(qv_client *c, const char *hash, uint64_t size,
                             const char *path, qv_client_progress_fn fn,
                             void *user, qv_err *err)
{
    char tmp[1100];
    int n = snprintf(tmp, sizeof tmp, "%s.part.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return qv_fail(err, QV_ERR_INVALID, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return qv_fail(err, QV_ERR_IO, "%s: cannot create a file next to it: %s",
                       path, strerror(errno));
    (void)fchmod(fd, 0644); /* mkstemp makes 0600; results are plain files */
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return qv_fail(err, QV_ERR_IO, "%s: %s", tmp, strerror(errno));
    }
    sodium_once();
    crypto_hash_sha256_state hs;
    crypto_hash_sha256_init(&hs);
    uint64_t got = 0, total = size;
    qv_status st = send_simple(c, QV_MSG_BLOB_GET, hash, "offset", 0, "credit",
                               c->welcome.credit, err);
    bool complete = false;
    while (!st && !complete) {
        qv_wire_msg *m = NULL;
        if ((st = qv_client_recv(c, &m, err)))
            break;
        if (qv_wire_msg_type(m) != QV_MSG_BLOB_CHUNK || !hash_is(m, hash)) {
            qv_wire_msg_free(m);
            continue;
        }
        const msgpack_object *b = qv_wire_msg_body(m);
        uint64_t off = 0, whole = 0;
        const void *bytes = NULL;
        size_t len = 0;
        qv_wire_get_u64(b, "offset", &off, NULL);
        qv_wire_get_u64(b, "size", &whole, NULL);
        qv_wire_get_bin(b, "bytes", &bytes, &len, QV_WIRE_MAX_CHUNK, NULL);
        if (total == UINT64_MAX)
            total = whole;
        if (whole != total)
            st = qv_fail(err, QV_ERR_CORRUPT, "the scheduler sends %llu bytes; "
                         "%llu were expected", (unsigned long long)whole,
                         (unsigned long long)total);
        else if (off != got)
            st = qv_fail(err, QV_ERR_CORRUPT, "a chunk at byte %llu arrived "
                         "where byte %llu was expected",
                         (unsigned long long)off, (unsigned long long)got);
        else if (len && fwrite(bytes, 1, len, f) != len)
            st = qv_fail(err, QV_ERR_IO, "%s: write error: %s", tmp,
                         strerror(errno));
        if (!st) {
            crypto_hash_sha256_update(&hs, bytes, len);
            got += len;
            complete = got == total;
            if (fn)
                fn(user, got, total);
            if (!complete && len)
                st = send_simple(c, QV_MSG_BLOB_CREDIT, hash, "credit", len,
                                 NULL, 0, err);
        }
        qv_wire_msg_free(m);
    }
    if (fclose(f) && !st)
        st = qv_fail(err, QV_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (!st) {
        unsigned char d[crypto_hash_sha256_BYTES];
        char hex[QV_SHA256_HEX];
        crypto_hash_sha256_final(&hs, d);
        hex_of(d, hex);
        if (strcmp(hex, hash))
            st = qv_fail(err, QV_ERR_CORRUPT, "the bytes received have hash "
                         "%s, not %s", hex, hash);
        else if (rename(tmp, path))
            st = qv_fail(err, QV_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (st) {
        unlink(tmp);
        return qv_err_prefix(err, st, "downloading blob %.16s... to %s", hash,
                             path);
    }
    return QV_OK;
}
