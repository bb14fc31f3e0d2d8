/* formats/vocab.h — the vocabulary of a GGUF model file and its tokenizer,
 * token for token what llama.cpp (src/llama-vocab.cpp, src/unicode.cpp)
 * makes of the same file.
 *
 * The vocabulary comes from the file's tokenizer.ggml.* keys:
 *
 *   tokenizer.ggml.model   "llama" (SentencePiece BPE, "SPM") or "gpt2"
 *                          (byte-level BPE); anything else is refused
 *   tokenizer.ggml.pre     the BPE pre-tokenizer ("default", "gpt-2",
 *                          "llama-bpe", "falcon", "qwen2", ...: the table
 *                          in formats/vocab_bpe.c); an unknown name is
 *                          refused
 *   tokenizer.ggml.tokens  the token texts (required)
 *   tokenizer.ggml.scores, tokenizer.ggml.token_type (optional; exactly
 *                          one entry per token when present)
 *   tokenizer.ggml.merges  BPE merge rules "left right", rank = position
 *   tokenizer.ggml.*_token_id, add_bos_token, add_eos_token,
 *   add_space_prefix       special ids and flags
 *
 * A vocabulary-only file (no tensors) is fine. Errors name the key: a
 * missing or mistyped key, arrays of different lengths, duplicate token
 * texts or a special id outside the vocabulary is QV_ERR_CORRUPT; a
 * tokenizer or pre-tokenizer qvac does not implement is QV_ERR_UNSUPPORTED.
 *
 * Tokenizing: `parse_special` = 1 turns occurrences of special tokens'
 * texts (control, user-defined and unknown tokens, e.g.
 * "<|begin_of_text|>") into those tokens before the rest is tokenized, as
 * llama.cpp's tokenizer_st_partition does; 0 leaves control and unknown
 * tokens' texts as plain text, so user text never produces them
 * (user-defined tokens, e.g. mpt's runs of spaces, are matched either way,
 * as in llama.cpp and Hugging Face). BOS is added only when asked.
 *
 * A qv_vocab is read-only after loading: any number of threads may
 * tokenize with one vocabulary at the same time. */
#ifndef QV_FORMATS_VOCAB_H
#define QV_FORMATS_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "formats/gguf.h"

/* "No such token": returned by the id getters and lookups. */
#define QV_TOKEN_NULL (-1)

typedef struct qv_vocab qv_vocab;

typedef enum qv_vocab_type {
    QV_VOCAB_SPM = 1, /* tokenizer.ggml.model "llama" */
    QV_VOCAB_BPE = 2  /* tokenizer.ggml.model "gpt2" */
} qv_vocab_type;

/* Token attributes: llama.cpp's llama_token_attr bits. From
 * tokenizer.ggml.token_type (1 normal, 2 unknown, 3 control,
 * 4 user-defined, 5 unused, 6 byte; anything else undefined), then
 * adjusted as llama.cpp does (end-of-generation texts such as
 * "<|eot_id|>" become control; control tokens named "unused..." become
 * unused; model-specific strip flags). */
enum {
    QV_TOKEN_ATTR_UNDEFINED = 0,
    QV_TOKEN_ATTR_UNKNOWN = 1 << 0,
    QV_TOKEN_ATTR_UNUSED = 1 << 1,
    QV_TOKEN_ATTR_NORMAL = 1 << 2,
    QV_TOKEN_ATTR_CONTROL = 1 << 3,
    QV_TOKEN_ATTR_USER_DEFINED = 1 << 4,
    QV_TOKEN_ATTR_BYTE = 1 << 5,
    QV_TOKEN_ATTR_NORMALIZED = 1 << 6,
    QV_TOKEN_ATTR_LSTRIP = 1 << 7, /* eats white space before it */
    QV_TOKEN_ATTR_RSTRIP = 1 << 8, /* eats white space after it */
    QV_TOKEN_ATTR_SINGLE_WORD = 1 << 9
};

/* Reads the vocabulary of g (which may be freed afterwards: everything is
 * copied). *out is NULL on error. */
qv_status qv_vocab_load(const qv_gguf *g, qv_vocab **out, qv_err *err);

/* Opens the GGUF file at path (vocabulary-only files such as llama.cpp's
 * models/ggml-vocab-*.gguf included) and loads its vocabulary. Errors as
 * qv_gguf_open and qv_vocab_load, the message naming the path. */
qv_status qv_vocab_open(const char *path, qv_vocab **out, qv_err *err);

void qv_vocab_free(qv_vocab *v); /* safe on NULL */

/* Writes qvac's byte vocabulary (ids 0-255 the bytes, 256 BOS, 257 EOS) as
 * llama.cpp's byte-level BPE (tokenizer.ggml.model "gpt2", pre "gpt-2",
 * the 256 bytes in GPT-2's byte alphabet, no merges, BOS added): a
 * tokenizer llama.cpp loads and that gives every byte its own token, as
 * formats/tokenizer.h does. */
qv_status qv_vocab_write_bytes_bpe(qv_gguf_writer *w, qv_err *err);

/* ---- what the vocabulary is ----------------------------------------- */

size_t qv_vocab_size(const qv_vocab *v); /* number of tokens */
qv_vocab_type qv_vocab_kind(const qv_vocab *v);
/* tokenizer.ggml.model and the pre-tokenizer's name as in the file
 * ("default" when tokenizer.ggml.pre is absent or the vocabulary is SPM). */
const char *qv_vocab_model_name(const qv_vocab *v);
const char *qv_vocab_pre_name(const qv_vocab *v);

/* Special ids (QV_TOKEN_NULL when the vocabulary has none): the file's
 * keys, else llama.cpp's defaults (SPM: BOS 1, EOS 2, UNK 0); EOT is
 * found by text ("<|eot_id|>", "<|im_end|>", "<|endoftext|>" ...) when the
 * file does not name it. */
int32_t qv_vocab_bos(const qv_vocab *v);
int32_t qv_vocab_eos(const qv_vocab *v);
int32_t qv_vocab_eot(const qv_vocab *v);
int32_t qv_vocab_unk(const qv_vocab *v);
int32_t qv_vocab_pad(const qv_vocab *v);
/* Whether the model wants BOS / EOS around a prompt
 * (tokenizer.ggml.add_bos_token / add_eos_token, else llama.cpp's
 * default for the tokenizer). qv_vocab_tokenize adds BOS only when told. */
bool qv_vocab_wants_bos(const qv_vocab *v);
bool qv_vocab_wants_eos(const qv_vocab *v);
/* True for tokens that end generation (EOS, EOT, "<|im_end|>" ...). */
bool qv_vocab_is_eog(const qv_vocab *v, int32_t id);

/* A token's text exactly as in the file (SPM: spaces as U+2581; BPE: the
 * GPT-2 byte alphabet) and its length; NULL for an id out of range. */
const char *qv_vocab_token_text(const qv_vocab *v, int32_t id, size_t *len);
float qv_vocab_token_score(const qv_vocab *v, int32_t id); /* 0 if none */
/* QV_TOKEN_ATTR_* bits; QV_TOKEN_ATTR_UNDEFINED for an id out of range. */
uint32_t qv_vocab_token_attr(const qv_vocab *v, int32_t id);
/* Control tokens (BOS, EOS, "<|start_header_id|>" ...). */
bool qv_vocab_is_control(const qv_vocab *v, int32_t id);
/* Tokens parse_special can produce: control, user-defined or unknown. */
bool qv_vocab_is_special(const qv_vocab *v, int32_t id);

/* The id of the token whose text (as in the file) is exactly text[0..len),
 * e.g. "<|start_header_id|>" for a chat template; QV_TOKEN_NULL if none. */
int32_t qv_vocab_find(const qv_vocab *v, const char *text, size_t len);

/* ---- tokenizing ------------------------------------------------------ */

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 is handled as
 * llama.cpp does). *ids receives a malloc'd array of *n ids (the caller
 * frees it; never NULL on success, even when *n is 0). add_bos puts BOS
 * first. Errors: QV_ERR_INVALID (NULL arguments), QV_ERR_UNSUPPORTED
 * (add_bos without a BOS token; a byte the vocabulary cannot spell),
 * QV_ERR_NOMEM. */
qv_status qv_vocab_tokenize(const qv_vocab *v, const char *text, size_t len,
                            bool add_bos, bool parse_special, int32_t **ids,
                            size_t *n, qv_err *err);

/* The bytes one token stands for (llama.cpp's llama_token_to_piece with
 * lstrip 0): SPM U+2581 becomes a space, byte tokens <0xNN> the byte, BPE
 * text goes back through the GPT-2 byte alphabet. Control and unknown
 * tokens give their text when `special`, else nothing (length 0). The
 * piece is owned by v; NULL (and *len 0) for an id out of range. A piece
 * may be part of a UTF-8 character. */
const char *qv_vocab_token_to_piece(const qv_vocab *v, int32_t id,
                                    bool special, size_t *len);

/* The text of ids[0..n) (llama.cpp's llama_detokenize): pieces joined;
 * SPM drops the space its tokenizer put in front of the first piece
 * (unless that token is BOS and remove_special), BPE vocabularies with
 * clean_up_tokenization_spaces undo " ." " ," " 's" ... as llama.cpp does.
 * remove_special drops a leading BOS / trailing EOS when the model adds
 * them; unparse_special renders control tokens as their text. On valid
 * UTF-8 without special-token texts (and, for SPM, without U+2581) it is
 * the exact inverse of qv_vocab_tokenize with add_bos 0, for SPM and for
 * BPE without space cleaning (qwen2, deepseek, command-r, ...). *text
 * receives a malloc'd, NUL-terminated string of *len bytes (may contain
 * NUL).
 * Errors: QV_ERR_INVALID (an id out of range: the message gives its
 * position), QV_ERR_NOMEM. */
qv_status qv_vocab_detokenize(const qv_vocab *v, const int32_t *ids,
                              size_t n, bool remove_special,
                              bool unparse_special, char **text, size_t *len,
                              qv_err *err);

#endif
