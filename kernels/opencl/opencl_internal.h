/* kernels/opencl/opencl_internal.h — what the OpenCL backend's files share:
 * the per-device context (one context, one in-order profiling queue, the
 * program cache) and the helpers between opencl_backend.c (devices, buffers,
 * launches) and opencl_program.c (program cache, CL error names). Private to
 * kernels/opencl/. */
#ifndef QV_OPENCL_INTERNAL_H
#define QV_OPENCL_INTERNAL_H

#ifndef CL_USE_DEPRECATED_OPENCL_1_2_APIS
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#endif
#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "common/status.h"
#include "kernels/backend.h"

/* One built program: a kernel name at one configuration, with a cl_kernel
 * per stage. Owned by the device context's list. */
typedef struct ocl_program {
    const qv_kernel_decl *decl;
    qv_config cfg;
    cl_program program;
    cl_kernel kernels[QV_MAX_STAGES];
    struct ocl_program *next;
} ocl_program;

typedef struct ocl_ctx {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    int correct_div_sqrt; /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT reported */
    ocl_program *programs; /* cache, most recent first */
} ocl_ctx;

/* Short name of a CL error code ("CL_OUT_OF_RESOURCES"), or "CL_ERROR_<n>". */
const char *qv_ocl_err_name(cl_int code);

/* Finds or builds the program of kernel k at configuration c on dev. */
qv_status qv_ocl_program_get(qv_device *dev, const qv_kernel_decl *k,
                             const qv_config *c, ocl_program **out,
                             qv_err *err);

/* Releases every cached program of a device context. */
void qv_ocl_programs_free(ocl_ctx *ctx);

#endif
