/* formats/wire.h — the scheduler / worker / client wire protocol (issue 5).
 * docs/protocol.md is the specification: frame layout, every message type
 * and field, limits, error replies and the credit-based blob transfer.
 *
 * A message is three ZeroMQ frames:
 *
 *   [ "QVAC" 0x01 ]  protocol id and version (5 bytes)
 *   [ type ]         message type, ASCII, e.g. "submit"
 *   [ body ]         one msgpack map
 *
 * On a ROUTER socket the peer's identity frame comes first; the caller
 * strips it before decoding and puts it back in front of the reply. This
 * module never touches sockets: it turns messages into frames (byte
 * buffers) and frames back into messages. It depends on msgpack-c and
 * common/ only.
 *
 * Decoding (qv_wire_decode) validates everything before returning: the
 * frame count, the protocol id and version, the type, the body's size,
 * every msgpack item (depth, array and map lengths, string and bin lengths,
 * UTF-8, no NUL in strings, no ext types, string keys, no duplicate keys,
 * nothing after the map), then the message's schema (every known field's
 * type and limits, every required field present). So a decoded message's
 * documented fields can be read with the getters below without surprises.
 * Unknown fields are ignored (within the global limits), so a version-1
 * peer may add fields. Hostile bytes give a status, never a crash, an
 * over-read, or memory beyond a small multiple of the body's size.
 *
 * Statuses of qv_wire_decode:
 *   QV_ERR_UNSUPPORTED  "QVAC" with another version, or an unknown type:
 *                       the peer speaks something this build does not
 *   QV_ERR_CORRUPT      anything malformed or over a limit; the message
 *                       names the frame or the field ("submit.needs.memory")
 *   QV_ERR_NOMEM, QV_ERR_INVALID (NULL arguments)
 * The receiver answers both with an "error" message (qv_wire_error_reply)
 * and changes no state. */
#ifndef QV_FORMATS_WIRE_H
#define QV_FORMATS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "common/status.h"

/* ---- frames and limits ---------------------------------------------- */

#define QV_WIRE_ID "QVAC"          /* the first 4 bytes of frame 0 */
#define QV_WIRE_VERSION 1          /* byte 5 of frame 0 */
#define QV_WIRE_ID_LEN 5
#define QV_WIRE_FRAMES 3           /* id, type, body (after any envelope) */

#define QV_WIRE_MAX_BODY (16u << 20)  /* body frame, bytes */
#define QV_WIRE_MAX_CHUNK (1u << 20)  /* blob_chunk.bytes; any bin value */
#define QV_WIRE_MAX_TYPE 16           /* type frame, bytes */
#define QV_WIRE_MAX_STR 4096          /* any string value, bytes */
#define QV_WIRE_MAX_KEY 64            /* any map key, bytes (min 1) */
#define QV_WIRE_MAX_DEPTH 8           /* nesting; the body map is depth 1 */
#define QV_WIRE_MAX_ARRAY 1024        /* elements of any array */
#define QV_WIRE_MAX_MAP 256           /* entries of any map */
#define QV_WIRE_MAX_ITEMS 65536       /* msgpack items in one body */

/* Per-field caps (docs/protocol.md lists which field has which). */
#define QV_WIRE_MAX_NAME 128     /* names: job, worker, device, scheduler */
#define QV_WIRE_MAX_TEXT 1024    /* reasons, error messages, log lines */
#define QV_WIRE_MAX_DEVICES 64   /* enroll.devices, heartbeat.running */
#define QV_WIRE_HASH_MIN 16      /* blob hashes: lower-case hex digits */
#define QV_WIRE_HASH_MAX 128
#define QV_WIRE_MAX_BENCH 4096   /* bench.result: compact JSON, bytes */

typedef struct qv_wire_frame {
    const void *data;
    size_t size;
} qv_wire_frame;

/* ---- message types -------------------------------------------------- */

typedef enum qv_wire_type {
    QV_MSG_HELLO,        /* client|worker -> scheduler */
    QV_MSG_WELCOME,      /* scheduler -> client|worker */
    QV_MSG_ENROLL,       /* worker -> scheduler */
    QV_MSG_ENROLLED,     /* scheduler -> worker */
    QV_MSG_HEARTBEAT,    /* worker <-> scheduler */
    QV_MSG_SUBMIT,       /* client -> scheduler */
    QV_MSG_SUBMITTED,    /* scheduler -> client */
    QV_MSG_JOBS,         /* client -> scheduler */
    QV_MSG_JOB_LIST,     /* scheduler -> client */
    QV_MSG_WORKERS,      /* client -> scheduler */
    QV_MSG_WORKER_LIST,  /* scheduler -> client */
    QV_MSG_CANCEL,       /* client -> scheduler */
    QV_MSG_CANCELLED,    /* scheduler -> client */
    QV_MSG_LOGS,         /* client -> scheduler */
    QV_MSG_LOG,          /* scheduler -> client */
    QV_MSG_FETCH,        /* client -> scheduler */
    QV_MSG_RESULT,       /* scheduler -> client */
    QV_MSG_ASSIGN,       /* scheduler -> worker */
    QV_MSG_ABORT,        /* scheduler -> worker */
    QV_MSG_PROGRESS,     /* worker -> scheduler */
    QV_MSG_DONE,         /* worker -> scheduler */
    QV_MSG_FAILED,       /* worker -> scheduler */
    QV_MSG_ACK,          /* scheduler -> worker */
    QV_MSG_BLOB_PUT,     /* blob sender -> receiver */
    QV_MSG_BLOB_GET,     /* blob receiver -> holder */
    QV_MSG_BLOB_CHUNK,   /* sender -> receiver */
    QV_MSG_BLOB_CREDIT,  /* receiver -> sender */
    QV_MSG_BLOB_OK,      /* receiver -> sender */
    QV_MSG_ERROR,        /* any -> any: the reply to what was refused */
    QV_MSG_BENCH,        /* worker -> scheduler: a device's bench result */
    QV_MSG_BENCH_OK,     /* scheduler -> worker: stored */
    QV_MSG_BENCHES,      /* client -> scheduler: the fleet's results */
    QV_MSG_BENCH_LIST,   /* scheduler -> client */
    QV_MSG_TUNINGS_PUT,  /* worker -> scheduler: its autotune results */
    QV_MSG_TUNINGS_OK,   /* scheduler -> worker */
    QV_MSG_TUNINGS_GET,  /* worker -> scheduler: results for a fingerprint */
    QV_MSG_TUNINGS,      /* scheduler -> worker */
    QV_MSG_BENCH_RUN,    /* client -> scheduler: benchmark chosen devices */
    QV_MSG_BENCH_QUEUED, /* scheduler -> client */
    QV_MSG_BENCH_REQUEST,/* scheduler -> worker: benchmark one device */
    QV_MSG_COUNT
} qv_wire_type;

/* "hello", "job_list" ...; NULL outside the enum. */
const char *qv_wire_type_name(qv_wire_type t);
/* The type named by n bytes (no NUL needed). QV_ERR_UNSUPPORTED for an
 * unknown name, QV_ERR_CORRUPT for an empty, over-long or non-ASCII one. */
qv_status qv_wire_type_parse(const void *name, size_t n, qv_wire_type *t,
                             qv_err *err);

/* ---- decoding ------------------------------------------------------- */

typedef struct qv_wire_msg qv_wire_msg;

/* Decodes the QV_WIRE_FRAMES frames of one message (envelope removed).
 * The bytes are copied: the frames may be released once this returns.
 * *out is NULL on error. Statuses: see the top of this file. */
qv_status qv_wire_decode(const qv_wire_frame *frames, size_t n_frames,
                         qv_wire_msg **out, qv_err *err);
/* Checks frame 0 alone: QV_OK for "QVAC\x01", QV_ERR_UNSUPPORTED for
 * "QVAC" with another version byte, QV_ERR_CORRUPT otherwise. */
qv_status qv_wire_check_id(const void *data, size_t size, qv_err *err);
/* Decodes a body of type t (the last two steps of qv_wire_decode). */
qv_status qv_wire_decode_body(qv_wire_type t, const void *body, size_t n,
                              qv_wire_msg **out, qv_err *err);
void qv_wire_msg_free(qv_wire_msg *m); /* safe on NULL */

qv_wire_type qv_wire_msg_type(const qv_wire_msg *m);
/* The body map; valid until qv_wire_msg_free. */
const msgpack_object *qv_wire_msg_body(const qv_wire_msg *m);

/* ---- typed field access --------------------------------------------
 * map is the body or a nested map. Every getter checks the type strictly
 * and names the key in its message. Errors: QV_ERR_NOT_FOUND (no such
 * key; an optional field that is absent), QV_ERR_CORRUPT (another type, a
 * negative number for a u64, a value over the cap), QV_ERR_INVALID (map
 * is not a map, NULL). Values point into the message's memory. */

bool qv_wire_has(const msgpack_object *map, const char *key);
/* The value of key (any type), or NULL. */
const msgpack_object *qv_wire_find(const msgpack_object *map, const char *key);
/* Copies the string and a NUL into out[cap]; a string of cap bytes or
 * more is QV_ERR_CORRUPT. */
qv_status qv_wire_get_str(const msgpack_object *map, const char *key,
                          char *out, size_t cap, qv_err *err);
/* The string in place (not NUL-terminated), at most max_len bytes. */
qv_status qv_wire_get_strv(const msgpack_object *map, const char *key,
                           const char **s, size_t *len, size_t max_len,
                           qv_err *err);
qv_status qv_wire_get_u64(const msgpack_object *map, const char *key,
                          uint64_t *out, qv_err *err);
qv_status qv_wire_get_i64(const msgpack_object *map, const char *key,
                          int64_t *out, qv_err *err);
/* A float, or an integer converted to double. NaN and infinities are
 * refused on decode. */
qv_status qv_wire_get_f64(const msgpack_object *map, const char *key,
                          double *out, qv_err *err);
qv_status qv_wire_get_bool(const msgpack_object *map, const char *key,
                           bool *out, qv_err *err);
qv_status qv_wire_get_bin(const msgpack_object *map, const char *key,
                          const void **data, size_t *len, size_t max_len,
                          qv_err *err);
qv_status qv_wire_get_map(const msgpack_object *map, const char *key,
                          const msgpack_object **out, qv_err *err);
/* *items: the n elements (NULL when n is 0); more than max_n elements is
 * QV_ERR_CORRUPT. */
qv_status qv_wire_get_array(const msgpack_object *map, const char *key,
                            const msgpack_object **items, size_t *n,
                            size_t max_n, qv_err *err);

/* ---- encoding ------------------------------------------------------
 * A writer packs one body: qv_wire_writer_new opens the body map with
 * n_fields entries; the caller then writes exactly that many key/value
 * pairs (qv_wire_kv_* write both; qv_wire_w_* write a value alone, for
 * array elements and nested maps opened with qv_wire_w_map / _w_array).
 * Errors are sticky: the calls return nothing, and qv_wire_finish reports
 * the first one. qv_wire_finish also decodes the body it built against
 * the type's schema, so a wrong count, a missing field or a value over a
 * limit is QV_ERR_INVALID (with the decoder's message) rather than a
 * message the peer would refuse. */

typedef struct qv_wire_writer qv_wire_writer;

typedef struct qv_wire_out {
    qv_wire_frame frame[QV_WIRE_FRAMES]; /* id, type, body: send in order */
    uint8_t *body;                       /* owned; frame[2] points here */
    size_t body_len;
} qv_wire_out;

qv_status qv_wire_writer_new(qv_wire_type t, size_t n_fields,
                             qv_wire_writer **out, qv_err *err);
void qv_wire_writer_free(qv_wire_writer *w); /* safe on NULL */

void qv_wire_w_str(qv_wire_writer *w, const char *s); /* NULL: nil */
void qv_wire_w_strn(qv_wire_writer *w, const char *s, size_t n);
void qv_wire_w_u64(qv_wire_writer *w, uint64_t v);
void qv_wire_w_i64(qv_wire_writer *w, int64_t v);
void qv_wire_w_f64(qv_wire_writer *w, double v);
void qv_wire_w_bool(qv_wire_writer *w, bool v);
void qv_wire_w_bin(qv_wire_writer *w, const void *data, size_t n);
void qv_wire_w_nil(qv_wire_writer *w);
void qv_wire_w_map(qv_wire_writer *w, size_t n_entries);
void qv_wire_w_array(qv_wire_writer *w, size_t n_items);
/* A decoded value as it is (to forward e.g. submit.options to assign). */
void qv_wire_w_object(qv_wire_writer *w, const msgpack_object *o);
void qv_wire_w_key(qv_wire_writer *w, const char *key);

void qv_wire_kv_str(qv_wire_writer *w, const char *key, const char *s);
void qv_wire_kv_u64(qv_wire_writer *w, const char *key, uint64_t v);
void qv_wire_kv_i64(qv_wire_writer *w, const char *key, int64_t v);
void qv_wire_kv_f64(qv_wire_writer *w, const char *key, double v);
void qv_wire_kv_bool(qv_wire_writer *w, const char *key, bool v);
void qv_wire_kv_bin(qv_wire_writer *w, const char *key, const void *data,
                    size_t n);
void qv_wire_kv_map(qv_wire_writer *w, const char *key, size_t n_entries);
void qv_wire_kv_array(qv_wire_writer *w, const char *key, size_t n_items);
void qv_wire_kv_object(qv_wire_writer *w, const char *key,
                       const msgpack_object *o);

/* Validates the body and hands it to *out (which the caller frees with
 * qv_wire_out_free). The writer can then only be freed. */
qv_status qv_wire_finish(qv_wire_writer *w, qv_wire_out *out, qv_err *err);
void qv_wire_out_free(qv_wire_out *o); /* safe on NULL and twice */

/* ---- error replies -------------------------------------------------- */

/* The error code string that answers a status: "unsupported", "malformed"
 * (QV_ERR_CORRUPT), "not_found", "invalid", "busy" (QV_ERR_NOMEM),
 * "internal" (anything else). */
const char *qv_wire_error_code(qv_status st);
/* An "error" message: code, message (truncated to QV_WIRE_MAX_TEXT bytes
 * at a UTF-8 boundary) and, when re is not NULL, the type of the message
 * it answers (not echoed when it is not a known type name). */
qv_status qv_wire_error_reply(const char *code, const char *message,
                              const char *re, qv_wire_out *out, qv_err *err);

#endif
