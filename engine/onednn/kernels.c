//go:build cgo

// Element-wise kernels of the oneDNN engine (see kernels.h): scalar versions
// first, then AVX2+FMA ones, then the dispatchers.

#include "kernels.h"

#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

// Results of exp below e^EXP_LO are flushed to exactly zero (masked keys
// contribute nothing); arguments above EXP_HI are clamped (never reached by
// a softmax, whose arguments are ≤ 0).
#define EXP_LO (-86.0f)
#define EXP_HI (88.0f)

static int g_simd = -1;

static int avx2_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int k_avx2(void) { return avx2_supported(); }

void k_set_simd(int on) { g_simd = on ? avx2_supported() : 0; }

int k_simd(void) {
    if (g_simd < 0) g_simd = avx2_supported();
    return g_simd;
}

// ---------------------------------------------------------------------------
// scalar

static inline uint16_t bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float act_scalar(float x, int act) {
    switch (act) {
    case ACT_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case ACT_GELU_CRUDE:
        return x / (1.0f + expf(-1.702f * x));
    default:
        return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    }
}

// quant_params sets a row's scale, zero point and float32 inverse scale
// from its range (see kernels.h); it returns 0 for a zero row.
static inline int quant_params(float lo, float hi, float *s, int32_t *z, float *inv) {
    lo = fminf(lo, 0.0f), hi = fmaxf(hi, 0.0f);
    if (hi == lo) {
        *s = 1, *z = 0, *inv = 1;
        return 0;
    }
    *inv = 255.0f / (hi - lo);
    *s = (hi - lo) / 255.0f;
    *z = (int32_t)fminf(fmaxf(nearbyintf(-lo * *inv), 0.0f), 255.0f);
    return 1;
}

// quant_row_scalar quantizes one row; the arithmetic is the plain-Go
// reference's exactly.
static void quant_row_scalar(const float *x, int K, uint8_t *q, float *s, int32_t *z) {
    float lo = 0, hi = 0, inv;
    for (int k = 0; k < K; k++) lo = fminf(lo, x[k]), hi = fmaxf(hi, x[k]);
    if (!quant_params(lo, hi, s, z, &inv)) {
        memset(q, 0, (size_t)K);
        return;
    }
    for (int k = 0; k < K; k++) q[k] = (uint8_t)fminf(fmaxf(nearbyintf(x[k] * inv) + (float)*z, 0.0f), 255.0f);
}

// ln_row_scalar normalizes one row in place, with the optional copies.
static void ln_row_scalar(float *r, uint16_t *rb, uint8_t *rq, float *rs, int32_t *rz, const float *g,
                          const float *b, int H, float eps) {
    float sum = 0;
    for (int i = 0; i < H; i++) sum += r[i];
    float mean = sum / (float)H, sq = 0;
    for (int i = 0; i < H; i++) {
        float d = r[i] - mean;
        sq += d * d;
    }
    float inv = 1.0f / sqrtf(sq / (float)H + eps);
    for (int i = 0; i < H; i++) {
        r[i] = (r[i] - mean) * inv * g[i] + b[i];
        if (rb) rb[i] = bf16_of(r[i]);
    }
    if (rq) quant_row_scalar(r, H, rq, rs, rz);
}

static void layernorm_scalar(float *x, uint16_t *xb, uint8_t *xq, float *xs, int32_t *xz, const float *g,
                             const float *b, int M, int H, float eps) {
    for (int t = 0; t < M; t++)
        ln_row_scalar(x + (size_t)t * H, xb ? xb + (size_t)t * H : NULL, xq ? xq + (size_t)t * H : NULL,
                      xs ? xs + t : NULL, xz ? xz + t : NULL, g, b, H, eps);
}

static void attention_scalar(const float *qkv, const int32_t *lens, int nseq, const int32_t *mask,
                             void *ctx, int ctx_bf16, int H, int NH, float *scratch) {
    int D = H / NH, lo = 0;
    size_t H3 = 3 * (size_t)H;
    for (int b = 0; b < nseq; lo += lens[b], b++) {
        int n = lens[b];
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < n; i++) {
                const float *q = qkv + (size_t)(lo + i) * H3 + (size_t)h * D;
                float *p = scratch, mx = -INFINITY, sum = 0;
                for (int j = 0; j < n; j++) {
                    p[j] = -INFINITY;
                    if (mask && !mask[lo + j]) continue;
                    const float *k = qkv + (size_t)(lo + j) * H3 + H + (size_t)h * D;
                    float dot = 0;
                    for (int d = 0; d < D; d++) dot += q[d] * k[d];
                    p[j] = dot;
                    mx = fmaxf(mx, dot);
                }
                for (int j = 0; j < n; j++) {
                    float e = p[j] - mx;
                    p[j] = e < EXP_LO ? 0.0f : expf(e);
                    sum += p[j];
                }
                float inv = 1.0f / sum, *acc = scratch + n;
                for (int d = 0; d < D; d++) acc[d] = 0;
                for (int j = 0; j < n; j++) {
                    if (p[j] == 0) continue;
                    const float *v = qkv + (size_t)(lo + j) * H3 + 2 * (size_t)H + (size_t)h * D;
                    for (int d = 0; d < D; d++) acc[d] += p[j] * v[d];
                }
                size_t o = (size_t)(lo + i) * H + (size_t)h * D;
                for (int d = 0; d < D; d++) {
                    if (ctx_bf16)
                        ((uint16_t *)ctx)[o + d] = bf16_of(acc[d] * inv);
                    else
                        ((float *)ctx)[o + d] = acc[d] * inv;
                }
            }
    }
}

static inline float deq(int32_t a, int32_t comp, float scale, float bias) {
    return (float)(a - comp) * scale + bias;
}

static void deq_bias_scalar(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az,
                            float *out) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
            out[(size_t)m * N + n] = deq(acc[(size_t)m * N + n], az[m] * w.colsum[n], as[m] * w.ws[n], w.bias[n]);
}

static void deq_act_quant_scalar(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az,
                                 int act, uint8_t *hq, float *hs, int32_t *hz, float *tmp) {
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++)
            tmp[n] = act_scalar(deq(acc[(size_t)m * N + n], az[m] * w.colsum[n], as[m] * w.ws[n], w.bias[n]), act);
        quant_row_scalar(tmp, N, hq + (size_t)m * N, hs + m, hz + m);
    }
}

static void deq_res_ln_scalar(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az,
                              float *x, uint16_t *xb, uint8_t *xq, float *xs, int32_t *xz, const float *g,
                              const float *b, float eps) {
    for (int m = 0; m < M; m++) {
        float *r = x + (size_t)m * N;
        for (int n = 0; n < N; n++)
            r[n] += deq(acc[(size_t)m * N + n], az[m] * w.colsum[n], as[m] * w.ws[n], w.bias[n]);
        ln_row_scalar(r, xb ? xb + (size_t)m * N : NULL, xq ? xq + (size_t)m * N : NULL, xs ? xs + m : NULL,
                      xz ? xz + m : NULL, g, b, N, eps);
    }
}

// ---------------------------------------------------------------------------
// AVX2 + FMA

#define AVX2 __attribute__((target("avx2,fma")))

// tail_mask has its first r lanes set (0 ≤ r ≤ 8).
AVX2 static inline __m256i tail_mask(int r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// exp256: Cody–Waite reduction to r ∈ [-ln2/2, ln2/2], a degree-6 Taylor
// polynomial (relative error ≤ 1.2e-7), scaling by 2^n; below e^EXP_LO
// (and -inf) exactly zero.
AVX2 static inline __m256 exp256(__m256 x) {
    __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), live);
}

// act256 applies the activation. GELU-erf is 0.5·x·erfc(-x/√2) with erfc
// from Numerical Recipes' Chebyshev fit (fractional error < 1.2e-7).
AVX2 static inline __m256 act256(__m256 x, int act) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    if (act == ACT_GELU_CRUDE)
        return _mm256_div_ps(x, _mm256_add_ps(one, exp256(_mm256_mul_ps(x, _mm256_set1_ps(-1.702f)))));
    if (act == ACT_GELU_TANH) {
        __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        __m256 y = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                 _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
        __m256 e = exp256(_mm256_add_ps(y, y));
        __m256 th = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
        return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, th));
    }
    __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(-0.7071067811865476f));
    __m256 az = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(half, az, one));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    __m256 ans = _mm256_mul_ps(t, exp256(_mm256_fnmadd_ps(az, az, p)));
    __m256 neg = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 erfc = _mm256_blendv_ps(ans, _mm256_sub_ps(_mm256_set1_ps(2.0f), ans), neg);
    return _mm256_mul_ps(_mm256_mul_ps(half, x), erfc);
}

// bf16x8 rounds 8 floats to bfloat16 (nearest even; NaN stays NaN).
AVX2 static inline __m128i bf16x8(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    r = _mm256_blendv_epi8(r, qn, nan);
    r = _mm256_packus_epi32(r, r);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(r, 0x08));
}

AVX2 static void to_bf16_avx2(const float *x, uint16_t *out, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(out + i), bf16x8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) out[i] = bf16_of(x[i]);
}

// quant_row_avx2 is quant_row_scalar, eight at a time.
AVX2 static void quant_row_avx2(const float *x, int K, uint8_t *q, float *s, int32_t *z) {
    __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 v = _mm256_loadu_ps(x + k);
        vlo = _mm256_min_ps(vlo, v), vhi = _mm256_max_ps(vhi, v);
    }
    float lo = -hmax(_mm256_sub_ps(_mm256_setzero_ps(), vlo)), hi = hmax(vhi), inv;
    for (int r = k; r < K; r++) lo = fminf(lo, x[r]), hi = fmaxf(hi, x[r]);
    if (!quant_params(lo, hi, s, z, &inv)) {
        memset(q, 0, (size_t)K);
        return;
    }
    // round(x·inv), then + z and the clamp: exact in float, as the scalar code.
    const __m256 vi = _mm256_set1_ps(inv), vz = _mm256_set1_ps((float)*z), top = _mm256_set1_ps(255.0f);
    for (k = 0; k + 8 <= K; k += 8) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k), vi),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, vz), _mm256_setzero_ps()), top);
        __m256i iv = _mm256_cvtps_epi32(v);
        __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(iv), _mm256_extracti128_si256(iv, 1));
        _mm_storel_epi64((__m128i *)(q + k), _mm_packus_epi16(w, w));
    }
    for (; k < K; k++) q[k] = (uint8_t)fminf(fmaxf(nearbyintf(x[k] * inv) + (float)*z, 0.0f), 255.0f);
}

AVX2 static void ln_row_avx2(float *r, uint16_t *rb, uint8_t *rq, float *rs, int32_t *rz, const float *g,
                             const float *b, int H, float eps) {
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= H; i += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(r + i));
    float sum = hsum(s);
    for (; i < H; i++) sum += r[i];
    float mean = sum / (float)H;
    __m256 vm = _mm256_set1_ps(mean), q = _mm256_setzero_ps();
    for (i = 0; i + 8 <= H; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(r + i), vm);
        q = _mm256_fmadd_ps(d, d, q);
    }
    float sq = hsum(q);
    for (; i < H; i++) sq += (r[i] - mean) * (r[i] - mean);
    float inv = 1.0f / sqrtf(sq / (float)H + eps);
    __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= H; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(r + i), vm), vi);
        v = _mm256_fmadd_ps(v, _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(r + i, v);
        if (rb) _mm_storeu_si128((__m128i *)(rb + i), bf16x8(v));
    }
    for (; i < H; i++) {
        r[i] = (r[i] - mean) * inv * g[i] + b[i];
        if (rb) rb[i] = bf16_of(r[i]);
    }
    if (rq) quant_row_avx2(r, H, rq, rs, rz);
}

AVX2 static void layernorm_avx2(float *x, uint16_t *xb, uint8_t *xq, float *xs, int32_t *xz, const float *g,
                                const float *b, int M, int H, float eps) {
    for (int t = 0; t < M; t++)
        ln_row_avx2(x + (size_t)t * H, xb ? xb + (size_t)t * H : NULL, xq ? xq + (size_t)t * H : NULL,
                    xs ? xs + t : NULL, xz ? xz + t : NULL, g, b, H, eps);
}

// Attention works on blocks of QR query rows against all keys of the
// sequence, with the keys transposed once per head into kt [D][np] so that
// scores come from broadcast-FMAs over contiguous keys.
enum { QR = 4 };

size_t k_attention_scratch(int max_len, int D) {
    size_t np = ((size_t)max_len + 15) & ~(size_t)15;
    return np * (size_t)D + np + QR * np + 64;
}

AVX2 static void attention_head_avx2(const float *qkv, int lo, int n, const int32_t *mask, void *ctx,
                                     int ctx_bf16, int H, int D, int h, float *scratch) {
    size_t H3 = 3 * (size_t)H;
    int np = (n + 15) & ~15;
    float *kt = scratch, *kb = kt + (size_t)np * D, *sc = kb + np;
    for (int j = 0; j < np; j++) {
        const float *k = qkv + (size_t)(lo + j) * H3 + H + (size_t)h * D;
        for (int d = 0; d < D; d++) kt[(size_t)d * np + j] = j < n ? k[d] : 0.0f;
        kb[j] = j < n && (!mask || mask[lo + j]) ? 0.0f : -INFINITY;
    }
    for (int i0 = 0; i0 < n; i0 += QR) {
        int R = n - i0 < QR ? n - i0 : QR;
        const float *q[QR];
        for (int r = 0; r < QR; r++) q[r] = qkv + (size_t)(lo + i0 + (r < R ? r : 0)) * H3 + (size_t)h * D;
        // scores
        __m256 mx[QR];
        for (int r = 0; r < QR; r++) mx[r] = _mm256_set1_ps(-INFINITY);
        for (int j = 0; j < np; j += 16) {
            __m256 a[QR][2];
            for (int r = 0; r < QR; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
            for (int d = 0; d < D; d++) {
                __m256 k0 = _mm256_loadu_ps(kt + (size_t)d * np + j), k1 = _mm256_loadu_ps(kt + (size_t)d * np + j + 8);
                for (int r = 0; r < QR; r++) {
                    __m256 qv = _mm256_broadcast_ss(q[r] + d);
                    a[r][0] = _mm256_fmadd_ps(qv, k0, a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(qv, k1, a[r][1]);
                }
            }
            __m256 b0 = _mm256_loadu_ps(kb + j), b1 = _mm256_loadu_ps(kb + j + 8);
            for (int r = 0; r < QR; r++) {
                a[r][0] = _mm256_add_ps(a[r][0], b0);
                a[r][1] = _mm256_add_ps(a[r][1], b1);
                _mm256_storeu_ps(sc + (size_t)r * np + j, a[r][0]);
                _mm256_storeu_ps(sc + (size_t)r * np + j + 8, a[r][1]);
                mx[r] = _mm256_max_ps(mx[r], _mm256_max_ps(a[r][0], a[r][1]));
            }
        }
        // softmax numerators and their sums
        float inv[QR];
        for (int r = 0; r < QR; r++) {
            __m256 m = _mm256_set1_ps(hmax(mx[r])), s = _mm256_setzero_ps();
            float *row = sc + (size_t)r * np;
            for (int j = 0; j < np; j += 8) {
                __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), m));
                _mm256_storeu_ps(row + j, e);
                s = _mm256_add_ps(s, e);
            }
            inv[r] = 1.0f / hsum(s);
        }
        // context = P·V, 16 columns at a time (masked at the head's end)
        for (int c = 0; c < D; c += 16) {
            int w0 = D - c < 8 ? D - c : 8, w1 = D - c - 8 < 0 ? 0 : (D - c - 8 < 8 ? D - c - 8 : 8);
            __m256i m0 = tail_mask(w0), m1 = tail_mask(w1);
            __m256 a[QR][2];
            for (int r = 0; r < QR; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
            for (int j = 0; j < n; j++) {
                const float *v = qkv + (size_t)(lo + j) * H3 + 2 * (size_t)H + (size_t)h * D + c;
                __m256 v0 = _mm256_maskload_ps(v, m0), v1 = _mm256_maskload_ps(v + 8, m1);
                for (int r = 0; r < QR; r++) {
                    __m256 p = _mm256_broadcast_ss(sc + (size_t)r * np + j);
                    a[r][0] = _mm256_fmadd_ps(p, v0, a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(p, v1, a[r][1]);
                }
            }
            for (int r = 0; r < R; r++) {
                __m256 s = _mm256_set1_ps(inv[r]);
                __m256 o0 = _mm256_mul_ps(a[r][0], s), o1 = _mm256_mul_ps(a[r][1], s);
                size_t o = (size_t)(lo + i0 + r) * H + (size_t)h * D + c;
                if (ctx_bf16) {
                    uint16_t tmp[16];
                    _mm_storeu_si128((__m128i *)tmp, bf16x8(o0));
                    _mm_storeu_si128((__m128i *)(tmp + 8), bf16x8(o1));
                    memcpy((uint16_t *)ctx + o, tmp, (size_t)(w0 + w1) * 2);
                } else {
                    _mm256_maskstore_ps((float *)ctx + o, m0, o0);
                    _mm256_maskstore_ps((float *)ctx + o + 8, m1, o1);
                }
            }
        }
    }
}

AVX2 static void attention_avx2(const float *qkv, const int32_t *lens, int nseq, const int32_t *mask,
                                void *ctx, int ctx_bf16, int H, int NH, float *scratch) {
    int D = H / NH, lo = 0;
    for (int b = 0; b < nseq; lo += lens[b], b++)
        for (int h = 0; h < NH; h++) attention_head_avx2(qkv, lo, lens[b], mask, ctx, ctx_bf16, H, D, h, scratch);
}

// deq_row_avx2 writes y = (acc - az·colsum)·as·ws + bias (+ add, when
// given) for one row.
AVX2 static void deq_row_avx2(const int32_t *acc, int N, k_int8w w, float as, int32_t az, const float *add,
                              float *out) {
    __m256 va = _mm256_set1_ps(as);
    __m256i vz = _mm256_set1_epi32(az);
    int n = 0;
    for (; n + 8 <= N; n += 8) {
        __m256i a = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(acc + n)),
                                     _mm256_mullo_epi32(vz, _mm256_loadu_si256((const __m256i *)(w.colsum + n))));
        __m256 s = _mm256_mul_ps(va, _mm256_loadu_ps(w.ws + n));
        __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), s, _mm256_loadu_ps(w.bias + n));
        if (add) y = _mm256_add_ps(y, _mm256_loadu_ps(add + n));
        _mm256_storeu_ps(out + n, y);
    }
    for (; n < N; n++) {
        float y = deq(acc[n], az * w.colsum[n], as * w.ws[n], w.bias[n]);
        out[n] = add ? y + add[n] : y;
    }
}

AVX2 static void deq_bias_avx2(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az,
                               float *out) {
    for (int m = 0; m < M; m++) deq_row_avx2(acc + (size_t)m * N, N, w, as[m], az[m], NULL, out + (size_t)m * N);
}

AVX2 static void act_avx2(float *x, size_t n, int act) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, act256(_mm256_loadu_ps(x + i), act));
    for (; i < n; i++) x[i] = act_scalar(x[i], act);
}

AVX2 static void deq_act_quant_avx2(const int32_t *acc, int M, int N, k_int8w w, const float *as,
                                    const int32_t *az, int act, uint8_t *hq, float *hs, int32_t *hz, float *tmp) {
    for (int m = 0; m < M; m++) {
        deq_row_avx2(acc + (size_t)m * N, N, w, as[m], az[m], NULL, tmp);
        act_avx2(tmp, (size_t)N, act);
        quant_row_avx2(tmp, N, hq + (size_t)m * N, hs + m, hz + m);
    }
}

AVX2 static void deq_res_ln_avx2(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az,
                                 float *x, uint16_t *xb, uint8_t *xq, float *xs, int32_t *xz, const float *g,
                                 const float *b, float eps) {
    for (int m = 0; m < M; m++) {
        float *r = x + (size_t)m * N;
        deq_row_avx2(acc + (size_t)m * N, N, w, as[m], az[m], r, r);
        ln_row_avx2(r, xb ? xb + (size_t)m * N : NULL, xq ? xq + (size_t)m * N : NULL, xs ? xs + m : NULL,
                    xz ? xz + m : NULL, g, b, N, eps);
    }
}

// ---------------------------------------------------------------------------
// dispatch

void k_embed(float *x, const int32_t *ids, const int32_t *types, const int32_t *lens, int nseq,
             const float *word, const float *pos, const float *type, int H) {
    size_t t = 0;
    for (int b = 0; b < nseq; b++)
        for (int p = 0; p < lens[b]; p++, t++) {
            float *r = x + t * H;
            const float *a = word + (size_t)ids[t] * H, *c = pos + (size_t)p * H, *d = type + (size_t)types[t] * H;
            for (int i = 0; i < H; i++) r[i] = a[i] + c[i] + d[i];
        }
}

void k_layernorm(float *x, uint16_t *xb, uint8_t *xq, float *xs, int32_t *xz, const float *g, const float *b,
                 int M, int H, float eps) {
    if (k_simd())
        layernorm_avx2(x, xb, xq, xs, xz, g, b, M, H, eps);
    else
        layernorm_scalar(x, xb, xq, xs, xz, g, b, M, H, eps);
}

void k_attention(const float *qkv, const int32_t *lens, int nseq, const int32_t *mask, void *ctx,
                 int ctx_bf16, int H, int NH, float *scratch) {
    if (k_simd())
        attention_avx2(qkv, lens, nseq, mask, ctx, ctx_bf16, H, NH, scratch);
    else
        attention_scalar(qkv, lens, nseq, mask, ctx, ctx_bf16, H, NH, scratch);
}

void k_quantize(const float *x, int M, int K, uint8_t *q, float *s, int32_t *z) {
    for (int m = 0; m < M; m++) {
        if (k_simd())
            quant_row_avx2(x + (size_t)m * K, K, q + (size_t)m * K, s + m, z + m);
        else
            quant_row_scalar(x + (size_t)m * K, K, q + (size_t)m * K, s + m, z + m);
    }
}

void k_to_bf16(const float *x, uint16_t *out, size_t n) {
    if (k_simd()) {
        to_bf16_avx2(x, out, n);
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = bf16_of(x[i]);
}

void k_deq_bias(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az, float *out) {
    if (k_simd())
        deq_bias_avx2(acc, M, N, w, as, az, out);
    else
        deq_bias_scalar(acc, M, N, w, as, az, out);
}

void k_deq_act_quant(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az, int act,
                     uint8_t *hq, float *hs, int32_t *hz, float *tmp) {
    if (k_simd())
        deq_act_quant_avx2(acc, M, N, w, as, az, act, hq, hs, hz, tmp);
    else
        deq_act_quant_scalar(acc, M, N, w, as, az, act, hq, hs, hz, tmp);
}

void k_deq_res_ln(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az, float *x,
                  uint16_t *xb, uint8_t *xq, float *xs, int32_t *xz, const float *g, const float *b, float eps) {
    if (k_simd())
        deq_res_ln_avx2(acc, M, N, w, as, az, x, xb, xq, xs, xz, g, b, eps);
    else
        deq_res_ln_scalar(acc, M, N, w, as, az, x, xb, xq, xs, xz, g, b, eps);
}

void k_act(float *x, size_t n, int act) {
    if (k_simd()) {
        act_avx2(x, n, act);
        return;
    }
    for (size_t i = 0; i < n; i++) x[i] = act_scalar(x[i], act);
}
