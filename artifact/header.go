package artifact

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/bertq/bertq/bert"
)

// FormatVersion is the version this package writes and reads.
const FormatVersion = 1

// Precision is the arithmetic the encoder's matmuls run in.
type Precision string

// Precisions.
const (
	BF16 Precision = "bf16"
	FP32 Precision = "fp32"
	// INT8 stores the encoder matmuls' weights as s8 with one scale per
	// output column; engines quantize activations per token at run time
	// (Header.Quantization says how).
	INT8 Precision = "int8"
)

// ParsePrecision accepts "bf16", "fp32" or "int8".
func ParsePrecision(s string) (Precision, error) {
	switch Precision(s) {
	case BF16, FP32, INT8:
		return Precision(s), nil
	}
	return "", fmt.Errorf("unknown precision %q (want bf16, fp32 or int8)", s)
}

// Quantization records an int8 artifact's scheme, so that a reader never has
// to guess it.
type Quantization struct {
	// Weights: WeightsS8PairSafe (the only scheme so far), stored as "i8"
	// tensors with their column scales beside them ("<name>.scale", f32 [N]).
	Weights string `json:"weights"`
	// Activations: ActivationsU8PerToken: each matmul input row is
	// quantized at run time with its own range.
	Activations string `json:"activations"`
}

// The int8 scheme. Weights: w ≈ q·scale[n] per output column n, q in
// [-127, 127], and every pair of adjacent inputs (rows 2j and 2j+1) has
// |q₂ⱼ| + |q₂ⱼ₊₁| ≤ 128, so that u8·s8 products summed in pairs never
// exceed 255·128 = 32640: the 16 bits of AVX2's vpmaddubsw, which saturates
// beyond them, where VNNI and AMX accumulate in 32. One scheme for every
// CPU, so that an artifact's numbers are the same wherever it runs.
// Activations: each row x of a matmul input becomes u8 q = round(x/s) + z
// with s = (hi - lo)/255 and z = round(-lo/s) for the row's range [lo, hi]
// stretched to include 0, so that x ≈ (q - z)·s.
const (
	WeightsS8PairSafe     = "s8 per output channel, adjacent input pairs |q1|+|q2| <= 128"
	ActivationsU8PerToken = "u8 asymmetric per token, dynamic"
)

// DType is a tensor's element type in the file.
type DType string

// DTypes.
const (
	DTypeF32  DType = "f32"
	DTypeBF16 DType = "bf16"
	DTypeU8   DType = "u8"
	DTypeI8   DType = "i8"
)

// Size is the byte width of one element.
func (d DType) Size() int {
	switch d {
	case DTypeF32:
		return 4
	case DTypeBF16:
		return 2
	case DTypeU8, DTypeI8:
		return 1
	}
	return 0
}

// TensorInfo locates one tensor in the file.
type TensorInfo struct {
	Name   string `json:"name"`
	DType  DType  `json:"dtype"`
	Shape  []int  `json:"shape"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
}

// Verification is the compiler's check of the finished artifact against an
// fp32 evaluation of the same weights.
type Verification struct {
	Pairs           int     `json:"pairs"`
	Reference       string  `json:"reference"` // what the artifact was compared with
	Backend         string  `json:"backend"`   // engine backend that ran the artifact
	MaxAbsLogitDiff float64 `json:"max_abs_logit_diff"`
}

// Header describes an artifact. It is JSON in the file.
type Header struct {
	FormatVersion int         `json:"format_version"`
	Model         bert.Config `json:"model"`
	Batch         int         `json:"batch"`
	Seq           int         `json:"seq"`
	Precision     Precision   `json:"precision"`
	// Activation is the GELU variant compiled in, which may differ from the
	// checkpoint's when the user asked for another.
	Activation bert.Activation `json:"activation"`
	// Quantization is set exactly for int8 artifacts.
	Quantization *Quantization `json:"quantization,omitempty"`
	Lowercase    bool          `json:"lowercase"`
	VocabSHA256  string        `json:"vocab_sha256"`
	Source       string        `json:"source"`
	SourceSHA256 string        `json:"source_sha256"`
	Synthetic    bool          `json:"synthetic,omitempty"` // weights carry no meaning
	Compiler     string        `json:"compiler"`
	Verification *Verification `json:"verification,omitempty"`
	Tensors      []TensorInfo  `json:"tensors"`
}

// Limits on static shapes; beyond them an artifact is refused.
const (
	MaxBatch = 4096
	MaxSeq   = 8192
)

// validate checks the header's own consistency and that every tensor lies in
// [dataStart, dataEnd).
func (h *Header) validate(dataStart, dataEnd int64) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrHeader, fmt.Sprintf(format, a...))
	}
	if h.FormatVersion != FormatVersion {
		return fmt.Errorf("%w: header says %d, this build reads %d", ErrVersion, h.FormatVersion, FormatVersion)
	}
	if err := h.Model.Validate(); err != nil {
		return bad("%v", err)
	}
	if h.Batch < 1 || h.Batch > MaxBatch {
		return bad("batch %d out of range 1..%d", h.Batch, MaxBatch)
	}
	if h.Seq < 3 || h.Seq > MaxSeq || h.Seq > h.Model.MaxPositions {
		return bad("seq %d out of range 3..min(%d, max_position_embeddings %d)", h.Seq, MaxSeq, h.Model.MaxPositions)
	}
	if _, err := ParsePrecision(string(h.Precision)); err != nil {
		return bad("%v", err)
	}
	if _, err := bert.ParseActivation(string(h.Activation)); err != nil {
		return bad("%v", err)
	}
	if q := h.Quantization; (h.Precision == INT8) != (q != nil) {
		return bad("precision %s with quantization %v: an int8 artifact, and only it, records its scheme", h.Precision, q)
	} else if q != nil && (q.Weights != WeightsS8PairSafe || q.Activations != ActivationsU8PerToken) {
		return bad("unknown quantization scheme: weights %q, activations %q", q.Weights, q.Activations)
	}
	seen := make(map[string]bool, len(h.Tensors))
	for _, t := range h.Tensors {
		if seen[t.Name] {
			return bad("tensor %q listed twice", t.Name)
		}
		seen[t.Name] = true
		if t.DType.Size() == 0 {
			return bad("tensor %q has unknown dtype %q", t.Name, t.DType)
		}
		n := int64(1)
		for _, d := range t.Shape {
			if d < 0 || (d > 0 && n > math.MaxInt64/int64(d)/8) {
				return bad("tensor %q has an absurd shape %v", t.Name, t.Shape)
			}
			n *= int64(d)
		}
		if n*int64(t.DType.Size()) != t.Size {
			return bad("tensor %q: %v × %s is %d bytes, header says %d", t.Name, t.Shape, t.DType, n*int64(t.DType.Size()), t.Size)
		}
		if t.Offset < dataStart || t.Offset > dataEnd || t.Size > dataEnd-t.Offset {
			return bad("tensor %q at [%d, %d) lies outside the data section [%d, %d)", t.Name, t.Offset, t.Offset+t.Size, dataStart, dataEnd)
		}
	}
	return nil
}

// ParseHeader decodes and validates a header whose tensors must lie in
// [dataStart, dataEnd). Unknown fields are refused so that a newer writer's
// meaning is never silently dropped.
func ParseHeader(b []byte, dataStart, dataEnd int64) (*Header, error) {
	var h Header
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	if err := h.validate(dataStart, dataEnd); err != nil {
		return nil, err
	}
	return &h, nil
}

// ScaleTensor names the column scales stored beside an int8 weight.
func ScaleTensor(weight string) string { return weight + ".scale" }
