/* worker/job.h — a job as a worker runs it: the fine-tuning options of a
 * submitted job (a JSON object, as the scheduler stores and sends it), the
 * files it reads (model, dataset, optional checkpoint to resume from) and
 * the folder it writes (adapter.gguf, metrics.json, checkpoint.gguf).
 *
 * The options object uses the names of `qvac finetune`'s flags without the
 * dashes ("rank", "alpha", "targets", "lr", "steps", "warmup", "batch",
 * "seq_len", "accum", "clip", "weight_decay", "seed", "weights",
 * "val_fraction", "ckpt_every", "eval_batches"); every key is optional,
 * unknown keys and values of the wrong type or out of range are errors that
 * name the key, so a job that cannot run says so at submission. */
#ifndef QV_WORKER_JOB_H
#define QV_WORKER_JOB_H

#include "train/train.h"

typedef struct qv_job_opts {
    qv_train_opts train;  /* defaults from qv_train_opts_default */
    double val_fraction;  /* 0.1 */
    char chat_template[24]; /* "llama3", ...; "" detects it from the model */
    int long_policy;      /* QV_LONG_SKIP (default) or QV_LONG_TRUNCATE */
} qv_job_opts;

/* Parses a JSON options object (NULL or "" or "{}": the defaults). */
qv_status qv_job_opts_parse(const char *json, qv_job_opts *out, qv_err *err);

/* The options as a canonical JSON object (every key, sorted), malloc'd:
 * what `qvac submit` sends and the scheduler stores. */
qv_status qv_job_opts_format(const qv_job_opts *o, char **json, qv_err *err);

typedef struct qv_job_spec {
    const char *model_path;  /* GGUF model */
    const char *data_path;   /* JSON Lines dataset */
    const char *out_dir;     /* written: adapter, metrics, checkpoint */
    const char *resume_dir;  /* a folder holding checkpoint.gguf, or NULL */
    /* The autotune cache the kernels' configurations come from (NULL:
     * defaults). With tune_evals > 0 and a reference device, every kernel
     * and shape a step of this model launches is tuned into it first
     * (qv_train_tune; cached shapes cost nothing), so a job runs at its own
     * shapes' tuned speed. */
    const char *tune_db;
    qv_device *ref;
    size_t tune_evals;
} qv_job_spec;

/* Runs the job on dev with options o (progress, stop and cache taken from
 * o->train as set by the caller). res->losses must be freed. */
qv_status qv_job_run(qv_device *dev, const qv_job_spec *spec,
                     const qv_job_opts *o, qv_train_result *res, qv_err *err);

#endif
