/* kernels/opencl/f32_matmul.cl — C(M,N) [+]= op(A)(M,K) . op(B)(K,N):
 *   op(A)(m,k) = A[m*K + k] (ta = 0) or A[k*M + m] (ta = 1)
 *   op(B)(k,n) = B[k*N + n] (tb = 0) or B[n*K + k] (tb = 1)
 * through common.cl's GEMM (its B operand is indexed B(n,k)). One call per
 * layout, so each has literal unit strides after inlining; ta and tb are
 * uniform, so the barriers of the LOCAL=1 path stay in uniform control
 * flow. f32 accumulation. */
__kernel QV_REQD void f32_matmul(__global const float *A,
                                 __global const float *B, __global float *C,
                                 int M, int N, int K, int ta, int tb, int acc)
{
    QV_GEMM_LOCALS
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
        qv_gemm(A, 1, M, B, QV_B_F32, K, 1, C, N, M, N, K, 1.0f,
                acc QV_GEMM_LARGS);
}
