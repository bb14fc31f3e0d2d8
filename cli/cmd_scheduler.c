/* cli/cmd_scheduler.c — `qvac scheduler`, `qvac token`, `qvac clients`. */
#include <signal.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "scheduler/keys.h"
#include "scheduler/server.h"
#include "scheduler/store.h"

static qv_server *g_srv;

static void on_signal(int sig)
{
    (void)sig;
    qv_server_stop(g_srv);
}

static void log_line(void *ud, const char *line)
{
    (void)ud;
    time_t t = time(NULL);
    struct tm tm;
    char ts[32];
    localtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "%s %s\n", ts, line);
}

void qv_help_scheduler(FILE *out)
{
    fprintf(out,
            "usage: qvac scheduler [-b|--bind tcp://*:5555] [-d|--data DIR] [--lease-ms 10000]\n"
            "                      [--max-attempts 3] [--insecure] [--http HOST:PORT]\n"
            "                      [--max-sessions 65536] [--max-blob SIZE]\n\n"
            "Runs the scheduler: one ZeroMQ endpoint, jobs and blobs in DIR (default\n"
            "$XDG_DATA_HOME/qvac/scheduler). CURVE is on unless --insecure; its public key\n"
            "is DIR/scheduler.pub, and this account's client key is admitted at start.\n\n"
            "--http HOST:PORT (off by default; e.g. 127.0.0.1:9464) serves, read-only and\n"
            "without keys, GET /metrics in the Prometheus text format (jobs by state,\n"
            "workers and devices by state, tokens/s per running job, queue wait,\n"
            "heartbeat lag, blob store bytes; refreshed every second) and GET / as the\n"
            "fleet report in HTML with its plots (every 5 s). It holds no job data, dataset\n"
            "names or keys; bind it to a public address only behind your own proxy.\n\n"
            "--max-sessions N: connections held at once (default 65536; a new one past it\n"
            "is answered `busy`); keys that are not admitted hold at most 1024 of them.\n"
            "--max-blob SIZE: the largest upload accepted (bytes, or with K, M, G or T;\n"
            "default 64G). An upload is also refused while the disk would keep less\n"
            "than 256 MiB free.\n\n"
            "Exit status: 0 stopped (SIGINT, SIGTERM), 1 failed, 2 usage error.\n");
}

/* "64G", "512M", "1000" -> bytes; 0 on a bad value. */
static uint64_t parse_size(const char *v)
{
    char *end = NULL;
    double d = strtod(v, &end);
    if (!*v || !(d > 0) || !end)
        return 0;
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024.0, end++;
    else if (*end == 'M' || *end == 'm') mul = 1048576.0, end++;
    else if (*end == 'G' || *end == 'g') mul = 1073741824.0, end++;
    else if (*end == 'T' || *end == 't') mul = 1099511627776.0, end++;
    if (*end == 'i' || *end == 'B' || *end == 'b')
        end += *end == 'i' ? (end[1] == 'B' ? 2 : 1) : 1;
    if (*end || d * mul > 1.8e19)
        return 0;
    return (uint64_t)(d * mul);
}

int qv_cmd_scheduler(int argc, char **argv)
{
    qv_server_opts o = {0};
    enum { O_LEASE = QV_CLI_ID, O_ATTEMPTS, O_INSECURE, O_HTTP, O_SESSIONS, O_BLOB };
    static const struct option lo[] = {
        {"bind", required_argument, NULL, 'b'}, {"data", required_argument, NULL, 'd'},
        {"lease-ms", required_argument, NULL, O_LEASE},
        {"max-attempts", required_argument, NULL, O_ATTEMPTS},
        {"insecure", no_argument, NULL, O_INSECURE},
        {"http", required_argument, NULL, O_HTTP},
        {"max-sessions", required_argument, NULL, O_SESSIONS},
        {"max-blob", required_argument, NULL, O_BLOB}, {NULL, 0, NULL, 0}};
    qv_cli_args p;
    qv_cli_args_init(&p, "scheduler", argc, argv, lo, NULL, 0);
    int c, rc = 0;
    long v;
    while (!rc && (c = qv_cli_next(&p)) != -1) {
        switch (c) {
        case QV_CLI_BAD: return QV_EXIT_USAGE;
        case 'b': o.bind = optarg; break;
        case 'd': o.data_dir = optarg; break;
        case O_INSECURE: o.insecure = 1; break;
        case O_HTTP: o.http = optarg; break;
        case O_LEASE:
            if (!(rc = qv_cli_long(&p, 300, 86400000, &v)))
                o.lease_ms = v;
            break;
        case O_ATTEMPTS: rc = qv_cli_int(&p, 1, 100, &o.max_attempts); break;
        case O_SESSIONS: rc = qv_cli_int(&p, 16, 10000000, &o.max_sessions); break;
        case O_BLOB:
            if (!(o.max_blob = parse_size(optarg)))
                rc = qv_cli_bad_value(&p, "needs a size such as 64G, 512M or a number "
                                      "of bytes (not '%s')", optarg);
            break;
        }
    }
    if (rc)
        return rc;
    o.log = log_line;
    qv_err err = {0};
    if (qv_server_open(&o, &g_srv, &err) != QV_OK)
        return qv_cli_error(&err);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (!o.insecure)
        fprintf(stderr, "scheduler public key: %s\n", qv_server_public_key(g_srv));
    if (o.http)
        fprintf(stderr, "scheduler: metrics on http://%.*s:%d/metrics, the fleet report on "
                "http://%.*s:%d/\n", (int)(strrchr(o.http, ':') - o.http), o.http,
                qv_server_http_port(g_srv), (int)(strrchr(o.http, ':') - o.http), o.http,
                qv_server_http_port(g_srv));
    qv_status st = qv_server_run(g_srv, &err);
    qv_server_close(&g_srv);
    fprintf(stderr, "scheduler stopped\n");
    return st == QV_OK ? QV_EXIT_OK : qv_cli_error(&err);
}

static qv_status open_data(const char *dir, qv_store **st, char *path, size_t n,
                           qv_err *err)
{
    qv_status s = QV_OK;
    if (dir)
        snprintf(path, n, "%s", dir);
    else
        s = qv_paths_data_dir(path, n, err);
    if (s == QV_OK)
        s = qv_paths_mkdir(path, err);
    if (s == QV_OK)
        s = qv_store_open(path, NULL, st, err);
    return s;
}

void qv_help_token(FILE *out)
{
    fprintf(out,
            "usage: qvac token [-d|--data DIR] [--ttl SECONDS]\n\n"
            "Prints a one-time enrollment token (default valid 3600 s) on its last line:\n"
            "  qvac worker --join tcp://HOST:5555 --token TOKEN\n");
}

int qv_cmd_token(int argc, char **argv)
{
    const char *dir = NULL;
    long long ttl = 3600;
    static const struct option lo[] = {{"data", required_argument, NULL, 'd'},
                                       {"ttl", required_argument, NULL, QV_CLI_ID},
                                       {NULL, 0, NULL, 0}};
    qv_cli_args p;
    qv_cli_args_init(&p, "token", argc, argv, lo, NULL, 0);
    int c;
    long v;
    while ((c = qv_cli_next(&p)) != -1) {
        if (c == 'd')
            dir = optarg;
        else if (c != QV_CLI_ID || qv_cli_long(&p, 1, 3650L * 86400, &v))
            return QV_EXIT_USAGE;
        else
            ttl = v;
    }
    qv_err err = {0};
    qv_store *st = NULL;
    char path[4096], kpath[4200];
    qv_keypair kp;
    if (open_data(dir, &st, path, sizeof path, &err) != QV_OK)
        return qv_cli_error(&err);
    snprintf(kpath, sizeof kpath, "%s/scheduler.key", path);
    char tok[QV_TOKEN_HEX];
    qv_status s = qv_keys_load_or_create(kpath, &kp, &err);
    if (s == QV_OK) {
        snprintf(kpath, sizeof kpath, "%s/scheduler.pub", path);
        s = qv_keys_write_public(kpath, kp.pub, &err);
    }
    if (s == QV_OK)
        s = qv_store_token_new(st, qv_store_now_ms(), ttl * 1000, tok, &err);
    qv_store_close(&st);
    char text[QV_TOKEN_TEXT];
    if (s == QV_OK)
        s = qv_token_format(tok, kp.pub, text, sizeof text, &err);
    if (s != QV_OK)
        return qv_cli_error(&err);
    /* hex and '_' only: it pastes into a shell as it is */
    fprintf(stderr, "one-time enrollment token, valid %lld s; on the worker's machine:\n"
            "  qvac worker --join tcp://THIS-HOST:5555 --token %s\n", ttl, text);
    printf("%s\n", text);
    return QV_EXIT_OK;
}

void qv_help_clients(FILE *out)
{
    fprintf(out, "usage: qvac clients add KEY [--data DIR]\n"
                 "       qvac clients remove KEY [--data DIR]\n"
                 "       qvac clients list [--data DIR] [--json]\n\n"
                 "Admits, removes or lists the client keys a scheduler accepts (a key as\n"
                 "`qvac keys` shows it; quote it: Z85 has $ & ) > { !). Run it on the\n"
                 "scheduler's machine: it changes the scheduler's data folder, and a\n"
                 "running scheduler refuses a removed key's connections within a tick.\n\n"
                 "options:\n"
                 "  -d, --data DIR  the scheduler's data folder (default: qvac scheduler's)\n"
                 "  --json        (list) one JSON array of {key, name, added_ms}\n"
                 "  -h, --help    this help\n");
}

int qv_cmd_clients(int argc, char **argv)
{
    static const struct option lo[] = {{"data", required_argument, NULL, 'd'},
                                       {"json", no_argument, NULL, QV_CLI_ID},
                                       {NULL, 0, NULL, 0}};
    const char *dir = NULL, *pos[2] = {"", NULL};
    int json = 0, c;
    qv_cli_args p;
    qv_cli_args_init(&p, "clients", argc, argv, lo, pos, 2);
    while ((c = qv_cli_next(&p)) != -1) {
        if (c == 'd') dir = optarg;
        else if (c == QV_CLI_ID) json = 1;
        else return QV_EXIT_USAGE;
    }
    const char *verb = pos[0], *key = pos[1];
    int npos = p.npos ? p.npos - 1 : 0;
    int list = !strcmp(verb, "list"), add = !strcmp(verb, "add"),
        rm = !strcmp(verb, "remove");
    if (!list && !add && !rm)
        return qv_cli_usage("clients", "expected `qvac clients add|remove KEY` or "
                            "`qvac clients list`");
    if (list ? npos != 0 : npos != 1)
        return qv_cli_usage("clients", list ? "`list` takes no KEY"
                                            : "expected exactly one KEY");
    if (!list && qv_keys_valid(key) != QV_OK)
        return qv_cli_usage("clients", "KEY must be a 40-character Z85 public key "
                            "(in single quotes)");
    qv_err err = {0};
    qv_store *st = NULL;
    char path[4096];
    if (open_data(dir, &st, path, sizeof path, &err) != QV_OK)
        return qv_cli_error(&err);
    qv_status s;
    if (list) {
        qv_client_row *rows = NULL;
        size_t n = 0;
        s = qv_store_list_clients(st, &rows, &n, &err);
        qv_store_close(&st);
        if (s != QV_OK)
            return qv_cli_error(&err);
        if (json) {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, json_pack("{s:s, s:s, s:I}", "key", rows[i].pubkey,
                                                     "name", rows[i].name, "added_ms",
                                                     (json_int_t)rows[i].added_ms));
            qv_cli_print_json(arr);
        } else if (!n) {
            printf("no client keys admitted (the account that runs the scheduler is "
                   "admitted when it starts)\n");
        } else {
            printf("%-42s %-16s %s\n", "KEY", "NAME", "ADDED");
            for (size_t i = 0; i < n; i++) {
                char when[32] = "", q[64], nm[64];
                time_t tt = (time_t)(rows[i].added_ms / 1000);
                struct tm tm;
                if (localtime_r(&tt, &tm))
                    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
                qv_shell_quote(rows[i].pubkey, q, sizeof q);
                qv_printable(nm, sizeof nm, rows[i].name);
                printf("%-42s %-16s %s\n", q, nm, when);
            }
        }
        free(rows);
        return QV_EXIT_OK;
    }
    s = add ? qv_store_client_add(st, key, "added", qv_store_now_ms(), &err)
            : qv_store_client_remove(st, key, &err);
    qv_store_close(&st);
    if (s != QV_OK)
        return qv_cli_error(&err);
    printf("client %s %s\n", key, add ? "admitted" : "removed");
    return QV_EXIT_OK;
}

int qv_cmd_workers_remove(int argc, char **argv)
{
    static const struct option lo[] = {{"data", required_argument, NULL, 'd'},
                                       {NULL, 0, NULL, 0}};
    const char *dir = NULL, *id = NULL;
    int c, npos = 0;
    qv_cli_args p;
    qv_cli_args_init(&p, "workers remove", argc - 1, argv + 1, lo, &id, 1);
    while ((c = qv_cli_next(&p)) != -1)
        if (c != 'd')
            return QV_EXIT_USAGE;
        else
            dir = optarg;
    npos = p.npos;
    if (npos != 1)
        return qv_cli_usage("workers remove", "expected `qvac workers remove ID`");
    qv_err err = {0};
    qv_store *st = NULL;
    char path[4096];
    if (open_data(dir, &st, path, sizeof path, &err) != QV_OK)
        return qv_cli_error(&err);
    int rq = 0;
    qv_status s = qv_store_worker_revoke(st, id, qv_store_now_ms(), &rq, &err);
    qv_store_close(&st);
    if (s != QV_OK)
        return qv_cli_error(&err);
    printf("worker %s removed; %d job(s) it held queued again\n", id, rq);
    return QV_EXIT_OK;
}
