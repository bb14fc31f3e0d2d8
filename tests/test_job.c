/* tests/test_job.c — a job's options as JSON, and a job run end to end on
 * the reference device, resumed from its own checkpoint. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autotune/tune.h"
#include "kernels/backend.h"
#include "train/mfu.h"
#include "worker/job.h"

Test(job, defaults_and_every_key)
{
    qv_job_opts o;
    qv_err e;
    cr_assert_eq(qv_job_opts_parse(NULL, &o, &e), QV_OK);
    cr_expect_eq(o.train.rank, 16);
    cr_expect_eq(o.train.targets, QV_TARGETS_DEFAULT);
    cr_expect_float_eq(o.val_fraction, 0.1, 1e-12);
    const char *all =
        "{\"accum\":2,\"alpha\":8,\"batch\":3,\"ckpt_every\":5,\"clip\":0.5,"
        "\"eval_batches\":2,\"lr\":0.001,\"rank\":4,\"seed\":9,\"seq_len\":48,"
        "\"steps\":7,\"targets\":\"q,k,down\",\"val_fraction\":0.2,"
        "\"warmup\":1,\"weight_decay\":0.01,\"weights\":\"f16\","
        "\"chat_template\":\"chatml\",\"long\":\"truncate\"}";
    cr_assert_eq(qv_job_opts_parse(all, &o, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(o.train.accum, 2);
    cr_expect_float_eq(o.train.alpha, 8.0f, 0);
    cr_expect_eq(o.train.batch, 3);
    cr_expect_eq(o.train.ckpt_every, 5);
    cr_expect_eq(o.train.eval_batches, 2);
    cr_expect_eq(o.train.rank, 4);
    cr_expect_eq(o.train.seed, 9u);
    cr_expect_eq(o.train.seq, 48);
    cr_expect_eq(o.train.steps, 7);
    cr_expect_eq(o.train.targets, (1u << QV_LIN_Q) | (1u << QV_LIN_K) | (1u << QV_LIN_DOWN));
    cr_expect_eq(o.train.warmup, 1);
    cr_expect_eq(o.train.weights, QV_WEIGHTS_F16);
    cr_expect_float_eq(o.val_fraction, 0.2, 1e-12);
    cr_expect_str_eq(o.chat_template, "chatml");
    cr_expect_eq(o.long_policy, QV_LONG_TRUNCATE);
    /* canonical form parses back to the same options */
    char *json = NULL;
    cr_assert_eq(qv_job_opts_format(&o, &json, &e), QV_OK);
    qv_job_opts back;
    cr_assert_eq(qv_job_opts_parse(json, &back, &e), QV_OK, "%s: %s", json, e.msg);
    cr_expect_eq(memcmp(&back.train, &o.train, sizeof o.train), 0, "%s", json);
    cr_expect_str_eq(back.chat_template, "chatml", "%s", json);
    cr_expect_eq(back.long_policy, QV_LONG_TRUNCATE, "%s", json);
    free(json);
}

Test(job, bad_options_name_the_key)
{
    static const struct {
        const char *json, *needle;
    } bad[] = {
        {"[1]", "object"},
        {"{\"rank\":0}", "rank"},
        {"{\"rank\":1.5}", "rank"},
        {"{\"rank\":\"8\"}", "rank"},
        {"{\"lr\":-1}", "lr"},
        {"{\"targets\":\"q,x\"}", "'x'"},
        {"{\"weights\":\"int4\"}", "int4"},
        {"{\"chat_template\":\"vicuna\"}", "vicuna"},
        {"{\"long\":\"wrap\"}", "wrap"},
        {"{\"ranks\":8}", "ranks"},
        {"{\"rank\":8,\"rank\":9}", "JSON"},
        {"{", "JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qv_job_opts o;
        qv_err e = {0};
        cr_expect_eq(qv_job_opts_parse(bad[i].json, &o, &e), QV_ERR_INVALID,
                     "%s", bad[i].json);
        cr_expect_not_null(strstr(e.msg, bad[i].needle), "%s: %s", bad[i].json,
                           e.msg);
    }
}

Test(job, runs_and_resumes_on_ref, .timeout = 300)
{
    char dir[] = "/tmp/qvac-job-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char model[300], data[300], out[300], path[400];
    snprintf(model, sizeof model, "%s/m.gguf", dir);
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    qv_model_config cfg = {
        .vocab = 258, .dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
        .ffn_dim = 48, .ctx = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
        .act = QV_ACT_RELU2, .sub_norm = 1, .tied = 0,
    };
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_random(&cfg, 1, &m, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_model_save(m, model, &e), QV_OK, "%s", e.msg);
    qv_model_free(&m);
    FILE *f = fopen(data, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 20; i++)
        fprintf(f, "{\"prompt\": \"Q%d?\\n\", \"completion\": \"A%d, matey.\"}\n",
                i, i * 7);
    fclose(f);
    qv_devlist *devs = NULL;
    cr_assert_eq(qv_devlist_open(&devs, &e), QV_OK);
    qv_device *ref = qv_devlist_find(devs, "ref");
    qv_job_opts o;
    cr_assert_eq(qv_job_opts_parse("{\"steps\":6,\"rank\":2,\"batch\":2,"
                                   "\"seq_len\":24,\"eval_batches\":1,"
                                   "\"lr\":0.01,\"warmup\":1}", &o, &e), QV_OK);
    qv_job_spec spec = {.model_path = model, .data_path = data, .out_dir = out};
    o.train.stop_after = 3; /* as if the worker died after step 3 */
    qv_train_result r;
    cr_assert_eq(qv_job_run(ref, &spec, &o, &r, &e), QV_OK, "%s", e.msg);
    cr_expect(r.interrupted);
    cr_expect_eq(r.steps_done, 3);
    free(r.losses);
    /* the next attempt resumes from the checkpoint, not from step 0 */
    o.train.stop_after = 0;
    spec.resume_dir = out;
    cr_assert_eq(qv_job_run(ref, &spec, &o, &r, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(r.start_step, 3);
    cr_expect_eq(r.steps_done, 6);
    cr_expect(isfinite(r.val_loss_after));
    free(r.losses);
    snprintf(path, sizeof path, "%s/adapter.gguf", out);
    cr_expect_eq(access(path, R_OK), 0, "%s", path);
    snprintf(path, sizeof path, "%s/metrics.json", out);
    cr_expect_eq(access(path, R_OK), 0, "%s", path);
    /* a missing dataset is an error naming it */
    spec.data_path = "/nonexistent/d.jsonl";
    cr_expect_neq(qv_job_run(ref, &spec, &o, &r, &e), QV_OK);
    cr_expect_not_null(strstr(e.msg, "/nonexistent/d.jsonl"), "%s", e.msg);
    qv_devlist_destroy(&devs);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    cr_expect_eq(system(path), 0);
}

/* With a tune cache, a job tunes every kernel and shape its step launches
 * on its device before the first step (verified against ref), and the
 * training takes those configurations: afterwards the cache answers every
 * launch of the step as tuned. */
Test(job, tunes_its_own_shapes_first, .timeout = 600)
{
    qv_devlist *devs = NULL;
    qv_err e;
    cr_assert_eq(qv_devlist_open(&devs, &e), QV_OK);
    qv_device *ref = qv_devlist_find(devs, "ref"), *dev = NULL;
    for (size_t d = 0; d < devs->n && !dev; d++)
        if (devs->dev[d] != ref)
            dev = devs->dev[d];
    if (!dev) {
        qv_devlist_destroy(&devs);
        cr_skip_test("no OpenCL or Vulkan device: nothing to tune");
    }
    char dir[] = "/tmp/qvac-jobtune-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char model[300], data[300], out[300], db[300], cmd[400];
    snprintf(model, sizeof model, "%s/m.gguf", dir);
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(db, sizeof db, "%s/tune.db", dir);
    qv_model_config cfg = {
        .vocab = 258, .dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
        .ffn_dim = 48, .ctx = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
        .act = QV_ACT_RELU2, .sub_norm = 1, .tied = 0,
    };
    qv_model *m = NULL;
    cr_assert_eq(qv_model_init_random(&cfg, 1, &m, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_model_save(m, model, &e), QV_OK, "%s", e.msg);
    FILE *f = fopen(data, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 20; i++)
        fprintf(f, "{\"text\": \"Line %d of the tuning test, matey.\"}\n", i);
    fclose(f);
    qv_job_opts o;
    cr_assert_eq(qv_job_opts_parse("{\"steps\":2,\"rank\":2,\"batch\":2,"
                                   "\"seq_len\":24,\"eval_batches\":1}", &o, &e),
                 QV_OK, "%s", e.msg);
    qv_job_spec spec = {.model_path = model, .data_path = data, .out_dir = out,
                        .tune_db = db, .ref = ref, .tune_evals = 2};
    qv_train_result r;
    cr_assert_eq(qv_job_run(dev, &spec, &o, &r, &e), QV_OK, "%s", e.msg);
    free(r.losses);
    /* every launch of the step is now tuned in the cache */
    qv_tune_cache *c = NULL;
    cr_assert_eq(qv_tune_cache_open(db, 1, 2000, &c, &e), QV_OK, "%s", e.msg);
    qv_train_shape_opts so = {.weights = o.train.weights, .batch = 2, .seq = 24,
                              .rank = 2, .targets = o.train.targets,
                              .head_f16 = qv_model_head_f16(m)};
    qv_train_launch ls[64];
    size_t n = qv_train_launches(&m->cfg, &so, ls, 64);
    cr_assert_gt(n, 4u);
    cr_assert_leq(n, 64u);
    for (size_t i = 0; i < n; i++) {
        qv_config cf;
        int tuned = 0;
        const qv_kernel_decl *k = qv_kernel_find(ls[i].kernel);
        cr_assert_not_null(k);
        cr_assert_eq(qv_tune_lookup(c, dev, k, ls[i].s, &cf, &tuned, &e), QV_OK);
        cr_expect(tuned, "%s %s M=%d N=%d K=%d R=%d not tuned", dev->info.id,
                  ls[i].kernel, ls[i].s.M, ls[i].s.N, ls[i].s.K, ls[i].s.R);
    }
    qv_tune_cache_destroy(&c);
    qv_model_free(&m);
    qv_devlist_destroy(&devs);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}
