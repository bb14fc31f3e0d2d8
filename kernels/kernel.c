/* kernels/kernel.c — the declarations of every kernel: arguments, tunable
 * parameters, constraints, geometry. See kernel.h for the conventions.
 *
 * The matmul-shaped kernels share one parameter set:
 *   WG_X, WG_Y  work-group shape (x runs along the output's columns)
 *   TX, TY      outputs per work-item along x and y (register tile)
 *   LOCAL       0: operands read straight from global memory;
 *               1: the group stages tiles of both operands in local memory
 *   KT          with LOCAL=1, the depth of the staged tile, in packed words
 *               (16 weights) for ternary_matmul and in 8 elements for the
 *               float reductions (LOCAL=0 requires KT=1)
 * so one work-group computes a (WG_Y*TY) x (WG_X*TX) block of the output.
 */
#include "kernels/kernel.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/kernel_impl.h"

/* The register-tiled matmuls' parameters, with each kernel's default
 * work-group width and tile: what measured fastest on PoCL at the ~700M
 * model's shapes (the column-vector stages want TX = 16, the dot stages a
 * tall tile), so that an untuned run is not a straw man. */
#define MM_PARAMS_D(WGX, WGY, TXD, TYD)                                        \
    .n_params = 6,                                                             \
    .params = {                                                                \
        {"WG_X", "work-group width (output columns)", 3, {8, 16, 32}, WGX},     \
        {"WG_Y", "work-group height (output rows)", 3, {1, 2, 4}, WGY},         \
        {"TX", "outputs per work-item along x", 5, {1, 2, 4, 8, 16}, TXD},     \
        {"TY", "outputs per work-item along y", 4, {1, 2, 4, 8}, TYD},         \
        {"LOCAL", "stage operand tiles in local memory", 2, {0, 1}, 0},         \
        {"KT", "depth of the staged tile (LOCAL=1 only)", 2, {1, 4}, 1},        \
    },                                                                         \
    .check_extra = mm_check_extra


enum { P_WG_X, P_WG_Y, P_TX, P_TY, P_LOCAL, P_KT };

/* Keeps the space to configurations that differ in the code they run:
 * KT only means something when tiles are staged. A register tile holds at
 * most 128 outputs (16 float16 accumulators of the OpenCL column-vector
 * path, TX = 16, TY = 8); past that every device we target spills. */
static qv_status mm_check_extra(const qv_config *c, qv_err *err)
{
    if (!c->v[P_LOCAL] && c->v[P_KT] != 1)
        return qv_fail(err, QV_ERR_INVALID,
                       "KT = %d needs LOCAL=1 (it is the depth of the staged "
                       "tile)", c->v[P_KT]);
    if (c->v[P_TX] * c->v[P_TY] > 128)
        return qv_fail(err, QV_ERR_INVALID,
                       "TX*TY = %d outputs per work-item; at most 128",
                       c->v[P_TX] * c->v[P_TY]);
    return QV_OK;
}

/* ---- shared helpers ------------------------------------------------------ */

static int64_t i64(const qv_arg *a) { return qv_arg_i64(a); }
#define MAX_ELEMS QV_MAX_ELEMS
#define ceil_to qv_ceil_to

static qv_status need_positive(const qv_kernel_decl *k, const qv_arg *args,
                               int idx, int64_t max, qv_err *err)
{
    return qv_need_range(k, args, idx, 1, max, err);
}

static qv_status check_elems(const qv_kernel_decl *k, const char *what,
                             int64_t a, int64_t b, qv_err *err)
{
    return qv_need_elems(k, what, a, b, err);
}

static uint64_t mm_local_float(const qv_config *c)
{
    if (!c->v[P_LOCAL])
        return 0;
    uint64_t rows = (uint64_t)c->v[P_WG_Y] * c->v[P_TY];
    uint64_t cols = (uint64_t)c->v[P_WG_X] * c->v[P_TX];
    return (rows + cols) * 8u * (uint64_t)c->v[P_KT] * 4u;
}

static void mm_grid(size_t ext_x, size_t ext_y, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    local[0] = (size_t)c->v[P_WG_X];
    local[1] = (size_t)c->v[P_WG_Y];
    size_t bx = local[0] * (size_t)c->v[P_TX];
    size_t by = local[1] * (size_t)c->v[P_TY];
    global[0] = ceil_to(ext_x, bx) / (size_t)c->v[P_TX];
    global[1] = ceil_to(ext_y, by) / (size_t)c->v[P_TY];
}

/* ---- quantize_act -------------------------------------------------------- */
/* args: X f32 (M,K) | Xq i8 (M,K) | x_scale f32 (M) | M | K */

static qv_status qa_check(const qv_kernel_decl *k, const qv_arg *a,
                          size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if ((s = need_positive(k, a, 3, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 4, MAX_ELEMS, err)) ||
        (s = check_elems(k, "X", i64(&a[3]), i64(&a[4]), err)))
        return s;
    size_t M = (size_t)a[3].u.i32, K = (size_t)a[4].u.i32;
    need[0] = M * K * 4;
    need[1] = M * K;
    need[2] = M * 4;
    return QV_OK;
}

static uint64_t qa_local(const qv_config *c)
{
    return c->v[0] > 1 ? (uint64_t)c->v[0] * (uint64_t)c->v[1] * 4u : 0;
}

static void qa_grid(int stage, const qv_arg *a, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    (void)stage;
    local[0] = (size_t)c->v[0];
    local[1] = (size_t)c->v[1];
    global[0] = local[0];
    global[1] = ceil_to((size_t)a[3].u.i32, local[1]);
}

static double qa_flops(const qv_arg *a) { return 3.0 * a[3].u.i32 * (double)a[4].u.i32; }
static double qa_bytes(const qv_arg *a) { return 5.0 * a[3].u.i32 * (double)a[4].u.i32; }

static const qv_kernel_decl k_quantize_act = {
    .name = "quantize_act",
    .summary = "int8 activation quantisation per row: s = 127/max|x|, "
               "q = clamp(round(x*s), -128, 127)",
    .n_args = 5,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"Xq", QV_ARG_BUF, QV_T_I8, QV_OUT},
        {"x_scale", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"M", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
    },
    .n_params = 3,
    .params = {
        {"WG_X", "work-items sharing one row (1: serial, >1: tree reduction "
                 "in local memory)", 9, {1, 2, 4, 8, 16, 32, 64, 128, 256}, 32},
        {"WG_Y", "rows per work-group", 3, {1, 2, 4}, 1},
        {"VEC", "load width in floats (4: float4 loads when K % 4 == 0)", 2,
         {1, 4}, 1},
    },
    .n_stages = 1,
    .stage_names = {"quantize_act"},
    .check_args = qa_check,
    .local_bytes = qa_local,
    .grid = qa_grid,
    .flops = qa_flops,
    .min_bytes = qa_bytes,
};

/* ---- ternary_matmul ------------------------------------------------------ */
/* args: Xq i8 (M,K) | x_scale f32 (M) | W u32 (N, ceil(K/16)) | Y f32 (M,N)
 *       | M | N | K | w_scale */

/* The OpenCL kernel sums the integer products in f32 lanes: exact while
 * 128 * K < 2^24. The largest released BitNet FFN is 28,672 wide. */
#define QV_TM_MAX_K 131072

static qv_status tm_check(const qv_kernel_decl *k, const qv_arg *a,
                          size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if ((s = need_positive(k, a, 4, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 5, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 6, QV_TM_MAX_K, err)) ||
        (s = check_elems(k, "Xq", i64(&a[4]), 16 * qv_ternary_row_words(a[6].u.i32), err)) ||
        (s = check_elems(k, "Y", i64(&a[4]), i64(&a[5]), err)) ||
        (s = check_elems(k, "W", i64(&a[5]), 16 * qv_ternary_row_words(a[6].u.i32), err)))
        return s;
    size_t M = (size_t)a[4].u.i32, N = (size_t)a[5].u.i32, K = (size_t)a[6].u.i32;
    need[0] = M * K;
    need[1] = M * 4;
    need[2] = N * (size_t)qv_ternary_row_words((int32_t)K) * 4;
    need[3] = M * N * 4;
    return QV_OK;
}

static uint64_t tm_local(const qv_config *c)
{
    if (!c->v[P_LOCAL])
        return 0;
    uint64_t rows = (uint64_t)c->v[P_WG_Y] * c->v[P_TY];
    uint64_t cols = (uint64_t)c->v[P_WG_X] * c->v[P_TX];
    return rows * 16u * (uint64_t)c->v[P_KT] + cols * 4u * (uint64_t)c->v[P_KT];
}

static void tm_grid(int stage, const qv_arg *a, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    (void)stage;
    mm_grid((size_t)a[5].u.i32, (size_t)a[4].u.i32, c, global, local);
}

static double tm_flops(const qv_arg *a)
{
    return 2.0 * a[4].u.i32 * (double)a[5].u.i32 * (double)a[6].u.i32;
}

static double tm_bytes(const qv_arg *a)
{
    double M = a[4].u.i32, N = a[5].u.i32, K = a[6].u.i32;
    return M * K + N * K / 4.0 + M * N * 4.0;
}

static const qv_kernel_decl k_ternary_matmul = {
    .name = "ternary_matmul",
    .summary = "Y(M,N) = (Xq(M,K) . W(N,K)^T) * w_scale / x_scale[m]; W ternary, "
               "2 bits a weight; int32 accumulation",
    .n_args = 8,
    .args = {
        {"Xq", QV_ARG_BUF, QV_T_I8, QV_IN},
        {"x_scale", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"W", QV_ARG_BUF, QV_T_U32, QV_IN},
        {"Y", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"M", QV_ARG_I32, QV_T_NONE, 0},
        {"N", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
        {"w_scale", QV_ARG_F32, QV_T_NONE, 0},
    },
    MM_PARAMS_D(16, 1, 4, 4),
    .n_stages = 1,
    .stage_names = {"ternary_matmul"},
    .check_args = tm_check,
    .local_bytes = tm_local,
    .grid = tm_grid,
    .flops = tm_flops,
    .min_bytes = tm_bytes,
};

/* ---- ternary_matmul_t ---------------------------------------------------- */
/* args: dY f32 (M,N) | W u32 (N, ceil(K/16)) | dX f32 (M,K) | M | N | K | w_scale */

static qv_status tt_check(const qv_kernel_decl *k, const qv_arg *a,
                          size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if ((s = need_positive(k, a, 3, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 4, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 5, MAX_ELEMS, err)) ||
        (s = check_elems(k, "dY", i64(&a[3]), i64(&a[4]), err)) ||
        (s = check_elems(k, "dX", i64(&a[3]), i64(&a[5]), err)) ||
        (s = check_elems(k, "W", i64(&a[4]), 16 * qv_ternary_row_words(a[5].u.i32), err)))
        return s;
    size_t M = (size_t)a[3].u.i32, N = (size_t)a[4].u.i32, K = (size_t)a[5].u.i32;
    need[0] = M * N * 4;
    need[1] = N * (size_t)qv_ternary_row_words((int32_t)K) * 4;
    need[2] = M * K * 4;
    return QV_OK;
}

static void tt_grid(int stage, const qv_arg *a, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    (void)stage;
    mm_grid((size_t)a[5].u.i32, (size_t)a[3].u.i32, c, global, local);
}

static double tt_flops(const qv_arg *a)
{
    return 2.0 * a[3].u.i32 * (double)a[4].u.i32 * (double)a[5].u.i32;
}

static double tt_bytes(const qv_arg *a)
{
    double M = a[3].u.i32, N = a[4].u.i32, K = a[5].u.i32;
    return M * N * 4.0 + N * K / 4.0 + M * K * 4.0;
}

static const qv_kernel_decl k_ternary_matmul_t = {
    .name = "ternary_matmul_t",
    .summary = "dX(M,K) = w_scale * dY(M,N) . W(N,K); the packed ternary W "
               "read transposed, f32 accumulation",
    .n_args = 7,
    .args = {
        {"dY", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"W", QV_ARG_BUF, QV_T_U32, QV_IN},
        {"dX", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"M", QV_ARG_I32, QV_T_NONE, 0},
        {"N", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
        {"w_scale", QV_ARG_F32, QV_T_NONE, 0},
    },
    MM_PARAMS_D(16, 4, 16, 8),
    .n_stages = 1,
    .stage_names = {"ternary_matmul_t"},
    .check_args = tt_check,
    .local_bytes = mm_local_float,
    .grid = tt_grid,
    .flops = tt_flops,
    .min_bytes = tt_bytes,
};

/* ---- f16_matmul ---------------------------------------------------------- */
/* args: X f32 (M,K) | W f16 (N,K) | Y f32 (M,N) | M | N | K */

static qv_status fm_check(const qv_kernel_decl *k, const qv_arg *a,
                          size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if ((s = need_positive(k, a, 3, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 4, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 5, MAX_ELEMS, err)) ||
        (s = check_elems(k, "X", i64(&a[3]), i64(&a[5]), err)) ||
        (s = check_elems(k, "W", i64(&a[4]), i64(&a[5]), err)) ||
        (s = check_elems(k, "Y", i64(&a[3]), i64(&a[4]), err)))
        return s;
    size_t M = (size_t)a[3].u.i32, N = (size_t)a[4].u.i32, K = (size_t)a[5].u.i32;
    need[0] = M * K * 4;
    need[1] = N * K * 2;
    need[2] = M * N * 4;
    return QV_OK;
}

static void fm_grid(int stage, const qv_arg *a, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    (void)stage;
    mm_grid((size_t)a[4].u.i32, (size_t)a[3].u.i32, c, global, local);
}

static double fm_flops(const qv_arg *a)
{
    return 2.0 * a[3].u.i32 * (double)a[4].u.i32 * (double)a[5].u.i32;
}

static double fm_bytes(const qv_arg *a)
{
    double M = a[3].u.i32, N = a[4].u.i32, K = a[5].u.i32;
    return M * K * 4.0 + N * K * 2.0 + M * N * 4.0;
}

static const qv_kernel_decl k_f16_matmul = {
    .name = "f16_matmul",
    .summary = "Y(M,N) = X(M,K) . W(N,K)^T with W in IEEE half; f32 accumulation",
    .n_args = 6,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"W", QV_ARG_BUF, QV_T_F16, QV_IN},
        {"Y", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"M", QV_ARG_I32, QV_T_NONE, 0},
        {"N", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
    },
    MM_PARAMS_D(16, 1, 2, 8),
    .n_stages = 1,
    .stage_names = {"f16_matmul"},
    .check_args = fm_check,
    .local_bytes = mm_local_float,
    .grid = fm_grid,
    .flops = fm_flops,
    .min_bytes = fm_bytes,
};

/* ---- lora_fwd ------------------------------------------------------------ */
/* args: X f32 (M,K) | A f32 (R,K) | B f32 (N,R) | H f32 (M,R) | Y f32 (M,N)
 *       | M | N | K | R | scale
 * stage 0: H = X . A^T ; stage 1: Y += scale * H . B^T */

#define QV_LORA_MAX_RANK 128

static qv_status lora_dims(const qv_kernel_decl *k, const qv_arg *a, int iM,
                           qv_err *err)
{
    qv_status s;
    if ((s = need_positive(k, a, iM, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, iM + 1, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, iM + 2, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, iM + 3, QV_LORA_MAX_RANK, err)) ||
        (s = check_elems(k, "X", i64(&a[iM]), i64(&a[iM + 2]), err)) ||
        (s = check_elems(k, "Y", i64(&a[iM]), i64(&a[iM + 1]), err)) ||
        (s = check_elems(k, "A", i64(&a[iM + 3]), i64(&a[iM + 2]), err)) ||
        (s = check_elems(k, "B", i64(&a[iM + 1]), i64(&a[iM + 3]), err)) ||
        (s = check_elems(k, "H", i64(&a[iM]), i64(&a[iM + 3]), err)))
        return s;
    return QV_OK;
}

static qv_status lf_check(const qv_kernel_decl *k, const qv_arg *a,
                          size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s = lora_dims(k, a, 5, err);
    if (s)
        return s;
    size_t M = (size_t)a[5].u.i32, N = (size_t)a[6].u.i32;
    size_t K = (size_t)a[7].u.i32, R = (size_t)a[8].u.i32;
    need[0] = M * K * 4;
    need[1] = R * K * 4;
    need[2] = N * R * 4;
    need[3] = M * R * 4;
    need[4] = M * N * 4;
    return QV_OK;
}

static void lf_grid(int stage, const qv_arg *a, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    size_t M = (size_t)a[5].u.i32, N = (size_t)a[6].u.i32, R = (size_t)a[8].u.i32;
    if (stage == 0)
        mm_grid(R, M, c, global, local);
    else
        mm_grid(N, M, c, global, local);
}

static double lf_flops(const qv_arg *a)
{
    double M = a[5].u.i32, N = a[6].u.i32, K = a[7].u.i32, R = a[8].u.i32;
    return 2.0 * M * K * R + 2.0 * M * N * R;
}

static double lf_bytes(const qv_arg *a)
{
    double M = a[5].u.i32, N = a[6].u.i32, K = a[7].u.i32, R = a[8].u.i32;
    return 4.0 * (M * K + R * K + N * R + 2.0 * M * R + 2.0 * M * N);
}

static const qv_kernel_decl k_lora_fwd = {
    .name = "lora_fwd",
    .summary = "LoRA forward: H = X.A^T, Y += scale * H.B^T (scale = alpha/r)",
    .n_args = 10,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"A", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"B", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"H", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"Y", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"M", QV_ARG_I32, QV_T_NONE, 0},
        {"N", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
        {"R", QV_ARG_I32, QV_T_NONE, 0},
        {"scale", QV_ARG_F32, QV_T_NONE, 0},
    },
    MM_PARAMS_D(16, 1, 1, 8),
    .n_stages = 2,
    .stage_names = {"lora_fwd_h", "lora_fwd_y"},
    .check_args = lf_check,
    .local_bytes = mm_local_float,
    .grid = lf_grid,
    .flops = lf_flops,
    .min_bytes = lf_bytes,
};

/* ---- lora_bwd ------------------------------------------------------------ */
/* args: X (M,K) | A (R,K) | B (N,R) | H (M,R) | dY (M,N) | dH (M,R) |
 *       dA (R,K) | dB (N,R) | dX (M,K) | M | N | K | R | scale
 * stage 0: dH  = scale * dY . B
 * stage 1: dB  = scale * dY^T . H
 * stage 2: dA  = dH^T . X
 * stage 3: dX += dH . A */

static qv_status lb_check(const qv_kernel_decl *k, const qv_arg *a,
                          size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s = lora_dims(k, a, 9, err);
    if (s)
        return s;
    size_t M = (size_t)a[9].u.i32, N = (size_t)a[10].u.i32;
    size_t K = (size_t)a[11].u.i32, R = (size_t)a[12].u.i32;
    need[0] = M * K * 4;
    need[1] = R * K * 4;
    need[2] = N * R * 4;
    need[3] = M * R * 4;
    need[4] = M * N * 4;
    need[5] = M * R * 4;
    need[6] = R * K * 4;
    need[7] = N * R * 4;
    need[8] = M * K * 4;
    return QV_OK;
}

static void lb_grid(int stage, const qv_arg *a, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    size_t M = (size_t)a[9].u.i32, N = (size_t)a[10].u.i32;
    size_t K = (size_t)a[11].u.i32, R = (size_t)a[12].u.i32;
    switch (stage) {
    case 0: mm_grid(R, M, c, global, local); break;
    case 1: mm_grid(R, N, c, global, local); break;
    case 2: mm_grid(K, R, c, global, local); break;
    default: mm_grid(K, M, c, global, local); break;
    }
}

static double lb_flops(const qv_arg *a)
{
    double M = a[9].u.i32, N = a[10].u.i32, K = a[11].u.i32, R = a[12].u.i32;
    return 4.0 * M * N * R + 4.0 * M * K * R;
}

static double lb_bytes(const qv_arg *a)
{
    double M = a[9].u.i32, N = a[10].u.i32, K = a[11].u.i32, R = a[12].u.i32;
    return 4.0 * (3.0 * M * K + 2.0 * R * K + 2.0 * N * R + 2.0 * M * R + M * N);
}

static const qv_kernel_decl k_lora_bwd = {
    .name = "lora_bwd",
    .summary = "LoRA backward: dH = s*dY.B, dB = s*dY^T.H, dA = dH^T.X, "
               "dX += dH.A",
    .n_args = 14,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"A", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"B", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"H", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"dY", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"dH", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"dA", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"dB", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"dX", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"M", QV_ARG_I32, QV_T_NONE, 0},
        {"N", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
        {"R", QV_ARG_I32, QV_T_NONE, 0},
        {"scale", QV_ARG_F32, QV_T_NONE, 0},
    },
    MM_PARAMS_D(8, 1, 16, 4),
    .n_stages = 4,
    .stage_names = {"lora_bwd_dh", "lora_bwd_db", "lora_bwd_da", "lora_bwd_dx"},
    .check_args = lb_check,
    .local_bytes = mm_local_float,
    .grid = lb_grid,
    .flops = lb_flops,
    .min_bytes = lb_bytes,
};

/* ---- f16_matmul_t -------------------------------------------------------- */
/* args: dY f32 (M,N) | W f16 (N,K) | dX f32 (M,K) | M | N | K
 * The backward of f16_matmul through its input: dX = dY . W. */

static qv_status ft_check(const qv_kernel_decl *k, const qv_arg *a,
                          size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if ((s = need_positive(k, a, 3, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 4, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 5, MAX_ELEMS, err)) ||
        (s = check_elems(k, "dY", i64(&a[3]), i64(&a[4]), err)) ||
        (s = check_elems(k, "W", i64(&a[4]), i64(&a[5]), err)) ||
        (s = check_elems(k, "dX", i64(&a[3]), i64(&a[5]), err)))
        return s;
    size_t M = (size_t)a[3].u.i32, N = (size_t)a[4].u.i32, K = (size_t)a[5].u.i32;
    need[0] = M * N * 4;
    need[1] = N * K * 2;
    need[2] = M * K * 4;
    return QV_OK;
}

static void ft_grid(int stage, const qv_arg *a, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    (void)stage;
    mm_grid((size_t)a[5].u.i32, (size_t)a[3].u.i32, c, global, local);
}

static const qv_kernel_decl k_f16_matmul_t = {
    .name = "f16_matmul_t",
    .summary = "dX(M,K) = dY(M,N) . W(N,K), W in IEEE half read transposed; "
               "f32 accumulation",
    .n_args = 6,
    .args = {
        {"dY", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"W", QV_ARG_BUF, QV_T_F16, QV_IN},
        {"dX", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"M", QV_ARG_I32, QV_T_NONE, 0},
        {"N", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
    },
    MM_PARAMS_D(16, 4, 16, 8),
    .n_stages = 1,
    .stage_names = {"f16_matmul_t"},
    .check_args = ft_check,
    .local_bytes = mm_local_float,
    .grid = ft_grid,
    .flops = fm_flops,
    .min_bytes = fm_bytes,
};

/* ---- f32_matmul ---------------------------------------------------------- */
/* args: A f32 | B f32 | C f32 (M,N) | M | N | K | ta | tb | acc
 * C = op(A) . op(B) (+ C when acc = 1); op(A) is (M,K): A is stored (M,K)
 * when ta = 0 and (K,M) when ta = 1; op(B) is (K,N): B is stored (K,N) when
 * tb = 0 and (N,K) when tb = 1. The output head, its backward and weight
 * gradients. */

static qv_status f32_check(const qv_kernel_decl *k, const qv_arg *a,
                           size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if ((s = need_positive(k, a, 3, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 4, MAX_ELEMS, err)) ||
        (s = need_positive(k, a, 5, MAX_ELEMS, err)) ||
        (s = qv_need_range(k, a, 6, 0, 1, err)) ||
        (s = qv_need_range(k, a, 7, 0, 1, err)) ||
        (s = qv_need_range(k, a, 8, 0, 1, err)) ||
        (s = check_elems(k, "A", i64(&a[3]), i64(&a[5]), err)) ||
        (s = check_elems(k, "B", i64(&a[5]), i64(&a[4]), err)) ||
        (s = check_elems(k, "C", i64(&a[3]), i64(&a[4]), err)))
        return s;
    size_t M = (size_t)a[3].u.i32, N = (size_t)a[4].u.i32, K = (size_t)a[5].u.i32;
    need[0] = M * K * 4;
    need[1] = K * N * 4;
    need[2] = M * N * 4;
    return QV_OK;
}

static void f32_example(qv_shape s, qv_arg *a)
{
    a[3] = QV_ARG_I(s.M);
    a[4] = QV_ARG_I(s.N);
    a[5] = QV_ARG_I(s.K);
    /* every layout and both output modes over the test shapes */
    a[6] = QV_ARG_I(s.N & 1);
    a[7] = QV_ARG_I(s.K & 1);
    a[8] = QV_ARG_I((s.M + s.N) & 1);
}

static const qv_kernel_decl k_f32_matmul = {
    .name = "f32_matmul",
    .summary = "C(M,N) [+]= op(A)(M,K) . op(B)(K,N), either operand stored "
               "transposed; f32",
    .n_args = 9,
    .args = {
        {"A", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"B", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"C", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"M", QV_ARG_I32, QV_T_NONE, 0},
        {"N", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
        {"ta", QV_ARG_I32, QV_T_NONE, 0},
        {"tb", QV_ARG_I32, QV_T_NONE, 0},
        {"acc", QV_ARG_I32, QV_T_NONE, 0},
    },
    MM_PARAMS_D(16, 1, 16, 4),
    .n_stages = 1,
    .stage_names = {"f32_matmul"},
    .check_args = f32_check,
    .local_bytes = mm_local_float,
    .grid = fm_grid,
    .flops = fm_flops,
    .min_bytes = fm_bytes,
    .example = f32_example,
};

/* ---- registry ------------------------------------------------------------ */

const qv_kernel_decl *const qv_kernels[] = {
    &k_quantize_act, &k_ternary_matmul, &k_ternary_matmul_t,
    &k_f16_matmul,   &k_lora_fwd,       &k_lora_bwd,
    &k_f16_matmul_t, &k_f32_matmul,
    &qv_k_embed,     &qv_k_embed_f16,   &qv_k_embed_bwd,   &qv_k_rmsnorm,
    &qv_k_rmsnorm_bwd, &qv_k_rope,      &qv_k_attention,
    &qv_k_attention_bwd, &qv_k_swiglu,  &qv_k_swiglu_bwd,
    &qv_k_axpby,     &qv_k_fill,        &qv_k_cross_entropy,
    &qv_k_adamw,     &qv_k_reduce_partial, &qv_k_ternary_pack,
    &qv_k_cols_copy,
    &qv_k_act_round,
    NULL,
};

/* Portable cap on work-group size: every GPU we target allows 256. */
#define QV_MAX_WG 256

const qv_kernel_decl *qv_kernel_find(const char *name)
{
    if (!name)
        return NULL;
    for (int i = 0; qv_kernels[i]; i++)
        if (strcmp(qv_kernels[i]->name, name) == 0)
            return qv_kernels[i];
    return NULL;
}

int qv_kernel_param_index(const qv_kernel_decl *k, const char *name)
{
    for (int i = 0; i < k->n_params; i++)
        if (strcmp(k->params[i].name, name) == 0)
            return i;
    return -1;
}

void qv_kernel_default_config(const qv_kernel_decl *k, qv_config *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < k->n_params; i++)
        out->v[i] = k->params[i].def;
}

qv_status qv_kernel_check_config(const qv_kernel_decl *k, const qv_config *c,
                                 const qv_limits *lim, qv_err *err)
{
    for (int i = 0; i < k->n_params; i++) {
        const qv_param_decl *p = &k->params[i];
        int ok = 0;
        for (int j = 0; j < p->n_values; j++)
            ok |= p->values[j] == c->v[i];
        if (!ok)
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: %s = %d is not a legal value (see `qvac "
                           "kernels`)", k->name, p->name, c->v[i]);
    }
    size_t wx = (size_t)c->v[0], wy = (size_t)c->v[1];
    if (wx * wy > QV_MAX_WG)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: work-group %zux%zu exceeds qvac's cap of %d "
                       "work-items", k->name, wx, wy, QV_MAX_WG);
    if (k->check_extra) {
        qv_err why;
        qv_status s = k->check_extra(c, &why);
        if (s)
            return qv_fail(err, s, "%s: %s", k->name, why.msg);
    }
    if (lim) {
        if (wx * wy > lim->max_wg_size || wx > lim->max_wg_dim[0] ||
            wy > lim->max_wg_dim[1])
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: work-group %zux%zu exceeds the device limit "
                           "(%zu work-items, %zux%zu per dimension)", k->name,
                           wx, wy, lim->max_wg_size, lim->max_wg_dim[0],
                           lim->max_wg_dim[1]);
        uint64_t lb = k->local_bytes ? k->local_bytes(c) : 0;
        if (lb > lim->local_mem_bytes)
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: configuration needs %llu bytes of local "
                           "memory; the device has %llu", k->name,
                           (unsigned long long)lb,
                           (unsigned long long)lim->local_mem_bytes);
    }
    return QV_OK;
}

qv_status qv_kernel_check_args(const qv_kernel_decl *k, const qv_arg *args,
                               int nargs, qv_err *err)
{
    if (!args || nargs != k->n_args)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: takes %d arguments, %d given", k->name, k->n_args,
                       args ? nargs : 0);
    for (int i = 0; i < nargs; i++) {
        if (args[i].kind != k->args[i].kind)
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: argument %d (%s) has the wrong kind", k->name,
                           i, k->args[i].name);
        if (args[i].kind == QV_ARG_BUF && !args[i].u.buf)
            return qv_fail(err, QV_ERR_INVALID, "%s: buffer %s is NULL",
                           k->name, k->args[i].name);
    }
    size_t need[QV_MAX_ARGS] = {0};
    qv_status s = k->check_args(k, args, need, err);
    if (s)
        return s;
    int b = 0;
    for (int i = 0; i < nargs; i++) {
        if (args[i].kind != QV_ARG_BUF)
            continue;
        if (args[i].u.buf->bytes < need[b])
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: buffer %s holds %zu bytes; the shape needs %zu",
                           k->name, k->args[i].name, args[i].u.buf->bytes,
                           need[b]);
        b++;
    }
    return QV_OK;
}

void qv_config_format(const qv_kernel_decl *k, const qv_config *c, char *buf,
                      size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < k->n_params && off < n; i++) {
        int w = snprintf(buf + off, n - off, "%s%s=%d", i ? "," : "",
                         k->params[i].name, c->v[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

qv_status qv_config_parse(const qv_kernel_decl *k, const char *s,
                          qv_config *out, qv_err *err)
{
    qv_kernel_default_config(k, out);
    if (!s || !*s || strcmp(s, "default") == 0)
        return QV_OK;
    char tmp[512];
    if (strlen(s) >= sizeof tmp)
        return qv_fail(err, QV_ERR_INVALID, "%s: configuration string too long",
                       k->name);
    strcpy(tmp, s);
    char *save = NULL;
    for (char *tok = strtok_r(tmp, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: '%s' is not NAME=VALUE", k->name, tok);
        *eq = '\0';
        int idx = qv_kernel_param_index(k, tok);
        if (idx < 0)
            return qv_fail(err, QV_ERR_INVALID, "%s: no parameter named '%s'",
                           k->name, tok);
        char *end = NULL;
        long v = strtol(eq + 1, &end, 10);
        if (!*(eq + 1) || *end || v < -1000000 || v > 1000000)
            return qv_fail(err, QV_ERR_INVALID, "%s: %s needs an integer",
                           k->name, tok);
        out->v[idx] = (int)v;
    }
    return QV_OK;
}

size_t qv_kernel_foreach_config(const qv_kernel_decl *k, const qv_limits *lim,
                                int (*fn)(const qv_config *c, void *user),
                                void *user)
{
    int idx[QV_MAX_PARAMS] = {0};
    size_t visited = 0;
    for (;;) {
        qv_config c;
        memset(&c, 0, sizeof c);
        for (int i = 0; i < k->n_params; i++)
            c.v[i] = k->params[i].values[idx[i]];
        if (qv_kernel_check_config(k, &c, lim, NULL) == QV_OK) {
            visited++;
            if (fn && fn(&c, user))
                return visited;
        }
        int i = k->n_params - 1;
        while (i >= 0 && ++idx[i] == k->params[i].n_values) {
            idx[i] = 0;
            i--;
        }
        if (i < 0)
            return visited;
    }
}

size_t qv_kernel_count_configs(const qv_kernel_decl *k, const qv_limits *lim)
{
    return qv_kernel_foreach_config(k, lim, NULL, NULL);
}
