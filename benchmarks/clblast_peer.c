/* benchmarks/clblast_peer.c — see clblast_peer.h. */
#include "benchmarks/clblast_peer.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* clblast_c.h declares CLBlastClearCache() without a prototype. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <clblast_c.h>
#pragma GCC diagnostic pop

#include "kernels/opencl/opencl.h"

#define CLB_REPS 5

struct clb_peer {
    cl_context ctx;
    cl_command_queue q;
    int fp16;
    char name[256];
};

const char *clb_status_name(int code)
{
    switch ((CLBlastStatusCode)code) {
    case CLBlastOpenCLBuildProgramFailure: return "OpenCL build program failure";
    case CLBlastInvalidLocalThreadsTotal: return "invalid work-group size";
    case CLBlastInvalidLocalThreadsDim: return "invalid work-item size";
    case CLBlastInvalidLocalMemUsage: return "not enough local memory";
    case CLBlastDatabaseError: return "device not in CLBlast's database";
    case CLBlastNotImplemented: return "not implemented";
    case CLBlastNoHalfPrecision: return "no half precision on this device";
    case CLBlastUnknownError: return "unknown error";
    case CLBlastUnexpectedError: return "unexpected error";
    default: return "error";
    }
}

int clb_peer_open(const qv_device *dev, clb_peer **out, char *why, size_t n)
{
    *out = NULL;
    cl_platform_id plat = NULL;
    cl_device_id d = NULL;
    qv_err e = {0};
    if (qv_opencl_native(dev, &plat, &d, &e)) {
        snprintf(why, n, "%s", e.msg);
        return -1;
    }
    clb_peer *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(why, n, "out of host memory");
        return -1;
    }
    cl_int rc = CL_SUCCESS;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)plat, 0};
    p->ctx = clCreateContext(props, 1, &d, NULL, NULL, &rc);
    if (rc == CL_SUCCESS)
        p->q = clCreateCommandQueue(p->ctx, d, CL_QUEUE_PROFILING_ENABLE, &rc);
    if (rc != CL_SUCCESS) {
        snprintf(why, n, "creating a context and profiling queue failed (OpenCL error %d)",
                 (int)rc);
        clb_peer_close(&p);
        return -1;
    }
    size_t len = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &len) == CL_SUCCESS && len) {
        char *ext = malloc(len + 1);
        if (ext && clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, len, ext, NULL) == CL_SUCCESS) {
            ext[len] = 0;
            p->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
        }
        free(ext);
    }
    if (clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof p->name - 1, p->name, NULL) != CL_SUCCESS)
        snprintf(p->name, sizeof p->name, "?");
    *out = p;
    return 0;
}

void clb_peer_close(clb_peer **pp)
{
    clb_peer *p = *pp;
    if (!p)
        return;
    if (p->q)
        clReleaseCommandQueue(p->q);
    if (p->ctx)
        clReleaseContext(p->ctx);
    free(p);
    *pp = NULL;
}

int clb_peer_has_fp16(const clb_peer *p) { return p->fp16; }
const char *clb_peer_device_name(const clb_peer *p) { return p->name; }

/* IEEE half from float, round to nearest even; inputs are small and normal. */
static uint16_t to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffffu;
    if (exp <= 0)
        return (uint16_t)sign; /* flush tiny values to zero */
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00u);
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)h;
}

static float from_half(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    if (exp == 0)
        return sign ? -ldexpf((float)man, -24) : ldexpf((float)man, -24);
    uint32_t x = exp == 31 ? (sign | 0x7f800000u | (man << 13))
                           : (sign | ((exp - 15 + 127) << 23) | (man << 13));
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static uint64_t rs_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Values in [-1, 1), exact in half, so HGEMM and the host check agree on
 * the inputs. */
static float rnd(uint64_t *s) { return (float)((int)(rs_next(s) >> 53) - 1024) / 1024.0f; }

static uint64_t ev_time(cl_event e, cl_profiling_info what)
{
    cl_ulong t = 0;
    if (clGetEventProfilingInfo(e, what, sizeof t, &t, NULL) != CL_SUCCESS)
        return 0;
    return (uint64_t)t;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int clb_peer_time(clb_peer *p, int half, int ta, int tb, int M, int N, int K, double max_s,
                  double *ms, char *why, size_t n)
{
    *ms = NAN;
    if (half && !p->fp16) {
        snprintf(why, n, "no cl_khr_fp16 on this device: no HGEMM");
        return -1;
    }
    size_t es = half ? 2 : 4;
    size_t na = (size_t)M * (size_t)K, nb = (size_t)K * (size_t)N, nc = (size_t)M * (size_t)N;
    size_t nmax = na > nb ? na : nb;
    nmax = nmax > nc ? nmax : nc;
    float *fa = malloc(na * sizeof *fa), *fb = malloc(nb * sizeof *fb);
    void *host = malloc(nmax * 4);
    cl_mem ba = NULL, bb = NULL, bc = NULL;
    int ret = -1;
    cl_int rc = CL_SUCCESS;
    if (!fa || !fb || !host) {
        snprintf(why, n, "out of host memory");
        goto done;
    }
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)(M * 31 + N * 7 + K);
    for (size_t i = 0; i < na; i++)
        fa[i] = rnd(&s);
    for (size_t i = 0; i < nb; i++)
        fb[i] = rnd(&s);
    for (int which = 0; which < 2 && rc == CL_SUCCESS; which++) {
        const float *src = which ? fb : fa;
        size_t cnt = which ? nb : na;
        for (size_t i = 0; i < cnt; i++) {
            if (half)
                ((uint16_t *)host)[i] = to_half(src[i]);
            else
                ((float *)host)[i] = src[i];
        }
        cl_mem m = clCreateBuffer(p->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, cnt * es,
                                  host, &rc);
        if (which)
            bb = m;
        else
            ba = m;
    }
    if (rc == CL_SUCCESS) {
        memset(host, 0, nc * es);
        bc = clCreateBuffer(p->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, nc * es, host,
                            &rc);
    }
    if (rc != CL_SUCCESS) {
        snprintf(why, n, "clCreateBuffer failed (OpenCL error %d)", (int)rc);
        goto done;
    }
    /* row-major leading dimensions of the stored operands */
    size_t lda = ta ? (size_t)M : (size_t)K, ldb = tb ? (size_t)K : (size_t)N;
    CLBlastTranspose tA = ta ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tB = tb ? CLBlastTransposeYes : CLBlastTransposeNo;
    double t[CLB_REPS];
    int runs = 0;
    struct timespec w0, w1;
    clock_gettime(CLOCK_MONOTONIC, &w0);
    for (int r = -1; r < CLB_REPS; r++) { /* r = -1: the warm-up (and CLBlast's compile) */
        cl_event mark = NULL, ev = NULL;
        if ((rc = clFinish(p->q)) != CL_SUCCESS ||
            (rc = clEnqueueMarkerWithWaitList(p->q, 0, NULL, &mark)) != CL_SUCCESS) {
            snprintf(why, n, "clEnqueueMarker failed (OpenCL error %d)", (int)rc);
            goto done;
        }
        CLBlastStatusCode st;
        if (half)
            st = CLBlastHgemm(CLBlastLayoutRowMajor, tA, tB, (size_t)M, (size_t)N, (size_t)K,
                              to_half(1.0f), ba, 0, lda, bb, 0, ldb, to_half(0.0f), bc, 0,
                              (size_t)N, &p->q, &ev);
        else
            st = CLBlastSgemm(CLBlastLayoutRowMajor, tA, tB, (size_t)M, (size_t)N, (size_t)K,
                              1.0f, ba, 0, lda, bb, 0, ldb, 0.0f, bc, 0, (size_t)N, &p->q, &ev);
        if (st != CLBlastSuccess) {
            snprintf(why, n, "CLBlast%cgemm: %s (status %d)", half ? 'H' : 'S', clb_status_name((int)st),
                     (int)st);
            clReleaseEvent(mark);
            if (ev)
                clReleaseEvent(ev);
            goto done;
        }
        rc = clWaitForEvents(1, &ev);
        if (rc == CL_SUCCESS)
            rc = clFinish(p->q);
        uint64_t m_end = ev_time(mark, CL_PROFILING_COMMAND_END);
        uint64_t k_start = ev_time(ev, CL_PROFILING_COMMAND_START);
        uint64_t k_end = ev_time(ev, CL_PROFILING_COMMAND_END);
        clReleaseEvent(mark);
        clReleaseEvent(ev);
        if (rc != CL_SUCCESS || !k_end || k_end < k_start) {
            snprintf(why, n, "CLBlast%cgemm: waiting or profiling failed (OpenCL error %d)",
                     half ? 'H' : 'S', (int)rc);
            goto done;
        }
        if (r < 0) {
            clock_gettime(CLOCK_MONOTONIC, &w0); /* the runs' clock starts now */
            continue;
        }
        /* from the marker's end when its timestamp is usable, else the last kernel */
        t[runs++] = (double)(m_end && m_end <= k_end ? k_end - m_end : k_end - k_start);
        clock_gettime(CLOCK_MONOTONIC, &w1);
        double el = (double)(w1.tv_sec - w0.tv_sec) + (double)(w1.tv_nsec - w0.tv_nsec) / 1e9;
        if (runs >= 3 && el > max_s)
            break;
    }
    /* check a sample of outputs against a host dot product */
    rc = clEnqueueReadBuffer(p->q, bc, CL_TRUE, 0, nc * es, host, 0, NULL, NULL);
    if (rc != CL_SUCCESS) {
        snprintf(why, n, "clEnqueueReadBuffer failed (OpenCL error %d)", (int)rc);
        goto done;
    }
    double worst = 0;
    for (size_t i = 0; i < 64; i++) {
        size_t m = i % (size_t)M, col = (i * 131) % (size_t)N;
        double dot = 0, mag = 0;
        for (size_t k = 0; k < (size_t)K; k++) {
            double x = fa[ta ? k * (size_t)M + m : m * (size_t)K + k];
            double y = fb[tb ? col * (size_t)K + k : k * (size_t)N + col];
            dot += x * y;
            mag += fabs(x * y);
        }
        double got = half ? from_half(((uint16_t *)host)[m * (size_t)N + col])
                          : ((float *)host)[m * (size_t)N + col];
        double e = fabs(got - dot) / (mag > 0 ? mag : 1);
        if (e > worst)
            worst = e;
    }
    if (!(worst <= (half ? 2e-2 : 1e-4))) {
        snprintf(why, n, "CLBlast%cgemm: wrong result (relative error %.3g)", half ? 'H' : 'S',
                 worst);
        goto done;
    }
    qsort(t, (size_t)runs, sizeof t[0], cmp_d);
    *ms = (runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2])) / 1e6;
    ret = 0;
done:
    if (bc)
        clReleaseMemObject(bc);
    if (bb)
        clReleaseMemObject(bb);
    if (ba)
        clReleaseMemObject(ba);
    free(host);
    free(fb);
    free(fa);
    return ret;
}
