/* formats/wire.c — see wire.h and docs/protocol.md. */
#include "formats/wire.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the schema ------------------------------------------------------ */

typedef enum fkind {
    F_STR,   /* string of at most max bytes (min: at least) */
    F_ENUM,  /* string, one of enums */
    F_HASH,  /* lower-case hex, QV_WIRE_HASH_MIN..MAX digits, even */
    F_U64,   /* non-negative integer >= min */
    F_I64,   /* integer in int64 range */
    F_F64,   /* float or integer, finite */
    F_BOOL,
    F_BIN,   /* bin of at most max bytes */
    F_OPTS,  /* map: string keys, scalar values (nil/bool/int/float/str) */
    F_NUMS,  /* map: string keys, number values */
    F_OBJ,   /* map with the schema sub */
    F_ARR    /* array (at most max) of maps with the schema sub */
} fkind;

typedef struct field {
    const char *name;
    fkind kind;
    int req;
    uint64_t max;
    uint64_t min;
    const struct field *sub;
    const char *const *enums;
} field;

#define REQ 1
#define OPT 0
#define END {NULL, 0, 0, 0, 0, NULL, NULL}
#define STR(n, r, mx) {n, F_STR, r, mx, 0, NULL, NULL}
#define STRMIN(n, r, mn, mx) {n, F_STR, r, mx, mn, NULL, NULL}
#define ENUM(n, r, e) {n, F_ENUM, r, 0, 0, NULL, e}
#define HASH(n, r) {n, F_HASH, r, 0, 0, NULL, NULL}
#define U64(n, r) {n, F_U64, r, 0, 0, NULL, NULL}
#define ID(n, r) {n, F_U64, r, 0, 1, NULL, NULL} /* ids, attempts: >= 1 */
#define I64(n, r) {n, F_I64, r, 0, 0, NULL, NULL}
#define F64(n, r) {n, F_F64, r, 0, 0, NULL, NULL}
#define BOOL(n, r) {n, F_BOOL, r, 0, 0, NULL, NULL}
#define BIN(n, r, mx) {n, F_BIN, r, mx, 0, NULL, NULL}
#define OPTS(n, r) {n, F_OPTS, r, 0, 0, NULL, NULL}
#define NUMS(n, r) {n, F_NUMS, r, 0, 0, NULL, NULL}
#define OBJ(n, r, s) {n, F_OBJ, r, 0, 0, s, NULL}
#define ARR(n, r, mx, s) {n, F_ARR, r, mx, 0, s, NULL}

static const char *const e_role[] = {"client", "worker", NULL};
static const char *const e_hash[] = {"sha256", NULL};
static const char *const e_backend[] = {"opencl", "vulkan", "ref", NULL};
static const char *const e_need_backend[] = {"opencl", "vulkan", "ref",
                                             "any", NULL};
static const char *const e_state[] = {"queued", "assigned", "running",
                                      "succeeded", "failed", "cancelled",
                                      NULL};
static const char *const e_wstate[] = {"idle", "busy", "lost", "tuning", NULL};

#define NAME QV_WIRE_MAX_NAME
#define TEXT QV_WIRE_MAX_TEXT

static const field s_tuning[] = {U64("done", REQ), U64("total", REQ), END};
static const field s_device[] = {
    STRMIN("id", REQ, 1, NAME), ENUM("backend", REQ, e_backend),
    STR("name", REQ, NAME), U64("memory", REQ), NUMS("tuned", OPT), END};
static const field s_running[] = {
    ID("job", REQ), ID("attempt", REQ), U64("step", OPT),
    STR("device", OPT, NAME), END};
static const field s_needs[] = {
    ENUM("backend", OPT, e_need_backend), U64("memory", OPT), END};
static const field s_jobrec[] = {
    ID("id", REQ), STR("name", REQ, NAME), ENUM("state", REQ, e_state),
    I64("priority", OPT), U64("attempt", OPT), U64("max_attempts", OPT),
    U64("step", OPT), U64("steps", OPT), F64("loss", OPT),
    F64("tokens_per_s", OPT), U64("peak_bytes", OPT),
    STR("worker", OPT, NAME), STR("device", OPT, NAME),
    STR("reason", OPT, TEXT), STR("unrunnable", OPT, TEXT),
    U64("submitted_ms", OPT), U64("updated_ms", OPT), HASH("model", OPT),
    HASH("data", OPT), HASH("adapter", OPT), HASH("metrics", OPT),
    HASH("checkpoint", OPT), END};
static const field s_workerrec[] = {
    ID("id", REQ), STR("name", REQ, NAME), ENUM("state", REQ, e_wstate),
    U64("last_seen_ms", OPT), ARR("devices", OPT, QV_WIRE_MAX_DEVICES, s_device),
    ARR("running", OPT, QV_WIRE_MAX_DEVICES, s_running),
    OBJ("tuning", OPT, s_tuning), END};
static const field s_event[] = {
    U64("seq", REQ), U64("t_ms", REQ), STR("text", REQ, TEXT),
    ENUM("state", OPT, e_state), END};

static const field s_hello[] = {
    ENUM("role", REQ, e_role), STR("name", REQ, NAME),
    STR("version", REQ, 32), END};
static const field s_welcome[] = {
    STR("scheduler", REQ, NAME), STR("version", REQ, 32),
    ENUM("hash", REQ, e_hash), U64("lease_ms", REQ), U64("chunk", REQ),
    U64("credit", REQ), BOOL("enrolled", OPT), END};
static const field s_enroll[] = {
    STR("token", OPT, NAME), STRMIN("key", REQ, 1, 64),
    STR("name", REQ, NAME),
    ARR("devices", REQ, QV_WIRE_MAX_DEVICES, s_device),
    OBJ("tuning", OPT, s_tuning), END};
static const field s_enrolled[] = {ID("worker", REQ), END};
static const field s_heartbeat[] = {
    ARR("running", OPT, QV_WIRE_MAX_DEVICES, s_running),
    OBJ("tuning", OPT, s_tuning), END};
static const field s_submit[] = {
    STR("name", OPT, NAME), I64("priority", OPT), HASH("model", REQ),
    HASH("data", REQ), OPTS("options", OPT), OBJ("needs", OPT, s_needs),
    END};
static const field s_submitted[] = {ID("job", REQ), END};
static const field s_jobs[] = {
    BOOL("all", OPT), ID("job", OPT), U64("after", OPT), U64("limit", OPT),
    END};
static const field s_job_list[] = {
    ARR("jobs", REQ, QV_WIRE_MAX_ARRAY, s_jobrec), BOOL("more", OPT), END};
static const field s_workers[] = {END};
static const field s_worker_list[] = {
    ARR("workers", REQ, QV_WIRE_MAX_ARRAY, s_workerrec), END};
static const field s_cancel[] = {ID("job", REQ), END};
static const field s_cancelled[] = {ID("job", REQ),
                                    ENUM("state", REQ, e_state), END};
static const field s_logs[] = {ID("job", REQ), BOOL("follow", OPT),
                               U64("from", OPT), END};
static const field s_log[] = {ID("job", REQ),
                              ARR("events", REQ, QV_WIRE_MAX_ARRAY, s_event),
                              BOOL("end", OPT), END};
static const field s_fetch[] = {ID("job", REQ), END};
static const field s_result[] = {
    ID("job", REQ), ENUM("state", REQ, e_state), HASH("adapter", OPT),
    U64("adapter_size", OPT), HASH("metrics", OPT), U64("metrics_size", OPT),
    END};
static const field s_assign[] = {
    ID("job", REQ), ID("attempt", REQ), STR("device", REQ, NAME),
    HASH("model", REQ), HASH("data", REQ), OPTS("options", OPT),
    HASH("resume", OPT), U64("resume_step", OPT),
    U64("checkpoint_every", OPT), END};
static const field s_abort[] = {ID("job", REQ), ID("attempt", REQ),
                                STR("reason", OPT, TEXT), END};
static const field s_progress[] = {
    ID("job", REQ), ID("attempt", REQ), U64("step", REQ), U64("steps", OPT),
    F64("loss", OPT), F64("tokens_per_s", OPT), U64("peak_bytes", OPT),
    HASH("checkpoint", OPT), END};
static const field s_done[] = {
    ID("job", REQ), ID("attempt", REQ), HASH("adapter", REQ),
    HASH("metrics", REQ), HASH("checkpoint", OPT), END};
static const field s_failed[] = {
    ID("job", REQ), ID("attempt", REQ), STR("reason", REQ, TEXT),
    BOOL("retry", OPT), END};
static const field s_ack[] = {ID("job", REQ), ID("attempt", REQ), END};
static const field s_blob_put[] = {HASH("hash", REQ), U64("size", REQ), END};
static const field s_blob_get[] = {HASH("hash", REQ), U64("offset", OPT),
                                   U64("credit", REQ), END};
static const field s_blob_chunk[] = {
    HASH("hash", REQ), U64("offset", REQ), U64("size", REQ),
    BIN("bytes", REQ, QV_WIRE_MAX_CHUNK), END};
static const field s_blob_credit[] = {HASH("hash", REQ), U64("credit", REQ),
                                      END};
static const field s_blob_ok[] = {HASH("hash", REQ), U64("size", REQ), END};
static const field s_error[] = {
    STRMIN("code", REQ, 1, 64), STR("message", REQ, TEXT),
    STR("re", OPT, QV_WIRE_MAX_TYPE), END};

static const field s_bench[] = {STRMIN("result", REQ, 2, QV_WIRE_MAX_BENCH), END};
static const field s_bench_ok[] = {STRMIN("device", REQ, 1, NAME), END};
static const field s_benches[] = {STR("model", OPT, NAME), END};
static const field s_benchrec[] = {
    STRMIN("worker", REQ, 1, NAME), STR("worker_name", OPT, NAME),
    STRMIN("result", REQ, 2, QV_WIRE_MAX_BENCH), U64("received_ms", OPT), END};
static const field s_bench_list[] = {
    ARR("benches", REQ, QV_WIRE_MAX_ARRAY, s_benchrec), BOOL("more", OPT), END};

static const field s_tuneent[] = {
    STRMIN("fingerprint", REQ, 16, 16), STRMIN("kernel", REQ, 1, 31),
    STRMIN("src_hash", REQ, 1, 16), STRMIN("bucket", REQ, 1, 63),
    STRMIN("config", REQ, 1, 159), F64("median_ns", REQ), F64("gflops", OPT),
    STR("backend", OPT, 15), STR("vendor", OPT, NAME), STR("device_name", OPT, 255),
    END};
static const field s_tunings_put[] = {
    ARR("entries", REQ, QV_WIRE_MAX_ARRAY, s_tuneent), END};
static const field s_tunings_ok[] = {U64("stored", REQ), END};
static const field s_tunings_get[] = {STRMIN("fingerprint", REQ, 16, 16), END};
static const field s_tunings[] = {
    STRMIN("fingerprint", REQ, 16, 16),
    ARR("entries", REQ, QV_WIRE_MAX_ARRAY, s_tuneent), END};

static const field s_bench_run[] = {STRMIN("model", REQ, 1, 15),
                                    STRMIN("devices", REQ, 1, QV_WIRE_MAX_TEXT), END};
static const field s_bench_queued[] = {U64("sent", REQ), END};
static const field s_bench_request[] = {STRMIN("device", REQ, 1, NAME),
                                        STRMIN("model", REQ, 1, 15), END};

static const struct {
    const char *name;
    const field *schema;
} TYPES[QV_MSG_COUNT] = {
    [QV_MSG_HELLO] = {"hello", s_hello},
    [QV_MSG_WELCOME] = {"welcome", s_welcome},
    [QV_MSG_ENROLL] = {"enroll", s_enroll},
    [QV_MSG_ENROLLED] = {"enrolled", s_enrolled},
    [QV_MSG_HEARTBEAT] = {"heartbeat", s_heartbeat},
    [QV_MSG_SUBMIT] = {"submit", s_submit},
    [QV_MSG_SUBMITTED] = {"submitted", s_submitted},
    [QV_MSG_JOBS] = {"jobs", s_jobs},
    [QV_MSG_JOB_LIST] = {"job_list", s_job_list},
    [QV_MSG_WORKERS] = {"workers", s_workers},
    [QV_MSG_WORKER_LIST] = {"worker_list", s_worker_list},
    [QV_MSG_CANCEL] = {"cancel", s_cancel},
    [QV_MSG_CANCELLED] = {"cancelled", s_cancelled},
    [QV_MSG_LOGS] = {"logs", s_logs},
    [QV_MSG_LOG] = {"log", s_log},
    [QV_MSG_FETCH] = {"fetch", s_fetch},
    [QV_MSG_RESULT] = {"result", s_result},
    [QV_MSG_ASSIGN] = {"assign", s_assign},
    [QV_MSG_ABORT] = {"abort", s_abort},
    [QV_MSG_PROGRESS] = {"progress", s_progress},
    [QV_MSG_DONE] = {"done", s_done},
    [QV_MSG_FAILED] = {"failed", s_failed},
    [QV_MSG_ACK] = {"ack", s_ack},
    [QV_MSG_BLOB_PUT] = {"blob_put", s_blob_put},
    [QV_MSG_BLOB_GET] = {"blob_get", s_blob_get},
    [QV_MSG_BLOB_CHUNK] = {"blob_chunk", s_blob_chunk},
    [QV_MSG_BLOB_CREDIT] = {"blob_credit", s_blob_credit},
    [QV_MSG_BLOB_OK] = {"blob_ok", s_blob_ok},
    [QV_MSG_ERROR] = {"error", s_error},
    [QV_MSG_BENCH] = {"bench", s_bench},
    [QV_MSG_BENCH_OK] = {"bench_ok", s_bench_ok},
    [QV_MSG_BENCHES] = {"benches", s_benches},
    [QV_MSG_BENCH_LIST] = {"bench_list", s_bench_list},
    [QV_MSG_TUNINGS_PUT] = {"tunings_put", s_tunings_put},
    [QV_MSG_TUNINGS_OK] = {"tunings_ok", s_tunings_ok},
    [QV_MSG_TUNINGS_GET] = {"tunings_get", s_tunings_get},
    [QV_MSG_TUNINGS] = {"tunings", s_tunings},
    [QV_MSG_BENCH_RUN] = {"bench_run", s_bench_run},
    [QV_MSG_BENCH_QUEUED] = {"bench_queued", s_bench_queued},
    [QV_MSG_BENCH_REQUEST] = {"bench_request", s_bench_request},
};

const char *qv_wire_type_name(qv_wire_type t)
{
    if ((unsigned)t >= QV_MSG_COUNT)
        return NULL;
    return TYPES[t].name;
}

qv_status qv_wire_type_parse(const void *name, size_t n, qv_wire_type *t,
                             qv_err *err)
{
    if (!name || !t)
        return qv_fail(err, QV_ERR_INVALID, "wire: NULL type argument");
    const unsigned char *s = name;
    if (n == 0 || n > QV_WIRE_MAX_TYPE)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: type frame is %zu bytes (1..%d allowed)", n,
                       QV_WIRE_MAX_TYPE);
    for (size_t i = 0; i < n; ++i)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "wire: type frame has a byte 0x%02x at %zu "
                           "(printable ASCII only)", s[i], i);
    for (int k = 0; k < QV_MSG_COUNT; ++k)
        if (strlen(TYPES[k].name) == n && !memcmp(TYPES[k].name, s, n)) {
            *t = (qv_wire_type)k;
            return QV_OK;
        }
    return qv_fail(err, QV_ERR_UNSUPPORTED,
                   "wire: unknown message type '%.*s'", (int)n,
                   (const char *)s);
}

/* ---- pass 1: a bounded walk over the msgpack bytes --------------------
 * msgpack-c's unpacker allocates an array's elements when it reads the
 * array's header, trusting the count; this walk runs first and refuses
 * counts the bytes cannot hold, so the unpacker only ever sees bodies
 * whose every header is honest and small. */

typedef struct pelem {
    const char *key; /* map entry: its key; else NULL */
    size_t klen;
    long idx;        /* array element: its index; else -1 */
} pelem;

typedef struct scan {
    const uint8_t *p;
    size_t n, off, items;
    const char *type;
    pelem path[QV_WIRE_MAX_DEPTH + 2];
    int depth;
    qv_err *err;
} scan;

/* "submit.needs.memory", "enroll.devices[2].id" into buf. */
static const char *path_str(const char *type, const pelem *path, int depth,
                            char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "%s", type);
    for (int i = 0; i < depth && k < cap; ++i) {
        if (path[i].key)
            k += (size_t)snprintf(buf + k, cap - k, ".%.*s",
                                  (int)(path[i].klen > 64 ? 64 : path[i].klen),
                                  path[i].key);
        else if (path[i].idx >= 0)
            k += (size_t)snprintf(buf + k, cap - k, "[%ld]", path[i].idx);
    }
    return buf;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static qv_status scan_fail(scan *s, qv_status st, const char *fmt, ...)
{
    char where[256], what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return qv_fail(s->err, st, "wire: %s (byte %zu of the body): %s",
                   path_str(s->type, s->path, s->depth, where, sizeof where),
                   s->off, what);
}

static uint64_t be(const uint8_t *p, int k)
{
    uint64_t v = 0;
    for (int i = 0; i < k; ++i)
        v = v << 8 | p[i];
    return v;
}

/* Valid UTF-8 (no overlongs, surrogates or values past U+10FFFF) and no
 * NUL. */
static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            ++i;
            continue;
        }
        int k;
        uint32_t cp, lo;
        if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; lo = 0x80; }
        else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; lo = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; lo = 0x10000; }
        else return 0;
        if (n - i <= (size_t)k)
            return 0;
        for (int j = 1; j <= k; ++j) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < lo || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

static qv_status need(scan *s, size_t k)
{
    if (s->n - s->off < k)
        return scan_fail(s, QV_ERR_CORRUPT,
                         "truncated: %zu more bytes needed, %zu left", k,
                         s->n - s->off);
    return QV_OK;
}

static qv_status scan_obj(scan *s, int is_key);

static qv_status scan_str(scan *s, size_t len, int is_key)
{
    qv_status st = need(s, len);
    if (st)
        return st;
    const uint8_t *b = s->p + s->off;
    if (is_key && (len == 0 || len > QV_WIRE_MAX_KEY))
        return scan_fail(s, QV_ERR_CORRUPT,
                         "a map key of %zu bytes (1..%d allowed)", len,
                         QV_WIRE_MAX_KEY);
    if (len > QV_WIRE_MAX_STR)
        return scan_fail(s, QV_ERR_CORRUPT,
                         "a string of %zu bytes (limit %d)", len,
                         QV_WIRE_MAX_STR);
    if (!utf8_ok(b, len))
        return scan_fail(s, QV_ERR_CORRUPT,
                         "a string that is not UTF-8 or holds a NUL");
    s->off += len;
    return QV_OK;
}

static qv_status scan_container(scan *s, uint64_t count, int is_map)
{
    if (s->depth >= QV_WIRE_MAX_DEPTH)
        return scan_fail(s, QV_ERR_CORRUPT,
                         "nesting deeper than %d", QV_WIRE_MAX_DEPTH);
    uint64_t cap = is_map ? QV_WIRE_MAX_MAP : QV_WIRE_MAX_ARRAY;
    if (count > cap)
        return scan_fail(s, QV_ERR_CORRUPT, "%s of %llu %s (limit %llu)",
                         is_map ? "a map" : "an array",
                         (unsigned long long)count,
                         is_map ? "entries" : "elements",
                         (unsigned long long)cap);
    /* every item takes at least one byte */
    if (count * (is_map ? 2u : 1u) > s->n - s->off)
        return scan_fail(s, QV_ERR_CORRUPT,
                         "truncated: %s of %llu claimed, %zu bytes left",
                         is_map ? "a map" : "an array",
                         (unsigned long long)count, s->n - s->off);
    pelem *pe = &s->path[s->depth++];
    for (uint64_t i = 0; i < count; ++i) {
        qv_status st;
        if (is_map) {
            pe->key = NULL;
            pe->idx = -1;
            size_t kstart = s->off;
            if ((st = scan_obj(s, 1)))
                return st;
            /* scan_obj(.., 1) accepted a str: its bytes end at off */
            size_t hdr = s->p[kstart] >= 0xa0 && s->p[kstart] <= 0xbf ? 1
                         : s->p[kstart] == 0xd9 ? 2
                         : s->p[kstart] == 0xda ? 3 : 5;
            pe->key = (const char *)s->p + kstart + hdr;
            pe->klen = s->off - kstart - hdr;
        } else {
            pe->key = NULL;
            pe->idx = (long)i;
        }
        if ((st = scan_obj(s, 0)))
            return st;
    }
    pe->key = NULL;
    pe->idx = -1;
    s->depth--;
    return QV_OK;
}

static qv_status scan_obj(scan *s, int is_key)
{
    qv_status st;
    if ((st = need(s, 1)))
        return st;
    if (++s->items > QV_WIRE_MAX_ITEMS)
        return scan_fail(s, QV_ERR_CORRUPT, "more than %d items in the body",
                         QV_WIRE_MAX_ITEMS);
    uint8_t c = s->p[s->off];
    if (is_key && !(c >= 0xa0 && c <= 0xbf) && c != 0xd9 && c != 0xda &&
        c != 0xdb)
        return scan_fail(s, QV_ERR_CORRUPT,
                         "a map key that is not a string (byte 0x%02x)", c);
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
        s->off += 1;
        return QV_OK;
    }
    if (c >= 0xa0 && c <= 0xbf) {
        s->off += 1;
        return scan_str(s, c & 0x1f, is_key);
    }
    if (c >= 0x80 && c <= 0x8f) {
        s->off += 1;
        return scan_container(s, c & 0x0f, 1);
    }
    if (c >= 0x90 && c <= 0x9f) {
        s->off += 1;
        return scan_container(s, c & 0x0f, 0);
    }
    switch (c) {
    case 0xcc: case 0xd0: case 0xcd: case 0xd1: case 0xce: case 0xd2:
    case 0xcf: case 0xd3: {
        int k = 1 << ((c - (c >= 0xd0 ? 0xd0 : 0xcc)));
        if ((st = need(s, 1 + (size_t)k)))
            return st;
        s->off += 1 + (size_t)k;
        return QV_OK;
    }
    case 0xca: case 0xcb: {
        int k = c == 0xca ? 4 : 8;
        if ((st = need(s, 1 + (size_t)k)))
            return st;
        uint64_t bits = be(s->p + s->off + 1, k);
        double v;
        if (k == 4) {
            uint32_t b32 = (uint32_t)bits;
            float f;
            memcpy(&f, &b32, 4);
            v = f;
        } else {
            memcpy(&v, &bits, 8);
        }
        if (!isfinite(v))
            return scan_fail(s, QV_ERR_CORRUPT,
                             "a float that is NaN or infinite");
        s->off += 1 + (size_t)k;
        return QV_OK;
    }
    case 0xd9: case 0xda: case 0xdb: case 0xc4: case 0xc5: case 0xc6: {
        int k = (c == 0xd9 || c == 0xc4) ? 1 : (c == 0xda || c == 0xc5) ? 2 : 4;
        if ((st = need(s, 1 + (size_t)k)))
            return st;
        uint64_t len = be(s->p + s->off + 1, k);
        s->off += 1 + (size_t)k;
        if (c >= 0xd9)
            return scan_str(s, (size_t)len, is_key);
        if (len > QV_WIRE_MAX_CHUNK)
            return scan_fail(s, QV_ERR_CORRUPT,
                             "a bin of %llu bytes (limit %u)",
                             (unsigned long long)len, QV_WIRE_MAX_CHUNK);
        if ((st = need(s, (size_t)len)))
            return st;
        s->off += (size_t)len;
        return QV_OK;
    }
    case 0xdc: case 0xdd: case 0xde: case 0xdf: {
        int k = (c == 0xdc || c == 0xde) ? 2 : 4;
        if ((st = need(s, 1 + (size_t)k)))
            return st;
        uint64_t count = be(s->p + s->off + 1, k);
        s->off += 1 + (size_t)k;
        return scan_container(s, count, c >= 0xde);
    }
    default:
        return scan_fail(s, QV_ERR_CORRUPT,
                         "msgpack type byte 0x%02x is not allowed (%s)", c,
                         c == 0xc1 ? "never used" : "ext types are refused");
    }
}

/* ---- pass 2: the schema over the unpacked tree ------------------------ */

typedef struct vctx {
    const char *type;
    pelem path[QV_WIRE_MAX_DEPTH + 2];
    int depth;
    qv_err *err;
} vctx;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static qv_status vfail(vctx *v, qv_status st, const char *fmt, ...)
{
    char where[256], what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return qv_fail(v->err, st, "wire: %s: %s",
                   path_str(v->type, v->path, v->depth, where, sizeof where),
                   what);
}

static const char *otype(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "a bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "an integer";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "a negative integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "a float";
    case MSGPACK_OBJECT_STR: return "a string";
    case MSGPACK_OBJECT_BIN: return "a bin";
    case MSGPACK_OBJECT_ARRAY: return "an array";
    case MSGPACK_OBJECT_MAP: return "a map";
    default: return "an ext";
    }
}

static int key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           !memcmp(k->via.str.ptr, name, n);
}

/* Every map in the tree: no key twice. (Keys are strings: pass 1.) */
static qv_status no_dups(vctx *v, const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; ++i) {
            qv_status st = no_dups(v, &o->via.array.ptr[i]);
            if (st)
                return st;
        }
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_kv *kv = o->via.map.ptr;
        uint32_t n = o->via.map.size;
        for (uint32_t i = 0; i < n; ++i) {
            for (uint32_t j = 0; j < i; ++j)
                if (kv[i].key.via.str.size == kv[j].key.via.str.size &&
                    !memcmp(kv[i].key.via.str.ptr, kv[j].key.via.str.ptr,
                            kv[i].key.via.str.size))
                    return vfail(v, QV_ERR_CORRUPT,
                                 "key '%.*s' appears twice",
                                 (int)kv[i].key.via.str.size,
                                 kv[i].key.via.str.ptr);
            qv_status st = no_dups(v, &kv[i].val);
            if (st)
                return st;
        }
    }
    return QV_OK;
}

static qv_status check_map(vctx *v, const msgpack_object *map,
                           const field *schema);

static qv_status check_field(vctx *v, const field *f, const msgpack_object *o)
{
    switch (f->kind) {
    case F_STR:
    case F_ENUM:
    case F_HASH: {
        if (o->type != MSGPACK_OBJECT_STR)
            return vfail(v, QV_ERR_CORRUPT, "must be a string, not %s",
                         otype(o));
        const char *s = o->via.str.ptr;
        size_t n = o->via.str.size;
        if (f->kind == F_STR) {
            if (n > f->max || n < f->min)
                return vfail(v, QV_ERR_CORRUPT,
                             "a string of %zu bytes (%llu..%llu allowed)", n,
                             (unsigned long long)f->min,
                             (unsigned long long)f->max);
        } else if (f->kind == F_ENUM) {
            for (const char *const *e = f->enums; *e; ++e)
                if (strlen(*e) == n && !memcmp(*e, s, n))
                    return QV_OK;
            return vfail(v, QV_ERR_CORRUPT, "'%.*s' is not one of the "
                         "allowed values", (int)(n > 64 ? 64 : n), s);
        } else {
            if (n < QV_WIRE_HASH_MIN || n > QV_WIRE_HASH_MAX || n % 2)
                return vfail(v, QV_ERR_CORRUPT,
                             "a hash of %zu hex digits (an even %d..%d)", n,
                             QV_WIRE_HASH_MIN, QV_WIRE_HASH_MAX);
            for (size_t i = 0; i < n; ++i)
                if (!((s[i] >= '0' && s[i] <= '9') ||
                      (s[i] >= 'a' && s[i] <= 'f')))
                    return vfail(v, QV_ERR_CORRUPT,
                                 "a hash must be lower-case hex (byte %zu)",
                                 i);
        }
        return QV_OK;
    }
    case F_U64:
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return vfail(v, QV_ERR_CORRUPT,
                         "must be a non-negative integer, not %s",
                         otype(o));
        if (o->via.u64 < f->min)
            return vfail(v, QV_ERR_CORRUPT, "%llu is below %llu",
                         (unsigned long long)o->via.u64,
                         (unsigned long long)f->min);
        return QV_OK;
    case F_I64:
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return QV_OK;
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return vfail(v, QV_ERR_CORRUPT, "must be an integer, not %s",
                         otype(o));
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return vfail(v, QV_ERR_CORRUPT, "%llu is out of int64 range",
                         (unsigned long long)o->via.u64);
        return QV_OK;
    case F_F64:
        if (o->type != MSGPACK_OBJECT_FLOAT32 &&
            o->type != MSGPACK_OBJECT_FLOAT64 &&
            o->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
            o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return vfail(v, QV_ERR_CORRUPT, "must be a number, not %s",
                         otype(o));
        return QV_OK;
    case F_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return vfail(v, QV_ERR_CORRUPT, "must be a bool, not %s",
                         otype(o));
        return QV_OK;
    case F_BIN:
        if (o->type != MSGPACK_OBJECT_BIN)
            return vfail(v, QV_ERR_CORRUPT, "must be a bin, not %s",
                         otype(o));
        if (o->via.bin.size > f->max)
            return vfail(v, QV_ERR_CORRUPT, "a bin of %u bytes (limit %llu)",
                         o->via.bin.size, (unsigned long long)f->max);
        return QV_OK;
    case F_OPTS:
    case F_NUMS:
        if (o->type != MSGPACK_OBJECT_MAP)
            return vfail(v, QV_ERR_CORRUPT, "must be a map, not %s",
                         otype(o));
        for (uint32_t i = 0; i < o->via.map.size; ++i) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            msgpack_object_type t = kv->val.type;
            int ok = t == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                     t == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
                     t == MSGPACK_OBJECT_FLOAT32 || t == MSGPACK_OBJECT_FLOAT64;
            if (f->kind == F_OPTS)
                ok = ok || t == MSGPACK_OBJECT_NIL ||
                     t == MSGPACK_OBJECT_BOOLEAN || t == MSGPACK_OBJECT_STR;
            if (!ok) {
                pelem *pe = &v->path[v->depth++];
                pe->key = kv->key.via.str.ptr;
                pe->klen = kv->key.via.str.size;
                pe->idx = -1;
                return vfail(v, QV_ERR_CORRUPT, "must be %s, not %s",
                             f->kind == F_NUMS ? "a number" : "a scalar",
                             otype(&kv->val));
            }
        }
        return QV_OK;
    case F_OBJ:
        if (o->type != MSGPACK_OBJECT_MAP)
            return vfail(v, QV_ERR_CORRUPT, "must be a map, not %s",
                         otype(o));
        return check_map(v, o, f->sub);
    case F_ARR: {
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return vfail(v, QV_ERR_CORRUPT, "must be an array, not %s",
                         otype(o));
        if (o->via.array.size > f->max)
            return vfail(v, QV_ERR_CORRUPT,
                         "an array of %u elements (limit %llu)",
                         o->via.array.size, (unsigned long long)f->max);
        for (uint32_t i = 0; i < o->via.array.size; ++i) {
            pelem *pe = &v->path[v->depth++];
            pe->key = NULL;
            pe->idx = (long)i;
            const msgpack_object *e = &o->via.array.ptr[i];
            qv_status st = e->type == MSGPACK_OBJECT_MAP
                               ? check_map(v, e, f->sub)
                               : vfail(v, QV_ERR_CORRUPT,
                                       "must be a map, not %s", otype(e));
            if (st)
                return st;
            v->depth--;
        }
        return QV_OK;
    }
    }
    return vfail(v, QV_ERR_CORRUPT, "unknown field kind");
}

static qv_status check_map(vctx *v, const msgpack_object *map,
                           const field *schema)
{
    for (const field *f = schema; f->name; ++f) {
        const msgpack_object *val = qv_wire_find(map, f->name);
        pelem *pe = &v->path[v->depth++];
        pe->key = f->name;
        pe->klen = strlen(f->name);
        pe->idx = -1;
        qv_status st = QV_OK;
        if (!val) {
            if (f->req)
                st = vfail(v, QV_ERR_CORRUPT, "required field is missing");
        } else {
            st = check_field(v, f, val);
        }
        if (st)
            return st;
        v->depth--;
    }
    return QV_OK;
}

/* ---- messages ---------------------------------------------------------- */

struct qv_wire_msg {
    qv_wire_type type;
    msgpack_unpacked up;
    char *bytes; /* the body, copied; strings and bins point here */
};

qv_status qv_wire_check_id(const void *data, size_t size, qv_err *err)
{
    const uint8_t *p = data;
    if (!p && size)
        return qv_fail(err, QV_ERR_INVALID, "wire: NULL id frame");
    if (size >= 4 && !memcmp(p, QV_WIRE_ID, 4)) {
        if (size == QV_WIRE_ID_LEN && p[4] == QV_WIRE_VERSION)
            return QV_OK;
        if (size == QV_WIRE_ID_LEN)
            return qv_fail(err, QV_ERR_UNSUPPORTED,
                           "wire: protocol version %u (this build speaks %d)",
                           p[4], QV_WIRE_VERSION);
    }
    return qv_fail(err, QV_ERR_CORRUPT,
                   "wire: frame 0 is not the protocol id \"QVAC\" + version "
                   "(%zu bytes)", size);
}

qv_status qv_wire_decode_body(qv_wire_type t, const void *body, size_t n,
                              qv_wire_msg **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "wire: NULL out");
    *out = NULL;
    if ((unsigned)t >= QV_MSG_COUNT || (!body && n))
        return qv_fail(err, QV_ERR_INVALID, "wire: bad type or NULL body");
    const char *tn = TYPES[t].name;
    if (n > QV_WIRE_MAX_BODY)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: %s: body is %zu bytes (limit %u)", tn, n,
                       QV_WIRE_MAX_BODY);
    scan s = {.p = body, .n = n, .type = tn, .err = err};
    for (int i = 0; i < QV_WIRE_MAX_DEPTH + 2; ++i)
        s.path[i] = (pelem){NULL, 0, -1};
    if (n == 0 || !((s.p[0] >= 0x80 && s.p[0] <= 0x8f) || s.p[0] == 0xde ||
                    s.p[0] == 0xdf))
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: %s: body is not a msgpack map", tn);
    qv_status st = scan_obj(&s, 0);
    if (st)
        return st;
    if (s.off != n)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: %s: %zu bytes after the body map", tn,
                       n - s.off);

    qv_wire_msg *m = calloc(1, sizeof *m);
    char *copy = malloc(n);
    if (!m || !copy) {
        free(m);
        free(copy);
        return qv_fail(err, QV_ERR_NOMEM, "wire: %s: out of memory (%zu "
                       "bytes)", tn, n);
    }
    memcpy(copy, body, n);
    m->type = t;
    m->bytes = copy;
    msgpack_unpacked_init(&m->up);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&m->up, copy, n, &off);
    if (r != MSGPACK_UNPACK_SUCCESS || off != n ||
        m->up.data.type != MSGPACK_OBJECT_MAP) {
        qv_wire_msg_free(m);
        return qv_fail(err, r == MSGPACK_UNPACK_NOMEM_ERROR ? QV_ERR_NOMEM
                                                            : QV_ERR_CORRUPT,
                       "wire: %s: msgpack refused the body (%d)", tn, (int)r);
    }
    vctx v = {.type = tn, .err = err};
    for (int i = 0; i < QV_WIRE_MAX_DEPTH + 2; ++i)
        v.path[i] = (pelem){NULL, 0, -1};
    st = no_dups(&v, &m->up.data);
    if (!st)
        st = check_map(&v, &m->up.data, TYPES[t].schema);
    if (!st && t == QV_MSG_BLOB_CHUNK) {
        uint64_t off64 = 0, size = 0;
        const msgpack_object *b = qv_wire_find(&m->up.data, "bytes");
        qv_wire_get_u64(&m->up.data, "offset", &off64, NULL);
        qv_wire_get_u64(&m->up.data, "size", &size, NULL);
        if (off64 > size || b->via.bin.size > size - off64)
            st = qv_fail(err, QV_ERR_CORRUPT,
                         "wire: blob_chunk.bytes: %u bytes at offset %llu "
                         "run past the blob's size %llu", b->via.bin.size,
                         (unsigned long long)off64, (unsigned long long)size);
    }
    if (st) {
        qv_wire_msg_free(m);
        return st;
    }
    *out = m;
    return QV_OK;
}

qv_status qv_wire_decode(const qv_wire_frame *frames, size_t n_frames,
                         qv_wire_msg **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "wire: NULL out");
    *out = NULL;
    if (!frames && n_frames)
        return qv_fail(err, QV_ERR_INVALID, "wire: NULL frames");
    if (n_frames == 0)
        return qv_fail(err, QV_ERR_CORRUPT, "wire: no frames");
    qv_status st = qv_wire_check_id(frames[0].data, frames[0].size, err);
    if (st)
        return st;
    if (n_frames != QV_WIRE_FRAMES)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: %zu frames (a message has %d: id, type, body)",
                       n_frames, QV_WIRE_FRAMES);
    qv_wire_type t;
    if (!frames[1].data && frames[1].size)
        return qv_fail(err, QV_ERR_INVALID, "wire: NULL type frame");
    if ((st = qv_wire_type_parse(frames[1].data ? frames[1].data : "",
                                 frames[1].size, &t, err)))
        return st;
    return qv_wire_decode_body(t, frames[2].data, frames[2].size, out, err);
}

void qv_wire_msg_free(qv_wire_msg *m)
{
    if (!m)
        return;
    msgpack_unpacked_destroy(&m->up);
    free(m->bytes);
    free(m);
}

qv_wire_type qv_wire_msg_type(const qv_wire_msg *m) { return m->type; }

const msgpack_object *qv_wire_msg_body(const qv_wire_msg *m)
{
    return &m->up.data;
}

/* ---- getters ------------------------------------------------------------ */

const msgpack_object *qv_wire_find(const msgpack_object *map, const char *key)
{
    if (!map || !key || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; ++i)
        if (key_is(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

bool qv_wire_has(const msgpack_object *map, const char *key)
{
    return qv_wire_find(map, key) != NULL;
}

static qv_status lookup(const msgpack_object *map, const char *key,
                        msgpack_object_type want, const char *what,
                        const msgpack_object **o, qv_err *err)
{
    if (!map || !key || map->type != MSGPACK_OBJECT_MAP)
        return qv_fail(err, QV_ERR_INVALID, "wire: field '%s': not a map",
                       key ? key : "(null)");
    *o = qv_wire_find(map, key);
    if (!*o)
        return qv_fail(err, QV_ERR_NOT_FOUND, "wire: field '%s' is missing",
                       key);
    if ((*o)->type != want)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: field '%s' must be %s, not %s", key, what,
                       otype(*o));
    return QV_OK;
}

qv_status qv_wire_get_strv(const msgpack_object *map, const char *key,
                           const char **s, size_t *len, size_t max_len,
                           qv_err *err)
{
    const msgpack_object *o;
    qv_status st = lookup(map, key, MSGPACK_OBJECT_STR, "a string", &o, err);
    if (st)
        return st;
    if (o->via.str.size > max_len)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: field '%s' is %u bytes (limit %zu)", key,
                       o->via.str.size, max_len);
    *s = o->via.str.ptr;
    *len = o->via.str.size;
    return QV_OK;
}

qv_status qv_wire_get_str(const msgpack_object *map, const char *key,
                          char *out, size_t cap, qv_err *err)
{
    const char *s;
    size_t n;
    if (!out || cap == 0)
        return qv_fail(err, QV_ERR_INVALID, "wire: field '%s': no buffer",
                       key ? key : "(null)");
    out[0] = '\0';
    qv_status st = qv_wire_get_strv(map, key, &s, &n, cap - 1, err);
    if (st)
        return st;
    memcpy(out, s, n);
    out[n] = '\0';
    return QV_OK;
}

qv_status qv_wire_get_u64(const msgpack_object *map, const char *key,
                          uint64_t *out, qv_err *err)
{
    const msgpack_object *o;
    qv_status st = lookup(map, key, MSGPACK_OBJECT_POSITIVE_INTEGER,
                          "a non-negative integer", &o, err);
    if (st)
        return st;
    *out = o->via.u64;
    return QV_OK;
}

qv_status qv_wire_get_i64(const msgpack_object *map, const char *key,
                          int64_t *out, qv_err *err)
{
    const msgpack_object *o;
    qv_status st = lookup(map, key, MSGPACK_OBJECT_NEGATIVE_INTEGER,
                          "an integer", &o, err);
    if (st == QV_OK) {
        *out = o->via.i64;
        return QV_OK;
    }
    if (st != QV_ERR_CORRUPT || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return st;
    if (o->via.u64 > (uint64_t)INT64_MAX)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: field '%s' is out of int64 range", key);
    qv_err_clear(err);
    *out = (int64_t)o->via.u64;
    return QV_OK;
}

qv_status qv_wire_get_f64(const msgpack_object *map, const char *key,
                          double *out, qv_err *err)
{
    const msgpack_object *o;
    qv_status st = lookup(map, key, MSGPACK_OBJECT_FLOAT64, "a number", &o,
                          err);
    if (st != QV_OK && st != QV_ERR_CORRUPT)
        return st;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; break;
    default: return st;
    }
    qv_err_clear(err);
    return QV_OK;
}

qv_status qv_wire_get_bool(const msgpack_object *map, const char *key,
                           bool *out, qv_err *err)
{
    const msgpack_object *o;
    qv_status st = lookup(map, key, MSGPACK_OBJECT_BOOLEAN, "a bool", &o, err);
    if (st)
        return st;
    *out = o->via.boolean;
    return QV_OK;
}

qv_status qv_wire_get_bin(const msgpack_object *map, const char *key,
                          const void **data, size_t *len, size_t max_len,
                          qv_err *err)
{
    const msgpack_object *o;
    qv_status st = lookup(map, key, MSGPACK_OBJECT_BIN, "a bin", &o, err);
    if (st)
        return st;
    if (o->via.bin.size > max_len)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: field '%s' is %u bytes (limit %zu)", key,
                       o->via.bin.size, max_len);
    *data = o->via.bin.ptr;
    *len = o->via.bin.size;
    return QV_OK;
}

qv_status qv_wire_get_map(const msgpack_object *map, const char *key,
                          const msgpack_object **out, qv_err *err)
{
    return lookup(map, key, MSGPACK_OBJECT_MAP, "a map", out, err);
}

qv_status qv_wire_get_array(const msgpack_object *map, const char *key,
                            const msgpack_object **items, size_t *n,
                            size_t max_n, qv_err *err)
{
    const msgpack_object *o;
    qv_status st = lookup(map, key, MSGPACK_OBJECT_ARRAY, "an array", &o, err);
    if (st)
        return st;
    if (o->via.array.size > max_n)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "wire: field '%s' has %u elements (limit %zu)", key,
                       o->via.array.size, max_n);
    *n = o->via.array.size;
    *items = *n ? o->via.array.ptr : NULL;
    return QV_OK;
}

/* ---- writer ------------------------------------------------------------- */

struct qv_wire_writer {
    qv_wire_type type;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    qv_status st;
    char what[160];
    int done;
};

static void wchk(qv_wire_writer *w, int rc, const char *what)
{
    if (w && rc != 0 && w->st == QV_OK) {
        w->st = QV_ERR_NOMEM;
        snprintf(w->what, sizeof w->what, "%s", what);
    }
}

#define LIVE(w) ((w) && (w)->st == QV_OK && !(w)->done)

qv_status qv_wire_writer_new(qv_wire_type t, size_t n_fields,
                             qv_wire_writer **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "wire: NULL out");
    *out = NULL;
    if ((unsigned)t >= QV_MSG_COUNT || n_fields > QV_WIRE_MAX_MAP)
        return qv_fail(err, QV_ERR_INVALID,
                       "wire: writer for type %d with %zu fields", (int)t,
                       n_fields);
    qv_wire_writer *w = calloc(1, sizeof *w);
    if (!w)
        return qv_fail(err, QV_ERR_NOMEM, "wire: out of memory");
    w->type = t;
    msgpack_sbuffer_init(&w->sb);
    msgpack_packer_init(&w->pk, &w->sb, msgpack_sbuffer_write);
    wchk(w, msgpack_pack_map(&w->pk, n_fields), "the body map");
    *out = w;
    return QV_OK;
}

void qv_wire_writer_free(qv_wire_writer *w)
{
    if (!w)
        return;
    msgpack_sbuffer_destroy(&w->sb);
    free(w);
}

void qv_wire_w_strn(qv_wire_writer *w, const char *s, size_t n)
{
    if (!LIVE(w))
        return;
    if (!s) {
        wchk(w, msgpack_pack_nil(&w->pk), "nil");
        return;
    }
    if (n > UINT32_MAX) {
        w->st = QV_ERR_INVALID;
        snprintf(w->what, sizeof w->what, "a string of %zu bytes", n);
        return;
    }
    wchk(w, msgpack_pack_str_with_body(&w->pk, s, n), "a string");
}

void qv_wire_w_str(qv_wire_writer *w, const char *s)
{
    qv_wire_w_strn(w, s, s ? strlen(s) : 0);
}

void qv_wire_w_u64(qv_wire_writer *w, uint64_t v)
{
    if (LIVE(w))
        wchk(w, msgpack_pack_uint64(&w->pk, v), "an integer");
}

void qv_wire_w_i64(qv_wire_writer *w, int64_t v)
{
    if (LIVE(w))
        wchk(w, msgpack_pack_int64(&w->pk, v), "an integer");
}

void qv_wire_w_f64(qv_wire_writer *w, double v)
{
    if (!LIVE(w))
        return;
    if (!isfinite(v)) {
        w->st = QV_ERR_INVALID;
        snprintf(w->what, sizeof w->what, "a float that is NaN or infinite");
        return;
    }
    wchk(w, msgpack_pack_double(&w->pk, v), "a float");
}

void qv_wire_w_bool(qv_wire_writer *w, bool v)
{
    if (LIVE(w))
        wchk(w, v ? msgpack_pack_true(&w->pk) : msgpack_pack_false(&w->pk),
             "a bool");
}

void qv_wire_w_bin(qv_wire_writer *w, const void *data, size_t n)
{
    if (!LIVE(w))
        return;
    if (n > QV_WIRE_MAX_CHUNK || (!data && n)) {
        w->st = QV_ERR_INVALID;
        snprintf(w->what, sizeof w->what, "a bin of %zu bytes (limit %u)", n,
                 QV_WIRE_MAX_CHUNK);
        return;
    }
    wchk(w, msgpack_pack_bin_with_body(&w->pk, data ? data : "", n), "a bin");
}

void qv_wire_w_nil(qv_wire_writer *w)
{
    if (LIVE(w))
        wchk(w, msgpack_pack_nil(&w->pk), "nil");
}

void qv_wire_w_map(qv_wire_writer *w, size_t n)
{
    if (!LIVE(w))
        return;
    if (n > QV_WIRE_MAX_MAP) {
        w->st = QV_ERR_INVALID;
        snprintf(w->what, sizeof w->what, "a map of %zu entries", n);
        return;
    }
    wchk(w, msgpack_pack_map(&w->pk, n), "a map");
}

void qv_wire_w_array(qv_wire_writer *w, size_t n)
{
    if (!LIVE(w))
        return;
    if (n > QV_WIRE_MAX_ARRAY) {
        w->st = QV_ERR_INVALID;
        snprintf(w->what, sizeof w->what, "an array of %zu elements", n);
        return;
    }
    wchk(w, msgpack_pack_array(&w->pk, n), "an array");
}

void qv_wire_w_object(qv_wire_writer *w, const msgpack_object *o)
{
    if (!LIVE(w))
        return;
    if (!o) {
        qv_wire_w_nil(w);
        return;
    }
    wchk(w, msgpack_pack_object(&w->pk, *o), "an object");
}

void qv_wire_w_key(qv_wire_writer *w, const char *key)
{
    if (!LIVE(w))
        return;
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > QV_WIRE_MAX_KEY) {
        w->st = QV_ERR_INVALID;
        snprintf(w->what, sizeof w->what, "a key of %zu bytes (1..%d)", n,
                 QV_WIRE_MAX_KEY);
        return;
    }
    qv_wire_w_strn(w, key, n);
}

void qv_wire_kv_str(qv_wire_writer *w, const char *k, const char *s)
{
    qv_wire_w_key(w, k);
    qv_wire_w_str(w, s);
}
void qv_wire_kv_u64(qv_wire_writer *w, const char *k, uint64_t v)
{
    qv_wire_w_key(w, k);
    qv_wire_w_u64(w, v);
}
void qv_wire_kv_i64(qv_wire_writer *w, const char *k, int64_t v)
{
    qv_wire_w_key(w, k);
    qv_wire_w_i64(w, v);
}
void qv_wire_kv_f64(qv_wire_writer *w, const char *k, double v)
{
    qv_wire_w_key(w, k);
    qv_wire_w_f64(w, v);
}
void qv_wire_kv_bool(qv_wire_writer *w, const char *k, bool v)
{
    qv_wire_w_key(w, k);
    qv_wire_w_bool(w, v);
}
void qv_wire_kv_bin(qv_wire_writer *w, const char *k, const void *d,
                    size_t n)
{
    qv_wire_w_key(w, k);
    qv_wire_w_bin(w, d, n);
}
void qv_wire_kv_map(qv_wire_writer *w, const char *k, size_t n)
{
    qv_wire_w_key(w, k);
    qv_wire_w_map(w, n);
}
void qv_wire_kv_array(qv_wire_writer *w, const char *k, size_t n)
{
    qv_wire_w_key(w, k);
    qv_wire_w_array(w, n);
}
void qv_wire_kv_object(qv_wire_writer *w, const char *k,
                       const msgpack_object *o)
{
    qv_wire_w_key(w, k);
    qv_wire_w_object(w, o);
}

static const uint8_t ID_FRAME[QV_WIRE_ID_LEN] = {'Q', 'V', 'A', 'C',
                                                 QV_WIRE_VERSION};

qv_status qv_wire_finish(qv_wire_writer *w, qv_wire_out *out, qv_err *err)
{
    if (!w || !out)
        return qv_fail(err, QV_ERR_INVALID, "wire: NULL writer or out");
    memset(out, 0, sizeof *out);
    const char *tn = TYPES[w->type].name;
    if (w->done)
        return qv_fail(err, QV_ERR_INVALID, "wire: %s: finished twice", tn);
    if (w->st)
        return qv_fail(err, w->st, "wire: %s: could not pack %s", tn, w->what);
    qv_wire_msg *m = NULL;
    qv_err e2;
    qv_status st = qv_wire_decode_body(w->type, w->sb.data, w->sb.size, &m,
                                       &e2);
    qv_wire_msg_free(m);
    if (st)
        return qv_fail(err, st == QV_ERR_NOMEM ? st : QV_ERR_INVALID,
                       "%s (in a message being built)", e2.msg);
    w->done = 1;
    out->body = (uint8_t *)w->sb.data;
    out->body_len = w->sb.size;
    w->sb.data = NULL; /* msgpack_sbuffer_destroy frees NULL */
    w->sb.size = w->sb.alloc = 0;
    out->frame[0] = (qv_wire_frame){ID_FRAME, QV_WIRE_ID_LEN};
    out->frame[1] = (qv_wire_frame){tn, strlen(tn)};
    out->frame[2] = (qv_wire_frame){out->body, out->body_len};
    return QV_OK;
}

void qv_wire_out_free(qv_wire_out *o)
{
    if (!o)
        return;
    free(o->body);
    memset(o, 0, sizeof *o);
}

/* ---- error replies ------------------------------------------------------ */

const char *qv_wire_error_code(qv_status st)
{
    switch (st) {
    case QV_ERR_UNSUPPORTED: return "unsupported";
    case QV_ERR_CORRUPT: return "malformed";
    case QV_ERR_NOT_FOUND: return "not_found";
    case QV_ERR_INVALID: return "invalid";
    case QV_ERR_NOMEM: return "busy";
    default: return "internal";
    }
}

qv_status qv_wire_error_reply(const char *code, const char *message,
                              const char *re, qv_wire_out *out, qv_err *err)
{
    if (!code || !out)
        return qv_fail(err, QV_ERR_INVALID, "wire: NULL error code or out");
    memset(out, 0, sizeof *out);
    /* the text may quote a peer's bytes, cut anywhere by snprintf: keep
     * whole UTF-8 sequences, make anything else (and controls) a '?' */
    const uint8_t *src = (const uint8_t *)(message ? message : "");
    size_t len = strlen((const char *)src), n = 0;
    char msg[QV_WIRE_MAX_TEXT + 1];
    for (size_t i = 0; i < len && n < QV_WIRE_MAX_TEXT;) {
        size_t k = src[i] < 0x80 ? 1 : src[i] >= 0xf0 ? 4
                   : src[i] >= 0xe0 ? 3 : 2;
        if (k > len - i || !utf8_ok(src + i, k) || src[i] < 0x20 ||
            src[i] == 0x7f || n + k > QV_WIRE_MAX_TEXT) {
            msg[n++] = '?';
            i += 1;
            continue;
        }
        memcpy(msg + n, src + i, k);
        n += k;
        i += k;
    }
    qv_wire_type t;
    int with_re = re && qv_wire_type_parse(re, strlen(re), &t, NULL) == QV_OK;
    qv_wire_writer *w;
    qv_status st = qv_wire_writer_new(QV_MSG_ERROR, with_re ? 3 : 2, &w, err);
    if (st)
        return st;
    qv_wire_kv_str(w, "code", code);
    qv_wire_w_key(w, "message");
    qv_wire_w_strn(w, msg, n);
    if (with_re)
        qv_wire_kv_str(w, "re", re);
    st = qv_wire_finish(w, out, err);
    qv_wire_writer_free(w);
    return st;
}
