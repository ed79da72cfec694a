// Pooler (dense + tanh on each sequence's first token) and classifier, both
// fp32 on the fp32 residual stream, like engine.Weights.Classify.

// pooler: grid (ceil(H/blockDim.x), B); dynamic shared memory H floats.
extern "C" __global__ void pooler(const float* __restrict__ x32, const float* __restrict__ W,
                                  const float* __restrict__ bias, float* __restrict__ pooled, int S, int H) {
    extern __shared__ float cls[];
    const int b = blockIdx.y;
    const float* src = x32 + (long long)b * S * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) cls[i] = src[i];
    __syncthreads();
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= H) return;
    float acc = bias[j];
    for (int k = 0; k < H; k++) acc = fmaf(cls[k], W[(long long)k * H + j], acc);
    pooled[(long long)b * H + j] = tanhf(acc);
}

// classifier: one block per sequence, one warp per label at a time.
extern "C" __global__ void classifier(const float* __restrict__ pooled, const float* __restrict__ W,
                                      const float* __restrict__ bias, float* __restrict__ logits, int H, int L) {
    const int b = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
    const float* p = pooled + (long long)b * H;
    for (int l = warp; l < L; l += nwarps) {
        float acc = 0.f;
        for (int k = lane; k < H; k += 32) acc = fmaf(p[k], W[(long long)k * L + l], acc);
        acc = warp_sum(acc);
        if (lane == 0) logits[(long long)b * L + l] = acc + bias[l];
    }
}
