/* kernels/kernel_impl.h — helpers shared by the kernel declaration files
 * (kernel.c: the matmuls; kernel_nn.c: the transformer kernels). Not part
 * of the public interface. */
#ifndef QV_KERNEL_IMPL_H
#define QV_KERNEL_IMPL_H

#include <stdint.h>

#include "kernels/kernel.h"

/* Sizes are bounded so that every element index fits in int32 inside the
 * kernels (they index with int). */
#define QV_MAX_ELEMS ((int64_t)INT32_MAX)

static inline size_t qv_ceil_to(size_t v, size_t m) { return (v + m - 1) / m * m; }

static inline int64_t qv_arg_i64(const qv_arg *a) { return (int64_t)a->u.i32; }

/* args[idx] is an int in 1..max, or an error naming the kernel and arg. */
static inline qv_status qv_need_range(const qv_kernel_decl *k,
                                      const qv_arg *args, int idx, int64_t min,
                                      int64_t max, qv_err *err)
{
    int64_t v = qv_arg_i64(&args[idx]);
    if (v < min || v > max)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: %s = %lld is out of range (%lld..%lld)", k->name,
                       k->args[idx].name, (long long)v, (long long)min,
                       (long long)max);
    return QV_OK;
}

static inline qv_status qv_need_elems(const qv_kernel_decl *k, const char *what,
                                      int64_t a, int64_t b, qv_err *err)
{
    if (a * b > QV_MAX_ELEMS)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: %s has %lld elements; at most %lld are supported",
                       k->name, what, (long long)(a * b),
                       (long long)QV_MAX_ELEMS);
    return QV_OK;
}

/* The transformer kernels, declared in kernel_nn.c. */
extern const qv_kernel_decl qv_k_embed, qv_k_embed_f16, qv_k_embed_bwd, qv_k_rmsnorm,
    qv_k_rmsnorm_bwd, qv_k_rope, qv_k_attention, qv_k_attention_bwd,
    qv_k_swiglu, qv_k_swiglu_bwd, qv_k_axpby, qv_k_fill, qv_k_cross_entropy,
    qv_k_adamw, qv_k_reduce_partial, qv_k_ternary_pack, qv_k_cols_copy,
    qv_k_act_round;

#endif
