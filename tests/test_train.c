/* tests/test_train.c — the training engine: gradients against central
 * finite differences, loss going down, determinism, resume. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/ternary.h"
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

/* ---- training ------------------------------------------------------------- */

#include <unistd.h>

#include "formats/dataset.h"
#include "formats/gguf.h"
#include "train/train.h"

static const char tiny_text[] =
    "Once upon a time, a little cat sat on a red mat. The cat was happy. "
    "One day, the cat saw a big dog. The dog said hello. The cat said "
    "hello too. They played all day in the sun. The end.\n";

static qv_model_config byte_cfg(void)
{
    qv_model_config c = tiny_cfg(QV_ACT_RELU2, 1, 0);
    c.vocab = 258;
    c.dim = 32;
    c.ffn_dim = 64;
    return c;
}

static void tiny_opts(qv_train_opts *o)
{
    qv_train_opts_default(o);
    o->rank = 4;
    o->alpha = 8.0f;
    o->targets = (1u << QV_LIN_COUNT) - 1;
    o->lr = 3e-2f;
    o->steps = 60;
    o->warmup = 4;
    o->batch = 2;
    o->seq = 32;
    o->eval_batches = 4;
}

static qv_dataset *tiny_data(void)
{
    qv_dataset *ds = NULL;
    qv_err e;
    cr_assert_eq(qv_dataset_from_text(tiny_text, sizeof tiny_text - 1, "tiny",
                                      &ds, &e), QV_OK, "%s", e.msg);
    return ds;
}

Test(train, lora_lowers_the_loss_on_every_device)
{
    qv_dataset *ds = tiny_data();
    for (size_t d = 0; d < devs->n; d++) {
        for (int w = 0; w < 2; w++) {
            qv_model_config cfg = byte_cfg();
            qv_model *m = NULL;
            qv_err e;
            cr_assert_eq(qv_model_init_random(&cfg, 11, &m, &e), QV_OK, "%s", e.msg);
            qv_train_opts o;
            tiny_opts(&o);
            o.weights = (qv_weights)w;
            qv_train_result r;
            qv_status s = qv_train_run(devs->dev[d], m, ds, NULL, &o, &r, &e);
            cr_assert_eq(s, QV_OK, "%s: %s", devs->dev[d]->info.id, e.msg);
            printf("train %-9s %-7s loss %.3f -> %.3f (x%.2f) in %lld steps\n",
                   devs->dev[d]->info.id, qv_weights_name((qv_weights)w),
                   r.train_loss_before, r.train_loss_after,
                   r.train_loss_after / r.train_loss_before, (long long)o.steps);
            /* measured on ref: x0.67 (ternary), x0.69 (f16) in 60 steps */
            cr_expect_lt(r.train_loss_after, 0.75 * r.train_loss_before,
                         "%s %s: loss %.3f -> %.3f", devs->dev[d]->info.id,
                         qv_weights_name((qv_weights)w), r.train_loss_before,
                         r.train_loss_after);
            cr_expect_gt(r.mem.by_tag[QV_MEM_ADAPTER], 0);
            cr_expect_gt(r.mem.by_tag[QV_MEM_WEIGHTS], 0);
            cr_expect_eq(r.mem.by_tag[QV_MEM_OPTIMIZER], 2 * r.mem.by_tag[QV_MEM_ADAPTER]);
            free(r.losses);
            qv_model_free(&m);
        }
    }
    qv_dataset_free(ds);
}

static void run_ref(const char *out, const char *resume, int64_t stop_after,
                    qv_train_result *r)
{
    qv_dataset *ds = tiny_data();
    qv_model_config cfg = byte_cfg();
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_random(&cfg, 11, &m, &e), QV_OK, "%s", e.msg);
    qv_train_opts o;
    tiny_opts(&o);
    o.steps = 8;
    o.accum = 2;
    o.out_dir = out;
    o.resume_dir = resume;
    o.stop_after = stop_after;
    o.ckpt_every = 3;
    cr_assert_eq(qv_train_run(qv_devlist_find(devs, "ref"), m, ds, NULL, &o, r,
                              &e), QV_OK, "%s", e.msg);
    qv_model_free(&m);
    qv_dataset_free(ds);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

Test(train, same_seed_same_losses_bit_for_bit_on_ref)
{
    char a[] = "/tmp/qvac-det-XXXXXX", b[] = "/tmp/qvac-det-XXXXXX";
    cr_assert_not_null(mkdtemp(a));
    cr_assert_not_null(mkdtemp(b));
    qv_train_result r1, r2;
    run_ref(a, NULL, 0, &r1);
    run_ref(b, NULL, 0, &r2);
    cr_assert_eq(r1.n_losses, 8);
    cr_assert_eq(r2.n_losses, 8);
    cr_expect_eq(memcmp(r1.losses, r2.losses, 8 * sizeof(double)), 0);
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/adapter.gguf", a);
    snprintf(pb, sizeof pb, "%s/adapter.gguf", b);
    size_t na, nb;
    uint8_t *fa = slurp(pa, &na), *fb = slurp(pb, &nb);
    cr_expect_eq(na, nb);
    cr_expect_eq(memcmp(fa, fb, na), 0, "adapters differ");
    free(fa);
    free(fb);
    free(r1.losses);
    free(r2.losses);
}

Test(train, resume_reproduces_the_uninterrupted_run)
{
    char a[] = "/tmp/qvac-res-XXXXXX", b[] = "/tmp/qvac-res-XXXXXX";
    cr_assert_not_null(mkdtemp(a));
    cr_assert_not_null(mkdtemp(b));
    qv_train_result whole, part, rest;
    run_ref(a, NULL, 0, &whole);
    run_ref(b, NULL, 5, &part); /* interrupted after step 5 (checkpoint at 3) */
    cr_assert(part.interrupted);
    cr_assert_eq(part.steps_done, 5);
    run_ref(b, b, 0, &rest);
    cr_assert_eq(rest.start_step, 5);
    cr_assert_eq(rest.n_losses, 8);
    for (int i = 0; i < 8; i++)
        cr_expect_eq(whole.losses[i], rest.losses[i], "step %d: %.9g vs %.9g",
                     i + 1, whole.losses[i], rest.losses[i]);
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/adapter.gguf", a);
    snprintf(pb, sizeof pb, "%s/adapter.gguf", b);
    size_t na, nb;
    uint8_t *fa = slurp(pa, &na), *fb = slurp(pb, &nb);
    cr_expect_eq(na, nb);
    cr_expect_eq(memcmp(fa, fb, na), 0, "adapter after resume differs");
    free(fa);
    free(fb);
    /* a run with other settings refuses the checkpoint */
    qv_dataset *ds = tiny_data();
    qv_model_config cfg = byte_cfg();
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_random(&cfg, 11, &m, &e), QV_OK);
    qv_train_opts o;
    tiny_opts(&o);
    o.steps = 8;
    o.rank = 8;
    o.resume_dir = b;
    qv_train_result r;
    cr_expect_eq(qv_train_run(qv_devlist_find(devs, "ref"), m, ds, NULL, &o, &r,
                              &e), QV_ERR_INVALID);
    cr_expect_not_null(strstr(e.msg, "other settings"), "%s", e.msg);
    qv_model_free(&m);
    qv_dataset_free(ds);
    free(whole.losses);
    free(part.losses);
    free(rest.losses);
}

Test(train, model_gguf_round_trip)
{
    qv_model_config cfg = byte_cfg();
    cfg.dim = 256; /* K = 256: TQ2_0 for q/k/v/gate/up, I8 codes for down */
    cfg.n_heads = 4;
    cfg.n_kv_heads = 2;
    cfg.ffn_dim = 96;
    qv_model *m = NULL, *back = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_random(&cfg, 3, &m, &e), QV_OK, "%s", e.msg);
    char path[] = "/tmp/qvac-model-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(qv_model_save(m, path, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_model_load(path, &back, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(memcmp(&m->cfg, &back->cfg, sizeof cfg), 0);
    size_t VD = (size_t)cfg.vocab * (size_t)cfg.dim;
    cr_expect_eq(memcmp(m->tok_emb, back->tok_emb, VD * 4), 0);
    cr_expect_eq(memcmp(m->head, back->head, VD * 4), 0);
    for (int l = 0; l < cfg.n_layers; l++)
        for (int i = 0; i < QV_LIN_COUNT; i++) {
            qv_linear *a = &m->layers[l].lin[i], *b = &back->layers[l].lin[i];
            cr_expect_eq(a->scale, b->scale, "layer %d %s", l, qv_lin_name(i));
            cr_expect_eq(memcmp(a->packed, b->packed, qv_ternary_bytes(a->N, a->K)), 0);
        }
    /* a truncated file is an error, never a crash */
    size_t n;
    uint8_t *bytes = slurp(path, &n);
    for (size_t cut = 0; cut < n; cut += 997) {
        qv_model *t = NULL;
        cr_expect_neq(qv_model_load_mem(bytes, cut, "cut", &t, &e), QV_OK);
        cr_expect_null(t);
    }
    free(bytes);
    remove(path);
    qv_model_free(&m);
    qv_model_free(&back);
}

Test(train, qat_pretraining_lowers_the_loss_on_every_device)
{
    /* every weight trained (shadow weights requantised on the device each
     * step, embedding and head gradients), tied and untied heads */
    qv_dataset *ds = tiny_data();
    for (size_t d = 0; d < devs->n; d++)
        for (int tied = 0; tied < 2; tied++) {
            qv_model_config cfg = byte_cfg();
            cfg.tied = tied;
            cfg.act = tied ? QV_ACT_SILU : QV_ACT_RELU2;
            qv_model *m = NULL;
            qv_err e;
            cr_assert_eq(qv_model_init_random(&cfg, 5, &m, &e), QV_OK, "%s", e.msg);
            qv_train_opts o;
            tiny_opts(&o);
            o.full = 1;
            o.lr = 1e-2f;
            o.steps = 40;
            o.weight_decay = 0.01f;
            qv_train_result r;
            cr_assert_eq(qv_train_run(devs->dev[d], m, ds, NULL, &o, &r, &e),
                         QV_OK, "%s: %s", devs->dev[d]->info.id, e.msg);
            printf("pretrain %-9s tied=%d loss %.3f -> %.3f (x%.2f) in %lld steps\n",
                   devs->dev[d]->info.id, tied, r.train_loss_before,
                   r.train_loss_after, r.train_loss_after / r.train_loss_before,
                   (long long)o.steps);
            /* measured on ref, PoCL and lavapipe: x0.40 untied, x0.52 tied */
            cr_expect_lt(r.train_loss_after, 0.6 * r.train_loss_before,
                         "%s tied=%d: %.3f -> %.3f", devs->dev[d]->info.id, tied,
                         r.train_loss_before, r.train_loss_after);
            /* the exported model holds the trained weights: its ternary codes
             * moved away from the initial ones */
            qv_model *m0 = NULL;
            cr_assert_eq(qv_model_init_random(&cfg, 5, &m0, &e), QV_OK);
            size_t n = qv_ternary_bytes(m->layers[0].lin[0].N, m->layers[0].lin[0].K);
            cr_expect_neq(memcmp(m->layers[0].lin[0].packed, m0->layers[0].lin[0].packed, n), 0);
            free(r.losses);
            qv_model_free(&m0);
            qv_model_free(&m);
        }
    qv_dataset_free(ds);
}

/* An adapter names its base's architecture (llama.cpp's
 * llama_adapter_lora_init refuses one whose general.architecture differs
 * from the model's). */
Test(train, adapter_names_the_base_architecture)
{
    struct { int act, neox, tied; const char *arch; } c[] = {
        {QV_ACT_SILU, 1, 1, "bitnet"},
        {QV_ACT_RELU2, QV_ARCH_B158_NEOX, 1, QV_ARCH_B158_NAME},
        {QV_ACT_RELU2, 0, 0, "qvac-bitnet"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        qv_model_config cfg = tiny_cfg(c[i].act, 1, c[i].tied);
        cfg.rope_neox = c[i].neox;
        qv_model *m = NULL;
        qv_err e;
        cr_assert_eq(qv_model_init_random(&cfg, 1, &m, &e), QV_OK, "%s", e.msg);
        qv_net_opts o = {.weights = QV_WEIGHTS_TERNARY, .batch = 1, .seq = 4, .rank = 2,
                         .alpha = 4, .targets = 1u << QV_LIN_Q, .seed = 1};
        qv_net *n = NULL;
        cr_assert_eq(qv_net_new(qv_devlist_find(devs, "ref"), m, &o, &n, &e), QV_OK, "%s",
                     e.msg);
        char path[] = "/tmp/qvac-adapter-XXXXXX";
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        close(fd);
        cr_assert_eq(qv_adapter_save(n, 4.0f, 2, 1u << QV_LIN_Q, path, &e), QV_OK, "%s",
                     e.msg);
        qv_gguf *g = NULL;
        cr_assert_eq(qv_gguf_open(path, &g, &e), QV_OK, "%s", e.msg);
        const char *a = NULL;
        cr_assert_eq(qv_gguf_get_str(g, "general.architecture", &a, NULL, &e), QV_OK);
        cr_expect_str_eq(a, c[i].arch);
        qv_gguf_free(g);
        remove(path);
        qv_net_free(&n);
        qv_model_free(&m);
    }
}

/* --checkpoint-activations recomputes each layer's forward in the backward:
 * the same kernels on the same inputs, so every step's loss is the same to
 * the bit on every device, with less activation memory at the peak. */
Test(train, checkpointing_changes_memory_not_the_losses)
{
    qv_dataset *ds = tiny_data();
    for (size_t d = 0; d < devs->n; d++) {
        qv_train_result r[2];
        for (int ck = 0; ck < 2; ck++) {
            qv_model_config cfg = byte_cfg();
            cfg.n_layers = 4;
            qv_model *m = NULL;
            qv_err e;
            cr_assert_eq(qv_model_init_random(&cfg, 11, &m, &e), QV_OK, "%s", e.msg);
            qv_train_opts o;
            tiny_opts(&o);
            o.steps = 6;
            o.checkpoint = ck;
            cr_assert_eq(qv_train_run(devs->dev[d], m, ds, NULL, &o, &r[ck], &e),
                         QV_OK, "%s: %s", devs->dev[d]->info.id, e.msg);
            qv_model_free(&m);
        }
        cr_assert_eq(r[0].n_losses, r[1].n_losses);
        for (int64_t i = 0; i < r[0].n_losses; i++)
            cr_expect_eq(r[0].losses[i], r[1].losses[i], "%s step %lld: %.9g vs %.9g",
                         devs->dev[d]->info.id, (long long)i + 1, r[0].losses[i],
                         r[1].losses[i]);
        /* 4 layers' intermediates become 1 layer's */
        uint64_t a0 = r[0].mem.by_tag[QV_MEM_ACTIVATIONS];
        uint64_t a1 = r[1].mem.by_tag[QV_MEM_ACTIVATIONS];
        printf("checkpointing %-9s activations at the peak %llu -> %llu bytes\n",
               devs->dev[d]->info.id, (unsigned long long)a0, (unsigned long long)a1);
        cr_expect_lt(a1, a0 * 3 / 4, "%s: %llu -> %llu", devs->dev[d]->info.id,
                     (unsigned long long)a0, (unsigned long long)a1);
        cr_expect_lt(r[1].mem.peak, r[0].mem.peak);
        free(r[0].losses);
        free(r[1].losses);
    }
    qv_dataset_free(ds);
}

/* An adapter with layers the model lacks (blk.3 on a 3-layer model) was
 * accepted and its extra tensors silently ignored: it is refused, naming
 * the tensor. The adapter of the model itself still loads. */
Test(train, an_adapter_with_layers_the_model_lacks_is_refused)
{
    qv_err e;
    qv_net_opts o = {.weights = QV_WEIGHTS_TERNARY, .batch = 1, .seq = 4, .rank = 2,
                     .alpha = 4, .targets = 1u << QV_LIN_Q, .seed = 1};
    qv_model *m[2] = {0};
    qv_net *n[2] = {0};
    for (int k = 0; k < 2; k++) {
        qv_model_config cfg = tiny_cfg(QV_ACT_SILU, 1, 1);
        cfg.n_layers = 3 + k; /* 3 layers, and 4 */
        cr_assert_eq(qv_model_init_random(&cfg, 1, &m[k], &e), QV_OK, "%s", e.msg);
        cr_assert_eq(qv_net_new(qv_devlist_find(devs, "ref"), m[k], &o, &n[k], &e), QV_OK,
                     "%s", e.msg);
    }
    char path[] = "/tmp/qvac-adapter-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(qv_adapter_save(n[1], 4.0f, 2, 1u << QV_LIN_Q, path, &e), QV_OK, "%s", e.msg);
    cr_expect_eq(qv_adapter_load(n[0], path, &e), QV_ERR_INVALID,
                 "a 4-layer adapter went onto a 3-layer model");
    cr_expect_not_null(strstr(e.msg, "blk.3."), "%s", e.msg);
    cr_expect_eq(qv_adapter_load(n[1], path, &e), QV_OK, "%s", e.msg);
    remove(path);
    for (int k = 0; k < 2; k++) {
        qv_net_free(&n[k]);
        qv_model_free(&m[k]);
    }
}

/* `finetune --out FILE` (a regular file) trained every step and then
 * failed to write: the output folder is checked before the first step. */
Test(train, an_output_that_cannot_be_written_fails_before_the_first_step)
{
    qv_dataset *ds = tiny_data();
    qv_model_config cfg = byte_cfg();
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_random(&cfg, 11, &m, &e), QV_OK, "%s", e.msg);
    char file[] = "/tmp/qvac-out-file-XXXXXX";
    int fd = mkstemp(file);
    cr_assert_geq(fd, 0);
    close(fd);
    qv_train_opts o;
    tiny_opts(&o);
    o.steps = 4;
    o.out_dir = file;
    qv_train_result r;
    cr_expect_eq(qv_train_run(qv_devlist_find(devs, "ref"), m, ds, NULL, &o, &r, &e),
                 QV_ERR_IO);
    cr_expect_not_null(strstr(e.msg, "is not a folder"), "%s", e.msg);
    cr_expect_eq(r.steps_done, 0, "%lld steps trained before the error",
                 (long long)r.steps_done);
    remove(file);
    qv_model_free(&m);
    qv_dataset_free(ds);
}
