/* benchmarks/bench_sched.c — the scheduler (issue 5, "Benchmark"): durable
 * submissions per second, dispatch latency, and the scheduler's CPU with
 * many simulated workers heartbeating, insecure and with CURVE, side by
 * side in one run, on loopback.
 *
 * Every measurement runs against a real scheduler (scheduler/server.h) in a
 * child process (this program re-executed with --serve DIR MODE), on a
 * fresh temporary data folder, bound to 127.0.0.1 on a free port, silent
 * (no log). A child of its own makes the scheduler's CPU (its loop, ZeroMQ's
 * I/O thread and, with CURVE, the ZAP thread) readable from /proc/PID/stat.
 *
 * 1. Submissions: 1 and 4 clients (threads, each its own qv_client)
 *    submit small jobs back to back for --seconds; every acknowledged
 *    submission is committed (WAL, synchronous=FULL). After the scheduler
 *    stops, its store is opened and the jobs counted.
 * 2. Dispatch: a fake worker (a DEALER speaking docs/protocol.md: hello,
 *    enroll with a token made with qv_store_token_new through a second
 *    store handle, heartbeat) with one idle device. A client submits a
 *    job; the time from the submit's acknowledgement (and from its send) to
 *    the worker receiving `assign` is recorded; the worker answers `done`,
 *    and once `ack` frees the device the next job is submitted.
 * 3. Heartbeats: --workers (1,000) and then --fleet (10,000) simulated
 *    workers (DEALER sockets in generator processes of at most GEN_MAX
 *    each, polled through their ZMQ_FD descriptors; each its own key)
 *    enroll, then heartbeat every lease/3 (as `qvac worker` does), spread
 *    evenly; the scheduler's CPU over --hb-seconds after a warm-up
 *    interval, replies, and heartbeat round trips.
 *
 * The goals of issue 14 are checked at the end (met or not, with the
 * figure).
 *
 * Writes a Markdown report and a JSON file with every figure and the goals
 * (FILE.tmp, then renamed).
 *
 * usage: bench_sched [--out FILE] [--seconds S] [--samples N]
 *                    [--workers N] [--fleet N] [--hb-seconds S] [--modes LIST]
 *                    [--json FILE] */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/file.h"
#include "formats/wire.h"
#include "scheduler/client.h"
#include "scheduler/keys.h"
#include "scheduler/server.h"
#include "scheduler/store.h"

#define DEFAULT_OUT "benchmarks/reports/scheduler.md"
#define LEASE_MS 10000 /* the scheduler's default */
#define TICK_MS 250    /* its default tick: min(250, lease / 4) */
#define MAX_CLIENTS 16

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sleep_s(double s)
{
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v (q in 0..1). */
static double pct(const double *v, size_t n, double q)
{
    if (!n)
        return NAN;
    size_t k = (size_t)ceil(q * (double)n);
    if (k < 1)
        k = 1;
    return v[k - 1];
}

/* ---- the scheduler, in a child process ----------------------------------- */

static qv_server *g_srv;
static void on_term(int sig) { (void)sig; qv_server_stop(g_srv); }

static int serve_main(const char *dir, const char *mode)
{
    char ck[4200];
    snprintf(ck, sizeof ck, "%s/client.key", dir);
    qv_server_opts o = {.bind = "tcp://127.0.0.1:*", .data_dir = dir,
                        .client_key = ck, .name = "bench",
                        .insecure = strcmp(mode, "curve") != 0};
    qv_err e = {0};
    if (qv_server_open(&o, &g_srv, &e)) {
        fprintf(stderr, "bench_sched: scheduler: %s\n", e.msg);
        return 1;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, SIG_IGN);
    const char *pub = qv_server_public_key(g_srv);
    printf("%s %s\n", qv_server_endpoint(g_srv), pub[0] ? pub : "-");
    fflush(stdout);
    qv_status st = qv_server_run(g_srv, &e);
    qv_server_close(&g_srv);
    return st ? 1 : 0;
}

typedef struct sched {
    int curve;
    char dir[64], ep[256], pub[QV_KEY_Z85], client_key[128];
    pid_t pid;
} sched;

static int sched_start(sched *s, int curve)
{
    memset(s, 0, sizeof *s);
    s->curve = curve;
    snprintf(s->dir, sizeof s->dir, "/tmp/qv-bsched-XXXXXX");
    if (!mkdtemp(s->dir)) {
        perror("bench_sched: mkdtemp");
        return -1;
    }
    snprintf(s->client_key, sizeof s->client_key, "%s/client.key", s->dir);
    int pfd[2];
    if (pipe(pfd))
        return -1;
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl("/proc/self/exe", "bench_sched", "--serve", s->dir,
              curve ? "curve" : "insecure", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[512] = "", pub[64] = "";
    int ok = f && fgets(line, sizeof line, f) &&
             sscanf(line, "%255s %63s", s->ep, pub) == 2;
    if (f)
        fclose(f);
    if (!ok) {
        fprintf(stderr, "bench_sched: the scheduler did not start\n");
        waitpid(s->pid, NULL, 0);
        return -1;
    }
    snprintf(s->pub, sizeof s->pub, "%s", strcmp(pub, "-") ? pub : "");
    return 0;
}

static void sched_stop(sched *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static void sched_remove(sched *s)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_sched: could not remove %s\n", s->dir);
}

/* CPU seconds (user + system) the process has used so far. */
static double proc_cpu(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return NAN;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return NAN;
    unsigned long ut = 0, st = 0;
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return NAN;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static qv_status client_connect(const sched *s, const char *name,
                                qv_client **c, qv_err *e)
{
    qv_client_opts co = {.address = s->ep, .server_key = s->curve ? s->pub : NULL,
                         .client_key = s->client_key, .insecure = !s->curve,
                         .timeout_ms = 10000, .name = name};
    return qv_client_connect(&co, c, e);
}

static qv_status submit_one(qv_client *c, const char *blob, const char *name,
                            uint64_t *job, qv_err *e)
{
    qv_wire_writer *w = NULL;
    qv_status st = qv_wire_writer_new(QV_MSG_SUBMIT, 3, &w, e);
    if (st)
        return st;
    qv_wire_kv_str(w, "name", name);
    qv_wire_kv_str(w, "model", blob);
    qv_wire_kv_str(w, "data", blob);
    qv_wire_out o = {0};
    st = qv_wire_finish(w, &o, e);
    qv_wire_writer_free(w);
    if (st)
        return st;
    qv_wire_msg *m = NULL;
    st = qv_client_request(c, &o, QV_MSG_SUBMITTED, &m, e);
    qv_wire_out_free(&o);
    if (st == QV_OK) {
        *job = 0;
        qv_wire_get_u64(qv_wire_msg_body(m), "job", job, NULL);
    }
    qv_wire_msg_free(m);
    return st;
}

/* Uploads the small blob every job names as model and data. */
static int upload_blob(const sched *s, char hash[QV_SHA256_HEX])
{
    qv_client *c = NULL;
    qv_err e = {0};
    const char *data = "{\"text\": \"arr\"}\n";
    if (client_connect(s, "bench-upload", &c, &e) ||
        qv_client_upload_mem(c, data, strlen(data), hash, NULL, NULL, NULL, &e)) {
        fprintf(stderr, "bench_sched: upload: %s\n", e.msg);
        qv_client_close(&c);
        return -1;
    }
    qv_client_close(&c);
    return 0;
}

/* ---- raw DEALER peers (the fake workers) -------------------------------- */

static int wsend(void *sock, qv_wire_writer *w)
{
    qv_wire_out o = {0};
    qv_err e = {0};
    qv_status st = qv_wire_finish(w, &o, &e);
    qv_wire_writer_free(w);
    if (st) {
        fprintf(stderr, "bench_sched: %s\n", e.msg);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < QV_WIRE_FRAMES && !rc; i++)
        if (zmq_send(sock, o.frame[i].data, o.frame[i].size,
                     i + 1 < QV_WIRE_FRAMES ? ZMQ_SNDMORE : 0) < 0)
            rc = -1;
    qv_wire_out_free(&o);
    return rc;
}

static qv_wire_writer *wnew(qv_wire_type t, size_t n)
{
    qv_wire_writer *w = NULL;
    if (qv_wire_writer_new(t, n, &w, NULL))
        abort(); /* out of memory in the benchmark itself */
    return w;
}

/* The next message if one is waiting (NULL if none or undecodable). */
static qv_wire_msg *wrecv(void *sock)
{
    zmq_msg_t part[4];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t scratch, *m = n < 4 ? &part[n] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (m == &scratch)
            zmq_msg_close(m);
        else
            n++;
    }
    qv_wire_msg *out = NULL;
    if (n == QV_WIRE_FRAMES) {
        qv_wire_frame f[QV_WIRE_FRAMES];
        for (int i = 0; i < n; i++)
            f[i] = (qv_wire_frame){zmq_msg_data(&part[i]), zmq_msg_size(&part[i])};
        qv_wire_decode(f, QV_WIRE_FRAMES, &out, NULL);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
    return out;
}

static void send_hello(void *sock, const char *name)
{
    qv_wire_writer *w = wnew(QV_MSG_HELLO, 3);
    qv_wire_kv_str(w, "role", "worker");
    qv_wire_kv_str(w, "name", name);
    qv_wire_kv_str(w, "version", QV_VERSION);
    wsend(sock, w);
}

static void send_enroll(void *sock, const char *token, const char *key,
                        const char *name)
{
    qv_wire_writer *w = wnew(QV_MSG_ENROLL, token[0] ? 4 : 3);
    if (token[0])
        qv_wire_kv_str(w, "token", token);
    qv_wire_kv_str(w, "key", key);
    qv_wire_kv_str(w, "name", name);
    qv_wire_kv_array(w, "devices", 1);
    qv_wire_w_map(w, 4);
    qv_wire_kv_str(w, "id", "ref");
    qv_wire_kv_str(w, "backend", "ref");
    qv_wire_kv_str(w, "name", "simulated");
    qv_wire_kv_u64(w, "memory", 1ull << 30);
    wsend(sock, w);
}

static void send_heartbeat(void *sock)
{
    qv_wire_writer *w = wnew(QV_MSG_HEARTBEAT, 1);
    qv_wire_kv_array(w, "running", 0);
    wsend(sock, w);
}

/* A worker socket: its own keypair (CURVE with the scheduler's key, or just
 * a valid key to announce when insecure). */
static void *worker_socket(void *ctx, const sched *s, qv_keypair *kp)
{
    if (qv_curve_available()) {
        zmq_curve_keypair(kp->pub, kp->sec);
    } else { /* a syntactically valid, unique key for enroll */
        static const char z[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        static unsigned seq;
        unsigned x = ++seq * 2654435761u;
        for (int i = 0; i < 40; i++, x = x * 1103515245u + 12345u)
            kp->pub[i] = z[(x >> 16) % 62];
        kp->pub[40] = 0;
    }
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    if (!sock)
        return NULL;
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if ((s->curve && qv_sock_curve_client(sock, kp, s->pub, NULL)) ||
        zmq_connect(sock, s->ep)) {
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

/* n enrollment tokens through a second store handle on the data folder. */
static int make_tokens(const sched *s, char (*tok)[QV_TOKEN_HEX], int n)
{
    qv_store *st = NULL;
    qv_err e = {0};
    if (qv_store_open(s->dir, NULL, &st, &e)) {
        fprintf(stderr, "bench_sched: store: %s\n", e.msg);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        if (qv_store_token_new(st, qv_store_now_ms(), 600000, tok[i], &e)) {
            fprintf(stderr, "bench_sched: token: %s\n", e.msg);
            rc = -1;
        }
    qv_store_close(&st);
    return rc;
}

/* ---- 1. submissions ------------------------------------------------------- */

typedef struct sub_res {
    int clients;
    uint64_t acked, errors, in_store;
    double secs, rate, cpu, lat_med, lat_p99;
    int ok;
    char rounds[160]; /* submits/s of every round, in order */
} sub_res;

typedef struct sub_thr {
    const sched *s;
    const char *blob;
    pthread_barrier_t *bar;
    double seconds;
    int idx;
    uint64_t acked, errors;
    double *lat;
    size_t nlat, cap;
    double t0, t1;
    int failed;
} sub_thr;

static void *sub_main(void *arg)
{
    sub_thr *t = arg;
    qv_client *c = NULL;
    qv_err e = {0};
    char name[64];
    snprintf(name, sizeof name, "bench-client-%d", t->idx);
    if (client_connect(t->s, name, &c, &e)) {
        fprintf(stderr, "bench_sched: client %d: %s\n", t->idx, e.msg);
        t->failed = 1;
    }
    pthread_barrier_wait(t->bar);
    if (t->failed)
        return NULL;
    t->t0 = now_s();
    double end = t->t0 + t->seconds;
    for (uint64_t k = 0;; k++) {
        double a = now_s();
        if (a >= end)
            break;
        snprintf(name, sizeof name, "c%d-%llu", t->idx, (unsigned long long)k);
        uint64_t job = 0;
        if (submit_one(c, t->blob, name, &job, &e)) {
            t->errors++;
            if (qv_client_timed_out(c))
                break;
            continue;
        }
        double b = now_s();
        t->acked++;
        if (t->nlat == t->cap) {
            size_t nc = t->cap ? 2 * t->cap : 4096;
            double *p = realloc(t->lat, nc * sizeof *p);
            if (!p)
                continue;
            t->lat = p, t->cap = nc;
        }
        t->lat[t->nlat++] = b - a;
    }
    t->t1 = now_s();
    qv_client_close(&c);
    return NULL;
}

static void bench_submit(int curve, int nclients, double seconds, sub_res *r)
{
    memset(r, 0, sizeof *r);
    r->clients = nclients;
    sched s;
    char blob[QV_SHA256_HEX];
    if (sched_start(&s, curve))
        return;
    if (upload_blob(&s, blob)) {
        sched_stop(&s);
        sched_remove(&s);
        return;
    }
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nclients + 1);
    sub_thr th[MAX_CLIENTS];
    pthread_t tid[MAX_CLIENTS];
    memset(th, 0, sizeof th);
    for (int i = 0; i < nclients; i++) {
        th[i] = (sub_thr){.s = &s, .blob = blob, .bar = &bar, .seconds = seconds,
                          .idx = i};
        pthread_create(&tid[i], NULL, sub_main, &th[i]);
    }
    pthread_barrier_wait(&bar);
    double c0 = proc_cpu(s.pid), w0 = now_s();
    for (int i = 0; i < nclients; i++)
        pthread_join(tid[i], NULL);
    double c1 = proc_cpu(s.pid), w1 = now_s();
    pthread_barrier_destroy(&bar);
    sched_stop(&s);

    size_t nlat = 0;
    int failed = 0;
    double t0 = 1e300, t1 = 0;
    for (int i = 0; i < nclients; i++) {
        r->acked += th[i].acked;
        r->errors += th[i].errors;
        nlat += th[i].nlat;
        failed |= th[i].failed;
        if (th[i].t0 && th[i].t0 < t0) t0 = th[i].t0;
        if (th[i].t1 > t1) t1 = th[i].t1;
    }
    double *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    size_t k = 0;
    for (int i = 0; i < nclients; i++) {
        if (lat)
            memcpy(lat + k, th[i].lat, th[i].nlat * sizeof *lat);
        k += th[i].nlat;
        free(th[i].lat);
    }
    if (lat && nlat) {
        qsort(lat, nlat, sizeof *lat, cmp_d);
        r->lat_med = pct(lat, nlat, 0.5) * 1e3;
        r->lat_p99 = pct(lat, nlat, 0.99) * 1e3;
    }
    free(lat);
    r->secs = t1 > t0 ? t1 - t0 : 0;
    r->rate = r->secs > 0 ? (double)r->acked / r->secs : 0;
    r->cpu = (c1 - c0) / (w1 - w0);

    /* every acknowledged job is in the store */
    qv_store *st = NULL;
    qv_err e = {0};
    if (qv_store_open(s.dir, NULL, &st, &e) == QV_OK) {
        qv_job *jobs = NULL;
        size_t n = 0;
        if (qv_store_list_jobs(st, 1, &jobs, &n, &e) == QV_OK)
            r->in_store = n;
        qv_jobs_free(&jobs, n);
        qv_store_close(&st);
    }
    sched_remove(&s);
    r->ok = !failed && r->acked > 0;
}

/* ---- 2. dispatch latency --------------------------------------------------- */

typedef struct disp {
    const sched *s;
    const char *blob, *token;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready, failed;
    atomic_int stop;
    uint64_t assigned_job, acked_job;
    double t_assign;
} disp;

static void *fake_worker(void *arg)
{
    disp *d = arg;
    void *ctx = zmq_ctx_new();
    qv_keypair kp;
    void *sock = worker_socket(ctx, d->s, &kp);
    int state = 0; /* 0 hello sent, 1 enroll sent, 2 enrolled */
    double next_hb = 0, hb = (double)LEASE_MS / 3e3, t_start = now_s();
    if (sock)
        send_hello(sock, "bench-worker");
    while (sock && !atomic_load(&d->stop)) {
        double now = now_s();
        if (state < 2 && now - t_start > 10) {
            fprintf(stderr, "bench_sched: the fake worker could not enroll\n");
            break;
        }
        if (state == 2 && now >= next_hb) {
            send_heartbeat(sock);
            next_hb = now + hb;
        }
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        qv_wire_msg *m;
        while ((m = wrecv(sock))) {
            double t = now_s();
            const msgpack_object *b = qv_wire_msg_body(m);
            qv_wire_type ty = qv_wire_msg_type(m);
            if (ty == QV_MSG_WELCOME && state == 0) {
                send_enroll(sock, d->token, kp.pub, "bench-worker");
                state = 1;
            } else if (ty == QV_MSG_ENROLLED && state == 1) {
                state = 2;
                send_heartbeat(sock);
                next_hb = t + hb;
                pthread_mutex_lock(&d->mu);
                d->ready = 1;
                pthread_cond_broadcast(&d->cv);
                pthread_mutex_unlock(&d->mu);
            } else if (ty == QV_MSG_ASSIGN) {
                uint64_t job = 0, attempt = 0;
                qv_wire_get_u64(b, "job", &job, NULL);
                qv_wire_get_u64(b, "attempt", &attempt, NULL);
                pthread_mutex_lock(&d->mu);
                d->assigned_job = job;
                d->t_assign = t;
                pthread_cond_broadcast(&d->cv);
                pthread_mutex_unlock(&d->mu);
                qv_wire_writer *w = wnew(QV_MSG_DONE, 4);
                qv_wire_kv_u64(w, "job", job);
                qv_wire_kv_u64(w, "attempt", attempt);
                qv_wire_kv_str(w, "adapter", d->blob);
                qv_wire_kv_str(w, "metrics", d->blob);
                wsend(sock, w);
            } else if (ty == QV_MSG_ACK) {
                uint64_t job = 0;
                qv_wire_get_u64(b, "job", &job, NULL);
                pthread_mutex_lock(&d->mu);
                d->acked_job = job;
                pthread_cond_broadcast(&d->cv);
                pthread_mutex_unlock(&d->mu);
            } else if (ty == QV_MSG_ERROR) {
                char code[64] = "", msg[256] = "";
                qv_wire_get_str(b, "code", code, sizeof code, NULL);
                qv_wire_get_str(b, "message", msg, sizeof msg, NULL);
                fprintf(stderr, "bench_sched: fake worker got error %s: %s\n", code, msg);
                if (state < 2)
                    atomic_store(&d->stop, 1);
            }
            qv_wire_msg_free(m);
        }
    }
    pthread_mutex_lock(&d->mu);
    if (!d->ready)
        d->failed = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (sock)
        zmq_close(sock);
    zmq_ctx_term(ctx);
    return NULL;
}

typedef struct disp_res {
    int samples, ok;
    double ack_med, ack_p90, ack_p99, ack_max, neg; /* ms; neg: share < 0 */
    double snd_med, snd_p90, snd_p99, snd_max;
    double rt_med; /* the submit's own round trip */
} disp_res;

/* Waits until pred holds or timeout_s passes; returns 0 if it holds. */
static int wait_for(disp *d, int (*pred)(disp *, uint64_t), uint64_t arg,
                    int timeout_s)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_s;
    int r = 0;
    pthread_mutex_lock(&d->mu);
    while (!pred(d, arg) && !d->failed && r == 0)
        r = pthread_cond_timedwait(&d->cv, &d->mu, &dl);
    int ok = pred(d, arg);
    pthread_mutex_unlock(&d->mu);
    return ok ? 0 : -1;
}

static int p_ready(disp *d, uint64_t a) { (void)a; return d->ready; }
static int p_assigned(disp *d, uint64_t j) { return d->assigned_job == j; }
static int p_acked(disp *d, uint64_t j) { return d->acked_job == j; }

static void bench_dispatch(int curve, int samples, disp_res *r)
{
    memset(r, 0, sizeof *r);
    sched s;
    char blob[QV_SHA256_HEX], tok[1][QV_TOKEN_HEX];
    if (sched_start(&s, curve))
        return;
    qv_client *c = NULL;
    qv_err e = {0};
    pthread_t wt;
    disp d = {.s = &s, .blob = blob, .token = curve ? tok[0] : ""};
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    double *ack = calloc((size_t)samples, sizeof *ack);
    double *snd = calloc((size_t)samples, sizeof *snd);
    double *rt = calloc((size_t)samples, sizeof *rt);
    int started = 0, n = 0;
    if (!ack || !snd || !rt || upload_blob(&s, blob) ||
        (curve && make_tokens(&s, tok, 1)))
        goto out;
    if (pthread_create(&wt, NULL, fake_worker, &d))
        goto out;
    started = 1;
    if (wait_for(&d, p_ready, 0, 15) || client_connect(&s, "bench-dispatch", &c, &e)) {
        fprintf(stderr, "bench_sched: dispatch set-up failed %s\n", e.msg);
        goto out;
    }
    for (int i = 0; i < samples; i++) {
        sleep_s(0.002); /* the worker sits idle a moment */
        char name[32];
        snprintf(name, sizeof name, "d%d", i);
        uint64_t job = 0;
        double t0 = now_s();
        if (submit_one(c, blob, name, &job, &e)) {
            fprintf(stderr, "bench_sched: submit: %s\n", e.msg);
            break;
        }
        double t1 = now_s();
        if (wait_for(&d, p_assigned, job, 10)) {
            fprintf(stderr, "bench_sched: job %llu was not assigned within 10 s\n",
                    (unsigned long long)job);
            break;
        }
        pthread_mutex_lock(&d.mu);
        double ta = d.t_assign;
        pthread_mutex_unlock(&d.mu);
        ack[n] = (ta - t1) * 1e3;
        snd[n] = (ta - t0) * 1e3;
        rt[n] = (t1 - t0) * 1e3;
        n++;
        if (wait_for(&d, p_acked, job, 10)) {
            fprintf(stderr, "bench_sched: done of job %llu not acknowledged\n",
                    (unsigned long long)job);
            break;
        }
    }
    if (n) {
        int neg = 0;
        for (int i = 0; i < n; i++)
            neg += ack[i] < 0;
        qsort(ack, (size_t)n, sizeof *ack, cmp_d);
        qsort(snd, (size_t)n, sizeof *snd, cmp_d);
        qsort(rt, (size_t)n, sizeof *rt, cmp_d);
        r->samples = n;
        r->ack_med = pct(ack, (size_t)n, 0.5);
        r->ack_p90 = pct(ack, (size_t)n, 0.9);
        r->ack_p99 = pct(ack, (size_t)n, 0.99);
        r->ack_max = ack[n - 1];
        r->neg = (double)neg / n;
        r->snd_med = pct(snd, (size_t)n, 0.5);
        r->snd_p90 = pct(snd, (size_t)n, 0.9);
        r->snd_p99 = pct(snd, (size_t)n, 0.99);
        r->snd_max = snd[n - 1];
        r->rt_med = pct(rt, (size_t)n, 0.5);
        r->ok = n == samples;
    }
out:
    qv_client_close(&c);
    if (started) {
        atomic_store(&d.stop, 1);
        pthread_join(wt, NULL);
    }
    free(ack);
    free(snd);
    free(rt);
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
    sched_stop(&s);
    sched_remove(&s);
}

/* ---- 3. many workers heartbeating ------------------------------------------ */

typedef struct hb_res {
    int workers, enrolled, ok, gens;
    double enroll_s, window_s, interval_s;
    uint64_t sent, replies;
    double cpu, cpu_idle, rtt_med, rtt_p99, rtt_max;
} hb_res;

#define GEN_MAX 4000 /* workers per generator process (2 descriptors each) */

typedef struct gen_ctx {
    void **sock;
    struct pollfd *pf;
    int *state;
    double *sent_t;
    double *rtt;
    size_t nrtt, rcap;
    int curve, enrolled;
    uint64_t sent, replies;
    double w_begin, w_end;
    const qv_keypair *kp;
    char (*tok)[QV_TOKEN_HEX];
    int first;
} gen_ctx;

/* Everything worker i has waiting (ZMQ_FD is edge-triggered: drain until
 * ZMQ_EVENTS says nothing is left). */
static void gen_drain(gen_ctx *g, int i)
{
    for (;;) {
        int ev = 0;
        size_t el = sizeof ev;
        if (zmq_getsockopt(g->sock[i], ZMQ_EVENTS, &ev, &el) || !(ev & ZMQ_POLLIN))
            return;
        qv_wire_msg *m = wrecv(g->sock[i]);
        if (!m)
            continue;
        qv_wire_type ty = qv_wire_msg_type(m);
        if (ty == QV_MSG_WELCOME && g->state[i] == 0) {
            char name[32];
            snprintf(name, sizeof name, "sim-%d", g->first + i);
            send_enroll(g->sock[i], g->curve ? g->tok[g->first + i] : "", g->kp[i].pub, name);
            g->state[i] = 1;
        } else if (ty == QV_MSG_ENROLLED && g->state[i] == 1) {
            g->state[i] = 2;
            g->enrolled++;
        } else if (ty == QV_MSG_HEARTBEAT) {
            /* a reply to a heartbeat sent inside the window */
            if (g->sent_t[i] >= g->w_begin && g->sent_t[i] < g->w_end) {
                g->replies++;
                if (g->nrtt < g->rcap)
                    g->rtt[g->nrtt++] = (now_s() - g->sent_t[i]) * 1e3;
                g->sent_t[i] = -1;
            }
        } else if (ty == QV_MSG_ERROR) {
            char code[64] = "", msg[256] = "";
            qv_wire_get_str(qv_wire_msg_body(m), "code", code, sizeof code, NULL);
            qv_wire_get_str(qv_wire_msg_body(m), "message", msg, sizeof msg, NULL);
            fprintf(stderr, "bench_sched: sim worker %d: %s: %s\n", g->first + i, code, msg);
            if (g->state[i] < 2)
                g->state[i] = 3;
        }
        qv_wire_msg_free(m);
    }
}

/* One generator process: workers [first, first + n) connect, enroll, say
 * so on wfd, read the window from rfd, heartbeat through it (and 2 s more
 * for the last replies), and write sent, replies and round trips to wfd. */
static int gen_main(const sched *s, char (*tok)[QV_TOKEN_HEX], int first, int n,
                    int total, double interval, int rfd, int wfd)
{
    gen_ctx g = {0};
    g.curve = s->curve;
    g.tok = tok;
    g.first = first;
    g.w_begin = g.w_end = 1e300;
    g.sock = calloc((size_t)n, sizeof *g.sock);
    g.pf = calloc((size_t)n, sizeof *g.pf);
    g.state = calloc((size_t)n, sizeof *g.state);
    g.sent_t = calloc((size_t)n, sizeof *g.sent_t);
    qv_keypair *kp = calloc((size_t)n, sizeof *kp);
    double *next = calloc((size_t)n, sizeof *next);
    g.kp = kp;
    void *ctx = zmq_ctx_new();
    if (!g.sock || !g.pf || !g.state || !g.sent_t || !kp || !next || !ctx)
        return 1;
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, n + 16);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        g.sock[i] = worker_socket(ctx, s, &kp[i]);
        size_t fl = sizeof(int);
        if (!g.sock[i] || zmq_getsockopt(g.sock[i], ZMQ_FD, &g.pf[i].fd, &fl)) {
            fprintf(stderr, "bench_sched: worker socket %d: %s\n", first + i,
                    zmq_strerror(zmq_errno()));
            return 1;
        }
        g.pf[i].events = POLLIN;
        send_hello(g.sock[i], "sim");
        gen_drain(&g, i);
    }
    while (g.enrolled < n && now_s() - t0 < 300) {
        int failed = 0;
        for (int i = 0; i < n; i++)
            failed += g.state[i] == 3;
        if (g.enrolled + failed == n)
            break;
        if (poll(g.pf, (nfds_t)n, 100) <= 0)
            continue;
        for (int i = 0; i < n; i++)
            if (g.pf[i].revents)
                gen_drain(&g, i);
    }
    double hdr[2] = {(double)g.enrolled, now_s() - t0};
    if (qv_write_all(wfd, hdr, sizeof hdr))
        return 1;
    double win[2]; /* window begin, end (CLOCK_MONOTONIC, shared) */
    if (qv_read_all(rfd, win, sizeof win) || win[0] <= 0)
        return 0; /* the parent gave up */
    g.rcap = (size_t)((win[1] - win[0]) / interval + 2) * (size_t)n;
    g.rtt = calloc(g.rcap, sizeof *g.rtt);
    if (!g.rtt)
        return 1;
    /* the heartbeats start one interval before the window, spread over it */
    double start = win[0] - interval;
    for (int i = 0; i < n; i++) {
        next[i] = start + interval * (first + i) / total;
        g.sent_t[i] = -1;
    }
    while (now_s() < start)
        sleep_s(0.001);
    g.w_begin = win[0], g.w_end = win[1];
    for (;;) {
        double now = now_s();
        if (now >= g.w_end + 2.0)
            break;
        for (int i = 0; i < n; i++)
            if (next[i] <= now && now < g.w_end) {
                send_heartbeat(g.sock[i]);
                g.sent_t[i] = now;
                if (now >= g.w_begin)
                    g.sent++;
                next[i] += interval;
                gen_drain(&g, i); /* a send can consume the edge */
            }
        if (poll(g.pf, (nfds_t)n, 1) <= 0)
            continue;
        for (int i = 0; i < n; i++)
            if (g.pf[i].revents)
                gen_drain(&g, i);
    }
    uint64_t res[3] = {g.sent, g.replies, g.nrtt};
    if (qv_write_all(wfd, res, sizeof res) || qv_write_all(wfd, g.rtt, g.nrtt * sizeof *g.rtt))
        return 1;
    for (int i = 0; i < n; i++)
        zmq_close(g.sock[i]);
    zmq_ctx_term(ctx);
    return 0;
}

static void bench_heartbeats(int curve, int nw, double seconds, hb_res *r)
{
    memset(r, 0, sizeof *r);
    r->workers = nw;
    r->interval_s = (double)LEASE_MS / 3e3;
    sched s;
    if (sched_start(&s, curve))
        return;
    int ng = (nw + GEN_MAX - 1) / GEN_MAX;
    r->gens = ng;
    char (*tok)[QV_TOKEN_HEX] = calloc((size_t)nw, sizeof *tok);
    pid_t pid[16] = {0};
    int to[16], from[16];
    double *rtt = NULL;
    size_t nrtt = 0;
    for (int k = 0; k < 16; k++)
        to[k] = from[k] = -1;
    if (!tok || ng > 16)
        goto out;
    if (curve && make_tokens(&s, tok, nw))
        goto out;
    /* idle scheduler CPU, for reference */
    double ci0 = proc_cpu(s.pid), wi0 = now_s();
    sleep_s(2.0);
    r->cpu_idle = (proc_cpu(s.pid) - ci0) / (now_s() - wi0);

    double t0 = now_s();
    for (int k = 0; k < ng; k++) {
        int a[2], b[2];
        if (pipe(a) || pipe(b))
            goto out;
        int first = k * nw / ng, n = (k + 1) * nw / ng - first;
        pid[k] = fork();
        if (pid[k] < 0)
            goto out;
        if (pid[k] == 0) {
            close(a[1]);
            close(b[0]);
            _exit(gen_main(&s, tok, first, n, nw, r->interval_s, a[0], b[1]));
        }
        close(a[0]);
        close(b[1]);
        to[k] = a[1];
        from[k] = b[0];
    }
    for (int k = 0; k < ng; k++) {
        double hdr[2];
        if (qv_read_all(from[k], hdr, sizeof hdr))
            goto out;
        r->enrolled += (int)hdr[0];
    }
    r->enroll_s = now_s() - t0;
    fprintf(stderr, "  %d of %d workers enrolled in %.1f s (%d generator process%s)\n",
            r->enrolled, nw, r->enroll_s, ng, ng == 1 ? "" : "es");
    if (r->enrolled < nw)
        goto out;
    /* one warm-up interval of heartbeats, then the measured window */
    double win[2] = {now_s() + 0.5 + r->interval_s, 0};
    win[1] = win[0] + seconds;
    for (int k = 0; k < ng; k++)
        if (qv_write_all(to[k], win, sizeof win))
            goto out;
    while (now_s() < win[0])
        sleep_s(0.001);
    double c0 = proc_cpu(s.pid), wb = now_s();
    while (now_s() < win[1])
        sleep_s(0.001);
    double c1 = proc_cpu(s.pid), we = now_s();
    r->window_s = we - wb;
    r->cpu = (c1 - c0) / (we - wb);
    for (int k = 0; k < ng; k++) {
        uint64_t res[3];
        if (qv_read_all(from[k], res, sizeof res))
            goto out;
        r->sent += res[0];
        r->replies += res[1];
        double *nr = realloc(rtt, (nrtt + res[2] + 1) * sizeof *rtt);
        if (!nr)
            goto out;
        rtt = nr;
        if (qv_read_all(from[k], rtt + nrtt, res[2] * sizeof *rtt))
            goto out;
        nrtt += res[2];
    }
    if (nrtt) {
        qsort(rtt, nrtt, sizeof *rtt, cmp_d);
        r->rtt_med = pct(rtt, nrtt, 0.5);
        r->rtt_p99 = pct(rtt, nrtt, 0.99);
        r->rtt_max = rtt[nrtt - 1];
    }
    r->ok = 1;
out:
    for (int k = 0; k < 16; k++) {
        if (to[k] >= 0) {
            if (!r->ok) { /* tell a waiting generator to stop */
                double stop[2] = {0, 0};
                (void)qv_write_all(to[k], stop, sizeof stop);
            }
            close(to[k]);
        }
        if (from[k] >= 0)
            close(from[k]);
        if (pid[k] > 0)
            waitpid(pid[k], NULL, 0);
    }
    free(tok);
    free(rtt);
    sched_stop(&s);
    sched_remove(&s);
}

/* ---- options and report ---------------------------------------------------- */

typedef struct opts {
    const char *out;
    char json[4200];
    double seconds, hb_seconds;
    int samples, workers, fleet, clients, rounds;
    int modes; /* bit 0 insecure, bit 1 curve */
} opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_sched [--out FILE] [--json FILE] [--seconds S] [--clients N]\n"
            "                   [--samples N] [--rounds N] [--workers N] [--fleet N]\n"
            "                   [--hb-seconds S] [--modes insecure,curve]\n"
            "  --out FILE       report (default " DEFAULT_OUT ")\n"
            "  --json FILE      every figure and the goals (default: --out with .json)\n"
            "  --seconds S      submitting time per run (default 3)\n"
            "  --rounds N       submission runs per case, interleaved (default 3)\n"
            "  --clients N      the several-clients case (default 4)\n"
            "  --samples N      dispatch latency samples (default 200)\n"
            "  --workers N      the fleet whose CPU is measured (default 1000)\n"
            "  --fleet N        the large fleet whose round trips are measured\n"
            "                   (default 10000)\n"
            "  --hb-seconds S   measured heartbeat window (default 10)\n"
            "  --modes LIST     insecure, curve or both (default both)\n");
}

static int parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){.out = DEFAULT_OUT, .seconds = 3, .hb_seconds = 10,
                .samples = 200, .workers = 1000, .fleet = 10000, .clients = 4,
                .rounds = 3, .modes = 3};
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!v)
            return -1;
        i++;
        if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--seconds")) o->seconds = atof(v);
        else if (!strcmp(a, "--hb-seconds")) o->hb_seconds = atof(v);
        else if (!strcmp(a, "--samples")) o->samples = atoi(v);
        else if (!strcmp(a, "--workers")) o->workers = atoi(v);
        else if (!strcmp(a, "--fleet")) o->fleet = atoi(v);
        else if (!strcmp(a, "--clients")) o->clients = atoi(v);
        else if (!strcmp(a, "--rounds")) o->rounds = atoi(v);
        else if (!strcmp(a, "--modes")) {
            o->modes = (strstr(v, "insecure") ? 1 : 0) | (strstr(v, "curve") ? 2 : 0);
        } else
            return -1;
    }
    if (o->seconds <= 0 || o->hb_seconds <= 0 || o->samples < 1 ||
        o->workers < 1 || o->workers > 64000 || o->fleet < 1 || o->fleet > 64000 ||
        o->clients < 2 || o->clients > MAX_CLIENTS || o->rounds < 1 || o->rounds > 9 ||
        !o->modes)
        return -1;
    if (json) {
        snprintf(o->json, sizeof o->json, "%s", json);
    } else {
        snprintf(o->json, sizeof o->json, "%s", o->out);
        size_t l = strlen(o->json);
        if (l > 3 && !strcmp(o->json + l - 3, ".md"))
            o->json[l - 3] = '\0';
        strncat(o->json, ".json", sizeof o->json - strlen(o->json) - 1);
    }
    return 0;
}

static const char *mode_name(int m) { return m ? "CURVE" : "insecure"; }

static void ratio(FILE *f, double a, double b)
{
    if (a > 0 && b > 0 && isfinite(a) && isfinite(b))
        fprintf(f, "%.2f", a / b);
    else
        fprintf(f, "-");
}

/* ---- goals (issue 14) --------------------------------------------------------- */

typedef struct goal {
    char name[160], target[64], measured[96];
    double value;
    int met, ran;
} goal;

#define MAX_GOALS 16

static int best_submits(const sub_res *r, double *v)
{
    *v = r[1].ok ? r[1].rate : 0;
    return r[1].ok;
}

static int make_goals(const opts *o, sub_res sr[2][2], disp_res dr[2],
                      hb_res hr[2][2], goal *g)
{
    int n = 0;
    for (int m = 0; m < 2; m++) {
        if (!(o->modes & (1 << m)))
            continue;
        double v;
        goal *x = &g[n++];
        snprintf(x->name, sizeof x->name, "durable submissions from %d clients, %s (group commit)",
                 o->clients, mode_name(m));
        snprintf(x->target, sizeof x->target, ">= 5000/s");
        if ((x->ran = best_submits(sr[m], &v))) {
            x->value = v, x->met = v >= 5000;
            snprintf(x->measured, sizeof x->measured, "%.0f/s", v);
        }
        x = &g[n++];
        snprintf(x->name, sizeof x->name, "p99 dispatch, submit to assign, %s", mode_name(m));
        snprintf(x->target, sizeof x->target, "< 5 ms");
        if ((x->ran = dr[m].samples > 0)) {
            x->value = dr[m].snd_p99, x->met = dr[m].snd_p99 < 5;
            snprintf(x->measured, sizeof x->measured, "%.2f ms", dr[m].snd_p99);
        }
        const hb_res *h = &hr[m][0];
        x = &g[n++];
        snprintf(x->name, sizeof x->name, "%d heartbeating workers: scheduler CPU, %s",
                 o->workers, mode_name(m));
        snprintf(x->target, sizeof x->target, "< 0.1 core");
        if ((x->ran = h->ok)) {
            x->value = h->cpu, x->met = h->cpu < 0.1;
            snprintf(x->measured, sizeof x->measured, "%.3f cores", h->cpu);
        }
        for (int k = 0; k < 2; k++) {
            h = &hr[m][k];
            x = &g[n++];
            snprintf(x->name, sizeof x->name, "%d workers: every heartbeat answered, %s",
                     k ? o->fleet : o->workers, mode_name(m));
            snprintf(x->target, sizeof x->target, "replies = heartbeats sent");
            if ((x->ran = h->ok)) {
                x->value = h->sent ? (double)h->replies / (double)h->sent : 0;
                x->met = h->sent > 0 && h->replies == h->sent;
                snprintf(x->measured, sizeof x->measured, "%llu of %llu",
                         (unsigned long long)h->replies, (unsigned long long)h->sent);
            }
        }
        h = &hr[m][1];
        x = &g[n++];
        snprintf(x->name, sizeof x->name, "%d workers: p99 heartbeat round trip, %s",
                 o->fleet, mode_name(m));
        snprintf(x->target, sizeof x->target, "< 50 ms");
        if ((x->ran = h->ok)) {
            x->value = h->rtt_p99, x->met = h->rtt_p99 < 50;
            snprintf(x->measured, sizeof x->measured, "%.2f ms", h->rtt_p99);
        }
    }
    return n;
}

/* A number, or null when there is none (NaN: not measured). */
static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static int write_json(const opts *o, const char *cmdline, const char *started,
                      sub_res sr[2][2], disp_res dr[2], hb_res hr[2][2],
                      const goal *g, int ng)
{
    struct utsname u;
    uname(&u);
    json_t *subs = json_array(), *dsp = json_array(), *hbs = json_array(),
           *goals = json_array();
    for (int m = 0; m < 2; m++) {
        if (!(o->modes & (1 << m)))
            continue;
        const char *mode = m ? "curve" : "insecure";
        for (int k = 0; k < 2; k++) {
            const sub_res *r = &sr[m][k];
            json_array_append_new(subs, json_pack(
                "{s:s, s:i, s:b, s:I, s:I, s:o, s:o, s:o, s:o, s:I, s:o, s:s}",
                "mode", mode, "clients", k ? o->clients : 1, "ok", r->ok,
                "acknowledged", (json_int_t)r->acked, "errors", (json_int_t)r->errors,
                "seconds", num(r->secs), "per_second", num(r->rate),
                "round_trip_median_ms", num(r->lat_med), "round_trip_p99_ms", num(r->lat_p99),
                "in_store", (json_int_t)r->in_store, "scheduler_cores", num(r->cpu),
                "per_second_every_round", r->rounds));
        }
        const disp_res *d = &dr[m];
        json_array_append_new(dsp, json_pack(
            "{s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "mode", mode,
            "samples", d->samples, "ack_to_assign_median_ms", num(d->ack_med),
            "ack_to_assign_p99_ms", num(d->ack_p99),
            "submit_to_assign_median_ms", num(d->snd_med),
            "submit_to_assign_p90_ms", num(d->snd_p90),
            "submit_to_assign_p99_ms", num(d->snd_p99),
            "submit_to_assign_max_ms", num(d->snd_max),
            "submit_round_trip_median_ms", num(d->rt_med)));
        for (int k = 0; k < 2; k++) {
            const hb_res *r = &hr[m][k];
            json_array_append_new(hbs, json_pack(
                "{s:s, s:b, s:i, s:i, s:i, s:o, s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:o, s:o}",
                "mode", mode, "ok", r->ok, "workers", r->workers, "enrolled", r->enrolled,
                "generator_processes", r->gens, "enroll_seconds", num(r->enroll_s),
                "interval_seconds", num(r->interval_s), "window_seconds", num(r->window_s),
                "sent", (json_int_t)r->sent, "replies", (json_int_t)r->replies,
                "scheduler_cores", num(r->cpu), "idle_cores", num(r->cpu_idle),
                "round_trip_median_ms", num(r->rtt_med), "round_trip_p99_ms", num(r->rtt_p99),
                "round_trip_max_ms", num(r->rtt_max)));
        }
    }
    for (int i = 0; i < ng; i++)
        json_array_append_new(goals, json_pack(
            "{s:s, s:s, s:o, s:o, s:b}", "name", g[i].name, "target", g[i].target,
            "measured", g[i].ran ? json_string(g[i].measured) : json_null(),
            "value", g[i].ran ? num(g[i].value) : json_null(), "met", g[i].ran && g[i].met));
    char zmq[32];
    snprintf(zmq, sizeof zmq, "%d.%d.%d", ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR,
             ZMQ_VERSION_PATCH);
    json_t *j = json_pack("{s:s, s:s, s:{s:s, s:s, s:I}, s:i, s:i, s:s, s:o, s:o, s:o, s:o}",
                          "command", cmdline, "date", started, "machine", "system",
                          u.sysname, "arch", u.machine, "cores",
                          (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "lease_ms", LEASE_MS,
                          "tick_ms", TICK_MS, "libzmq", zmq, "submissions", subs,
                          "dispatch", dsp, "heartbeats", hbs, "goals", goals);
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    qv_err e = {0};
    qv_status st = text ? qv_file_write_atomic(o->json, "JSON report",
                                               &(qv_file_part){text, strlen(text)}, 1, &e)
                        : qv_fail(&e, QV_ERR_NOMEM, "out of memory making the JSON report");
    free(text);
    if (st != QV_OK) {
        fprintf(stderr, "bench_sched: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int write_report(const opts *o, const char *cmdline, const char *started,
                        sub_res sr[2][2], disp_res dr[2], hb_res hr[2][2],
                        const goal *g, int ng)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", o->out);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "bench_sched: cannot write %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    struct utsname u;
    uname(&u);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    int both = o->modes == 3;

    fprintf(f, "# Scheduler: submissions, dispatch, heartbeats\n\n");
    fprintf(f, "Command:\n\n    %s\n\n", cmdline);
    fprintf(f, "- Date: %s\n", started);
    fprintf(f, "- Machine: %s %s, %ld CPU cores, %.1f GiB memory\n", u.sysname,
            u.machine, ncpu, (double)pages * (double)psz / (1024.0 * 1024 * 1024));
    fprintf(f, "- libzmq %d.%d.%d, CURVE %s; the scheduler (scheduler/server.c) in a "
               "child process, a fresh data folder in /tmp per measurement, SQLite "
               "WAL with synchronous=FULL, bound to 127.0.0.1; lease %d ms, tick "
               "%d ms (the defaults); no log.\n",
            ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH,
            qv_curve_available() ? "available" : "not available", LEASE_MS, TICK_MS);
    fprintf(f, "- Clients, fake workers and the scheduler share the machine's %ld "
               "cores. Ratios are measured side by side in one run. Every figure "
               "is also in `%s`.\n\n", ncpu, o->json);

    fprintf(f, "## Goals (issue 14)\n\n| goal | target | measured | met |\n|---|---|---|---|\n");
    for (int i = 0; i < ng; i++)
        fprintf(f, "| %s | %s | %s | %s |\n", g[i].name, g[i].target,
                g[i].ran ? g[i].measured : "did not run",
                g[i].ran ? (g[i].met ? "yes" : "**no**") : "**no**");

    fprintf(f, "\n## Durable submissions\n\n");
    fprintf(f, "Clients (threads, each its own `qv_client`) submit small jobs "
               "(name, model, data: one uploaded 16-byte blob) back to back for "
               "%.0f s; each `submitted` reply comes after the job's commit. The "
               "scheduler handles every message that is ready in one store group "
               "and commits it with one fsync before any of their replies leave "
               "(group commit); `tests/test_scheduler.c` kills it with -9 under "
               "load and finds every acknowledged job. "
               "Each case runs %d times, the cases interleaved (round 1: 1 client "
               "insecure, CURVE, %d clients insecure, CURVE; round 2 ...); the "
               "table shows the median round by submits/s, and every round's "
               "submits/s. "
               "\"In store\" counts the jobs found in the scheduler's database "
               "after it stopped. Scheduler CPU is in cores (CPU seconds of its "
               "process / wall seconds).\n\n", o->seconds, o->rounds, o->clients);
    fprintf(f, "| mode | clients | acknowledged | errors | seconds | submits/s | "
               "round trip median ms | p99 ms | in store | scheduler CPU (cores) | "
               "submits/s, every round |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < 2; m++) {
        if (!(o->modes & (1 << m)))
            continue;
        for (int k = 0; k < 2; k++) {
            const sub_res *r = &sr[m][k];
            if (!r->ok) {
                fprintf(f, "| %s | %d | failed | | | | | | | | %s |\n", mode_name(m),
                        k ? o->clients : 1, r->rounds);
                continue;
            }
            fprintf(f, "| %s | %d | %llu | %llu | %.2f | %.0f | %.2f | %.2f | %llu | %.2f | %s |\n",
                    mode_name(m), r->clients, (unsigned long long)r->acked,
                    (unsigned long long)r->errors, r->secs, r->rate, r->lat_med,
                    r->lat_p99, (unsigned long long)r->in_store, r->cpu, r->rounds);
        }
    }
    fprintf(f, "\n| ratio | insecure | CURVE |\n|---|---|---|\n");
    fprintf(f, "| %d clients / 1 client (submits/s) | ", o->clients);
    ratio(f, sr[0][1].rate, sr[0][0].rate);
    fprintf(f, " | ");
    ratio(f, sr[1][1].rate, sr[1][0].rate);
    fprintf(f, " |\n");
    if (both) {
        fprintf(f, "\n| ratio | 1 client | %d clients |\n|---|---|---|\n", o->clients);
        fprintf(f, "| CURVE / insecure (submits/s) | ");
        ratio(f, sr[1][0].rate, sr[0][0].rate);
        fprintf(f, " | ");
        ratio(f, sr[1][1].rate, sr[0][1].rate);
        fprintf(f, " |\n");
    }

    fprintf(f, "\n## Dispatch latency\n\n");
    fprintf(f, "One fake worker (a DEALER speaking docs/protocol.md: hello, enroll "
               "— with a token from `qv_store_token_new` under CURVE —, heartbeat) "
               "with one idle `ref` device. A client submits a job; the worker "
               "timestamps `assign` on receipt, answers `done`, and the next job "
               "is submitted 2 ms after the `ack` freed the device. \"ack → "
               "assign\" is from the client receiving `submitted` to the worker "
               "receiving `assign` (negative when `assign` arrived first); "
               "\"submit → assign\" is from the client sending "
               "`submit`, which bounds it above. Milliseconds; %d samples per "
               "mode.\n\n", o->samples);
    fprintf(f, "| mode | samples | ack → assign median | p90 | p99 | max | "
               "assign first | submit → assign median | p90 | p99 | max | "
               "submit round trip median |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < 2; m++) {
        if (!(o->modes & (1 << m)))
            continue;
        const disp_res *r = &dr[m];
        if (!r->samples) {
            fprintf(f, "| %s | failed | | | | | | | | | | |\n", mode_name(m));
            continue;
        }
        fprintf(f, "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.0f%% | %.3f | %.3f | "
                   "%.3f | %.3f | %.3f |\n",
                mode_name(m), r->samples, r->ack_med, r->ack_p90, r->ack_p99,
                r->ack_max, 100 * r->neg, r->snd_med, r->snd_p90, r->snd_p99,
                r->snd_max, r->rt_med);
    }
    if (both) {
        fprintf(f, "\nCURVE / insecure, submit → assign median: ");
        ratio(f, dr[1].snd_med, dr[0].snd_med);
        fprintf(f, "; p99: ");
        ratio(f, dr[1].snd_p99, dr[0].snd_p99);
        fprintf(f, ".\n");
    }
    fprintf(f, "\nDispatch runs once after each batch of messages that may have made "
               "a job runnable (a submit, an enroll, a device freed, a worker done "
               "tuning), and at the tick (%d ms) only when a lease ended or a "
               "worker was lost, plus a pass every lease/2; it stops at once when "
               "no device is idle or the queue is empty.\n", TICK_MS);

    fprintf(f, "\n## Many workers heartbeating\n\n");
    fprintf(f, "Simulated workers (DEALER sockets in generator processes of at most "
               "%d workers each, each worker its own key; under CURVE each enrolled "
               "with its own token) with one idle `ref` device each and an empty "
               "queue, heartbeating every lease/3 = %.2f s as `qvac worker` does, "
               "spread evenly. After one warm-up interval the scheduler's CPU is "
               "measured over %.0f s; replies to the heartbeats sent in the window "
               "are awaited 2 s past it. Idle CPU: the same scheduler with no peer, "
               "for 2 s, before the workers connect. Round trip: heartbeat sent to "
               "the scheduler's heartbeat received (ms), as the generators see it "
               "(they share the 2 cores with the scheduler). A heartbeat touches no "
               "store and runs no dispatch: it is kept in memory and written at the "
               "tick, for all workers in one change, at most every lease/4 per "
               "worker.\n\n", GEN_MAX, (double)LEASE_MS / 3e3, o->hb_seconds);
    fprintf(f, "| mode | workers | enroll all (s) | window (s) | heartbeats sent | "
               "replies | heartbeats/s | scheduler CPU (cores) | idle CPU (cores) "
               "| round trip median | p99 | max |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < 2; k++) {
            if (!(o->modes & (1 << m)))
                continue;
            const hb_res *r = &hr[m][k];
            if (!r->ok) {
                fprintf(f, "| %s | %d | failed (%d enrolled) | | | | | | | | | |\n",
                        mode_name(m), r->workers, r->enrolled);
                continue;
            }
            fprintf(f, "| %s | %d | %.1f | %.1f | %llu | %llu | %.0f | %.3f | %.3f | "
                       "%.2f | %.2f | %.2f |\n",
                    mode_name(m), r->workers, r->enroll_s, r->window_s,
                    (unsigned long long)r->sent, (unsigned long long)r->replies,
                    (double)r->replies / r->window_s, r->cpu, r->cpu_idle, r->rtt_med,
                    r->rtt_p99, r->rtt_max);
        }
    if (both) {
        fprintf(f, "\nCURVE / insecure, scheduler CPU: %d workers ", o->workers);
        ratio(f, hr[1][0].cpu, hr[0][0].cpu);
        fprintf(f, ", %d workers ", o->fleet);
        ratio(f, hr[1][1].cpu, hr[0][1].cpu);
        fprintf(f, ".\n");
    }
    fprintf(f, "\nThe p99 of %d samples is their %dth smallest; with few samples "
               "it is close to the maximum.\n", o->samples,
            (int)ceil(0.99 * o->samples));
    if (fclose(f)) {
        fprintf(stderr, "bench_sched: cannot write %s\n", tmp);
        return -1;
    }
    if (rename(tmp, o->out)) {
        fprintf(stderr, "bench_sched: cannot rename %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--serve"))
        return serve_main(argv[2], argv[3]);
    opts o;
    if (parse_opts(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    if ((o.modes & 2) && !qv_curve_available()) {
        fprintf(stderr, "bench_sched: libzmq has no CURVE: insecure only\n");
        o.modes &= 1;
        if (!o.modes)
            return 1;
    }
    /* enough descriptors for the simulated workers (both ends) */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    char cmdline[2048];
    size_t cl = 0;
    cmdline[0] = 0;
    for (int i = 0; i < argc && cl < sizeof cmdline - 1; i++)
        cl += (size_t)snprintf(cmdline + cl, sizeof cmdline - cl, "%s%s",
                               i ? " " : "", argv[i]);
    char started[64];
    time_t now = time(NULL);
    strftime(started, sizeof started, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));

    static sub_res sr[2][2];
    static disp_res dr[2];
    static hb_res hr[2][2];
    double t_all = now_s();
    /* rounds interleave the cases (1 client insecure, CURVE, N clients
     * insecure, CURVE, then again), so that drift in the disk's fsync time
     * falls on every case alike; each case reports its median round */
    static sub_res all[9][2][2];
    for (int rd = 0; rd < o.rounds; rd++)
        for (int k = 0; k < 2; k++)
            for (int m = 0; m < 2; m++) {
                if (!(o.modes & (1 << m)))
                    continue;
                int nc = k ? o.clients : 1;
                fprintf(stderr, "round %d: %s, %d client(s) submitting for %.0f s\n",
                        rd + 1, mode_name(m), nc, o.seconds);
                sub_res *r = &all[rd][m][k];
                bench_submit(m, nc, o.seconds, r);
                fprintf(stderr, "  %llu acknowledged, %.0f/s, %llu in store\n",
                        (unsigned long long)r->acked, r->rate,
                        (unsigned long long)r->in_store);
            }
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < 2; k++) {
            sub_res *v[9];
            int n = 0, ok = 1;
            for (int rd = 0; rd < o.rounds; rd++) {
                v[n++] = &all[rd][m][k];
                ok &= all[rd][m][k].ok;
            }
            for (int i = 1; i < n; i++) /* sort by rate */
                for (int j = i; j > 0 && v[j]->rate < v[j - 1]->rate; j--) {
                    sub_res *t = v[j];
                    v[j] = v[j - 1], v[j - 1] = t;
                }
            sr[m][k] = *v[n / 2];
            sr[m][k].ok = ok;
            size_t len = 0;
            for (int rd = 0; rd < o.rounds && len < sizeof sr[m][k].rounds; rd++)
                len += (size_t)snprintf(sr[m][k].rounds + len, sizeof sr[m][k].rounds - len,
                                        "%s%.0f", rd ? ", " : "", all[rd][m][k].rate);
        }
    for (int m = 0; m < 2; m++) {
        if (!(o.modes & (1 << m)))
            continue;
        fprintf(stderr, "%s: dispatch latency, %d samples\n", mode_name(m), o.samples);
        bench_dispatch(m, o.samples, &dr[m]);
        fprintf(stderr, "  submit -> assign median %.3f ms, p99 %.3f ms\n",
                dr[m].snd_med, dr[m].snd_p99);
    }
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < 2; k++) {
            if (!(o.modes & (1 << m)))
                continue;
            int nw = k ? o.fleet : o.workers;
            fprintf(stderr, "%s: %d workers heartbeating, %.0f s window\n", mode_name(m),
                    nw, o.hb_seconds);
            bench_heartbeats(m, nw, o.hb_seconds, &hr[m][k]);
            fprintf(stderr, "  scheduler CPU %.3f cores, %llu/%llu replies, p99 %.2f ms\n",
                    hr[m][k].cpu, (unsigned long long)hr[m][k].replies,
                    (unsigned long long)hr[m][k].sent, hr[m][k].rtt_p99);
        }
    goal g[MAX_GOALS];
    memset(g, 0, sizeof g);
    int ng = make_goals(&o, sr, dr, hr, g);
    if (write_report(&o, cmdline, started, sr, dr, hr, g, ng) ||
        write_json(&o, cmdline, started, sr, dr, hr, g, ng))
        return 1;
    fprintf(stderr, "wrote %s and %s (%.0f s)\n", o.out, o.json, now_s() - t_all);
    int ok = 1;
    for (int m = 0; m < 2; m++)
        if (o.modes & (1 << m))
            ok &= sr[m][0].ok && sr[m][1].ok && dr[m].ok && hr[m][0].ok && hr[m][1].ok;
    return ok ? 0 : 1;
}
