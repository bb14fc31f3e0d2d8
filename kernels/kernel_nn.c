/* kernels/kernel_nn.c — declarations of the transformer kernels the training
 * engine needs beside the matmuls: embedding, RMSNorm, RoPE, causal
 * attention, gated MLP activations, cross-entropy, AdamW and a few
 * elementwise helpers, each with its backward pass where training needs one.
 * The maths of each is specified by kernels/ref/ref_nn.c.
 *
 * These kernels are memory-bound or small next to the matmuls; they share
 * one parameter set (work-group width) and one work-item per output element
 * or row, so their device code stays obvious. Every reduction runs in a
 * fixed order inside one work-item: results do not depend on the
 * configuration, and the reference backend is bit-for-bit deterministic. */
#include <math.h>
#include <string.h>

#include "kernels/kernel_impl.h"

#define EW_PARAMS                                                              \
    .n_params = 2,                                                             \
    .params = {                                                                \
        {"WG_X", "work-items per group", 4, {32, 64, 128, 256}, 64},            \
        {"WG_Y", "(always 1)", 1, {1}, 1},                                     \
    }

/* Largest head dimension the attention kernels support (private arrays). */
#define QV_ATTN_MAX_HD 128
/* Elements one work-item of reduce_partial sums. */
#define QV_REDUCE_CHUNK 1024

static int32_t ai(const qv_arg *a, int i) { return a[i].u.i32; }

/* One work-item per element of n (x only). */
static void grid_1d(size_t n, const qv_config *c, size_t global[2],
                    size_t local[2])
{
    local[0] = (size_t)c->v[0];
    local[1] = 1;
    global[0] = qv_ceil_to(n ? n : 1, local[0]);
    global[1] = 1;
}

/* One work-item per (row, column): x along columns, y along rows. */
static void grid_2d(size_t cols, size_t rows, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    local[0] = (size_t)c->v[0];
    local[1] = 1;
    global[0] = qv_ceil_to(cols, local[0]);
    global[1] = rows;
}

#define POS(i) (s = qv_need_range(k, a, (i), 1, QV_MAX_ELEMS, err))

/* ---- embed / embed_bwd ---------------------------------------------------- */
/* embed:     ids i32 (T) | E (V,D) | X (T,D) out | T | D | V
 *            X[t] = E[ids[t]] (a zero row for an id outside 0..V-1)
 * embed_f16: the same from an IEEE half table E (V,D): frozen embeddings
 *            (fine-tuning) are held in 16 bits
 * embed_bwd: ids (T) | dX (T,D) | dE (V,D) inout | T | D | V
 *            dE[v] += sum over t with ids[t] = v of dX[t], t ascending */

static qv_status emb_check(const qv_kernel_decl *k, const qv_arg *a,
                           size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(3) || POS(4) || POS(5) ||
        (s = qv_need_elems(k, "X", ai(a, 3), ai(a, 4), err)) ||
        (s = qv_need_elems(k, "E", ai(a, 5), ai(a, 4), err)))
        return s;
    size_t T = (size_t)ai(a, 3), D = (size_t)ai(a, 4), V = (size_t)ai(a, 5);
    need[0] = T * 4;
    if (!strcmp(k->name, "embed_f16")) {
        need[1] = V * D * 2;
        need[2] = T * D * 4;
    } else if (!strcmp(k->name, "embed")) {
        need[1] = V * D * 4;
        need[2] = T * D * 4;
    } else {
        need[1] = T * D * 4;
        need[2] = V * D * 4;
    }
    return QV_OK;
}

static void emb_grid(int stage, const qv_arg *a, const qv_config *c,
                     size_t global[2], size_t local[2])
{
    (void)stage;
    grid_2d((size_t)ai(a, 4), (size_t)ai(a, 3), c, global, local);
}

static void embb_grid(int stage, const qv_arg *a, const qv_config *c,
                      size_t global[2], size_t local[2])
{
    (void)stage;
    grid_2d((size_t)ai(a, 4), (size_t)ai(a, 5), c, global, local);
}

static void emb_example(qv_shape s, qv_arg *a)
{
    a[3] = QV_ARG_I(s.M);
    a[4] = QV_ARG_I(s.K);
    a[5] = QV_ARG_I(s.N);
}

const qv_kernel_decl qv_k_embed = {
    .name = "embed",
    .summary = "token embedding gather: X[t] = E[ids[t]]",
    .n_args = 6,
    .args = {
        {"ids", QV_ARG_BUF, QV_T_I32, QV_IN},
        {"E", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"X", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"T", QV_ARG_I32, QV_T_NONE, 0},
        {"D", QV_ARG_I32, QV_T_NONE, 0},
        {"V", QV_ARG_I32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"embed"},
    .check_args = emb_check,
    .grid = emb_grid,
    .example = emb_example,
};

const qv_kernel_decl qv_k_embed_f16 = {
    .name = "embed_f16",
    .summary = "token embedding gather from an IEEE half table: "
               "X[t] = (float)E[ids[t]]",
    .n_args = 6,
    .args = {
        {"ids", QV_ARG_BUF, QV_T_I32, QV_IN},
        {"E", QV_ARG_BUF, QV_T_F16, QV_IN},
        {"X", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"T", QV_ARG_I32, QV_T_NONE, 0},
        {"D", QV_ARG_I32, QV_T_NONE, 0},
        {"V", QV_ARG_I32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"embed_f16"},
    .check_args = emb_check,
    .grid = emb_grid,
    .example = emb_example,
};

const qv_kernel_decl qv_k_embed_bwd = {
    .name = "embed_bwd",
    .summary = "embedding backward: dE[v] += sum of dX[t] over ids[t] = v "
               "(deterministic, no atomics)",
    .n_args = 6,
    .args = {
        {"ids", QV_ARG_BUF, QV_T_I32, QV_IN},
        {"dX", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"dE", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"T", QV_ARG_I32, QV_T_NONE, 0},
        {"D", QV_ARG_I32, QV_T_NONE, 0},
        {"V", QV_ARG_I32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"embed_bwd"},
    .check_args = emb_check,
    .grid = embb_grid,
    .example = emb_example,
};

/* ---- rmsnorm / rmsnorm_bwd ------------------------------------------------ */
/* rmsnorm:     X (T,D) | g (D) | Y (T,D) out | T | D | eps
 *              r = 1/sqrt(mean(x^2) + eps); Y = X * r * g
 * rmsnorm_bwd: X | g | dY (T,D) | rstd (T) out | dX (T,D) inout |
 *              dg (D) inout | T | D | eps
 *   stage 0 (per row):    rstd[t] = r; with xh = x*r, gy = dY*g:
 *                         dX += r * (gy - xh * mean(gy * xh))
 *   stage 1 (per column): dg[d] += sum_t dY[t,d] * X[t,d] * rstd[t] */

static qv_status rms_check(const qv_kernel_decl *k, const qv_arg *a,
                           size_t need[QV_MAX_ARGS], qv_err *err)
{
    int bwd = !strcmp(k->name, "rmsnorm_bwd");
    int iT = bwd ? 6 : 3;
    qv_status s;
    if (POS(iT) || POS(iT + 1) ||
        (s = qv_need_elems(k, "X", ai(a, iT), ai(a, iT + 1), err)))
        return s;
    size_t T = (size_t)ai(a, iT), D = (size_t)ai(a, iT + 1);
    need[0] = T * D * 4;
    need[1] = D * 4;
    need[2] = T * D * 4;
    if (bwd) {
        need[3] = T * 4;
        need[4] = T * D * 4;
        need[5] = D * 4;
    }
    return QV_OK;
}

static void rms_grid(int stage, const qv_arg *a, const qv_config *c,
                     size_t global[2], size_t local[2])
{
    (void)stage;
    grid_1d((size_t)ai(a, 3), c, global, local);
}

static void rmsb_grid(int stage, const qv_arg *a, const qv_config *c,
                      size_t global[2], size_t local[2])
{
    grid_1d((size_t)ai(a, stage == 0 ? 6 : 7), c, global, local);
}

static void rms_example(qv_shape s, qv_arg *a)
{
    a[3] = QV_ARG_I(s.M);
    a[4] = QV_ARG_I(s.K);
    a[5] = QV_ARG_F(1e-5f);
}

static void rmsb_example(qv_shape s, qv_arg *a)
{
    a[6] = QV_ARG_I(s.M);
    a[7] = QV_ARG_I(s.K);
    a[8] = QV_ARG_F(1e-5f);
}

const qv_kernel_decl qv_k_rmsnorm = {
    .name = "rmsnorm",
    .summary = "RMSNorm per row: Y = X / sqrt(mean(X^2) + eps) * g",
    .n_args = 6,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"g", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"Y", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"T", QV_ARG_I32, QV_T_NONE, 0},
        {"D", QV_ARG_I32, QV_T_NONE, 0},
        {"eps", QV_ARG_F32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"rmsnorm"},
    .check_args = rms_check,
    .grid = rms_grid,
    .example = rms_example,
};

const qv_kernel_decl qv_k_rmsnorm_bwd = {
    .name = "rmsnorm_bwd",
    .summary = "RMSNorm backward: dX += d/dX, dg += d/dg (rstd recomputed)",
    .n_args = 9,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"g", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"dY", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"rstd", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"dX", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"dg", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"T", QV_ARG_I32, QV_T_NONE, 0},
        {"D", QV_ARG_I32, QV_T_NONE, 0},
        {"eps", QV_ARG_F32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 2,
    .stage_names = {"rmsnorm_bwd_dx", "rmsnorm_bwd_dg"},
    .check_args = rms_check,
    .grid = rmsb_grid,
    .example = rmsb_example,
};

/* ---- rope ------------------------------------------------------------------ */
/* X (T, H*hd) inout | cs (S, hd/2, 2) | T | H | hd | S | sign | neox
 * Rotary embedding: for row t, position p = t % S, pair i of every head,
 * the pair being elements (2i, 2i+1) of the head when neox = 0 (llama.cpp's
 * LLAMA_ROPE_TYPE_NORM) and (i, i + hd/2) when neox = 1 (LLAMA_ROPE_TYPE_NEOX,
 * what llama.cpp's `bitnet` uses):
 *   c = cs[p,i,0], s = sign * cs[p,i,1]
 *   (x0, x1) <- (x0*c - x1*s, x0*s + x1*c)
 * The cos/sin table is made on the host (in double) so every device agrees;
 * sign = -1 rotates back: the backward pass. */

static qv_status rope_check(const qv_kernel_decl *k, const qv_arg *a,
                            size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(2) || POS(3) || POS(4) || POS(5) ||
        (s = qv_need_range(k, a, 6, -1, 1, err)) ||
        (s = qv_need_range(k, a, 7, 0, 1, err)) ||
        (s = qv_need_elems(k, "X", ai(a, 2), (int64_t)ai(a, 3) * ai(a, 4), err)) ||
        (s = qv_need_elems(k, "cs", ai(a, 5), ai(a, 4), err)))
        return s;
    if (ai(a, 4) % 2 || ai(a, 6) == 0)
        return qv_fail(err, QV_ERR_INVALID,
                       "rope: hd = %d must be even and sign = %d must be +1 or "
                       "-1", ai(a, 4), ai(a, 6));
    size_t T = (size_t)ai(a, 2), H = (size_t)ai(a, 3), hd = (size_t)ai(a, 4);
    size_t S = (size_t)ai(a, 5);
    need[0] = T * H * hd * 4;
    need[1] = S * hd * 4;
    return QV_OK;
}

static void rope_grid(int stage, const qv_arg *a, const qv_config *c,
                      size_t global[2], size_t local[2])
{
    (void)stage;
    grid_2d((size_t)ai(a, 3) * (size_t)ai(a, 4) / 2, (size_t)ai(a, 2), c,
            global, local);
}

static void rope_example(qv_shape s, qv_arg *a)
{
    int hd = s.K < 128 ? s.K : 128;
    a[2] = QV_ARG_I(s.M);
    a[3] = QV_ARG_I(1 + s.N % 3);
    a[4] = QV_ARG_I(hd < 2 ? 2 : hd & ~1);
    a[5] = QV_ARG_I(s.M > 2 ? s.M / 2 : 1);
    a[6] = QV_ARG_I(s.K % 2 ? -1 : 1);
    a[7] = QV_ARG_I(s.N % 2);
}

const qv_kernel_decl qv_k_rope = {
    .name = "rope",
    .summary = "rotary position embedding (adjacent or NEOX pairs), in "
               "place; sign -1 is its backward",
    .n_args = 8,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"cs", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"T", QV_ARG_I32, QV_T_NONE, 0},
        {"H", QV_ARG_I32, QV_T_NONE, 0},
        {"hd", QV_ARG_I32, QV_T_NONE, 0},
        {"S", QV_ARG_I32, QV_T_NONE, 0},
        {"sign", QV_ARG_I32, QV_T_NONE, 0},
        {"neox", QV_ARG_I32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"rope"},
    .check_args = rope_check,
    .grid = rope_grid,
    .example = rope_example,
};

/* ---- attention / attention_bwd ---------------------------------------------- */
/* attention: Q (T, Hq*hd) | K (T, Hkv*hd) | V (T, Hkv*hd) | O (T, Hq*hd) out
 *            | B | S | Hq | Hkv | hd | scale          (T = B*S)
 * Causal softmax attention inside each of the B sequences of S tokens;
 * query head h reads key/value head h / (Hq/Hkv) (grouped-query):
 *   P[i,j] = softmax_j<=i(scale * Q_i . K_j),  O_i = sum_j P[i,j] V_j
 * attention_bwd: Q | K | V | dO | L (T*Hq) out | Dd (T*Hq) out |
 *            dQ out | dK out | dV out | B | S | Hq | Hkv | hd | scale
 *   stage 0, per (i, h): L = logsumexp of the scores (recomputed),
 *     Dd = sum_j P[i,j] (dO_i . V_j),
 *     dQ_i = scale * sum_j P[i,j] (dO_i . V_j - Dd) K_j
 *   stage 1, per (j, kv head): over i >= j and the heads of the group,
 *     dV_j = sum P[i,j] dO_i,  dK_j = scale * sum P[i,j] (dO_i.V_j - Dd_i) Q_i */

static int att_base(const qv_kernel_decl *k) { return !strcmp(k->name, "attention") ? 4 : 9; }

static qv_status att_check(const qv_kernel_decl *k, const qv_arg *a,
                           size_t need[QV_MAX_ARGS], qv_err *err)
{
    int b = att_base(k);
    qv_status s;
    if (POS(b) || POS(b + 1) || POS(b + 2) || POS(b + 3) ||
        (s = qv_need_range(k, a, b + 4, 1, QV_ATTN_MAX_HD, err)) ||
        (s = qv_need_elems(k, "T", ai(a, b), ai(a, b + 1), err)))
        return s;
    int64_t T = (int64_t)ai(a, b) * ai(a, b + 1);
    int64_t Hq = ai(a, b + 2), Hkv = ai(a, b + 3), hd = ai(a, b + 4);
    if (Hq % Hkv)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: Hq = %lld is not a multiple of Hkv = %lld",
                       k->name, (long long)Hq, (long long)Hkv);
    if ((s = qv_need_elems(k, "Q", T, Hq * hd, err)))
        return s;
    size_t q = (size_t)(T * Hq * hd) * 4, kv = (size_t)(T * Hkv * hd) * 4;
    need[0] = q;
    need[1] = kv;
    need[2] = kv;
    need[3] = q;
    if (b == 9) {
        need[4] = (size_t)(T * Hq) * 4;
        need[5] = (size_t)(T * Hq) * 4;
        need[6] = q;
        need[7] = kv;
        need[8] = kv;
    }
    return QV_OK;
}

static void att_grid(int stage, const qv_arg *a, const qv_config *c,
                     size_t global[2], size_t local[2])
{
    int b = a[4].kind == QV_ARG_I32 ? 4 : 9;
    size_t T = (size_t)ai(a, b) * (size_t)ai(a, b + 1);
    size_t H = (size_t)ai(a, stage == 0 ? b + 2 : b + 3);
    grid_1d(T * H, c, global, local);
}

static void att_set(qv_shape s, qv_arg *a, int b)
{
    int hd = s.K < QV_ATTN_MAX_HD ? s.K : QV_ATTN_MAX_HD;
    int hkv = 1 + s.N % 2;
    a[b] = QV_ARG_I(2);
    a[b + 1] = QV_ARG_I(s.M);
    a[b + 2] = QV_ARG_I(2 * hkv);
    a[b + 3] = QV_ARG_I(hkv);
    a[b + 4] = QV_ARG_I(hd);
    a[b + 5] = QV_ARG_F(1.0f / sqrtf((float)hd));
}

static void att_example(qv_shape s, qv_arg *a) { att_set(s, a, 4); }
static void attb_example(qv_shape s, qv_arg *a) { att_set(s, a, 9); }

static double att_flops(const qv_arg *a)
{
    int b = a[4].kind == QV_ARG_I32 ? 4 : 9;
    double B = ai(a, b), S = ai(a, b + 1), H = ai(a, b + 2), hd = ai(a, b + 4);
    return 2.0 * B * H * S * (S + 1) * hd; /* QK^T and PV, causal half */
}

const qv_kernel_decl qv_k_attention = {
    .name = "attention",
    .summary = "causal grouped-query softmax attention over B sequences of S "
               "tokens (online softmax, one work-item per query and head)",
    .n_args = 10,
    .args = {
        {"Q", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"K", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"V", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"O", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"B", QV_ARG_I32, QV_T_NONE, 0},
        {"S", QV_ARG_I32, QV_T_NONE, 0},
        {"Hq", QV_ARG_I32, QV_T_NONE, 0},
        {"Hkv", QV_ARG_I32, QV_T_NONE, 0},
        {"hd", QV_ARG_I32, QV_T_NONE, 0},
        {"scale", QV_ARG_F32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"attention"},
    .check_args = att_check,
    .grid = att_grid,
    .flops = att_flops,
    .example = att_example,
};

const qv_kernel_decl qv_k_attention_bwd = {
    .name = "attention_bwd",
    .summary = "attention backward: dQ per query, dK/dV per key "
               "(softmax statistics recomputed; no atomics)",
    .n_args = 15,
    .args = {
        {"Q", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"K", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"V", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"dO", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"L", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"Dd", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"dQ", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"dK", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"dV", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"B", QV_ARG_I32, QV_T_NONE, 0},
        {"S", QV_ARG_I32, QV_T_NONE, 0},
        {"Hq", QV_ARG_I32, QV_T_NONE, 0},
        {"Hkv", QV_ARG_I32, QV_T_NONE, 0},
        {"hd", QV_ARG_I32, QV_T_NONE, 0},
        {"scale", QV_ARG_F32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 2,
    .stage_names = {"attention_bwd_q", "attention_bwd_kv"},
    .check_args = att_check,
    .grid = att_grid,
    .example = attb_example,
};

/* ---- swiglu / swiglu_bwd ----------------------------------------------------- */
/* swiglu:     G | U | H out | n | act     H = f(G) * U,
 *             f = SiLU (act 0: g / (1 + e^-g)) or squared ReLU (act 1)
 * swiglu_bwd: G | U | dH | dG out | dU out | n | act
 *             dG = dH * U * f'(G), dU = dH * f(G) */

static qv_status glu_check(const qv_kernel_decl *k, const qv_arg *a,
                           size_t need[QV_MAX_ARGS], qv_err *err)
{
    int bwd = !strcmp(k->name, "swiglu_bwd");
    int in = bwd ? 5 : 3;
    qv_status s;
    if (POS(in) || (s = qv_need_range(k, a, in + 1, 0, 1, err)))
        return s;
    size_t n = (size_t)ai(a, in) * 4;
    for (int i = 0; i < in; i++)
        need[i] = n;
    return QV_OK;
}

static void glu_grid(int stage, const qv_arg *a, const qv_config *c,
                     size_t global[2], size_t local[2])
{
    (void)stage;
    grid_1d((size_t)ai(a, a[3].kind == QV_ARG_I32 ? 3 : 5), c, global, local);
}

static void glu_example(qv_shape s, qv_arg *a)
{
    a[3] = QV_ARG_I(s.M * s.K);
    a[4] = QV_ARG_I(s.N % 2);
}

static void glub_example(qv_shape s, qv_arg *a)
{
    a[5] = QV_ARG_I(s.M * s.K);
    a[6] = QV_ARG_I(s.N % 2);
}

const qv_kernel_decl qv_k_swiglu = {
    .name = "swiglu",
    .summary = "gated MLP activation: H = f(G) * U, f = SiLU or ReLU^2",
    .n_args = 5,
    .args = {
        {"G", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"U", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"H", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"n", QV_ARG_I32, QV_T_NONE, 0},
        {"act", QV_ARG_I32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"swiglu"},
    .check_args = glu_check,
    .grid = glu_grid,
    .example = glu_example,
};

const qv_kernel_decl qv_k_swiglu_bwd = {
    .name = "swiglu_bwd",
    .summary = "gated MLP activation backward: dG, dU",
    .n_args = 7,
    .args = {
        {"G", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"U", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"dH", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"dG", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"dU", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"n", QV_ARG_I32, QV_T_NONE, 0},
        {"act", QV_ARG_I32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"swiglu_bwd"},
    .check_args = glu_check,
    .grid = glu_grid,
    .example = glub_example,
};

/* ---- cols_copy ----------------------------------------------------------------- */
/* A (T, W) inout | B (T, Vw) inout | T | W | Vw | off | dir
 * dir 0: B[t, off + j] = A[t, j]; dir 1: A[t, j] = B[t, off + j]
 * (j < W, off + W <= Vw): a block of columns into or out of a wider
 * matrix. The output head of a large vocabulary is held in row blocks that
 * each fit the device's largest allocation; their logits are gathered into
 * the (T, V) logits and their gradients taken back out with this. */

static qv_status cols_check(const qv_kernel_decl *k, const qv_arg *a,
                            size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(2) || POS(3) || POS(4) || (s = qv_need_range(k, a, 5, 0, ai(a, 4) - 1, err)) ||
        (s = qv_need_range(k, a, 6, 0, 1, err)))
        return s;
    if ((int64_t)ai(a, 5) + ai(a, 3) > ai(a, 4))
        return qv_fail(err, QV_ERR_INVALID,
                       "cols_copy: columns %d..%d are outside the %d of B", ai(a, 5),
                       ai(a, 5) + ai(a, 3) - 1, ai(a, 4));
    need[0] = (size_t)ai(a, 2) * (size_t)ai(a, 3) * 4;
    need[1] = (size_t)ai(a, 2) * (size_t)ai(a, 4) * 4;
    return QV_OK;
}

static void cols_grid(int stage, const qv_arg *a, const qv_config *c,
                      size_t global[2], size_t local[2])
{
    (void)stage;
    grid_2d((size_t)ai(a, 3), (size_t)ai(a, 2), c, global, local);
}

static void cols_example(qv_shape s, qv_arg *a)
{
    int W = s.N > 1 ? s.N / 2 : 1;
    a[2] = QV_ARG_I(s.M);
    a[3] = QV_ARG_I(W);
    a[4] = QV_ARG_I(s.N + W);
    a[5] = QV_ARG_I(s.N % (W + 1));
    a[6] = QV_ARG_I(s.K % 2);
}

const qv_kernel_decl qv_k_cols_copy = {
    .name = "cols_copy",
    .summary = "a block of columns into (dir 0) or out of (dir 1) a wider matrix",
    .n_args = 7,
    .args = {
        {"A", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"B", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"T", QV_ARG_I32, QV_T_NONE, 0},
        {"W", QV_ARG_I32, QV_T_NONE, 0},
        {"Vw", QV_ARG_I32, QV_T_NONE, 0},
        {"off", QV_ARG_I32, QV_T_NONE, 0},
        {"dir", QV_ARG_I32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"cols_copy"},
    .check_args = cols_check,
    .grid = cols_grid,
    .example = cols_example,
};

/* ---- act_round ------------------------------------------------------------------ */
/* X (T, K) inout | T | K | mode
 * What llama.cpp's CPU matmuls do to their input, in place (qvac's
 * --act-quant llamacpp): mode 1 rounds every value to IEEE half (an F16
 * weight's vec_dot_type), 2 to bfloat16, 3 quantises each block of 256 to
 * q8_K as ggml's quantize_row_q8_K_ref (iscale = -127 / the signed value of
 * largest magnitude, first met; code = rint(iscale * x) clamped at 127) and
 * writes back code / iscale (TQ2_0 / TQ1_0 weights); 0 leaves X. Mode 3
 * needs K % 256 == 0. One work-item per (row, block of 256). */

static qv_status round_check(const qv_kernel_decl *k, const qv_arg *a,
                             size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(1) || POS(2) || (s = qv_need_range(k, a, 3, 0, 3, err)) ||
        (s = qv_need_elems(k, "X", ai(a, 1), ai(a, 2), err)))
        return s;
    if (ai(a, 3) == 3 && ai(a, 2) % 256)
        return qv_fail(err, QV_ERR_INVALID,
                       "act_round: q8_K blocks need K %% 256 == 0, got K = %d",
                       ai(a, 2));
    need[0] = (size_t)ai(a, 1) * (size_t)ai(a, 2) * 4;
    return QV_OK;
}

static void round_grid(int stage, const qv_arg *a, const qv_config *c,
                       size_t global[2], size_t local[2])
{
    (void)stage;
    grid_2d(((size_t)ai(a, 2) + 255) / 256, (size_t)ai(a, 1), c, global, local);
}

static void round_example(qv_shape s, qv_arg *a)
{
    int mode = 1 + (s.M + s.N + s.K) % 3; /* the test shapes reach all three */
    a[1] = QV_ARG_I(s.M);
    a[2] = QV_ARG_I(mode == 3 ? 256 * (1 + s.K % 3) : s.K);
    a[3] = QV_ARG_I(mode);
}

const qv_kernel_decl qv_k_act_round = {
    .name = "act_round",
    .summary = "llama.cpp's CPU activation rounding in place: f16, bf16 or q8_K blocks",
    .n_args = 4,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"T", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
        {"mode", QV_ARG_I32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"act_round"},
    .check_args = round_check,
    .grid = round_grid,
    .example = round_example,
};

/* ---- axpby / fill ------------------------------------------------------------ */
/* axpby: X | Y inout | n | alpha | beta   Y = alpha*X + beta*Y; with beta = 0
 *        Y is not read (a copy into uninitialised memory is safe)
 * fill:  Y out | n | value */

static qv_status axpby_check(const qv_kernel_decl *k, const qv_arg *a,
                             size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(2))
        return s;
    need[0] = need[1] = (size_t)ai(a, 2) * 4;
    return QV_OK;
}

static void axpby_grid(int stage, const qv_arg *a, const qv_config *c,
                       size_t global[2], size_t local[2])
{
    (void)stage;
    grid_1d((size_t)ai(a, 2), c, global, local);
}

static void axpby_example(qv_shape s, qv_arg *a)
{
    a[2] = QV_ARG_I(s.M * s.K);
    a[3] = QV_ARG_F(0.75f);
    a[4] = QV_ARG_F(s.N % 2 ? 0.0f : 1.0f);
}

const qv_kernel_decl qv_k_axpby = {
    .name = "axpby",
    .summary = "Y = alpha*X + beta*Y (beta 0: Y not read)",
    .n_args = 5,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"Y", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"n", QV_ARG_I32, QV_T_NONE, 0},
        {"alpha", QV_ARG_F32, QV_T_NONE, 0},
        {"beta", QV_ARG_F32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"axpby"},
    .check_args = axpby_check,
    .grid = axpby_grid,
    .example = axpby_example,
};

static qv_status fill_check(const qv_kernel_decl *k, const qv_arg *a,
                            size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(1))
        return s;
    need[0] = (size_t)ai(a, 1) * 4;
    return QV_OK;
}

static void fill_grid(int stage, const qv_arg *a, const qv_config *c,
                      size_t global[2], size_t local[2])
{
    (void)stage;
    grid_1d((size_t)ai(a, 1), c, global, local);
}

static void fill_example(qv_shape s, qv_arg *a)
{
    a[1] = QV_ARG_I(s.M * s.K);
    a[2] = QV_ARG_F(0.25f);
}

const qv_kernel_decl qv_k_fill = {
    .name = "fill",
    .summary = "Y[i] = value",
    .n_args = 3,
    .args = {
        {"Y", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"n", QV_ARG_I32, QV_T_NONE, 0},
        {"value", QV_ARG_F32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"fill"},
    .check_args = fill_check,
    .grid = fill_grid,
    .example = fill_example,
};

/* ---- cross_entropy ------------------------------------------------------------ */
/* logits (T,V) | targets i32 (T) | loss (T) out | dlogits (T,V) out | T | V
 * | gscale.  Per row with target y >= 0 (y < 0: ignored, loss 0, zero grad):
 *   loss = logsumexp(logits) - logits[y]
 *   dlogits = gscale * (softmax(logits) - onehot(y))
 * A target >= V counts as ignored too (never read out of bounds). */

static qv_status ce_check(const qv_kernel_decl *k, const qv_arg *a,
                          size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(4) || POS(5) ||
        (s = qv_need_elems(k, "logits", ai(a, 4), ai(a, 5), err)))
        return s;
    size_t T = (size_t)ai(a, 4), V = (size_t)ai(a, 5);
    need[0] = T * V * 4;
    need[1] = T * 4;
    need[2] = T * 4;
    need[3] = T * V * 4;
    return QV_OK;
}

static void ce_grid(int stage, const qv_arg *a, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    (void)stage;
    grid_1d((size_t)ai(a, 4), c, global, local);
}

static void ce_example(qv_shape s, qv_arg *a)
{
    a[4] = QV_ARG_I(s.M);
    a[5] = QV_ARG_I(s.N);
    a[6] = QV_ARG_F(1.0f / (float)s.M);
}

const qv_kernel_decl qv_k_cross_entropy = {
    .name = "cross_entropy",
    .summary = "softmax cross-entropy per row and its gradient (fused)",
    .n_args = 7,
    .args = {
        {"logits", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"targets", QV_ARG_BUF, QV_T_I32, QV_IN},
        {"loss", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"dlogits", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"T", QV_ARG_I32, QV_T_NONE, 0},
        {"V", QV_ARG_I32, QV_T_NONE, 0},
        {"gscale", QV_ARG_F32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"cross_entropy"},
    .check_args = ce_check,
    .grid = ce_grid,
    .example = ce_example,
};

/* ---- adamw ---------------------------------------------------------------------- */
/* P inout | G | m1 inout | m2 inout | n | lr | beta1 | beta2 | eps | wd |
 * bc1 | bc2 | gscale, all in f32 in this order:
 *   g = G * gscale; m1 = beta1*m1 + (1-beta1)*g; m2 = beta2*m2 + (1-beta2)*g*g
 *   P -= lr * ((m1/bc1) / (sqrt(m2/bc2) + eps) + wd * P)
 * bc1 = 1 - beta1^step and bc2 = 1 - beta2^step come from the host;
 * gscale folds gradient clipping and accumulation averaging in. */

static qv_status adam_check(const qv_kernel_decl *k, const qv_arg *a,
                            size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(4))
        return s;
    if (!(a[10].u.f32 > 0.0f) || !(a[11].u.f32 > 0.0f))
        return qv_fail(err, QV_ERR_INVALID,
                       "adamw: bias corrections must be > 0 (step >= 1)");
    need[0] = need[1] = need[2] = need[3] = (size_t)ai(a, 4) * 4;
    return QV_OK;
}

static void adam_grid(int stage, const qv_arg *a, const qv_config *c,
                      size_t global[2], size_t local[2])
{
    (void)stage;
    grid_1d((size_t)ai(a, 4), c, global, local);
}

static void adam_example(qv_shape s, qv_arg *a)
{
    a[4] = QV_ARG_I(s.M * s.K);
    a[5] = QV_ARG_F(1e-2f);
    a[6] = QV_ARG_F(0.9f);
    a[7] = QV_ARG_F(0.999f);
    a[8] = QV_ARG_F(1e-8f);
    a[9] = QV_ARG_F(0.01f);
    a[10] = QV_ARG_F(0.1f);
    a[11] = QV_ARG_F(0.001f);
    a[12] = QV_ARG_F(0.5f);
}

const qv_kernel_decl qv_k_adamw = {
    .name = "adamw",
    .summary = "AdamW step with decoupled weight decay, host-side bias "
               "correction and a gradient scale",
    .n_args = 13,
    .args = {
        {"P", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"G", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"m1", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"m2", QV_ARG_BUF, QV_T_F32, QV_INOUT},
        {"n", QV_ARG_I32, QV_T_NONE, 0},
        {"lr", QV_ARG_F32, QV_T_NONE, 0},
        {"beta1", QV_ARG_F32, QV_T_NONE, 0},
        {"beta2", QV_ARG_F32, QV_T_NONE, 0},
        {"eps", QV_ARG_F32, QV_T_NONE, 0},
        {"wd", QV_ARG_F32, QV_T_NONE, 0},
        {"bc1", QV_ARG_F32, QV_T_NONE, 0},
        {"bc2", QV_ARG_F32, QV_T_NONE, 0},
        {"gscale", QV_ARG_F32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"adamw"},
    .check_args = adam_check,
    .grid = adam_grid,
    .example = adam_example,
};

/* ---- reduce_partial --------------------------------------------------------------- */
/* X (n) | out (ceil(n/1024)) out | n | mode
 * out[c] = sum over X[c*1024 .. c*1024+1023] of X^2 (mode 0) or |X| (mode 1),
 * in index order. The host adds the partial sums (in double): gradient norms
 * for clipping, absmean weight scales for quantisation-aware training. */

static qv_status red_check(const qv_kernel_decl *k, const qv_arg *a,
                           size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(2) || (s = qv_need_range(k, a, 3, 0, 1, err)))
        return s;
    size_t n = (size_t)ai(a, 2);
    need[0] = n * 4;
    need[1] = (n + QV_REDUCE_CHUNK - 1) / QV_REDUCE_CHUNK * 4;
    return QV_OK;
}

static void red_grid(int stage, const qv_arg *a, const qv_config *c,
                     size_t global[2], size_t local[2])
{
    (void)stage;
    size_t n = (size_t)ai(a, 2);
    grid_1d((n + QV_REDUCE_CHUNK - 1) / QV_REDUCE_CHUNK, c, global, local);
}

static void red_example(qv_shape s, qv_arg *a)
{
    a[2] = QV_ARG_I(s.M * s.K);
    a[3] = QV_ARG_I(s.N % 2);
}

const qv_kernel_decl qv_k_reduce_partial = {
    .name = "reduce_partial",
    .summary = "partial sums of squares (mode 0) or absolute values (mode 1) "
               "per 1024 elements",
    .n_args = 4,
    .args = {
        {"X", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"out", QV_ARG_BUF, QV_T_F32, QV_OUT},
        {"n", QV_ARG_I32, QV_T_NONE, 0},
        {"mode", QV_ARG_I32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"reduce_partial"},
    .check_args = red_check,
    .grid = red_grid,
    .example = red_example,
};

/* ---- ternary_pack ------------------------------------------------------------------- */
/* W f32 (N,K) | P u32 (N, ceil(K/16)) out | N | K | inv_scale
 * Quantises shadow weights to the packed ternary layout (kernels/ternary.h):
 * q = clamp(round_half_away(W * inv_scale), -1, 1), code q + 1; padding
 * weights are code 1. One work-item per word. */

static qv_status tp_check(const qv_kernel_decl *k, const qv_arg *a,
                          size_t need[QV_MAX_ARGS], qv_err *err)
{
    qv_status s;
    if (POS(2) || POS(3) ||
        (s = qv_need_elems(k, "W", ai(a, 2), 16 * qv_ternary_row_words(ai(a, 3)), err)))
        return s;
    size_t N = (size_t)ai(a, 2), K = (size_t)ai(a, 3);
    need[0] = N * K * 4;
    need[1] = N * (size_t)qv_ternary_row_words(ai(a, 3)) * 4;
    return QV_OK;
}

static void tp_grid(int stage, const qv_arg *a, const qv_config *c,
                    size_t global[2], size_t local[2])
{
    (void)stage;
    grid_2d((size_t)qv_ternary_row_words(ai(a, 3)), (size_t)ai(a, 2), c,
            global, local);
}

static void tp_example(qv_shape s, qv_arg *a)
{
    a[2] = QV_ARG_I(s.N);
    a[3] = QV_ARG_I(s.K);
    a[4] = QV_ARG_F(1.7f);
}

const qv_kernel_decl qv_k_ternary_pack = {
    .name = "ternary_pack",
    .summary = "quantise f32 weights to packed ternary codes with a given "
               "1/scale (quantisation-aware training)",
    .n_args = 5,
    .args = {
        {"W", QV_ARG_BUF, QV_T_F32, QV_IN},
        {"P", QV_ARG_BUF, QV_T_U32, QV_OUT},
        {"N", QV_ARG_I32, QV_T_NONE, 0},
        {"K", QV_ARG_I32, QV_T_NONE, 0},
        {"inv_scale", QV_ARG_F32, QV_T_NONE, 0},
    },
    EW_PARAMS,
    .n_stages = 1,
    .stage_names = {"ternary_pack"},
    .check_args = tp_check,
    .grid = tp_grid,
    .example = tp_example,
};
