#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/reduce_partial.comp — one invocation per chunk c of 1024
// elements: out[c] = sum of X^2 (mode 0) or |X| (mode 1) over the chunk, in
// float and a fixed order (32 running sums of 32 consecutive elements, then
// their sum), which keeps the rounding error near sqrt of the serial one.
// Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) writeonly buffer BO { float outp[]; };
layout(push_constant) uniform PC { int n; int mode; } pc;

const uint CHUNK = 1024u;
const uint SUB = 32u;

void main()
{
    uint c = gl_GlobalInvocationID.x;
    uint n = uint(pc.n);
    uint chunks = (n + CHUNK - 1u) / CHUNK;
    if (c >= chunks)
        return;
    uint begin = c * CHUNK;
    uint end = min(begin + CHUNK, n);
    float total = 0.0;
    for (uint s = begin; s < end; s += SUB) {
        uint e = min(s + SUB, end);
        float part = 0.0;
        if (pc.mode != 0) {
            for (uint i = s; i < e; i++)
                part += abs(X[i]);
        } else {
            for (uint i = s; i < e; i++) {
                float x = X[i];
                part += x * x;
            }
        }
        total += part;
    }
    outp[c] = total;
}
