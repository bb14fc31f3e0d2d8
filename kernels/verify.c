/* kernels/verify.c — see verify.h. Knows kernels only through their
 * declarations: inputs are made per argument, outputs compared per
 * argument, so a new kernel is verified without new code here (argument
 * names with special meaning: W with element type U32 is packed ternary,
 * x_scale is positive). */
#include "kernels/verify.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "kernels/ternary.h"

uint64_t qv_rng_next(qv_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float qv_rng_uniform(qv_rng *r, float lo, float hi)
{
    double u = (double)(qv_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

double qv_verify_tolerance(const qv_kernel_decl *k)
{
    if (!strcmp(k->name, "quantize_act"))
        return QV_TOL_CODES;
    if (!strcmp(k->name, "ternary_matmul"))
        return QV_TOL_TERNARY;
    if (!strcmp(k->name, "ternary_pack") || !strcmp(k->name, "embed") ||
        !strcmp(k->name, "embed_f16") ||
        !strcmp(k->name, "fill"))
        return 0.0; /* exact: codes, copies */
    return QV_TOL_FLOAT;
}

static void fill_scalars(const qv_kernel_decl *k, qv_arg *args, qv_shape s)
{
    if (k->example) {
        for (int i = 0; i < k->n_args; i++)
            if (k->args[i].kind == QV_ARG_I32)
                args[i] = QV_ARG_I(1);
            else if (k->args[i].kind == QV_ARG_F32)
                args[i] = QV_ARG_F(1.0f);
        k->example(s, args);
        return;
    }
    for (int i = 0; i < k->n_args; i++) {
        const char *n = k->args[i].name;
        if (k->args[i].kind == QV_ARG_I32) {
            int32_t v = !strcmp(n, "M") ? s.M : !strcmp(n, "N") ? s.N
                      : !strcmp(n, "K") ? s.K : !strcmp(n, "R") ? s.R : 1;
            args[i] = QV_ARG_I(v);
        } else if (k->args[i].kind == QV_ARG_F32) {
            /* w_scale: a typical absmean; scale: alpha / r with alpha = 2r */
            args[i] = QV_ARG_F(!strcmp(n, "w_scale") ? 0.0371f : 2.0f);
        }
    }
}

/* A per-launch figure of k at shape s, from the declaration's scalars. */
static double decl_figure(const qv_kernel_decl *k, qv_shape s,
                          double (*fig)(const qv_arg *args))
{
    qv_arg args[QV_MAX_ARGS];
    memset(args, 0, sizeof args);
    fill_scalars(k, args, s);
    return fig ? fig(args) : 0.0;
}

double qv_kernel_flops(const qv_kernel_decl *k, qv_shape s)
{
    return decl_figure(k, s, k->flops);
}

double qv_kernel_bytes(const qv_kernel_decl *k, qv_shape s)
{
    return decl_figure(k, s, k->min_bytes);
}

static int32_t scalar_named(const qv_kernel_decl *k, const qv_arg *args,
                            const char *name)
{
    for (int i = 0; i < k->n_args; i++)
        if (k->args[i].kind == QV_ARG_I32 && !strcmp(k->args[i].name, name))
            return args[i].u.i32;
    return 0;
}

static qv_status make_input(const qv_kernel_decl *k, const qv_arg_decl *d,
                            const qv_arg *args, size_t bytes, qv_rng *rng,
                            void *host, qv_err *err)
{
    if (d->elem == QV_T_U32 && !strcmp(d->name, "W")) {
        int32_t N = scalar_named(k, args, "N"), K = scalar_named(k, args, "K");
        size_t n = (size_t)N * (size_t)K;
        int8_t *w = malloc(n);
        if (!w)
            return qv_fail(err, QV_ERR_NOMEM, "verify: out of host memory");
        for (size_t i = 0; i < n; i++)
            w[i] = (int8_t)((int)(qv_rng_next(rng) % 3u) - 1);
        qv_status s = qv_ternary_pack(w, N, K, host, err);
        free(w);
        return s;
    }
    switch (d->elem) {
    case QV_T_I32: {
        /* token ids in 0..V-1; targets also -1 (ignored) about 1 in 8 */
        int32_t *v = host;
        int32_t V = scalar_named(k, args, "V");
        int tgt = !strcmp(d->name, "targets");
        for (size_t i = 0; i < bytes / 4; i++) {
            uint64_t r = qv_rng_next(rng);
            v[i] = tgt && r % 8u == 0 ? -1
                                      : (int32_t)((r >> 3) % (uint64_t)(V > 0 ? V : 1));
        }
        break;
    }
    case QV_T_F32: {
        float *f = host;
        /* quantities that are positive by construction */
        int pos = !strcmp(d->name, "x_scale") || !strcmp(d->name, "m2");
        for (size_t i = 0; i < bytes / 4; i++)
            f[i] = pos ? qv_rng_uniform(rng, 0.5f, 100.0f)
                       : qv_rng_uniform(rng, -1.0f, 1.0f);
        break;
    }
    case QV_T_F16: {
        uint16_t *h = host;
        for (size_t i = 0; i < bytes / 2; i++)
            h[i] = qv_f32_to_f16(qv_rng_uniform(rng, -1.0f, 1.0f));
        break;
    }
    case QV_T_I8: {
        int8_t *q = host;
        for (size_t i = 0; i < bytes; i++)
            q[i] = (int8_t)((int)(qv_rng_next(rng) % 256u) - 128);
        break;
    }
    default: {
        uint32_t *u = host;
        for (size_t i = 0; i < bytes / 4; i++)
            u[i] = (uint32_t)qv_rng_next(rng);
        break;
    }
    }
    return QV_OK;
}

static double compare(qv_elem e, const void *dev, const void *ref,
                      size_t bytes)
{
    double worst = 0.0;
    if (e == QV_T_I8) {
        const int8_t *a = dev, *b = ref;
        for (size_t i = 0; i < bytes; i++)
            worst = fmax(worst, fabs((double)a[i] - (double)b[i]));
        return worst;
    }
    if (e == QV_T_U32) {
        /* packed ternary codes: the largest code difference */
        const uint32_t *a = dev, *b = ref;
        for (size_t i = 0; i < bytes / 4; i++)
            for (int j = 0; j < 16; j++)
                worst = fmax(worst, fabs((double)((a[i] >> (2 * j)) & 3u) -
                                         (double)((b[i] >> (2 * j)) & 3u)));
        return worst;
    }
    const float *a = dev, *b = ref;
    size_t n = bytes / 4;
    double scale = 1e-30;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d || !isfinite(a[i]))
            return INFINITY; /* NaN or inf from the device is never right */
        worst = fmax(worst, d / scale);
    }
    return worst;
}

qv_status qv_instance_new(qv_device *dev, const qv_kernel_decl *k, qv_shape s,
                          uint64_t seed, qv_instance **out, qv_err *err)
{
    *out = NULL;
    qv_instance *in = calloc(1, sizeof *in);
    if (!in)
        return qv_fail(err, QV_ERR_NOMEM, "verify: out of host memory");
    in->k = k;
    in->dev = dev;
    fill_scalars(k, in->args, s);
    /* Sizes come from the declaration; buffers are placeholders for now. */
    size_t need[QV_MAX_ARGS] = {0};
    qv_buffer fake[QV_MAX_ARGS];
    memset(fake, 0, sizeof fake);
    for (int i = 0; i < k->n_args; i++)
        if (k->args[i].kind == QV_ARG_BUF) {
            fake[i].bytes = SIZE_MAX;
            in->args[i] = QV_ARG_B(&fake[i]);
        }
    qv_status st = k->check_args(k, in->args, need, err);
    qv_rng rng = {seed};
    for (int i = 0, b = 0; i < k->n_args && !st; i++) {
        if (k->args[i].kind != QV_ARG_BUF)
            continue;
        size_t bytes = need[b++];
        void *host = calloc(1, bytes);
        if (!host) {
            st = qv_fail(err, QV_ERR_NOMEM, "verify: out of host memory");
            break;
        }
        if (k->args[i].access & QV_IN)
            st = make_input(k, &k->args[i], in->args, bytes, &rng, host, err);
        if (!st)
            st = qv_buffer_new(dev, bytes, &in->buf[i], err);
        /* outputs start from known bytes too (zeros) */
        if (!st)
            st = qv_buffer_write(in->buf[i], 0, host, bytes, err);
        free(host);
        in->bytes[i] = bytes;
        in->args[i] = QV_ARG_B(in->buf[i]);
    }
    if (st) {
        qv_instance_destroy(&in);
        return st;
    }
    *out = in;
    return QV_OK;
}

void qv_instance_destroy(qv_instance **pin)
{
    if (!pin || !*pin)
        return;
    for (int i = 0; i < QV_MAX_ARGS; i++)
        qv_buffer_destroy(&(*pin)->buf[i]);
    free(*pin);
    *pin = NULL;
}

qv_status qv_verify(qv_device *dev, qv_device *ref, const qv_kernel_decl *k,
                    const qv_config *c, qv_shape s, uint64_t seed,
                    qv_verify_result *res, qv_err *err)
{
    memset(res, 0, sizeof *res);
    res->tol = qv_verify_tolerance(k);
    qv_instance *di = NULL, *ri = NULL;
    qv_status st = qv_instance_new(dev, k, s, seed, &di, err);
    if (!st)
        st = qv_instance_new(ref, k, s, seed, &ri, err);
    if (!st)
        st = qv_launch(ref, k->name, NULL, ri->args, k->n_args, NULL, err);
    if (!st)
        st = qv_launch(dev, k->name, c, di->args, k->n_args, NULL, err);
    if (!st)
        st = qv_device_sync(dev, err);
    void *a = NULL, *b = NULL;
    for (int i = 0; i < k->n_args && !st; i++) {
        if (k->args[i].kind != QV_ARG_BUF || !(k->args[i].access & QV_OUT))
            continue;
        size_t bytes = di->bytes[i];
        a = malloc(bytes);
        b = malloc(bytes);
        if (!a || !b)
            st = qv_fail(err, QV_ERR_NOMEM, "verify: out of host memory");
        if (!st)
            st = qv_buffer_read(di->buf[i], 0, a, bytes, err);
        if (!st)
            st = qv_buffer_read(ri->buf[i], 0, b, bytes, err);
        if (!st) {
            double e = compare(k->args[i].elem, a, b, bytes);
            if (e > res->max_err || res->worst[0] == '\0') {
                res->max_err = fmax(res->max_err, e);
                strncpy(res->worst, k->args[i].name, sizeof res->worst - 1);
            }
        }
        free(a);
        free(b);
        a = b = NULL;
    }
    res->pass = !st && res->max_err <= res->tol;
    qv_instance_destroy(&di);
    qv_instance_destroy(&ri);
    return st;
}
