/* scheduler/http.c — the read-only HTTP view (scheduler/http.h), on
 * libmicrohttpd. */
#include "scheduler/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

struct qv_http {
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    char *metrics, *html;
    int port;
};

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

static mhd_result reply(struct MHD_Connection *c, unsigned code, const char *type,
                        const char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; img-src data:; style-src 'unsafe-inline'");
    mhd_result ok = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ok;
}

static mhd_result on_request(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version,
                             const char *upload, size_t *upload_size, void **state)
{
    (void)version;
    (void)upload;
    qv_http *h = cls;
    if (!*state) { /* the headers: answer on the next call */
        *state = h;
        return MHD_YES;
    }
    if (*upload_size) { /* a body: not for us */
        *upload_size = 0;
        return MHD_YES;
    }
    int head = !strcmp(method, "HEAD");
    if (strcmp(method, "GET") && !head)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                     "only GET and HEAD\n");
    int metrics = !strcmp(url, "/metrics");
    if (!metrics && strcmp(url, "/"))
        return reply(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
                     "not found: /metrics (Prometheus) and / (the fleet report)\n");
    pthread_mutex_lock(&h->mu);
    char *copy = strdup(metrics ? (h->metrics ? h->metrics : "")
                                : (h->html ? h->html : "<!doctype html><title>qvac</title>"));
    pthread_mutex_unlock(&h->mu);
    if (!copy)
        return MHD_NO;
    mhd_result r = reply(c, MHD_HTTP_OK,
                         metrics ? "text/plain; version=0.0.4; charset=utf-8"
                                 : "text/html; charset=utf-8",
                         copy);
    free(copy);
    return r;
}

qv_status qv_http_start(const char *addr, qv_http **out, qv_err *err)
{
    *out = NULL;
    char host[64];
    int port = -1;
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host ||
        sscanf(colon + 1, "%d", &port) != 1 || port < 0 || port > 65535)
        return qv_fail(err, QV_ERR_INVALID, "--http '%s': give HOST:PORT, e.g. "
                       "127.0.0.1:9464", addr ? addr : "");
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return qv_fail(err, QV_ERR_INVALID, "--http '%s': '%s' is not an IPv4 address "
                       "(127.0.0.1 for this machine only)", addr, host);
    qv_http *h = calloc(1, sizeof *h);
    if (!h)
        return qv_fail(err, QV_ERR_NOMEM, "http: out of memory");
    pthread_mutex_init(&h->mu, NULL);
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                            (uint16_t)port, NULL, NULL, on_request, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!h->d) {
        int e = errno;
        pthread_mutex_destroy(&h->mu);
        free(h);
        return qv_fail(err, QV_ERR_IO, "--http %s: cannot listen there (%s); is the "
                       "port in use?", addr, strerror(e));
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : port;
    *out = h;
    return QV_OK;
}

int qv_http_port(const qv_http *h) { return h ? h->port : 0; }

void qv_http_set(qv_http *h, const char *metrics, const char *html)
{
    if (!h)
        return;
    char *m = metrics ? strdup(metrics) : NULL, *x = html ? strdup(html) : NULL;
    pthread_mutex_lock(&h->mu);
    if (m) {
        free(h->metrics);
        h->metrics = m;
    }
    if (x) {
        free(h->html);
        h->html = x;
    }
    pthread_mutex_unlock(&h->mu);
}

void qv_http_stop(qv_http **hp)
{
    if (!hp || !*hp)
        return;
    qv_http *h = *hp;
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    free(h->metrics);
    free(h->html);
    free(h);
    *hp = NULL;
}
