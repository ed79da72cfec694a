// Package compiler turns a checkpoint into a static-shape artifact (fused QKV,
// folded attention scale, reduced precision), verifies the artifact against a
// float64 evaluation of the same weights, and serves compile jobs from
// JetStream.
package compiler

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"

	"github.com/bertq/bertq/tokenizer"
)

// Version names this compiler in artifact headers.
const Version = "bertq-compiler/1"

// Options are the static shape and arithmetic to compile for.
type Options struct {
	Batch     int
	Seq       int
	Precision artifact.Precision
	// GELU is auto (the checkpoint's), exact, tanh or crude.
	GELU string
	// Verify runs the finished artifact on built-in pairs (default true via
	// DefaultOptions).
	Verify bool
	// Backend runs the verification ("auto" picks the fastest available).
	Backend string
}

// DefaultOptions is the seed's compile: batch 4, sequence 128, bf16.
func DefaultOptions() Options {
	return Options{Batch: 4, Seq: 128, Precision: artifact.BF16, GELU: "auto", Verify: true, Backend: "auto"}
}

// Source is what to compile: weights plus the tokenizer that goes with them.
type Source struct {
	Name      string // e.g. "synthetic:bert-large" or a checkpoint path
	SHA256    string // digest of the checkpoint's bytes (or of the generator spec)
	Synthetic bool   // weights are generated and carry no meaning
	Weights   *bert.Weights
	Tokenizer *tokenizer.Tokenizer
}

// Result describes a compiled artifact.
type Result struct {
	Path    string
	Digest  string // hex SHA-256 from the artifact footer
	Size    int64
	Header  artifact.Header
	Elapsed time.Duration
}

// Validate checks the options against the model they will compile.
func (o Options) Validate(c bert.Config) error {
	switch {
	case o.Batch < 1 || o.Batch > artifact.MaxBatch:
		return fmt.Errorf("%w: batch %d out of range 1..%d", ErrOptions, o.Batch, artifact.MaxBatch)
	case o.Seq < 3 || o.Seq > c.MaxPositions:
		return fmt.Errorf("%w: seq %d out of range 3..%d (the model's max_position_embeddings)", ErrOptions, o.Seq, c.MaxPositions)
	}
	if _, err := artifact.ParsePrecision(string(o.Precision)); err != nil {
		return fmt.Errorf("%w: %v", ErrOptions, err)
	}
	if _, err := o.activation(c); err != nil {
		return err
	}
	return nil
}

func (o Options) activation(c bert.Config) (bert.Activation, error) {
	switch o.GELU {
	case "", "auto":
		return c.Activation, nil
	case "exact":
		return bert.GELUExact, nil
	case "tanh":
		return bert.GELUTanh, nil
	case "crude":
		return bert.GELUCrude, nil
	}
	return "", fmt.Errorf("%w: unknown --gelu %q (want auto, exact, tanh or crude)", ErrOptions, o.GELU)
}

// Compile writes src as an artifact at out and, when opts.Verify, records the
// verification in its header. The file appears at out only when complete.
func Compile(src Source, out string, opts Options) (*Result, error) {
	start := time.Now()
	w := src.Weights
	c := w.Config
	if err := opts.Validate(c); err != nil {
		return nil, err
	}
	if src.Tokenizer == nil {
		return nil, fmt.Errorf("%w: no tokenizer for %s", ErrSource, src.Name)
	}
	if src.Tokenizer.VocabSize() > c.VocabSize {
		return nil, fmt.Errorf("%w: the vocabulary has %d tokens but the model's embeddings only %d", ErrSource, src.Tokenizer.VocabSize(), c.VocabSize)
	}
	act, _ := opts.activation(c)
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return nil, err
	}
	tmpPath := tmp.Name()
	// CreateTemp makes the file private; an artifact is meant to be shared.
	err = tmp.Chmod(0o644)
	tmp.Close()
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmpPath)

	hdr := artifact.Header{
		Model: c, Batch: opts.Batch, Seq: opts.Seq, Precision: opts.Precision, Activation: act,
		Lowercase: src.Tokenizer.Lowercase(), VocabSHA256: src.Tokenizer.Digest(),
		Source: src.Name, SourceSHA256: src.SHA256, Synthetic: src.Synthetic, Compiler: Version,
	}
	hdr.Model.Activation = act
	if opts.Precision == artifact.INT8 {
		hdr.Quantization = &artifact.Quantization{Weights: artifact.WeightsS8PairSafe, Activations: artifact.ActivationsU8PerToken}
	}
	if err := write(tmpPath, w, src.Tokenizer.VocabBytes(), opts.Precision, hdr); err != nil {
		return nil, err
	}
	if opts.Verify {
		v, err := Verify(tmpPath, src, opts.Backend)
		if err != nil {
			return nil, fmt.Errorf("verifying the artifact: %w", err)
		}
		if err := artifact.SetHeader(tmpPath, func(h *artifact.Header) { h.Verification = v }); err != nil {
			return nil, err
		}
	}
	a, err := artifact.Open(tmpPath)
	if err != nil {
		return nil, err
	}
	res := &Result{Path: out, Digest: a.Digest, Size: a.Size(), Header: *a.Header}
	a.Close()
	if err := os.Rename(tmpPath, out); err != nil {
		return nil, err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// write lays the weights out for the engine.
func write(path string, w *bert.Weights, vocab []byte, p artifact.Precision, hdr artifact.Header) error {
	c := w.Config
	H := c.HiddenSize
	aw, err := artifact.Create(path)
	if err != nil {
		return err
	}
	mat := func(name string, shape []int, data []float32) { aw.Matrix(name, shape[0], shape[1], data, p) }
	aw.F32(artifact.WordEmbeddings, []int{c.VocabSize, H}, w.Word)
	aw.F32(artifact.PositionEmbeddings, []int{c.MaxPositions, H}, w.Position)
	aw.F32(artifact.TokenTypeEmbeddings, []int{c.TypeVocabSize, H}, w.TokenType)
	aw.F32(artifact.EmbNormGamma, []int{H}, w.EmbNorm.Gamma)
	aw.F32(artifact.EmbNormBeta, []int{H}, w.EmbNorm.Beta)
	// The attention scale is folded into Q in float64, then rounded once.
	scale := 1 / math.Sqrt(float64(c.HeadDim()))
	for l, lw := range w.Layers {
		n := func(part string) string { return artifact.LayerTensor(l, part) }
		qkv := make([]float32, H*3*H)
		for k := 0; k < H; k++ {
			for j := 0; j < H; j++ {
				qkv[k*3*H+j] = float32(float64(lw.Query.Weight[j*H+k]) * scale)
				qkv[k*3*H+H+j] = lw.Key.Weight[j*H+k]
				qkv[k*3*H+2*H+j] = lw.Value.Weight[j*H+k]
			}
		}
		bias := make([]float32, 0, 3*H)
		for _, b := range lw.Query.Bias {
			bias = append(bias, float32(float64(b)*scale))
		}
		bias = append(append(bias, lw.Key.Bias...), lw.Value.Bias...)
		mat(n(artifact.QKVWeight), []int{H, 3 * H}, qkv)
		aw.F32(n(artifact.QKVBias), []int{3 * H}, bias)
		mat(n(artifact.AttnOutWeight), []int{H, H}, transpose(lw.AttnOut))
		aw.F32(n(artifact.AttnOutBias), []int{H}, lw.AttnOut.Bias)
		aw.F32(n(artifact.AttnNormGamma), []int{H}, lw.AttnNorm.Gamma)
		aw.F32(n(artifact.AttnNormBeta), []int{H}, lw.AttnNorm.Beta)
		mat(n(artifact.FFNInWeight), []int{H, c.IntermediateSize}, transpose(lw.FFNIn))
		aw.F32(n(artifact.FFNInBias), []int{c.IntermediateSize}, lw.FFNIn.Bias)
		mat(n(artifact.FFNOutWeight), []int{c.IntermediateSize, H}, transpose(lw.FFNOut))
		aw.F32(n(artifact.FFNOutBias), []int{H}, lw.FFNOut.Bias)
		aw.F32(n(artifact.FFNNormGamma), []int{H}, lw.FFNNorm.Gamma)
		aw.F32(n(artifact.FFNNormBeta), []int{H}, lw.FFNNorm.Beta)
	}
	aw.F32(artifact.PoolerWeight, []int{H, H}, transpose(w.Pooler))
	aw.F32(artifact.PoolerBias, []int{H}, w.Pooler.Bias)
	aw.F32(artifact.ClassifierWeight, []int{H, c.NumLabels}, transpose(w.Classifier))
	aw.F32(artifact.ClassifierBias, []int{c.NumLabels}, w.Classifier.Bias)
	aw.Bytes(artifact.Vocab, vocab)
	return aw.Close(hdr)
}

// transpose turns a PyTorch [out][in] weight into the engine's [in][out].
func transpose(l bert.Linear) []float32 {
	t := make([]float32, len(l.Weight))
	for o := 0; o < l.Out; o++ {
		for i := 0; i < l.In; i++ {
			t[i*l.Out+o] = l.Weight[o*l.In+i]
		}
	}
	return t
}
