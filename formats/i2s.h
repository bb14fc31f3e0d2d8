/* formats/i2s.h — conversion between bitnet.cpp's I2_S tensors (GGML type
 * 36 in microsoft/BitNet's llama.cpp fork) and qvac's packed ternary
 * layout (kernels/ternary.h).
 *
 * The layout follows quantize_i2_s in microsoft/BitNet src/ggml-bitnet-mad.cpp
 * (commit 488dc1e876b79ad60745a3a7338d34600d7be00d, the code that wrote
 * the published bitnet-b1.58-2B-4T ggml-model-i2_s.gguf; unchanged in the
 * x86 ACT_PARALLEL build of later commits) and ggml_nbytes in the fork's
 * ggml/src/ggml.c; docs/formats.md gives the byte-exact mapping.
 *
 * An (N, K) tensor (ggml ne = {K, N}) is N*K/4 bytes of 2-bit codes
 * followed by a 32-byte tail: the f32 tensor scale at the first 4 bytes,
 * then 28 bytes that quantize_i2_s never writes (their content is
 * unspecified and ignored here; the encoder writes zeros, as the fork's
 * Python converter does). The codes run over the row-major flattened
 * tensor in 128-weight blocks of 32 bytes: weight j of a block (j = 0..127)
 * sits in byte j % 32 of the block at bits 7-2*(j/32) .. 6-2*(j/32), as the
 * code w + 1 (0 -> -1, 1 -> 0, 2 -> +1; 3 is invalid), the same code
 * qvac uses. The real weight is scale * w. K must be a multiple of 128:
 * the fork's matmul reads whole 128-weight blocks per row.
 *
 * Builds of bitnet.cpp from November 2025 on also have other I2_S byte
 * layouts (ARM: 64-weight blocks; x86 without ACT_PARALLEL: four rows
 * interleaved per byte) with the same size and type number; those files
 * cannot be told apart from the bytes and are not what this reads.
 *
 * The decoder is meant for untrusted bytes: sizes are computed with
 * overflow checks, nbytes must be exactly the size the shape needs, every
 * code is validated. On error the output buffers may be partly written. */
#ifndef QV_FORMATS_I2S_H
#define QV_FORMATS_I2S_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define QV_I2S_GGML_TYPE 36  /* GGML_TYPE_I2_S in the bitnet.cpp fork */
#define QV_I2S_BLOCK 128     /* weights per 32-byte code block */
#define QV_I2S_TAIL_BYTES 32 /* f32 scale + 28 unspecified bytes */

/* Exact GGUF data size of an (N rows, K columns) I2_S tensor:
 * N*K/4 + 32. Errors: QV_ERR_INVALID (N < 1, K < 1, K not a multiple of
 * 128, or a size that does not fit a size_t). */
qv_status qv_i2s_bytes(int32_t N, int32_t K, size_t *nbytes, qv_err *err);

/* data: nbytes of I2_S (must equal qv_i2s_bytes(N, K)).
 * packed: room for qv_ternary_bytes(N, K) bytes; receives qvac's layout.
 * scale: receives the tensor scale (the multiplier: weight = scale * code).
 * Errors: QV_ERR_INVALID (shape, NULL pointer), QV_ERR_CORRUPT (nbytes
 * mismatch, code 3, scale NaN / infinite / negative, or 0 with non-zero
 * weights), QV_ERR_UNSUPPORTED (scale 0 on an all-zero tensor, which
 * quantize_i2_s writes for one: no scale to recover). */
qv_status qv_i2s_to_ternary(const void *data, size_t nbytes, int32_t N,
                            int32_t K, uint32_t *packed, float *scale,
                            qv_err *err);

/* packed: qvac layout (N, K), K a multiple of 128. scale must be finite
 * and > 0; it is stored as is (f32). out_bytes must equal
 * qv_i2s_bytes(N, K); the 28 tail bytes after the scale are zeroed.
 * Errors: QV_ERR_INVALID (shape, scale, out_bytes, NULL), QV_ERR_CORRUPT
 * (code 3 in packed). */
qv_status qv_ternary_to_i2s(const uint32_t *packed, int32_t N, int32_t K,
                            float scale, void *out, size_t out_bytes,
                            qv_err *err);

#endif
