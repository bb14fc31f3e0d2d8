/* tests/test_vocab.c — GGUF vocabularies and the llama.cpp-compatible
 * tokenizer (formats/vocab.c, formats/vocab_bpe.c).
 *
 * Always run: small SPM and BPE vocabularies built here with the GGUF
 * writer, with expected ids worked out by hand from llama.cpp's algorithms
 * (SPM: highest score first, leftmost on ties; BPE: lowest merge rank
 * first), and the refusals of malformed files.
 *
 * With QVAC_LLAMA_VOCAB_DIR set to llama.cpp's models/ folder: its test
 * vectors (ggml-vocab-NAME.gguf with .inp / .out, the format of
 * tests/test-tokenizer-0.cpp) must come out id for id. Without it those
 * tests are skipped and say so. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "formats/vocab.h"
#include "formats/vocab_impl.h" /* vq_bpe_pretokenize */

#define ESC "\xE2\x96\x81" /* U+2581, SPM's space */

/* ---- helpers -------------------------------------------------------- */

static qv_gguf_writer *writer(void)
{
    qv_gguf_writer *w = NULL;
    qv_err e;
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK, "%s", e.msg);
    return w;
}

/* Writes w to memory, parses it and loads the vocabulary; returns the
 * status and keeps the message in *e. */
static qv_status load_w(qv_gguf_writer *w, qv_vocab **v, qv_err *e)
{
    uint8_t *buf;
    size_t n;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, e), QV_OK, "%s", e->msg);
    qv_gguf *g = NULL;
    cr_assert_eq(qv_gguf_parse(buf, n, &g, e), QV_OK, "%s", e->msg);
    qv_err_clear(e);
    qv_status s = qv_vocab_load(g, v, e);
    qv_gguf_free(g);
    free(buf);
    qv_gguf_writer_free(w);
    return s;
}

static qv_vocab *must_load(qv_gguf_writer *w)
{
    qv_vocab *v = NULL;
    qv_err e;
    qv_status s = load_w(w, &v, &e);
    cr_assert_eq(s, QV_OK, "load: %s", e.msg);
    cr_assert_not_null(v);
    return v;
}

static void tok(const qv_vocab *v, const char *text, size_t len, bool bos,
                bool special, const int32_t *want, size_t n_want)
{
    int32_t *ids = NULL;
    size_t n = 0;
    qv_err e;
    cr_assert_eq(qv_vocab_tokenize(v, text, len, bos, special, &ids, &n, &e),
                 QV_OK, "tokenize: %s", e.msg);
    cr_assert_not_null(ids);
    char got[512] = "";
    for (size_t i = 0; i < n && strlen(got) < 480; ++i)
        snprintf(got + strlen(got), sizeof got - strlen(got), " %d", ids[i]);
    cr_assert_eq(n, n_want, "'%.*s': %zu ids (%s), expected %zu", (int)len,
                 text, n, got, n_want);
    for (size_t i = 0; i < n; ++i)
        cr_assert_eq(ids[i], want[i], "'%.*s': id %zu is %d, expected %d (%s)",
                     (int)len, text, i, ids[i], want[i], got);
    free(ids);
}

#define TOK(v, s, bos, sp, ...)                                             \
    do {                                                                    \
        const int32_t want_[] = {__VA_ARGS__};                              \
        tok(v, s, strlen(s), bos, sp, want_, sizeof want_ / sizeof *want_); \
    } while (0)
#define TOK_NONE(v, s, bos, sp) tok(v, s, strlen(s), bos, sp, NULL, 0)

static char *detok(const qv_vocab *v, const int32_t *ids, size_t n,
                   bool remove_special, bool unparse, size_t *len)
{
    char *t = NULL;
    qv_err e;
    cr_assert_eq(qv_vocab_detokenize(v, ids, n, remove_special, unparse, &t,
                                     len, &e), QV_OK, "detokenize: %s", e.msg);
    cr_assert_not_null(t);
    return t;
}

static void piece_is(const qv_vocab *v, int32_t id, bool special,
                     const char *want, size_t want_len)
{
    size_t n;
    const char *p = qv_vocab_token_to_piece(v, id, special, &n);
    cr_assert_not_null(p, "piece of %d", id);
    cr_assert_eq(n, want_len, "piece of %d: %zu bytes, expected %zu", id, n,
                 want_len);
    cr_assert_eq(memcmp(p, want, n), 0, "piece of %d", id);
}

/* ---- a small SPM vocabulary ------------------------------------------ */

enum {
    S_UNK = 0, S_BOS = 1, S_EOS = 2, S_BYTE0 = 3, /* <0xNN> = 3 + NN */
    S_SP = 259, S_A, S_B, S_C, S_AB, S_BC, S_AA, S_N
};

/* ab and bc scores decide "abc"; eos_rstrip names the model Phi-3 (whose
 * special tokens eat the white space after them in llama.cpp). */
static qv_gguf_writer *spm_writer(float ab, float bc, const char *name)
{
    static char bytes[256][7];
    const char *t[S_N];
    float sc[S_N];
    int32_t ty[S_N];
    t[S_UNK] = "<unk>";
    t[S_BOS] = "<s>";
    t[S_EOS] = "</s>";
    ty[S_UNK] = 2;
    ty[S_BOS] = ty[S_EOS] = 3;
    sc[S_UNK] = sc[S_BOS] = sc[S_EOS] = 0.0f;
    for (int b = 0; b < 256; ++b) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        t[S_BYTE0 + b] = bytes[b];
        ty[S_BYTE0 + b] = 6;
        sc[S_BYTE0 + b] = 0.0f;
    }
    const char *normal[] = {ESC, "a", "b", "c", "ab", "bc", "aa"};
    const float nsc[] = {-1.0f, -3.0f, -3.0f, -3.0f, ab, bc, -1.0f};
    for (int i = 0; i < 7; ++i) {
        t[S_SP + i] = normal[i];
        sc[S_SP + i] = nsc[i];
        ty[S_SP + i] = 1;
    }
    qv_gguf_writer *w = writer();
    qv_err e;
    if (name)
        cr_assert_eq(qv_gguf_writer_set_str(w, "general.name", name, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", t, S_N, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_f32_arr(w, "tokenizer.ggml.scores", sc, S_N, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_i32_arr(w, "tokenizer.ggml.token_type", ty, S_N, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", S_BOS, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", S_EOS, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", S_UNK, &e), QV_OK);
    return w;
}

static qv_vocab *spm(void) { return must_load(spm_writer(-2.0f, -1.5f, NULL)); }

Test(vocab_spm, basics)
{
    qv_vocab *v = spm();
    cr_assert_eq(qv_vocab_size(v), S_N);
    cr_assert_eq(qv_vocab_kind(v), QV_VOCAB_SPM);
    cr_assert_str_eq(qv_vocab_model_name(v), "llama");
    cr_assert_eq(qv_vocab_bos(v), S_BOS);
    cr_assert_eq(qv_vocab_eos(v), S_EOS);
    cr_assert_eq(qv_vocab_unk(v), S_UNK);
    cr_assert_eq(qv_vocab_eot(v), QV_TOKEN_NULL);
    cr_assert(qv_vocab_wants_bos(v));  /* llama.cpp's SPM default */
    cr_assert(!qv_vocab_wants_eos(v));
    cr_assert(qv_vocab_is_eog(v, S_EOS));
    cr_assert(!qv_vocab_is_eog(v, S_A));
    cr_assert_eq(qv_vocab_token_attr(v, S_UNK), QV_TOKEN_ATTR_UNKNOWN);
    cr_assert_eq(qv_vocab_token_attr(v, S_BOS), QV_TOKEN_ATTR_CONTROL);
    cr_assert_eq(qv_vocab_token_attr(v, S_BYTE0 + 0x41), QV_TOKEN_ATTR_BYTE);
    cr_assert_eq(qv_vocab_token_attr(v, S_AB), QV_TOKEN_ATTR_NORMAL);
    cr_assert_eq(qv_vocab_token_attr(v, S_N), QV_TOKEN_ATTR_UNDEFINED);
    cr_assert(qv_vocab_is_control(v, S_BOS));
    cr_assert(!qv_vocab_is_control(v, S_UNK));
    cr_assert(qv_vocab_is_special(v, S_UNK));
    cr_assert(!qv_vocab_is_special(v, S_A));
    cr_assert_float_eq(qv_vocab_token_score(v, S_BC), -1.5f, 1e-7);
    cr_assert_eq(qv_vocab_find(v, "<s>", 3), S_BOS);
    cr_assert_eq(qv_vocab_find(v, ESC, 3), S_SP);
    cr_assert_eq(qv_vocab_find(v, "<0x0A>", 6), S_BYTE0 + 10);
    cr_assert_eq(qv_vocab_find(v, "zz", 2), QV_TOKEN_NULL);
    cr_assert_eq(qv_vocab_find(v, "<s", 2), QV_TOKEN_NULL);
    size_t n;
    cr_assert_str_eq(qv_vocab_token_text(v, S_BC, &n), "bc");
    cr_assert_eq(n, 2);
    cr_assert_null(qv_vocab_token_text(v, -1, &n));
    qv_vocab_free(v);
}

/* "▁abc": bc (-1.5) beats ab (-2.0), and abc is no token */
Test(vocab_spm, higher_score_merges_first)
{
    qv_vocab *v = spm();
    TOK(v, "abc", false, false, S_SP, S_A, S_BC);
    qv_vocab_free(v);
    v = must_load(spm_writer(-1.0f, -2.0f, NULL));
    TOK(v, "abc", false, false, S_SP, S_AB, S_C);
    qv_vocab_free(v);
}

/* equal scores: the leftmost pair first */
Test(vocab_spm, ties_go_left)
{
    qv_vocab *v = spm();
    TOK(v, "aaa", false, false, S_SP, S_AA, S_A);
    TOK(v, "aaaa", false, false, S_SP, S_AA, S_AA);
    qv_vocab_free(v);
}

Test(vocab_spm, leading_space_and_bos)
{
    qv_vocab *v = spm();
    TOK(v, "a", false, false, S_SP, S_A);
    TOK(v, " a", false, false, S_SP, S_SP, S_A);
    TOK(v, "a b", false, false, S_SP, S_A, S_SP, S_B);
    TOK(v, "a", true, false, S_BOS, S_SP, S_A);
    TOK(v, "", true, false, S_BOS);
    TOK_NONE(v, "", false, false);
    qv_vocab_free(v);
}

Test(vocab_spm, byte_fallback)
{
    qv_vocab *v = spm();
    /* é (C3 A9) is no token: its bytes */
    TOK(v, "\xC3\xA9", false, false, S_SP, S_BYTE0 + 0xC3, S_BYTE0 + 0xA9);
    TOK(v, "a\nb", false, false, S_SP, S_A, S_BYTE0 + 0x0A, S_B);
    /* a stray lead byte takes the bytes after it as one character (its
     * length by the lead byte, as llama.cpp), which then fall back too */
    TOK(v, "ab\xFF" "bc", false, false, S_SP, S_AB, S_BYTE0 + 0xFF,
        S_BYTE0 + 'b', S_BYTE0 + 'c');
    TOK(v, "ab\x80" "bc", false, false, S_SP, S_AB, S_BYTE0 + 0x80, S_BC);
    qv_vocab_free(v);
}

Test(vocab_spm, special_tokens_parsed_or_not)
{
    qv_vocab *v = spm();
    /* parsed: <s> is BOS, and the text after it gets the leading space */
    TOK(v, "<s>a", false, true, S_BOS, S_SP, S_A);
    TOK(v, "a</s>", false, true, S_SP, S_A, S_EOS);
    /* not parsed: plain text, never the control token */
    TOK(v, "<s>a", false, false, S_SP, S_BYTE0 + '<', S_BYTE0 + 's',
        S_BYTE0 + '>', S_A);
    TOK(v, "<unk>", false, false, S_SP, S_BYTE0 + '<', S_BYTE0 + 'u',
        S_BYTE0 + 'n', S_BYTE0 + 'k', S_BYTE0 + '>');
    TOK(v, "<unk>", false, true, S_UNK);
    qv_vocab_free(v);
}

/* llama.cpp's Phi-3 rule: special tokens (but <s>, <unk>, <|endoftext|>)
 * and </s> eat the white space after them */
Test(vocab_spm, phi3_rstrip)
{
    qv_vocab *v = must_load(spm_writer(-2.0f, -1.5f, "Phi-3-mini"));
    cr_assert(qv_vocab_token_attr(v, S_EOS) & QV_TOKEN_ATTR_RSTRIP);
    cr_assert(!(qv_vocab_token_attr(v, S_BOS) & QV_TOKEN_ATTR_RSTRIP));
    TOK(v, "</s>  a", false, true, S_EOS, S_SP, S_A);
    TOK(v, "<s>  a", false, true, S_BOS, S_SP, S_SP, S_SP, S_A);
    qv_vocab_free(v);
    v = spm();
    TOK(v, "</s>  a", false, true, S_EOS, S_SP, S_SP, S_SP, S_A);
    qv_vocab_free(v);
}

Test(vocab_spm, pieces_and_detokenize)
{
    qv_vocab *v = spm();
    piece_is(v, S_SP, false, " ", 1);
    piece_is(v, S_AB, false, "ab", 2);
    piece_is(v, S_BYTE0 + 0x41, false, "A", 1);
    piece_is(v, S_BYTE0 + 0x00, false, "\0", 1);
    piece_is(v, S_BOS, false, "", 0);
    piece_is(v, S_BOS, true, "<s>", 3);
    piece_is(v, S_UNK, false, "", 0);
    piece_is(v, S_UNK, true, "<unk>", 5);
    size_t n;
    cr_assert_null(qv_vocab_token_to_piece(v, S_N, true, &n));
    cr_assert_eq(n, 0);

    /* the leading space goes again */
    const int32_t ids[] = {S_SP, S_A, S_SP, S_BC};
    char *t = detok(v, ids, 4, false, false, &n);
    cr_assert_str_eq(t, "a bc");
    cr_assert_eq(n, 4);
    free(t);
    /* after BOS it stays (llama.cpp), unless BOS is rendered */
    const int32_t ids2[] = {S_BOS, S_SP, S_A, S_EOS};
    t = detok(v, ids2, 4, true, false, &n);
    cr_assert_str_eq(t, " a");
    free(t);
    t = detok(v, ids2, 4, false, true, &n);
    cr_assert_str_eq(t, "<s> a</s>");
    free(t);
    t = detok(v, ids2, 4, false, false, &n);
    cr_assert_str_eq(t, " a");
    free(t);
    const int32_t bad[] = {S_A, 99999};
    char *out = (char *)1;
    qv_err e;
    cr_assert_eq(qv_vocab_detokenize(v, bad, 2, false, false, &out, &n, &e),
                 QV_ERR_INVALID);
    cr_assert_null(out);
    cr_assert(strstr(e.msg, "99999"), "%s", e.msg);
    qv_vocab_free(v);
}

/* detokenize(tokenize(x)) == x for valid UTF-8 without U+2581 (a stray
 * lead byte swallows the U+2581 after it in llama.cpp, so not for any
 * bytes) */
Test(vocab_spm, round_trip_random_text)
{
    qv_vocab *v = spm();
    uint32_t seed = 12345;
    static const char *const pick[] = {"a", "b", "c", " ", "  ", "\n", "\t",
                                       "<s>", "\xC3\xA9", "\xE4\xB8\xAD",
                                       "\xF0\x9F\xA6\x99", "</s>", "ab"};
    for (int it = 0; it < 300; ++it) {
        char text[256];
        size_t len = 0;
        for (int k = 0; k < it % 40; ++k) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 24) % 4 == 0) {
                text[len++] = (char)((seed >> 16) & 0x7F); /* any ASCII */
            } else {
                const char *p = pick[(seed >> 16) % (sizeof pick / sizeof *pick)];
                memcpy(text + len, p, strlen(p));
                len += strlen(p);
            }
        }
        int32_t *ids;
        size_t n, tn;
        qv_err e;
        cr_assert_eq(qv_vocab_tokenize(v, text, len, false, false, &ids, &n, &e), QV_OK);
        for (size_t i = 0; i < n; ++i)
            cr_assert(!qv_vocab_is_control(v, ids[i]), "control token from text");
        char *t = detok(v, ids, n, false, false, &tn);
        cr_assert_eq(tn, len, "round trip %d: %zu bytes, expected %zu", it, tn, len);
        cr_assert_eq(memcmp(t, text, len), 0, "round trip %d", it);
        free(t);
        free(ids);
    }
    qv_vocab_free(v);
}

/* ---- a small byte-level BPE vocabulary -------------------------------- */

/* GPT-2's bytes_to_unicode, written out again from its definition. */
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

/* ids 0..255: the byte of the same value */
enum {
    B_LL = 256, B_HE, B_HELL, B_HELLO, B_GW, B_OR, B_GWOR, B_EOT, B_12, B_34,
    B_SP2, B_N
};

static qv_gguf_writer *bpe_writer_ex(const char *pre, bool ids)
{
    static char chars[256][3];
    const char *t[B_N];
    int32_t ty[B_N];
    for (int b = 0; b < 256; ++b) {
        gpt2_char(b, chars[b]);
        t[b] = chars[b];
        ty[b] = 1;
    }
    const char *more[] = {"ll", "he", "hell", "hello", "\xC4\xA0w", "or",
                          "\xC4\xA0wor", "<|endoftext|>", "12", "34", "  "};
    for (int i = 0; i < B_N - 256; ++i) {
        t[256 + i] = more[i];
        ty[256 + i] = 1;
    }
    ty[B_EOT] = 3;
    ty[B_SP2] = 4; /* user-defined, like mpt's runs of spaces */
    const char *merges[] = {"l l", "h e", "he ll", "hell o", "\xC4\xA0 w",
                            "o r", "\xC4\xA0w or", "1 2", "3 4"};
    qv_gguf_writer *w = writer();
    qv_err e;
    cr_assert_eq(qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", &e), QV_OK);
    if (pre)
        cr_assert_eq(qv_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", t, B_N, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_i32_arr(w, "tokenizer.ggml.token_type", ty, B_N, &e), QV_OK);
    cr_assert_eq(qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", merges, 9, &e), QV_OK);
    if (ids) {
        cr_assert_eq(qv_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", B_EOT, &e), QV_OK);
        cr_assert_eq(qv_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", B_EOT, &e), QV_OK);
    }
    return w;
}

static qv_gguf_writer *bpe_writer(const char *pre)
{
    return bpe_writer_ex(pre, true);
}

static qv_vocab *bpe(const char *pre) { return must_load(bpe_writer(pre)); }

Test(vocab_bpe, merges_by_rank)
{
    qv_vocab *v = bpe("gpt-2");
    cr_assert_eq(qv_vocab_kind(v), QV_VOCAB_BPE);
    cr_assert_str_eq(qv_vocab_pre_name(v), "gpt-2");
    cr_assert(!qv_vocab_wants_bos(v));
    /* "hello" / " world": ll (rank 0) before he (1), then hell, hello;
     * Ġw (4), or (5), Ġwor (6), and l, d stay bytes */
    TOK(v, "hello world", false, false, B_HELLO, B_GWOR, 'l', 'd');
    /* he has no merge with a single l */
    TOK(v, "hel", false, false, B_HE, 'l');
    TOK(v, "hell", false, false, B_HELL);
    /* words do not merge across the pre-tokenizer's splits */
    TOK(v, "he llo", false, false, B_HE, ' ', B_LL, 'o');
    qv_vocab_free(v);
}

Test(vocab_bpe, bytes_through_the_gpt2_alphabet)
{
    qv_vocab *v = bpe("gpt-2");
    TOK(v, "\n", false, false, '\n');
    TOK(v, "\xC3\xA9", false, false, 0xC3, 0xA9);
    /* invalid UTF-8: U+FFFD, as llama.cpp decodes it */
    TOK(v, "\xFF", false, false, 0xEF, 0xBF, 0xBD);
    /* a NUL byte is a byte like any other */
    tok(v, "a\0b", 3, false, false, (const int32_t[]){'a', 0, 'b'}, 3);
    qv_vocab_free(v);
}

/* gpt-2 keeps a run of digits whole; llama3 cuts it in threes */
Test(vocab_bpe, pre_tokenizers_split_differently)
{
    qv_vocab *v = bpe("gpt-2");
    TOK(v, "12345", false, false, B_12, B_34, '5');
    qv_vocab_free(v);
    v = bpe("llama-bpe");
    cr_assert(qv_vocab_wants_bos(v));
    TOK(v, "12345", false, false, B_12, '3', '4', '5');
    qv_vocab_free(v);
    v = bpe("falcon3"); /* llama.cpp maps it to the llama3 rules */
    TOK(v, "12345", false, false, B_12, '3', '4', '5');
    qv_vocab_free(v);
    v = bpe(NULL); /* no tokenizer.ggml.pre: llama.cpp's "default" */
    cr_assert_str_eq(qv_vocab_pre_name(v), "default");
    TOK(v, "12345", false, false, B_12, '3', '4', '5');
    qv_vocab_free(v);
}

Test(vocab_bpe, special_tokens)
{
    qv_vocab *v = bpe("gpt-2");
    TOK(v, "<|endoftext|>", false, true, B_EOT);
    TOK(v, "hello<|endoftext|>", true, true, B_EOT, B_HELLO, B_EOT);
    /* not parsed: "<|", "endoftext", "|>" as plain bytes */
    TOK(v, "<|endoftext|>", false, false, '<', '|', 'e', 'n', 'd', 'o', 'f',
        't', 'e', 'x', 't', '|', '>');
    /* a user-defined token is matched either way (llama.cpp, HF) */
    TOK(v, "a  b", false, false, 'a', B_SP2, 'b');
    TOK(v, "a  b", false, true, 'a', B_SP2, 'b');
    cr_assert(qv_vocab_is_special(v, B_SP2));
    cr_assert(!qv_vocab_is_control(v, B_SP2));
    cr_assert(qv_vocab_is_eog(v, B_EOT));
    cr_assert_eq(qv_vocab_eot(v), B_EOT); /* found by its text */
    qv_vocab_free(v);
}

Test(vocab_bpe, pieces_and_detokenize)
{
    qv_vocab *v = bpe("gpt-2");
    piece_is(v, ' ', false, " ", 1);
    piece_is(v, '\n', false, "\n", 1);
    piece_is(v, 0xC3, false, "\xC3", 1);
    piece_is(v, B_GWOR, false, " wor", 4);
    piece_is(v, B_EOT, false, "", 0);
    piece_is(v, B_EOT, true, "<|endoftext|>", 13);
    const int32_t ids[] = {B_HELLO, B_GWOR, 'l', 'd'};
    size_t n;
    char *t = detok(v, ids, 4, false, false, &n);
    cr_assert_str_eq(t, "hello world");
    free(t);
    /* gpt-2 (and llama-bpe) clean " ," as llama.cpp does; qwen2 does not */
    const int32_t comma[] = {B_HELLO, ' ', ','};
    t = detok(v, comma, 3, false, false, &n);
    cr_assert_str_eq(t, "hello,");
    free(t);
    qv_vocab_free(v);
    v = bpe("llama-bpe");
    t = detok(v, comma, 3, false, false, &n);
    cr_assert_str_eq(t, "hello,");
    free(t);
    qv_vocab_free(v);
    v = bpe("qwen2");
    t = detok(v, comma, 3, false, false, &n);
    cr_assert_str_eq(t, "hello ,");
    free(t);
    qv_vocab_free(v);
}

/* byte-level BPE without space cleaning gives valid UTF-8 back exactly */
Test(vocab_bpe, round_trip)
{
    qv_vocab *v = bpe("qwen2");
    const char *texts[] = {"hello world", "  \t\n\nx", "caf\xC3\xA9 12345 ",
                           "\xF0\x9F\xA6\x99 'll 's", "a  b   c", ""};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; ++i) {
        int32_t *ids;
        size_t n, tn;
        qv_err e;
        cr_assert_eq(qv_vocab_tokenize(v, texts[i], strlen(texts[i]), false,
                                       false, &ids, &n, &e), QV_OK);
        char *t = detok(v, ids, n, false, false, &tn);
        cr_assert_str_eq(t, texts[i]);
        free(t);
        free(ids);
    }
    qv_vocab_free(v);
}

/* ---- pre-tokenizers: llama.cpp's words ------------------------------- */

/* words: NUL-separated list, ending with an empty string */
static void words(const char *pre, const char *text, size_t len,
                  const char *const *want)
{
    qv_vocab *v = bpe(pre);
    vq_bpe_scratch *s = vq_bpe_scratch_new();
    cr_assert_not_null(s);
    const char *clean;
    const uint32_t *st, *ln;
    size_t n;
    qv_err e;
    cr_assert_eq(vq_bpe_pretokenize(v, s, text, len, &clean, &st, &ln, &n, &e),
                 QV_OK, "%s", e.msg);
    size_t nw = 0;
    while (want[nw])
        nw++;
    cr_assert_eq(n, nw, "%s: %zu words, expected %zu", pre, n, nw);
    for (size_t i = 0; i < n; ++i)
        cr_assert(ln[i] == strlen(want[i]) && !memcmp(clean + st[i], want[i], ln[i]),
                  "%s: word %zu is '%.*s', expected '%s'", pre, i, (int)ln[i],
                  clean + st[i], want[i]);
    vq_bpe_scratch_free(s);
    qv_vocab_free(v);
}

#define WORDS(pre, text, ...)                                    \
    do {                                                         \
        const char *const want_[] = {__VA_ARGS__, NULL};         \
        words(pre, text, strlen(text), want_);                   \
    } while (0)

Test(vocab_pre, gpt2_and_llama3)
{
    WORDS("gpt-2", "Hello world  foo's", "Hello", " world", " ", " foo", "'s");
    WORDS("llama-bpe", "12345 abc\n\n  x", "123", "45", " abc", "\n\n", " ", " x");
    WORDS("llama-bpe", "I'LL go", "I", "'LL", " go");
    WORDS("qwen2", "12345", "1", "2", "3", "4", "5");
}

/* where llama.cpp and a plain PCRE2 match part ways, llama.cpp's words */
Test(vocab_pre, llama_cpp_quirks)
{
    /* U+180E is no white space to llama.cpp (it is to PCRE2's \s) */
    WORDS("llama-bpe", "a\xE1\xA0\x8E\xE1\xA0\x8E" "b", "a",
          "\xE1\xA0\x8E\xE1\xA0\x8E", "b");
    /* invalid UTF-8 becomes U+FFFD before splitting */
    WORDS("llama-bpe", "a\xFF" "b", "a", "\xEF\xBF\xBD" "b");
    /* an overlong form comes out in shortest form */
    WORDS("gpt-2", "\xC1\x81" "b", "Ab");
    /* non-ASCII white space never matches a literal range (U+3000 lies in
     * deepseek's U+0800-U+4E00) */
    WORDS("deepseek-llm", "\xE3\x80\x80\xE4\xB8\xAD", "\xE3\x80\x80",
          "\xE4\xB8\xAD");
    /* \p{S} leaves out '~' in llama.cpp's collapsed classes */
    WORDS("deepseek-v3", "~\xC3\xA9", "~\xC3\xA9");
    /* \p{Lu} and \p{Ll} both mean \p{L} there */
    WORDS("youtu", "aB", "aB");
    /* afmoe / tiny_aya group digits in threes from the right */
    WORDS("afmoe", "ab12345", "ab", "12", "345");
    WORDS("tiny_aya", "x 1234567", "x", " ", "1", "234", "567");
}

/* ---- refusals ---------------------------------------------------------- */

static void refused(qv_gguf_writer *w, qv_status code, const char *needle)
{
    qv_vocab *v = (qv_vocab *)1;
    qv_err e;
    qv_status s = load_w(w, &v, &e);
    cr_assert_eq(s, code, "status %d (%s), expected %d", s, e.msg, code);
    cr_assert_null(v);
    cr_assert(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
}

Test(vocab_errors, missing_or_unknown_model)
{
    qv_gguf_writer *w = writer();
    qv_err e;
    const char *t[] = {"a"};
    qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", t, 1, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.model");

    w = spm_writer(-2, -1, NULL);
    qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "bert", &e);
    refused(w, QV_ERR_UNSUPPORTED, "'bert'");
    w = spm_writer(-2, -1, NULL);
    qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "sentencepiece2", &e);
    refused(w, QV_ERR_UNSUPPORTED, "tokenizer.ggml.model");
    w = spm_writer(-2, -1, NULL);
    qv_gguf_writer_set_u32(w, "tokenizer.ggml.model", 1, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.model");
}

Test(vocab_errors, unknown_pre_tokenizer)
{
    refused(bpe_writer("no-such-pre"), QV_ERR_UNSUPPORTED, "tokenizer.ggml.pre");
    refused(bpe_writer("kimi-k2"), QV_ERR_UNSUPPORTED, "'kimi-k2'");
}

Test(vocab_errors, arrays)
{
    qv_err e;
    qv_gguf_writer *w = spm_writer(-2, -1, NULL);
    float sc[3] = {0, 0, 0};
    qv_gguf_writer_set_f32_arr(w, "tokenizer.ggml.scores", sc, 3, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.scores");

    w = spm_writer(-2, -1, NULL);
    int32_t ty[2] = {1, 1};
    qv_gguf_writer_set_i32_arr(w, "tokenizer.ggml.token_type", ty, 2, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.token_type");

    w = spm_writer(-2, -1, NULL);
    qv_gguf_writer_set_f32_arr(w, "tokenizer.ggml.token_type", sc, 3, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.token_type");

    w = writer();
    qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.tokens");

    w = writer();
    qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &e);
    qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", NULL, 0, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.tokens");

    w = writer();
    const char *dup[] = {"a", "b", "a"};
    qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &e);
    qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", dup, 3, &e);
    refused(w, QV_ERR_CORRUPT, "twice");

    w = bpe_writer("gpt-2");
    qv_gguf_writer_set_u32(w, "tokenizer.ggml.merges", 0, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.merges");
}

Test(vocab_errors, special_ids)
{
    qv_err e;
    qv_gguf_writer *w = spm_writer(-2, -1, NULL);
    qv_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", S_N, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.bos_token_id");
    w = spm_writer(-2, -1, NULL);
    qv_gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", 1u << 31, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.eot_token_id");
    w = spm_writer(-2, -1, NULL);
    qv_gguf_writer_set_i32(w, "tokenizer.ggml.eos_token_id", 2, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.eos_token_id");
    w = spm_writer(-2, -1, NULL);
    qv_gguf_writer_set_u32(w, "tokenizer.ggml.add_bos_token", 1, &e);
    refused(w, QV_ERR_CORRUPT, "tokenizer.ggml.add_bos_token");
}

Test(vocab_errors, no_bos_to_add)
{
    /* llama.cpp: chatglm has no default BOS (and the file names none) */
    qv_vocab *v = must_load(bpe_writer_ex("glm4", false));
    cr_assert_eq(qv_vocab_bos(v), QV_TOKEN_NULL);
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    qv_err e;
    cr_assert_eq(qv_vocab_tokenize(v, "a", 1, true, false, &ids, &n, &e),
                 QV_ERR_UNSUPPORTED);
    cr_assert_null(ids);
    cr_assert_eq(n, 0);
    cr_assert(strstr(e.msg, "BOS"), "%s", e.msg);
    TOK(v, "a", false, false, 'a');
    cr_assert_eq(qv_vocab_tokenize(v, NULL, 1, false, false, &ids, &n, &e),
                 QV_ERR_INVALID);
    qv_vocab_free(v);
}

/* A vocabulary-only file that ends right after its metadata (llama.cpp's
 * models/ggml-vocab-*.gguf are such files) opens by path; one cut short
 * does not. */
Test(vocab_file, vocabulary_only_without_padding)
{
    qv_gguf_writer *w = spm_writer(-2.0f, -1.5f, NULL);
    qv_err e;
    /* last KV a string that does not end in a zero byte */
    cr_assert_eq(qv_gguf_writer_set_str(w, "zz.last", "end", &e), QV_OK);
    uint8_t *buf;
    size_t n;
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK);
    qv_gguf_writer_free(w);
    while (n > 0 && buf[n - 1] == 0)
        n--;
    cr_assert_eq(buf[n - 1], 'd');
    char path[] = "/tmp/qv_test_vocab_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, buf, n), (ssize_t)n);
    close(fd);
    free(buf);
    qv_vocab *v = NULL;
    qv_status s = qv_vocab_open(path, &v, &e);
    cr_assert_eq(s, QV_OK, "%s", e.msg);
    TOK(v, "abc", false, false, S_SP, S_A, S_BC);
    qv_vocab_free(v);
    /* a path that is not there */
    cr_assert_eq(qv_vocab_open("/nonexistent/qv.gguf", &v, &e), QV_ERR_NOT_FOUND);
    cr_assert_null(v);
    /* a file cut inside its last array (whose missing bytes are zeros) is
     * refused, not read as if they were padding */
    w = spm_writer(-2.0f, -1.5f, NULL);
    const int32_t tail[2] = {1, 0};
    cr_assert_eq(qv_gguf_writer_set_i32_arr(w, "zz.last", tail, 2, &e), QV_OK);
    cr_assert_eq(qv_gguf_write_mem(w, &buf, &n, &e), QV_OK);
    qv_gguf_writer_free(w);
    while (n > 0 && buf[n - 1] == 0)
        n--; /* now ends at the 1: three bytes of it and all of the 0 gone */
    fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_eq(write(fd, buf, n), (ssize_t)n);
    close(fd);
    free(buf);
    cr_assert_eq(qv_vocab_open(path, &v, &e), QV_ERR_CORRUPT);
    cr_assert_null(v);
    /* a truncated file is still refused, with the reader's message */
    fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_eq(write(fd, "GGUF\x03\0\0\0", 8), 8);
    close(fd);
    cr_assert_eq(qv_vocab_open(path, &v, &e), QV_ERR_CORRUPT);
    cr_assert_null(v);
    cr_assert(strstr(e.msg, path), "%s", e.msg);
    unlink(path);
}

/* ---- llama.cpp's test vectors ------------------------------------------ */

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    cr_assert_not_null(b);
    *n = fread(b, 1, (size_t)len, f);
    b[*n] = '\0';
    fclose(f);
    return b;
}

/* Test vectors that are not there: said as a warning on stderr, and the
 * test ends there. (Criterion 2.4.1 makes the whole run exit 1 after a
 * cr_skip_test or a cr_log_warn, which would fail every run without the
 * vectors: hence plain stderr.) */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void warn_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[WARN] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

#define SKIP(...)                   \
    do {                            \
        warn_line(__VA_ARGS__);   \
        return;                     \
    } while (0)

static bool has_esc(const char *s, size_t n)
{
    for (size_t i = 0; i + 3 <= n; ++i)
        if (!memcmp(s + i, ESC, 3))
            return true;
    return false;
}

/* Runs ggml-vocab-NAME.gguf's vectors; `inverse`: detokenize must give
 * each input back. */
static void vectors(const char *name, bool inverse)
{
    const char *dir = getenv("QVAC_LLAMA_VOCAB_DIR");
    if (!dir || !*dir)
        SKIP("QVAC_LLAMA_VOCAB_DIR is not set: llama.cpp's %s test vectors "
             "skipped (set it to llama.cpp's models/ folder)", name);
    char path[1024], inp_path[1100], out_path[1100];
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", dir, name);
    snprintf(inp_path, sizeof inp_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    size_t ni, no;
    char *inp = slurp(inp_path, &ni), *out = slurp(out_path, &no);
    if (!inp || !out) {
        free(inp);
        free(out);
        SKIP("%s: skipped, no test vectors at %s", name, inp_path);
    }
    qv_vocab *v = NULL;
    qv_err e;
    qv_status s = qv_vocab_open(path, &v, &e);
    if (s == QV_ERR_NOT_FOUND) {
        free(inp);
        free(out);
        SKIP("%s: skipped, test vectors but no vocabulary file %s", name,
             path);
    }
    cr_assert_eq(s, QV_OK, "%s: %s", name, e.msg);

    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sl = strlen(sep), pos = 0, pass = 0, total = 0;
    char *line = out;
    while (pos < ni) {
        const char *nx = strstr(inp + pos, sep);
        size_t end = nx ? (size_t)(nx - inp) : ni;
        cr_assert(*line || line < out + no, "%s: fewer outputs than inputs", name);
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        int32_t want[2048];
        size_t nw = 0;
        for (char *q = line; *q;) {
            char *q2;
            long x = strtol(q, &q2, 10);
            if (q2 == q)
                break;
            cr_assert_lt(nw, 2048);
            want[nw++] = (int32_t)x;
            q = q2;
        }
        int32_t *ids;
        size_t n;
        cr_assert_eq(qv_vocab_tokenize(v, inp + pos, end - pos, false, false,
                                       &ids, &n, &e), QV_OK, "%s", e.msg);
        bool same = n == nw && (n == 0 || !memcmp(ids, want, n * sizeof *ids));
        if (!same)
            cr_log_error("%s: vector %zu ('%.*s') gives %zu ids, llama.cpp %zu",
                         name, total, (int)(end - pos), inp + pos, n, nw);
        pass += same;
        total++;
        for (size_t i = 0; i < n; ++i)
            cr_assert(!qv_vocab_is_control(v, ids[i]),
                      "%s: vector %zu: a control token from plain text", name,
                      total - 1);
        if (inverse && !has_esc(inp + pos, end - pos)) {
            size_t tn;
            char *t = detok(v, ids, n, false, false, &tn);
            cr_assert(tn == end - pos && !memcmp(t, inp + pos, tn),
                      "%s: vector %zu does not come back from detokenize",
                      name, total - 1);
            free(t);
        }
        free(ids);
        line = eol ? eol + 1 : line + strlen(line);
        if (!nx)
            break;
        pos = end + sl;
    }
    cr_log_info("%s: %zu/%zu llama.cpp test vectors pass", name, pass, total);
    fprintf(stderr, "vocab %-15s %zu/%zu llama.cpp test vectors pass\n", name,
            pass, total);
    cr_assert_eq(pass, total, "%s: %zu of %zu vectors differ from llama.cpp",
                 name, total - pass, total);

    /* every special token's text parses back to it, and only when asked */
    for (int32_t id = 0; id < (int32_t)qv_vocab_size(v); ++id) {
        if (!qv_vocab_is_control(v, id))
            continue;
        size_t tl;
        const char *t = qv_vocab_token_text(v, id, &tl);
        int32_t *ids;
        size_t n;
        cr_assert_eq(qv_vocab_tokenize(v, t, tl, false, true, &ids, &n, &e), QV_OK);
        cr_assert(n == 1 && ids[0] == id, "%s: '%s' parses to %zu ids", name, t, n);
        free(ids);
        cr_assert_eq(qv_vocab_tokenize(v, t, tl, false, false, &ids, &n, &e), QV_OK);
        for (size_t i = 0; i < n; ++i)
            cr_assert(!qv_vocab_is_control(v, ids[i]),
                      "%s: '%s' as plain text gives control token %d", name, t,
                      ids[i]);
        free(ids);
    }
    qv_vocab_free(v);
    free(inp);
    free(out);
}

Test(vocab_llama, llama_spm) { vectors("llama-spm", true); }
Test(vocab_llama, phi_3) { vectors("phi-3", true); }
Test(vocab_llama, gpt_2) { vectors("gpt-2", false); }
Test(vocab_llama, falcon) { vectors("falcon", false); }
Test(vocab_llama, mpt) { vectors("mpt", false); }
Test(vocab_llama, starcoder) { vectors("starcoder", false); }
Test(vocab_llama, refact) { vectors("refact", false); }
Test(vocab_llama, deepseek_llm) { vectors("deepseek-llm", true); }
Test(vocab_llama, deepseek_coder) { vectors("deepseek-coder", true); }
Test(vocab_llama, llama_bpe) { vectors("llama-bpe", false); }
Test(vocab_llama, qwen2) { vectors("qwen2", true); }
Test(vocab_llama, command_r) { vectors("command-r", true); }
Test(vocab_llama, qwen35) { vectors("qwen35", true); }

/* llama.cpp's vocabularies without vectors load; BERT (WordPiece) is
 * refused by name */
Test(vocab_llama, other_files)
{
    const char *dir = getenv("QVAC_LLAMA_VOCAB_DIR");
    if (!dir || !*dir)
        SKIP("QVAC_LLAMA_VOCAB_DIR is not set: llama.cpp's vocabulary files "
             "not loaded");
    const char *names[] = {"baichuan", "gpt-neox"};
    for (size_t i = 0; i < 2; ++i) {
        char path[1024];
        snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", dir, names[i]);
        qv_vocab *v = NULL;
        qv_err e;
        qv_status s = qv_vocab_open(path, &v, &e);
        if (s == QV_ERR_NOT_FOUND) {
            warn_line("%s: not there, not loaded", path);
            continue;
        }
        cr_assert_eq(s, QV_OK, "%s", e.msg);
        cr_assert_gt(qv_vocab_size(v), 50000);
        qv_vocab_free(v);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/ggml-vocab-bert-bge.gguf", dir);
    qv_vocab *v = NULL;
    qv_err e;
    qv_status s = qv_vocab_open(path, &v, &e);
    if (s != QV_ERR_NOT_FOUND) {
        cr_assert_eq(s, QV_ERR_UNSUPPORTED, "bert-bge: %s", e.msg);
        cr_assert(strstr(e.msg, "'bert'"), "%s", e.msg);
        warn_line("bert-bge (WordPiece): refused, as it should be: %s", e.msg);
    }
}
