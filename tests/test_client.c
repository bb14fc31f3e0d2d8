/* tests/test_client.c — scheduler/client against a small fake scheduler: a
 * ROUTER thread on 127.0.0.1 (an ephemeral port, --insecure mode) that
 * answers hello, blob_put, blob_chunk, blob_get, blob_credit, submit and
 * jobs as docs/protocol.md says, or stays silent, or refuses. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "formats/wire.h"
#include "scheduler/client.h"

#define FAKE_CHUNK (256u << 10)
#define FAKE_CREDIT (1u << 20)

typedef struct fake {
    void *ctx, *sock;
    char endpoint[256];
    pthread_t th;
    atomic_int stop;
    int silent_after_hello; /* answers hello only */
    int refuse_submit;      /* submit -> error invalid */
    /* upload received */
    unsigned char *up;
    uint64_t up_size, up_got;
    char up_hash[QV_WIRE_HASH_MAX + 1];
    int64_t up_granted;     /* credit granted minus bytes received */
    int credit_violation;
    int up_done, puts;
    /* held blob for download / blob_ok */
    unsigned char *held;
    uint64_t held_size;
    char held_hash[QV_SHA256_HEX];
    uint64_t dl_off;
    int64_t dl_credit, dl_max_inflight;
    char dl_hash[QV_WIRE_HASH_MAX + 1];
} fake;

static void send_out(fake *f, zmq_msg_t *id, qv_wire_out *o)
{
    zmq_send(f->sock, zmq_msg_data(id), zmq_msg_size(id), ZMQ_SNDMORE);
    for (int i = 0; i < QV_WIRE_FRAMES; i++)
        zmq_send(f->sock, o->frame[i].data, o->frame[i].size,
                 i + 1 < QV_WIRE_FRAMES ? ZMQ_SNDMORE : 0);
    qv_wire_out_free(o);
}

static qv_wire_writer *w_new(qv_wire_type t, size_t n)
{
    qv_wire_writer *w = NULL;
    if (qv_wire_writer_new(t, n, &w, NULL))
        abort(); /* out of memory in the test itself */
    return w;
}

static void w_send(fake *f, zmq_msg_t *id, qv_wire_writer *w)
{
    qv_wire_out o = {0};
    qv_err e;
    qv_status st = qv_wire_finish(w, &o, &e);
    qv_wire_writer_free(w);
    if (st) {
        fprintf(stderr, "fake: %s\n", e.msg);
        return;
    }
    send_out(f, id, &o);
}

static void send_error(fake *f, zmq_msg_t *id, const char *code,
                       const char *text, const char *re)
{
    qv_wire_out o = {0};
    if (!qv_wire_error_reply(code, text, re, &o, NULL))
        send_out(f, id, &o);
}

/* Sends download chunks while there is credit. */
static void dl_pump(fake *f, zmq_msg_t *id)
{
    while (f->dl_off < f->held_size && f->dl_credit > 0) {
        uint64_t n = f->held_size - f->dl_off;
        if (n > FAKE_CHUNK)
            n = FAKE_CHUNK;
        if ((int64_t)n > f->dl_credit)
            n = (uint64_t)f->dl_credit;
        qv_wire_writer *w = w_new(QV_MSG_BLOB_CHUNK, 4);
        qv_wire_kv_str(w, "hash", f->held_hash);
        qv_wire_kv_u64(w, "offset", f->dl_off);
        qv_wire_kv_u64(w, "size", f->held_size);
        qv_wire_kv_bin(w, "bytes", f->held + f->dl_off, (size_t)n);
        w_send(f, id, w);
        f->dl_off += n;
        f->dl_credit -= (int64_t)n;
    }
}

static void handle(fake *f, zmq_msg_t *id, qv_wire_msg *m)
{
    const msgpack_object *b = qv_wire_msg_body(m);
    qv_wire_type t = qv_wire_msg_type(m);
    char hash[QV_WIRE_HASH_MAX + 1] = "";
    qv_wire_get_str(b, "hash", hash, sizeof hash, NULL);
    if (t == QV_MSG_HELLO) {
        qv_wire_writer *w = w_new(QV_MSG_WELCOME, 6);
        qv_wire_kv_str(w, "scheduler", "fake");
        qv_wire_kv_str(w, "version", "0.1.0");
        qv_wire_kv_str(w, "hash", "sha256");
        qv_wire_kv_u64(w, "lease_ms", 10000);
        qv_wire_kv_u64(w, "chunk", FAKE_CHUNK);
        qv_wire_kv_u64(w, "credit", FAKE_CREDIT);
        w_send(f, id, w);
        return;
    }
    if (f->silent_after_hello)
        return;
    if (t == QV_MSG_BLOB_PUT) {
        uint64_t size = 0;
        qv_wire_get_u64(b, "size", &size, NULL);
        f->puts++;
        if (f->held && !strcmp(hash, f->held_hash)) {
            qv_wire_writer *w = w_new(QV_MSG_BLOB_OK, 2);
            qv_wire_kv_str(w, "hash", hash);
            qv_wire_kv_u64(w, "size", size);
            w_send(f, id, w);
            return;
        }
        free(f->up);
        f->up = malloc(size ? size : 1);
        f->up_size = size;
        f->up_got = 0;
        f->up_done = 0;
        snprintf(f->up_hash, sizeof f->up_hash, "%s", hash);
        f->up_granted = FAKE_CREDIT;
        qv_wire_writer *w = w_new(QV_MSG_BLOB_CREDIT, 2);
        qv_wire_kv_str(w, "hash", hash);
        qv_wire_kv_u64(w, "credit", FAKE_CREDIT);
        w_send(f, id, w);
        return;
    }
    if (t == QV_MSG_BLOB_CHUNK) {
        uint64_t off = 0;
        const void *bytes = NULL;
        size_t len = 0;
        qv_wire_get_u64(b, "offset", &off, NULL);
        qv_wire_get_bin(b, "bytes", &bytes, &len, QV_WIRE_MAX_CHUNK, NULL);
        if (strcmp(hash, f->up_hash) || off != f->up_got ||
            off + len > f->up_size) {
            send_error(f, id, "invalid", "blob_chunk: wrong offset", "blob_chunk");
            return;
        }
        f->up_granted -= (int64_t)len;
        if (f->up_granted < 0 || len > FAKE_CHUNK)
            f->credit_violation = 1;
        memcpy(f->up + off, bytes, len);
        f->up_got += len;
        if (f->up_got == f->up_size) {
            char h[QV_SHA256_HEX];
            qv_sha256_mem(f->up, f->up_size, h);
            if (strcmp(h, f->up_hash)) {
                send_error(f, id, "hash_mismatch", "blob: hash mismatch",
                           "blob_chunk");
                return;
            }
            f->up_done = 1;
            qv_wire_writer *w = w_new(QV_MSG_BLOB_OK, 2);
            qv_wire_kv_str(w, "hash", hash);
            qv_wire_kv_u64(w, "size", f->up_size);
            w_send(f, id, w);
        } else {
            f->up_granted += (int64_t)len;
            qv_wire_writer *w = w_new(QV_MSG_BLOB_CREDIT, 2);
            qv_wire_kv_str(w, "hash", hash);
            qv_wire_kv_u64(w, "credit", len);
            w_send(f, id, w);
        }
        return;
    }
    if (t == QV_MSG_BLOB_GET) {
        uint64_t credit = 0, off = 0;
        qv_wire_get_u64(b, "credit", &credit, NULL);
        qv_wire_get_u64(b, "offset", &off, NULL);
        if (!f->held || strcmp(hash, f->held_hash)) {
            send_error(f, id, "not_found", "blob_get: no such blob", "blob_get");
            return;
        }
        snprintf(f->dl_hash, sizeof f->dl_hash, "%s", hash);
        f->dl_off = off;
        f->dl_credit = (int64_t)credit;
        if (f->dl_credit > f->dl_max_inflight)
            f->dl_max_inflight = f->dl_credit;
        dl_pump(f, id);
        return;
    }
    if (t == QV_MSG_BLOB_CREDIT) {
        uint64_t credit = 0;
        qv_wire_get_u64(b, "credit", &credit, NULL);
        f->dl_credit += (int64_t)credit;
        if (f->dl_credit > f->dl_max_inflight)
            f->dl_max_inflight = f->dl_credit;
        dl_pump(f, id);
        return;
    }
    if (t == QV_MSG_SUBMIT) {
        if (f->refuse_submit) {
            send_error(f, id, "not_found",
                       "submit: model blob 0123abcd is not on the scheduler",
                       "submit");
            return;
        }
        qv_wire_writer *w = w_new(QV_MSG_SUBMITTED, 1);
        qv_wire_kv_u64(w, "job", 42);
        w_send(f, id, w);
        return;
    }
    if (t == QV_MSG_JOBS) {
        qv_wire_writer *w = w_new(QV_MSG_JOB_LIST, 1);
        qv_wire_kv_array(w, "jobs", 1);
        qv_wire_w_map(w, 3);
        qv_wire_kv_u64(w, "id", 42);
        qv_wire_kv_str(w, "name", "pirate");
        qv_wire_kv_str(w, "state", "queued");
        w_send(f, id, w);
        return;
    }
    send_error(f, id, "unsupported", "fake: not implemented",
               qv_wire_type_name(t));
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    while (!atomic_load(&f->stop)) {
        zmq_pollitem_t it = {f->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 20) <= 0)
            continue;
        zmq_msg_t parts[5];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t tmp;
            zmq_msg_init(&tmp);
            if (zmq_msg_recv(&tmp, f->sock, 0) < 0) {
                zmq_msg_close(&tmp);
                break;
            }
            more = zmq_msg_more(&tmp);
            if (n < 5)
                parts[n++] = tmp;
            else
                zmq_msg_close(&tmp);
        }
        if (n >= 2) {
            qv_wire_frame fr[4];
            for (int i = 1; i < n; i++) {
                fr[i - 1].data = zmq_msg_data(&parts[i]);
                fr[i - 1].size = zmq_msg_size(&parts[i]);
            }
            qv_wire_msg *m = NULL;
            qv_err e;
            qv_status st = qv_wire_decode(fr, (size_t)(n - 1), &m, &e);
            if (st)
                send_error(f, &parts[0], qv_wire_error_code(st), e.msg, NULL);
            else
                handle(f, &parts[0], m);
            qv_wire_msg_free(m);
        }
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
    }
    return NULL;
}

static void fake_start(fake *f)
{
    f->ctx = zmq_ctx_new();
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(f->sock, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_bind(f->sock, "tcp://127.0.0.1:*"), 0);
    size_t n = sizeof f->endpoint;
    zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->endpoint, &n);
    cr_assert_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
    free(f->up);
    free(f->held);
}

static qv_client *connect_to(fake *f, int timeout_ms)
{
    qv_client_opts o = {.address = f->endpoint, .insecure = true,
                        .timeout_ms = timeout_ms, .name = "test"};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    qv_status st = qv_client_connect(&o, &c, &e);
    cr_assert_eq(st, QV_OK, "%s", e.msg);
    return c;
}

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

Test(client, upload_3mb_in_chunks, .timeout = 30)
{
    fake f = {0};
    fake_start(&f);
    qv_client *c = connect_to(&f, 5000);
    cr_assert_str_eq(qv_client_welcome_info(c)->scheduler, "fake");

    size_t n = 3u << 20;
    unsigned char *data = pattern(n, 1);
    char path[] = "/tmp/qv-test-client-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, n), (ssize_t)n);
    close(fd);

    char hex[QV_SHA256_HEX], want[QV_SHA256_HEX];
    bool sent = false;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_upload_file(c, path, hex, &sent, NULL, NULL, &e),
                 QV_OK, "%s", e.msg);
    qv_sha256_mem(data, n, want);
    cr_assert_str_eq(hex, want);
    cr_assert(sent);
    cr_assert(f.up_done);
    cr_assert_eq(f.up_size, n);
    cr_assert_eq(memcmp(f.up, data, n), 0);
    cr_assert_str_eq(f.up_hash, want);
    cr_assert_not(f.credit_violation, "the client sent beyond its credit");

    /* the scheduler already holds it: nothing is sent */
    f.held = malloc(n);
    memcpy(f.held, data, n);
    f.held_size = n;
    snprintf(f.held_hash, sizeof f.held_hash, "%s", want);
    int puts_before = f.puts;
    cr_assert_eq(qv_client_upload_mem(c, data, n, hex, &sent, NULL, NULL, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_not(sent);
    cr_assert_eq(f.puts, puts_before + 1);

    /* an empty blob is one empty chunk */
    cr_assert_eq(qv_client_upload_mem(c, "", 0, hex, &sent, NULL, NULL, &e),
                 QV_OK, "%s", e.msg);
    cr_assert(sent);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    unlink(path);
    free(data);
    qv_client_close(&c);
    fake_stop(&f);
}

Test(client, download_with_credit, .timeout = 30)
{
    fake f = {0};
    size_t n = (3u << 20) + 12345;
    f.held = pattern(n, 7);
    f.held_size = n;
    qv_sha256_mem(f.held, n, f.held_hash);
    fake_start(&f);
    qv_client *c = connect_to(&f, 5000);

    char path[] = "/tmp/qv-test-dl-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_download(c, f.held_hash, n, path, NULL, NULL, &e),
                 QV_OK, "%s", e.msg);
    FILE *fp = fopen(path, "rb");
    unsigned char *got = malloc(n + 1);
    cr_assert_eq(fread(got, 1, n + 1, fp), n);
    fclose(fp);
    cr_assert_eq(memcmp(got, f.held, n), 0);
    /* the credit outstanding never went past what the client first granted */
    cr_assert_leq(f.dl_max_inflight, (int64_t)FAKE_CREDIT);

    /* an unknown blob: not_found, and the file is left as it was */
    char other[QV_SHA256_HEX];
    qv_sha256_mem("x", 1, other);
    qv_status st = qv_client_download(c, other, UINT64_MAX, path, NULL, NULL, &e);
    cr_assert_eq(st, QV_ERR_NOT_FOUND);
    cr_assert(strstr(e.msg, "no such blob"), "%s", e.msg);
    cr_assert_str_eq(qv_client_last_error_code(c), "not_found");

    /* a wrong expected hash: refused, nothing renamed into place */
    unlink(path);
    f.held[0] ^= 1; /* the bytes no longer match the name */
    st = qv_client_download(c, f.held_hash, n, path, NULL, NULL, &e);
    cr_assert_eq(st, QV_ERR_CORRUPT, "%s", e.msg);
    cr_assert_neq(access(path, F_OK), 0);

    free(got);
    qv_client_close(&c);
    fake_stop(&f);
}

Test(client, silence_times_out, .timeout = 30)
{
    fake f = {0};
    f.silent_after_hello = 1;
    fake_start(&f);
    qv_client *c = connect_to(&f, 300);

    qv_wire_writer *w = w_new(QV_MSG_JOBS, 0);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, NULL), QV_OK);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    qv_err e;
    qv_err_clear(&e);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qv_status st = qv_client_request(c, &o, QV_MSG_JOB_LIST, &m, &e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    qv_wire_out_free(&o);
    cr_assert_eq(st, QV_ERR_IO);
    cr_assert_null(m);
    cr_assert(strstr(e.msg, "no answer from the scheduler"), "%s", e.msg);
    cr_assert(strstr(e.msg, f.endpoint), "%s", e.msg);
    cr_assert(strstr(e.msg, "is it running"), "%s", e.msg);
    cr_assert(dt >= 0.25 && dt < 3.0, "%.2f s", dt);
    qv_client_close(&c);
    fake_stop(&f);
}

Test(client, nobody_there_times_out, .timeout = 30)
{
    /* a port nothing listens on: connect's hello is never answered */
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    cr_assert_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    char ep[256];
    size_t n = sizeof ep;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &n);
    zmq_close(s);
    zmq_ctx_term(ctx);

    qv_client_opts o = {.address = ep, .insecure = true, .timeout_ms = 300};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    qv_status st = qv_client_connect(&o, &c, &e);
    cr_assert_eq(st, QV_ERR_IO);
    cr_assert_null(c);
    cr_assert(strstr(e.msg, "no answer from the scheduler at tcp://127.0.0.1:"),
              "%s", e.msg);
    cr_assert(strstr(e.msg, "--scheduler"), "%s", e.msg);
}

Test(client, error_reply_reaches_caller, .timeout = 30)
{
    fake f = {0};
    f.refuse_submit = 1;
    fake_start(&f);
    qv_client *c = connect_to(&f, 5000);
    char h[QV_SHA256_HEX];
    qv_sha256_mem("m", 1, h);
    qv_wire_writer *w = w_new(QV_MSG_SUBMIT, 2);
    qv_wire_kv_str(w, "model", h);
    qv_wire_kv_str(w, "data", h);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, NULL), QV_OK);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    qv_err e;
    qv_err_clear(&e);
    qv_status st = qv_client_request(c, &o, QV_MSG_SUBMITTED, &m, &e);
    qv_wire_out_free(&o);
    cr_assert_eq(st, QV_ERR_NOT_FOUND, "%s", e.msg);
    cr_assert(strstr(e.msg, "model blob 0123abcd is not on the scheduler"),
              "%s", e.msg);
    cr_assert(strstr(e.msg, "submit"), "%s", e.msg);
    cr_assert_str_eq(qv_client_last_error_code(c), "not_found");

    /* the connection is still usable */
    w = w_new(QV_MSG_JOBS, 0);
    cr_assert_eq(qv_wire_finish(w, &o, NULL), QV_OK);
    qv_wire_writer_free(w);
    cr_assert_eq(qv_client_request(c, &o, QV_MSG_JOB_LIST, &m, &e), QV_OK,
                 "%s", e.msg);
    qv_wire_out_free(&o);
    const msgpack_object *items = NULL;
    size_t n = 0;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "jobs", &items, &n,
                                   QV_WIRE_MAX_ARRAY, NULL), QV_OK);
    cr_assert_eq(n, 1);
    qv_wire_msg_free(m);
    qv_client_close(&c);
    fake_stop(&f);
}

Test(client, address_from_env)
{
    qv_client_opts o = {0};
    unsetenv("QVAC_SCHEDULER");
    cr_assert_str_eq(qv_client_address_for(&o), QV_CLIENT_DEFAULT_ADDR);
    setenv("QVAC_SCHEDULER", "tcp://10.0.0.1:7000", 1);
    cr_assert_str_eq(qv_client_address_for(&o), "tcp://10.0.0.1:7000");
    o.address = "tcp://127.0.0.1:6000";
    cr_assert_str_eq(qv_client_address_for(&o), "tcp://127.0.0.1:6000");
    unsetenv("QVAC_SCHEDULER");
}

/* ---- end to end against the real scheduler (scheduler/server.h) --------- */

#include "scheduler/keys.h"
#include "scheduler/server.h"

typedef struct real {
    qv_server *srv;
    pthread_t th;
    char dir[64];
    char client_key[128];
} real;

static void *real_main(void *arg)
{
    real *r = arg;
    qv_server_run(r->srv, NULL);
    return NULL;
}

static void real_start(real *r, int insecure)
{
    snprintf(r->dir, sizeof r->dir, "/tmp/qv-test-sched-XXXXXX");
    cr_assert_not_null(mkdtemp(r->dir));
    snprintf(r->client_key, sizeof r->client_key, "%s/client.key", r->dir);
    qv_keypair kp;
    cr_assert_eq(qv_keys_load_or_create(r->client_key, &kp, NULL), QV_OK);
    char data[128];
    snprintf(data, sizeof data, "%s/data", r->dir);
    qv_server_opts o = {.bind = "tcp://127.0.0.1:*", .data_dir = data,
                        .client_key = r->client_key, .name = "test-sched",
                        .insecure = insecure, .tick_ms = 20};
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_server_open(&o, &r->srv, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(pthread_create(&r->th, NULL, real_main, r), 0);
}

static void real_stop(real *r)
{
    qv_server_stop(r->srv);
    pthread_join(r->th, NULL);
    qv_server_close(&r->srv);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    cr_assert_eq(system(cmd), 0);
}

static qv_wire_msg *ask_ok(qv_client *c, qv_wire_writer *w, qv_wire_type want)
{
    qv_wire_out o = {0};
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    qv_status st = qv_client_request(c, &o, want, &m, &e);
    qv_wire_out_free(&o);
    cr_assert_eq(st, QV_OK, "%s", e.msg);
    return m;
}

static void job_state(qv_client *c, uint64_t id, char *state, size_t n)
{
    qv_wire_writer *w = w_new(QV_MSG_JOBS, 2);
    qv_wire_kv_u64(w, "job", id);
    qv_wire_kv_bool(w, "all", true);
    qv_wire_msg *m = ask_ok(c, w, QV_MSG_JOB_LIST);
    const msgpack_object *items = NULL;
    size_t k = 0;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "jobs", &items, &k,
                                   QV_WIRE_MAX_ARRAY, NULL), QV_OK);
    cr_assert_eq(k, 1);
    uint64_t got = 0;
    qv_wire_get_u64(&items[0], "id", &got, NULL);
    cr_assert_eq(got, id);
    cr_assert_eq(qv_wire_get_str(&items[0], "state", state, n, NULL), QV_OK);
    qv_wire_msg_free(m);
}

static void submit_jobs_cancel(qv_client *c)
{
    size_t n = (2u << 20) + 77;
    unsigned char *model = pattern(n, 3);
    const char *data = "{\"text\": \"arr\"}\n";
    char mh[QV_SHA256_HEX], dh[QV_SHA256_HEX];
    bool sent = false;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_upload_mem(c, model, n, mh, &sent, NULL, NULL, &e),
                 QV_OK, "%s", e.msg);
    cr_assert(sent);
    cr_assert_eq(qv_client_upload_mem(c, model, n, mh, &sent, NULL, NULL, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_not(sent, "a blob the scheduler holds is not sent again");
    cr_assert_eq(qv_client_upload_mem(c, data, strlen(data), dh, &sent, NULL,
                                      NULL, &e), QV_OK, "%s", e.msg);

    /* the model comes back byte for byte */
    char path[] = "/tmp/qv-test-e2e-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(qv_client_download(c, mh, n, path, NULL, NULL, &e), QV_OK,
                 "%s", e.msg);
    char back[QV_SHA256_HEX];
    uint64_t size = 0;
    cr_assert_eq(qv_sha256_file(path, back, &size, NULL), QV_OK);
    cr_assert_str_eq(back, mh);
    cr_assert_eq(size, n);
    unlink(path);

    qv_wire_writer *w = w_new(QV_MSG_SUBMIT, 5);
    qv_wire_kv_str(w, "name", "e2e");
    qv_wire_kv_i64(w, "priority", 3);
    qv_wire_kv_str(w, "model", mh);
    qv_wire_kv_str(w, "data", dh);
    qv_wire_kv_map(w, "options", 1);
    qv_wire_w_key(w, "steps");
    qv_wire_w_i64(w, 5);
    qv_wire_msg *m = ask_ok(c, w, QV_MSG_SUBMITTED);
    uint64_t id = 0;
    cr_assert_eq(qv_wire_get_u64(qv_wire_msg_body(m), "job", &id, NULL), QV_OK);
    qv_wire_msg_free(m);
    cr_assert_geq(id, 1);

    char state[32];
    job_state(c, id, state, sizeof state);
    cr_assert_str_eq(state, "queued");

    /* fetch before it succeeded: refused with a reason */
    w = w_new(QV_MSG_FETCH, 1);
    qv_wire_kv_u64(w, "job", id);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, NULL), QV_OK);
    qv_wire_writer_free(w);
    cr_assert_neq(qv_client_request(c, &o, QV_MSG_RESULT, &m, &e), QV_OK);
    qv_wire_out_free(&o);
    cr_assert(e.msg[0]);

    w = w_new(QV_MSG_CANCEL, 1);
    qv_wire_kv_u64(w, "job", id);
    m = ask_ok(c, w, QV_MSG_CANCELLED);
    cr_assert_eq(qv_wire_get_str(qv_wire_msg_body(m), "state", state,
                                 sizeof state, NULL), QV_OK);
    cr_assert_str_eq(state, "cancelled");
    qv_wire_msg_free(m);
    job_state(c, id, state, sizeof state);
    cr_assert_str_eq(state, "cancelled");

    /* a submission naming a blob the scheduler lacks */
    char none[QV_SHA256_HEX];
    qv_sha256_mem("none", 4, none);
    w = w_new(QV_MSG_SUBMIT, 2);
    qv_wire_kv_str(w, "model", none);
    qv_wire_kv_str(w, "data", dh);
    cr_assert_eq(qv_wire_finish(w, &o, NULL), QV_OK);
    qv_wire_writer_free(w);
    cr_assert_neq(qv_client_request(c, &o, QV_MSG_SUBMITTED, &m, &e), QV_OK);
    qv_wire_out_free(&o);
    cr_assert(e.msg[0]);
    free(model);
}

Test(client_e2e, insecure_submit_jobs_cancel, .timeout = 60)
{
    real r = {0};
    real_start(&r, 1);
    qv_client_opts o = {.address = qv_server_endpoint(r.srv), .insecure = true,
                        .timeout_ms = 10000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&o, &c, &e), QV_OK, "%s", e.msg);
    cr_assert_str_eq(qv_client_welcome_info(c)->scheduler, "test-sched");
    submit_jobs_cancel(c);
    qv_client_close(&c);
    real_stop(&r);
}

Test(client_e2e, curve_submit_jobs_cancel, .timeout = 60)
{
    real r = {0};
    real_start(&r, 0);
    qv_client_opts o = {.address = qv_server_endpoint(r.srv),
                        .server_key = qv_server_public_key(r.srv),
                        .client_key = r.client_key, .timeout_ms = 10000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&o, &c, &e), QV_OK, "%s", e.msg);
    submit_jobs_cancel(c);
    qv_client_close(&c);

    /* another key, not admitted: refused, and the refusal says so */
    char other[128];
    snprintf(other, sizeof other, "%s/other.key", r.dir);
    o.client_key = other;
    o.timeout_ms = 3000;
    qv_status st = qv_client_connect(&o, &c, &e);
    if (st == QV_OK) {
        qv_wire_writer *w = w_new(QV_MSG_JOBS, 0);
        qv_wire_out out = {0};
        cr_assert_eq(qv_wire_finish(w, &out, NULL), QV_OK);
        qv_wire_writer_free(w);
        qv_wire_msg *m = NULL;
        st = qv_client_request(c, &out, QV_MSG_JOB_LIST, &m, &e);
        qv_wire_out_free(&out);
        qv_client_close(&c);
    }
    cr_assert_neq(st, QV_OK);
    cr_assert(strstr(e.msg, "denied") || strstr(e.msg, "no answer"), "%s",
              e.msg);
    real_stop(&r);
}
