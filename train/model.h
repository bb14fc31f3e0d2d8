/* train/model.h — the BitNet b1.58 transformer on the host: its shape, its
 * weights, random initialisation, and (train/model_io.c) reading and writing
 * it as GGUF.
 *
 * The architecture is llama.cpp's `bitnet`: token embedding; per layer
 * RMSNorm -> attention (RoPE on adjacent pairs, grouped-query heads, causal
 * softmax) [-> sub-norm] -> output projection -> residual, RMSNorm -> gated
 * MLP (SiLU or squared ReLU) [-> sub-norm] -> down projection -> residual;
 * final RMSNorm and output head (tied to the embedding or not). Every linear
 * layer inside the blocks is a BitLinear: ternary weight with one scale,
 * input quantised to int8 per token. The variants are configuration. */
#ifndef QV_TRAIN_MODEL_H
#define QV_TRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* The BitLinear layers of a block, in GGUF tensor order. */
typedef enum {
    QV_LIN_Q,
    QV_LIN_K,
    QV_LIN_V,
    QV_LIN_O,
    QV_LIN_GATE,
    QV_LIN_UP,
    QV_LIN_DOWN,
    QV_LIN_COUNT
} qv_lin_id;

/* "q", "k", "v", "o", "gate", "up", "down" */
const char *qv_lin_name(qv_lin_id id);
/* Parses "q,v" or "all" into a bit mask (bit i = qv_lin_id i). */
qv_status qv_lin_parse_targets(const char *s, unsigned *mask, qv_err *err);
/* The mask as "q,k,v" into buf. */
void qv_lin_format_targets(unsigned mask, char *buf, size_t n);

enum { QV_ACT_SILU = 0, QV_ACT_RELU2 = 1 };

/* The architecture a file names (general.architecture) and so the runtime
 * whose semantics qvac reproduces (docs/formats.md, "Architectures"):
 *   QV_ARCH_BITNET       "bitnet": llama.cpp's graph (SiLU-gated FFN,
 *                        sub-norms, NEOX RoPE, head tied to token_embd)
 *   QV_ARCH_BITNET_B158  "bitnet-b1.58": BitNet b1.58 2B4T as bitnet.cpp
 *                        computes it (squared-ReLU FFN, sub-norms, tied)
 *   QV_ARCH_QVAC         "qvac-bitnet": qvac's own variants; every
 *                        semantic is an explicit key
 *   QV_ARCH_BITNET_LEGACY "bitnet" written by qvac <= 0.1.0 with qvac.*
 *                        keys: read as those keys say (adjacent RoPE) */
/* bitnet.cpp's name for the 2B4T architecture, and its RoPE pairing. */
#define QV_ARCH_B158_NAME "bitnet-b1.58"
#define QV_ARCH_B158_NEOX 1

typedef enum {
    QV_ARCH_BITNET = 0,
    QV_ARCH_BITNET_B158,
    QV_ARCH_QVAC,
    QV_ARCH_BITNET_LEGACY
} qv_arch;
const char *qv_arch_name(qv_arch a);
/* The general.architecture a file of this architecture carries
 * ("bitnet", "bitnet-b1.58", "qvac-bitnet"; qvac 0.1's files: "bitnet"). */
const char *qv_arch_file_name(qv_arch a);

typedef struct qv_model_config {
    int32_t vocab;      /* tokens */
    int32_t dim;        /* residual width */
    int32_t n_layers;
    int32_t n_heads;    /* query heads */
    int32_t n_kv_heads; /* key/value heads (divides n_heads) */
    int32_t ffn_dim;    /* MLP hidden width */
    int32_t ctx;        /* longest sequence the model was trained for */
    float rope_theta;
    float norm_eps;
    int act;            /* QV_ACT_SILU or QV_ACT_RELU2 */
    int sub_norm;       /* BitNet sub-norms before o and down */
    int tied;           /* output head = token embedding */
    int rope_neox;      /* RoPE pairs (i, i+hd/2) (llama.cpp NEOX) or, when
                           0, adjacent pairs (2i, 2i+1) (llama.cpp NORM) */
    float rope_freq_scale; /* positions multiplied by this (linear RoPE
                              scaling: 1 / factor); 0 is read as 1 */
    int arch;           /* qv_arch: what qv_model_save writes */
} qv_model_config;

/* The architecture whose reference runtime computes exactly what c means
 * (what qv_model_save writes): llama.cpp's `bitnet` (SiLU, sub-norms, NEOX,
 * tied), bitnet.cpp's 2B4T (the same with squared ReLU), else qvac's own
 * `qvac-bitnet` with every semantic as a key. */
qv_arch qv_model_config_arch(const qv_model_config *c);

/* Checks a configuration: positive sizes, heads divide dim, head dim even
 * and at most 128, kv heads divide heads. */
qv_status qv_model_config_check(const qv_model_config *c, qv_err *err);

static inline int32_t qv_model_head_dim(const qv_model_config *c)
{
    return c->dim / c->n_heads;
}

/* Output rows N and input columns K of linear `id`. */
void qv_model_lin_shape(const qv_model_config *c, qv_lin_id id, int32_t *N,
                        int32_t *K);

/* A BitLinear weight on the host: ternary codes, 2 bits a weight in
 * qvac's packed layout (kernels/ternary.h: qv_ternary_bytes(N, K) bytes,
 * what the device holds too), and one scale; `w` is the f32 shadow
 * (latent) weight when the model is being pretrained, else NULL. */
typedef struct qv_linear {
    int32_t N, K;
    float scale;     /* every per-tensor scale of the file folded in */
    float lora_mul;  /* the LoRA term's multiplier: 1, or for gate and up
                        the file's "<name>.scale" tensor, which llama.cpp's
                        build_ffn applies after the adapter is added (q, k,
                        v, o and down apply theirs before: folded in scale
                        only). 0 is read as 1. */
    uint32_t *packed; /* (N, K) codes -1, 0, 1, packed */
    uint32_t file_type; /* the ggml type the file stored it in (QV_GGML_*;
                           0, F32, for a model made in memory): what
                           llama.cpp's matmul does to its input depends on
                           it (--act-quant llamacpp) */
    float ext_scale;    /* the file's "<name>.scale" tensor, already folded
                           into scale (0: none); llama.cpp multiplies the
                           product by it, so --act-quant llamacpp does too */
    int requantised;    /* a float weight that was not ternary-valued,
                           quantised at load (absmean) */
    float *w;   /* (N, K) or NULL */
} qv_linear;

typedef struct qv_layer {
    float *attn_norm;     /* (dim) */
    float *ffn_norm;      /* (dim) */
    float *attn_sub_norm; /* (dim) when sub_norm, else NULL */
    float *ffn_sub_norm;  /* (ffn_dim) when sub_norm, else NULL */
    qv_linear lin[QV_LIN_COUNT];
} qv_layer;

typedef struct qv_model {
    qv_model_config cfg;
    float *tok_emb;  /* (vocab, dim) */
    float *out_norm; /* (dim) */
    float *head;     /* (vocab, dim), NULL when tied */
    uint32_t head_file_type; /* ggml type of output.weight, or of
                                token_embd.weight when tied (0: F32) */
    qv_layer *layers;
    /* What qv_model_load did that a user should know (weights quantised
     * at load, a legacy file's semantics), one line each; "" when none.
     * Callers print it. */
    char notes[1024];
} qv_model;

/* Allocates a model of shape cfg with weights drawn from seed: embedding
 * and shadow weights N(0, 0.02^2) (so `w` is set), an untied head
 * N(0, 1/dim) (unit-scale logits), norms 1, ternary codes
 * and scales by absmean quantisation of the shadow weights. */
qv_status qv_model_init_random(const qv_model_config *cfg, uint64_t seed,
                               qv_model **out, qv_err *err);
/* As qv_model_init_random without shadow weights: ternary codes drawn
 * directly (uniform over -1, 0, 1) with scale 0.02, and the embedding and
 * head rounded to half as a released checkpoint stores them. For
 * benchmarks of models too large to hold in f32 on the host. */
qv_status qv_model_init_synthetic(const qv_model_config *cfg, uint64_t seed,
                                  qv_model **out, qv_err *err);
void qv_model_free(qv_model **m);

/* Re-derives every layer's codes and scale from its shadow weights
 * (absmean; the scale rounded to f16 so that a GGUF round trip keeps it). */
qv_status qv_model_requantize(qv_model *m, qv_err *err);

/* Drops the shadow weights (after pretraining, before saving). */
void qv_model_drop_shadow(qv_model *m);

/* Parameter counts: ternary weights, and everything else (embeddings,
 * norms, head). */
void qv_model_count(const qv_model_config *c, uint64_t *ternary,
                    uint64_t *other);

/* ---- GGUF (train/model_io.c) --------------------------------------------- */

/* Writes m as GGUF v3 under qv_model_config_arch(&m->cfg) with that
 * architecture's keys: BitLinear weights as TQ2_0 where K is a multiple of
 * 256, else as I8 codes plus an F32 scale tensor "<name>.scale";
 * embeddings, head and norms as F32. No tokenizer.ggml.* keys: the byte
 * vocabulary is marked qvac.tokenizer = "bytes". */
qv_status qv_model_save(const qv_model *m, const char *path, qv_err *err);
/* Reads a model of any architecture and weight type of docs/formats.md
 * ("Architectures"), computed as its reference runtime does; refuses
 * (QV_ERR_UNSUPPORTED / QV_ERR_CORRUPT, naming the key or tensor) a file
 * whose meaning qvac cannot decide. The file is mapped, not read: each
 * tensor is decoded once into the model's host arrays. */
qv_status qv_model_load(const char *path, qv_model **out, qv_err *err);
qv_status qv_model_load_mem(const void *bytes, size_t n, const char *name,
                            qv_model **out, qv_err *err);

/* Everything qv_model_load decides and checks (architecture, keys, every
 * tensor's presence, type and shape) without decoding any weight: cfg and
 * the notes qv_model_load would give (NUL-terminated in notes[notes_n]).
 * An error says why qvac cannot fine-tune the file. */
typedef struct qv_gguf qv_gguf;
qv_status qv_model_inspect(const qv_gguf *g, const char *what,
                           qv_model_config *cfg, char *notes, size_t notes_n,
                           qv_err *err);

#endif
