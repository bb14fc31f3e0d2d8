/* kernels/opencl/opencl.h — the one OpenCL-specific entry point outside the
 * backend seam: the native platform and device behind a qvac OpenCL device,
 * for code that must drive the same device through another OpenCL library
 * (the CLBlast comparison in benchmarks/). Everything else goes through
 * kernels/backend.h. */
#ifndef QV_OPENCL_H
#define QV_OPENCL_H

#include <CL/cl.h>

#include "kernels/backend.h"

/* QV_ERR_INVALID when dev is not an OpenCL device. */
qv_status qv_opencl_native(const qv_device *dev, cl_platform_id *platform,
                           cl_device_id *device, qv_err *err);

#endif
