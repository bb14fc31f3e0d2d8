/* formats/safetensors.h — a strict reader and a small writer of Hugging
 * Face safetensors files (huggingface/safetensors, safetensors/src/
 * tensor.rs is the reference). docs/formats.md ("safetensors files") gives
 * the layout and every rule. qv_st_ is short for safetensors.
 *
 *   u64 N (little-endian) | N bytes of JSON header | data
 *
 * The header is an object: each key a tensor name whose value is
 * {"dtype": "F32", "shape": [r, c], "data_offsets": [begin, end]} (offsets
 * into the data, which follows the header), plus an optional
 * "__metadata__" object of string values.
 *
 * Reading: qv_st_parse validates the whole file before returning (header
 * size, JSON, every entry, offsets covering the data exactly, no overlap,
 * no duplicate name), so a hostile file gives QV_ERR_CORRUPT (or
 * QV_ERR_UNSUPPORTED for a dtype qvac does not read) with a message naming
 * the file, the tensor and the field. qvac reads the float dtypes F32, F16
 * and BF16 only; any other dtype refuses the file. Tensor data is not
 * copied: it points into the parsed bytes (not necessarily aligned: read
 * it with qv_st_read_f32).
 *
 * Writing: F32 tensors (borrowed) and string metadata (copied), laid out
 * as the reference writer does: "__metadata__" first, then the tensors in
 * name order, each {"dtype","shape","data_offsets"}, compact JSON padded
 * with spaces to a multiple of 8, the data consecutive in the same order.
 * Files are written atomically (common/file.h). Tensor bytes are the
 * host's floats: qvac assumes a little-endian host, as formats/gguf.c. */
#ifndef QV_FORMATS_SAFETENSORS_H
#define QV_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* The reference implementation's limit on the header (100 MB). */
#define QV_ST_MAX_HEADER 100000000u
/* Most dimensions a tensor may have here (the format sets none). */
#define QV_ST_MAX_DIMS 8

typedef enum qv_st_dtype {
    QV_ST_F32 = 0, /* 4 bytes, IEEE binary32 */
    QV_ST_F16 = 1, /* 2 bytes, IEEE binary16 */
    QV_ST_BF16 = 2 /* 2 bytes, the high half of a binary32 */
} qv_st_dtype;

/* "F32", "F16", "BF16"; NULL for other values. */
const char *qv_st_dtype_name(qv_st_dtype d);

/* ---- reading -------------------------------------------------------- */

typedef struct qv_st qv_st;

typedef struct qv_st_tensor {
    const char *name;      /* NUL-terminated UTF-8, non-empty */
    qv_st_dtype dtype;
    uint32_t n_dims;       /* 0..QV_ST_MAX_DIMS (0: a scalar) */
    int64_t shape[QV_ST_MAX_DIMS]; /* row-major: shape[n_dims-1] contiguous */
    uint64_t n_elems;      /* product of shape (1 for a scalar) */
    uint64_t begin, end;   /* data_offsets, from the start of the data */
    const void *data;      /* into the parsed bytes; maybe unaligned */
    size_t nbytes;         /* end - begin = n_elems * element size */
} qv_st_tensor;

/* Parses and validates n bytes; `name` (a path, "adapter_model.safetensors")
 * prefixes every message. The bytes are borrowed: they must outlive the
 * qv_st. Errors: QV_ERR_CORRUPT (malformed, naming the tensor and field),
 * QV_ERR_UNSUPPORTED (a dtype other than F32/F16/BF16, naming the tensor
 * and the dtype), QV_ERR_NOMEM, QV_ERR_INVALID (NULL arguments). *out is
 * NULL on error. */
qv_status qv_st_parse(const void *bytes, size_t n, const char *name,
                      qv_st **out, qv_err *err);
/* Maps the file read-only and parses it; the qv_st owns the mapping.
 * Errors as qv_st_parse (with the path), plus QV_ERR_NOT_FOUND and
 * QV_ERR_IO. */
qv_status qv_st_open(const char *path, qv_st **out, qv_err *err);
void qv_st_free(qv_st *st); /* safe on NULL */

/* Tensors in data order (by begin offset); NULL when i >= count / the
 * name is absent. */
size_t qv_st_count(const qv_st *st);
const qv_st_tensor *qv_st_at(const qv_st *st, size_t i);
const qv_st_tensor *qv_st_find(const qv_st *st, const char *name);

/* "__metadata__" entries in file order; *key and *value are owned by st.
 * qv_st_meta_at returns 0 when i >= count; qv_st_meta_get NULL when the key
 * is absent. */
size_t qv_st_meta_count(const qv_st *st);
int qv_st_meta_at(const qv_st *st, size_t i, const char **key,
                  const char **value);
const char *qv_st_meta_get(const qv_st *st, const char *key);

/* The tensor's n_elems values as f32 into out[n] (n must equal n_elems);
 * F16 and BF16 are converted exactly (every such value is a float). */
qv_status qv_st_read_f32(const qv_st_tensor *t, float *out, size_t n,
                         qv_err *err);

/* ---- writing -------------------------------------------------------- */

typedef struct qv_st_writer qv_st_writer;

qv_status qv_st_writer_new(qv_st_writer **out, qv_err *err);
void qv_st_writer_free(qv_st_writer *w); /* safe on NULL */

/* Sets a "__metadata__" entry (copied; set again: replaced in place).
 * Keys and values: UTF-8 without NUL. */
qv_status qv_st_writer_set_meta(qv_st_writer *w, const char *key,
                                const char *value, qv_err *err);

/* Adds an F32 tensor of shape[0..n_dims) (row-major, n_dims <=
 * QV_ST_MAX_DIMS, each dim >= 0): data holds the product of the shape
 * floats and is BORROWED until the last write call. Names: non-empty
 * UTF-8, not "__metadata__", unique. Errors: QV_ERR_INVALID, QV_ERR_NOMEM. */
qv_status qv_st_writer_add_f32(qv_st_writer *w, const char *name,
                               uint32_t n_dims, const int64_t *shape,
                               const float *data, qv_err *err);

/* The whole file in one malloc'd buffer (*out, *n; the caller frees). */
qv_status qv_st_write_mem(const qv_st_writer *w, uint8_t **out, size_t *n,
                          qv_err *err);
/* Writes path atomically: "<path>.tmp", fsync, rename, fsync the folder. */
qv_status qv_st_write_file(const qv_st_writer *w, const char *path,
                           qv_err *err);

#endif
