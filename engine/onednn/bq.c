//go:build cgo

// The C half of the oneDNN engine: the model (weights reordered once into the
// layout the matmuls want, shared by every runner), the runners (their
// primitives and activation buffers), and the forward over a packed batch.
//
// Every function that can fail returns NULL on success or a malloc'd message
// that names the step and shape; the Go side frees it.

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bq.h"
#include "gemm.h"
#include "kernels.h"
#include "peak.h"

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

#define DNNL_TRY(call, ...)                                                                       \
    do {                                                                                          \
        dnnl_status_t st_ = (call);                                                               \
        if (st_ != dnnl_success) {                                                                \
            char what_[512];                                                                      \
            snprintf(what_, sizeof what_, __VA_ARGS__);                                           \
            return errorf("%s: %s failed: %s", what_, #call, dnnl_status2str(st_));               \
        }                                                                                         \
    } while (0)

void bq_set_simd(int on) { k_set_simd(on); }

static void *xalloc(size_t n) {
    void *p = NULL;
    n = (n + 64 + 4095) & ~(size_t)4095; // slack for vector loads past a row's end
    if (posix_memalign(&p, 4096, n) != 0) return NULL;
    memset(p, 0, n);
    return p;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// ---------------------------------------------------------------------------
// the model

enum { MM_QKV, MM_AO, MM_FI, MM_FO, MM_N };
static const char *mm_name[MM_N] = {"qkv", "attention output", "ffn in", "ffn out"};

// per-layer vectors, in this order
enum { V_QKVB, V_AOB, V_FIB, V_FOB, V_G1, V_B1, V_G2, V_B2, V_N };

// bias_of is each matmul's bias vector.
static const int bias_of[MM_N] = {V_QKVB, V_AOB, V_FIB, V_FOB};

struct bq_model {
    bq_dims d;
    int D, compute, mm_mode;
    int64_t maxM; // rows the buffers hold: max_tokens rounded up to BQ_BUCKET
    dnnl_engine_t eng;
    dnnl_memory_desc_t wmd[MM_N]; // the weights' prepared layouts
    dnnl_memory_t *w;             // [L][MM_N]; NULL entries when own
    int own;                      // int8 matmuls run on gemm.h's kernels
    void **pk;                    // own: [L][MM_N] weights packed for them
    float *ws;                    // int8: column scales, [L][qstride]
    int32_t *colsum;              // int8: Σk q[k][n], [L][qstride]
    size_t qoff[MM_N], qstride;
    float *vec; // [L][vec_stride]
    size_t vec_off[V_N], vec_stride;
    const float *word, *pos, *type, *embg, *embb;
    float *poolw, *poolb;
    char impl[MM_N][64];
    char describe[1024];
};

static void mm_dims(const bq_model *m, int kind, int64_t *K, int64_t *N) {
    int64_t H = m->d.H, I = m->d.I;
    switch (kind) {
    case MM_QKV: *K = H, *N = 3 * H; break;
    case MM_AO: *K = H, *N = H; break;
    case MM_FI: *K = H, *N = I; break;
    default: *K = I, *N = H; break;
    }
}

static void mm_types(const bq_model *m, int kind, dnnl_data_type_t *src, dnnl_data_type_t *wei,
                     dnnl_data_type_t *dst) {
    switch (m->compute) {
    case BQ_INT8: *src = dnnl_u8, *wei = dnnl_s8, *dst = dnnl_s32; return;
    case BQ_BF16: *src = dnnl_bf16, *wei = dnnl_bf16, *dst = kind == MM_FI ? dnnl_bf16 : dnnl_f32; return;
    default: *src = *wei = *dst = dnnl_f32;
    }
}

static const char *type_name(int t) { return t == BQ_INT8 ? "int8" : t == BQ_BF16 ? "bf16" : "f32"; }

static void mm_label(const bq_model *m, int kind, int64_t M, char *buf, size_t n) {
    int64_t K, N;
    mm_dims(m, kind, &K, &N);
    if (M == DNNL_RUNTIME_DIM_VAL)
        snprintf(buf, n, "matmul %s [M×%ld]·[%ld×%ld] %s", mm_name[kind], (long)K, (long)K, (long)N,
                 type_name(m->compute));
    else
        snprintf(buf, n, "matmul %s [%ld×%ld]·[%ld×%ld] %s", mm_name[kind], (long)M, (long)K, (long)K, (long)N,
                 type_name(m->compute));
}

// mm_pd makes the primitive descriptor of one encoder matmul for M rows (or
// DNNL_RUNTIME_DIM_VAL). post adds the bias and fused post-ops of the f32 and
// bf16 paths (int8 matmuls have none: the engine's epilogues dequantize);
// wmd fixes the weights layout (NULL: oneDNN's choice).
static char *mm_pd(const bq_model *m, int kind, int64_t M, int post, const dnnl_memory_desc_t *wmd,
                   dnnl_primitive_desc_t *pd) {
    char what[256];
    mm_label(m, kind, M, what, sizeof what);
    int64_t K, N;
    mm_dims(m, kind, &K, &N);
    dnnl_data_type_t sdt, wdt, ddt;
    mm_types(m, kind, &sdt, &wdt, &ddt);
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_dims_t sd = {M, K}, wd = {K, N}, dd = {M, N}, bd = {1, N};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&src, 2, sd, sdt, dnnl_ab), "%s", what);
    if (wmd)
        wei = *wmd;
    else
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&wei, 2, wd, wdt, dnnl_format_tag_any), "%s", what);
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&dst, 2, dd, ddt, dnnl_ab), "%s", what);
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab), "%s", what);
    int fused = post && m->compute != BQ_INT8;
    dnnl_matmul_desc_t md;
    DNNL_TRY(dnnl_matmul_desc_init(&md, &src, &wei, fused ? &bias : NULL, &dst), "%s", what);
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_attr_t attr = NULL;
    char *err = NULL;
    dnnl_status_t st;
    if ((st = dnnl_post_ops_create(&po)) != dnnl_success || (st = dnnl_primitive_attr_create(&attr)) != dnnl_success) {
        err = errorf("%s: creating attributes failed: %s", what, dnnl_status2str(st));
        goto out;
    }
    if (fused && (kind == MM_AO || kind == MM_FO)) st = dnnl_post_ops_append_sum(po, 1.0f);
    if (fused && kind == MM_FI) {
        dnnl_alg_kind_t alg = m->d.act == ACT_GELU_TANH    ? dnnl_eltwise_gelu_tanh
                              : m->d.act == ACT_GELU_CRUDE ? dnnl_eltwise_swish
                                                           : dnnl_eltwise_gelu_erf;
        st = dnnl_post_ops_append_eltwise(po, 1.0f, alg, m->d.act == ACT_GELU_CRUDE ? 1.702f : 0.0f, 0.0f);
    }
    if (st != dnnl_success || (st = dnnl_primitive_attr_set_post_ops(attr, po)) != dnnl_success) {
        err = errorf("%s: post-ops failed: %s", what, dnnl_status2str(st));
        goto out;
    }
    st = dnnl_primitive_desc_create(pd, &md, attr, m->eng, NULL);
    if (st != dnnl_success)
        err = errorf("%s: dnnl_primitive_desc_create failed: %s (oneDNN has no implementation of this "
                     "matmul on this CPU)",
                     what, dnnl_status2str(st));
out:
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    return err;
}

static const char *pd_impl(const_dnnl_primitive_desc_t pd) {
    const char *impl = "?";
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success) return "?";
    return impl;
}

// plain reports whether a prepared weights layout is a plain row-major one:
// what gemm-based implementations choose, and slower for them than the
// transposed ("ba") layout at M below ~400 (measured: f32 44 against 80
// GFLOP/s at M = 256, K = 1024, N = 4096, AVX2).
static int plain(const dnnl_memory_desc_t *md) {
    return md->format_kind == dnnl_blocked && md->format_desc.blocking.inner_nblks == 0 &&
           md->format_desc.blocking.strides[1] == 1;
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
        for (int i = 0; i < m->d.L * MM_N; i++)
            if (m->w[i]) dnnl_memory_destroy(m->w[i]);
        free(m->w);
    }
    if (m->pk) {
        for (int i = 0; i < m->d.L * MM_N; i++) free(m->pk[i]);
        free(m->pk);
    }
    free(m->ws);
    free(m->colsum);
    free(m->vec);
    free(m->poolw);
    free(m->poolb);
    if (m->eng) dnnl_engine_destroy(m->eng);
    free(m);
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
    }
}

// pick_compute settles what the matmuls compute in: the artifact's type,
// except bf16 on a CPU without bf16 matmuls, which runs its weights widened
// to f32 (exact, and far faster than oneDNN's reference loops).
static char *pick_compute(bq_model *m) {
    m->compute = m->d.wtype;
    dnnl_primitive_desc_t pd = NULL;
    char *err = mm_pd(m, MM_QKV, m->maxM, 1, NULL, &pd);
    int ref = !err && strncmp(pd_impl(pd), "ref", 3) == 0;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (m->d.wtype == BQ_BF16 && (err || ref)) {
        free(err);
        m->compute = BQ_F32;
        return NULL;
    }
    if (err) return err;
    if (ref && m->d.wtype == BQ_INT8)
        return errorf("oneDNN has only its reference int8 matmul on this CPU (isa %s); int8 needs AVX2 or better",
                      isa_name(dnnl_get_effective_cpu_isa()));
    return NULL;
}

// pick_own settles whether the int8 matmuls run on gemm.h's kernels: where
// oneDNN has only gemm:jit for them (AVX2, no VNNI or AMX), whose u8·s8
// kernel ran 0.83–0.93× as fast as gemm.h's on the encoder's shapes (Zen 3,
// M = 212 and 512). Where oneDNN has VNNI or AMX kernels, they are better.
static void pick_own(bq_model *m) {
    m->own = m->compute == BQ_INT8 && m->d.gemm == BQ_GEMM_AUTO && k_avx2();
    for (int k = 0; k < MM_N && m->own; k++) m->own = strncmp(m->impl[k], "gemm:jit", 8) == 0;
    if (m->own)
        for (int k = 0; k < MM_N; k++) snprintf(m->impl[k], sizeof m->impl[k], "bertq:avx2_u8s8");
}

// pick_layouts fixes each matmul's weights layout and how varying M is met.
static char *pick_layouts(bq_model *m) {
    int runtime_ok = 1;
    for (int k = 0; k < MM_N; k++) {
        dnnl_primitive_desc_t pd = NULL;
        char *err = mm_pd(m, k, m->maxM, 1, NULL, &pd);
        if (err) return err;
        m->wmd[k] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        dnnl_primitive_desc_destroy(pd);
        if (plain(&m->wmd[k])) {
            int64_t K, N;
            mm_dims(m, k, &K, &N);
            dnnl_dims_t wd = {K, N};
            DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->wmd[k], 2, wd, m->wmd[k].data_type, dnnl_ba), "%s weights",
                     mm_name[k]);
        }
        if ((err = mm_pd(m, k, m->maxM, 1, &m->wmd[k], &pd))) return err;
        snprintf(m->impl[k], sizeof m->impl[k], "%s", pd_impl(pd));
        dnnl_primitive_desc_destroy(pd);
        // A runtime M is worth it only where it keeps the implementation.
        if (mm_pd(m, k, DNNL_RUNTIME_DIM_VAL, 1, &m->wmd[k], &pd) == NULL) {
            runtime_ok = runtime_ok && strcmp(pd_impl(pd), m->impl[k]) == 0;
            dnnl_primitive_desc_destroy(pd);
        } else {
            runtime_ok = 0;
        }
    }
    if (m->d.mm_mode == BQ_MM_RUNTIME && !runtime_ok)
        return errorf("oneDNN cannot run these matmuls with a runtime M at full speed here (%s); use bucketed M",
                      m->impl[MM_QKV]);
    m->mm_mode = m->d.mm_mode != BQ_MM_AUTO ? m->d.mm_mode : runtime_ok ? BQ_MM_RUNTIME : BQ_MM_BUCKET;
    pick_own(m);
    return NULL;
}

// bq_model_create makes the engine, settles the compute type and the weights
// layouts, and allocates the shared weights. It must run on a thread with
// omp_set_num_threads(1), like the runners, so that the layouts agree.
char *bq_model_create(const bq_dims *d, bq_model **out) {
    *out = NULL;
    if (d->max_tokens <= 0 || d->max_seqs <= 0 || d->max_len <= 0 || d->H <= 0 || d->NH <= 0 ||
        d->H % d->NH != 0 || d->I <= 0 || d->L <= 0 || d->wtype < BQ_F32 || d->wtype > BQ_INT8)
        return errorf("oneDNN model: bad dimensions: %d tokens, %d sequences of %d, hidden %d, heads %d, "
                      "intermediate %d, layers %d, type %d",
                      d->max_tokens, d->max_seqs, d->max_len, d->H, d->NH, d->I, d->L, d->wtype);
    bq_model *m = calloc(1, sizeof *m);
    if (!m) return errorf("oneDNN model: out of memory");
    m->d = *d;
    m->D = d->H / d->NH;
    m->maxM = (int64_t)round_up((size_t)d->max_tokens, BQ_BUCKET);
    char *err = NULL;
    dnnl_status_t st = dnnl_engine_create(&m->eng, dnnl_cpu, 0);
    if (st != dnnl_success) {
        err = errorf("oneDNN: creating a CPU engine failed: %s", dnnl_status2str(st));
        goto fail;
    }
    if ((err = pick_compute(m)) || (err = pick_layouts(m))) goto fail;
    size_t H = d->H, I = d->I, lens[V_N] = {3 * H, H, I, H, H, H, H, H};
    for (int v = 0; v < V_N; v++) {
        m->vec_off[v] = m->vec_stride;
        m->vec_stride += round_up(lens[v], 16);
    }
    size_t ns[MM_N] = {3 * H, H, I, H};
    for (int k = 0; k < MM_N; k++) {
        m->qoff[k] = m->qstride;
        m->qstride += round_up(ns[k], 16);
    }
    m->w = calloc((size_t)d->L * MM_N, sizeof(dnnl_memory_t));
    m->vec = xalloc(m->vec_stride * d->L * sizeof(float));
    m->poolw = xalloc(H * H * sizeof(float));
    m->poolb = xalloc(H * sizeof(float));
    if (m->compute == BQ_INT8) {
        m->ws = xalloc(m->qstride * d->L * sizeof(float));
        m->colsum = xalloc(m->qstride * d->L * sizeof(int32_t));
    }
    if (!m->w || !m->vec || !m->poolw || !m->poolb || (m->compute == BQ_INT8 && (!m->ws || !m->colsum))) {
        err = errorf("oneDNN model: out of memory");
        goto fail;
    }
    if (m->own && !(m->pk = calloc((size_t)d->L * MM_N, sizeof(void *)))) {
        err = errorf("oneDNN model: out of memory");
        goto fail;
    }
    for (int i = 0; i < d->L * MM_N && !m->own; i++)
        if ((st = dnnl_memory_create(&m->w[i], &m->wmd[i % MM_N], m->eng, DNNL_MEMORY_ALLOCATE)) != dnnl_success) {
            err = errorf("oneDNN model: allocating layer %d %s weights failed: %s", i / MM_N, mm_name[i % MM_N],
                         dnnl_status2str(st));
            goto fail;
        }
    const dnnl_version_t *ver = dnnl_version();
    const char *qa = m->compute == BQ_INT8 ? " (u8 activations per token, s8 pair-safe weights per channel)" : "";
    snprintf(m->describe, sizeof m->describe,
             "oneDNN %d.%d.%d, isa %s, %s%s matmuls%s with %s M: qkv %s, attention output %s, ffn %s/%s; "
             "element-wise kernels %s",
             ver->major, ver->minor, ver->patch, isa_name(dnnl_get_effective_cpu_isa()),
             d->wtype == BQ_BF16 && m->compute == BQ_F32 ? "bf16 weights widened to f32, " : "",
             type_name(m->compute), qa, m->mm_mode == BQ_MM_RUNTIME ? "runtime" : "bucketed", m->impl[MM_QKV],
             m->impl[MM_AO], m->impl[MM_FI], m->impl[MM_FO], k_simd() ? "avx2" : "scalar");
    *out = m;
    return NULL;
fail:
    bq_model_destroy(m);
    return err;
}

const char *bq_model_describe(bq_model *m) { return m->describe; }

const char *bq_model_peak_isa(bq_model *m) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    int amx = isa == dnnl_cpu_isa_avx512_core_amx;
    int avx512 = amx || isa == dnnl_cpu_isa_avx512_core || isa == dnnl_cpu_isa_avx512_core_vnni ||
                 isa == dnnl_cpu_isa_avx512_core_bf16;
    return bq_peak_isa(m->compute, amx, avx512);
}
int bq_model_compute(bq_model *m) { return m->compute; }
int bq_model_mm_mode(bq_model *m) { return m->mm_mode; }

static float *layer_vec(const bq_model *m, int l, int which) {
    return m->vec + (size_t)l * m->vec_stride + m->vec_off[which];
}

// reorder copies src (described by smd) into dst's layout.
static char *reorder(bq_model *m, const dnnl_memory_desc_t *smd, const void *src, dnnl_memory_t dst,
                     const char *what) {
    const dnnl_memory_desc_t *dmd;
    DNNL_TRY(dnnl_memory_get_memory_desc(dst, &dmd), "%s", what);
    dnnl_memory_t srcm = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t rp = NULL;
    dnnl_stream_t st = NULL;
    char *err = NULL;
    dnnl_status_t s;
    if ((s = dnnl_memory_create(&srcm, smd, m->eng, (void *)src)) != dnnl_success ||
        (s = dnnl_reorder_primitive_desc_create(&rpd, smd, m->eng, dmd, m->eng, NULL)) != dnnl_success ||
        (s = dnnl_primitive_create(&rp, rpd)) != dnnl_success ||
        (s = dnnl_stream_create(&st, m->eng, dnnl_stream_default_flags)) != dnnl_success) {
        err = errorf("%s: preparing the weight reorder failed: %s", what, dnnl_status2str(s));
        goto out;
    }
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, srcm}, {DNNL_ARG_TO, dst}};
    if ((s = dnnl_primitive_execute(rp, st, 2, args)) != dnnl_success || (s = dnnl_stream_wait(st)) != dnnl_success)
        err = errorf("%s: weight reorder failed: %s", what, dnnl_status2str(s));
out:
    if (st) dnnl_stream_destroy(st);
    if (rp) dnnl_primitive_destroy(rp);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (srcm) dnnl_memory_destroy(srcm);
    return err;
}

// pack_own packs layer l's int8 weights for gemm.h.
static char *pack_own(bq_model *m, int l, int kind, const void *w, const char *what) {
    int64_t K, N;
    mm_dims(m, kind, &K, &N);
    size_t n = round_up(bq_pack_s8_size((int)K, (int)N), 64);
    void **pk = &m->pk[(size_t)l * MM_N + kind];
    free(*pk);
    if (!(*pk = aligned_alloc(64, n))) return errorf("%s: out of memory for the packed weights", what);
    bq_pack_s8(w, (int)K, (int)N, *pk);
    return NULL;
}

char *bq_model_set_matrix(bq_model *m, int l, int kind, const void *w, const float *scales) {
    char what[256];
    mm_label(m, kind, m->maxM, what, sizeof what);
    if (l < 0 || l >= m->d.L || kind < 0 || kind >= MM_N) return errorf("%s: layer %d out of range", what, l);
    int64_t K, N;
    mm_dims(m, kind, &K, &N);
    dnnl_data_type_t dt = m->d.wtype == BQ_INT8 ? dnnl_s8 : m->d.wtype == BQ_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t umd;
    dnnl_dims_t wd = {K, N};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&umd, 2, wd, dt, dnnl_ab), "layer %d %s weights", l, what);
    char *err = m->own ? pack_own(m, l, kind, w, what) : reorder(m, &umd, w, m->w[(size_t)l * MM_N + kind], what);
    if (err || m->compute != BQ_INT8) return err;
    // The column sums carry the zero points' share of every output.
    const int8_t *q = w;
    size_t off = (size_t)l * m->qstride + m->qoff[kind];
    int32_t *colsum = m->colsum + off;
    memset(colsum, 0, (size_t)N * sizeof *colsum);
    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++) colsum[n] += q[k * N + n];
    memcpy(m->ws + off, scales, (size_t)N * sizeof(float));
    return NULL;
}

void bq_model_set_vector(bq_model *m, int l, int which, const float *v) {
    size_t H = m->d.H, I = m->d.I, lens[V_N] = {3 * H, H, I, H, H, H, H, H};
    memcpy(layer_vec(m, l, which), v, lens[which] * sizeof(float));
}

void bq_model_set_embeddings(bq_model *m, const float *word, const float *pos, const float *type,
                             const float *gamma, const float *beta) {
    m->word = word, m->pos = pos, m->type = type, m->embg = gamma, m->embb = beta;
}

void bq_model_set_pooler(bq_model *m, const float *w, const float *b) {
    memcpy(m->poolw, w, (size_t)m->d.H * m->d.H * sizeof(float));
    memcpy(m->poolb, b, (size_t)m->d.H * sizeof(float));
}

// ---------------------------------------------------------------------------
// runners

// A plan is the primitives for one M: the only one with a runtime M, else one
// per bucket, made when first needed. Its memories are views of the runner's
// buffers, M rows tall.
typedef struct {
    int64_t M;     // rows the memories describe (runtime: the last batch's)
    int made;
    dnnl_primitive_t p[MM_N], bare[MM_N];
    dnnl_memory_t src[MM_N], dst[MM_N];
} plan_t;

struct bq_runner {
    bq_model *m;
    dnnl_stream_t st;
    plan_t *plans;
    int nplans;
    dnnl_memory_t *w, *b; // [L][MM_N] views of the shared weights and biases
    // buffers, maxM rows
    float *x;        // hidden state [M][H] f32
    void *xin;       // the matmuls' copy of x: bf16, or u8 (int8); NULL for f32
    float *xs;       // int8: row scales and zero points of xin
    int32_t *xz;
    float *qkv;      // [M][3H] f32
    void *ctx;       // [M][H]: bf16 for bf16, else f32
    uint8_t *ctxq;   // int8: quantized ctx, its row scales and zero points
    float *cs;
    int32_t *cz;
    void *h;         // [M][I]: f32, bf16, or u8 (int8)
    float *hs;       // int8: row scales and zero points of h
    int32_t *hz;
    int32_t *acc;    // int8: [M][max(3H, I)] accumulators
    float *tmp;      // an epilogue row
    float *attn;     // attention scratch
    float *pooled;   // [max_seqs][H]
};

static void plan_free(plan_t *pl) {
    for (int k = 0; k < MM_N; k++) {
        if (pl->p[k]) dnnl_primitive_destroy(pl->p[k]);
        if (pl->bare[k]) dnnl_primitive_destroy(pl->bare[k]);
        if (pl->src[k]) dnnl_memory_destroy(pl->src[k]);
        if (pl->dst[k]) dnnl_memory_destroy(pl->dst[k]);
    }
    memset(pl, 0, sizeof *pl);
}

void bq_runner_destroy(bq_runner *r) {
    if (!r) return;
    for (int i = 0; i < r->nplans; i++) plan_free(&r->plans[i]);
    free(r->plans);
    bq_model *m = r->m;
    for (int i = 0; i < m->d.L * MM_N; i++) {
        if (r->w && r->w[i]) dnnl_memory_destroy(r->w[i]);
        if (r->b && r->b[i]) dnnl_memory_destroy(r->b[i]);
    }
    free(r->w);
    free(r->b);
    if (r->st) dnnl_stream_destroy(r->st);
    void *bufs[] = {r->x,  r->xin, r->xs, r->xz,  r->qkv, r->ctx,  r->ctxq, r->cs,
                    r->cz, r->h,   r->hs, r->hz, r->acc, r->tmp, r->attn, r->pooled};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(r);
}

static void mm_bufs(bq_runner *r, int kind, void **src, void **dst) {
    int q = r->m->compute == BQ_INT8;
    void *xin = r->xin ? r->xin : r->x;
    switch (kind) {
    case MM_QKV: *src = xin, *dst = q ? (void *)r->acc : r->qkv; break;
    case MM_AO: *src = q ? (void *)r->ctxq : r->ctx, *dst = q ? (void *)r->acc : r->x; break;
    case MM_FI: *src = xin, *dst = q ? (void *)r->acc : r->h; break;
    default: *src = r->h, *dst = q ? (void *)r->acc : r->x; break;
    }
}

// plan_views (re)makes a plan's memories for M rows.
static char *plan_views(bq_runner *r, plan_t *pl, int64_t M) {
    bq_model *m = r->m;
    for (int k = 0; k < MM_N; k++) {
        if (pl->src[k]) dnnl_memory_destroy(pl->src[k]);
        if (pl->dst[k]) dnnl_memory_destroy(pl->dst[k]);
        pl->src[k] = pl->dst[k] = NULL;
        int64_t K, N;
        mm_dims(m, k, &K, &N);
        dnnl_data_type_t sdt, wdt, ddt;
        mm_types(m, k, &sdt, &wdt, &ddt);
        void *src, *dst;
        mm_bufs(r, k, &src, &dst);
        dnnl_memory_desc_t smd, dmd;
        dnnl_dims_t sd = {M, K}, dd = {M, N};
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&smd, 2, sd, sdt, dnnl_ab), "%s source", mm_name[k]);
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, ddt, dnnl_ab), "%s destination", mm_name[k]);
        DNNL_TRY(dnnl_memory_create(&pl->src[k], &smd, m->eng, src), "%s source", mm_name[k]);
        DNNL_TRY(dnnl_memory_create(&pl->dst[k], &dmd, m->eng, dst), "%s destination", mm_name[k]);
    }
    pl->M = M;
    return NULL;
}

static char *make_prims(bq_model *m, dnnl_primitive_t *p, int64_t M, int post) {
    for (int k = 0; k < MM_N; k++) {
        dnnl_primitive_desc_t pd = NULL;
        char *err = mm_pd(m, k, M, post, &m->wmd[k], &pd);
        if (err) return err;
        dnnl_status_t s = dnnl_primitive_create(&p[k], pd);
        dnnl_primitive_desc_destroy(pd);
        if (s != dnnl_success) return errorf("matmul %s: creating the primitive failed: %s", mm_name[k], dnnl_status2str(s));
    }
    return NULL;
}

// get_plan returns the plan for a batch of T rows, making it if needed; its
// memories describe *M rows.
static char *get_plan(bq_runner *r, int64_t T, int bare, plan_t **out) {
    bq_model *m = r->m;
    int runtime = m->mm_mode == BQ_MM_RUNTIME;
    int64_t M = runtime ? T : (int64_t)round_up((size_t)T, BQ_BUCKET);
    plan_t *pl = &r->plans[runtime ? 0 : M / BQ_BUCKET - 1];
    char *err;
    int64_t pm = runtime ? DNNL_RUNTIME_DIM_VAL : M;
    if (!pl->made) {
        if (!m->own && (err = make_prims(m, pl->p, pm, 1))) return err;
        pl->made = 1;
    }
    if (bare && !m->own && !pl->bare[0] && (err = make_prims(m, pl->bare, pm, 0))) return err;
    // gemm.h reads the runner's buffers directly: no oneDNN views to remake.
    if (m->own)
        pl->M = M;
    else if (pl->M != M && (err = plan_views(r, pl, M)))
        return err;
    *out = pl;
    return NULL;
}

char *bq_runner_create(bq_model *m, bq_runner **out) {
    *out = NULL;
    bq_runner *r = calloc(1, sizeof *r);
    if (!r) return errorf("oneDNN runner: out of memory");
    r->m = m;
    size_t M = (size_t)m->maxM, H = m->d.H, I = m->d.I;
    int q = m->compute == BQ_INT8, b = m->compute == BQ_BF16;
    size_t wide = 3 * H > I ? 3 * H : I;
    r->nplans = m->mm_mode == BQ_MM_RUNTIME ? 1 : (int)(M / BQ_BUCKET);
    r->plans = calloc((size_t)r->nplans, sizeof *r->plans);
    r->w = calloc((size_t)m->d.L * MM_N, sizeof(dnnl_memory_t));
    r->b = calloc((size_t)m->d.L * MM_N, sizeof(dnnl_memory_t));
    r->x = xalloc(M * H * 4);
    r->xin = q ? xalloc(M * H) : b ? xalloc(M * H * 2) : NULL;
    r->xs = xalloc(M * 4);
    r->xz = xalloc(M * 4);
    r->cz = xalloc(M * 4);
    r->hz = xalloc(M * 4);
    r->qkv = xalloc(M * 3 * H * 4);
    r->ctx = xalloc(M * H * (b ? 2 : 4));
    r->ctxq = q ? xalloc(M * H) : NULL;
    r->cs = xalloc(M * 4);
    r->h = xalloc(M * I * (q ? 1 : b ? 2 : 4));
    r->hs = xalloc(M * 4);
    r->acc = q ? xalloc(M * wide * 4) : NULL;
    r->tmp = xalloc(wide * 4);
    r->attn = xalloc(k_attention_scratch(m->d.max_len, m->D) * 4);
    r->pooled = xalloc((size_t)m->d.max_seqs * H * 4);
    char *err = NULL;
    if (!r->plans || !r->w || !r->b || !r->x || ((q || b) && !r->xin) || !r->xs || !r->xz || !r->cz || !r->hz ||
        !r->qkv || !r->ctx ||
        (q && (!r->ctxq || !r->acc)) || !r->cs || !r->h || !r->hs || !r->tmp || !r->attn || !r->pooled) {
        err = errorf("oneDNN runner: out of memory for activation buffers");
        goto fail;
    }
    dnnl_status_t s = dnnl_stream_create(&r->st, m->eng, dnnl_stream_default_flags);
    if (s != dnnl_success) {
        err = errorf("oneDNN runner: creating a stream failed: %s", dnnl_status2str(s));
        goto fail;
    }
    for (int l = 0; l < m->d.L && !m->own; l++)
        for (int k = 0; k < MM_N; k++) {
            size_t i = (size_t)l * MM_N + k;
            void *wh = NULL;
            int64_t K, N;
            mm_dims(m, k, &K, &N);
            dnnl_memory_desc_t bmd;
            dnnl_dims_t bd = {1, N};
            if ((s = dnnl_memory_get_data_handle(m->w[i], &wh)) != dnnl_success ||
                (s = dnnl_memory_create(&r->w[i], &m->wmd[k], m->eng, wh)) != dnnl_success ||
                (s = dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab)) != dnnl_success ||
                (s = dnnl_memory_create(&r->b[i], &bmd, m->eng, layer_vec(m, l, bias_of[k]))) != dnnl_success) {
                err = errorf("oneDNN runner: layer %d %s weights: %s", l, mm_name[k], dnnl_status2str(s));
                goto fail;
            }
        }
    // Make the largest plan now, so that a runner that cannot run fails here.
    plan_t *pl;
    if ((err = get_plan(r, m->d.max_tokens, 0, &pl))) goto fail;
    *out = r;
    return NULL;
fail:
    bq_runner_destroy(r);
    return err;
}

float *bq_runner_pooled(bq_runner *r) { return r->pooled; }

static char *run_mm(bq_runner *r, plan_t *pl, int bare, int kind, int l) {
    size_t i = (size_t)l * MM_N + kind;
    if (r->m->own) {
        int64_t K, N;
        mm_dims(r->m, kind, &K, &N);
        void *src, *dst;
        mm_bufs(r, kind, &src, &dst);
        bq_gemm_u8s8(src, (int)K, (int)pl->M, (int)K, (int)N, r->m->pk[i], dst, (int)N);
        return NULL;
    }
    dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, pl->src[kind]}, {DNNL_ARG_WEIGHTS, r->w[i]}, {DNNL_ARG_DST, pl->dst[kind]}};
    int n = 3;
    if (!bare && r->m->compute != BQ_INT8) a[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, r->b[i]};
    dnnl_status_t s = dnnl_primitive_execute(bare ? pl->bare[kind] : pl->p[kind], r->st, n, a);
    if (s == dnnl_success) s = dnnl_stream_wait(r->st);
    if (s == dnnl_success) return NULL;
    char what[256];
    mm_label(r->m, kind, pl->M, what, sizeof what);
    return errorf("layer %d %s: execution failed: %s", l, what, dnnl_status2str(s));
}

// pool writes tanh(W·x[CLS] + b) for each sequence (its first row).
static void pool(bq_runner *r, int nseq, const int32_t *lens) {
    bq_model *m = r->m;
    int H = m->d.H;
    size_t start = 0;
    for (int b = 0; b < nseq; start += lens[b], b++) {
        const float *cls = r->x + start * H;
        float *o = r->pooled + (size_t)b * H;
        memcpy(o, m->poolb, (size_t)H * sizeof(float));
        for (int k = 0; k < H; k++) {
            const float *w = m->poolw + (size_t)k * H;
            float c = cls[k];
            for (int j = 0; j < H; j++) o[j] += c * w[j];
        }
        for (int j = 0; j < H; j++) o[j] = tanhf(o[j]);
    }
}

// int8w gathers layer l's int8 epilogue operands for one matmul.
static k_int8w int8w(const bq_model *m, int l, int kind) {
    size_t off = (size_t)l * m->qstride + m->qoff[kind];
    return (k_int8w){.colsum = m->colsum + off, .ws = m->ws + off, .bias = layer_vec(m, l, bias_of[kind])};
}

// zero_rows clears rows [from, to) of the matmuls' sources: a bucketed plan
// computes them too, and they should hold nothing left from an earlier batch.
static void zero_rows(bq_runner *r, int64_t from, int64_t to) {
    bq_model *m = r->m;
    size_t H = m->d.H, I = m->d.I, n = (size_t)(to - from);
    size_t es = m->compute == BQ_INT8 ? 1 : m->compute == BQ_BF16 ? 2 : 4;
    memset(r->x + from * H, 0, n * H * 4);
    if (r->xin) memset((char *)r->xin + from * H * es, 0, n * H * es);
    if (r->ctxq) memset(r->ctxq + from * H, 0, n * H);
    memset((char *)r->ctx + from * H * (es == 2 ? 2 : 4), 0, n * H * (es == 2 ? 2 : 4));
    memset((char *)r->h + from * I * es, 0, n * I * es);
}

// bq_runner_forward: see bq.h. Mode BQ_GEMMS and BQ_BARE_GEMMS run only the
// encoder matmuls (on whatever the buffers hold), BQ_NON_GEMM everything else
// (the int8 epilogues included), so that benchmarks can time each part.
char *bq_runner_forward(bq_runner *r, int mode, int nseq, const int32_t *lens, const int32_t *ids,
                        const int32_t *types, const int32_t *mask) {
    bq_model *m = r->m;
    int64_t T = 0;
    for (int b = 0; b < nseq; b++) T += lens[b];
    if (nseq < 1 || nseq > m->d.max_seqs || T < 1 || T > m->d.max_tokens)
        return errorf("batch of %d sequences, %ld tokens: this runner takes 1 to %d sequences and %d tokens", nseq,
                      (long)T, m->d.max_seqs, m->d.max_tokens);
    int bare = mode == BQ_BARE_GEMMS, full = mode == BQ_FORWARD || mode == BQ_NON_GEMM, gemm = mode != BQ_NON_GEMM;
    plan_t *pl;
    char *err = get_plan(r, T, bare, &pl);
    if (err) return err;
    int H = m->d.H, I = m->d.I, q = m->compute == BQ_INT8, t = (int)T;
    uint16_t *xb = m->compute == BQ_BF16 ? r->xin : NULL;
    uint8_t *xq = q ? r->xin : NULL;
    float eps = m->d.eps;
    if (full && pl->M > T) zero_rows(r, T, pl->M);
    if (full) {
        k_embed(r->x, ids, types, lens, nseq, m->word, m->pos, m->type, H);
        k_layernorm(r->x, xb, xq, r->xs, r->xz, m->embg, m->embb, t, H, eps);
    }
#define MM(kind)                                                                                  \
    do {                                                                                          \
        if (gemm && (err = run_mm(r, pl, bare, kind, l))) return err;                            \
    } while (0)
    for (int l = 0; l < m->d.L; l++) {
        MM(MM_QKV);
        if (full && q) k_deq_bias(r->acc, t, 3 * H, int8w(m, l, MM_QKV), r->xs, r->xz, r->qkv);
        if (full) k_attention(r->qkv, lens, nseq, mask, r->ctx, m->compute == BQ_BF16, H, m->d.NH, r->attn);
        if (full && q) k_quantize(r->ctx, t, H, r->ctxq, r->cs, r->cz);
        MM(MM_AO);
        if (full && q)
            k_deq_res_ln(r->acc, t, H, int8w(m, l, MM_AO), r->cs, r->cz, r->x, NULL, xq, r->xs, r->xz,
                         layer_vec(m, l, V_G1), layer_vec(m, l, V_B1), eps);
        else if (full)
            k_layernorm(r->x, xb, NULL, NULL, NULL, layer_vec(m, l, V_G1), layer_vec(m, l, V_B1), t, H, eps);
        MM(MM_FI);
        if (full && q)
            k_deq_act_quant(r->acc, t, I, int8w(m, l, MM_FI), r->xs, r->xz, m->d.act, r->h, r->hs, r->hz, r->tmp);
        MM(MM_FO);
        if (full && q)
            k_deq_res_ln(r->acc, t, H, int8w(m, l, MM_FO), r->hs, r->hz, r->x, NULL, xq, r->xs, r->xz,
                         layer_vec(m, l, V_G2), layer_vec(m, l, V_B2), eps);
        else if (full)
            k_layernorm(r->x, xb, NULL, NULL, NULL, layer_vec(m, l, V_G2), layer_vec(m, l, V_B2), t, H, eps);
    }
#undef MM
    if (full) pool(r, nseq, lens);
    return NULL;
}
