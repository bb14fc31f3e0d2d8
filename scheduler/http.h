/* scheduler/http.h — the scheduler's read-only HTTP view (issue 13),
 * `qvac scheduler --http 127.0.0.1:9464`, off by default: GET /metrics in
 * the Prometheus text exposition format (version 0.0.4) and GET / as the
 * fleet report in HTML with its plots. It serves two documents the
 * scheduler's loop renders (qv_http_set) and nothing else: no job data
 * beyond ids and counts, no dataset names, no keys; anything but GET or
 * HEAD of those two paths is 404 / 405.
 *
 * libmicrohttpd runs its own thread; qv_http_set may be called from the
 * scheduler's thread at any time. */
#ifndef QV_SCHEDULER_HTTP_H
#define QV_SCHEDULER_HTTP_H

#include "common/status.h"

typedef struct qv_http qv_http;

/* Listens on "HOST:PORT" (an IPv4 address; port 0 picks a free one). */
qv_status qv_http_start(const char *addr, qv_http **out, qv_err *err);
/* The port it listens on. */
int qv_http_port(const qv_http *h);
/* Replaces the documents (copied); NULL leaves one as it is. */
void qv_http_set(qv_http *h, const char *metrics, const char *html);
void qv_http_stop(qv_http **h);

#endif
