package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
)

// benchTestArtifact writes a tiny random-weight artifact in the compiled layout.
func benchTestArtifact(t *testing.T, prec artifact.Precision) string {
	t.Helper()
	c := bert.Config{VocabSize: 50, HiddenSize: 32, NumLayers: 2, NumHeads: 2, IntermediateSize: 64,
		MaxPositions: 16, TypeVocabSize: 2, NumLabels: 2, Activation: bert.GELUExact, LayerNormEps: 1e-12}
	path := filepath.Join(t.TempDir(), "tiny.bqa")
	w, err := artifact.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.2)
		}
		return v
	}
	mat := func(name string, k, n int) {
		if prec == artifact.BF16 {
			w.BF16(name, []int{k, n}, vec(k*n))
		} else {
			w.F32(name, []int{k, n}, vec(k*n))
		}
	}
	H, I := c.HiddenSize, c.IntermediateSize
	w.F32(artifact.WordEmbeddings, []int{c.VocabSize, H}, vec(c.VocabSize*H))
	w.F32(artifact.PositionEmbeddings, []int{c.MaxPositions, H}, vec(c.MaxPositions*H))
	w.F32(artifact.TokenTypeEmbeddings, []int{c.TypeVocabSize, H}, vec(c.TypeVocabSize*H))
	w.F32(artifact.EmbNormGamma, []int{H}, vec(H))
	w.F32(artifact.EmbNormBeta, []int{H}, vec(H))
	for l := 0; l < c.NumLayers; l++ {
		n := func(p string) string { return artifact.LayerTensor(l, p) }
		mat(n(artifact.QKVWeight), H, 3*H)
		w.F32(n(artifact.QKVBias), []int{3 * H}, vec(3*H))
		mat(n(artifact.AttnOutWeight), H, H)
		w.F32(n(artifact.AttnOutBias), []int{H}, vec(H))
		w.F32(n(artifact.AttnNormGamma), []int{H}, vec(H))
		w.F32(n(artifact.AttnNormBeta), []int{H}, vec(H))
		mat(n(artifact.FFNInWeight), H, I)
		w.F32(n(artifact.FFNInBias), []int{I}, vec(I))
		mat(n(artifact.FFNOutWeight), I, H)
		w.F32(n(artifact.FFNOutBias), []int{H}, vec(H))
		w.F32(n(artifact.FFNNormGamma), []int{H}, vec(H))
		w.F32(n(artifact.FFNNormBeta), []int{H}, vec(H))
	}
	w.F32(artifact.PoolerWeight, []int{H, H}, vec(H*H))
	w.F32(artifact.PoolerBias, []int{H}, vec(H))
	w.F32(artifact.ClassifierWeight, []int{H, c.NumLabels}, vec(H*c.NumLabels))
	w.F32(artifact.ClassifierBias, []int{c.NumLabels}, vec(c.NumLabels))
	if err := w.Close(artifact.Header{Model: c, Batch: 2, Seq: 8, Precision: prec, Activation: c.Activation,
		Synthetic: true, Compiler: "bench test"}); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBenchJSON(t *testing.T) {
	if _, err := engine.Get("onednn"); err != nil {
		t.Skipf("no oneDNN backend here: %v", err)
	}
	for _, prec := range []artifact.Precision{artifact.BF16, artifact.FP32} {
		t.Run(string(prec), func(t *testing.T) {
			path := benchTestArtifact(t, prec)
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"bench", "--model", path, "--cores", "1", "--seconds", "0.3",
				"--json", "--device", "onednn"}, &env{stdout: &out, stderr: &errb})
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			var res map[string]any
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
				t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
			}
			for _, k := range []string{"seq_per_s", "gflops", "roofline_gflops", "roofline_ratio", "ms_per_batch",
				"rss_bytes", "artifact_bytes"} {
				if v, ok := res[k].(float64); !ok || !(v > 0) {
					t.Errorf("%s = %v, want a positive number", k, res[k])
				}
			}
			if res["cores"] != 1.0 || res["precision"] != string(prec) || res["backend"] != "onednn" ||
				res["batch"] != 2.0 || res["seq"] != 8.0 {
				t.Errorf("unexpected result fields: %v", res)
			}
			if !strings.Contains(out.String(), "forward / roofline") {
				t.Errorf("no ratio line in:\n%s", out.String())
			}
		})
	}
}

// A backend without a GEMM-only mode still benchmarks; the roofline is null.
func TestBenchWithoutRoofline(t *testing.T) {
	if _, err := engine.Get("go"); err != nil {
		t.Skipf("no plain-Go backend: %v", err)
	}
	path := benchTestArtifact(t, artifact.FP32)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"bench", "--model", path, "--cores", "1", "--seconds", "0.2",
		"--json", "--device", "go"}, &env{stdout: &out, stderr: &errb})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatal(err)
	}
	if v, ok := res["seq_per_s"].(float64); !ok || !(v > 0) || res["roofline_gflops"] != nil || res["backend"] != "go" {
		t.Fatalf("unexpected result: %v", res)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{{"bench"}, {"bench", "--model", "x", "--cores", "0"}, {"bench", "--model", "x", "extra"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &env{stdout: &out, stderr: &errb}); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"bench", "--model", filepath.Join(t.TempDir(), "missing.bqa")},
		&env{stdout: &out, stderr: &errb}); code != 1 {
		t.Errorf("missing artifact: exit %d, want 1", code)
	}
}
