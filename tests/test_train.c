/* tests/test_train.c — the training engine: gradients against central
 * finite differences, loss going down, determinism, resume. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/verify.h"
#include "train/net.h"

static qv_devlist *devs;

static void open_devs(void)
{
    qv_err e;
    cr_assert_eq(qv_devlist_open(&devs, &e), QV_OK, "%s", e.msg);
}

static void close_devs(void) { qv_devlist_destroy(&devs); }

TestSuite(train, .init = open_devs, .fini = close_devs, .timeout = 900);

static qv_model_config tiny_cfg(int act, int sub_norm, int tied)
{
    qv_model_config c = {
        .vocab = 13, .dim = 16, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
        .ffn_dim = 24, .ctx = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
        .act = act, .sub_norm = sub_norm, .tied = tied,
    };
    return c;
}

enum { GB = 2, GS = 6 };

static void tiny_batch(int32_t *tok, int32_t *tgt, int V)
{
    qv_rng r = {99};
    for (int i = 0; i < GB * GS; i++) {
        tok[i] = (int32_t)(qv_rng_next(&r) % (uint64_t)V);
        tgt[i] = i % 5 == 4 ? -1 : (int32_t)(qv_rng_next(&r) % (uint64_t)V);
    }
}

static double loss_of(qv_net *n, const int32_t *tok, const int32_t *tgt)
{
    double sum = 0.0;
    int64_t cnt = 0;
    qv_err e;
    cr_assert_eq(qv_net_run(n, tok, tgt, 0, 1.0f, &sum, &cnt, &e), QV_OK, "%s",
                 e.msg);
    return sum / (double)cnt;
}

/* Worst relative error, per module, of the adapter gradients against
 * central differences of the mean loss; returns the worst over modules. */
static double gradcheck(qv_device *dev, qv_weights w, int act, int sub_norm)
{
    qv_model_config cfg = tiny_cfg(act, sub_norm, 0);
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_random(&cfg, 7, &m, &e), QV_OK, "%s", e.msg);
    qv_net_opts o = {
        .weights = w, .batch = GB, .seq = GS, .rank = 3, .alpha = 6.0f,
        .targets = (1u << QV_LIN_COUNT) - 1, .seed = 5, .lora_b_std = 0.3f,
        .ste_surrogate = w == QV_WEIGHTS_TERNARY,
    };
    qv_net *n = NULL;
    cr_assert_eq(qv_net_new(dev, m, &o, &n, &e), QV_OK, "%s", e.msg);
    int32_t tok[GB * GS], tgt[GB * GS];
    tiny_batch(tok, tgt, cfg.vocab);
    int64_t cnt = 0;
    for (int i = 0; i < GB * GS; i++)
        cnt += tgt[i] >= 0;
    double sum = 0.0;
    int64_t c2 = 0;
    cr_assert_eq(qv_net_zero_grads(n, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_net_run(n, tok, tgt, 1, 1.0f / (float)cnt, &sum, &c2, &e),
                 QV_OK, "%s", e.msg);
    double worst = 0.0;
    const double eps = getenv("QV_EPS") ? atof(getenv("QV_EPS")) : 2e-2;
    qv_rng r = {3};
    for (int p = 0; p < qv_net_n_params(n); p++) {
        qv_param_info pi;
        qv_net_param_info(n, p, &pi);
        size_t cntp = (size_t)pi.rows * (size_t)pi.cols;
        float *val = malloc(cntp * 4), *grad = malloc(cntp * 4);
        cr_assert_eq(qv_net_param_read(n, p, QV_PARAM_VALUE, val, &e), QV_OK);
        cr_assert_eq(qv_net_param_read(n, p, QV_PARAM_GRAD, grad, &e), QV_OK);
        double num = 0.0, den = 0.0, gmax = 0.0;
        for (int s = 0; s < 4; s++) {
            size_t j = (size_t)(qv_rng_next(&r) % cntp);
            /* central differences at h and h/2, Richardson-extrapolated:
             * the h^2 error term cancels, so h can stay well above the
             * float noise of the loss */
            double d[2];
            for (int hh = 0; hh < 2; hh++) {
                double h = hh ? eps / 2 : eps;
                float keep = val[j];
                val[j] = keep + (float)h;
                cr_assert_eq(qv_net_param_write(n, p, QV_PARAM_VALUE, val, &e), QV_OK);
                double lp = loss_of(n, tok, tgt);
                val[j] = keep - (float)h;
                cr_assert_eq(qv_net_param_write(n, p, QV_PARAM_VALUE, val, &e), QV_OK);
                double lm = loss_of(n, tok, tgt);
                val[j] = keep;
                cr_assert_eq(qv_net_param_write(n, p, QV_PARAM_VALUE, val, &e), QV_OK);
                d[hh] = (lp - lm) / (2.0 * h);
            }
            double fd = (4.0 * d[1] - d[0]) / 3.0;
            num += (fd - grad[j]) * (fd - grad[j]);
            den += fd * fd + (double)grad[j] * grad[j];
            gmax = fmax(gmax, fabs(grad[j]));
        }
        double rel = sqrt(num) / fmax(sqrt(den), 1e-6);
        cr_log_info("%s %s %s: |g| up to %.3g, relative error %.2e", dev->info.id,
                    qv_weights_name(w), pi.name, gmax, rel);
        cr_expect(gmax > 1e-5, "%s: gradient is zero: the check would prove "
                  "nothing", pi.name);
        worst = fmax(worst, rel);
        free(val);
        free(grad);
    }
    qv_net_free(&n);
    qv_model_free(&m);
    return worst;
}

Test(train, gradcheck_every_module_both_modes_every_device)
{
    for (size_t d = 0; d < devs->n; d++) {
        qv_device *dev = devs->dev[d];
        for (int w = 0; w < 2; w++) {
            double tol = dev->info.id[0] == 'r' ? 1e-2 : 3e-2;
            double worst = gradcheck(dev, (qv_weights)w, w ? QV_ACT_RELU2 : QV_ACT_SILU, 1);
            cr_expect(worst < tol, "%s %s: adapter gradients differ from "
                      "finite differences by %.2e (tolerance %.0e)",
                      dev->info.id, qv_weights_name((qv_weights)w), worst, tol);
            printf("gradcheck %-9s %-7s worst relative error %.2e\n",
                   dev->info.id, qv_weights_name((qv_weights)w), worst);
        }
    }
}
