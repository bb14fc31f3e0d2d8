/* tests/test_kernels.c — every kernel, on every device present (OpenCL,
 * Vulkan), at shapes that are not multiples of any tile and in several
 * configurations, equals the reference: the integer path of ternary_matmul
 * to 1e-5 relative (one float division), float reductions to 5e-5 relative
 * to max|ref| (f32 accumulation against the reference's double), int8
 * activation codes to within one code (ties at exactly .5 after a division
 * that need not be correctly rounded on a device), packed ternary codes,
 * embedding rows and fills exactly. The transformer kernels map the test
 * shapes onto their own scalars through their declaration's example(). */
#include <criterion/criterion.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/verify.h"

static qv_devlist *devs;

static void open_devs(void)
{
    qv_err e;
    cr_assert_eq(qv_devlist_open(&devs, &e), QV_OK, "%s", e.msg);
}

static void close_devs(void) { qv_devlist_destroy(&devs); }

TestSuite(kernels, .init = open_devs, .fini = close_devs, .timeout = 600);

static const qv_shape shapes[] = {
    {1, 1, 1, 1},   {1, 255, 1000, 4}, {3, 17, 255, 3},
    {17, 3, 17, 1}, {33, 65, 48, 128}, {64, 64, 64, 16},
    {5, 70, 33, 2}, /* f32_matmul's example: ta = 0, tb = 1 */
};

static const char *mm_cfgs[] = {
    "default", "TX=8,TY=2", "LOCAL=1", "WG_X=8,WG_Y=4,TX=2,TY=4,LOCAL=1,KT=4",
    "WG_X=32,WG_Y=2,TX=4", "WG_X=8,WG_Y=4,TY=4,LOCAL=1,KT=4",
    "WG_X=8,TX=2,TY=4", "WG_X=8,TX=16,TY=8", "TX=16,TY=1", NULL,
};
static const char *qa_cfgs[] = {"default", "WG_X=1", "WG_X=256,VEC=4",
                                "WG_X=4,WG_Y=4,VEC=4", NULL};
/* the element-wise / per-row kernels of kernel_nn.c: only WG_X varies */
static const char *ew_cfgs[] = {"default", "WG_X=32", "WG_X=256", NULL};

static const char **configs_of(const qv_kernel_decl *k)
{
    if (!strcmp(k->name, "quantize_act"))
        return qa_cfgs;
    return qv_kernel_param_index(k, "TX") >= 0 ? mm_cfgs : ew_cfgs;
}

static void check_kernel(const char *name)
{
    const qv_kernel_decl *k = qv_kernel_find(name);
    cr_assert_not_null(k);
    qv_device *ref = qv_devlist_find(devs, "ref");
    const char **cfgs = configs_of(k);
    int runs = 0;
    for (size_t d = 0; d < devs->n; d++) {
        qv_device *dev = devs->dev[d];
        if (dev == ref)
            continue; /* the reference against itself proves nothing */
        for (int ci = 0; cfgs[ci]; ci++) {
            qv_config c;
            cr_assert_eq(qv_config_parse(k, cfgs[ci], &c, NULL), QV_OK);
            if (qv_kernel_check_config(k, &c, &dev->info.limits, NULL))
                continue; /* beyond this device's limits */
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                qv_verify_result r;
                qv_err e;
                qv_status st = qv_verify(dev, ref, k, &c, shapes[s],
                                         77 + s * 31 + (size_t)ci, &r, &e);
                cr_expect_eq(st, QV_OK, "%s %s [%s]: %s", dev->info.id, name,
                             cfgs[ci], e.msg);
                cr_expect(r.pass, "%s %s [%s] M=%d N=%d K=%d R=%d: %s off by "
                          "%g (tolerance %g)", dev->info.id, name, cfgs[ci],
                          shapes[s].M, shapes[s].N, shapes[s].K, shapes[s].R,
                          r.worst, r.max_err, r.tol);
                runs++;
            }
        }
    }
    if (runs == 0)
        cr_skip_test("no OpenCL or Vulkan device on this machine: nothing to "
                     "compare with the reference");
}

Test(kernels, quantize_act) { check_kernel("quantize_act"); }
Test(kernels, ternary_matmul) { check_kernel("ternary_matmul"); }
Test(kernels, ternary_matmul_t) { check_kernel("ternary_matmul_t"); }
Test(kernels, f16_matmul) { check_kernel("f16_matmul"); }
Test(kernels, lora_fwd) { check_kernel("lora_fwd"); }
Test(kernels, lora_bwd) { check_kernel("lora_bwd"); }
Test(kernels, f16_matmul_t) { check_kernel("f16_matmul_t"); }
Test(kernels, f32_matmul) { check_kernel("f32_matmul"); }
Test(kernels, embed) { check_kernel("embed"); }
Test(kernels, embed_f16) { check_kernel("embed_f16"); }
Test(kernels, embed_bwd) { check_kernel("embed_bwd"); }
Test(kernels, rmsnorm) { check_kernel("rmsnorm"); }
Test(kernels, rmsnorm_bwd) { check_kernel("rmsnorm_bwd"); }
Test(kernels, rope) { check_kernel("rope"); }
Test(kernels, attention) { check_kernel("attention"); }
Test(kernels, attention_bwd) { check_kernel("attention_bwd"); }
Test(kernels, swiglu) { check_kernel("swiglu"); }
Test(kernels, swiglu_bwd) { check_kernel("swiglu_bwd"); }
Test(kernels, axpby) { check_kernel("axpby"); }
Test(kernels, fill) { check_kernel("fill"); }
Test(kernels, cross_entropy) { check_kernel("cross_entropy"); }
Test(kernels, adamw) { check_kernel("adamw"); }
Test(kernels, reduce_partial) { check_kernel("reduce_partial"); }
Test(kernels, ternary_pack) { check_kernel("ternary_pack"); }
Test(kernels, cols_copy) { check_kernel("cols_copy"); }
Test(kernels, act_round) { check_kernel("act_round"); }

Test(kernels, every_kernel_has_a_test)
{
    /* a kernel added to the registry without a Test above fails here */
    static const char *const tested[] = {
        "quantize_act", "ternary_matmul", "ternary_matmul_t", "f16_matmul",
        "lora_fwd", "lora_bwd", "f16_matmul_t", "f32_matmul", "embed", "embed_f16",
        "embed_bwd", "rmsnorm", "rmsnorm_bwd", "rope", "attention",
        "attention_bwd", "swiglu", "swiglu_bwd", "axpby", "fill",
        "cross_entropy", "adamw", "reduce_partial", "ternary_pack", "cols_copy",
        "act_round", NULL,
    };
    for (int i = 0; qv_kernels[i]; i++) {
        int found = 0;
        for (int j = 0; tested[j] && !found; j++)
            found = !strcmp(tested[j], qv_kernels[i]->name);
        cr_expect(found, "kernel %s has no test in test_kernels.c",
                  qv_kernels[i]->name);
    }
}

Test(kernels, lora_rank_range)
{
    /* rank 1 and rank 128 on every device, default configuration */
    const qv_kernel_decl *k = qv_kernel_find("lora_bwd");
    qv_device *ref = qv_devlist_find(devs, "ref");
    for (size_t d = 0; d < devs->n; d++)
        for (int R = 1; R <= 128 && devs->dev[d] != ref; R *= 2) {
            qv_verify_result r;
            qv_shape s = {5, 20, 30, R};
            cr_assert_eq(qv_verify(devs->dev[d], ref, k, NULL, s, (uint64_t)R,
                                   &r, NULL), QV_OK);
            cr_expect(r.pass, "%s R=%d: %g", devs->dev[d]->info.id, R, r.max_err);
        }
    qv_verify_result r;
    qv_err e;
    qv_shape s = {5, 20, 30, 129};
    cr_expect_eq(qv_verify(ref, ref, k, NULL, s, 1, &r, &e), QV_ERR_INVALID);
    cr_expect(strstr(e.msg, "R = 129") != NULL, "%s", e.msg);
}

/* The verifier itself must catch a wrong result: feed it a device whose
 * launch corrupts the output. */
static const qv_backend_iface *real_iface;
static qv_status broken_launch(qv_device *dev, const qv_kernel_decl *k,
                               const qv_config *c, const qv_arg *args,
                               uint64_t *ns, qv_err *err)
{
    qv_status s = real_iface->launch(dev, k, c, args, ns, err);
    if (!s) {
        float bump = 1.0f;
        float v;
        qv_buffer *y = args[3].u.buf; /* ternary_matmul's Y */
        qv_buffer_read(y, 4, &v, 4, NULL);
        v += bump;
        qv_buffer_write(y, 4, &v, 4, NULL);
    }
    return s;
}

Test(kernels, verifier_catches_a_wrong_result)
{
    qv_device *ref = qv_devlist_find(devs, "ref");
    real_iface = ref->iface;
    qv_backend_iface broken = *ref->iface;
    broken.launch = broken_launch;
    qv_device fake = *ref;
    fake.iface = &broken;
    strcpy(fake.info.id, "broken");
    qv_verify_result r;
    qv_shape s = {3, 5, 40, 1};
    cr_assert_eq(qv_verify(&fake, ref, qv_kernel_find("ternary_matmul"), NULL, s,
                           9, &r, NULL), QV_OK);
    cr_expect(!r.pass, "a corrupted output passed with error %g", r.max_err);
    cr_expect_str_eq(r.worst, "Y");
}

/* act_round at the values random inputs never hit: exact ties of every
 * mode, the half overflow and subnormal edges, a q8_K block whose largest
 * magnitude appears with both signs. Every device equals the reference bit
 * for bit (llama.cpp's rounding is to nearest, ties to even). */
Test(kernels, act_round_ties_on_every_device)
{
    enum { K = 512 };
    float in[3][K] = {{0}};
    const float half_edge[] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65519.0f, 65520.0f,
                               0x1p-25f, 3 * 0x1p-25f, -2.5f * 0x1p-24f, 0x1p-14f - 0x1p-26f};
    const float bf_edge[] = {1.0f + 0x1p-8f, -(1.0f + 3 * 0x1p-8f), 3.0e38f};
    for (int i = 0; i < 8; i++)
        in[0][i] = half_edge[i];
    for (int i = 0; i < 3; i++)
        in[1][i] = bf_edge[i];
    /* q8_K: iscale = -127 / (-127/64) = 64: codes rint(k / 2) */
    in[2][0] = -127.0f / 64.0f;
    in[2][1] = 127.0f / 64.0f;
    for (int k = 2; k < 40; k++)
        in[2][k] = (float)(k - 21) / 128.0f;
    qv_device *ref = qv_devlist_find(devs, "ref");
    cr_assert_not_null(ref);
    for (int mode = 1; mode <= 3; mode++) {
        float want[K], got[K];
        memcpy(want, in[mode - 1], sizeof want);
        /* the reference first (d = -1), then every other device */
        for (long d = -1; d < (long)devs->n; d++) {
            qv_device *dev = d < 0 ? ref : devs->dev[d];
            if (d >= 0 && dev == ref)
                continue;
            qv_err e = {0};
            qv_buffer *b = NULL;
            cr_assert_eq(qv_buffer_new(dev, sizeof want, &b, &e), QV_OK, "%s", e.msg);
            cr_assert_eq(qv_buffer_write(b, 0, in[mode - 1], sizeof want, &e), QV_OK);
            qv_arg a[4] = {QV_ARG_B(b), QV_ARG_I(1), QV_ARG_I(K), QV_ARG_I(mode)};
            cr_assert_eq(qv_launch(dev, "act_round", NULL, a, 4, NULL, &e), QV_OK, "%s", e.msg);
            cr_assert_eq(qv_buffer_read(b, 0, dev == ref ? want : got, sizeof want, &e), QV_OK);
            qv_buffer_destroy(&b);
            if (d < 0)
                continue;
            for (int i = 0; i < K; i++)
                cr_expect(memcmp(&got[i], &want[i], 4) == 0,
                          "%s mode %d x[%d] = %a: %a, the reference %a", dev->info.id, mode,
                          i, (double)in[mode - 1][i], (double)got[i], (double)want[i]);
        }
    }
}
