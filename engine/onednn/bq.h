//go:build cgo

// Interface of bq.c, the C half of the oneDNN engine. Functions that can fail
// return NULL on success or a malloc'd message for the caller to free.
#ifndef BERTQ_ONEDNN_BQ_H
#define BERTQ_ONEDNN_BQ_H

#include <stdint.h>

typedef struct bq_model bq_model;
typedef struct bq_runner bq_runner;

// Weight storage of the artifact, and what the matmuls compute in.
enum { BQ_F32 = 0, BQ_BF16 = 1, BQ_INT8 = 2 };

// How matmuls meet a batch's varying number of rows M: one primitive with a
// runtime M, or a small cache of primitives for M rounded up to BQ_BUCKET.
enum { BQ_MM_AUTO = 0, BQ_MM_RUNTIME = 1, BQ_MM_BUCKET = 2 };
#define BQ_BUCKET 16

// Who computes the int8 matmuls: bertq's own AVX2 u8·s8 GEMM (gemm.h) where
// oneDNN has only its AVX2 gemm:jit for them (auto), or oneDNN always.
enum { BQ_GEMM_AUTO = 0, BQ_GEMM_ONEDNN = 1 };

typedef struct {
    int max_tokens, max_seqs, max_len; // a batch's limits
    int H, NH, I, L;                   // hidden, heads, intermediate, layers
    int wtype;                         // BQ_F32, BQ_BF16 or BQ_INT8
    int act;                           // ACT_GELU_* (kernels.h)
    float eps;                         // LayerNorm epsilon
    int mm_mode;                       // BQ_MM_*
    int gemm;                          // BQ_GEMM_*
} bq_dims;

// Forward modes: the forward, its encoder GEMMs alone (with their fused
// post-ops), the bare GEMMs, and everything but the encoder GEMMs.
enum { BQ_FORWARD = 0, BQ_GEMMS = 1, BQ_BARE_GEMMS = 2, BQ_NON_GEMM = 3 };

char *bq_probe(void);
void bq_set_simd(int on);

char *bq_model_create(const bq_dims *d, bq_model **out);
// kind: 0 qkv, 1 attention output, 2 ffn in, 3 ffn out; w is row-major
// [K][N] in the artifact's type; scales (int8 only) holds N column scales.
char *bq_model_set_matrix(bq_model *m, int l, int kind, const void *w, const float *scales);
// which: qkv bias, attention-output bias, ffn-in bias, ffn-out bias,
// then gamma and beta of the two LayerNorms.
void bq_model_set_vector(bq_model *m, int l, int which, const float *v);
// The embedding tables are borrowed, not copied: they must outlive the model.
void bq_model_set_embeddings(bq_model *m, const float *word, const float *pos, const float *type,
                             const float *gamma, const float *beta);
void bq_model_set_pooler(bq_model *m, const float *w, const float *b);
const char *bq_model_describe(bq_model *m);
int bq_model_compute(bq_model *m);   // BQ_F32, BQ_BF16 or BQ_INT8
int bq_model_mm_mode(bq_model *m);   // BQ_MM_RUNTIME or BQ_MM_BUCKET
// The instruction the matmuls' inner loops run on (see peak.h), or NULL.
const char *bq_model_peak_isa(bq_model *m);
void bq_model_destroy(bq_model *m);

char *bq_runner_create(bq_model *m, bq_runner **out);
// bq_runner_forward runs nseq packed sequences (lens[i] tokens each; ids,
// types and, if not NULL, mask hold Σ lens values, already validated) and
// leaves the pooled [CLS] states in bq_runner_pooled.
char *bq_runner_forward(bq_runner *r, int mode, int nseq, const int32_t *lens, const int32_t *ids,
                        const int32_t *types, const int32_t *mask);
float *bq_runner_pooled(bq_runner *r);
void bq_runner_destroy(bq_runner *r);

#endif
