/* train/train.h — a training run: LoRA fine-tuning (or, with `full`,
 * quantisation-aware pretraining) of a model on a dataset, on one device.
 *
 * The loop: every optimizer step takes `accum` micro-batches of
 * batch x seq tokens, runs forward and backward on each (gradients summed,
 * the loss averaged over every target token of the step), clips the
 * gradient to a global L2 norm, and takes an AdamW step with a learning
 * rate that warms up linearly and then decays along a cosine to 10%.
 * Everything is deterministic given the seed and the device.
 *
 * A run writes into its output folder: checkpoint.gguf (parameters,
 * optimizer moments, step, data position, seed, loss history) every
 * `ckpt_every` steps and at the end; adapter.gguf (LoRA tensors in
 * llama.cpp's adapter layout); metrics.json (the summary). */
#ifndef QV_TRAIN_TRAIN_H
#define QV_TRAIN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "formats/dataset.h"
#include "train/net.h"

typedef struct qv_train_progress {
    const char *phase;   /* "eval before", "train", "eval after" */
    int64_t step, steps; /* optimizer steps done / to do */
    double loss;         /* mean loss of the last step */
    float lr;
    double tokens_per_s;
    double elapsed_s, eta_s;
    uint64_t peak_bytes;
} qv_train_progress;

typedef struct qv_train_opts {
    qv_weights weights;
    int32_t rank;         /* 16 */
    float alpha;          /* 32 */
    unsigned targets;     /* q,v by default (QV_TARGETS_DEFAULT) */
    float lr;             /* peak learning rate */
    int64_t steps;        /* optimizer steps */
    int64_t warmup;       /* warm-up steps */
    int32_t batch, seq, accum;
    float clip;           /* max global gradient norm (0: no clipping) */
    float weight_decay;
    uint64_t seed;
    int full;             /* pretraining (every weight, QAT) */
    int64_t ckpt_every;   /* 0: only at the end */
    int32_t eval_batches; /* batches of each split the before/after loss
                             is measured on */
    const char *out_dir;  /* NULL: nothing written */
    const char *resume_dir; /* NULL: start from step 0 */
    qv_tune_cache *cache;
    int checkpoint;       /* activation checkpointing (qv_net_opts) */
    /* called at least once a step; return non-zero to stop */
    int (*progress)(void *user, const qv_train_progress *p);
    void *progress_user;
    /* non-zero: stop at the next micro-batch (or evaluation batch), as
     * interrupted; the last whole step is kept in a checkpoint (out_dir)
     * unless it is 2 or more (abandon: the run is cancelled) */
    volatile sig_atomic_t *stop;
    /* stop (as if interrupted) after this many steps of this run, for
     * tests of --resume; 0: never */
    int64_t stop_after;
} qv_train_opts;

#define QV_TARGETS_DEFAULT ((1u << QV_LIN_Q) | (1u << QV_LIN_V))

/* Fills o with the defaults. */
void qv_train_opts_default(qv_train_opts *o);

typedef struct qv_train_result {
    double train_loss_before, train_loss_after;
    double val_loss_before, val_loss_after; /* NaN without a validation set */
    int64_t start_step, steps_done;         /* steps_done counts all steps */
    int64_t tokens;                         /* tokens processed this run */
    double seconds;                         /* training time this run */
    double tokens_per_s;
    int interrupted;
    qv_net_memory mem;
    uint64_t adapter_params;                /* trained parameters */
    double *losses;                         /* per step (owned: free()) */
    int64_t n_losses;
} qv_train_result;

/* Runs the training. m is updated in place when o->full (pretraining).
 * val may be NULL. res->losses must be freed by the caller. */
qv_status qv_train_run(qv_device *dev, qv_model *m, const qv_dataset *train,
                       const qv_dataset *val, const qv_train_opts *o,
                       qv_train_result *res, qv_err *err);

/* Mean loss of m (with the net's adapter) over up to max_batches of ds. */
qv_status qv_train_eval(qv_net *n, const qv_dataset *ds, int32_t batch,
                        int32_t seq, int32_t max_batches, double *loss,
                        qv_err *err);

/* ---- adapters ------------------------------------------------------------ */

/* Writes the LoRA tensors of n as a GGUF adapter (general.type "adapter",
 * adapter.type "lora", adapter.lora.alpha; tensors
 * blk.N.<module>.weight.lora_a / lora_b). */
qv_status qv_adapter_save(qv_net *n, float alpha, int32_t rank,
                          unsigned targets, const char *path, qv_err *err);

/* Reads an adapter's rank, alpha and targets (to build a net for it). */
qv_status qv_adapter_info(const char *path, int32_t *rank, float *alpha,
                          unsigned *targets, qv_err *err);
/* Loads the adapter's tensors into n (built with the same rank/targets). */
qv_status qv_adapter_load(qv_net *n, const char *path, qv_err *err);

#endif
