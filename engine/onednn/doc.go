// Package onednn is bertq's CPU engine: the encoder's matrix multiplications
// run through oneDNN (bf16 where the CPU has a bf16 matmul, else f32; int8 as
// u8 × s8 → s32), everything between them in the engine's own C loops
// (kernels.c: AVX2 with a scalar fallback), one pinned single-threaded runner
// per core.
//
// Importing the package registers the backend "onednn" with the engine
// registry. Built without cgo, the backend is still registered but reports
// ErrNoCgo from Available and Load.
//
// A batch is packed: up to B sequences of their own lengths, T = Σ lengths
// real tokens, hidden H, nh heads of width d (a static batch is the case of
// B full-length sequences). The forward (bq.c):
//
//   - embedding: word + position (restarting per sequence) + token type rows
//     gathered from the artifact's tables, then LayerNorm, into the f32 hidden
//     state X [T][H] and the copy the next matmul reads (bf16, or u8 per token
//     for int8);
//   - per layer: QKV = X·Wqkv (+ bias: a post-op, or the int8 epilogue);
//     attention per sequence over its own length (no mask unless a request
//     brought one), scores, softmax and P·V in f32 (bf16 inputs for bf16
//     artifacts); X += context·Wo + b, LayerNorm; X += GELU(X·Wi + bi)·Wo2 +
//     b, LayerNorm. f32 and bf16 fuse bias, GELU and the residual as oneDNN
//     post-ops; int8 dequantizes in one C pass per matmul that also adds the
//     bias, applies GELU or the residual and LayerNorm, and quantizes the next
//     matmul's input;
//   - pooler: tanh(X[CLS]·Wp + bp) per sequence; the classifier in float64 on
//     the host.
//
// Matmuls meet the varying T with one primitive whose M is given at run time
// (or, on request, a primitive per 16 rows; the extra rows are zeroed). On a
// CPU whose oneDNN has only the AVX2 gemm:jit for u8 × s8, int8 matmuls run
// on gemm.c instead: the same exact s32 sums, from weights packed once at
// Load. Encoder weights are prepared once at Load into the layout their
// matmuls want and shared read-only by every runner. Each runner owns a
// locked OS thread pinned to its core, with one OpenMP thread, its own
// stream, primitives and activation buffers; its results are bit-identical
// run to run.
package onednn

import "errors"

// Name is the backend's registry key.
const Name = "onednn"

// ErrNoCgo is what Available and Load report in a build without cgo.
var ErrNoCgo = errors.New("bertq was built without cgo: the oneDNN engine is absent (rebuild with CGO_ENABLED=1 and libdnnl-dev installed)")
