/* kernels/opencl/opencl_backend.c — the OpenCL backend: enumerates every
 * device of every platform as "opencl:<n>" (n counts devices across
 * platforms in the ICD loader's order), gives each one context and one
 * in-order queue with profiling, and implements buffers (cl_mem, blocking
 * transfers) and launches (one clEnqueueNDRangeKernel per stage, device time
 * from the profiling events). Programs are built and cached by
 * opencl_program.c; the kernel sources are kernels/opencl/<kernel>.cl. */
#include "kernels/opencl/opencl_internal.h"
#include "kernels/opencl/opencl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OCL_FAIL(dev, rc, what)                                                \
    qv_fail(err, (rc) == CL_OUT_OF_HOST_MEMORY ||                              \
                         (rc) == CL_MEM_OBJECT_ALLOCATION_FAILURE              \
                     ? QV_ERR_NOMEM                                            \
                     : QV_ERR_DEVICE,                                          \
            "%s: %s failed: %s", (dev)->info.id, (what), qv_ocl_err_name(rc))

/* ---- buffers ------------------------------------------------------------ */

static qv_status ocl_alloc(qv_device *dev, size_t bytes, void **impl,
                           qv_err *err)
{
    ocl_ctx *ctx = dev->ctx;
    cl_int rc;
    cl_mem m = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    if (rc != CL_SUCCESS || !m)
        return qv_fail(err,
                       rc == CL_INVALID_CONTEXT || rc == CL_INVALID_VALUE
                           ? QV_ERR_DEVICE
                           : QV_ERR_NOMEM,
                       "%s: clCreateBuffer(%zu bytes) failed: %s",
                       dev->info.id, bytes, qv_ocl_err_name(rc));
    *impl = m;
    return QV_OK;
}

static void ocl_free(qv_device *dev, void *impl)
{
    (void)dev;
    if (impl)
        clReleaseMemObject((cl_mem)impl);
}

static qv_status ocl_write(qv_device *dev, void *impl, size_t off,
                           const void *src, size_t n, qv_err *err)
{
    ocl_ctx *ctx = dev->ctx;
    cl_int rc = clEnqueueWriteBuffer(ctx->queue, (cl_mem)impl, CL_TRUE, off, n,
                                     src, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        return OCL_FAIL(dev, rc, "clEnqueueWriteBuffer");
    return QV_OK;
}

static qv_status ocl_read(qv_device *dev, void *impl, size_t off, void *dst,
                          size_t n, qv_err *err)
{
    ocl_ctx *ctx = dev->ctx;
    cl_int rc = clEnqueueReadBuffer(ctx->queue, (cl_mem)impl, CL_TRUE, off, n,
                                    dst, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        return OCL_FAIL(dev, rc, "clEnqueueReadBuffer");
    return QV_OK;
}

/* ---- launches ----------------------------------------------------------- */

static qv_status set_args(qv_device *dev, const qv_kernel_decl *k,
                          cl_kernel kern, const char *stage, const qv_arg *a,
                          qv_err *err)
{
    for (int i = 0; i < k->n_args; i++) {
        cl_int rc;
        cl_mem m;
        cl_int iv;
        cl_float fv;
        switch (a[i].kind) {
        case QV_ARG_BUF:
            m = (cl_mem)a[i].u.buf->impl;
            rc = clSetKernelArg(kern, (cl_uint)i, sizeof m, &m);
            break;
        case QV_ARG_I32:
            iv = (cl_int)a[i].u.i32;
            rc = clSetKernelArg(kern, (cl_uint)i, sizeof iv, &iv);
            break;
        default:
            fv = (cl_float)a[i].u.f32;
            rc = clSetKernelArg(kern, (cl_uint)i, sizeof fv, &fv);
            break;
        }
        if (rc != CL_SUCCESS)
            return qv_fail(err, QV_ERR_DEVICE,
                           "%s: clSetKernelArg(%s, %d: %s) failed: %s",
                           dev->info.id, stage, i, k->args[i].name,
                           qv_ocl_err_name(rc));
    }
    return QV_OK;
}

static qv_status ocl_launch(qv_device *dev, const qv_kernel_decl *k,
                            const qv_config *c, const qv_arg *a,
                            uint64_t *device_ns, qv_err *err)
{
    ocl_ctx *ctx = dev->ctx;
    ocl_program *p = NULL;
    qv_status s = qv_ocl_program_get(dev, k, c, &p, err);
    if (s)
        return s;
    cl_event ev[QV_MAX_STAGES] = {0};
    int n_ev = 0;
    for (int st = 0; st < k->n_stages && !s; st++) {
        const char *stage = k->stage_names[st];
        if ((s = set_args(dev, k, p->kernels[st], stage, a, err)))
            break;
        size_t global[2], local[2];
        k->grid(st, a, c, global, local);
        cl_int rc = clEnqueueNDRangeKernel(ctx->queue, p->kernels[st], 2, NULL,
                                           global, local, 0, NULL,
                                           device_ns ? &ev[n_ev] : NULL);
        if (rc != CL_SUCCESS) {
            char cfgs[160];
            qv_config_format(k, c, cfgs, sizeof cfgs);
            s = qv_fail(err, QV_ERR_DEVICE,
                        "%s: clEnqueueNDRangeKernel(%s) failed: %s (global "
                        "%zux%zu, local %zux%zu, %s); try a smaller "
                        "configuration", dev->info.id, stage,
                        qv_ocl_err_name(rc), global[0], global[1], local[0],
                        local[1], cfgs);
            break;
        }
        if (device_ns)
            n_ev++;
    }
    if (device_ns && n_ev > 0) {
        cl_int rc = clWaitForEvents((cl_uint)n_ev, ev);
        if (rc != CL_SUCCESS && !s)
            s = OCL_FAIL(dev, rc, "clWaitForEvents");
        uint64_t total_ns = 0;
        for (int i = 0; i < n_ev && !s; i++) {
            cl_ulong t0 = 0, t1 = 0;
            rc = clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_START,
                                         sizeof t0, &t0, NULL);
            if (rc == CL_SUCCESS)
                rc = clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_END,
                                             sizeof t1, &t1, NULL);
            if (rc != CL_SUCCESS)
                s = OCL_FAIL(dev, rc, "clGetEventProfilingInfo");
            else if (t1 > t0)
                total_ns += (uint64_t)(t1 - t0);
        }
        if (!s)
            *device_ns = total_ns;
    }
    for (int i = 0; i < n_ev; i++)
        clReleaseEvent(ev[i]);
    return s;
}

static qv_status ocl_sync(qv_device *dev, qv_err *err)
{
    ocl_ctx *ctx = dev->ctx;
    cl_int rc = clFinish(ctx->queue);
    if (rc != CL_SUCCESS)
        return OCL_FAIL(dev, rc, "clFinish");
    return QV_OK;
}

static void ctx_free(ocl_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->queue)
        clFinish(ctx->queue);
    qv_ocl_programs_free(ctx);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->context)
        clReleaseContext(ctx->context);
    free(ctx);
}

static void ocl_device_free(qv_device *dev)
{
    if (!dev)
        return;
    ctx_free(dev->ctx);
    dev->ctx = NULL;
}

static const qv_backend_iface ocl_iface = {
    .name = "opencl",
    .device_free = ocl_device_free,
    .buf_alloc = ocl_alloc,
    .buf_free = ocl_free,
    .buf_write = ocl_write,
    .buf_read = ocl_read,
    .launch = ocl_launch,
    .synchronize = ocl_sync,
};

qv_status qv_opencl_native(const qv_device *dev, cl_platform_id *platform,
                           cl_device_id *device, qv_err *err)
{
    if (!dev || dev->iface != &ocl_iface)
        return qv_fail(err, QV_ERR_INVALID, "%s is not an OpenCL device",
                       dev ? dev->info.id : "(null)");
    const ocl_ctx *ctx = dev->ctx;
    *platform = ctx->platform;
    *device = ctx->device;
    return QV_OK;
}

/* ---- enumeration -------------------------------------------------------- */

static cl_int get_str(cl_device_id d, cl_device_info what, char *out, size_t n)
{
    out[0] = '\0';
    size_t len = 0;
    cl_int rc = clGetDeviceInfo(d, what, 0, NULL, &len);
    if (rc != CL_SUCCESS)
        return rc;
    char *tmp = malloc(len + 1);
    if (!tmp)
        return CL_OUT_OF_HOST_MEMORY;
    rc = clGetDeviceInfo(d, what, len, tmp, NULL);
    if (rc == CL_SUCCESS) {
        tmp[len] = '\0';
        snprintf(out, n, "%s", tmp);
    }
    free(tmp);
    return rc;
}

/* 1 if the space-separated extension list of d contains ext. */
static int has_extension(cl_device_id d, const char *ext)
{
    size_t len = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &len) != CL_SUCCESS)
        return 0;
    char *tmp = malloc(len + 1);
    if (!tmp)
        return 0;
    int found = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, len, tmp, NULL) == CL_SUCCESS) {
        tmp[len] = '\0';
        size_t el = strlen(ext);
        for (char *p = strstr(tmp, ext); p && !found; p = strstr(p + 1, ext))
            found = (p == tmp || p[-1] == ' ') && (p[el] == ' ' || p[el] == '\0');
    }
    free(tmp);
    return found;
}

#define GET(what, var)                                                         \
    do {                                                                       \
        if (rc == CL_SUCCESS) {                                                \
            rc = clGetDeviceInfo(d, what, sizeof(var), &(var), NULL);          \
            if (rc != CL_SUCCESS)                                              \
                *call = "clGetDeviceInfo(" #what ")";                           \
        }                                                                      \
    } while (0)

/* Fills info and opens context + queue; on failure returns the CL code and
 * names the failing call in *call. */
static cl_int device_open(cl_platform_id plat, cl_device_id d,
                          qv_device_info *info, ocl_ctx *ctx,
                          const char **call)
{
    cl_int rc = CL_SUCCESS;
    strcpy(info->backend, "opencl");
    if ((rc = get_str(d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor)) ||
        (rc = get_str(d, CL_DEVICE_NAME, info->name, sizeof info->name)) ||
        (rc = get_str(d, CL_DRIVER_VERSION, info->driver, sizeof info->driver))) {
        *call = "clGetDeviceInfo(vendor/name/driver)";
        return rc;
    }
    cl_uint vendor_id = 0, cus = 0;
    cl_ulong gmem = 0, lmem = 0, maxalloc = 0;
    size_t wg = 0, dims[3] = {0, 0, 0};
    cl_uint ndims = 0;
    cl_device_fp_config fp = 0;
    cl_device_type type = 0;
    GET(CL_DEVICE_TYPE, type);
    GET(CL_DEVICE_VENDOR_ID, vendor_id);
    GET(CL_DEVICE_MAX_COMPUTE_UNITS, cus);
    GET(CL_DEVICE_GLOBAL_MEM_SIZE, gmem);
    GET(CL_DEVICE_LOCAL_MEM_SIZE, lmem);
    GET(CL_DEVICE_MAX_MEM_ALLOC_SIZE, maxalloc);
    GET(CL_DEVICE_MAX_WORK_GROUP_SIZE, wg);
    GET(CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS, ndims);
    GET(CL_DEVICE_SINGLE_FP_CONFIG, fp);
    if (rc == CL_SUCCESS) {
        size_t sizes[16] = {0};
        if (ndims > 16)
            ndims = 16;
        rc = clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_ITEM_SIZES,
                             ndims * sizeof(size_t), sizes, NULL);
        if (rc != CL_SUCCESS)
            *call = "clGetDeviceInfo(CL_DEVICE_MAX_WORK_ITEM_SIZES)";
        for (cl_uint i = 0; i < 3 && i < ndims; i++)
            dims[i] = sizes[i];
    }
    if (rc != CL_SUCCESS)
        return rc;
    info->vendor_id = vendor_id;
    info->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    info->compute_units = cus;
    info->global_mem_bytes = gmem;
    info->local_mem_bytes = lmem;
    info->max_alloc_bytes = maxalloc;
    info->limits.max_wg_size = wg;
    for (int i = 0; i < 3; i++)
        info->limits.max_wg_dim[i] = dims[i];
    info->limits.local_mem_bytes = lmem;
    info->fp16 = has_extension(d, "cl_khr_fp16");

    ctx->platform = plat;
    ctx->device = d;
    ctx->correct_div_sqrt = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                     (cl_context_properties)plat, 0};
    ctx->context = clCreateContext(props, 1, &d, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) {
        ctx->context = NULL;
        *call = "clCreateContext";
        return rc;
    }
    ctx->queue = clCreateCommandQueue(ctx->context, d, CL_QUEUE_PROFILING_ENABLE,
                                      &rc);
    if (rc != CL_SUCCESS) {
        ctx->queue = NULL;
        *call = "clCreateCommandQueue";
        return rc;
    }
    return CL_SUCCESS;
}

/* Opens device number ordinal; a failure is a note on the list. */
static qv_status add_device(qv_devlist *list, cl_platform_id plat,
                            cl_device_id d, unsigned ordinal, qv_err *err)
{
    qv_device *dev = calloc(1, sizeof *dev);
    ocl_ctx *ctx = calloc(1, sizeof *ctx);
    if (!dev || !ctx) {
        free(dev);
        free(ctx);
        return qv_fail(err, QV_ERR_NOMEM, "opencl: out of host memory");
    }
    dev->iface = &ocl_iface;
    dev->ctx = ctx;
    snprintf(dev->info.id, sizeof dev->info.id, "opencl:%u", ordinal);
    const char *call = "?";
    cl_int rc = device_open(plat, d, &dev->info, ctx, &call);
    if (rc != CL_SUCCESS) {
        qv_devlist_note(list, "opencl:%u (%s): %s failed: %s; device skipped",
                        ordinal, dev->info.name[0] ? dev->info.name : "?",
                        call, qv_ocl_err_name(rc));
        ctx_free(ctx);
        free(dev);
        return QV_OK;
    }
    qv_status s = qv_devlist_push(list, dev, err);
    if (s) {
        ctx_free(ctx);
        free(dev);
    }
    return s;
}

qv_status qv_opencl_enumerate(qv_devlist *list, qv_err *err)
{
    cl_uint n_plat = 0;
    cl_int rc = clGetPlatformIDs(0, NULL, &n_plat);
    if (rc == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ ||
        (rc == CL_SUCCESS && n_plat == 0)) {
        qv_devlist_note(list, "opencl: no platform found (install an OpenCL "
                              "driver, e.g. pocl-opencl-icd)");
        return QV_OK;
    }
    if (rc != CL_SUCCESS) {
        qv_devlist_note(list, "opencl: clGetPlatformIDs failed: %s",
                        qv_ocl_err_name(rc));
        return QV_OK;
    }
    cl_platform_id *plats = calloc(n_plat, sizeof *plats);
    if (!plats)
        return qv_fail(err, QV_ERR_NOMEM, "opencl: out of host memory");
    rc = clGetPlatformIDs(n_plat, plats, NULL);
    if (rc != CL_SUCCESS) {
        free(plats);
        qv_devlist_note(list, "opencl: clGetPlatformIDs failed: %s",
                        qv_ocl_err_name(rc));
        return QV_OK;
    }
    unsigned ordinal = 0;
    qv_status s = QV_OK;
    for (cl_uint p = 0; p < n_plat && !s; p++) {
        cl_uint n_dev = 0;
        rc = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n_dev);
        if (rc == CL_DEVICE_NOT_FOUND || n_dev == 0)
            continue;
        if (rc != CL_SUCCESS) {
            qv_devlist_note(list, "opencl: platform %u: clGetDeviceIDs failed: %s",
                            (unsigned)p, qv_ocl_err_name(rc));
            continue;
        }
        cl_device_id *devs = calloc(n_dev, sizeof *devs);
        if (!devs) {
            s = qv_fail(err, QV_ERR_NOMEM, "opencl: out of host memory");
            break;
        }
        rc = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, n_dev, devs, NULL);
        if (rc != CL_SUCCESS) {
            qv_devlist_note(list, "opencl: platform %u: clGetDeviceIDs failed: %s",
                            (unsigned)p, qv_ocl_err_name(rc));
            free(devs);
            continue;
        }
        for (cl_uint i = 0; i < n_dev && !s; i++)
            s = add_device(list, plats[p], devs[i], ordinal++, err);
        free(devs);
    }
    free(plats);
    if (!s && ordinal == 0)
        qv_devlist_note(list, "opencl: %u platform(s) but no device found "
                              "(check the OpenCL driver installation)",
                        (unsigned)n_plat);
    return s;
}
