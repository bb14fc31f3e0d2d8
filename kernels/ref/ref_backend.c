/* kernels/ref/ref_backend.c — the reference device ("ref"): buffers in host
 * memory, kernels run by ref_kernels.c, configurations checked but ignored.
 * Its timer is the host's monotonic clock. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/ref/ref_kernels.h"

#define REF_MAX_ALLOC ((uint64_t)1 << 34) /* 16 GiB: a sane host cap */

static void *bp(const qv_arg *a) { return a->u.buf->impl; }
#define I(i) (a[i].u.i32)
#define F(i) (a[i].u.f32)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static qv_status ref_alloc(qv_device *dev, size_t bytes, void **impl,
                           qv_err *err)
{
    *impl = calloc(1, bytes);
    if (!*impl)
        return qv_fail(err, QV_ERR_NOMEM, "%s: cannot allocate %zu bytes",
                       dev->info.id, bytes);
    return QV_OK;
}

static void ref_free(qv_device *dev, void *impl)
{
    (void)dev;
    free(impl);
}

static qv_status ref_write(qv_device *dev, void *impl, size_t off,
                           const void *src, size_t n, qv_err *err)
{
    (void)dev;
    (void)err;
    memcpy((char *)impl + off, src, n);
    return QV_OK;
}

static qv_status ref_read(qv_device *dev, void *impl, size_t off, void *dst,
                          size_t n, qv_err *err)
{
    (void)dev;
    (void)err;
    memcpy(dst, (const char *)impl + off, n);
    return QV_OK;
}

static qv_status ref_launch(qv_device *dev, const qv_kernel_decl *k,
                            const qv_config *c, const qv_arg *a,
                            uint64_t *device_ns, qv_err *err)
{
    (void)c;
    uint64_t t0 = now_ns();
    const char *n = k->name;
    if (!strcmp(n, "quantize_act"))
        qv_ref_quantize_act(bp(&a[0]), bp(&a[1]), bp(&a[2]), a[3].u.i32,
                            a[4].u.i32);
    else if (!strcmp(n, "ternary_matmul"))
        qv_ref_ternary_matmul(bp(&a[0]), bp(&a[1]), bp(&a[2]), bp(&a[3]),
                              a[4].u.i32, a[5].u.i32, a[6].u.i32, a[7].u.f32);
    else if (!strcmp(n, "ternary_matmul_t"))
        qv_ref_ternary_matmul_t(bp(&a[0]), bp(&a[1]), bp(&a[2]), a[3].u.i32,
                                a[4].u.i32, a[5].u.i32, a[6].u.f32);
    else if (!strcmp(n, "f16_matmul"))
        qv_ref_f16_matmul(bp(&a[0]), bp(&a[1]), bp(&a[2]), a[3].u.i32,
                          a[4].u.i32, a[5].u.i32);
    else if (!strcmp(n, "lora_fwd"))
        qv_ref_lora_fwd(bp(&a[0]), bp(&a[1]), bp(&a[2]), bp(&a[3]), bp(&a[4]),
                        a[5].u.i32, a[6].u.i32, a[7].u.i32, a[8].u.i32,
                        a[9].u.f32);
    else if (!strcmp(n, "lora_bwd"))
        qv_ref_lora_bwd(bp(&a[0]), bp(&a[1]), bp(&a[2]), bp(&a[3]), bp(&a[4]),
                        bp(&a[5]), bp(&a[6]), bp(&a[7]), bp(&a[8]), a[9].u.i32,
                        a[10].u.i32, a[11].u.i32, a[12].u.i32, a[13].u.f32);
    else if (!strcmp(n, "f16_matmul_t"))
        qv_ref_f16_matmul_t(bp(&a[0]), bp(&a[1]), bp(&a[2]), I(3), I(4), I(5));
    else if (!strcmp(n, "f32_matmul"))
        qv_ref_f32_matmul(bp(&a[0]), bp(&a[1]), bp(&a[2]), I(3), I(4), I(5),
                          I(6), I(7), I(8));
    else if (!strcmp(n, "embed"))
        qv_ref_embed(bp(&a[0]), bp(&a[1]), bp(&a[2]), I(3), I(4), I(5));
    else if (!strcmp(n, "embed_f16"))
        qv_ref_embed_f16(bp(&a[0]), bp(&a[1]), bp(&a[2]), I(3), I(4), I(5));
    else if (!strcmp(n, "embed_bwd"))
        qv_ref_embed_bwd(bp(&a[0]), bp(&a[1]), bp(&a[2]), I(3), I(4), I(5));
    else if (!strcmp(n, "rmsnorm"))
        qv_ref_rmsnorm(bp(&a[0]), bp(&a[1]), bp(&a[2]), I(3), I(4), F(5));
    else if (!strcmp(n, "rmsnorm_bwd"))
        qv_ref_rmsnorm_bwd(bp(&a[0]), bp(&a[1]), bp(&a[2]), bp(&a[3]),
                           bp(&a[4]), bp(&a[5]), I(6), I(7), F(8));
    else if (!strcmp(n, "rope"))
        qv_ref_rope(bp(&a[0]), bp(&a[1]), I(2), I(3), I(4), I(5), I(6), I(7));
    else if (!strcmp(n, "attention"))
        qv_ref_attention(bp(&a[0]), bp(&a[1]), bp(&a[2]), bp(&a[3]), I(4),
                         I(5), I(6), I(7), I(8), F(9));
    else if (!strcmp(n, "attention_bwd"))
        qv_ref_attention_bwd(bp(&a[0]), bp(&a[1]), bp(&a[2]), bp(&a[3]),
                             bp(&a[4]), bp(&a[5]), bp(&a[6]), bp(&a[7]),
                             bp(&a[8]), I(9), I(10), I(11), I(12), I(13),
                             F(14));
    else if (!strcmp(n, "swiglu"))
        qv_ref_swiglu(bp(&a[0]), bp(&a[1]), bp(&a[2]), I(3), I(4));
    else if (!strcmp(n, "swiglu_bwd"))
        qv_ref_swiglu_bwd(bp(&a[0]), bp(&a[1]), bp(&a[2]), bp(&a[3]),
                          bp(&a[4]), I(5), I(6));
    else if (!strcmp(n, "act_round"))
        qv_ref_act_round(bp(&a[0]), I(1), I(2), I(3));
    else if (!strcmp(n, "cols_copy"))
        qv_ref_cols_copy(bp(&a[0]), bp(&a[1]), I(2), I(3), I(4), I(5), I(6));
    else if (!strcmp(n, "axpby"))
        qv_ref_axpby(bp(&a[0]), bp(&a[1]), I(2), F(3), F(4));
    else if (!strcmp(n, "fill"))
        qv_ref_fill(bp(&a[0]), I(1), F(2));
    else if (!strcmp(n, "cross_entropy"))
        qv_ref_cross_entropy(bp(&a[0]), bp(&a[1]), bp(&a[2]), bp(&a[3]), I(4),
                             I(5), F(6));
    else if (!strcmp(n, "adamw"))
        qv_ref_adamw(bp(&a[0]), bp(&a[1]), bp(&a[2]), bp(&a[3]), I(4), F(5),
                     F(6), F(7), F(8), F(9), F(10), F(11), F(12));
    else if (!strcmp(n, "reduce_partial"))
        qv_ref_reduce_partial(bp(&a[0]), bp(&a[1]), I(2), I(3));
    else if (!strcmp(n, "ternary_pack"))
        qv_ref_ternary_pack(bp(&a[0]), bp(&a[1]), I(2), I(3), F(4));
    else
        return qv_fail(err, QV_ERR_NOT_FOUND, "%s: kernel '%s' has no reference "
                       "implementation", dev->info.id, n);
    if (device_ns)
        *device_ns = now_ns() - t0;
    return QV_OK;
}

static const qv_backend_iface ref_iface = {
    .name = "ref",
    .device_free = NULL,
    .buf_alloc = ref_alloc,
    .buf_free = ref_free,
    .buf_write = ref_write,
    .buf_read = ref_read,
    .launch = ref_launch,
    .synchronize = NULL,
};

qv_status qv_ref_enumerate(qv_devlist *list, qv_err *err)
{
    qv_device *d = calloc(1, sizeof *d);
    if (!d)
        return qv_fail(err, QV_ERR_NOMEM, "ref: out of host memory");
    d->iface = &ref_iface;
    qv_device_info *i = &d->info;
    strcpy(i->id, "ref");
    strcpy(i->backend, "ref");
    strcpy(i->vendor, "qvac");
    strcpy(i->name, "reference (plain C, single thread)");
    strcpy(i->driver, "qvac " QV_VERSION);
    i->compute_units = 1;
    /* its memory is the machine's: the physical memory, capped at 16 GiB
     * for one buffer */
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t phys = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : REF_MAX_ALLOC;
    i->global_mem_bytes = phys;
    i->local_mem_bytes = 1u << 20;
    i->max_alloc_bytes = phys < REF_MAX_ALLOC ? phys : REF_MAX_ALLOC;
    i->limits.max_wg_size = 1024;
    i->limits.max_wg_dim[0] = 1024;
    i->limits.max_wg_dim[1] = 1024;
    i->limits.max_wg_dim[2] = 64;
    i->limits.local_mem_bytes = i->local_mem_bytes;
    i->fp16 = 1;
    i->is_cpu = 1;
    qv_status s = qv_devlist_push(list, d, err);
    if (s)
        free(d);
    return s;
}
