//go:build cgo

// Register-only loops that measure the peak rate of the instruction a
// matmul's inner loop runs on, so that benchmarks can say how close the
// GEMMs come to what the core can do. Each loop keeps enough independent
// accumulators to cover the instruction's latency (fewer would measure
// latency, not throughput) and no more than the registers hold.

#include "peak.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// Each loop is written in asm: ACC independent chains of the instruction
// in fixed registers, so that the compiler can neither fold the constant
// operands nor drop or spill the chains.
#define ACC 12

__attribute__((target("avx2,fma"))) static double fma_ymm(long iters) {
    double ops = (double)iters * ACC * 8 * 2;
    __asm__ volatile(
        "vpcmpeqd %%ymm12, %%ymm12, %%ymm12\n\t"
        "vpsrld $9, %%ymm12, %%ymm13\n\t"
        "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
        "vxorps %%ymm1, %%ymm1, %%ymm1\n\t"
        "vxorps %%ymm2, %%ymm2, %%ymm2\n\t"
        "vxorps %%ymm3, %%ymm3, %%ymm3\n\t"
        "vxorps %%ymm4, %%ymm4, %%ymm4\n\t"
        "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"
        "vxorps %%ymm6, %%ymm6, %%ymm6\n\t"
        "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"
        "vxorps %%ymm8, %%ymm8, %%ymm8\n\t"
        "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"
        "vxorps %%ymm10, %%ymm10, %%ymm10\n\t"
        "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"
        "1:\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm0\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm1\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm2\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm3\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm4\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm5\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm6\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm7\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm8\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm9\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm10\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm11\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [n] "+r"(iters)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "cc");
    return ops;
}

// The AVX2 int8 dot product without VNNI: u8·s8 pairs summed into s16
// (vpmaddubsw), then into s32 (vpmaddwd with ones), then accumulated.
__attribute__((target("avx2,fma"))) static double i8_ymm(long iters) {
    double ops = (double)iters * ACC * 32 * 2;
    __asm__ volatile(
        "vpcmpeqd %%ymm12, %%ymm12, %%ymm12\n\t"
        "vpabsb %%ymm12, %%ymm13\n\t"
        "vpabsw %%ymm12, %%ymm14\n\t"
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
        "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
        "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
        "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
        "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
        "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
        "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
        "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
        "vpxor %%ymm8, %%ymm8, %%ymm8\n\t"
        "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"
        "vpxor %%ymm10, %%ymm10, %%ymm10\n\t"
        "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"
        "1:\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm0, %%ymm0\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm1, %%ymm1\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm2, %%ymm2\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm3, %%ymm3\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm4, %%ymm4\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm5, %%ymm5\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm6, %%ymm6\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm7, %%ymm7\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm8, %%ymm8\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm9, %%ymm9\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm10, %%ymm10\n\t"
        "vpmaddubsw %%ymm12, %%ymm13, %%ymm15\n\tvpmaddwd %%ymm14, %%ymm15, %%ymm15\n\tvpaddd %%ymm15, %%ymm11, %%ymm11\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [n] "+r"(iters)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15", "cc");
    return ops;
}

__attribute__((target("avx2,avxvnni"))) static double vnni_ymm(long iters) {
    double ops = (double)iters * ACC * 32 * 2;
    __asm__ volatile(
        "vpcmpeqd %%ymm12, %%ymm12, %%ymm12\n\t"
        "vpabsb %%ymm12, %%ymm13\n\t"
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
        "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
        "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
        "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
        "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
        "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
        "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
        "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
        "vpxor %%ymm8, %%ymm8, %%ymm8\n\t"
        "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"
        "vpxor %%ymm10, %%ymm10, %%ymm10\n\t"
        "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"
        "1:\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm0\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm1\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm2\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm3\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm4\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm5\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm6\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm7\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm8\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm9\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm10\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm11\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [n] "+r"(iters)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "cc");
    return ops;
}

#define ACC512 16
#define ZCLOB                                                                                     \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
        "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "cc"

__attribute__((target("avx512f"))) static double fma_zmm(long iters) {
    double ops = (double)iters * ACC512 * 16 * 2;
    __asm__ volatile(
        "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\t"
        "vpsrld $9, %%zmm16, %%zmm17\n\t"
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
        "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
        "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
        "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
        "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
        "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
        "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
        "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
        "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
        "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
        "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
        "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
        "vpxord %%zmm12, %%zmm12, %%zmm12\n\t"
        "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"
        "vpxord %%zmm14, %%zmm14, %%zmm14\n\t"
        "vpxord %%zmm15, %%zmm15, %%zmm15\n\t"
        "1:\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm0\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm1\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm2\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm3\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm4\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm5\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm6\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm7\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm8\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm9\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm10\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm11\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm12\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm13\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm14\n\t"
        "vfmadd231ps %%zmm16, %%zmm17, %%zmm15\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [n] "+r"(iters)
        :
        : ZCLOB);
    return ops;
}

__attribute__((target("avx512f,avx512bf16"))) static double bf16_zmm(long iters) {
    double ops = (double)iters * ACC512 * 32 * 2;
    __asm__ volatile(
        "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\t"
        "vpsrlw $9, %%zmm16, %%zmm17\n\t"
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
        "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
        "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
        "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
        "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
        "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
        "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
        "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
        "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
        "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
        "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
        "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
        "vpxord %%zmm12, %%zmm12, %%zmm12\n\t"
        "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"
        "vpxord %%zmm14, %%zmm14, %%zmm14\n\t"
        "vpxord %%zmm15, %%zmm15, %%zmm15\n\t"
        "1:\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm0\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm1\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm2\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm3\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm4\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm5\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm6\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm7\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm8\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm9\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm10\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm11\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm12\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm13\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm14\n\t"
        "vdpbf16ps %%zmm16, %%zmm17, %%zmm15\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [n] "+r"(iters)
        :
        : ZCLOB);
    return ops;
}

__attribute__((target("avx512f,avx512vnni"))) static double vnni_zmm(long iters) {
    double ops = (double)iters * ACC512 * 64 * 2;
    __asm__ volatile(
        "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\t"
        "vpabsb %%zmm16, %%zmm17\n\t"
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
        "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
        "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
        "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
        "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
        "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
        "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
        "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
        "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
        "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
        "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
        "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
        "vpxord %%zmm12, %%zmm12, %%zmm12\n\t"
        "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"
        "vpxord %%zmm14, %%zmm14, %%zmm14\n\t"
        "vpxord %%zmm15, %%zmm15, %%zmm15\n\t"
        "1:\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm0\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm1\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm2\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm3\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm4\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm5\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm6\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm7\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm8\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm9\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm10\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm11\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm12\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm13\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm14\n\t"
        "vpdpbusd %%zmm16, %%zmm17, %%zmm15\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [n] "+r"(iters)
        :
        : ZCLOB);
    return ops;
}

// AMX: four accumulator tiles, each a 16×16 f32/s32 block, fed by two A and
// two B tiles; one tdp* is 16·16·32 bf16 (or 16·16·64 int8) multiply-adds.
struct tilecfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int amx_permit(void) { return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0; }

__attribute__((target("amx-tile,amx-bf16,amx-int8"))) static double amx(long iters, int int8) {
    static uint8_t buf[4][1024] __attribute__((aligned(64)));
    memset(buf, 0, sizeof buf);
    struct tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, buf[0], 64);
    _tile_loadd(5, buf[1], 64);
    _tile_loadd(6, buf[2], 64);
    _tile_loadd(7, buf[3], 64);
    if (int8) {
        for (long k = 0; k < iters; k++) {
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
        }
    } else {
        for (long k = 0; k < iters; k++) {
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, buf[0], 64);
    _tile_release();
    return (double)iters * 4 * 16 * 16 * (int8 ? 64 : 32) * 2;
}

static int has(const char *f) {
    __builtin_cpu_init();
    if (!strcmp(f, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(f, "avx512f")) return __builtin_cpu_supports("avx512f");
    if (!strcmp(f, "avx512bf16")) return __builtin_cpu_supports("avx512bf16");
    if (!strcmp(f, "avx512vnni")) return __builtin_cpu_supports("avx512vnni");
    if (!strcmp(f, "avxvnni")) return __builtin_cpu_supports("avxvnni");
    if (!strcmp(f, "amx")) return __builtin_cpu_supports("amx-tile");
    return 0;
}

const char *bq_peak_isa(int compute, int use_amx, int use_avx512) {
    switch (compute) {
    case PEAK_BF16:
        if (use_amx && has("amx")) return "amx tdpbf16ps";
        if (has("avx512bf16")) return "avx512 vdpbf16ps";
        return NULL;
    case PEAK_INT8:
        if (use_amx && has("amx")) return "amx tdpbusd";
        if (use_avx512 && has("avx512vnni")) return "avx512 vpdpbusd";
        if (has("avxvnni")) return "avx-vnni vpdpbusd";
        if (has("avx2")) return "avx2 vpmaddubsw+vpmaddwd";
        return NULL;
    default:
        if (use_avx512 && has("avx512f")) return "avx512 vfmadd231ps";
        if (has("avx2")) return "avx2 vfmadd231ps";
        return NULL;
    }
}

double bq_peak_gops(const char *isa, double seconds) {
    double (*fn)(long) = NULL;
    int amx_int8 = -1;
    if (!strcmp(isa, "avx2 vfmadd231ps")) fn = fma_ymm;
    else if (!strcmp(isa, "avx2 vpmaddubsw+vpmaddwd")) fn = i8_ymm;
    else if (!strcmp(isa, "avx-vnni vpdpbusd")) fn = vnni_ymm;
    else if (!strcmp(isa, "avx512 vfmadd231ps")) fn = fma_zmm;
    else if (!strcmp(isa, "avx512 vdpbf16ps")) fn = bf16_zmm;
    else if (!strcmp(isa, "avx512 vpdpbusd")) fn = vnni_zmm;
    else if (!strcmp(isa, "amx tdpbf16ps")) amx_int8 = 0;
    else if (!strcmp(isa, "amx tdpbusd")) amx_int8 = 1;
    else return -1;
    if (amx_int8 >= 0 && !amx_permit()) return -1;
    // Calibrate to the requested time, then take the best of five runs.
    long iters = 1 << 16;
    for (;;) {
        double t = now();
        if (fn) fn(iters); else amx(iters, amx_int8);
        t = now() - t;
        if (t > seconds / 10 || iters > (1L << 40)) break;
        iters *= 2;
    }
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t = now(), ops = fn ? fn(iters) : amx(iters, amx_int8);
        t = now() - t;
        if (ops / t > best) best = ops / t;
    }
    return best / 1e9;
}
