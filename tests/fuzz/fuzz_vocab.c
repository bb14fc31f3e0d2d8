/* tests/fuzz/fuzz_vocab.c — libFuzzer target for GGUF vocabularies and the
 * tokenizer (formats/vocab.c, formats/vocab_bpe.c), which read untrusted
 * model files and untrusted text.
 *
 * The first byte picks what the rest is:
 *   0  a GGUF file: parsed and, when it parses, loaded as a vocabulary;
 *      a vocabulary that loads tokenizes the file's last 4 KiB
 *   1  a vocabulary made up from the bytes (model, pre-tokenizer, model
 *      name, token texts and types, merges, special ids) and a text: the
 *      loader's checks and the tokenizer on odd vocabularies
 *   2  a text for fixed SPM and BPE vocabularies
 * Whatever the bytes: a failure leaves nothing and says why; ids are in
 * range; pieces and detokenizing work on every id; tokenizing is
 * deterministic; SPM gives valid UTF-8 text without U+2581 back exactly,
 * and byte-level BPE without space cleaning is stable under
 * detokenize-then-tokenize; plain text never yields a control token from
 * the fixed vocabularies.
 *
 *   make fuzz              # runs for FUZZ_SECONDS (default 30)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static qv_vocab *load_writer(qv_gguf_writer *w, qv_err *err)
{
    uint8_t *buf;
    size_t n;
    if (qv_gguf_write_mem(w, &buf, &n, err) != QV_OK)
        return NULL;
    qv_gguf *g = NULL;
    if (qv_gguf_parse(buf, n, &g, err) != QV_OK)
        abort(); /* the writer wrote what the reader refuses */
    qv_vocab *v = NULL;
    qv_status s = qv_vocab_load(g, &v, err);
    if ((s == QV_OK) != (v != NULL) || (s != QV_OK && !err->msg[0]))
        abort(); /* a failure must leave nothing and say why */
    qv_gguf_free(g);
    free(buf);
    return v;
}

/* ---- fixed vocabularies ---------------------------------------------- */

static qv_vocab *fixed_spm, *fixed_bpe;

static void gpt2_char(int b, char out[3])
{
    int cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
          (b >= 0xAE && b <= 0xFF))) {
        int n = 0;
        for (int c = 0; c < b; ++c)
            if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) ||
                  (c >= 0xAE && c <= 0xFF)))
                n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static void make_fixed(void)
{
    qv_err err;
    /* SPM: <unk> <s> </s>, the 256 byte tokens, a few pieces */
    static char bytes[256][7];
    const char *normal[] = {"\xE2\x96\x81", "a", "b", "ab", ("\xE2\x96\x81" "a"),
                            "\xE2\x96\x81\xE2\x96\x81", "<", "s", ">", "aa",
                            "\xC3\xA9"};
    enum { NN = sizeof normal / sizeof normal[0], NS = 3 + 256 + NN };
    const char *t[NS];
    float sc[NS];
    int32_t ty[NS];
    t[0] = "<unk>";
    t[1] = "<s>";
    t[2] = "</s>";
    ty[0] = 2;
    ty[1] = ty[2] = 3;
    sc[0] = sc[1] = sc[2] = 0;
    for (int b = 0; b < 256; ++b) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        t[3 + b] = bytes[b];
        ty[3 + b] = 6;
        sc[3 + b] = 0;
    }
    for (int i = 0; i < (int)NN; ++i) {
        t[259 + i] = normal[i];
        ty[259 + i] = 1;
        sc[259 + i] = -(float)(i % 4);
    }
    qv_gguf_writer *w;
    if (qv_gguf_writer_new(&w, &err) ||
        qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &err) ||
        qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", t, NS, &err) ||
        qv_gguf_writer_set_f32_arr(w, "tokenizer.ggml.scores", sc, NS, &err) ||
        qv_gguf_writer_set_i32_arr(w, "tokenizer.ggml.token_type", ty, NS, &err))
        abort();
    fixed_spm = load_writer(w, &err);
    qv_gguf_writer_free(w);
    if (!fixed_spm)
        abort();

    /* BPE (qwen2 rules, no space cleaning): the 256 byte characters and
     * some merges */
    static char chars[256][3];
    const char *bt[256 + 6];
    for (int b = 0; b < 256; ++b) {
        gpt2_char(b, chars[b]);
        bt[b] = chars[b];
    }
    const char *more[] = {"he", "ll", "hell", "hello", "\xC4\xA0h",
                          "<|endoftext|>"};
    for (int i = 0; i < 6; ++i)
        bt[256 + i] = more[i];
    int32_t bty[256 + 6];
    for (int i = 0; i < 262; ++i)
        bty[i] = 1;
    bty[261] = 3;
    const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xC4\xA0 h"};
    if (qv_gguf_writer_new(&w, &err) ||
        qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", &err) ||
        qv_gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2", &err) ||
        qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", bt, 262, &err) ||
        qv_gguf_writer_set_i32_arr(w, "tokenizer.ggml.token_type", bty, 262, &err) ||
        qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", merges, 5, &err))
        abort();
    fixed_bpe = load_writer(w, &err);
    qv_gguf_writer_free(w);
    if (!fixed_bpe)
        abort();
}

/* ---- checks ----------------------------------------------------------- */

/* Tokenizes, checks the ids, pieces and detokenizing; returns the ids
 * (caller frees) or NULL when tokenizing refused. */
static int32_t *exercise(const qv_vocab *v, const uint8_t *text, size_t len,
                         bool bos, bool special, size_t *n_out)
{
    qv_err err;
    int32_t *ids = NULL;
    size_t n = 0;
    qv_status s = qv_vocab_tokenize(v, (const char *)text, len, bos, special,
                                    &ids, &n, &err);
    if (s != QV_OK) {
        if (ids || n || !err.msg[0])
            abort();
        return NULL;
    }
    if (!ids)
        abort();
    size_t nv = qv_vocab_size(v);
    for (size_t i = 0; i < n; ++i) {
        if (ids[i] < 0 || (size_t)ids[i] >= nv)
            abort();
        size_t pl;
        const char *p = qv_vocab_token_to_piece(v, ids[i], true, &pl);
        if (!p)
            abort();
        for (size_t k = 0; k < pl; ++k)
            sink += (uint8_t)p[k];
    }
    if (bos && (n == 0 || ids[0] != qv_vocab_bos(v)))
        abort();
    /* the same again */
    int32_t *again;
    size_t n2;
    if (qv_vocab_tokenize(v, (const char *)text, len, bos, special, &again,
                          &n2, &err) != QV_OK ||
        n2 != n || (n && memcmp(again, ids, n * sizeof *ids)))
        abort();
    free(again);
    for (int mode = 0; mode < 4; ++mode) {
        char *t;
        size_t tl;
        if (qv_vocab_detokenize(v, ids, n, mode & 1, mode & 2, &t, &tl,
                                &err) != QV_OK)
            abort();
        if (t[tl] != '\0')
            abort();
        sink += tl;
        free(t);
    }
    *n_out = n;
    return ids;
}

static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t l = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!l || i + l > n)
            return false;
        for (size_t k = 1; k < l; ++k)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        if (l == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0)))
            return false;
        if (l == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90)))
            return false;
        i += l;
    }
    return true;
}

static bool has_esc(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i + 3 <= n; ++i)
        if (s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81)
            return true;
    return false;
}

static void fixed_checks(const uint8_t *text, size_t len)
{
    qv_err err;
    for (int special = 0; special < 2; ++special) {
        size_t n;
        int32_t *ids = exercise(fixed_spm, text, len, special, special, &n);
        if (!ids)
            abort(); /* every byte has a token */
        if (!special) {
            for (size_t i = 0; i < n; ++i)
                if (qv_vocab_is_control(fixed_spm, ids[i]))
                    abort();
            if (valid_utf8(text, len) && !has_esc(text, len)) {
                char *t;
                size_t tl;
                if (qv_vocab_detokenize(fixed_spm, ids, n, false, false, &t,
                                        &tl, &err) != QV_OK ||
                    tl != len || memcmp(t, text, len))
                    abort(); /* SPM gives the text back */
                free(t);
            }
        }
        free(ids);

        ids = exercise(fixed_bpe, text, len, false, special, &n);
        if (!ids)
            abort();
        if (!special) {
            for (size_t i = 0; i < n; ++i)
                if (qv_vocab_is_control(fixed_bpe, ids[i]))
                    abort();
            /* detokenize gives the text as llama.cpp decodes it, which
             * tokenizes to the same ids */
            char *t;
            size_t tl;
            if (qv_vocab_detokenize(fixed_bpe, ids, n, false, false, &t, &tl,
                                    &err) != QV_OK)
                abort();
            if (valid_utf8(text, len) && (tl != len || memcmp(t, text, len)))
                abort();
            int32_t *ids2;
            size_t n2;
            if (qv_vocab_tokenize(fixed_bpe, t, tl, false, false, &ids2, &n2,
                                  &err) != QV_OK ||
                n2 != n || (n && memcmp(ids2, ids, n * sizeof *ids)))
                abort();
            free(ids2);
            free(t);
        }
        free(ids);
    }
}

/* ---- vocabularies made from the bytes ---------------------------------- */

static const char *const MODELS[] = {"llama", "gpt2", "bert", "nonsense"};
static const char *const PRES[] = {
    "default", "gpt-2", "llama-bpe", "falcon", "qwen2", "qwen35",
    "deepseek-llm", "deepseek-coder", "deepseek-v3", "starcoder", "tekken",
    "gpt-4o", "chameleon", "afmoe", "tiny_aya", "youtu", "exaone-moe",
    "jais-2", "bloom", "glm4", "kimi-k2", "unknown-pre", NULL};
static const char *const NAMES[] = {"x", "Phi-3-mini", "jina", "modern-bert"};

/* Splits [p, end) at sep bytes into at most max strings (NUL-terminated
 * copies in buf). */
static size_t split(const uint8_t *p, const uint8_t *end, uint8_t sep,
                    char *buf, const char **out, size_t max)
{
    size_t n = 0;
    while (p < end && n < max) {
        const uint8_t *q = memchr(p, sep, (size_t)(end - p));
        if (!q)
            q = end;
        size_t l = (size_t)(q - p);
        memcpy(buf, p, l);
        buf[l] = '\0';
        out[n++] = buf;
        buf += l + 1;
        p = q + (q < end);
    }
    return n;
}

static void made_up(const uint8_t *d, size_t n)
{
    if (n < 4)
        return;
    qv_err err;
    uint8_t cfg = d[0], cfg2 = d[1], cfg3 = d[2];
    d += 3;
    n -= 3;
    /* sections: tokens \x01 merges \x01 text */
    const uint8_t *end = d + n;
    const uint8_t *s1 = memchr(d, 0x01, n);
    const uint8_t *toks_end = s1 ? s1 : end;
    const uint8_t *m0 = s1 ? s1 + 1 : end;
    const uint8_t *s2 = m0 < end ? memchr(m0, 0x01, (size_t)(end - m0)) : NULL;
    const uint8_t *merges_end = s2 ? s2 : end;
    const uint8_t *text = s2 ? s2 + 1 : end;

    char *buf = malloc(2 * n + 16);
    const char **toks = malloc((n + 1) * sizeof *toks);
    const char **mer = malloc((n + 1) * sizeof *mer);
    if (!buf || !toks || !mer)
        abort();
    size_t nt = split(d, toks_end, 0x00, buf, toks, n);
    size_t nm = split(m0, merges_end, 0x00, buf + (toks_end - d) + 8, mer, n);
    int32_t *ty = malloc((nt + 1) * sizeof *ty);
    float *sc = malloc((nt + 1) * sizeof *sc);
    if (!ty || !sc)
        abort();
    for (size_t i = 0; i < nt; ++i) {
        ty[i] = (int32_t)((cfg3 + i * 7) % 8); /* 0..7: all types and one bad */
        sc[i] = (float)((int)(i * 31 % 17) - 8);
    }
    qv_gguf_writer *w;
    if (qv_gguf_writer_new(&w, &err))
        abort();
    qv_gguf_writer_set_str(w, "general.name", NAMES[(cfg >> 4) & 3], &err);
    qv_gguf_writer_set_str(w, "tokenizer.ggml.model", MODELS[cfg & 3], &err);
    size_t npre = 0;
    while (PRES[npre])
        npre++;
    if (cfg2 % (npre + 1) < npre)
        qv_gguf_writer_set_str(w, "tokenizer.ggml.pre", PRES[cfg2 % (npre + 1)],
                               &err);
    if (nt)
        qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, nt, &err);
    if (cfg & 4)
        qv_gguf_writer_set_i32_arr(w, "tokenizer.ggml.token_type", ty,
                                   (cfg & 64) && nt ? nt - 1 : nt, &err);
    if (cfg & 8)
        qv_gguf_writer_set_f32_arr(w, "tokenizer.ggml.scores", sc, nt, &err);
    qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", mer, nm, &err);
    if (cfg & 128) {
        qv_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", cfg3 % 8, &err);
        qv_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", cfg2 % 8, &err);
        qv_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix",
                                cfg3 & 1, &err);
    }
    qv_vocab *v = load_writer(w, &err);
    qv_gguf_writer_free(w);
    if (v) {
        /* every token's text finds it again */
        for (size_t i = 0; i < qv_vocab_size(v); ++i) {
            size_t tl;
            const char *t = qv_vocab_token_text(v, (int32_t)i, &tl);
            if (!t || qv_vocab_find(v, t, tl) != (int32_t)i)
                abort();
        }
        size_t tn = (size_t)(end - text), k;
        for (int mode = 0; mode < 4; ++mode) {
            int32_t *ids = exercise(v, text, tn, (mode & 1) &&
                                    qv_vocab_bos(v) >= 0, mode & 2, &k);
            free(ids);
        }
        qv_vocab_free(v);
    }
    free(ty);
    free(sc);
    free(buf);
    free(toks);
    free(mer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        make_fixed();
        ready = 1;
    }
    if (size == 0)
        return 0;
    /* an exact-size copy so ASan sees any over-read */
    uint8_t *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    switch (copy[0] % 3) {
    case 0: {
        qv_gguf *g = NULL;
        qv_err err;
        if (qv_gguf_parse(copy + 1, size - 1, &g, &err) == QV_OK) {
            qv_vocab *v = NULL;
            qv_status s = qv_vocab_load(g, &v, &err);
            if ((s == QV_OK) != (v != NULL) || (s != QV_OK && !err.msg[0]))
                abort();
            if (v) {
                /* the file's last 4 KiB as a text: real vocabularies are
                 * megabytes, and tokenizing all of them would leave the
                 * fuzzer a few runs a second */
                size_t k, tl = size - 1 < 4096 ? size - 1 : 4096;
                free(exercise(v, copy + size - tl, tl, false, true, &k));
                free(exercise(v, copy + size - tl, tl, false, false, &k));
                qv_vocab_free(v);
            }
            qv_gguf_free(g);
        }
        break;
    }
    case 1:
        made_up(copy + 1, size - 1);
        break;
    default:
        fixed_checks(copy + 1, size - 1);
        break;
    }
    free(copy);
    return 0;
}
