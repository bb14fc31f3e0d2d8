/* cli/cmd_tokenize.c — `qvac tokenize`: the token ids a GGUF model's
 * vocabulary (formats/vocab.h) gives a text, as llama.cpp would. */
#include <getopt.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/vocab.h"

void qv_help_tokenize(FILE *out)
{
    fprintf(out,
            "usage: qvac tokenize --model FILE.gguf [--file F | TEXT] [--bos] "
            "[--special] [--json]\n\n"
            "Prints the token ids of TEXT (or of the whole file F, newlines "
            "and all; F may\nbe - for standard input), space-separated on "
            "one line, as llama.cpp's\ntokenizer gives them for the model's "
            "vocabulary (tokenizer.ggml.*: SPM or\nbyte-level BPE). The file "
            "may hold only the vocabulary, without tensors.\n\n"
            "options:\n"
            "  -m, --model FILE\n"
            "                 the GGUF file whose vocabulary to use\n"
            "  -f, --file F   tokenize the contents of F instead of TEXT\n"
            "  --bos          put the BOS token first (default: none, as in "
            "llama.cpp's\n"
            "                 test vectors)\n"
            "  --special      turn special-token texts such as "
            "<|begin_of_text|> into\n"
            "                 their tokens (default: plain text)\n"
            "  --json         print {\"ids\": [...], \"pieces\": [...], "
            "\"hex\": [...]}: each\n"
            "                 token's text (a piece that is not whole UTF-8 "
            "shows U+FFFD\n"
            "                 for its stray bytes) and its exact bytes in "
            "hex\n"
            "  -h, --help     this help\n");
}

/* Reads all of path ("-": stdin) into a malloc'd buffer. */
static char *read_all(const char *path, size_t *n, qv_err *err)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        qv_fail(err, errno == ENOENT ? QV_ERR_NOT_FOUND : QV_ERR_IO,
                "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        char *nb = cap > ((size_t)1 << 40) ? NULL : realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!buf) {
        qv_fail(err, QV_ERR_NOMEM, "out of memory reading '%s'", path);
        return NULL;
    }
    if (bad) {
        free(buf);
        qv_fail(err, QV_ERR_IO, "cannot read '%s'", path);
        return NULL;
    }
    *n = len;
    return buf;
}

/* The piece as a JSON string: valid UTF-8 as is, each stray byte as
 * U+FFFD (jansson takes only UTF-8). */
static json_t *piece_json(const char *p, size_t n)
{
    char *s = malloc(n * 3 + 1);
    if (!s)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        const unsigned char *u = (const unsigned char *)p + i;
        size_t l = 0;
        if (u[0] < 0x80)
            l = 1;
        else if (u[0] >= 0xC2 && u[0] <= 0xDF)
            l = 2;
        else if (u[0] >= 0xE0 && u[0] <= 0xEF)
            l = 3;
        else if (u[0] >= 0xF0 && u[0] <= 0xF4)
            l = 4;
        int ok = l > 0 && i + l <= n;
        for (size_t j = 1; ok && j < l; ++j)
            ok = (u[j] & 0xC0) == 0x80;
        if (ok && l == 3)
            ok = !(u[0] == 0xE0 && u[1] < 0xA0) && !(u[0] == 0xED && u[1] >= 0xA0);
        if (ok && l == 4)
            ok = !(u[0] == 0xF0 && u[1] < 0x90) && !(u[0] == 0xF4 && u[1] >= 0x90);
        if (ok) {
            memcpy(s + k, u, l);
            k += l;
            i += l;
        } else {
            memcpy(s + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += 1;
        }
    }
    json_t *j = json_stringn(s, k);
    free(s);
    return j;
}

static json_t *hex_json(const char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(n * 2 + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; ++i) {
        s[2 * i] = digits[(unsigned char)p[i] >> 4];
        s[2 * i + 1] = digits[(unsigned char)p[i] & 15];
    }
    json_t *j = json_stringn(s, n * 2);
    free(s);
    return j;
}

int qv_cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *text = NULL;
    int bos = 0, special = 0, as_json = 0;
    enum { O_FILE = QV_CLI_ID, O_BOS, O_SPECIAL, O_JSON };
    static const struct option lo[] = {{"model", required_argument, NULL, 'm'},
                                       {"file", required_argument, NULL, 'f'},
                                       {"bos", no_argument, NULL, O_BOS},
                                       {"special", no_argument, NULL, O_SPECIAL},
                                       {"json", no_argument, NULL, O_JSON},
                                       {NULL, 0, NULL, 0}};
    const char *texts[2] = {NULL, NULL};
    qv_cli_args ap;
    qv_cli_args_init(&ap, "tokenize", argc, argv, lo, texts, 2);
    for (int c; (c = qv_cli_next(&ap)) != -1;) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'f': file = optarg; break;
        case O_BOS: bos = 1; break;
        case O_SPECIAL: special = 1; break;
        case O_JSON: as_json = 1; break;
        default: return QV_EXIT_USAGE;
        }
    }
    if (ap.npos > 1)
        return qv_cli_usage("tokenize", "give one TEXT (quote it), not '%s' as well",
                            texts[1]);
    text = texts[0];
    if (!model)
        return qv_cli_usage("tokenize", "--model FILE.gguf is required");
    if (file && text)
        return qv_cli_usage("tokenize", "give TEXT or --file, not both");
    if (!file && !text)
        return qv_cli_usage("tokenize", "give a TEXT or --file F");

    qv_err err;
    qv_err_clear(&err);
    qv_vocab *v = NULL;
    if (qv_vocab_open(model, &v, &err) != QV_OK)
        return qv_cli_error(&err);
    char *buf = NULL;
    size_t len = 0;
    if (file) {
        buf = read_all(file, &len, &err);
        if (!buf) {
            qv_vocab_free(v);
            return qv_cli_error(&err);
        }
        text = buf;
    } else {
        len = strlen(text);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (qv_vocab_tokenize(v, text, len, bos, special, &ids, &n, &err) != QV_OK) {
        free(buf);
        qv_vocab_free(v);
        return qv_cli_error(&err);
    }
    int rc = QV_EXIT_OK;
    if (as_json) {
        json_t *jids = json_array(), *pieces = json_array(), *hex = json_array();
        for (size_t i = 0; i < n; ++i) {
            size_t pl;
            const char *p = qv_vocab_token_to_piece(v, ids[i], true, &pl);
            json_array_append_new(jids, json_integer(ids[i]));
            json_array_append_new(pieces, piece_json(p, pl));
            json_array_append_new(hex, hex_json(p, pl));
        }
        json_t *o = json_pack("{s:o, s:o, s:o, s:I, s:s, s:s}", "ids", jids,
                              "pieces", pieces, "hex", hex, "n_tokens",
                              (json_int_t)n, "model", qv_vocab_model_name(v),
                              "pre", qv_vocab_pre_name(v));
        if (o)
            qv_cli_print_json(o);
        else {
            fprintf(stderr, "qvac: out of memory building JSON\n");
            rc = QV_EXIT_FAIL;
        }
    } else {
        for (size_t i = 0; i < n; ++i)
            printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    free(ids);
    free(buf);
    qv_vocab_free(v);
    return rc;
}
