/* formats/gguf.h — GGUF version 3 reader and writer, byte-compatible with
 * llama.cpp / ggml (ggml/src/gguf.cpp, docs/gguf.md in ggml) and gguf-py.
 * docs/formats.md ("GGUF files") gives the layout and every validation
 * rule.
 *
 * Reading: qv_gguf_parse validates the whole file before returning: every
 * count, length, type, shape, offset and size is checked against the bytes
 * that are actually there, so a hostile file gives QV_ERR_CORRUPT (or
 * QV_ERR_UNSUPPORTED for a well-formed feature qvac does not read) with a
 * message naming the item, the field and its byte offset — never a crash,
 * an over-read or an allocation larger than a small multiple of the file.
 * Metadata (keys, strings, arrays, tensor names) is decoded into memory
 * owned by the qv_gguf; tensor data is not copied: each tensor's `data`
 * points into the parsed bytes.
 *
 * Writing: a qv_gguf_writer collects KVs (copied) and tensors (borrowed)
 * and lays them out as ggml's gguf_write_to_buf does: header, KVs, tensor
 * infos, zero padding to the alignment (32), then each tensor's bytes
 * followed by zero padding to 32, offsets consecutive from 0. llama.cpp
 * requires exactly that layout (each offset equal to the sum of the padded
 * sizes before it), so the files load there unchanged.
 *
 * Multi-byte metadata values are little-endian in the file and native in
 * this API; tensor bytes are passed through as they are (ggml's layout,
 * little-endian). */
#ifndef QV_FORMATS_GGUF_H
#define QV_FORMATS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define QV_GGUF_VERSION 3
#define QV_GGUF_DEFAULT_ALIGNMENT 32
#define QV_GGUF_MAX_DIMS 4
/* Longest tensor name llama.cpp accepts (GGML_MAX_NAME 64 with its NUL). */
#define QV_GGUF_MAX_NAME 63
/* Longest key the GGUF spec allows. */
#define QV_GGUF_MAX_KEY 65535

/* Metadata value types (gguf_type); the numbers are the file's. */
typedef enum qv_gguf_type {
    QV_GGUF_UINT8 = 0,
    QV_GGUF_INT8 = 1,
    QV_GGUF_UINT16 = 2,
    QV_GGUF_INT16 = 3,
    QV_GGUF_UINT32 = 4,
    QV_GGUF_INT32 = 5,
    QV_GGUF_FLOAT32 = 6,
    QV_GGUF_BOOL = 7,    /* one byte, 0 or 1; native: uint8_t / bool */
    QV_GGUF_STRING = 8,
    QV_GGUF_ARRAY = 9,
    QV_GGUF_UINT64 = 10,
    QV_GGUF_INT64 = 11,
    QV_GGUF_FLOAT64 = 12
} qv_gguf_type;

/* The tensor types (ggml_type) qvac reads and writes; the numbers are
 * ggml's. Any other type is QV_ERR_UNSUPPORTED. */
typedef enum qv_ggml_type {
    QV_GGML_F32 = 0,    /* 4 bytes per element */
    QV_GGML_F16 = 1,    /* 2 */
    QV_GGML_Q8_0 = 8,   /* 34-byte blocks of 32: f16 d, 32 x int8 */
    QV_GGML_Q6_K = 14,  /* 210-byte blocks of 256 (ggml's block_q6_K) */
    QV_GGML_I8 = 24,    /* 1 */
    QV_GGML_I32 = 26,   /* 4 */
    QV_GGML_TQ1_0 = 34, /* 54-byte blocks of 256 (formats/tq.h) */
    QV_GGML_TQ2_0 = 35, /* 66-byte blocks of 256 */
    QV_GGML_BF16 = 30,  /* 2 */
    QV_GGML_I2_S = 36   /* bitnet.cpp's fork: 2 bits per weight in blocks of
                           128, then a 32-byte tail holding the f32 scale:
                           elements / 4 + 32 bytes (formats/i2s.h) */
} qv_ggml_type;

/* Short names: "u32", "string", "array" ...; "F32", "TQ2_0" ...; NULL for
 * numbers outside the tables. */
const char *qv_gguf_type_name(uint32_t type);
const char *qv_ggml_type_name(uint32_t type);

/* Exact byte size of a tensor of this type and shape (ne[0] the row
 * length, n_dims 1..4, each ne >= 1; block types need ne[0] % 256 == 0).
 * Errors: QV_ERR_UNSUPPORTED (type), QV_ERR_INVALID (shape, overflow). */
qv_status qv_ggml_nbytes(uint32_t type, uint32_t n_dims, const int64_t *ne,
                         size_t *nbytes, qv_err *err);

/* ---- reading -------------------------------------------------------- */

typedef struct qv_gguf qv_gguf;

typedef struct qv_gguf_kv {
    const char *key;        /* NUL-terminated, no NUL inside, 1..65535 bytes */
    qv_gguf_type type;      /* QV_GGUF_ARRAY for arrays */
    qv_gguf_type elem_type; /* arrays: the element type; else == type */
    size_t n;               /* arrays: element count; else 1 */
} qv_gguf_kv;

typedef struct qv_gguf_tensor {
    const char *name;   /* NUL-terminated, 1..63 bytes */
    uint32_t n_dims;    /* 1..4 */
    int64_t ne[QV_GGUF_MAX_DIMS]; /* ne[0] contiguous; unused dims are 1 */
    uint32_t type;      /* a qv_ggml_type */
    uint64_t offset;    /* from the start of the data section */
    const void *data;   /* into the parsed bytes; aligned as in the file */
    size_t nbytes;      /* exact, without padding */
} qv_gguf_tensor;

/* Parses and validates n bytes. The bytes are borrowed: they must stay
 * alive and unchanged until qv_gguf_free (tensor data points into them).
 * Errors: QV_ERR_CORRUPT (malformed: the message names the field and its
 * byte offset), QV_ERR_UNSUPPORTED (nested arrays, tensor types other than
 * those of qv_ggml_type), QV_ERR_NOMEM, QV_ERR_INVALID (NULL arguments).
 * *out is NULL on error. */
qv_status qv_gguf_parse(const void *bytes, size_t n, qv_gguf **out,
                        qv_err *err);

/* Maps the file read-only (mmap) and parses it; the qv_gguf owns the
 * mapping. Errors as qv_gguf_parse, with the path in the message, plus
 * QV_ERR_NOT_FOUND (no such file) and QV_ERR_IO. */
qv_status qv_gguf_open(const char *path, qv_gguf **out, qv_err *err);

/* Frees everything; safe on NULL. */
void qv_gguf_free(qv_gguf *g);

uint32_t qv_gguf_alignment(const qv_gguf *g);   /* general.alignment or 32 */
uint64_t qv_gguf_data_offset(const qv_gguf *g); /* file offset of the data */

/* KVs in file order. qv_gguf_kv_at returns NULL when i >= count;
 * qv_gguf_find_kv NULL when the key is absent. */
size_t qv_gguf_kv_count(const qv_gguf *g);
const qv_gguf_kv *qv_gguf_kv_at(const qv_gguf *g, size_t i);
const qv_gguf_kv *qv_gguf_find_kv(const qv_gguf *g, const char *key);

/* Scalar value of `key` that must have exactly `type` (any scalar type but
 * STRING and ARRAY); out receives the native value (bool: one uint8_t 0/1).
 * Errors: QV_ERR_NOT_FOUND (no such key), QV_ERR_CORRUPT (the key has
 * another type: the model file does not say what qvac needs),
 * QV_ERR_INVALID (type STRING / ARRAY, NULL). The typed getters below are
 * this with the type fixed. */
qv_status qv_gguf_get_val(const qv_gguf *g, const char *key,
                          qv_gguf_type type, void *out, qv_err *err);
qv_status qv_gguf_get_u32(const qv_gguf *g, const char *key, uint32_t *out,
                          qv_err *err);
qv_status qv_gguf_get_i32(const qv_gguf *g, const char *key, int32_t *out,
                          qv_err *err);
qv_status qv_gguf_get_u64(const qv_gguf *g, const char *key, uint64_t *out,
                          qv_err *err);
qv_status qv_gguf_get_f32(const qv_gguf *g, const char *key, float *out,
                          qv_err *err);
qv_status qv_gguf_get_bool(const qv_gguf *g, const char *key, bool *out,
                           qv_err *err);
/* *out: NUL-terminated, owned by g. The value may contain NUL bytes:
 * len (may be NULL) receives the true length. */
qv_status qv_gguf_get_str(const qv_gguf *g, const char *key,
                          const char **out, size_t *len, qv_err *err);

/* Array of numeric elements of exactly elem_type (not STRING): *data
 * receives n native values, suitably aligned (bool: uint8_t 0/1), owned by
 * g; NULL when n is 0. Errors as qv_gguf_get_val. */
qv_status qv_gguf_get_arr(const qv_gguf *g, const char *key,
                          qv_gguf_type elem_type, const void **data,
                          size_t *n, qv_err *err);
/* Array of strings: *strs receives n NUL-terminated strings, *lens (may be
 * NULL) their lengths; owned by g. */
qv_status qv_gguf_get_str_arr(const qv_gguf *g, const char *key,
                              const char *const **strs, const size_t **lens,
                              size_t *n, qv_err *err);

/* Tensors in file order; NULL when i >= count / the name is absent. */
size_t qv_gguf_tensor_count(const qv_gguf *g);
const qv_gguf_tensor *qv_gguf_tensor_at(const qv_gguf *g, size_t i);
const qv_gguf_tensor *qv_gguf_find_tensor(const qv_gguf *g, const char *name);
/* As qv_gguf_find_tensor, but a missing tensor is QV_ERR_NOT_FOUND with a
 * message naming it. */
qv_status qv_gguf_get_tensor(const qv_gguf *g, const char *name,
                             const qv_gguf_tensor **out, qv_err *err);

/* ---- writing -------------------------------------------------------- */

typedef struct qv_gguf_writer qv_gguf_writer;

/* A new writer holds one KV, general.alignment = 32 (u32). */
qv_status qv_gguf_writer_new(qv_gguf_writer **out, qv_err *err);
void qv_gguf_writer_free(qv_gguf_writer *w); /* safe on NULL */

/* Set a KV; values are copied. Setting a key again replaces its type and
 * value in place (the KV keeps its position). Keys: 1..65535 bytes.
 * general.alignment may only be set to u32 32 (what the writer lays out).
 * Errors: QV_ERR_INVALID (key, type, NULL), QV_ERR_NOMEM. */
qv_status qv_gguf_writer_set_val(qv_gguf_writer *w, const char *key,
                                 qv_gguf_type type, const void *value,
                                 qv_err *err); /* numeric or bool scalar */
qv_status qv_gguf_writer_set_u32(qv_gguf_writer *w, const char *key,
                                 uint32_t v, qv_err *err);
qv_status qv_gguf_writer_set_i32(qv_gguf_writer *w, const char *key,
                                 int32_t v, qv_err *err);
qv_status qv_gguf_writer_set_u64(qv_gguf_writer *w, const char *key,
                                 uint64_t v, qv_err *err);
qv_status qv_gguf_writer_set_f32(qv_gguf_writer *w, const char *key,
                                 float v, qv_err *err);
qv_status qv_gguf_writer_set_bool(qv_gguf_writer *w, const char *key,
                                  bool v, qv_err *err);
qv_status qv_gguf_writer_set_str(qv_gguf_writer *w, const char *key,
                                 const char *v, qv_err *err);
/* n native elements of elem_type (numeric or bool as uint8_t 0/1). */
qv_status qv_gguf_writer_set_arr(qv_gguf_writer *w, const char *key,
                                 qv_gguf_type elem_type, const void *data,
                                 size_t n, qv_err *err);
qv_status qv_gguf_writer_set_f32_arr(qv_gguf_writer *w, const char *key,
                                     const float *v, size_t n, qv_err *err);
qv_status qv_gguf_writer_set_i32_arr(qv_gguf_writer *w, const char *key,
                                     const int32_t *v, size_t n, qv_err *err);
qv_status qv_gguf_writer_set_str_arr(qv_gguf_writer *w, const char *key,
                                     const char *const *v, size_t n,
                                     qv_err *err);

/* Adds a tensor, written in the order added. The data is BORROWED: it
 * must stay alive and unchanged until the last write call. nbytes must be
 * exactly qv_ggml_nbytes(type, n_dims, ne). Names: 1..63 bytes, unique.
 * Errors: QV_ERR_INVALID (name, shape, nbytes, NULL), QV_ERR_UNSUPPORTED
 * (type), QV_ERR_NOMEM. */
qv_status qv_gguf_writer_add_tensor(qv_gguf_writer *w, const char *name,
                                    uint32_t n_dims, const int64_t *ne,
                                    uint32_t type, const void *data,
                                    size_t nbytes, qv_err *err);

/* The whole file in one malloc'd buffer (*out, *n; the caller frees it). */
qv_status qv_gguf_write_mem(const qv_gguf_writer *w, uint8_t **out,
                            size_t *n, qv_err *err);

/* Writes atomically: to "<path>.tmp", fsync, rename over path, fsync the
 * folder. On error path is untouched and the .tmp removed. Errors:
 * QV_ERR_IO naming the path and the system's reason (e.g. ENOSPC: no space
 * left on device), QV_ERR_NOMEM, QV_ERR_INVALID. */
qv_status qv_gguf_write_file(const qv_gguf_writer *w, const char *path,
                             qv_err *err);

#endif
