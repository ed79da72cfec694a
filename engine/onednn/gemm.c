//go:build cgo

// bertq's AVX2 u8·s8 GEMM (see gemm.h).
//
// It follows the GotoBLAS/BLIS scheme around a 6×16 register tile (12
// accumulators of 8 lanes):
//
//   - B is packed once, at load, into panels of 16 columns, each panel's K
//     rows contiguous, zero-padded to whole panels and to whole groups of 4
//     rows;
//   - per call, a block of A (MC rows × KC) is copied into tiles of 6 rows
//     interleaved along K, so that the kernel reads one sequential stream.
//     Reading A in place would make the kernel walk 6 rows 4 KB apart (K =
//     4096), which all fall in the same L1 set and ran at a third of the
//     speed;
//   - the loops, outermost first: K blocks of KC, M blocks of MC (packed
//     into a buffer on the stack that stays in L2), the panels of B (a KC ×
//     16 slice of one stays in L1 while the M block's tiles run over it),
//     the tiles. K blocks after the first add into C.
//
// The kernel's inner loop is inline asm: the 12 accumulators, the B
// registers, the ones, the broadcast and the temporaries need all 16 ymm
// registers, and compilers do not get that without spilling.

#include "gemm.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma")))

enum { NR = 16, MR = 6 };

// The packed A block lives on the stack: PACK_BYTES bounds MC × KC.
#ifndef PACK_BYTES
#define PACK_BYTES (96 * 1024)
#endif

static int round4(int k) { return (k + 3) & ~3; }
static int panels(int N) { return (N + NR - 1) / NR; }
static int min(int a, int b) { return a < b ? a : b; }

// block_sizes picks KC (a multiple of 4) and MC (a multiple of 6) so that
// the packed block of A fits PACK_BYTES.
static void block_sizes(int K, int M, int *kc, int *mc) {
    int KC = min(1024, PACK_BYTES / MR & ~3);
    KC = min(KC, round4(K));
    *kc = KC;
    *mc = min(PACK_BYTES / KC / MR * MR, (M + MR - 1) / MR * MR);
}

// store_tile writes rows [0, mr) and columns [0, nc) of a 6×16 tile of
// accumulators t to C, adding C's old values when add is set.
AVX2 static void store_tile(const int32_t *t, int32_t *c, size_t ldc, int mr, int nc, int add) {
    for (int r = 0; r < mr; r++) {
        int32_t *cr = c + r * ldc;
        if (nc < NR) {
            for (int n = 0; n < nc; n++) cr[n] = (add ? cr[n] : 0) + t[r * NR + n];
            continue;
        }
        for (int h = 0; h < 2; h++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(t + r * NR + 8 * h));
            if (add) v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(cr + 8 * h)));
            _mm256_storeu_si256((__m256i *)(cr + 8 * h), v);
        }
    }
}

// prefetch_tile asks for the C rows a tile will write, so that they arrive
// while the kernel runs.
static void prefetch_tile(const void *c, size_t ldc_bytes, int mr) {
    for (int r = 0; r < mr; r++) {
        const char *p = (const char *)c + r * ldc_bytes;
        __builtin_prefetch(p, 1, 3);
        __builtin_prefetch(p + 60, 1, 3);
    }
}

// The asm kernel leaves the tile in acc, row r's 16 values at acc[16r].
#define STORE_ACC                                                                                  \
    "vmovdqu %%ymm0, (%[acc])\n\t"                                                                 \
    "vmovdqu %%ymm1, 32(%[acc])\n\t"                                                               \
    "vmovdqu %%ymm2, 64(%[acc])\n\t"                                                               \
    "vmovdqu %%ymm3, 96(%[acc])\n\t"                                                               \
    "vmovdqu %%ymm4, 128(%[acc])\n\t"                                                              \
    "vmovdqu %%ymm5, 160(%[acc])\n\t"                                                              \
    "vmovdqu %%ymm6, 192(%[acc])\n\t"                                                              \
    "vmovdqu %%ymm7, 224(%[acc])\n\t"                                                              \
    "vmovdqu %%ymm8, 256(%[acc])\n\t"                                                              \
    "vmovdqu %%ymm9, 288(%[acc])\n\t"                                                              \
    "vmovdqu %%ymm10, 320(%[acc])\n\t"                                                             \
    "vmovdqu %%ymm11, 352(%[acc])\n\t"

#define ZERO_ACC                                                                                   \
    "vpxor %%xmm0, %%xmm0, %%xmm0\n\t"                                                             \
    "vpxor %%xmm1, %%xmm1, %%xmm1\n\t"                                                             \
    "vpxor %%xmm2, %%xmm2, %%xmm2\n\t"                                                             \
    "vpxor %%xmm3, %%xmm3, %%xmm3\n\t"                                                             \
    "vpxor %%xmm4, %%xmm4, %%xmm4\n\t"                                                             \
    "vpxor %%xmm5, %%xmm5, %%xmm5\n\t"                                                             \
    "vpxor %%xmm6, %%xmm6, %%xmm6\n\t"                                                             \
    "vpxor %%xmm7, %%xmm7, %%xmm7\n\t"                                                             \
    "vpxor %%xmm8, %%xmm8, %%xmm8\n\t"                                                             \
    "vpxor %%xmm9, %%xmm9, %%xmm9\n\t"                                                             \
    "vpxor %%xmm10, %%xmm10, %%xmm10\n\t"                                                          \
    "vpxor %%xmm11, %%xmm11, %%xmm11\n\t"

#define CLOBBERS                                                                                   \
    "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

// ---------------------------------------------------------------------------
// int8
//
// Packed B: panel p (columns 16p..16p+15), then k-group g (rows 4g..4g+3),
// 64 bytes: two halves of 8 columns, each column's 4 bytes consecutive,
// B[4g+j][16p+8h+c] at byte 32h + 4c + j. vpmaddubsw of a broadcast 4 bytes
// of A against one half multiplies the pairs (4g, 4g+1) and (4g+2, 4g+3)
// together: the pairs the weights are safe for.
//
// Packed A: per tile of 6 rows, per k-group, the 6 rows' 4 bytes (24 bytes).

size_t bq_pack_s8_size(int K, int N) { return (size_t)panels(N) * (size_t)round4(K) * NR; }

void bq_pack_s8(const int8_t *w, int K, int N, void *dst) {
    int8_t *d = dst;
    for (int p = 0; p < panels(N); p++)
        for (int k = 0; k < round4(K); k += 4)
            for (int n = 0; n < NR; n++)
                for (int j = 0; j < 4; j++) {
                    int col = p * NR + n, row = k + j;
                    *d++ = col < N && row < K ? w[(size_t)row * N + col] : 0;
                }
}

// pack_a_s8 copies rows [0, mc) (a multiple of 6; rows at or past M are
// zero), bytes [0, kc) of each (the rest of the last group zero), into dst.
static void pack_a_s8(const uint8_t *A, size_t lda, int rows, int mc, int kc, uint8_t *dst) {
    int ng = kc / 4, tail = kc % 4, ngp = (kc + 3) / 4;
    for (int t = 0; t < mc; t += MR) {
        uint8_t *d = dst + (size_t)t * ngp * 4;
        for (int r = 0; r < MR; r++) {
            if (t + r >= rows) {
                for (int g = 0; g < ngp; g++) memset(d + g * 24 + r * 4, 0, 4);
                continue;
            }
            const uint8_t *a = A + (size_t)(t + r) * lda;
            for (int g = 0; g < ng; g++) memcpy(d + g * 24 + r * 4, a + 4 * g, 4);
            if (tail) {
                uint8_t *q = d + ng * 24 + r * 4;
                memset(q, 0, 4);
                memcpy(q, a + 4 * ng, (size_t)tail);
            }
        }
    }
}

// One row of the int8 kernel for k-group at byte offset ao of A and bo of
// B: broadcast the row's 4 bytes into ymm12, multiply with the group's two
// halves of B (u8·s8 pairs summed to s16 by vpmaddubsw, pairs of those to
// s32 by vpmaddwd against the ones in ymm15) and add into the row's
// accumulators c0, c1.
#define S8_ROW(ao, bo, c0, c1)                                                                     \
    "vpbroadcastd " #ao "(%[a]), %%ymm12\n\t"                                                      \
    "vpmaddubsw " #bo "(%[b]), %%ymm12, %%ymm13\n\t"                                               \
    "vpmaddubsw " #bo "+32(%[b]), %%ymm12, %%ymm14\n\t"                                            \
    "vpmaddwd %%ymm15, %%ymm13, %%ymm13\n\t"                                                       \
    "vpmaddwd %%ymm15, %%ymm14, %%ymm14\n\t"                                                       \
    "vpaddd %%ymm13, %%ymm" #c0 ", %%ymm" #c0 "\n\t"                                               \
    "vpaddd %%ymm14, %%ymm" #c1 ", %%ymm" #c1 "\n\t"

#define S8_GROUP(ao, bo)                                                                           \
    "prefetcht0 " #bo "(%[pf])\n\t"                                                                \
    S8_ROW(ao, bo, 0, 1)                                                                           \
    S8_ROW(ao + 4, bo, 2, 3)                                                                       \
    S8_ROW(ao + 8, bo, 4, 5)                                                                       \
    S8_ROW(ao + 12, bo, 6, 7)                                                                      \
    S8_ROW(ao + 16, bo, 8, 9)                                                                      \
    S8_ROW(ao + 20, bo, 10, 11)

// k6_s8 computes a 6×16 tile over ng ≥ 1 k-groups of packed A and B.
AVX2 static void k6_s8(const uint8_t *a, const int8_t *b, long ng, int32_t *acc, const int8_t *pf) {
    long pairs = ng / 2;
    __asm__ volatile(
        "vpcmpeqw %%ymm15, %%ymm15, %%ymm15\n\t"
        "vpsrlw $15, %%ymm15, %%ymm15\n\t" ZERO_ACC
        "test %[n], %[n]\n\t"
        "jz 2f\n\t"
        ".p2align 5\n\t"
        "1:\n\t" S8_GROUP(0, 0) S8_GROUP(24, 64)
        "add $48, %[a]\n\t"
        "add $128, %[b]\n\t"
        "add $128, %[pf]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "2:\n\t"
        "test $1, %[odd]\n\t"
        "jz 3f\n\t" S8_GROUP(0, 0)
        "3:\n\t" STORE_ACC
        : [a] "+r"(a), [b] "+r"(b), [n] "+r"(pairs), [pf] "+r"(pf)
        : [odd] "r"(ng), [acc] "r"(acc)
        : CLOBBERS);
}

void bq_gemm_u8s8(const uint8_t *A, int lda, int M, int K, int N, const void *packed, int32_t *C, int ldc) {
    if (M <= 0) return;
    const int8_t *B = packed;
    int KC, MC;
    block_sizes(K, M, &KC, &MC);
    uint8_t pa[PACK_BYTES] __attribute__((aligned(64)));
    int32_t acc[MR * NR] __attribute__((aligned(32)));
    size_t Kp = (size_t)round4(K);
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = min(KC, K - k0), ngp = (kc + 3) / 4;
        for (int m0 = 0; m0 < M; m0 += MC) {
            int mc = min(MC, (M - m0 + MR - 1) / MR * MR);
            pack_a_s8(A + (size_t)m0 * lda + k0, (size_t)lda, M - m0, mc, kc, pa);
            for (int p = 0; p < panels(N); p++) {
                const int8_t *b = B + (size_t)p * Kp * NR + (size_t)k0 * NR;
                int nc = min(NR, N - p * NR);
                for (int t = 0; t < mc; t += MR) {
                    int32_t *c = C + (size_t)(m0 + t) * ldc + p * NR;
                    int mr = min(MR, M - m0 - t);
                    prefetch_tile(c, (size_t)ldc * 4, mr);
                    k6_s8(pa + (size_t)t * ngp * 4, b, ngp, acc, t + MR < mc || p + 1 == panels(N) ? b : b + Kp * NR);
                    store_tile(acc, c, (size_t)ldc, mr, nc, k0 > 0);
                }
            }
        }
    }
}
