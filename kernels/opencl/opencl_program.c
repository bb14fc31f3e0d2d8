/* kernels/opencl/opencl_program.c — the OpenCL program cache: builds each
 * (kernel, configuration) once per device from the embedded sources
 * "opencl/common.cl" + "opencl/<kernel>.cl" with -DQV_<PARAM>=<value> for
 * every declared parameter, creates one cl_kernel per stage, and keeps them
 * in the device context until device_free. Also owns the CL error names. */
#include "kernels/opencl/opencl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/embedded.h"

const char *qv_ocl_err_name(cl_int code)
{
    switch (code) {
#define E(x) case x: return #x
    E(CL_SUCCESS);
    E(CL_DEVICE_NOT_FOUND);
    E(CL_DEVICE_NOT_AVAILABLE);
    E(CL_COMPILER_NOT_AVAILABLE);
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE);
    E(CL_OUT_OF_RESOURCES);
    E(CL_OUT_OF_HOST_MEMORY);
    E(CL_PROFILING_INFO_NOT_AVAILABLE);
    E(CL_MEM_COPY_OVERLAP);
    E(CL_IMAGE_FORMAT_MISMATCH);
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED);
    E(CL_BUILD_PROGRAM_FAILURE);
    E(CL_MAP_FAILURE);
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET);
    E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
    E(CL_COMPILE_PROGRAM_FAILURE);
    E(CL_LINKER_NOT_AVAILABLE);
    E(CL_LINK_PROGRAM_FAILURE);
    E(CL_DEVICE_PARTITION_FAILED);
    E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE);
    E(CL_INVALID_VALUE);
    E(CL_INVALID_DEVICE_TYPE);
    E(CL_INVALID_PLATFORM);
    E(CL_INVALID_DEVICE);
    E(CL_INVALID_CONTEXT);
    E(CL_INVALID_QUEUE_PROPERTIES);
    E(CL_INVALID_COMMAND_QUEUE);
    E(CL_INVALID_HOST_PTR);
    E(CL_INVALID_MEM_OBJECT);
    E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR);
    E(CL_INVALID_IMAGE_SIZE);
    E(CL_INVALID_SAMPLER);
    E(CL_INVALID_BINARY);
    E(CL_INVALID_BUILD_OPTIONS);
    E(CL_INVALID_PROGRAM);
    E(CL_INVALID_PROGRAM_EXECUTABLE);
    E(CL_INVALID_KERNEL_NAME);
    E(CL_INVALID_KERNEL_DEFINITION);
    E(CL_INVALID_KERNEL);
    E(CL_INVALID_ARG_INDEX);
    E(CL_INVALID_ARG_VALUE);
    E(CL_INVALID_ARG_SIZE);
    E(CL_INVALID_KERNEL_ARGS);
    E(CL_INVALID_WORK_DIMENSION);
    E(CL_INVALID_WORK_GROUP_SIZE);
    E(CL_INVALID_WORK_ITEM_SIZE);
    E(CL_INVALID_GLOBAL_OFFSET);
    E(CL_INVALID_EVENT_WAIT_LIST);
    E(CL_INVALID_EVENT);
    E(CL_INVALID_OPERATION);
    E(CL_INVALID_GL_OBJECT);
    E(CL_INVALID_BUFFER_SIZE);
    E(CL_INVALID_MIP_LEVEL);
    E(CL_INVALID_GLOBAL_WORK_SIZE);
    E(CL_INVALID_PROPERTY);
    E(CL_INVALID_IMAGE_DESCRIPTOR);
    E(CL_INVALID_COMPILER_OPTIONS);
    E(CL_INVALID_LINKER_OPTIONS);
    E(CL_INVALID_DEVICE_PARTITION_COUNT);
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: break;
    }
    static _Thread_local char buf[32];
    snprintf(buf, sizeof buf, "CL_ERROR_%d", (int)code);
    return buf;
}

static void program_free(ocl_program *p)
{
    if (!p)
        return;
    for (int s = 0; s < QV_MAX_STAGES; s++)
        if (p->kernels[s])
            clReleaseKernel(p->kernels[s]);
    if (p->program)
        clReleaseProgram(p->program);
    free(p);
}

void qv_ocl_programs_free(ocl_ctx *ctx)
{
    if (!ctx)
        return;
    ocl_program *p = ctx->programs;
    while (p) {
        ocl_program *next = p->next;
        program_free(p);
        p = next;
    }
    ctx->programs = NULL;
}

static int same_config(const qv_kernel_decl *k, const qv_config *a,
                       const qv_config *b)
{
    for (int i = 0; i < k->n_params; i++)
        if (a->v[i] != b->v[i])
            return 0;
    return 1;
}

/* Copies at most max_chars of the build log into out, one line. */
static void build_log(ocl_ctx *ctx, cl_program prog, char *out, size_t n,
                      size_t max_chars)
{
    out[0] = '\0';
    size_t len = 0;
    if (clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL,
                              &len) != CL_SUCCESS || len == 0)
        return;
    char *log = malloc(len + 1);
    if (!log)
        return;
    if (clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, len,
                              log, NULL) == CL_SUCCESS) {
        log[len] = '\0';
        size_t j = 0;
        for (size_t i = 0; log[i] && j + 1 < n && j < max_chars; i++)
            out[j++] = (log[i] == '\n' || log[i] == '\r') ? ' ' : log[i];
        out[j] = '\0';
    }
    free(log);
}

static qv_status program_build(qv_device *dev, const qv_kernel_decl *k,
                               const qv_config *c, ocl_program **out,
                               qv_err *err)
{
    ocl_ctx *ctx = dev->ctx;
    const char *id = dev->info.id;
    char path[96];
    snprintf(path, sizeof path, "opencl/%s.cl", k->name);
    const qv_embedded_file *common = qv_embedded_find("opencl/common.cl");
    const qv_embedded_file *src = qv_embedded_find(path);
    if (!common || !src)
        return qv_fail(err, QV_ERR_NOT_FOUND,
                       "%s: no embedded OpenCL source '%s' (rebuild qvac)", id,
                       common ? path : "opencl/common.cl");

    char opts[512];
    size_t off = (size_t)snprintf(opts, sizeof opts, "-cl-std=CL1.2%s",
                                  ctx->correct_div_sqrt
                                      ? " -cl-fp32-correctly-rounded-divide-sqrt"
                                      : "");
    for (int i = 0; i < k->n_params && off < sizeof opts; i++)
        off += (size_t)snprintf(opts + off, sizeof opts - off, " -DQV_%s=%d",
                                k->params[i].name, c->v[i]);
    if (off >= sizeof opts)
        return qv_fail(err, QV_ERR_INVALID, "%s: %s: build options too long",
                       id, k->name);

    ocl_program *p = calloc(1, sizeof *p);
    if (!p)
        return qv_fail(err, QV_ERR_NOMEM, "%s: out of host memory", id);
    p->decl = k;
    p->cfg = *c;

    const char *texts[2] = {(const char *)common->data, (const char *)src->data};
    size_t lens[2] = {common->size, src->size};
    cl_int rc;
    p->program = clCreateProgramWithSource(ctx->context, 2, texts, lens, &rc);
    if (rc != CL_SUCCESS) {
        program_free(p);
        return qv_fail(err, QV_ERR_DEVICE,
                       "%s: clCreateProgramWithSource(%s) failed: %s", id,
                       k->name, qv_ocl_err_name(rc));
    }
    rc = clBuildProgram(p->program, 1, &ctx->device, opts, NULL, NULL);
    if (rc != CL_SUCCESS) {
        char log[320];
        build_log(ctx, p->program, log, sizeof log, 300);
        char cfgs[160];
        qv_config_format(k, c, cfgs, sizeof cfgs);
        program_free(p);
        return qv_fail(err, QV_ERR_COMPILE,
                       "%s: clBuildProgram(%s, %s) failed: %s: %s", id,
                       k->name, cfgs, qv_ocl_err_name(rc),
                       log[0] ? log : "(empty build log)");
    }
    for (int s = 0; s < k->n_stages; s++) {
        p->kernels[s] = clCreateKernel(p->program, k->stage_names[s], &rc);
        if (rc != CL_SUCCESS) {
            p->kernels[s] = NULL;
            program_free(p);
            return qv_fail(err, QV_ERR_COMPILE,
                           "%s: clCreateKernel(%s) failed: %s", id,
                           k->stage_names[s], qv_ocl_err_name(rc));
        }
    }
    /* Some drivers (PoCL) abort instead of failing the enqueue when a
     * kernel needs more local memory or work-items than it allows: check
     * here and fail with a message. */
    size_t wg_items = (size_t)c->v[0] * (size_t)c->v[1];
    for (int s = 0; s < k->n_stages; s++) {
        cl_ulong lmem = 0;
        size_t max_wg = 0;
        rc = clGetKernelWorkGroupInfo(p->kernels[s], ctx->device,
                                      CL_KERNEL_LOCAL_MEM_SIZE, sizeof lmem,
                                      &lmem, NULL);
        if (rc == CL_SUCCESS)
            rc = clGetKernelWorkGroupInfo(p->kernels[s], ctx->device,
                                          CL_KERNEL_WORK_GROUP_SIZE,
                                          sizeof max_wg, &max_wg, NULL);
        if (rc != CL_SUCCESS) {
            program_free(p);
            return qv_fail(err, QV_ERR_DEVICE,
                           "%s: clGetKernelWorkGroupInfo(%s) failed: %s", id,
                           k->stage_names[s], qv_ocl_err_name(rc));
        }
        char cfgs[160];
        qv_config_format(k, c, cfgs, sizeof cfgs);
        if (lmem > dev->info.local_mem_bytes) {
            program_free(p);
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: %s (%s) needs %llu bytes of local memory; the "
                           "device has %llu", id, k->stage_names[s], cfgs,
                           (unsigned long long)lmem,
                           (unsigned long long)dev->info.local_mem_bytes);
        }
        if (wg_items > max_wg) {
            program_free(p);
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: %s (%s) runs at most %zu work-items a group "
                           "on this device; the configuration asks for %zu",
                           id, k->stage_names[s], cfgs, max_wg, wg_items);
        }
    }
    *out = p;
    return QV_OK;
}

qv_status qv_ocl_program_get(qv_device *dev, const qv_kernel_decl *k,
                             const qv_config *c, ocl_program **out,
                             qv_err *err)
{
    ocl_ctx *ctx = dev->ctx;
    *out = NULL;
    for (ocl_program *p = ctx->programs; p; p = p->next)
        if (p->decl == k && same_config(k, &p->cfg, c)) {
            *out = p;
            return QV_OK;
        }
    ocl_program *p = NULL;
    qv_status s = program_build(dev, k, c, &p, err);
    if (s)
        return s;
    p->next = ctx->programs;
    ctx->programs = p;
    *out = p;
    return QV_OK;
}
