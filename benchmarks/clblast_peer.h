/* benchmarks/clblast_peer.h — CLBlast's GEMM on a qvac OpenCL device, the
 * same-API peer of qvac's 16-bit and f32 matmuls in bench_train's kernel
 * table (issue 12: "best 16-bit GEMM reachable through the same API on the
 * same device").
 *
 * C(M,N) = op(A)(M,K) . op(B)(K,N), row-major; op(A) = A stored (K,M) when
 * ta, op(B) = B stored (N,K) when tb (qvac's f32_matmul convention; its
 * f16_matmul is ta = 0, tb = 1; f16_matmul_t is ta = tb = 0 at (M, K, N)).
 * HGEMM (every operand IEEE half) where the device has cl_khr_fp16, SGEMM
 * everywhere. Timed with OpenCL profiling events in one context and
 * profiling queue per device (CLBlast's compiled programs are reused across
 * shapes): one warm-up, then the median of up to 5 runs, from the end of a
 * marker enqueued before the call to the end of its last kernel (so helper
 * kernels CLBlast runs, padding or transposing, are counted). The result is
 * checked on a sample of outputs against a host dot product. CLBlast runs
 * with the parameters of its own database (untuned on a device it does not
 * know: Debian ships no clblast_tuner_* binaries). */
#ifndef QV_BENCH_CLBLAST_PEER_H
#define QV_BENCH_CLBLAST_PEER_H

#include <stddef.h>

#include "kernels/backend.h"

typedef struct clb_peer clb_peer;

/* 0, or -1 with why filled (not an OpenCL device, context failed...). */
int clb_peer_open(const qv_device *dev, clb_peer **out, char *why, size_t n);
void clb_peer_close(clb_peer **p);
/* 1 when the device has cl_khr_fp16 (CLBlast's HGEMM can run). */
int clb_peer_has_fp16(const clb_peer *p);
/* The device's name as OpenCL reports it. */
const char *clb_peer_device_name(const clb_peer *p);
/* What a CLBlast status code (CLBlastStatusCode) means, in words. */
const char *clb_status_name(int code);

/* Times one GEMM (half: HGEMM, else SGEMM); *ms the median. Runs stop early
 * (at least 3) once max_s seconds of runs have passed. 0, or -1 with why. */
int clb_peer_time(clb_peer *p, int half, int ta, int tb, int M, int N, int K, double max_s,
                  double *ms, char *why, size_t n);

#endif
