/* formats/vocab.c — loading a GGUF vocabulary, special tokens, the SPM
 * tokenizer, pieces and detokenizing. The BPE half is formats/vocab_bpe.c.
 *
 * The behaviour follows llama.cpp's src/llama-vocab.cpp (commit d32676d)
 * step for step; where qvac differs on purpose the comment says so. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vocab_impl.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"

/* The longest text one call tokenizes (positions stay in int32 even after
 * SPM's space escaping triples the bytes). */
#define VQ_MAX_TEXT ((size_t)512 << 20)

static const char ESC_SPACE[3] = {'\xE2', '\x96', '\x81'}; /* U+2581 */

/* ---- small helpers ---------------------------------------------------- */

int vq_ids_push(vq_ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *p = realloc(a->p, cap * sizeof *p);
        if (!p)
            return -1;
        a->p = p;
        a->cap = cap;
    }
    a->p[a->n++] = id;
    return 0;
}

uint64_t vq_hash(const void *data, size_t n)
{
    const uint8_t *s = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    return h;
}

uint32_t vq_utf8_decode(const uint8_t *s, size_t n, size_t *used)
{
    uint8_t b = s[0];
    *used = 1;
    if (!(b & 0x80))
        return b;
    if (!(b & 0x40))
        return 0xFFFD;
    if (!(b & 0x20)) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0xFFFD;
        *used = 2;
        return ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if (!(b & 0x10)) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0xFFFD;
        *used = 3;
        return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) |
               (s[2] & 0x3F);
    }
    if (!(b & 0x08)) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
            (s[3] & 0xC0) != 0x80)
            return 0xFFFD;
        uint32_t c = ((uint32_t)(b & 0x07) << 18) |
                     ((uint32_t)(s[1] & 0x3F) << 12) |
                     ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        /* llama.cpp decodes these and then throws when writing them back
         * out; qvac takes the lead byte as a bad byte instead. */
        if (c > 0x10FFFF)
            return 0xFFFD;
        *used = 4;
        return c;
    }
    return 0xFFFD;
}

size_t vq_utf8_encode(uint32_t c, uint8_t out[4])
{
    if (c < 0x80) {
        out[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (uint8_t)(0xC0 | (c >> 6));
        out[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (c >> 12));
        out[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (c >> 18));
    out[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Printable form of a token text for messages. */
static const char *shown(const char *s, size_t n, char buf[48])
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 5 < 48; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\'') {
            buf[k++] = (char)c;
        } else {
            snprintf(buf + k, 48 - k, "\\x%02x", c);
            k += 4;
        }
    }
    buf[k] = '\0';
    return buf;
}

/* ---- string table ----------------------------------------------------- */

int32_t vq_lookup(const qv_vocab *v, const char *s, size_t n)
{
    if (!v->slots)
        return -1;
    uint64_t h = vq_hash(s, n);
    uint32_t hi = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & v->mask;; i = (i + 1) & v->mask) {
        const vq_slot *sl = &v->slots[i];
        if (!sl->id1)
            return -1;
        if (sl->h != hi)
            continue;
        size_t tl;
        const char *t = vq_text(v, (int32_t)(sl->id1 - 1), &tl);
        if (tl == n && memcmp(t, s, n) == 0)
            return (int32_t)(sl->id1 - 1);
    }
}

static void slot_put(vq_slot *slots, uint32_t mask, uint64_t h, int32_t id)
{
    uint32_t i = (uint32_t)h & mask;
    while (slots[i].id1)
        i = (i + 1) & mask;
    slots[i].id1 = (uint32_t)id + 1;
    slots[i].h = (uint32_t)(h >> 32);
}

/* Makes room for one more entry; -1 when out of memory. */
static int table_reserve(qv_vocab *v)
{
    if (v->slots && (uint64_t)(v->n_slots_used + 1) * 2 <= (uint64_t)v->mask + 1)
        return 0;
    uint64_t cap = v->slots ? ((uint64_t)v->mask + 1) * 2 : 1024;
    while ((uint64_t)(v->n_slots_used + 1) * 2 > cap)
        cap *= 2;
    if (cap > ((uint64_t)1 << 31))
        return -1;
    vq_slot *ns = calloc((size_t)cap, sizeof *ns);
    if (!ns)
        return -1;
    uint32_t nmask = (uint32_t)(cap - 1);
    if (v->slots) {
        for (uint64_t i = 0; i <= v->mask; ++i) {
            if (!v->slots[i].id1)
                continue;
            size_t tl;
            const char *t = vq_text(v, (int32_t)(v->slots[i].id1 - 1), &tl);
            slot_put(ns, nmask, vq_hash(t, tl), (int32_t)(v->slots[i].id1 - 1));
        }
    }
    free(v->slots);
    v->slots = ns;
    v->mask = nmask;
    return 0;
}

int32_t vq_intern(qv_vocab *v, const char *s, size_t n)
{
    int32_t id = vq_lookup(v, s, n);
    if (id >= 0)
        return id;
    if ((int64_t)v->n_tokens + v->n_extra >= INT32_MAX - 1 || n > UINT32_MAX)
        return -1;
    if (v->n_extra == v->cap_extra) {
        int32_t cap = v->cap_extra ? v->cap_extra * 2 : 64;
        size_t *xo = realloc(v->xoff, (size_t)cap * sizeof *xo);
        if (!xo)
            return -1;
        v->xoff = xo;
        uint32_t *xl = realloc(v->xlen, (size_t)cap * sizeof *xl);
        if (!xl)
            return -1;
        v->xlen = xl;
        v->cap_extra = cap;
    }
    if (v->xarena_n + n + 1 > v->xarena_cap) {
        size_t cap = v->xarena_cap ? v->xarena_cap : 4096;
        while (cap < v->xarena_n + n + 1)
            cap *= 2;
        char *a = realloc(v->xarena, cap);
        if (!a)
            return -1;
        v->xarena = a;
        v->xarena_cap = cap;
    }
    if (table_reserve(v))
        return -1;
    memcpy(v->xarena + v->xarena_n, s, n);
    v->xarena[v->xarena_n + n] = '\0';
    v->xoff[v->n_extra] = v->xarena_n;
    v->xlen[v->n_extra] = (uint32_t)n;
    v->xarena_n += n + 1;
    id = v->n_tokens + v->n_extra;
    v->n_extra++;
    slot_put(v->slots, v->mask, vq_hash(s, n), id);
    v->n_slots_used++;
    return id;
}

int32_t qv_vocab_find(const qv_vocab *v, const char *text, size_t len)
{
    if (!v || (!text && len))
        return QV_TOKEN_NULL;
    int32_t id = vq_lookup(v, text ? text : "", len);
    return id >= 0 && id < v->n_tokens ? id : QV_TOKEN_NULL;
}

/* ---- loading ---------------------------------------------------------- */

/* Optional string key: *out is "" when absent. */
static qv_status opt_str(const qv_gguf *g, const char *key, const char **out,
                         qv_err *err)
{
    qv_err e;
    qv_status s = qv_gguf_get_str(g, key, out, NULL, &e);
    if (s == QV_ERR_NOT_FOUND) {
        *out = "";
        return QV_OK;
    }
    if (s != QV_OK)
        return qv_fail(err, s, "vocabulary: %s", e.msg);
    return QV_OK;
}

/* Optional bool key: *out unchanged when absent. */
static qv_status opt_bool(const qv_gguf *g, const char *key, bool *out,
                          qv_err *err)
{
    qv_err e;
    bool b;
    qv_status s = qv_gguf_get_bool(g, key, &b, &e);
    if (s == QV_ERR_NOT_FOUND)
        return QV_OK;
    if (s != QV_OK)
        return qv_fail(err, s, "vocabulary: %s", e.msg);
    *out = b;
    return QV_OK;
}

static bool has_sub(const char *s, const char *sub)
{
    return strstr(s, sub) != NULL;
}

/* Byte of a byte token: llama.cpp's strtol(text.substr(3, 2), 16). */
static int token_byte(const qv_vocab *v, int32_t id, uint8_t *out)
{
    if (v->len[id] < 3)
        return -1;
    char hex[3] = {0, 0, 0};
    const char *t = v->arena + v->off[id];
    size_t k = v->len[id] - 3 < 2 ? v->len[id] - 3 : 2;
    memcpy(hex, t + 3, k);
    *out = (uint8_t)strtol(hex, NULL, 16);
    return 0;
}

static qv_status read_tokens(qv_vocab *v, const qv_gguf *g, qv_err *err)
{
    const char *const *strs;
    const size_t *lens;
    size_t n;
    qv_err e;
    qv_status s = qv_gguf_get_str_arr(g, KEY_TOKENS, &strs, &lens, &n, &e);
    if (s == QV_ERR_NOT_FOUND)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "vocabulary: the file has no %s (it has "
                       "tokenizer.ggml.model but no token list)", KEY_TOKENS);
    if (s != QV_OK)
        return qv_fail(err, s == QV_ERR_CORRUPT ? s : QV_ERR_CORRUPT,
                       "vocabulary: %s", e.msg);
    if (n == 0)
        return qv_fail(err, QV_ERR_CORRUPT, "vocabulary: %s is empty",
                       KEY_TOKENS);
    if (n > (size_t)INT32_MAX / 2)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "vocabulary: %s has %zu tokens, more than ids can "
                       "number", KEY_TOKENS, n);
    v->n_tokens = (int32_t)n;
    size_t total = 0;
    for (size_t i = 0; i < n; ++i)
        total += strlen(strs[i]) + 24;
    v->arena = malloc(total);
    v->off = malloc(n * sizeof *v->off);
    v->len = malloc(n * sizeof *v->len);
    v->score = calloc(n, sizeof *v->score);
    v->attr = malloc(n * sizeof *v->attr);
    v->eog = calloc(n, 1);
    v->special_rank = malloc(n * sizeof *v->special_rank);
    if (!v->arena || !v->off || !v->len || !v->score || !v->attr || !v->eog ||
        !v->special_rank)
        return qv_fail(err, QV_ERR_NOMEM,
                       "vocabulary: out of memory for %zu tokens", n);
    size_t at = 0;
    v->n_slots_used = 0;
    for (size_t i = 0; i < n; ++i) {
        /* llama.cpp takes the C string: a token text ends at its first
         * NUL byte; an empty text becomes "[EMPTY_<i>]". */
        size_t l = strlen(strs[i]);
        char *dst = v->arena + at;
        if (l == 0)
            l = (size_t)snprintf(dst, 24, "[EMPTY_%zu]", i);
        else
            memcpy(dst, strs[i], l);
        dst[l] = '\0';
        v->off[i] = at;
        v->len[i] = (uint32_t)l;
        at += l + 1;
        if (l > v->max_token_len)
            v->max_token_len = l;
        v->attr[i] = QV_TOKEN_ATTR_NORMAL;
        v->special_rank[i] = -1;
    }
    /* table: all tokens; a text seen twice is refused (llama.cpp asserts) */
    uint64_t cap = 1024;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    v->slots = calloc((size_t)cap, sizeof *v->slots);
    if (!v->slots)
        return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
    v->mask = (uint32_t)(cap - 1);
    for (size_t i = 0; i < n; ++i) {
        const char *t = v->arena + v->off[i];
        int32_t other = vq_lookup(v, t, v->len[i]);
        if (other >= 0) {
            char b[48];
            return qv_fail(err, QV_ERR_CORRUPT,
                           "vocabulary: %s has the text '%s' twice (tokens %d "
                           "and %zu); llama.cpp refuses such files too",
                           KEY_TOKENS, shown(t, v->len[i], b), other, i);
        }
        slot_put(v->slots, v->mask, vq_hash(t, v->len[i]), (int32_t)i);
        v->n_slots_used++;
    }
    return QV_OK;
}

static qv_status read_scores_types(qv_vocab *v, const qv_gguf *g, qv_err *err)
{
    qv_err e;
    const void *data;
    size_t n;
    qv_status s = qv_gguf_get_arr(g, KEY_SCORES, QV_GGUF_FLOAT32, &data, &n, &e);
    if (s == QV_OK) {
        if (n != (size_t)v->n_tokens)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "vocabulary: %s has %zu entries for %d tokens "
                           "(%s): one score per token", KEY_SCORES, n,
                           v->n_tokens, KEY_TOKENS);
        memcpy(v->score, data, n * sizeof(float));
    } else if (s != QV_ERR_NOT_FOUND) {
        return qv_fail(err, QV_ERR_CORRUPT, "vocabulary: %s", e.msg);
    }
    s = qv_gguf_get_arr(g, KEY_TYPES, QV_GGUF_INT32, &data, &n, &e);
    if (s == QV_OK) {
        if (n != (size_t)v->n_tokens)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "vocabulary: %s has %zu entries for %d tokens "
                           "(%s): one type per token", KEY_TYPES, n,
                           v->n_tokens, KEY_TOKENS);
        const int32_t *t = data;
        for (size_t i = 0; i < n; ++i) {
            switch (t[i]) {
            case 1: v->attr[i] = QV_TOKEN_ATTR_NORMAL; break;
            case 2: v->attr[i] = QV_TOKEN_ATTR_UNKNOWN; break;
            case 3: v->attr[i] = QV_TOKEN_ATTR_CONTROL; break;
            case 4: v->attr[i] = QV_TOKEN_ATTR_USER_DEFINED; break;
            case 5: v->attr[i] = QV_TOKEN_ATTR_UNUSED; break;
            case 6: v->attr[i] = QV_TOKEN_ATTR_BYTE; break;
            default: v->attr[i] = QV_TOKEN_ATTR_UNDEFINED; break;
            }
        }
    } else if (s != QV_ERR_NOT_FOUND) {
        return qv_fail(err, QV_ERR_CORRUPT, "vocabulary: %s", e.msg);
    }
    return QV_OK;
}

typedef struct special_key {
    const char *key;
    size_t field; /* offset of the int32_t in qv_vocab */
} special_key;

#define FIELD(f) offsetof(qv_vocab, f)
static const special_key SPECIAL_KEYS[] = {
    {"tokenizer.ggml.bos_token_id", FIELD(bos)},
    {"tokenizer.ggml.eos_token_id", FIELD(eos)},
    {"tokenizer.ggml.eot_token_id", FIELD(eot)},
    {"tokenizer.ggml.eom_token_id", FIELD(eom)},
    {"tokenizer.ggml.unknown_token_id", FIELD(unk)},
    {"tokenizer.ggml.seperator_token_id", FIELD(sep)},
    {"tokenizer.ggml.padding_token_id", FIELD(pad)},
    {"tokenizer.ggml.mask_token_id", FIELD(mask_id)},
    {"tokenizer.ggml.fim_pre_token_id", FIELD(fim_pre)},
    {"tokenizer.ggml.fim_suf_token_id", FIELD(fim_suf)},
    {"tokenizer.ggml.fim_mid_token_id", FIELD(fim_mid)},
    {"tokenizer.ggml.fim_pad_token_id", FIELD(fim_pad)},
    {"tokenizer.ggml.fim_rep_token_id", FIELD(fim_rep)},
    {"tokenizer.ggml.fim_sep_token_id", FIELD(fim_sep)},
    /* deprecated names of the first three FIM ids */
    {"tokenizer.ggml.prefix_token_id", FIELD(fim_pre)},
    {"tokenizer.ggml.suffix_token_id", FIELD(fim_suf)},
    {"tokenizer.ggml.middle_token_id", FIELD(fim_mid)},
};

#define ID_AT(v, off) (*(int32_t *)((char *)(v) + (off)))

static qv_status read_special_ids(qv_vocab *v, const qv_gguf *g, qv_err *err)
{
    for (size_t k = 0; k < sizeof SPECIAL_KEYS / sizeof SPECIAL_KEYS[0]; ++k) {
        int32_t *id = &ID_AT(v, SPECIAL_KEYS[k].field);
        /* a default outside the vocabulary is dropped (llama.cpp too) */
        if (*id >= v->n_tokens)
            *id = QV_TOKEN_NULL;
        uint32_t u;
        qv_err e;
        qv_status s = qv_gguf_get_u32(g, SPECIAL_KEYS[k].key, &u, &e);
        if (s == QV_ERR_NOT_FOUND)
            continue;
        if (s != QV_OK)
            return qv_fail(err, QV_ERR_CORRUPT, "vocabulary: %s", e.msg);
        /* llama.cpp warns and keeps the default; qvac refuses the file */
        if (u >= (uint32_t)v->n_tokens)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "vocabulary: %s = %u is outside the vocabulary of "
                           "%d tokens", SPECIAL_KEYS[k].key, u, v->n_tokens);
        *id = (int32_t)u;
    }
    qv_status s;
    if ((s = opt_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) ||
        (s = opt_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err)) ||
        (s = opt_bool(g, "tokenizer.ggml.add_sep_token", &v->add_sep, err)))
        return s;
    return QV_OK;
}

/* llama.cpp finds several special tokens by their text. Where it walks an
 * unordered_map (so with several candidates the pick depends on hashing),
 * qvac takes the first candidate of the list that the vocabulary has. */
#define U_BAR "\xEF\xBD\x9C"  /* U+FF5C fullwidth vertical line */
#define U_ESC "\xE2\x96\x81"  /* U+2581 */
static const char *const EOT_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
    "<" U_BAR "end" U_ESC "of" U_ESC "sentence" U_BAR ">",
    "<end_of_utterance>", NULL};
static const char *const EOM_TEXTS[] = {"<|eom_id|>", NULL};
static const char *const FIM_PRE_TEXTS[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
    "<" U_BAR "fim" U_ESC "begin" U_BAR ">", "<PRE>", U_ESC "<PRE>",
    "<|code_prefix|>", "<|prefix|>", NULL};
static const char *const FIM_SUF_TEXTS[] = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
    "<" U_BAR "fim" U_ESC "hole" U_BAR ">", "<SUF>", U_ESC "<SUF>",
    "<|code_suffix|>", "<|suffix|>", NULL};
static const char *const FIM_MID_TEXTS[] = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>",
    "<" U_BAR "fim" U_ESC "end" U_BAR ">", "<MID>", U_ESC "<MID>",
    "<|code_middle|>", "<|middle|>", NULL};
static const char *const FIM_PAD_TEXTS[] = {
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const FIM_REP_TEXTS[] = {
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
    NULL};
static const char *const FIM_SEP_TEXTS[] = {"<|file_sep|>", NULL};
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
    "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<" U_BAR "end" U_ESC "of" U_ESC "sentence" U_BAR ">", "[e~[", NULL};

static int32_t find_str(const qv_vocab *v, const char *s)
{
    return qv_vocab_find(v, s, strlen(s));
}

static void detect(qv_vocab *v, int32_t *id, const char *const *texts)
{
    if (*id != QV_TOKEN_NULL)
        return;
    for (size_t i = 0; texts[i]; ++i) {
        int32_t t = find_str(v, texts[i]);
        if (t >= 0) {
            *id = t;
            v->attr[t] |= QV_TOKEN_ATTR_CONTROL;
            return;
        }
    }
}

static void detect_specials(qv_vocab *v)
{
    detect(v, &v->eot, EOT_TEXTS);
    detect(v, &v->eom, EOM_TEXTS);
    detect(v, &v->fim_pre, FIM_PRE_TEXTS);
    detect(v, &v->fim_suf, FIM_SUF_TEXTS);
    detect(v, &v->fim_mid, FIM_MID_TEXTS);
    detect(v, &v->fim_pad, FIM_PAD_TEXTS);
    detect(v, &v->fim_rep, FIM_REP_TEXTS);
    detect(v, &v->fim_sep, FIM_SEP_TEXTS);

    /* control tokens named "unused..." are unused */
    for (int32_t i = 0; i < v->n_tokens; ++i)
        if ((v->attr[i] & QV_TOKEN_ATTR_CONTROL) &&
            strstr(v->arena + v->off[i], "unused"))
            v->attr[i] |= QV_TOKEN_ATTR_UNUSED;

    /* end of generation */
    int32_t fims[3] = {v->fim_pad, v->fim_rep, v->fim_sep};
    for (int k = 0; k < 3; ++k)
        if (fims[k] >= 0)
            v->eog[fims[k]] = 1;
    for (size_t i = 0; EOG_TEXTS[i]; ++i) {
        int32_t t = find_str(v, EOG_TEXTS[i]);
        if (t >= 0) {
            v->eog[t] = 1;
            v->attr[t] |= QV_TOKEN_ATTR_CONTROL;
        }
    }
    /* gpt-oss: always rendered */
    static const char *const ALWAYS[] = {"<|channel|>", "<|message|>",
                                         "<|start|>", "<|constrain|>", NULL};
    for (size_t i = 0; ALWAYS[i]; ++i) {
        int32_t t = find_str(v, ALWAYS[i]);
        if (t >= 0)
            v->attr[t] = QV_TOKEN_ATTR_USER_DEFINED;
    }
    if (v->eos >= 0)
        v->eog[v->eos] = 1;
    if (v->eot >= 0)
        v->eog[v->eot] = 1;
    if (v->eom >= 0)
        v->eog[v->eom] = 1;
    /* o200k_harmony / solar-open: "<|end|>" does not end generation */
    int32_t ret = find_str(v, "<|return|>"), call = find_str(v, "<|call|>");
    int32_t calls = find_str(v, "<|calls|>"), flush = find_str(v, "<|flush|>");
    int32_t end = find_str(v, "<|end|>");
    bool has_return = ret >= 0 && v->eog[ret];
    bool has_call = (call >= 0 && v->eog[call]) || (calls >= 0 && v->eog[calls]);
    bool has_flush = flush >= 0 && v->eog[flush];
    bool has_end = end >= 0 && v->eog[end];
    if ((has_return && has_call && has_end) || (has_call && has_flush && has_end)) {
        v->eog[end] = 0;
        v->attr[end] = QV_TOKEN_ATTR_USER_DEFINED;
    }
    /* gemma4 / paddleocr: "</s>" does not end generation */
    int32_t tool = find_str(v, "<|tool_response>"), s = find_str(v, "</s>");
    if (tool >= 0 && v->eog[tool] && s >= 0 && v->eog[s]) {
        v->eog[s] = 0;
        v->attr[s] = QV_TOKEN_ATTR_NORMAL;
    }
}

/* special[] order: longer text first, then smaller id (llama.cpp's
 * std::sort leaves equal lengths in no particular order). */
static bool special_before(const qv_vocab *v, int32_t x, int32_t y)
{
    if (v->len[x] != v->len[y])
        return v->len[x] > v->len[y];
    return x < y;
}

/* Stable merge sort of a[0..n) with tmp[0..n) as scratch. */
static void sort_specials(const qv_vocab *v, int32_t *a, int32_t *tmp,
                          int32_t n)
{
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n;
            int32_t hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = special_before(v, a[j], a[i]) ? a[j++] : a[i++];
            while (i < mid)
                tmp[k++] = a[i++];
            while (j < hi)
                tmp[k++] = a[j++];
        }
        memcpy(a, tmp, (size_t)n * sizeof *a);
    }
}

static qv_status build_specials(qv_vocab *v, qv_err *err)
{
    const uint32_t want = QV_TOKEN_ATTR_CONTROL | QV_TOKEN_ATTR_USER_DEFINED |
                          QV_TOKEN_ATTR_UNKNOWN;
    int32_t n = 0;
    for (int32_t i = 0; i < v->n_tokens; ++i)
        if (v->attr[i] & want)
            n++;
    v->special = malloc((size_t)(n ? n : 1) * sizeof *v->special);
    if (!v->special)
        return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
    n = 0;
    size_t trie_nodes = 1;
    for (int32_t i = 0; i < v->n_tokens; ++i)
        if (v->attr[i] & want) {
            v->special[n++] = i;
            trie_nodes += v->len[i];
        }
    v->n_special = n;
    int32_t *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp)
        return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
    sort_specials(v, v->special, tmp, n);
    free(tmp);
    for (int32_t r = 0; r < n; ++r)
        v->special_rank[v->special[r]] = r;

    /* byte trie over the texts */
    if (trie_nodes > (size_t)INT32_MAX)
        return qv_fail(err, QV_ERR_CORRUPT, "vocabulary: special tokens too long");
    v->trie = malloc(trie_nodes * sizeof *v->trie);
    if (!v->trie)
        return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
    for (int b = 0; b < 256; ++b)
        v->trie_root[b] = -1;
    v->n_trie = 0;
    for (int32_t r = 0; r < n; ++r) {
        int32_t id = v->special[r];
        const uint8_t *t = (const uint8_t *)v->arena + v->off[id];
        int32_t *link = &v->trie_root[t[0]];
        int32_t node = -1;
        for (uint32_t k = 0; k < v->len[id]; ++k) {
            if (k > 0)
                link = &v->trie[node].child;
            node = *link;
            while (node >= 0 && v->trie[node].byte != t[k]) {
                link = &v->trie[node].sibling;
                node = *link;
            }
            if (node < 0) {
                node = v->n_trie++;
                v->trie[node].child = -1;
                v->trie[node].sibling = -1;
                v->trie[node].token = -1;
                v->trie[node].byte = t[k];
                *link = node;
            }
        }
        v->trie[node].token = id;
    }
    return QV_OK;
}

/* llama.cpp's token_to_piece(special = true), for the cache. */
static qv_status build_pieces(qv_vocab *v, qv_err *err)
{
    size_t cap = 0;
    for (int32_t i = 0; i < v->n_tokens; ++i)
        cap += v->len[i] + 1;
    cap += 1024;
    size_t n = 0;
    char *buf = malloc(cap);
    v->poff = malloc((size_t)v->n_tokens * sizeof *v->poff);
    v->plen = malloc((size_t)v->n_tokens * sizeof *v->plen);
    if (!buf || !v->poff || !v->plen) {
        free(buf);
        return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
    }
    const uint32_t text_as_is = QV_TOKEN_ATTR_UNKNOWN | QV_TOKEN_ATTR_CONTROL |
                                QV_TOKEN_ATTR_USER_DEFINED;
    for (int32_t i = 0; i < v->n_tokens; ++i) {
        const char *t = v->arena + v->off[i];
        size_t tl = v->len[i];
        uint32_t a = v->attr[i];
        size_t start = n;
        /* room for the plain cases (the longest is t with U+2581 -> ' ') */
        if (n + tl + 1 > cap) {
            size_t nc = cap * 2 + tl + 1;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
            }
            buf = nb;
            cap = nc;
        }
        if (a & text_as_is) {
            memcpy(buf + n, t, tl);
            n += tl;
        } else if (a & QV_TOKEN_ATTR_NORMAL) {
            if (v->type == QV_VOCAB_SPM || v->escape_whitespaces) {
                for (size_t k = 0; k < tl; ++k) {
                    if (k + 3 <= tl && !memcmp(t + k, ESC_SPACE, 3)) {
                        buf[n++] = ' ';
                        k += 2;
                    } else {
                        buf[n++] = t[k];
                    }
                }
            } else if (vq_bpe_decode_text(t, tl, &buf, &n, &cap)) {
                free(buf);
                return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
            }
        } else if (a & QV_TOKEN_ATTR_BYTE) {
            uint8_t b;
            if (token_byte(v, i, &b)) {
                char sb[48];
                free(buf);
                return qv_fail(err, QV_ERR_CORRUPT,
                               "vocabulary: token %d ('%s') has type byte in "
                               "%s but its text is not <0xNN>", i,
                               shown(t, tl, sb), KEY_TYPES);
            }
            buf[n++] = (char)b;
        }
        buf[n++] = '\0';
        v->poff[i] = start;
        v->plen[i] = (uint32_t)(n - 1 - start);
    }
    v->parena = buf;
    return QV_OK;
}

static void set_attr(qv_vocab *v, const char *text, uint32_t bit, bool on)
{
    int32_t t = find_str(v, text);
    if (t < 0)
        return; /* llama.cpp fails to load here; qvac skips the token */
    if (on)
        v->attr[t] |= bit;
    else
        v->attr[t] &= ~bit;
}

/* Per-model attributes llama.cpp sets by name. */
static qv_status model_attrs(qv_vocab *v, const qv_gguf *g, qv_err *err)
{
    const char *name, *pre, *arch;
    qv_status s;
    if ((s = opt_str(g, "general.name", &name, err)) ||
        (s = opt_str(g, KEY_PRE, &pre, err)) ||
        (s = opt_str(g, "general.architecture", &arch, err)))
        return s;
    char lname[256];
    size_t k = 0;
    for (; name[k] && k + 1 < sizeof lname; ++k)
        lname[k] = (char)tolower((unsigned char)name[k]);
    lname[k] = '\0';
    if (has_sub(pre, "jina-v2-de") || has_sub(pre, "jina-v2-es") ||
        has_sub(pre, "jina-v2-code") || has_sub(arch, "nomic-bert-moe") ||
        has_sub(arch, "jina-bert-v3")) {
        set_attr(v, "<mask>", QV_TOKEN_ATTR_LSTRIP, true);
    } else if (has_sub(lname, "phi-3") || has_sub(lname, "phi3")) {
        for (int32_t r = 0; r < v->n_special; ++r)
            v->attr[v->special[r]] |= QV_TOKEN_ATTR_RSTRIP;
        set_attr(v, "</s>", QV_TOKEN_ATTR_RSTRIP, true);
        set_attr(v, "<unk>", QV_TOKEN_ATTR_RSTRIP, false);
        set_attr(v, "<s>", QV_TOKEN_ATTR_RSTRIP, false);
        set_attr(v, "<|endoftext|>", QV_TOKEN_ATTR_RSTRIP, false);
    } else if (has_sub(lname, "modern-bert")) {
        set_attr(v, "[MASK]", QV_TOKEN_ATTR_LSTRIP, true);
    }
    return QV_OK;
}

static void spm_bytes(qv_vocab *v)
{
    /* can runs of U+2581 be merged on their own? (see spm_fragment) */
    v->spm_split = true;
    for (int32_t i = 0; i < v->n_tokens && v->spm_split; ++i) {
        const char *t = v->arena + v->off[i];
        for (size_t k = 1; k + 3 <= v->len[i]; ++k)
            if (!memcmp(t + k, ESC_SPACE, 3) &&
                (k < 3 || memcmp(t + k - 3, ESC_SPACE, 3))) {
                v->spm_split = false;
                break;
            }
    }
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
        char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        int32_t t = qv_vocab_find(v, buf, 6);
        if (t < 0) {
            /* then the byte itself (llama.cpp's C string: byte 0 is "") */
            char one = (char)b;
            t = qv_vocab_find(v, &one, b ? 1 : 0);
        }
        v->spm_byte[b] = t;
    }
}

static void init_defaults(qv_vocab *v)
{
    v->bos = v->eos = v->eot = v->eom = v->unk = QV_TOKEN_NULL;
    v->sep = v->pad = v->mask_id = QV_TOKEN_NULL;
    v->fim_pre = v->fim_suf = v->fim_mid = QV_TOKEN_NULL;
    v->fim_pad = v->fim_rep = v->fim_sep = QV_TOKEN_NULL;
    v->escape_whitespaces = true;
}

qv_status qv_vocab_load(const qv_gguf *g, qv_vocab **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "qv_vocab_load: out is NULL");
    *out = NULL;
    if (!g)
        return qv_fail(err, QV_ERR_INVALID, "qv_vocab_load: no GGUF");
    const char *model;
    size_t mlen;
    qv_err e;
    qv_status s = qv_gguf_get_str(g, KEY_MODEL, &model, &mlen, &e);
    if (s == QV_ERR_NOT_FOUND)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "vocabulary: the file has no %s: it carries no "
                       "tokenizer (llama.cpp's convert_hf_to_gguf.py writes "
                       "one)", KEY_MODEL);
    if (s != QV_OK)
        return qv_fail(err, QV_ERR_CORRUPT, "vocabulary: %s", e.msg);

    qv_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
    init_defaults(v);
    if (!strcmp(model, "llama")) {
        v->type = QV_VOCAB_SPM;
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
        v->add_space_prefix = true;
        v->add_bos = true;
    } else if (!strcmp(model, "gpt2")) {
        v->type = QV_VOCAB_BPE;
        v->bos = 11;
        v->eos = 11;
        v->add_space_prefix = false;
        v->escape_whitespaces = false;
        v->clean_spaces = true;
    } else {
        static const char *const known[] = {
            "bert", "t5", "rwkv", "plamo2", "gemma4", "hybriddna",
            "whitespace", "no_vocab", "none", NULL};
        int is_known = 0;
        for (size_t i = 0; known[i]; ++i)
            is_known |= !strcmp(model, known[i]);
        char b[48];
        s = qv_fail(err, QV_ERR_UNSUPPORTED,
                    is_known ? "vocabulary: %s = '%s' is a tokenizer llama.cpp "
                               "has but qvac does not implement (qvac reads "
                               "'llama' (SPM) and 'gpt2' (BPE))"
                             : "vocabulary: %s = '%s' is not a tokenizer "
                               "llama.cpp knows (qvac reads 'llama' (SPM) and "
                               "'gpt2' (BPE))",
                    KEY_MODEL, shown(model, mlen, b));
        qv_vocab_free(v);
        return s;
    }
    snprintf(v->model, sizeof v->model, "%s", model);

    if ((s = read_tokens(v, g, err)) || (s = read_scores_types(v, g, err)))
        goto fail;
    if (v->type == QV_VOCAB_BPE) {
        /* sets the pre-tokenizer and its flags, reads the merges */
        if ((s = vq_bpe_init(v, g, err)))
            goto fail;
    } else {
        v->pre = strdup("default");
        if (!v->pre) {
            s = qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
            goto fail;
        }
    }
    if ((s = opt_bool(g, "tokenizer.ggml.add_space_prefix",
                      &v->add_space_prefix, err)) ||
        (s = read_special_ids(v, g, err)))
        goto fail;
    detect_specials(v);
    if ((s = build_specials(v, err)) || (s = build_pieces(v, err)) ||
        (s = model_attrs(v, g, err)))
        goto fail;
    if (v->type == QV_VOCAB_SPM)
        spm_bytes(v);
    *out = v;
    return QV_OK;
fail:
    qv_vocab_free(v);
    return s;
}

void qv_vocab_free(qv_vocab *v)
{
    if (!v)
        return;
    if (v->type == QV_VOCAB_BPE)
        vq_bpe_free(v);
    free(v->pre);
    free(v->arena);
    free(v->off);
    free(v->len);
    free(v->score);
    free(v->attr);
    free(v->eog);
    free(v->xarena);
    free(v->xoff);
    free(v->xlen);
    free(v->slots);
    free(v->special);
    free(v->special_rank);
    free(v->trie);
    free(v->parena);
    free(v->poff);
    free(v->plen);
    free(v);
}

qv_status qv_vocab_open(const char *path, qv_vocab **out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "qv_vocab_open: out is NULL");
    *out = NULL;
    if (!path)
        return qv_fail(err, QV_ERR_INVALID, "qv_vocab_open: path is NULL");
    qv_gguf *g = NULL;
    qv_status s = qv_gguf_open(path, &g, err);
    if (s != QV_OK)
        return s;
    s = qv_vocab_load(g, out, err);
    if (s != QV_OK)
        qv_err_prefix(err, s, "'%s'", path);
    qv_gguf_free(g);
    return s;
}

/* ---- getters ---------------------------------------------------------- */

size_t qv_vocab_size(const qv_vocab *v) { return v ? (size_t)v->n_tokens : 0; }
qv_vocab_type qv_vocab_kind(const qv_vocab *v) { return v->type; }
const char *qv_vocab_model_name(const qv_vocab *v) { return v->model; }
const char *qv_vocab_pre_name(const qv_vocab *v) { return v->pre; }
int32_t qv_vocab_bos(const qv_vocab *v) { return v->bos; }
int32_t qv_vocab_eos(const qv_vocab *v) { return v->eos; }
int32_t qv_vocab_eot(const qv_vocab *v) { return v->eot; }
int32_t qv_vocab_unk(const qv_vocab *v) { return v->unk; }
int32_t qv_vocab_pad(const qv_vocab *v) { return v->pad; }
bool qv_vocab_wants_bos(const qv_vocab *v) { return v->add_bos; }
bool qv_vocab_wants_eos(const qv_vocab *v) { return v->add_eos; }

static bool in_range(const qv_vocab *v, int32_t id)
{
    return v && id >= 0 && id < v->n_tokens;
}

bool qv_vocab_is_eog(const qv_vocab *v, int32_t id)
{
    return in_range(v, id) && v->eog[id];
}

const char *qv_vocab_token_text(const qv_vocab *v, int32_t id, size_t *len)
{
    if (!in_range(v, id)) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = v->len[id];
    return v->arena + v->off[id];
}

float qv_vocab_token_score(const qv_vocab *v, int32_t id)
{
    return in_range(v, id) ? v->score[id] : 0.0f;
}

uint32_t qv_vocab_token_attr(const qv_vocab *v, int32_t id)
{
    return in_range(v, id) ? v->attr[id] : QV_TOKEN_ATTR_UNDEFINED;
}

bool qv_vocab_is_control(const qv_vocab *v, int32_t id)
{
    return in_range(v, id) && (v->attr[id] & QV_TOKEN_ATTR_CONTROL);
}

bool qv_vocab_is_special(const qv_vocab *v, int32_t id)
{
    return in_range(v, id) && v->special_rank[id] >= 0;
}

/* ---- special-token partition (llama.cpp's tokenizer_st_partition) ----- */

typedef struct frag {
    size_t off, len;
    int32_t token; /* >= 0: a special token; -1: raw text */
    int32_t next;
} frag;

typedef struct frags {
    frag *p;
    int32_t n, cap, head;
} frags;

static int32_t frag_new(frags *f, size_t off, size_t len, int32_t token)
{
    if (f->n == f->cap) {
        int32_t cap = f->cap ? f->cap * 2 : 16;
        frag *p = realloc(f->p, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        f->p = p;
        f->cap = cap;
    }
    f->p[f->n] = (frag){off, len, token, -1};
    return f->n++;
}

static bool c_isspace(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* First occurrence of pat[0..pl) in s[from..to), or SIZE_MAX. */
static size_t find_in(const char *s, size_t from, size_t to, const char *pat,
                      size_t pl)
{
    if (pl == 0 || to < from || to - from < pl)
        return SIZE_MAX;
    size_t last = to - pl;
    size_t i = from;
    while (i <= last) {
        const char *c = memchr(s + i, pat[0], last - i + 1);
        if (!c)
            return SIZE_MAX;
        i = (size_t)(c - s);
        if (!memcmp(s + i, pat, pl))
            return i;
        i++;
    }
    return SIZE_MAX;
}

static bool allowed(const qv_vocab *v, int32_t id, bool parse_special)
{
    return parse_special ||
           !(v->attr[id] & (QV_TOKEN_ATTR_CONTROL | QV_TOKEN_ATTR_UNKNOWN));
}

/* Splits text into raw and special-token fragments. Each special token
 * that occurs (found with one pass of the trie) is cut out of every raw
 * fragment, longest token first, leftmost occurrences first: the same
 * fragments as llama.cpp's loop over all special tokens. */
static qv_status partition(const qv_vocab *v, const char *text, size_t len,
                           bool parse_special, frags *f, qv_err *err)
{
    f->n = 0;
    f->head = frag_new(f, 0, len, -1);
    if (f->head < 0)
        return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
    if (v->n_special == 0 || len == 0)
        return QV_OK;
    uint8_t *occurs = calloc((size_t)v->n_special, 1);
    if (!occurs)
        return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
    int32_t first = v->n_special;
    const uint8_t *t = (const uint8_t *)text;
    for (size_t p = 0; p < len; ++p) {
        int32_t node = v->trie_root[t[p]];
        size_t k = 1;
        while (node >= 0) {
            int32_t id = v->trie[node].token;
            if (id >= 0 && allowed(v, id, parse_special)) {
                int32_t r = v->special_rank[id];
                occurs[r] = 1;
                if (r < first)
                    first = r;
            }
            if (p + k >= len)
                break;
            uint8_t c = t[p + k++];
            node = v->trie[node].child;
            while (node >= 0 && v->trie[node].byte != c)
                node = v->trie[node].sibling;
        }
    }
    for (int32_t r = first; r < v->n_special; ++r) {
        if (!occurs[r])
            continue;
        int32_t id = v->special[r];
        const char *pat = v->arena + v->off[id];
        size_t pl = v->len[id];
        uint32_t attr = v->attr[id];
        for (int32_t it = f->head; it >= 0; it = f->p[it].next) {
            if (f->p[it].token >= 0 || f->p[it].len == 0)
                continue;
            size_t base = f->p[it].off, blen = f->p[it].len;
            int32_t cur = it; /* the node that holds what is left */
            for (;;) {
                size_t m = find_in(text, base, base + blen, pat, pl);
                if (m == SIZE_MAX)
                    break;
                int32_t after = f->p[cur].next;
                /* left part: stays in cur (possibly empty) */
                size_t llen = m - base;
                if (attr & QV_TOKEN_ATTR_LSTRIP)
                    while (llen > 0 && c_isspace(t[base + llen - 1]))
                        llen--;
                f->p[cur].off = base;
                f->p[cur].len = llen;
                int32_t tok = frag_new(f, m, pl, id);
                if (tok < 0) {
                    free(occurs);
                    return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
                }
                f->p[cur].next = tok;
                f->p[tok].next = after;
                size_t roff = m + pl, rlen = base + blen - roff;
                if (rlen == 0)
                    break;
                if (attr & QV_TOKEN_ATTR_RSTRIP)
                    while (rlen > 0 && c_isspace(t[roff])) {
                        roff++;
                        rlen--;
                    }
                if (rlen == 0)
                    break;
                int32_t right = frag_new(f, roff, rlen, -1);
                if (right < 0) {
                    free(occurs);
                    return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
                }
                f->p[tok].next = right;
                f->p[right].next = after;
                cur = right;
                base = roff;
                blen = rlen;
                it = right; /* the outer walk continues after it */
            }
        }
    }
    free(occurs);
    return QV_OK;
}

/* ---- SPM (llama.cpp's llm_tokenizer_spm) ------------------------------ */

typedef struct spm_sym {
    int32_t start, n; /* bytes in the escaped text */
    int32_t prev, next;
} spm_sym;

typedef struct spm_bigram {
    float score;
    int32_t left, right;
    int32_t size;
} spm_bigram;

typedef struct spm_scratch {
    char *text;
    size_t text_cap;
    spm_sym *sym;
    size_t sym_cap;
    spm_bigram *heap;
    size_t heap_n, heap_cap;
} spm_scratch;

/* a goes before b: higher score, then the leftmost */
static bool spm_before(const spm_bigram *a, const spm_bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int spm_push(spm_scratch *s, spm_bigram bg)
{
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
        spm_bigram *h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return -1;
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!spm_before(&bg, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = bg;
    return 0;
}

static spm_bigram spm_pop(spm_scratch *s)
{
    spm_bigram top = s->heap[0];
    spm_bigram last = s->heap[--s->heap_n];
    size_t n = s->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && spm_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!spm_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n)
        s->heap[i] = last;
    return top;
}

static int spm_try_add(const qv_vocab *v, spm_scratch *s, int32_t left,
                       int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    int32_t size = s->sym[left].n + s->sym[right].n;
    int32_t id = vq_lookup(v, s->text + s->sym[left].start, (size_t)size);
    if (id < 0 || id >= v->n_tokens)
        return 0;
    return spm_push(s, (spm_bigram){v->score[id], left, right, size});
}

static size_t utf8_len_lead(uint8_t c)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                       1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Symbol i is U+2581 and the bytes before it are not. */
static bool spm_run_start(const spm_scratch *s, int32_t i)
{
    const spm_sym *y = &s->sym[i];
    return y->n == 3 && !memcmp(s->text + y->start, ESC_SPACE, 3) &&
           (y->start < 3 || memcmp(s->text + y->start - 3, ESC_SPACE, 3));
}

/* llama.cpp's merge loop and output over the symbols [a, b). */
static qv_status spm_segment(const qv_vocab *v, spm_scratch *s, int32_t a,
                             int32_t b, vq_ids *out, qv_err *err)
{
    s->heap_n = 0;
    for (int32_t i = a + 1; i < b; ++i)
        if (spm_try_add(v, s, i - 1, i))
            return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
    while (s->heap_n) {
        spm_bigram bg = spm_pop(s);
        spm_sym *l = &s->sym[bg.left], *r = &s->sym[bg.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size)
            continue; /* stale: one side has changed since */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = bg.left;
        if (spm_try_add(v, s, l->prev, bg.left) ||
            spm_try_add(v, s, bg.left, l->next))
            return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
    }
    for (int32_t i = a; i != -1; i = s->sym[i].next) {
        const spm_sym *y = &s->sym[i];
        int32_t id = vq_lookup(v, s->text + y->start, (size_t)y->n);
        if (id >= 0 && id < v->n_tokens) {
            if (vq_ids_push(out, id))
                return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
            continue;
        }
        /* byte fallback */
        for (int32_t k = 0; k < y->n; ++k) {
            uint8_t c = (uint8_t)s->text[y->start + k];
            int32_t t = v->spm_byte[c];
            if (t < 0) {
                /* llama.cpp throws here; qvac uses UNK where there is one */
                t = v->unk;
                if (t < 0)
                    return qv_fail(err, QV_ERR_UNSUPPORTED,
                                   "tokenize: the vocabulary has no token for "
                                   "byte 0x%02x (<0x%02X>) and no unknown "
                                   "token", c, c);
            }
            if (vq_ids_push(out, t))
                return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
        }
    }
    return QV_OK;
}

static qv_status spm_fragment(const qv_vocab *v, spm_scratch *s,
                              const char *raw, size_t rawlen, bool prefix,
                              vq_ids *out, qv_err *err)
{
    /* the text with a space in front (when asked), spaces as U+2581 */
    size_t need = (rawlen + 1) * 3;
    if (need > s->text_cap) {
        char *p = realloc(s->text, need);
        if (!p)
            return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
        s->text = p;
        s->text_cap = need;
    }
    size_t n = 0;
    if (prefix) {
        memcpy(s->text, ESC_SPACE, 3);
        n = 3;
    }
    for (size_t i = 0; i < rawlen; ++i) {
        if (raw[i] == ' ') {
            memcpy(s->text + n, ESC_SPACE, 3);
            n += 3;
        } else {
            s->text[n++] = raw[i];
        }
    }
    if (n == 0)
        return QV_OK;
    if (n > s->sym_cap) {
        spm_sym *p = realloc(s->sym, n * sizeof *p);
        if (!p)
            return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
        s->sym = p;
        s->sym_cap = n;
    }
    int32_t nsym = 0;
    for (size_t off = 0; off < n;) {
        size_t l = utf8_len_lead((uint8_t)s->text[off]);
        if (l > n - off)
            l = n - off;
        s->sym[nsym] = (spm_sym){(int32_t)off, (int32_t)l, nsym - 1, -1};
        off += l;
        if (off < n)
            s->sym[nsym].next = nsym + 1;
        nsym++;
    }
    /* Where no token has U+2581 after anything but U+2581 (so no token
     * can span the start of a run of U+2581), each run starts a segment
     * that no merge crosses: merging each segment alone gives the same
     * symbols as llama.cpp's one queue over the whole text, with small
     * queues. */
    for (int32_t a = 0; a < nsym;) {
        int32_t b = a + 1;
        if (v->spm_split)
            while (b < nsym && !spm_run_start(s, b))
                b++;
        else
            b = nsym;
        s->sym[a].prev = -1;
        s->sym[b - 1].next = -1;
        qv_status st = spm_segment(v, s, a, b, out, err);
        if (st)
            return st;
        a = b;
    }
    return QV_OK;
}

/* ---- tokenize ---------------------------------------------------------- */

qv_status qv_vocab_tokenize(const qv_vocab *v, const char *text, size_t len,
                            bool add_bos, bool parse_special, int32_t **ids,
                            size_t *n, qv_err *err)
{
    if (ids)
        *ids = NULL;
    if (n)
        *n = 0;
    if (!v || !ids || !n || (!text && len))
        return qv_fail(err, QV_ERR_INVALID, "tokenize: NULL argument");
    if (len > VQ_MAX_TEXT)
        return qv_fail(err, QV_ERR_INVALID,
                       "tokenize: %zu bytes is more than the %zu MiB one call "
                       "takes; split the text", len, VQ_MAX_TEXT >> 20);
    vq_ids out = {0};
    frags f = {0};
    spm_scratch ss = {0};
    vq_bpe_scratch *bs = NULL;
    qv_status s = QV_OK;
    if (add_bos) {
        if (v->bos < 0) {
            s = qv_fail(err, QV_ERR_UNSUPPORTED,
                        "tokenize: BOS asked for but the vocabulary has none "
                        "(tokenizer.ggml.bos_token_id)");
            goto done;
        }
        if (vq_ids_push(&out, v->bos))
            goto nomem;
    }
    if (len > 0) {
        if ((s = partition(v, text, len, parse_special, &f, err)))
            goto done;
    } else {
        f.head = -1;
    }
    if (v->type == QV_VOCAB_BPE) {
        bs = vq_bpe_scratch_new();
        if (!bs)
            goto nomem;
    }
    bool prev_special = true; /* SPM: a space in front of the first text */
    for (int32_t i = f.head; i >= 0; i = f.p[i].next) {
        const frag *fr = &f.p[i];
        if (fr->token >= 0) {
            if (vq_ids_push(&out, fr->token))
                goto nomem;
            prev_special = true;
            continue;
        }
        if (fr->len == 0)
            continue;
        if (v->type == QV_VOCAB_SPM) {
            s = spm_fragment(v, &ss, text + fr->off, fr->len,
                             v->add_space_prefix && prev_special, &out, err);
            prev_special = false;
        } else {
            s = vq_bpe_fragment(v, bs, text + fr->off, fr->len, &out, err);
        }
        if (s)
            goto done;
    }
    if (!out.p) {
        out.p = malloc(sizeof *out.p);
        if (!out.p)
            goto nomem;
    }
    *ids = out.p;
    *n = out.n;
    out.p = NULL;
    goto done;
nomem:
    s = qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
done:
    free(out.p);
    free(f.p);
    free(ss.text);
    free(ss.sym);
    free(ss.heap);
    vq_bpe_scratch_free(bs);
    return s;
}

/* ---- pieces and detokenizing ------------------------------------------ */

const char *qv_vocab_token_to_piece(const qv_vocab *v, int32_t id,
                                    bool special, size_t *len)
{
    if (!in_range(v, id)) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (!special &&
        (v->attr[id] & (QV_TOKEN_ATTR_UNKNOWN | QV_TOKEN_ATTR_CONTROL))) {
        if (len)
            *len = 0;
        return v->parena + v->poff[id] + v->plen[id]; /* "" */
    }
    if (len)
        *len = v->plen[id];
    return v->parena + v->poff[id];
}

qv_status qv_vocab_detokenize(const qv_vocab *v, const int32_t *ids,
                              size_t n, bool remove_special,
                              bool unparse_special, char **text, size_t *len,
                              qv_err *err)
{
    if (text)
        *text = NULL;
    if (len)
        *len = 0;
    if (!v || !text || !len || (!ids && n))
        return qv_fail(err, QV_ERR_INVALID, "detokenize: NULL argument");
    for (size_t i = 0; i < n; ++i)
        if (!in_range(v, ids[i]))
            return qv_fail(err, QV_ERR_INVALID,
                           "detokenize: token %zu is %d, outside the "
                           "vocabulary of %d tokens", i, ids[i], v->n_tokens);
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n > 0 && ids[0] == v->bos) {
        remove_space = false;
        n--;
        ids++;
    }
    if (remove_special && v->add_eos && n > 0 && ids[n - 1] == v->eos)
        n--;
    size_t total = 0;
    for (size_t i = 0; i < n; ++i)
        total += v->plen[ids[i]];
    char *t = malloc(total + 1);
    if (!t)
        return qv_fail(err, QV_ERR_NOMEM, "detokenize: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; ++i) {
        size_t pl;
        const char *p = qv_vocab_token_to_piece(v, ids[i], unparse_special, &pl);
        if (remove_space && pl && *p == ' ') {
            p++;
            pl--;
        }
        remove_space = false;
        memcpy(t + k, p, pl);
        k += pl;
    }
    if (v->clean_spaces && k > 0) {
        /* llama.cpp's three passes, in place */
        size_t t1 = k;
        k = 1;
        for (size_t i = 1; i < t1; ++i) {
            char x = t[i];
            if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
                k--;
            t[k++] = x;
        }
        size_t t2 = k;
        k = 1;
        for (size_t i = 1; i < t2; ++i) {
            char x = t[i];
            if (x == '\'' && i + 1 < t2 && t[i - 1] == ' ' && t[i + 1] == ' ') {
                k--;
                t[++i] = '\0';
            }
            t[k++] = x;
        }
        size_t t3 = k;
        k = 1;
        for (size_t i = 1; i < t3; ++i) {
            char x = t[i];
            if (t[i - 1] == ' ' && x == '\'' && i + 1 < t3) {
                char x1 = t[i + 1];
                if (x1 == 's' || x1 == 'm')
                    k--;
                else if (x1 != 't' && x1 != 'd' && i + 2 < t3) {
                    char x2 = t[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e'))
                        k--;
                }
            }
            t[k++] = x;
        }
    }
    t[k] = '\0';
    *text = t;
    *len = k;
    return QV_OK;
}
