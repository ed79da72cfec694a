//go:build cgo

// Peak-rate loops (peak.c).
#ifndef BERTQ_ONEDNN_PEAK_H
#define BERTQ_ONEDNN_PEAK_H

// What the matmuls compute in, as bq.h's BQ_F32, BQ_BF16, BQ_INT8.
enum { PEAK_F32 = 0, PEAK_BF16 = 1, PEAK_INT8 = 2 };

// bq_peak_isa names the instruction a matmul in compute runs on here, given
// whether oneDNN dispatches to AMX or AVX-512 (NULL: no loop for it).
const char *bq_peak_isa(int compute, int use_amx, int use_avx512);

// bq_peak_gops measures that instruction's rate on the calling thread, in
// G multiply-add operations × 2 per second (GFLOP/s, or GOP/s for int8);
// -1 if it cannot run here.
double bq_peak_gops(const char *isa, double seconds);

#endif
