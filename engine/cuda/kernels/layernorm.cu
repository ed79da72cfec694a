// Embedding gather + LayerNorm, and bias-added residual + LayerNorm. One block
// per token; the row lives in dynamic shared memory (H floats).

template <typename T>
__device__ void embed_ln_impl(const int* __restrict__ ids, const int* __restrict__ types,
                              const float* __restrict__ word, const float* __restrict__ pos,
                              const float* __restrict__ typ, const float* __restrict__ gamma,
                              const float* __restrict__ beta, float* x32, T* out, int S, int H, float eps) {
    extern __shared__ float row[];
    const long long tok = blockIdx.x;
    const long long w = (long long)ids[tok] * H, t = (long long)types[tok] * H, p = (tok % S) * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) row[i] = word[w + i] + pos[p + i] + typ[t + i];
    __syncthreads();
    ln_row(row, H, gamma, beta, eps, x32 + tok * H, out + tok * H);
}

// add_ln: x32 = LayerNorm(x32 + delta); out = x32 as T. delta already holds
// the matmul's bias (cuBLASLt epilogue).
template <typename T>
__device__ void add_ln_impl(float* x32, const T* __restrict__ delta, const float* __restrict__ gamma,
                            const float* __restrict__ beta, T* out, int H, float eps) {
    extern __shared__ float row[];
    const long long base = (long long)blockIdx.x * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) row[i] = x32[base + i] + ld(delta, base + i);
    __syncthreads();
    ln_row(row, H, gamma, beta, eps, x32 + base, out + base);
}

extern "C" __global__ void embed_ln_f32(const int* ids, const int* types, const float* word, const float* pos,
                                        const float* typ, const float* gamma, const float* beta, float* x32,
                                        float* out, int S, int H, float eps) {
    embed_ln_impl<float>(ids, types, word, pos, typ, gamma, beta, x32, out, S, H, eps);
}

extern "C" __global__ void embed_ln_bf16(const int* ids, const int* types, const float* word, const float* pos,
                                         const float* typ, const float* gamma, const float* beta, float* x32,
                                         bf16_t* out, int S, int H, float eps) {
    embed_ln_impl<bf16_t>(ids, types, word, pos, typ, gamma, beta, x32, out, S, H, eps);
}

extern "C" __global__ void add_ln_f32(float* x32, const float* delta, const float* gamma, const float* beta,
                                      float* out, int H, float eps) {
    add_ln_impl<float>(x32, delta, gamma, beta, out, H, eps);
}

extern "C" __global__ void add_ln_bf16(float* x32, const bf16_t* delta, const float* gamma, const float* beta,
                                       bf16_t* out, int H, float eps) {
    add_ln_impl<bf16_t>(x32, delta, gamma, beta, out, H, eps);
}
