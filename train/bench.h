/* train/bench.h — the standard comparison of one device (issue 13): the
 * same short LoRA fine-tune run twice, with the base weights ternary (the
 * ternary kernels) and with the same weights in 16 bits (the f16 kernels),
 * and what each costs: steady-state tokens/s, peak device memory by
 * category, model FLOP utilisation, and how much tuning gained (the tuned
 * base matmul's GFLOP/s ÷ the default configuration's, at the model's
 * shapes). `qvac bench` prints it; a worker runs it on each device and
 * uploads it; the scheduler stores it and `qvac report` publishes it.
 *
 * Models: "builtin" (the embedded qvac-tiny), or "700m", "1.3b", "3b": the
 * shapes of 1bitLLM's bitnet_b1_58-large / -xl / -3B with synthetic
 * weights (the embedding in half, as a released checkpoint holds it), as
 * benchmarks/bench_train.c uses. The data is pseudo-random printable text,
 * the same bytes every run, so two devices run the same step. */
#ifndef QV_TRAIN_BENCH_H
#define QV_TRAIN_BENCH_H

#include <jansson.h>
#include <signal.h>
#include <stdint.h>

#include "autotune/cache.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "train/model.h"

#define QV_BENCH_MODELS "builtin, 700m, 1.3b, 3b"

typedef struct qv_bench_opts {
    const char *model;      /* NULL: "builtin" */
    int32_t batch, seq;     /* 0: the model's default (qv_bench_defaults) */
    int32_t steps;          /* optimizer steps a mode, 1 warm-up (0: default) */
    qv_tune_cache *cache;   /* tuned configurations (NULL: defaults) */
    qv_device *ref;         /* reference device: tune verifies against it;
                               NULL: no tuning, the cache as it is */
    size_t tune_evals;      /* configurations per kernel and shape (0: 4) */
    volatile sig_atomic_t *stop;
    /* a line of progress (phase, mode); may be NULL */
    void (*log)(void *user, const char *line);
    void *log_user;
} qv_bench_opts;

typedef struct qv_bench_mode {
    double tokens_per_s;    /* steady state: steps 2..n over their time */
    double mfu;             /* 0 when not measured */
    double gemm_gflops;     /* the base matmul at the model's shapes, tuned */
    uint64_t peak_bytes;
    uint64_t by_tag[QV_MEM_NTAGS];
    int32_t steps;
} qv_bench_mode;

typedef struct qv_bench_result {
    char device[32], backend[16], vendor[128], name[256], driver[128];
    char fingerprint[17];
    char model[16], version[32];
    int32_t batch, seq, steps;
    qv_bench_mode mode[2];  /* [QV_WEIGHTS_TERNARY], [QV_WEIGHTS_F16] */
    double default_gflops;  /* ternary base matmul, default configurations */
    double tuned_vs_default;/* mode[0].gemm_gflops / default_gflops (0: -) */
    double tune_s;          /* seconds spent tuning before the runs */
    int64_t measured_ms;    /* when (Unix ms) */
} qv_bench_result;

/* The models `qvac bench` knows (train/bench_json.c: data only, so the
 * scheduler validates requests without the device code): index 0 is the
 * built-in model (its cfg unused), the others synthetic at the public
 * BitNet shapes; ckpt: activation checkpointing in its runs. */
#define QV_BENCH_N_MODELS 4
typedef struct qv_bench_model {
    const char *name;
    qv_model_config cfg;
    int32_t batch, seq, steps;
    int ckpt;
} qv_bench_model;
extern const qv_bench_model qv_bench_models[QV_BENCH_N_MODELS];
/* The index of a model name (NULL: "builtin"), -1 when unknown. */
int qv_bench_model_index(const char *name);

/* The default batch, sequence and steps of a model name; QV_ERR_INVALID
 * naming the known ones for another. */
qv_status qv_bench_defaults(const char *model, int32_t *batch, int32_t *seq,
                            int32_t *steps, qv_err *err);

/* Runs the comparison on dev. */
qv_status qv_bench_run(qv_device *dev, const qv_bench_opts *o, qv_bench_result *r,
                       qv_err *err);

/* The result as JSON (the object `qvac bench --json` prints, the worker
 * uploads and the scheduler stores); a new reference. */
json_t *qv_bench_to_json(const qv_bench_result *r);

/* Reads a result back, validating every field (it comes from a peer):
 * strings within their sizes and printable, numbers finite and in range.
 * QV_ERR_CORRUPT naming the field otherwise. */
qv_status qv_bench_from_json(const json_t *j, qv_bench_result *r, qv_err *err);

#endif
