/* formats/dataset.c — see dataset.h and docs/formats.md. */
#include "formats/dataset.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/chat.h"
#include "formats/tokenizer.h"
#include "formats/vocab.h"

struct qv_dataset {
    char *name;
    int packed;
    int32_t bos, eos, pad; /* bos < 0: none is added */
    /* while loading */
    qv_dataset_opts o;
    int32_t *special;      /* the vocabulary's special tokens, longest first */
    size_t n_special;
    uint64_t n_long;       /* examples longer than o.max_tokens */
    size_t n_ex;       /* examples */
    size_t *off;       /* n_ex + 1 offsets into tok / mask */
    int32_t *tok;      /* all examples back to back */
    uint8_t *mask;     /* mask[i] = 1: token i is a training target */
    size_t n_tok, n_trained;
    size_t cap_tok, cap_ex;
    qv_dataset_issue issues[QV_DATASET_MAX_ISSUES];
    size_t n_issues_stored;
    uint64_t n_issues;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void add_issue(qv_dataset *ds, uint64_t line, const char *fmt, ...);
static void ds_loaded(qv_dataset *ds);

/* ---- hashing: splitmix64's finaliser (self-contained, so the fuzz
 * build needs no xxHash) ------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t epoch_key(uint64_t seed, uint64_t epoch)
{
    return mix64(seed ^ mix64(epoch ^ 0x5851f42d4c957f2dull));
}

/* A bijection of [0, n) keyed by key: a 4-round Feistel network on the
 * smallest even-bit power of two >= n, cycle-walked back into [0, n). */
static uint64_t permute(uint64_t i, uint64_t n, uint64_t key)
{
    if (n <= 1)
        return 0;
    unsigned bits = 1;
    while (bits < 62 && (1ull << bits) < n)
        ++bits;
    if (bits & 1)
        ++bits;
    unsigned h = bits / 2;
    uint64_t m = (1ull << h) - 1;
    uint64_t x = i;
    do {
        uint64_t l = x >> h, r = x & m;
        for (uint64_t round = 0; round < 4; ++round) {
            uint64_t f = mix64(key ^ (round * 0xd6e8feb86659fd93ull) ^ r) & m;
            uint64_t nl = r;
            r = l ^ f;
            l = nl;
        }
        x = (l << h) | r;
    } while (x >= n);
    return x;
}

/* ---- building ------------------------------------------------------- */

static qv_dataset *ds_new(const char *name, qv_err *err)
{
    qv_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory", name);
        return NULL;
    }
    ds->name = strdup(name);
    ds->cap_ex = 16;
    ds->off = malloc(ds->cap_ex * sizeof *ds->off);
    if (!ds->name || !ds->off) {
        qv_dataset_free(ds);
        qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory", name);
        return NULL;
    }
    ds->off[0] = 0;
    ds->bos = QV_TOK_BOS;
    ds->eos = ds->pad = QV_TOK_EOS;
    ds->o.chat = -1;
    return ds;
}

/* Room for one more example of len tokens. */
static qv_status ds_reserve(qv_dataset *ds, size_t len, qv_err *err)
{
    if (len > SIZE_MAX / 8 - ds->n_tok)
        return qv_fail(err, QV_ERR_NOMEM, "dataset %s: too many tokens", ds->name);
    size_t need = ds->n_tok + len;
    if (need > ds->cap_tok) {
        size_t cap = ds->cap_tok ? ds->cap_tok : 1024;
        while (cap < need)
            cap = cap > SIZE_MAX / 16 ? need : cap * 2;
        int32_t *t = realloc(ds->tok, cap * sizeof *t);
        if (!t)
            return qv_fail(err, QV_ERR_NOMEM,
                           "dataset %s: out of memory for %zu tokens", ds->name, cap);
        ds->tok = t;
        uint8_t *m = realloc(ds->mask, cap);
        if (!m)
            return qv_fail(err, QV_ERR_NOMEM,
                           "dataset %s: out of memory for %zu tokens", ds->name, cap);
        ds->mask = m;
        ds->cap_tok = cap;
    }
    if (ds->n_ex + 2 > ds->cap_ex) {
        if (ds->cap_ex > SIZE_MAX / (2 * sizeof *ds->off))
            return qv_fail(err, QV_ERR_NOMEM, "dataset %s: too many examples", ds->name);
        size_t cap = ds->cap_ex * 2;
        size_t *o = realloc(ds->off, cap * sizeof *o);
        if (!o)
            return qv_fail(err, QV_ERR_NOMEM,
                           "dataset %s: out of memory for %zu examples", ds->name, cap);
        ds->off = o;
        ds->cap_ex = cap;
    }
    return QV_OK;
}

static void ds_put(qv_dataset *ds, int32_t t, uint8_t m)
{
    ds->tok[ds->n_tok] = t;
    ds->mask[ds->n_tok] = m;
    ds->n_tok++;
    if (m)
        ds->n_trained++;
}

static void ds_end_example(qv_dataset *ds)
{
    ds->off[++ds->n_ex] = ds->n_tok;
}

/* Appends a copy of tokens [a, b) of src as one example. */
static qv_status ds_copy_range(qv_dataset *dst, const qv_dataset *src, size_t a,
                               size_t b, qv_err *err)
{
    qv_status s = ds_reserve(dst, b - a, err);
    if (s != QV_OK)
        return s;
    memcpy(dst->tok + dst->n_tok, src->tok + a, (b - a) * sizeof *src->tok);
    memcpy(dst->mask + dst->n_tok, src->mask + a, b - a);
    for (size_t i = a; i < b; ++i)
        dst->n_trained += src->mask[i];
    dst->n_tok += b - a;
    ds_end_example(dst);
    return QV_OK;
}

/* ---- tokenizing an example ------------------------------------------
 * An example is built as runs of raw text (bytes with a trained flag each)
 * between special tokens. A run is tokenized in one piece, as llama.cpp
 * tokenizes the text between two special tokens (so the tokens are those
 * of the whole string, whatever the mask), and each token is trained when
 * any of its bytes is. Special tokens come only from a chat template's
 * markup, never from user text. */

typedef struct raw_run {
    char *b;
    uint8_t *m;
    size_t n, cap;
} raw_run;

static qv_status run_add(raw_run *r, const char *s, size_t n, uint8_t m,
                         const char *name, qv_err *err)
{
    if (n == 0)
        return QV_OK;
    if (n > SIZE_MAX / 2 - r->n)
        return qv_fail(err, QV_ERR_NOMEM, "dataset %s: example too long", name);
    if (r->n + n > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->n + n)
            cap *= 2;
        char *b = realloc(r->b, cap);
        if (!b)
            return qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory", name);
        r->b = b;
        uint8_t *mm = realloc(r->m, cap);
        if (!mm)
            return qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory", name);
        r->m = mm;
        r->cap = cap;
    }
    memcpy(r->b + r->n, s, n);
    memset(r->m + r->n, m, n);
    r->n += n;
    return QV_OK;
}

static void run_free(raw_run *r)
{
    free(r->b);
    free(r->m);
}

/* Tokenizes the run into the dataset and empties it. */
static qv_status run_flush(qv_dataset *ds, raw_run *r, qv_err *err)
{
    if (r->n == 0)
        return QV_OK;
    const qv_vocab *v = ds->o.vocab;
    qv_status s;
    if (!v) { /* bytes: one token per byte, the byte's own flag */
        if ((s = ds_reserve(ds, r->n, err)))
            return s;
        for (size_t i = 0; i < r->n; i++)
            ds_put(ds, (int32_t)(unsigned char)r->b[i], r->m[i]);
        r->n = 0;
        return QV_OK;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if ((s = qv_vocab_tokenize(v, r->b, r->n, false, false, &ids, &n, err)))
        return qv_err_prefix(err, s, "dataset %s", ds->name);
    if ((s = ds_reserve(ds, n, err))) {
        free(ids);
        return s;
    }
    /* byte offsets from the pieces; an SPM vocabulary puts one space in
     * front that the text does not have */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        qv_vocab_token_to_piece(v, ids[i], true, &len);
        total += len;
    }
    size_t shift = total >= r->n && total - r->n <= 1 ? total - r->n : 0;
    int exact = total == r->n + shift;
    size_t at = 0;
    uint8_t any = 0;
    for (size_t i = 0; i < r->n; i++)
        any |= r->m[i];
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        qv_vocab_token_to_piece(v, ids[i], true, &len);
        uint8_t m = 0;
        if (exact) {
            size_t a = at > shift ? at - shift : 0, b = at + len > shift ? at + len - shift : 0;
            for (size_t j = a; j < b && j < r->n; j++)
                m |= r->m[j];
            at += len;
        } else {
            m = any; /* pieces that do not spell the text: the run's flag */
        }
        ds_put(ds, ids[i], m);
    }
    free(ids);
    r->n = 0;
    return QV_OK;
}

static qv_status put_special(qv_dataset *ds, raw_run *r, int32_t id, uint8_t m,
                             qv_err *err)
{
    qv_status s;
    if ((s = run_flush(ds, r, err)) || (s = ds_reserve(ds, 1, err)))
        return s;
    ds_put(ds, id, m);
    return QV_OK;
}

/* Markup of a chat template: special tokens where their texts occur
 * (longest first, as llama.cpp's tokenizer_st_partition), raw text around
 * them. */
static qv_status put_markup(qv_dataset *ds, raw_run *r, const char *s, size_t n,
                            uint8_t m, qv_err *err)
{
    const qv_vocab *v = ds->o.vocab;
    size_t i = 0, raw = 0;
    qv_status st;
    while (v && i < n) {
        int32_t hit = QV_TOKEN_NULL;
        size_t hl = 0;
        for (size_t k = 0; k < ds->n_special; k++) {
            size_t tl = 0;
            const char *t = qv_vocab_token_text(v, ds->special[k], &tl);
            if (tl && tl <= n - i && !memcmp(s + i, t, tl)) {
                hit = ds->special[k];
                hl = tl;
                break;
            }
        }
        if (hit == QV_TOKEN_NULL) {
            i++;
            continue;
        }
        if ((st = run_add(r, s + raw, i - raw, m, ds->name, err)) ||
            (st = put_special(ds, r, hit, m, err)))
            return st;
        i += hl;
        raw = i;
    }
    return run_add(r, s + raw, n - raw, m, ds->name, err);
}

/* The vocabulary's special tokens, longest text first. */
static int special_cmp(const void *a, const void *b, void *v)
{
    size_t la = 0, lb = 0;
    qv_vocab_token_text(v, *(const int32_t *)a, &la);
    qv_vocab_token_text(v, *(const int32_t *)b, &lb);
    return la < lb ? 1 : la > lb ? -1 : (*(const int32_t *)a > *(const int32_t *)b) -
                                            (*(const int32_t *)a < *(const int32_t *)b);
}

static qv_status list_specials(qv_dataset *ds, qv_err *err)
{
    const qv_vocab *v = ds->o.vocab;
    size_t n = qv_vocab_size(v), k = 0;
    for (size_t i = 0; i < n; i++)
        k += qv_vocab_is_special(v, (int32_t)i) != 0;
    ds->special = malloc((k ? k : 1) * sizeof *ds->special);
    if (!ds->special)
        return qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory", ds->name);
    for (size_t i = 0; i < n; i++)
        if (qv_vocab_is_special(v, (int32_t)i))
            ds->special[ds->n_special++] = (int32_t)i;
    /* insertion sort keeps this self-contained (no qsort_r in C11) */
    for (size_t i = 1; i < ds->n_special; i++)
        for (size_t j = i; j > 0 && special_cmp(&ds->special[j - 1], &ds->special[j],
                                                (void *)v) > 0; j--) {
            int32_t t = ds->special[j];
            ds->special[j] = ds->special[j - 1];
            ds->special[j - 1] = t;
        }
    return QV_OK;
}

/* Ends the example begun at off[n_ex]: an example longer than
 * o.max_tokens is dropped (QV_LONG_SKIP) or cut (QV_LONG_TRUNCATE; dropped
 * when nothing trained is left), counted either way. */
static void ds_finish_example(qv_dataset *ds)
{
    size_t start = ds->off[ds->n_ex], len = ds->n_tok - start;
    size_t max = ds->o.max_tokens;
    if (max && len > max) {
        ds->n_long++;
        size_t keep = ds->o.long_policy == QV_LONG_TRUNCATE ? max : 0;
        size_t trained_kept = 0;
        for (size_t i = start + 1; i < start + keep; i++)
            trained_kept += ds->mask[i];
        if (!trained_kept)
            keep = 0;
        for (size_t i = start + keep; i < ds->n_tok; i++)
            ds->n_trained -= ds->mask[i];
        ds->n_tok = start + keep;
        if (!keep)
            return;
    }
    ds_end_example(ds);
}

static qv_status put_bos(qv_dataset *ds, qv_err *err)
{
    if (ds->bos < 0)
        return QV_OK;
    qv_status s = ds_reserve(ds, 1, err);
    if (!s)
        ds_put(ds, ds->bos, 0);
    return s;
}

/* {"messages": [...]} through the chat template. */
static qv_status put_messages(qv_dataset *ds, json_t *msgs, uint64_t line, int *bad,
                              qv_err *err)
{
    *bad = 1;
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        add_issue(ds, line, "\"messages\" must be a non-empty array of {\"role\", "
                            "\"content\"} objects");
        return QV_OK;
    }
    if (ds->o.chat < 0) {
        add_issue(ds, line, "\"messages\" needs a chat template: the model names "
                            "none qvac knows; pass --chat-template NAME (%s)",
                  qv_chat_names());
        return QV_OK;
    }
    size_t n = json_array_size(msgs);
    qv_chat_msg *m = calloc(n, sizeof *m);
    if (!m)
        return qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory", ds->name);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(msgs, i);
        json_t *role = json_object_get(e, "role"), *content = json_object_get(e, "content");
        if (!json_is_object(e) || !json_is_string(role) || !json_is_string(content)) {
            add_issue(ds, line, "message %zu is not {\"role\": string, \"content\": "
                                "string}", i + 1);
            free(m);
            return QV_OK;
        }
        if (strlen(json_string_value(content)) != json_string_length(content)) {
            add_issue(ds, line, "message %zu: content holds a NUL character", i + 1);
            free(m);
            return QV_OK;
        }
        m[i].role = json_string_value(role);
        m[i].content = json_string_value(content);
    }
    qv_chat_rendered rd;
    qv_err ce = {0};
    if (qv_chat_render((qv_chat_template)ds->o.chat, m, n, &rd, &ce)) {
        free(m);
        if (ce.code == QV_ERR_NOMEM)
            return qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory", ds->name);
        add_issue(ds, line, "%.180s", ce.msg);
        return QV_OK;
    }
    free(m);
    int trained = 0;
    for (size_t i = 0; i < rd.n_segs; i++)
        trained |= rd.segs[i].trained;
    if (!trained) {
        qv_chat_rendered_free(&rd);
        add_issue(ds, line, "no assistant message: nothing to train on");
        return QV_OK;
    }
    raw_run r = {0};
    qv_status s = put_bos(ds, err);
    for (size_t i = 0; !s && i < rd.n_segs; i++) {
        const qv_chat_segment *g = &rd.segs[i];
        s = g->special ? put_markup(ds, &r, g->text, g->len, (uint8_t)g->trained, err)
                       : run_add(&r, g->text, g->len, (uint8_t)g->trained, ds->name, err);
    }
    if (!s)
        s = run_flush(ds, &r, err);
    run_free(&r);
    qv_chat_rendered_free(&rd);
    if (!s) {
        ds_finish_example(ds);
        *bad = 0;
    }
    return s;
}

/* BOS + text pieces (each trained or not) + EOS (trained). */
static qv_status put_plain(qv_dataset *ds, const char *a, size_t an, const char *b,
                           size_t bn, qv_err *err)
{
    raw_run r = {0};
    qv_status s = put_bos(ds, err);
    if (!s && an)
        s = run_add(&r, a, an, 0, ds->name, err);
    if (!s)
        s = run_add(&r, b, bn, 1, ds->name, err);
    if (!s)
        s = run_flush(ds, &r, err);
    if (!s && !(s = ds_reserve(ds, 1, err)))
        ds_put(ds, ds->eos, 1);
    run_free(&r);
    if (!s)
        ds_finish_example(ds);
    return s;
}

/* ---- parsing JSON Lines --------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void add_issue(qv_dataset *ds, uint64_t line, const char *fmt, ...)
{
    if (ds->n_issues_stored < QV_DATASET_MAX_ISSUES) {
        qv_dataset_issue *is = &ds->issues[ds->n_issues_stored++];
        is->line = line;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(is->reason, sizeof is->reason, fmt, ap);
        va_end(ap);
    }
    ds->n_issues++;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* Parses one line. A malformed line becomes an issue; only running out of
 * memory is an error. */
static qv_status handle_line(qv_dataset *ds, const char *s, size_t n, uint64_t line,
                             qv_err *err)
{
    if (is_blank(s, n))
        return QV_OK;
    json_error_t je;
    json_t *root = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root) {
        switch (json_error_code(&je)) {
        case json_error_invalid_utf8:
            add_issue(ds, line, "invalid UTF-8 near byte %d (JSON must be UTF-8; "
                                "re-encode the file)", je.position);
            break;
        case json_error_out_of_memory:
            return qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory parsing line %llu",
                           ds->name, (unsigned long long)line);
        case json_error_duplicate_key:
            add_issue(ds, line, "duplicate key: %s", je.text);
            break;
        default:
            add_issue(ds, line, "not valid JSON: %s (near byte %d)", je.text, je.position);
            break;
        }
        return QV_OK;
    }
    qv_status st = QV_OK;
    if (!json_is_object(root)) {
        add_issue(ds, line, "not a JSON object (got %s); expected {\"text\": ...} or "
                            "{\"prompt\": ..., \"completion\": ...}", json_kind(root));
        goto done;
    }
    json_t *text = json_object_get(root, "text");
    json_t *prompt = json_object_get(root, "prompt");
    json_t *compl = json_object_get(root, "completion");
    json_t *msgs = json_object_get(root, "messages");
    if (msgs && (text || prompt || compl)) {
        add_issue(ds, line, "has both \"messages\" and \"%s\"; use one form per line",
                  text ? "text" : prompt ? "prompt" : "completion");
        goto done;
    }
    if (msgs) {
        int bad;
        st = put_messages(ds, msgs, line, &bad, err);
        goto done;
    }
    if (text && (prompt || compl)) {
        add_issue(ds, line, "has both \"text\" and \"%s\"; use either {\"text\"} or "
                            "{\"prompt\", \"completion\"}", prompt ? "prompt" : "completion");
        goto done;
    }
    if (text) {
        if (!json_is_string(text)) {
            add_issue(ds, line, "\"text\" is %s, not a string", json_kind(text));
            goto done;
        }
        size_t len = json_string_length(text);
        if (len == 0) {
            add_issue(ds, line, "\"text\" is empty");
            goto done;
        }
        st = put_plain(ds, NULL, 0, json_string_value(text), len, err);
        goto done;
    }
    if (!prompt && !compl) {
        add_issue(ds, line, "no \"text\", \"prompt\"/\"completion\" or \"messages\" key");
        goto done;
    }
    if (!prompt) {
        add_issue(ds, line, "\"completion\" without \"prompt\"");
        goto done;
    }
    if (!compl) {
        add_issue(ds, line, "\"prompt\" without \"completion\"");
        goto done;
    }
    if (!json_is_string(prompt)) {
        add_issue(ds, line, "\"prompt\" is %s, not a string", json_kind(prompt));
        goto done;
    }
    if (!json_is_string(compl)) {
        add_issue(ds, line, "\"completion\" is %s, not a string", json_kind(compl));
        goto done;
    }
    size_t pl = json_string_length(prompt), cl = json_string_length(compl);
    if (cl == 0) {
        add_issue(ds, line, "\"completion\" is empty");
        goto done;
    }
    st = put_plain(ds, json_string_value(prompt), pl, json_string_value(compl), cl, err);
done:
    json_decref(root);
    return st;
}

/* After the last line: a dataset without examples is an error. */
static qv_status finish_load(qv_dataset *ds, uint64_t lines, qv_dataset **out, qv_err *err)
{
    ds_loaded(ds);
    if (ds->n_ex == 0 && ds->n_long) {
        qv_status s = qv_fail(err, QV_ERR_INVALID,
                              "dataset %s: every one of its %llu example(s) is longer "
                              "than the model's context of %zu tokens; pass --long "
                              "truncate to cut them", ds->name,
                              (unsigned long long)ds->n_long, ds->o.max_tokens);
        qv_dataset_free(ds);
        return s;
    }
    if (ds->n_ex == 0) {
        qv_status s;
        if (ds->n_issues == 0)
            s = qv_fail(err, QV_ERR_INVALID,
                        "dataset %s is empty (%llu line(s), none with an example); each "
                        "line must be a JSON object {\"text\": ...} or {\"prompt\": ..., "
                        "\"completion\": ...}",
                        ds->name, (unsigned long long)lines);
        else
            s = qv_fail(err, QV_ERR_INVALID,
                        "dataset %s has no usable example: %llu malformed line(s), the "
                        "first is line %llu: %s",
                        ds->name, (unsigned long long)ds->n_issues,
                        (unsigned long long)ds->issues[0].line, ds->issues[0].reason);
        qv_dataset_free(ds);
        return s;
    }
    *out = ds;
    return QV_OK;
}

qv_status qv_dataset_opts_for_model(const qv_gguf *g, const char *what,
                                    const char *chat_name, size_t max_tokens,
                                    int long_policy, qv_dataset_opts *o,
                                    qv_vocab **vocab, qv_err *err)
{
    memset(o, 0, sizeof *o);
    o->chat = -1;
    o->max_tokens = max_tokens;
    o->long_policy = long_policy;
    *vocab = NULL;
    qv_status s;
    if (chat_name) {
        qv_chat_template t;
        if ((s = qv_chat_by_name(chat_name, &t, err)))
            return qv_err_prefix(err, s, "--chat-template");
        o->chat = (int)t;
    }
    if (!g)
        return QV_OK;
    if (qv_gguf_find_kv(g, "tokenizer.ggml.model")) {
        if ((s = qv_vocab_load(g, vocab, err)))
            return qv_err_prefix(err, s, "%s", what);
        o->vocab = *vocab;
    } else if (!qv_gguf_find_kv(g, "qvac.tokenizer")) {
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "%s has no tokenizer (no tokenizer.ggml.* keys): qvac cannot "
                       "turn text into its tokens; convert the model with its "
                       "tokenizer (docs/formats.md)", what);
    }
    const char *tmpl = NULL;
    if (o->chat < 0 && !qv_gguf_get_str(g, "tokenizer.chat_template", &tmpl, NULL, NULL)) {
        qv_chat_template t;
        qv_err ce = {0};
        if (!qv_chat_detect(tmpl, &t, &ce))
            o->chat = (int)t;
    }
    return QV_OK;
}

/* The options into ds: the vocabulary's BOS / EOS, its special tokens. */
static qv_status ds_apply(qv_dataset *ds, const qv_dataset_opts *o, qv_err *err)
{
    if (!o)
        return QV_OK;
    ds->o = *o;
    const qv_vocab *v = o->vocab;
    if (!v)
        return QV_OK;
    ds->bos = qv_vocab_wants_bos(v) ? qv_vocab_bos(v) : -1;
    ds->eos = qv_vocab_eos(v);
    if (ds->eos < 0)
        ds->eos = qv_vocab_eot(v);
    if (ds->eos < 0)
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "dataset %s: the vocabulary has no end-of-sequence token "
                       "(tokenizer.ggml.eos_token_id) to end examples with",
                       ds->name);
    ds->pad = ds->eos;
    return list_specials(ds, err);
}

/* What loading leaves behind: nothing of the options. */
static void ds_loaded(qv_dataset *ds)
{
    free(ds->special);
    ds->special = NULL;
    ds->n_special = 0;
    ds->o.vocab = NULL;
}

qv_status qv_dataset_load_mem(const char *bytes, size_t n, const char *name,
                              qv_dataset **out, qv_err *err)
{
    return qv_dataset_load_mem_ex(bytes, n, name, NULL, out, err);
}

qv_status qv_dataset_load_mem_ex(const char *bytes, size_t n, const char *name,
                                 const qv_dataset_opts *opts, qv_dataset **out,
                                 qv_err *err)
{
    if (!name)
        name = "built-in";
    if (!out || (!bytes && n))
        return qv_fail(err, QV_ERR_INVALID, "qv_dataset_load_mem(%s): NULL argument", name);
    *out = NULL;
    qv_dataset *ds = ds_new(name, err);
    if (!ds)
        return QV_ERR_NOMEM;
    qv_status st = ds_apply(ds, opts, err);
    if (st) {
        qv_dataset_free(ds);
        return st;
    }
    uint64_t line = 0;
    size_t pos = 0;
    while (pos < n) {
        const char *nl = memchr(bytes + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - bytes) : n;
        ++line;
        qv_status s = handle_line(ds, bytes + pos, end - pos, line, err);
        if (s != QV_OK) {
            qv_dataset_free(ds);
            return s;
        }
        pos = nl ? end + 1 : n;
    }
    return finish_load(ds, line, out, err);
}

qv_status qv_dataset_load_file(const char *path, qv_dataset **out, qv_err *err)
{
    return qv_dataset_load_file_ex(path, NULL, out, err);
}

qv_status qv_dataset_load_file_ex(const char *path, const qv_dataset_opts *opts,
                                  qv_dataset **out, qv_err *err)
{
    if (!path || !out)
        return qv_fail(err, QV_ERR_INVALID, "qv_dataset_load_file: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return qv_fail(err, e == ENOENT ? QV_ERR_NOT_FOUND : QV_ERR_IO,
                       "cannot open dataset %s: %s; check the path", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return qv_fail(err, QV_ERR_IO, "dataset %s is not a regular file (a device, "
                       "pipe or folder cannot be read to its end); give a JSON Lines "
                       "file", path);
    }
    qv_dataset *ds = ds_new(path, err);
    if (!ds) {
        fclose(f);
        return QV_ERR_NOMEM;
    }
    qv_status st0 = ds_apply(ds, opts, err);
    if (st0) {
        fclose(f);
        qv_dataset_free(ds);
        return st0;
    }
    size_t max_line = opts && opts->max_line ? opts->max_line : QV_DATASET_MAX_LINE;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    uint64_t line = 0;
    int over = 0; /* the current line passed max_line: its bytes are dropped */
    qv_status s = QV_OK;
    char chunk[65536];
    for (;;) {
        size_t got = fread(chunk, 1, sizeof chunk, f);
        if (got == 0) {
            if (ferror(f))
                s = qv_fail(err, QV_ERR_IO, "cannot read dataset %s after line %llu: %s",
                            path, (unsigned long long)line, strerror(errno));
            break;
        }
        for (size_t i = 0; i < got && s == QV_OK;) {
            const char *nl = memchr(chunk + i, '\n', got - i);
            size_t take = nl ? (size_t)(nl - (chunk + i)) : got - i;
            if (!over && len + take > max_line) {
                over = 1;
                len = 0;
            }
            if (!over) {
                if (len + take + 1 > cap) {
                    size_t nc = cap ? cap : 4096;
                    while (nc < len + take + 1)
                        nc *= 2;
                    char *nb = realloc(buf, nc);
                    if (!nb) {
                        s = qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory at line %llu",
                                    path, (unsigned long long)line + 1);
                        break;
                    }
                    buf = nb, cap = nc;
                }
                memcpy(buf + len, chunk + i, take);
                len += take;
            }
            i += take;
            if (!nl)
                break;
            i++; /* the newline */
            ++line;
            if (over)
                add_issue(ds, line, "longer than %zu bytes; split it, or raise the "
                          "limit (--max-line)", max_line);
            else
                s = handle_line(ds, buf ? buf : "", len, line, err);
            len = 0;
            over = 0;
        }
        if (s != QV_OK)
            break;
    }
    if (s == QV_OK && (len || over)) { /* a last line without a newline */
        ++line;
        if (over)
            add_issue(ds, line, "longer than %zu bytes; split it, or raise the "
                      "limit (--max-line)", max_line);
        else
            s = handle_line(ds, buf, len, line, err);
    }
    free(buf);
    fclose(f);
    if (s != QV_OK) {
        qv_dataset_free(ds);
        return s;
    }
    return finish_load(ds, line, out, err);
}

qv_status qv_dataset_from_text(const char *bytes, size_t n, const char *name,
                               qv_dataset **out, qv_err *err)
{
    return qv_dataset_from_text_ex(bytes, n, name, NULL, out, err);
}

qv_status qv_dataset_from_text_ex(const char *bytes, size_t n, const char *name,
                                  const qv_vocab *vocab, qv_dataset **out,
                                  qv_err *err)
{
    if (!name)
        name = "text";
    if (!out || (!bytes && n))
        return qv_fail(err, QV_ERR_INVALID, "qv_dataset_from_text(%s): NULL argument", name);
    *out = NULL;
    if (n == 0)
        return qv_fail(err, QV_ERR_INVALID,
                       "text dataset %s is empty; give it at least one byte", name);
    qv_dataset *ds = ds_new(name, err);
    if (!ds)
        return QV_ERR_NOMEM;
    ds->packed = 1;
    qv_dataset_opts o = {.vocab = vocab, .chat = -1};
    qv_status s = n > SIZE_MAX / 8 ? qv_fail(err, QV_ERR_NOMEM, "text dataset %s too large", name)
                                   : ds_apply(ds, &o, err);
    if (s == QV_OK)
        s = put_plain(ds, NULL, 0, bytes, n, err);
    if (s != QV_OK) {
        qv_dataset_free(ds);
        return s;
    }
    ds_loaded(ds);
    *out = ds;
    return QV_OK;
}

void qv_dataset_free(qv_dataset *ds)
{
    if (!ds)
        return;
    free(ds->name);
    free(ds->off);
    free(ds->tok);
    free(ds->mask);
    free(ds->special);
    free(ds);
}

/* ---- accessors ------------------------------------------------------ */

const char *qv_dataset_name(const qv_dataset *ds) { return ds->name; }
int qv_dataset_is_packed(const qv_dataset *ds) { return ds->packed; }
size_t qv_dataset_n_examples(const qv_dataset *ds) { return ds->n_ex; }
size_t qv_dataset_n_tokens(const qv_dataset *ds) { return ds->n_tok; }
size_t qv_dataset_n_trained(const qv_dataset *ds) { return ds->n_trained; }
uint64_t qv_dataset_n_issues(const qv_dataset *ds) { return ds->n_issues; }
uint64_t qv_dataset_n_long(const qv_dataset *ds) { return ds->n_long; }
int32_t qv_dataset_pad(const qv_dataset *ds) { return ds->pad; }

const qv_dataset_issue *qv_dataset_issues(const qv_dataset *ds, size_t *n_stored)
{
    if (n_stored)
        *n_stored = ds->n_issues_stored;
    return ds->issues;
}

const int32_t *qv_dataset_example(const qv_dataset *ds, size_t i, const uint8_t **mask,
                                  size_t *len)
{
    if (i >= ds->n_ex) {
        if (mask)
            *mask = NULL;
        if (len)
            *len = 0;
        return NULL;
    }
    if (mask)
        *mask = ds->mask + ds->off[i];
    if (len)
        *len = ds->off[i + 1] - ds->off[i];
    return ds->tok + ds->off[i];
}

/* ---- split ---------------------------------------------------------- */

typedef struct {
    uint64_t key;
    size_t idx;
} keyed;

static int keyed_cmp(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static char *suffixed(const char *name, const char *suffix)
{
    size_t n = strlen(name) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", name, suffix);
    return s;
}

static qv_dataset *ds_new_named(const qv_dataset *src, const char *suffix, qv_err *err)
{
    char *name = suffixed(src->name, suffix);
    if (!name) {
        qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory", src->name);
        return NULL;
    }
    qv_dataset *ds = ds_new(name, err);
    free(name);
    if (ds) {
        ds->packed = src->packed;
        ds->bos = src->bos;
        ds->eos = src->eos;
        ds->pad = src->pad;
    }
    return ds;
}

qv_status qv_dataset_split(const qv_dataset *ds, double val_fraction, uint64_t seed,
                           qv_dataset **train_out, qv_dataset **val_out, qv_err *err)
{
    if (!ds || !train_out || !val_out)
        return qv_fail(err, QV_ERR_INVALID, "qv_dataset_split: NULL argument");
    *train_out = *val_out = NULL;
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return qv_fail(err, QV_ERR_INVALID,
                       "dataset %s: validation fraction %g is outside [0, 1); use e.g. 0.1",
                       ds->name, val_fraction);
    qv_dataset *tr = ds_new_named(ds, " (train)", err);
    if (!tr)
        return QV_ERR_NOMEM;
    qv_dataset *va = ds_new_named(ds, " (val)", err);
    if (!va) {
        qv_dataset_free(tr);
        return QV_ERR_NOMEM;
    }
    qv_status s = QV_OK;
    if (ds->packed) {
        /* by position: val is the tail of the stream */
        size_t L = ds->n_tok, nv = 0;
        if (val_fraction > 0.0 && L >= 4) {
            nv = (size_t)floor(val_fraction * (double)L + 0.5);
            if (nv < 2)
                nv = 2;
            if (nv > L - 2)
                nv = L - 2;
        }
        if (L > 0)
            s = ds_copy_range(tr, ds, 0, L - nv, err);
        if (s == QV_OK && nv > 0)
            s = ds_copy_range(va, ds, L - nv, L, err);
    } else {
        size_t n = ds->n_ex, nv = 0;
        if (val_fraction > 0.0 && n >= 2) {
            nv = (size_t)floor(val_fraction * (double)n + 0.5);
            if (nv < 1)
                nv = 1;
            if (nv > n - 1)
                nv = n - 1;
        }
        keyed *k = NULL;
        uint8_t *in_val = NULL;
        if (nv > 0) {
            k = malloc(n * sizeof *k);
            in_val = calloc(n, 1);
            if (!k || !in_val) {
                s = qv_fail(err, QV_ERR_NOMEM, "dataset %s: out of memory splitting",
                            ds->name);
            } else {
                for (size_t i = 0; i < n; ++i) {
                    k[i].key = mix64(seed ^ mix64((uint64_t)i));
                    k[i].idx = i;
                }
                qsort(k, n, sizeof *k, keyed_cmp);
                for (size_t i = 0; i < nv; ++i)
                    in_val[k[i].idx] = 1;
            }
        }
        for (size_t i = 0; s == QV_OK && i < n; ++i)
            s = ds_copy_range(in_val && in_val[i] ? va : tr, ds, ds->off[i], ds->off[i + 1],
                              err);
        free(k);
        free(in_val);
    }
    if (s != QV_OK) {
        qv_dataset_free(tr);
        qv_dataset_free(va);
        return s;
    }
    *train_out = tr;
    *val_out = va;
    return QV_OK;
}

/* ---- batches -------------------------------------------------------- */

/* One row: the first S of len tokens, padded with EOS; targets from the
 * next position where it exists and is trained. */
static void fill_row(const int32_t *tok, const uint8_t *mask, size_t len, int S,
                     int32_t pad, int32_t *tokens, int32_t *targets)
{
    for (size_t t = 0; t < (size_t)S; ++t) {
        tokens[t] = t < len ? tok[t] : pad;
        targets[t] = t + 1 < len && mask[t + 1] ? tok[t + 1] : -1;
    }
}

static qv_status check_batch_args(const qv_dataset *ds, const qv_cursor *cur, int B,
                                  int S, const int32_t *tokens, const int32_t *targets,
                                  const char *fn, qv_err *err)
{
    if (!ds || !cur || !tokens || !targets)
        return qv_fail(err, QV_ERR_INVALID, "%s: NULL argument", fn);
    if (B < 1 || S < 1)
        return qv_fail(err, QV_ERR_INVALID, "%s(%s): batch %d x %d; both must be >= 1", fn,
                       ds->name, B, S);
    if ((size_t)B > SIZE_MAX / sizeof(int32_t) / (size_t)S)
        return qv_fail(err, QV_ERR_INVALID, "%s(%s): batch %d x %d too large", fn, ds->name,
                       B, S);
    if (ds->n_ex == 0)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: dataset %s has no examples (an empty validation split?)", fn,
                       ds->name);
    return QV_OK;
}

/* Windows per training pass of a packed stream. */
static uint64_t packed_pass(const qv_dataset *ds, int S)
{
    uint64_t w = (uint64_t)(ds->n_tok - 1) / (uint64_t)S;
    return w ? w : 1;
}

qv_status qv_dataset_next_batch(const qv_dataset *ds, qv_cursor *cur, uint64_t seed,
                                int B, int S, int32_t *tokens, int32_t *targets,
                                qv_err *err)
{
    qv_status s = check_batch_args(ds, cur, B, S, tokens, targets, "qv_dataset_next_batch",
                                   err);
    if (s != QV_OK)
        return s;
    uint64_t pass = ds->packed ? packed_pass(ds, S) : (uint64_t)ds->n_ex;
    if (cur->index >= pass)
        return qv_fail(err, QV_ERR_INVALID,
                       "dataset %s: cursor index %llu is past the %llu rows of a pass; was it "
                       "saved with another dataset or sequence length?",
                       ds->name, (unsigned long long)cur->index, (unsigned long long)pass);
    qv_cursor c = *cur;
    uint64_t key = epoch_key(seed, c.epoch);
    for (int b = 0; b < B; ++b) {
        int32_t *tk = tokens + (size_t)b * (size_t)S;
        int32_t *tg = targets + (size_t)b * (size_t)S;
        if (ds->packed) {
            size_t L = ds->n_tok, o = 0;
            if (L > (size_t)S)
                o = (size_t)(mix64(key ^ mix64(c.index)) % (uint64_t)(L - (size_t)S));
            fill_row(ds->tok + o, ds->mask + o, L - o, S, ds->pad, tk, tg);
        } else {
            size_t i = (size_t)permute(c.index, ds->n_ex, key);
            fill_row(ds->tok + ds->off[i], ds->mask + ds->off[i], ds->off[i + 1] - ds->off[i],
                     S, ds->pad, tk, tg);
        }
        if (++c.index >= pass) {
            c.index = 0;
            c.epoch++;
            key = epoch_key(seed, c.epoch);
        }
    }
    *cur = c;
    return QV_OK;
}

qv_status qv_dataset_eval_batch(const qv_dataset *ds, qv_cursor *cur, int B, int S,
                                int32_t *tokens, int32_t *targets, int *rows, qv_err *err)
{
    qv_status s = check_batch_args(ds, cur, B, S, tokens, targets, "qv_dataset_eval_batch",
                                   err);
    if (s != QV_OK)
        return s;
    if (!rows)
        return qv_fail(err, QV_ERR_INVALID, "qv_dataset_eval_batch: NULL rows");
    uint64_t total = ds->packed ? ((uint64_t)ds->n_tok - 1 + (uint64_t)S - 1) / (uint64_t)S
                                : (uint64_t)ds->n_ex;
    int got = 0;
    for (int b = 0; b < B; ++b) {
        int32_t *tk = tokens + (size_t)b * (size_t)S;
        int32_t *tg = targets + (size_t)b * (size_t)S;
        if (cur->index >= total) {
            fill_row(NULL, NULL, 0, S, ds->pad, tk, tg);
            continue;
        }
        if (ds->packed) {
            size_t o = (size_t)cur->index * (size_t)S;
            fill_row(ds->tok + o, ds->mask + o, ds->n_tok - o, S, ds->pad, tk, tg);
        } else {
            size_t i = (size_t)cur->index;
            fill_row(ds->tok + ds->off[i], ds->mask + ds->off[i], ds->off[i + 1] - ds->off[i],
                     S, ds->pad, tk, tg);
        }
        cur->index++;
        got++;
    }
    *rows = got;
    return QV_OK;
}

int64_t qv_dataset_count_targets(const int32_t *targets, int B, int S)
{
    int64_t c = 0;
    if (!targets || B < 1 || S < 1)
        return 0;
    size_t n = (size_t)B * (size_t)S;
    for (size_t i = 0; i < n; ++i)
        c += targets[i] != -1;
    return c;
}
