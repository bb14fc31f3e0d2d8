/* train/mfu.h — how fast a training step runs against how fast its kernels
 * can run: the model FLOPs of a step, the measured throughput of the base
 * weights' matmul at the model's shapes, and tuning every kernel a step
 * launches before the first step.
 *
 * Model FLOP utilisation (MFU) = step FLOPs / step seconds / peak, where
 * peak is qv_gemm_peak's FLOP-weighted throughput of the matmul kernel the
 * net uses for the BitLinear weights (ternary: quantize_act +
 * ternary_matmul, both timed; f16: f16_matmul), each shape in the
 * configuration the tune cache gives. A step cannot beat that kernel on
 * average, so MFU near 1 means the rest of the step (norms, attention,
 * LoRA, launches, host work) costs little.
 *
 * Model FLOPs of forward + backward over T tokens (qv_step_flops), counting
 * a multiply-add as 2, per layer and BitLinear (N outputs, K inputs):
 *   frozen weight:  forward 2·N·K·T + backward to the input 2·N·K·T
 *                   (+ weight gradient 2·N·K·T when `full`)
 *   LoRA (targets, rank R, not full): forward 2·T·R·(N+K) (H = X·Aᵀ,
 *                   Y += H·Bᵀ), backward 4·T·R·(N+K) (dH, dB, dA, dX)
 * per layer, attention (Hq query heads of hd, D = Hq·hd) over the causal
 * triangle the kernels compute, P = T·(seq+1)/2 (query, key) pairs with
 * key ≤ query in each of T/seq sequences:
 *   forward 4·D·P (Q·Kᵀ and P·V), backward 8·D·P (dP = dO·Vᵀ, dV = Pᵀ·dO,
 *   dQ = dS·K, dK = dSᵀ·Q). The backward kernel recomputes scores (it
 *   keeps no P); recomputation is hardware FLOPs, not model FLOPs, and is
 *   not counted.
 * output head (V × D, tied or not): forward 2·V·D·T, backward to the input
 *   2·V·D·T (+ weight gradient 2·V·D·T when `full`).
 * Norms, RoPE, softmax, SiLU, cross-entropy, embedding and the optimizer
 * are O(T·D) or O(params) and not counted. */
#ifndef QV_TRAIN_MFU_H
#define QV_TRAIN_MFU_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "autotune/cache.h"
#include "autotune/tune.h"
#include "kernels/backend.h"
#include "train/model.h"
#include "train/net.h"

/* Model FLOPs of forward + backward over `tokens` tokens in sequences of
 * `seq` (see above). targets: LoRA target mask (bit qv_lin_id); rank 0 or
 * full: no LoRA term. */
double qv_step_flops(const qv_model_config *c, unsigned targets, int32_t rank,
                     int64_t tokens, int32_t seq, int full);

/* FLOP-weighted throughput (total FLOPs / total time, in GFLOP/s) of the
 * base weights' matmul at every BitLinear shape of c (M = tokens, N, K of
 * qv_model_lin_shape, each weighted by how often a layer has it), each in
 * the configuration qv_tune_lookup gives (tuned when cache holds it, else
 * the default), timed by qv_time_config on random inputs. Ternary counts
 * quantize_act's time with ternary_matmul's (as ggml's MUL_MAT counts
 * quantising its input) and 2·M·N·K FLOPs. cache may be NULL. */
qv_status qv_gemm_peak(qv_device *dev, qv_tune_cache *cache,
                       const qv_model_config *c, qv_weights w, int32_t tokens,
                       double *gflops, qv_err *err);

/* MFU of a run: step_flops over `seconds` against gflops (0 when any is
 * not positive). */
double qv_mfu(double flops, double seconds, double gflops);

/* ---- the kernels a training step launches -------------------------------- */

/* One matmul-like launch of a training step: kernel and qv_shape as
 * train/net.c passes them (so qv_tune_lookup finds the same bucket). */
typedef struct qv_train_launch {
    const char *kernel;
    qv_shape s;
} qv_train_launch;

typedef struct qv_train_shape_opts {
    qv_weights weights;
    int32_t batch, seq;   /* T = batch * seq tokens a micro-batch */
    int32_t rank;         /* LoRA rank (0: none) */
    unsigned targets;     /* LoRA targets */
    int full;             /* pretraining: shadow-weight and head gradients */
    int head_f16;         /* the embedding / head is held in IEEE half
                             (qv_model_head_f16) */
    uint64_t max_alloc;   /* the device's largest buffer (0: no limit): a
                             larger head is split in blocks of rows, as the
                             net does */
} qv_train_shape_opts;

/* 1 when every value of m's embedding (and untied head) is exactly a half
 * (so a LoRA net holds them in f16 and the head runs f16_matmul). */
int qv_model_head_f16(const qv_model *m);

/* The distinct (kernel, shape) launches of one training step of a model
 * of shape c, in the order the step first launches them; at most cap
 * written, the count returned (cap 0 with out NULL counts). Matches the
 * LAUNCH(..., SH(...)) calls of train/net.c: quantize_act (T,0,K,0),
 * ternary_matmul / ternary_matmul_t or f16_matmul / f16_matmul_t
 * (T,N,K,0), lora_fwd / lora_bwd (T,N,K,R) on targets, the head's
 * f16_matmul / f16_matmul_t (T,V,D,0) or f32_matmul (T,V,D,0) and
 * (T,D,V,0), and with full f32_matmul (N,K,T,0) and (V,D,T,0). */
size_t qv_train_launches(const qv_model_config *c, const qv_train_shape_opts *o,
                         qv_train_launch *out, size_t cap);

typedef struct qv_train_tune_opts {
    size_t budget_evals;  /* configurations measured per (kernel, shape);
                             0 with budget_s 0: 8 */
    double budget_s;      /* or seconds per (kernel, shape) */
    const qv_timing_opts *timing; /* NULL: qv_timing_default */
    int (*progress)(void *user, const qv_tune_progress *p); /* may be NULL */
    void *progress_user;
    volatile sig_atomic_t *stop;
} qv_train_tune_opts;

typedef struct qv_train_tune_result {
    size_t launches;  /* distinct (kernel, tune bucket) pairs of the step */
    size_t tuned;     /* of which tuned now */
    size_t cached;    /* of which the cache already held */
    size_t failed;    /* of which every candidate failed (defaults used) */
    double seconds;   /* time spent */
    int interrupted;
    char note[512];   /* the first failure, "" when none */
} qv_train_tune_result;

/* Tunes every (kernel, shape) a training step of m with the options s
 * launches on dev (qv_train_launches, one per tune bucket), verifying each
 * candidate on ref, into cache (which must be writable). Entries already
 * cached are skipped. A kernel whose every candidate fails is counted in
 * failed (the step runs its default) and tuning goes on; cache and device
 * errors stop it and are returned. */
qv_status qv_train_tune(qv_tune_cache *cache, qv_device *dev, qv_device *ref,
                        const qv_model *m, const qv_train_shape_opts *s,
                        const qv_train_tune_opts *o, qv_train_tune_result *res,
                        qv_err *err);

#endif
