// Package bert defines the BERT sequence-classification architecture that every
// other room of bertq agrees on: its configuration, its activation variants,
// its canonical weights and a plain-Go reference forward used as a test oracle.
package bert

import (
	"errors"
	"fmt"
)

// Config is the architecture of a BertForSequenceClassification model, in the
// vocabulary of a Hugging Face config.json.
type Config struct {
	VocabSize        int        `json:"vocab_size"`
	HiddenSize       int        `json:"hidden_size"`
	NumLayers        int        `json:"num_hidden_layers"`
	NumHeads         int        `json:"num_attention_heads"`
	IntermediateSize int        `json:"intermediate_size"`
	MaxPositions     int        `json:"max_position_embeddings"`
	TypeVocabSize    int        `json:"type_vocab_size"`
	NumLabels        int        `json:"num_labels"`
	Labels           []string   `json:"labels,omitempty"` // index → label name (id2label)
	Activation       Activation `json:"hidden_act"`
	LayerNormEps     float64    `json:"layer_norm_eps"`
	PadTokenID       int        `json:"pad_token_id"`
}

// ErrInvalidConfig is wrapped by every Config.Validate failure.
var ErrInvalidConfig = errors.New("invalid model config")

// Upper bounds that keep a hostile config from asking for absurd allocations.
const (
	maxVocab  = 1 << 22
	maxHidden = 1 << 15
	maxLayers = 256
	maxLabels = 1 << 12
)

// Validate reports the first inconsistency in c.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.VocabSize <= 0 || c.VocabSize > maxVocab:
		return bad("vocab_size %d out of range", c.VocabSize)
	case c.HiddenSize <= 0 || c.HiddenSize > maxHidden:
		return bad("hidden_size %d out of range", c.HiddenSize)
	case c.NumLayers <= 0 || c.NumLayers > maxLayers:
		return bad("num_hidden_layers %d out of range", c.NumLayers)
	case c.NumHeads <= 0 || c.HiddenSize%c.NumHeads != 0:
		return bad("hidden_size %d is not divisible by num_attention_heads %d", c.HiddenSize, c.NumHeads)
	case c.IntermediateSize <= 0 || c.IntermediateSize > 8*maxHidden:
		return bad("intermediate_size %d out of range", c.IntermediateSize)
	case c.MaxPositions <= 0 || c.MaxPositions > 1<<16:
		return bad("max_position_embeddings %d out of range", c.MaxPositions)
	case c.TypeVocabSize <= 0 || c.TypeVocabSize > 1<<10:
		return bad("type_vocab_size %d out of range", c.TypeVocabSize)
	case c.NumLabels <= 0 || c.NumLabels > maxLabels:
		return bad("num_labels %d out of range", c.NumLabels)
	case len(c.Labels) != 0 && len(c.Labels) != c.NumLabels:
		return bad("%d label names for %d labels", len(c.Labels), c.NumLabels)
	case !(c.LayerNormEps > 0 && c.LayerNormEps < 1):
		return bad("layer_norm_eps %g out of range", c.LayerNormEps)
	case c.PadTokenID < 0 || c.PadTokenID >= c.VocabSize:
		return bad("pad_token_id %d outside the vocabulary", c.PadTokenID)
	}
	if _, err := ParseActivation(string(c.Activation)); err != nil {
		return bad("%v", err)
	}
	return nil
}

// HeadDim is the width of one attention head.
func (c *Config) HeadDim() int { return c.HiddenSize / c.NumHeads }

// Label names class i, falling back to LABEL_i like transformers does.
func (c *Config) Label(i int) string {
	if i >= 0 && i < len(c.Labels) && c.Labels[i] != "" {
		return c.Labels[i]
	}
	return fmt.Sprintf("LABEL_%d", i)
}

// FLOPs is the multiply-add count ×2 of one sequence of length seq through the
// encoder, pooler and classifier (embedding gathers and element-wise work are
// not counted). BERT-Large at 128 gives 78.9 GFLOP.
func (c *Config) FLOPs(seq int) float64 {
	h, i, s := float64(c.HiddenSize), float64(c.IntermediateSize), float64(seq)
	perLayer := 2*s*h*3*h + // fused QKV
		2*s*s*h*2 + // scores and context
		2*s*h*h + // attention output
		2*s*h*i*2 // feed-forward in and out
	return float64(c.NumLayers)*perLayer + 2*h*h + 2*h*float64(c.NumLabels)
}

// Large is BERT-Large uncased with a two-way classifier, the architecture of
// synthetic:bert-large.
func Large() Config {
	return Config{
		VocabSize: 30522, HiddenSize: 1024, NumLayers: 24, NumHeads: 16,
		IntermediateSize: 4096, MaxPositions: 512, TypeVocabSize: 2, NumLabels: 2,
		Activation: GELUExact, LayerNormEps: 1e-12,
	}
}
