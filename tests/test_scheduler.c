/* tests/test_scheduler.c — the scheduler daemon through its socket, on
 * loopback: malformed frames get error replies and change nothing, a blob
 * whose bytes do not match its hash is refused, enrollment tokens are
 * single-use and expire, and kill -9 during a stream of submissions loses
 * no acknowledged job and duplicates none. (Submit, jobs, cancel, blob
 * upload/download and CURVE admission are in tests/test_client.c.) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "formats/wire.h"
#include "scheduler/client.h"
#include "scheduler/keys.h"
#include "scheduler/server.h"
#include "scheduler/store.h"

typedef struct sched {
    char dir[64];
    char client_key[160];
    qv_server *srv;
    pthread_t th;
} sched;

static void *sched_main(void *p)
{
    sched *s = p;
    qv_err e;
    qv_server_run(s->srv, &e);
    return NULL;
}

static void sched_start(sched *s, int insecure, const char *dir)
{
    if (dir) {
        snprintf(s->dir, sizeof s->dir, "%s", dir);
    } else {
        snprintf(s->dir, sizeof s->dir, "/tmp/qv-sched-XXXXXX");
        cr_assert_not_null(mkdtemp(s->dir));
    }
    snprintf(s->client_key, sizeof s->client_key, "%s/client.key", s->dir);
    qv_server_opts o = {.bind = "tcp://127.0.0.1:*", .data_dir = s->dir,
                        .client_key = s->client_key, .name = "t",
                        .insecure = insecure, .tick_ms = 20};
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_server_open(&o, &s->srv, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(pthread_create(&s->th, NULL, sched_main, s), 0);
}

static void sched_stop(sched *s, int remove)
{
    qv_server_stop(s->srv);
    pthread_join(s->th, NULL);
    qv_server_close(&s->srv);
    if (remove) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        cr_expect_eq(system(cmd), 0);
    }
}

/* ---- raw frames ------------------------------------------------------------ */

static void send_frames(void *sock, const void *const *data, const size_t *len,
                        int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_geq(zmq_send(sock, data[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0),
                      0);
}

/* Receives one message; returns its type (QV_MSG_COUNT if undecodable). */
static qv_wire_type recv_type(void *sock, char *code, size_t code_n)
{
    zmq_msg_t part[4];
    int n = 0, more = 1;
    while (more && n < 4) {
        zmq_msg_init(&part[n]);
        cr_assert_geq(zmq_msg_recv(&part[n], sock, 0), 0, "no reply (timeout)");
        more = zmq_msg_more(&part[n]);
        n++;
    }
    cr_assert_eq(n, QV_WIRE_FRAMES);
    qv_wire_frame f[QV_WIRE_FRAMES];
    for (int i = 0; i < n; i++) {
        f[i].data = zmq_msg_data(&part[i]);
        f[i].size = zmq_msg_size(&part[i]);
    }
    qv_wire_msg *m = NULL;
    qv_wire_type t = QV_MSG_COUNT;
    if (qv_wire_decode(f, QV_WIRE_FRAMES, &m, NULL) == QV_OK) {
        t = qv_wire_msg_type(m);
        if (code && t == QV_MSG_ERROR)
            qv_wire_get_str(qv_wire_msg_body(m), "code", code, code_n, NULL);
    }
    qv_wire_msg_free(m);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
    return t;
}

static void send_out(void *sock, qv_wire_out *o)
{
    const void *d[3] = {o->frame[0].data, o->frame[1].data, o->frame[2].data};
    size_t l[3] = {o->frame[0].size, o->frame[1].size, o->frame[2].size};
    send_frames(sock, d, l, 3);
}

static void send_hello(void *sock)
{
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_HELLO, 3, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "role", "client");
    qv_wire_kv_str(w, "name", "raw");
    qv_wire_kv_str(w, "version", "0.1.0");
    qv_wire_out o = {0};
    qv_err e;
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    send_out(sock, &o);
    qv_wire_out_free(&o);
}

Test(scheduler, malformed_frames_get_errors_and_change_nothing, .timeout = 60)
{
    sched s = {0};
    sched_start(&s, 1, NULL);
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int tmo = 5000, linger = 0;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(sock, qv_server_endpoint(s.srv)), 0);

    send_hello(sock);
    cr_assert_eq(recv_type(sock, NULL, 0), QV_MSG_WELCOME);

    static const uint8_t id1[] = {'Q', 'V', 'A', 'C', 1}, id9[] = {'Q', 'V', 'A', 'C', 9};
    static const uint8_t empty_map[] = {0x80}, garbage[] = {0xc1, 0xff, 0x00};
    struct {
        const void *d[4];
        size_t l[4];
        int n;
        const char *why;
    } bad[] = {
        {{id9, "jobs", empty_map}, {5, 4, 1}, 3, "another protocol version"},
        {{"HTTP/", "jobs", empty_map}, {5, 4, 1}, 3, "another protocol"},
        {{id1, "launch_missiles", empty_map}, {5, 15, 1}, 3, "unknown type"},
        {{id1, "submit", garbage}, {5, 6, 3}, 3, "garbage body"},
        {{id1, "submit", empty_map}, {5, 6, 1}, 3, "missing fields"},
        {{id1, "jobs"}, {5, 4}, 2, "two frames"},
        {{id1, "", empty_map, empty_map}, {5, 0, 1, 1}, 4, "four frames"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        send_frames(sock, bad[i].d, bad[i].l, bad[i].n);
        char code[32] = "";
        cr_expect_eq(recv_type(sock, code, sizeof code), QV_MSG_ERROR,
                     "%s: no error reply", bad[i].why);
        cr_expect(code[0], "%s: the error has no code", bad[i].why);
    }
    /* still serving, and nothing was queued */
    send_hello(sock);
    cr_expect_eq(recv_type(sock, NULL, 0), QV_MSG_WELCOME);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    sched_stop(&s, 0);

    qv_store *st = NULL;
    qv_err e;
    cr_assert_eq(qv_store_open(s.dir, NULL, &st, &e), QV_OK, "%s", e.msg);
    qv_job *jobs = NULL;
    size_t n = 99;
    cr_assert_eq(qv_store_list_jobs(st, 1, &jobs, &n, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(n, 0, "malformed messages changed the queue");
    qv_jobs_free(&jobs, n);
    qv_store_close(&st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s.dir);
    cr_expect_eq(system(cmd), 0);
}

/* ---- blobs ------------------------------------------------------------------ */

Test(scheduler, blob_with_a_lying_hash_is_refused, .timeout = 60)
{
    sched s = {0};
    sched_start(&s, 1, NULL);
    qv_client_opts co = {.address = qv_server_endpoint(s.srv), .insecure = true,
                         .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    /* announce the hash of "aaaa" and send "bbbb" */
    char h[QV_SHA256_HEX];
    qv_sha256_mem("aaaa", 4, h);
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_BLOB_PUT, 2, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "hash", h);
    qv_wire_kv_u64(w, "size", 4);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    cr_assert_eq(qv_client_request(c, &o, QV_MSG_BLOB_CREDIT, &m, &e), QV_OK,
                 "%s", e.msg);
    qv_wire_out_free(&o);
    qv_wire_msg_free(m);
    cr_assert_eq(qv_wire_writer_new(QV_MSG_BLOB_CHUNK, 4, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "hash", h);
    qv_wire_kv_u64(w, "offset", 0);
    qv_wire_kv_u64(w, "size", 4);
    qv_wire_kv_bin(w, "bytes", "bbbb", 4);
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    qv_status st = qv_client_request(c, &o, QV_MSG_BLOB_OK, &m, &e);
    qv_wire_out_free(&o);
    cr_expect_neq(st, QV_OK, "a blob that does not hash to its name was stored");
    cr_expect_str_eq(qv_client_last_error_code(c), "hash_mismatch", "%s", e.msg);
    qv_client_close(&c);
    sched_stop(&s, 0);
    qv_store *store = NULL;
    cr_assert_eq(qv_store_open(s.dir, NULL, &store, &e), QV_OK);
    int has = 1;
    uint64_t size = 0;
    cr_assert_eq(qv_store_blob_has(store, h, &has, &size, &e), QV_OK);
    cr_expect_eq(has, 0);
    qv_store_close(&store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s.dir);
    cr_expect_eq(system(cmd), 0);
}

/* ---- enrollment tokens ---------------------------------------------------------- */

static qv_status enroll(sched *s, const char *token, qv_err *e)
{
    static int seq;
    char key[200];
    snprintf(key, sizeof key, "%s/w-%d-%d.key", s->dir, (int)getpid(), ++seq);
    qv_keypair kp;
    cr_assert_eq(qv_keys_load_or_create(key, &kp, e), QV_OK, "%s", e->msg);
    qv_client_opts co = {.address = qv_server_endpoint(s->srv),
                         .server_key = qv_server_public_key(s->srv),
                         .client_key = key, .timeout_ms = 5000, .name = "w"};
    qv_client *c = NULL;
    qv_status st = qv_client_connect(&co, &c, e);
    if (st)
        return st;
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_ENROLL, 4, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "token", token);
    qv_wire_kv_str(w, "key", kp.pub);
    qv_wire_kv_str(w, "name", "test-worker");
    qv_wire_kv_array(w, "devices", 1);
    qv_wire_w_map(w, 4);
    qv_wire_kv_str(w, "id", "ref");
    qv_wire_kv_str(w, "backend", "ref");
    qv_wire_kv_str(w, "name", "reference");
    qv_wire_kv_u64(w, "memory", 1u << 30);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, e), QV_OK, "%s", e->msg);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    st = qv_client_request(c, &o, QV_MSG_ENROLLED, &m, e);
    qv_wire_out_free(&o);
    qv_wire_msg_free(m);
    qv_client_close(&c);
    return st;
}

Test(scheduler, tokens_are_single_use_and_expire, .timeout = 60)
{
    if (!qv_curve_available())
        cr_skip_test("libzmq was built without CURVE");
    sched s = {0};
    sched_start(&s, 0, NULL);
    qv_store *st = NULL;
    qv_err e;
    cr_assert_eq(qv_store_open(s.dir, NULL, &st, &e), QV_OK, "%s", e.msg);
    char good[QV_TOKEN_HEX], old[QV_TOKEN_HEX];
    int64_t now = qv_store_now_ms();
    cr_assert_eq(qv_store_token_new(st, now, 60000, good, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_store_token_new(st, now - 120000, 60000, old, &e), QV_OK);
    qv_store_close(&st);

    cr_expect_eq(enroll(&s, good, &e), QV_OK, "a fresh token: %s", e.msg);
    cr_expect_neq(enroll(&s, good, &e), QV_OK, "a used token was accepted");
    cr_expect_neq(enroll(&s, old, &e), QV_OK, "an expired token was accepted");
    cr_expect_neq(enroll(&s, "0123456789abcdef0123456789abcdef", &e), QV_OK,
                  "an unknown token was accepted");
    sched_stop(&s, 1);
}

/* ---- kill -9 ------------------------------------------------------------------- */

/* An insecure scheduler on dir in a child process (for kill -9, or limits
 * of its own: fsize > 0 caps its files, as a full disk would); its
 * endpoint in ep. */
static pid_t sched_child(const char *dir, rlim_t fsize, char ep[128])
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        if (fsize) {
            signal(SIGXFSZ, SIG_IGN); /* a write past it fails instead */
            struct rlimit rl = {fsize, fsize};
            if (setrlimit(RLIMIT_FSIZE, &rl))
                _exit(5);
        }
        qv_server_opts o = {.bind = "tcp://127.0.0.1:*", .data_dir = dir,
                            .client_key = "", .insecure = 1, .tick_ms = 20};
        qv_server *srv = NULL;
        qv_err e;
        if (qv_server_open(&o, &srv, &e))
            _exit(3);
        char buf[128];
        snprintf(buf, sizeof buf, "%s", qv_server_endpoint(srv));
        if (write(pfd[1], buf, sizeof buf) != (ssize_t)sizeof buf)
            _exit(4);
        qv_server_run(srv, &e);
        _exit(0);
    }
    close(pfd[1]);
    cr_assert_eq(read(pfd[0], ep, 128), 128);
    close(pfd[0]);
    return pid;
}

Test(scheduler, kill_9_loses_no_acknowledged_job, .timeout = 120)
{
    char dir[] = "/tmp/qv-sched-k9-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ep[128];
    pid_t pid = sched_child(dir, 0, ep);

    qv_client_opts co = {.address = ep, .insecure = true, .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    const char *data = "{\"text\": \"arr\"}\n";
    char dh[QV_SHA256_HEX];
    bool sent = false;
    cr_assert_eq(qv_client_upload_mem(c, data, strlen(data), dh, &sent, NULL,
                                      NULL, &e), QV_OK, "%s", e.msg);
    /* submit until killed: the kill lands while submissions are in flight */
    uint64_t acked[4096];
    size_t n_acked = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        qv_wire_writer *w = NULL;
        cr_assert_eq(qv_wire_writer_new(QV_MSG_SUBMIT, 3, &w, NULL), QV_OK);
        char name[32];
        snprintf(name, sizeof name, "k9-%zu", n_acked);
        qv_wire_kv_str(w, "name", name);
        qv_wire_kv_str(w, "model", dh);
        qv_wire_kv_str(w, "data", dh);
        qv_wire_out o = {0};
        cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
        qv_wire_writer_free(w);
        qv_wire_msg *m = NULL;
        clock_gettime(CLOCK_MONOTONIC, &t);
        double el = (double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec);
        if (n_acked >= 20 && el > 0.3)
            kill(pid, SIGKILL); /* the next request is in flight or lost */
        qv_status st = qv_client_request(c, &o, QV_MSG_SUBMITTED, &m, &e);
        qv_wire_out_free(&o);
        if (st)
            break; /* no answer: the scheduler is gone */
        uint64_t id = 0;
        cr_assert_eq(qv_wire_get_u64(qv_wire_msg_body(m), "job", &id, NULL), QV_OK);
        qv_wire_msg_free(m);
        cr_assert_lt(n_acked, sizeof acked / sizeof acked[0]);
        acked[n_acked++] = id;
        cr_assert_lt(el, 60.0, "the scheduler did not die");
    }
    qv_client_close(&c);
    int status = 0;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    cr_assert_geq(n_acked, 20);

    /* restart on the same data: every acknowledged job, each once */
    sched s = {0};
    sched_start(&s, 1, dir);
    sched_stop(&s, 0);
    qv_store *st = NULL;
    cr_assert_eq(qv_store_open(dir, NULL, &st, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(qv_store_check(st, &e), QV_OK, "%s", e.msg);
    qv_job *jobs = NULL;
    size_t n = 0;
    cr_assert_eq(qv_store_list_jobs(st, 1, &jobs, &n, &e), QV_OK, "%s", e.msg);
    for (size_t i = 0; i < n_acked; i++) {
        int seen = 0;
        for (size_t j = 0; j < n; j++)
            seen += (uint64_t)jobs[j].id == acked[i];
        cr_expect_eq(seen, 1, "acknowledged job %llu is there %d times",
                     (unsigned long long)acked[i], seen);
    }
    cr_expect_leq(n, n_acked + 1, "more jobs than submissions");
    printf("kill -9: %zu submissions acknowledged, %zu jobs after restart\n",
           n_acked, n);
    qv_jobs_free(&jobs, n);
    qv_store_close(&st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* ---- matching -------------------------------------------------------------------- */

/* A raw worker: DEALER, hello + enroll (insecure: no token needed) with one
 * ref device whose tuned ternary_matmul figure is gflops. */
static void *fake_worker_ex(void *ctx, const char *ep, const char *name,
                            double gflops, uint64_t tune_done, uint64_t tune_total,
                            int ndev);

/* A fake worker's key: one of its own per name, as each real worker has
 * (Z85: a group of 5 that starts with '0' always decodes). */
static const char *fake_key(const char *name, char key[41])
{
    memset(key, '0', 40);
    key[40] = '\0';
    size_t nl = strlen(name);
    for (int i = 0; i < 8 && nl; i++) {
        unsigned ch = (unsigned char)name[(size_t)i % nl] + (unsigned)i;
        key[5 * i + 4] = "0123456789abcdefghijklmnopqrstuvwxyz"[ch % 36];
    }
    return key;
}

static void *fake_worker(void *ctx, const char *ep, const char *name,
                         double gflops)
{
    return fake_worker_ex(ctx, ep, name, gflops, 0, 0, 1);
}

/* tune_total > 0: the enroll says the worker is still tuning. Its ndev
 * devices are ref, ref2, ... */
static void *fake_worker_ex(void *ctx, const char *ep, const char *name,
                            double gflops, uint64_t tune_done, uint64_t tune_total,
                            int ndev)
{
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int tmo = 5000, linger = 0;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(sock, ep), 0);
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_HELLO, 3, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "role", "worker");
    qv_wire_kv_str(w, "name", name);
    qv_wire_kv_str(w, "version", "0.1.0");
    qv_wire_out o = {0};
    qv_err e;
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    send_out(sock, &o);
    qv_wire_out_free(&o);
    cr_assert_eq(recv_type(sock, NULL, 0), QV_MSG_WELCOME);
    cr_assert_eq(qv_wire_writer_new(QV_MSG_ENROLL, tune_total ? 4 : 3, &w, NULL), QV_OK);
    if (tune_total) {
        qv_wire_kv_map(w, "tuning", 2);
        qv_wire_kv_u64(w, "done", tune_done);
        qv_wire_kv_u64(w, "total", tune_total);
    }
    char key[41];
    qv_wire_kv_str(w, "key", fake_key(name, key));
    qv_wire_kv_str(w, "name", name);
    qv_wire_kv_array(w, "devices", (size_t)ndev);
    for (int d = 0; d < ndev; d++) {
        char id[16];
        snprintf(id, sizeof id, d ? "ref%d" : "ref", d + 1);
        qv_wire_w_map(w, 5);
        qv_wire_kv_str(w, "id", id);
        qv_wire_kv_str(w, "backend", "ref");
        qv_wire_kv_str(w, "name", "reference");
        qv_wire_kv_u64(w, "memory", 1u << 30);
        qv_wire_kv_map(w, "tuned", 1);
        qv_wire_w_key(w, "ternary_matmul");
        qv_wire_w_f64(w, gflops);
    }
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    send_out(sock, &o);
    qv_wire_out_free(&o);
    char code[32] = "";
    cr_assert_eq(recv_type(sock, code, sizeof code), QV_MSG_ENROLLED,
                 "enroll of %s: %s", name, code);
    return sock;
}

/* Whether sock receives an assign within ms (messages of other types are
 * skipped). */
static int got_assign(void *sock, int ms)
{
    int tmo = ms;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    for (int i = 0; i < 20; i++) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, ms) <= 0)
            return 0;
        if (recv_type(sock, NULL, 0) == QV_MSG_ASSIGN)
            return 1;
    }
    return 0;
}

Test(scheduler, a_job_goes_to_the_fastest_idle_device, .timeout = 60)
{
    sched s = {0};
    sched_start(&s, 1, NULL);
    void *ctx = zmq_ctx_new();
    const char *ep = qv_server_endpoint(s.srv);
    /* the slow one enrolls first: order alone would pick it */
    void *slow = fake_worker(ctx, ep, "slow", 5.0);
    void *fast = fake_worker(ctx, ep, "fast", 50.0);
    qv_client_opts co = {.address = ep, .insecure = true, .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    const char *data = "{\"text\": \"arr\"}\n";
    char dh[QV_SHA256_HEX];
    bool sent = false;
    cr_assert_eq(qv_client_upload_mem(c, data, strlen(data), dh, &sent, NULL,
                                      NULL, &e), QV_OK, "%s", e.msg);
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_SUBMIT, 2, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "model", dh);
    qv_wire_kv_str(w, "data", dh);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    cr_assert_eq(qv_client_request(c, &o, QV_MSG_SUBMITTED, &m, &e), QV_OK,
                 "%s", e.msg);
    qv_wire_out_free(&o);
    qv_wire_msg_free(m);
    cr_expect(got_assign(fast, 3000), "the fast device got no assign");
    cr_expect_not(got_assign(slow, 300), "the slow device got the job");
    qv_client_close(&c);
    zmq_close(slow);
    zmq_close(fast);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

static void submit_one(qv_client *c)
{
    qv_err e;
    qv_err_clear(&e);
    const char *data = "{\"text\": \"arr\"}\n";
    char dh[QV_SHA256_HEX];
    bool sent = false;
    cr_assert_eq(qv_client_upload_mem(c, data, strlen(data), dh, &sent, NULL, NULL, &e),
                 QV_OK, "%s", e.msg);
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_SUBMIT, 2, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "model", dh);
    qv_wire_kv_str(w, "data", dh);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    cr_assert_eq(qv_client_request(c, &o, QV_MSG_SUBMITTED, &m, &e), QV_OK, "%s", e.msg);
    qv_wire_out_free(&o);
    qv_wire_msg_free(m);
}

static void send_body(void *sock, qv_wire_type t, qv_wire_writer *w)
{
    (void)t;
    qv_wire_out o = {0};
    qv_err e;
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    send_out(sock, &o);
    qv_wire_out_free(&o);
}

/* Enroll first, tune after: a worker that enrolls while tuning is listed as
 * tuning with its progress and gets no job until a heartbeat without
 * `tuning` says it is done. */
Test(scheduler, a_tuning_worker_is_listed_and_gets_no_job, .timeout = 60)
{
    sched s = {0};
    sched_start(&s, 1, NULL);
    void *ctx = zmq_ctx_new();
    const char *ep = qv_server_endpoint(s.srv);
    void *wk = fake_worker_ex(ctx, ep, "tuner", 50.0, 3, 48, 1);
    qv_client_opts co = {.address = ep, .insecure = true, .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    submit_one(c);
    cr_expect_not(got_assign(wk, 1000), "a tuning worker got a job");
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_WORKERS, 0, &w, NULL), QV_OK);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    cr_assert_eq(qv_client_request(c, &o, QV_MSG_WORKER_LIST, &m, &e), QV_OK, "%s", e.msg);
    qv_wire_out_free(&o);
    const msgpack_object *items = NULL, *tn = NULL;
    size_t n = 0;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "workers", &items, &n, 1024, NULL),
                 QV_OK);
    cr_assert_eq(n, 1);
    char state[16] = "";
    qv_wire_get_str(&items[0], "state", state, sizeof state, NULL);
    cr_expect_str_eq(state, "tuning");
    cr_assert_eq(qv_wire_get_map(&items[0], "tuning", &tn, NULL), QV_OK);
    uint64_t done = 0, total = 0;
    qv_wire_get_u64(tn, "done", &done, NULL);
    qv_wire_get_u64(tn, "total", &total, NULL);
    cr_expect_eq(done, 3);
    cr_expect_eq(total, 48);
    qv_wire_msg_free(m);
    /* progress, still tuning: still no job */
    cr_assert_eq(qv_wire_writer_new(QV_MSG_HEARTBEAT, 1, &w, NULL), QV_OK);
    qv_wire_kv_map(w, "tuning", 2);
    qv_wire_kv_u64(w, "done", 40);
    qv_wire_kv_u64(w, "total", 48);
    send_body(wk, QV_MSG_HEARTBEAT, w);
    cr_expect_not(got_assign(wk, 500), "a tuning worker got a job");
    /* done: the next heartbeat has no `tuning`, and the job comes */
    cr_assert_eq(qv_wire_writer_new(QV_MSG_HEARTBEAT, 0, &w, NULL), QV_OK);
    send_body(wk, QV_MSG_HEARTBEAT, w);
    cr_expect(got_assign(wk, 3000), "the tuned worker got no job");
    qv_client_close(&c);
    zmq_close(wk);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

static const char *BENCH_OK_JSON =
    "{\"device\":\"ref\",\"backend\":\"ref\",\"vendor\":\"qvac\",\"name\":\"reference\","
    "\"driver\":\"1\",\"fingerprint\":\"0123456789abcdef\",\"model\":\"builtin\","
    "\"qvac_version\":\"0.1.0\",\"batch\":4,\"seq\":128,\"steps\":6,"
    "\"ternary\":{\"tokens_per_s\":75.5,\"peak_bytes\":3518352},"
    "\"f16\":{\"tokens_per_s\":16.5,\"peak_bytes\":6598544}}";

/* A bench result (train/bench.h) from a worker: stored when valid and of
 * one of its devices, refused otherwise; `benches` lists it. */
Test(scheduler, bench_results_are_validated_stored_and_listed, .timeout = 60)
{
    sched s = {0};
    sched_start(&s, 1, NULL);
    void *ctx = zmq_ctx_new();
    const char *ep = qv_server_endpoint(s.srv);
    void *wk = fake_worker(ctx, ep, "bencher", 5.0);
    static const struct {
        const char *from, *to, *code;
    } bad[] = {
        {"\"device\":\"ref\"", "\"device\":\"opencl:9\"", "not_found"},
        {"\"name\":\"reference\"", "\"name\":\"ref\\u001b[2J\\nFORGED\"", "malformed"},
        {"\"batch\":4", "\"batch\":-4", "malformed"},
        {"6598544}}", "6598544}", "malformed"}, /* not JSON */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char txt[2048];
        const char *at = strstr(BENCH_OK_JSON, bad[i].from);
        cr_assert_not_null(at, "%s", bad[i].from);
        snprintf(txt, sizeof txt, "%.*s%s%s", (int)(at - BENCH_OK_JSON), BENCH_OK_JSON,
                 bad[i].to, at + strlen(bad[i].from));
        qv_wire_writer *w = NULL;
        cr_assert_eq(qv_wire_writer_new(QV_MSG_BENCH, 1, &w, NULL), QV_OK);
        qv_wire_kv_str(w, "result", txt);
        send_body(wk, QV_MSG_BENCH, w);
        char code[32] = "";
        qv_wire_type t;
        while ((t = recv_type(wk, code, sizeof code)) == QV_MSG_HEARTBEAT)
            ;
        cr_expect_eq(t, QV_MSG_ERROR, "%s accepted", txt);
        cr_expect_str_eq(code, bad[i].code, "%s", txt);
    }
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_BENCH, 1, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "result", BENCH_OK_JSON);
    send_body(wk, QV_MSG_BENCH, w);
    qv_wire_type t;
    while ((t = recv_type(wk, NULL, 0)) == QV_MSG_HEARTBEAT)
        ;
    cr_assert_eq(t, QV_MSG_BENCH_OK);
    /* a client lists it; the worker may not ask */
    qv_client_opts co = {.address = ep, .insecure = true, .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_wire_writer_new(QV_MSG_BENCHES, 0, &w, NULL), QV_OK);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    cr_assert_eq(qv_client_request(c, &o, QV_MSG_BENCH_LIST, &m, &e), QV_OK, "%s", e.msg);
    qv_wire_out_free(&o);
    const msgpack_object *items = NULL;
    size_t n = 0;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "benches", &items, &n, 1024, NULL),
                 QV_OK);
    cr_assert_eq(n, 1);
    char wn[64] = "", res[4097] = "";
    qv_wire_get_str(&items[0], "worker_name", wn, sizeof wn, NULL);
    qv_wire_get_str(&items[0], "result", res, sizeof res, NULL);
    cr_expect_str_eq(wn, "bencher");
    cr_expect_not_null(strstr(res, "\"tokens_per_s\":75.5"), "%s", res);
    cr_expect_not_null(strstr(res, "\"speedup\""), "stored in canonical form: %s", res);
    qv_wire_msg_free(m);
    qv_client_close(&c);
    zmq_close(wk);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

/* `qvac submit --bench`: bench_run reaches the named devices of connected
 * workers as bench_request; an unknown model is refused. */
Test(scheduler, bench_run_asks_the_chosen_devices, .timeout = 60)
{
    sched s = {0};
    sched_start(&s, 1, NULL);
    void *ctx = zmq_ctx_new();
    const char *ep = qv_server_endpoint(s.srv);
    void *wk = fake_worker(ctx, ep, "bencher", 5.0);
    qv_client_opts co = {.address = ep, .insecure = true, .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    static const struct {
        const char *model, *devices;
        uint64_t sent;
        qv_status st;
    } cases[] = {
        {"700m", "bencher/ref", 1, QV_OK}, {"builtin", "all", 1, QV_OK},
        {"builtin", "opencl:7,nobody/ref", 0, QV_OK}, {"7b", "all", 0, QV_ERR_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qv_wire_writer *w = NULL;
        cr_assert_eq(qv_wire_writer_new(QV_MSG_BENCH_RUN, 2, &w, NULL), QV_OK);
        qv_wire_kv_str(w, "model", cases[i].model);
        qv_wire_kv_str(w, "devices", cases[i].devices);
        qv_wire_out o = {0};
        cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
        qv_wire_writer_free(w);
        qv_wire_msg *m = NULL;
        qv_status st = qv_client_request(c, &o, QV_MSG_BENCH_QUEUED, &m, &e);
        qv_wire_out_free(&o);
        cr_assert_eq(st, cases[i].st, "%s %s: %s", cases[i].model, cases[i].devices, e.msg);
        if (st) {
            cr_expect_not_null(strstr(e.msg, "7b"), "%s", e.msg);
            continue;
        }
        uint64_t sent = 99;
        qv_wire_get_u64(qv_wire_msg_body(m), "sent", &sent, NULL);
        qv_wire_msg_free(m);
        cr_expect_eq(sent, cases[i].sent, "%s", cases[i].devices);
        if (!sent)
            continue;
        /* the worker gets the request for its device and that model */
        char buf[256];
        qv_wire_type t;
        int got = 0;
        for (int k = 0; k < 10 && !got; k++) {
            zmq_msg_t parts[3];
            int np = 0;
            for (int more = 1; more && np < 3;) {
                zmq_msg_init(&parts[np]);
                cr_assert_geq(zmq_msg_recv(&parts[np], wk, 0), 0, "no request");
                more = zmq_msg_more(&parts[np]);
                np++;
            }
            qv_wire_frame fr[3];
            for (int q = 0; q < np; q++)
                fr[q] = (qv_wire_frame){zmq_msg_data(&parts[q]), zmq_msg_size(&parts[q])};
            qv_wire_msg *wm = NULL;
            if (qv_wire_decode(fr, (size_t)np, &wm, NULL) == QV_OK &&
                (t = qv_wire_msg_type(wm)) == QV_MSG_BENCH_REQUEST) {
                qv_wire_get_str(qv_wire_msg_body(wm), "model", buf, sizeof buf, NULL);
                cr_expect_str_eq(buf, cases[i].model);
                qv_wire_get_str(qv_wire_msg_body(wm), "device", buf, sizeof buf, NULL);
                cr_expect_str_eq(buf, "ref");
                got = 1;
            }
            qv_wire_msg_free(wm);
            for (int q = 0; q < np; q++)
                zmq_msg_close(&parts[q]);
        }
        cr_expect(got, "no bench_request for %s", cases[i].devices);
    }
    qv_client_close(&c);
    zmq_close(wk);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

/* One data folder, one scheduler: a second one on the same folder is
 * refused with the first one's pid; once the first is gone it may start. */
Test(scheduler, a_second_scheduler_on_the_same_data_is_refused, .timeout = 60)
{
    sched s = {0};
    sched_start(&s, 1, NULL);
    qv_server_opts o = {.bind = "tcp://127.0.0.1:*", .data_dir = s.dir,
                        .client_key = s.client_key, .name = "t2", .insecure = 1};
    qv_server *second = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_server_open(&o, &second, &e), QV_ERR_INVALID);
    cr_assert_null(second);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    cr_expect_not_null(strstr(e.msg, pid), "%s", e.msg);
    cr_expect_not_null(strstr(e.msg, s.dir), "%s", e.msg);
    sched_stop(&s, 0);
    qv_err_clear(&e);
    cr_assert_eq(qv_server_open(&o, &second, &e), QV_OK, "%s", e.msg);
    qv_server_close(&second);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s.dir);
    cr_expect_eq(system(cmd), 0);
}

/* Log injection (issue 14): a peer's `error` with a newline and terminal
 * escapes in its message must not forge a log line or reach a terminal
 * raw. */
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_log[1 << 16];
static size_t g_log_lines;

static void keep_log(void *ud, const char *line)
{
    (void)ud;
    pthread_mutex_lock(&g_log_mu);
    size_t n = strlen(g_log);
    snprintf(g_log + n, sizeof g_log - n, "%s\n", line);
    g_log_lines++;
    pthread_mutex_unlock(&g_log_mu);
}

Test(scheduler, a_peer_cannot_forge_a_log_line, .timeout = 60)
{
    sched s = {0};
    snprintf(s.dir, sizeof s.dir, "/tmp/qv-sched-XXXXXX");
    cr_assert_not_null(mkdtemp(s.dir));
    snprintf(s.client_key, sizeof s.client_key, "%s/client.key", s.dir);
    qv_server_opts o = {.bind = "tcp://127.0.0.1:*", .data_dir = s.dir,
                        .client_key = s.client_key, .name = "t", .insecure = 1,
                        .tick_ms = 20, .log = keep_log};
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_server_open(&o, &s.srv, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(pthread_create(&s.th, NULL, sched_main, &s), 0);
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(sock, qv_server_endpoint(s.srv)), 0);
    qv_wire_out out;
    cr_assert_eq(qv_wire_error_reply("x", "boom\nFORGED worker 9 enrolled\x1b[2J\r", NULL,
                                     &out, &e), QV_OK, "%s", e.msg);
    send_out(sock, &out);
    qv_wire_out_free(&out);
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&g_log_mu);
        seen = strstr(g_log, "boom") != NULL;
        pthread_mutex_unlock(&g_log_mu);
    }
    cr_assert(seen, "the error was not logged: %s", g_log);
    pthread_mutex_lock(&g_log_mu);
    cr_expect_null(strstr(g_log, "\nFORGED"), "a forged line: %s", g_log);
    cr_expect_null(strchr(g_log, '\x1b'), "a raw escape: %s", g_log);
    cr_expect_null(strchr(g_log, '\r'), "a raw carriage return");
    /* the peer's text stays on the line it came in, its controls made visible */
    const char *b = strstr(g_log, "boom"), *f = strstr(g_log, "FORGED worker 9 enrolled");
    const char *eol = b ? strchr(b, '\n') : NULL;
    cr_expect(b && f && eol && f > b && f < eol, "%s", g_log);
    pthread_mutex_unlock(&g_log_mu);
    /* a worker's name reaches the log too: escaped there */
    void *wk = fake_worker(ctx, qv_server_endpoint(s.srv), "evil\nFORGED job 1 done\x1b[0m",
                           1.0);
    pthread_mutex_lock(&g_log_mu);
    cr_expect_null(strstr(g_log, "\nFORGED job"), "a forged line: %s", g_log);
    cr_expect_null(strchr(g_log, '\x1b'), "a raw escape: %s", g_log);
    cr_expect_not_null(strstr(g_log, "evil\\nFORGED job 1 done\\x1b[0m"), "%s", g_log);
    pthread_mutex_unlock(&g_log_mu);
    zmq_close(wk);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

/* ---- issue 14: the session table, unknown keys, uploads --------------------- */

/* A scheduler with options o, on s->dir when set (a restart), else on a
 * new folder. */
static void sched_start_o(sched *s, qv_server_opts *o)
{
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof s->dir, "/tmp/qv-sched-XXXXXX");
        cr_assert_not_null(mkdtemp(s->dir));
    }
    snprintf(s->client_key, sizeof s->client_key, "%s/client.key", s->dir);
    o->bind = "tcp://127.0.0.1:*";
    o->data_dir = s->dir;
    o->client_key = s->client_key;
    o->name = "t";
    o->tick_ms = 20;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_server_open(o, &s->srv, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(pthread_create(&s->th, NULL, sched_main, s), 0);
}

/* A DEALER to the scheduler, with CURVE as kp when kp is given. */
static void *dealer(void *ctx, sched *s, const qv_keypair *kp, int timeout_ms)
{
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    cr_assert_not_null(sock, "%s", zmq_strerror(zmq_errno()));
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (kp) {
        qv_err e;
        cr_assert_eq(qv_sock_curve_client(sock, kp, qv_server_public_key(s->srv), &e),
                     QV_OK, "%s", e.msg);
    }
    cr_assert_eq(zmq_connect(sock, qv_server_endpoint(s->srv)), 0);
    return sock;
}

/* The type of the next message, or -1 when none comes in the timeout. */
static int try_recv(void *sock, char *code, size_t code_n)
{
    zmq_msg_t part[4];
    int n = 0, more = 1;
    while (more && n < 4) {
        zmq_msg_init(&part[n]);
        if (zmq_msg_recv(&part[n], sock, 0) < 0) {
            zmq_msg_close(&part[n]);
            for (int i = 0; i < n; i++)
                zmq_msg_close(&part[i]);
            return -1;
        }
        more = zmq_msg_more(&part[n]);
        n++;
    }
    int t = QV_MSG_COUNT;
    if (n == QV_WIRE_FRAMES) {
        qv_wire_frame f[QV_WIRE_FRAMES];
        for (int i = 0; i < n; i++)
            f[i] = (qv_wire_frame){zmq_msg_data(&part[i]), zmq_msg_size(&part[i])};
        qv_wire_msg *m = NULL;
        if (qv_wire_decode(f, QV_WIRE_FRAMES, &m, NULL) == QV_OK) {
            t = (int)qv_wire_msg_type(m);
            if (code && t == QV_MSG_ERROR)
                qv_wire_get_str(qv_wire_msg_body(m), "code", code, code_n, NULL);
        }
        qv_wire_msg_free(m);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
    return t;
}

static void send_jobs(void *sock)
{
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_JOBS, 0, &w, NULL), QV_OK);
    send_body(sock, QV_MSG_JOBS, w);
}

/* MAX_SESS was 1024 and a full table dropped messages unanswered: the table
 * grows past it, and one that is full (--max-sessions) answers `busy`. */
Test(scheduler, the_session_table_grows_and_a_full_one_answers_busy, .timeout = 120)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    enum { N = 1100 };
    cr_assert(rl.rlim_cur > 3 * N + 64, "this test needs %d descriptors (ulimit -n)", 3 * N + 64);
    sched s = {0};
    qv_server_opts o = {.insecure = 1};
    sched_start_o(&s, &o);
    void *ctx = zmq_ctx_new();
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, N + 16);
    static void *sock[N];
    for (int i = 0; i < N; i++) {
        sock[i] = dealer(ctx, &s, NULL, 10000);
        send_hello(sock[i]);
    }
    int welcomed = 0;
    for (int i = 0; i < N; i++)
        welcomed += try_recv(sock[i], NULL, 0) == QV_MSG_WELCOME;
    cr_expect_eq(welcomed, N, "%d of %d connections welcomed", welcomed, N);
    for (int i = 0; i < N; i++)
        zmq_close(sock[i]);
    sched_stop(&s, 1);

    qv_server_opts o2 = {.insecure = 1, .max_sessions = 8};
    sched_start_o(&s, &o2);
    for (int i = 0; i < 9; i++) {
        sock[i] = dealer(ctx, &s, NULL, 5000);
        send_hello(sock[i]);
        char code[32] = "";
        int t = try_recv(sock[i], code, sizeof code);
        if (i < 8) {
            cr_expect_eq(t, QV_MSG_WELCOME, "connection %d", i);
        } else {
            cr_expect_eq(t, QV_MSG_ERROR, "the ninth connection was not answered");
            cr_expect_str_eq(code, "busy");
        }
    }
    for (int i = 0; i < 9; i++)
        zmq_close(sock[i]);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

static size_t log_count(const char *needle)
{
    size_t n = 0;
    pthread_mutex_lock(&g_log_mu);
    for (const char *p = g_log; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    pthread_mutex_unlock(&g_log_mu);
    return n;
}

/* An unknown key cost a log line per denied message. Now: one line, a
 * counter, and after 32 refusals its messages are ignored; a flood of
 * unknown keys cannot keep an admitted client or a worker with a token out. */
Test(scheduler, unknown_keys_are_rate_limited_muted_and_cannot_fill_the_table,
     .timeout = 120)
{
    if (!qv_curve_available())
        cr_skip_test("libzmq without CURVE");
    pthread_mutex_lock(&g_log_mu);
    g_log[0] = '\0';
    pthread_mutex_unlock(&g_log_mu);
    sched s = {0};
    qv_server_opts o = {.max_sessions = 16, .max_unknown = 4, .log = keep_log};
    sched_start_o(&s, &o);
    void *ctx = zmq_ctx_new();
    qv_keypair kp;
    cr_assert_eq(zmq_curve_keypair(kp.pub, kp.sec), 0);
    void *junk = dealer(ctx, &s, &kp, 500);
    for (int i = 0; i < 40; i++)
        send_jobs(junk);
    int denied = 0, t;
    char code[32];
    while ((t = try_recv(junk, code, sizeof code)) >= 0)
        denied += t == QV_MSG_ERROR && !strcmp(code, "denied");
    cr_expect_eq(denied, 32, "%d denied replies before the key was muted", denied);
    cr_expect_eq(log_count("denied jobs"), 1, "one line for the key: %s", g_log);
    cr_expect_eq(log_count("ignored for 60 s"), 1, "%s", g_log);
    zmq_close(junk);

    /* 40 more unknown keys: each one gets its welcome, none keeps others out */
    int welcomed = 0;
    for (int i = 0; i < 40; i++) {
        qv_keypair k2;
        cr_assert_eq(zmq_curve_keypair(k2.pub, k2.sec), 0);
        void *u = dealer(ctx, &s, &k2, 5000);
        send_hello(u);
        welcomed += try_recv(u, NULL, 0) == QV_MSG_WELCOME;
        zmq_close(u);
    }
    cr_expect_eq(welcomed, 40);
    /* the account's client still gets in, and so does a worker with a token */
    qv_client_opts co = {.address = qv_server_endpoint(s.srv),
                         .server_key = qv_server_public_key(s.srv),
                         .client_key = s.client_key, .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    qv_client_close(&c);
    qv_store *st = NULL;
    cr_assert_eq(qv_store_open(s.dir, NULL, &st, &e), QV_OK, "%s", e.msg);
    char tok[QV_TOKEN_HEX];
    cr_assert_eq(qv_store_token_new(st, qv_store_now_ms(), 60000, tok, &e), QV_OK, "%s", e.msg);
    qv_store_close(&st);
    cr_expect_eq(enroll(&s, tok, &e), QV_OK, "%s", e.msg);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

static qv_status blob_put(qv_client *c, const char *hash, uint64_t size,
                          uint64_t *credit, qv_err *e)
{
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_BLOB_PUT, 2, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "hash", hash);
    qv_wire_kv_u64(w, "size", size);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, e), QV_OK, "%s", e->msg);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    qv_status st = qv_client_request(c, &o, QV_MSG_BLOB_CREDIT, &m, e);
    qv_wire_out_free(&o);
    if (st == QV_OK && credit)
        qv_wire_get_u64(qv_wire_msg_body(m), "credit", credit, NULL);
    qv_wire_msg_free(m);
    return st;
}

static void fake_hash(int i, char h[QV_SHA256_HEX])
{
    char b[16];
    snprintf(b, sizeof b, "blob-%d", i);
    qv_sha256_mem(b, strlen(b), h);
}

/* blob_put {size: 2^62} got credit, a 4-byte blob 8 MiB of it, a disk that
 * cannot hold the blob was not asked, uploads were capped per connection
 * (not per key), a body over 16 MiB dropped the connection unanswered, and
 * a killed scheduler's partial uploads stayed for good. */
Test(scheduler, uploads_are_capped_checked_and_cleaned, .timeout = 120)
{
    sched s = {0};
    qv_err e;
    qv_err_clear(&e);
    /* a partial upload left by a killed scheduler */
    snprintf(s.dir, sizeof s.dir, "/tmp/qv-sched-XXXXXX");
    cr_assert_not_null(mkdtemp(s.dir));
    char part[256], cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/blobs/tmp'", s.dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(part, sizeof part, "%s/blobs/tmp/%064d.part", s.dir, 0);
    FILE *f = fopen(part, "w");
    cr_assert_not_null(f);
    fputs("left over", f);
    fclose(f);
    /* two hours old: past the hour a restart leaves to resume it */
    struct timeval old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
    cr_assert_eq(utimes(part, old), 0);
    char fresh[256];
    snprintf(fresh, sizeof fresh, "%s/blobs/tmp/%064d.part", s.dir, 1);
    f = fopen(fresh, "w");
    cr_assert_not_null(f);
    fputs("resumable", f);
    fclose(f);
    snprintf(s.client_key, sizeof s.client_key, "%s/client.key", s.dir);
    qv_server_opts o = {.bind = "tcp://127.0.0.1:*", .data_dir = s.dir,
                        .client_key = s.client_key, .name = "t", .insecure = 1,
                        .tick_ms = 20, .max_blob = 1u << 20};
    cr_assert_eq(qv_server_open(&o, &s.srv, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(pthread_create(&s.th, NULL, sched_main, &s), 0);
    cr_expect_neq(access(part, F_OK), 0, "the old partial upload is still there");
    cr_expect_eq(access(fresh, F_OK), 0, "a recent partial upload (resumable) was removed");

    qv_client_opts co = {.address = qv_server_endpoint(s.srv), .insecure = true,
                         .timeout_ms = 5000};
    qv_client *c = NULL;
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    char h[QV_SHA256_HEX];
    fake_hash(1, h);
    cr_expect_neq(blob_put(c, h, 1ull << 62, NULL, &e), QV_OK, "2^62 bytes were granted");
    cr_expect_str_eq(qv_client_last_error_code(c), "invalid");
    cr_expect_not_null(strstr(e.msg, "--max-blob"), "%s", e.msg);
    uint64_t credit = 0;
    cr_expect_eq(blob_put(c, h, 4, &credit, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(credit, 4, "a 4-byte blob got %llu bytes of credit",
                 (unsigned long long)credit);

    /* a body over 16 MiB: a `malformed` reply, and the connection lives on */
    void *ctx = zmq_ctx_new();
    void *raw = dealer(ctx, &s, NULL, 10000);
    size_t big = QV_WIRE_MAX_BODY + 4096;
    uint8_t *body = calloc(1, big);
    cr_assert_not_null(body);
    body[0] = 0x80; /* an empty msgpack map, then padding */
    const void *d[3] = {QV_WIRE_ID "\x01", "jobs", body};
    size_t l[3] = {QV_WIRE_ID_LEN, 4, big};
    send_frames(raw, d, l, 3);
    free(body);
    char code[32] = "";
    cr_expect_eq(try_recv(raw, code, sizeof code), QV_MSG_ERROR,
                 "no reply to an oversized body");
    cr_expect_str_eq(code, "malformed");
    send_hello(raw);
    cr_expect_eq(try_recv(raw, NULL, 0), QV_MSG_WELCOME, "the connection was dropped");
    zmq_close(raw);
    zmq_ctx_term(ctx);
    qv_client_close(&c);
    sched_stop(&s, 1);

    /* the free disk is checked before granting */
    qv_server_opts o2 = {.insecure = 1, .max_blob = UINT64_MAX};
    sched_start_o(&s, &o2);
    cr_assert_eq(qv_client_connect(&(qv_client_opts){.address = qv_server_endpoint(s.srv),
                                                     .insecure = true, .timeout_ms = 5000},
                                   &c, &e), QV_OK, "%s", e.msg);
    struct statvfs v;
    cr_assert_eq(statvfs(s.dir, &v), 0);
    uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
    cr_expect_neq(blob_put(c, h, avail, NULL, &e), QV_OK, "a blob as large as the free disk");
    cr_expect_str_eq(qv_client_last_error_code(c), "busy", "%s", e.msg);
    qv_client_close(&c);
    sched_stop(&s, 1);

    /* uploads count per key: two connections of one client share 4 */
    if (!qv_curve_available())
        return;
    qv_server_opts o3 = {0};
    sched_start_o(&s, &o3);
    qv_client_opts cc = {.address = qv_server_endpoint(s.srv),
                         .server_key = qv_server_public_key(s.srv),
                         .client_key = s.client_key, .timeout_ms = 5000};
    qv_client *c1 = NULL, *c2 = NULL;
    cr_assert_eq(qv_client_connect(&cc, &c1, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_client_connect(&cc, &c2, &e), QV_OK, "%s", e.msg);
    for (int i = 0; i < 3; i++) {
        fake_hash(10 + i, h);
        cr_expect_eq(blob_put(c1, h, 100, NULL, &e), QV_OK, "%s", e.msg);
    }
    fake_hash(20, h);
    cr_expect_eq(blob_put(c2, h, 100, NULL, &e), QV_OK, "%s", e.msg);
    fake_hash(21, h);
    cr_expect_neq(blob_put(c2, h, 100, NULL, &e), QV_OK, "a fifth upload of one key");
    cr_expect_str_eq(qv_client_last_error_code(c2), "busy");
    qv_client_close(&c1);
    qv_client_close(&c2);
    sched_stop(&s, 1);
}

/* The first job's `unrunnable` text (jobs list), "" when none. */
static void first_unrunnable(qv_client *c, char *why, size_t n)
{
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_JOBS, 0, &w, NULL), QV_OK);
    qv_wire_out o = {0};
    qv_err e;
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    cr_assert_eq(qv_client_request(c, &o, QV_MSG_JOB_LIST, &m, &e), QV_OK, "%s", e.msg);
    qv_wire_out_free(&o);
    const msgpack_object *jobs = NULL;
    size_t nj = 0;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "jobs", &jobs, &nj, 1000, &e), QV_OK);
    cr_assert_geq(nj, 1);
    why[0] = '\0';
    qv_wire_get_str(&jobs[0], "unrunnable", why, n, NULL);
    qv_wire_msg_free(m);
}

/* `qvac jobs` with no worker said "unrunnable ... 0 bytes": it says the job
 * waits for a worker; with devices enrolled and none fitting, which need
 * none meets. */
Test(scheduler, a_job_with_no_worker_waits_for_one, .timeout = 60)
{
    sched s = {0};
    sched_start(&s, 1, NULL);
    qv_client_opts co = {.address = qv_server_endpoint(s.srv), .insecure = true,
                         .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    const char *data = "{\"text\": \"arr\"}\n";
    char dh[QV_SHA256_HEX];
    bool sent = false;
    cr_assert_eq(qv_client_upload_mem(c, data, strlen(data), dh, &sent, NULL, NULL, &e),
                 QV_OK, "%s", e.msg);
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_SUBMIT, 3, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "model", dh);
    qv_wire_kv_str(w, "data", dh);
    qv_wire_kv_map(w, "needs", 1);
    qv_wire_kv_u64(w, "memory", 64ull << 30);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    cr_assert_eq(qv_client_request(c, &o, QV_MSG_SUBMITTED, &m, &e), QV_OK, "%s", e.msg);
    qv_wire_out_free(&o);
    qv_wire_msg_free(m);
    char why[QV_WIRE_MAX_TEXT + 1];
    first_unrunnable(c, why, sizeof why);
    cr_expect_not_null(strstr(why, "waiting for a worker with 64.0 GiB of memory"), "%s", why);
    cr_expect_null(strstr(why, "bytes"), "%s", why);
    void *ctx = zmq_ctx_new();
    void *wk = fake_worker(ctx, qv_server_endpoint(s.srv), "small", 1.0);
    first_unrunnable(c, why, sizeof why);
    cr_expect_str_eq(why, "no enrolled device with 64.0 GiB of memory");
    zmq_close(wk);
    zmq_ctx_term(ctx);
    qv_client_close(&c);
    sched_stop(&s, 1);
}

/* Whether sock receives a message of type t within ms (others skipped). */
static int got_type(void *sock, int t, int ms, char *code, size_t code_n)
{
    int tmo = ms;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    for (int i = 0; i < 20; i++) {
        int r = try_recv(sock, code, code_n);
        if (r < 0)
            return 0;
        if (r == t)
            return 1;
    }
    return 0;
}

/* Revocation: `qvac workers remove ID` (the store, beside the running
 * scheduler) aborts the worker's job and queues it again, and the worker is
 * refused from then on, enroll included; `qvac clients remove KEY` refuses
 * the client's next request on the connection it already has. */
Test(scheduler, removed_workers_and_clients_are_refused, .timeout = 60)
{
    sched s = {0};
    sched_start(&s, 1, NULL);
    qv_client_opts co = {.address = qv_server_endpoint(s.srv), .insecure = true,
                         .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    void *ctx = zmq_ctx_new();
    void *wk = fake_worker(ctx, qv_server_endpoint(s.srv), "doomed", 1.0);
    submit_one(c);
    cr_assert(got_assign(wk, 5000), "the job was not assigned");
    qv_store *st = NULL;
    cr_assert_eq(qv_store_open(s.dir, NULL, &st, &e), QV_OK, "%s", e.msg);
    int rq = 0;
    cr_assert_eq(qv_store_worker_revoke(st, "1", qv_store_now_ms(), &rq, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(rq, 1);
    cr_expect(got_type(wk, QV_MSG_ABORT, 3000, NULL, 0), "the removed worker's job was not aborted");
    qv_job j = {0};
    cr_assert_eq(qv_store_job(st, 1, &j, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(j.state, QV_JOB_QUEUED, "the job is %s", qv_job_state_name(j.state));
    qv_job_clear(&j);
    /* its heartbeat and a new enroll are refused */
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_HEARTBEAT, 0, &w, NULL), QV_OK);
    send_body(wk, QV_MSG_HEARTBEAT, w);
    char code[32] = "";
    cr_expect(got_type(wk, QV_MSG_ERROR, 3000, code, sizeof code), "no reply to the heartbeat");
    cr_expect_str_eq(code, "denied");
    zmq_close(wk);
    void *again = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(again, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(again, qv_server_endpoint(s.srv)), 0);
    cr_assert_eq(qv_wire_writer_new(QV_MSG_ENROLL, 3, &w, NULL), QV_OK);
    char key[41];
    qv_wire_kv_str(w, "key", fake_key("doomed", key));
    qv_wire_kv_str(w, "name", "doomed");
    qv_wire_kv_array(w, "devices", 0);
    send_body(again, QV_MSG_ENROLL, w);
    code[0] = '\0';
    cr_expect(got_type(again, QV_MSG_ERROR, 3000, code, sizeof code), "enroll was not refused");
    cr_expect_str_eq(code, "denied");
    zmq_close(again);
    qv_store_close(&st);
    qv_client_close(&c);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);

    if (!qv_curve_available())
        return;
    sched_start(&s, 0, NULL);
    qv_client_opts cc = {.address = qv_server_endpoint(s.srv),
                         .server_key = qv_server_public_key(s.srv),
                         .client_key = s.client_key, .timeout_ms = 3000};
    cr_assert_eq(qv_client_connect(&cc, &c, &e), QV_OK, "%s", e.msg);
    char first[QV_WIRE_MAX_TEXT + 1];
    cr_assert_eq(qv_wire_writer_new(QV_MSG_JOBS, 0, &w, NULL), QV_OK);
    qv_wire_out o = {0};
    cr_assert_eq(qv_wire_finish(w, &o, &e), QV_OK, "%s", e.msg);
    qv_wire_writer_free(w);
    qv_wire_msg *m = NULL;
    cr_expect_eq(qv_client_request(c, &o, QV_MSG_JOB_LIST, &m, &e), QV_OK, "%s", e.msg);
    qv_wire_msg_free(m);
    qv_keypair kp;
    cr_assert_eq(qv_keys_load_or_create(s.client_key, &kp, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_store_open(s.dir, NULL, &st, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_store_client_remove(st, kp.pub, &e), QV_OK, "%s", e.msg);
    qv_store_close(&st);
    struct timespec ts = {0, 200 * 1000 * 1000}; /* a few ticks */
    nanosleep(&ts, NULL);
    qv_status rs = qv_client_request(c, &o, QV_MSG_JOB_LIST, &m, &e);
    snprintf(first, sizeof first, "%s", e.msg);
    cr_expect_neq(rs, QV_OK, "a removed client's request was answered");
    cr_expect_str_eq(qv_client_last_error_code(c), "denied", "%s", first);
    qv_wire_out_free(&o);
    qv_client_close(&c);
    sched_stop(&s, 1);
}

/* A scheduler with options o whose worker `name` (on ctx) was handed job
 * 1; then the worker's connection and the scheduler go away (s stopped,
 * its folder kept for a restart). */
static void job_out_then_all_down(sched *s, qv_server_opts *o, void *ctx, const char *name)
{
    sched_start_o(s, o);
    qv_client_opts co = {.address = qv_server_endpoint(s->srv), .insecure = true,
                         .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    void *wk = fake_worker(ctx, qv_server_endpoint(s->srv), name, 1.0);
    submit_one(c);
    cr_assert(got_assign(wk, 5000), "the first job was not assigned");
    zmq_close(wk);
    qv_client_close(&c);
    sched_stop(s, 0);
}

/* Waits (2 s at most) for the restarted scheduler's first tick to queue
 * job 1 again, its lease having run out while it was down. */
static void expired_job_queued(qv_store *st)
{
    qv_job j = {0};
    qv_err e;
    for (int i = 0; i < 100; i++) {
        qv_job_clear(&j);
        cr_assert_eq(qv_store_job(st, 1, &j, &e), QV_OK, "%s", e.msg);
        if (j.state == QV_JOB_QUEUED)
            break;
        struct timespec t20 = {0, 20 * 1000 * 1000};
        nanosleep(&t20, NULL);
    }
    cr_expect_eq(j.state, QV_JOB_QUEUED, "the expired job is %s", qv_job_state_name(j.state));
    qv_job_clear(&j);
}

/* What a fake worker runs: job, attempt, device. */
typedef struct running {
    uint64_t job, attempt;
    const char *device;
} running;

/* A heartbeat that says the worker runs the n attempts of r. */
static void heartbeat_of(void *wk, int n, const running *r)
{
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_HEARTBEAT, 1, &w, NULL), QV_OK);
    qv_wire_kv_array(w, "running", (size_t)n);
    for (int i = 0; i < n; i++) {
        qv_wire_w_map(w, 3);
        qv_wire_kv_u64(w, "job", r[i].job);
        qv_wire_kv_u64(w, "attempt", r[i].attempt);
        qv_wire_kv_str(w, "device", r[i].device);
    }
    send_body(wk, QV_MSG_HEARTBEAT, w);
}

/* A heartbeat that says the worker runs job 1 attempt 1 on ref (n = 1), or
 * nothing (n = 0). */
static void heartbeat_running(void *wk, int n)
{
    heartbeat_of(wk, n, &(running){1, 1, "ref"});
}

/* The scheduler was down past a running job's lease: at start it queues
 * the job again, while the worker still runs that attempt. When the worker
 * came back, the job went straight back to its busy device; the device
 * refused it, the worker was drained for good and every later job stayed
 * queued (seen in e2e under load). Now a returning worker gets no job
 * before its first heartbeat, the stale attempt is aborted, and its device
 * gets no job while heartbeats still list it; then the job runs again. */
Test(scheduler, a_stale_attempt_keeps_its_device_until_it_ends, .timeout = 60)
{
    sched s = {0};
    qv_server_opts o1 = {.insecure = 1, .lease_ms = 1000};
    void *ctx = zmq_ctx_new();
    job_out_then_all_down(&s, &o1, ctx, "late");
    qv_err e;
    qv_err_clear(&e);
    struct timespec ts = {1, 300 * 1000 * 1000}; /* past the lease */
    nanosleep(&ts, NULL);
    qv_server_opts o2 = {.insecure = 1, .lease_ms = 1000};
    sched_start_o(&s, &o2);
    qv_store *st = NULL;
    cr_assert_eq(qv_store_open(s.dir, NULL, &st, &e), QV_OK, "%s", e.msg);
    expired_job_queued(st);
    qv_job j = {0};
    void *wk = fake_worker(ctx, qv_server_endpoint(s.srv), "late", 1.0);
    cr_expect(!got_assign(wk, 300), "a job before the returning worker's heartbeat");
    heartbeat_running(wk, 1);
    cr_expect(got_type(wk, QV_MSG_ABORT, 2000, NULL, 0), "the stale attempt was not aborted");
    cr_expect(!got_assign(wk, 300), "a job went to the device the stale attempt holds");
    heartbeat_running(wk, 1); /* still aborting */
    cr_expect(!got_assign(wk, 300), "a job went to the device after a second heartbeat");
    heartbeat_running(wk, 0); /* it ended */
    cr_expect(got_assign(wk, 2000), "the device stayed held after the attempt ended");
    cr_assert_eq(qv_store_job(st, 1, &j, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(j.attempts, 2);
    qv_job_clear(&j);
    qv_store_close(&st);
    zmq_close(wk);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

/* A worker that enrolls again holding an attempt (the scheduler restarted)
 * got new jobs for its busy device at once, burning their attempts: it
 * gets none until a heartbeat says what runs where. */
Test(scheduler, a_worker_back_with_a_running_job_gets_no_job_on_that_device, .timeout = 60)
{
    sched s = {0};
    qv_server_opts o1 = {.insecure = 1};
    void *ctx = zmq_ctx_new();
    job_out_then_all_down(&s, &o1, ctx, "back");
    /* the scheduler restarts; the worker comes back on a new connection */
    qv_server_opts o2 = {.insecure = 1};
    sched_start_o(&s, &o2);
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&(qv_client_opts){.address = qv_server_endpoint(s.srv),
                                                     .insecure = true, .timeout_ms = 5000},
                                   &c, &e), QV_OK, "%s", e.msg);
    void *wk = fake_worker(ctx, qv_server_endpoint(s.srv), "back", 1.0);
    submit_one(c);
    cr_expect(!got_assign(wk, 600), "a job went to a device that still runs one");
    /* its heartbeat says job 1 runs on ref: still nothing for that device */
    heartbeat_running(wk, 1);
    cr_expect(!got_assign(wk, 600), "a job went to the busy device after the heartbeat");
    zmq_close(wk);
    qv_client_close(&c);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

/* A failed upload gives its space back: after a disk-full upload its .part
 * stayed and every later upload failed. A scheduler whose files cannot
 * grow past 2 MiB (RLIMIT_FSIZE: writes fail as on a full disk) refuses a
 * 3 MiB upload with the reason, removes its partial file at once, and
 * takes the next, smaller one. */
Test(scheduler, a_failed_upload_gives_its_space_back_at_once, .timeout = 60)
{
    char dir[] = "/tmp/qv-sched-full-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ep[128];
    pid_t pid = sched_child(dir, 2u << 20, ep); /* its files stay under 2 MiB */
    qv_client_opts co = {.address = ep, .insecure = true, .timeout_ms = 5000};
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&co, &c, &e), QV_OK, "%s", e.msg);
    size_t big = 3u << 20;
    unsigned char *b = malloc(big);
    cr_assert_not_null(b);
    for (size_t i = 0; i < big; i++)
        b[i] = (unsigned char)(i * 2654435761u >> 24);
    char h[QV_SHA256_HEX];
    bool sent = false;
    cr_expect_neq(qv_client_upload_mem(c, b, big, h, &sent, NULL, NULL, &e), QV_OK,
                  "3 MiB went into files limited to 2 MiB");
    cr_expect_not_null(strstr(e.msg, "cannot write"), "%s", e.msg);
    char part[300];
    snprintf(part, sizeof part, "%s/blobs/tmp/%s.part", dir, h);
    cr_expect_neq(access(part, F_OK), 0, "the failed upload kept its partial file");
    cr_expect_eq(qv_client_upload_mem(c, b, 1u << 20, h, &sent, NULL, NULL, &e), QV_OK,
                 "the next upload: %s", e.msg);
    free(b);
    qv_client_close(&c);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* The next message on sock, decoded; NULL when none comes in its timeout. */
static qv_wire_msg *recv_msg(void *sock)
{
    zmq_msg_t part[4];
    int n = 0, more = 1;
    while (more && n < 4) {
        zmq_msg_init(&part[n]);
        if (zmq_msg_recv(&part[n], sock, 0) < 0) {
            for (int i = 0; i <= n; i++)
                zmq_msg_close(&part[i]);
            return NULL;
        }
        more = zmq_msg_more(&part[n]);
        n++;
    }
    qv_wire_msg *m = NULL;
    if (n == QV_WIRE_FRAMES) {
        qv_wire_frame f[QV_WIRE_FRAMES];
        for (int i = 0; i < n; i++)
            f[i] = (qv_wire_frame){zmq_msg_data(&part[i]), zmq_msg_size(&part[i])};
        qv_wire_decode(f, QV_WIRE_FRAMES, &m, NULL);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
    return m;
}

static void raw_put(void *sock, const char *h, uint64_t size)
{
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_BLOB_PUT, 2, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "hash", h);
    qv_wire_kv_u64(w, "size", size);
    send_body(sock, QV_MSG_BLOB_PUT, w);
}

static void raw_chunk(void *sock, const char *h, const unsigned char *b, uint64_t size,
                      uint64_t off, size_t n)
{
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_BLOB_CHUNK, 4, &w, NULL), QV_OK);
    qv_wire_kv_str(w, "hash", h);
    qv_wire_kv_u64(w, "offset", off);
    qv_wire_kv_u64(w, "size", size);
    qv_wire_kv_bin(w, "bytes", b + off, n);
    send_body(sock, QV_MSG_BLOB_CHUNK, w);
}

/* A sender that starts an upload again on its connection (a worker the
 * scheduler asked to enroll again) goes back to the offset blob_put
 * answers, while chunks it sent before were still on the way and were
 * taken. Those bytes came again and were refused, and each refusal cost
 * the worker one of its three tries: now the bytes the upload holds are
 * skipped with their credit given back, and the blob completes. */
Test(scheduler, bytes_sent_again_after_a_resume_are_skipped, .timeout = 60)
{
    sched s = {0};
    qv_server_opts o = {.insecure = 1};
    sched_start_o(&s, &o);
    void *ctx = zmq_ctx_new();
    void *sock = dealer(ctx, &s, NULL, 5000);
    send_hello(sock);
    cr_assert_eq(try_recv(sock, NULL, 0), QV_MSG_WELCOME);
    enum { K = 1 << 20, N = 3 * K };
    unsigned char *b = malloc(N);
    cr_assert_not_null(b);
    for (size_t i = 0; i < N; i++)
        b[i] = (unsigned char)(i * 2654435761u >> 24);
    char h[QV_SHA256_HEX];
    qv_sha256_mem(b, N, h);
    raw_put(sock, h, N);
    raw_chunk(sock, h, b, N, 0, K); /* A */
    raw_put(sock, h, N);            /* again: A is in, so it answers offset 1 MiB */
    raw_chunk(sock, h, b, N, K, K); /* B, sent before that answer came */
    raw_chunk(sock, h, b, N, K, K); /* B again, from the offset of the answer */
    raw_chunk(sock, h, b, N, 2 * K, K / 2 + 7); /* C, half of it */
    raw_chunk(sock, h, b, N, 2 * K, K);         /* C whole: its first half again */
    int errors = 0, ok = 0, offsets = 0;
    uint64_t last_off = 99;
    for (qv_wire_msg *m; !ok && (m = recv_msg(sock));) {
        const msgpack_object *body = qv_wire_msg_body(m);
        switch (qv_wire_msg_type(m)) {
        case QV_MSG_ERROR: {
            char msg[300] = "";
            qv_wire_get_str(body, "message", msg, sizeof msg, NULL);
            cr_log_error("error: %s", msg);
            errors++;
            break;
        }
        case QV_MSG_BLOB_CREDIT:
            if (qv_wire_get_u64(body, "offset", &last_off, NULL) == QV_OK)
                offsets++;
            break;
        case QV_MSG_BLOB_OK: ok = 1; break;
        default: break;
        }
        qv_wire_msg_free(m);
    }
    cr_expect_eq(errors, 0, "bytes sent again were refused");
    cr_expect(ok, "the blob did not complete");
    cr_expect_eq(offsets, 2);
    cr_expect_eq(last_off, (uint64_t)K, "the second blob_put answered offset %llu",
                 (unsigned long long)last_off);
    qv_store *st = NULL;
    qv_err e;
    cr_assert_eq(qv_store_open(s.dir, NULL, &st, &e), QV_OK, "%s", e.msg);
    int has = 0;
    uint64_t size = 0;
    cr_assert_eq(qv_store_blob_has(st, h, &has, &size, &e), QV_OK, "%s", e.msg);
    cr_expect(has && size == N, "the blob is not stored whole");
    qv_store_close(&st);
    free(b);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

/* The devices of the assigns that come on wk within ms (up to 4), while it
 * heartbeats every 200 ms that it runs the nr attempts of r. */
static int assigns_within(void *wk, int ms, char dev[][16], int nr, const running *r)
{
    int tmo = 100, n = 0;
    zmq_setsockopt(wk, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    for (int t = 0; t < ms; t += 100) {
        if (t % 200 == 0)
            heartbeat_of(wk, nr, r);
        qv_wire_msg *m;
        while ((m = recv_msg(wk))) {
            if (qv_wire_msg_type(m) == QV_MSG_ASSIGN && n < 4)
                qv_wire_get_str(qv_wire_msg_body(m), "device", dev[n++], 16, NULL);
            qv_wire_msg_free(m);
        }
    }
    return n;
}

/* A stale attempt's report freed every device of its job: a worker back
 * with two devices held ref for job 1's stale attempt 1 while attempt 2 ran
 * on ref2; attempt 1's `failed` freed ref2 too, and the next job went to
 * ref2, busy (the worker refused it and was drained). A report frees the
 * device of its own attempt only. */
Test(scheduler, a_stale_report_frees_only_its_own_device, .timeout = 60)
{
    sched s = {0};
    qv_server_opts o1 = {.insecure = 1, .lease_ms = 1000};
    void *ctx = zmq_ctx_new();
    job_out_then_all_down(&s, &o1, ctx, "two");
    struct timespec ts = {1, 300 * 1000 * 1000}; /* past the lease */
    nanosleep(&ts, NULL);
    qv_server_opts o2 = {.insecure = 1, .lease_ms = 1000};
    sched_start_o(&s, &o2);
    qv_store *st = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_store_open(s.dir, NULL, &st, &e), QV_OK, "%s", e.msg);
    expired_job_queued(st);
    qv_store_close(&st);
    void *wk = fake_worker_ex(ctx, qv_server_endpoint(s.srv), "two", 1.0, 0, 0, 2);
    running r[2] = {{1, 1, "ref"}, {1, 2, "ref2"}};
    char dev[4][16];
    /* job 1 attempt 1 still runs on ref */
    int n1 = assigns_within(wk, 700, dev, 1, r); /* (under the lease: nothing expires) */
    cr_assert_eq(n1, 1, "job 1 again: %d assigns (%s)", n1, n1 ? dev[0] : "");
    cr_expect_str_eq(dev[0], "ref2", "job 1 attempt 2 went to the held device");
    /* attempt 1 stopped: its report (stale) frees ref, not ref2 */
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_FAILED, 4, &w, NULL), QV_OK);
    qv_wire_kv_u64(w, "job", 1);
    qv_wire_kv_u64(w, "attempt", 1);
    qv_wire_kv_str(w, "reason", "aborted");
    qv_wire_kv_bool(w, "retry", false);
    send_body(wk, QV_MSG_FAILED, w);
    qv_client *c = NULL;
    cr_assert_eq(qv_client_connect(&(qv_client_opts){.address = qv_server_endpoint(s.srv),
                                                     .insecure = true, .timeout_ms = 5000},
                                   &c, &e), QV_OK, "%s", e.msg);
    submit_one(c);
    submit_one(c);
    int n = assigns_within(wk, 700, dev, 1, r + 1); /* attempt 2 runs on ref2 */
    cr_expect_eq(n, 1, "%d assigns for one free device", n);
    if (n >= 1)
        cr_expect_str_eq(dev[0], "ref");
    qv_client_close(&c);
    zmq_close(wk);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}

/* A worker that handed a job back (failed, retry: true: "device busy", say)
 * got no job again until it reconnected, which a worker whose heartbeats
 * are answered never does: it gets none for a lease, then jobs again. */
Test(scheduler, a_worker_that_hands_a_job_back_gets_jobs_again_after_a_lease, .timeout = 60)
{
    sched s = {0};
    qv_server_opts o = {.insecure = 1, .lease_ms = 1000};
    sched_start_o(&s, &o);
    void *ctx = zmq_ctx_new();
    void *wk = fake_worker(ctx, qv_server_endpoint(s.srv), "busy", 1.0);
    qv_client *c = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_client_connect(&(qv_client_opts){.address = qv_server_endpoint(s.srv),
                                                     .insecure = true, .timeout_ms = 5000},
                                   &c, &e), QV_OK, "%s", e.msg);
    submit_one(c);
    char dev[4][16];
    cr_assert_eq(assigns_within(wk, 300, dev, 0, NULL), 1, "the job was not assigned");
    qv_wire_writer *w = NULL;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_FAILED, 4, &w, NULL), QV_OK);
    qv_wire_kv_u64(w, "job", 1);
    qv_wire_kv_u64(w, "attempt", 1);
    qv_wire_kv_str(w, "reason", "worker: device ref is busy with job 9");
    qv_wire_kv_bool(w, "retry", true);
    send_body(wk, QV_MSG_FAILED, w);
    cr_expect_eq(assigns_within(wk, 500, dev, 0, NULL), 0, "the job came straight back");
    cr_expect_geq(assigns_within(wk, 2500, dev, 0, NULL), 1,
                  "no job for the worker a lease after it handed one back");
    qv_client_close(&c);
    zmq_close(wk);
    zmq_ctx_term(ctx);
    sched_stop(&s, 1);
}
