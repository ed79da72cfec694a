//go:build cgo

package onednn

/*
#include "gemm.h"
#include "kernels.h"
*/
import "C"

import "unsafe"

// Go views of single element-wise kernels, so that tests can check them on
// their own against Go's math, on both the AVX2 and the scalar path.

func kernelAct(x []float32, act int) {
	if len(x) > 0 {
		C.k_act((*C.float)(unsafe.Pointer(&x[0])), C.size_t(len(x)), C.int(act))
	}
}

func kernelToBF16(x []float32) []uint16 {
	out := make([]uint16, len(x))
	if len(x) > 0 {
		C.k_to_bf16((*C.float)(unsafe.Pointer(&x[0])), (*C.uint16_t)(unsafe.Pointer(&out[0])), C.size_t(len(x)))
	}
	return out
}

// kernelQuantize quantizes one row: its u8 values, scale and zero point.
func kernelQuantize(x []float32) ([]uint8, float32, int32) {
	q := make([]uint8, len(x))
	var s C.float
	var z C.int32_t
	if len(x) > 0 {
		C.k_quantize((*C.float)(unsafe.Pointer(&x[0])), 1, C.int(len(x)), (*C.uint8_t)(unsafe.Pointer(&q[0])), &s, &z)
	}
	return q, float32(s), int32(z)
}

// kernelAVX2 reports whether the CPU has AVX2 and FMA.
func kernelAVX2() bool { return C.k_avx2() != 0 }

// gemmU8S8 multiplies a (M × K, row-major u8) by w (K × N, row-major s8,
// pair-safe) with gemm.h's packed kernel: M × N s32.
func gemmU8S8(a []uint8, w []int8, M, K, N int) []int32 {
	packed := make([]byte, C.bq_pack_s8_size(C.int(K), C.int(N)))
	C.bq_pack_s8((*C.int8_t)(unsafe.Pointer(&w[0])), C.int(K), C.int(N), unsafe.Pointer(&packed[0]))
	out := make([]int32, M*N)
	if M > 0 {
		C.bq_gemm_u8s8((*C.uint8_t)(unsafe.Pointer(&a[0])), C.int(K), C.int(M), C.int(K), C.int(N),
			unsafe.Pointer(&packed[0]), (*C.int32_t)(unsafe.Pointer(&out[0])), C.int(N))
	}
	return out
}
