/* formats/dataset.h — training data: JSON Lines datasets and packed text,
 * tokenized with the byte tokenizer (formats/tokenizer.h), split into
 * train/validation, and cut into batches for the training loop.
 *
 * JSON Lines: one JSON object per line, either
 *     {"text": "..."}                        loss on every token after BOS
 *     {"prompt": "...", "completion": "..."} loss on the completion and EOS
 * An example is BOS + bytes(prompt) + bytes(completion) + EOS, or
 * BOS + bytes(text) + EOS, with a mask saying which positions are trained
 * on (mask[i] = 1: the model is trained to predict token i from tokens
 * 0..i-1). Blank lines are skipped. Malformed lines are recorded as issues
 * (line number and reason) and skipped; a load succeeds when at least one
 * line is usable. The strings are UTF-8 JSON (jansson rejects raw invalid
 * UTF-8, which is reported as a malformed line); "\u0000" is allowed and
 * becomes a 0 byte. Unknown keys are ignored. Full rules: docs/formats.md,
 * "Datasets (JSON Lines) and the byte tokenizer".
 *
 * Batches are deterministic: the same dataset, cursor and seed give the
 * same tokens and targets bit for bit on every machine. */
#ifndef QV_FORMATS_DATASET_H
#define QV_FORMATS_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct qv_dataset qv_dataset;
typedef struct qv_vocab qv_vocab;
typedef struct qv_gguf qv_gguf;

/* Examples longer than the model's context. */
enum { QV_LONG_SKIP = 0, QV_LONG_TRUNCATE = 1 };

/* How a dataset is tokenized (NULL options: the byte tokenizer, no chat
 * template, no length limit).
 * vocab: a GGUF vocabulary (formats/vocab.h), borrowed during the load:
 *   BOS when the model wants one, its EOS to end text and completions and
 *   to pad batches; each example is tokenized as one string (between the
 *   template's special tokens), exactly as llama.cpp tokenizes it, and a
 *   token is trained when any of its bytes is.
 * chat: the qv_chat_template (formats/chat.h) that renders
 *   {"messages": [...]} lines, or -1 (such lines are then issues). The
 *   template's markup may hold special tokens; message content never
 *   does. The loss covers the assistant turns and their end-of-turn.
 * max_tokens: the longest example kept (the model's context), 0 for no
 *   limit; longer ones are dropped (QV_LONG_SKIP, counted by
 *   qv_dataset_n_long) or cut to max_tokens (QV_LONG_TRUNCATE, dropped when
 *   nothing trained remains). */
typedef struct qv_dataset_opts {
    const qv_vocab *vocab;
    int chat;
    size_t max_tokens;
    int long_policy;
    size_t max_line; /* longest line read, bytes; 0 -> QV_DATASET_MAX_LINE.
                        A longer line is skipped as an issue (never held) */
} qv_dataset_opts;

#define QV_DATASET_MAX_LINE (16u << 20) /* 16 MiB */

/* One malformed line. line is 1-based. */
#define QV_DATASET_MAX_ISSUES 20
typedef struct qv_dataset_issue {
    uint64_t line;
    char reason[200];
} qv_dataset_issue;

/* Position of a training loop in a dataset: plain data, so a checkpoint
 * can save and restore it. Start from {0, 0}. */
typedef struct qv_cursor {
    uint64_t epoch; /* passes completed */
    uint64_t index; /* rows taken in the current pass */
} qv_cursor;

/* Loads a JSON Lines file: a regular file (a device or pipe such as
 * /dev/zero is refused, QV_ERR_IO), lines up to opts.max_line bytes (longer
 * ones are issues). Errors: QV_ERR_NOT_FOUND
 * (no such file), QV_ERR_IO (cannot open or read), QV_ERR_INVALID (no
 * usable line: the message names the path and the first problem),
 * QV_ERR_NOMEM. On success *out owns everything; free with
 * qv_dataset_free. */
qv_status qv_dataset_load_file(const char *path, qv_dataset **out, qv_err *err);

/* The options for a model file g (NULL: the built-in byte model): its
 * vocabulary when it has tokenizer.ggml.* keys (*vocab, freed by the
 * caller with qv_vocab_free; NULL for qvac's byte tokenizer), the chat
 * template chat_name names ("llama3", ...; NULL: detected from
 * tokenizer.chat_template when there is one, else none), max_tokens and
 * long_policy as given. Errors: a model with neither tokenizer keys nor
 * qvac's byte vocabulary (QV_ERR_UNSUPPORTED: qvac cannot tokenize text
 * for it), an unknown chat_name, a vocabulary qvac cannot read. A chat
 * template the file has but qvac does not know is not an error here:
 * "messages" lines then fail with the reason. */
qv_status qv_dataset_opts_for_model(const qv_gguf *g, const char *what,
                                    const char *chat_name, size_t max_tokens,
                                    int long_policy, qv_dataset_opts *o,
                                    qv_vocab **vocab, qv_err *err);

/* The same from n bytes in memory (e.g. an embedded dataset); name is
 * used in messages ("built-in" when NULL). */
qv_status qv_dataset_load_mem(const char *bytes, size_t n, const char *name,
                              qv_dataset **out, qv_err *err);
/* Both with options (NULL: as above). An error also when every example is
 * longer than max_tokens under QV_LONG_SKIP (the message says to pass
 * --long truncate). */
qv_status qv_dataset_load_file_ex(const char *path, const qv_dataset_opts *opts,
                                  qv_dataset **out, qv_err *err);
qv_status qv_dataset_load_mem_ex(const char *bytes, size_t n, const char *name,
                                 const qv_dataset_opts *opts, qv_dataset **out,
                                 qv_err *err);

/* Packing mode for plain text: the n bytes become one token stream
 * BOS + bytes + EOS (trained on everything after BOS); batches are windows
 * of S+1 tokens at seeded random offsets. Any bytes are accepted. Errors:
 * QV_ERR_INVALID (n == 0), QV_ERR_NOMEM. */
qv_status qv_dataset_from_text(const char *bytes, size_t n, const char *name,
                               qv_dataset **out, qv_err *err);
/* The same tokenized with vocab (BOS when the model wants it, EOS). */
qv_status qv_dataset_from_text_ex(const char *bytes, size_t n, const char *name,
                                  const qv_vocab *vocab, qv_dataset **out,
                                  qv_err *err);

/* Safe on NULL. */
void qv_dataset_free(qv_dataset *ds);

/* Name given at load (the path for files). */
const char *qv_dataset_name(const qv_dataset *ds);
/* 1 for a packed text stream (qv_dataset_from_text), 0 for examples. */
int qv_dataset_is_packed(const qv_dataset *ds);
/* Examples (1 for a packed stream), tokens including BOS/EOS, and tokens
 * with mask 1. */
size_t qv_dataset_n_examples(const qv_dataset *ds);
size_t qv_dataset_n_tokens(const qv_dataset *ds);
size_t qv_dataset_n_trained(const qv_dataset *ds);

/* Example i (< n_examples): its tokens and mask, *len of each. */
const int32_t *qv_dataset_example(const qv_dataset *ds, size_t i,
                                  const uint8_t **mask, size_t *len);

/* Malformed lines met at load: qv_dataset_n_issues is the total count;
 * qv_dataset_issues returns the first min(total, QV_DATASET_MAX_ISSUES) in
 * line order, their number in *n_stored. */
uint64_t qv_dataset_n_issues(const qv_dataset *ds);
/* Examples longer than max_tokens met at load (skipped or truncated). */
uint64_t qv_dataset_n_long(const qv_dataset *ds);
/* The token batches are padded with (the vocabulary's EOS, or the byte
 * tokenizer's). */
int32_t qv_dataset_pad(const qv_dataset *ds);
const qv_dataset_issue *qv_dataset_issues(const qv_dataset *ds, size_t *n_stored);

/* Splits ds into two new datasets (copies; ds is unchanged). The
 * validation set is the round(val_fraction * n) examples with the smallest
 * hash of (seed, index), clamped so that train keeps at least one example
 * and, when val_fraction > 0 and n >= 2, val gets at least one. Both keep
 * the original order. val_fraction 0 gives an empty val. A packed stream
 * is split by position instead: val is the last round(val_fraction * n)
 * tokens, same clamps, seed unused. Errors: QV_ERR_INVALID (val_fraction
 * outside [0, 1), NULL), QV_ERR_NOMEM. */
qv_status qv_dataset_split(const qv_dataset *ds, double val_fraction, uint64_t seed,
                           qv_dataset **train_out, qv_dataset **val_out, qv_err *err);

/* Fills a training batch of B rows by S positions (tokens and targets each
 * B*S int32, row-major) and advances cur by B rows.
 * Examples: row b is the next example in the order of pass cur->epoch (a
 * permutation of the examples fixed by seed and epoch; after the last one
 * the cursor moves to the next epoch). tokens are its first S tokens,
 * padded with EOS when shorter; targets[t] = token t+1 of the example when
 * that position exists and its mask is 1, else -1 (ignored).
 * Packed: row b is a window of S+1 tokens at an offset drawn from (seed,
 * epoch, index); a pass is max(1, (n_tokens-1)/S) windows.
 * Errors: QV_ERR_INVALID (B < 1, S < 1, B*S too large, NULL, a dataset
 * with no examples). */
qv_status qv_dataset_next_batch(const qv_dataset *ds, qv_cursor *cur, uint64_t seed,
                                int B, int S, int32_t *tokens, int32_t *targets,
                                qv_err *err);

/* Evaluation: walks the dataset once, in order, from cur->index (start at
 * {0, 0}): examples in file order, or for a packed stream consecutive
 * windows starting at 0, S, 2S, ... (every token predicted exactly once).
 * Rows past the end are EOS with targets -1. *rows gets the number of real
 * rows; 0 means the pass is over. cur->epoch is not used. */
qv_status qv_dataset_eval_batch(const qv_dataset *ds, qv_cursor *cur, int B, int S,
                                int32_t *tokens, int32_t *targets, int *rows,
                                qv_err *err);

/* Number of targets that are not -1 in a B x S batch. */
int64_t qv_dataset_count_targets(const int32_t *targets, int B, int S);

#endif
