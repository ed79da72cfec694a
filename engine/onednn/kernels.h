//go:build cgo

// The element-wise kernels of the oneDNN engine: everything between the
// matmuls. Each has a portable scalar version and an AVX2+FMA one (every CPU
// this engine targets has AVX2: Intel since Haswell, AMD since Zen); the
// scalar ones are the fallback and the tests' second opinion.
#ifndef BERTQ_ONEDNN_KERNELS_H
#define BERTQ_ONEDNN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

// k_set_simd switches between the AVX2 kernels (on = 1, when the CPU has
// them) and the scalar ones; k_simd reports which run.
void k_set_simd(int on);
int k_simd(void);
// k_avx2 reports whether the CPU has AVX2 and FMA, whatever k_set_simd chose.
int k_avx2(void);

// The activation variants, as bert.Activation names them.
enum { ACT_GELU_ERF = 0, ACT_GELU_TANH = 1, ACT_GELU_CRUDE = 2 };

// Quantized rows (artifact.ActivationsU8PerToken): for a row x with range
// [lo, hi] stretched to include 0, s = (hi - lo)/255, z = round(-lo/s) and
// q = round(x/s) + z in [0, 255], so x ≈ (q - z)·s; a zero row has s = 1,
// z = 0. Rounding is half to even, with the float32 inverse 255/(hi - lo),
// as the plain-Go reference does.

// k_embed sums the word, position and token type rows of each token of nseq
// packed sequences (positions restart at 0 in each) into x [T][H].
void k_embed(float *x, const int32_t *ids, const int32_t *types, const int32_t *lens, int nseq,
             const float *word, const float *pos, const float *type, int H);

// k_layernorm normalizes each of M rows of x [M][H] in place
// ((x - mean) / sqrt(var + eps) · g + b, f32 arithmetic) and writes, when
// given, a bf16 copy xb or a quantized copy xq with row scales xs.
void k_layernorm(float *x, uint16_t *xb, uint8_t *xq, float *xs, int32_t *xz, const float *g,
                 const float *b, int M, int H, float eps);

// k_attention computes, per sequence and head, softmax(Q·Kᵀ + mask)·V over the
// sequence's own rows into ctx [T][H] (f32, or bf16 when ctx_bf16). qkv is
// [T][3H] f32 with Q pre-scaled by 1/√d. mask (NULL: every key is real) marks
// keys to attend with 1; masked keys get weight exactly 0. scratch holds
// k_attention_scratch(max_len, D) floats.
void k_attention(const float *qkv, const int32_t *lens, int nseq, const int32_t *mask, void *ctx,
                 int ctx_bf16, int H, int NH, float *scratch);
size_t k_attention_scratch(int max_len, int D);

// k_quantize quantizes M rows of x [M][K] into q with row scales s and
// zero points z.
void k_quantize(const float *x, int M, int K, uint8_t *q, float *s, int32_t *z);

// k_to_bf16 converts n floats (round to nearest even).
void k_to_bf16(const float *x, uint16_t *out, size_t n);

// The int8 epilogues read a u8·s8 matmul's s32 accumulators acc [M][N] and
// dequantize: y = (acc - az[m]·colsum[n]) · as[m] · ws[n] + bias[n], where
// as and az are the input rows' scales and zero points, colsum the
// weights' column sums (the zero point's share) and ws their column scales.
typedef struct {
    const int32_t *colsum;
    const float *ws, *bias;
} k_int8w;

// k_deq_bias writes y to out [M][N] (f32).
void k_deq_bias(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az, float *out);
// k_deq_act_quant applies the activation to y and quantizes each row into
// hq with scales hs and zero points hz; tmp holds N floats.
void k_deq_act_quant(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az, int act,
                     uint8_t *hq, float *hs, int32_t *hz, float *tmp);
// k_deq_res_ln adds y to the residual x [M][N] and normalizes each row in
// place (as k_layernorm, with its optional xb / xq outputs).
void k_deq_res_ln(const int32_t *acc, int M, int N, k_int8w w, const float *as, const int32_t *az, float *x,
                  uint16_t *xb, uint8_t *xq, float *xs, int32_t *xz, const float *g, const float *b, float eps);

// k_act applies the activation to n floats in place (for tests).
void k_act(float *x, size_t n, int act);

#endif
