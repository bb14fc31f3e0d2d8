/* scheduler/client.h — the client side of the wire protocol (issue 5,
 * docs/protocol.md): what `qvac submit`, `jobs`, `logs`, `fetch` ... share.
 *
 * A qv_client is one ZeroMQ DEALER connected to the scheduler's ROUTER,
 * with CURVE (the account's client key, <config>/client.key, and the
 * scheduler's public key) unless opts.insecure. qv_client_connect sends
 * `hello` and waits for `welcome`, so a connected client knows the
 * scheduler's chunk size and credit.
 *
 * Every wait is bounded (opts.timeout_ms per reply). A scheduler that does
 * not answer is a QV_ERR_IO whose message says what to check. An `error`
 * reply becomes a status (see qv_client_error_status) whose message is the
 * scheduler's text; qv_client_last_error_code gives the protocol's code.
 *
 * Blobs (docs/protocol.md, "Blobs"): qv_client_upload_* hash the content
 * with SHA-256 (streamed), send blob_put, and send chunks only as the
 * scheduler grants credit, until blob_ok (nothing is sent when the
 * scheduler already holds the blob). qv_client_download asks with
 * blob_get, grants credit a chunk at a time, writes to a temporary file
 * next to the destination, checks offsets and the hash of the whole blob,
 * and renames it into place only when all is right.
 *
 * Nothing here prints; one thread uses a qv_client at a time. */
#ifndef QV_SCHED_CLIENT_H
#define QV_SCHED_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "formats/wire.h"

#define QV_CLIENT_DEFAULT_ADDR "tcp://127.0.0.1:5555"
#define QV_CLIENT_TIMEOUT_MS 10000
#define QV_SHA256_HEX 65 /* 64 hex digits + NUL */

typedef struct qv_client_opts {
    const char *address;    /* NULL: env QVAC_SCHEDULER, else the default */
    const char *server_key; /* scheduler's public key, Z85. NULL: env
                               QVAC_SCHEDULER_KEY, else <data>/scheduler.pub */
    const char *client_key; /* keypair file; NULL: <config>/client.key
                               (created when absent) */
    bool insecure;          /* no CURVE (the scheduler runs --insecure) */
    int timeout_ms;         /* per reply; 0 -> QV_CLIENT_TIMEOUT_MS */
    const char *name;       /* hello.name; NULL: user@host */
} qv_client_opts;

typedef struct qv_client qv_client;

/* What the scheduler said in `welcome`. */
typedef struct qv_client_welcome {
    char scheduler[QV_WIRE_MAX_NAME + 1];
    char version[33];
    char hash[17];
    uint64_t lease_ms, chunk, credit;
} qv_client_welcome;

/* The address a client with these options connects to. */
const char *qv_client_address_for(const qv_client_opts *o);

/* Connects, says hello, waits for welcome. *out is NULL on error. */
qv_status qv_client_connect(const qv_client_opts *o, qv_client **out,
                            qv_err *err);
void qv_client_close(qv_client **c); /* safe on NULL */

const char *qv_client_address(const qv_client *c);
const qv_client_welcome *qv_client_welcome_info(const qv_client *c);
/* The code of the last `error` reply ("not_found", ...), "" if none. */
const char *qv_client_last_error_code(const qv_client *c);
/* True when the last qv_client_recv failed because nothing came in time
 * (as opposed to an error reply or a socket error). */
bool qv_client_timed_out(const qv_client *c);
/* A new connection to the same scheduler (the same keys); what was queued
 * for the old one is dropped. For a client that goes on after silence. */
qv_status qv_client_reconnect(qv_client *c, qv_err *err);
/* Changes the per-reply timeout (ms, > 0). */
void qv_client_set_timeout(qv_client *c, int timeout_ms);

/* The status that answers an error code: not_found -> QV_ERR_NOT_FOUND,
 * malformed / hash_mismatch -> QV_ERR_CORRUPT, unsupported ->
 * QV_ERR_UNSUPPORTED, busy -> QV_ERR_NOMEM, invalid / denied ->
 * QV_ERR_INVALID, anything else -> QV_ERR_IO. */
qv_status qv_client_error_status(const char *code);

/* Sends a built message (not freed). */
qv_status qv_client_send(qv_client *c, const qv_wire_out *msg, qv_err *err);
/* The next message, waiting at most the timeout. An `error` message is
 * returned as a status (the message's text in err), not as *out. */
qv_status qv_client_recv(qv_client *c, qv_wire_msg **out, qv_err *err);
/* Sends msg and waits for a message of type want (others that arrive
 * meanwhile, e.g. late blob credit, are dropped). */
qv_status qv_client_request(qv_client *c, const qv_wire_out *msg,
                            qv_wire_type want, qv_wire_msg **reply,
                            qv_err *err);

/* SHA-256 of a file / of memory, as 64 lower-case hex digits. */
qv_status qv_sha256_file(const char *path, char hex[QV_SHA256_HEX],
                         uint64_t *size, qv_err *err);
void qv_sha256_mem(const void *data, size_t n, char hex[QV_SHA256_HEX]);

/* Progress of a transfer: bytes done of total. May be NULL. */
typedef void (*qv_client_progress_fn)(void *user, uint64_t done,
                                      uint64_t total);

/* Uploads a file or a buffer as a blob. hex receives its hash; *sent
 * (may be NULL) is false when the scheduler already held it. */
qv_status qv_client_upload_file(qv_client *c, const char *path,
                                char hex[QV_SHA256_HEX], bool *sent,
                                qv_client_progress_fn fn, void *user,
                                qv_err *err);
qv_status qv_client_upload_mem(qv_client *c, const void *data, size_t n,
                               char hex[QV_SHA256_HEX], bool *sent,
                               qv_client_progress_fn fn, void *user,
                               qv_err *err);

/* Downloads blob hash to path (replacing it only once complete and
 * verified). size: the size expected, or UINT64_MAX when unknown. */
qv_status qv_client_download(qv_client *c, const char *hash, uint64_t size,
                             const char *path, qv_client_progress_fn fn,
                             void *user, qv_err *err);

#endif
