/* formats/tq.h — conversion between llama.cpp/ggml's ternary block types
 * TQ2_0 and TQ1_0 and qvac's packed ternary layout (kernels/ternary.h).
 *
 * The block layouts follow ggml/src/ggml-common.h (block_tq2_0,
 * block_tq1_0, QK_K = 256) and the reference functions
 * quantize_row_tq{1,2}_0_ref / dequantize_row_tq{1,2}_0 in
 * ggml/src/ggml-quants.c; docs/formats.md gives the byte-exact mapping.
 *
 * A tensor W (N, K) is N rows of K/256 blocks each, rows back to back, no
 * padding between rows. K must be a multiple of 256. Each block carries
 * an f16 scale d; qvac keeps one f32 scale per tensor, so every block's d
 * must be bit-identical (blocks whose 256 weights are all zero may instead
 * have d = 0, which is what llama.cpp's absmax quantiser writes for them).
 *
 * The decoders are meant for untrusted bytes: every size is computed with
 * overflow checks, nbytes must be exactly the size the shape needs, every
 * code is validated. On error the output buffers may be partly written. */
#ifndef QV_FORMATS_TQ_H
#define QV_FORMATS_TQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define QV_TQ_QK_K 256           /* weights per block (ggml QK_K) */
#define QV_TQ2_0_BLOCK_BYTES 66  /* qs[64], d (f16) */
#define QV_TQ1_0_BLOCK_BYTES 54  /* qs[48], qh[4], d (f16) */

/* Exact byte size of an (N, K) tensor in each format; 0 when N < 1,
 * K < 1, K is not a multiple of 256, or the size does not fit a size_t. */
size_t qv_tq2_0_bytes(int32_t N, int32_t K);
size_t qv_tq1_0_bytes(int32_t N, int32_t K);

/* data: nbytes of TQ2_0 blocks (must equal qv_tq2_0_bytes(N, K)).
 * packed: room for qv_ternary_bytes(N, K) bytes; receives qvac's layout.
 * scale: receives the tensor scale, the f32 value of the common f16 d.
 * Errors: QV_ERR_INVALID (shape, NULL pointer, size overflow),
 * QV_ERR_CORRUPT (nbytes mismatch, code 3, d not finite / negative / zero
 * on a block with non-zero weights), QV_ERR_UNSUPPORTED (blocks with
 * different d, or every block zero so no scale exists). */
qv_status qv_tq2_0_to_ternary(const uint8_t *data, size_t nbytes, int32_t N,
                              int32_t K, uint32_t *packed, float *scale,
                              qv_err *err);

/* packed: qvac layout (N, K), K a multiple of 256. scale must be finite,
 * > 0 and stay finite and > 0 when rounded to f16; every block gets
 * d = f16(scale). out_bytes must equal qv_tq2_0_bytes(N, K).
 * Errors: QV_ERR_INVALID (shape, scale, out_bytes), QV_ERR_CORRUPT
 * (code 3 in packed). */
qv_status qv_ternary_to_tq2_0(const uint32_t *packed, int32_t N, int32_t K,
                              float scale, uint8_t *out, size_t out_bytes,
                              qv_err *err);

/* As the TQ2_0 pair. TQ1_0 bytes must be canonical, i.e. exactly what
 * llama.cpp's quantize_row_tq1_0_ref (and gguf-py) write: a qs byte must
 * equal ceil(v * 256 / 243) for its 5-trit value v, a qh byte the same
 * for a 5-trit value whose last trit is 0; anything else is
 * QV_ERR_CORRUPT. */
qv_status qv_tq1_0_to_ternary(const uint8_t *data, size_t nbytes, int32_t N,
                              int32_t K, uint32_t *packed, float *scale,
                              qv_err *err);
qv_status qv_ternary_to_tq1_0(const uint32_t *packed, int32_t N, int32_t K,
                              float scale, uint8_t *out, size_t out_bytes,
                              qv_err *err);

#endif
