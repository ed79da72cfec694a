package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/internal/fixtures"
)

func readAll(t *testing.T, paths ...string) []byte {
	t.Helper()
	var b []byte
	for _, p := range paths {
		d, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, d...)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkWeights checks that every tensor has its spec's size and finite values.
func checkWeights(t *testing.T, w *bert.Weights) {
	t.Helper()
	m := weightTensors(w)
	for _, s := range bert.TensorSpecs(w.Config) {
		v := m[s.Name]
		if len(v) != shapeSize(s.Shape) {
			t.Errorf("%s: %d values, want %v", s.Name, len(v), s.Shape)
		}
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("%s[%d] = %v", s.Name, i, x)
			}
		}
	}
}

// sameWeights requires a and b to be bit-identical.
func sameWeights(t *testing.T, a, b *bert.Weights) {
	t.Helper()
	if !configEqual(a.Config, b.Config) {
		t.Fatalf("configs differ:\n%+v\n%+v", a.Config, b.Config)
	}
	ma, mb := weightTensors(a), weightTensors(b)
	for _, s := range bert.TensorSpecs(a.Config) {
		x, y := ma[s.Name], mb[s.Name]
		if len(x) != len(y) {
			t.Fatalf("%s: %d vs %d values", s.Name, len(x), len(y))
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("%s[%d]: %v vs %v", s.Name, i, x[i], y[i])
			}
		}
	}
}

// configEqual compares configs, treating absent label names as LABEL_i.
func configEqual(a, b bert.Config) bool {
	norm := func(c bert.Config) bert.Config {
		labels := make([]string, c.NumLabels)
		for i := range labels {
			labels[i] = c.Label(i)
		}
		c.Labels = labels
		return c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func expectValues(t *testing.T, name string, got []float32, first []float64, last float64) {
	t.Helper()
	for i, want := range first {
		if float64(got[i]) != want {
			t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want)
		}
	}
	if float64(got[len(got)-1]) != last {
		t.Errorf("%s[last] = %v, want %v", name, got[len(got)-1], last)
	}
}

func TestOpenTinyFP32(t *testing.T) {
	dir := fixtures.ModelDir(t, "tiny-fp32")
	w, info, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := bert.Config{VocabSize: 30522, HiddenSize: 64, NumLayers: 4, NumHeads: 4, IntermediateSize: 256,
		MaxPositions: 512, TypeVocabSize: 2, NumLabels: 2, Activation: bert.GELUExact, LayerNormEps: 1e-12}
	if !configEqual(w.Config, want) || w.Config.Labels != nil {
		t.Errorf("config = %+v, want %+v", w.Config, want)
	}
	checkWeights(t, w)
	// Values read with Python's struct module straight from the file.
	expectValues(t, "word", w.Word, []float64{-0.07627979665994644, -0.037511590868234634, -0.03269904479384422}, -0.03521580621600151)
	expectValues(t, "classifier.bias", w.Classifier.Bias, []float64{-0.07378014177083969}, -0.01785959117114544)
	expectValues(t, "layer1 FFNNorm.Gamma", w.Layers[1].FFNNorm.Gamma, []float64{1.2058751583099365, 1.052826166152954, 1.1408703327178955}, 1.201683521270752)
	expectValues(t, "classifier.weight", w.Classifier.Weight, []float64{0.03479999303817749, -0.026174578815698624, 0.05392540246248245}, 0.07260280102491379)

	if !slices.Equal(info.DTypes, []DType{F32}) {
		t.Errorf("DTypes = %v", info.DTypes)
	}
	absDir, _ := filepath.Abs(dir)
	files := []string{filepath.Join(absDir, "config.json"), filepath.Join(absDir, "model.safetensors")}
	if !slices.Equal(info.Files, files) {
		t.Errorf("Files = %v, want %v", info.Files, files)
	}
	if got, want := info.Digest, sha(readAll(t, files...)); got != want {
		t.Errorf("Digest = %s, want sha256(config.json ‖ model.safetensors) = %s", got, want)
	}
	if info.Source != dir || info.Synthetic || info.Note != "" || info.VocabPath != "" || info.TokenizerConfigPath != "" {
		t.Errorf("info = %+v", info)
	}
	if !strings.Contains(info.Description, absDir) || !strings.Contains(info.Description, "F32") {
		t.Errorf("Description = %q", info.Description)
	}
	var params int64
	for _, s := range bert.TensorSpecs(w.Config) {
		params += int64(shapeSize(s.Shape))
	}
	if info.Params != params {
		t.Errorf("Params = %d, want %d", info.Params, params)
	}
	if !slices.Equal(info.Architectures, []string{"BertForSequenceClassification"}) {
		t.Errorf("Architectures = %v", info.Architectures)
	}
}

// TestTinyEmbeddingsMatchGolden recomputes the embedding output of pair 0
// (word + position + token type, then LayerNorm) from the loaded weights and
// compares it with transformers' hidden_states[0].
func TestTinyEmbeddingsMatchGolden(t *testing.T) {
	td := fixtures.Dir(t)
	w, _, err := Open(filepath.Join(td, "models", "tiny-fp32"))
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Pairs []struct {
			InputIDs     []int `json:"input_ids"`
			TokenTypeIDs []int `json:"token_type_ids"`
		} `json:"pairs"`
		Models map[string]struct {
			Hidden [][][]float64 `json:"hidden_states_pair0"`
		} `json:"models"`
	}
	if err := json.Unmarshal(readAll(t, filepath.Join(td, "golden-pairs.json")), &golden); err != nil {
		t.Fatal(err)
	}
	emb := golden.Models["tiny-fp32"].Hidden[0]
	p := golden.Pairs[0]
	h := w.Config.HiddenSize
	var maxErr float64
	for pos, id := range p.InputIDs {
		x := make([]float64, h)
		var mean float64
		for j := range x {
			x[j] = float64(w.Word[id*h+j]) + float64(w.Position[pos*h+j]) + float64(w.TokenType[p.TokenTypeIDs[pos]*h+j])
			mean += x[j]
		}
		mean /= float64(h)
		var variance float64
		for j := range x {
			variance += (x[j] - mean) * (x[j] - mean)
		}
		variance /= float64(h)
		for j := range x {
			y := (x[j]-mean)/math.Sqrt(variance+w.Config.LayerNormEps)*float64(w.EmbNorm.Gamma[j]) + float64(w.EmbNorm.Beta[j])
			maxErr = max(maxErr, math.Abs(y-emb[pos][j]))
		}
	}
	if maxErr > 1e-5 {
		t.Errorf("embedding output differs from golden by up to %g", maxErr)
	}
}

func TestOpenSmallBF16(t *testing.T) {
	dir := fixtures.ModelDir(t, "small-bf16")
	w, info, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := bert.Config{VocabSize: 30522, HiddenSize: 128, NumLayers: 2, NumHeads: 2, IntermediateSize: 512,
		MaxPositions: 512, TypeVocabSize: 2, NumLabels: 2, Activation: bert.GELUTanh, LayerNormEps: 1e-12}
	if !configEqual(w.Config, want) {
		t.Errorf("config = %+v, want %+v", w.Config, want)
	}
	checkWeights(t, w)
	expectValues(t, "word", w.Word, []float64{-0.052001953125, 0.0458984375, -0.0654296875}, -0.06005859375)
	expectValues(t, "classifier.bias", w.Classifier.Bias, []float64{-0.04296875}, 0.0260009765625)
	expectValues(t, "layer1 FFNNorm.Gamma", w.Layers[1].FFNNorm.Gamma, []float64{0.9453125, 0.984375, 0.95703125}, 0.7734375)
	expectValues(t, "classifier.weight", w.Classifier.Weight, []float64{0.058837890625, -0.022705078125, 0.08544921875}, -0.072265625)
	for name, v := range weightTensors(w) {
		for i, x := range v {
			if math.Float32bits(x)&0xffff != 0 {
				t.Fatalf("%s[%d] = %v is not a bfloat16 value", name, i, x)
			}
		}
	}
	if !slices.Equal(info.DTypes, []DType{BF16}) {
		t.Errorf("DTypes = %v", info.DTypes)
	}
	if got, want := info.Digest, sha(readAll(t, filepath.Join(dir, "config.json"), filepath.Join(dir, "model.safetensors"))); got != want {
		t.Errorf("Digest = %s, want %s", got, want)
	}
}

// tinyWeights makes small deterministic weights for cfg.
func tinyWeights(t *testing.T, cfg bert.Config) *bert.Weights {
	t.Helper()
	src := mapSource{}
	for _, s := range bert.TensorSpecs(cfg) {
		v := make([]float32, shapeSize(s.Shape))
		SyntheticFill(s.Name, v, 0)
		src[s.Name] = v
	}
	w, err := bert.Assemble(cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func tinyConfig() bert.Config {
	return bert.Config{VocabSize: 40, HiddenSize: 8, NumLayers: 2, NumHeads: 2, IntermediateSize: 16,
		MaxPositions: 16, TypeVocabSize: 2, NumLabels: 3, Labels: []string{"neg", "neutral", "pos"},
		Activation: bert.GELUTanh, LayerNormEps: 1e-6, PadTokenID: 1}
}

func TestWriteCheckpointRoundTrip(t *testing.T) {
	w := tinyWeights(t, tinyConfig())
	for _, opt := range []WriteOptions{
		{},
		{Shards: 2},
		{Shards: 5, LegacyLayerNormNames: true},
		{LegacyLayerNormNames: true, Extra: []RawTensor{{Name: "bert.embeddings.position_ids", DType: "I64", Shape: []int{1, 16}, Data: make([]byte, 128)}}},
	} {
		dir := t.TempDir()
		if err := WriteCheckpoint(dir, w, opt); err != nil {
			t.Fatal(err)
		}
		got, info, err := Open(dir)
		if err != nil {
			t.Fatalf("%+v: %v", opt, err)
		}
		sameWeights(t, w, got)
		if !slices.Equal(got.Config.Labels, []string{"neg", "neutral", "pos"}) {
			t.Errorf("labels = %v", got.Config.Labels)
		}
		if !slices.Equal(info.DTypes, []DType{F32}) {
			t.Errorf("DTypes = %v", info.DTypes)
		}
		if opt.Shards > 1 {
			shards, _ := filepath.Glob(filepath.Join(dir, "model-*-of-*.safetensors"))
			if len(shards) != opt.Shards {
				t.Errorf("%d shards written, want %d", len(shards), opt.Shards)
			}
			want := append([]string{filepath.Join(dir, ConfigFile), filepath.Join(dir, SafetensorsIndex)}, shards...)
			if !slices.Equal(info.Files, want) {
				t.Errorf("Files = %v, want %v", info.Files, want)
			}
			if info.Digest != sha(readAll(t, want...)) {
				t.Errorf("sharded digest is not sha256 of %v", want)
			}
			if !strings.Contains(info.Description, "shards") {
				t.Errorf("Description = %q", info.Description)
			}
		}
		if opt.LegacyLayerNormNames {
			f, err := OpenSafetensors(info.Files[len(info.Files)-1])
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := f.Info("bert.encoder.layer.1.output.LayerNorm.gamma"); !ok && opt.Shards <= 1 {
				t.Errorf("legacy names not written: %v", f.Names())
			}
			f.Close()
		}
	}
}

func TestWriteCheckpointHalfPrecision(t *testing.T) {
	w := tinyWeights(t, tinyConfig())
	for _, dt := range []DType{F16, BF16} {
		dir := t.TempDir()
		if err := WriteCheckpoint(dir, w, WriteOptions{DType: dt, Shards: 2}); err != nil {
			t.Fatal(err)
		}
		got, info, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(info.DTypes, []DType{dt}) {
			t.Errorf("DTypes = %v, want [%s]", info.DTypes, dt)
		}
		mw, mg := weightTensors(w), weightTensors(got)
		for name, v := range mw {
			for i, x := range v {
				var want float32
				if dt == F16 {
					want = F16ToFloat32(Float32ToF16(x))
				} else {
					want = BF16ToFloat32(Float32ToBF16(x))
				}
				if mg[name][i] != want {
					t.Fatalf("%s %s[%d] = %v, want %v", dt, name, i, mg[name][i], want)
				}
			}
		}
	}
}

// writeDir writes a checkpoint of tinyWeights and lets edit change it.
func writeDir(t *testing.T, opt WriteOptions) string {
	t.Helper()
	dir := t.TempDir()
	if err := WriteCheckpoint(dir, tinyWeights(t, tinyConfig()), opt); err != nil {
		t.Fatal(err)
	}
	return dir
}

func editJSON(t *testing.T, path string, edit func(m map[string]any)) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readAll(t, path), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ := json.Marshal(m)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	type check struct {
		want error
		msg  string
	}
	cases := []struct {
		name  string
		setup func(t *testing.T) string // returns the directory
		check
	}{
		{"missing dir", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, check{fs.ErrNotExist, "nope"}},
		{"file not dir", func(t *testing.T) string { return filepath.Join(writeDir(t, WriteOptions{}), ConfigFile) }, check{ErrNoWeights, "not a directory"}},
		{"no config", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			os.Remove(filepath.Join(d, ConfigFile))
			return d
		}, check{fs.ErrNotExist, ConfigFile}},
		{"config not JSON", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			os.WriteFile(filepath.Join(d, ConfigFile), []byte("{nope"), 0o644)
			return d
		}, check{ErrConfig, "invalid JSON"}},
		{"roberta", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			editJSON(t, filepath.Join(d, ConfigFile), func(m map[string]any) { m["model_type"] = "roberta" })
			return d
		}, check{ErrNotBERT, `model_type is "roberta"`}},
		{"no model_type", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			editJSON(t, filepath.Join(d, ConfigFile), func(m map[string]any) { delete(m, "model_type") })
			return d
		}, check{ErrNotBERT, "no model_type"}},
		{"relu", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			editJSON(t, filepath.Join(d, ConfigFile), func(m map[string]any) { m["hidden_act"] = "relu" })
			return d
		}, check{ErrConfig, `"relu"`}},
		{"invalid config", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			editJSON(t, filepath.Join(d, ConfigFile), func(m map[string]any) { m["num_attention_heads"] = 3 })
			return d
		}, check{bert.ErrInvalidConfig, "divisible"}},
		{"bad id2label", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			editJSON(t, filepath.Join(d, ConfigFile), func(m map[string]any) { m["id2label"] = map[string]string{"0": "a", "2": "b"} })
			return d
		}, check{ErrConfig, "id2label key"}},
		{"no weights", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			os.Remove(filepath.Join(d, SafetensorsFile))
			os.WriteFile(filepath.Join(d, "pytorch_model.bin"), nil, 0o644)
			return d
		}, check{ErrNoWeights, "pytorch_model.bin"}},
		{"wrong classifier shape", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			editJSON(t, filepath.Join(d, ConfigFile), func(m map[string]any) {
				delete(m, "id2label")
				m["num_labels"] = 5
			})
			return d
		}, check{ErrShape, `"classifier.weight" has shape [3 8], expected [5 8]`}},
		{"corrupt safetensors", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{})
			p := filepath.Join(d, SafetensorsFile)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-3)
			return d
		}, check{ErrCorrupt, SafetensorsFile}},
		{"missing tensor", func(t *testing.T) string {
			d := t.TempDir()
			w := tinyWeights(t, tinyConfig())
			w.Classifier.Bias = nil // written as an empty tensor of the wrong shape
			if err := WriteCheckpoint(d, w, WriteOptions{}); err == nil {
				t.Fatal("WriteCheckpoint accepted a missing bias")
			}
			w = tinyWeights(t, tinyConfig())
			var raws []RawTensor
			m := weightTensors(w)
			for _, s := range bert.TensorSpecs(w.Config) {
				if s.Name == "classifier.bias" {
					continue
				}
				b, _ := EncodeFloat32(F32, m[s.Name])
				raws = append(raws, RawTensor{Name: s.Name, DType: F32, Shape: s.Shape, Data: b})
			}
			if err := WriteSafetensors(filepath.Join(d, SafetensorsFile), raws, nil); err != nil {
				t.Fatal(err)
			}
			if err := writeConfig(filepath.Join(d, ConfigFile), w.Config, F32); err != nil {
				t.Fatal(err)
			}
			return d
		}, check{ErrMissingTensor, `"classifier.bias" not found (not a sequence-classification checkpoint? architectures: BertForSequenceClassification)`}},
		{"integer tensor", func(t *testing.T) string {
			d := t.TempDir()
			w := tinyWeights(t, tinyConfig())
			var raws []RawTensor
			m := weightTensors(w)
			for _, s := range bert.TensorSpecs(w.Config) {
				b, _ := EncodeFloat32(F32, m[s.Name])
				dt := F32
				if s.Name == "bert.pooler.dense.bias" {
					dt = "I32"
				}
				raws = append(raws, RawTensor{Name: s.Name, DType: dt, Shape: s.Shape, Data: b})
			}
			if err := WriteSafetensors(filepath.Join(d, SafetensorsFile), raws, nil); err != nil {
				t.Fatal(err)
			}
			writeConfig(filepath.Join(d, ConfigFile), w.Config, F32)
			return d
		}, check{ErrDType, `"bert.pooler.dense.bias" has dtype I32`}},
		{"shard missing", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{Shards: 2})
			os.Remove(filepath.Join(d, "model-00002-of-00002.safetensors"))
			return d
		}, check{fs.ErrNotExist, "model-00002-of-00002.safetensors"}},
		{"index not JSON", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{Shards: 2})
			os.WriteFile(filepath.Join(d, SafetensorsIndex), []byte("[}"), 0o644)
			return d
		}, check{ErrCorrupt, SafetensorsIndex}},
		{"index without weight_map", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{Shards: 2})
			os.WriteFile(filepath.Join(d, SafetensorsIndex), []byte(`{"metadata":{}}`), 0o644)
			return d
		}, check{ErrCorrupt, "no weight_map"}},
		{"index points to wrong shard", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{Shards: 2})
			editJSON(t, filepath.Join(d, SafetensorsIndex), func(m map[string]any) {
				m["weight_map"].(map[string]any)["classifier.bias"] = "model-00001-of-00002.safetensors"
			})
			return d
		}, check{ErrCorrupt, `puts "classifier.bias" in model-00001-of-00002.safetensors, which has no such tensor`}},
		{"index escapes dir", func(t *testing.T) string {
			d := writeDir(t, WriteOptions{Shards: 2})
			editJSON(t, filepath.Join(d, SafetensorsIndex), func(m map[string]any) {
				m["weight_map"].(map[string]any)["classifier.bias"] = "../model.safetensors"
			})
			return d
		}, check{ErrCorrupt, `shard name "../model.safetensors"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := c.setup(t)
			_, _, err := Load(dir)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v\nwant %v containing %q", err, c.want, c.msg)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"model_type":"bert","id2label":{"1":"POS","0":"NEG"},"pad_token_id":null,"hidden_act":"gelu_pytorch_tanh"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := bert.Config{VocabSize: 30522, HiddenSize: 768, NumLayers: 12, NumHeads: 12, IntermediateSize: 3072,
		MaxPositions: 512, TypeVocabSize: 2, NumLabels: 2, Labels: []string{"NEG", "POS"}, Activation: bert.GELUTanh, LayerNormEps: 1e-12}
	if !configEqual(c, want) || !slices.Equal(c.Labels, want.Labels) {
		t.Errorf("config = %+v, want %+v", c, want)
	}
	c, err = ParseConfig([]byte(`{"model_type":"bert","num_labels":3,"hidden_act":"gelu_new","layer_norm_eps":1e-5}`))
	if err != nil || c.NumLabels != 3 || c.Labels != nil || c.LayerNormEps != 1e-5 || c.Activation != bert.GELUTanh {
		t.Errorf("num_labels config = %+v, %v", c, err)
	}
	// id2label wins over a disagreeing num_labels, as in transformers.
	c, err = ParseConfig([]byte(`{"model_type":"bert","num_labels":5,"id2label":{"0":"a","1":"b","2":"c"}}`))
	if err != nil || c.NumLabels != 3 {
		t.Errorf("id2label vs num_labels: %+v, %v", c, err)
	}
	for _, bad := range []string{
		`{"model_type":"bert","hidden_size":"1024"}`,
		`{"model_type":"bert","id2label":{"x":"a"}}`,
		`{"model_type":"bert","id2label":{"0":"a","00":"b"}}`,
		`{"model_type":"bert","num_labels":0}`,
		`{"model_type":"bert","pad_token_id":30522}`,
		`{"model_type":"bert","hidden_act":"swish"}`,
		`{"model_type":"bert","layer_norm_eps":0}`,
	} {
		if _, err := ParseConfig([]byte(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseConfig(%s): err = %v, want ErrConfig", bad, err)
		}
	}
	if _, err := ParseConfig([]byte(`{"model_type":"distilbert"}`)); !errors.Is(err, ErrNotBERT) {
		t.Errorf("distilbert: err = %v", err)
	}
	p := fixtures.Path(t, "models", "tiny-fp32", ConfigFile)
	if c, err := ReadConfig(p); err != nil || c.HiddenSize != 64 {
		t.Errorf("ReadConfig = %+v, %v", c, err)
	}
}

func TestTokenizerPaths(t *testing.T) {
	dir := writeDir(t, WriteOptions{})
	for _, f := range []string{VocabFile, TokenizerConfigFile} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	_, info, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.VocabPath != filepath.Join(dir, VocabFile) || info.TokenizerConfigPath != filepath.Join(dir, TokenizerConfigFile) || info.TokenizerJSONPath != "" {
		t.Errorf("tokenizer paths = %q %q %q", info.VocabPath, info.TokenizerConfigPath, info.TokenizerJSONPath)
	}
}

// FuzzParseConfig: config parsing never panics and what it accepts validates.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"model_type":"bert","id2label":{"1":"POS","0":"NEG"},"pad_token_id":null}`))
	f.Add([]byte(`{"model_type":"bert","num_labels":3,"hidden_size":64,"num_attention_heads":4}`))
	f.Add([]byte(`{"model_type":"bert","hidden_act":"gelu_new","layer_norm_eps":1e-5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if !errors.Is(err, ErrConfig) && !errors.Is(err, ErrNotBERT) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted invalid config: %v", err)
		}
	})
}
