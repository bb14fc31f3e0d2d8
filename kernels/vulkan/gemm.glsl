// kernels/vulkan/gemm.glsl — the generic strided float GEMM used by the
// float matmul-shaped stages (f16_matmul, ternary_matmul_t, the six LoRA
// stages):
//
//   out(row, col) = sum_{r < red} L(row, r) * R(col, r)
//
// The including stage defines the operand loaders and the store:
//   float load_l(int row, int r);   row < rows, r < red
//   float load_r(int col, int r);   col < cols, r < red
//   void  store_out(int row, int col, float v);
// and may define L_ROW_CONTIG / R_COL_CONTIG when consecutive rows of L /
// columns of R are adjacent in memory (picks the coalesced order for the
// LOCAL=1 tile loads).
//
// Parameters (mm_common.glsl): LOCAL=0 reads operands straight from the
// buffers, unrolling the reduction DEPTH = 8*KT deep; LOCAL=1 stages
// ROWS x DEPTH and COLS x DEPTH tiles of both operands in shared memory,
// (ROWS + COLS) * DEPTH * 4 bytes, which is kernel.c's mm_local_float bound.
// Loads never leave [0,rows) x [0,red) and [0,cols) x [0,red).

#include "mm_common.glsl"

float load_l(int row, int r);
float load_r(int col, int r);
void store_out(int row, int col, float v);

const int DEPTH = 8 * KT;
// One element when LOCAL=0 (an array cannot be empty).
shared float sL[LOCAL * ROWS * DEPTH + 1 - LOCAL];
shared float sR[LOCAL * COLS * DEPTH + 1 - LOCAL];

float acc[TY * TX];
int rowc[TY];   // LOCAL=0: this invocation's rows / columns, clamped
int colc[TX];

void gemm_step_direct(int r)
{
    float a[TY];
    float b[TX];
    for (int i = 0; i < TY; i++)
        a[i] = load_l(rowc[i], r);
    for (int j = 0; j < TX; j++)
        b[j] = load_r(colc[j], r);
    for (int i = 0; i < TY; i++)
        for (int j = 0; j < TX; j++)
            acc[i * TX + j] = fma(a[i], b[j], acc[i * TX + j]);
}

void gemm_run(int rows, int cols, int red)
{
    const int lx = int(gl_LocalInvocationID.x);
    const int ly = int(gl_LocalInvocationID.y);
    const int row0 = int(gl_WorkGroupID.y) * ROWS;
    const int col0 = int(gl_WorkGroupID.x) * COLS;

    for (int i = 0; i < TY * TX; i++)
        acc[i] = 0.0;

    if (LOCAL == 0) {
        // Rows / columns past the edge compute a clamped duplicate that
        // gemm_store drops: no branch in the inner loop, no stray load.
        for (int i = 0; i < TY; i++)
            rowc[i] = min(row0 + ly + i * WG_Y, rows - 1);
        for (int j = 0; j < TX; j++)
            colc[j] = min(col0 + lx + j * WG_X, cols - 1);
        int r = 0;
        for (; r + DEPTH <= red; r += DEPTH)
            for (int u = 0; u < DEPTH; u++)
                gemm_step_direct(r + u);
        for (; r < red; r++)
            gemm_step_direct(r);
        return;
    }

    const int tid = ly * WG_X + lx;
    for (int r0 = 0; r0 < red; r0 += DEPTH) {
        // Tile of L: sL[u * ROWS + rr] = L(row0 + rr, r0 + u), zero outside.
        for (int e = tid; e < ROWS * DEPTH; e += NTHREADS) {
#ifdef L_ROW_CONTIG
            int u = e / ROWS, rr = e - u * ROWS;
#else
            int rr = e / DEPTH, u = e - rr * DEPTH;
#endif
            float v = 0.0;
            if (row0 + rr < rows && r0 + u < red)
                v = load_l(row0 + rr, r0 + u);
            sL[u * ROWS + rr] = v;
        }
        for (int e = tid; e < COLS * DEPTH; e += NTHREADS) {
#ifdef R_COL_CONTIG
            int u = e / COLS, cc = e - u * COLS;
#else
            int cc = e / DEPTH, u = e - cc * DEPTH;
#endif
            float v = 0.0;
            if (col0 + cc < cols && r0 + u < red)
                v = load_r(col0 + cc, r0 + u);
            sR[u * COLS + cc] = v;
        }
        barrier();
        for (int u = 0; u < DEPTH; u++) {
            float a[TY];
            float b[TX];
            for (int i = 0; i < TY; i++)
                a[i] = sL[u * ROWS + ly + i * WG_Y];
            for (int j = 0; j < TX; j++)
                b[j] = sR[u * COLS + lx + j * WG_X];
            for (int i = 0; i < TY; i++)
                for (int j = 0; j < TX; j++)
                    acc[i * TX + j] = fma(a[i], b[j], acc[i * TX + j]);
        }
        barrier();
    }
}

void gemm_store(int rows, int cols)
{
    const int row0 = int(gl_WorkGroupID.y) * ROWS + int(gl_LocalInvocationID.y);
    const int col0 = int(gl_WorkGroupID.x) * COLS + int(gl_LocalInvocationID.x);
    for (int i = 0; i < TY; i++) {
        int row = row0 + i * WG_Y;
        if (row >= rows)
            continue;
        for (int j = 0; j < TX; j++) {
            int col = col0 + j * WG_X;
            if (col < cols)
                store_out(row, col, acc[i * TX + j]);
        }
    }
}

// ---- column-vector order (LOCAL=0 of the transposed stages) ----
// An invocation owns TX *consecutive* columns from j0 = col0 + lx*TX (the
// group still covers ROWS x COLS, so the dispatch is the same) and reads
// them from one row of R at a time: one packed word or TX/2 words of
// halves a step, reused across its TY rows. jr is where it reads: j0, or,
// past the edge, the last whole group of TX columns (ternary: aligned to
// TX so that it stays in one word); it stores only its own columns.
int cv_j0, cv_jr;

void gemm_cv_begin(int rows, int cols, bool aligned)
{
    const int ly = int(gl_LocalInvocationID.y);
    const int row0 = int(gl_WorkGroupID.y) * ROWS + ly;
    cv_j0 = int(gl_WorkGroupID.x) * COLS + int(gl_LocalInvocationID.x) * TX;
    cv_jr = min(cv_j0, aligned ? ((cols - 1) / TX) * TX : max(cols - TX, 0));
    for (int i = 0; i < TY; i++)
        rowc[i] = min(row0 + i * WG_Y, rows - 1);
    for (int i = 0; i < TY * TX; i++)
        acc[i] = 0.0;
}

void gemm_cv_store(int rows, int cols)
{
    const int row0 = int(gl_WorkGroupID.y) * ROWS + int(gl_LocalInvocationID.y);
    for (int i = 0; i < TY; i++) {
        int row = row0 + i * WG_Y;
        if (row >= rows)
            continue;
        for (int c = 0; c < TX; c++) {
            int col = cv_jr + c;
            if (col >= cv_j0 && col < cols)
                store_out(row, col, acc[i * TX + c]);
        }
    }
}

