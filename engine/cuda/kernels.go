package cuda

import (
	"embed"
	"strings"
)

// The kernels are CUDA C kept beside the Go code and compiled at Load by NVRTC
// for the device's architecture, so one binary serves every GPU generation.
//
//go:embed kernels/*.cu
var kernelFS embed.FS

// kernelFiles is the order the sources are concatenated in: helpers first.
var kernelFiles = []string{"common.cu", "layernorm.cu", "gelu.cu", "attention.cu", "classifier.cu"}

// Kernel entry points (extern "C", so their names are unmangled).
const (
	kEmbedLN    = "embed_ln"   // + _f32 / _bf16
	kAddLN      = "add_ln"     // + _f32 / _bf16
	kGELU       = "gelu"       // + _f32 / _bf16
	kAttention  = "attention"  // + _f32 / _bf16
	kPooler     = "pooler"     // fp32 only
	kClassifier = "classifier" // fp32 only
)

// kernelNames lists every entry point the backend looks up.
func kernelNames() []string {
	var out []string
	for _, k := range []string{kEmbedLN, kAddLN, kGELU, kAttention} {
		out = append(out, k+"_f32", k+"_bf16")
	}
	return append(out, kPooler, kClassifier)
}

// Attention kernel limits, mirrored from attention.cu.
const (
	attQW      = 4   // queries per warp (ATT_QW)
	attDMax    = 128 // largest head dimension (ATT_DMAX)
	attKTMax   = 64  // largest key tile (ATT_KTMAX)
	attWarps   = 8   // warps per block
	smemLimit  = 48 << 10
	lnMaxWidth = smemLimit / 4 // hidden sizes whose row fits in shared memory
)

// kernelSource returns the program NVRTC compiles: every file, in order, each
// introduced by a #line directive so compiler messages name the right file.
func kernelSource() (string, error) {
	var b strings.Builder
	for _, name := range kernelFiles {
		src, err := kernelFS.ReadFile("kernels/" + name)
		if err != nil {
			return "", err
		}
		b.WriteString("#line 1 \"" + name + "\"\n")
		b.Write(src)
		b.WriteString("\n")
	}
	return b.String(), nil
}

// attentionTile picks the largest key tile whose shared memory fits the
// default 48 KiB per block, and returns it with the bytes it needs.
func attentionTile(d int) (kt int, smem int) {
	for kt = attKTMax; kt >= 8; kt /= 2 {
		smem = attentionSmem(d, kt)
		if smem <= smemLimit {
			return kt, smem
		}
	}
	return 0, 0
}

func attentionSmem(d, kt int) int {
	return 4 * (kt*(d+1) + kt*d + kt + attWarps*attQW*d + attWarps*kt)
}
