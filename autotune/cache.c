/* autotune/cache.c — the autotune cache on SQLite (see cache.h).
 *
 * One database in WAL mode, two tables: `tuned` (best configuration per
 * fingerprint, kernel, source hash and bucket) and `evals` (every
 * configuration measured for a key, to resume a search). Every query is a
 * prepared statement with bound values; every change runs in one
 * BEGIN IMMEDIATE transaction that is rolled back on any error, so a full
 * disk or a lock never leaves half a change behind. Export / import is JSON
 * (jansson); an import is validated as a whole before anything is written.
 */
#include "autotune/cache.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/file.h"

#define QV_TUNE_APP_ID 1903583587 /* 0x71766163, "qvac" */
#define QV_TUNE_SCHEMA 1
#define STR_(x) #x
#define STR(x) STR_(x)

struct qv_tune_cache {
    sqlite3 *db;
    int read_only;
    int busy_ms;
    char path[4096];
};

/* ---- errors ------------------------------------------------------------ */

/* Maps an SQLite result code to a qv_status with a message that names the
 * database and says what to do. */
static qv_status db_fail(const qv_tune_cache *c, int rc, const char *what,
                         qv_err *err)
{
    const char *p = c->path;
    const char *detail = c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return qv_fail(err, QV_ERR_IO,
                       "autotune cache %s: database is locked by another "
                       "process (waited %d ms to %s); stop the other qvac "
                       "using it or use --db PATH", p, c->busy_ms, what);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return qv_fail(err, QV_ERR_CORRUPT,
                       "autotune cache %s: not a qvac cache or corrupt (%s); "
                       "move the file away or use --db PATH", p, detail);
    case SQLITE_READONLY:
        return qv_fail(err, QV_ERR_IO,
                       "autotune cache %s: read-only, cannot %s (%s); make "
                       "it writable or use --db PATH", p, what, detail);
    case SQLITE_FULL:
        return qv_fail(err, QV_ERR_IO,
                       "autotune cache %s: disk full, cannot %s (nothing "
                       "was written); free some space and retry", p, what);
    case SQLITE_NOMEM:
        return qv_fail(err, QV_ERR_NOMEM, "autotune cache %s: out of memory "
                       "trying to %s", p, what);
    case SQLITE_CANTOPEN:
        return qv_fail(err, QV_ERR_IO,
                       "autotune cache %s: cannot open (%s); check the "
                       "folder's permissions or use --db PATH", p, detail);
    default:
        return qv_fail(err, QV_ERR_IO, "autotune cache %s: cannot %s: %s",
                       p, what, detail);
    }
}

static qv_status prep(qv_tune_cache *c, const char *sql, sqlite3_stmt **st,
                      qv_err *err)
{
    *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        qv_status s = db_fail(c, rc, "prepare a query", err);
        sqlite3_finalize(*st);
        *st = NULL;
        return s;
    }
    return QV_OK;
}

/* ---- transactions ------------------------------------------------------ */

static void tx_rollback(qv_tune_cache *c)
{
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

static qv_status tx_begin(qv_tune_cache *c, const char *what, qv_err *err)
{
    if (c->read_only)
        return qv_fail(err, QV_ERR_IO,
                       "autotune cache %s: opened read-only, cannot %s; "
                       "open it writable or use --db PATH", c->path, what);
    int rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    return rc == SQLITE_OK ? QV_OK : db_fail(c, rc, what, err);
}

/* Commits when s is QV_OK, else rolls back; returns the final status. */
static qv_status tx_end(qv_tune_cache *c, qv_status s, const char *what,
                        qv_err *err)
{
    if (s == QV_OK) {
        int rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            s = db_fail(c, rc, what, err);
    }
    if (s != QV_OK)
        tx_rollback(c);
    return s;
}

/* ---- validation -------------------------------------------------------- */

static int terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static int is_hex16(const char *s)
{
    for (int i = 0; i < 16; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
              (ch >= 'A' && ch <= 'F')))
            return 0;
    }
    return s[16] == '\0';
}

static int key_ok(const qv_tune_key *k)
{
    return k && terminated(k->fingerprint, sizeof k->fingerprint) &&
           terminated(k->kernel, sizeof k->kernel) &&
           terminated(k->src_hash, sizeof k->src_hash) &&
           terminated(k->bucket, sizeof k->bucket);
}

/* The first value problem of an entry whose strings are terminated:
 * *field names the field, the return value the rule; NULL when fine. */
static const char *entry_problem(const qv_tune_entry *e, const char **field)
{
#define BAD(f, why) do { *field = f; return why; } while (0)
    if (!is_hex16(e->key.fingerprint)) BAD("fingerprint", "must be 16 hex digits");
    if (!e->key.kernel[0]) BAD("kernel", "must not be empty");
    if (!is_hex16(e->key.src_hash)) BAD("src_hash", "must be 16 hex digits");
    if (!e->key.bucket[0]) BAD("bucket", "must not be empty");
    if (!isfinite(e->median_ns) || e->median_ns <= 0)
        BAD("median_ns", "must be a positive number");
    /* 0: the default configuration failed or was not measured */
    if (!isfinite(e->default_ns) || e->default_ns < 0)
        BAD("default_ns", "must be a number >= 0 (0: the default failed)");
    if (!isfinite(e->gflops) || e->gflops < 0)
        BAD("gflops", "must be a number >= 0");
    if (e->evals < 1) BAD("evals", "must be an integer >= 1");
    if (e->failures < 0) BAD("failures", "must be an integer >= 0");
    if (e->created_at < 0) BAD("created_at", "must be an integer >= 0");
    return NULL;
#undef BAD
}

static int entry_strings_ok(const qv_tune_entry *e)
{
    return key_ok(&e->key) && terminated(e->config, sizeof e->config) &&
           terminated(e->strategy, sizeof e->strategy) &&
           terminated(e->version, sizeof e->version) &&
           terminated(e->backend, sizeof e->backend) &&
           terminated(e->vendor, sizeof e->vendor) &&
           terminated(e->device_name, sizeof e->device_name);
}

/* ---- open / close ------------------------------------------------------ */

/* mkdir -p of the folder holding path, mode 0700. */
static qv_status ensure_dir(const char *path, qv_err *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return QV_OK;
    *slash = '\0';
    for (char *p = buf + 1;; p++) {
        int last = (*p == '\0');
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        struct stat sb;
        if (mkdir(buf, 0700) != 0 && errno != EEXIST &&
            !(stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode)))
            return qv_fail(err, QV_ERR_IO,
                           "autotune cache %s: cannot create folder %s: %s; "
                           "use --db PATH", path, buf, strerror(errno));
        if (last)
            return QV_OK;
        *p = '/';
    }
}

static qv_status pragma_int(qv_tune_cache *c, const char *sql, int *v,
                            qv_err *err)
{
    sqlite3_stmt *st;
    qv_status s = prep(c, sql, &st, err);
    if (s != QV_OK)
        return s;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int(st, 0);
    else
        s = db_fail(c, rc, "read the database header", err);
    sqlite3_finalize(st);
    return s;
}

/* Recognises a qvac cache; *fresh = 1 for an empty database. */
static qv_status check_identity(qv_tune_cache *c, int *fresh, qv_err *err)
{
    int app = 0, ver = 0, tables = 0;
    qv_status s = pragma_int(c, "PRAGMA application_id", &app, err);
    if (s == QV_OK)
        s = pragma_int(c, "PRAGMA user_version", &ver, err);
    if (s == QV_OK)
        s = pragma_int(c, "SELECT count(*) FROM sqlite_master", &tables, err);
    if (s != QV_OK)
        return s;
    if ((app != 0 && app != QV_TUNE_APP_ID) || (app == 0 && tables > 0))
        return qv_fail(err, QV_ERR_CORRUPT,
                       "autotune cache %s: not a qvac cache (another "
                       "program's database); move the file away or use "
                       "--db PATH", c->path);
    if (ver > QV_TUNE_SCHEMA)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "autotune cache %s: written by a newer qvac (schema "
                       "%d, this one knows %d); upgrade or use --db PATH",
                       c->path, ver, QV_TUNE_SCHEMA);
    *fresh = (app == 0);
    if (*fresh && c->read_only)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "autotune cache %s: empty, not a qvac cache; open it "
                       "writable once or use --db PATH", c->path);
    return QV_OK;
}

static const char SCHEMA_SQL[] =
    "CREATE TABLE IF NOT EXISTS tuned ("
    " fingerprint TEXT NOT NULL, kernel TEXT NOT NULL,"
    " src_hash TEXT NOT NULL, bucket TEXT NOT NULL, config TEXT NOT NULL,"
    " median_ns REAL NOT NULL, default_ns REAL NOT NULL,"
    " gflops REAL NOT NULL, evals INTEGER NOT NULL,"
    " failures INTEGER NOT NULL, strategy TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, version TEXT NOT NULL,"
    " backend TEXT NOT NULL, vendor TEXT NOT NULL,"
    " device_name TEXT NOT NULL,"
    " PRIMARY KEY (fingerprint, kernel, src_hash, bucket));"
    "CREATE INDEX IF NOT EXISTS tuned_similar"
    " ON tuned (kernel, bucket, src_hash, backend, vendor);"
    "CREATE TABLE IF NOT EXISTS evals ("
    " fingerprint TEXT NOT NULL, kernel TEXT NOT NULL,"
    " src_hash TEXT NOT NULL, bucket TEXT NOT NULL, config TEXT NOT NULL,"
    " ok INTEGER NOT NULL, median_ns REAL, reason TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " PRIMARY KEY (fingerprint, kernel, src_hash, bucket, config));"
    "PRAGMA application_id = " STR(QV_TUNE_APP_ID) ";"
    "PRAGMA user_version = " STR(QV_TUNE_SCHEMA) ";";

static qv_status setup(qv_tune_cache *c, qv_err *err)
{
    int fresh = 0, rc;
    sqlite3_busy_timeout(c->db, c->busy_ms);
    qv_status s = check_identity(c, &fresh, err);
    if (s != QV_OK || c->read_only)
        return s;
    rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(c, rc, "configure the database", err);
    if (!fresh)
        return QV_OK;
    s = tx_begin(c, "create the database", err);
    if (s != QV_OK)
        return s;
    rc = sqlite3_exec(c->db, SCHEMA_SQL, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        s = db_fail(c, rc, "create the database", err);
    return tx_end(c, s, "create the database", err);
}

qv_status qv_tune_cache_open(const char *path, int read_only, int busy_ms,
                             qv_tune_cache **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "autotune cache: no output");
    *out = NULL;
    if (!path || !path[0] || strlen(path) >= sizeof((qv_tune_cache *)0)->path)
        return qv_fail(err, QV_ERR_INVALID,
                       "autotune cache: empty or overlong path");
    struct stat sb;
    if (read_only && stat(path, &sb) != 0)
        return qv_fail(err, QV_ERR_NOT_FOUND, "autotune cache %s: %s; run "
                       "qvac tune first or use --db PATH", path,
                       strerror(errno));
    if (!read_only) {
        qv_status s = ensure_dir(path, err);
        if (s != QV_OK)
            return s;
    }
    qv_tune_cache *c = calloc(1, sizeof *c);
    if (!c)
        return qv_fail(err, QV_ERR_NOMEM, "autotune cache %s: out of memory",
                       path);
    snprintf(c->path, sizeof c->path, "%s", path);
    c->read_only = read_only != 0;
    c->busy_ms = busy_ms < 0 ? 0 : busy_ms;
    int flags = read_only ? SQLITE_OPEN_READONLY
                          : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    qv_status s = rc == SQLITE_OK ? setup(c, err) : db_fail(c, rc, "open", err);
    if (s != QV_OK) {
        qv_tune_cache_destroy(&c);
        return s;
    }
    *out = c;
    return QV_OK;
}

void qv_tune_cache_destroy(qv_tune_cache **cache)
{
    if (!cache || !*cache)
        return;
    sqlite3_close_v2((*cache)->db);
    free(*cache);
    *cache = NULL;
}

qv_status qv_tune_cache_default_path(char *buf, size_t n, qv_err *err)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    int w;
    if (!buf || n == 0)
        return qv_fail(err, QV_ERR_INVALID, "autotune cache: no buffer");
    buf[0] = '\0';
    if (xdg && xdg[0] == '/')
        w = snprintf(buf, n, "%s/qvac/tune.db", xdg);
    else if (home && home[0])
        w = snprintf(buf, n, "%s/.local/share/qvac/tune.db", home);
    else
        return qv_fail(err, QV_ERR_NOT_FOUND,
                       "autotune cache: neither XDG_DATA_HOME nor HOME is "
                       "set; set one or use --db PATH");
    if (w < 0 || (size_t)w >= n) {
        buf[0] = '\0';
        return qv_fail(err, QV_ERR_INVALID,
                       "autotune cache: default path too long for %zu bytes; "
                       "use --db PATH", n);
    }
    return QV_OK;
}

/* ---- rows -------------------------------------------------------------- */

#define ENTRY_COLS                                                          \
    "fingerprint, kernel, src_hash, bucket, config, median_ns, default_ns," \
    " gflops, evals, failures, strategy, created_at, version, backend,"     \
    " vendor, device_name"
#define KEY_WHERE "fingerprint = ?1 AND kernel = ?2 AND src_hash = ?3 AND bucket = ?4"

static void col_text(char *dst, size_t size, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", t ? (const char *)t : "");
}

static void read_entry(sqlite3_stmt *st, qv_tune_entry *e)
{
    memset(e, 0, sizeof *e);
    col_text(e->key.fingerprint, sizeof e->key.fingerprint, st, 0);
    col_text(e->key.kernel, sizeof e->key.kernel, st, 1);
    col_text(e->key.src_hash, sizeof e->key.src_hash, st, 2);
    col_text(e->key.bucket, sizeof e->key.bucket, st, 3);
    col_text(e->config, sizeof e->config, st, 4);
    e->median_ns = sqlite3_column_double(st, 5);
    e->default_ns = sqlite3_column_double(st, 6);
    e->gflops = sqlite3_column_double(st, 7);
    e->evals = sqlite3_column_int(st, 8);
    e->failures = sqlite3_column_int(st, 9);
    col_text(e->strategy, sizeof e->strategy, st, 10);
    e->created_at = sqlite3_column_int64(st, 11);
    col_text(e->version, sizeof e->version, st, 12);
    col_text(e->backend, sizeof e->backend, st, 13);
    col_text(e->vendor, sizeof e->vendor, st, 14);
    col_text(e->device_name, sizeof e->device_name, st, 15);
}

static void bind_str(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
}

static void bind_key(sqlite3_stmt *st, const qv_tune_key *k)
{
    bind_str(st, 1, k->fingerprint);
    bind_str(st, 2, k->kernel);
    bind_str(st, 3, k->src_hash);
    bind_str(st, 4, k->bucket);
}

/* Steps st to the end, collecting every row as an entry. */
static qv_status collect(qv_tune_cache *c, sqlite3_stmt *st,
                         qv_tune_entry **out, size_t *n, qv_err *err)
{
    qv_tune_entry *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            qv_tune_entry *nv = realloc(v, ncap * sizeof *nv);
            if (!nv) {
                free(v);
                return qv_fail(err, QV_ERR_NOMEM, "autotune cache %s: out "
                               "of memory listing entries", c->path);
            }
            v = nv;
            cap = ncap;
        }
        read_entry(st, &v[len++]);
    }
    if (rc != SQLITE_DONE) {
        free(v);
        return db_fail(c, rc, "read entries", err);
    }
    *out = v;
    *n = len;
    return QV_OK;
}

/* Prepares sql, lets bind fill it, and collects the rows. */
static qv_status query_entries(qv_tune_cache *c, const char *sql,
                               const char *const *args, int nargs,
                               qv_tune_entry **out, size_t *n, qv_err *err)
{
    sqlite3_stmt *st;
    qv_status s = prep(c, sql, &st, err);
    if (s != QV_OK)
        return s;
    for (int i = 0; i < nargs; i++)
        bind_str(st, i + 1, args[i]);
    s = collect(c, st, out, n, err);
    sqlite3_finalize(st);
    return s;
}

/* ---- lookups ----------------------------------------------------------- */

qv_status qv_tune_cache_get(qv_tune_cache *c, const qv_tune_key *key,
                            qv_tune_entry *out, qv_err *err)
{
    if (!c || !out || !key_ok(key))
        return qv_fail(err, QV_ERR_INVALID, "autotune cache get: bad key");
    qv_tune_entry *v = NULL;
    size_t n = 0;
    const char *args[4] = {key->fingerprint, key->kernel, key->src_hash,
                           key->bucket};
    qv_status s = query_entries(c, "SELECT " ENTRY_COLS " FROM tuned WHERE "
                                KEY_WHERE, args, 4, &v, &n, err);
    if (s == QV_OK && n == 0)
        s = qv_fail(err, QV_ERR_NOT_FOUND, "autotune cache %s: no entry for "
                    "%s on %s (%s, source %s)", c->path, key->kernel,
                    key->fingerprint, key->bucket, key->src_hash);
    if (s == QV_OK)
        *out = v[0];
    free(v);
    return s;
}

static int out_ok(void *out, size_t *n)
{
    return out && n;
}

static void out_clear(qv_tune_entry **out, size_t *n)
{
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
}

qv_status qv_tune_cache_buckets(qv_tune_cache *c, const char *fingerprint,
                                const char *kernel, const char *src_hash,
                                qv_tune_entry **out, size_t *n, qv_err *err)
{
    out_clear(out, n);
    if (!c || !fingerprint || !kernel || !src_hash || !out_ok(out, n))
        return qv_fail(err, QV_ERR_INVALID, "autotune cache buckets: bad "
                       "argument");
    const char *args[3] = {fingerprint, kernel, src_hash};
    return query_entries(c, "SELECT " ENTRY_COLS " FROM tuned WHERE "
                         "fingerprint = ?1 AND kernel = ?2 AND src_hash = ?3 "
                         "ORDER BY bucket", args, 3, out, n, err);
}

qv_status qv_tune_cache_similar(qv_tune_cache *c, const qv_tune_entry *like,
                                qv_tune_entry **out, size_t *n, qv_err *err)
{
    out_clear(out, n);
    if (!c || !like || !entry_strings_ok(like) || !out_ok(out, n))
        return qv_fail(err, QV_ERR_INVALID, "autotune cache similar: bad "
                       "argument");
    const char *args[6] = {like->key.fingerprint, like->backend, like->vendor,
                           like->key.kernel, like->key.bucket,
                           like->key.src_hash};
    return query_entries(c, "SELECT " ENTRY_COLS " FROM tuned WHERE "
                         "fingerprint <> ?1 AND backend = ?2 AND vendor = ?3 "
                         "AND kernel = ?4 AND bucket = ?5 AND src_hash = ?6 "
                         "ORDER BY median_ns, fingerprint", args, 6, out, n,
                         err);
}

qv_status qv_tune_cache_list(qv_tune_cache *c,
                             const char *(*current_src)(const char *backend,
                                                        const char *kernel,
                                                        void *user),
                             void *user, qv_tune_entry **out, size_t *n,
                             qv_err *err)
{
    out_clear(out, n);
    if (!c || !out_ok(out, n))
        return qv_fail(err, QV_ERR_INVALID, "autotune cache list: bad "
                       "argument");
    qv_status s = query_entries(c, "SELECT " ENTRY_COLS " FROM tuned ORDER BY "
                                "fingerprint, kernel, src_hash, bucket", NULL,
                                0, out, n, err);
    if (s != QV_OK || !current_src)
        return s;
    for (size_t i = 0; i < *n; i++) {
        qv_tune_entry *e = &(*out)[i];
        const char *cur = current_src(e->backend, e->key.kernel, user);
        e->stale = cur && strcmp(cur, e->key.src_hash) != 0;
    }
    return QV_OK;
}

/* ---- put --------------------------------------------------------------- */

static qv_status check_entry(const qv_tune_cache *c, const qv_tune_entry *e,
                             qv_err *err)
{
    const char *field = "";
    const char *why = "must be a NUL-terminated string";
    if (!entry_strings_ok(e) || (why = entry_problem(e, &field)) != NULL)
        return qv_fail(err, QV_ERR_INVALID, "autotune cache %s: entry field "
                       "'%s' %s", c->path, field, why);
    return QV_OK;
}

/* The put itself, inside the caller's transaction. */
static qv_status put_row(qv_tune_cache *c, const qv_tune_entry *e, int force,
                         int *stored, qv_err *err)
{
    sqlite3_stmt *st;
    qv_status s = prep(c, "SELECT median_ns FROM tuned WHERE " KEY_WHERE,
                       &st, err);
    if (s != QV_OK)
        return s;
    bind_key(st, &e->key);
    int rc = sqlite3_step(st);
    int better = rc == SQLITE_ROW && sqlite3_column_double(st, 0) < e->median_ns;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(c, rc, "read an entry", err);
    *stored = 0;
    if (better && !force)
        return QV_OK;
    s = prep(c, "INSERT OR REPLACE INTO tuned (" ENTRY_COLS ") VALUES (?1, "
             "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
             "?16)", &st, err);
    if (s != QV_OK)
        return s;
    bind_key(st, &e->key);
    bind_str(st, 5, e->config);
    sqlite3_bind_double(st, 6, e->median_ns);
    sqlite3_bind_double(st, 7, e->default_ns);
    sqlite3_bind_double(st, 8, e->gflops);
    sqlite3_bind_int(st, 9, e->evals);
    sqlite3_bind_int(st, 10, e->failures);
    bind_str(st, 11, e->strategy);
    sqlite3_bind_int64(st, 12, e->created_at);
    bind_str(st, 13, e->version);
    bind_str(st, 14, e->backend);
    bind_str(st, 15, e->vendor);
    bind_str(st, 16, e->device_name);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(c, rc, "store an entry", err);
    *stored = 1;
    return QV_OK;
}

qv_status qv_tune_cache_put(qv_tune_cache *c, const qv_tune_entry *e,
                            int force, int *stored, qv_err *err)
{
    int dummy = 0;
    if (!stored)
        stored = &dummy;
    *stored = 0;
    if (!c || !e)
        return qv_fail(err, QV_ERR_INVALID, "autotune cache put: no entry");
    qv_status s = check_entry(c, e, err);
    if (s == QV_OK)
        s = tx_begin(c, "store an entry", err);
    if (s != QV_OK)
        return s;
    s = put_row(c, e, force, stored, err);
    s = tx_end(c, s, "store an entry", err);
    if (s != QV_OK)
        *stored = 0;
    return s;
}

/* ---- evaluations ------------------------------------------------------- */

qv_status qv_tune_cache_record_eval(qv_tune_cache *c, const qv_tune_key *key,
                                    const qv_tune_eval *ev, qv_err *err)
{
    if (!c || !key_ok(key) || !ev || !terminated(ev->config, sizeof ev->config)
        || !terminated(ev->reason, sizeof ev->reason))
        return qv_fail(err, QV_ERR_INVALID, "autotune cache record_eval: bad "
                       "key or evaluation");
    qv_status s = tx_begin(c, "record an evaluation", err);
    if (s != QV_OK)
        return s;
    sqlite3_stmt *st;
    s = prep(c, "INSERT OR REPLACE INTO evals (fingerprint, kernel, src_hash,"
             " bucket, config, ok, median_ns, reason, created_at) VALUES (?1,"
             " ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", &st, err);
    if (s == QV_OK) {
        bind_key(st, key);
        bind_str(st, 5, ev->config);
        sqlite3_bind_int(st, 6, ev->ok ? 1 : 0);
        sqlite3_bind_double(st, 7, isfinite(ev->median_ns) ? ev->median_ns : 0);
        bind_str(st, 8, ev->reason);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)time(NULL));
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
            s = db_fail(c, rc, "record an evaluation", err);
        sqlite3_finalize(st);
    }
    return tx_end(c, s, "record an evaluation", err);
}

qv_status qv_tune_cache_load_evals(qv_tune_cache *c, const qv_tune_key *key,
                                   qv_tune_eval **out, size_t *n, qv_err *err)
{
    if (out) *out = NULL;
    if (n) *n = 0;
    if (!c || !key_ok(key) || !out || !n)
        return qv_fail(err, QV_ERR_INVALID, "autotune cache load_evals: bad "
                       "argument");
    sqlite3_stmt *st;
    qv_status s = prep(c, "SELECT config, ok, median_ns, reason FROM evals "
                       "WHERE " KEY_WHERE " ORDER BY rowid", &st, err);
    if (s != QV_OK)
        return s;
    bind_key(st, key);
    qv_tune_eval *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            qv_tune_eval *nv = realloc(v, ncap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
            cap = ncap;
        }
        qv_tune_eval *ev = &v[len++];
        memset(ev, 0, sizeof *ev);
        col_text(ev->config, sizeof ev->config, st, 0);
        ev->ok = sqlite3_column_int(st, 1);
        ev->median_ns = sqlite3_column_double(st, 2);
        col_text(ev->reason, sizeof ev->reason, st, 3);
    }
    if (rc == SQLITE_ROW)
        s = qv_fail(err, QV_ERR_NOMEM, "autotune cache %s: out of memory "
                    "loading evaluations", c->path);
    else if (rc != SQLITE_DONE)
        s = db_fail(c, rc, "load evaluations", err);
    sqlite3_finalize(st);
    if (s != QV_OK) {
        free(v);
        return s;
    }
    *out = v;
    *n = len;
    return QV_OK;
}

static qv_status delete_key(qv_tune_cache *c, const char *sql,
                            const qv_tune_key *key, qv_err *err)
{
    sqlite3_stmt *st;
    qv_status s = prep(c, sql, &st, err);
    if (s != QV_OK)
        return s;
    bind_key(st, key);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? QV_OK : db_fail(c, rc, "forget a key", err);
}

qv_status qv_tune_cache_forget(qv_tune_cache *c, const qv_tune_key *key,
                               qv_err *err)
{
    if (!c || !key_ok(key))
        return qv_fail(err, QV_ERR_INVALID, "autotune cache forget: bad key");
    qv_status s = tx_begin(c, "forget a key", err);
    if (s != QV_OK)
        return s;
    s = delete_key(c, "DELETE FROM evals WHERE " KEY_WHERE, key, err);
    if (s == QV_OK)
        s = delete_key(c, "DELETE FROM tuned WHERE " KEY_WHERE, key, err);
    return tx_end(c, s, "forget a key", err);
}

/* ---- export / import --------------------------------------------------- */

enum { F_STR, F_NUM, F_INT, F_I64 };

typedef struct field {
    const char *name;
    int kind;
    size_t off;
    size_t size; /* strings: buffer size */
} field;

#define FS(n, m) {n, F_STR, offsetof(qv_tune_entry, m), \
                  sizeof(((qv_tune_entry *)0)->m)}
#define FN(n, k, m) {n, k, offsetof(qv_tune_entry, m), 0}
static const field FIELDS[] = {
    FS("fingerprint", key.fingerprint), FS("kernel", key.kernel),
    FS("src_hash", key.src_hash),       FS("bucket", key.bucket),
    FS("config", config),               FN("median_ns", F_NUM, median_ns),
    FN("default_ns", F_NUM, default_ns), FN("gflops", F_NUM, gflops),
    FN("evals", F_INT, evals),          FN("failures", F_INT, failures),
    FS("strategy", strategy),           FN("created_at", F_I64, created_at),
    FS("version", version),             FS("backend", backend),
    FS("vendor", vendor),               FS("device_name", device_name),
};
#define N_FIELDS (sizeof FIELDS / sizeof FIELDS[0])

static json_t *entry_json(const qv_tune_entry *e)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < N_FIELDS; i++) {
        const char *p = (const char *)e + FIELDS[i].off;
        json_t *v = NULL;
        switch (FIELDS[i].kind) {
        case F_STR: v = json_string(p); break;
        case F_NUM: v = json_real(*(const double *)p); break;
        case F_INT: v = json_integer(*(const int *)p); break;
        default: v = json_integer(*(const int64_t *)p); break;
        }
        if (!v || json_object_set_new(o, FIELDS[i].name, v) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

qv_status qv_tune_cache_export(qv_tune_cache *c, const char *path,
                               size_t *n_written, qv_err *err)
{
    if (n_written)
        *n_written = 0;
    if (!c || !path)
        return qv_fail(err, QV_ERR_INVALID, "autotune cache export: no path");
    qv_tune_entry *v = NULL;
    size_t n = 0;
    qv_status s = qv_tune_cache_list(c, NULL, NULL, &v, &n, err);
    if (s != QV_OK)
        return s;
    json_t *arr = json_array();
    json_t *root = json_pack("{s:s, s:i, s:o}", "format", "qvac-tune",
                             "version", 1, "entries", arr);
    for (size_t i = 0; root && i < n; i++)
        if (json_array_append_new(arr, entry_json(&v[i])) != 0) {
            json_decref(root);
            root = NULL;
        }
    free(v);
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (!text)
        return qv_fail(err, QV_ERR_NOMEM, "export %s: out of memory", path);
    qv_file_part part = {text, strlen(text)};
    s = qv_file_write_atomic(path, "tuning export", &part, 1, err);
    free(text);
    if (s == QV_OK && n_written)
        *n_written = n;
    return s;
}

/* Fills e from one JSON entry; on a problem returns the rule and sets
 * *fname. */
static const char *parse_entry(const json_t *o, qv_tune_entry *e,
                               const char **fname)
{
    memset(e, 0, sizeof *e);
    if (!json_is_object(o)) {
        *fname = "(entry)";
        return "must be an object";
    }
    for (size_t i = 0; i < N_FIELDS; i++) {
        const field *f = &FIELDS[i];
        const json_t *v = json_object_get(o, f->name);
        char *p = (char *)e + f->off;
        *fname = f->name;
        if (!v)
            return "is missing";
        if (f->kind == F_STR) {
            if (!json_is_string(v))
                return "must be a string";
            size_t len = json_string_length(v);
            const char *s = json_string_value(v);
            if (len >= f->size || strlen(s) != len)
                return "is too long or holds a NUL byte";
            memcpy(p, s, len + 1);
        } else if (f->kind == F_NUM) {
            if (!json_is_number(v))
                return "must be a number";
            *(double *)p = json_number_value(v);
        } else {
            if (!json_is_integer(v))
                return "must be an integer";
            json_int_t x = json_integer_value(v);
            if (f->kind == F_INT && (x < INT_MIN || x > INT_MAX))
                return "is out of range";
            if (f->kind == F_INT)
                *(int *)p = (int)x;
            else
                *(int64_t *)p = (int64_t)x;
        }
    }
    return entry_problem(e, fname);
}

/* Loads and validates the whole file into *out (malloc'd). */
static qv_status load_import(const char *path, qv_tune_entry **out,
                             size_t *n, qv_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return qv_fail(err, errno == ENOENT ? QV_ERR_NOT_FOUND : QV_ERR_IO,
                       "import %s: %s", path, strerror(errno));
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root)
        return qv_fail(err, QV_ERR_CORRUPT, "%s: not JSON (line %d: %s)",
                       path, je.line, je.text);
    const json_t *fmt = json_object_get(root, "format");
    const json_t *ver = json_object_get(root, "version");
    const json_t *arr = json_object_get(root, "entries");
    qv_status s = QV_OK;
    if (!json_is_object(root) || !json_is_string(fmt) ||
        strcmp(json_string_value(fmt), "qvac-tune") != 0)
        s = qv_fail(err, QV_ERR_CORRUPT, "%s: not a qvac-tune export "
                    "(\"format\" must be \"qvac-tune\")", path);
    else if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        s = qv_fail(err, QV_ERR_CORRUPT, "%s: unsupported qvac-tune version "
                    "(this qvac reads version 1)", path);
    else if (!json_is_array(arr))
        s = qv_fail(err, QV_ERR_CORRUPT, "%s: \"entries\" must be an array",
                    path);
    size_t cnt = s == QV_OK ? json_array_size(arr) : 0;
    qv_tune_entry *v = s == QV_OK ? calloc(cnt ? cnt : 1, sizeof *v) : NULL;
    if (s == QV_OK && !v)
        s = qv_fail(err, QV_ERR_NOMEM, "import %s: out of memory", path);
    for (size_t i = 0; s == QV_OK && i < cnt; i++) {
        const char *fname = "";
        const char *why = parse_entry(json_array_get(arr, i), &v[i], &fname);
        if (why)
            s = qv_fail(err, QV_ERR_CORRUPT, "%s: entry %zu: field '%s' %s",
                        path, i + 1, fname, why);
    }
    json_decref(root);
    if (s != QV_OK) {
        free(v);
        return s;
    }
    *out = v;
    *n = cnt;
    return QV_OK;
}

qv_status qv_tune_cache_import(qv_tune_cache *c, const char *path,
                               size_t *n_stored, size_t *n_skipped,
                               qv_err *err)
{
    size_t stored_n = 0, skipped_n = 0, n = 0;
    if (n_stored) *n_stored = 0;
    if (n_skipped) *n_skipped = 0;
    if (!c || !path)
        return qv_fail(err, QV_ERR_INVALID, "autotune cache import: no path");
    qv_tune_entry *v = NULL;
    qv_status s = load_import(path, &v, &n, err);
    if (s == QV_OK)
        s = tx_begin(c, "import entries", err);
    if (s != QV_OK) {
        free(v);
        return s;
    }
    for (size_t i = 0; s == QV_OK && i < n; i++) {
        int stored = 0;
        s = put_row(c, &v[i], 0, &stored, err);
        if (stored)
            stored_n++;
        else
            skipped_n++;
    }
    free(v);
    s = tx_end(c, s, "import entries", err);
    if (s == QV_OK) {
        if (n_stored) *n_stored = stored_n;
        if (n_skipped) *n_skipped = skipped_n;
    }
    return s;
}
