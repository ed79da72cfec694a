//go:build cgo

// bertq's own AVX2 GEMM for the encoder's int8 matmuls (gemm.c): weights
// packed once at load into a blocked layout, then C = A·B on one thread.
// On AVX2-only CPUs it is faster than oneDNN 2.6's u8·s8 gemm:jit (1.08–1.20×
// on the encoder's shapes at M = 212 and 512, Zen 3). Callers use it only
// where k_avx2() says AVX2 and FMA exist.
//
// A is row-major with row stride lda (elements), C row-major with ldc; B is
// the row-major [K][N] weight matrix, given to the pack functions only.
// M ≥ 0, K ≥ 1, N ≥ 1. dst and packed should be 64-byte aligned (for speed
// only: any alignment works).
#ifndef BERTQ_ONEDNN_GEMM_H
#define BERTQ_ONEDNN_GEMM_H

#include <stddef.h>
#include <stdint.h>

// int8: C (s32) = A (u8) · B (s8), exact. The weights must be pair-safe:
// |B[2j][n]| + |B[2j+1][n]| ≤ 128 for every column n and row pair
// (2j, 2j+1), so that vpmaddubsw's s16 sums u8·s8 + u8·s8 never saturate
// (the packing keeps each pair together). Rows of A are read only within
// their K bytes.
size_t bq_pack_s8_size(int K, int N);
void bq_pack_s8(const int8_t *w, int K, int N, void *dst);
void bq_gemm_u8s8(const uint8_t *A, int lda, int M, int K, int N, const void *packed, int32_t *C, int ldc);

#endif
