package cuda

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
)

// BenchmarkForward runs BERT-Large shapes (random bf16 weights: speed does not
// depend on their values) at seq 128 and the batch in BERTQ_BENCH_BATCH
// (default 4), replaying the captured graph, and reports sequences per second
// and TFLOP/s (bert.Config.FLOPs). BERTQ_BENCH_PRECISION=fp32 measures fp32;
// BERTQ_BENCH_LAYERS shortens the model for quick checks.
func BenchmarkForward(b *testing.B) {
	requireGPU(b)
	batch := 4
	if v, err := strconv.Atoi(os.Getenv("BERTQ_BENCH_BATCH")); err == nil && v > 0 {
		batch = v
	}
	prec := artifact.BF16
	if os.Getenv("BERTQ_BENCH_PRECISION") == "fp32" {
		prec = artifact.FP32
	}
	const seq = 128
	cfg := bert.Large()
	if v, err := strconv.Atoi(os.Getenv("BERTQ_BENCH_LAYERS")); err == nil && v > 0 {
		cfg.NumLayers = v
	}
	tm := testModel{cfg: cfg, batch: batch, seq: seq, prec: prec}
	start := time.Now()
	path := writeRandomArtifact(b, b.TempDir(), tm, 1)
	b.Logf("wrote a random BERT-Large artifact (batch %d, %s) in %v", batch, prec, time.Since(start).Round(time.Millisecond))
	m := loadWith(b, path, settingsFromEnv())
	b.Logf("%s", m)
	r, err := m.NewRunner(0)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	s := m.Spec()
	in := randomInput(s, cfg.VocabSize, 1, false)
	logits := make([]float32, s.Batch*s.Labels)
	for range 3 { // the first run captures the graph
		if err := r.Run(in, logits); err != nil {
			b.Fatal(err)
		}
	}
	// b.Loop runs this function once, so the setup above is not repeated.
	for b.Loop() {
		if err := r.Run(in, logits); err != nil {
			b.Fatal(err)
		}
	}
	el := b.Elapsed().Seconds()
	seqs := float64(b.N * batch)
	b.ReportMetric(seqs/el, "seq/s")
	b.ReportMetric(cfg.FLOPs(seq)*seqs/el/1e12, "TFLOP/s")
	b.ReportMetric(el/float64(b.N)*1e3, "ms/batch")
}
