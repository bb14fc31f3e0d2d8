/* scheduler/server.h — the scheduler daemon (issue 5): one ZeroMQ ROUTER
 * socket speaking docs/protocol.md, the durable state in scheduler/store.h.
 *
 * CURVE is on unless opts.insecure: the scheduler's keypair is
 * <data>/scheduler.key (public key also in <data>/scheduler.pub), a ZAP
 * handler (inproc://zeromq.zap.01, its own store connection) accepts every
 * handshake and labels the connection with the key's role (User-Id
 * "client", "worker" or "unknown"; property X-Key = the key in Z85). At
 * open the account's client key (opts.client_key, default
 * <config>/client.key; created if missing) is admitted. A peer whose key is
 * unknown may send only hello and enroll; anything else gets error
 * "denied" and a log line naming the key.
 *
 * Every message is answered or acted on with the store; malformed,
 * oversized or unknown messages get an error reply and a log line, and
 * change no state. A worker must send `enroll` on every connection (with
 * a token only when its key is not yet admitted): dispatch goes to the
 * devices a connection enrolled. The loop polls with a timeout, so the tick
 * (lease expiry, silent workers marked lost, `logs -f` follow-ups) runs
 * even when nothing arrives.
 *
 * Threads: qv_server_run runs the loop in the calling thread; only
 * qv_server_stop may be called from another thread (or a signal handler). */
#ifndef QV_SCHED_SERVER_H
#define QV_SCHED_SERVER_H

#include <stdint.h>

#include "common/status.h"

typedef struct qv_server qv_server;

/* Receives one line (no newline) per event worth logging. */
typedef void (*qv_server_log_fn)(void *ud, const char *line);

typedef struct qv_server_opts {
    const char *bind;       /* NULL: tcp://(any):5555; a port of "*" picks a free one */
    const char *data_dir;   /* NULL -> qv_paths_data_dir() */
    const char *client_key; /* NULL -> <config>/client.key; "" = admit none */
    const char *name;       /* the scheduler's name in welcome; NULL -> host */
    int64_t lease_ms;       /* 0 -> 10000 */
    int max_attempts;       /* 0 -> 3 (jobs that do not say otherwise) */
    int checkpoint_every;   /* steps between checkpoint uploads; 0 -> 100 */
    int tick_ms;            /* 0 -> min(250, lease_ms / 4) */
    int insecure;           /* 1: no CURVE, every peer admitted */
    int max_sessions;       /* connections held at once; 0 -> 65536. Past it a
                               new connection gets `busy` */
    uint64_t max_blob;      /* largest upload accepted; 0 -> 64 GiB */
    int max_unknown;        /* of them from keys not admitted; 0 -> 1024 (the
                               least recently active one makes room) */
    const char *http;       /* "HOST:PORT": serve /metrics and the fleet report
                               there (scheduler/http.h); NULL: off */
    qv_server_log_fn log;   /* NULL: silent */
    void *log_ud;
} qv_server_opts;

/* Opens the store, the keys and binds the socket. */
qv_status qv_server_open(const qv_server_opts *opts, qv_server **out,
                         qv_err *err);
/* The endpoint bound (the real port when bind ended with ":*"). */
const char *qv_server_endpoint(const qv_server *srv);
/* The HTTP view's port (0 when off). */
int qv_server_http_port(const qv_server *srv);
/* The scheduler's public key (Z85), "" when insecure. */
const char *qv_server_public_key(const qv_server *srv);
/* Runs until qv_server_stop. */
qv_status qv_server_run(qv_server *srv, qv_err *err);
/* Async-signal-safe and thread-safe: the loop ends within one tick. */
void qv_server_stop(qv_server *srv);
void qv_server_close(qv_server **srv);

/* For tests and the fuzz target (not for use beside qv_server_run): one
 * message of n frames (id, type, body, ...) from the connection rid,
 * handled, dispatched and committed as the loop does it; one tick at now;
 * and a check of the session table's invariants (1 when they hold, else 0
 * and why). */
void qv_server_feed(qv_server *srv, const void *rid, size_t rid_len,
                    const void *const *frames, const size_t *lens, int n,
                    int64_t now);
void qv_server_tick(qv_server *srv, int64_t now);
int qv_server_check(const qv_server *srv, char *why, size_t n);

#endif
