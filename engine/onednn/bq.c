//go:build cgo

// The C half of the oneDNN engine: weight reorders, per-runner primitives and
// buffers, the layer loop, and the few element-wise kernels oneDNN does not
// fuse for us (embedding, Q/K/V re-layout, masked softmax, LayerNorm).
//
// Every function that can fail returns NULL on success or a malloc'd message
// that names the step and shape; the Go side frees it.

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bq.h"

// ---------------------------------------------------------------------------
// errors

static char *errorf(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return strdup(buf);
}

#define DNNL_TRY(call, ...)                                                   \
    do {                                                                      \
        dnnl_status_t st_ = (call);                                           \
        if (st_ != dnnl_success) {                                            \
            char what_[512];                                                  \
            snprintf(what_, sizeof what_, __VA_ARGS__);                       \
            return errorf("%s: %s failed: %s", what_, #call,                  \
                          dnnl_status2str(st_));                              \
        }                                                                     \
    } while (0)

// ---------------------------------------------------------------------------
// element-wise kernels: AVX-512 (with AVX512_BF16 conversions where the CPU
// has them), else portable scalar loops

static int g_simd = -1; // 0 scalar, 1 AVX-512, 2 AVX-512 with AVX512_BF16

static int simd_supported(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
        return 0;
    return __builtin_cpu_supports("avx512bf16") ? 2 : 1;
}

void bq_set_simd(int on) { g_simd = on ? simd_supported() : 0; }

static int use_simd(void) {
    if (g_simd < 0) g_simd = simd_supported();
    return g_simd;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Results of exp below e^EXP_LO are flushed to exactly zero.
#define EXP_LO (-86.0f)

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

AVX512 static inline __m256i bf16x16_int(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16));
}

#define KTARGET AVX512
#define KSFX avx512
#define KBF16(v) bf16x16_int(v)
#include "kernels.h"
#undef KTARGET
#undef KSFX
#undef KBF16

#define KTARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define KSFX avx512bf16
#define KBF16(v) ((__m256i)_mm512_cvtneps_pbh(v))
#include "kernels.h"
#undef KTARGET
#undef KSFX
#undef KBF16

// QKV [B][S][3][NH][D] → Q, K, V each [B][NH][S][D], es bytes per element.
static void relayout_qkv(const char *qkv, char *q, char *k, char *v, int B, int S, int NH, int D,
                         int es) {
    size_t row = (size_t)D * es, H = (size_t)NH * D;
    char *dst[3] = {q, k, v};
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++) {
            const char *src = qkv + ((size_t)b * S + s) * 3 * H * es;
            for (int t = 0; t < 3; t++)
                for (int h = 0; h < NH; h++)
                    memcpy(dst[t] + (((size_t)b * NH + h) * S + s) * row,
                           src + ((size_t)t * H + (size_t)h * D) * es, row);
        }
}

// Masked softmax over the last axis of scores [B][NH][S][S] into out (f32 or
// bf16): p = softmax(s + mask[b]), the mask being 0 for real keys and -FLT_MAX
// for padding, the float32 semantics of Hugging Face's additive mask. Padding
// keys get p = 0 exactly (e^-huge), so columns past a sequence's last real
// key (ncol[b]) are written as zeros without computing them; rows of padding
// queries (live = 0) are written as zeros too: nothing real ever reads them,
// and zero rows keep the padding positions' states finite. A sequence without
// real tokens keeps every row live and ncol = S, and attends uniformly.
// mrow [B][ld ≥ S rounded up to 16] holds the additive mask with -inf past
// ncol.
static void softmax_scalar(const float *sc, const float *mrow, int ld, const int *ncol,
                           const unsigned char *live, void *out, int B, int NH, int S, int bf16) {
    float *e = malloc(sizeof(float) * S);
    for (int b = 0; b < B; b++) {
        const float *m = mrow + (size_t)b * ld;
        int nc = ncol[b];
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < S; i++) {
                size_t off = (((size_t)b * NH + h) * S + i) * S;
                const float *s = sc + off;
                int from = 0;
                if (live[(size_t)b * S + i]) {
                    float mx = -INFINITY;
                    for (int j = 0; j < nc; j++) {
                        e[j] = s[j] + m[j];
                        if (e[j] > mx) mx = e[j];
                    }
                    float sum = 0;
                    for (int j = 0; j < nc; j++) {
                        float x = e[j] - mx;
                        e[j] = x < EXP_LO ? 0.0f : expf(x);
                        sum += e[j];
                    }
                    float inv = 1.0f / sum;
                    for (int j = 0; j < nc; j++) {
                        float p = e[j] * inv;
                        if (bf16)
                            ((uint16_t *)out)[off + j] = f32_to_bf16(p);
                        else
                            ((float *)out)[off + j] = p;
                    }
                    from = nc;
                }
                for (int j = from; j < S; j++) {
                    if (bf16)
                        ((uint16_t *)out)[off + j] = 0;
                    else
                        ((float *)out)[off + j] = 0;
                }
            }
    }
    free(e);
}

static void softmax(const float *sc, const float *mrow, int ld, const int *ncol, const unsigned char *live,
                    void *out, int B, int NH, int S, int bf16) {
    switch (use_simd()) {
    case 2: softmax_avx512bf16(sc, mrow, ld, ncol, live, out, B, NH, S, bf16); return;
    case 1: softmax_avx512(sc, mrow, ld, ncol, live, out, B, NH, S, bf16); return;
    }
    softmax_scalar(sc, mrow, ld, ncol, live, out, B, NH, S, bf16);
}

// prep_mask derives the softmax's per-sequence view of the additive mask.
static void prep_mask(const float *mask, float *mrow, int ld, int *ncol, unsigned char *live, int B, int S) {
    for (int b = 0; b < B; b++) {
        const float *m = mask + (size_t)b * S;
        int last = -1;
        for (int j = 0; j < S; j++)
            if (m[j] == 0) last = j;
        float *r = mrow + (size_t)b * ld;
        unsigned char *lv = live + (size_t)b * S;
        if (last < 0) { // no real token: every key equally -FLT_MAX, uniform attention
            ncol[b] = S;
            for (int j = 0; j < ld; j++) r[j] = j < S ? -FLT_MAX : -INFINITY;
            memset(lv, 1, S);
            continue;
        }
        ncol[b] = last + 1;
        for (int j = 0; j < ld; j++) r[j] = j <= last ? m[j] : -INFINITY;
        for (int i = 0; i < S; i++) lv[i] = m[i] == 0;
    }
}

// LayerNorm of each row of x [M][H] in place; xb (if not NULL) gets the bf16
// copy the next matmul reads.
static void layernorm_scalar(float *x, uint16_t *xb, const float *g, const float *be, int M, int H,
                             float eps) {
    for (int t = 0; t < M; t++) {
        float *r = x + (size_t)t * H;
        double sum = 0, sq = 0;
        for (int i = 0; i < H; i++) sum += r[i];
        float mean = (float)(sum / H);
        for (int i = 0; i < H; i++) {
            float d = r[i] - mean;
            sq += (double)d * d;
        }
        float inv = 1.0f / sqrtf((float)(sq / H) + eps);
        for (int i = 0; i < H; i++) {
            r[i] = (r[i] - mean) * inv * g[i] + be[i];
            if (xb) xb[(size_t)t * H + i] = f32_to_bf16(r[i]);
        }
    }
}

static void layernorm(float *x, uint16_t *xb, const float *g, const float *be, int M, int H, float eps) {
    switch (use_simd()) {
    case 2: layernorm_avx512bf16(x, xb, g, be, M, H, eps); return;
    case 1: layernorm_avx512(x, xb, g, be, M, H, eps); return;
    }
    layernorm_scalar(x, xb, g, be, M, H, eps);
}

// ---------------------------------------------------------------------------
// model and matmul descriptors

enum { MM_QKV, MM_AO, MM_FI, MM_FO, MM_SC, MM_CX, MM_POOL, MM_N };
static const char *mm_name[MM_N] = {"qkv",       "attention output", "ffn in", "ffn out",
                                    "attention scores", "attention context", "pooler"};
#define N_WEIGHTS 4 // encoder matmuls with stored weights: QKV, AO, FI, FO

// per-layer vectors, in this order
enum { V_QKVB, V_AOB, V_FIB, V_FOB, V_G1, V_B1, V_G2, V_B2, V_N };

struct bq_model {
    int B, S, H, NH, D, I, L, bf16, act;
    int wbf16; // the artifact's weights are bf16 (computed in f32 when bf16 != wbf16)
    float eps;
    dnnl_engine_t eng;
    dnnl_memory_desc_t wmd[N_WEIGHTS];  // reordered weight layouts (with post-ops)
    int nopost_same[N_WEIGHTS];         // the no-post-op variant asks for the same layout
    dnnl_memory_t *w;                   // [L][N_WEIGHTS], oneDNN-allocated
    float *vec;                         // [L][V_N] vectors, packed
    size_t vec_off[V_N], vec_stride;
    dnnl_memory_desc_t poolwmd;
    dnnl_memory_t poolw;
    float *poolb;
    char impl[MM_N][128];
    char describe[1024];
};

static void mm_shape(const bq_model *m, int kind, int64_t *M, int64_t *K, int64_t *N) {
    int64_t T = (int64_t)m->B * m->S;
    switch (kind) {
    case MM_QKV: *M = T, *K = m->H, *N = 3 * (int64_t)m->H; break;
    case MM_AO: *M = T, *K = m->H, *N = m->H; break;
    case MM_FI: *M = T, *K = m->H, *N = m->I; break;
    case MM_FO: *M = T, *K = m->I, *N = m->H; break;
    case MM_SC: *M = m->S, *K = m->D, *N = m->S; break;
    case MM_CX: *M = m->S, *K = m->S, *N = m->D; break;
    default: *M = m->B, *K = m->H, *N = m->H; break;
    }
}

static void mm_label(const bq_model *m, int kind, char *buf, size_t n) {
    int64_t M, K, N;
    mm_shape(m, kind, &M, &K, &N);
    const char *dt = kind == MM_POOL ? "f32" : (m->bf16 ? "bf16" : "f32");
    if (kind == MM_SC || kind == MM_CX)
        snprintf(buf, n, "matmul %s [%d×%d] batches of [%ld×%ld]·[%ld×%ld] %s", mm_name[kind],
                 m->B, m->NH, (long)M, (long)K, (long)K, (long)N, dt);
    else
        snprintf(buf, n, "matmul %s [%ld×%ld]·[%ld×%ld] %s", mm_name[kind], (long)M, (long)K,
                 (long)K, (long)N, dt);
}

// mm_pd makes the primitive descriptor for one of the forward's matmuls. post
// selects the bias and fused post-ops (0 gives the bare GEMM the roofline
// compares with). Weights are format_tag_any except for the attention GEMMs,
// whose "weights" are activations.
static char *mm_pd(bq_model *m, int kind, int post, dnnl_primitive_desc_t *pd) {
    char what[256];
    mm_label(m, kind, what, sizeof what);
    dnnl_data_type_t dt = m->bf16 ? dnnl_bf16 : dnnl_f32;
    int64_t M, K, N;
    mm_shape(m, kind, &M, &K, &N);
    dnnl_memory_desc_t src, wei, bias, dst;
    int has_bias = post;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_matmul_desc_t md;
    dnnl_status_t st;
    DNNL_TRY(dnnl_post_ops_create(&po), "%s", what);
    char *err = NULL;
#define TRY(call, ...)                                                                            \
    do {                                                                                          \
        if ((st = (call)) != dnnl_success) {                                                      \
            char how_[128];                                                                       \
            snprintf(how_, sizeof how_, __VA_ARGS__);                                             \
            err = errorf("%s%s: %s failed: %s", what, how_, #call, dnnl_status2str(st));          \
            goto out;                                                                             \
        }                                                                                         \
    } while (0)
    switch (kind) {
    case MM_QKV:
    case MM_AO:
    case MM_FI:
    case MM_FO: {
        dnnl_dims_t sd = {M, K}, wd = {K, N}, dd = {M, N}, bd = {1, N};
        dnnl_data_type_t ddt = (kind == MM_AO || kind == MM_FO) ? dnnl_f32 : dt;
        TRY(dnnl_memory_desc_init_by_tag(&src, 2, sd, dt, dnnl_ab), "%s", "");
        TRY(dnnl_memory_desc_init_by_tag(&wei, 2, wd, dt, dnnl_format_tag_any), "%s", "");
        TRY(dnnl_memory_desc_init_by_tag(&dst, 2, dd, ddt, dnnl_ab), "%s", "");
        TRY(dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab), "%s", "");
        if (post && (kind == MM_AO || kind == MM_FO))
            TRY(dnnl_post_ops_append_sum(po, 1.0f), ": residual sum post-op");
        if (post && kind == MM_FI) {
            dnnl_alg_kind_t alg = m->act == 1   ? dnnl_eltwise_gelu_tanh
                                  : m->act == 2 ? dnnl_eltwise_swish
                                                : dnnl_eltwise_gelu_erf;
            float alpha = m->act == 2 ? 1.702f : 0.0f;
            TRY(dnnl_post_ops_append_eltwise(po, 1.0f, alg, alpha, 0.0f), ": activation post-op");
        }
        break;
    }
    case MM_SC: {
        dnnl_dims_t sd = {m->B, m->NH, m->S, m->D}, wd = {m->B, m->NH, m->D, m->S},
                    dd = {m->B, m->NH, m->S, m->S};
        TRY(dnnl_memory_desc_init_by_tag(&src, 4, sd, dt, dnnl_abcd), "%s", "");
        TRY(dnnl_memory_desc_init_by_tag(&wei, 4, wd, dt, dnnl_abdc), "%s", "");
        TRY(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_abcd), "%s", "");
        has_bias = 0;
        break;
    }
    case MM_CX: {
        dnnl_dims_t sd = {m->B, m->NH, m->S, m->S}, wd = {m->B, m->NH, m->S, m->D},
                    dd = {m->B, m->NH, m->S, m->D},
                    ds = {(int64_t)m->S * m->H, m->D, m->H, 1};
        TRY(dnnl_memory_desc_init_by_tag(&src, 4, sd, dt, dnnl_abcd), "%s", "");
        TRY(dnnl_memory_desc_init_by_tag(&wei, 4, wd, dt, dnnl_abcd), "%s", "");
        TRY(dnnl_memory_desc_init_by_strides(&dst, 4, dd, dt, ds), "%s", "");
        has_bias = 0;
        break;
    }
    default: { // pooler: the [CLS] rows of the f32 hidden state, strided
        dnnl_dims_t sd = {m->B, m->H}, ss = {(int64_t)m->S * m->H, 1}, wd = {m->H, m->H},
                    dd = {m->B, m->H}, bd = {1, m->H};
        TRY(dnnl_memory_desc_init_by_strides(&src, 2, sd, dnnl_f32, ss), "%s", "");
        TRY(dnnl_memory_desc_init_by_tag(&wei, 2, wd, dnnl_f32, dnnl_format_tag_any), "%s", "");
        TRY(dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab), "%s", "");
        TRY(dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab), "%s", "");
        has_bias = 1;
        TRY(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_tanh, 0, 0), ": tanh post-op");
        break;
    }
    }
    st = dnnl_matmul_desc_init(&md, &src, &wei, has_bias ? &bias : NULL, &dst);
    if (st != dnnl_success) {
        err = errorf("%s: dnnl_matmul_desc_init failed: %s", what, dnnl_status2str(st));
        goto out;
    }
    if ((st = dnnl_primitive_attr_create(&attr)) != dnnl_success ||
        (st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) != dnnl_success ||
        (st = dnnl_primitive_attr_set_post_ops(attr, po)) != dnnl_success) {
        err = errorf("%s: setting attributes failed: %s", what, dnnl_status2str(st));
        goto out;
    }
    st = dnnl_primitive_desc_create(pd, &md, attr, m->eng, NULL);
    if (st != dnnl_success)
        err = errorf("%s: dnnl_primitive_desc_create failed: %s (oneDNN has no implementation of "
                     "this matmul on this CPU)",
                     what, dnnl_status2str(st));
out:
    if (attr) dnnl_primitive_attr_destroy(attr);
    dnnl_post_ops_destroy(po);
    return err;
#undef TRY
}

static const char *pd_impl(const_dnnl_primitive_desc_t pd) {
    const char *impl = "?";
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success) return "?";
    return impl;
}

static void *xalloc(size_t n) {
    void *p = NULL;
    if (n == 0) n = 64;
    n = (n + 4095) & ~(size_t)4095;
    if (posix_memalign(&p, 4096, n) != 0) return NULL;
    memset(p, 0, n);
    return p;
}

char *bq_probe(void) {
    dnnl_engine_t eng;
    dnnl_status_t st = dnnl_engine_create(&eng, dnnl_cpu, 0);
    if (st != dnnl_success) return errorf("oneDNN: creating a CPU engine failed: %s", dnnl_status2str(st));
    dnnl_engine_destroy(eng);
    return NULL;
}

void bq_model_destroy(bq_model *m) {
    if (!m) return;
    if (m->w) {
        for (int i = 0; i < m->L * N_WEIGHTS; i++)
            if (m->w[i]) dnnl_memory_destroy(m->w[i]);
        free(m->w);
    }
    if (m->poolw) dnnl_memory_destroy(m->poolw);
    free(m->vec);
    free(m->poolb);
    if (m->eng) dnnl_engine_destroy(m->eng);
    free(m);
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: return "unknown";
    }
}

// bq_model_create makes the engine and, for each weighted matmul, the
// primitive descriptor whose weights layout every runner will share. It must
// run on a thread with omp_set_num_threads(1), like the runners, so that the
// layouts agree.
char *bq_model_create(int B, int S, int H, int NH, int I, int L, int bf16, int act, float eps,
                      bq_model **out) {
    *out = NULL;
    if (B <= 0 || S <= 0 || H <= 0 || NH <= 0 || H % NH != 0 || I <= 0 || L <= 0)
        return errorf("oneDNN model: bad dimensions batch %d seq %d hidden %d heads %d intermediate %d layers %d",
                      B, S, H, NH, I, L);
    bq_model *m = calloc(1, sizeof *m);
    if (!m) return errorf("oneDNN model: out of memory");
    m->B = B, m->S = S, m->H = H, m->NH = NH, m->D = H / NH, m->I = I, m->L = L;
    m->bf16 = bf16, m->wbf16 = bf16, m->act = act, m->eps = eps;
    if (g_simd < 0) g_simd = simd_supported();
    char *err = NULL;
    dnnl_status_t st = dnnl_engine_create(&m->eng, dnnl_cpu, 0);
    if (st != dnnl_success) {
        err = errorf("oneDNN: creating a CPU engine failed: %s", dnnl_status2str(st));
        goto fail;
    }
    if (bf16) {
        // A CPU without bf16 matmuls (AVX2 only) runs bf16 weights widened
        // to f32: exact, and faster than oneDNN's reference loops.
        dnnl_primitive_desc_t pd = NULL;
        char *e = mm_pd(m, MM_QKV, 1, &pd);
        if (e || strncmp(pd_impl(pd), "ref", 3) == 0) m->bf16 = bf16 = 0;
        free(e);
        if (pd) dnnl_primitive_desc_destroy(pd);
    }
    for (int k = 0; k < MM_N; k++) {
        dnnl_primitive_desc_t pd = NULL;
        if ((err = mm_pd(m, k, 1, &pd))) goto fail;
        snprintf(m->impl[k], sizeof m->impl[k], "%s", pd_impl(pd));
        if (bf16 && k != MM_POOL && strncmp(m->impl[k], "ref", 3) == 0) {
            char what[256];
            mm_label(m, k, what, sizeof what);
            err = errorf("%s: oneDNN only has its reference implementation on this CPU (isa %s); "
                         "bf16 needs AVX-512 (ideally AMX); use an fp32 artifact or another backend",
                         what, isa_name(dnnl_get_effective_cpu_isa()));
            dnnl_primitive_desc_destroy(pd);
            goto fail;
        }
        if (k < N_WEIGHTS) {
            m->wmd[k] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            dnnl_primitive_desc_t np = NULL;
            if ((err = mm_pd(m, k, 0, &np))) {
                dnnl_primitive_desc_destroy(pd);
                goto fail;
            }
            m->nopost_same[k] = dnnl_memory_desc_equal(&m->wmd[k], dnnl_primitive_desc_query_md(np, dnnl_query_weights_md, 0));
            dnnl_primitive_desc_destroy(np);
        }
        if (k == MM_POOL) m->poolwmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        dnnl_primitive_desc_destroy(pd);
    }
    m->w = calloc((size_t)L * N_WEIGHTS, sizeof(dnnl_memory_t));
    size_t lens[V_N] = {3 * (size_t)H, H, I, H, H, H, H, H};
    size_t off = 0;
    for (int v = 0; v < V_N; v++) {
        m->vec_off[v] = off;
        off += (lens[v] + 15) & ~(size_t)15;
    }
    m->vec_stride = off;
    m->vec = xalloc(off * L * sizeof(float));
    m->poolb = xalloc((size_t)H * sizeof(float));
    if (!m->w || !m->vec || !m->poolb) {
        err = errorf("oneDNN model: out of memory");
        goto fail;
    }
    const dnnl_version_t *ver = dnnl_version();
    snprintf(m->describe, sizeof m->describe,
             "oneDNN %d.%d.%d, isa %s, %s%s matmuls: qkv %s, attention %s/%s, ffn %s; element-wise kernels %s",
             ver->major, ver->minor, ver->patch, isa_name(dnnl_get_effective_cpu_isa()),
             m->wbf16 && !bf16 ? "bf16 weights widened to f32, " : "", bf16 ? "bf16" : "f32", m->impl[MM_QKV], m->impl[MM_SC], m->impl[MM_CX], m->impl[MM_FI],
             g_simd == 2 ? "avx512+bf16" : g_simd ? "avx512" : "scalar");
    *out = m;
    return NULL;
fail:
    bq_model_destroy(m);
    return err;
}

const char *bq_model_describe(bq_model *m) { return m->describe; }

// bq_model_set_matrix reorders layer l's weight (kind 0..3: qkv, attn out, ffn
// in, ffn out), given as a row-major [K][N] matrix of the model's precision,
// into the layout the matmul asked for. src is only read during the call.
char *bq_model_set_matrix(bq_model *m, int l, int kind, const void *src) {
    char what[256];
    mm_label(m, kind, what, sizeof what);
    if (l < 0 || l >= m->L || kind < 0 || kind >= N_WEIGHTS)
        return errorf("%s: layer %d out of range", what, l);
    int64_t M, K, N;
    mm_shape(m, kind, &M, &K, &N);
    dnnl_memory_desc_t umd;
    dnnl_dims_t wd = {K, N};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&umd, 2, wd, m->wbf16 ? dnnl_bf16 : dnnl_f32, dnnl_ab),
             "layer %d %s weights", l, what);
    dnnl_memory_t *dstm = &m->w[(size_t)l * N_WEIGHTS + kind];
    if (!*dstm)
        DNNL_TRY(dnnl_memory_create(dstm, &m->wmd[kind], m->eng, DNNL_MEMORY_ALLOCATE),
                 "layer %d %s weights", l, what);
    dnnl_memory_t srcm = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t rp = NULL;
    dnnl_stream_t st = NULL;
    char *err = NULL;
    dnnl_status_t s;
    if ((s = dnnl_memory_create(&srcm, &umd, m->eng, (void *)src)) != dnnl_success ||
        (s = dnnl_reorder_primitive_desc_create(&rpd, &umd, m->eng, &m->wmd[kind], m->eng, NULL)) != dnnl_success ||
        (s = dnnl_primitive_create(&rp, rpd)) != dnnl_success ||
        (s = dnnl_stream_create(&st, m->eng, dnnl_stream_default_flags)) != dnnl_success) {
        err = errorf("layer %d %s: preparing the weight reorder failed: %s", l, what, dnnl_status2str(s));
        goto out;
    }
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, srcm}, {DNNL_ARG_TO, *dstm}};
    if ((s = dnnl_primitive_execute(rp, st, 2, args)) != dnnl_success || (s = dnnl_stream_wait(st)) != dnnl_success)
        err = errorf("layer %d %s: weight reorder failed: %s", l, what, dnnl_status2str(s));
out:
    if (st) dnnl_stream_destroy(st);
    if (rp) dnnl_primitive_destroy(rp);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (srcm) dnnl_memory_destroy(srcm);
    return err;
}

// bq_model_set_vectors copies layer l's biases and LayerNorm parameters.
void bq_model_set_vector(bq_model *m, int l, int which, const float *v) {
    size_t lens[V_N] = {3 * (size_t)m->H, m->H, m->I, m->H, m->H, m->H, m->H, m->H};
    memcpy(m->vec + (size_t)l * m->vec_stride + m->vec_off[which], v, lens[which] * sizeof(float));
}

static float *layer_vec(const bq_model *m, int l, int which) {
    return m->vec + (size_t)l * m->vec_stride + m->vec_off[which];
}

char *bq_model_set_pooler(bq_model *m, const float *w, const float *b) {
    memcpy(m->poolb, b, (size_t)m->H * sizeof(float));
    dnnl_memory_desc_t umd;
    dnnl_dims_t wd = {m->H, m->H};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&umd, 2, wd, dnnl_f32, dnnl_ab), "pooler weights");
    if (!m->poolw)
        DNNL_TRY(dnnl_memory_create(&m->poolw, &m->poolwmd, m->eng, DNNL_MEMORY_ALLOCATE), "pooler weights");
    dnnl_memory_t srcm = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t rp = NULL;
    dnnl_stream_t st = NULL;
    char *err = NULL;
    dnnl_status_t s;
    if ((s = dnnl_memory_create(&srcm, &umd, m->eng, (void *)w)) != dnnl_success ||
        (s = dnnl_reorder_primitive_desc_create(&rpd, &umd, m->eng, &m->poolwmd, m->eng, NULL)) != dnnl_success ||
        (s = dnnl_primitive_create(&rp, rpd)) != dnnl_success ||
        (s = dnnl_stream_create(&st, m->eng, dnnl_stream_default_flags)) != dnnl_success) {
        err = errorf("pooler weights: preparing the reorder failed: %s", dnnl_status2str(s));
        goto out;
    }
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, srcm}, {DNNL_ARG_TO, m->poolw}};
    if ((s = dnnl_primitive_execute(rp, st, 2, args)) != dnnl_success || (s = dnnl_stream_wait(st)) != dnnl_success)
        err = errorf("pooler weights: reorder failed: %s", dnnl_status2str(s));
out:
    if (st) dnnl_stream_destroy(st);
    if (rp) dnnl_primitive_destroy(rp);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (srcm) dnnl_memory_destroy(srcm);
    return err;
}

// ---------------------------------------------------------------------------
// runners

typedef struct {
    dnnl_primitive_t p;
    dnnl_memory_t src, wei, dst; // wei only for the attention GEMMs
} mm_t;

struct bq_runner {
    bq_model *m;
    dnnl_stream_t st;
    mm_t mm[MM_N];
    mm_t np[MM_N];  // bare GEMMs for the roofline without post-ops, made on demand
    int np_state;   // 0 not made, 1 made, -1 unavailable
    dnnl_memory_t *w, *b; // [L][N_WEIGHTS] views of the shared weights and biases
    dnnl_memory_t poolw, poolb;
    dnnl_memory_t scratch;
    size_t scratch_size;
    // buffers
    float *x;      // hidden state [T][H] f32
    void *xb;      // matmul input [T][H] (bf16 copy, or x itself in fp32)
    void *qkv;     // [T][3H]
    void *q, *k, *v; // [B][NH][S][D]
    float *sc;     // scores [B][NH][S][S] f32
    void *p;       // probabilities [B][NH][S][S]
    void *ctx;     // [T][H]
    void *h;       // [T][I]
    float *pooled; // [B][H]
    float *mask;   // additive mask [B][S]
    float *mrow;   // softmax's mask rows [B][mld]
    int mld;
    int *ncol;     // [B] columns up to the last real key
    unsigned char *live; // [B][S] real query rows
};

static char *mm_make(bq_runner *r, mm_t *mm, int kind, int post, void *src, void *wei, void *dst) {
    bq_model *m = r->m;
    char what[256];
    mm_label(m, kind, what, sizeof what);
    dnnl_primitive_desc_t pd = NULL;
    char *err = mm_pd(m, kind, post, &pd);
    if (err) return err;
    dnnl_status_t s;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *spd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (kind < N_WEIGHTS && !dnnl_memory_desc_equal(wmd, &m->wmd[kind]) && post) {
        err = errorf("%s: the runner's primitive wants a different weights layout than the one prepared at load", what);
        goto out;
    }
    if (kind == MM_POOL && !dnnl_memory_desc_equal(wmd, &m->poolwmd)) {
        err = errorf("%s: the runner's primitive wants a different weights layout than the one prepared at load", what);
        goto out;
    }
    size_t ss = spd ? dnnl_memory_desc_get_size(spd) : 0;
    if (ss > r->scratch_size) r->scratch_size = ss;
    if ((s = dnnl_primitive_create(&mm->p, pd)) != dnnl_success ||
        (s = dnnl_memory_create(&mm->src, smd, m->eng, src)) != dnnl_success ||
        (s = dnnl_memory_create(&mm->dst, dmd, m->eng, dst)) != dnnl_success ||
        (wei && (s = dnnl_memory_create(&mm->wei, wmd, m->eng, wei)) != dnnl_success)) {
        err = errorf("%s: creating the primitive failed: %s", what, dnnl_status2str(s));
        goto out;
    }
out:
    dnnl_primitive_desc_destroy(pd);
    return err;
}

static void mm_free(mm_t *mm) {
    if (mm->p) dnnl_primitive_destroy(mm->p);
    if (mm->src) dnnl_memory_destroy(mm->src);
    if (mm->wei) dnnl_memory_destroy(mm->wei);
    if (mm->dst) dnnl_memory_destroy(mm->dst);
    memset(mm, 0, sizeof *mm);
}

void bq_runner_destroy(bq_runner *r) {
    if (!r) return;
    for (int k = 0; k < MM_N; k++) {
        mm_free(&r->mm[k]);
        mm_free(&r->np[k]);
    }
    bq_model *m = r->m;
    if (r->w)
        for (int i = 0; i < m->L * N_WEIGHTS; i++)
            if (r->w[i]) dnnl_memory_destroy(r->w[i]);
    if (r->b)
        for (int i = 0; i < m->L * N_WEIGHTS; i++)
            if (r->b[i]) dnnl_memory_destroy(r->b[i]);
    free(r->w);
    free(r->b);
    if (r->poolw) dnnl_memory_destroy(r->poolw);
    if (r->poolb) dnnl_memory_destroy(r->poolb);
    if (r->scratch) dnnl_memory_destroy(r->scratch);
    if (r->st) dnnl_stream_destroy(r->st);
    if (r->xb != (void *)r->x) free(r->xb);
    free(r->x);
    free(r->qkv);
    free(r->q);
    free(r->k);
    free(r->v);
    free(r->sc);
    free(r->p);
    free(r->ctx);
    free(r->h);
    free(r->pooled);
    free(r->mask);
    free(r->mrow);
    free(r->ncol);
    free(r->live);
    free(r);
}

static char *make_scratch(bq_runner *r) {
    if (r->scratch) dnnl_memory_destroy(r->scratch);
    r->scratch = NULL;
    dnnl_memory_desc_t md;
    dnnl_dims_t d = {(int64_t)(r->scratch_size ? r->scratch_size : 1)};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md, 1, d, dnnl_u8, dnnl_a), "scratchpad of %zu bytes", r->scratch_size);
    DNNL_TRY(dnnl_memory_create(&r->scratch, &md, r->m->eng, DNNL_MEMORY_ALLOCATE), "scratchpad of %zu bytes",
             r->scratch_size);
    return NULL;
}

// bq_runner_create makes a runner's stream, primitives and buffers. Call it on
// the runner's own locked thread after omp_set_num_threads(1).
char *bq_runner_create(bq_model *m, bq_runner **out) {
    *out = NULL;
    bq_runner *r = calloc(1, sizeof *r);
    if (!r) return errorf("oneDNN runner: out of memory");
    r->m = m;
    size_t T = (size_t)m->B * m->S, es = m->bf16 ? 2 : 4;
    size_t heads = (size_t)m->B * m->NH * m->S;
    r->x = xalloc(T * m->H * 4);
    r->xb = m->bf16 ? xalloc(T * m->H * es) : (void *)r->x;
    r->qkv = xalloc(T * 3 * m->H * es);
    r->q = xalloc(heads * m->D * es);
    r->k = xalloc(heads * m->D * es);
    r->v = xalloc(heads * m->D * es);
    r->sc = xalloc(heads * m->S * 4);
    r->p = xalloc(heads * m->S * es);
    r->ctx = xalloc(T * m->H * es);
    r->h = xalloc(T * m->I * es);
    r->pooled = xalloc((size_t)m->B * m->H * 4);
    r->mask = xalloc((size_t)m->B * m->S * 4);
    r->mld = (m->S + 15) & ~15;
    r->mrow = xalloc((size_t)m->B * r->mld * 4);
    r->ncol = xalloc((size_t)m->B * sizeof(int));
    r->live = xalloc((size_t)m->B * m->S);
    r->w = calloc((size_t)m->L * N_WEIGHTS, sizeof(dnnl_memory_t));
    r->b = calloc((size_t)m->L * N_WEIGHTS, sizeof(dnnl_memory_t));
    char *err = NULL;
    if (!r->x || !r->xb || !r->qkv || !r->q || !r->k || !r->v || !r->sc || !r->p || !r->ctx || !r->h ||
        !r->pooled || !r->mask || !r->mrow || !r->ncol || !r->live || !r->w || !r->b) {
        err = errorf("oneDNN runner: out of memory for activation buffers");
        goto fail;
    }
    dnnl_status_t s = dnnl_stream_create(&r->st, m->eng, dnnl_stream_default_flags);
    if (s != dnnl_success) {
        err = errorf("oneDNN runner: creating a stream failed: %s", dnnl_status2str(s));
        goto fail;
    }
    if ((err = mm_make(r, &r->mm[MM_QKV], MM_QKV, 1, r->xb, NULL, r->qkv)) ||
        (err = mm_make(r, &r->mm[MM_AO], MM_AO, 1, r->ctx, NULL, r->x)) ||
        (err = mm_make(r, &r->mm[MM_FI], MM_FI, 1, r->xb, NULL, r->h)) ||
        (err = mm_make(r, &r->mm[MM_FO], MM_FO, 1, r->h, NULL, r->x)) ||
        (err = mm_make(r, &r->mm[MM_SC], MM_SC, 1, r->q, r->k, r->sc)) ||
        (err = mm_make(r, &r->mm[MM_CX], MM_CX, 1, r->p, r->v, r->ctx)) ||
        (err = mm_make(r, &r->mm[MM_POOL], MM_POOL, 1, r->x, NULL, r->pooled)))
        goto fail;
    for (int l = 0; l < m->L; l++)
        for (int k = 0; k < N_WEIGHTS; k++) {
            size_t i = (size_t)l * N_WEIGHTS + k;
            void *h = NULL;
            static const int bias_of[N_WEIGHTS] = {V_QKVB, V_AOB, V_FIB, V_FOB};
            int64_t M, K, N;
            mm_shape(m, k, &M, &K, &N);
            dnnl_memory_desc_t bmd;
            dnnl_dims_t bd = {1, N};
            if ((s = dnnl_memory_get_data_handle(m->w[i], &h)) != dnnl_success ||
                (s = dnnl_memory_create(&r->w[i], &m->wmd[k], m->eng, h)) != dnnl_success ||
                (s = dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab)) != dnnl_success ||
                (s = dnnl_memory_create(&r->b[i], &bmd, m->eng, layer_vec(m, l, bias_of[k]))) != dnnl_success) {
                err = errorf("oneDNN runner: layer %d %s weights: %s", l, mm_name[k], dnnl_status2str(s));
                goto fail;
            }
        }
    {
        void *h = NULL;
        dnnl_memory_desc_t bmd;
        dnnl_dims_t bd = {1, m->H};
        if ((s = dnnl_memory_get_data_handle(m->poolw, &h)) != dnnl_success ||
            (s = dnnl_memory_create(&r->poolw, &m->poolwmd, m->eng, h)) != dnnl_success ||
            (s = dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab)) != dnnl_success ||
            (s = dnnl_memory_create(&r->poolb, &bmd, m->eng, m->poolb)) != dnnl_success) {
            err = errorf("oneDNN runner: pooler weights: %s", dnnl_status2str(s));
            goto fail;
        }
    }
    if ((err = make_scratch(r))) goto fail;
    *out = r;
    return NULL;
fail:
    bq_runner_destroy(r);
    return err;
}

float *bq_runner_x(bq_runner *r) { return r->x; }
float *bq_runner_mask(bq_runner *r) { return r->mask; }
float *bq_runner_pooled(bq_runner *r) { return r->pooled; }

static dnnl_status_t run_mm(bq_runner *r, const mm_t *mm, dnnl_memory_t wei, dnnl_memory_t bias) {
    dnnl_exec_arg_t a[5];
    int n = 0;
    a[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, mm->src};
    a[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wei ? wei : mm->wei};
    a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, mm->dst};
    if (bias) a[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, bias};
    a[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, r->scratch};
    dnnl_status_t s = dnnl_primitive_execute(mm->p, r->st, n, a);
    if (s == dnnl_success) s = dnnl_stream_wait(r->st);
    return s;
}

#define RUN(kind, mmv, wei, bias)                                                              \
    do {                                                                                       \
        dnnl_status_t s_ = run_mm(r, &(mmv)[kind], wei, bias);                                 \
        if (s_ != dnnl_success) {                                                              \
            char what_[256];                                                                   \
            mm_label(m, kind, what_, sizeof what_);                                            \
            return errorf("layer %d %s: execution failed: %s", l < m->L ? l : m->L - 1, what_,        \
                          dnnl_status2str(s_));                                                \
        }                                                                                      \
    } while (0)

static char *make_nopost(bq_runner *r) {
    bq_model *m = r->m;
    for (int k = 0; k < N_WEIGHTS; k++)
        if (!m->nopost_same[k]) {
            r->np_state = -1;
            return errorf("matmul %s: without post-ops oneDNN wants another weights layout; no bare roofline",
                          mm_name[k]);
        }
    size_t before = r->scratch_size;
    char *err;
    if ((err = mm_make(r, &r->np[MM_QKV], MM_QKV, 0, r->xb, NULL, r->qkv)) ||
        (err = mm_make(r, &r->np[MM_AO], MM_AO, 0, r->ctx, NULL, r->x)) ||
        (err = mm_make(r, &r->np[MM_FI], MM_FI, 0, r->xb, NULL, r->h)) ||
        (err = mm_make(r, &r->np[MM_FO], MM_FO, 0, r->h, NULL, r->x)) ||
        (err = mm_make(r, &r->np[MM_SC], MM_SC, 0, r->q, r->k, r->sc)) ||
        (err = mm_make(r, &r->np[MM_CX], MM_CX, 0, r->p, r->v, r->ctx))) {
        for (int k = 0; k < MM_N; k++) mm_free(&r->np[k]);
        r->np_state = -1;
        return err;
    }
    if (r->scratch_size > before && (err = make_scratch(r))) {
        r->np_state = -1;
        return err;
    }
    r->np_state = 1;
    return NULL;
}

// bq_runner_embed writes the embedding output for ids/types (Batch·Seq
// tokens, already validated) into the hidden state: word + position + token
// type rows, then LayerNorm (also producing the bf16 copy). The table pointers
// are only read during the call.
void bq_runner_embed(bq_runner *r, const float *word, const float *pos, const float *type,
                     const float *gamma, const float *beta, const int32_t *ids, const int32_t *types) {
    bq_model *m = r->m;
    int H = m->H, T = m->B * m->S;
    for (int t = 0; t < T; t++) {
        float *x = r->x + (size_t)t * H;
        const float *a = word + (size_t)ids[t] * H, *b = pos + (size_t)(t % m->S) * H,
                    *c = type + (size_t)types[t] * H;
        for (int i = 0; i < H; i++) x[i] = a[i] + b[i] + c[i];
    }
    layernorm(r->x, m->bf16 ? r->xb : NULL, gamma, beta, T, H, m->eps);
}

// bq_runner_forward runs the encoder on the embedded hidden state in x (see
// bq_runner_embed) with the additive mask in mask, and the pooler into pooled. mode 1 runs only the
// GEMMs of the same forward, post-ops included (the roofline); mode 2 the bare
// GEMMs without bias or post-ops; mode 3 everything but the encoder GEMMs (to
// measure the non-GEMM work).
char *bq_runner_forward(bq_runner *r, int mode) {
    bq_model *m = r->m;
    int l = -1;
    size_t T = (size_t)m->B * m->S;
    mm_t *mm = r->mm;
    int post = 1;
    if (mode == 2) {
        if (r->np_state == 0) {
            char *err = make_nopost(r);
            if (err) return err;
        }
        if (r->np_state < 0) return errorf("no bare-GEMM roofline on this model");
        mm = r->np;
        post = 0;
    }
    int full = mode == 0 || mode == 3, gemm = mode != 3;
    if (full) prep_mask(r->mask, r->mrow, r->mld, r->ncol, r->live, m->B, m->S);
    for (l = 0; l < m->L; l++) {
        dnnl_memory_t *w = r->w + (size_t)l * N_WEIGHTS, *b = r->b + (size_t)l * N_WEIGHTS;
        if (gemm) RUN(MM_QKV, mm, w[MM_QKV], post ? b[MM_QKV] : NULL);
        if (full) relayout_qkv(r->qkv, r->q, r->k, r->v, m->B, m->S, m->NH, m->D, m->bf16 ? 2 : 4);
        if (gemm) RUN(MM_SC, mm, NULL, NULL);
        if (full) softmax(r->sc, r->mrow, r->mld, r->ncol, r->live, r->p, m->B, m->NH, m->S, m->bf16);
        if (gemm) RUN(MM_CX, mm, NULL, NULL);
        if (gemm) RUN(MM_AO, mm, w[MM_AO], post ? b[MM_AO] : NULL);
        if (full)
            layernorm(r->x, m->bf16 ? r->xb : NULL, layer_vec(m, l, V_G1), layer_vec(m, l, V_B1), (int)T, m->H,
                      m->eps);
        if (gemm) RUN(MM_FI, mm, w[MM_FI], post ? b[MM_FI] : NULL);
        if (gemm) RUN(MM_FO, mm, w[MM_FO], post ? b[MM_FO] : NULL);
        if (full)
            layernorm(r->x, m->bf16 ? r->xb : NULL, layer_vec(m, l, V_G2), layer_vec(m, l, V_B2), (int)T, m->H,
                      m->eps);
    }
    if (full) {
        l = m->L;
        RUN(MM_POOL, r->mm, r->poolw, r->poolb);
    }
    return NULL;
}
