/* benchmarks/bench_tok.c — tokenizer throughput (formats/vocab.c) on one
 * core: each vocabulary tokenizes the whole text, best of --reps runs, and
 * the MB/s is input bytes over that time. Loading is timed separately.
 *
 *   make bench-tok VOCABS="VOCAB.gguf..."   (builds build/bench_tok)
 *   build/bench_tok [--text FILE] [--reps N] [--special] VOCAB.gguf...
 *
 * The text defaults to data/corpus/stories.txt (English). Vocabularies:
 * e.g. llama.cpp's models/ggml-vocab-{gpt-2,llama-spm,...}.gguf. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "formats/vocab.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (len < cap)
            break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    fclose(f);
    *n = len;
    return buf;
}

int main(int argc, char **argv)
{
    const char *text_path = "data/corpus/stories.txt";
    int reps = 5, special = 0, first = 0;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc) {
            text_path = argv[++i];
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--special")) {
            special = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "bench_tok: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (!first) {
            first = i;
        }
    }
    if (!first || reps < 1) {
        fprintf(stderr, "usage: bench_tok [--text FILE] [--reps N] "
                        "[--special] VOCAB.gguf...\n");
        return 2;
    }
    size_t n;
    char *text = slurp(text_path, &n);
    if (!text) {
        fprintf(stderr, "bench_tok: cannot read '%s'\n", text_path);
        return 1;
    }
    printf("text: %s, %zu bytes; best of %d runs, one thread\n\n", text_path,
           n, reps);
    printf("%-28s %-5s %-16s %9s %9s %10s %9s\n", "vocabulary", "type", "pre",
           "load ms", "tokens", "bytes/tok", "MB/s");
    int rc = 0;
    for (int i = first; i < argc; ++i) {
        if (argv[i][0] == '-') {
            if (!strcmp(argv[i], "--text") || !strcmp(argv[i], "--reps"))
                i++;
            continue;
        }
        qv_vocab *v;
        qv_err err;
        double t0 = now();
        if (qv_vocab_open(argv[i], &v, &err) != QV_OK) {
            printf("%-28s refused: %s\n", argv[i], err.msg);
            continue;
        }
        double load = now() - t0, best = 1e30;
        size_t ntok = 0;
        for (int r = 0; r < reps; ++r) {
            int32_t *ids;
            t0 = now();
            if (qv_vocab_tokenize(v, text, n, false, special, &ids, &ntok,
                                  &err) != QV_OK) {
                printf("%s: %s\n", argv[i], err.msg);
                rc = 1;
                break;
            }
            double t = now() - t0;
            if (t < best)
                best = t;
            free(ids);
        }
        const char *name = strrchr(argv[i], '/');
        printf("%-28s %-5s %-16s %9.1f %9zu %10.2f %9.2f\n",
               name ? name + 1 : argv[i],
               qv_vocab_kind(v) == QV_VOCAB_SPM ? "SPM" : "BPE",
               qv_vocab_pre_name(v), load * 1e3, ntok,
               ntok ? (double)n / (double)ntok : 0.0, (double)n / best / 1e6);
        qv_vocab_free(v);
    }
    free(text);
    return rc;
}
