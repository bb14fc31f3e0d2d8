/* scheduler/store.c — the scheduler's durable state (see store.h).
 *
 * One SQLite database (WAL, synchronous=FULL, foreign keys, busy timeout)
 * and a blob folder. Every statement is prepared once and kept in a small
 * cache; every change runs in one BEGIN IMMEDIATE transaction that is rolled
 * back on any error. The schema is a list of migrations applied in order on
 * open; PRAGMA user_version records how far a database has come.
 */
#include "scheduler/store.h"

#include "common/file.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#define QV_STORE_APP_ID 1903583603 /* 0x71766173, "qvas" */
#define STMT_CACHE 64

struct qv_store {
    sqlite3 *db;
    int busy_ms;
    int version;
    unsigned upload_seq;
    int group;      /* inside qv_store_group_begin: changes are savepoints */
    char dir[3072];
    char dbpath[3200];
    struct { const char *sql; sqlite3_stmt *st; } cache[STMT_CACHE];
};

struct qv_blob_upload {
    crypto_hash_sha256_state xs;
    int fd;
    uint64_t size, received;
    char hash[QV_BLOB_HEX];
    char tmp[3300];
};

/* ---- names --------------------------------------------------------------- */

static const char *const STATE_NAMES[] = {
    "queued", "assigned", "running", "succeeded", "failed", "cancelled"
};

const char *qv_job_state_name(qv_job_state s)
{
    if ((unsigned)s < sizeof STATE_NAMES / sizeof STATE_NAMES[0])
        return STATE_NAMES[s];
    return "unknown";
}

int qv_job_state_parse(const char *name, qv_job_state *out)
{
    for (unsigned i = 0; name && i < sizeof STATE_NAMES / sizeof STATE_NAMES[0];
         i++)
        if (strcmp(name, STATE_NAMES[i]) == 0) {
            if (out)
                *out = (qv_job_state)i;
            return 1;
        }
    return 0;
}

int64_t qv_store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- errors -------------------------------------------------------------- */

static qv_status db_fail(const qv_store *s, int rc, const char *what,
                         qv_err *err)
{
    const char *p = s->dbpath;
    const char *detail = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return qv_fail(err, QV_ERR_IO,
                       "scheduler store %s: database is locked by another "
                       "process (waited %d ms to %s); stop the other qvac "
                       "scheduler using this data folder or use --data DIR",
                       p, s->busy_ms, what);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return qv_fail(err, QV_ERR_CORRUPT,
                       "scheduler store %s: not a qvac scheduler database or "
                       "corrupt (%s) while trying to %s; move it away or use "
                       "--data DIR", p, detail, what);
    case SQLITE_READONLY:
        return qv_fail(err, QV_ERR_IO, "scheduler store %s: read-only, cannot "
                       "%s (%s); make it writable", p, what, detail);
    case SQLITE_FULL:
        return qv_fail(err, QV_ERR_IO, "scheduler store %s: disk full, cannot "
                       "%s (nothing was written); free some space", p, what);
    case SQLITE_NOMEM:
        return qv_fail(err, QV_ERR_NOMEM, "scheduler store %s: out of memory "
                       "trying to %s", p, what);
    case SQLITE_CANTOPEN:
        return qv_fail(err, QV_ERR_IO, "scheduler store %s: cannot open (%s); "
                       "check the folder's permissions or use --data DIR",
                       p, detail);
    case SQLITE_CONSTRAINT:
        return qv_fail(err, QV_ERR_INVALID, "scheduler store %s: cannot %s: %s",
                       p, what, detail);
    default:
        return qv_fail(err, QV_ERR_IO, "scheduler store %s: cannot %s: %s",
                       p, what, detail);
    }
}

/* ---- statements ------------------------------------------------------------ */

/* A cached prepared statement for sql (a string literal: cached by address),
 * reset and with no bindings. Release it with done(). */
static qv_status prep(qv_store *s, const char *sql, sqlite3_stmt **out,
                      qv_err *err)
{
    *out = NULL;
    int free_slot = -1;
    for (int i = 0; i < STMT_CACHE; i++) {
        if (s->cache[i].sql == sql) {
            *out = s->cache[i].st;
            return QV_OK;
        }
        if (!s->cache[i].sql && free_slot < 0)
            free_slot = i;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                &st, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return db_fail(s, rc, "prepare a query", err);
    }
    if (free_slot >= 0) {
        s->cache[free_slot].sql = sql;
        s->cache[free_slot].st = st;
    }
    /* A full cache cannot happen (fewer queries than slots); if it did, the
     * statement would leak, so make it impossible instead. */
    else {
        sqlite3_finalize(st);
        return qv_fail(err, QV_ERR_NOMEM, "scheduler store: statement cache "
                       "full (a qvac bug: raise STMT_CACHE)");
    }
    *out = st;
    return QV_OK;
}

static void done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v && v[0])
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* bind_text that keeps "" as "" (NOT NULL text columns). */
static void bind_str(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

static void col_copy(sqlite3_stmt *st, int i, char *dst, size_t n)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

/* Steps a change statement to completion and releases it. */
static qv_status run(qv_store *s, sqlite3_stmt *st, const char *what,
                     qv_err *err)
{
    int rc = sqlite3_step(st);
    qv_status r = rc == SQLITE_DONE ? QV_OK : db_fail(s, rc, what, err);
    done(st);
    return r;
}

/* The one integer a query returns (NULL reads as 0); ?1 (if the query has it)
 * is text when given, else num. */
static qv_status query_int(qv_store *s, const char *sql, const char *text, int64_t num,
                           int64_t *out, const char *what, qv_err *err)
{
    *out = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, sql, &st, err);
    if (r != QV_OK)
        return r;
    if (text)
        bind_str(st, 1, text);
    else
        sqlite3_bind_int64(st, 1, num);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        r = db_fail(s, rc, what, err);
    done(st);
    return r;
}

/* ---- transactions ---------------------------------------------------------- */

/* Outside a group every change is its own BEGIN IMMEDIATE ... COMMIT. Inside
 * a group (qv_store_group_begin) it is a savepoint of the group's transaction:
 * a failed change is undone alone, and the group's COMMIT makes all of them
 * durable with one fsync (group commit). */
static qv_status tx_begin(qv_store *s, const char *what, qv_err *err)
{
    /* SQLite rolled the whole group back (a full disk, an I/O error): no
     * change may commit on its own now; group_end reports the failure and
     * every reply held for the group is dropped */
    if (s->group && sqlite3_get_autocommit(s->db))
        return qv_fail(err, QV_ERR_IO, "scheduler store: %s: the group of changes "
                       "was rolled back (disk full or an I/O error)", what);
    int rc = sqlite3_exec(s->db, s->group ? "SAVEPOINT qv" : "BEGIN IMMEDIATE",
                          NULL, NULL, NULL);
    return rc == SQLITE_OK ? QV_OK : db_fail(s, rc, what, err);
}

static qv_status tx_end(qv_store *s, qv_status r, const char *what,
                        qv_err *err)
{
    if (s->group) {
        if (r != QV_OK)
            sqlite3_exec(s->db, "ROLLBACK TO qv", NULL, NULL, NULL);
        int rc = sqlite3_exec(s->db, "RELEASE qv", NULL, NULL, NULL);
        if (r == QV_OK && rc != SQLITE_OK)
            r = db_fail(s, rc, what, err);
        return r;
    }
    if (r == QV_OK) {
        int rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            r = db_fail(s, rc, what, err);
    }
    if (r != QV_OK && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

qv_status qv_store_group_begin(qv_store *s, qv_err *err)
{
    if (!s || s->group)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: a group is already open");
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(s, rc, "begin a group of changes", err);
    s->group = 1;
    return QV_OK;
}

qv_status qv_store_group_end(qv_store *s, qv_err *err)
{
    if (!s || !s->group)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no group is open");
    s->group = 0;
    int rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        return QV_OK;
    qv_status r = db_fail(s, rc, "commit a group of changes", err);
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* ---- schema ---------------------------------------------------------------- */

static const char V1_SQL[] =
    "CREATE TABLE jobs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL, priority INTEGER NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('queued','assigned','running',"
    "  'succeeded','failed','cancelled')),"
    " created INTEGER NOT NULL, updated INTEGER NOT NULL,"
    " options TEXT NOT NULL, progress TEXT,"
    " model_hash TEXT, data_hash TEXT,"
    " need_backend TEXT NOT NULL, need_memory INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),"
    " checkpoint_hash TEXT, adapter_hash TEXT, metrics_hash TEXT,"
    " reason TEXT NOT NULL DEFAULT '',"
    " cancel_requested INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE attempts ("
    " job INTEGER NOT NULL REFERENCES jobs(id), number INTEGER NOT NULL,"
    " worker TEXT NOT NULL, device TEXT NOT NULL,"
    " started INTEGER NOT NULL, lease_expiry INTEGER NOT NULL,"
    " ended INTEGER, outcome TEXT, reason TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (job, number));"
    "CREATE TABLE events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " job INTEGER NOT NULL REFERENCES jobs(id), time INTEGER NOT NULL,"
    " kind TEXT NOT NULL, text TEXT NOT NULL);"
    "CREATE INDEX events_job ON events (job, id);"
    "CREATE TABLE workers ("
    " id TEXT PRIMARY KEY, pubkey TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
    " enrolled INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('active','lost','revoked')));"
    "CREATE TABLE devices ("
    " worker TEXT NOT NULL REFERENCES workers(id), device TEXT NOT NULL,"
    " backend TEXT NOT NULL, name TEXT NOT NULL, memory INTEGER NOT NULL,"
    " tuned TEXT NOT NULL, PRIMARY KEY (worker, device));"
    "CREATE TABLE blobs ("
    " hash TEXT PRIMARY KEY, size INTEGER NOT NULL, path TEXT NOT NULL,"
    " refcount INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
    "CREATE TABLE clients ("
    " pubkey TEXT PRIMARY KEY, name TEXT NOT NULL, added INTEGER NOT NULL);"
    "CREATE TABLE tokens ("
    " token TEXT PRIMARY KEY, created INTEGER NOT NULL,"
    " expires INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0,"
    " used_by TEXT);";

/* Version 2: indexes for dispatch (queued jobs in priority order) and for
 * finding the open attempts of a worker and the expired leases. */
static const char V2_SQL[] =
    "CREATE INDEX jobs_dispatch ON jobs (state, priority DESC, created, id);"
    "CREATE INDEX attempts_open ON attempts (worker, lease_expiry)"
    " WHERE ended IS NULL;";

/* Version 3: the fleet's bench results (issue 13): the latest result of
 * each worker's device per model and qvac version, as the worker's JSON
 * (train/bench.h, validated before it is stored). */
static const char V3_SQL[] =
    "CREATE TABLE bench_results ("
    " worker TEXT NOT NULL REFERENCES workers(id), device TEXT NOT NULL,"
    " model TEXT NOT NULL, version TEXT NOT NULL, fingerprint TEXT NOT NULL,"
    " result TEXT NOT NULL, received INTEGER NOT NULL,"
    " PRIMARY KEY (worker, device, model, version));";

/* Version 4: the fleet's shared autotune results (issue 13): per device
 * fingerprint, kernel, source hash and shape bucket, up to QV_TUNINGS_KEEP
 * configurations (the fastest claimed); a worker verifies each on its own
 * device before it trusts one. */
static const char V4_SQL[] =
    "CREATE TABLE tunings ("
    " fingerprint TEXT NOT NULL, kernel TEXT NOT NULL, src_hash TEXT NOT NULL,"
    " bucket TEXT NOT NULL, config TEXT NOT NULL, median_ns REAL NOT NULL,"
    " entry TEXT NOT NULL, worker TEXT NOT NULL, received INTEGER NOT NULL,"
    " PRIMARY KEY (fingerprint, kernel, src_hash, bucket, config));";

static const struct { int version; const char *sql; } MIGRATIONS[] = {
    { 1, V1_SQL },
    { 2, V2_SQL },
    { 3, V3_SQL },
    { 4, V4_SQL },
};

static qv_status pragma_int(qv_store *s, const char *sql, int *v, qv_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *v = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? QV_OK : db_fail(s, rc, "read the schema", err);
}

static qv_status migrate(qv_store *s, int limit, qv_err *err)
{
    qv_status r = tx_begin(s, "migrate the schema", err);
    if (r != QV_OK)
        return r;
    int app = 0, ver = 0, tables = 0;
    r = pragma_int(s, "PRAGMA application_id", &app, err);
    if (r == QV_OK)
        r = pragma_int(s, "PRAGMA user_version", &ver, err);
    if (r == QV_OK)
        r = pragma_int(s, "SELECT count(*) FROM sqlite_master", &tables, err);
    if (r == QV_OK && ((app != 0 && app != QV_STORE_APP_ID) ||
                       (app == 0 && tables > 0)))
        r = qv_fail(err, QV_ERR_CORRUPT, "scheduler store %s: another "
                    "program's database, not a qvac scheduler's; move it "
                    "away or use --data DIR", s->dbpath);
    if (r == QV_OK && ver > QV_STORE_SCHEMA)
        r = qv_fail(err, QV_ERR_CORRUPT, "scheduler store %s: written by a "
                    "newer qvac (schema %d, this one knows %d); upgrade qvac "
                    "or use --data DIR", s->dbpath, ver, QV_STORE_SCHEMA);
    if (r == QV_OK && app == 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d", QV_STORE_APP_ID);
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            r = db_fail(s, rc, "create the schema", err);
    }
    for (size_t i = 0; r == QV_OK && i < sizeof MIGRATIONS / sizeof MIGRATIONS[0];
         i++) {
        int v = MIGRATIONS[i].version;
        if (v <= ver || v > limit)
            continue;
        int rc = sqlite3_exec(s->db, MIGRATIONS[i].sql, NULL, NULL, NULL);
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof what, "migrate the schema to version %d", v);
            r = db_fail(s, rc, what, err);
        }
        ver = v;
    }
    r = tx_end(s, r, "migrate the schema", err);
    if (r == QV_OK)
        r = pragma_int(s, "PRAGMA user_version", &s->version, err);
    return r;
}

/* ---- files ----------------------------------------------------------------- */

static qv_status mkdirs(const char *path, qv_err *err)
{
    char buf[3300];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        int last = (*p == '\0');
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        struct stat sb;
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return qv_fail(err, QV_ERR_IO, "scheduler store: cannot create "
                           "folder %s: %s; use --data DIR", buf,
                           strerror(errno));
        if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return qv_fail(err, QV_ERR_IO, "scheduler store: %s is not a "
                           "folder; use --data DIR", buf);
        if (last)
            return QV_OK;
        *p = '/';
    }
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* ---- open / close ---------------------------------------------------------- */

qv_status qv_store_open(const char *dir, const qv_store_opts *opts,
                        qv_store **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *out = NULL;
    if (!dir || !dir[0] || strlen(dir) >= 3000)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: empty or "
                       "overlong data folder path");
    int limit = opts && opts->schema_limit > 0 ? opts->schema_limit
                                               : QV_STORE_SCHEMA;
    if (limit > QV_STORE_SCHEMA)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: schema limit "
                       "%d is past the latest version %d", limit,
                       QV_STORE_SCHEMA);
    qv_store *s = calloc(1, sizeof *s);
    if (!s)
        return qv_fail(err, QV_ERR_NOMEM, "scheduler store %s: out of memory",
                       dir);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->dbpath, sizeof s->dbpath, "%s/scheduler.db", dir);
    s->busy_ms = opts && opts->busy_ms > 0 ? opts->busy_ms : 5000;

    char sub[3300];
    qv_status r = mkdirs(dir, err);
    if (r == QV_OK) {
        snprintf(sub, sizeof sub, "%s/blobs/tmp", dir);
        r = mkdirs(sub, err);
    }
    if (r == QV_OK) {
        /* partial uploads are the scheduler's to clean (it holds the lock:
         * qv_store_blob_tmp_clean); any other process that opens the store
         * (`qvac token`) must not touch an upload in progress */
        int rc = sqlite3_open_v2(s->dbpath, &s->db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                 NULL);
        if (rc != SQLITE_OK)
            r = db_fail(s, rc, "open", err);
    }
    if (r == QV_OK) {
        sqlite3_busy_timeout(s->db, s->busy_ms);
        int rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL,
                              NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(s->db, "PRAGMA synchronous=FULL", NULL, NULL,
                              NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(s->db, "PRAGMA foreign_keys=ON", NULL, NULL,
                              NULL);
        if (rc != SQLITE_OK)
            r = db_fail(s, rc, "configure the database", err);
    }
    if (r == QV_OK)
        r = migrate(s, limit, err);
    if (r != QV_OK) {
        qv_store_close(&s);
        return r;
    }
    *out = s;
    return QV_OK;
}

void qv_store_close(qv_store **store)
{
    if (!store || !*store)
        return;
    qv_store *s = *store;
    for (int i = 0; i < STMT_CACHE; i++)
        sqlite3_finalize(s->cache[i].st);
    sqlite3_close_v2(s->db);
    free(s);
    *store = NULL;
}

int qv_store_schema_version(const qv_store *store)
{
    return store ? store->version : 0;
}

qv_status qv_store_check(qv_store *s, qv_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st,
                                NULL);
    qv_status r = QV_OK;
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            if (!t || strcmp((const char *)t, "ok") != 0)
                r = qv_fail(err, QV_ERR_CORRUPT, "scheduler store %s: "
                            "integrity check failed: %s; restore a backup",
                            s->dbpath, t ? (const char *)t : "?");
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    if (r == QV_OK && rc != SQLITE_OK)
        r = db_fail(s, rc, "check integrity", err);
    return r;
}

/* Room for element n of a malloc'd array of capacity *cap, doubled when
 * full (listings read rows until SQLite says done): the array, moved or
 * not, or NULL (arr untouched, err set) when memory runs out. */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem, qv_err *err)
{
    if (n < *cap)
        return arr;
    size_t nc = *cap ? *cap * 2 : 16;
    void *na = realloc(arr, nc * elem);
    if (!na) {
        qv_fail(err, QV_ERR_NOMEM, "scheduler store: out of memory reading "
                "a listing");
        return NULL;
    }
    *cap = nc;
    return na;
}

/* ---- listings ---------------------------------------------------------------- */

/* Fills elem, one element of a listing, from the current row of st. */
typedef qv_status (*row_fill)(sqlite3_stmt *st, void *elem, qv_err *err);
/* Frees what fill allocated in elem (NULL: nothing). */
typedef void (*row_clear)(void *elem);

/* Steps st (prepared and bound) to its end, adding to the array *arr (of
 * *n elements of elem bytes, grown as needed) one element a row, filled by
 * fill; finalizes st. On failure the array is freed (each element cleared
 * first) and *arr, *n are NULL, 0. */
static qv_status collect(qv_store *s, sqlite3_stmt *st, void **arr, size_t *n,
                         size_t elem, row_fill fill, row_clear clear, const char *what,
                         qv_err *err)
{
    size_t cap = 0;
    qv_status r = QV_OK;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        void *grown = grow(*arr, &cap, *n, elem, err);
        if (!grown) {
            r = QV_ERR_NOMEM;
            break;
        }
        *arr = grown;
        if ((r = fill(st, (char *)grown + *n * elem, err)) != QV_OK)
            break;
        (*n)++;
    }
    if (r == QV_OK && rc != SQLITE_DONE)
        r = db_fail(s, rc, what, err);
    done(st);
    if (r != QV_OK) {
        for (size_t i = 0; clear && i < *n; i++)
            clear((char *)*arr + i * elem);
        free(*arr);
        *arr = NULL;
        *n = 0;
    }
    return r;
}

static qv_status fill_id64(sqlite3_stmt *st, void *elem, qv_err *err)
{
    (void)err;
    *(int64_t *)elem = sqlite3_column_int64(st, 0);
    return QV_OK;
}

static qv_status fill_id_text(sqlite3_stmt *st, void *elem, qv_err *err)
{
    (void)err;
    col_copy(st, 0, elem, QV_STORE_ID_MAX);
    return QV_OK;
}

static qv_status fill_string(sqlite3_stmt *st, void *elem, qv_err *err)
{
    const unsigned char *t = sqlite3_column_text(st, 0);
    if (!(*(char **)elem = strdup(t ? (const char *)t : "{}")))
        return qv_fail(err, QV_ERR_NOMEM, "scheduler store: out of memory");
    return QV_OK;
}

static void clear_string(void *elem) { free(*(char **)elem); }

/* ---- validation ------------------------------------------------------------ */

int qv_blob_hash_valid(const char *hex)
{
    if (!hex)
        return 0;
    for (int i = 0; i < QV_BLOB_HEX - 1; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') ||
              (hex[i] >= 'a' && hex[i] <= 'f')))
            return 0;
    return hex[QV_BLOB_HEX - 1] == '\0';
}

static void hash_hex(const unsigned char d[crypto_hash_sha256_BYTES],
                     char out[QV_BLOB_HEX])
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < crypto_hash_sha256_BYTES; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * crypto_hash_sha256_BYTES] = '\0';
}

void qv_blob_hash(const void *data, size_t n, char out[QV_BLOB_HEX])
{
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(d, n ? data : (const void *)"", n);
    hash_hex(d, out);
}

static qv_status check_hash(const char *hash, const char *what, qv_err *err)
{
    if (qv_blob_hash_valid(hash))
        return QV_OK;
    return qv_fail(err, QV_ERR_INVALID, "scheduler store: %s \"%.40s\" is not "
                   "a blob hash (32 lower-case hex digits)", what,
                   hash ? hash : "(null)");
}

static qv_status check_id(const char *v, const char *what, qv_err *err)
{
    if (!v || !v[0] || strlen(v) >= QV_STORE_ID_MAX)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: %s is empty or "
                       "longer than %d bytes", what, QV_STORE_ID_MAX - 1);
    return QV_OK;
}

static qv_status check_json_object(const char *text, const char *what,
                                   qv_err *err)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    int ok = j && json_is_object(j);
    json_decref(j);
    if (ok)
        return QV_OK;
    return qv_fail(err, QV_ERR_INVALID, "scheduler store: %s is not a JSON "
                   "object (%s)", what, j ? "another JSON value" : je.text);
}

/* ---- blobs: table ---------------------------------------------------------- */

static void blob_rel(const char *hash, char *rel, size_t n)
{
    snprintf(rel, n, "blobs/%.2s/%s", hash, hash + 2);
}

static qv_status blob_lookup(qv_store *s, const char *hash, int *has,
                             uint64_t *size, qv_err *err)
{
    static const char SQL[] = "SELECT size FROM blobs WHERE hash = ?";
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    bind_str(st, 1, hash);
    int rc = sqlite3_step(st);
    *has = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW && size)
        *size = (uint64_t)sqlite3_column_int64(st, 0);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = db_fail(s, rc, "look up a blob", err);
    done(st);
    return r;
}

/* The blob must be stored (a job referencing it would be unrunnable). */
static qv_status blob_need(qv_store *s, const char *hash, const char *what,
                           qv_err *err)
{
    qv_status r = check_hash(hash, what, err);
    int has = 0;
    if (r == QV_OK)
        r = blob_lookup(s, hash, &has, NULL, err);
    if (r == QV_OK && !has)
        r = qv_fail(err, QV_ERR_NOT_FOUND, "scheduler store: %s %s is not "
                    "stored; upload it first", what, hash);
    return r;
}

static qv_status blob_ref(qv_store *s, const char *hash, int delta,
                          qv_err *err)
{
    static const char SQL[] =
        "UPDATE blobs SET refcount = max(refcount + ?, 0) WHERE hash = ?";
    if (!hash || !hash[0])
        return QV_OK;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int(st, 1, delta);
    bind_str(st, 2, hash);
    return run(s, st, "count a blob reference", err);
}

qv_status qv_store_blob_has(qv_store *s, const char *hash, int *has,
                            uint64_t *size, qv_err *err)
{
    if (!s || !has)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store/output");
    *has = 0;
    qv_status r = check_hash(hash, "blob", err);
    return r == QV_OK ? blob_lookup(s, hash, has, size, err) : r;
}

qv_status qv_store_blob_path(qv_store *s, const char *hash, char *path,
                             size_t path_size, qv_err *err)
{
    int has = 0;
    qv_status r = qv_store_blob_has(s, hash, &has, NULL, err);
    if (r != QV_OK)
        return r;
    if (!has)
        return qv_fail(err, QV_ERR_NOT_FOUND, "scheduler store: blob %s is "
                       "not stored", hash);
    char rel[96];
    blob_rel(hash, rel, sizeof rel);
    if (!path || (size_t)snprintf(path, path_size, "%s/%s", s->dir, rel) >=
                     path_size)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: path buffer too "
                       "small for blob %s", hash);
    return QV_OK;
}

qv_status qv_store_blob_read(qv_store *s, const char *hash, uint64_t offset,
                             void *buf, size_t len, size_t *got, qv_err *err)
{
    char path[3400];
    if (!got || (!buf && len))
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no buffer");
    *got = 0;
    qv_status r = qv_store_blob_path(s, hash, path, sizeof path, err);
    if (r != QV_OK)
        return r;
    if (offset > (uint64_t)INT64_MAX)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: blob %s: offset "
                       "%llu out of range", hash, (unsigned long long)offset);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return qv_fail(err, QV_ERR_IO, "scheduler store: blob %s: cannot open "
                       "%s: %s", hash, path, strerror(errno));
    size_t total = 0;
    while (total < len) {
        ssize_t k = pread(fd, (char *)buf + total, len - total,
                          (off_t)(offset + total));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = qv_fail(err, QV_ERR_IO, "scheduler store: blob %s: cannot "
                        "read %s: %s", hash, path, strerror(errno));
            break;
        }
        if (k == 0)
            break;
        total += (size_t)k;
    }
    close(fd);
    *got = total;
    return r;
}

/* ---- blobs: uploads -------------------------------------------------------- */

void qv_blob_upload_detach(qv_blob_upload **up)
{
    if (!up || !*up)
        return;
    qv_blob_upload *u = *up;
    if (u->fd >= 0)
        close(u->fd);
    free(u);
    *up = NULL;
}

void qv_blob_upload_abort(qv_blob_upload **up)
{
    if (!up || !*up)
        return;
    qv_blob_upload *u = *up;
    if (u->fd >= 0)
        close(u->fd);
    if (u->tmp[0])
        unlink(u->tmp);
    free(u);
    *up = NULL;
}

qv_status qv_store_blob_begin(qv_store *s, const char *expected, uint64_t size,
                              qv_blob_upload **up, qv_err *err)
{
    if (!s || !up)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store/output");
    *up = NULL;
    qv_status r = check_hash(expected, "expected blob hash", err);
    if (r != QV_OK)
        return r;
    if (size > (uint64_t)INT64_MAX)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: blob %s: size "
                       "out of range", expected);
    qv_blob_upload *u = calloc(1, sizeof *u);
    if (!u)
        return qv_fail(err, QV_ERR_NOMEM, "scheduler store: out of memory");
    u->fd = -1;
    u->size = size;
    snprintf(u->hash, sizeof u->hash, "%s", expected);
    crypto_hash_sha256_init(&u->xs);
    /* one partial file per blob, named by its hash: an upload cut short
     * (the client reconnected, the scheduler restarted) resumes from the
     * bytes it holds, which are hashed again first */
    snprintf(u->tmp, sizeof u->tmp, "%s/blobs/tmp/%s.part", s->dir, expected);
    u->fd = open(u->tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (u->fd < 0) {
        r = qv_fail(err, QV_ERR_IO, "scheduler store: cannot create %s: %s; "
                    "check the data folder", u->tmp, strerror(errno));
        u->tmp[0] = '\0';
        qv_blob_upload_abort(&u);
        return r;
    }
    struct stat sb;
    uint64_t have = fstat(u->fd, &sb) == 0 && sb.st_size > 0 ? (uint64_t)sb.st_size : 0;
    if (have > size || (have && have == size)) /* not a prefix we can use */
        have = 0;
    unsigned char buf[65536];
    for (uint64_t got = 0; got < have;) {
        ssize_t k = pread(u->fd, buf, have - got < sizeof buf ? (size_t)(have - got) : sizeof buf,
                          (off_t)got);
        if (k <= 0) {
            have = got; /* keep what could be read */
            break;
        }
        crypto_hash_sha256_update(&u->xs, buf, (size_t)k);
        got += (uint64_t)k;
    }
    if (ftruncate(u->fd, (off_t)have) != 0 || lseek(u->fd, (off_t)have, SEEK_SET) < 0) {
        r = qv_fail(err, QV_ERR_IO, "scheduler store: cannot reuse %s: %s", u->tmp,
                    strerror(errno));
        qv_blob_upload_abort(&u);
        return r;
    }
    u->received = have;
    *up = u;
    return QV_OK;
}

qv_status qv_store_blob_space(qv_store *s, uint64_t *avail, qv_err *err)
{
    if (!s || !avail)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    char dir[3200];
    snprintf(dir, sizeof dir, "%s/blobs", s->dir);
    struct statvfs v;
    if (statvfs(dir, &v) != 0)
        return qv_fail(err, QV_ERR_IO, "scheduler store: cannot read the free space "
                       "of %s: %s", dir, strerror(errno));
    *avail = (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
    return QV_OK;
}

qv_status qv_store_blob_tmp_clean(qv_store *s, int64_t max_age_s,
                                  const char *const *keep, size_t nkeep,
                                  int *removed, qv_err *err)
{
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    if (removed)
        *removed = 0;
    char dir[3200];
    snprintf(dir, sizeof dir, "%s/blobs/tmp", s->dir);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? QV_OK
                               : qv_fail(err, QV_ERR_IO, "scheduler store: cannot "
                                         "list %s: %s", dir, strerror(errno));
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".part") != 0)
            continue;
        int held = 0;
        for (size_t i = 0; i < nkeep && !held; i++)
            held = keep[i] && !strncmp(de->d_name, keep[i], strlen(keep[i])) &&
                   de->d_name[strlen(keep[i])] == '.';
        if (held)
            continue;
        char path[3600];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (max_age_s > 0 && stat(path, &sb) == 0 && now - sb.st_mtime < max_age_s)
            continue;
        if (unlink(path) == 0 && removed)
            (*removed)++;
    }
    closedir(d);
    return QV_OK;
}

uint64_t qv_blob_upload_received(const qv_blob_upload *up)
{
    return up ? up->received : 0;
}

qv_status qv_blob_upload_append(qv_blob_upload *u, uint64_t offset,
                                const void *data, size_t n, qv_err *err)
{
    if (!u || (!data && n))
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no upload/data");
    if (offset != u->received)
        return qv_fail(err, QV_ERR_INVALID, "blob %s: chunk at offset %llu, "
                       "expected %llu (chunks must arrive in order)", u->hash,
                       (unsigned long long)offset,
                       (unsigned long long)u->received);
    if (n > u->size - u->received)
        return qv_fail(err, QV_ERR_INVALID, "blob %s: chunk of %zu bytes at "
                       "%llu runs past the announced size %llu", u->hash, n,
                       (unsigned long long)offset,
                       (unsigned long long)u->size);
    if (qv_write_all(u->fd, data, n))
        return qv_fail(err, QV_ERR_IO, "blob %s: cannot write %s: %s", u->hash, u->tmp,
                       strerror(errno));
    crypto_hash_sha256_update(&u->xs, data, n);
    u->received += n;
    return QV_OK;
}

static qv_status blob_record(qv_store *s, const char *hash, uint64_t size,
                             int64_t now_ms, qv_err *err)
{
    static const char SQL[] =
        "INSERT OR IGNORE INTO blobs (hash, size, path, refcount, created)"
        " VALUES (?, ?, ?, 0, ?)";
    char rel[96];
    blob_rel(hash, rel, sizeof rel);
    qv_status r = tx_begin(s, "record a blob", err);
    sqlite3_stmt *st;
    if (r == QV_OK)
        r = prep(s, SQL, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, hash);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
        bind_str(st, 3, rel);
        sqlite3_bind_int64(st, 4, now_ms);
        r = run(s, st, "record a blob", err);
    }
    return tx_end(s, r, "record a blob", err);
}

qv_status qv_store_blob_finish(qv_store *s, qv_blob_upload **up,
                               int64_t now_ms, qv_err *err)
{
    if (!s || !up || !*up)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no upload");
    qv_blob_upload *u = *up;
    qv_status r = QV_OK;
    char got[QV_BLOB_HEX];
    if (u->received != u->size)
        r = qv_fail(err, QV_ERR_CORRUPT, "blob %s: %llu of %llu bytes "
                    "arrived; upload it again", u->hash,
                    (unsigned long long)u->received,
                    (unsigned long long)u->size);
    if (r == QV_OK) {
        unsigned char d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&u->xs, d);
        hash_hex(d, got);
        if (strcmp(got, u->hash) != 0)
            r = qv_fail(err, QV_ERR_CORRUPT, "blob %s: the bytes that arrived "
                        "hash to %s; nothing stored, upload it again",
                        u->hash, got);
    }
    if (r == QV_OK && fsync(u->fd) != 0)
        r = qv_fail(err, QV_ERR_IO, "blob %s: cannot sync %s: %s", u->hash,
                    u->tmp, strerror(errno));
    if (r == QV_OK) {
        int rc = close(u->fd);
        u->fd = -1;
        if (rc != 0)
            r = qv_fail(err, QV_ERR_IO, "blob %s: cannot close %s: %s",
                        u->hash, u->tmp, strerror(errno));
    }
    char dir[3300], final[3400];
    snprintf(dir, sizeof dir, "%s/blobs/%.2s", s->dir, u->hash);
    snprintf(final, sizeof final, "%s/%s", dir, u->hash + 2);
    int have = 0;
    if (r == QV_OK)
        r = blob_lookup(s, u->hash, &have, NULL, err);
    if (r == QV_OK && have) {
        /* Already stored: the stored file is never replaced. */
        qv_blob_upload_abort(up);
        return QV_OK;
    }
    if (r == QV_OK)
        r = mkdirs(dir, err);
    if (r == QV_OK && rename(u->tmp, final) != 0)
        r = qv_fail(err, QV_ERR_IO, "blob %s: cannot move %s into place: %s",
                    u->hash, u->tmp, strerror(errno));
    if (r == QV_OK) {
        u->tmp[0] = '\0'; /* renamed: nothing left to delete */
        if (fsync_dir(dir) != 0)
            r = qv_fail(err, QV_ERR_IO, "blob %s: cannot sync folder %s: %s",
                        u->hash, dir, strerror(errno));
    }
    if (r == QV_OK)
        r = blob_record(s, u->hash, u->size, now_ms, err);
    qv_blob_upload_abort(up);
    return r;
}

qv_status qv_store_blob_put(qv_store *s, const void *data, size_t n,
                            const char *expected, int64_t now_ms,
                            char out[QV_BLOB_HEX], qv_err *err)
{
    if (!s || (!data && n))
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store/data");
    char h[QV_BLOB_HEX];
    qv_blob_hash(data, n, h);
    if (expected) {
        qv_status r = check_hash(expected, "expected blob hash", err);
        if (r != QV_OK)
            return r;
        if (strcmp(h, expected) != 0)
            return qv_fail(err, QV_ERR_CORRUPT, "blob %s: the bytes hash to "
                           "%s; nothing stored", expected, h);
    }
    if (out)
        snprintf(out, QV_BLOB_HEX, "%s", h);
    int has = 0;
    qv_status r = blob_lookup(s, h, &has, NULL, err);
    if (r != QV_OK || has)
        return r; /* already stored: never replaced */
    qv_blob_upload *u = NULL;
    r = qv_store_blob_begin(s, h, n, &u, err);
    if (r == QV_OK && qv_blob_upload_received(u) > 0) {
        /* a partial upload of the same blob: this one has all the bytes */
        qv_blob_upload_abort(&u);
        r = qv_store_blob_begin(s, h, n, &u, err);
    }
    if (r == QV_OK)
        r = qv_blob_upload_append(u, 0, data, n, err);
    if (r == QV_OK)
        return qv_store_blob_finish(s, &u, now_ms, err);
    qv_blob_upload_abort(&u);
    return r;
}

/* ---- events ---------------------------------------------------------------- */

static qv_status add_event(qv_store *s, int64_t job, int64_t now_ms,
                           const char *kind, qv_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

static qv_status add_event(qv_store *s, int64_t job, int64_t now_ms,
                           const char *kind, qv_err *err, const char *fmt, ...)
{
    static const char SQL[] =
        "INSERT INTO events (job, time, kind, text) VALUES (?, ?, ?, ?)";
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, now_ms);
    bind_str(st, 3, kind);
    bind_str(st, 4, text);
    return run(s, st, "log an event", err);
}

static qv_status fill_event(sqlite3_stmt *st, void *elem, qv_err *err)
{
    (void)err;
    qv_event *e = elem;
    e->id = sqlite3_column_int64(st, 0);
    e->job = sqlite3_column_int64(st, 1);
    e->time_ms = sqlite3_column_int64(st, 2);
    col_copy(st, 3, e->kind, sizeof e->kind);
    col_copy(st, 4, e->text, sizeof e->text);
    return QV_OK;
}

qv_status qv_store_events(qv_store *s, int64_t job, int64_t after_id,
                          size_t max, qv_event **events, size_t *n,
                          qv_err *err)
{
    static const char SQL[] =
        "SELECT id, job, time, kind, text FROM events"
        " WHERE job = ? AND id > ? ORDER BY id LIMIT ?";
    if (!s || !events || !n)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *events = NULL;
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int64(st, 3, max ? (sqlite3_int64)max : -1);
    void *got = NULL;
    r = collect(s, st, &got, n, sizeof **events, fill_event, NULL, "list events", err);
    *events = got;
    return r;
}

void qv_events_free(qv_event **events)
{
    if (events) {
        free(*events);
        *events = NULL;
    }
}

/* ---- jobs: records --------------------------------------------------------- */

#define RUNNABLE_SQL                                                          \
    "EXISTS (SELECT 1 FROM devices d JOIN workers w ON w.id = d.worker"       \
    " WHERE w.state <> 'revoked'"                                             \
    " AND (j.need_backend = '' OR d.backend = j.need_backend)"                \
    " AND d.memory >= j.need_memory)"

#define JOB_SELECT                                                            \
    "SELECT j.id, j.name, j.priority, j.state, j.created, j.updated,"         \
    " j.options, j.progress, j.model_hash, j.data_hash, j.need_backend,"      \
    " j.need_memory, j.attempts, j.max_attempts, j.checkpoint_hash,"          \
    " j.adapter_hash, j.metrics_hash, j.reason, j.cancel_requested,"          \
    " a.worker, a.device, a.lease_expiry, " RUNNABLE_SQL                      \
    " FROM jobs j LEFT JOIN attempts a"                                       \
    " ON a.job = j.id AND a.number = j.attempts AND a.ended IS NULL"

void qv_job_clear(qv_job *job)
{
    if (!job)
        return;
    free(job->options_json);
    free(job->progress_json);
    memset(job, 0, sizeof *job);
}

void qv_jobs_free(qv_job **jobs, size_t n)
{
    if (!jobs || !*jobs)
        return;
    for (size_t i = 0; i < n; i++)
        qv_job_clear(&(*jobs)[i]);
    free(*jobs);
    *jobs = NULL;
}

static qv_status job_from_row(sqlite3_stmt *st, qv_job *j, qv_err *err)
{
    memset(j, 0, sizeof *j);
    j->id = sqlite3_column_int64(st, 0);
    col_copy(st, 1, j->name, sizeof j->name);
    j->priority = sqlite3_column_int(st, 2);
    qv_job_state_parse((const char *)sqlite3_column_text(st, 3), &j->state);
    j->created_ms = sqlite3_column_int64(st, 4);
    j->updated_ms = sqlite3_column_int64(st, 5);
    j->options_json = col_dup(st, 6);
    j->progress_json = col_dup(st, 7);
    col_copy(st, 8, j->model_hash, sizeof j->model_hash);
    col_copy(st, 9, j->data_hash, sizeof j->data_hash);
    col_copy(st, 10, j->backend, sizeof j->backend);
    j->min_memory = (uint64_t)sqlite3_column_int64(st, 11);
    j->attempts = sqlite3_column_int(st, 12);
    j->max_attempts = sqlite3_column_int(st, 13);
    col_copy(st, 14, j->checkpoint_hash, sizeof j->checkpoint_hash);
    col_copy(st, 15, j->adapter_hash, sizeof j->adapter_hash);
    col_copy(st, 16, j->metrics_hash, sizeof j->metrics_hash);
    col_copy(st, 17, j->reason, sizeof j->reason);
    j->cancel_requested = sqlite3_column_int(st, 18);
    col_copy(st, 19, j->worker, sizeof j->worker);
    col_copy(st, 20, j->device, sizeof j->device);
    j->lease_expiry_ms = sqlite3_column_int64(st, 21);
    j->runnable = sqlite3_column_int(st, 22);
    if (!j->options_json || (sqlite3_column_type(st, 7) != SQLITE_NULL &&
                             !j->progress_json)) {
        qv_job_clear(j);
        return qv_fail(err, QV_ERR_NOMEM, "scheduler store: out of memory "
                       "reading a job");
    }
    return QV_OK;
}

static qv_status fill_job(sqlite3_stmt *st, void *elem, qv_err *err)
{
    return job_from_row(st, elem, err);
}

static void clear_job(void *elem) { qv_job_clear(elem); }

qv_status qv_store_job(qv_store *s, int64_t id, qv_job *out, qv_err *err)
{
    static const char SQL[] = JOB_SELECT " WHERE j.id = ?";
    if (!s || !out)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        r = job_from_row(st, out, err);
    else if (rc == SQLITE_DONE)
        r = qv_fail(err, QV_ERR_NOT_FOUND, "scheduler: no job %lld",
                    (long long)id);
    else
        r = db_fail(s, rc, "read a job", err);
    done(st);
    return r;
}

qv_status qv_store_list_jobs(qv_store *s, int all, qv_job **jobs, size_t *n,
                             qv_err *err)
{
    static const char SQL_ALL[] = JOB_SELECT " ORDER BY j.id";
    static const char SQL_ACTIVE[] = JOB_SELECT
        " WHERE j.state IN ('queued','assigned','running') ORDER BY j.id";
    if (!s || !jobs || !n)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *jobs = NULL;
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, all ? SQL_ALL : SQL_ACTIVE, &st, err);
    if (r != QV_OK)
        return r;
    void *got = NULL;
    r = collect(s, st, &got, n, sizeof **jobs, fill_job, clear_job, "list jobs", err);
    *jobs = got;
    return r;
}

qv_status qv_store_unrunnable(qv_store *s, int64_t **ids, size_t *n,
                              qv_err *err)
{
    static const char SQL[] =
        "SELECT j.id FROM jobs j WHERE j.state = 'queued' AND NOT "
        RUNNABLE_SQL " ORDER BY j.id";
    if (!s || !ids || !n)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    void *got = NULL;
    r = collect(s, st, &got, n, sizeof **ids, fill_id64, NULL, "list unrunnable jobs", err);
    *ids = got;
    return r;
}

/* ---- jobs: submit ---------------------------------------------------------- */

static qv_status submit_one(qv_store *s, const qv_job_spec *spec,
                            int64_t now_ms, int64_t *id, qv_err *err)
{
    static const char SQL[] =
        "INSERT INTO jobs (name, priority, state, created, updated, options,"
        " model_hash, data_hash, need_backend, need_memory, max_attempts)"
        " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)";
    const char *name = spec->name ? spec->name : "";
    const char *opt = spec->options_json ? spec->options_json : "{}";
    const char *be = spec->backend ? spec->backend : "";
    int maxa = spec->max_attempts ? spec->max_attempts : QV_STORE_MAX_ATTEMPTS;
    if (strlen(name) >= QV_STORE_ID_MAX)
        return qv_fail(err, QV_ERR_INVALID, "submit: job name longer than %d "
                       "bytes", QV_STORE_ID_MAX - 1);
    if (strlen(be) >= 32)
        return qv_fail(err, QV_ERR_INVALID, "submit: backend name too long");
    if (maxa < 1 || maxa > 1000)
        return qv_fail(err, QV_ERR_INVALID, "submit: max attempts %d out of "
                       "range (1..1000)", maxa);
    if (spec->min_memory > (uint64_t)INT64_MAX)
        return qv_fail(err, QV_ERR_INVALID, "submit: minimum memory out of "
                       "range");
    qv_status r = check_json_object(opt, "submit: the options", err);
    if (r == QV_OK && spec->model_hash)
        r = blob_need(s, spec->model_hash, "model", err);
    if (r == QV_OK && spec->data_hash)
        r = blob_need(s, spec->data_hash, "dataset", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    bind_str(st, 1, name);
    sqlite3_bind_int(st, 2, spec->priority);
    sqlite3_bind_int64(st, 3, now_ms);
    sqlite3_bind_int64(st, 4, now_ms);
    bind_str(st, 5, opt);
    bind_text(st, 6, spec->model_hash);
    bind_text(st, 7, spec->data_hash);
    bind_str(st, 8, be);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)spec->min_memory);
    sqlite3_bind_int(st, 10, maxa);
    r = run(s, st, "submit a job", err);
    if (r != QV_OK)
        return r;
    *id = sqlite3_last_insert_rowid(s->db);
    r = blob_ref(s, spec->model_hash, 1, err);
    if (r == QV_OK)
        r = blob_ref(s, spec->data_hash, 1, err);
    char mem[64] = "";
    if (spec->min_memory)
        snprintf(mem, sizeof mem, " with %.1f GiB of memory",
                 (double)spec->min_memory / (1024.0 * 1024 * 1024));
    if (r == QV_OK)
        r = add_event(s, *id, now_ms, "submitted", err,
                      "submitted: priority %d, needs %s%s, up to %d attempts",
                      spec->priority, be[0] ? be : "any backend", mem, maxa);
    return r;
}

qv_status qv_store_submit_batch(qv_store *s, const qv_job_spec *specs,
                                size_t n, int64_t now_ms, int64_t *ids,
                                qv_err *err)
{
    if (!s || (!specs && n) || (!ids && n))
        return qv_fail(err, QV_ERR_INVALID, "submit: no store, spec or output");
    for (size_t i = 0; i < n; i++)
        ids[i] = 0;
    qv_status r = tx_begin(s, "submit", err);
    int64_t *tmp = n ? calloc(n, sizeof *tmp) : NULL;
    if (r == QV_OK && n && !tmp)
        r = qv_fail(err, QV_ERR_NOMEM, "submit: out of memory");
    for (size_t i = 0; r == QV_OK && i < n; i++)
        r = submit_one(s, &specs[i], now_ms, &tmp[i], err);
    r = tx_end(s, r, "submit", err);
    /* ids only after COMMIT: an id the caller sees is durable. */
    for (size_t i = 0; r == QV_OK && i < n; i++)
        ids[i] = tmp[i];
    free(tmp);
    return r;
}

qv_status qv_store_submit(qv_store *s, const qv_job_spec *spec, int64_t now_ms,
                          int64_t *id, qv_err *err)
{
    if (!spec || !id)
        return qv_fail(err, QV_ERR_INVALID, "submit: no spec or output");
    return qv_store_submit_batch(s, spec, 1, now_ms, id, err);
}

/* ---- jobs: dispatch -------------------------------------------------------- */

static qv_status next_job(qv_store *s, const char *backend, uint64_t memory,
                          int64_t *job_id, qv_err *err)
{
    static const char SQL[] =
        "SELECT id FROM jobs WHERE state = 'queued' AND cancel_requested = 0"
        " AND (need_backend = '' OR need_backend = ?) AND need_memory <= ?"
        " ORDER BY priority DESC, created, id LIMIT 1";
    *job_id = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    bind_str(st, 1, backend);
    sqlite3_bind_int64(st, 2, memory > (uint64_t)INT64_MAX
                                  ? INT64_MAX : (sqlite3_int64)memory);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *job_id = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        r = db_fail(s, rc, "find the next job", err);
    done(st);
    return r;
}

qv_status qv_store_next_job(qv_store *s, const char *backend, uint64_t memory,
                            int64_t *job_id, qv_err *err)
{
    if (!s || !job_id)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *job_id = 0;
    qv_status r = check_id(backend, "device backend", err);
    return r == QV_OK ? next_job(s, backend, memory, job_id, err) : r;
}

/* The few columns the state machine needs. */
typedef struct job_core {
    qv_job_state state;
    int attempts, max_attempts, cancel_requested;
    char checkpoint[QV_BLOB_HEX];
    char worker[QV_STORE_ID_MAX];
} job_core;

static qv_status load_core(qv_store *s, int64_t job, job_core *c, qv_err *err)
{
    static const char SQL[] =
        "SELECT j.state, j.attempts, j.max_attempts, j.cancel_requested,"
        " j.checkpoint_hash, a.worker FROM jobs j LEFT JOIN attempts a"
        " ON a.job = j.id AND a.number = j.attempts AND a.ended IS NULL"
        " WHERE j.id = ?";
    memset(c, 0, sizeof *c);
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int64(st, 1, job);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        qv_job_state_parse((const char *)sqlite3_column_text(st, 0), &c->state);
        c->attempts = sqlite3_column_int(st, 1);
        c->max_attempts = sqlite3_column_int(st, 2);
        c->cancel_requested = sqlite3_column_int(st, 3);
        col_copy(st, 4, c->checkpoint, sizeof c->checkpoint);
        col_copy(st, 5, c->worker, sizeof c->worker);
    } else if (rc == SQLITE_DONE) {
        r = qv_fail(err, QV_ERR_NOT_FOUND, "scheduler: no job %lld",
                    (long long)job);
    } else {
        r = db_fail(s, rc, "read a job", err);
    }
    done(st);
    return r;
}

static qv_status set_state(qv_store *s, int64_t job, qv_job_state to,
                           const char *reason, int64_t now_ms, qv_err *err)
{
    static const char SQL[] =
        "UPDATE jobs SET state = ?, updated = ?,"
        " reason = coalesce(?, reason) WHERE id = ?";
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    bind_str(st, 1, qv_job_state_name(to));
    sqlite3_bind_int64(st, 2, now_ms);
    bind_text(st, 3, reason);
    sqlite3_bind_int64(st, 4, job);
    return run(s, st, "change a job's state", err);
}

static qv_status assign_tx(qv_store *s, int64_t job, const char *worker,
                           const char *device, int64_t now_ms,
                           int64_t lease_ms, qv_assignment *out, qv_err *err)
{
    static const char SQL_JOB[] =
        "UPDATE jobs SET state = 'assigned', attempts = attempts + 1,"
        " updated = ? WHERE id = ? AND state = 'queued'";
    static const char SQL_ATT[] =
        "INSERT INTO attempts (job, number, worker, device, started,"
        " lease_expiry) VALUES (?, ?, ?, ?, ?, ?)";
    job_core c;
    qv_status r = load_core(s, job, &c, err);
    if (r != QV_OK)
        return r;
    if (c.state != QV_JOB_QUEUED || c.cancel_requested)
        return qv_fail(err, QV_ERR_INVALID, "scheduler: job %lld is %s, not "
                       "queued; it cannot be assigned", (long long)job,
                       qv_job_state_name(c.state));
    sqlite3_stmt *st;
    r = prep(s, SQL_JOB, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, job);
    r = run(s, st, "assign a job", err);
    int attempt = c.attempts + 1;
    int64_t expiry = now_ms + lease_ms;
    if (r == QV_OK)
        r = prep(s, SQL_ATT, &st, err);
    if (r == QV_OK) {
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int(st, 2, attempt);
        bind_str(st, 3, worker);
        bind_str(st, 4, device);
        sqlite3_bind_int64(st, 5, now_ms);
        sqlite3_bind_int64(st, 6, expiry);
        r = run(s, st, "record an attempt", err);
    }
    if (r == QV_OK)
        r = add_event(s, job, now_ms, "assigned", err,
                      "attempt %d of %d assigned to %s on %s%s%s", attempt,
                      c.max_attempts, worker, device,
                      c.checkpoint[0] ? ", resuming from checkpoint " : "",
                      c.checkpoint);
    if (r == QV_OK) {
        out->job = job;
        out->attempt = attempt;
        out->lease_expiry_ms = expiry;
        snprintf(out->checkpoint_hash, sizeof out->checkpoint_hash, "%s",
                 c.checkpoint);
    }
    return r;
}

static qv_status check_lease(int64_t lease_ms, qv_err *err)
{
    if (lease_ms <= 0 || lease_ms > 7LL * 24 * 3600 * 1000)
        return qv_fail(err, QV_ERR_INVALID, "scheduler: lease of %lld ms out "
                       "of range (1 ms .. 7 days)", (long long)lease_ms);
    return QV_OK;
}

qv_status qv_store_assign(qv_store *s, int64_t job, const char *worker,
                          const char *device, int64_t now_ms, int64_t lease_ms,
                          qv_assignment *out, qv_err *err)
{
    if (!s || !out)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    memset(out, 0, sizeof *out);
    qv_status r = check_id(worker, "worker id", err);
    if (r == QV_OK)
        r = check_id(device, "device id", err);
    if (r == QV_OK)
        r = check_lease(lease_ms, err);
    if (r == QV_OK)
        r = tx_begin(s, "assign a job", err);
    if (r != QV_OK)
        return r;
    qv_assignment a = {0};
    r = assign_tx(s, job, worker, device, now_ms, lease_ms, &a, err);
    r = tx_end(s, r, "assign a job", err);
    if (r == QV_OK)
        *out = a;
    return r;
}

qv_status qv_store_dispatch(qv_store *s, const char *worker,
                            const char *device, const char *backend,
                            uint64_t memory, int64_t now_ms, int64_t lease_ms,
                            qv_assignment *out, qv_err *err)
{
    if (!s || !out)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    memset(out, 0, sizeof *out);
    qv_status r = check_id(worker, "worker id", err);
    if (r == QV_OK)
        r = check_id(device, "device id", err);
    if (r == QV_OK)
        r = check_id(backend, "device backend", err);
    if (r == QV_OK)
        r = check_lease(lease_ms, err);
    if (r == QV_OK)
        r = tx_begin(s, "dispatch a job", err);
    if (r != QV_OK)
        return r;
    int64_t id = 0;
    qv_assignment a = {0};
    r = next_job(s, backend, memory, &id, err);
    if (r == QV_OK && id)
        r = assign_tx(s, id, worker, device, now_ms, lease_ms, &a, err);
    r = tx_end(s, r, "dispatch a job", err);
    if (r == QV_OK)
        *out = a;
    return r;
}

/* ---- jobs: messages from the running attempt ------------------------------- */

/* Loads the job and decides whether (job, attempt) is its live attempt.
 * *live = 0 fills ack as STALE. */
static qv_status attempt_live(qv_store *s, int64_t job, int attempt,
                              job_core *c, qv_ack *ack, int *live,
                              qv_err *err)
{
    *live = 0;
    qv_status r = load_core(s, job, c, err);
    if (r != QV_OK)
        return r;
    memset(ack, 0, sizeof *ack);
    ack->current_attempt = c->attempts;
    ack->state = c->state;
    if (attempt == c->attempts &&
        (c->state == QV_JOB_ASSIGNED || c->state == QV_JOB_RUNNING)) {
        *live = 1;
        ack->verdict = c->cancel_requested ? QV_VERDICT_CANCEL
                                           : QV_VERDICT_ACCEPTED;
        if (c->cancel_requested)
            snprintf(ack->note, sizeof ack->note, "job %lld: cancel "
                     "requested; stop attempt %d", (long long)job, attempt);
        return QV_OK;
    }
    ack->verdict = QV_VERDICT_STALE;
    snprintf(ack->note, sizeof ack->note, "job %lld attempt %d is stale: the "
             "job is %s at attempt %d; ignored", (long long)job, attempt,
             qv_job_state_name(c->state), c->attempts);
    return QV_OK;
}

static qv_status renew_tx(qv_store *s, int64_t job, int attempt,
                          int64_t now_ms, int64_t lease_ms, qv_err *err)
{
    static const char SQL[] =
        "UPDATE attempts SET lease_expiry = ? WHERE job = ? AND number = ?";
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int64(st, 1, now_ms + lease_ms);
    sqlite3_bind_int64(st, 2, job);
    sqlite3_bind_int(st, 3, attempt);
    return run(s, st, "renew a lease", err);
}

static qv_status to_running(qv_store *s, int64_t job, int attempt,
                            job_core *c, int64_t now_ms, qv_ack *ack,
                            qv_err *err)
{
    if (c->state != QV_JOB_ASSIGNED)
        return QV_OK;
    qv_status r = set_state(s, job, QV_JOB_RUNNING, NULL, now_ms, err);
    if (r == QV_OK)
        r = add_event(s, job, now_ms, "running", err, "attempt %d running",
                      attempt);
    if (r == QV_OK)
        ack->state = c->state = QV_JOB_RUNNING;
    return r;
}

/* Which of the message kinds below. */
enum live_op { OP_RENEW, OP_RUNNING, OP_PROGRESS, OP_CHECKPOINT };

static qv_status live_op(qv_store *s, enum live_op op, int64_t job,
                         int attempt, const char *arg, int64_t now_ms,
                         int64_t lease_ms, qv_ack *ack, qv_err *err)
{
    static const char SQL_PROGRESS[] =
        "UPDATE jobs SET progress = ?, updated = ? WHERE id = ?";
    static const char SQL_CKPT[] =
        "UPDATE jobs SET checkpoint_hash = ?, updated = ? WHERE id = ?";
    if (!s || !ack)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    memset(ack, 0, sizeof *ack);
    qv_status r = QV_OK;
    if (op != OP_CHECKPOINT)
        r = check_lease(lease_ms, err);
    if (r == QV_OK && op == OP_PROGRESS)
        r = check_json_object(arg ? arg : "", "progress report", err);
    if (r == QV_OK && op == OP_CHECKPOINT)
        r = check_hash(arg, "checkpoint hash", err);
    if (r == QV_OK)
        r = tx_begin(s, "record a message from a worker", err);
    if (r != QV_OK)
        return r;
    job_core c;
    int live = 0;
    r = attempt_live(s, job, attempt, &c, ack, &live, err);
    if (r == QV_OK && live && op != OP_CHECKPOINT)
        r = renew_tx(s, job, attempt, now_ms, lease_ms, err);
    if (r == QV_OK && live && (op == OP_RUNNING || op == OP_PROGRESS))
        r = to_running(s, job, attempt, &c, now_ms, ack, err);
    sqlite3_stmt *st;
    if (r == QV_OK && live && op == OP_PROGRESS) {
        r = prep(s, SQL_PROGRESS, &st, err);
        if (r == QV_OK) {
            bind_str(st, 1, arg);
            sqlite3_bind_int64(st, 2, now_ms);
            sqlite3_bind_int64(st, 3, job);
            r = run(s, st, "record progress", err);
        }
        if (r == QV_OK)
            r = add_event(s, job, now_ms, "progress", err, "%s", arg);
    }
    if (r == QV_OK && live && op == OP_CHECKPOINT) {
        r = blob_need(s, arg, "checkpoint", err);
        if (r == QV_OK && strcmp(arg, c.checkpoint) != 0) {
            r = prep(s, SQL_CKPT, &st, err);
            if (r == QV_OK) {
                bind_str(st, 1, arg);
                sqlite3_bind_int64(st, 2, now_ms);
                sqlite3_bind_int64(st, 3, job);
                r = run(s, st, "record a checkpoint", err);
            }
            if (r == QV_OK)
                r = blob_ref(s, arg, 1, err);
            if (r == QV_OK)
                r = blob_ref(s, c.checkpoint, -1, err);
            if (r == QV_OK)
                r = add_event(s, job, now_ms, "checkpoint", err,
                              "attempt %d: checkpoint %s", attempt, arg);
        }
    }
    return tx_end(s, r, "record a message from a worker", err);
}

qv_status qv_store_renew(qv_store *s, int64_t job, int attempt, int64_t now_ms,
                         int64_t lease_ms, qv_ack *ack, qv_err *err)
{
    return live_op(s, OP_RENEW, job, attempt, NULL, now_ms, lease_ms, ack, err);
}

qv_status qv_store_running(qv_store *s, int64_t job, int attempt,
                           int64_t now_ms, int64_t lease_ms, qv_ack *ack,
                           qv_err *err)
{
    return live_op(s, OP_RUNNING, job, attempt, NULL, now_ms, lease_ms, ack,
                   err);
}

qv_status qv_store_progress(qv_store *s, int64_t job, int attempt,
                            const char *progress_json, int64_t now_ms,
                            int64_t lease_ms, qv_ack *ack, qv_err *err)
{
    return live_op(s, OP_PROGRESS, job, attempt, progress_json, now_ms,
                   lease_ms, ack, err);
}

qv_status qv_store_set_checkpoint(qv_store *s, int64_t job, int attempt,
                                  const char *hash, int64_t now_ms,
                                  qv_ack *ack, qv_err *err)
{
    return live_op(s, OP_CHECKPOINT, job, attempt, hash, now_ms, 0, ack, err);
}

static qv_status end_attempt(qv_store *s, int64_t job, int attempt,
                             const char *outcome, const char *reason,
                             int64_t now_ms, qv_err *err)
{
    static const char SQL[] =
        "UPDATE attempts SET ended = ?, outcome = ?, reason = ?"
        " WHERE job = ? AND number = ?";
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int64(st, 1, now_ms);
    bind_str(st, 2, outcome);
    bind_str(st, 3, reason);
    sqlite3_bind_int64(st, 4, job);
    sqlite3_bind_int(st, 5, attempt);
    return run(s, st, "end an attempt", err);
}

/* The live attempt of a job ended badly (outcome "failed", "expired",
 * "lost"): retry, fail for good, or honour a pending cancel. */
static qv_status attempt_failed_ex(qv_store *s, int64_t job, const job_core *c,
                                   const char *outcome, const char *reason, int retry,
                                   int64_t now_ms, qv_job_state *to, qv_err *err);

static qv_status attempt_failed(qv_store *s, int64_t job, const job_core *c,
                                const char *outcome, const char *reason,
                                int64_t now_ms, qv_job_state *to, qv_err *err)
{
    return attempt_failed_ex(s, job, c, outcome, reason, 1, now_ms, to, err);
}

/* retry 0: the worker says another attempt cannot help (failed {retry:
 * false}, e.g. options the engine refuses): the job fails now. */
static qv_status attempt_failed_ex(qv_store *s, int64_t job, const job_core *c,
                                   const char *outcome, const char *reason, int retry,
                                   int64_t now_ms, qv_job_state *to, qv_err *err)
{
    char why[512];
    snprintf(why, sizeof why, "attempt %d of %d %s: %s", c->attempts,
             c->max_attempts, outcome, reason);
    qv_status r = end_attempt(s, job, c->attempts, outcome, reason, now_ms,
                              err);
    if (r != QV_OK)
        return r;
    if (c->cancel_requested) {
        *to = QV_JOB_CANCELLED;
        r = set_state(s, job, *to, NULL, now_ms, err);
        if (r == QV_OK)
            r = add_event(s, job, now_ms, "cancelled", err,
                          "cancelled on request (%s)", why);
    } else if (!retry) {
        *to = QV_JOB_FAILED;
        r = set_state(s, job, *to, why, now_ms, err);
        if (r == QV_OK)
            r = add_event(s, job, now_ms, "failed", err, "%s; the worker says "
                          "retrying cannot help, the job failed", why);
    } else if (c->attempts >= c->max_attempts) {
        *to = QV_JOB_FAILED;
        r = set_state(s, job, *to, why, now_ms, err);
        if (r == QV_OK)
            r = add_event(s, job, now_ms, "failed", err, "%s; no attempts "
                          "left, the job failed", why);
    } else {
        *to = QV_JOB_QUEUED;
        r = set_state(s, job, *to, why, now_ms, err);
        if (r == QV_OK)
            r = add_event(s, job, now_ms, "retry", err, "%s; back in the "
                          "queue", why);
    }
    return r;
}

qv_status qv_store_fail(qv_store *s, int64_t job, int attempt,
                        const char *reason, int64_t now_ms, qv_ack *ack,
                        qv_err *err)
{
    return qv_store_fail_ex(s, job, attempt, reason, 1, now_ms, ack, err);
}

qv_status qv_store_fail_ex(qv_store *s, int64_t job, int attempt, const char *reason,
                           int retry, int64_t now_ms, qv_ack *ack, qv_err *err)
{
    if (!s || !ack)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    memset(ack, 0, sizeof *ack);
    qv_status r = tx_begin(s, "record a failure", err);
    if (r != QV_OK)
        return r;
    job_core c;
    int live = 0;
    r = attempt_live(s, job, attempt, &c, ack, &live, err);
    const char *why = reason && reason[0] ? reason : "no reason given";
    if (r == QV_OK && live) {
        r = attempt_failed_ex(s, job, &c, "failed", why, retry, now_ms, &ack->state, err);
        if (r == QV_OK)
            ack->verdict = QV_VERDICT_ACCEPTED;
    } else if (r == QV_OK) {
        r = add_event(s, job, now_ms, "stale", err, "failure of stale "
                      "attempt %d ignored (%s)", attempt, why);
    }
    return tx_end(s, r, "record a failure", err);
}

qv_status qv_store_complete(qv_store *s, int64_t job, int attempt,
                            const char *adapter_hash, const char *metrics_hash,
                            int64_t now_ms, qv_ack *ack, qv_err *err)
{
    static const char SQL[] =
        "UPDATE jobs SET state = 'succeeded', updated = ?, adapter_hash = ?,"
        " metrics_hash = ?, cancel_requested = 0 WHERE id = ?";
    if (!s || !ack)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    memset(ack, 0, sizeof *ack);
    qv_status r = check_hash(adapter_hash, "adapter hash", err);
    if (r == QV_OK && metrics_hash)
        r = check_hash(metrics_hash, "metrics hash", err);
    if (r == QV_OK)
        r = tx_begin(s, "record a result", err);
    if (r != QV_OK)
        return r;
    job_core c;
    int live = 0;
    r = attempt_live(s, job, attempt, &c, ack, &live, err);
    if (r == QV_OK && live) {
        r = blob_need(s, adapter_hash, "adapter", err);
        if (r == QV_OK && metrics_hash)
            r = blob_need(s, metrics_hash, "metrics", err);
        if (r == QV_OK)
            r = end_attempt(s, job, attempt, "succeeded", "", now_ms, err);
        sqlite3_stmt *st;
        if (r == QV_OK)
            r = prep(s, SQL, &st, err);
        if (r == QV_OK) {
            sqlite3_bind_int64(st, 1, now_ms);
            bind_str(st, 2, adapter_hash);
            bind_text(st, 3, metrics_hash);
            sqlite3_bind_int64(st, 4, job);
            r = run(s, st, "record a result", err);
        }
        if (r == QV_OK)
            r = blob_ref(s, adapter_hash, 1, err);
        if (r == QV_OK)
            r = blob_ref(s, metrics_hash, 1, err);
        if (r == QV_OK)
            r = add_event(s, job, now_ms, "succeeded", err,
                          "attempt %d succeeded: adapter %s", attempt,
                          adapter_hash);
        if (r == QV_OK) {
            ack->verdict = QV_VERDICT_ACCEPTED;
            ack->note[0] = '\0';
            ack->state = QV_JOB_SUCCEEDED;
        }
    } else if (r == QV_OK) {
        r = add_event(s, job, now_ms, "stale", err, "result of stale attempt "
                      "%d ignored", attempt);
    }
    return tx_end(s, r, "record a result", err);
}

static qv_status fill_attempt(sqlite3_stmt *st, void *elem, qv_err *err)
{
    (void)err;
    qv_attempt_row *a = elem;
    a->job = sqlite3_column_int64(st, 0);
    a->number = sqlite3_column_int(st, 1);
    col_copy(st, 2, a->worker, sizeof a->worker);
    col_copy(st, 3, a->device, sizeof a->device);
    a->started_ms = sqlite3_column_int64(st, 4);
    a->lease_expiry_ms = sqlite3_column_int64(st, 5);
    a->ended_ms = sqlite3_column_int64(st, 6);
    col_copy(st, 7, a->outcome, sizeof a->outcome);
    col_copy(st, 8, a->reason, sizeof a->reason);
    return QV_OK;
}

qv_status qv_store_attempts(qv_store *s, int64_t job, qv_attempt_row **rows,
                            size_t *n, qv_err *err)
{
    static const char SQL[] =
        "SELECT job, number, worker, device, started, lease_expiry,"
        " coalesce(ended, 0), coalesce(outcome, ''), reason FROM attempts"
        " WHERE job = ? ORDER BY number";
    if (!s || !rows || !n)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int64(st, 1, job);
    void *got = NULL;
    r = collect(s, st, &got, n, sizeof **rows, fill_attempt, NULL, "list attempts", err);
    *rows = got;
    return r;
}

void qv_attempts_free(qv_attempt_row **rows)
{
    if (rows) {
        free(*rows);
        *rows = NULL;
    }
}

/* ---- jobs: leases, lost workers, cancel ------------------------------------ */

/* Ends, as `outcome`, the live attempts selected by sql (one bound value,
 * text or integer) and counts where the jobs went. */
static qv_status fail_open_attempts(qv_store *s, const char *sql,
                                    const char *text_arg, int64_t int_arg,
                                    const char *outcome, const char *reason,
                                    int64_t now_ms, int *requeued, int *failed,
                                    qv_err *err)
{
    /* Collect first: the statement must not be stepping while we write. */
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, sql, &st, err);
    if (r != QV_OK)
        return r;
    if (text_arg)
        bind_str(st, 1, text_arg);
    else
        sqlite3_bind_int64(st, 1, int_arg);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        void *grown = grow(ids, &cap, n, sizeof *ids, err);
        if (!grown) {
            r = QV_ERR_NOMEM;
            break;
        }
        ids = grown;
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    if (r == QV_OK && rc != SQLITE_DONE)
        r = db_fail(s, rc, "find open attempts", err);
    done(st);
    for (size_t i = 0; r == QV_OK && i < n; i++) {
        job_core c;
        qv_job_state to = QV_JOB_QUEUED;
        r = load_core(s, ids[i], &c, err);
        if (r == QV_OK)
            r = attempt_failed(s, ids[i], &c, outcome, reason, now_ms, &to,
                               err);
        if (r == QV_OK && to == QV_JOB_QUEUED && requeued)
            (*requeued)++;
        if (r == QV_OK && to == QV_JOB_FAILED && failed)
            (*failed)++;
    }
    free(ids);
    return r;
}

qv_status qv_store_expire_leases(qv_store *s, int64_t now_ms, int *requeued,
                                 int *failed, qv_err *err)
{
    static const char SQL[] =
        "SELECT j.id FROM jobs j JOIN attempts a"
        " ON a.job = j.id AND a.number = j.attempts AND a.ended IS NULL"
        " WHERE j.state IN ('assigned','running') AND a.lease_expiry < ?"
        " ORDER BY j.id";
    if (requeued)
        *requeued = 0;
    if (failed)
        *failed = 0;
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    int rq = 0, fl = 0;
    qv_status r = tx_begin(s, "expire leases", err);
    if (r != QV_OK)
        return r;
    r = fail_open_attempts(s, SQL, NULL, now_ms, "expired",
                           "lease expired (no heartbeat from the worker)",
                           now_ms, &rq, &fl, err);
    r = tx_end(s, r, "expire leases", err);
    if (r == QV_OK) {
        if (requeued)
            *requeued = rq;
        if (failed)
            *failed = fl;
    }
    return r;
}

/* A worker leaves (lost, or revoked): its state changes with sql_state and
 * every attempt it holds ends with `why`, its job back in the queue (or
 * failed when out of attempts). must_exist: QV_ERR_NOT_FOUND when
 * sql_state changed no row. */
static qv_status worker_leaves(qv_store *s, const char *worker, const char *sql_state,
                               int must_exist, const char *what, const char *why,
                               int64_t now_ms, int *requeued, qv_err *err)
{
    static const char SQL_JOBS[] =
        "SELECT j.id FROM jobs j JOIN attempts a"
        " ON a.job = j.id AND a.number = j.attempts AND a.ended IS NULL"
        " WHERE j.state IN ('assigned','running') AND a.worker = ?"
        " ORDER BY j.id";
    if (requeued)
        *requeued = 0;
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    qv_status r = check_id(worker, "worker id", err);
    if (r == QV_OK)
        r = tx_begin(s, what, err);
    if (r != QV_OK)
        return r;
    int rq = 0;
    sqlite3_stmt *st;
    r = prep(s, sql_state, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, worker);
        r = run(s, st, what, err);
    }
    if (r == QV_OK && must_exist && sqlite3_changes(s->db) == 0)
        r = qv_fail(err, QV_ERR_NOT_FOUND, "no worker %s; `qvac workers` lists them",
                    worker);
    if (r == QV_OK)
        r = fail_open_attempts(s, SQL_JOBS, worker, 0, "lost", why, now_ms,
                               &rq, NULL, err);
    r = tx_end(s, r, what, err);
    if (r == QV_OK && requeued)
        *requeued = rq;
    return r;
}

qv_status qv_store_worker_lost(qv_store *s, const char *worker,
                               const char *reason, int64_t now_ms,
                               int *requeued, qv_err *err)
{
    char why[400];
    snprintf(why, sizeof why, "worker %s lost (%s)", worker ? worker : "?",
             reason && reason[0] ? reason : "no reason given");
    return worker_leaves(s, worker,
                         "UPDATE workers SET state = 'lost' WHERE id = ? AND state = 'active'",
                         0, "mark a worker lost", why, now_ms, requeued, err);
}

qv_status qv_store_cancel(qv_store *s, int64_t job, int64_t now_ms,
                          qv_cancel_result *result, char *worker, qv_err *err)
{
    static const char SQL_REQ[] =
        "UPDATE jobs SET cancel_requested = 1, updated = ? WHERE id = ?";
    if (!s || !result)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    if (worker)
        worker[0] = '\0';
    qv_status r = tx_begin(s, "cancel a job", err);
    if (r != QV_OK)
        return r;
    job_core c;
    qv_cancel_result res = QV_CANCEL_DONE;
    r = load_core(s, job, &c, err);
    if (r == QV_OK) {
        switch (c.state) {
        case QV_JOB_QUEUED:
            r = set_state(s, job, QV_JOB_CANCELLED, NULL, now_ms, err);
            if (r == QV_OK)
                r = add_event(s, job, now_ms, "cancelled", err,
                              "cancelled while queued");
            break;
        case QV_JOB_ASSIGNED:
        case QV_JOB_RUNNING:
            res = QV_CANCEL_REQUESTED;
            if (!c.cancel_requested) {
                sqlite3_stmt *st;
                r = prep(s, SQL_REQ, &st, err);
                if (r == QV_OK) {
                    sqlite3_bind_int64(st, 1, now_ms);
                    sqlite3_bind_int64(st, 2, job);
                    r = run(s, st, "cancel a job", err);
                }
                if (r == QV_OK)
                    r = add_event(s, job, now_ms, "cancel-requested", err,
                                  "cancel requested; telling worker %s "
                                  "(attempt %d)", c.worker, c.attempts);
            }
            break;
        default:
            r = qv_fail(err, QV_ERR_INVALID, "scheduler: job %lld already "
                        "%s; nothing to cancel", (long long)job,
                        qv_job_state_name(c.state));
        }
    }
    r = tx_end(s, r, "cancel a job", err);
    if (r == QV_OK) {
        *result = res;
        if (worker && res == QV_CANCEL_REQUESTED)
            snprintf(worker, QV_STORE_ID_MAX, "%s", c.worker);
    }
    return r;
}

/* ---- workers and devices --------------------------------------------------- */

qv_status qv_store_worker_upsert(qv_store *s, const char *worker,
                                 const char *pubkey, const char *name,
                                 int64_t now_ms, qv_err *err)
{
    static const char SQL[] =
        "INSERT INTO workers (id, pubkey, name, enrolled, last_seen, state)"
        " VALUES (?, ?, ?, ?, ?, 'active') ON CONFLICT (id) DO UPDATE SET"
        " pubkey = excluded.pubkey, name = excluded.name,"
        " last_seen = excluded.last_seen, state = 'active'"
        " WHERE workers.state <> 'revoked'";
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    qv_status r = check_id(worker, "worker id", err);
    if (r == QV_OK)
        r = check_id(pubkey, "worker public key", err);
    if (r == QV_OK && name && strlen(name) >= QV_STORE_ID_MAX)
        r = qv_fail(err, QV_ERR_INVALID, "scheduler store: worker name too "
                    "long");
    if (r == QV_OK)
        r = tx_begin(s, "enroll a worker", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, worker);
        bind_str(st, 2, pubkey);
        bind_str(st, 3, name);
        sqlite3_bind_int64(st, 4, now_ms);
        sqlite3_bind_int64(st, 5, now_ms);
        r = run(s, st, "enroll a worker", err);
    }
    if (r == QV_OK && sqlite3_changes(s->db) == 0) /* revoked stays revoked */
        r = qv_fail(err, QV_ERR_INVALID, "worker %s was removed (`qvac workers "
                    "remove`); its key is refused", worker);
    return tx_end(s, r, "enroll a worker", err);
}

qv_status qv_store_worker_revoke(qv_store *s, const char *worker, int64_t now_ms,
                                 int *requeued, qv_err *err)
{
    char why[200];
    snprintf(why, sizeof why, "worker %s removed (qvac workers remove)", worker ? worker : "?");
    return worker_leaves(s, worker, "UPDATE workers SET state = 'revoked' WHERE id = ?", 1,
                         "remove a worker", why, now_ms, requeued, err);
}

qv_status qv_store_revoked_workers(qv_store *s, char (**ids)[QV_STORE_ID_MAX],
                                   size_t *n, qv_err *err)
{
    static const char SQL[] = "SELECT id FROM workers WHERE state = 'revoked'";
    if (!s || !ids || !n)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    void *got = NULL;
    r = collect(s, st, &got, n, sizeof **ids, fill_id_text, NULL, "list removed workers", err);
    *ids = got;
    return r;
}

qv_status qv_store_data_version(qv_store *s, int64_t *v, qv_err *err)
{
    if (!s || !v)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    int x = 0;
    qv_status r = pragma_int(s, "PRAGMA data_version", &x, err);
    *v = x;
    return r;
}

qv_status qv_store_worker_seen(qv_store *s, const char *worker, int64_t now_ms,
                               qv_err *err)
{
    static const char SQL[] =
        "UPDATE workers SET last_seen = ?, state = 'active'"
        " WHERE id = ? AND state <> 'revoked'";
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    qv_status r = check_id(worker, "worker id", err);
    if (r == QV_OK)
        r = tx_begin(s, "record a heartbeat", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL, &st, err);
    if (r == QV_OK) {
        sqlite3_bind_int64(st, 1, now_ms);
        bind_str(st, 2, worker);
        r = run(s, st, "record a heartbeat", err);
    }
    if (r == QV_OK && sqlite3_changes(s->db) == 0)
        r = qv_fail(err, QV_ERR_NOT_FOUND, "scheduler: no enrolled worker %s",
                    worker);
    return tx_end(s, r, "record a heartbeat", err);
}

qv_status qv_store_workers_seen(qv_store *s, const char (*ids)[QV_STORE_ID_MAX],
                                const int64_t *times, size_t n, qv_err *err)
{
    static const char SQL[] =
        "UPDATE workers SET last_seen = max(last_seen, ?), state = 'active'"
        " WHERE id = ? AND state <> 'revoked'";
    if (!s || (n && (!ids || !times)))
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no workers");
    if (!n)
        return QV_OK;
    qv_status r = tx_begin(s, "record heartbeats", err);
    for (size_t i = 0; r == QV_OK && i < n; i++) {
        sqlite3_stmt *st;
        r = check_id(ids[i], "worker id", err);
        if (r == QV_OK)
            r = prep(s, SQL, &st, err);
        if (r != QV_OK)
            break;
        sqlite3_bind_int64(st, 1, times[i]);
        bind_str(st, 2, ids[i]);
        r = run(s, st, "record heartbeats", err);
    }
    return tx_end(s, r, "record heartbeats", err);
}

qv_status qv_store_worker_by_key(qv_store *s, const char *pubkey,
                                 char id[QV_STORE_ID_MAX], qv_err *err)
{
    static const char SQL[] = "SELECT id FROM workers WHERE pubkey = ?";
    if (!s || !pubkey || !id)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no key or output");
    id[0] = '\0';
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    bind_str(st, 1, pubkey);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        col_copy(st, 0, id, QV_STORE_ID_MAX);
    else if (rc != SQLITE_DONE)
        r = db_fail(s, rc, "find a worker by key", err);
    done(st);
    return r;
}

qv_status qv_store_worker_max_id(qv_store *s, uint64_t *max_id, qv_err *err)
{
    if (!s || !max_id)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    int64_t v = 0;
    qv_status r = query_int(s, "SELECT max(CAST(id AS INTEGER)) FROM workers",
                            NULL, 0, &v, "find the largest worker id", err);
    *max_id = v > 0 ? (uint64_t)v : 0;
    return r;
}

qv_status qv_store_queued_count(qv_store *s, int64_t limit, int64_t *n, qv_err *err)
{
    if (!s || !n)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    return query_int(s, "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued'"
                        " AND cancel_requested = 0 LIMIT ?1)",
                     NULL, limit, n, "count the queued jobs", err);
}

qv_status qv_store_silent_workers(qv_store *s, int64_t now_ms,
                                  int64_t silence_ms,
                                  char (*ids)[QV_STORE_ID_MAX], size_t max,
                                  size_t *n, qv_err *err)
{
    static const char SQL[] =
        "SELECT id FROM workers WHERE state = 'active' AND last_seen < ?"
        " ORDER BY last_seen LIMIT ?";
    if (!s || !n || (!ids && max))
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    sqlite3_bind_int64(st, 1, now_ms - silence_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max)
        col_copy(st, 0, ids[(*n)++], QV_STORE_ID_MAX);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = db_fail(s, rc, "list silent workers", err);
    done(st);
    return r;
}

qv_status qv_store_device_put(qv_store *s, const char *worker,
                              const char *device, const char *backend,
                              const char *name, uint64_t memory,
                              const char *tuned_json, qv_err *err)
{
    static const char SQL[] =
        "INSERT OR REPLACE INTO devices (worker, device, backend, name,"
        " memory, tuned) VALUES (?, ?, ?, ?, ?, ?)";
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    const char *tuned = tuned_json ? tuned_json : "{}";
    qv_status r = check_id(worker, "worker id", err);
    if (r == QV_OK)
        r = check_id(device, "device id", err);
    if (r == QV_OK)
        r = check_id(backend, "device backend", err);
    if (r == QV_OK && memory > (uint64_t)INT64_MAX)
        r = qv_fail(err, QV_ERR_INVALID, "scheduler store: device memory out "
                    "of range");
    if (r == QV_OK)
        r = check_json_object(tuned, "device tuned figures", err);
    if (r == QV_OK)
        r = tx_begin(s, "record a device", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, worker);
        bind_str(st, 2, device);
        bind_str(st, 3, backend);
        bind_str(st, 4, name);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)memory);
        bind_str(st, 6, tuned);
        r = run(s, st, "record a device", err);
        if (r == QV_ERR_INVALID) /* the foreign key: no such worker */
            r = qv_fail(err, QV_ERR_NOT_FOUND, "scheduler: device %s of "
                        "unknown worker %s; enroll the worker first", device,
                        worker);
    }
    return tx_end(s, r, "record a device", err);
}

static qv_status fill_worker(sqlite3_stmt *st, void *elem, qv_err *err)
{
    (void)err;
    qv_worker_row *w = elem;
    col_copy(st, 0, w->id, sizeof w->id);
    col_copy(st, 1, w->pubkey, sizeof w->pubkey);
    col_copy(st, 2, w->name, sizeof w->name);
    col_copy(st, 3, w->state, sizeof w->state);
    w->last_seen_ms = sqlite3_column_int64(st, 4);
    w->devices = sqlite3_column_int(st, 5);
    w->running = sqlite3_column_int(st, 6);
    return QV_OK;
}

qv_status qv_store_list_workers(qv_store *s, qv_worker_row **rows, size_t *n,
                                qv_err *err)
{
    static const char SQL[] =
        "SELECT w.id, w.pubkey, w.name, w.state, w.last_seen,"
        " (SELECT count(*) FROM devices d WHERE d.worker = w.id),"
        " (SELECT count(*) FROM attempts a JOIN jobs j ON j.id = a.job"
        "  AND j.attempts = a.number WHERE a.worker = w.id AND a.ended IS NULL"
        "  AND j.state IN ('assigned','running'))"
        " FROM workers w ORDER BY w.id";
    if (!s || !rows || !n)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    void *got = NULL;
    r = collect(s, st, &got, n, sizeof **rows, fill_worker, NULL, "list workers", err);
    *rows = got;
    return r;
}

void qv_workers_free(qv_worker_row **rows)
{
    if (rows) {
        free(*rows);
        *rows = NULL;
    }
}

/* ---- bench results ------------------------------------------------------------ */

qv_status qv_store_bench_put(qv_store *s, const char *worker, const char *device,
                             const char *model, const char *version,
                             const char *fingerprint, const char *result_json,
                             int64_t now_ms, qv_err *err)
{
    static const char SQL[] =
        "INSERT OR REPLACE INTO bench_results (worker, device, model, version,"
        " fingerprint, result, received) VALUES (?, ?, ?, ?, ?, ?, ?)";
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    qv_status r = check_id(worker, "worker id", err);
    if (r == QV_OK)
        r = check_id(device, "device id", err);
    if (r == QV_OK)
        r = check_id(model, "bench model", err);
    if (r == QV_OK)
        r = check_id(version, "qvac version", err);
    if (r == QV_OK && !fingerprint)
        r = qv_fail(err, QV_ERR_INVALID, "scheduler store: no device fingerprint");
    if (r == QV_OK)
        r = check_json_object(result_json, "bench result", err);
    if (r == QV_OK)
        r = tx_begin(s, "record a bench result", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, worker);
        bind_str(st, 2, device);
        bind_str(st, 3, model);
        bind_str(st, 4, version);
        bind_str(st, 5, fingerprint);
        bind_str(st, 6, result_json);
        sqlite3_bind_int64(st, 7, now_ms);
        r = run(s, st, "record a bench result", err);
        if (r == QV_ERR_INVALID) /* the foreign key: no such worker */
            r = qv_fail(err, QV_ERR_NOT_FOUND, "scheduler: bench result of unknown "
                        "worker %s; enroll the worker first", worker);
    }
    return tx_end(s, r, "record a bench result", err);
}

static qv_status fill_bench(sqlite3_stmt *st, void *elem, qv_err *err)
{
    qv_bench_row *b = elem;
    memset(b, 0, sizeof *b);
    col_copy(st, 0, b->worker, sizeof b->worker);
    col_copy(st, 1, b->worker_name, sizeof b->worker_name);
    col_copy(st, 2, b->device, sizeof b->device);
    col_copy(st, 3, b->model, sizeof b->model);
    col_copy(st, 4, b->version, sizeof b->version);
    col_copy(st, 5, b->fingerprint, sizeof b->fingerprint);
    b->received_ms = sqlite3_column_int64(st, 7);
    const unsigned char *res = sqlite3_column_text(st, 6);
    if (!(b->result = strdup(res ? (const char *)res : "{}")))
        return qv_fail(err, QV_ERR_NOMEM, "scheduler store: out of memory");
    return QV_OK;
}

static void clear_bench(void *elem) { free(((qv_bench_row *)elem)->result); }

qv_status qv_store_bench_list(qv_store *s, const char *model, qv_bench_row **rows,
                              size_t *n, qv_err *err)
{
    static const char SQL[] =
        "SELECT b.worker, w.name, b.device, b.model, b.version, b.fingerprint,"
        " b.result, b.received FROM bench_results b JOIN workers w ON w.id = b.worker"
        " WHERE ?1 IS NULL OR b.model = ?1"
        " ORDER BY b.model, w.name, b.worker, b.device, b.version";
    if (!s || !rows || !n)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    if (model)
        bind_str(st, 1, model);
    else
        sqlite3_bind_null(st, 1);
    void *got = NULL;
    r = collect(s, st, &got, n, sizeof **rows, fill_bench, clear_bench, "list bench results", err);
    *rows = got;
    return r;
}

void qv_bench_rows_free(qv_bench_row **rows, size_t n)
{
    if (!rows || !*rows)
        return;
    for (size_t i = 0; i < n; i++)
        free((*rows)[i].result);
    free(*rows);
    *rows = NULL;
}

/* ---- metrics --------------------------------------------------------------------- */

qv_status qv_store_metrics_read(qv_store *s, qv_store_metrics *m, qv_err *err)
{
    static const char JOBS[] = "SELECT state, count(*) FROM jobs GROUP BY state";
    static const char BLOBS[] = "SELECT count(*), coalesce(sum(size), 0) FROM blobs";
    static const char QUEUED[] =
        "SELECT coalesce(min(created), 0),"
        " (SELECT count(*) FROM workers WHERE state != 'active')"
        " FROM jobs WHERE state = 'queued'";
    static const char RUNNING[] =
        "SELECT id, progress FROM jobs WHERE state = 'running' ORDER BY id LIMIT ?";
    if (!s || !m)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    memset(m, 0, sizeof *m);
    sqlite3_stmt *st;
    qv_status r = prep(s, JOBS, &st, err);
    int rc = SQLITE_DONE;
    while (r == QV_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        qv_job_state js;
        const unsigned char *name = sqlite3_column_text(st, 0);
        if (name && qv_job_state_parse((const char *)name, &js))
            m->jobs[js] = sqlite3_column_int64(st, 1);
    }
    if (r == QV_OK) {
        if (rc != SQLITE_DONE)
            r = db_fail(s, rc, "count jobs", err);
        done(st);
    }
    if (r == QV_OK && (r = prep(s, BLOBS, &st, err)) == QV_OK) {
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            m->blobs = sqlite3_column_int64(st, 0);
            m->blob_bytes = sqlite3_column_int64(st, 1);
        } else {
            r = db_fail(s, rc, "count blobs", err);
        }
        done(st);
    }
    if (r == QV_OK && (r = prep(s, QUEUED, &st, err)) == QV_OK) {
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            m->oldest_queued_ms = sqlite3_column_int64(st, 0);
            m->workers_lost = sqlite3_column_int64(st, 1);
        } else
            r = db_fail(s, rc, "oldest queued job", err);
        done(st);
    }
    if (r == QV_OK && (r = prep(s, RUNNING, &st, err)) == QV_OK) {
        sqlite3_bind_int(st, 1, QV_METRICS_RUNNING);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && m->n_running < QV_METRICS_RUNNING) {
            m->running[m->n_running].job = sqlite3_column_int64(st, 0);
            double tps = NAN;
            const unsigned char *pj = sqlite3_column_text(st, 1);
            json_t *j = pj ? json_loads((const char *)pj, 0, NULL) : NULL;
            if (json_is_number(json_object_get(j, "tokens_per_s")))
                tps = json_number_value(json_object_get(j, "tokens_per_s"));
            json_decref(j);
            m->running[m->n_running++].tokens_per_s = tps;
        }
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            r = db_fail(s, rc, "running jobs", err);
        done(st);
    }
    return r;
}

/* ---- shared tunings --------------------------------------------------------- */

qv_status qv_store_tuning_put(qv_store *s, const char *worker, const char *fingerprint,
                              const char *kernel, const char *src_hash,
                              const char *bucket, const char *config, double median_ns,
                              const char *entry_json, int64_t now_ms, int *stored,
                              qv_err *err)
{
    static const char SQL[] =
        "INSERT INTO tunings (fingerprint, kernel, src_hash, bucket, config, median_ns,"
        " entry, worker, received) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        " ON CONFLICT (fingerprint, kernel, src_hash, bucket, config) DO UPDATE SET"
        " median_ns = excluded.median_ns, entry = excluded.entry, worker = excluded.worker,"
        " received = excluded.received WHERE excluded.median_ns < tunings.median_ns";
    /* keep the QV_TUNINGS_KEEP fastest configurations of the key */
    static const char TRIM[] =
        "DELETE FROM tunings WHERE fingerprint = ?1 AND kernel = ?2 AND src_hash = ?3"
        " AND bucket = ?4 AND config NOT IN (SELECT config FROM tunings WHERE"
        " fingerprint = ?1 AND kernel = ?2 AND src_hash = ?3 AND bucket = ?4"
        " ORDER BY median_ns LIMIT ?5)";
    int dummy;
    if (!stored)
        stored = &dummy;
    *stored = 0;
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    if (!(median_ns > 0 && median_ns < 1e15))
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: tuning time %g ns is out "
                       "of range", median_ns);
    qv_status r = check_id(worker, "worker id", err);
    const char *parts[] = {fingerprint, kernel, src_hash, bucket, config};
    for (int i = 0; i < 5 && r == QV_OK; i++)
        r = check_id(parts[i], "tuning key", err);
    if (r == QV_OK)
        r = check_json_object(entry_json, "tuning entry", err);
    if (r == QV_OK)
        r = tx_begin(s, "record a tuning", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL, &st, err);
    if (r == QV_OK) {
        for (int i = 0; i < 5; i++)
            bind_str(st, i + 1, parts[i]);
        sqlite3_bind_double(st, 6, median_ns);
        bind_str(st, 7, entry_json);
        bind_str(st, 8, worker);
        sqlite3_bind_int64(st, 9, now_ms);
        r = run(s, st, "record a tuning", err);
    }
    if (r == QV_OK)
        *stored = sqlite3_changes(s->db) > 0;
    if (r == QV_OK)
        r = prep(s, TRIM, &st, err);
    if (r == QV_OK) {
        for (int i = 0; i < 4; i++)
            bind_str(st, i + 1, parts[i]);
        sqlite3_bind_int(st, 5, QV_TUNINGS_KEEP);
        r = run(s, st, "trim tunings", err);
    }
    return tx_end(s, r, "record a tuning", err);
}

qv_status qv_store_tunings_of(qv_store *s, const char *fingerprint, char ***entries,
                              size_t *n, qv_err *err)
{
    static const char SQL[] =
        "SELECT entry FROM tunings WHERE fingerprint = ?"
        " ORDER BY kernel, src_hash, bucket, median_ns LIMIT 1024";
    if (!s || !entries || !n || !fingerprint)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *entries = NULL;
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    bind_str(st, 1, fingerprint);
    void *got = NULL;
    r = collect(s, st, &got, n, sizeof **entries, fill_string, clear_string, "list tunings", err);
    *entries = got;
    return r;
}

void qv_strings_free(char ***v, size_t n)
{
    if (!v || !*v)
        return;
    for (size_t i = 0; i < n; i++)
        free((*v)[i]);
    free(*v);
    *v = NULL;
}

/* ---- clients and tokens ---------------------------------------------------- */

qv_status qv_store_client_add(qv_store *s, const char *pubkey,
                              const char *name, int64_t now_ms, qv_err *err)
{
    static const char SQL[] =
        "INSERT INTO clients (pubkey, name, added) VALUES (?, ?, ?)"
        " ON CONFLICT (pubkey) DO UPDATE SET name = excluded.name";
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    qv_status r = check_id(pubkey, "client public key", err);
    if (r == QV_OK)
        r = tx_begin(s, "add a client", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, pubkey);
        bind_str(st, 2, name);
        sqlite3_bind_int64(st, 3, now_ms);
        r = run(s, st, "add a client", err);
    }
    return tx_end(s, r, "add a client", err);
}

qv_status qv_store_client_remove(qv_store *s, const char *pubkey, qv_err *err)
{
    static const char SQL[] = "DELETE FROM clients WHERE pubkey = ?";
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    qv_status r = check_id(pubkey, "client public key", err);
    if (r == QV_OK)
        r = tx_begin(s, "remove a client", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, pubkey);
        r = run(s, st, "remove a client", err);
    }
    if (r == QV_OK && sqlite3_changes(s->db) == 0)
        r = qv_fail(err, QV_ERR_NOT_FOUND, "no client with key %s; `qvac clients list` "
                    "lists them", pubkey);
    return tx_end(s, r, "remove a client", err);
}

static qv_status fill_client(sqlite3_stmt *st, void *elem, qv_err *err)
{
    (void)err;
    qv_client_row *c = elem;
    col_copy(st, 0, c->pubkey, sizeof c->pubkey);
    col_copy(st, 1, c->name, sizeof c->name);
    c->added_ms = sqlite3_column_int64(st, 2);
    return QV_OK;
}

qv_status qv_store_list_clients(qv_store *s, qv_client_row **rows, size_t *n,
                                qv_err *err)
{
    static const char SQL[] = "SELECT pubkey, name, added FROM clients ORDER BY added, pubkey";
    if (!s || !rows || !n)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st;
    qv_status r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    void *got = NULL;
    r = collect(s, st, &got, n, sizeof **rows, fill_client, NULL, "list clients", err);
    *rows = got;
    return r;
}

qv_status qv_store_key_role(qv_store *s, const char *pubkey, qv_key_role *role,
                            qv_err *err)
{
    static const char SQL[] =
        "SELECT (SELECT count(*) FROM clients WHERE pubkey = ?1),"
        " (SELECT count(*) FROM workers WHERE pubkey = ?1"
        "  AND state <> 'revoked')";
    if (!s || !role)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    *role = QV_KEY_UNKNOWN;
    qv_status r = check_id(pubkey, "public key", err);
    sqlite3_stmt *st;
    if (r == QV_OK)
        r = prep(s, SQL, &st, err);
    if (r != QV_OK)
        return r;
    bind_str(st, 1, pubkey);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_int(st, 0))
            *role = QV_KEY_CLIENT;
        else if (sqlite3_column_int(st, 1))
            *role = QV_KEY_WORKER;
    } else {
        r = db_fail(s, rc, "look up a key", err);
    }
    done(st);
    return r;
}

qv_status qv_store_token_new(qv_store *s, int64_t now_ms, int64_t ttl_ms,
                             char token[QV_TOKEN_HEX], qv_err *err)
{
    static const char SQL[] =
        "INSERT INTO tokens (token, created, expires) VALUES (?, ?, ?)";
    if (!s || !token)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no output");
    token[0] = '\0';
    if (ttl_ms <= 0)
        return qv_fail(err, QV_ERR_INVALID, "token: lifetime must be positive");
    unsigned char raw[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t k = fd >= 0 ? read(fd, raw, sizeof raw) : -1;
    if (fd >= 0)
        close(fd);
    if (k != (ssize_t)sizeof raw)
        return qv_fail(err, QV_ERR_IO, "token: cannot read /dev/urandom");
    char t[QV_TOKEN_HEX];
    for (int i = 0; i < 16; i++)
        snprintf(t + 2 * i, 3, "%02x", raw[i]);
    qv_status r = tx_begin(s, "create a token", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, t);
        sqlite3_bind_int64(st, 2, now_ms);
        sqlite3_bind_int64(st, 3, now_ms + ttl_ms);
        r = run(s, st, "create a token", err);
    }
    r = tx_end(s, r, "create a token", err);
    if (r == QV_OK)
        memcpy(token, t, QV_TOKEN_HEX);
    return r;
}

qv_status qv_store_token_use(qv_store *s, const char *token,
                             const char *pubkey, int64_t now_ms, qv_err *err)
{
    static const char SQL_GET[] =
        "SELECT expires, used FROM tokens WHERE token = ?";
    static const char SQL_USE[] =
        "UPDATE tokens SET used = 1, used_by = ? WHERE token = ?";
    if (!s)
        return qv_fail(err, QV_ERR_INVALID, "scheduler store: no store");
    qv_status r = check_id(token, "token", err);
    if (r == QV_OK)
        r = check_id(pubkey, "public key", err);
    if (r == QV_OK)
        r = tx_begin(s, "use a token", err);
    if (r != QV_OK)
        return r;
    sqlite3_stmt *st;
    r = prep(s, SQL_GET, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, token);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            r = qv_fail(err, QV_ERR_NOT_FOUND, "token: unknown enrollment "
                        "token; ask for a new one with qvac token");
        else if (rc != SQLITE_ROW)
            r = db_fail(s, rc, "use a token", err);
        else if (sqlite3_column_int(st, 1))
            r = qv_fail(err, QV_ERR_INVALID, "token: already used; tokens "
                        "are one-time, ask for a new one with qvac token");
        else if (sqlite3_column_int64(st, 0) <= now_ms)
            r = qv_fail(err, QV_ERR_INVALID, "token: expired; ask for a new "
                        "one with qvac token");
        done(st);
    }
    if (r == QV_OK)
        r = prep(s, SQL_USE, &st, err);
    if (r == QV_OK) {
        bind_str(st, 1, pubkey);
        bind_str(st, 2, token);
        r = run(s, st, "use a token", err);
    }
    return tx_end(s, r, "use a token", err);
}
