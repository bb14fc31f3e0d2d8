/* train/net.h — the model on a device: weights, LoRA adapters, optimizer
 * state, activations and scratch, all in device buffers, and the forward
 * and backward passes as sequences of kernel launches. The host only feeds
 * token ids and reads back per-token losses (and, for generation, one row
 * of logits).
 *
 * Two weight modes over one code path: QV_WEIGHTS_TERNARY keeps each
 * BitLinear as packed 2-bit codes (quantize_act + ternary_matmul forward,
 * ternary_matmul_t backward with the straight-through estimator);
 * QV_WEIGHTS_F16 keeps the same weights dequantised to IEEE half
 * (f16_matmul / f16_matmul_t): the 16-bit baseline.
 *
 * What is trained: the LoRA adapters of the target modules (the base is
 * frozen), or with `full` every weight (pretraining, quantisation-aware:
 * f32 shadow weights, requantised to ternary on the device before each
 * step, gradients through the straight-through estimator). */
#ifndef QV_TRAIN_NET_H
#define QV_TRAIN_NET_H

#include <stdint.h>

#include "autotune/cache.h"
#include "kernels/backend.h"
#include "train/model.h"

typedef enum { QV_WEIGHTS_TERNARY = 0, QV_WEIGHTS_F16 = 1 } qv_weights;

/* How the forward pass rounds a BitLinear's input (forward only: eval and
 * generate). QV_ACTQ_BITNET: BitNet b1.58's per-token absmax int8, what
 * qvac trains with. QV_ACTQ_LLAMACPP: what llama.cpp's CPU backend does
 * (its `bitnet` graph quantises no activations itself; its matmuls do):
 * TQ2_0 / TQ1_0 weights see their input as q8_K blocks of 256, F16 weights
 * see it rounded to half, BF16 to bfloat16, F32 weights unchanged, and so
 * does the head by its own type; the LoRA term sees the input unrounded. */
typedef enum { QV_ACTQ_BITNET = 0, QV_ACTQ_LLAMACPP = 1 } qv_act_quant;
const char *qv_act_quant_name(qv_act_quant a);
qv_status qv_act_quant_parse(const char *s, qv_act_quant *out, qv_err *err);

const char *qv_weights_name(qv_weights w);

typedef struct qv_net_opts {
    qv_weights weights;
    int32_t batch;       /* sequences per micro-batch */
    int32_t seq;         /* tokens per sequence */
    int32_t rank;        /* LoRA rank (0: no adapter) */
    float alpha;         /* LoRA alpha; the adapter is scaled by alpha/rank */
    unsigned targets;    /* LoRA target modules (bit qv_lin_id) */
    int full;            /* train every weight (pretraining; ternary only) */
    uint64_t seed;       /* adapter initialisation */
    float lora_b_std;    /* initial std of B (0: zeros, the LoRA default) */
    qv_tune_cache *cache;/* tuned configurations (NULL: defaults) */
    /* Ternary only, for gradient checks: the forward computes the
     * straight-through estimator's surrogate (activations not quantised,
     * weights q * scale in f32 through f32_matmul) while the backward is
     * unchanged (ternary_matmul_t), so that finite differences of the loss
     * are well defined and must match the backward pass. */
    int ste_surrogate;
    /* A frozen embedding and head larger than the device's largest
     * allocation are held in blocks of rows that each fit (the logits are
     * gathered block by block); > 0 forces blocks of this many rows, for
     * tests. */
    int32_t vocab_block_rows;
    /* Forward only (no backward, not with full): QV_ACTQ_LLAMACPP holds
     * the BitLinear weights as weights in 16 (or, for F32 files, 32) bits
     * and rounds their inputs as llama.cpp does. */
    qv_act_quant act_quant;
    /* Activation checkpointing (--checkpoint-activations): keep only each
     * layer's input (the residual stream) and one layer's intermediates,
     * shared by every layer; the backward recomputes a layer's forward
     * before its backward. Less activation memory for one more forward
     * of every layer but the last. */
    int checkpoint;
    /* The logits stay readable (qv_net_logits) after a run with targets;
     * otherwise their gradient overwrites them in place, which saves a
     * tokens x vocabulary buffer. */
    int keep_logits;
} qv_net_opts;

typedef struct qv_net qv_net;

typedef struct qv_adamw_hp {
    float lr, beta1, beta2, eps, weight_decay;
} qv_adamw_hp;

/* Uploads m to dev and allocates everything a micro-batch of
 * batch x seq tokens needs. */
qv_status qv_net_new(qv_device *dev, const qv_model *m, const qv_net_opts *o,
                     qv_net **out, qv_err *err);
void qv_net_free(qv_net **net);

/* One micro-batch of batch*seq tokens (row-major (batch, seq)). With
 * targets (-1 = no loss at that position): per-token cross-entropy, summed
 * into *loss_sum over *count targets. With backward: adds the gradient of
 * gscale * (sum of losses) to the gradient buffers. targets may be NULL
 * for a forward pass only (generation). */
qv_status qv_net_run(qv_net *n, const int32_t *tokens, const int32_t *targets,
                     int backward, float gscale, double *loss_sum,
                     int64_t *count, qv_err *err);

/* The configuration of the model the net was made from. */
const qv_model_config *qv_net_model_config(const qv_net *n);

/* Reads logits row `row` (0..batch*seq-1) of the last forward pass. */
qv_status qv_net_logits(qv_net *n, int32_t row, float *out, qv_err *err);

qv_status qv_net_zero_grads(qv_net *n, qv_err *err);
/* Global L2 norm of every gradient. */
qv_status qv_net_grad_norm(qv_net *n, double *norm, qv_err *err);
/* One AdamW step (step counts from 1) over every trained parameter, with
 * the gradients multiplied by gscale first (clipping). Norms and
 * embeddings get no weight decay. */
qv_status qv_net_adamw(qv_net *n, const qv_adamw_hp *hp, int64_t step,
                       float gscale, qv_err *err);
/* Pretraining: re-derives the ternary weights from the shadow weights
 * (absmean per tensor) on the device. Called before each forward. */
qv_status qv_net_requantize(qv_net *n, qv_err *err);

/* The trained parameters, for checkpoints, adapters and gradient checks. */
int qv_net_n_params(const qv_net *n);
typedef struct qv_param_info {
    char name[64];   /* GGUF-style, e.g. "blk.0.attn_q.weight.lora_a" */
    int32_t rows, cols;
    int layer;       /* -1 for non-layer parameters */
    int lin;         /* qv_lin_id for adapters and shadow weights, else -1 */
} qv_param_info;
void qv_net_param_info(const qv_net *n, int i, qv_param_info *out);
enum { QV_PARAM_VALUE, QV_PARAM_GRAD, QV_PARAM_M1, QV_PARAM_M2 };
qv_status qv_net_param_read(qv_net *n, int i, int which, float *host,
                            qv_err *err);
qv_status qv_net_param_write(qv_net *n, int i, int which, const float *host,
                             qv_err *err);

/* Pretraining: copies shadow weights, embeddings and norms back into m. */
qv_status qv_net_export(qv_net *n, qv_model *m, qv_err *err);

/* Bytes held per category now, and the device's peak with its breakdown. */
typedef struct qv_net_memory {
    uint64_t peak;
    uint64_t by_tag[QV_MEM_NTAGS]; /* at the peak */
} qv_net_memory;
void qv_net_memory_get(const qv_net *n, qv_net_memory *out);

#endif
