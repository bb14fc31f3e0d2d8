/*
 * llamacpp_logits: every position's logits from llama.cpp, for the parity
 * report (tools/parity_report.py).
 *
 *   llamacpp_logits -m MODEL.gguf [--lora ADAPTER.gguf [--lora-scale 1]]
 *                   --tokens TOKENS.i32 --seq S -o LOGITS.f32 [--threads N]
 *                   [--verbose]
 *
 * TOKENS.i32 is int32 little-endian, R rows of S token ids (R = size/(4*S)).
 * Each row is one independent sequence from position 0: the context's memory
 * is cleared before it, and all S tokens go through one llama_decode with an
 * output at every position. LOGITS.f32 is float32 little-endian,
 * R x S x n_vocab. Settings: CPU only, n_ctx = n_batch = n_ubatch = S (llama.cpp
 * pads n_ctx to a multiple of 256; the extra cells are empty and masked),
 * f32 K and V cache, flash attention off, one sequence.
 *
 * On success prints one line of JSON to stdout: {"rows":R,"seq":S,"vocab":V}.
 * On error prints a message to stderr and exits 1.
 *
 * --threads defaults to llama.cpp's default; --verbose passes llama.cpp's
 * whole log through (otherwise only its warnings and errors).
 *
 * Not built by qvac's Makefile (it links against a llama.cpp build with
 * shared libraries, BUILD_SHARED_LIBS=ON, which puts them in BUILD/bin):
 *   cc -O2 -std=c11 -I LLAMA_SRC/include -I LLAMA_SRC/ggml/include \
 *      tools/llamacpp_logits.c -L LLAMA_BUILD/bin -lllama -lggml -lggml-base \
 *      -Wl,-rpath,ABSOLUTE_LLAMA_BUILD/bin -o build/llamacpp/llamacpp_logits
 * Tested against llama.cpp d32676d77 (llama_set_adapters_lora,
 * llama_memory_clear, flash_attn_type).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static bool g_verbose = false;
static enum ggml_log_level g_last_level = GGML_LOG_LEVEL_INFO;

/* llama.cpp's log: warnings and errors to stderr; everything with --verbose. */
static void log_cb(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (level != GGML_LOG_LEVEL_CONT)
        g_last_level = level;
    if (g_verbose || g_last_level >= GGML_LOG_LEVEL_WARN)
        fputs(text, stderr);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("llamacpp_logits: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void usage(FILE *f)
{
    fputs("usage: llamacpp_logits -m MODEL.gguf [--lora ADAPTER.gguf [--lora-scale X]]\n"
          "                       --tokens TOKENS.i32 --seq S -o LOGITS.f32\n"
          "                       [--threads N] [--step N] [--verbose]\n"
          "  TOKENS.i32: int32 LE, R rows of S token ids; each row is evaluated\n"
          "  from position 0 with a cleared memory, logits at every position.\n"
          "  LOGITS.f32: float32 LE, R x S x n_vocab.\n",
          f);
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || end == s || v < lo || v > hi)
        die("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
    return v;
}

static float parse_float(const char *opt, const char *s)
{
    char *end = NULL;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || !end || *end || end == s)
        die("%s: '%s' is not a number", opt, s);
    return v;
}

static int32_t le32(const unsigned char *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

/* float to 4 little-endian bytes, whatever the host order. */
static void put_le_f32(unsigned char *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    p[0] = (unsigned char)u;
    p[1] = (unsigned char)(u >> 8);
    p[2] = (unsigned char)(u >> 16);
    p[3] = (unsigned char)(u >> 24);
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *lora_path = NULL, *tokens_path = NULL, *out_path = NULL;
    float lora_scale = 1.0f;
    bool have_scale = false;
    long seq = 0, step = 0;
    int threads = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--verbose")) {
            g_verbose = true;
            continue;
        }
        if (i + 1 >= argc)
            die("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "--step"))
            step = parse_long(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--lora"))
            lora_path = v;
        else if (!strcmp(a, "--lora-scale")) {
            lora_scale = parse_float(a, v);
            have_scale = true;
        } else if (!strcmp(a, "--tokens"))
            tokens_path = v;
        else if (!strcmp(a, "--seq"))
            seq = parse_long(a, v, 1, 1L << 20);
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            out_path = v;
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t"))
            threads = (int)parse_long(a, v, 1, 1024);
        else
            die("unknown option '%s' (see --help)", a);
    }
    if (!model_path || !tokens_path || !out_path || seq <= 0) {
        usage(stderr);
        die("-m, --tokens, --seq and -o are required");
    }
    if (have_scale && !lora_path)
        die("--lora-scale without --lora");

    /* Tokens: read and shape-check before loading anything. */
    FILE *tf = fopen(tokens_path, "rb");
    if (!tf)
        die("cannot open tokens file %s: %s", tokens_path, strerror(errno));
    if (fseek(tf, 0, SEEK_END) != 0)
        die("cannot seek %s: %s", tokens_path, strerror(errno));
    long tsize = ftell(tf);
    if (tsize < 0 || fseek(tf, 0, SEEK_SET) != 0)
        die("cannot size %s: %s", tokens_path, strerror(errno));
    size_t row_bytes = (size_t)seq * 4;
    if (tsize == 0 || (size_t)tsize % row_bytes != 0)
        die("%s: %ld bytes is not a positive whole number of rows of %ld int32 tokens (%zu bytes each)",
            tokens_path, tsize, seq, row_bytes);
    size_t rows = (size_t)tsize / row_bytes;
    size_t ntok = rows * (size_t)seq;
    unsigned char *raw = malloc((size_t)tsize);
    int32_t *tokens = malloc(ntok * sizeof *tokens);
    if (!raw || !tokens)
        die("out of memory for %zu tokens", ntok);
    if (fread(raw, 1, (size_t)tsize, tf) != (size_t)tsize)
        die("short read of %s", tokens_path);
    fclose(tf);
    for (size_t i = 0; i < ntok; i++)
        tokens[i] = le32(raw + 4 * i);
    free(raw);

    llama_log_set(log_cb, NULL);
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model)
        die("llama.cpp could not load the model %s (run with --verbose for its log)", model_path);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int32_t n_vocab = llama_vocab_n_tokens(vocab);
    if (n_vocab <= 0)
        die("%s: model has no vocabulary (n_vocab = %d)", model_path, n_vocab);

    for (size_t i = 0; i < ntok; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            die("%s: token %d at row %zu position %zu is out of range [0, %d)", tokens_path, tokens[i],
                i / (size_t)seq, i % (size_t)seq, n_vocab);

    struct llama_adapter_lora *adapter = NULL;
    if (lora_path) {
        adapter = llama_adapter_lora_init(model, lora_path);
        if (!adapter)
            die("llama.cpp could not load the adapter %s for %s (run with --verbose for its log)", lora_path,
                model_path);
    }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)seq;
    cp.n_batch = (uint32_t)seq;
    cp.n_ubatch = (uint32_t)seq;
    cp.n_seq_max = 1;
    cp.n_outputs_max = 0; /* = n_batch: every position */
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.offload_kqv = false;
    cp.op_offload = false;
    cp.embeddings = false;
    cp.no_perf = true;
    if (threads > 0) {
        cp.n_threads = threads;
        cp.n_threads_batch = threads;
    }
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx)
        die("llama.cpp could not create a context (n_ctx = n_batch = %ld, f32 KV, no flash attention)", seq);
    if (llama_n_ctx(ctx) < (uint32_t)seq)
        die("context holds %u tokens, fewer than --seq %ld", llama_n_ctx(ctx), seq);

    if (adapter) {
        float scale = lora_scale;
        if (llama_set_adapters_lora(ctx, &adapter, 1, &scale) != 0)
            die("llama.cpp refused to attach the adapter %s", lora_path);
    }

    size_t tmp_len = strlen(out_path) + 16;
    char *tmp_path = malloc(tmp_len);
    if (!tmp_path)
        die("out of memory");
    snprintf(tmp_path, tmp_len, "%s.tmp", out_path);
    FILE *of = fopen(tmp_path, "wb");
    if (!of)
        die("cannot create %s: %s", tmp_path, strerror(errno));

    struct llama_batch batch = llama_batch_init((int32_t)seq, 0, 1);
    size_t row_out = (size_t)n_vocab * 4;
    unsigned char *obuf = malloc(row_out);
    if (!obuf)
        die("out of memory for a row of %d logits", n_vocab);

    for (size_t r = 0; r < rows; r++) {
        llama_memory_clear(llama_get_memory(ctx), true);
        /* --step N: the row in pieces of N tokens on top of the cache (1:
         * one token at a time, as generation runs), else one piece */
        long piece = step > 0 && step < seq ? step : seq;
        for (long i0 = 0; i0 < seq; i0 += piece) {
        long n = seq - i0 < piece ? seq - i0 : piece;
        batch.n_tokens = (int32_t)n;
        for (long i = 0; i < n; i++) {
            batch.token[i] = tokens[r * (size_t)seq + (size_t)(i0 + i)];
            batch.pos[i] = (llama_pos)(i0 + i);
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = 1;
        }
        int32_t rc = llama_decode(ctx, batch);
        if (rc != 0) {
            fclose(of);
            remove(tmp_path);
            die("llama_decode failed on row %zu with code %d", r, rc);
        }
        for (long i = 0; i < n; i++) {
            const float *lg = llama_get_logits_ith(ctx, (int32_t)i);
            if (!lg) {
                fclose(of);
                remove(tmp_path);
                die("llama.cpp gave no logits for row %zu position %ld", r, i);
            }
            for (int32_t v = 0; v < n_vocab; v++)
                put_le_f32(obuf + 4 * (size_t)v, lg[v]);
            if (fwrite(obuf, 1, row_out, of) != row_out) {
                fclose(of);
                remove(tmp_path);
                die("write to %s failed: %s", tmp_path, strerror(errno));
            }
        }
        }
    }
    if (fflush(of) != 0 || fclose(of) != 0) {
        remove(tmp_path);
        die("write to %s failed: %s", tmp_path, strerror(errno));
    }
    if (rename(tmp_path, out_path) != 0) {
        remove(tmp_path);
        die("cannot rename %s to %s: %s", tmp_path, out_path, strerror(errno));
    }

    printf("{\"rows\":%zu,\"seq\":%ld,\"vocab\":%d}\n", rows, seq, n_vocab);
    fflush(stdout);

    free(obuf);
    free(tmp_path);
    free(tokens);
    llama_batch_free(batch);
    llama_free(ctx);
    if (adapter)
        llama_adapter_lora_free(adapter);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
