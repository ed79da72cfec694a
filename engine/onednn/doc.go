// Package onednn is bertq's CPU engine: the encoder's matrix multiplications
// run through oneDNN (bf16 on AVX-512/AMX CPUs, or f32), everything between
// them in small fused C loops, one pinned single-threaded runner per core.
//
// Importing the package registers the backend "onednn" with the engine
// registry. Built without cgo, the backend is still registered but reports
// ErrNoCgo from Available and Load.
//
// The forward of one static batch (B sequences × S tokens, hidden H, nh heads
// of width d):
//
//   - embedding: word + position + token type rows gathered from the
//     artifact's tables, then LayerNorm (engine.Weights.Embed's arithmetic, in
//     C with float32 statistics), into the f32 hidden state X [B·S][H] and
//     its bf16 copy;
//   - per layer: QKV = X·Wqkv + b (bias fused); a re-layout of Q, K, V into
//     head-major [B][nh][S][d] (oneDNN's fast batched matmul wants dense
//     operands); scores = Q·Kᵀ as one batched matmul over B·nh; masked
//     softmax (fused C loop, f32 arithmetic) into P; context = P·V as one
//     batched matmul whose destination is strided straight into [B·S][H];
//     X += context·Wo + b (bias and residual as the sum post-op); LayerNorm
//     (C, f32, also writing the bf16 copy the next matmul reads);
//     X += GELU(X·Wi + bi)·Wo2 + b (the GELU variant as an eltwise post-op of
//     the first matmul: gelu_erf, gelu_tanh, or swish with α = 1.702 for
//     gelu_crude; the residual as the sum post-op of the second); LayerNorm;
//   - pooler: tanh(X[CLS]·Wp + bp) as an f32 matmul reading the [CLS] rows in
//     place; the classifier in float64 on the host.
//
// The additive mask is 0 for real tokens and -FLT_MAX for padding, the
// float32 semantics of Hugging Face (a sequence without real tokens attends
// uniformly). Padding keys get probability exactly 0, so the softmax skips
// the columns past a sequence's last real token, and writes zero rows for
// padding queries: no real position ever reads them, so logits are the same
// bits as with full rows, and the padding states stay finite.
//
// In bf16 artifacts the matmul inputs (X, Q, K, V, P, context, GELU output)
// are bf16 and everything else (accumulation, bias, residual stream,
// LayerNorm, softmax) is f32; fp32 artifacts run f32 throughout. Encoder
// weights are reordered once at Load into the blocked layout the matmul
// primitives ask for, in oneDNN-allocated memory that every runner shares
// read-only. Each runner owns a locked OS thread pinned to its core, with one
// OpenMP thread, its own stream, primitives, scratchpad and activation
// buffers; its results are bit-identical run to run.
package onednn

import "errors"

// Name is the backend's registry key.
const Name = "onednn"

// ErrNoCgo is what Available and Load report in a build without cgo.
var ErrNoCgo = errors.New("bertq was built without cgo: the oneDNN AMX engine is absent (rebuild with CGO_ENABLED=1 and libdnnl-dev installed)")
