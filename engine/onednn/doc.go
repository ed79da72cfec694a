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
//   - host: engine.Weights.Embed into the f32 hidden state X [B·S][H], the
//     additive attention mask (0 or -FLT_MAX, as float32 Hugging Face does);
//   - per layer: QKV = X·Wqkv + b (bias fused); a re-layout of Q, K, V into
//     head-major [B][nh][S][d]; scores = Q·Kᵀ as one batched matmul over
//     B·nh; masked softmax (fused C loop, f32) into P; context = P·V as one
//     batched matmul whose destination is strided straight into [B·S][H];
//     X += context·Wo + b (bias and residual as the sum post-op); LayerNorm
//     (C, f32, also writing the bf16 copy the next matmul reads);
//     X += GELU(X·Wi + bi)·Wo2 + b (the GELU variant as an eltwise post-op of
//     the first matmul, the residual as the sum post-op of the second);
//     LayerNorm;
//   - pooler: tanh(X[CLS]·Wp + bp) as an f32 matmul reading the [CLS] rows in
//     place; the classifier in float64 on the host.
//
// In bf16 artifacts the matmul inputs (X, Q, K, V, P, context, GELU output)
// are bf16 and everything else (accumulation, bias, residual stream,
// LayerNorm, softmax) is f32. Encoder weights are reordered once at Load into
// the blocked layout the matmul primitives ask for, in oneDNN-allocated
// memory that every runner shares read-only.
package onednn

// Name is the backend's registry key.
const Name = "onednn"

// Roofliner is implemented by this package's runners: RunGEMMs executes only
// the matrix multiplications of one forward, with the same shapes, precision
// and primitives (postOps true: with their fused bias, activation and
// residual post-ops; false: bare GEMMs), on the runner's own buffers. Tools
// compare its rate with the full forward's to see how much the non-GEMM work
// costs.
type Roofliner interface {
	RunGEMMs(postOps bool) error
}
