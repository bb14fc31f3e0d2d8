/* formats/vocab_impl.h — what formats/vocab.c (loading, special tokens,
 * SPM, pieces) and formats/vocab_bpe.c (pre-tokenizers, byte-level BPE)
 * share. Not part of the API: include formats/vocab.h. */
#ifndef QV_FORMATS_VOCAB_IMPL_H
#define QV_FORMATS_VOCAB_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "formats/vocab.h"

/* ---- growable buffers ------------------------------------------------ */

typedef struct vq_ids {
    int32_t *p;
    size_t n, cap;
} vq_ids;

/* 0 on success, -1 when out of memory. */
int vq_ids_push(vq_ids *a, int32_t id);

/* ---- strings -> ids -------------------------------------------------- */

/* Open addressing over "symbol ids": ids < n_tokens are tokens, ids from
 * n_tokens on are extra strings (BPE merge parts that are not tokens). */
typedef struct vq_slot {
    uint32_t id1; /* id + 1; 0: empty */
    uint32_t h;   /* high bits of the hash, to skip most compares */
} vq_slot;

uint64_t vq_hash(const void *p, size_t n);

/* ---- pre-tokenizer --------------------------------------------------- */

#define VQ_MAX_REGEX 6

typedef enum vq_split_kind {
    VQ_SPLIT_REGEX = 0,   /* matches and the gaps between them */
    VQ_SPLIT_AFMOE_DIGITS /* llama.cpp's custom digit grouping */
} vq_split_kind;

typedef struct vq_split {
    vq_split_kind kind;
    pcre2_code *re;
} vq_split;

struct qv_vocab {
    qv_vocab_type type;
    char model[16];
    char *pre;            /* name as in the file, or "default" */
    int32_t n_tokens;

    /* token texts, NUL-terminated, in one arena */
    char *arena;
    size_t *off;          /* [n_tokens] */
    uint32_t *len;        /* [n_tokens] */
    float *score;         /* [n_tokens] */
    uint32_t *attr;       /* [n_tokens] QV_TOKEN_ATTR_* */
    uint8_t *eog;         /* [n_tokens] 1: ends generation */
    size_t max_token_len;

    /* extra strings (BPE): ids n_tokens .. n_tokens + n_extra - 1 */
    char *xarena;
    size_t xarena_n, xarena_cap;
    size_t *xoff;
    uint32_t *xlen;
    int32_t n_extra, cap_extra;

    vq_slot *slots;       /* string -> id, capacity mask + 1 */
    uint32_t mask;
    uint32_t n_slots_used;

    /* flags (llama.cpp's names) */
    bool add_space_prefix, add_bos, add_eos, add_sep, ignore_merges;
    bool clean_spaces, escape_whitespaces;

    /* special ids */
    int32_t bos, eos, eot, eom, unk, sep, pad, mask_id;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;

    /* special tokens for tokenizer_st_partition: ids sorted by text length
     * (longest first, then id), and a byte trie over their texts */
    int32_t *special;     /* [n_special] */
    int32_t *special_rank;/* [n_tokens] position in `special`, or -1 */
    int32_t n_special;
    struct vq_trie *trie;
    int32_t n_trie;
    int32_t trie_root[256];

    /* pieces (token_to_piece with special = true) */
    char *parena;
    size_t *poff;
    uint32_t *plen;

    /* SPM: byte fallback token for each byte (-1: none); whether runs of
     * U+2581 can be merged one at a time */
    int32_t spm_byte[256];
    bool spm_split;

    /* BPE */
    uint8_t benc[256][3]; /* GPT-2 alphabet: byte -> UTF-8 (len in [2]) */
    int32_t byte_sid[256];/* symbol id of each byte's GPT-2 character */
    int32_t byte_tok[256];/* token of the raw one-byte string, or -1 */
    struct vq_merge *merges; /* open addressing, capacity mmask + 1 */
    uint32_t mmask;
    vq_split split[VQ_MAX_REGEX];
    int n_split;
    pcre2_code *re_digits; /* \p{N}+ for VQ_SPLIT_AFMOE_DIGITS */
};

typedef struct vq_trie {
    int32_t child;   /* first child node, -1 none */
    int32_t sibling; /* next sibling, -1 none */
    int32_t token;   /* token ending here, -1 none */
    uint8_t byte;
} vq_trie;

typedef struct vq_merge {
    uint64_t key;    /* (left sid << 32) | right sid; UINT64_MAX: empty */
    int32_t rank;
    int32_t sid;     /* the merged string */
} vq_merge;

/* Text of symbol id (token or extra string). */
static inline const char *vq_text(const qv_vocab *v, int32_t id, size_t *len)
{
    if (id < v->n_tokens) {
        *len = v->len[id];
        return v->arena + v->off[id];
    }
    *len = v->xlen[id - v->n_tokens];
    return v->xarena + v->xoff[id - v->n_tokens];
}

/* Symbol id of s[0..n) or -1 (tokens and extra strings alike). */
int32_t vq_lookup(const qv_vocab *v, const char *s, size_t n);

/* Symbol id of s[0..n), adding it as an extra string when absent; -1 when
 * out of memory. */
int32_t vq_intern(qv_vocab *v, const char *s, size_t n);

/* Lenient UTF-8 decoding exactly as llama.cpp's unicode_cpt_from_utf8
 * (no check of overlong forms or surrogates; a bad byte is U+FFFD and one
 * byte), except that a 4-byte form above U+10FFFF is a bad byte too.
 * Returns the code point and sets *used (>= 1). */
uint32_t vq_utf8_decode(const uint8_t *s, size_t n, size_t *used);
/* Writes cpt as UTF-8 (1..4 bytes, surrogates included); returns bytes. */
size_t vq_utf8_encode(uint32_t cpt, uint8_t out[4]);

/* ---- BPE (vocab_bpe.c) ---------------------------------------------- */

/* Reads tokenizer.ggml.merges and sets up the named pre-tokenizer (flags
 * included); called by qv_vocab_load after the tokens are in. */
qv_status vq_bpe_init(qv_vocab *v, const qv_gguf *g, qv_err *err);
void vq_bpe_free(qv_vocab *v);

/* Per-call scratch for BPE. */
typedef struct vq_bpe_scratch vq_bpe_scratch;
vq_bpe_scratch *vq_bpe_scratch_new(void);
void vq_bpe_scratch_free(vq_bpe_scratch *s);

/* Tokenizes one raw-text fragment and appends to out. */
qv_status vq_bpe_fragment(const qv_vocab *v, vq_bpe_scratch *s,
                          const char *text, size_t len, vq_ids *out,
                          qv_err *err);

/* Splits text into words with the vocabulary's pre-tokenizer (no byte
 * encoding): the words' byte ranges in the cleaned text (*clean, owned by
 * the scratch) are (*starts)[i], (*lens)[i]. For tests and tools. */
qv_status vq_bpe_pretokenize(const qv_vocab *v, vq_bpe_scratch *s,
                             const char *text, size_t len,
                             const char **clean, const uint32_t **starts,
                             const uint32_t **lens, size_t *n, qv_err *err);

/* BPE piece of a normal token: its text back through the GPT-2 alphabet,
 * as llama.cpp's llama_decode_text (including its "[UNK_BYTE_0x..]" for
 * characters outside the alphabet). Appends to a malloc'd buffer. */
int vq_bpe_decode_text(const char *text, size_t len, char **buf,
                       size_t *n, size_t *cap);

#endif
