/* tests/test_dataset.c — the byte tokenizer (formats/tokenizer.c) and
 * JSON Lines / packed-text datasets, splits and batches
 * (formats/dataset.c). Expected tokens, masks and targets are written out
 * by hand from the format's rules, never taken from the code under test. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/dataset.h"
#include "formats/tokenizer.h"

#define BOS QV_TOK_BOS
#define EOS QV_TOK_EOS

/* ---- helpers -------------------------------------------------------- */

/* Writes n bytes to a fresh temporary file; path receives its name. */
static void write_tmp(const char *bytes, size_t n, char path[64])
{
    snprintf(path, 64, "/tmp/qv_test_dataset_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, bytes + done, n - done);
        cr_assert_gt(w, 0);
        done += (size_t)w;
    }
    close(fd);
}

static qv_dataset *load_str(const char *s)
{
    qv_dataset *ds = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_dataset_load_mem(s, strlen(s), "test", &ds, &e), QV_OK, "%s", e.msg);
    cr_assert_not_null(ds);
    return ds;
}

static void expect_example(const qv_dataset *ds, size_t i, const int32_t *tok,
                           const uint8_t *mask, size_t len)
{
    const uint8_t *m = NULL;
    size_t n = 0;
    const int32_t *t = qv_dataset_example(ds, i, &m, &n);
    cr_assert_not_null(t, "example %zu", i);
    cr_assert_eq(n, len, "example %zu: length %zu, expected %zu", i, n, len);
    for (size_t k = 0; k < len; ++k) {
        cr_assert_eq(t[k], tok[k], "example %zu token %zu: %d, expected %d", i, k, t[k], tok[k]);
        cr_assert_eq(m[k], mask[k], "example %zu mask %zu: %d, expected %d", i, k, m[k], mask[k]);
    }
}

static void expect_row(const int32_t *tok, const int32_t *tgt, const int32_t *etok,
                       const int32_t *etgt, int S, const char *what)
{
    for (int t = 0; t < S; ++t) {
        cr_assert_eq(tok[t], etok[t], "%s: token %d is %d, expected %d", what, t, tok[t], etok[t]);
        cr_assert_eq(tgt[t], etgt[t], "%s: target %d is %d, expected %d", what, t, tgt[t], etgt[t]);
    }
}

/* ---- tokenizer ------------------------------------------------------ */

Test(tokenizer, round_trip_all_bytes)
{
    char s[256];
    for (int i = 0; i < 256; ++i)
        s[i] = (char)(unsigned char)i;
    int32_t ids[258];
    ids[0] = BOS;
    qv_tok_encode(s, 256, ids + 1);
    ids[257] = EOS;
    for (int i = 0; i < 256; ++i)
        cr_assert_eq(ids[1 + i], i);
    char back[300];
    memset(back, 0x55, sizeof back);
    cr_assert_eq(qv_tok_decode(ids, 258, back, sizeof back), 256);
    cr_assert_eq(memcmp(back, s, 256), 0);
    cr_assert_eq((unsigned char)back[256], 0x55, "decode wrote past the bytes");
    /* cap stops it; specials and out-of-range ids are skipped */
    int32_t mixed[6] = {'a', BOS, -1, 'b', 1000, 'c'};
    char small[2];
    cr_assert_eq(qv_tok_decode(mixed, 6, small, 2), 2);
    cr_assert_eq(small[0], 'a');
    cr_assert_eq(small[1], 'b');
    cr_assert_eq(qv_tok_decode(mixed, 6, back, sizeof back), 3);
    cr_assert_eq(memcmp(back, "abc", 3), 0);
    cr_assert_eq(qv_tok_decode(mixed, 0, back, sizeof back), 0);
}

Test(tokenizer, printable_and_describe)
{
    cr_assert_eq(QV_TOK_VOCAB, 258);
    cr_assert(qv_tok_is_printable('a'));
    cr_assert(qv_tok_is_printable(' '));
    cr_assert(qv_tok_is_printable('~'));
    cr_assert_not(qv_tok_is_printable(0x7f));
    cr_assert_not(qv_tok_is_printable('\n'));
    cr_assert_not(qv_tok_is_printable(0x1f));
    cr_assert_not(qv_tok_is_printable(0xe9));
    cr_assert_not(qv_tok_is_printable(BOS));
    cr_assert_not(qv_tok_is_printable(EOS));
    cr_assert_not(qv_tok_is_printable(-1));
    char b[12];
    cr_assert_str_eq(qv_tok_describe('a', b), "a");
    cr_assert_str_eq(qv_tok_describe('\n', b), "\\n");
    cr_assert_str_eq(qv_tok_describe('\\', b), "\\\\");
    cr_assert_str_eq(qv_tok_describe(0xe9, b), "\\xe9");
    cr_assert_str_eq(qv_tok_describe(0, b), "\\x00");
    cr_assert_str_eq(qv_tok_describe(BOS, b), "<BOS>");
    cr_assert_str_eq(qv_tok_describe(EOS, b), "<EOS>");
    cr_assert_str_eq(qv_tok_describe(300, b), "<?300>");
    cr_assert_str_eq(qv_tok_describe(INT32_MIN, b), "<?-9999999>");
}

/* ---- loading -------------------------------------------------------- */

/* Good, blank and every kind of malformed line. Line numbers are 1-based. */
static const char MIXED[] =
    "{\"text\": \"hi\"}\n"                                      /*  1 good */
    "\n"                                                         /*  2 blank */
    "{\"text\": \n"                                              /*  3 not JSON */
    "[1, 2]\n"                                                   /*  4 not object */
    "{\"text\": \"a\", \"prompt\": \"b\", \"completion\": \"c\"}\n" /* 5 both */
    "{\"prompt\": \"p\"}\n"                                      /*  6 no completion */
    "{\"completion\": \"c\"}\n"                                  /*  7 no prompt */
    "{\"text\": 5}\n"                                            /*  8 number */
    "{\"text\": \"\"}\n"                                         /*  9 empty */
    "{\"prompt\": \"p\", \"completion\": [7]}\n"                 /* 10 array */
    "{\"foo\": \"bar\"}\n"                                       /* 11 no key */
    "   \t\r\n"                                                  /* 12 blank */
    "{\"prompt\": \"ab\", \"completion\": \"c\", \"id\": 3}\n"   /* 13 good */
    "{\"text\": \"\xff\"}\n"                                     /* 14 bad UTF-8 */
    "{\"text\": \"x\", \"text\": \"y\"}\n"                       /* 15 duplicate */
    "{\"text\": \"a\\u0000b\"}\r\n"                              /* 16 good, NUL, CRLF */
    "{\"prompt\": \"p\", \"completion\": \"\"}\n"                /* 17 empty completion */
    "{\"text\": null}\n"                                         /* 18 null */
    "{\"text\": \"end\"} {}\n"                                   /* 19 trailing data */
    "{\"text\": \"\xc3\xa9t\xc3\xa9\"}";                         /* 20 good, no newline */

static const struct {
    uint64_t line;
    const char *needle;
} MIXED_ISSUES[] = {
    {3, "not valid JSON"},   {4, "not a JSON object (got an array)"},
    {5, "both \"text\" and \"prompt\""},
    {6, "\"prompt\" without \"completion\""},
    {7, "\"completion\" without \"prompt\""},
    {8, "\"text\" is a number, not a string"},
    {9, "\"text\" is empty"},
    {10, "\"completion\" is an array, not a string"},
    {11, "no \"text\", \"prompt\"/\"completion\" or \"messages\" key"},
    {14, "invalid UTF-8"},   {15, "duplicate"},
    {17, "\"completion\" is empty"},
    {18, "\"text\" is null, not a string"},
    {19, "not valid JSON"},
};

static void check_mixed(const qv_dataset *ds)
{
    cr_assert_eq(qv_dataset_n_examples(ds), 4);
    cr_assert_not(qv_dataset_is_packed(ds));
    size_t nis = sizeof MIXED_ISSUES / sizeof MIXED_ISSUES[0];
    cr_assert_eq(qv_dataset_n_issues(ds), nis);
    size_t stored = 0;
    const qv_dataset_issue *is = qv_dataset_issues(ds, &stored);
    cr_assert_eq(stored, nis);
    for (size_t i = 0; i < nis; ++i) {
        cr_assert_eq(is[i].line, MIXED_ISSUES[i].line, "issue %zu at line %llu, expected %llu",
                     i, (unsigned long long)is[i].line,
                     (unsigned long long)MIXED_ISSUES[i].line);
        cr_assert_not_null(strstr(is[i].reason, MIXED_ISSUES[i].needle),
                           "line %llu: reason \"%s\" lacks \"%s\"",
                           (unsigned long long)is[i].line, is[i].reason, MIXED_ISSUES[i].needle);
    }
    const int32_t t0[] = {BOS, 'h', 'i', EOS};
    const uint8_t m0[] = {0, 1, 1, 1};
    expect_example(ds, 0, t0, m0, 4);
    const int32_t t1[] = {BOS, 'a', 'b', 'c', EOS};
    const uint8_t m1[] = {0, 0, 0, 1, 1};
    expect_example(ds, 1, t1, m1, 5);
    const int32_t t2[] = {BOS, 'a', 0, 'b', EOS};
    const uint8_t m2[] = {0, 1, 1, 1, 1};
    expect_example(ds, 2, t2, m2, 5);
    const int32_t t3[] = {BOS, 0xc3, 0xa9, 't', 0xc3, 0xa9, EOS};
    const uint8_t m3[] = {0, 1, 1, 1, 1, 1, 1};
    expect_example(ds, 3, t3, m3, 7);
    cr_assert_eq(qv_dataset_n_tokens(ds), 4 + 5 + 5 + 7);
    cr_assert_eq(qv_dataset_n_trained(ds), 3 + 2 + 4 + 6);
    cr_assert_null(qv_dataset_example(ds, 4, NULL, NULL));
}

Test(dataset, mixed_lines_from_memory)
{
    qv_dataset *ds = NULL;
    qv_err e;
    cr_assert_eq(qv_dataset_load_mem(MIXED, sizeof MIXED - 1, "mixed.jsonl", &ds, &e), QV_OK,
                 "%s", e.msg);
    cr_assert_str_eq(qv_dataset_name(ds), "mixed.jsonl");
    check_mixed(ds);
    qv_dataset_free(ds);
}

Test(dataset, mixed_lines_from_file)
{
    char path[64];
    write_tmp(MIXED, sizeof MIXED - 1, path);
    qv_dataset *ds = NULL;
    qv_err e;
    qv_status s = qv_dataset_load_file(path, &ds, &e);
    unlink(path);
    cr_assert_eq(s, QV_OK, "%s", e.msg);
    cr_assert_str_eq(qv_dataset_name(ds), path);
    check_mixed(ds);
    qv_dataset_free(ds);
}

Test(dataset, prompt_completion_mask_exact)
{
    qv_dataset *ds = load_str("{\"prompt\": \"Q: 2+2?\\nA:\", \"completion\": \" 4\"}\n"
                              "{\"prompt\": \"\", \"completion\": \"x\"}\n");
    const int32_t t0[] = {BOS, 'Q', ':', ' ', '2', '+', '2', '?', '\n', 'A', ':', ' ', '4', EOS};
    const uint8_t m0[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1};
    expect_example(ds, 0, t0, m0, 14);
    const int32_t t1[] = {BOS, 'x', EOS};
    const uint8_t m1[] = {0, 1, 1};
    expect_example(ds, 1, t1, m1, 3);
    cr_assert_eq(qv_dataset_n_trained(ds), 5);
    cr_assert_eq(qv_dataset_n_issues(ds), 0);
    qv_dataset_free(ds);
}

Test(dataset, issue_list_is_capped_and_counted)
{
    char buf[4096] = "";
    for (int i = 0; i < 25; ++i)
        strcat(buf, "nope\n");
    strcat(buf, "{\"text\": \"ok\"}\n");
    qv_dataset *ds = load_str(buf);
    cr_assert_eq(qv_dataset_n_examples(ds), 1);
    cr_assert_eq(qv_dataset_n_issues(ds), 25);
    size_t stored = 0;
    const qv_dataset_issue *is = qv_dataset_issues(ds, &stored);
    cr_assert_eq(stored, QV_DATASET_MAX_ISSUES);
    for (size_t i = 0; i < stored; ++i)
        cr_assert_eq(is[i].line, i + 1);
    qv_dataset_free(ds);
}

Test(dataset, empty_blank_and_all_bad_are_errors)
{
    qv_dataset *ds = (qv_dataset *)1;
    qv_err e;
    cr_assert_eq(qv_dataset_load_mem("", 0, "empty.jsonl", &ds, &e), QV_ERR_INVALID);
    cr_assert_null(ds);
    cr_assert_not_null(strstr(e.msg, "empty.jsonl"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "empty"), "%s", e.msg);

    cr_assert_eq(qv_dataset_load_mem("\n  \n\t\n", 6, "blank.jsonl", &ds, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "blank.jsonl"), "%s", e.msg);

    const char *bad = "\n{\"text\": 1}\n[]\n";
    cr_assert_eq(qv_dataset_load_mem(bad, strlen(bad), "bad.jsonl", &ds, &e), QV_ERR_INVALID);
    cr_assert_null(ds);
    cr_assert_not_null(strstr(e.msg, "bad.jsonl"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "2 malformed"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "line 2: \"text\" is a number"), "%s", e.msg);

    char path[64];
    write_tmp("", 0, path);
    cr_assert_eq(qv_dataset_load_file(path, &ds, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, path), "%s", e.msg);
    unlink(path);
    write_tmp(bad, strlen(bad), path);
    cr_assert_eq(qv_dataset_load_file(path, &ds, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, path), "%s", e.msg);
    unlink(path);
}

Test(dataset, missing_file)
{
    qv_dataset *ds = (qv_dataset *)1;
    qv_err e;
    cr_assert_eq(qv_dataset_load_file("/nonexistent/qv/data.jsonl", &ds, &e), QV_ERR_NOT_FOUND);
    cr_assert_null(ds);
    cr_assert_not_null(strstr(e.msg, "/nonexistent/qv/data.jsonl"), "%s", e.msg);
    /* a directory opens but cannot be read */
    cr_assert_eq(qv_dataset_load_file("/tmp", &ds, &e), QV_ERR_IO, "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "/tmp"), "%s", e.msg);
}

Test(dataset, five_megabyte_line)
{
    size_t n = 5u << 20;
    char *line = malloc(n + 64);
    cr_assert_not_null(line);
    size_t p = (size_t)sprintf(line, "{\"text\": \"");
    for (size_t i = 0; i < n; ++i)
        line[p++] = (char)('a' + i % 26);
    p += (size_t)sprintf(line + p, "\\n\"}\n{\"text\": \"z\"}\n");
    char path[64];
    write_tmp(line, p, path);
    free(line);
    qv_dataset *ds = NULL;
    qv_err e;
    qv_status s = qv_dataset_load_file(path, &ds, &e);
    unlink(path);
    cr_assert_eq(s, QV_OK, "%s", e.msg);
    cr_assert_eq(qv_dataset_n_examples(ds), 2);
    size_t len = 0;
    const uint8_t *m = NULL;
    const int32_t *t = qv_dataset_example(ds, 0, &m, &len);
    cr_assert_eq(len, n + 3);
    cr_assert_eq(t[0], BOS);
    cr_assert_eq(t[1], 'a');
    cr_assert_eq(t[n], 'a' + (int)((n - 1) % 26));
    cr_assert_eq(t[n + 1], '\n');
    cr_assert_eq(t[n + 2], EOS);
    cr_assert_eq(qv_dataset_n_tokens(ds), n + 3 + 3);
    qv_dataset_free(ds);
}

/* ---- split ---------------------------------------------------------- */

/* n examples {"text": "<i>"}: example i's first byte identifies it. */
static qv_dataset *numbered(int n)
{
    size_t cap = (size_t)n * 32 + 1;
    char *s = malloc(cap);
    size_t p = 0;
    for (int i = 0; i < n; ++i)
        p += (size_t)snprintf(s + p, cap - p, "{\"text\": \"%c%d\"}\n", 'A' + i % 26, i);
    qv_dataset *ds = load_str(s);
    free(s);
    return ds;
}

/* The decimal number after the letter in a numbered example. */
static int example_id(const int32_t *t, size_t len)
{
    int v = 0;
    for (size_t k = 2; k < len && t[k] >= '0' && t[k] <= '9'; ++k)
        v = v * 10 + (t[k] - '0');
    return v;
}

static void split_ids(const qv_dataset *ds, int *ids, size_t *n)
{
    *n = qv_dataset_n_examples(ds);
    for (size_t i = 0; i < *n; ++i) {
        size_t len;
        const int32_t *t = qv_dataset_example(ds, i, NULL, &len);
        ids[i] = example_id(t, len);
    }
}

Test(split, fractions_and_partition)
{
    qv_dataset *ds = numbered(10);
    const struct {
        double f;
        size_t nv;
    } cases[] = {{0.0, 0}, {0.2, 2}, {0.01, 1}, {0.5, 5}, {0.99, 9}, {0.25, 3}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
        qv_dataset *tr, *va;
        qv_err e;
        cr_assert_eq(qv_dataset_split(ds, cases[c].f, 7, &tr, &va, &e), QV_OK, "%s", e.msg);
        cr_assert_eq(qv_dataset_n_examples(va), cases[c].nv, "f=%g: val %zu, expected %zu",
                     cases[c].f, qv_dataset_n_examples(va), cases[c].nv);
        cr_assert_eq(qv_dataset_n_examples(tr), 10 - cases[c].nv);
        cr_assert_eq(qv_dataset_n_tokens(tr) + qv_dataset_n_tokens(va), qv_dataset_n_tokens(ds));
        cr_assert_eq(qv_dataset_n_trained(tr) + qv_dataset_n_trained(va),
                     qv_dataset_n_trained(ds));
        /* every example exactly once, original order kept in each part */
        int seen[10] = {0}, ids[10];
        size_t n;
        split_ids(tr, ids, &n);
        for (size_t i = 0; i < n; ++i) {
            seen[ids[i]]++;
            if (i)
                cr_assert_lt(ids[i - 1], ids[i]);
        }
        split_ids(va, ids, &n);
        for (size_t i = 0; i < n; ++i) {
            seen[ids[i]]++;
            if (i)
                cr_assert_lt(ids[i - 1], ids[i]);
        }
        for (int i = 0; i < 10; ++i)
            cr_assert_eq(seen[i], 1, "f=%g: example %d seen %d times", cases[c].f, i, seen[i]);
        qv_dataset_free(tr);
        qv_dataset_free(va);
    }
    qv_dataset_free(ds);
}

Test(split, single_example_and_bad_fraction)
{
    qv_dataset *ds = numbered(1);
    qv_dataset *tr, *va;
    qv_err e;
    cr_assert_eq(qv_dataset_split(ds, 0.5, 1, &tr, &va, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_dataset_n_examples(tr), 1);
    cr_assert_eq(qv_dataset_n_examples(va), 0);
    /* an empty split cannot make batches */
    int32_t tok[4], tgt[4];
    qv_cursor c = {0, 0};
    cr_assert_eq(qv_dataset_next_batch(va, &c, 1, 1, 4, tok, tgt, &e), QV_ERR_INVALID);
    qv_dataset_free(tr);
    qv_dataset_free(va);
    const double bad[] = {1.0, -0.1, NAN, 2.0};
    for (size_t i = 0; i < 4; ++i) {
        tr = va = (qv_dataset *)1;
        cr_assert_eq(qv_dataset_split(ds, bad[i], 1, &tr, &va, &e), QV_ERR_INVALID);
        cr_assert_null(tr);
        cr_assert_null(va);
    }
    qv_dataset_free(ds);
}

Test(split, deterministic_given_seed)
{
    qv_dataset *ds = numbered(100);
    int a[100], b[100], c[100];
    size_t na, nb, nc;
    qv_dataset *tr, *va;
    cr_assert_eq(qv_dataset_split(ds, 0.3, 42, &tr, &va, NULL), QV_OK);
    split_ids(va, a, &na);
    qv_dataset_free(tr);
    qv_dataset_free(va);
    cr_assert_eq(qv_dataset_split(ds, 0.3, 42, &tr, &va, NULL), QV_OK);
    split_ids(va, b, &nb);
    qv_dataset_free(tr);
    qv_dataset_free(va);
    cr_assert_eq(qv_dataset_split(ds, 0.3, 43, &tr, &va, NULL), QV_OK);
    split_ids(va, c, &nc);
    qv_dataset_free(tr);
    qv_dataset_free(va);
    cr_assert_eq(na, 30);
    cr_assert_eq(nb, 30);
    cr_assert_eq(nc, 30);
    cr_assert_eq(memcmp(a, b, sizeof a[0] * 30), 0, "same seed gave different splits");
    cr_assert_neq(memcmp(a, c, sizeof a[0] * 30), 0, "seed does not change the split");
    /* not simply the first or last 30 */
    int first = 1, last = 1;
    for (int i = 0; i < 30; ++i) {
        first &= a[i] == i;
        last &= a[i] == 70 + i;
    }
    cr_assert_not(first);
    cr_assert_not(last);
    qv_dataset_free(ds);
}

/* ---- batches -------------------------------------------------------- */

/* ex0 = BOS a b EOS (text), ex1 = BOS x | y z EOS (prompt "x"),
 * ex2 = BOS a..h EOS (text, 10 tokens). */
static const char TINY[] = "{\"text\": \"ab\"}\n"
                           "{\"prompt\": \"x\", \"completion\": \"yz\"}\n"
                           "{\"text\": \"abcdefgh\"}\n";

/* Expected rows at S = 4 per example (by hand from the rules). */
static const int32_t TINY4_TOK[3][4] = {
    {BOS, 'a', 'b', EOS}, {BOS, 'x', 'y', 'z'}, {BOS, 'a', 'b', 'c'}};
static const int32_t TINY4_TGT[3][4] = {
    {'a', 'b', EOS, -1}, {-1, 'y', 'z', EOS}, {'a', 'b', 'c', 'd'}};

/* Which example a row at S = 4 is; fails if it is none exactly. */
static int which_tiny4(const int32_t *tok, const int32_t *tgt)
{
    for (int i = 0; i < 3; ++i)
        if (memcmp(tok, TINY4_TOK[i], sizeof TINY4_TOK[i]) == 0 &&
            memcmp(tgt, TINY4_TGT[i], sizeof TINY4_TGT[i]) == 0)
            return i;
    cr_assert_fail("row [%d %d %d %d] -> [%d %d %d %d] is no example", tok[0], tok[1], tok[2],
                   tok[3], tgt[0], tgt[1], tgt[2], tgt[3]);
    return -1;
}

Test(batch, targets_exact_with_truncation_padding_and_epoch_wrap)
{
    qv_dataset *ds = load_str(TINY);
    int32_t tok[2 * 4], tgt[2 * 4];
    qv_cursor c = {0, 0};
    qv_err e;
    int rows[9];
    for (int k = 0; k < 3; ++k) { /* 6 rows: two full epochs */
        cr_assert_eq(qv_dataset_next_batch(ds, &c, 5, 2, 4, tok, tgt, &e), QV_OK, "%s", e.msg);
        rows[2 * k] = which_tiny4(tok, tgt);
        rows[2 * k + 1] = which_tiny4(tok + 4, tgt + 4);
        cr_assert_eq(qv_dataset_count_targets(tgt, 2, 4),
                     (rows[2 * k] == 0 ? 3 : rows[2 * k] == 1 ? 3 : 4) +
                         (rows[2 * k + 1] == 0 ? 3 : rows[2 * k + 1] == 1 ? 3 : 4));
        if (k == 0) {
            cr_assert_eq(c.epoch, 0);
            cr_assert_eq(c.index, 2);
        }
        if (k == 1) { /* wrapped: row 3 is epoch 1's first */
            cr_assert_eq(c.epoch, 1);
            cr_assert_eq(c.index, 1);
        }
    }
    cr_assert_eq(c.epoch, 2);
    cr_assert_eq(c.index, 0);
    for (int ep = 0; ep < 2; ++ep) {
        int seen[3] = {0};
        for (int r = 0; r < 3; ++r)
            seen[rows[3 * ep + r]]++;
        for (int i = 0; i < 3; ++i)
            cr_assert_eq(seen[i], 1, "epoch %d shows example %d %d times", ep, i, seen[i]);
    }
    qv_dataset_free(ds);
}

Test(batch, padding_at_longer_sequence)
{
    qv_dataset *ds = load_str(TINY);
    enum { S = 11 };
    const int32_t etok[3][S] = {
        {BOS, 'a', 'b', EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS},
        {BOS, 'x', 'y', 'z', EOS, EOS, EOS, EOS, EOS, EOS, EOS},
        {BOS, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', EOS, EOS}};
    const int32_t etgt[3][S] = {
        {'a', 'b', EOS, -1, -1, -1, -1, -1, -1, -1, -1},
        {-1, 'y', 'z', EOS, -1, -1, -1, -1, -1, -1, -1},
        {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', EOS, -1, -1}};
    /* eval walks in file order: exact rows, then padding, then done */
    int32_t tok[2 * S], tgt[2 * S];
    qv_cursor c = {0, 0};
    int rows = -1;
    qv_err e;
    cr_assert_eq(qv_dataset_eval_batch(ds, &c, 2, S, tok, tgt, &rows, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(rows, 2);
    expect_row(tok, tgt, etok[0], etgt[0], S, "eval row 0");
    expect_row(tok + S, tgt + S, etok[1], etgt[1], S, "eval row 1");
    cr_assert_eq(qv_dataset_eval_batch(ds, &c, 2, S, tok, tgt, &rows, &e), QV_OK);
    cr_assert_eq(rows, 1);
    expect_row(tok, tgt, etok[2], etgt[2], S, "eval row 2");
    const int32_t pad_tok[S] = {EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS};
    const int32_t pad_tgt[S] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    expect_row(tok + S, tgt + S, pad_tok, pad_tgt, S, "eval padding row");
    cr_assert_eq(qv_dataset_count_targets(tgt, 2, S), 9);
    cr_assert_eq(qv_dataset_eval_batch(ds, &c, 2, S, tok, tgt, &rows, &e), QV_OK);
    cr_assert_eq(rows, 0);
    cr_assert_eq(qv_dataset_count_targets(tgt, 2, S), 0);
    /* training rows at S = 11 are the same rows, in some order */
    c = (qv_cursor){0, 0};
    int32_t t3[3 * S], g3[3 * S];
    cr_assert_eq(qv_dataset_next_batch(ds, &c, 9, 3, S, t3, g3, &e), QV_OK, "%s", e.msg);
    int seen[3] = {0};
    for (int r = 0; r < 3; ++r)
        for (int i = 0; i < 3; ++i)
            if (memcmp(t3 + r * S, etok[i], sizeof etok[i]) == 0 &&
                memcmp(g3 + r * S, etgt[i], sizeof etgt[i]) == 0)
                seen[i]++;
    for (int i = 0; i < 3; ++i)
        cr_assert_eq(seen[i], 1);
    cr_assert_eq(qv_dataset_count_targets(g3, 3, S), 3 + 3 + 9);
    qv_dataset_free(ds);
}

static void draw(const qv_dataset *ds, qv_cursor *c, uint64_t seed, int nb, int B, int S,
                 int32_t *tok, int32_t *tgt)
{
    for (int k = 0; k < nb; ++k) {
        qv_err e;
        cr_assert_eq(qv_dataset_next_batch(ds, c, seed, B, S, tok + (size_t)k * B * S,
                                           tgt + (size_t)k * B * S, &e),
                     QV_OK, "%s", e.msg);
    }
}

Test(batch, deterministic_resumable_and_shuffled)
{
    qv_dataset *ds = numbered(50);
    enum { B = 4, S = 6, NB = 30, N = NB * B * S };
    static int32_t t1[N], g1[N], t2[N], g2[N], t3[N], g3[N];
    qv_cursor c1 = {0, 0}, c2 = {0, 0}, c3 = {0, 0};
    draw(ds, &c1, 11, NB, B, S, t1, g1);
    draw(ds, &c2, 11, NB, B, S, t2, g2);
    draw(ds, &c3, 12, NB, B, S, t3, g3);
    cr_assert_eq(memcmp(t1, t2, sizeof t1), 0, "same seed, different tokens");
    cr_assert_eq(memcmp(g1, g2, sizeof g1), 0, "same seed, different targets");
    cr_assert_neq(memcmp(t1, t3, sizeof t1), 0, "seed ignored");
    cr_assert_eq(c1.epoch, 2); /* 120 rows of 50 */
    cr_assert_eq(c1.index, 20);
    /* resume from a saved cursor after 7 batches */
    qv_cursor saved = {0, 0};
    static int32_t tmp[N], tmpg[N];
    draw(ds, &saved, 11, 7, B, S, tmp, tmpg);
    qv_cursor copy = saved; /* what a checkpoint stores */
    draw(ds, &copy, 11, NB - 7, B, S, tmp, tmpg);
    cr_assert_eq(memcmp(tmp, t1 + 7 * B * S, sizeof(int32_t) * (NB - 7) * B * S), 0);
    /* each epoch is a permutation, not the file order, and epochs differ */
    int ep0[50], ep1[50], seen0[50] = {0}, seen1[50] = {0};
    for (int r = 0; r < 50; ++r) {
        ep0[r] = example_id(t1 + r * S, S);
        ep1[r] = example_id(t1 + (50 + r) * S, S);
        seen0[ep0[r]]++;
        seen1[ep1[r]]++;
    }
    int in_order = 1;
    for (int i = 0; i < 50; ++i) {
        cr_assert_eq(seen0[i], 1);
        cr_assert_eq(seen1[i], 1);
        in_order &= ep0[i] == i;
    }
    cr_assert_not(in_order, "epoch 0 is not shuffled");
    cr_assert_neq(memcmp(ep0, ep1, sizeof ep0), 0, "epochs share one order");
    qv_dataset_free(ds);
}

Test(batch, bad_arguments_and_stale_cursor)
{
    qv_dataset *ds = load_str(TINY);
    int32_t tok[8], tgt[8];
    qv_err e;
    qv_cursor c = {0, 0};
    cr_assert_eq(qv_dataset_next_batch(ds, &c, 0, 0, 4, tok, tgt, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_dataset_next_batch(ds, &c, 0, 2, 0, tok, tgt, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_dataset_next_batch(ds, &c, 0, 2, 4, NULL, tgt, &e), QV_ERR_INVALID);
    c.index = 3; /* a pass has 3 rows */
    cr_assert_eq(qv_dataset_next_batch(ds, &c, 0, 2, 4, tok, tgt, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "cursor"), "%s", e.msg);
    cr_assert_eq(c.index, 3, "cursor moved on error");
    cr_assert_eq(qv_dataset_count_targets(NULL, 1, 1), 0);
    qv_dataset_free(ds);
}

/* ---- packed text ---------------------------------------------------- */

Test(packed, windows_are_slices_and_eval_covers_every_token)
{
    const char *text = "hello world";
    qv_dataset *ds = NULL;
    qv_err e;
    cr_assert_eq(qv_dataset_from_text(text, 11, "t.txt", &ds, &e), QV_OK, "%s", e.msg);
    cr_assert(qv_dataset_is_packed(ds));
    cr_assert_eq(qv_dataset_n_examples(ds), 1);
    cr_assert_eq(qv_dataset_n_tokens(ds), 13);
    cr_assert_eq(qv_dataset_n_trained(ds), 12);
    int32_t stream[13] = {BOS, 'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', EOS};
    enum { B = 3, S = 4 };
    int32_t tok[4 * S], tgt[4 * S]; /* the eval below takes 4 rows */
    qv_cursor c = {0, 0};
    int offsets_seen = 0;
    for (int k = 0; k < 20; ++k) {
        cr_assert_eq(qv_dataset_next_batch(ds, &c, 3, B, S, tok, tgt, &e), QV_OK, "%s", e.msg);
        for (int r = 0; r < B; ++r) {
            int o = -1;
            for (int cand = 0; cand + S < 13 && o < 0; ++cand)
                if (memcmp(tok + r * S, stream + cand, sizeof(int32_t) * S) == 0)
                    o = cand;
            cr_assert_geq(o, 0, "row is not a window of the stream");
            cr_assert_eq(memcmp(tgt + r * S, stream + o + 1, sizeof(int32_t) * S), 0);
            offsets_seen |= 1 << o;
        }
    }
    cr_assert_gt(__builtin_popcount((unsigned)offsets_seen), 4, "offsets are not random");
    /* a pass is (13 - 1) / 4 = 3 windows: 60 rows = 20 passes */
    cr_assert_eq(c.epoch, 20);
    cr_assert_eq(c.index, 0);
    /* eval: windows at 0, 4, 8 predict tokens 1..12 exactly once */
    c = (qv_cursor){0, 0};
    int rows;
    cr_assert_eq(qv_dataset_eval_batch(ds, &c, 4, S, tok, tgt, &rows, &e), QV_OK);
    cr_assert_eq(rows, 3);
    for (int r = 0; r < 3; ++r) {
        cr_assert_eq(memcmp(tok + r * S, stream + 4 * r, sizeof(int32_t) * S), 0);
        cr_assert_eq(memcmp(tgt + r * S, stream + 4 * r + 1, sizeof(int32_t) * S), 0);
    }
    cr_assert_eq(qv_dataset_count_targets(tgt, 4, S), 12);
    cr_assert_eq(qv_dataset_eval_batch(ds, &c, 4, S, tok, tgt, &rows, &e), QV_OK);
    cr_assert_eq(rows, 0);
    qv_dataset_free(ds);
}

Test(packed, short_text_pads_and_split_by_position)
{
    qv_dataset *ds = NULL;
    qv_err e;
    cr_assert_eq(qv_dataset_from_text("ab", 2, NULL, &ds, &e), QV_OK, "%s", e.msg);
    int32_t tok[6], tgt[6];
    qv_cursor c = {0, 0};
    cr_assert_eq(qv_dataset_next_batch(ds, &c, 0, 1, 6, tok, tgt, &e), QV_OK, "%s", e.msg);
    const int32_t et[6] = {BOS, 'a', 'b', EOS, EOS, EOS};
    const int32_t eg[6] = {'a', 'b', EOS, -1, -1, -1};
    expect_row(tok, tgt, et, eg, 6, "short packed row");
    qv_dataset_free(ds);

    cr_assert_eq(qv_dataset_from_text("", 0, "empty", &ds, &e), QV_ERR_INVALID);
    cr_assert_null(ds);

    /* 98 bytes -> 100 tokens; 10% val = the last 10 tokens */
    char text[98];
    for (int i = 0; i < 98; ++i)
        text[i] = (char)('a' + i % 26);
    cr_assert_eq(qv_dataset_from_text(text, 98, "t", &ds, &e), QV_OK);
    qv_dataset *tr, *va;
    cr_assert_eq(qv_dataset_split(ds, 0.1, 0, &tr, &va, &e), QV_OK, "%s", e.msg);
    cr_assert(qv_dataset_is_packed(tr));
    cr_assert(qv_dataset_is_packed(va));
    cr_assert_eq(qv_dataset_n_tokens(tr), 90);
    cr_assert_eq(qv_dataset_n_tokens(va), 10);
    size_t len;
    const int32_t *v = qv_dataset_example(va, 0, NULL, &len);
    cr_assert_eq(len, 10);
    cr_assert_eq(v[0], 'a' + 89 % 26); /* token 90 is byte 89 */
    cr_assert_eq(v[9], EOS);
    qv_dataset_free(tr);
    qv_dataset_free(va);
    qv_dataset_free(ds);
}

/* ---- a GGUF vocabulary and a chat template -------------------------- */

#include "formats/chat.h"
#include "formats/gguf.h"
#include "formats/vocab.h"

/* A byte-level BPE vocabulary made here: ids 0..255 are the bytes in
 * GPT-2's byte-to-unicode alphabet, 256 "<|im_start|>", 257 "<|im_end|>",
 * 258 "<|endoftext|>" (control; EOS), 259 "hi", 260 "ok" (merges "h i",
 * "o k"); no BOS added. */
enum { IM_START = 256, IM_END = 257, EOT = 258, HI = 259, OK = 260 };

static qv_vocab *chatml_vocab(void)
{
    static char texts[261][8];
    const char *tok[261];
    int32_t type[261];
    for (int b = 0; b < 256; b++) {
        /* bytes 33..126, 161..172, 174..255 are themselves; the rest are
         * 256 + n in order */
        int cp;
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
            cp = b;
        } else {
            int n = 0;
            for (int c = 0; c < b; c++)
                if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174))
                    n++;
            cp = 256 + n;
        }
        if (cp < 0x80) {
            texts[b][0] = (char)cp;
            texts[b][1] = 0;
        } else {
            texts[b][0] = (char)(0xc0 | (cp >> 6));
            texts[b][1] = (char)(0x80 | (cp & 0x3f));
            texts[b][2] = 0;
        }
        tok[b] = texts[b];
        type[b] = 1;
    }
    tok[IM_START] = "<|im_start|>";
    tok[IM_END] = "<|im_end|>";
    tok[EOT] = "<|endoftext|>";
    tok[HI] = "hi";
    tok[OK] = "ok";
    type[IM_START] = type[IM_END] = type[EOT] = 3;
    type[HI] = type[OK] = 1;
    const char *merges[] = {"h i", "o k"};
    qv_gguf_writer *w = NULL;
    qv_err e;
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK);
    qv_gguf_writer_set_str(w, "general.architecture", "llama", &e);
    qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", &e);
    qv_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default", &e);
    cr_assert_eq(qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", tok, 261, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_i32_arr(w, "tokenizer.ggml.token_type", type, 261, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", merges, 2, &e), QV_OK);
    qv_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", EOT, &e);
    qv_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", EOT, &e);
    qv_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false, &e);
    uint8_t *buf;
    size_t n;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK);
    qv_gguf_writer_free(w);
    qv_gguf *g = NULL;
    cr_assert_eq(qv_gguf_parse(buf, n, &g, &e), QV_OK, "%s", e.msg);
    qv_vocab *v = NULL;
    cr_assert_eq(qv_vocab_load(g, &v, &e), QV_OK, "%s", e.msg);
    qv_gguf_free(g);
    free(buf);
    return v;
}

static qv_dataset *load_opts(const char *s, const qv_dataset_opts *o)
{
    qv_dataset *ds = NULL;
    qv_err e;
    cr_assert_eq(qv_dataset_load_mem_ex(s, strlen(s), "t", o, &ds, &e), QV_OK, "%s", e.msg);
    return ds;
}

Test(vocab_data, chatml_messages_train_the_assistant_turns_only)
{
    qv_vocab *v = chatml_vocab();
    qv_dataset_opts o = {.vocab = v, .chat = QV_CHAT_CHATML};
    qv_dataset *ds = load_opts(
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"},"
        " {\"role\": \"assistant\", \"content\": \"ok\"}]}\n", &o);
    /* "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n" */
    const int32_t want[] = {IM_START, 'u', 's', 'e', 'r', 10, HI, IM_END, 10,
                            IM_START, 'a', 's', 's', 'i', 's', 't', 'a', 'n', 't', 10,
                            OK, IM_END, 10};
    const uint8_t wmask[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                             1, 1, 0};
    const uint8_t *mask;
    size_t len;
    const int32_t *t = qv_dataset_example(ds, 0, &mask, &len);
    cr_assert_eq(len, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < len; i++) {
        cr_expect_eq(t[i], want[i], "token %zu: %d, want %d", i, t[i], want[i]);
        cr_expect_eq(mask[i], wmask[i], "mask %zu", i);
    }
    cr_expect_eq(qv_dataset_pad(ds), EOT);
    qv_dataset_free(ds);
    qv_vocab_free(v);
}

Test(vocab_data, user_text_never_makes_special_tokens)
{
    qv_vocab *v = chatml_vocab();
    qv_dataset_opts o = {.vocab = v, .chat = QV_CHAT_CHATML};
    qv_dataset *ds = load_opts(
        "{\"messages\": [{\"role\": \"user\", \"content\": \"<|im_end|>\"},"
        " {\"role\": \"assistant\", \"content\": \"<|endoftext|>ok\"}]}\n"
        "{\"text\": \"<|im_start|>\"}\n", &o);
    for (size_t x = 0; x < 2; x++) {
        const uint8_t *mask;
        size_t len, specials = 0;
        const int32_t *t = qv_dataset_example(ds, x, &mask, &len);
        for (size_t i = 0; i < len; i++)
            specials += t[i] >= IM_START && t[i] <= EOT;
        /* example 0: only the template's 2 starts + 2 ends; example 1: its EOS */
        cr_expect_eq(specials, x == 0 ? 4u : 1u, "example %zu: %zu special tokens", x,
                     specials);
    }
    qv_dataset_free(ds);
    qv_vocab_free(v);
}

Test(vocab_data, text_and_completion_end_with_the_vocabulary_eos)
{
    qv_vocab *v = chatml_vocab();
    qv_dataset_opts o = {.vocab = v, .chat = -1};
    qv_dataset *ds = load_opts("{\"prompt\": \"h\", \"completion\": \"i ok\"}\n"
                               "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n",
                               &o);
    /* "hi ok" is tokenized as one string: "hi" merges across the prompt /
     * completion boundary and is trained (one of its bytes is) */
    const int32_t want[] = {HI, 0x20, OK, EOT};
    const uint8_t wmask[] = {1, 1, 1, 1};
    const uint8_t *mask;
    size_t len;
    const int32_t *t = qv_dataset_example(ds, 0, &mask, &len);
    cr_assert_eq(len, 4u);
    for (size_t i = 0; i < len; i++) {
        cr_expect_eq(t[i], want[i], "token %zu", i);
        cr_expect_eq(mask[i], wmask[i], "mask %zu", i);
    }
    /* no chat template: the messages line is an issue that says what to do */
    cr_assert_eq(qv_dataset_n_issues(ds), 1u);
    size_t ni;
    const qv_dataset_issue *is = qv_dataset_issues(ds, &ni);
    cr_expect(strstr(is[0].reason, "--chat-template"), "%s", is[0].reason);
    qv_dataset_free(ds);
    qv_vocab_free(v);
}

Test(vocab_data, long_examples_skipped_or_truncated)
{
    const char *s = "{\"text\": \"abcdefghij\"}\n{\"text\": \"ab\"}\n";
    qv_dataset_opts o = {.chat = -1, .max_tokens = 6, .long_policy = QV_LONG_SKIP};
    qv_dataset *ds = load_opts(s, &o);
    cr_expect_eq(qv_dataset_n_examples(ds), 1u);
    cr_expect_eq(qv_dataset_n_long(ds), 1u);
    cr_expect_eq(qv_dataset_n_tokens(ds), 4u); /* BOS a b EOS */
    qv_dataset_free(ds);
    o.long_policy = QV_LONG_TRUNCATE;
    ds = load_opts(s, &o);
    cr_expect_eq(qv_dataset_n_examples(ds), 2u);
    cr_expect_eq(qv_dataset_n_long(ds), 1u);
    const uint8_t *mask;
    size_t len;
    const int32_t *t = qv_dataset_example(ds, 0, &mask, &len);
    cr_assert_eq(len, 6u);
    cr_expect_eq(t[0], BOS);
    cr_expect_eq(t[5], 'e');
    cr_expect_eq(qv_dataset_n_trained(ds), 5u + 3u);
    qv_dataset_free(ds);
    /* every example too long: an error that says how to keep them */
    qv_dataset *none = NULL;
    qv_err e;
    o.long_policy = QV_LONG_SKIP;
    o.max_tokens = 3;
    cr_assert_eq(qv_dataset_load_mem_ex(s, strlen(s), "t", &o, &none, &e), QV_ERR_INVALID);
    cr_expect(strstr(e.msg, "--long truncate"), "%s", e.msg);
}

/* Bounded reads (issue 14): `--data /dev/zero` read forever and a dataset of
 * one 100 MB line took ~1 GB. Devices and pipes are refused at once; a line
 * over max_line is skipped as an issue, naming its number, and the lines
 * around it still load. */
Test(dataset, devices_are_refused_and_long_lines_are_bounded, .timeout = 20)
{
    qv_dataset *ds = NULL;
    qv_err e;
    qv_err_clear(&e);
    cr_expect_eq(qv_dataset_load_file("/dev/zero", &ds, &e), QV_ERR_IO);
    cr_expect_not_null(strstr(e.msg, "not a regular file"), "%s", e.msg);
    cr_expect_null(ds);
    cr_expect_eq(qv_dataset_load_file("/tmp", &ds, &e), QV_ERR_IO, "a folder: %s", e.msg);

    char path[] = "/tmp/qv-longline-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("{\"text\": \"before\"}\n{\"text\": \"", f);
    for (int i = 0; i < 3 * 1024; i++) /* a 3 MiB line */
        for (int k = 0; k < 1024; k++)
            fputc('x', f);
    fputs("\"}\n{\"text\": \"after\"}", f); /* the last line has no newline */
    fclose(f);
    qv_dataset_opts o = {.chat = -1, .max_line = 1u << 20};
    cr_assert_eq(qv_dataset_load_file_ex(path, &o, &ds, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(qv_dataset_n_examples(ds), 2);
    cr_expect_eq(qv_dataset_n_issues(ds), 1);
    size_t ni = 0;
    const qv_dataset_issue *is = qv_dataset_issues(ds, &ni);
    cr_assert_eq(ni, 1);
    cr_expect_eq(is[0].line, 2);
    cr_expect_not_null(strstr(is[0].reason, "longer than 1048576 bytes"), "%s", is[0].reason);
    cr_expect_not_null(strstr(is[0].reason, "--max-line"), "%s", is[0].reason);
    qv_dataset_free(ds);
    /* the default limit (16 MiB) keeps the 3 MiB line */
    cr_assert_eq(qv_dataset_load_file(path, &ds, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(qv_dataset_n_examples(ds), 3);
    qv_dataset_free(ds);
    unlink(path);
}
