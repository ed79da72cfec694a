package bert

import "fmt"

// Linear is a dense layer in PyTorch layout: Weight is [Out][In] row-major.
type Linear struct {
	In, Out int
	Weight  []float32
	Bias    []float32
}

// LayerNorm holds a LayerNorm's scale and shift.
type LayerNorm struct {
	Gamma, Beta []float32
}

// Layer is one transformer encoder layer.
type Layer struct {
	Query, Key, Value Linear
	AttnOut           Linear
	AttnNorm          LayerNorm
	FFNIn, FFNOut     Linear
	FFNNorm           LayerNorm
}

// Weights are a model's parameters in float32, as a checkpoint holds them
// (unfused, PyTorch layouts). Checkpoint loaders produce them; the compiler
// consumes them.
type Weights struct {
	Config     Config
	Word       []float32 // [VocabSize][HiddenSize]
	Position   []float32 // [MaxPositions][HiddenSize]
	TokenType  []float32 // [TypeVocabSize][HiddenSize]
	EmbNorm    LayerNorm
	Layers     []Layer
	Pooler     Linear
	Classifier Linear
}

// TensorSource yields a named tensor converted to float32, after checking that
// it has exactly the given shape.
type TensorSource interface {
	Tensor(name string, shape ...int) ([]float32, error)
}

// TensorSpec names one parameter of BertForSequenceClassification and its shape.
type TensorSpec struct {
	Name  string
	Shape []int
}

// TensorSpecs lists every parameter of BertForSequenceClassification for c, with
// Hugging Face names and PyTorch shapes, in checkpoint order.
func TensorSpecs(c Config) []TensorSpec {
	h, i := c.HiddenSize, c.IntermediateSize
	specs := []TensorSpec{
		{"bert.embeddings.word_embeddings.weight", []int{c.VocabSize, h}},
		{"bert.embeddings.position_embeddings.weight", []int{c.MaxPositions, h}},
		{"bert.embeddings.token_type_embeddings.weight", []int{c.TypeVocabSize, h}},
		{"bert.embeddings.LayerNorm.weight", []int{h}},
		{"bert.embeddings.LayerNorm.bias", []int{h}},
	}
	for l := 0; l < c.NumLayers; l++ {
		p := fmt.Sprintf("bert.encoder.layer.%d.", l)
		specs = append(specs,
			TensorSpec{p + "attention.self.query.weight", []int{h, h}},
			TensorSpec{p + "attention.self.query.bias", []int{h}},
			TensorSpec{p + "attention.self.key.weight", []int{h, h}},
			TensorSpec{p + "attention.self.key.bias", []int{h}},
			TensorSpec{p + "attention.self.value.weight", []int{h, h}},
			TensorSpec{p + "attention.self.value.bias", []int{h}},
			TensorSpec{p + "attention.output.dense.weight", []int{h, h}},
			TensorSpec{p + "attention.output.dense.bias", []int{h}},
			TensorSpec{p + "attention.output.LayerNorm.weight", []int{h}},
			TensorSpec{p + "attention.output.LayerNorm.bias", []int{h}},
			TensorSpec{p + "intermediate.dense.weight", []int{i, h}},
			TensorSpec{p + "intermediate.dense.bias", []int{i}},
			TensorSpec{p + "output.dense.weight", []int{h, i}},
			TensorSpec{p + "output.dense.bias", []int{h}},
			TensorSpec{p + "output.LayerNorm.weight", []int{h}},
			TensorSpec{p + "output.LayerNorm.bias", []int{h}},
		)
	}
	return append(specs,
		TensorSpec{"bert.pooler.dense.weight", []int{h, h}},
		TensorSpec{"bert.pooler.dense.bias", []int{h}},
		TensorSpec{"classifier.weight", []int{c.NumLabels, h}},
		TensorSpec{"classifier.bias", []int{c.NumLabels}},
	)
}

// Assemble reads every parameter named by TensorSpecs from src.
func Assemble(c Config, src TensorSource) (*Weights, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	got := make(map[string][]float32)
	for _, s := range TensorSpecs(c) {
		t, err := src.Tensor(s.Name, s.Shape...)
		if err != nil {
			return nil, err
		}
		got[s.Name] = t
	}
	h, in := c.HiddenSize, c.IntermediateSize
	lin := func(name string, out, inDim int) Linear {
		return Linear{In: inDim, Out: out, Weight: got[name+".weight"], Bias: got[name+".bias"]}
	}
	norm := func(name string) LayerNorm {
		return LayerNorm{Gamma: got[name+".weight"], Beta: got[name+".bias"]}
	}
	w := &Weights{
		Config:     c,
		Word:       got["bert.embeddings.word_embeddings.weight"],
		Position:   got["bert.embeddings.position_embeddings.weight"],
		TokenType:  got["bert.embeddings.token_type_embeddings.weight"],
		EmbNorm:    norm("bert.embeddings.LayerNorm"),
		Pooler:     lin("bert.pooler.dense", h, h),
		Classifier: lin("classifier", c.NumLabels, h),
		Layers:     make([]Layer, c.NumLayers),
	}
	for l := range w.Layers {
		p := fmt.Sprintf("bert.encoder.layer.%d.", l)
		w.Layers[l] = Layer{
			Query:    lin(p+"attention.self.query", h, h),
			Key:      lin(p+"attention.self.key", h, h),
			Value:    lin(p+"attention.self.value", h, h),
			AttnOut:  lin(p+"attention.output.dense", h, h),
			AttnNorm: norm(p + "attention.output.LayerNorm"),
			FFNIn:    lin(p+"intermediate.dense", in, h),
			FFNOut:   lin(p+"output.dense", h, in),
			FFNNorm:  norm(p + "output.LayerNorm"),
		}
	}
	return w, nil
}
