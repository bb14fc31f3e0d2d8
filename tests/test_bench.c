/* tests/test_bench.c — the standard comparison of one device (train/bench.h):
 * a real run on the reference device and on opencl:0 (skipped cleanly
 * without it), the JSON it gives and reads back, and every refusal of a
 * peer's result. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autotune/cache.h"
#include "kernels/backend.h"
#include "train/bench.h"

static qv_bench_result run_on(const char *id, int tune)
{
    qv_devlist *list = NULL;
    qv_err err = {0};
    cr_assert_eq(qv_devlist_open(&list, &err), QV_OK, "%s", err.msg);
    qv_device *d = qv_devlist_find(list, id);
    qv_bench_result r;
    memset(&r, 0, sizeof r);
    if (!d) {
        qv_devlist_destroy(&list);
        cr_skip_test("no device %s here", id);
    }
    char db[] = "/tmp/qvac-test-bench-XXXXXX";
    int fd = mkstemp(db);
    cr_assert(fd >= 0);
    close(fd);
    qv_tune_cache *cache = NULL;
    cr_assert_eq(qv_tune_cache_open(db, 0, 2000, &cache, &err), QV_OK, "%s", err.msg);
    qv_bench_opts o = {.model = "builtin", .batch = 1, .seq = 32, .steps = 3,
                       .cache = cache, .ref = tune ? qv_devlist_find(list, "ref") : NULL,
                       .tune_evals = 2};
    qv_status s = qv_bench_run(d, &o, &r, &err);
    qv_tune_cache_destroy(&cache);
    unlink(db);
    qv_devlist_destroy(&list);
    cr_assert_eq(s, QV_OK, "%s", err.msg);
    return r;
}

static void check_result(const qv_bench_result *r, const char *id)
{
    cr_assert_str_eq(r->device, id);
    cr_assert_str_eq(r->model, "builtin");
    cr_assert_eq(strlen(r->fingerprint), 16);
    cr_assert_eq(r->batch, 1);
    cr_assert_eq(r->seq, 32);
    for (int w = 0; w < 2; w++) {
        cr_assert_eq(r->mode[w].steps, 3);
        cr_assert_gt(r->mode[w].tokens_per_s, 0);
        cr_assert_gt(r->mode[w].gemm_gflops, 0);
        cr_assert_gt(r->mode[w].mfu, 0);
        uint64_t sum = 0;
        for (int g = 0; g < QV_MEM_NTAGS; g++)
            sum += r->mode[w].by_tag[g];
        cr_assert_eq(sum, r->mode[w].peak_bytes, "categories add up to the peak");
    }
    /* the built-in model: 1.8M ternary weights at 2 bits against 16 */
    uint64_t tw = r->mode[0].by_tag[QV_MEM_WEIGHTS], fw = r->mode[1].by_tag[QV_MEM_WEIGHTS];
    cr_assert(tw > 0 && tw * 4 < fw, "ternary weights %llu, f16 %llu",
              (unsigned long long)tw, (unsigned long long)fw);
    cr_assert_lt(r->mode[0].peak_bytes, r->mode[1].peak_bytes);
    /* the same adapter, optimizer and activations in both modes */
    cr_assert_eq(r->mode[0].by_tag[QV_MEM_ADAPTER], r->mode[1].by_tag[QV_MEM_ADAPTER]);
    cr_assert_eq(r->mode[0].by_tag[QV_MEM_ACTIVATIONS],
                 r->mode[1].by_tag[QV_MEM_ACTIVATIONS]);
    cr_assert_gt(r->default_gflops, 0);
    cr_assert_float_eq(r->tuned_vs_default, r->mode[0].gemm_gflops / r->default_gflops,
                       1e-9);
}

Test(bench, ref_runs_both_modes)
{
    qv_bench_result r = run_on("ref", 0);
    check_result(&r, "ref");
    cr_assert_str_eq(r.backend, "ref");
    cr_assert_float_eq(r.tune_s, 0.0, 0.0, "ref is never tuned");
}

Test(bench, opencl_tuned_first)
{
    qv_bench_result r = run_on("opencl:0", 1);
    check_result(&r, "opencl:0");
    cr_assert_gt(r.tune_s, 0, "the kernels were tuned at the model's shapes");
}

static qv_bench_result sample(void)
{
    qv_bench_result r;
    memset(&r, 0, sizeof r);
    strcpy(r.device, "opencl:0");
    strcpy(r.backend, "opencl");
    strcpy(r.vendor, "Vendor");
    strcpy(r.name, "Device");
    strcpy(r.driver, "1.2");
    strcpy(r.fingerprint, "0123456789abcdef");
    strcpy(r.model, "builtin");
    strcpy(r.version, "0.1.0");
    r.batch = 4, r.seq = 128, r.steps = 6;
    r.mode[0] = (qv_bench_mode){.tokens_per_s = 5000, .mfu = 0.35, .gemm_gflops = 110,
                                .peak_bytes = 300, .steps = 6};
    r.mode[0].by_tag[QV_MEM_WEIGHTS] = 100;
    r.mode[0].by_tag[QV_MEM_ACTIVATIONS] = 200;
    r.mode[1] = (qv_bench_mode){.tokens_per_s = 4000, .mfu = 0.25, .gemm_gflops = 150,
                                .peak_bytes = 900, .steps = 6};
    r.mode[1].by_tag[QV_MEM_WEIGHTS] = 700;
    r.mode[1].by_tag[QV_MEM_ACTIVATIONS] = 200;
    r.default_gflops = 50;
    r.tuned_vs_default = 2.2;
    r.tune_s = 1.5;
    r.measured_ms = 1796386750000;
    return r;
}

Test(bench, json_round_trip)
{
    qv_bench_result a = sample(), b;
    json_t *j = qv_bench_to_json(&a);
    cr_assert_not_null(j);
    cr_assert_float_eq(json_real_value(json_object_get(j, "speedup")), 1.25, 1e-12);
    cr_assert_float_eq(json_real_value(json_object_get(j, "memory_reduction")),
                       1 - 300.0 / 900, 1e-12);
    qv_err err = {0};
    cr_assert_eq(qv_bench_from_json(j, &b, &err), QV_OK, "%s", err.msg);
    json_decref(j);
    cr_assert_str_eq(b.device, a.device);
    cr_assert_str_eq(b.fingerprint, a.fingerprint);
    cr_assert_str_eq(b.version, a.version);
    cr_assert_eq(b.batch, 4);
    cr_assert_eq(b.mode[1].peak_bytes, 900);
    cr_assert_eq(b.mode[1].by_tag[QV_MEM_WEIGHTS], 700);
    cr_assert_float_eq(b.mode[0].tokens_per_s, 5000, 0);
    cr_assert_float_eq(b.tuned_vs_default, 2.2, 0);
    cr_assert_eq(b.measured_ms, a.measured_ms);
}

/* Each mutation of a good result, and the field the refusal names. */
Test(bench, refuses_bad_results)
{
    static const struct {
        const char *path, *json, *names;
    } bad[] = {
        {"device", "\"\"", "device"},
        {"device", "7", "device"},
        {"name", "\"a\\nFORGED line\"", "name"},
        {"driver", "\"\\u001b[31mred\"", "driver"},
        {"fingerprint", "\"0123456789abcdef0\"", "fingerprint"},
        {"batch", "0", "batch"},
        {"steps", "65", "steps"},
        {"seq", "\"128\"", "seq"},
        {"ternary", "[]", "ternary"},
        {"ternary.tokens_per_s", "-1", "tokens_per_s"},
        {"f16.peak_bytes", "1e300", "peak_bytes"},
        {"f16.peak_bytes_by_category", "3", "peak_bytes_by_category"},
        {"tuned_vs_default", "-2", "tuned_vs_default"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qv_bench_result a = sample(), b;
        json_t *j = qv_bench_to_json(&a);
        json_t *v = json_loads(bad[i].json, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(v, "%s", bad[i].json);
        const char *dot = strchr(bad[i].path, '.');
        if (dot) {
            char outer[32];
            snprintf(outer, sizeof outer, "%.*s", (int)(dot - bad[i].path), bad[i].path);
            json_object_set_new(json_object_get(j, outer), dot + 1, v);
        } else {
            json_object_set_new(j, bad[i].path, v);
        }
        qv_err err = {0};
        cr_assert_eq(qv_bench_from_json(j, &b, &err), QV_ERR_CORRUPT, "%s = %s accepted",
                     bad[i].path, bad[i].json);
        cr_assert(strstr(err.msg, bad[i].names), "'%s' does not name %s", err.msg,
                  bad[i].names);
        json_decref(j);
    }
    qv_err err = {0};
    qv_bench_result b;
    json_t *j = qv_bench_to_json(&(qv_bench_result){0});
    json_object_del(j, "ternary");
    cr_assert_eq(qv_bench_from_json(j, &b, &err), QV_ERR_CORRUPT);
    json_decref(j);
    json_t *arr = json_array();
    cr_assert_eq(qv_bench_from_json(arr, &b, &err), QV_ERR_CORRUPT);
    json_decref(arr);
}

Test(bench, unknown_model_named)
{
    int32_t b, s, n;
    qv_err err = {0};
    cr_assert_eq(qv_bench_defaults("7b", &b, &s, &n, &err), QV_ERR_INVALID);
    cr_assert(strstr(err.msg, "7b") && strstr(err.msg, "700m"), "%s", err.msg);
    cr_assert_eq(qv_bench_defaults("700m", &b, &s, &n, &err), QV_OK);
    cr_assert_eq(b * s, 128);
    cr_assert_eq(qv_bench_defaults(NULL, &b, &s, &n, &err), QV_OK);
    cr_assert_eq(b * s, 512);
}
