/* kernels/opencl/f32_matmul.cl — C(M,N) [+]= op(A)(M,K) . op(B)(K,N):
 *   op(A)(m,k) = A[m*K + k] (ta = 0) or A[k*M + m] (ta = 1)
 *   op(B)(k,n) = B[k*N + n] (tb = 0) or B[n*K + k] (tb = 1)
 * One call per layout, so each has literal unit strides after inlining; ta
 * and tb are uniform, so the barriers of the LOCAL=1 path stay in uniform
 * control flow. f32 accumulation.
 * QV_LOCAL = 1: common.cl's generic GEMM (its B operand is indexed B(n,k)).
 * QV_LOCAL = 0: common.cl's dot GEMM where both operands run along K
 * (ta = 0, tb = 1: the output head), its column-vector GEMM where B's rows
 * run along N (tb = 0: the head's backward, weight gradients), the generic
 * GEMM for ta = tb = 1. */
__kernel QV_REQD void f32_matmul(__global const float *A,
                                 __global const float *B, __global float *C,
                                 int M, int N, int K, int ta, int tb, int acc)
{
    QV_GEMM_LOCALS
#if !QV_LOCAL
    if (!ta && tb)
        qv_gemm_dot(A, K, B, QV_B_F32, K, C, N, M, N, K, 1.0f, acc);
    else if (!ta && !tb)
        qv_gemm_cv(A, K, 1, B, QV_B_F32, N, C, N, M, N, K, 1.0f, acc);
    else if (ta && !tb)
        qv_gemm_cv(A, 1, M, B, QV_B_F32, N, C, N, M, N, K, 1.0f, acc);
    else
#else
    if (!ta && !tb)
        qv_gemm(A, K, 1, B, QV_B_F32, 1, N, C, N, M, N, K, 1.0f,
                acc QV_GEMM_LARGS);
    else if (!ta && tb)
        qv_gemm(A, K, 1, B, QV_B_F32, K, 1, C, N, M, N, K, 1.0f,
                acc QV_GEMM_LARGS);
    else if (ta && !tb)
        qv_gemm(A, 1, M, B, QV_B_F32, 1, N, C, N, M, N, K, 1.0f,
                acc QV_GEMM_LARGS);
    else
#endif
        qv_gemm(A, 1, M, B, QV_B_F32, K, 1, C, N, M, N, K, 1.0f,
                acc QV_GEMM_LARGS);
}
