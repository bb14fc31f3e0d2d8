/* kernels/verify.h — runs one kernel, in one configuration, at one shape,
 * on a device and on the reference, from the same random inputs, and
 * measures how far the device's outputs are from the reference's.
 *
 * Used by `qvac check` (before a machine is enrolled) and by the autotuner
 * (every candidate is verified before it is timed). Inputs are generated
 * from the kernel declaration: each buffer argument by its element type and
 * name, each scalar from the shape. */
#ifndef QV_VERIFY_H
#define QV_VERIFY_H

#include <stdint.h>

#include "kernels/backend.h"

typedef struct qv_verify_result {
    double max_err;   /* worst error over all outputs (see tol) */
    double tol;       /* the tolerance the error is held to */
    int pass;         /* max_err <= tol */
    char worst[32];   /* name of the output with the worst error */
} qv_verify_result;

/* Float outputs: max |dev - ref| / max(max |ref|, 1e-30) per output.
 * int8 outputs: max |dev - ref| in codes (rounding at exact .5 ties may
 * differ by one where the device's division is not correctly rounded). */
#define QV_TOL_TERNARY 1e-5 /* int32 accumulation, one float division */
#define QV_TOL_FLOAT 5e-5   /* f32 accumulation against a double reference */
#define QV_TOL_CODES 1.0

/* A ready-to-launch instance of a kernel on one device: buffers allocated
 * and filled with deterministic random inputs for shape s from seed (the
 * same seed gives the same bytes on every device), scalars set. */
typedef struct qv_instance {
    const qv_kernel_decl *k;
    qv_device *dev;
    qv_arg args[QV_MAX_ARGS];
    qv_buffer *buf[QV_MAX_ARGS];  /* per argument; NULL for scalars */
    size_t bytes[QV_MAX_ARGS];
} qv_instance;

qv_status qv_instance_new(qv_device *dev, const qv_kernel_decl *k, qv_shape s,
                          uint64_t seed, qv_instance **out, qv_err *err);
void qv_instance_destroy(qv_instance **inst);

/* Useful operations of one launch of k at shape s (k->flops). */
double qv_kernel_flops(const qv_kernel_decl *k, qv_shape s);
/* Bytes one launch must at least move (k->min_bytes), for GB/s. */
double qv_kernel_bytes(const qv_kernel_decl *k, qv_shape s);

/* Tolerance that applies to kernel k. */
double qv_verify_tolerance(const qv_kernel_decl *k);

/* Runs kernel k with configuration c on dev and on ref at shape s (fields a
 * kernel does not use are ignored), inputs from seed. A launch or transfer
 * error is returned as a status; a numeric mismatch is res->pass == 0. */
qv_status qv_verify(qv_device *dev, qv_device *ref, const qv_kernel_decl *k,
                    const qv_config *c, qv_shape s, uint64_t seed,
                    qv_verify_result *res, qv_err *err);

/* Deterministic generator (splitmix64) for inputs, shared with tests. */
typedef struct qv_rng {
    uint64_t s;
} qv_rng;
uint64_t qv_rng_next(qv_rng *r);
float qv_rng_uniform(qv_rng *r, float lo, float hi); /* [lo, hi) */

#endif
