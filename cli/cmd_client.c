/* cli/cmd_client.c — the client commands of the distributed runner (issue
 * 5): `qvac submit`, `jobs`, `workers`, `logs`, `cancel`, `fetch`, `keys`.
 * They talk to the scheduler through scheduler/client.h (docs/protocol.md);
 * this file only parses arguments and prints. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/progress.h"
#include "common/embedded.h"
#include "formats/dataset.h"
#include "formats/gguf.h"
#include "formats/vocab.h"
#include "scheduler/client.h"
#include "scheduler/fleet.h"
#include "scheduler/keys.h"
#include "train/bench.h"
#include "worker/job.h"

#define BUILTIN_MODEL "model/qvac-tiny.gguf"
#define BUILTIN_DATA "data/pirate.jsonl"

#define CONN_HELP                                                              \
    "  --scheduler ADDR      the scheduler (default: $QVAC_SCHEDULER, else\n"  \
    "                        " QV_CLIENT_DEFAULT_ADDR ")\n"                    \
    "  --scheduler-key KEY   its CURVE public key (default: $QVAC_SCHEDULER_KEY,\n" \
    "                        else the local scheduler's scheduler.pub)\n"      \
    "  --insecure            no CURVE: only for a scheduler started --insecure\n" \
    "  --timeout SECONDS     how long to wait for each answer (10)\n"          \
    "  -h, --help            this help\n"

#define EXIT_HELP                                                              \
    "\nExit status: 0 done, 1 failed (the scheduler refused, did not answer,\n" \
    "or the job failed), 2 usage error.\n"

typedef struct cargs {
    const char *cmd;
    qv_client_opts co;
    int json;
} cargs;

static void cargs_init(cargs *a, const char *cmd)
{
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
}

/* The options every client command takes, and --json. */
enum { O_SCHED = QV_CLI_ID, O_SCHED_KEY, O_INSECURE, O_TIMEOUT, O_JSON, O_CMD };
#define CONN_OPTS                                                              \
    {"scheduler", required_argument, NULL, O_SCHED},                           \
    {"scheduler-key", required_argument, NULL, O_SCHED_KEY},                   \
    {"insecure", no_argument, NULL, O_INSECURE},                               \
    {"timeout", required_argument, NULL, O_TIMEOUT},                           \
    {"json", no_argument, NULL, O_JSON}
#define END_OPTS {NULL, 0, NULL, 0}

/* The next option of the command's own (qv_cli_next), after taking in the
 * connection options and --json; QV_CLI_BAD after a usage error. */
static int next_opt(cargs *a, qv_cli_args *p)
{
    for (;;) {
        int c = qv_cli_next(p);
        double sec;
        switch (c) {
        case O_JSON: a->json = 1; break;
        case O_INSECURE: a->co.insecure = true; break;
        case O_SCHED: a->co.address = optarg; break;
        case O_SCHED_KEY:
            if (qv_keys_valid(optarg)) {
                qv_cli_bad_value(p, "needs a CURVE public key (40 Z85 characters, "
                                 "as the scheduler prints it)");
                return QV_CLI_BAD;
            }
            a->co.server_key = optarg;
            break;
        case O_TIMEOUT:
            if (qv_cli_double(p, 0.001, 86400, &sec))
                return QV_CLI_BAD;
            a->co.timeout_ms = (int)(sec * 1000.0 + 0.5);
            break;
        default: return c;
        }
    }
}

static int parse_job_id(const char *cmd, const char *v, uint64_t *id)
{
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (!*v || *end || errno || n == 0 || v[0] == '-')
        return qv_cli_usage(cmd, "'%s' is not a job id (a number from `qvac jobs`)",
                            v);
    *id = n;
    return 0;
}

static int connect_or_fail(cargs *a, qv_client **c)
{
    qv_err err;
    qv_err_clear(&err);
    if (qv_client_connect(&a->co, c, &err))
        return qv_cli_error(&err);
    return 0;
}

/* Finishes w, sends it and waits for a reply of type want. */
static qv_status ask(qv_client *c, qv_wire_writer *w, qv_wire_type want,
                     qv_wire_msg **reply, qv_err *err)
{
    qv_wire_out out = {0};
    qv_status st = qv_wire_finish(w, &out, err);
    qv_wire_writer_free(w);
    if (st)
        return st;
    st = qv_client_request(c, &out, want, reply, err);
    qv_wire_out_free(&out);
    return st;
}

/* Finishes w (freeing it) and sends it without waiting for a reply. */
static qv_status tell(qv_client *c, qv_wire_writer *w, qv_err *err)
{
    qv_wire_out out = {0};
    qv_status st = qv_wire_finish(w, &out, err);
    qv_wire_writer_free(w);
    if (!st)
        st = qv_client_send(c, &out, err);
    qv_wire_out_free(&out);
    return st;
}

/* A message whose only field is `job`, and its reply. */
static qv_status ask_job(qv_client *c, qv_wire_type t, uint64_t job,
                         qv_wire_type want, qv_wire_msg **reply, qv_err *err)
{
    qv_wire_writer *w = NULL;
    qv_status st = qv_wire_writer_new(t, 1, &w, err);
    if (st)
        return st;
    qv_wire_kv_u64(w, "job", job);
    return ask(c, w, want, reply, err);
}

/* ---- msgpack -> JSON, and record fields ------------------------------------ */

static json_t *to_json(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return json_real((double)o->via.u64);
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: {
        static const char hx[] = "0123456789abcdef";
        char *s = malloc(2 * (size_t)o->via.bin.size + 1);
        if (!s)
            return json_null();
        for (uint32_t i = 0; i < o->via.bin.size; i++) {
            unsigned char b = (unsigned char)o->via.bin.ptr[i];
            s[2 * i] = hx[b >> 4];
            s[2 * i + 1] = hx[b & 15];
        }
        s[2 * (size_t)o->via.bin.size] = '\0';
        json_t *j = json_string(s);
        free(s);
        return j;
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(a, to_json(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type != MSGPACK_OBJECT_STR)
                continue;
            char key[QV_WIRE_MAX_KEY + 1];
            size_t n = k->via.str.size < QV_WIRE_MAX_KEY ? k->via.str.size
                                                         : QV_WIRE_MAX_KEY;
            memcpy(key, k->via.str.ptr, n);
            key[n] = '\0';
            json_object_set_new(m, key, to_json(&o->via.map.ptr[i].val));
        }
        return m;
    }
    default:
        return json_null();
    }
}

static void rec_str(const msgpack_object *r, const char *key, char *buf,
                    size_t n)
{
    buf[0] = '\0';
    const msgpack_object *v = qv_wire_find(r, key);
    if (v && v->type == MSGPACK_OBJECT_STR) {
        size_t len = v->via.str.size < n - 1 ? v->via.str.size : n - 1;
        memcpy(buf, v->via.str.ptr, len);
        buf[len] = '\0';
    }
}

/* A string of a record, for a terminal: whatever a peer put in it (a
 * worker's name, a job's name, an error text) has its control characters
 * and bytes that are not UTF-8 written visibly (qv_printable), so it can
 * neither forge a line nor send a terminal escape. */
static void rec_text(const msgpack_object *r, const char *key, char *buf,
                     size_t n)
{
    buf[0] = '\0';
    const msgpack_object *v = qv_wire_find(r, key);
    if (v && v->type == MSGPACK_OBJECT_STR) {
        char raw[QV_WIRE_MAX_STR + 1];
        size_t len = v->via.str.size < sizeof raw - 1 ? v->via.str.size : sizeof raw - 1;
        memcpy(raw, v->via.str.ptr, len);
        raw[len] = '\0';
        qv_printable(buf, n, raw);
    }
}

static uint64_t rec_u64(const msgpack_object *r, const char *key)
{
    uint64_t v = 0;
    qv_wire_get_u64(r, key, &v, NULL);
    return v;
}

static int rec_f64(const msgpack_object *r, const char *key, double *v)
{
    return qv_wire_get_f64(r, key, v, NULL) == QV_OK;
}

static int state_final(const char *s)
{
    return !strcmp(s, "succeeded") || !strcmp(s, "failed") ||
           !strcmp(s, "cancelled");
}

/* One job record by id (all states). */
static qv_status get_job(qv_client *c, uint64_t id, qv_wire_msg **m,
                         const msgpack_object **rec, qv_err *err)
{
    qv_wire_writer *w = NULL;
    qv_status st = qv_wire_writer_new(QV_MSG_JOBS, 2, &w, err);
    if (st)
        return st;
    qv_wire_kv_u64(w, "job", id);
    qv_wire_kv_bool(w, "all", true);
    if ((st = ask(c, w, QV_MSG_JOB_LIST, m, err)))
        return st;
    const msgpack_object *items = NULL;
    size_t n = 0;
    qv_wire_get_array(qv_wire_msg_body(*m), "jobs", &items, &n,
                      QV_WIRE_MAX_ARRAY, NULL);
    for (size_t i = 0; i < n; i++)
        if (rec_u64(&items[i], "id") == id) {
            *rec = &items[i];
            return QV_OK;
        }
    qv_wire_msg_free(*m);
    *m = NULL;
    return qv_fail(err, QV_ERR_NOT_FOUND, "no job %llu on the scheduler at %s",
                   (unsigned long long)id, qv_client_address(c));
}

static void print_job_line(const msgpack_object *r)
{
    char name[QV_WIRE_MAX_NAME + 1], state[32], worker[QV_WIRE_MAX_NAME + 1],
        device[QV_WIRE_MAX_NAME + 1], why[QV_WIRE_MAX_TEXT + 1];
    rec_text(r, "name", name, sizeof name);
    rec_text(r, "state", state, sizeof state);
    rec_text(r, "worker", worker, sizeof worker);
    rec_text(r, "device", device, sizeof device);
    char prog[48] = "-", loss[24] = "-", where[300] = "-";
    uint64_t step = rec_u64(r, "step"), steps = rec_u64(r, "steps");
    if (steps)
        snprintf(prog, sizeof prog, "%llu/%llu", (unsigned long long)step,
                 (unsigned long long)steps);
    double l;
    if (rec_f64(r, "loss", &l))
        snprintf(loss, sizeof loss, "%.4f", l);
    if (worker[0] || device[0])
        snprintf(where, sizeof where, "%.128s%s%.128s", worker,
                 device[0] ? "/" : "", device);
    printf("%6llu  %-10s %-12s %8s  %-24s %.40s\n",
           (unsigned long long)rec_u64(r, "id"), state, prog, loss, where,
           name);
    rec_text(r, "unrunnable", why, sizeof why);
    if (why[0])
        printf("        %s\n", why);
    rec_text(r, "reason", why, sizeof why);
    if (why[0])
        printf("        last failure: %s\n", why);
}

/* ---- progress -------------------------------------------------------------- */

#define FOLLOW_PATIENCE_S 600.0 /* --wait and logs -f: silence before giving up */

typedef struct xfer {
    const char *label;
    qv_progress line; /* transfers show on a terminal only */
    int last_pct;
} xfer;

static void xfer_init(xfer *x, const char *label)
{
    x->label = label;
    x->last_pct = -1;
    qv_progress_init(&x->line, 0);
}

static void on_xfer(void *user, uint64_t done, uint64_t total)
{
    xfer *x = user;
    if (!x->line.tty)
        return;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
    if (pct == x->last_pct)
        return;
    x->last_pct = pct;
    char d[32], t[32];
    qv_fmt_bytes(done, d, sizeof d);
    qv_fmt_bytes(total, t, sizeof t);
    qv_progress_line(&x->line, 1, "%s: %3d%%  %s / %s", x->label, pct, d, t);
    if (done == total)
        qv_progress_end(&x->line);
}

static void show_job_progress(const msgpack_object *r, qv_progress *line, uint64_t id)
{
    char state[32], worker[QV_WIRE_MAX_NAME + 1], device[QV_WIRE_MAX_NAME + 1],
        why[QV_WIRE_MAX_TEXT + 1];
    rec_text(r, "state", state, sizeof state);
    rec_text(r, "worker", worker, sizeof worker);
    rec_text(r, "device", device, sizeof device);
    rec_text(r, "unrunnable", why, sizeof why);
    uint64_t step = rec_u64(r, "step"), steps = rec_u64(r, "steps");
    char bar[32];
    qv_progress_bar(bar, sizeof bar, 20, (double)step, (double)steps);
    char extra[1400] = "";
    double loss, tps;
    int n = 0;
    if (rec_f64(r, "loss", &loss))
        n += snprintf(extra + n, sizeof extra - (size_t)n, "  loss %.4f", loss);
    if (rec_f64(r, "tokens_per_s", &tps) && n < (int)sizeof extra)
        n += snprintf(extra + n, sizeof extra - (size_t)n, "  %.0f tok/s", tps);
    if (worker[0] && n < (int)sizeof extra)
        n += snprintf(extra + n, sizeof extra - (size_t)n, "  on %.40s%s%.40s",
                      worker, device[0] ? "/" : "", device);
    if (why[0] && n < (int)sizeof extra)
        snprintf(extra + n, sizeof extra - (size_t)n, "  (%s)", why);
    qv_progress_line(line, 1, "job %llu [%s] %-9s step %llu/%llu%s",
                     (unsigned long long)id, bar, state, (unsigned long long)step,
                     (unsigned long long)steps, extra);
}

/* ---- submit ---------------------------------------------------------------- */

void qv_help_submit(FILE *out)
{
    fprintf(out,
        "usage: qvac submit [--model M.gguf] [--data D.jsonl] [finetune options]\n"
        "                   [--priority P] [--name N] [--backend B] [--wait] [--json]\n"
        "       qvac submit --bench [--model builtin|700m|1.3b|3b] [--devices all|LIST]\n\n"
        "--bench asks the connected workers' devices (all, or LIST: device ids such as\n"
        "opencl:0, or WORKER/DEVICE with the worker's id or name) to run `qvac bench`\n"
        "with that model now; their results reach `qvac report`.\n\n"
        "Submits a LoRA fine-tune to the scheduler: uploads the model and the data\n"
        "set unless the scheduler already holds them (blobs are named by SHA-256),\n"
        "then prints the job's id. With no --model / --data: the built-in model and\n"
        "the built-in data set (what `qvac finetune` uses with no arguments).\n\n"
        "options:\n"
        "  -m, --model FILE      GGUF model      -d, --data FILE  JSON Lines data\n"
        "  --rank R --alpha A --targets LIST --lr LR --steps N --warmup N --batch B\n"
        "  --seq-len S --accum N --clip C --seed N --weights ternary|f16\n"
        "  --val-fraction F --ckpt-every N --eval-batches N --weight-decay W\n"
        "                        as `qvac finetune` (see `qvac finetune --help`)\n"
        "  --priority P          higher runs first (default 0)\n"
        "  --name N              shown in `qvac jobs` (default: the data's file name)\n"
        "  --backend B           opencl, vulkan, ref or any (default any)\n"
        "  --wait                follow the job to its end with a progress bar;\n"
        "                        exit 1 unless it succeeded\n"
        "  --json                print the job record (with --wait: the final one)\n"
        CONN_HELP EXIT_HELP);
}

typedef struct sargs {
    cargs c;
    const char *model, *data, *name, *backend;
    const char *devices; /* --bench: all or a list */
    int64_t priority;
    int wait, bench;
    json_t *opts; /* the finetune options given, JSON keys */
} sargs;

/* finetune option -> (JSON key, kind: 'i' integer, 'f' number, 's' string) */
static const struct {
    const char *flag, *key;
    char kind;
} ft_opts[] = {
    {"rank", "rank", 'i'},        {"alpha", "alpha", 'f'},
    {"targets", "targets", 's'},  {"lr", "lr", 'f'},
    {"steps", "steps", 'i'},      {"warmup", "warmup", 'i'},
    {"batch", "batch", 'i'},      {"seq-len", "seq_len", 'i'},
    {"accum", "accum", 'i'},      {"clip", "clip", 'f'},
    {"seed", "seed", 'i'},        {"weights", "weights", 's'},
    {"val-fraction", "val_fraction", 'f'},
    {"ckpt-every", "ckpt_every", 'i'},
    {"eval-batches", "eval_batches", 'i'},
    {"weight-decay", "weight_decay", 'f'},
    {"chat-template", "chat_template", 's'},
    {"long", "long", 's'},
};
#define N_FT (sizeof ft_opts / sizeof ft_opts[0])
enum { O_WAIT = O_CMD, O_NAME, O_BACKEND, O_PRIORITY, O_BENCH, O_DEVICES, O_FT };

static int parse_submit(int argc, char **argv, sargs *a)
{
    struct option lo[16 + N_FT] = {
        CONN_OPTS,
        {"model", required_argument, NULL, 'm'},
        {"data", required_argument, NULL, 'd'},
        {"name", required_argument, NULL, O_NAME},
        {"backend", required_argument, NULL, O_BACKEND},
        {"priority", required_argument, NULL, O_PRIORITY},
        {"wait", no_argument, NULL, O_WAIT},
        {"bench", no_argument, NULL, O_BENCH},
        {"devices", required_argument, NULL, O_DEVICES},
    };
    size_t n = 0;
    while (lo[n].name)
        n++;
    for (size_t k = 0; k < N_FT; k++)
        lo[n++] = (struct option){ft_opts[k].flag, required_argument, NULL, O_FT + (int)k};
    lo[n] = (struct option)END_OPTS;
    static const char *const backends[] = {"opencl", "vulkan", "ref", "any", NULL};
    qv_cli_args p;
    qv_cli_args_init(&p, a->c.cmd, argc, argv, lo, NULL, 0);
    const char *only_submit = NULL; /* an option --bench does not take */
    int c, k;
    while ((c = next_opt(&a->c, &p)) != -1) {
        if (c != 'm' && c != O_BENCH && c != O_DEVICES)
            only_submit = p.name;
        switch (c) {
        case QV_CLI_BAD: return QV_EXIT_USAGE;
        case 'm': a->model = optarg; break;
        case 'd': a->data = optarg; break;
        case O_NAME: a->name = optarg; break;
        case O_WAIT: a->wait = 1; break;
        case O_BENCH: a->bench = 1; break;
        case O_DEVICES: a->devices = optarg; break;
        case O_BACKEND:
            if (qv_cli_choice(&p, backends, &k))
                return QV_EXIT_USAGE;
            a->backend = optarg;
            break;
        case O_PRIORITY: {
            char *end = NULL;
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (!*optarg || *end || errno)
                return qv_cli_bad_value(&p, "needs an integer (not '%s')", optarg);
            a->priority = v;
            break;
        }
        default: {
            k = c - O_FT;
            json_t *jv = NULL;
            char *end = NULL;
            if (ft_opts[k].kind == 's') {
                jv = json_string(optarg);
            } else if (ft_opts[k].kind == 'i') {
                errno = 0;
                long long v = strtoll(optarg, &end, 10);
                if (!*optarg || *end || errno)
                    return qv_cli_bad_value(&p, "needs an integer (not '%s')", optarg);
                jv = json_integer(v);
            } else {
                double d = strtod(optarg, &end);
                if (!*optarg || *end)
                    return qv_cli_bad_value(&p, "needs a number (not '%s')", optarg);
                jv = json_real(d);
            }
            json_object_set_new(a->opts, ft_opts[k].key, jv);
        }
        }
    }
    if (a->bench && only_submit)
        return qv_cli_usage(a->c.cmd, "--%s is not for --bench, which takes --model, "
                            "--devices and the connection options", only_submit);
    if (a->devices && !a->bench)
        return qv_cli_usage(a->c.cmd, "--devices is for --bench");
    return 0;
}

/* The canonical options JSON (qv_job_opts_format) as msgpack. */
static void write_options(qv_wire_writer *w, json_t *canon)
{
    qv_wire_kv_map(w, "options", json_object_size(canon));
    const char *key;
    json_t *v;
    json_object_foreach(canon, key, v) {
        qv_wire_w_key(w, key);
        if (json_is_integer(v))
            qv_wire_w_i64(w, (int64_t)json_integer_value(v));
        else if (json_is_real(v))
            qv_wire_w_f64(w, json_real_value(v));
        else if (json_is_string(v))
            qv_wire_w_str(w, json_string_value(v));
        else if (json_is_boolean(v))
            qv_wire_w_bool(w, json_is_true(v));
        else
            qv_wire_w_nil(w);
    }
}

static qv_status upload_one(qv_client *c, const char *path, const char *builtin,
                            const char *what, char hash[QV_SHA256_HEX],
                            qv_err *err)
{
    xfer x;
    xfer_init(&x, NULL);
    char label[300];
    bool sent = false;
    qv_status st;
    if (path) {
        snprintf(label, sizeof label, "uploading %s", path);
        x.label = label;
        st = qv_client_upload_file(c, path, hash, &sent, on_xfer, &x, err);
    } else {
        const qv_embedded_file *f = qv_embedded_find(builtin);
        if (!f)
            return qv_fail(err, QV_ERR_NOT_FOUND,
                           "this build has no built-in %s (%s); pass --%s FILE",
                           what, builtin, what);
        snprintf(label, sizeof label, "uploading the built-in %s", what);
        x.label = label;
        st = qv_client_upload_mem(c, f->data, f->size, hash, &sent, on_xfer, &x,
                                  err);
    }
    if (st)
        return st;
    if (!sent)
        fprintf(stderr, "%s: already on the scheduler (%.12s)\n",
                path ? path : builtin, hash);
    return QV_OK;
}

/* Polls the job until it ends; prints progress on stderr. *final: the last
 * record's message (the caller frees). */
static qv_status follow_job(qv_client *c, uint64_t id, qv_wire_msg **final,
                            const msgpack_object **rec, qv_err *err)
{
    qv_progress line;
    qv_progress_init(&line, 0);
    char last[512] = "";
    double silent_since = 0;
    for (;;) {
        qv_wire_msg *m = NULL;
        const msgpack_object *r = NULL;
        qv_status st = get_job(c, id, &m, &r, err);
        if (st && qv_client_timed_out(c)) {
            /* the scheduler went silent (a restart?): keep waiting, on a
             * new connection, up to FOLLOW_PATIENCE_S */
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            double t = (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
            if (!silent_since) {
                silent_since = t;
                qv_progress_clear(&line);
                fprintf(stderr, "qvac: the scheduler does not answer; still waiting for "
                        "job %llu (Ctrl-C to stop)\n", (unsigned long long)id);
            }
            if (t - silent_since > FOLLOW_PATIENCE_S || qv_client_reconnect(c, NULL))
                return st;
            continue;
        }
        if (st)
            return st;
        silent_since = 0;
        char state[32], sig[512];
        rec_text(r, "state", state, sizeof state);
        double loss = 0;
        rec_f64(r, "loss", &loss);
        snprintf(sig, sizeof sig, "%s %llu %.6f", state,
                 (unsigned long long)rec_u64(r, "step"), loss);
        if (line.tty || strcmp(sig, last))
            show_job_progress(r, &line, id);
        snprintf(last, sizeof last, "%s", sig);
        if (state_final(state)) {
            qv_progress_end(&line);
            *final = m;
            *rec = r;
            return QV_OK;
        }
        qv_wire_msg_free(m);
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
}

/* `qvac submit --bench [--model M] [--devices all|LIST]`: the benchmark on
 * the chosen devices of the connected workers; the results go to the
 * scheduler (`qvac report`). */
static int submit_bench(cargs *ca, const char *model, const char *devices)
{
    cargs a = *ca;
    if (!model)
        model = "builtin";
    if (!devices)
        devices = "all";
    qv_err err;
    qv_err_clear(&err);
    int32_t bb, bs, bn;
    if (qv_bench_defaults(model, &bb, &bs, &bn, &err))
        return qv_cli_usage(a.cmd, "--model: %s", err.msg);
    qv_client *c = NULL;
    int rc = connect_or_fail(&a, &c);
    if (rc)
        return rc;
    qv_wire_writer *w = NULL;
    qv_wire_msg *m = NULL;
    if (qv_wire_writer_new(QV_MSG_BENCH_RUN, 2, &w, &err)) {
        qv_client_close(&c);
        return qv_cli_error(&err);
    }
    qv_wire_kv_str(w, "model", model);
    qv_wire_kv_str(w, "devices", devices);
    if (ask(c, w, QV_MSG_BENCH_QUEUED, &m, &err)) {
        qv_client_close(&c);
        return qv_cli_error(&err);
    }
    uint64_t sent = rec_u64(qv_wire_msg_body(m), "sent");
    qv_wire_msg_free(m);
    qv_client_close(&c);
    if (a.json) {
        qv_cli_print_json(json_pack("{s:s, s:s, s:I}", "model", model, "devices", devices,
                                    "sent", (json_int_t)sent));
    } else if (!sent) {
        printf("no connected device matches '%s' (see `qvac workers`)\n", devices);
        return QV_EXIT_FAIL;
    } else {
        printf("bench %s asked of %llu device(s); `qvac report` shows the results as "
               "they arrive\n", model, (unsigned long long)sent);
    }
    return sent ? QV_EXIT_OK : QV_EXIT_FAIL;
}

/* The dataset, read here as the worker will read it for this model (its
 * tokenizer, chat template and context): a file with no usable example is
 * refused before anything is uploaded, naming the user's file and lines;
 * skipped lines are listed. */
static qv_status check_data(const char *model, const char *data, const qv_job_opts *jo,
                            qv_err *err)
{
    qv_gguf *g = NULL;
    qv_status st;
    if (model) {
        st = qv_gguf_open(model, &g, err);
    } else {
        const qv_embedded_file *f = qv_embedded_find(BUILTIN_MODEL);
        if (!f)
            return QV_OK; /* nothing to check against; the worker will say */
        st = qv_gguf_parse(f->data, f->size, &g, err);
    }
    if (st)
        return st;
    const char *arch = NULL;
    uint32_t ctx = 0;
    char key[160];
    if (qv_gguf_get_str(g, "general.architecture", &arch, NULL, NULL) == QV_OK && arch) {
        snprintf(key, sizeof key, "%.100s.context_length", arch);
        qv_gguf_get_u32(g, key, &ctx, NULL);
    }
    if (ctx && jo->train.seq > (int32_t)ctx) {
        qv_gguf_free(g);
        return qv_fail(err, QV_ERR_INVALID, "--seq-len %d exceeds the context of %s (%u "
                       "tokens); give --seq-len %u or less", (int)jo->train.seq,
                       model ? model : "the built-in model", ctx, ctx);
    }
    qv_dataset_opts o;
    qv_vocab *v = NULL;
    qv_dataset *ds = NULL;
    st = qv_dataset_opts_for_model(g, model ? model : "the built-in model",
                                   jo->chat_template[0] ? jo->chat_template : NULL,
                                   (size_t)ctx, jo->long_policy, &o, &v, err);
    if (!st && data)
        st = qv_dataset_load_file_ex(data, &o, &ds, err);
    if (!st && ds) {
        size_t stored = 0;
        const qv_dataset_issue *is = qv_dataset_issues(ds, &stored);
        for (size_t i = 0; i < stored; i++)
            fprintf(stderr, "qvac: %s:%llu: will be skipped: %s\n", data,
                    (unsigned long long)is[i].line, is[i].reason);
        uint64_t total = qv_dataset_n_issues(ds);
        if (total > stored)
            fprintf(stderr, "qvac: %s: %llu more lines will be skipped\n", data,
                    (unsigned long long)(total - stored));
        if (qv_dataset_n_long(ds))
            fprintf(stderr, "qvac: %s: %llu example(s) longer than the model's context "
                    "of %u tokens will be %s\n", data,
                    (unsigned long long)qv_dataset_n_long(ds), ctx,
                    jo->long_policy == QV_LONG_TRUNCATE ? "cut to it" : "skipped");
    }
    qv_dataset_free(ds);
    qv_vocab_free(v);
    qv_gguf_free(g);
    return st;
}

int qv_cmd_submit(int argc, char **argv)
{
    sargs a;
    memset(&a, 0, sizeof a);
    cargs_init(&a.c, "submit");
    a.opts = json_object();
    int rc = parse_submit(argc, argv, &a);
    if (rc || a.bench) {
        json_decref(a.opts);
        return rc ? rc : submit_bench(&a.c, a.model, a.devices);
    }
    /* The built-in data set was made for the built-in model's context and
     * has always been cut to it: keep that unless --long says otherwise. */
    if (!a.data && !json_object_get(a.opts, "long"))
        json_object_set_new(a.opts, "long", json_string("truncate"));
    /* Checked here, as the worker will check them, so a job that cannot run
     * says so now. */
    qv_err err;
    qv_err_clear(&err);
    char *given = json_dumps(a.opts, JSON_COMPACT);
    json_decref(a.opts);
    qv_job_opts jo;
    qv_status st = qv_job_opts_parse(given, &jo, &err);
    free(given);
    if (st)
        return qv_cli_usage("submit", "%s", err.msg);
    char *canon_s = NULL;
    if (qv_job_opts_format(&jo, &canon_s, &err))
        return qv_cli_error(&err);
    json_t *canon = json_loads(canon_s, 0, NULL);
    free(canon_s);
    if (!canon)
        return qv_cli_error(NULL);
    if ((st = check_data(a.model, a.data, &jo, &err))) {
        json_decref(canon);
        fprintf(stderr, "qvac: %s\nqvac: nothing was uploaded or submitted\n", err.msg);
        return QV_EXIT_FAIL;
    }

    char name[QV_WIRE_MAX_NAME + 1];
    if (a.name) {
        if (strlen(a.name) > QV_WIRE_MAX_NAME) {
            json_decref(canon);
            return qv_cli_usage("submit", "--name is at most %d bytes",
                                QV_WIRE_MAX_NAME);
        }
        snprintf(name, sizeof name, "%s", a.name);
    } else if (a.data) {
        const char *b = strrchr(a.data, '/');
        snprintf(name, sizeof name, "%.128s", b ? b + 1 : a.data);
    } else {
        snprintf(name, sizeof name, "pirate (built-in)");
    }

    qv_client *c = NULL;
    if ((rc = connect_or_fail(&a.c, &c))) {
        json_decref(canon);
        return rc;
    }
    char mh[QV_SHA256_HEX], dh[QV_SHA256_HEX];
    qv_wire_msg *m = NULL;
    qv_wire_writer *w = NULL;
    if ((st = upload_one(c, a.model, BUILTIN_MODEL, "model", mh, &err)) ||
        (st = upload_one(c, a.data, BUILTIN_DATA, "data", dh, &err)))
        goto fail;
    int backend = a.backend && strcmp(a.backend, "any");
    if ((st = qv_wire_writer_new(QV_MSG_SUBMIT, 5 + backend, &w, &err)))
        goto fail;
    qv_wire_kv_str(w, "name", name);
    qv_wire_kv_i64(w, "priority", a.priority);
    qv_wire_kv_str(w, "model", mh);
    qv_wire_kv_str(w, "data", dh);
    write_options(w, canon);
    if (backend) {
        qv_wire_kv_map(w, "needs", 1);
        qv_wire_kv_str(w, "backend", a.backend);
    }
    if ((st = ask(c, w, QV_MSG_SUBMITTED, &m, &err)))
        goto fail;
    uint64_t id = rec_u64(qv_wire_msg_body(m), "job");
    qv_wire_msg_free(m);
    m = NULL;
    if (!a.c.json)
        printf("%llu\n", (unsigned long long)id);
    fflush(stdout);
    if (!a.c.json && !a.wait) {
        fprintf(stderr, "submitted job %llu; follow it with `qvac logs -f %llu`\n",
                (unsigned long long)id, (unsigned long long)id);
        rc = QV_EXIT_OK;
        goto out;
    }
    const msgpack_object *r = NULL;
    if (a.wait)
        st = follow_job(c, id, &m, &r, &err);
    else
        st = get_job(c, id, &m, &r, &err);
    if (st)
        goto fail;
    char state[32];
    rec_text(r, "state", state, sizeof state);
    if (a.c.json)
        qv_cli_print_json(to_json(r));
    rc = QV_EXIT_OK;
    if (a.wait && strcmp(state, "succeeded")) {
        char why[QV_WIRE_MAX_TEXT + 1];
        rec_text(r, "reason", why, sizeof why);
        fprintf(stderr, "qvac: job %llu %s%s%s\n", (unsigned long long)id, state,
                why[0] ? ": " : "", why);
        rc = QV_EXIT_FAIL;
    } else if (a.wait) {
        fprintf(stderr, "job %llu succeeded; get the adapter with `qvac fetch %llu`\n",
                (unsigned long long)id, (unsigned long long)id);
    }
    qv_wire_msg_free(m);
    goto out;
fail:
    rc = qv_cli_error(&err);
out:
    json_decref(canon);
    qv_client_close(&c);
    return rc;
}

/* ---- jobs ------------------------------------------------------------------ */

void qv_help_jobs(FILE *out)
{
    fprintf(out,
        "usage: qvac jobs [--all] [--json]\n\n"
        "Lists the scheduler's jobs: queued, assigned and running ones, or with\n"
        "--all the finished ones too. A job that no enrolled device can run says\n"
        "why.\n\n"
        "options:\n"
        "  -a, --all             include succeeded, failed and cancelled jobs\n"
        "  --json                a JSON array of job records (docs/protocol.md)\n"
        CONN_HELP EXIT_HELP);
}

int qv_cmd_jobs(int argc, char **argv)
{
    cargs a;
    cargs_init(&a, "jobs");
    int all = 0, oc;
    static const struct option lo[] = {CONN_OPTS, {"all", no_argument, NULL, 'a'},
                                       END_OPTS};
    qv_cli_args p;
    qv_cli_args_init(&p, a.cmd, argc, argv, lo, NULL, 0);
    while ((oc = next_opt(&a, &p)) != -1) {
        if (oc != 'a')
            return QV_EXIT_USAGE;
        all = 1;
    }
    qv_client *c = NULL;
    int rc = connect_or_fail(&a, &c);
    if (rc)
        return rc;
    qv_err err;
    qv_err_clear(&err);
    json_t *arr = json_array();
    uint64_t after = 0;
    size_t shown = 0;
    for (;;) {
        qv_wire_writer *w = NULL;
        qv_wire_msg *m = NULL;
        if (qv_wire_writer_new(QV_MSG_JOBS, 3, &w, &err))
            goto fail;
        qv_wire_kv_bool(w, "all", all);
        qv_wire_kv_u64(w, "after", after);
        qv_wire_kv_u64(w, "limit", 1000);
        if (ask(c, w, QV_MSG_JOB_LIST, &m, &err))
            goto fail;
        const msgpack_object *items = NULL;
        size_t n = 0;
        bool more = false;
        qv_wire_get_array(qv_wire_msg_body(m), "jobs", &items, &n,
                          QV_WIRE_MAX_ARRAY, NULL);
        qv_wire_get_bool(qv_wire_msg_body(m), "more", &more, NULL);
        if (!a.json && shown == 0 && n > 0)
            printf("%6s  %-10s %-12s %8s  %-24s %s\n", "ID", "STATE", "STEP",
                   "LOSS", "WORKER/DEVICE", "NAME");
        for (size_t i = 0; i < n; i++) {
            if (a.json)
                json_array_append_new(arr, to_json(&items[i]));
            else
                print_job_line(&items[i]);
            uint64_t id = rec_u64(&items[i], "id");
            if (id > after)
                after = id;
        }
        shown += n;
        qv_wire_msg_free(m);
        if (!more || n == 0)
            break;
    }
    if (a.json)
        qv_cli_print_json(arr);
    else {
        json_decref(arr);
        if (!shown)
            printf("no %sjobs\n", all ? "" : "queued or running ");
    }
    qv_client_close(&c);
    return QV_EXIT_OK;
fail:
    json_decref(arr);
    qv_client_close(&c);
    return qv_cli_error(&err);
}

/* ---- workers --------------------------------------------------------------- */

void qv_help_report(FILE *out)
{
    fprintf(out,
        "usage: qvac report [--out DIR] [--format md,json,svg] [--model M] [--json]\n\n"
        "The fleet's report: from the bench results the scheduler stored (each worker\n"
        "runs `qvac bench` on each device once enrolled), one row per device with\n"
        "tokens/s and peak device memory of the ternary and the 16-bit run, their\n"
        "ratios, MFU and tuned / default kernel speed; plots as SVG. Writes\n"
        "DIR/fleet.md (the plots embedded), fleet.json (every figure),\n"
        "fleet-tokens.svg and fleet-memory.svg.\n\n"
        "options:\n"
        "  -o, --out DIR         the folder (default benchmarks/reports/fleet)\n"
        "  -f, --format LIST     of md, json, svg (default all three)\n"
        "  -m, --model M         only the results of model M (builtin, 700m, ...)\n"
        "  --json                also print the report's JSON on stdout\n"
        CONN_HELP EXIT_HELP);
}

int qv_cmd_report(int argc, char **argv)
{
    cargs a;
    cargs_init(&a, "report");
    const char *out = "benchmarks/reports/fleet", *formats = NULL, *model = NULL;
    static const struct option lo[] = {CONN_OPTS,
                                       {"out", required_argument, NULL, 'o'},
                                       {"format", required_argument, NULL, 'f'},
                                       {"model", required_argument, NULL, 'm'},
                                       END_OPTS};
    qv_cli_args p;
    qv_cli_args_init(&p, a.cmd, argc, argv, lo, NULL, 0);
    int oc;
    while ((oc = next_opt(&a, &p)) != -1) {
        if (oc == 'o')
            out = optarg;
        else if (oc == 'f')
            formats = optarg;
        else if (oc == 'm')
            model = optarg;
        else
            return QV_EXIT_USAGE;
    }
    qv_client *c = NULL;
    int rc = connect_or_fail(&a, &c);
    if (rc)
        return rc;
    qv_err err;
    qv_err_clear(&err);
    qv_wire_writer *w = NULL;
    qv_wire_msg *m = NULL;
    if (qv_wire_writer_new(QV_MSG_BENCHES, model ? 1 : 0, &w, &err)) {
        qv_client_close(&c);
        return qv_cli_error(&err);
    }
    if (model)
        qv_wire_kv_str(w, "model", model);
    if (ask(c, w, QV_MSG_BENCH_LIST, &m, &err)) {
        qv_client_close(&c);
        return qv_cli_error(&err);
    }
    const msgpack_object *items = NULL;
    size_t n = 0;
    qv_wire_get_array(qv_wire_msg_body(m), "benches", &items, &n, QV_WIRE_MAX_ARRAY, NULL);
    qv_fleet_row *rows = calloc(n ? n : 1, sizeof *rows);
    size_t nr = 0, bad = 0;
    for (size_t i = 0; rows && i < n; i++) {
        qv_fleet_row *f = &rows[nr];
        char txt[QV_WIRE_MAX_BENCH + 1];
        rec_text(&items[i], "worker", f->worker, sizeof f->worker);
        rec_text(&items[i], "worker_name", f->worker_name, sizeof f->worker_name);
        rec_str(&items[i], "result", txt, sizeof txt);
        f->received_ms = (int64_t)rec_u64(&items[i], "received_ms");
        json_t *j = json_loads(txt, JSON_REJECT_DUPLICATES, NULL);
        qv_err e2 = {0};
        if (j && !qv_bench_from_json(j, &f->r, &e2))
            nr++;
        else
            bad++;
        json_decref(j);
    }
    qv_wire_msg_free(m);
    const char *addr = qv_client_address(c);
    qv_fleet_meta meta = {.scheduler = addr, .generated_ms = (int64_t)time(NULL) * 1000};
    char written[8192] = "";
    qv_status st = rows ? qv_fleet_write(rows, nr, &meta, out, formats, written,
                                         sizeof written, &err)
                        : qv_fail(&err, QV_ERR_NOMEM, "report: out of memory");
    if (!st && a.json)
        qv_cli_print_json(qv_fleet_json(rows, nr, &meta));
    free(rows);
    qv_client_close(&c);
    if (st)
        return qv_cli_error(&err);
    fprintf(a.json ? stderr : stdout, "report: %zu device result%s%s; wrote %s\n", nr,
            nr == 1 ? "" : "s", bad ? " (some refused as invalid)" : "", written);
    return QV_EXIT_OK;
}

void qv_help_workers(FILE *out)
{
    fprintf(out,
        "usage: qvac workers [--json]\n"
        "       qvac workers remove ID [--data DIR]\n\n"
        "Lists the workers the scheduler knows: state (idle, busy, tuning, lost,\n"
        "revoked), devices and the jobs they run.\n\n"
        "`remove` (on the scheduler's machine: it changes the scheduler's data\n"
        "folder) removes worker ID for good: its key is refused from then on, a\n"
        "running scheduler aborts its jobs within a tick and queues them again.\n\n"
        "options:\n"
        "  --json                a JSON array of worker records\n"
        CONN_HELP EXIT_HELP);
}

int qv_cmd_workers(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "remove"))
        return qv_cmd_workers_remove(argc, argv);
    cargs a;
    cargs_init(&a, "workers");
    static const struct option lo[] = {CONN_OPTS, END_OPTS};
    qv_cli_args p;
    qv_cli_args_init(&p, a.cmd, argc, argv, lo, NULL, 0);
    if (next_opt(&a, &p) != -1)
        return QV_EXIT_USAGE;
    qv_client *c = NULL;
    int rc = connect_or_fail(&a, &c);
    if (rc)
        return rc;
    qv_err err;
    qv_err_clear(&err);
    qv_wire_writer *w = NULL;
    qv_wire_msg *m = NULL;
    if (qv_wire_writer_new(QV_MSG_WORKERS, 0, &w, &err) ||
        ask(c, w, QV_MSG_WORKER_LIST, &m, &err)) {
        qv_client_close(&c);
        return qv_cli_error(&err);
    }
    const msgpack_object *items = NULL;
    size_t n = 0;
    qv_wire_get_array(qv_wire_msg_body(m), "workers", &items, &n,
                      QV_WIRE_MAX_ARRAY, NULL);
    if (a.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, to_json(&items[i]));
        qv_cli_print_json(arr);
    } else if (!n) {
        printf("no workers (enroll one with `qvac token` here and `qvac worker "
               "--join %s --token T` there)\n", qv_client_address(c));
    } else {
        printf("%6s  %-12s %-24s %s\n", "ID", "STATE", "NAME", "DEVICES / RUNNING");
        for (size_t i = 0; i < n; i++) {
            const msgpack_object *r = &items[i];
            char name[QV_WIRE_MAX_NAME + 1], state[64];
            rec_text(r, "name", name, sizeof name);
            rec_text(r, "state", state, sizeof state);
            const msgpack_object *tn = NULL;
            if (qv_wire_get_map(r, "tuning", &tn, NULL) == QV_OK && tn)
                snprintf(state + strlen(state), sizeof state - strlen(state), " %llu/%llu",
                         (unsigned long long)rec_u64(tn, "done"),
                         (unsigned long long)rec_u64(tn, "total"));
            printf("%6llu  %-12s %-24s", (unsigned long long)rec_u64(r, "id"),
                   state, name);
            const msgpack_object *devs = NULL, *run = NULL;
            size_t nd = 0, nr = 0;
            qv_wire_get_array(r, "devices", &devs, &nd, QV_WIRE_MAX_ARRAY, NULL);
            qv_wire_get_array(r, "running", &run, &nr, QV_WIRE_MAX_ARRAY, NULL);
            for (size_t d = 0; d < nd; d++) {
                char id[QV_WIRE_MAX_NAME + 1], dn[QV_WIRE_MAX_NAME + 1], mem[32];
                rec_text(&devs[d], "id", id, sizeof id);
                rec_text(&devs[d], "name", dn, sizeof dn);
                qv_fmt_bytes(rec_u64(&devs[d], "memory"), mem, sizeof mem);
                printf("%s%s (%.60s, %s)", d ? "\n" : " ", id, dn, mem);
                if (d + 1 < nd)
                    printf("\n%45s", "");
            }
            for (size_t j = 0; j < nr; j++)
                printf("\n%45s job %llu attempt %llu step %llu", "",
                       (unsigned long long)rec_u64(&run[j], "job"),
                       (unsigned long long)rec_u64(&run[j], "attempt"),
                       (unsigned long long)rec_u64(&run[j], "step"));
            printf("\n");
        }
    }
    qv_wire_msg_free(m);
    qv_client_close(&c);
    return QV_EXIT_OK;
}

/* ---- logs ------------------------------------------------------------------ */

void qv_help_logs(FILE *out)
{
    fprintf(out,
        "usage: qvac logs [-f] JOB [--json]\n\n"
        "Prints a job's event log: submission, assignments, progress, failures\n"
        "and the end. With -f, keeps following until the job ends.\n\n"
        "options:\n"
        "  -f, --follow          follow until the job ends\n"
        "  --json                one JSON object per event and line\n"
        CONN_HELP EXIT_HELP);
}

static qv_status send_logs(qv_client *c, uint64_t job, bool follow,
                           uint64_t from, qv_err *err)
{
    qv_wire_writer *w = NULL;
    qv_status st = qv_wire_writer_new(QV_MSG_LOGS, 3, &w, err);
    if (st)
        return st;
    qv_wire_kv_u64(w, "job", job);
    qv_wire_kv_bool(w, "follow", follow);
    qv_wire_kv_u64(w, "from", from);
    return tell(c, w, err);
}

static qv_status send_jobs_probe(qv_client *c, uint64_t job, qv_err *err)
{
    qv_wire_writer *w = NULL;
    qv_status st = qv_wire_writer_new(QV_MSG_JOBS, 2, &w, err);
    if (st)
        return st;
    qv_wire_kv_u64(w, "job", job);
    qv_wire_kv_bool(w, "all", true);
    return tell(c, w, err);
}

/* The last progress event seen, for an ETA from the pace between two. */
typedef struct prog_last {
    int64_t step;
    uint64_t t_ms;
} prog_last;

static void fmt_eta(double s, char *out, size_t n)
{
    if (!(s >= 0) || s > 1e8)
        snprintf(out, n, "?");
    else if (s >= 3600)
        snprintf(out, n, "%dh %02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60)
        snprintf(out, n, "%dm %02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(out, n, "%ds", (int)(s + 0.5));
}

/* "training: step 40/400, loss 2.3100, 4804 tokens/s, peak 35.0 MiB, ETA 1m 12s" */
static void progress_line(json_t *p, uint64_t t_ms, prog_last *last, char *out, size_t n)
{
    json_int_t step = json_integer_value(json_object_get(p, "step"));
    json_int_t steps = json_integer_value(json_object_get(p, "steps"));
    json_t *loss = json_object_get(p, "loss"), *tps = json_object_get(p, "tokens_per_s");
    json_int_t peak = json_integer_value(json_object_get(p, "peak_bytes"));
    size_t o = (size_t)snprintf(out, n, "%s: step %lld", step ? "training" : "starting",
                                (long long)step);
    if (steps && o < n)
        o += (size_t)snprintf(out + o, n - o, "/%lld", (long long)steps);
    if (json_is_number(loss) && step && o < n)
        o += (size_t)snprintf(out + o, n - o, ", loss %.4f", json_number_value(loss));
    if (json_is_number(tps) && json_number_value(tps) > 0 && o < n)
        o += (size_t)snprintf(out + o, n - o, ", %.0f tokens/s", json_number_value(tps));
    if (peak > 0 && o < n) {
        char b[32];
        qv_fmt_bytes((uint64_t)peak, b, sizeof b);
        o += (size_t)snprintf(out + o, n - o, ", peak %s", b);
    }
    if (steps && step > last->step && last->t_ms && t_ms > last->t_ms && o < n) {
        char eta[32];
        double per = (double)(t_ms - last->t_ms) / 1e3 / (double)(step - last->step);
        fmt_eta(per * (double)(steps - step), eta, sizeof eta);
        snprintf(out + o, n - o, ", ETA %s", eta);
    }
    last->step = step;
    last->t_ms = t_ms;
}

int qv_cmd_logs(int argc, char **argv)
{
    cargs a;
    cargs_init(&a, "logs");
    int follow = 0;
    const char *job_s = NULL;
    static const struct option lo[] = {CONN_OPTS, {"follow", no_argument, NULL, 'f'},
                                       END_OPTS};
    qv_cli_args p;
    qv_cli_args_init(&p, a.cmd, argc, argv, lo, &job_s, 1);
    int oc;
    while ((oc = next_opt(&a, &p)) != -1) {
        if (oc != 'f')
            return QV_EXIT_USAGE;
        follow = 1;
    }
    if (!job_s)
        return qv_cli_usage(a.cmd, "which job? (an id from `qvac jobs`)");
    uint64_t job;
    if (parse_job_id(a.cmd, job_s, &job))
        return QV_EXIT_USAGE;
    qv_client *c = NULL;
    int rc = connect_or_fail(&a, &c);
    if (rc)
        return rc;
    qv_err err;
    qv_err_clear(&err);
    uint64_t next = 0;
    int probing = 0, final_asked = 0, lost = 0;
    double silent_since = 0;
    prog_last pl = {0, 0};
    qv_status st = send_logs(c, job, follow, 0, &err);
    while (!st) {
        qv_wire_msg *m = NULL;
        st = qv_client_recv(c, &m, &err);
        if (st && follow && qv_client_timed_out(c) && !probing) {
            /* Quiet while following: is the scheduler still there? */
            probing = 1;
            st = send_jobs_probe(c, job, &err);
            continue;
        }
        if (st && follow && qv_client_timed_out(c)) {
            /* it does not answer (a restart, a network cut): keep
             * following from the last event, on a new connection, for up
             * to FOLLOW_PATIENCE_S of silence */
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            double t = (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
            if (!lost) {
                lost = 1;
                silent_since = t;
                fprintf(stderr, "qvac: the scheduler does not answer; still following "
                        "job %llu (Ctrl-C to stop)\n", (unsigned long long)job);
            }
            if (t - silent_since > FOLLOW_PATIENCE_S)
                break;
            st = qv_client_reconnect(c, &err);
            if (!st)
                st = send_logs(c, job, follow, next, &err);
            continue;
        }
        if (st)
            break;
        if (lost) {
            lost = 0;
            probing = 0;
            fprintf(stderr, "qvac: the scheduler answers again\n");
        }
        const msgpack_object *b = qv_wire_msg_body(m);
        qv_wire_type t = qv_wire_msg_type(m);
        if (t == QV_MSG_JOB_LIST) {
            probing = 0;
            const msgpack_object *items = NULL;
            size_t n = 0;
            qv_wire_get_array(b, "jobs", &items, &n, QV_WIRE_MAX_ARRAY, NULL);
            char state[32] = "";
            if (n)
                rec_text(&items[0], "state", state, sizeof state);
            if (!n)
                st = qv_fail(&err, QV_ERR_NOT_FOUND, "no job %llu",
                             (unsigned long long)job);
            else if (state_final(state) && !final_asked) {
                /* it ended while we waited: fetch the rest and stop */
                final_asked = 1;
                st = send_logs(c, job, false, next, &err);
            }
            qv_wire_msg_free(m);
            continue;
        }
        if (t != QV_MSG_LOG || rec_u64(b, "job") != job) {
            qv_wire_msg_free(m);
            continue;
        }
        const msgpack_object *ev = NULL;
        size_t n = 0;
        bool end = false;
        qv_wire_get_array(b, "events", &ev, &n, QV_WIRE_MAX_ARRAY, NULL);
        qv_wire_get_bool(b, "end", &end, NULL);
        for (size_t i = 0; i < n; i++) {
            uint64_t seq = rec_u64(&ev[i], "seq");
            if (seq < next)
                continue; /* seen already */
            next = seq + 1;
            char kind[32], raw[QV_WIRE_MAX_TEXT + 1];
            rec_str(&ev[i], "kind", kind, sizeof kind);
            rec_str(&ev[i], "text", raw, sizeof raw);
            /* a progress event's text is a JSON object of figures */
            json_t *prog = !strcmp(kind, "progress") ? json_loads(raw, 0, NULL) : NULL;
            if (prog && !json_is_object(prog)) {
                json_decref(prog);
                prog = NULL;
            }
            uint64_t t_ms = rec_u64(&ev[i], "t_ms");
            if (a.json) { /* one object a line; progress as an object */
                json_t *j = to_json(&ev[i]);
                if (prog) {
                    json_object_del(j, "text");
                    json_object_set(j, "progress", prog);
                }
                char *s = json_dumps(j, JSON_COMPACT);
                if (s)
                    puts(s);
                free(s);
                json_decref(j);
                json_decref(prog);
                continue;
            }
            char text[QV_WIRE_MAX_TEXT + 1], state[32], when[32] = "";
            rec_text(&ev[i], "text", text, sizeof text);
            rec_text(&ev[i], "state", state, sizeof state);
            if (prog)
                progress_line(prog, t_ms, &pl, text, sizeof text);
            json_decref(prog);
            time_t tt = (time_t)(t_ms / 1000);
            struct tm tm;
            if (localtime_r(&tt, &tm))
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            printf("%s  %s%s%s%s\n", when, text, state[0] ? "  [" : "", state,
                   state[0] ? "]" : "");
        }
        fflush(stdout);
        qv_wire_msg_free(m);
        if (end)
            break;
    }
    qv_client_close(&c);
    if (st)
        return qv_cli_error(&err);
    return QV_EXIT_OK;
}

/* ---- cancel ---------------------------------------------------------------- */

void qv_help_cancel(FILE *out)
{
    fprintf(out,
        "usage: qvac cancel JOB [--json]\n\n"
        "Cancels a job: a queued one at once, a running one within a second or two\n"
        "(its worker stops it). Cancelling a finished job changes nothing and says\n"
        "its final state.\n\n"
        "options:\n"
        "  --json                print {\"job\": ID, \"state\": STATE}\n"
        CONN_HELP EXIT_HELP);
}

int qv_cmd_cancel(int argc, char **argv)
{
    cargs a;
    cargs_init(&a, "cancel");
    const char *job_s = NULL;
    static const struct option lo[] = {CONN_OPTS, END_OPTS};
    qv_cli_args p;
    qv_cli_args_init(&p, a.cmd, argc, argv, lo, &job_s, 1);
    if (next_opt(&a, &p) != -1)
        return QV_EXIT_USAGE;
    if (!job_s)
        return qv_cli_usage(a.cmd, "which job? (an id from `qvac jobs`)");
    uint64_t job;
    if (parse_job_id(a.cmd, job_s, &job))
        return QV_EXIT_USAGE;
    qv_client *c = NULL;
    int rc = connect_or_fail(&a, &c);
    if (rc)
        return rc;
    qv_err err;
    qv_err_clear(&err);
    qv_wire_msg *m = NULL;
    if (ask_job(c, QV_MSG_CANCEL, job, QV_MSG_CANCELLED, &m, &err)) {
        qv_client_close(&c);
        return qv_cli_error(&err);
    }
    char state[32];
    rec_text(qv_wire_msg_body(m), "state", state, sizeof state);
    if (a.json)
        qv_cli_print_json(to_json(qv_wire_msg_body(m)));
    else if (!strcmp(state, "cancelled"))
        printf("job %llu cancelled\n", (unsigned long long)job);
    else
        printf("job %llu: %s%s\n", (unsigned long long)job, state,
               state_final(state) ? " (it had already ended)"
                                  : " (cancel requested; its worker stops it)");
    qv_wire_msg_free(m);
    qv_client_close(&c);
    return QV_EXIT_OK;
}

/* ---- fetch ----------------------------------------------------------------- */

void qv_help_fetch(FILE *out)
{
    fprintf(out,
        "usage: qvac fetch JOB [-o DIR] [--json]\n\n"
        "Downloads a succeeded job's results into DIR: adapter.gguf (use it with\n"
        "`qvac generate --adapter`) and metrics.json. Each file's SHA-256 is checked\n"
        "before it replaces anything.\n\n"
        "options:\n"
        "  -o, --out DIR         where to write them (default qvac-out)\n"
        "  --json                print {\"job\", \"adapter\", \"metrics\"} (the paths)\n"
        CONN_HELP EXIT_HELP);
}

static qv_status mkdirs(const char *dir, qv_err *err)
{
    char buf[1024];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf)
        return qv_fail(err, QV_ERR_INVALID, "'%s': not a usable folder name", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char save = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST)
            return qv_fail(err, QV_ERR_IO, "%s: %s", buf, strerror(errno));
        buf[i] = save;
    }
    return QV_OK;
}

int qv_cmd_fetch(int argc, char **argv)
{
    cargs a;
    cargs_init(&a, "fetch");
    const char *job_s = NULL, *dir = "qvac-out";
    static const struct option lo[] = {CONN_OPTS, {"out", required_argument, NULL, 'o'},
                                       END_OPTS};
    qv_cli_args p;
    qv_cli_args_init(&p, a.cmd, argc, argv, lo, &job_s, 1);
    int oc;
    while ((oc = next_opt(&a, &p)) != -1) {
        if (oc != 'o')
            return QV_EXIT_USAGE;
        dir = optarg;
    }
    if (!job_s)
        return qv_cli_usage(a.cmd, "which job? (an id from `qvac jobs --all`)");
    uint64_t job;
    if (parse_job_id(a.cmd, job_s, &job))
        return QV_EXIT_USAGE;
    qv_client *c = NULL;
    int rc = connect_or_fail(&a, &c);
    if (rc)
        return rc;
    qv_err err;
    qv_err_clear(&err);
    qv_wire_msg *m = NULL;
    qv_status st = ask_job(c, QV_MSG_FETCH, job, QV_MSG_RESULT, &m, &err);
    if (st) {
        qv_client_close(&c);
        return qv_cli_error(&err);
    }
    const msgpack_object *b = qv_wire_msg_body(m);
    char state[32], ah[QV_WIRE_HASH_MAX + 1], mh[QV_WIRE_HASH_MAX + 1];
    rec_text(b, "state", state, sizeof state);
    rec_str(b, "adapter", ah, sizeof ah);
    rec_str(b, "metrics", mh, sizeof mh);
    uint64_t asz = qv_wire_has(b, "adapter_size") ? rec_u64(b, "adapter_size")
                                                  : UINT64_MAX;
    uint64_t msz = qv_wire_has(b, "metrics_size") ? rec_u64(b, "metrics_size")
                                                  : UINT64_MAX;
    char apath[1100] = "", mpath[1100] = "";
    if (!ah[0]) {
        st = qv_fail(&err, QV_ERR_INVALID, "job %llu is %s and has no adapter "
                     "to fetch", (unsigned long long)job, state);
        goto done;
    }
    if ((st = mkdirs(dir, &err)))
        goto done;
    snprintf(apath, sizeof apath, "%s/adapter.gguf", dir);
    xfer x;
    xfer_init(&x, "adapter.gguf");
    qv_client_set_timeout(c, a.co.timeout_ms > 0 ? a.co.timeout_ms : 30000);
    if ((st = qv_client_download(c, ah, asz, apath, on_xfer, &x, &err)))
        goto done;
    if (mh[0]) {
        snprintf(mpath, sizeof mpath, "%s/metrics.json", dir);
        xfer y;
        xfer_init(&y, "metrics.json");
        if ((st = qv_client_download(c, mh, msz, mpath, on_xfer, &y, &err)))
            goto done;
    }
    if (a.json) {
        json_t *j = json_pack("{s:I, s:s, s:s}", "job", (json_int_t)job,
                              "adapter", apath, "state", state);
        if (mpath[0])
            json_object_set_new(j, "metrics", json_string(mpath));
        qv_cli_print_json(j);
    } else {
        printf("%s\n", apath);
        if (mpath[0])
            printf("%s\n", mpath);
    }
done:
    qv_wire_msg_free(m);
    qv_client_close(&c);
    return st ? qv_cli_error(&err) : QV_EXIT_OK;
}

/* ---- keys ------------------------------------------------------------------ */

void qv_help_keys(FILE *out)
{
    fprintf(out,
        "usage: qvac keys [--json]\n\n"
        "Shows this account's client key (creating it when absent:\n"
        "$XDG_CONFIG_HOME/qvac/client.key, mode 0600). A scheduler run by the same\n"
        "account on this machine admits it by itself; any other scheduler needs\n"
        "it admitted once, on the scheduler's machine, with\n"
        "  qvac clients add KEY\n\n"
        "options:\n"
        "  --json                print {\"public\": KEY, \"path\": FILE}\n"
        "  -h, --help            this help\n" EXIT_HELP);
}

int qv_cmd_keys(int argc, char **argv)
{
    cargs a;
    cargs_init(&a, "keys");
    static const struct option lo[] = {{"json", no_argument, NULL, O_JSON}, END_OPTS};
    qv_cli_args p;
    qv_cli_args_init(&p, a.cmd, argc, argv, lo, NULL, 0);
    if (next_opt(&a, &p) != -1)
        return QV_EXIT_USAGE;
    qv_err err;
    qv_err_clear(&err);
    char dir[1024], path[1100];
    if (qv_paths_config_dir(dir, sizeof dir, &err))
        return qv_cli_error(&err);
    snprintf(path, sizeof path, "%s/client.key", dir);
    int existed = access(path, F_OK) == 0;
    qv_keypair kp;
    if (qv_keys_load_or_create(path, &kp, &err))
        return qv_cli_error(&err);
    if (a.json) {
        qv_cli_print_json(json_pack("{s:s, s:s, s:b}", "public", kp.pub, "path",
                                    path, "created", !existed));
        return QV_EXIT_OK;
    }
    printf("%s client key: %s\n", existed ? "this account's" : "created the",
           path);
    printf("public key: %s\n\n", kp.pub);
    printf("A scheduler run by this account on this machine admits it already.\n"
           "For any other scheduler, run this on the scheduler's machine:\n");
    char q[64];
    qv_shell_quote(kp.pub, q, sizeof q);
    printf("  qvac clients add %s\n", q);
    return QV_EXIT_OK;
}
