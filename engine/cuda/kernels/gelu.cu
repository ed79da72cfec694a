// GELU in place on the feed-forward activations, whose bias the matmul
// epilogue already added. kind: 0 exact (erf), 1 tanh approximation,
// 2 crude x·sigmoid(1.702x). Compiled without --use_fast_math so erff, tanhf
// and expf are the accurate ones.

__device__ __forceinline__ float gelu(float x, int kind) {
    if (kind == 1) return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    if (kind == 2) return x / (1.f + expf(-1.702f * x));
    return 0.5f * x * (1.f + erff(x * 0.7071067811865476f));
}

template <typename T>
__device__ void gelu_impl(T* x, long long n, int kind) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) st(x, i, gelu(ld(x, i), kind));
}

extern "C" __global__ void gelu_f32(float* x, long long n, int kind) { gelu_impl<float>(x, n, kind); }
extern "C" __global__ void gelu_bf16(bf16_t* x, long long n, int kind) { gelu_impl<bf16_t>(x, n, kind); }
