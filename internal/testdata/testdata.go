// Package testdata finds the project's shared reference data (../shared/testdata
// beside the repository) and decodes the golden files, for tests only.
package testdata

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Dir returns the shared testdata directory, failing the test loudly when it
// cannot be found: golden checks must never pass by being skipped.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("BERTQ_TESTDATA"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, "shared", "testdata")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	t.Fatalf("shared test data not found: looked for shared/testdata in every parent of %s (set BERTQ_TESTDATA to its path)", wd)
	return ""
}

// Pair is one golden pair with its exact encoding at sequence length 128.
type Pair struct {
	A             string  `json:"a"`
	B             string  `json:"b"`
	InputIDs      []int32 `json:"input_ids"`
	TokenTypeIDs  []int32 `json:"token_type_ids"`
	AttentionMask []int32 `json:"attention_mask"`
}

// Model holds one model's golden outputs.
type Model struct {
	Logits          [][]float64          `json:"logits"`
	LogitsBF16Torch [][]float64          `json:"logits_bf16_torch"`
	Probes          map[string][]float64 `json:"probes"`
	HiddenStates    [][][]float64        `json:"hidden_states_pair0"`
}

// Golden is golden-pairs.json.
type Golden struct {
	Pairs  []Pair           `json:"pairs"`
	Models map[string]Model `json:"models"`
}

var (
	once   sync.Once
	golden Golden
	gErr   error
)

// Pairs decodes golden-pairs.json (once per test binary).
func Pairs(t testing.TB) *Golden {
	t.Helper()
	dir := Dir(t)
	once.Do(func() {
		var b []byte
		if b, gErr = os.ReadFile(filepath.Join(dir, "golden-pairs.json")); gErr == nil {
			gErr = json.Unmarshal(b, &golden)
		}
	})
	if gErr != nil {
		t.Fatalf("golden-pairs.json: %v", gErr)
	}
	return &golden
}

// ModelDir is the path of a shared checkpoint ("tiny-fp32", "small-bf16").
func ModelDir(t testing.TB, name string) string {
	return filepath.Join(Dir(t), "models", name)
}

// File is the path of a file of the test data ("mrpc-sample.tsv").
func File(t testing.TB, name string) string {
	return filepath.Join(Dir(t), name)
}
