package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/bertq/bertq/bert"
)

// hfConfig is the subset of a Hugging Face BertConfig config.json bertq reads.
// Pointers tell an absent field from a zero one.
type hfConfig struct {
	ModelType        *string           `json:"model_type"`
	Architectures    []string          `json:"architectures"`
	VocabSize        *int              `json:"vocab_size"`
	HiddenSize       *int              `json:"hidden_size"`
	NumLayers        *int              `json:"num_hidden_layers"`
	NumHeads         *int              `json:"num_attention_heads"`
	IntermediateSize *int              `json:"intermediate_size"`
	HiddenAct        *string           `json:"hidden_act"`
	LayerNormEps     *float64          `json:"layer_norm_eps"`
	MaxPositions     *int              `json:"max_position_embeddings"`
	TypeVocabSize    *int              `json:"type_vocab_size"`
	PadTokenID       *int              `json:"pad_token_id"`
	NumLabels        *int              `json:"num_labels"`
	ID2Label         map[string]string `json:"id2label"`
}

// ReadConfig reads a Hugging Face config.json (see ParseConfig); errors name path.
func ReadConfig(path string) (bert.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return bert.Config{}, err
	}
	c, _, err := parseConfig(path, data)
	return c, err
}

// ParseConfig parses the contents of a Hugging Face config.json into a
// validated bert.Config. model_type must be "bert" (ErrNotBERT otherwise).
// Fields that are absent take transformers' BertConfig defaults (vocab 30522,
// hidden 768, 12 layers, 12 heads, intermediate 3072, gelu, 512 positions,
// 2 token types, eps 1e-12, pad 0); a null pad_token_id means 0. The labels
// come from id2label ({"0": "NEG", "1": "POS"}), whose keys must be exactly
// 0..n-1; num_labels is len(id2label) when id2label is given (as in
// transformers, id2label wins over a disagreeing num_labels), else num_labels,
// else 2. Errors wrap ErrConfig (and bert.ErrInvalidConfig when Validate
// fails) or ErrNotBERT.
func ParseConfig(data []byte) (bert.Config, error) {
	c, _, err := parseConfig("config.json", data)
	return c, err
}

func parseConfig(name string, data []byte) (bert.Config, []string, error) {
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return bert.Config{}, nil, fmt.Errorf("%s: invalid JSON: %v: %w", name, err, ErrConfig)
	}
	switch {
	case h.ModelType == nil:
		return bert.Config{}, nil, fmt.Errorf("%s: no model_type (want \"bert\"): %w", name, ErrNotBERT)
	case *h.ModelType != "bert":
		return bert.Config{}, nil, fmt.Errorf("%s: model_type is %q, want \"bert\": %w", name, *h.ModelType, ErrNotBERT)
	}
	def := func(p *int, d int) int {
		if p == nil {
			return d
		}
		return *p
	}
	c := bert.Config{
		VocabSize:        def(h.VocabSize, 30522),
		HiddenSize:       def(h.HiddenSize, 768),
		NumLayers:        def(h.NumLayers, 12),
		NumHeads:         def(h.NumHeads, 12),
		IntermediateSize: def(h.IntermediateSize, 3072),
		MaxPositions:     def(h.MaxPositions, 512),
		TypeVocabSize:    def(h.TypeVocabSize, 2),
		PadTokenID:       def(h.PadTokenID, 0),
		LayerNormEps:     1e-12,
		Activation:       bert.GELUExact,
	}
	if h.LayerNormEps != nil {
		c.LayerNormEps = *h.LayerNormEps
	}
	if h.HiddenAct != nil {
		act, err := bert.ParseActivation(*h.HiddenAct)
		if err != nil {
			return bert.Config{}, nil, fmt.Errorf("%s: hidden_act: %v: %w", name, err, ErrConfig)
		}
		c.Activation = act
	}
	switch {
	case len(h.ID2Label) > 0:
		if len(h.ID2Label) > 1<<12 {
			return bert.Config{}, nil, fmt.Errorf("%s: id2label has %d entries: %w", name, len(h.ID2Label), ErrConfig)
		}
		labels := make([]string, len(h.ID2Label))
		for k, v := range h.ID2Label {
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(labels) {
				return bert.Config{}, nil, fmt.Errorf("%s: id2label key %q is not an index in 0..%d: %w", name, k, len(labels)-1, ErrConfig)
			}
			if labels[i] != "" {
				return bert.Config{}, nil, fmt.Errorf("%s: id2label names index %d twice: %w", name, i, ErrConfig)
			}
			if v == "" {
				v = fmt.Sprintf("LABEL_%d", i)
			}
			labels[i] = v
		}
		c.Labels, c.NumLabels = labels, len(labels)
	case h.NumLabels != nil:
		c.NumLabels = *h.NumLabels
	default:
		c.NumLabels = 2
	}
	if err := c.Validate(); err != nil {
		return bert.Config{}, nil, fmt.Errorf("%s: %w: %w", name, err, ErrConfig)
	}
	return c, h.Architectures, nil
}
