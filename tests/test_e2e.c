/* tests/test_e2e.c — the product with real processes on loopback: `qvac
 * scheduler`, two `qvac worker`s (reference device), `qvac submit`, `qvac
 * fetch`. The adapter a worker makes equals what `qvac finetune` makes
 * locally with the same seed on the same device; a worker killed with
 * kill -9 mid-job hands the job to the other worker, which resumes it from
 * its last checkpoint (start_step > 0) and finishes it.
 *
 * The binary is $QVAC_BIN (the Makefile sets it; default build/qvac). Every
 * process is started with its own log under a temporary folder and killed
 * at the end; every wait is bounded. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <jansson.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/status.h"
#include "scheduler/client.h"
#include "formats/gguf.h"
#include "scheduler/keys.h"
#include "scheduler/store.h"
#include "train/model.h"

extern char **environ;

static char root[64];
static char bin[512];
static char addr[64];
static pid_t procs[8];
static int n_procs;

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts argv with stdout+stderr into log; returns the pid. */
static pid_t start(char *const argv[], const char *log)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start %s", argv[0]);
    return pid;
}

/* Runs argv to the end; its stdout into out (NUL-terminated). Exit code. */
static int run(char *const argv[], char *out, size_t n)
{
    char log[128];
    snprintf(log, sizeof log, "%s/run.out", root);
    pid_t pid = start(argv, log);
    int status = 0;
    waitpid(pid, &status, 0);
    FILE *f = fopen(log, "r");
    size_t got = f ? fread(out, 1, n - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    int port = ntohs(a.sin_port);
    close(s);
    return port;
}

static void last_line(const char *text, char *out, size_t n)
{
    const char *end = text + strlen(text);
    while (end > text && (end[-1] == '\n' || end[-1] == '\r'))
        end--;
    const char *start_ = end;
    while (start_ > text && start_[-1] != '\n')
        start_--;
    snprintf(out, n, "%.*s", (int)(end - start_), start_);
}

/* The record of job id from `qvac jobs --all --json` (caller decrefs). */
static json_t *job_record(long id)
{
    static char out[1 << 16];
    char *argv[] = {bin, "jobs", "--all", "--json", NULL};
    if (run(argv, out, sizeof out))
        return NULL;
    json_t *j = json_loads(out, 0, NULL);
    json_t *list = json_is_array(j) ? j : json_object_get(j, "jobs");
    json_t *found = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
        if (json_integer_value(json_object_get(v, "id")) == id)
            found = json_incref(v);
    json_decref(j);
    return found;
}

static const char *str_of(json_t *rec, const char *key)
{
    const char *s = json_string_value(json_object_get(rec, key));
    return s ? s : "";
}

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/qv-e2e-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    const char *b = getenv("QVAC_BIN");
    snprintf(bin, sizeof bin, "%s", b ? b : "build/qvac");
    if (bin[0] != '/') {
        char cwd[256], rel[sizeof bin];
        cr_assert_not_null(getcwd(cwd, sizeof cwd));
        memcpy(rel, bin, sizeof rel);
        cr_assert_lt(strlen(cwd) + strlen(rel) + 2, sizeof bin);
        strcpy(bin, cwd);
        strcat(bin, "/");
        strcat(bin, rel);
    }
    cr_assert_eq(access(bin, X_OK), 0, "no qvac binary at %s (set QVAC_BIN)", bin);
    char p[128];
    snprintf(p, sizeof p, "%s/config", root);
    setenv("XDG_CONFIG_HOME", p, 1);
    snprintf(p, sizeof p, "%s/data", root);
    setenv("XDG_DATA_HOME", p, 1);
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", free_port());
    setenv("QVAC_SCHEDULER", addr, 1);
}

static void teardown(void)
{
    for (int i = 0; i < n_procs; i++)
        if (procs[i] > 0) {
            kill(procs[i], SIGKILL);
            waitpid(procs[i], NULL, 0);
        }
    n_procs = 0;
    if (getenv("QVAC_TEST_KEEP")) { /* for a look at the logs of a failure */
        fprintf(stderr, "kept %s\n", root);
        return;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd)) {
        /* nothing more to do */
    }
}

TestSuite(e2e, .init = setup, .fini = teardown, .timeout = 300);

static void make_inputs(char *model, char *data, size_t n)
{
    snprintf(model, n, "%s/m.gguf", root);
    snprintf(data, n, "%s/d.jsonl", root);
    qv_model_config cfg = {
        .vocab = 258, .dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
        .ffn_dim = 48, .ctx = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
        .act = QV_ACT_RELU2, .sub_norm = 1, .tied = 0,
    };
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_random(&cfg, 3, &m, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_model_save(m, model, &e), QV_OK, "%s", e.msg);
    qv_model_free(&m);
    FILE *f = fopen(data, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"prompt\": \"Q%d?\\n\", \"completion\": \"Arr, %d!\"}\n", i, i * 3);
    fclose(f);
}

static char http_addr[64]; /* set: the scheduler serves --http there */

static void start_scheduler(void)
{
    char sched[128], log[160], bind[80], lease[] = "2000";
    snprintf(sched, sizeof sched, "%s/sched", root);
    snprintf(log, sizeof log, "%s/scheduler.log", root);
    snprintf(bind, sizeof bind, "%s", addr);
    char *argv[] = {bin, "scheduler", "--bind", bind, "--data", sched,
                    "--lease-ms", lease, http_addr[0] ? "--http" : NULL, http_addr, NULL};
    procs[n_procs++] = start(argv, log);
    /* the clients find the scheduler's key in its data folder */
    char pub[200];
    snprintf(pub, sizeof pub, "%s/scheduler.pub", sched);
    for (int i = 0; i < 200 && access(pub, R_OK); i++)
        msleep(50);
    FILE *f = fopen(pub, "r");
    cr_assert_not_null(f, "the scheduler did not start (see %s)", log);
    char line[128] = "";
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    char key[64];
    cr_assert(sscanf(line, "public %60s", key) == 1 || sscanf(line, "%60s", key) == 1);
    cr_assert_eq(strlen(key), 40, "scheduler.pub: '%s'", line);
    setenv("QVAC_SCHEDULER_KEY", key, 1);
    static char out[4096];
    char *jobs[] = {bin, "jobs", NULL};
    int rc = 1;
    for (int i = 0; i < 50 && (rc = run(jobs, out, sizeof out)); i++)
        msleep(100);
    cr_assert_eq(rc, 0, "the scheduler does not answer: %s", out);
}

/* A worker on the reference device, enrolled with a fresh token; name: its
 * --name (NULL: the host's); fsize_blocks > 0: its files may not grow past
 * that many blocks (ulimit -f: writes fail as on a full disk). */
static pid_t start_worker_ex(const char *tag, const char *name, int fsize_blocks)
{
    static char out[4096];
    char sched[128];
    snprintf(sched, sizeof sched, "%s/sched", root);
    char *targv[] = {bin, "token", "--data", sched, NULL};
    cr_assert_eq(run(targv, out, sizeof out), 0, "qvac token: %s", out);
    char token[256], cache[128], log[160], limit[96];
    last_line(out, token, sizeof token);
    snprintf(cache, sizeof cache, "%s/%s", root, tag);
    snprintf(log, sizeof log, "%s/%s.log", root, tag);
    snprintf(limit, sizeof limit, "trap '' XFSZ; ulimit -f %d; exec \"$0\" \"$@\"",
             fsize_blocks);
    char *argv[20];
    int n = 0;
    if (fsize_blocks > 0) {
        argv[n++] = "/bin/sh";
        argv[n++] = "-c";
        argv[n++] = limit;
    }
    char *rest[] = {bin, "worker", "--join", addr, "--token", token, "--devices", "ref",
                    "--cache-dir", cache, "--no-tune", "--no-bench"};
    for (size_t i = 0; i < sizeof rest / sizeof *rest; i++)
        argv[n++] = rest[i];
    if (name) {
        argv[n++] = "--name";
        argv[n++] = (char *)name;
    }
    argv[n] = NULL;
    pid_t pid = start(argv, log);
    procs[n_procs++] = pid;
    return pid;
}

static pid_t start_worker(const char *tag) { return start_worker_ex(tag, NULL, 0); }

/* Waits until `qvac workers` lists a worker whose line holds needle. */
static void wait_listed(const char *needle)
{
    static char out[1 << 14];
    char *wl[] = {bin, "workers", NULL};
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(run(wl, out, sizeof out), 0, "%s", out);
        if (strstr(out, needle))
            return;
        msleep(100);
    }
    cr_assert_fail("no worker '%s' enrolled: %s", needle, out);
}

/* Runs a `qvac submit ... --json` argv; the id of the job it submitted. */
static long submit_argv(char *const argv[])
{
    static char out[1 << 14];
    cr_assert_eq(run(argv, out, sizeof out), 0, "qvac submit: %s", out);
    const char *brace = strchr(out, '{');
    cr_assert_not_null(brace, "no JSON from submit: %s", out);
    json_t *j = json_loads(brace, JSON_DISABLE_EOF_CHECK, NULL);
    long id = j ? (long)json_integer_value(json_object_get(j, "id")) : 0;
    if (j && !id)
        id = (long)json_integer_value(json_object_get(j, "job"));
    json_decref(j);
    cr_assert_gt(id, 0, "%s", out);
    return id;
}

static long submit(const char *model, const char *data, const char *steps,
                   const char *ckpt, int wait)
{
    char *argv[] = {bin, "submit", "--model", (char *)model, "--data",
                    (char *)data, "--steps", (char *)steps, "--rank", "4",
                    "--batch", "2", "--seq-len", "32", "--seed", "7",
                    "--eval-batches", "1", "--ckpt-every", (char *)ckpt,
                    "--backend", "ref", "--json", wait ? "--wait" : NULL, NULL};
    return submit_argv(argv);
}

static void fetch(long id, const char *dir)
{
    static char out[4096];
    char sid[32];
    snprintf(sid, sizeof sid, "%ld", id);
    char *argv[] = {bin, "fetch", sid, "-o", (char *)dir, NULL};
    cr_assert_eq(run(argv, out, sizeof out), 0, "qvac fetch: %s", out);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1); /* NUL-terminated too, for text */
    cr_assert_eq(fread(b, 1, *n, f), *n);
    b[*n] = 0;
    fclose(f);
    return b;
}

Test(e2e, worker_adapter_equals_local_finetune)
{
    char model[128], data[128], got[160], want[160], fdir[128], ldir[128];
    make_inputs(model, data, sizeof model);
    start_scheduler();
    start_worker("w1");
    long id = submit(model, data, "6", "0", 1);
    snprintf(fdir, sizeof fdir, "%s/fetched", root);
    fetch(id, fdir);

    static char out[1 << 16];
    snprintf(ldir, sizeof ldir, "%s/local", root);
    char *argv[] = {bin, "finetune", "--model", model, "--data", data,
                    "--steps", "6", "--rank", "4", "--batch", "2", "--seq-len",
                    "32", "--seed", "7", "--eval-batches", "1", "--device",
                    "ref", "--out", ldir, "--json", NULL};
    cr_assert_eq(run(argv, out, sizeof out), 0, "local finetune: %s", out);
    snprintf(got, sizeof got, "%s/adapter.gguf", fdir);
    snprintf(want, sizeof want, "%s/adapter.gguf", ldir);
    size_t ng, nw;
    uint8_t *a = slurp(got, &ng), *b = slurp(want, &nw);
    cr_expect_eq(ng, nw);
    cr_expect_eq(memcmp(a, b, ng < nw ? ng : nw), 0,
                 "the worker's adapter differs from the local one");
    free(a);
    free(b);
}

Test(e2e, kill_9_of_a_worker_resumes_on_the_other)
{
    char model[128], data[128], fdir[128], mpath[200];
    make_inputs(model, data, sizeof model);
    start_scheduler();
    pid_t a = start_worker("w1");
    long id = submit(model, data, "400", "10", 0);
    /* wait until worker A has uploaded a checkpoint */
    json_t *rec = NULL;
    for (int i = 0; i < 600; i++) {
        json_decref(rec);
        rec = job_record(id);
        if (rec && str_of(rec, "checkpoint")[0])
            break;
        msleep(100);
    }
    cr_assert(rec && str_of(rec, "checkpoint")[0],
              "no checkpoint from worker A (see %s/w1.log)", root);
    cr_assert_str_neq(str_of(rec, "state"), "succeeded",
                      "the job ended before the kill; make it longer");
    json_decref(rec);
    rec = NULL;
    start_worker("w2");
    kill(a, SIGKILL);
    waitpid(a, NULL, 0);
    for (int i = 0; i < n_procs; i++)
        if (procs[i] == a)
            procs[i] = 0;
    /* the lease runs out (2 s), the job goes to worker B and ends there */
    const char *state = "";
    for (int i = 0; i < 1200; i++) {
        json_decref(rec);
        rec = job_record(id);
        state = rec ? str_of(rec, "state") : "";
        if (!strcmp(state, "succeeded") || !strcmp(state, "failed") ||
            !strcmp(state, "cancelled"))
            break;
        msleep(100);
    }
    cr_assert_str_eq(state, "succeeded", "job %ld ended %s: %s", id, state,
                     rec ? str_of(rec, "reason") : "");
    cr_expect_geq(json_integer_value(json_object_get(rec, "attempt")), 2);
    json_decref(rec);
    snprintf(fdir, sizeof fdir, "%s/fetched", root);
    fetch(id, fdir);
    snprintf(mpath, sizeof mpath, "%s/metrics.json", fdir);
    json_t *m = json_load_file(mpath, 0, NULL);
    cr_assert_not_null(m, "%s", mpath);
    long start_step = (long)json_integer_value(json_object_get(m, "start_step"));
    long steps = (long)json_integer_value(json_object_get(m, "steps"));
    printf("kill -9 of the worker: the job resumed at step %ld of %ld on the "
           "other worker\n", start_step, steps);
    cr_expect_gt(start_step, 0, "the retry started from step 0");
    cr_expect_eq(steps, 400);
    json_decref(m);
}

/* A worker benchmarks its device once enrolled (train/bench.h), the
 * scheduler stores the result, and `qvac report` publishes it; a second
 * worker process on the same cache sends the kept result without running
 * the benchmark again. */
Test(e2e, worker_bench_reaches_the_fleet_report)
{
    static char out[1 << 16];
    char *dargv[] = {bin, "devices", "--json", NULL};
    cr_assert_eq(run(dargv, out, sizeof out), 0, "%s", out);
    if (!strstr(out, "\"opencl:0\""))
        cr_skip_test("no opencl:0 here");
    start_scheduler();
    char sched[128], token[256], cache[128], log[160], rdir[128];
    snprintf(sched, sizeof sched, "%s/sched", root);
    char *targv[] = {bin, "token", "--data", sched, NULL};
    cr_assert_eq(run(targv, out, sizeof out), 0, "qvac token: %s", out);
    last_line(out, token, sizeof token);
    snprintf(cache, sizeof cache, "%s/wb", root);
    snprintf(log, sizeof log, "%s/wb.log", root);
    char *wargv[] = {bin, "worker", "--join", addr, "--token", token, "--devices",
                     "opencl:0", "--cache-dir", cache, "--no-tune", "--name",
                     "bench-box", NULL};
    pid_t w = start(wargv, log);
    procs[n_procs++] = w;
    snprintf(rdir, sizeof rdir, "%s/report", root);
    char *rargv[] = {bin, "report", "--out", rdir, "--json", NULL};
    json_t *j = NULL;
    for (int i = 0; i < 600; i++) {
        json_decref(j);
        j = NULL;
        if (!run(rargv, out, sizeof out) && strchr(out, '{') &&
            (j = json_loads(strchr(out, '{'), JSON_DISABLE_EOF_CHECK, NULL)) &&
            json_array_size(json_object_get(j, "devices")) == 1)
            break;
        msleep(200);
    }
    json_t *d = json_array_get(json_object_get(j, "devices"), 0);
    cr_assert_not_null(d, "no bench result reached the scheduler: %s (log %s)", out, log);
    cr_assert_str_eq(str_of(d, "device"), "opencl:0");
    cr_assert_str_eq(str_of(d, "worker_name"), "bench-box");
    cr_assert_str_eq(str_of(d, "model"), "builtin");
    json_t *t = json_object_get(d, "ternary"), *f = json_object_get(d, "f16");
    cr_assert_gt(json_number_value(json_object_get(t, "tokens_per_s")), 0);
    cr_assert_gt(json_number_value(json_object_get(f, "tokens_per_s")), 0);
    cr_assert_lt(json_integer_value(json_object_get(t, "peak_bytes")),
                 json_integer_value(json_object_get(f, "peak_bytes")));
    int64_t first = json_integer_value(json_object_get(d, "measured_ms"));
    json_decref(j);
    char p[200];
    snprintf(p, sizeof p, "%s/fleet.md", rdir);
    size_t n;
    uint8_t *md = slurp(p, &n);
    cr_assert_not_null(strstr((char *)md, "| bench-box | opencl:0 | opencl |"), "%s", md);
    free(md);
    snprintf(p, sizeof p, "%s/fleet-tokens.svg", rdir);
    cr_assert_eq(access(p, R_OK), 0);

    /* the same worker again: its kept result is sent, not measured again */
    kill(w, SIGKILL);
    waitpid(w, NULL, 0);
    procs[n_procs - 1] = 0;
    char log2[160];
    snprintf(log2, sizeof log2, "%s/wb2.log", root);
    char *w2argv[] = {bin, "worker", "--join", addr, "--devices", "opencl:0",
                      "--cache-dir", cache, "--no-tune", "--name", "bench-box", NULL};
    procs[n_procs++] = start(w2argv, log2);
    int stored = 0;
    for (int i = 0; i < 300 && !stored; i++) {
        msleep(100);
        size_t ln = 0;
        FILE *lf = fopen(log2, "rb");
        if (lf) {
            fclose(lf);
            uint8_t *l = slurp(log2, &ln);
            stored = strstr((char *)l, "stored by the scheduler") != NULL;
            cr_assert_null(strstr((char *)l, "running (ternary"), "measured again: %s", l);
            free(l);
        }
    }
    cr_assert(stored, "the kept result was not sent again (log %s)", log2);
    cr_assert_eq(run(rargv, out, sizeof out), 0, "%s", out);
    cr_assert_not_null(strchr(out, '{'), "%s", out);
    j = json_loads(strchr(out, '{'), JSON_DISABLE_EOF_CHECK, NULL);
    d = json_array_get(json_object_get(j, "devices"), 0);
    cr_assert_eq(json_integer_value(json_object_get(d, "measured_ms")), first,
                 "the kept result, not a new measurement");
    json_decref(j);
}

/* ---- the HTTP view: /metrics scraped with curl, parsed by the rules of the
 * Prometheus text exposition format (version 0.0.4) ---- */

typedef struct sample {
    char name[64], labels[256];
    double value;
} sample;

static int name_ok(const char *s, size_t n, int metric)
{
    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (metric && c == ':') || (i && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

/* Parses the exposition text; fails the test on any line that breaks the
 * format. Returns the samples. */
static size_t parse_exposition(const char *text, sample *out, size_t cap)
{
    char typed[64][64];
    size_t nt = 0, n = 0;
    const char *p = text;
    int line_no = 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        cr_assert_not_null(eol, "the last line has no newline");
        char line[1024];
        size_t len = (size_t)(eol - p);
        cr_assert_lt(len, sizeof line);
        memcpy(line, p, len);
        line[len] = 0;
        p = eol + 1;
        line_no++;
        if (!len)
            continue;
        if (line[0] == '#') {
            char kw[16], name[64];
            int off = 0;
            if (sscanf(line, "# %15s %63s %n", kw, name, &off) >= 2 &&
                (!strcmp(kw, "HELP") || !strcmp(kw, "TYPE"))) {
                cr_assert(name_ok(name, strlen(name), 1), "line %d: bad name", line_no);
                if (!strcmp(kw, "TYPE")) {
                    const char *t = line + off;
                    cr_assert(!strcmp(t, "gauge") || !strcmp(t, "counter") ||
                                  !strcmp(t, "histogram") || !strcmp(t, "summary") ||
                                  !strcmp(t, "untyped"),
                              "line %d: type '%s'", line_no, t);
                    for (size_t i = 0; i < nt; i++)
                        cr_assert_str_neq(typed[i], name, "line %d: TYPE twice", line_no);
                    for (size_t i = 0; i < n; i++)
                        cr_assert_str_neq(out[i].name, name,
                                          "line %d: TYPE after its samples", line_no);
                    cr_assert_lt(nt, 64);
                    snprintf(typed[nt++], sizeof typed[0], "%s", name);
                }
            }
            continue; /* other comments are allowed */
        }
        cr_assert_lt(n, cap);
        sample *s = &out[n];
        memset(s, 0, sizeof *s);
        size_t i = 0;
        while (line[i] && line[i] != '{' && line[i] != ' ')
            i++;
        cr_assert(name_ok(line, i, 1), "line %d: bad metric name: %s", line_no, line);
        snprintf(s->name, sizeof s->name, "%.*s", (int)i, line);
        if (line[i] == '{') {
            size_t j = i + 1, lo = 0;
            while (line[j] != '}') {
                size_t k = j;
                while (line[k] && line[k] != '=')
                    k++;
                cr_assert(line[k] == '=' && name_ok(line + j, k - j, 0),
                          "line %d: bad label name: %s", line_no, line);
                cr_assert_eq(line[k + 1], '"', "line %d: label value unquoted", line_no);
                k += 2;
                while (line[k] && line[k] != '"') {
                    if (line[k] == '\\') {
                        cr_assert(line[k + 1] == '\\' || line[k + 1] == '"' ||
                                      line[k + 1] == 'n',
                                  "line %d: bad escape", line_no);
                        k++;
                    }
                    k++;
                }
                cr_assert_eq(line[k], '"', "line %d: label value not closed", line_no);
                lo += (size_t)snprintf(s->labels + lo, sizeof s->labels - lo, "%.*s;",
                                       (int)(k + 1 - j), line + j);
                j = k + 1;
                if (line[j] == ',')
                    j++;
                else
                    cr_assert_eq(line[j], '}', "line %d: after a label: %s", line_no, line);
            }
            i = j + 1;
        }
        cr_assert_eq(line[i], ' ', "line %d: no space before the value", line_no);
        const char *v = line + i + 1;
        char *end = NULL;
        if (!strcmp(v, "NaN") || !strcmp(v, "+Inf") || !strcmp(v, "-Inf")) {
            s->value = NAN;
        } else {
            s->value = strtod(v, &end);
            cr_assert(end != v && (!*end || *end == ' '), "line %d: value '%s'", line_no, v);
            if (*end == ' ') { /* a timestamp: an integer */
                strtoll(end + 1, &end, 10);
                cr_assert(!*end, "line %d: timestamp", line_no);
            }
        }
        int declared = 0;
        for (size_t t = 0; t < nt; t++)
            declared |= !strcmp(typed[t], s->name);
        cr_assert(declared, "line %d: %s has no TYPE before it", line_no, s->name);
        n++;
    }
    return n;
}

static double metric(const sample *s, size_t n, const char *name, const char *labels)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s[i].name, name) && !strcmp(s[i].labels, labels ? labels : ""))
            return s[i].value;
    cr_assert_fail("no sample %s{%s}", name, labels ? labels : "");
    return NAN;
}

static size_t scrape(sample *out, size_t cap, char *body, size_t body_n)
{
    char url[128];
    snprintf(url, sizeof url, "http://%s/metrics", http_addr);
    char *argv[] = {"/usr/bin/curl", "-sS", "--fail", "--max-time", "10", url, NULL};
    if (access(argv[0], X_OK))
        argv[0] = "/usr/local/bin/curl";
    cr_assert_eq(access(argv[0], X_OK), 0, "curl is needed (Debian: apt-get install curl)");
    cr_assert_eq(run(argv, body, body_n), 0, "curl %s: %s", url, body);
    return parse_exposition(body, out, cap);
}

Test(e2e, metrics_scraped_with_curl_follow_the_exposition_format)
{
    snprintf(http_addr, sizeof http_addr, "127.0.0.1:%d", free_port());
    start_scheduler();
    static char body[1 << 16];
    static sample s[512];
    size_t n = 0;
    for (int i = 0; i < 50; i++) { /* the first document: within a tick */
        n = scrape(s, 512, body, sizeof body);
        if (n)
            break;
        msleep(100);
    }
    cr_assert_eq(metric(s, n, "qvac_workers", "state=\"idle\";"), 0);
    char model[128], data[128];
    make_inputs(model, data, sizeof model);
    start_worker("w1");
    double idle = 0;
    for (int i = 0; i < 100 && idle < 1; i++) {
        msleep(200);
        n = scrape(s, 512, body, sizeof body);
        idle = metric(s, n, "qvac_devices", "state=\"idle\";");
    }
    cr_assert_eq(idle, 1, "%s", body);
    cr_assert_eq(metric(s, n, "qvac_workers", "state=\"idle\";"), 1);
    cr_assert_eq(metric(s, n, "qvac_workers", "state=\"lost\";"), 0);
    cr_assert_lt(metric(s, n, "qvac_heartbeat_lag_seconds", "stat=\"max\";"), 5);
    long id = submit(model, data, "4", "0", 1);
    cr_assert_gt(id, 0);
    double ok = 0;
    for (int i = 0; i < 50 && ok < 1; i++) {
        msleep(200);
        n = scrape(s, 512, body, sizeof body);
        ok = metric(s, n, "qvac_jobs", "state=\"succeeded\";");
    }
    cr_assert_eq(ok, 1, "%s", body);
    cr_assert_eq(metric(s, n, "qvac_jobs", "state=\"queued\";"), 0);
    cr_assert_gt(metric(s, n, "qvac_blob_store_bytes", NULL), 1000, "model, data, results");
    cr_assert_geq(metric(s, n, "qvac_blobs", NULL), 4);
    /* nothing that needs a key: no job names, paths or keys */
    cr_assert_null(strstr(body, "d.jsonl"));
    cr_assert_null(strstr(body, "m.gguf"));
    cr_assert_null(strstr(body, getenv("QVAC_SCHEDULER_KEY")));
    /* the fleet page is HTML, and other paths and methods are refused */
    char url[128];
    snprintf(url, sizeof url, "http://%s/", http_addr);
    char *hargv[] = {"/usr/bin/curl", "-sS", "--fail", url, NULL};
    cr_assert_eq(run(hargv, body, sizeof body), 0, "%s", body);
    cr_assert_not_null(strstr(body, "<h1>Fleet report"), "%s", body);
    snprintf(url, sizeof url, "http://%s/jobs", http_addr);
    char *nargv[] = {"/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url, NULL};
    cr_assert_eq(run(nargv, body, sizeof body), 0);
    cr_assert_str_eq(body, "404");
    http_addr[0] = 0;
}

/* The line of text that holds needle, cut of its leading spaces. */
static int line_with(const char *text, const char *needle, char *out, size_t n)
{
    const char *p = strstr(text, needle);
    if (!p)
        return -1;
    const char *b = p;
    while (b > text && b[-1] != '\n')
        b--;
    while (*b == ' ')
        b++;
    const char *e = strchr(p, '\n');
    if (!e)
        e = p + strlen(p);
    snprintf(out, n, "%.*s", (int)(e - b), b);
    return 0;
}

/* Keys and tokens are pasted into shells: Z85 has $ & ) > { !. The
 * suggestions qvac prints go through `sh -c` as they are and mean what they
 * say: `qvac keys`' "qvac clients add KEY" admits the key, and the token
 * in `qvac token`'s "qvac worker ... --token T" reaches the program
 * unchanged and names the scheduler's key. */
Test(e2e, printed_suggestions_survive_a_shell)
{
    static char out[1 << 14];
    char line[512], cmd[2048];
    char *keys[] = {bin, "keys", NULL};
    cr_assert_eq(run(keys, out, sizeof out), 0, "%s", out);
    cr_assert_eq(line_with(out, "qvac clients add", line, sizeof line), 0, "%s", out);
    char pub[64] = "";
    cr_assert_eq(line_with(out, "public key: ", pub, sizeof pub), 0);
    memmove(pub, pub + strlen("public key: "), strlen(pub) - strlen("public key: ") + 1);
    cr_assert_eq(strlen(pub), 40, "%s", pub);
    /* the printed command, with this build's binary for `qvac` */
    char data[256];
    snprintf(data, sizeof data, "%s/shell-data", root);
    snprintf(cmd, sizeof cmd, "%s%s --data '%s'", bin, line + strlen("qvac"), data);
    char *sh[] = {"/bin/sh", "-c", cmd, NULL};
    cr_assert_eq(run(sh, out, sizeof out), 0, "`%s` failed: %s", line, out);
    qv_store *st = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_store_open(data, NULL, &st, &e), QV_OK, "%s", e.msg);
    qv_key_role role = QV_KEY_UNKNOWN;
    cr_expect_eq(qv_store_key_role(st, pub, &role, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(role, QV_KEY_CLIENT, "`%s` did not admit %s", line, pub);
    qv_store_close(&st);

    char *tok[] = {bin, "token", "--data", data, NULL};
    cr_assert_eq(run(tok, out, sizeof out), 0, "%s", out);
    char token[256];
    last_line(out, token, sizeof token);
    cr_assert_eq(line_with(out, "qvac worker --join", line, sizeof line), 0, "%s", out);
    /* every word of the suggestion, as the shell hands them to the program */
    snprintf(cmd, sizeof cmd, "printf '%%s\\n' %s", line + strlen("qvac"));
    cr_assert_eq(run(sh, out, sizeof out), 0, "`%s`: %s", cmd, out);
    char word[256];
    last_line(out, word, sizeof word);
    cr_expect_str_eq(word, token, "the shell changed the token of `%s`", line);
    char spub[41], secret[33];
    cr_assert_eq(qv_token_split(word, secret, spub, &e), QV_OK, "%s", e.msg);
    char kpath[300];
    snprintf(kpath, sizeof kpath, "%s/scheduler.pub", data);
    char want[41];
    cr_assert_eq(qv_keys_load_public(kpath, want, &e), QV_OK, "%s", e.msg);
    cr_expect_str_eq(spub, want);
}

/* `qvac check` on every device kept a table of 64 rows (3 devices x 24
 * kernels = 72 dropped 8 and exit 0): its table has a row for every device
 * and kernel its JSON lists. */
Test(e2e, check_lists_every_device_and_kernel)
{
    static char out[1 << 20];
    char *js[] = {bin, "check", "--json", NULL};
    cr_assert_eq(run(js, out, sizeof out), 0, "%.2000s", out);
    const char *b = strchr(out, '[');
    cr_assert_not_null(b, "%.2000s", out);
    json_t *rows = json_loads(b, JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert(json_is_array(rows), "%.2000s", out);
    size_t want = json_array_size(rows);
    json_decref(rows);
    char *tab[] = {bin, "check", NULL};
    cr_assert_eq(run(tab, out, sizeof out), 0, "%.2000s", out);
    size_t got = 0;
    for (const char *p = out; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 4 && (!strncmp(p + l - 4, "PASS", 4) || !strncmp(p + l - 4, "FAIL", 4)))
            got++;
        p += l + (e ? 1 : 0);
    }
    cr_expect_geq(want, 3, "too few rows to mean anything");
    cr_expect_eq(got, want, "the table has %zu rows, the JSON %zu", got, want);
}

/* Peer text in the client's tables (issue 14): a worker named with a
 * newline and terminal escapes, and a job named so, must not forge a line
 * nor reach the terminal raw in `qvac workers`, `qvac jobs` or `qvac logs`. */
Test(e2e, peer_text_is_escaped_in_the_client_tables)
{
    static char out[1 << 16];
    char model[128], data[128];
    make_inputs(model, data, sizeof model);
    start_scheduler();
    char name[] = "evil\nFORGED worker\x1b[2J\xc2\x9b" "31m";
    start_worker_ex("evil", name, 0);
    wait_listed("evil");
    char *wl[] = {bin, "workers", NULL};
    cr_assert_eq(run(wl, out, sizeof out), 0, "%s", out);
    cr_expect_null(strstr(out, "\nFORGED"), "a forged line in `qvac workers`: %s", out);
    cr_expect_null(strchr(out, '\x1b'), "a raw escape in `qvac workers`");
    cr_expect_null(strstr(out, "\xc2\x9b"), "a raw C1 control in `qvac workers`");
    cr_expect_not_null(strstr(out, "evil\\nFORGED worker\\x1b[2J\\u009b31m"), "%s", out);

    char *sargv[] = {bin, "submit", "--model", model, "--data", data, "--steps", "2",
                     "--rank", "4", "--batch", "2", "--seq-len", "32", "--backend", "ref",
                     "--name", "job\nFORGED job\x1b]0;title\x07", "--json", "--wait", NULL};
    cr_assert_eq(run(sargv, out, sizeof out), 0, "%s", out);
    char *jl[] = {bin, "jobs", "--all", NULL};
    cr_assert_eq(run(jl, out, sizeof out), 0, "%s", out);
    cr_expect_null(strstr(out, "\nFORGED"), "a forged line in `qvac jobs`: %s", out);
    cr_expect_null(strchr(out, '\x1b'), "a raw escape in `qvac jobs`");
    cr_expect_null(strchr(out, '\x07'), "a raw BEL in `qvac jobs`");
    char *ll[] = {bin, "logs", "1", NULL};
    cr_assert_eq(run(ll, out, sizeof out), 0, "%s", out);
    cr_expect_null(strstr(out, "\nFORGED"), "a forged line in `qvac logs`: %s", out);
    cr_expect_null(strchr(out, '\x1b'), "a raw escape in `qvac logs`");
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Submits a job of the built-in model (micro-batches of 1 x 64 tokens on the
 * reference device); its id. */
static long submit_long(const char *model, const char *data, const char *accum,
                        const char *eval_batches)
{
    char *argv[] = {bin, "submit", "--model", (char *)model, "--data", (char *)data,
                    "--steps", "100000", "--batch", "1", "--seq-len", "64",
                    "--accum", (char *)accum, "--eval-batches", (char *)eval_batches,
                    "--backend", "ref", "--json", NULL};
    return submit_argv(argv);
}

static void wait_state(long id, const char *state, double timeout_s)
{
    double t0 = now_s();
    for (;;) {
        json_t *r = job_record(id);
        int ok = r && !strcmp(str_of(r, "state"), state);
        json_decref(r);
        if (ok)
            return;
        cr_assert_lt(now_s() - t0, timeout_s, "job %ld is not %s after %.0f s", id, state,
                     timeout_s);
        msleep(50);
    }
}

/* Seconds from `qvac cancel` to the job's end (state cancelled). */
static double cancel_latency(long id)
{
    static char out[4096];
    char sid[32];
    snprintf(sid, sizeof sid, "%ld", id);
    char *argv[] = {bin, "cancel", sid, NULL};
    double t0 = now_s();
    cr_assert_eq(run(argv, out, sizeof out), 0, "%s", out);
    wait_state(id, "cancelled", 60);
    return now_s() - t0;
}

/* `qvac cancel` of a running job took 35-44 s: the abort was seen only
 * between steps and never during evaluation. The job leaves the device
 * within 2 s, cancelled during its evaluation and in the middle of a step
 * of 64 micro-batches. */
Test(e2e, a_cancelled_job_leaves_the_device_within_2_s)
{
    char model[128], data[128];
    make_inputs(model, data, sizeof model);
    start_scheduler();
    start_worker("w1");
    long a = submit_long(model, data, "1", "100000");
    wait_state(a, "running", 60);
    msleep(500); /* inside "eval before" */
    double la = cancel_latency(a);
    long b = submit_long(model, data, "64", "1");
    wait_state(b, "running", 60);
    msleep(1500); /* inside the first step */
    double lb = cancel_latency(b);
    fprintf(stderr, "cancel: %.2f s during evaluation, %.2f s during a step\n", la, lb);
    cr_expect_lt(la, 2.0, "cancelled during evaluation: %.2f s", la);
    cr_expect_lt(lb, 2.0, "cancelled during a step: %.2f s", lb);
}

/* A fast scheduler restart stranded the fleet: the worker reconnected but
 * was listed with no devices and a queued job stayed queued for good. The
 * scheduler is killed (-9) while a job runs and restarted after 0.1 s, 1 s
 * and 3 s (past the 2 s lease); the worker enrolls again, and the running
 * job and one submitted after each restart both finish. */
Test(e2e, a_restarted_scheduler_gets_its_fleet_back)
{
    char model[128], data[128];
    make_inputs(model, data, sizeof model);
    start_scheduler();
    pid_t sched = procs[n_procs - 1];
    start_worker("w1");
    static const int delay_ms[] = {100, 1000, 3000};
    for (size_t i = 0; i < sizeof delay_ms / sizeof *delay_ms; i++) {
        char *argv[] = {bin, "submit", "--model", model, "--data", data, "--steps", "60",
                        "--batch", "1", "--seq-len", "16", "--ckpt-every", "10",
                        "--eval-batches", "1", "--backend", "ref", "--json", NULL};
        long a = submit_argv(argv);
        wait_state(a, "running", 60);
        /* a follower and a waiter across the restart: they keep going */
        char sid[32], flog[200], wlog[200];
        snprintf(sid, sizeof sid, "%ld", a);
        snprintf(flog, sizeof flog, "%s/follow-%zu.log", root, i);
        snprintf(wlog, sizeof wlog, "%s/wait-%zu.log", root, i);
        char *fargv[] = {bin, "logs", "-f", sid, "--timeout", "1", NULL};
        pid_t follower = start(fargv, flog);
        char *wargv[] = {bin, "submit", "--model", model, "--data", data, "--steps", "2",
                         "--batch", "2", "--seq-len", "32", "--eval-batches", "1",
                         "--backend", "ref", "--wait", "--timeout", "1", NULL};
        pid_t waiter = start(wargv, wlog);
        msleep(300);
        kill(sched, SIGKILL);
        waitpid(sched, NULL, 0);
        for (int k = 0; k < n_procs; k++)
            if (procs[k] == sched)
                procs[k] = 0;
        msleep(delay_ms[i]);
        start_scheduler();
        sched = procs[n_procs - 1];
        long b = submit(model, data, "2", "0", 0);
        wait_state(a, "succeeded", 120);
        wait_state(b, "succeeded", 120);
        pid_t who[2] = {follower, waiter};
        const char *what[2] = {"logs -f", "submit --wait"};
        for (int k = 0; k < 2; k++) {
            int status = 0, done = 0;
            for (int t = 0; t < 600 && !(done = waitpid(who[k], &status, WNOHANG) == who[k]); t++)
                msleep(100);
            if (!done) {
                kill(who[k], SIGKILL);
                waitpid(who[k], &status, 0);
            }
            size_t ln = 0;
            uint8_t *lg = slurp(k ? wlog : flog, &ln);
            cr_expect(done && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "`qvac %s` across a restart after %d ms: status %d: %s", what[k],
                      delay_ms[i], WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                      ln > 600 ? (char *)lg + ln - 600 : (char *)lg);
            free(lg);
        }
        fprintf(stderr, "restart after %d ms: jobs %ld and %ld succeeded\n", delay_ms[i], a, b);
    }
}

/* `qvac submit` of a dataset with no usable example for the model (chat
 * lines and a model without a chat template) made three failed attempts
 * naming a path in the worker's cache: it is refused before anything is
 * uploaded, naming the user's file and line. */
Test(e2e, submit_refuses_a_dataset_the_model_cannot_use)
{
    static char out[1 << 14];
    char data[160];
    snprintf(data, sizeof data, "%s/chat.jsonl", root);
    FILE *f = fopen(data, "w");
    cr_assert_not_null(f);
    fputs("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"},"
          " {\"role\": \"assistant\", \"content\": \"arr\"}]}\n", f);
    fclose(f);
    start_scheduler();
    char *argv[] = {bin, "submit", "--data", data, "--steps", "2", NULL};
    cr_expect_eq(run(argv, out, sizeof out), 1, "%s", out);
    cr_expect_not_null(strstr(out, data), "the message does not name the file: %s", out);
    cr_expect_not_null(strstr(out, "line 1"), "the message does not name the line: %s", out);
    cr_expect_not_null(strstr(out, "nothing was uploaded"), "%s", out);
    char *jobs[] = {bin, "jobs", "--all", NULL};
    cr_assert_eq(run(jobs, out, sizeof out), 0, "%s", out);
    cr_expect_not_null(strstr(out, "no jobs"), "a job was submitted: %s", out);
}

/* A worker whose cache disk is full kept a job `running 0/2` and asked for
 * the blob again every 20 s. A worker that cannot write the model to its
 * cache (here a file size limit: writes fail as on a full disk) fails the
 * attempt with retry, `qvac logs` says why, and another worker finishes
 * the job. */
Test(e2e, a_worker_that_cannot_cache_a_blob_hands_the_job_on)
{
    static char out[1 << 16];
    char model[128], data[128];
    make_inputs(model, data, sizeof model);
    start_scheduler();
    /* 400 blocks of 512 or 1024 bytes: less than the 743 KB model */
    start_worker_ex("full", "full", 400);
    wait_listed("full");
    /* the built-in model (743 KB) */
    char *sargv[] = {bin, "submit", "--data", data, "--steps", "2", "--batch", "2",
                     "--seq-len", "32", "--eval-batches", "1", "--backend", "ref",
                     "--json", NULL};
    long id = submit_argv(sargv);
    char sid[32];
    snprintf(sid, sizeof sid, "%ld", id);
    char *lg[] = {bin, "logs", sid, NULL};
    int told = 0;
    for (int i = 0; i < 200 && !told; i++) {
        cr_assert_eq(run(lg, out, sizeof out), 0, "%s", out);
        if (!(told = strstr(out, "another worker will take the job") != NULL))
            msleep(100);
    }
    cr_assert(told, "the failed attempt does not say why: %s", out);
    start_worker("w2");
    wait_state(id, "succeeded", 120);
    cr_assert_eq(run(lg, out, sizeof out), 0, "%s", out);
    cr_expect_not_null(strstr(out, "cache"), "%s", out);
}

/* `qvac logs` printed progress as raw JSON, and `--json` put that JSON in
 * a string: now a human line (step, loss, tokens/s, ETA), and with --json
 * one object a line whose progress is an object. */
Test(e2e, logs_print_progress_for_people_and_objects_for_programs)
{
    static char out[1 << 16];
    char model[128], data[128];
    make_inputs(model, data, sizeof model);
    start_scheduler();
    start_worker("w1");
    long id = submit(model, data, "6", "0", 1);
    char sid[32];
    snprintf(sid, sizeof sid, "%ld", id);
    char *lg[] = {bin, "logs", sid, NULL};
    cr_assert_eq(run(lg, out, sizeof out), 0, "%s", out);
    cr_expect_null(strstr(out, "{\"step\""), "raw JSON in `qvac logs`: %s", out);
    cr_expect_not_null(strstr(out, "training: step 6/6, loss "), "%s", out);
    cr_expect_not_null(strstr(out, "tokens/s"), "%s", out);
    char *lj[] = {bin, "logs", sid, "--json", NULL};
    cr_assert_eq(run(lj, out, sizeof out), 0, "%s", out);
    int lines = 0, progress = 0;
    for (char *p = out; *p;) {
        char *e = strchr(p, '\n');
        if (e)
            *e = '\0';
        if (*p) {
            json_t *j = json_loads(p, 0, NULL);
            cr_expect(json_is_object(j), "not a JSON object: %s", p);
            json_t *pr = json_object_get(j, "progress");
            if (pr) {
                cr_expect(json_is_object(pr), "progress is not an object: %s", p);
                cr_expect_null(json_object_get(j, "text"), "%s", p);
                progress++;
            }
            json_decref(j);
            lines++;
        }
        if (!e)
            break;
        p = e + 1;
    }
    cr_expect_geq(lines, 4);
    cr_expect_geq(progress, 1);
}

/* Whether s is valid UTF-8 (qv_utf8_seq over every sequence). */
static int valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int k = qv_utf8_seq((const unsigned char *)s + i, n - i);
        if (k <= 0)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

/* `generate` and `pretrain` ignored --json; `generate` wrote whatever
 * bytes it had to the terminal and could not stop on a string. */
Test(e2e, generate_and_pretrain_speak_json_and_utf8)
{
    static char out[1 << 16];
    char *g[] = {bin, "generate", "--prompt", "Once upon a time", "--tokens", "24",
                 "--temperature", "0", "--device", "ref", "--json", NULL};
    cr_assert_eq(run(g, out, sizeof out), 0, "%s", out);
    json_t *j = json_loads(strchr(out, '{'), JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert(json_is_object(j), "%s", out);
    cr_expect_eq(json_integer_value(json_object_get(j, "tokens")), 24);
    cr_expect_str_eq(str_of(j, "stopped"), "length");
    char text[512];
    snprintf(text, sizeof text, "%s", str_of(j, "text"));
    json_decref(j);
    cr_assert_geq(strlen(text), 8, "%s", out);
    /* stop on a piece of that same (greedy) continuation */
    char stop[4] = {text[5], text[6], text[7], 0};
    char *gs[] = {bin, "generate", "--prompt", "Once upon a time", "--tokens", "24",
                  "--temperature", "0", "--device", "ref", "--json", "--stop", stop, NULL};
    cr_assert_eq(run(gs, out, sizeof out), 0, "%s", out);
    j = json_loads(strchr(out, '{'), JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert(json_is_object(j), "%s", out);
    cr_expect_str_eq(str_of(j, "stopped"), "stop string", "%s", out);
    const char *cut = str_of(j, "text");
    cr_expect_null(strstr(cut, stop), "the stop string '%s' is in '%s'", stop, cut);
    cr_expect(!strncmp(cut, text, strlen(cut)) && strlen(cut) <= 5, "'%s' vs '%s'", cut, text);
    json_decref(j);
    /* bytes that are not UTF-8 (a Latin-1 prompt) reach the terminal as U+FFFD */
    char *gu[] = {bin, "generate", "--prompt", "caf\xe9 \xff", "--tokens", "4",
                  "--temperature", "0", "--device", "ref", NULL};
    cr_assert_eq(run(gu, out, sizeof out), 0, "%s", out);
    cr_expect(valid_utf8(out, strlen(out)), "invalid UTF-8 on the terminal");
    cr_expect_not_null(strstr(out, "caf\xef\xbf\xbd \xef\xbf\xbd"), "%s", out);

    char model[200];
    snprintf(model, sizeof model, "%s/pre.gguf", root);
    char *p[] = {bin, "pretrain", "--out", model, "--steps", "2", "--batch", "2",
                 "--seq-len", "16", "--dim", "32", "--layers", "1", "--heads", "2",
                 "--kv-heads", "1", "--ffn", "48", "--ctx", "32", "--device", "ref",
                 "--json", NULL};
    cr_assert_eq(run(p, out, sizeof out), 0, "%s", out);
    j = json_loads(strchr(out, '{'), JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert(json_is_object(j), "%s", out);
    cr_expect_eq(json_integer_value(json_object_get(j, "steps")), 2);
    cr_expect_str_eq(str_of(j, "model"), model);
    cr_expect(json_is_number(json_object_get(j, "train_loss_after")));
    json_decref(j);
}

/* SIGTERM during a large step was honoured only at the step's end (30 s):
 * `qvac finetune` stops at the next micro-batch and exits 130 (interrupted)
 * within 2 s. */
Test(e2e, sigterm_stops_finetune_within_2_s_with_exit_130)
{
    char outdir[200], log[200];
    snprintf(outdir, sizeof outdir, "%s/ft", root);
    snprintf(log, sizeof log, "%s/ft.log", root);
    char *argv[] = {bin, "finetune", "--device", "ref", "--steps", "1000", "--batch", "1",
                    "--seq-len", "64", "--accum", "64", "--eval-batches", "1",
                    "--no-tune", "--out", outdir, NULL};
    pid_t pid = start(argv, log);
    msleep(1500); /* inside the first step of 64 micro-batches */
    double t0 = now_s();
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 400 && waitpid(pid, &status, WNOHANG) == 0; i++)
        msleep(25);
    double dt = now_s() - t0;
    if (dt >= 10) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    cr_expect_lt(dt, 2.0, "finetune took %.2f s to stop", dt);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 130, "exit status %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* `finetune --device ref --batch 4096` grew to 14.4 GB of host memory, and
 * on opencl:0 `--batch 4096 --accum 4096` passed 4 GB in 30 s: a run that
 * does not fit is refused before its memory is spent, with the figure and
 * the limit. */
Test(e2e, a_run_that_does_not_fit_is_refused_before_it_starts)
{
    static char out[1 << 14];
    char *dev[] = {"ref", "opencl:0"};
    for (int i = 0; i < 2; i++) {
        char *a[] = {bin, "finetune", "--device", dev[i], "--batch", "4096", "--steps", "1",
                     "--no-tune", NULL};
        double t0 = now_s();
        int rc = run(a, out, sizeof out);
        if (i == 1 && strstr(out, "no device"))
            break; /* no OpenCL here */
        cr_expect_eq(rc, 1, "%s: %s", dev[i], out);
        cr_expect_lt(now_s() - t0, 20.0, "%s took %.1f s to refuse", dev[i], now_s() - t0);
        cr_expect_not_null(strstr(out, "MiB of memory"), "%s: %s", dev[i], out);
        char *b[] = {bin, "finetune", "--device", dev[i], "--batch", "4096", "--accum", "4096",
                     "--steps", "1", "--no-tune", NULL};
        t0 = now_s();
        rc = run(b, out, sizeof out);
        cr_expect_eq(rc, 1, "%s: %s", dev[i], out);
        cr_expect_lt(now_s() - t0, 20.0);
        cr_expect_not_null(strstr(out, "GiB of host memory"), "%s: %s", dev[i], out);
    }
}

/* Uploads survive a restart: kill -9 of the scheduler during a large
 * upload made the client exit after its timeout, and the upload started
 * over. The restarted scheduler resumes from the bytes it holds, and
 * `qvac submit` asks again and goes on from there. */
Test(e2e, an_upload_resumes_after_the_scheduler_restarts)
{
    static char out[1 << 14];
    char model[160], data[160], tmpm[128];
    make_inputs(tmpm, data, sizeof tmpm);
    snprintf(model, sizeof model, "%s/big.gguf", root);
    /* a GGUF with one 192 MiB tensor: large enough to kill the scheduler
     * in the middle of its upload */
    size_t n = 192u << 20;
    float *t = malloc(n);
    cr_assert_not_null(t);
    uint32_t x = 12345;
    for (size_t i = 0; i < n / 4; i++) {
        x = x * 1664525u + 1013904223u;
        t[i] = (float)(x >> 8) / 16777216.0f;
    }
    qv_gguf_writer *w = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK, "%s", e.msg);
    int64_t ne[1] = {(int64_t)(n / 4)};
    cr_assert_eq(qv_gguf_writer_set_str(w, "general.architecture", "qvac-bitnet", &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_str(w, "qvac.tokenizer", "bytes", &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_add_tensor(w, "big", 1, ne, QV_GGML_F32, t, n, &e), QV_OK,
                 "%s", e.msg);
    cr_assert_eq(qv_gguf_write_file(w, model, &e), QV_OK, "%s", e.msg);
    qv_gguf_writer_free(w);
    free(t);
    char hash[QV_SHA256_HEX];
    uint64_t size = 0;
    cr_assert_eq(qv_sha256_file(model, hash, &size, &e), QV_OK, "%s", e.msg);

    start_scheduler();
    pid_t sched = procs[n_procs - 1];
    char slog[200];
    snprintf(slog, sizeof slog, "%s/submit.log", root);
    char *argv[] = {bin, "submit", "--model", model, "--data", data, "--steps", "2",
                    "--timeout", "2", NULL};
    pid_t sub = start(argv, slog);
    char part[256];
    snprintf(part, sizeof part, "%s/sched/blobs/tmp/%s.part", root, hash);
    struct stat sb;
    int killed = 0;
    for (int i = 0; i < 20000 && !killed; i++) {
        if (stat(part, &sb) == 0 && (uint64_t)sb.st_size > size / 4) {
            kill(sched, SIGKILL);
            waitpid(sched, NULL, 0);
            for (int k = 0; k < n_procs; k++)
                if (procs[k] == sched)
                    procs[k] = 0;
            killed = 1;
        } else {
            msleep(1);
        }
    }
    cr_assert(killed, "the upload ended before the scheduler could be killed");
    msleep(500);
    start_scheduler();
    int status = 0;
    for (int i = 0; i < 1200 && waitpid(sub, &status, WNOHANG) == 0; i++)
        msleep(50);
    FILE *f = fopen(slog, "r");
    size_t got = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "qvac submit: %s", out);
    char logp[200];
    snprintf(logp, sizeof logp, "%s/scheduler.log", root);
    size_t ln = 0;
    uint8_t *lg = slurp(logp, &ln);
    cr_expect_not_null(strstr((char *)lg, "upload resumed at byte"), "the upload started over: %s",
                       (char *)lg);
    free(lg);
    char *jobs[] = {bin, "jobs", "--all", NULL};
    cr_assert_eq(run(jobs, out, sizeof out), 0, "%s", out);
    cr_expect_not_null(strstr(out, "queued"), "no job after the upload: %s", out);
}

/* One convention for the command line: an unknown option and an unknown
 * device are usage errors (exit 2) in every command, and --opt=value reads
 * as --opt value everywhere. */
Test(e2e, every_command_says_usage_errors_the_same_way)
{
    static char out[1 << 16];
    static const char *cmds[] = {"finetune", "compare", "generate", "eval", "pretrain",
                                 "check", "tune", "bench", "devices", "kernels",
                                 "submit", "jobs", "workers", "logs", "cancel", "fetch",
                                 "keys", "scheduler", "worker", "token", "clients",
                                 "report", "inspect", "export", "tokenize"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char *a[] = {bin, (char *)cmds[i], "--no-such-option", NULL};
        int rc = run(a, out, sizeof out);
        cr_expect_eq(rc, 2, "`qvac %s --no-such-option` exited %d: %s", cmds[i], rc, out);
        char want[256];
        snprintf(want, sizeof want, "qvac %s: unknown option '--no-such-option'\n"
                 "Try 'qvac %s --help'.\n", cmds[i], cmds[i]);
        cr_expect_str_eq(out, want);
        /* the help lists the command's options, and each is one of them */
        char *h[] = {bin, (char *)cmds[i], "--help", NULL};
        static char help[1 << 14];
        cr_assert_eq(run(h, help, sizeof help), 0, "%s", help);
        for (char *o = strstr(help, "--"); o; o = strstr(o + 2, "--")) {
            /* on the lines that define options (those that start with one)
             * and the usage line with its continuations */
            char *bol = o;
            while (bol > help && bol[-1] != '\n')
                bol--;
            while (*bol == ' ')
                bol++;
            if (*bol != '-' && *bol != '[' && strncmp(bol, "usage: ", 7))
                continue;
            char name[64];
            size_t n = 2;
            while (n < sizeof name - 1 && (islower((unsigned char)o[n]) || o[n] == '-'))
                n++;
            if (n < 4 || o[n - 1] == '-')
                continue;
            memcpy(name, o, n);
            name[n] = '\0';
            if (!strcmp(name, "--help"))
                continue;
            /* known: a flag stops at the unknown option after it, an option
             * with a value takes the first and stops at the second (or
             * refuses the value); either way it is not called unknown */
            char *k[] = {bin, (char *)cmds[i], name, "--zz-unknown", "--zz-unknown", NULL};
            rc = run(k, out, sizeof out);
            char unknown[96];
            snprintf(unknown, sizeof unknown, "unknown option '%s'", name);
            cr_expect_eq(rc, 2, "`qvac %s %s --zz-unknown --zz-unknown` exited %d: %s",
                         cmds[i], name, rc, out);
            cr_expect_null(strstr(out, unknown), "`qvac %s --help` lists %s: %s", cmds[i],
                           name, out);
        }
    }
    static const char *dev[] = {"finetune", "compare", "generate", "eval", "check",
                                "tune", "bench"};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) {
        char *a[] = {bin, (char *)dev[i], "--device", "gpu:99", "--prompt", "x", NULL};
        if (strcmp(dev[i], "generate"))
            a[4] = NULL; /* --prompt is generate's */
        int rc = run(a, out, sizeof out);
        cr_expect_eq(rc, 2, "`qvac %s --device gpu:99` exited %d: %s", dev[i], rc, out);
        cr_expect_not_null(strstr(out, "no device 'gpu:99'"), "%s: %s", dev[i], out);
    }
    char *eq[] = {bin, "finetune", "--steps=2", "--device=ref", "--eval-batches=1",
                  "--no-tune", "--json", NULL};
    cr_assert_eq(run(eq, out, sizeof out), 0, "%s", out);
    json_t *j = json_loads(strchr(out, '{'), JSON_DISABLE_EOF_CHECK, NULL);
    cr_expect(j && json_integer_value(json_object_get(j, "steps")) == 2, "%s", out);
    json_decref(j);
}

/* The short forms of the common options read as the long ones. */
Test(e2e, short_options_read_as_the_long_ones)
{
    static char out[1 << 14], out2[1 << 14];
    char *l[] = {bin, "generate", "--prompt", "Once upon", "--tokens", "6", "--seed", "3",
                 "--device", "ref", "--json", NULL};
    char *sh[] = {bin, "generate", "-p", "Once upon", "-n", "6", "-s", "3", "--device", "ref",
                  "--json", NULL};
    cr_assert_eq(run(l, out, sizeof out), 0, "%s", out);
    cr_assert_eq(run(sh, out2, sizeof out2), 0, "%s", out2);
    json_t *a = json_loads(strchr(out, '{'), JSON_DISABLE_EOF_CHECK, NULL);
    json_t *b = json_loads(strchr(out2, '{'), JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert(a && b, "%s / %s", out, out2);
    cr_expect_str_eq(str_of(a, "text"), str_of(b, "text"));
    cr_expect_eq(json_integer_value(json_object_get(b, "tokens")), 6);
    json_decref(a);
    json_decref(b);
}
