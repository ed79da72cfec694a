//go:build cgo

// AVX-512 element-wise kernels, included twice by bq.c: once converting to
// bfloat16 with integer ops (AVX512BW), once with AVX512_BF16's vcvtneps2bf16.
// The including file defines KTARGET (a target attribute), KSFX (a name
// suffix) and KBF16(v) (16 floats → 16 bf16 in a __m256i, round to nearest
// even).

#define KCAT2(a, b) a##b
#define KCAT(a, b) KCAT2(a, b)
#define KFN(name) KCAT(name, KSFX)

// exp for x ≤ 0 (or -inf): Cody–Waite reduction to r ∈ [-ln2/2, ln2/2], a
// degree-6 Taylor polynomial (relative error ≤ 1.2e-7), scaling by 2^n;
// results below e^-86 are exactly zero, so masked keys contribute nothing.
KTARGET static inline __m512 KFN(exp_)(__m512 x) {
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_LO), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(EXP_LO));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}

// softmax of R live rows (R ≤ 4) at once, interleaved so that their
// reduction and exp latency chains overlap.
KTARGET static inline __attribute__((always_inline)) void KFN(softmax_rows_)(
    const float *const *s, void *const *o, const float *m, int R, int nv, int S, int bf16, __m512 *e) {
    __m512 mx[4], inv[4], sum[4];
    for (int r = 0; r < R; r++) mx[r] = _mm512_set1_ps(-INFINITY);
    for (int v = 0; v < nv; v++) {
        int rem = S - 16 * v;
        __mmask16 k = rem >= 16 ? 0xffff : (__mmask16)((1u << rem) - 1);
        __m512 mv = _mm512_loadu_ps(m + 16 * v);
        for (int r = 0; r < R; r++) {
            __m512 x = _mm512_add_ps(_mm512_maskz_loadu_ps(k, s[r] + 16 * v), mv);
            e[r * nv + v] = x;
            mx[r] = _mm512_max_ps(mx[r], x);
        }
    }
    for (int r = 0; r < R; r++) {
        mx[r] = _mm512_set1_ps(_mm512_reduce_max_ps(mx[r]));
        sum[r] = _mm512_setzero_ps();
    }
    for (int v = 0; v < nv; v++)
        for (int r = 0; r < R; r++) {
            __m512 x = KFN(exp_)(_mm512_sub_ps(e[r * nv + v], mx[r]));
            e[r * nv + v] = x;
            sum[r] = _mm512_add_ps(sum[r], x);
        }
    for (int r = 0; r < R; r++) inv[r] = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum[r]));
    for (int v = 0; v < nv; v++) {
        int rem = S - 16 * v;
        __mmask16 k = rem >= 16 ? 0xffff : (__mmask16)((1u << rem) - 1);
        for (int r = 0; r < R; r++) {
            __m512 p = _mm512_mul_ps(e[r * nv + v], inv[r]);
            if (bf16)
                _mm256_mask_storeu_epi16((uint16_t *)o[r] + 16 * v, k, KBF16(p));
            else
                _mm512_mask_storeu_ps((float *)o[r] + 16 * v, k, p);
        }
    }
}

// See softmax in bq.c for the contract.
KTARGET static void KFN(softmax_)(const float *sc, const float *mrow, int ld, const int *ncol,
                                  const unsigned char *live, void *out, int B, int NH, int S, int bf16) {
    enum { R = 4 };
    int nvs = (S + 15) / 16;
    __m512 e[R * nvs];
    size_t es = bf16 ? 2 : 4;
    for (int b = 0; b < B; b++) {
        const float *m = mrow + (size_t)b * ld;
        int nv = (ncol[b] + 15) / 16;
        const unsigned char *lv = live + (size_t)b * S;
        for (int h = 0; h < NH; h++) {
            size_t base = ((size_t)b * NH + h) * S * S;
            const float *rs[R];
            void *ro[R];
            int n = 0;
            for (int i = 0; i < S; i++) {
                size_t off = base + (size_t)i * S;
                int from = 0;
                if (lv[i]) {
                    rs[n] = sc + off;
                    ro[n] = (char *)out + off * es;
                    if (++n == R) {
                        KFN(softmax_rows_)(rs, ro, m, R, nv, S, bf16, e);
                        n = 0;
                    }
                    from = nv;
                }
                for (int v = from; v < nvs; v++) {
                    int rem = S - 16 * v;
                    __mmask16 k = rem >= 16 ? 0xffff : (__mmask16)((1u << rem) - 1);
                    if (bf16)
                        _mm256_mask_storeu_epi16((uint16_t *)out + off + 16 * v, k, _mm256_setzero_si256());
                    else
                        _mm512_mask_storeu_ps((float *)out + off + 16 * v, k, _mm512_setzero_ps());
                }
            }
            for (int r = 0; r < n; r++) KFN(softmax_rows_)(rs + r, ro + r, m, 1, nv, S, bf16, e);
        }
    }
}

KTARGET static void KFN(layernorm_)(float *x, uint16_t *xb, const float *g, const float *be, int M, int H,
                                    float eps) {
    for (int t = 0; t < M; t++) {
        float *r = x + (size_t)t * H;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int i = 0;
        for (; i + 32 <= H; i += 32) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(r + i));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(r + i + 16));
        }
        for (; i < H; i += 16) {
            __mmask16 k = H - i >= 16 ? 0xffff : (__mmask16)((1u << (H - i)) - 1);
            a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(k, r + i));
        }
        float mean = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) / (float)H;
        __m512 vm = _mm512_set1_ps(mean);
        a0 = _mm512_setzero_ps();
        a1 = _mm512_setzero_ps();
        for (i = 0; i + 32 <= H; i += 32) {
            __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(r + i), vm);
            __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(r + i + 16), vm);
            a0 = _mm512_fmadd_ps(d0, d0, a0);
            a1 = _mm512_fmadd_ps(d1, d1, a1);
        }
        for (; i < H; i += 16) {
            __mmask16 k = H - i >= 16 ? 0xffff : (__mmask16)((1u << (H - i)) - 1);
            __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, r + i), vm);
            a0 = _mm512_fmadd_ps(d, d, a0);
        }
        float var = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) / (float)H;
        __m512 inv = _mm512_set1_ps(1.0f / sqrtf(var + eps));
        for (i = 0; i < H; i += 16) {
            __mmask16 k = H - i >= 16 ? 0xffff : (__mmask16)((1u << (H - i)) - 1);
            __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, r + i), vm), inv);
            v = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k, g + i), _mm512_maskz_loadu_ps(k, be + i));
            _mm512_mask_storeu_ps(r + i, k, v);
            if (xb) _mm256_mask_storeu_epi16(xb + (size_t)t * H + i, k, KBF16(v));
        }
    }
}

#undef KFN
#undef KCAT
#undef KCAT2
