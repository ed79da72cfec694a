// Fused masked self-attention, softmax(Q·Kᵀ + mask)·V, for one (sequence,
// head, block of queries) per block. Q is pre-scaled by 1/√d in the weights.
// Keys and values stream through shared memory in tiles of kt with an online
// (flash-style) softmax, so any sequence length works with a fixed amount of
// shared memory. Each warp owns ATT_QW queries; lanes split the tile's keys
// for the scores and the head's dimensions for the output. Everything is fp32.
// A query whose keys are all masked gets zeros, like the Go engine.
//
// qkv is [B·S][3H] with columns Q|K|V (head h at h·d within each), the bias
// already added; mask is [B·S] (0 = padding); ctx is [B·S][H].
// Limits, checked by the host: d ≤ ATT_DMAX, kt ≤ ATT_KTMAX, blockDim.x a
// multiple of 32. Shared memory, in floats: kt·(d+1) + kt·d + kt +
// warps·ATT_QW·d + warps·kt.

#define ATT_QW 4
#define ATT_DMAX 128
#define ATT_KTMAX 64

template <typename T>
__device__ void attention_impl(const T* __restrict__ qkv, const int* __restrict__ mask, T* __restrict__ ctx,
                               int S, int H, int d, int kt) {
    extern __shared__ float smem[];
    const int b = blockIdx.z, h = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
    float* Ks = smem;                    // [kt][d+1], padded against bank conflicts
    float* Vs = Ks + kt * (d + 1);       // [kt][d]
    float* Ms = Vs + kt * d;             // [kt], 1 for a real key
    float* Qs = Ms + kt;                 // [nwarps][ATT_QW][d]
    float* Ps = Qs + nwarps * ATT_QW * d; // [nwarps][kt]
    float* myQ = Qs + warp * ATT_QW * d;
    float* myP = Ps + warp * kt;

    const long long row3 = 3LL * H;
    const T* base = qkv + (long long)b * S * row3 + (long long)h * d;
    const int q0 = (blockIdx.x * nwarps + warp) * ATT_QW;

#pragma unroll
    for (int qi = 0; qi < ATT_QW; qi++) {
        const int q = q0 + qi;
        for (int t = lane; t < d; t += 32) myQ[qi * d + t] = q < S ? ld(base, q * row3 + t) : 0.f;
    }

    float m[ATT_QW], l[ATT_QW], acc[ATT_QW][ATT_DMAX / 32];
#pragma unroll
    for (int qi = 0; qi < ATT_QW; qi++) {
        m[qi] = neg_inf();
        l[qi] = 0.f;
#pragma unroll
        for (int i = 0; i < ATT_DMAX / 32; i++) acc[qi][i] = 0.f;
    }

    for (int k0 = 0; k0 < S; k0 += kt) {
        __syncthreads(); // every warp is done with the previous tile
        for (int idx = threadIdx.x; idx < kt * d; idx += blockDim.x) {
            const int j = idx / d, t = idx - j * d, key = k0 + j;
            float kv = 0.f, vv = 0.f;
            if (key < S) {
                const long long off = key * row3 + t;
                kv = ld(base, off + H);
                vv = ld(base, off + 2LL * H);
            }
            Ks[j * (d + 1) + t] = kv;
            Vs[j * d + t] = vv;
        }
        for (int j = threadIdx.x; j < kt; j += blockDim.x) {
            const int key = k0 + j;
            Ms[j] = (key < S && mask[(long long)b * S + key] != 0) ? 1.f : 0.f;
        }
        __syncthreads();

#pragma unroll
        for (int qi = 0; qi < ATT_QW; qi++) {
            if (q0 + qi >= S) continue; // warp-uniform
            const float* q = myQ + qi * d;
            float sc[ATT_KTMAX / 32];
            float tmax = neg_inf();
#pragma unroll
            for (int c = 0; c < ATT_KTMAX / 32; c++) {
                const int j = lane + 32 * c;
                sc[c] = neg_inf();
                if (j < kt && Ms[j] != 0.f) {
                    const float* k = Ks + j * (d + 1);
                    float dot = 0.f;
                    for (int t = 0; t < d; t++) dot = fmaf(q[t], k[t], dot);
                    sc[c] = dot;
                }
                tmax = fmaxf(tmax, sc[c]);
            }
            tmax = warp_max(tmax);
            const float mnew = fmaxf(m[qi], tmax);
            if (mnew == neg_inf()) continue; // nothing unmasked yet: warp-uniform
            const float corr = expf(m[qi] - mnew); // 0 while m is -inf
            float psum = 0.f;
#pragma unroll
            for (int c = 0; c < ATT_KTMAX / 32; c++) {
                const int j = lane + 32 * c;
                if (j < kt) {
                    const float p = sc[c] == neg_inf() ? 0.f : expf(sc[c] - mnew);
                    myP[j] = p;
                    psum += p;
                }
            }
            l[qi] = l[qi] * corr + warp_sum(psum);
            __syncwarp();
#pragma unroll
            for (int i = 0; i < ATT_DMAX / 32; i++) {
                const int t = lane + 32 * i;
                if (t < d) {
                    float a = acc[qi][i] * corr;
                    for (int j = 0; j < kt; j++) a = fmaf(myP[j], Vs[j * d + t], a);
                    acc[qi][i] = a;
                }
            }
            __syncwarp(); // myP is rewritten by the next query
            m[qi] = mnew;
        }
    }

#pragma unroll
    for (int qi = 0; qi < ATT_QW; qi++) {
        const int q = q0 + qi;
        if (q >= S) continue;
        const float inv = l[qi] > 0.f ? 1.f / l[qi] : 0.f;
        T* o = ctx + ((long long)b * S + q) * H + (long long)h * d;
#pragma unroll
        for (int i = 0; i < ATT_DMAX / 32; i++) {
            const int t = lane + 32 * i;
            if (t < d) st(o, t, acc[qi][i] * inv);
        }
    }
}

extern "C" __global__ void attention_f32(const float* qkv, const int* mask, float* ctx, int S, int H, int d, int kt) {
    attention_impl<float>(qkv, mask, ctx, S, H, d, kt);
}

extern "C" __global__ void attention_bf16(const bf16_t* qkv, const int* mask, bf16_t* ctx, int S, int H, int d, int kt) {
    attention_impl<bf16_t>(qkv, mask, ctx, S, H, d, kt);
}
