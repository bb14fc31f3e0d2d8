/* tests/test_store.c — the scheduler's durable state (scheduler/store.h):
 * schema migration (empty db, version-1 db, newer / foreign db refused),
 * submission, priority order and matching, unrunnable jobs, the job state
 * machine with attempts and leases (stale results ignored, expiry, retries
 * exhausted, lost workers, cancel in every state), checkpoints handed to
 * the next attempt, the event log, blobs (put/get/read, chunked uploads,
 * wrong hashes, path tricks), workers, clients and tokens, a locked
 * database, and kill -9 durability of acknowledged submissions. Each test
 * has its own temporary folder under /tmp, removed afterwards. */
#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "scheduler/store.h"

static char dir[64];
static qv_store *st;
static qv_err e;

#define T0 1700000000000LL
#define LEASE 10000
#define GB (1024ULL * 1024 * 1024)

static void mk_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/qvac_store_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    st = NULL;
    qv_err_clear(&e);
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void rm_tmp(void)
{
    qv_store_close(&st);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store, .init = mk_tmp, .fini = rm_tmp);

static qv_store *open_store(void)
{
    qv_store *s = NULL;
    cr_assert_eq(qv_store_open(dir, NULL, &s, &e), QV_OK, "%s", e.msg);
    return s;
}

static int64_t submit(qv_store *s, const char *name, int prio,
                      const char *backend, uint64_t mem, int64_t now)
{
    qv_job_spec sp = { .name = name, .priority = prio, .backend = backend,
                       .min_memory = mem };
    int64_t id = 0;
    cr_assert_eq(qv_store_submit(s, &sp, now, &id, &e), QV_OK, "%s", e.msg);
    cr_assert_gt(id, 0);
    return id;
}

static qv_job job(qv_store *s, int64_t id)
{
    qv_job j;
    cr_assert_eq(qv_store_job(s, id, &j, &e), QV_OK, "%s", e.msg);
    return j;
}

static qv_job_state job_state(qv_store *s, int64_t id)
{
    qv_job j = job(s, id);
    qv_job_state x = j.state;
    qv_job_clear(&j);
    return x;
}

static void worker(qv_store *s, const char *id, const char *dev,
                   const char *backend, uint64_t mem)
{
    char key[64];
    snprintf(key, sizeof key, "key-%s", id);
    cr_assert_eq(qv_store_worker_upsert(s, id, key, id, T0, &e), QV_OK, "%s",
                 e.msg);
    cr_assert_eq(qv_store_device_put(s, id, dev, backend, "dev", mem,
                                     "{\"tflops\": 1.5}", &e), QV_OK, "%s",
                 e.msg);
}

/* Runs one SQL query on the database file directly; returns the first
 * column of the first row as an integer (-1 if no row). */
static long long sql_int(const char *sql)
{
    char p[128];
    snprintf(p, sizeof p, "%s/scheduler.db", dir);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL),
                 SQLITE_OK);
    sqlite3_stmt *q = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK,
                 "%s: %s", sql, sqlite3_errmsg(db));
    long long v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0)
                                                : -1;
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static void sql_exec(const char *sql)
{
    char p[128];
    snprintf(p, sizeof p, "%s/scheduler.db", dir);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE |
                                 SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s: %s",
                 sql, sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* ---- schema ---------------------------------------------------------------- */

Test(store, migrates_an_empty_database_to_the_latest_schema)
{
    st = open_store();
    cr_assert_eq(qv_store_schema_version(st), QV_STORE_SCHEMA);
    cr_assert_eq(sql_int("PRAGMA user_version"), QV_STORE_SCHEMA);
    cr_assert_eq(sql_int("SELECT journal_mode = 'wal' FROM "
                         "pragma_journal_mode"), 1);
    cr_assert_eq(sql_int("PRAGMA application_id"), 0x71766173);
    const char *tables[] = { "jobs", "attempts", "events", "workers",
                             "devices", "blobs", "clients", "tokens" };
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char q[128];
        snprintf(q, sizeof q, "SELECT count(*) FROM sqlite_master WHERE "
                 "type = 'table' AND name = '%s'", tables[i]);
        cr_assert_eq(sql_int(q), 1, "table %s missing", tables[i]);
    }
    cr_assert_eq(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
                         "'jobs_dispatch'"), 1);
    cr_assert_eq(qv_store_check(st, &e), QV_OK, "%s", e.msg);
    struct stat sb;
    char p[128];
    snprintf(p, sizeof p, "%s/blobs", dir);
    cr_assert_eq(stat(p, &sb), 0);
    cr_assert(S_ISDIR(sb.st_mode));
}

Test(store, migrates_a_version_1_database_keeping_its_rows)
{
    qv_store_opts o = { .schema_limit = 1 };
    cr_assert_eq(qv_store_open(dir, &o, &st, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_store_schema_version(st), 1);
    int64_t id = submit(st, "old", 2, NULL, 0, T0);
    qv_store_close(&st);
    cr_assert_eq(sql_int("PRAGMA user_version"), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
                         "'jobs_dispatch'"), 0);

    st = open_store();
    cr_assert_eq(qv_store_schema_version(st), QV_STORE_SCHEMA);
    cr_assert_eq(sql_int("PRAGMA user_version"), QV_STORE_SCHEMA);
    cr_assert_eq(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
                         "'jobs_dispatch'"), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
                         "'bench_results'"), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
                         "'attempts_open'"), 1);
    qv_job j = job(st, id);
    cr_assert_str_eq(j.name, "old");
    cr_assert_eq(j.priority, 2);
    cr_assert_eq(j.state, QV_JOB_QUEUED);
    qv_job_clear(&j);
    /* Reopening an up-to-date database changes nothing. */
    qv_store_close(&st);
    st = open_store();
    cr_assert_eq(qv_store_schema_version(st), QV_STORE_SCHEMA);
}

Test(store, migrates_a_version_2_database_to_bench_results)
{
    qv_store_opts o = { .schema_limit = 2 };
    cr_assert_eq(qv_store_open(dir, &o, &st, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_store_worker_upsert(st, "w1", "PUB1", "laptop", T0, &e), QV_OK,
                 "%s", e.msg);
    qv_store_close(&st);
    cr_assert_eq(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
                         "'bench_results'"), 0);
    st = open_store();
    cr_assert_eq(qv_store_schema_version(st), QV_STORE_SCHEMA);
    /* the worker enrolled before the migration can store its results */
    cr_assert_eq(qv_store_bench_put(st, "w1", "opencl:0", "builtin", "0.1.0",
                                    "0123456789abcdef", "{\"device\":\"opencl:0\"}",
                                    T0 + 5, &e), QV_OK, "%s", e.msg);
    qv_bench_row *rows = NULL;
    size_t n = 0;
    cr_assert_eq(qv_store_bench_list(st, NULL, &rows, &n, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(rows[0].worker_name, "laptop");
    qv_bench_rows_free(&rows, n);
}

Test(store, bench_results_one_per_device_model_and_version)
{
    st = open_store();
    cr_assert_eq(qv_store_worker_upsert(st, "w1", "PUB1", "b-laptop", T0, &e), QV_OK);
    cr_assert_eq(qv_store_worker_upsert(st, "w2", "PUB2", "a-desk", T0, &e), QV_OK);
    const char *fp = "0123456789abcdef";
    cr_assert_eq(qv_store_bench_put(st, "w1", "opencl:0", "builtin", "0.1.0", fp,
                                    "{\"v\":1}", T0 + 1, &e), QV_OK, "%s", e.msg);
    /* the same key again replaces it */
    cr_assert_eq(qv_store_bench_put(st, "w1", "opencl:0", "builtin", "0.1.0", fp,
                                    "{\"v\":2}", T0 + 2, &e), QV_OK, "%s", e.msg);
    /* another version, model or device is another row */
    cr_assert_eq(qv_store_bench_put(st, "w1", "opencl:0", "builtin", "0.2.0", fp,
                                    "{\"v\":3}", T0 + 3, &e), QV_OK);
    cr_assert_eq(qv_store_bench_put(st, "w1", "opencl:0", "700m", "0.1.0", fp,
                                    "{\"v\":4}", T0 + 4, &e), QV_OK);
    cr_assert_eq(qv_store_bench_put(st, "w2", "vulkan:0", "builtin", "0.1.0", fp,
                                    "{\"v\":5}", T0 + 5, &e), QV_OK);
    qv_bench_row *rows = NULL;
    size_t n = 0;
    cr_assert_eq(qv_store_bench_list(st, NULL, &rows, &n, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(n, 4);
    /* ordered by model, then worker name */
    cr_assert_str_eq(rows[0].model, "700m");
    cr_assert_str_eq(rows[1].worker_name, "a-desk");
    cr_assert_str_eq(rows[1].result, "{\"v\":5}");
    cr_assert_str_eq(rows[2].result, "{\"v\":2}");
    cr_assert_eq(rows[2].received_ms, T0 + 2);
    cr_assert_str_eq(rows[3].version, "0.2.0");
    qv_bench_rows_free(&rows, n);
    cr_assert_null(rows);
    cr_assert_eq(qv_store_bench_list(st, "builtin", &rows, &n, &e), QV_OK);
    cr_assert_eq(n, 3);
    qv_bench_rows_free(&rows, n);
    /* refusals: an unknown worker, a result that is not a JSON object */
    cr_assert_eq(qv_store_bench_put(st, "w9", "opencl:0", "builtin", "0.1.0", fp, "{}",
                                    T0, &e), QV_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(e.msg, "w9"), "%s", e.msg);
    cr_assert_eq(qv_store_bench_put(st, "w1", "opencl:0", "builtin", "0.1.0", fp, "[1]",
                                    T0, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_store_bench_put(st, "w1", "opencl:0", "builtin", "0.1.0", fp,
                                    "{\"v\":", T0, &e), QV_ERR_INVALID);
}

Test(store, refuses_a_newer_or_foreign_database)
{
    st = open_store();
    qv_store_close(&st);
    sql_exec("PRAGMA user_version = 99");
    cr_assert_eq(qv_store_open(dir, NULL, &st, &e), QV_ERR_CORRUPT);
    cr_assert_null(st);
    cr_assert_not_null(strstr(e.msg, "newer qvac"), "%s", e.msg);

    char p[128];
    snprintf(p, sizeof p, "%s/scheduler.db", dir);
    unlink(p);
    sql_exec("CREATE TABLE other (x)");
    cr_assert_eq(qv_store_open(dir, NULL, &st, &e), QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, "another program"), "%s", e.msg);
}

Test(store, a_locked_database_is_an_error_that_says_so)
{
    st = open_store();
    qv_store_close(&st);
    qv_store_opts o = { .busy_ms = 50 };
    cr_assert_eq(qv_store_open(dir, &o, &st, &e), QV_OK, "%s", e.msg);
    char p[128];
    snprintf(p, sizeof p, "%s/scheduler.db", dir);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                 SQLITE_OK);
    qv_job_spec sp = { .name = "x" };
    int64_t id = 77;
    cr_assert_eq(qv_store_submit(st, &sp, T0, &id, &e), QV_ERR_IO);
    cr_assert_eq(id, 0, "no id before COMMIT");
    cr_assert_not_null(strstr(e.msg, "locked"), "%s", e.msg);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    cr_assert_eq(qv_store_submit(st, &sp, T0, &id, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(id, 1);
}

/* ---- submit and matching --------------------------------------------------- */

Test(store, submit_validates_its_input)
{
    st = open_store();
    int64_t id = 5;
    qv_job_spec bad_json = { .options_json = "{\"lr\": " };
    cr_assert_eq(qv_store_submit(st, &bad_json, T0, &id, &e), QV_ERR_INVALID);
    cr_assert_eq(id, 0);
    qv_job_spec not_obj = { .options_json = "[1, 2]" };
    cr_assert_eq(qv_store_submit(st, &not_obj, T0, &id, &e), QV_ERR_INVALID);
    qv_job_spec missing = { .model_hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" };
    cr_assert_eq(qv_store_submit(st, &missing, T0, &id, &e), QV_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(e.msg, "upload it first"), "%s", e.msg);
    qv_job_spec badhash = { .data_hash = "../../etc/passwd" };
    cr_assert_eq(qv_store_submit(st, &badhash, T0, &id, &e), QV_ERR_INVALID);
    qv_job_spec badmax = { .max_attempts = -2 };
    cr_assert_eq(qv_store_submit(st, &badmax, T0, &id, &e), QV_ERR_INVALID);
    cr_assert_eq(sql_int("SELECT count(*) FROM jobs"), 0);

    char mh[QV_BLOB_HEX];
    cr_assert_eq(qv_store_blob_put(st, "model", 5, NULL, T0, mh, &e), QV_OK,
                 "%s", e.msg);
    qv_job_spec ok = { .name = "j", .options_json = "{\"steps\": 20}",
                       .model_hash = mh, .backend = "opencl",
                       .min_memory = 3 * GB };
    cr_assert_eq(qv_store_submit(st, &ok, T0 + 5, &id, &e), QV_OK, "%s", e.msg);
    qv_job j = job(st, id);
    cr_assert_str_eq(j.options_json, "{\"steps\": 20}");
    cr_assert_str_eq(j.model_hash, mh);
    cr_assert_str_eq(j.data_hash, "");
    cr_assert_str_eq(j.backend, "opencl");
    cr_assert_eq(j.min_memory, 3 * GB);
    cr_assert_eq(j.max_attempts, QV_STORE_MAX_ATTEMPTS);
    cr_assert_eq(j.attempts, 0);
    cr_assert_eq(j.created_ms, T0 + 5);
    cr_assert_eq(j.state, QV_JOB_QUEUED);
    qv_job_clear(&j);
    char q[128];
    snprintf(q, sizeof q, "SELECT refcount FROM blobs WHERE hash = '%s'", mh);
    cr_assert_eq(sql_int(q), 1);

    /* A batch is one transaction: one bad spec and none is stored. */
    qv_job_spec batch[3] = { { .name = "b0" }, { .name = "b1" },
                             { .name = "b2", .options_json = "nope" } };
    int64_t ids[3] = { -1, -1, -1 };
    cr_assert_eq(qv_store_submit_batch(st, batch, 3, T0, ids, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(ids[0] | ids[1] | ids[2], 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM jobs"), 1);
    batch[2].options_json = NULL;
    cr_assert_eq(qv_store_submit_batch(st, batch, 3, T0, ids, &e), QV_OK,
                 "%s", e.msg);
    cr_assert_eq(ids[1], ids[0] + 1);
    cr_assert_eq(ids[2], ids[0] + 2);
    cr_assert_eq(sql_int("SELECT count(*) FROM jobs"), 4);
}

Test(store, next_job_is_highest_priority_then_oldest)
{
    st = open_store();
    int64_t a = submit(st, "a", 0, NULL, 0, T0);
    int64_t b = submit(st, "b", 5, NULL, 0, T0 + 1);
    int64_t c = submit(st, "c", 5, NULL, 0, T0 + 2);
    int64_t d = submit(st, "d", -1, NULL, 0, T0 + 3);
    int64_t want[] = { b, c, a, d };
    for (int i = 0; i < 4; i++) {
        qv_assignment as;
        cr_assert_eq(qv_store_dispatch(st, "w", "dev", "opencl", GB, T0 + 10,
                                       LEASE, &as, &e), QV_OK, "%s", e.msg);
        cr_assert_eq(as.job, want[i], "pick %d: got %lld", i,
                     (long long)as.job);
        cr_assert_eq(as.attempt, 1);
        cr_assert_eq(as.lease_expiry_ms, T0 + 10 + LEASE);
    }
    qv_assignment none;
    cr_assert_eq(qv_store_dispatch(st, "w", "dev", "opencl", GB, T0 + 10,
                                   LEASE, &none, &e), QV_OK);
    cr_assert_eq(none.job, 0);
}

Test(store, matching_by_backend_and_memory)
{
    st = open_store();
    int64_t vk = submit(st, "vk", 0, "vulkan", 0, T0);
    int64_t big = submit(st, "big", 0, NULL, 8 * GB, T0 + 1);
    int64_t any = submit(st, "any", 0, NULL, GB, T0 + 2);
    int64_t id;
    /* An OpenCL device with 4 GB: not vk (backend), not big (memory). */
    cr_assert_eq(qv_store_next_job(st, "opencl", 4 * GB, &id, &e), QV_OK);
    cr_assert_eq(id, any);
    /* A Vulkan device with 512 MB: vk fits (no memory need), others don't. */
    cr_assert_eq(qv_store_next_job(st, "vulkan", GB / 2, &id, &e), QV_OK);
    cr_assert_eq(id, vk);
    /* An OpenCL device with 16 GB: big (older than any). */
    cr_assert_eq(qv_store_next_job(st, "opencl", 16 * GB, &id, &e), QV_OK);
    cr_assert_eq(id, big);
    cr_assert_eq(qv_store_next_job(st, "ref", GB / 2, &id, &e), QV_OK);
    cr_assert_eq(id, 0);
    cr_assert_eq(qv_store_next_job(st, "", GB, &id, &e), QV_ERR_INVALID);
}

Test(store, unrunnable_jobs_are_reported)
{
    st = open_store();
    int64_t vk = submit(st, "vk", 0, "vulkan", 0, T0);
    int64_t big = submit(st, "big", 0, "opencl", 64 * GB, T0);
    int64_t fine = submit(st, "fine", 0, "opencl", GB, T0);
    int64_t *ids = NULL;
    size_t n = 99;
    /* No worker at all: nothing can run. */
    cr_assert_eq(qv_store_unrunnable(st, &ids, &n, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(n, 3);
    free(ids);
    worker(st, "w1", "opencl:0", "opencl", 8 * GB);
    cr_assert_eq(qv_store_unrunnable(st, &ids, &n, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], vk);
    cr_assert_eq(ids[1], big);
    free(ids);
    qv_job *jobs = NULL;
    cr_assert_eq(qv_store_list_jobs(st, 0, &jobs, &n, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(n, 3);
    cr_assert_eq(jobs[0].id, vk);
    cr_assert_eq(jobs[0].runnable, 0);
    cr_assert_eq(jobs[1].runnable, 0);
    cr_assert_eq(jobs[2].id, fine);
    cr_assert_eq(jobs[2].runnable, 1);
    qv_jobs_free(&jobs, n);
    cr_assert_null(jobs);
    /* A lost worker's devices still count (it may come back). */
    int rq = -1;
    cr_assert_eq(qv_store_worker_lost(st, "w1", "silent", T0, &rq, &e), QV_OK);
    cr_assert_eq(rq, 0);
    cr_assert_eq(qv_store_unrunnable(st, &ids, &n, &e), QV_OK);
    cr_assert_eq(n, 2);
    free(ids);
    worker(st, "w2", "vulkan:0", "vulkan", 128 * GB);
    cr_assert_eq(qv_store_unrunnable(st, &ids, &n, &e), QV_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], big);
    free(ids);
}

/* ---- the state machine ----------------------------------------------------- */

static void blob(qv_store *s, const char *text, char h[QV_BLOB_HEX])
{
    cr_assert_eq(qv_store_blob_put(s, text, strlen(text), NULL, T0, h, &e),
                 QV_OK, "%s", e.msg);
}

Test(store, assign_heartbeat_progress_complete)
{
    st = open_store();
    int64_t id = submit(st, "j", 0, NULL, 0, T0);
    qv_assignment as;
    cr_assert_eq(qv_store_assign(st, id, "w1", "opencl:0", T0 + 100, LEASE,
                                 &as, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(as.job, id);
    cr_assert_eq(as.attempt, 1);
    cr_assert_str_eq(as.checkpoint_hash, "");
    qv_job j = job(st, id);
    cr_assert_eq(j.state, QV_JOB_ASSIGNED);
    cr_assert_str_eq(j.worker, "w1");
    cr_assert_str_eq(j.device, "opencl:0");
    cr_assert_eq(j.lease_expiry_ms, T0 + 100 + LEASE);
    qv_job_clear(&j);
    /* Assigning twice is refused. */
    cr_assert_eq(qv_store_assign(st, id, "w2", "d", T0, LEASE, &as, &e),
                 QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "not queued"), "%s", e.msg);

    qv_ack ack;
    cr_assert_eq(qv_store_renew(st, id, 1, T0 + 5000, LEASE, &ack, &e), QV_OK);
    cr_assert_eq(ack.verdict, QV_VERDICT_ACCEPTED);
    cr_assert_eq(ack.state, QV_JOB_ASSIGNED);
    j = job(st, id);
    cr_assert_eq(j.lease_expiry_ms, T0 + 5000 + LEASE);
    qv_job_clear(&j);
    cr_assert_eq(qv_store_running(st, id, 1, T0 + 6000, LEASE, &ack, &e), QV_OK);
    cr_assert_eq(ack.state, QV_JOB_RUNNING);
    cr_assert_eq(qv_store_progress(st, id, 1, "{\"step\": 3, \"loss\": 2.5}",
                                   T0 + 7000, LEASE, &ack, &e), QV_OK, "%s",
                 e.msg);
    cr_assert_eq(qv_store_progress(st, id, 1, "step 3", T0, LEASE, &ack, &e),
                 QV_ERR_INVALID);
    j = job(st, id);
    cr_assert_eq(j.state, QV_JOB_RUNNING);
    cr_assert_str_eq(j.progress_json, "{\"step\": 3, \"loss\": 2.5}");
    qv_job_clear(&j);

    char ad[QV_BLOB_HEX], me[QV_BLOB_HEX];
    blob(st, "adapter bytes", ad);
    blob(st, "{\"loss\": 1}", me);
    /* A result naming a blob not stored is refused and changes nothing. */
    cr_assert_eq(qv_store_complete(st, id, 1, "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                                   NULL, T0, &ack, &e), QV_ERR_NOT_FOUND);
    cr_assert_eq(job_state(st, id), QV_JOB_RUNNING);
    cr_assert_eq(qv_store_complete(st, id, 1, ad, me, T0 + 9000, &ack, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(ack.verdict, QV_VERDICT_ACCEPTED);
    cr_assert_eq(ack.state, QV_JOB_SUCCEEDED);
    j = job(st, id);
    cr_assert_eq(j.state, QV_JOB_SUCCEEDED);
    cr_assert_str_eq(j.adapter_hash, ad);
    cr_assert_str_eq(j.metrics_hash, me);
    cr_assert_eq(j.attempts, 1);
    cr_assert_str_eq(j.worker, "", "no open attempt after the end");
    qv_job_clear(&j);
    cr_assert_eq(sql_int("SELECT count(*) FROM attempts WHERE outcome = "
                         "'succeeded' AND ended = 1700000009000"), 1);
    /* Heartbeat after the end: stale. */
    cr_assert_eq(qv_store_renew(st, id, 1, T0 + 9500, LEASE, &ack, &e), QV_OK);
    cr_assert_eq(ack.verdict, QV_VERDICT_STALE);
    cr_assert_eq(qv_store_renew(st, 999, 1, T0, LEASE, &ack, &e),
                 QV_ERR_NOT_FOUND);
}

Test(store, stale_attempt_results_are_ignored)
{
    st = open_store();
    int64_t id = submit(st, "j", 0, NULL, 0, T0);
    qv_assignment a1, a2;
    cr_assert_eq(qv_store_assign(st, id, "w1", "d", T0, LEASE, &a1, &e), QV_OK);
    int rq = 0, fl = 0;
    cr_assert_eq(qv_store_expire_leases(st, T0 + LEASE + 1, &rq, &fl, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(rq, 1);
    cr_assert_eq(fl, 0);
    cr_assert_eq(qv_store_assign(st, id, "w2", "d", T0 + LEASE + 2, LEASE, &a2,
                                 &e), QV_OK, "%s", e.msg);
    cr_assert_eq(a2.attempt, 2);

    char ad[QV_BLOB_HEX], ad2[QV_BLOB_HEX];
    blob(st, "old result", ad);
    blob(st, "new result", ad2);
    qv_ack ack;
    /* The first worker comes back with a result: ignored, and says so. */
    cr_assert_eq(qv_store_complete(st, id, 1, ad, NULL, T0 + 20000, &ack, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(ack.verdict, QV_VERDICT_STALE);
    cr_assert_eq(ack.current_attempt, 2);
    cr_assert_not_null(strstr(ack.note, "stale"), "%s", ack.note);
    cr_assert_eq(job_state(st, id), QV_JOB_ASSIGNED);
    cr_assert_eq(qv_store_fail(st, id, 1, "oom", T0 + 20001, &ack, &e), QV_OK);
    cr_assert_eq(ack.verdict, QV_VERDICT_STALE);
    cr_assert_eq(job_state(st, id), QV_JOB_ASSIGNED);
    cr_assert_eq(qv_store_set_checkpoint(st, id, 1, ad, T0, &ack, &e), QV_OK);
    cr_assert_eq(ack.verdict, QV_VERDICT_STALE);
    qv_job j = job(st, id);
    cr_assert_str_eq(j.checkpoint_hash, "");
    cr_assert_str_eq(j.worker, "w2");
    qv_job_clear(&j);

    cr_assert_eq(qv_store_complete(st, id, 2, ad2, NULL, T0 + 21000, &ack, &e),
                 QV_OK);
    cr_assert_eq(ack.verdict, QV_VERDICT_ACCEPTED);
    /* The same result again (a retransmit) does not count twice. */
    cr_assert_eq(qv_store_complete(st, id, 2, ad, NULL, T0 + 22000, &ack, &e),
                 QV_OK);
    cr_assert_eq(ack.verdict, QV_VERDICT_STALE);
    j = job(st, id);
    cr_assert_eq(j.state, QV_JOB_SUCCEEDED);
    cr_assert_str_eq(j.adapter_hash, ad2);
    qv_job_clear(&j);
    cr_assert_eq(sql_int("SELECT count(*) FROM attempts WHERE outcome = "
                         "'succeeded'"), 1);
    char q[128];
    snprintf(q, sizeof q, "SELECT refcount FROM blobs WHERE hash = '%s'", ad);
    cr_assert_eq(sql_int(q), 0);
}

Test(store, lease_expiry_requeues_then_fails_with_reasons)
{
    st = open_store();
    qv_job_spec sp = { .name = "flaky", .max_attempts = 2 };
    int64_t id, other;
    cr_assert_eq(qv_store_submit(st, &sp, T0, &id, &e), QV_OK);
    other = submit(st, "healthy", 0, NULL, 0, T0);
    qv_assignment as, ao;
    cr_assert_eq(qv_store_assign(st, id, "w1", "d", T0, LEASE, &as, &e), QV_OK);
    cr_assert_eq(qv_store_assign(st, other, "w9", "d", T0, LEASE, &ao, &e),
                 QV_OK);
    qv_ack ack;
    /* The other job keeps heartbeating, so only the first expires. */
    cr_assert_eq(qv_store_renew(st, other, 1, T0 + 8000, LEASE, &ack, &e),
                 QV_OK);
    int rq = 0, fl = 0;
    /* Not yet. */
    cr_assert_eq(qv_store_expire_leases(st, T0 + LEASE - 1, &rq, &fl, &e),
                 QV_OK);
    cr_assert_eq(rq + fl, 0);
    cr_assert_eq(qv_store_expire_leases(st, T0 + LEASE + 1, &rq, &fl, &e),
                 QV_OK);
    cr_assert_eq(rq, 1);
    cr_assert_eq(fl, 0);
    qv_job j = job(st, id);
    cr_assert_eq(j.state, QV_JOB_QUEUED);
    cr_assert_eq(j.attempts, 1);
    cr_assert_not_null(strstr(j.reason, "attempt 1 of 2 expired"), "%s",
                       j.reason);
    qv_job_clear(&j);
    cr_assert_eq(job_state(st, other), QV_JOB_ASSIGNED);

    /* Second attempt fails with a reason: no attempts left. */
    cr_assert_eq(qv_store_assign(st, id, "w2", "d", T0 + 20000, LEASE, &as, &e),
                 QV_OK);
    cr_assert_eq(as.attempt, 2);
    cr_assert_eq(qv_store_fail(st, id, 2, "device lost: CL_OUT_OF_RESOURCES",
                               T0 + 21000, &ack, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(ack.verdict, QV_VERDICT_ACCEPTED);
    cr_assert_eq(ack.state, QV_JOB_FAILED);
    j = job(st, id);
    cr_assert_eq(j.state, QV_JOB_FAILED);
    cr_assert_not_null(strstr(j.reason, "attempt 2 of 2 failed: device lost: "
                              "CL_OUT_OF_RESOURCES"), "%s", j.reason);
    qv_job_clear(&j);
    cr_assert_eq(sql_int("SELECT count(*) FROM attempts WHERE job = 1 AND "
                         "number = 1 AND outcome = 'expired' AND reason LIKE "
                         "'lease expired%'"), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM attempts WHERE job = 1 AND "
                         "number = 2 AND outcome = 'failed' AND reason = "
                         "'device lost: CL_OUT_OF_RESOURCES'"), 1);
    qv_attempt_row *ar = NULL;
    size_t na = 0;
    cr_assert_eq(qv_store_attempts(st, id, &ar, &na, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(na, 2);
    cr_assert_eq(ar[0].number, 1);
    cr_assert_str_eq(ar[0].worker, "w1");
    cr_assert_str_eq(ar[0].outcome, "expired");
    cr_assert_eq(ar[0].ended_ms, T0 + LEASE + 1);
    cr_assert_str_eq(ar[1].worker, "w2");
    cr_assert_str_eq(ar[1].outcome, "failed");
    cr_assert_str_eq(ar[1].reason, "device lost: CL_OUT_OF_RESOURCES");
    qv_attempts_free(&ar);
    cr_assert_null(ar);
    /* A failed job is never handed out again. */
    int64_t next;
    cr_assert_eq(qv_store_next_job(st, "opencl", GB, &next, &e), QV_OK);
    cr_assert_eq(next, 0);

    /* Exhaustion by expiry alone: a one-attempt job fails at its expiry. */
    qv_job_spec one = { .name = "once", .max_attempts = 1 };
    int64_t id3;
    cr_assert_eq(qv_store_submit(st, &one, T0, &id3, &e), QV_OK);
    cr_assert_eq(qv_store_assign(st, id3, "w1", "d", T0 + 30000, LEASE, &as,
                                 &e), QV_OK);
    cr_assert_eq(qv_store_renew(st, other, 1, T0 + 40000, LEASE, &ack, &e),
                 QV_OK);
    cr_assert_eq(qv_store_expire_leases(st, T0 + 40001, &rq, &fl, &e), QV_OK);
    cr_assert_eq(rq, 0);
    cr_assert_eq(fl, 1);
    cr_assert_eq(job_state(st, id3), QV_JOB_FAILED);
}

Test(store, worker_lost_requeues_its_jobs)
{
    st = open_store();
    worker(st, "w1", "opencl:0", "opencl", GB);
    worker(st, "w2", "opencl:0", "opencl", GB);
    int64_t a = submit(st, "a", 0, NULL, 0, T0);
    int64_t b = submit(st, "b", 0, NULL, 0, T0);
    int64_t c = submit(st, "c", 0, NULL, 0, T0);
    qv_assignment as;
    cr_assert_eq(qv_store_assign(st, a, "w1", "opencl:0", T0, LEASE, &as, &e),
                 QV_OK);
    cr_assert_eq(qv_store_assign(st, b, "w1", "opencl:1", T0, LEASE, &as, &e),
                 QV_OK);
    cr_assert_eq(qv_store_assign(st, c, "w2", "opencl:0", T0, LEASE, &as, &e),
                 QV_OK);
    qv_ack ack;
    cr_assert_eq(qv_store_running(st, b, 1, T0 + 1, LEASE, &ack, &e), QV_OK);

    char silent[4][QV_STORE_ID_MAX];
    size_t n = 0;
    cr_assert_eq(qv_store_worker_seen(st, "w2", T0 + 9000, &e), QV_OK);
    cr_assert_eq(qv_store_silent_workers(st, T0 + 9000, 5000, silent, 4, &n,
                                         &e), QV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(silent[0], "w1");
    cr_assert_eq(qv_store_worker_seen(st, "nobody", T0, &e), QV_ERR_NOT_FOUND);

    qv_worker_row *rows = NULL;
    cr_assert_eq(qv_store_list_workers(st, &rows, &n, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(n, 2);
    cr_assert_eq(rows[0].running, 2);
    cr_assert_eq(rows[0].devices, 1);
    qv_workers_free(&rows);

    int rq = 0;
    cr_assert_eq(qv_store_worker_lost(st, "w1", "silent for 10 s", T0 + 9000,
                                      &rq, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(rq, 2);
    cr_assert_eq(job_state(st, a), QV_JOB_QUEUED);
    cr_assert_eq(job_state(st, b), QV_JOB_QUEUED);
    cr_assert_eq(job_state(st, c), QV_JOB_ASSIGNED);
    qv_job j = job(st, b);
    cr_assert_not_null(strstr(j.reason, "worker w1 lost (silent for 10 s)"),
                       "%s", j.reason);
    qv_job_clear(&j);
    cr_assert_eq(qv_store_list_workers(st, &rows, &n, &e), QV_OK);
    cr_assert_str_eq(rows[0].state, "lost");
    cr_assert_eq(rows[0].running, 0);
    cr_assert_str_eq(rows[1].state, "active");
    qv_workers_free(&rows);
    /* The lost worker reporting later is stale. */
    cr_assert_eq(qv_store_renew(st, a, 1, T0 + 9500, LEASE, &ack, &e), QV_OK);
    cr_assert_eq(ack.verdict, QV_VERDICT_STALE);
    /* It is back when it speaks again. */
    cr_assert_eq(qv_store_worker_seen(st, "w1", T0 + 10000, &e), QV_OK);
    cr_assert_eq(qv_store_list_workers(st, &rows, &n, &e), QV_OK);
    cr_assert_str_eq(rows[0].state, "active");
    qv_workers_free(&rows);
}

Test(store, cancel_in_each_state)
{
    st = open_store();
    int64_t q = submit(st, "queued", 0, NULL, 0, T0);
    int64_t as_ = submit(st, "assigned", 0, NULL, 0, T0);
    int64_t ru = submit(st, "running", 0, NULL, 0, T0);
    int64_t done_ = submit(st, "done", 0, NULL, 0, T0);
    qv_assignment a;
    qv_ack ack;
    cr_assert_eq(qv_store_assign(st, as_, "w1", "d0", T0, LEASE, &a, &e), QV_OK);
    cr_assert_eq(qv_store_assign(st, ru, "w2", "d0", T0, LEASE, &a, &e), QV_OK);
    cr_assert_eq(qv_store_running(st, ru, 1, T0, LEASE, &ack, &e), QV_OK);
    cr_assert_eq(qv_store_assign(st, done_, "w1", "d1", T0, LEASE, &a, &e),
                 QV_OK);
    char ad[QV_BLOB_HEX];
    blob(st, "adapter", ad);
    cr_assert_eq(qv_store_complete(st, done_, 1, ad, NULL, T0, &ack, &e), QV_OK);

    qv_cancel_result res;
    char w[QV_STORE_ID_MAX];
    cr_assert_eq(qv_store_cancel(st, q, T0 + 1, &res, w, &e), QV_OK, "%s",
                 e.msg);
    cr_assert_eq(res, QV_CANCEL_DONE);
    cr_assert_eq(job_state(st, q), QV_JOB_CANCELLED);

    cr_assert_eq(qv_store_cancel(st, ru, T0 + 1, &res, w, &e), QV_OK);
    cr_assert_eq(res, QV_CANCEL_REQUESTED);
    cr_assert_str_eq(w, "w2");
    cr_assert_eq(job_state(st, ru), QV_JOB_RUNNING);
    /* The worker is told at its next heartbeat, and stops. */
    cr_assert_eq(qv_store_renew(st, ru, 1, T0 + 2, LEASE, &ack, &e), QV_OK);
    cr_assert_eq(ack.verdict, QV_VERDICT_CANCEL);
    cr_assert_eq(qv_store_fail(st, ru, 1, "cancelled", T0 + 3, &ack, &e), QV_OK);
    cr_assert_eq(ack.state, QV_JOB_CANCELLED);
    cr_assert_eq(job_state(st, ru), QV_JOB_CANCELLED);

    /* An assigned job whose worker vanishes: cancelled at lease expiry, not
     * requeued. */
    cr_assert_eq(qv_store_cancel(st, as_, T0 + 1, &res, w, &e), QV_OK);
    cr_assert_eq(res, QV_CANCEL_REQUESTED);
    cr_assert_str_eq(w, "w1");
    int rq = 0, fl = 0;
    cr_assert_eq(qv_store_expire_leases(st, T0 + LEASE + 1, &rq, &fl, &e),
                 QV_OK);
    cr_assert_eq(rq, 0);
    cr_assert_eq(job_state(st, as_), QV_JOB_CANCELLED);

    /* Ended jobs cannot be cancelled; unknown ones are not found. */
    cr_assert_eq(qv_store_cancel(st, done_, T0, &res, w, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "already succeeded"), "%s", e.msg);
    cr_assert_eq(qv_store_cancel(st, q, T0, &res, w, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_store_cancel(st, 12345, T0, &res, w, &e), QV_ERR_NOT_FOUND);
    cr_assert_eq(job_state(st, done_), QV_JOB_SUCCEEDED);

    size_t n;
    qv_job *jobs;
    cr_assert_eq(qv_store_list_jobs(st, 0, &jobs, &n, &e), QV_OK);
    cr_assert_eq(n, 0);
    qv_jobs_free(&jobs, n);
    cr_assert_eq(qv_store_list_jobs(st, 1, &jobs, &n, &e), QV_OK);
    cr_assert_eq(n, 4);
    qv_jobs_free(&jobs, n);
}

Test(store, checkpoint_is_handed_to_the_next_attempt)
{
    st = open_store();
    int64_t id = submit(st, "ck", 0, NULL, 0, T0);
    qv_assignment a;
    qv_ack ack;
    cr_assert_eq(qv_store_assign(st, id, "w1", "d", T0, LEASE, &a, &e), QV_OK);
    char c1[QV_BLOB_HEX], c2[QV_BLOB_HEX];
    blob(st, "checkpoint at step 10", c1);
    blob(st, "checkpoint at step 20", c2);
    cr_assert_eq(qv_store_set_checkpoint(st, id, 1, "not-a-hash", T0, &ack, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_store_set_checkpoint(st, id, 1,
                                         "0000000000000000000000000000000000000000000000000000000000000000",
                                         T0, &ack, &e), QV_ERR_NOT_FOUND);
    cr_assert_eq(qv_store_set_checkpoint(st, id, 1, c1, T0 + 1, &ack, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_eq(qv_store_set_checkpoint(st, id, 1, c2, T0 + 2, &ack, &e),
                 QV_OK);
    cr_assert_eq(ack.verdict, QV_VERDICT_ACCEPTED);
    cr_assert_eq(qv_store_fail(st, id, 1, "killed", T0 + 3, &ack, &e), QV_OK);
    cr_assert_eq(ack.state, QV_JOB_QUEUED);
    cr_assert_eq(qv_store_dispatch(st, "w2", "d", "vulkan", GB, T0 + 4, LEASE,
                                   &a, &e), QV_OK);
    cr_assert_eq(a.job, id);
    cr_assert_eq(a.attempt, 2);
    cr_assert_str_eq(a.checkpoint_hash, c2);
    char q[160];
    snprintf(q, sizeof q, "SELECT refcount FROM blobs WHERE hash = '%s'", c1);
    cr_assert_eq(sql_int(q), 0);
    snprintf(q, sizeof q, "SELECT refcount FROM blobs WHERE hash = '%s'", c2);
    cr_assert_eq(sql_int(q), 1);
}

Test(store, events_are_logged_in_order)
{
    st = open_store();
    int64_t id = submit(st, "ev", 0, NULL, 0, T0);
    int64_t other = submit(st, "other", 0, NULL, 0, T0);
    qv_assignment a;
    qv_ack ack;
    cr_assert_eq(qv_store_assign(st, id, "w1", "d", T0 + 1, LEASE, &a, &e),
                 QV_OK);
    cr_assert_eq(qv_store_progress(st, id, 1, "{\"step\": 1}", T0 + 2, LEASE,
                                   &ack, &e), QV_OK);
    cr_assert_eq(qv_store_fail(st, id, 1, "boom", T0 + 3, &ack, &e), QV_OK);
    cr_assert_eq(qv_store_assign(st, id, "w2", "d", T0 + 4, LEASE, &a, &e),
                 QV_OK);
    qv_cancel_result res;
    cr_assert_eq(qv_store_cancel(st, other, T0 + 5, &res, NULL, &e), QV_OK);
    cr_assert_eq(qv_store_cancel(st, id, T0 + 6, &res, NULL, &e), QV_OK);

    qv_event *ev = NULL;
    size_t n = 0;
    cr_assert_eq(qv_store_events(st, id, 0, 0, &ev, &n, &e), QV_OK, "%s",
                 e.msg);
    const char *kinds[] = { "submitted", "assigned", "running", "progress",
                            "retry", "assigned", "cancel-requested" };
    cr_assert_eq(n, 7);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(ev[i].kind, kinds[i], "event %zu", i);
        cr_assert_eq(ev[i].job, id);
        if (i)
            cr_assert_gt(ev[i].id, ev[i - 1].id);
    }
    cr_assert_eq(ev[0].time_ms, T0);
    cr_assert_not_null(strstr(ev[4].text, "boom"), "%s", ev[4].text);
    cr_assert_not_null(strstr(ev[5].text, "attempt 2 of 3"), "%s", ev[5].text);
    /* Follow: only events after a given id, at most max. */
    int64_t mark = ev[3].id;
    qv_events_free(&ev);
    cr_assert_eq(qv_store_events(st, id, mark, 2, &ev, &n, &e), QV_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(ev[0].kind, "retry");
    cr_assert_str_eq(ev[1].kind, "assigned");
    qv_events_free(&ev);
    cr_assert_null(ev);
}

/* ---- blobs ----------------------------------------------------------------- */

Test(store, blob_put_get_read)
{
    st = open_store();
    const char data[] = "the quick brown fox jumps over the lazy dog";
    char h[QV_BLOB_HEX], h2[QV_BLOB_HEX];
    qv_blob_hash(data, sizeof data - 1, h);
    cr_assert(qv_blob_hash_valid(h));
    /* Known answers: SHA-256 of "" and of "abc" (FIPS 180-2). */
    qv_blob_hash("", 0, h2);
    cr_assert_str_eq(h2, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    qv_blob_hash("abc", 3, h2);
    cr_assert_str_eq(h2, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    char out[QV_BLOB_HEX];
    cr_assert_eq(qv_store_blob_put(st, data, sizeof data - 1, h, T0, out, &e),
                 QV_OK, "%s", e.msg);
    cr_assert_str_eq(out, h);
    int has = 0;
    uint64_t size = 0;
    cr_assert_eq(qv_store_blob_has(st, h, &has, &size, &e), QV_OK);
    cr_assert_eq(has, 1);
    cr_assert_eq(size, sizeof data - 1);
    char path[256], want[256];
    cr_assert_eq(qv_store_blob_path(st, h, path, sizeof path, &e), QV_OK);
    snprintf(want, sizeof want, "%s/blobs/%.2s/%s", dir, h, h + 2);
    cr_assert_str_eq(path, want);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    char buf[128];
    size_t k = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cr_assert_eq(k, sizeof data - 1);
    cr_assert_eq(memcmp(buf, data, k), 0);
    size_t got = 0;
    cr_assert_eq(qv_store_blob_read(st, h, 4, buf, 5, &got, &e), QV_OK);
    cr_assert_eq(got, 5);
    cr_assert_eq(memcmp(buf, "quick", 5), 0);
    cr_assert_eq(qv_store_blob_read(st, h, 40, buf, 10, &got, &e), QV_OK);
    cr_assert_eq(got, 3);
    cr_assert_eq(memcmp(buf, "dog", 3), 0);
    /* Putting it again is a no-op. */
    cr_assert_eq(qv_store_blob_put(st, data, sizeof data - 1, NULL, T0, out,
                                   &e), QV_OK);
    cr_assert_eq(sql_int("SELECT count(*) FROM blobs"), 1);
    /* Wrong expected hash: refused, nothing stored. */
    cr_assert_eq(qv_store_blob_put(st, "other", 5, h, T0, out, &e),
                 QV_ERR_CORRUPT);
    cr_assert_eq(sql_int("SELECT count(*) FROM blobs"), 1);
    /* Unknown blob. */
    qv_blob_hash("never stored", 12, h2);
    cr_assert_eq(qv_store_blob_has(st, h2, &has, NULL, &e), QV_OK);
    cr_assert_eq(has, 0);
    cr_assert_eq(qv_store_blob_path(st, h2, path, sizeof path, &e),
                 QV_ERR_NOT_FOUND);
    cr_assert_eq(qv_store_blob_read(st, h2, 0, buf, 4, &got, &e),
                 QV_ERR_NOT_FOUND);
    /* Survives a reopen. */
    qv_store_close(&st);
    st = open_store();
    cr_assert_eq(qv_store_blob_has(st, h, &has, &size, &e), QV_OK);
    cr_assert_eq(has, 1);
}

static int count_files(const char *sub)
{
    char p[160];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    int n = 0;
    DIR *d = opendir(p);
    cr_assert_not_null(d, "%s", p);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

Test(store, chunked_upload_checks_the_hash)
{
    st = open_store();
    enum { N = 100000 };
    unsigned char *data = malloc(N);
    cr_assert_not_null(data);
    for (int i = 0; i < N; i++)
        data[i] = (unsigned char)(i * 131 + (i >> 7));
    char h[QV_BLOB_HEX];
    qv_blob_hash(data, N, h);

    qv_blob_upload *up = NULL;
    cr_assert_eq(qv_store_blob_begin(st, h, N, &up, &e), QV_OK, "%s", e.msg);
    uint64_t off = 0;
    while (off < N) {
        size_t c = N - off < 7000 ? N - off : 7000;
        cr_assert_eq(qv_blob_upload_append(up, off, data + off, c, &e), QV_OK,
                     "%s", e.msg);
        off += c;
    }
    cr_assert_eq(qv_blob_upload_received(up), N);
    /* Out of order or past the size: refused. */
    cr_assert_eq(qv_blob_upload_append(up, 5, data, 1, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_blob_upload_append(up, N, data, 1, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_store_blob_finish(st, &up, T0, &e), QV_OK, "%s", e.msg);
    cr_assert_null(up);
    unsigned char *back = malloc(N);
    size_t got = 0;
    cr_assert_eq(qv_store_blob_read(st, h, 0, back, N, &got, &e), QV_OK);
    cr_assert_eq(got, N);
    cr_assert_eq(memcmp(back, data, N), 0);
    cr_assert_eq(count_files("blobs/tmp"), 0);
    /* Uploading a stored blob again succeeds and leaves one copy. */
    cr_assert_eq(qv_store_blob_begin(st, h, N, &up, &e), QV_OK);
    cr_assert_eq(qv_blob_upload_append(up, 0, data, N, &e), QV_OK);
    cr_assert_eq(qv_store_blob_finish(st, &up, T0, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(count_files("blobs/tmp"), 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM blobs"), 1);

    /* One flipped byte: QV_ERR_CORRUPT, no file, no row. */
    data[5000] ^= 1;
    char h2[QV_BLOB_HEX];
    snprintf(h2, sizeof h2, "%s", h);
    h2[0] = h2[0] == 'a' ? 'b' : 'a'; /* a different expected hash */
    cr_assert_eq(qv_store_blob_begin(st, h2, N, &up, &e), QV_OK);
    cr_assert_eq(count_files("blobs/tmp"), 1);
    cr_assert_eq(qv_blob_upload_append(up, 0, data, N, &e), QV_OK);
    cr_assert_eq(qv_store_blob_finish(st, &up, T0, &e), QV_ERR_CORRUPT);
    cr_assert_null(up);
    cr_assert_not_null(strstr(e.msg, "hash to"), "%s", e.msg);
    cr_assert_eq(count_files("blobs/tmp"), 0);
    int has = 1;
    cr_assert_eq(qv_store_blob_has(st, h2, &has, NULL, &e), QV_OK);
    cr_assert_eq(has, 0);
    char p[256];
    snprintf(p, sizeof p, "%s/blobs/%.2s/%s", dir, h2, h2 + 2);
    cr_assert_neq(access(p, F_OK), 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM blobs"), 1);

    /* Short upload: corrupt too, and an aborted one leaves nothing. */
    cr_assert_eq(qv_store_blob_begin(st, h2, N, &up, &e), QV_OK);
    cr_assert_eq(qv_blob_upload_append(up, 0, data, 10, &e), QV_OK);
    cr_assert_eq(qv_store_blob_finish(st, &up, T0, &e), QV_ERR_CORRUPT);
    cr_assert_eq(qv_store_blob_begin(st, h2, N, &up, &e), QV_OK);
    qv_blob_upload_abort(&up);
    cr_assert_null(up);
    cr_assert_eq(count_files("blobs/tmp"), 0);
    free(data);
    free(back);
}

Test(store, bad_hash_strings_are_refused)
{
    st = open_store();
    const char *bad[] = {
        "", "abc", "../../../../etc/passwd", "0123456789ABCDEF0123456789abcdef",
        "0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdef0",
        "0123456789abcdef/123456789abcdef", "0123456789abcdef 123456789abcdef",
        "..23456789abcdef0123456789abcdef", "g123456789abcdef0123456789abcdef",
    };
    char buf[8], path[256];
    size_t got;
    int has;
    qv_blob_upload *up = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(qv_blob_hash_valid(bad[i]), 0, "%s", bad[i]);
        cr_assert_eq(qv_store_blob_has(st, bad[i], &has, NULL, &e),
                     QV_ERR_INVALID, "%s", bad[i]);
        cr_assert_eq(qv_store_blob_path(st, bad[i], path, sizeof path, &e),
                     QV_ERR_INVALID);
        cr_assert_eq(qv_store_blob_read(st, bad[i], 0, buf, 1, &got, &e),
                     QV_ERR_INVALID);
        cr_assert_eq(qv_store_blob_begin(st, bad[i], 1, &up, &e),
                     QV_ERR_INVALID);
        cr_assert_null(up);
        cr_assert_eq(qv_store_blob_put(st, "x", 1, bad[i], T0, NULL, &e),
                     QV_ERR_INVALID);
    }
    cr_assert_eq(qv_blob_hash_valid(NULL), 0);
    cr_assert_eq(qv_blob_hash_valid("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM blobs"), 0);
}

/* ---- keys and tokens ------------------------------------------------------- */

Test(store, clients_workers_and_tokens)
{
    st = open_store();
    qv_key_role role;
    cr_assert_eq(qv_store_key_role(st, "K-client", &role, &e), QV_OK);
    cr_assert_eq(role, QV_KEY_UNKNOWN);
    cr_assert_eq(qv_store_client_add(st, "K-client", "laptop", T0, &e), QV_OK);
    cr_assert_eq(qv_store_key_role(st, "K-client", &role, &e), QV_OK);
    cr_assert_eq(role, QV_KEY_CLIENT);

    char tok[QV_TOKEN_HEX], tok2[QV_TOKEN_HEX];
    cr_assert_eq(qv_store_token_new(st, T0, 60000, tok, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(strlen(tok), 32);
    cr_assert_eq(qv_store_token_new(st, T0, 1000, tok2, &e), QV_OK);
    cr_assert_str_neq(tok, tok2);
    cr_assert_eq(qv_store_token_use(st, "feedface", "K-w", T0, &e),
                 QV_ERR_NOT_FOUND);
    cr_assert_eq(qv_store_token_use(st, tok2, "K-w", T0 + 1000, &e),
                 QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "expired"), "%s", e.msg);
    cr_assert_eq(qv_store_token_use(st, tok, "K-w", T0 + 1000, &e), QV_OK,
                 "%s", e.msg);
    cr_assert_eq(qv_store_token_use(st, tok, "K-other", T0 + 1001, &e),
                 QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "already used"), "%s", e.msg);

    cr_assert_eq(qv_store_worker_upsert(st, "w1", "K-w", "box", T0, &e), QV_OK);
    cr_assert_eq(qv_store_key_role(st, "K-w", &role, &e), QV_OK);
    cr_assert_eq(role, QV_KEY_WORKER);
    /* Devices of an unknown worker are refused. */
    cr_assert_eq(qv_store_device_put(st, "ghost", "opencl:0", "opencl", "x",
                                     GB, NULL, &e), QV_ERR_NOT_FOUND);
    cr_assert_eq(qv_store_device_put(st, "w1", "opencl:0", "opencl", "x", GB,
                                     "not json", &e), QV_ERR_INVALID);
}

/* ---- kill -9 --------------------------------------------------------------- */

static void child_submit_loop(int fd)
{
    qv_store *s = NULL;
    qv_err ce = {0};
    if (qv_store_open(dir, NULL, &s, &ce) != QV_OK)
        _exit(3);
    for (int64_t i = 0;; i++) {
        char name[64];
        snprintf(name, sizeof name, "kill-%lld", (long long)i);
        qv_job_spec sp = { .name = name, .priority = (int)(i % 7) };
        int64_t id = 0;
        if (qv_store_submit(s, &sp, T0 + i, &id, &ce) != QV_OK)
            _exit(4);
        int64_t rec[2] = { i, id };
        if (write(fd, rec, sizeof rec) != (ssize_t)sizeof rec)
            _exit(5);
    }
}

Test(store, acknowledged_submissions_survive_kill_9)
{
    /* The database exists before the child starts, as on a restart. */
    st = open_store();
    int64_t before = submit(st, "before", 0, NULL, 0, T0);
    qv_store_close(&st);

    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        child_submit_loop(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    /* Read acknowledgements while the child runs; kill it after 200 ms (or,
     * on a disk so slow that fewer than 10 were acknowledged by then, as soon
     * as 10 were, within 5 s). */
    size_t cap = 1 << 12, n = 0, partial = 0;
    int64_t (*acks)[2] = malloc(cap * sizeof *acks);
    cr_assert_not_null(acks);
    int64_t t_start = qv_store_now_ms(), killed = 0;
    for (;;) {
        int64_t el = qv_store_now_ms() - t_start;
        if (!killed && ((el >= 200 && n >= 10) || el >= 5000)) {
            cr_assert_eq(kill(pid, SIGKILL), 0);
            killed = 1;
        }
        struct pollfd pf = { .fd = fds[0], .events = POLLIN };
        int pr = poll(&pf, 1, 20);
        if (pr < 0 && errno == EINTR)
            continue;
        cr_assert_geq(pr, 0);
        if (pr == 0)
            continue;
        if (n == cap) {
            cap *= 2;
            acks = realloc(acks, cap * sizeof *acks);
            cr_assert_not_null(acks);
        }
        ssize_t k = read(fds[0], (char *)acks[n] + partial,
                         sizeof acks[n] - partial);
        if (k < 0 && errno == EINTR)
            continue;
        cr_assert_geq(k, 0);
        if (k == 0)
            break; /* EOF: the child is gone; a partial record is no ack */
        partial += (size_t)k;
        if (partial == sizeof acks[n]) {
            n++;
            partial = 0;
        }
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "child exited on its own (status %d) before the kill", status);
    close(fds[0]);
    cr_assert_geq(n, 10, "only %zu submissions acknowledged in 5 s", n);
    cr_log_info("kill -9: %zu submissions acknowledged before the kill", n);

    st = open_store();
    cr_assert_eq(qv_store_check(st, &e), QV_OK, "%s", e.msg);
    qv_job *jobs = NULL;
    size_t nj = 0;
    cr_assert_eq(qv_store_list_jobs(st, 1, &jobs, &nj, &e), QV_OK, "%s",
                 e.msg);
    /* All acknowledged, plus at most one committed whose ack was lost. */
    cr_assert_geq(nj, n + 1);
    cr_assert_leq(nj, n + 2);
    cr_assert_eq(jobs[0].id, before);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(acks[i][0], (int64_t)i);
        qv_job j;
        cr_assert_eq(qv_store_job(st, acks[i][1], &j, &e), QV_OK,
                     "acknowledged job %lld lost: %s", (long long)acks[i][1],
                     e.msg);
        char name[64];
        snprintf(name, sizeof name, "kill-%lld", (long long)i);
        cr_assert_str_eq(j.name, name);
        cr_assert_eq(j.state, QV_JOB_QUEUED);
        qv_job_clear(&j);
        char q[128];
        snprintf(q, sizeof q, "SELECT count(*) FROM jobs WHERE name = '%s'",
                 name);
        cr_assert_eq(sql_int(q), 1, "%s present %lld times", name,
                     sql_int(q));
        /* Ids are distinct and increasing. */
        if (i)
            cr_assert_gt(acks[i][1], acks[i - 1][1]);
    }
    cr_assert_eq(sql_int("SELECT count(*) FROM (SELECT name FROM jobs GROUP "
                         "BY name HAVING count(*) > 1)"), 0);
    qv_jobs_free(&jobs, nj);
    free(acks);
    /* And the store still works. */
    int64_t after = submit(st, "after", 0, NULL, 0, T0);
    cr_assert_gt(after, before);
}

Test(store, shared_tunings_keep_the_fastest_configurations_of_a_key)
{
    st = open_store();
    const char *fp = "0123456789abcdef";
    int stored = 0;
    char cfg[32], js[128];
    /* six configurations of one key: the four fastest stay */
    for (int i = 0; i < 6; i++) {
        snprintf(cfg, sizeof cfg, "WG_X=%d", 1 << i);
        snprintf(js, sizeof js, "{\"config\":\"%s\",\"median_ns\":%d}", cfg, 600 - 100 * i);
        cr_assert_eq(qv_store_tuning_put(st, "w1", fp, "ternary_matmul", "aaaa", "M1:N1:K1:R0",
                                         cfg, 600 - 100 * i, js, T0, &stored, &e),
                     QV_OK, "%s", e.msg);
        cr_assert_eq(stored, 1);
    }
    /* the same configuration again: kept only when faster */
    cr_assert_eq(qv_store_tuning_put(st, "w2", fp, "ternary_matmul", "aaaa", "M1:N1:K1:R0",
                                     "WG_X=32", 900, "{\"slower\":1}", T0, &stored, &e), QV_OK);
    cr_assert_eq(stored, 0);
    cr_assert_eq(qv_store_tuning_put(st, "w2", fp, "ternary_matmul", "aaaa", "M1:N1:K1:R0",
                                     "WG_X=32", 50, "{\"faster\":1}", T0, &stored, &e), QV_OK);
    cr_assert_eq(stored, 1);
    /* another fingerprint is another list */
    cr_assert_eq(qv_store_tuning_put(st, "w3", "fedcba9876543210", "f16_matmul", "bbbb",
                                     "M1:N1:K1:R0", "WG_X=8", 10, "{}", T0, &stored, &e), QV_OK);
    char **rows = NULL;
    size_t n = 0;
    cr_assert_eq(qv_store_tunings_of(st, fp, &rows, &n, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(n, 4, "%zu kept", n);
    cr_assert_str_eq(rows[0], "{\"faster\":1}", "fastest first");
    cr_assert_not_null(strstr(rows[1], "WG_X=16"), "%s", rows[1]);
    cr_assert_not_null(strstr(rows[3], "WG_X=4\""), "%s", rows[3]);
    qv_strings_free(&rows, n);
    cr_assert_null(rows);
    /* refusals */
    cr_assert_eq(qv_store_tuning_put(st, "w1", fp, "k", "s", "b", "c", -1, "{}", T0, NULL, &e),
                 QV_ERR_INVALID);
    cr_assert_eq(qv_store_tuning_put(st, "w1", fp, "k", "s", "b", "c", 5, "[]", T0, NULL, &e),
                 QV_ERR_INVALID);
}

Test(store, failed_without_retry_is_not_retried)
{
    st = open_store();
    int64_t id = submit(st, "no-retry", 0, NULL, 0, T0);
    int64_t other = submit(st, "retry", 0, NULL, 0, T0);
    qv_assignment a;
    qv_ack ack;
    cr_assert_eq(qv_store_assign(st, id, "w1", "d", T0 + 1, LEASE, &a, &e), QV_OK);
    cr_assert_eq(qv_store_assign(st, other, "w1", "d2", T0 + 1, LEASE, &a, &e), QV_OK);
    /* attempt 1 of 3: retry false fails the job now */
    cr_assert_eq(qv_store_fail_ex(st, id, 1, "options refused", 0, T0 + 2, &ack, &e), QV_OK,
                 "%s", e.msg);
    cr_assert_eq(ack.verdict, QV_VERDICT_ACCEPTED);
    cr_assert_eq(ack.state, QV_JOB_FAILED);
    cr_assert_eq(job_state(st, id), QV_JOB_FAILED);
    /* retry true (the default): back in the queue */
    cr_assert_eq(qv_store_fail_ex(st, other, 1, "worker shutting down", 1, T0 + 2, &ack, &e),
                 QV_OK);
    cr_assert_eq(job_state(st, other), QV_JOB_QUEUED);
    qv_event *ev = NULL;
    size_t n = 0;
    cr_assert_eq(qv_store_events(st, id, 0, 0, &ev, &n, &e), QV_OK, "%s", e.msg);
    int said = 0;
    for (size_t i = 0; i < n; i++)
        said |= strstr(ev[i].text, "retrying cannot help") != NULL;
    cr_assert(said, "the log says why it was not retried");
    qv_events_free(&ev);
}
