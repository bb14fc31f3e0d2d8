/* tests/test_wire.c — the wire protocol (formats/wire.c, docs/protocol.md).
 *
 * Round trips go through the writer and back through qv_wire_decode with
 * the frames copied into fresh buffers. Hostile bodies are packed here with
 * msgpack-c's packer directly, or byte by byte, never with the writer under
 * test, so the decoder sees what a careless or malicious peer would send. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "formats/wire.h"

#define H1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define H2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define H3 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* ---- helpers ----------------------------------------------------------- */

typedef void (*nested_fn)(qv_wire_writer *w);

/* Builds a message of type t from nf (key, code, value) triples: code 's'
 * string, 'u' u64, 'i' i64, 'f' double, 'b' bool (int), 'x' bin (ptr,
 * size_t), 'n' nested (a nested_fn writing the value). */
static qv_status build(qv_wire_out *out, qv_err *err, qv_wire_type t, int nf,
                       ...)
{
    qv_wire_writer *w;
    qv_status st = qv_wire_writer_new(t, (size_t)nf, &w, err);
    cr_assert_eq(st, QV_OK);
    va_list ap;
    va_start(ap, nf);
    for (int i = 0; i < nf; ++i) {
        const char *k = va_arg(ap, const char *);
        int code = va_arg(ap, int);
        switch (code) {
        case 's': qv_wire_kv_str(w, k, va_arg(ap, const char *)); break;
        case 'u': qv_wire_kv_u64(w, k, va_arg(ap, uint64_t)); break;
        case 'i': qv_wire_kv_i64(w, k, va_arg(ap, int64_t)); break;
        case 'f': qv_wire_kv_f64(w, k, va_arg(ap, double)); break;
        case 'b': qv_wire_kv_bool(w, k, va_arg(ap, int)); break;
        case 'x': {
            const void *d = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            qv_wire_kv_bin(w, k, d, n);
            break;
        }
        case 'n':
            qv_wire_w_key(w, k);
            va_arg(ap, nested_fn)(w);
            break;
        default: cr_assert_fail("bad code %c", code);
        }
    }
    va_end(ap);
    st = qv_wire_finish(w, out, err);
    qv_wire_writer_free(w);
    return st;
}

/* Decodes out's frames from fresh exact-size copies. */
static qv_status redecode(const qv_wire_out *out, qv_wire_msg **m,
                          qv_err *err)
{
    qv_wire_frame f[3];
    void *copies[3];
    for (int i = 0; i < 3; ++i) {
        copies[i] = malloc(out->frame[i].size ? out->frame[i].size : 1);
        memcpy(copies[i], out->frame[i].data, out->frame[i].size);
        f[i] = (qv_wire_frame){copies[i], out->frame[i].size};
    }
    qv_status st = qv_wire_decode(f, 3, m, err);
    for (int i = 0; i < 3; ++i) {
        memset(copies[i], 0xee, out->frame[i].size); /* msg must own its copy */
        free(copies[i]);
    }
    return st;
}

static qv_wire_msg *roundtrip(qv_wire_out *out, qv_wire_type t)
{
    qv_wire_msg *m = NULL;
    qv_err err;
    cr_assert_eq(out->frame[0].size, 5);
    cr_assert(!memcmp(out->frame[0].data, "QVAC\x01", 5));
    cr_assert_eq(out->frame[1].size, strlen(qv_wire_type_name(t)));
    cr_assert(!memcmp(out->frame[1].data, qv_wire_type_name(t),
                      out->frame[1].size));
    qv_status st = redecode(out, &m, &err);
    cr_assert_eq(st, QV_OK, "%s", err.msg);
    cr_assert_eq(qv_wire_msg_type(m), t);
    qv_wire_out_free(out);
    return m;
}

#define BUILD_OK(out, ...)                                                   \
    do {                                                                     \
        qv_err e_;                                                           \
        qv_status s_ = build(out, &e_, __VA_ARGS__);                         \
        cr_assert_eq(s_, QV_OK, "%s", e_.msg);                               \
    } while (0)

static uint64_t U(const qv_wire_msg *m, const char *k)
{
    uint64_t v = 0;
    qv_err err;
    cr_assert_eq(qv_wire_get_u64(qv_wire_msg_body(m), k, &v, &err), QV_OK,
                 "%s", err.msg);
    return v;
}

static void S(const qv_wire_msg *m, const char *k, const char *want)
{
    char buf[QV_WIRE_MAX_TEXT + 1];
    qv_err err;
    cr_assert_eq(qv_wire_get_str(qv_wire_msg_body(m), k, buf, sizeof buf,
                                 &err), QV_OK, "%s", err.msg);
    cr_assert_str_eq(buf, want);
}

/* A hostile body packed with msgpack-c directly. */
typedef struct hb {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} hb;

static void hb_init(hb *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}
static void hb_key(hb *b, const char *k)
{
    msgpack_pack_str_with_body(&b->pk, k, strlen(k));
}
static void hb_str(hb *b, const char *k, const char *v)
{
    hb_key(b, k);
    msgpack_pack_str_with_body(&b->pk, v, strlen(v));
}
static void hb_u64(hb *b, const char *k, uint64_t v)
{
    hb_key(b, k);
    msgpack_pack_uint64(&b->pk, v);
}

static qv_status dec(qv_wire_type t, const hb *b, qv_err *err)
{
    qv_wire_msg *m = NULL;
    /* exact-size copy so ASan sees any over-read */
    void *copy = malloc(b->sb.size ? b->sb.size : 1);
    memcpy(copy, b->sb.data, b->sb.size);
    qv_status st = qv_wire_decode_body(t, copy, b->sb.size, &m, err);
    free(copy);
    if (st == QV_OK)
        cr_assert_not_null(m);
    else
        cr_assert_null(m);
    qv_wire_msg_free(m);
    return st;
}

static qv_status dec_raw(qv_wire_type t, const void *p, size_t n,
                         qv_err *err)
{
    qv_wire_msg *m = NULL;
    void *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    qv_status st = qv_wire_decode_body(t, copy, n, &m, err);
    free(copy);
    qv_wire_msg_free(m);
    return st;
}

#define EXPECT(st, code, needle, err)                                        \
    do {                                                                     \
        cr_assert_eq(st, code, "status %d (%s)", (int)(st), (err).msg);      \
        cr_assert_not_null(strstr((err).msg, needle), "message: %s",         \
                           (err).msg);                                       \
    } while (0)

/* ---- round trips of every type ---------------------------------------- */

static void w_devices(qv_wire_writer *w)
{
    qv_wire_w_array(w, 2);
    qv_wire_w_map(w, 5);
    qv_wire_kv_str(w, "id", "opencl:0");
    qv_wire_kv_str(w, "backend", "opencl");
    qv_wire_kv_str(w, "name", "pthread-cpu");
    qv_wire_kv_u64(w, "memory", 8ull << 30);
    qv_wire_kv_map(w, "tuned", 2);
    qv_wire_kv_f64(w, "matmul_tq2", 41.5);
    qv_wire_kv_u64(w, "lora_fwd", 12);
    qv_wire_w_map(w, 4);
    qv_wire_kv_str(w, "id", "vulkan:0");
    qv_wire_kv_str(w, "backend", "vulkan");
    qv_wire_kv_str(w, "name", "llvmpipe");
    qv_wire_kv_u64(w, "memory", 1ull << 30);
}

static void w_running(qv_wire_writer *w)
{
    qv_wire_w_array(w, 1);
    qv_wire_w_map(w, 4);
    qv_wire_kv_u64(w, "job", 7);
    qv_wire_kv_u64(w, "attempt", 2);
    qv_wire_kv_u64(w, "step", 120);
    qv_wire_kv_str(w, "device", "opencl:0");
}

static void w_options(qv_wire_writer *w)
{
    qv_wire_w_map(w, 4);
    qv_wire_kv_u64(w, "steps", 200);
    qv_wire_kv_f64(w, "lr", 1e-3);
    qv_wire_kv_str(w, "weights", "ternary");
    qv_wire_kv_bool(w, "pack", true);
}

static void w_needs(qv_wire_writer *w)
{
    qv_wire_w_map(w, 2);
    qv_wire_kv_str(w, "backend", "vulkan");
    qv_wire_kv_u64(w, "memory", 512ull << 20);
}

static void w_jobs(qv_wire_writer *w)
{
    qv_wire_w_array(w, 2);
    qv_wire_w_map(w, 7);
    qv_wire_kv_u64(w, "id", 1);
    qv_wire_kv_str(w, "name", "pirate");
    qv_wire_kv_str(w, "state", "running");
    qv_wire_kv_i64(w, "priority", -3);
    qv_wire_kv_f64(w, "loss", 1.25);
    qv_wire_kv_u64(w, "step", 40);
    qv_wire_kv_str(w, "adapter", H1);
    qv_wire_w_map(w, 4);
    qv_wire_kv_u64(w, "id", 2);
    qv_wire_kv_str(w, "name", "big");
    qv_wire_kv_str(w, "state", "queued");
    qv_wire_kv_str(w, "unrunnable", "no device has 64 GiB");
}

static void w_workers(qv_wire_writer *w)
{
    qv_wire_w_array(w, 1);
    qv_wire_w_map(w, 5);
    qv_wire_kv_u64(w, "id", 3);
    qv_wire_kv_str(w, "name", "box-a");
    qv_wire_kv_str(w, "state", "busy");
    qv_wire_kv_u64(w, "last_seen_ms", 1700000000000ull);
    qv_wire_w_key(w, "devices");
    w_devices(w);
}

static void w_events(qv_wire_writer *w)
{
    qv_wire_w_array(w, 2);
    qv_wire_w_map(w, 4);
    qv_wire_kv_u64(w, "seq", 0);
    qv_wire_kv_u64(w, "t_ms", 1000);
    qv_wire_kv_str(w, "text", "queued");
    qv_wire_kv_str(w, "state", "queued");
    qv_wire_w_map(w, 3);
    qv_wire_kv_u64(w, "seq", 1);
    qv_wire_kv_u64(w, "t_ms", 1500);
    qv_wire_kv_str(w, "text", "assigned to box-a opencl:0 (attempt 1) \xc3\xa9");
}

Test(wire, hello_welcome)
{
    qv_wire_out o;
    BUILD_OK(&o, QV_MSG_HELLO, 3, "role", 's', "worker", "name", 's',
             "box-a", "version", 's', "0.1.0");
    qv_wire_msg *m = roundtrip(&o, QV_MSG_HELLO);
    S(m, "role", "worker");
    S(m, "name", "box-a");
    S(m, "version", "0.1.0");
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_WELCOME, 7, "scheduler", 's', "sched", "version", 's',
             "0.1.0", "hash", 's', "sha256", "lease_ms", 'u', (uint64_t)10000,
             "chunk", 'u', (uint64_t)QV_WIRE_MAX_CHUNK, "credit", 'u',
             (uint64_t)(8u << 20), "enrolled", 'b', 1);
    m = roundtrip(&o, QV_MSG_WELCOME);
    cr_assert_eq(U(m, "lease_ms"), 10000);
    cr_assert_eq(U(m, "chunk"), 1u << 20);
    cr_assert_eq(U(m, "credit"), 8u << 20);
    S(m, "hash", "sha256");
    bool b = false;
    cr_assert_eq(qv_wire_get_bool(qv_wire_msg_body(m), "enrolled", &b, NULL),
                 QV_OK);
    cr_assert(b);
    qv_wire_msg_free(m);
}

Test(wire, enroll_enrolled_heartbeat)
{
    qv_wire_out o;
    qv_err err;
    BUILD_OK(&o, QV_MSG_ENROLL, 4, "token", 's', "tok-123", "key", 's',
             "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", "name", 's', "box-a",
             "devices", 'n', w_devices);
    qv_wire_msg *m = roundtrip(&o, QV_MSG_ENROLL);
    S(m, "key", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    const msgpack_object *devs, *tuned;
    size_t n;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "devices", &devs, &n,
                                   QV_WIRE_MAX_DEVICES, &err), QV_OK);
    cr_assert_eq(n, 2);
    uint64_t mem;
    char backend[16];
    cr_assert_eq(qv_wire_get_u64(&devs[0], "memory", &mem, &err), QV_OK);
    cr_assert_eq(mem, 8ull << 30);
    cr_assert_eq(qv_wire_get_str(&devs[1], "backend", backend, sizeof backend,
                                 &err), QV_OK);
    cr_assert_str_eq(backend, "vulkan");
    cr_assert_eq(qv_wire_get_map(&devs[0], "tuned", &tuned, &err), QV_OK);
    double g;
    cr_assert_eq(qv_wire_get_f64(tuned, "matmul_tq2", &g, &err), QV_OK);
    cr_assert_float_eq(g, 41.5, 0);
    cr_assert_eq(qv_wire_get_f64(tuned, "lora_fwd", &g, &err), QV_OK);
    cr_assert_float_eq(g, 12.0, 0);
    cr_assert_eq(qv_wire_get_map(&devs[1], "tuned", &tuned, &err),
                 QV_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(err.msg, "tuned"));
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_ENROLLED, 1, "worker", 'u', (uint64_t)3);
    m = roundtrip(&o, QV_MSG_ENROLLED);
    cr_assert_eq(U(m, "worker"), 3);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_HEARTBEAT, 1, "running", 'n', w_running);
    m = roundtrip(&o, QV_MSG_HEARTBEAT);
    const msgpack_object *run;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "running", &run, &n,
                                   64, &err), QV_OK);
    cr_assert_eq(n, 1);
    uint64_t v;
    qv_wire_get_u64(&run[0], "attempt", &v, NULL);
    cr_assert_eq(v, 2);
    qv_wire_get_u64(&run[0], "step", &v, NULL);
    cr_assert_eq(v, 120);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_HEARTBEAT, 0); /* the scheduler's answer */
    m = roundtrip(&o, QV_MSG_HEARTBEAT);
    cr_assert_eq(qv_wire_msg_body(m)->via.map.size, 0);
    qv_wire_msg_free(m);
}

Test(wire, submit_and_client_requests)
{
    qv_wire_out o;
    qv_err err;
    BUILD_OK(&o, QV_MSG_SUBMIT, 6, "name", 's', "pirate", "priority", 'i',
             (int64_t)-5, "model", 's', H1, "data", 's', H2, "options", 'n',
             w_options, "needs", 'n', w_needs);
    qv_wire_msg *m = roundtrip(&o, QV_MSG_SUBMIT);
    const msgpack_object *body = qv_wire_msg_body(m), *opts, *needs;
    int64_t prio;
    cr_assert_eq(qv_wire_get_i64(body, "priority", &prio, &err), QV_OK);
    cr_assert_eq(prio, -5);
    S(m, "model", H1);
    S(m, "data", H2);
    cr_assert_eq(qv_wire_get_map(body, "options", &opts, &err), QV_OK);
    double lr;
    uint64_t steps;
    cr_assert_eq(qv_wire_get_f64(opts, "lr", &lr, &err), QV_OK);
    cr_assert_float_eq(lr, 1e-3, 0);
    cr_assert_eq(qv_wire_get_u64(opts, "steps", &steps, &err), QV_OK);
    cr_assert_eq(steps, 200);
    cr_assert_eq(qv_wire_get_map(body, "needs", &needs, &err), QV_OK);
    uint64_t mem;
    cr_assert_eq(qv_wire_get_u64(needs, "memory", &mem, &err), QV_OK);
    cr_assert_eq(mem, 512ull << 20);

    /* the scheduler forwards options unchanged into assign */
    qv_wire_writer *w;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_ASSIGN, 9, &w, &err), QV_OK);
    qv_wire_kv_u64(w, "job", 7);
    qv_wire_kv_u64(w, "attempt", 2);
    qv_wire_kv_str(w, "device", "opencl:0");
    qv_wire_kv_str(w, "model", H1);
    qv_wire_kv_str(w, "data", H2);
    qv_wire_kv_object(w, "options", opts);
    qv_wire_kv_str(w, "resume", H3);
    qv_wire_kv_u64(w, "resume_step", 100);
    qv_wire_kv_u64(w, "checkpoint_every", 50);
    cr_assert_eq(qv_wire_finish(w, &o, &err), QV_OK, "%s", err.msg);
    qv_wire_writer_free(w);
    qv_wire_msg_free(m);
    m = roundtrip(&o, QV_MSG_ASSIGN);
    cr_assert_eq(U(m, "attempt"), 2);
    cr_assert_eq(U(m, "resume_step"), 100);
    S(m, "resume", H3);
    cr_assert_eq(qv_wire_get_map(qv_wire_msg_body(m), "options", &opts, &err),
                 QV_OK);
    char wm[16];
    cr_assert_eq(qv_wire_get_str(opts, "weights", wm, sizeof wm, &err), QV_OK);
    cr_assert_str_eq(wm, "ternary");
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_SUBMITTED, 1, "job", 'u', (uint64_t)42);
    m = roundtrip(&o, QV_MSG_SUBMITTED);
    cr_assert_eq(U(m, "job"), 42);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_JOBS, 3, "all", 'b', 1, "after", 'u', (uint64_t)10,
             "limit", 'u', (uint64_t)100);
    m = roundtrip(&o, QV_MSG_JOBS);
    cr_assert_eq(U(m, "limit"), 100);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_JOB_LIST, 2, "jobs", 'n', w_jobs, "more", 'b', 0);
    m = roundtrip(&o, QV_MSG_JOB_LIST);
    const msgpack_object *jobs;
    size_t n;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "jobs", &jobs, &n,
                                   QV_WIRE_MAX_ARRAY, &err), QV_OK);
    cr_assert_eq(n, 2);
    char st[16];
    qv_wire_get_str(&jobs[0], "state", st, sizeof st, &err);
    cr_assert_str_eq(st, "running");
    cr_assert_eq(qv_wire_get_i64(&jobs[0], "priority", &prio, &err), QV_OK);
    cr_assert_eq(prio, -3);
    char why[64];
    qv_wire_get_str(&jobs[1], "unrunnable", why, sizeof why, &err);
    cr_assert_str_eq(why, "no device has 64 GiB");
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_WORKERS, 0);
    m = roundtrip(&o, QV_MSG_WORKERS);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_WORKER_LIST, 1, "workers", 'n', w_workers);
    m = roundtrip(&o, QV_MSG_WORKER_LIST);
    const msgpack_object *wk;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "workers", &wk, &n,
                                   10, &err), QV_OK);
    uint64_t seen;
    qv_wire_get_u64(&wk[0], "last_seen_ms", &seen, NULL);
    cr_assert_eq(seen, 1700000000000ull);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_CANCEL, 1, "job", 'u', (uint64_t)42);
    m = roundtrip(&o, QV_MSG_CANCEL);
    cr_assert_eq(U(m, "job"), 42);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_CANCELLED, 2, "job", 'u', (uint64_t)42, "state", 's',
             "cancelled");
    m = roundtrip(&o, QV_MSG_CANCELLED);
    S(m, "state", "cancelled");
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_LOGS, 3, "job", 'u', (uint64_t)42, "follow", 'b', 1,
             "from", 'u', (uint64_t)5);
    m = roundtrip(&o, QV_MSG_LOGS);
    cr_assert_eq(U(m, "from"), 5);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_LOG, 3, "job", 'u', (uint64_t)42, "events", 'n',
             w_events, "end", 'b', 0);
    m = roundtrip(&o, QV_MSG_LOG);
    const msgpack_object *ev;
    cr_assert_eq(qv_wire_get_array(qv_wire_msg_body(m), "events", &ev, &n,
                                   10, &err), QV_OK);
    cr_assert_eq(n, 2);
    char text[128];
    qv_wire_get_str(&ev[1], "text", text, sizeof text, &err);
    cr_assert_str_eq(text, "assigned to box-a opencl:0 (attempt 1) \xc3\xa9");
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_FETCH, 1, "job", 'u', (uint64_t)42);
    m = roundtrip(&o, QV_MSG_FETCH);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_RESULT, 6, "job", 'u', (uint64_t)42, "state", 's',
             "succeeded", "adapter", 's', H1, "adapter_size", 'u',
             (uint64_t)123456, "metrics", 's', H2, "metrics_size", 'u',
             (uint64_t)789);
    m = roundtrip(&o, QV_MSG_RESULT);
    cr_assert_eq(U(m, "adapter_size"), 123456);
    S(m, "metrics", H2);
    qv_wire_msg_free(m);
}

Test(wire, worker_reports)
{
    qv_wire_out o;
    qv_err err;
    BUILD_OK(&o, QV_MSG_ABORT, 3, "job", 'u', (uint64_t)7, "attempt", 'u',
             (uint64_t)2, "reason", 's', "cancelled by the client");
    qv_wire_msg *m = roundtrip(&o, QV_MSG_ABORT);
    S(m, "reason", "cancelled by the client");
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_PROGRESS, 8, "job", 'u', (uint64_t)7, "attempt", 'u',
             (uint64_t)2, "step", 'u', (uint64_t)150, "steps", 'u',
             (uint64_t)200, "loss", 'f', 0.75, "tokens_per_s", 'f', 1234.5,
             "peak_bytes", 'u', (uint64_t)3 << 28, "checkpoint", 's', H3);
    m = roundtrip(&o, QV_MSG_PROGRESS);
    double loss, tps;
    cr_assert_eq(qv_wire_get_f64(qv_wire_msg_body(m), "loss", &loss, &err),
                 QV_OK);
    cr_assert_float_eq(loss, 0.75, 0);
    qv_wire_get_f64(qv_wire_msg_body(m), "tokens_per_s", &tps, &err);
    cr_assert_float_eq(tps, 1234.5, 0);
    cr_assert_eq(U(m, "peak_bytes"), 3ull << 28);
    cr_assert_eq(U(m, "step"), 150);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_DONE, 5, "job", 'u', (uint64_t)7, "attempt", 'u',
             (uint64_t)2, "adapter", 's', H1, "metrics", 's', H2,
             "checkpoint", 's', H3);
    m = roundtrip(&o, QV_MSG_DONE);
    S(m, "adapter", H1);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_FAILED, 4, "job", 'u', (uint64_t)7, "attempt", 'u',
             (uint64_t)2, "reason", 's', "device: CL_OUT_OF_RESOURCES",
             "retry", 'b', 1);
    m = roundtrip(&o, QV_MSG_FAILED);
    S(m, "reason", "device: CL_OUT_OF_RESOURCES");
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_ACK, 2, "job", 'u', (uint64_t)7, "attempt", 'u',
             (uint64_t)2);
    m = roundtrip(&o, QV_MSG_ACK);
    cr_assert_eq(U(m, "attempt"), 2);
    qv_wire_msg_free(m);
}

Test(wire, blobs)
{
    qv_wire_out o;
    qv_err err;
    BUILD_OK(&o, QV_MSG_BLOB_PUT, 2, "hash", 's', H1, "size", 'u',
             (uint64_t)5000000);
    qv_wire_msg *m = roundtrip(&o, QV_MSG_BLOB_PUT);
    cr_assert_eq(U(m, "size"), 5000000);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_BLOB_GET, 3, "hash", 's', H1, "offset", 'u',
             (uint64_t)1048576, "credit", 'u', (uint64_t)4194304);
    m = roundtrip(&o, QV_MSG_BLOB_GET);
    cr_assert_eq(U(m, "offset"), 1048576);
    cr_assert_eq(U(m, "credit"), 4194304);
    qv_wire_msg_free(m);

    uint8_t *chunk = malloc(QV_WIRE_MAX_CHUNK);
    for (size_t i = 0; i < QV_WIRE_MAX_CHUNK; ++i)
        chunk[i] = (uint8_t)(i * 131 + 7);
    BUILD_OK(&o, QV_MSG_BLOB_CHUNK, 4, "hash", 's', H1, "offset", 'u',
             (uint64_t)1048576, "size", 'u', (uint64_t)5000000, "bytes", 'x',
             (const void *)chunk, (size_t)QV_WIRE_MAX_CHUNK);
    m = roundtrip(&o, QV_MSG_BLOB_CHUNK);
    const void *d;
    size_t n;
    cr_assert_eq(qv_wire_get_bin(qv_wire_msg_body(m), "bytes", &d, &n,
                                 QV_WIRE_MAX_CHUNK, &err), QV_OK);
    cr_assert_eq(n, QV_WIRE_MAX_CHUNK);
    cr_assert(!memcmp(d, chunk, n));
    cr_assert_eq(qv_wire_get_bin(qv_wire_msg_body(m), "bytes", &d, &n, 100,
                                 &err), QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(err.msg, "'bytes'"));
    qv_wire_msg_free(m);

    /* an empty blob is one empty chunk */
    BUILD_OK(&o, QV_MSG_BLOB_CHUNK, 4, "hash", 's', H2, "offset", 'u',
             (uint64_t)0, "size", 'u', (uint64_t)0, "bytes", 'x',
             (const void *)NULL, (size_t)0);
    m = roundtrip(&o, QV_MSG_BLOB_CHUNK);
    cr_assert_eq(qv_wire_get_bin(qv_wire_msg_body(m), "bytes", &d, &n, 10,
                                 &err), QV_OK);
    cr_assert_eq(n, 0);
    qv_wire_msg_free(m);

    /* a chunk that runs past the blob's size */
    cr_assert_eq(build(&o, &err, QV_MSG_BLOB_CHUNK, 4, "hash", 's', H1,
                       "offset", 'u', (uint64_t)4000000, "size", 'u',
                       (uint64_t)5000000, "bytes", 'x', (const void *)chunk,
                       (size_t)QV_WIRE_MAX_CHUNK), QV_ERR_INVALID);
    cr_assert_not_null(strstr(err.msg, "blob_chunk.bytes"), "%s", err.msg);
    free(chunk);

    BUILD_OK(&o, QV_MSG_BLOB_CREDIT, 2, "hash", 's', H1, "credit", 'u',
             (uint64_t)QV_WIRE_MAX_CHUNK);
    m = roundtrip(&o, QV_MSG_BLOB_CREDIT);
    cr_assert_eq(U(m, "credit"), QV_WIRE_MAX_CHUNK);
    qv_wire_msg_free(m);

    BUILD_OK(&o, QV_MSG_BLOB_OK, 2, "hash", 's', H1, "size", 'u',
             (uint64_t)5000000);
    m = roundtrip(&o, QV_MSG_BLOB_OK);
    S(m, "hash", H1);
    qv_wire_msg_free(m);
}

Test(wire, error_reply)
{
    qv_wire_out o;
    qv_err err;
    cr_assert_eq(qv_wire_error_reply("malformed", "wire: submit.model: bad",
                                     "submit", &o, &err), QV_OK);
    qv_wire_msg *m = roundtrip(&o, QV_MSG_ERROR);
    S(m, "code", "malformed");
    S(m, "message", "wire: submit.model: bad");
    S(m, "re", "submit");
    qv_wire_msg_free(m);

    /* an unknown type is not echoed; a long message with a cut UTF-8
     * sequence and control bytes is made safe */
    char big[3000];
    memset(big, 'a', sizeof big);
    big[10] = '\n';
    big[20] = (char)0xc3; /* lone lead byte */
    memcpy(big + 1022, "\xc3\xa9\xc3\xa9", 4);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(qv_wire_error_reply(qv_wire_error_code(QV_ERR_UNSUPPORTED),
                                     big, "bogus\x01", &o, &err), QV_OK,
                 "%s", err.msg);
    m = roundtrip(&o, QV_MSG_ERROR);
    S(m, "code", "unsupported");
    cr_assert(!qv_wire_has(qv_wire_msg_body(m), "re"));
    const char *s;
    size_t n;
    cr_assert_eq(qv_wire_get_strv(qv_wire_msg_body(m), "message", &s, &n,
                                  QV_WIRE_MAX_TEXT, &err), QV_OK);
    cr_assert_leq(n, QV_WIRE_MAX_TEXT);
    cr_assert_geq(n, QV_WIRE_MAX_TEXT - 1);
    cr_assert_eq(s[10], '?');
    cr_assert_eq(s[20], '?');
    cr_assert(!memcmp(s + 1022, "\xc3\xa9", 2));
    qv_wire_msg_free(m);

    cr_assert_str_eq(qv_wire_error_code(QV_ERR_CORRUPT), "malformed");
    cr_assert_str_eq(qv_wire_error_code(QV_ERR_NOT_FOUND), "not_found");
    cr_assert_str_eq(qv_wire_error_code(QV_ERR_IO), "internal");
}

Test(wire, type_names)
{
    for (int t = 0; t < QV_MSG_COUNT; ++t) {
        const char *n = qv_wire_type_name((qv_wire_type)t);
        cr_assert_not_null(n);
        cr_assert_leq(strlen(n), QV_WIRE_MAX_TYPE);
        qv_wire_type back;
        cr_assert_eq(qv_wire_type_parse(n, strlen(n), &back, NULL), QV_OK);
        cr_assert_eq((int)back, t);
    }
    cr_assert_null(qv_wire_type_name(QV_MSG_COUNT));
}

/* ---- frames ------------------------------------------------------------ */

Test(wire, frames)
{
    qv_err err;
    qv_wire_msg *m = (qv_wire_msg *)1;
    static const uint8_t body[] = {0x81, 0xa3, 'j', 'o', 'b', 0x07};
    qv_wire_frame f[3] = {{"QVAC\x01", 5}, {"cancel", 6}, {body, sizeof body}};
    cr_assert_eq(qv_wire_decode(f, 3, &m, &err), QV_OK, "%s", err.msg);
    cr_assert_eq(U(m, "job"), 7);
    qv_wire_msg_free(m);

    /* wrong version: unsupported, the version named */
    f[0] = (qv_wire_frame){"QVAC\x02", 5};
    EXPECT(qv_wire_decode(f, 3, &m, &err), QV_ERR_UNSUPPORTED, "version 2",
           err);
    cr_assert_null(m);
    /* not our protocol at all */
    f[0] = (qv_wire_frame){"MDPC01", 6};
    EXPECT(qv_wire_decode(f, 3, &m, &err), QV_ERR_CORRUPT, "frame 0", err);
    f[0] = (qv_wire_frame){"QVAC\x01x", 6};
    EXPECT(qv_wire_decode(f, 3, &m, &err), QV_ERR_CORRUPT, "frame 0", err);
    f[0] = (qv_wire_frame){"", 0};
    EXPECT(qv_wire_decode(f, 3, &m, &err), QV_ERR_CORRUPT, "frame 0", err);
    f[0] = (qv_wire_frame){"QVAC\x01", 5};
    /* unknown type */
    f[1] = (qv_wire_frame){"launch", 6};
    EXPECT(qv_wire_decode(f, 3, &m, &err), QV_ERR_UNSUPPORTED,
           "unknown message type 'launch'", err);
    f[1] = (qv_wire_frame){"cancel\0", 7};
    EXPECT(qv_wire_decode(f, 3, &m, &err), QV_ERR_CORRUPT, "type frame", err);
    f[1] = (qv_wire_frame){"", 0};
    EXPECT(qv_wire_decode(f, 3, &m, &err), QV_ERR_CORRUPT, "type frame", err);
    f[1] = (qv_wire_frame){"aaaaaaaaaaaaaaaaa", 17};
    EXPECT(qv_wire_decode(f, 3, &m, &err), QV_ERR_CORRUPT, "17 bytes", err);
    f[1] = (qv_wire_frame){"cancel", 6};
    /* frame counts */
    EXPECT(qv_wire_decode(f, 2, &m, &err), QV_ERR_CORRUPT, "2 frames", err);
    qv_wire_frame f4[4] = {f[0], f[1], f[2], f[2]};
    EXPECT(qv_wire_decode(f4, 4, &m, &err), QV_ERR_CORRUPT, "4 frames", err);
    EXPECT(qv_wire_decode(f, 0, &m, &err), QV_ERR_CORRUPT, "no frames", err);
    /* a ROUTER envelope left in front is not a message */
    qv_wire_frame env[4] = {{"\x00\x6b\x8b\x45\x67", 5}, f[0], f[1], f[2]};
    EXPECT(qv_wire_decode(env, 4, &m, &err), QV_ERR_CORRUPT, "frame 0", err);
    /* the body: the wrong type's schema */
    f[1] = (qv_wire_frame){"submit", 6};
    EXPECT(qv_wire_decode(f, 3, &m, &err), QV_ERR_CORRUPT,
           "submit.model: required field is missing", err);
    cr_assert_eq(qv_wire_decode(NULL, 3, &m, &err), QV_ERR_INVALID);
    cr_assert_eq(qv_wire_check_id("QVAC\x01", 5, &err), QV_OK);
}

/* ---- limits and hostile bodies ---------------------------------------- */

Test(wire, missing_and_wrong_types)
{
    qv_err err;
    hb b;
    /* submit without data */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    hb_str(&b, "model", H1);
    EXPECT(dec(QV_MSG_SUBMIT, &b, &err), QV_ERR_CORRUPT,
           "submit.data: required field is missing", err);
    msgpack_sbuffer_destroy(&b.sb);

    /* each field of progress with the wrong type */
    static const struct {
        const char *key, *needle;
    } cases[] = {
        {"job", "progress.job: must be a non-negative integer, not a string"},
        {"attempt", "progress.attempt: must be a non-negative integer"},
        {"step", "progress.step: must be a non-negative integer"},
        {"loss", "progress.loss: must be a number, not a string"},
        {"tokens_per_s", "progress.tokens_per_s: must be a number"},
        {"peak_bytes", "progress.peak_bytes: must be a non-negative"},
        {"checkpoint", "progress.checkpoint: a hash of 1 hex"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
        hb_init(&b);
        int extra = !strcmp(cases[c].key, "job") ||
                    !strcmp(cases[c].key, "attempt") ||
                    !strcmp(cases[c].key, "step") ? 0 : 1;
        msgpack_pack_map(&b.pk, 3 + (uint32_t)extra);
        const char *req[] = {"job", "attempt", "step"};
        for (int i = 0; i < 3; ++i)
            if (!strcmp(req[i], cases[c].key))
                hb_str(&b, req[i], "x");
            else
                hb_u64(&b, req[i], 1);
        if (extra)
            hb_str(&b, cases[c].key, "x");
        EXPECT(dec(QV_MSG_PROGRESS, &b, &err), QV_ERR_CORRUPT,
               cases[c].needle, err);
        msgpack_sbuffer_destroy(&b.sb);
    }

    /* negative u64, zero job id, bool as int, enum value, bad hash */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    hb_key(&b, "job");
    msgpack_pack_int64(&b.pk, -1);
    EXPECT(dec(QV_MSG_CANCEL, &b, &err), QV_ERR_CORRUPT,
           "cancel.job: must be a non-negative integer, not a negative", err);
    msgpack_sbuffer_destroy(&b.sb);
    hb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    hb_u64(&b, "job", 0);
    EXPECT(dec(QV_MSG_CANCEL, &b, &err), QV_ERR_CORRUPT,
           "cancel.job: 0 is below 1", err);
    msgpack_sbuffer_destroy(&b.sb);
    hb_init(&b);
    msgpack_pack_map(&b.pk, 2);
    hb_u64(&b, "job", 3);
    hb_u64(&b, "follow", 1);
    EXPECT(dec(QV_MSG_LOGS, &b, &err), QV_ERR_CORRUPT,
           "logs.follow: must be a bool, not an integer", err);
    msgpack_sbuffer_destroy(&b.sb);
    hb_init(&b);
    msgpack_pack_map(&b.pk, 3);
    hb_str(&b, "role", "admin");
    hb_str(&b, "name", "x");
    hb_str(&b, "version", "1");
    EXPECT(dec(QV_MSG_HELLO, &b, &err), QV_ERR_CORRUPT,
           "hello.role: 'admin' is not one of the allowed values", err);
    msgpack_sbuffer_destroy(&b.sb);
    const char *bad_hashes[] = {"0123456789ABCDEF", "0123456789abcde",
                                "0123456789abcdeg", "../../etc/passwd0"};
    for (int i = 0; i < 4; ++i) {
        hb_init(&b);
        msgpack_pack_map(&b.pk, 2);
        hb_str(&b, "hash", bad_hashes[i]);
        hb_u64(&b, "size", 1);
        EXPECT(dec(QV_MSG_BLOB_PUT, &b, &err), QV_ERR_CORRUPT,
               "blob_put.hash: a hash", err);
        msgpack_sbuffer_destroy(&b.sb);
    }
    /* nested: enroll.devices[1].backend, and a number expected in tuned */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 3);
    hb_str(&b, "key", "k");
    hb_str(&b, "name", "n");
    hb_key(&b, "devices");
    msgpack_pack_array(&b.pk, 2);
    for (int i = 0; i < 2; ++i) {
        msgpack_pack_map(&b.pk, 5);
        hb_str(&b, "id", "d");
        hb_str(&b, "backend", i ? "cuda" : "opencl");
        hb_str(&b, "name", "n");
        hb_u64(&b, "memory", 1);
        hb_key(&b, "tuned");
        msgpack_pack_map(&b.pk, 0);
    }
    EXPECT(dec(QV_MSG_ENROLL, &b, &err), QV_ERR_CORRUPT,
           "enroll.devices[1].backend: 'cuda'", err);
    msgpack_sbuffer_destroy(&b.sb);
    hb_init(&b);
    msgpack_pack_map(&b.pk, 3);
    hb_str(&b, "key", "k");
    hb_str(&b, "name", "n");
    hb_key(&b, "devices");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 5);
    hb_str(&b, "id", "d");
    hb_str(&b, "backend", "ref");
    hb_str(&b, "name", "n");
    hb_u64(&b, "memory", 1);
    hb_key(&b, "tuned");
    msgpack_pack_map(&b.pk, 1);
    hb_str(&b, "matmul", "fast");
    EXPECT(dec(QV_MSG_ENROLL, &b, &err), QV_ERR_CORRUPT,
           "enroll.devices[0].tuned.matmul: must be a number", err);
    msgpack_sbuffer_destroy(&b.sb);
    /* an array element that is not a map */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    hb_key(&b, "running");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_uint64(&b.pk, 7);
    EXPECT(dec(QV_MSG_HEARTBEAT, &b, &err), QV_ERR_CORRUPT,
           "heartbeat.running[0]: must be a map, not an integer", err);
    msgpack_sbuffer_destroy(&b.sb);
    /* options may not hold a nested map */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 3);
    hb_str(&b, "model", H1);
    hb_str(&b, "data", H1);
    hb_key(&b, "options");
    msgpack_pack_map(&b.pk, 1);
    hb_key(&b, "lr");
    msgpack_pack_map(&b.pk, 0);
    EXPECT(dec(QV_MSG_SUBMIT, &b, &err), QV_ERR_CORRUPT,
           "submit.options.lr: must be a scalar, not a map", err);
    msgpack_sbuffer_destroy(&b.sb);
    /* unknown fields are ignored */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 2);
    hb_u64(&b, "job", 9);
    hb_str(&b, "future_field", "ok");
    cr_assert_eq(dec(QV_MSG_CANCEL, &b, &err), QV_OK, "%s", err.msg);
    msgpack_sbuffer_destroy(&b.sb);
}

Test(wire, string_limits)
{
    qv_err err;
    hb b;
    char name[QV_WIRE_MAX_NAME + 2];
    memset(name, 'n', sizeof name);
    name[QV_WIRE_MAX_NAME] = '\0'; /* exactly the cap: fine */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 3);
    hb_str(&b, "role", "client");
    hb_str(&b, "name", name);
    hb_str(&b, "version", "1");
    cr_assert_eq(dec(QV_MSG_HELLO, &b, &err), QV_OK, "%s", err.msg);
    msgpack_sbuffer_destroy(&b.sb);
    name[QV_WIRE_MAX_NAME] = 'n';
    name[QV_WIRE_MAX_NAME + 1] = '\0'; /* one over */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 3);
    hb_str(&b, "role", "client");
    hb_str(&b, "name", name);
    hb_str(&b, "version", "1");
    EXPECT(dec(QV_MSG_HELLO, &b, &err), QV_ERR_CORRUPT,
           "hello.name: a string of 129 bytes (0..128 allowed)", err);
    msgpack_sbuffer_destroy(&b.sb);

    /* any string over QV_WIRE_MAX_STR, even in an unknown field */
    char *big = malloc(QV_WIRE_MAX_STR + 2);
    memset(big, 'x', QV_WIRE_MAX_STR + 1);
    big[QV_WIRE_MAX_STR + 1] = '\0';
    hb_init(&b);
    msgpack_pack_map(&b.pk, 2);
    hb_u64(&b, "job", 1);
    hb_str(&b, "note", big);
    EXPECT(dec(QV_MSG_CANCEL, &b, &err), QV_ERR_CORRUPT,
           "cancel.note (byte", err);
    cr_assert_not_null(strstr(err.msg, "a string of 4097 bytes (limit 4096)"),
                       "%s", err.msg);
    msgpack_sbuffer_destroy(&b.sb);
    free(big);

    /* keys: empty, too long, not a string */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    hb_key(&b, "");
    msgpack_pack_nil(&b.pk);
    EXPECT(dec(QV_MSG_WORKERS, &b, &err), QV_ERR_CORRUPT,
           "a map key of 0 bytes", err);
    msgpack_sbuffer_destroy(&b.sb);
    char longkey[QV_WIRE_MAX_KEY + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    hb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    hb_key(&b, longkey);
    msgpack_pack_nil(&b.pk);
    EXPECT(dec(QV_MSG_WORKERS, &b, &err), QV_ERR_CORRUPT,
           "a map key of 65 bytes", err);
    msgpack_sbuffer_destroy(&b.sb);
    hb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    msgpack_pack_uint64(&b.pk, 1);
    msgpack_pack_nil(&b.pk);
    EXPECT(dec(QV_MSG_WORKERS, &b, &err), QV_ERR_CORRUPT,
           "a map key that is not a string", err);
    msgpack_sbuffer_destroy(&b.sb);

    /* invalid UTF-8, NUL inside, overlong encoding, surrogate */
    const char *bad[] = {"a\xff", "a\0b", "\xc0\xaf", "\xed\xa0\x80",
                         "\xe2\x82"};
    const size_t badn[] = {2, 3, 2, 3, 2};
    for (int i = 0; i < 5; ++i) {
        hb_init(&b);
        msgpack_pack_map(&b.pk, 3);
        hb_str(&b, "role", "client");
        hb_key(&b, "name");
        msgpack_pack_str_with_body(&b.pk, bad[i], badn[i]);
        hb_str(&b, "version", "1");
        EXPECT(dec(QV_MSG_HELLO, &b, &err), QV_ERR_CORRUPT,
               "hello.name (byte", err);
        cr_assert_not_null(strstr(err.msg, "not UTF-8 or holds a NUL"));
        msgpack_sbuffer_destroy(&b.sb);
    }

    /* duplicate keys */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 2);
    hb_u64(&b, "job", 1);
    hb_u64(&b, "job", 2);
    EXPECT(dec(QV_MSG_CANCEL, &b, &err), QV_ERR_CORRUPT,
           "key 'job' appears twice", err);
    msgpack_sbuffer_destroy(&b.sb);

    /* the getters' caps */
    qv_wire_msg *m;
    static const uint8_t body[] = {0x82, 0xa3, 'j', 'o', 'b', 0x07, 0xa4, 'n',
                                   'o', 't', 'e', 0xa5, 'h', 'e', 'l', 'l',
                                   'o'};
    cr_assert_eq(qv_wire_decode_body(QV_MSG_CANCEL, body, sizeof body, &m,
                                     &err), QV_OK);
    char small[5];
    EXPECT(qv_wire_get_str(qv_wire_msg_body(m), "note", small, sizeof small,
                           &err), QV_ERR_CORRUPT, "field 'note' is 5 bytes",
           err);
    char ok[6];
    cr_assert_eq(qv_wire_get_str(qv_wire_msg_body(m), "note", ok, sizeof ok,
                                 &err), QV_OK);
    cr_assert_str_eq(ok, "hello");
    uint64_t u;
    EXPECT(qv_wire_get_u64(qv_wire_msg_body(m), "note", &u, &err),
           QV_ERR_CORRUPT, "field 'note' must be a non-negative integer",
           err);
    EXPECT(qv_wire_get_u64(qv_wire_msg_body(m), "nope", &u, &err),
           QV_ERR_NOT_FOUND, "field 'nope' is missing", err);
    bool bl;
    EXPECT(qv_wire_get_bool(qv_wire_msg_body(m), "job", &bl, &err),
           QV_ERR_CORRUPT, "field 'job' must be a bool", err);
    const msgpack_object *items;
    size_t n;
    EXPECT(qv_wire_get_array(qv_wire_msg_body(m), "job", &items, &n, 4, &err),
           QV_ERR_CORRUPT, "field 'job' must be an array", err);
    qv_wire_msg_free(m);
}

static void pack_nested(hb *b, int depth)
{
    /* depth maps, the innermost empty */
    for (int i = 1; i < depth; ++i) {
        msgpack_pack_map(&b->pk, 1);
        hb_key(b, "d");
    }
    msgpack_pack_map(&b->pk, 0);
}

Test(wire, depth_arrays_items_body)
{
    qv_err err;
    hb b;
    hb_init(&b);
    pack_nested(&b, QV_WIRE_MAX_DEPTH);
    cr_assert_eq(dec(QV_MSG_WORKERS, &b, &err), QV_OK, "%s", err.msg);
    msgpack_sbuffer_destroy(&b.sb);
    hb_init(&b);
    pack_nested(&b, QV_WIRE_MAX_DEPTH + 1);
    EXPECT(dec(QV_MSG_WORKERS, &b, &err), QV_ERR_CORRUPT,
           "nesting deeper than 8", err);
    cr_assert_not_null(strstr(err.msg, "workers.d.d.d.d.d.d.d"), "%s",
                       err.msg);
    msgpack_sbuffer_destroy(&b.sb);

    /* arrays: the cap, and the cap of the schema (64 devices) */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 2);
    hb_u64(&b, "job", 1);
    hb_key(&b, "x");
    msgpack_pack_array(&b.pk, QV_WIRE_MAX_ARRAY + 1);
    for (int i = 0; i <= QV_WIRE_MAX_ARRAY; ++i)
        msgpack_pack_nil(&b.pk);
    EXPECT(dec(QV_MSG_CANCEL, &b, &err), QV_ERR_CORRUPT,
           "an array of 1025 elements (limit 1024)", err);
    cr_assert_not_null(strstr(err.msg, "cancel.x"), "%s", err.msg);
    msgpack_sbuffer_destroy(&b.sb);
    hb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    hb_key(&b, "running");
    msgpack_pack_array(&b.pk, QV_WIRE_MAX_DEVICES + 1);
    for (int i = 0; i <= QV_WIRE_MAX_DEVICES; ++i) {
        msgpack_pack_map(&b.pk, 2);
        hb_u64(&b, "job", 1);
        hb_u64(&b, "attempt", 1);
    }
    EXPECT(dec(QV_MSG_HEARTBEAT, &b, &err), QV_ERR_CORRUPT,
           "heartbeat.running: an array of 65 elements (limit 64)", err);
    msgpack_sbuffer_destroy(&b.sb);
    /* a map over QV_WIRE_MAX_MAP entries */
    hb_init(&b);
    msgpack_pack_map(&b.pk, QV_WIRE_MAX_MAP + 1);
    for (int i = 0; i <= QV_WIRE_MAX_MAP; ++i) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        hb_u64(&b, k, 1);
    }
    EXPECT(dec(QV_MSG_WORKERS, &b, &err), QV_ERR_CORRUPT,
           "a map of 257 entries (limit 256)", err);
    msgpack_sbuffer_destroy(&b.sb);

    /* a header claiming more elements than bytes left (no allocation) */
    static const uint8_t liar[] = {0x81, 0xa1, 'x', 0xdd, 0x00, 0x00, 0x03,
                                   0xff, 0xc0};
    EXPECT(dec_raw(QV_MSG_WORKERS, liar, sizeof liar, &err), QV_ERR_CORRUPT,
           "truncated: an array of 1023 claimed, 1 bytes left", err);
    static const uint8_t liar2[] = {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff,
                                    0xff};
    EXPECT(dec_raw(QV_MSG_WORKERS, liar2, sizeof liar2, &err),
           QV_ERR_CORRUPT, "an array of 4294967295 elements", err);
    static const uint8_t liar3[] = {0x81, 0xa1, 'x', 0xc6, 0x7f, 0xff, 0xff,
                                    0xff, 0x00};
    EXPECT(dec_raw(QV_MSG_WORKERS, liar3, sizeof liar3, &err),
           QV_ERR_CORRUPT, "a bin of 2147483647 bytes (limit 1048576)", err);
    static const uint8_t liar4[] = {0x81, 0xa1, 'x', 0xdb, 0x00, 0x00, 0x00,
                                    0x10, 'a'};
    EXPECT(dec_raw(QV_MSG_WORKERS, liar4, sizeof liar4, &err),
           QV_ERR_CORRUPT, "truncated: 16 more bytes needed, 1 left", err);

    /* too many items: 65 arrays of 1024 nils */
    hb_init(&b);
    msgpack_pack_map(&b.pk, 65);
    for (int i = 0; i < 65; ++i) {
        char k[16];
        snprintf(k, sizeof k, "a%d", i);
        hb_key(&b, k);
        msgpack_pack_array(&b.pk, 1023);
        for (int j = 0; j < 1023; ++j)
            msgpack_pack_nil(&b.pk);
    }
    EXPECT(dec(QV_MSG_WORKERS, &b, &err), QV_ERR_CORRUPT,
           "more than 65536 items", err);
    msgpack_sbuffer_destroy(&b.sb);

    /* a body over 16 MiB is refused before it is read */
    uint8_t *huge = calloc(1, QV_WIRE_MAX_BODY + 1);
    huge[0] = 0x80;
    EXPECT(dec_raw(QV_MSG_WORKERS, huge, QV_WIRE_MAX_BODY + 1, &err),
           QV_ERR_CORRUPT, "workers: body is 16777217 bytes (limit 16777216)",
           err);
    free(huge);
}

Test(wire, truncated_and_malformed)
{
    qv_err err;
    /* every prefix of a valid submit body is refused, never read past */
    qv_wire_out o;
    BUILD_OK(&o, QV_MSG_SUBMIT, 6, "name", 's', "pirate", "priority", 'i',
             (int64_t)2, "model", 's', H1, "data", 's', H2, "options", 'n',
             w_options, "needs", 'n', w_needs);
    for (size_t n = 0; n < o.body_len; ++n) {
        qv_status st = dec_raw(QV_MSG_SUBMIT, o.body, n, &err);
        cr_assert_eq(st, QV_ERR_CORRUPT, "prefix %zu: %d", n, (int)st);
        cr_assert(n == 0 ? strstr(err.msg, "not a msgpack map") != NULL
                         : strstr(err.msg, "truncated") != NULL,
                  "prefix %zu: %s", n, err.msg);
    }
    cr_assert_eq(dec_raw(QV_MSG_SUBMIT, o.body, o.body_len, &err), QV_OK);
    /* trailing bytes */
    uint8_t *more = malloc(o.body_len + 1);
    memcpy(more, o.body, o.body_len);
    more[o.body_len] = 0xc0;
    EXPECT(dec_raw(QV_MSG_SUBMIT, more, o.body_len + 1, &err), QV_ERR_CORRUPT,
           "1 bytes after the body map", err);
    free(more);
    qv_wire_out_free(&o);

    static const uint8_t arr[] = {0x90};
    EXPECT(dec_raw(QV_MSG_WORKERS, arr, 1, &err), QV_ERR_CORRUPT,
           "workers: body is not a msgpack map", err);
    static const uint8_t ext[] = {0x81, 0xa1, 'x', 0xd4, 0x01, 0x02};
    EXPECT(dec_raw(QV_MSG_WORKERS, ext, sizeof ext, &err), QV_ERR_CORRUPT,
           "workers.x (byte 3 of the body): msgpack type byte 0xd4", err);
    static const uint8_t c1[] = {0x81, 0xa1, 'x', 0xc1};
    EXPECT(dec_raw(QV_MSG_WORKERS, c1, sizeof c1, &err), QV_ERR_CORRUPT,
           "never used", err);
    static const uint8_t nan[] = {0x81, 0xa1, 'x', 0xcb, 0x7f, 0xf8, 0, 0, 0,
                                  0, 0, 0};
    EXPECT(dec_raw(QV_MSG_WORKERS, nan, sizeof nan, &err), QV_ERR_CORRUPT,
           "NaN or infinite", err);
    static const uint8_t inf32[] = {0x81, 0xa1, 'x', 0xca, 0x7f, 0x80, 0, 0};
    EXPECT(dec_raw(QV_MSG_WORKERS, inf32, sizeof inf32, &err), QV_ERR_CORRUPT,
           "NaN or infinite", err);
    qv_wire_msg *m = (qv_wire_msg *)1;
    cr_assert_eq(qv_wire_decode_body(QV_MSG_COUNT, arr, 1, &m, &err),
                 QV_ERR_INVALID);
    cr_assert_null(m);
}

Test(wire, writer_refuses_what_the_decoder_would)
{
    qv_err err;
    qv_wire_out o;
    /* a missing required field */
    EXPECT(build(&o, &err, QV_MSG_SUBMIT, 1, "model", 's', H1),
           QV_ERR_INVALID, "submit.data: required field is missing", err);
    cr_assert_null(o.body);
    /* a wrong count: fewer pairs than announced */
    qv_wire_writer *w;
    cr_assert_eq(qv_wire_writer_new(QV_MSG_CANCEL, 2, &w, &err), QV_OK);
    qv_wire_kv_u64(w, "job", 1);
    EXPECT(qv_wire_finish(w, &o, &err), QV_ERR_INVALID, "truncated", err);
    qv_wire_writer_free(w);
    /* NaN, over-long bin, bad key: sticky, reported at finish */
    EXPECT(build(&o, &err, QV_MSG_PROGRESS, 4, "job", 'u', (uint64_t)1,
                 "attempt", 'u', (uint64_t)1, "step", 'u', (uint64_t)1,
                 "loss", 'f', NAN),
           QV_ERR_INVALID, "NaN", err);
    cr_assert_eq(qv_wire_writer_new(QV_MSG_CANCEL, 2, &w, &err), QV_OK);
    qv_wire_kv_u64(w, "job", 1);
    qv_wire_kv_bin(w, "x", "", QV_WIRE_MAX_CHUNK + 1);
    EXPECT(qv_wire_finish(w, &o, &err), QV_ERR_INVALID, "a bin of 1048577",
           err);
    EXPECT(qv_wire_finish(w, &o, &err), QV_ERR_INVALID, "a bin", err);
    qv_wire_writer_free(w);
    cr_assert_eq(qv_wire_writer_new(QV_MSG_CANCEL, 1, &w, &err), QV_OK);
    qv_wire_kv_u64(w, "", 1);
    EXPECT(qv_wire_finish(w, &o, &err), QV_ERR_INVALID, "a key of 0 bytes",
           err);
    qv_wire_writer_free(w);
    /* finishing twice */
    cr_assert_eq(qv_wire_writer_new(QV_MSG_WORKERS, 0, &w, &err), QV_OK);
    cr_assert_eq(qv_wire_finish(w, &o, &err), QV_OK);
    qv_wire_out o2;
    EXPECT(qv_wire_finish(w, &o2, &err), QV_ERR_INVALID, "finished twice",
           err);
    qv_wire_writer_free(w);
    qv_wire_writer_free(NULL);
    qv_wire_out_free(&o);
    qv_wire_out_free(&o);
    qv_wire_out_free(NULL);
    qv_wire_msg_free(NULL);
}
