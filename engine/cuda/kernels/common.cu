// Shared helpers for bertq's CUDA kernels. No headers are included, so the
// source compiles with any NVRTC without include paths: bf16 is handled as
// raw bits (round to nearest even, like artifact.ToBF16) and all arithmetic
// is fp32.

typedef unsigned short bf16_t;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16_t* p, long long i) {
    return __uint_as_float(((unsigned int)p[i]) << 16);
}

__device__ __forceinline__ bf16_t f2bf(float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u); // NaN stays NaN
    return (bf16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void st(bf16_t* p, long long i, float v) { p[i] = f2bf(v); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// block_sum returns the sum of v over the block (blockDim.x a multiple of 32)
// to every thread. It may be called repeatedly.
__device__ float block_sum(float v) {
    __shared__ float red[33];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // a previous call may still be reading red[32]
    if (lane == 0) red[w] = v;
    __syncthreads();
    if (w == 0) {
        float t = lane < nw ? red[lane] : 0.f;
        t = warp_sum(t);
        if (lane == 0) red[32] = t;
    }
    __syncthreads();
    return red[32];
}

// ln_row normalizes row[0:H) (shared memory) with two-pass fp32 statistics
// and writes the result both as fp32 (the residual stream) and as T (the
// next matmul's input; the same buffer when T is float).
template <typename T>
__device__ void ln_row(const float* row, int H, const float* __restrict__ gamma,
                       const float* __restrict__ beta, float eps, float* x32, T* out) {
    float s = 0.f;
    for (int i = threadIdx.x; i < H; i += blockDim.x) s += row[i];
    const float mean = block_sum(s) / (float)H;
    float q = 0.f;
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        const float d = row[i] - mean;
        q += d * d;
    }
    const float inv = 1.f / sqrtf(block_sum(q) / (float)H + eps);
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        const float y = (row[i] - mean) * inv * gamma[i] + beta[i];
        x32[i] = y;
        st(out, i, y);
    }
}
