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
    return QV_TOL_FLOAT;
}

static void fill_scalars(const qv_kernel_decl *k, qv_arg *args, qv_shape s)
{
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
    case QV_T_F32: {
        float *f = host;
        int pos = !strcmp(d->name, "x_scale");
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

qv_status qv_verify(qv_device *dev, qv_device *ref, const qv_kernel_decl *k,
                    const qv_config *c, qv_shape s, uint64_t seed,
                    qv_verify_result *res, qv_err *err)
{
    memset(res, 0, sizeof *res);
    res->tol = qv_verify_tolerance(k);
    qv_arg dargs[QV_MAX_ARGS], rargs[QV_MAX_ARGS];
    memset(dargs, 0, sizeof dargs);
    fill_scalars(k, dargs, s);
    /* Sizes come from the declaration; buffers are placeholders for now. */
    size_t need[QV_MAX_ARGS] = {0};
    qv_buffer fake[QV_MAX_ARGS];
    memset(fake, 0, sizeof fake);
    for (int i = 0; i < k->n_args; i++)
        if (k->args[i].kind == QV_ARG_BUF) {
            fake[i].bytes = SIZE_MAX;
            dargs[i] = QV_ARG_B(&fake[i]);
        }
    qv_status st = k->check_args(k, dargs, need, err);
    if (st)
        return st;
    memcpy(rargs, dargs, sizeof rargs);

    qv_buffer *db[QV_MAX_ARGS] = {0}, *rb[QV_MAX_ARGS] = {0};
    void *host[QV_MAX_ARGS] = {0}, *back[QV_MAX_ARGS] = {0};
    qv_rng rng = {seed};
    int b = 0;
    for (int i = 0; i < k->n_args && !st; i++) {
        if (k->args[i].kind != QV_ARG_BUF)
            continue;
        size_t bytes = need[b++];
        host[i] = calloc(1, bytes);
        back[i] = calloc(1, bytes);
        if (!host[i] || !back[i]) {
            st = qv_fail(err, QV_ERR_NOMEM, "verify: out of host memory");
            break;
        }
        if (k->args[i].access & QV_IN)
            st = make_input(k, &k->args[i], dargs, bytes, &rng, host[i], err);
        if (!st)
            st = qv_buffer_new(dev, bytes, &db[i], err);
        if (!st)
            st = qv_buffer_new(ref, bytes, &rb[i], err);
        /* outputs start from the same bytes on both sides too */
        if (!st)
            st = qv_buffer_write(db[i], 0, host[i], bytes, err);
        if (!st)
            st = qv_buffer_write(rb[i], 0, host[i], bytes, err);
        dargs[i] = QV_ARG_B(db[i]);
        rargs[i] = QV_ARG_B(rb[i]);
    }
    if (!st)
        st = qv_launch(ref, k->name, NULL, rargs, k->n_args, NULL, err);
    if (!st)
        st = qv_launch(dev, k->name, c, dargs, k->n_args, NULL, err);
    if (!st)
        st = qv_device_sync(dev, err);
    b = 0;
    for (int i = 0; i < k->n_args && !st; i++) {
        if (k->args[i].kind != QV_ARG_BUF)
            continue;
        size_t bytes = need[b++];
        if (!(k->args[i].access & QV_OUT))
            continue;
        st = qv_buffer_read(db[i], 0, back[i], bytes, err);
        if (!st)
            st = qv_buffer_read(rb[i], 0, host[i], bytes, err);
        if (st)
            break;
        double e = compare(k->args[i].elem, back[i], host[i], bytes);
        if (e > res->max_err || res->worst[0] == '\0') {
            res->max_err = fmax(res->max_err, e);
            strncpy(res->worst, k->args[i].name, sizeof res->worst - 1);
        }
    }
    res->pass = !st && res->max_err <= res->tol;
    for (int i = 0; i < k->n_args; i++) {
        qv_buffer_destroy(&db[i]);
        qv_buffer_destroy(&rb[i]);
        free(host[i]);
        free(back[i]);
    }
    return st;
}
