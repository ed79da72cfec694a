package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/internal/fixtures"
)

// benchArtifact compiles the tiny test checkpoint at batch 4 × seq 32.
func benchArtifact(t *testing.T, precision string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny-"+precision+".bqa")
	code, out, errs := runCmd(context.Background(), "compile", "--input", fixtures.ModelDir(t, "tiny-fp32"), "--output", path,
		"--precision", precision, "--batch", "4", "--seq", "32", "--no-verify")
	if code != 0 {
		t.Fatalf("compile: exit %d\n%s%s", code, out, errs)
	}
	return path
}

// runBench runs bench with args and returns the decoded --json line and the
// whole output.
func runBench(t *testing.T, args ...string) (map[string]any, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"bench", "--seconds", "0.3", "--json"}, args...), &env{stdout: &out, stderr: &errb})
	if code != 0 {
		t.Fatalf("bench %v: exit %d: %s", args, code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
	}
	return res, out.String()
}

func positive(t *testing.T, res map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, ok := res[k].(float64); !ok || !(v > 0) {
			t.Errorf("%s = %v, want a positive number", k, res[k])
		}
	}
}

func TestBenchJSON(t *testing.T) {
	if _, err := engine.Get("onednn"); err != nil {
		t.Fatalf("the oneDNN engine is required for this test: %v", err)
	}
	for _, prec := range []string{"fp32", "bf16", "int8"} {
		t.Run(prec, func(t *testing.T) {
			res, out := runBench(t, "--artifact", benchArtifact(t, prec), "--parallel", "1", "--device", "onednn")
			positive(t, res, "seq_per_s", "tokens_per_s", "useful_gflops", "ms_per_batch", "gemm_gflops", "bare_gemm_gflops",
				"gemm_share", "gemm_share_median", "isa_peak_gflops", "peak_ratio", "rss_bytes", "artifact_bytes")
			if res["parallel"] != 1.0 || res["precision"] != prec || res["backend"] != "onednn" ||
				res["artifact_batch"] != 4.0 || res["seq"] != 32.0 || res["pad"] != "none" || res["padding_share"] != 0.0 {
				t.Errorf("unexpected result fields: %v", res)
			}
			if isa, _ := res["isa"].(string); isa == "" {
				t.Errorf("no ISA named: %v", res)
			}
			for _, line := range []string{"gemm share", "ISA peak", "useful GFLOP/s"} {
				if !strings.Contains(out, line) {
					t.Errorf("no %q line in:\n%s", line, out)
				}
			}
		})
	}
}

// Real traffic: a lengths file and a TSV, packed or padded to the static
// shape; packed batches carry no padding, static ones do, and sequences per
// second count real pairs only.
func TestBenchTraffic(t *testing.T) {
	art := benchArtifact(t, "fp32")
	lengths := filepath.Join(t.TempDir(), "lengths.json")
	if err := os.WriteFile(lengths, []byte(`{"a_tokens":[3,9,1,12,5],"b_tokens":[4,2,7,0,6]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, traffic := range []string{lengths, fixtures.Path(t, "mrpc-sample.tsv")} {
		packed, _ := runBench(t, "--artifact", art, "--parallel", "1", "--lengths", traffic)
		static, _ := runBench(t, "--artifact", art, "--parallel", "1", "--lengths", traffic, "--pad", "static", "--batch", "2")
		small, _ := runBench(t, "--artifact", art, "--parallel", "1", "--lengths", traffic, "--max-tokens", "32")
		if packed["padding_share"] != 0.0 || !(static["padding_share"].(float64) > 0.3) {
			t.Errorf("padding: packed %v, static %v", packed["padding_share"], static["padding_share"])
		}
		if packed["seqs_per_batch"].(float64) <= static["seqs_per_batch"].(float64) || static["seqs_per_batch"].(float64) > 2 {
			t.Errorf("sequences per batch: packed %v, static (--batch 2) %v", packed["seqs_per_batch"], static["seqs_per_batch"])
		}
		if spb := small["seqs_per_batch"].(float64); !(spb < packed["seqs_per_batch"].(float64)) {
			t.Errorf("--max-tokens 32 did not make batches smaller: %v", spb)
		}
		if packed["tokens_per_seq"] != static["tokens_per_seq"] {
			t.Errorf("real tokens per sequence differ: packed %v, static %v", packed["tokens_per_seq"], static["tokens_per_seq"])
		}
	}
}

// A backend without partial phases still benchmarks; the GEMM fields are null.
func TestBenchWithoutPhases(t *testing.T) {
	res, _ := runBench(t, "--artifact", benchArtifact(t, "fp32"), "--parallel", "1", "--device", "go")
	if v, ok := res["seq_per_s"].(float64); !ok || !(v > 0) || res["gemm_gflops"] != nil || res["peak_ratio"] != nil || res["backend"] != "go" {
		t.Fatalf("unexpected result: %v", res)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench"}, {"bench", "--artifact", "x", "--parallel", "-1"}, {"bench", "--artifact", "x", "extra"},
		{"bench", "--artifact", "x", "--pad", "sometimes"}, {"bench", "--artifact", "x", "--seconds", "0"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &env{stdout: &out, stderr: &errb}); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	art := benchArtifact(t, "fp32")
	for _, args := range [][]string{
		{"bench", "--artifact", filepath.Join(t.TempDir(), "missing.bqa")},
		{"bench", "--artifact", art, "--batch", "9"},
		{"bench", "--artifact", art, "--lengths", filepath.Join(t.TempDir(), "missing.json")},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &env{stdout: &out, stderr: &errb}); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
	}
}
