/* kernels/kernel.h — what a kernel is: its arguments, its tunable
 * parameters with their legal values and constraints, its default
 * configuration, its launch geometry.
 *
 * This is the one declaration of every kernel's search space: the backends
 * (OpenCL -D options, Vulkan specialization constants), the autotuner and the
 * training loop all read it from here. The maths of each kernel is specified
 * by the reference backend (kernels/ref/ref_kernels.c).
 *
 * Conventions every backend follows:
 *  - params[0] is WG_X and params[1] is WG_Y: the work-group shape
 *    (OpenCL local size, Vulkan local_size_x_id = 0 / local_size_y_id = 1).
 *    Param i is OpenCL macro QV_<NAME> and Vulkan constant_id i.
 *  - Arguments are passed in declaration order: in OpenCL every stage kernel
 *    takes all of them (buffers and scalars, in order); in Vulkan buffer
 *    argument j is binding j of set 0 and the scalars form the push-constant
 *    block (4 bytes each, in order).
 *  - A kernel may run as several stages (dispatches) that share one
 *    configuration; stage s is OpenCL kernel function stage_names[s] and
 *    Vulkan shader <stage_names[s]>.comp.
 */
#ifndef QV_KERNEL_H
#define QV_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define QV_MAX_ARGS 16
#define QV_MAX_PARAMS 8
#define QV_MAX_VALUES 12
#define QV_MAX_STAGES 4

typedef struct qv_buffer qv_buffer;

typedef enum { QV_ARG_BUF, QV_ARG_I32, QV_ARG_F32 } qv_arg_kind;

/* Element type of a buffer argument, for size checks and documentation. */
typedef enum { QV_T_NONE, QV_T_F32, QV_T_F16, QV_T_I8, QV_T_U32, QV_T_I32 } qv_elem;

/* A problem size in the matmul vocabulary (M rows, N outputs, K depth, R
 * LoRA rank); kernels of other shapes map it onto their own scalars (see
 * qv_kernel_decl.example) so that one list of shapes exercises them all. */
typedef struct qv_shape {
    int32_t M, N, K, R;
} qv_shape;

typedef enum { QV_IN = 1, QV_OUT = 2, QV_INOUT = 3 } qv_access;

typedef struct qv_arg {
    qv_arg_kind kind;
    union {
        qv_buffer *buf;
        int32_t i32;
        float f32;
    } u;
} qv_arg;

#define QV_ARG_B(b) ((qv_arg){.kind = QV_ARG_BUF, .u.buf = (b)})
#define QV_ARG_I(v) ((qv_arg){.kind = QV_ARG_I32, .u.i32 = (int32_t)(v)})
#define QV_ARG_F(v) ((qv_arg){.kind = QV_ARG_F32, .u.f32 = (float)(v)})

typedef struct qv_arg_decl {
    const char *name;
    qv_arg_kind kind;
    qv_elem elem;     /* for buffers */
    qv_access access; /* for buffers */
} qv_arg_decl;

typedef struct qv_param_decl {
    const char *name;
    const char *doc;
    int n_values;
    int values[QV_MAX_VALUES];
    int def; /* default value (one of values) */
} qv_param_decl;

/* A configuration: one value per declared parameter, in declaration order. */
typedef struct qv_config {
    int v[QV_MAX_PARAMS];
} qv_config;

/* What a device allows, as far as configurations are concerned. */
typedef struct qv_limits {
    size_t max_wg_size;    /* max work-items per work-group */
    size_t max_wg_dim[3];  /* max work-items per dimension */
    uint64_t local_mem_bytes;
} qv_limits;

typedef struct qv_kernel_decl qv_kernel_decl;

struct qv_kernel_decl {
    const char *name;
    const char *summary;
    int n_args;
    qv_arg_decl args[QV_MAX_ARGS];
    int n_params;
    qv_param_decl params[QV_MAX_PARAMS];
    int n_stages;
    const char *stage_names[QV_MAX_STAGES];

    /* Validates shapes (scalar args) and writes, for each buffer argument in
     * order, the number of bytes the kernel reads or writes in it. */
    qv_status (*check_args)(const qv_kernel_decl *k, const qv_arg *args,
                            size_t need_bytes[QV_MAX_ARGS], qv_err *err);
    /* Kernel-specific constraints beyond "each value is legal" and
     * "WG_X*WG_Y fits the device" (may be NULL). */
    qv_status (*check_extra)(const qv_config *c, qv_err *err);
    /* Local / shared memory a configuration uses, in bytes (upper bound
     * every backend stays within). */
    uint64_t (*local_bytes)(const qv_config *c);
    /* Global size in work-items (a multiple of local) and local size. */
    void (*grid)(int stage, const qv_arg *args, const qv_config *c,
                 size_t global[2], size_t local[2]);
    /* Useful floating or integer operations of one launch (2*M*N*K for a
     * matmul), for GFLOP/s figures. */
    double (*flops)(const qv_arg *args);
    /* Bytes a launch must at least move, for GB/s figures. */
    double (*min_bytes)(const qv_arg *args);
    /* (optional) Sets the scalar arguments for a test or benchmark problem
     * of size s; without it scalars named M, N, K, R take s's fields. */
    void (*example)(qv_shape s, qv_arg *args);
};

/* Every kernel qvac has, NULL-terminated. */
extern const qv_kernel_decl *const qv_kernels[];

/* Looks a kernel up by name; NULL if unknown. */
const qv_kernel_decl *qv_kernel_find(const char *name);

/* Index of a parameter by name, or -1. */
int qv_kernel_param_index(const qv_kernel_decl *k, const char *name);

/* The kernel's default configuration. */
void qv_kernel_default_config(const qv_kernel_decl *k, qv_config *out);

/* Checks a configuration: every value legal, constraints hold, and it fits
 * the device's limits. err names the kernel, the parameter and the limit. */
qv_status qv_kernel_check_config(const qv_kernel_decl *k, const qv_config *c,
                                 const qv_limits *lim, qv_err *err);

/* Checks args against the declaration (count, kinds, shapes, buffer sizes,
 * all buffers on dev). dev may be NULL to skip the device check. */
qv_status qv_kernel_check_args(const qv_kernel_decl *k, const qv_arg *args,
                               int nargs, qv_err *err);

/* "WG_X=16 WG_Y=1 ..." into buf. */
void qv_config_format(const qv_kernel_decl *k, const qv_config *c, char *buf,
                      size_t n);

/* Parses "WG_X=16,TX=4" (unnamed params keep their defaults). */
qv_status qv_config_parse(const qv_kernel_decl *k, const char *s,
                          qv_config *out, qv_err *err);

/* Number of legal configurations for the limits (full enumeration). */
size_t qv_kernel_count_configs(const qv_kernel_decl *k, const qv_limits *lim);

/* Calls fn for each legal configuration, in a fixed order; stops early if
 * fn returns non-zero. Returns the number visited. */
size_t qv_kernel_foreach_config(const qv_kernel_decl *k, const qv_limits *lim,
                                int (*fn)(const qv_config *c, void *user),
                                void *user);

/* Ternary packing: K weights per row packed 16 per uint32 word. */
static inline int32_t qv_ternary_row_words(int32_t K) { return (K + 15) / 16; }

#endif
