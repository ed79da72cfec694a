package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bertq/bertq/engine"
)

func init() {
	register(&command{
		name:    "bench",
		summary: "measure a compiled model's throughput against its GEMM-only roofline",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			o := benchOptions{}
			fs.StringVar(&o.model, "model", "", "compiled artifact to load (required)")
			fs.IntVar(&o.cores, "cores", runtime.NumCPU(), "runners to start, pinned to cores 0..N-1")
			fs.Float64Var(&o.seconds, "seconds", 10, "measuring time: rounds of ~1 s forward and roofline phases, interleaved, until it is up (each runner finishes at least one batch per phase)")
			fs.BoolVar(&o.json, "json", false, "end the output with one line of JSON")
			fs.StringVar(&o.device, "device", "auto", "engine backend: auto, onednn, go, ...")
			return func(ctx context.Context, e *env) error {
				if o.model == "" || len(e.args) != 0 || o.cores < 1 || !(o.seconds > 0) {
					return errUsage
				}
				return bench(ctx, e, o)
			}
		},
	})
}

type benchOptions struct {
	model, device string
	cores         int
	seconds       float64
	json          bool
}

// gemmRunner is what a backend's runner offers when it can execute only the
// matrix multiplications of one forward (engine/onednn's Roofliner).
type gemmRunner interface {
	RunGEMMs(postOps bool) error
}

// nonGEMMRunner runs everything of a forward but its GEMMs (engine/onednn).
type nonGEMMRunner interface {
	RunNonGEMM(in engine.Input, logits []float32) error
}

// benchResult is the --json line.
type benchResult struct {
	Backend       string    `json:"backend"`
	Engine        string    `json:"engine,omitempty"`
	Precision     string    `json:"precision"`
	Batch         int       `json:"batch"`
	Seq           int       `json:"seq"`
	Cores         int       `json:"cores"`
	Rounds        int       `json:"rounds"`
	GFLOPPerSeq   float64   `json:"gflop_per_seq"`
	Batches       int       `json:"batches"`
	SeqPerS       float64   `json:"seq_per_s"`
	GFLOPs        float64   `json:"gflops"`
	MsPerBatch    float64   `json:"ms_per_batch"`
	RooflineSeqS  *float64  `json:"roofline_seq_per_s"`
	RooflineGF    *float64  `json:"roofline_gflops"`
	RooflineRatio *float64  `json:"roofline_ratio"`
	BareGF        *float64  `json:"roofline_bare_gflops,omitempty"`
	BareRatio     *float64  `json:"roofline_bare_ratio,omitempty"`
	RoundRatios   []float64 `json:"roofline_ratio_rounds,omitempty"`
	MedianRatio   *float64  `json:"roofline_ratio_median,omitempty"`
	RooflineMs    *float64  `json:"roofline_ms_per_batch,omitempty"`
	NonGEMMMs     *float64  `json:"non_gemm_ms_per_batch,omitempty"`
	DerivedRatio  *float64  `json:"roofline_ratio_derived,omitempty"`
	RSSBytes      int64     `json:"rss_bytes"`
	PeakRSSBytes  int64     `json:"peak_rss_bytes"`
	ArtifactBytes int64     `json:"artifact_bytes"`
}

// phase kinds
const (
	phaseForward = iota
	phaseRoofline
	phaseBare
	phaseNonGEMM
	numPhases
)

// tally accumulates one runner's batches and busy time in one kind of phase.
type tally struct {
	n    int
	busy time.Duration
}

func bench(ctx context.Context, e *env, o benchOptions) error {
	warnUnavailable(e.stderr)
	m, f, err := loadModel(o.model, o.device)
	if err != nil {
		return err
	}
	defer f.Close()
	defer m.Close()
	if f.Header.Synthetic {
		fmt.Fprintln(e.stderr, syntheticWarning)
	}
	s, cfg := m.Spec(), f.Header.Model
	res := benchResult{
		Backend: m.Backend(), Precision: string(s.Precision), Batch: s.Batch, Seq: s.Seq, Cores: o.cores,
		GFLOPPerSeq: cfg.FLOPs(s.Seq) / 1e9, ArtifactBytes: f.Size(),
	}
	if d, ok := m.(interface{ Describe() string }); ok {
		res.Engine = d.Describe()
	}
	runners := make([]engine.Runner, o.cores)
	for i := range runners {
		if runners[i], err = m.NewRunner(i); err != nil {
			return fmt.Errorf("runner on core %d: %w", i, err)
		}
		defer runners[i].Close()
	}
	rng := rand.New(rand.NewSource(1))
	inputs := make([]engine.Input, len(runners))
	for i := range inputs {
		inputs[i] = benchInput(rng, cfg.VocabSize, cfg.TypeVocabSize, s.Batch, s.Seq)
	}

	// Warm up every path once (first calls create primitives and touch pages).
	_, roof := runners[0].(gemmRunner)
	_, non := runners[0].(nonGEMMRunner)
	non = non && roof
	bare := roof
	if err := forAll(runners, func(i int, r engine.Runner) error {
		if err := r.Run(inputs[i], make([]float32, s.Batch*s.Labels)); err != nil {
			return err
		}
		if roof {
			return r.(gemmRunner).RunGEMMs(true)
		}
		return nil
	}); err != nil {
		return err
	}
	if bare {
		if err := forAll(runners, func(_ int, r engine.Runner) error { return r.(gemmRunner).RunGEMMs(false) }); err != nil {
			fmt.Fprintf(e.stderr, "bertq bench: no bare-GEMM roofline: %v\n", err)
			bare = false
		}
	}

	// Interleave short forward and roofline phases, alternating their order,
	// until the time is up, so that the machine's mood swings hit both alike.
	// A phase lasts about a second (at least one batch per runner).
	phaseLen := min(o.seconds/2.5, 1.0)
	share := [numPhases]float64{1, 0, 0, 0}
	if roof {
		share[phaseRoofline] = 1
	}
	if bare {
		share[phaseBare] = 0.5
	}
	if non {
		share[phaseNonGEMM] = 0.25
	}
	var rounds [][][numPhases]tally // [round][runner][phase]
	begin := time.Now()
	for round := 0; round == 0 || time.Since(begin).Seconds() < o.seconds; round++ {
		tallies := make([][numPhases]tally, len(runners))
		order := []int{phaseForward, phaseRoofline, phaseBare, phaseNonGEMM}
		if round%2 == 1 {
			order = []int{phaseRoofline, phaseForward, phaseNonGEMM, phaseBare}
		}
		for _, ph := range order {
			if share[ph] == 0 {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			deadline := time.Now().Add(time.Duration(phaseLen * share[ph] * float64(time.Second)))
			err := forAll(runners, func(i int, r engine.Runner) error {
				logits := make([]float32, s.Batch*s.Labels)
				for {
					start := time.Now()
					var err error
					switch ph {
					case phaseForward:
						err = r.Run(inputs[i], logits)
					case phaseRoofline:
						err = r.(gemmRunner).RunGEMMs(true)
					case phaseBare:
						err = r.(gemmRunner).RunGEMMs(false)
					default:
						err = r.(nonGEMMRunner).RunNonGEMM(inputs[i], logits)
					}
					if err != nil {
						return err
					}
					t := &tallies[i][ph]
					t.n++
					t.busy += time.Since(start)
					if !time.Now().Before(deadline) || ctx.Err() != nil {
						return nil
					}
				}
			})
			if err != nil {
				return err
			}
		}
		rounds = append(rounds, tallies)
	}
	res.Rounds = len(rounds)

	// Throughput is the sum of the runners' own rates (batches over the time
	// they spent in them).
	rate := func(rs [][][numPhases]tally, ph int) (seqPerS, msPerBatch float64, batches int) {
		for i := range runners {
			var tt tally
			for _, r := range rs {
				tt.n += r[i][ph].n
				tt.busy += r[i][ph].busy
			}
			if tt.n == 0 {
				continue
			}
			seqPerS += float64(tt.n*s.Batch) / tt.busy.Seconds()
			msPerBatch += tt.busy.Seconds() * 1000 / float64(tt.n) / float64(len(runners))
			batches += tt.n
		}
		return
	}
	res.SeqPerS, res.MsPerBatch, res.Batches = rate(rounds, phaseForward)
	res.GFLOPs = res.SeqPerS * res.GFLOPPerSeq
	if roof {
		sps, _, _ := rate(rounds, phaseRoofline)
		gf, ratio := sps*res.GFLOPPerSeq, res.SeqPerS/sps
		res.RooflineSeqS, res.RooflineGF, res.RooflineRatio = &sps, &gf, &ratio
		for i := range rounds {
			f, _, _ := rate(rounds[i:i+1], phaseForward)
			g, _, _ := rate(rounds[i:i+1], phaseRoofline)
			res.RoundRatios = append(res.RoundRatios, f/g)
		}
		med := median(res.RoundRatios)
		res.MedianRatio = &med
	}
	if non {
		_, roofMs, _ := rate(rounds, phaseRoofline)
		_, nonMs, _ := rate(rounds, phaseNonGEMM)
		derived := roofMs / (roofMs + nonMs)
		res.NonGEMMMs, res.RooflineMs, res.DerivedRatio = &nonMs, &roofMs, &derived
	}
	if bare {
		sps, _, _ := rate(rounds, phaseBare)
		gf, ratio := sps*res.GFLOPPerSeq, res.SeqPerS/sps
		res.BareGF, res.BareRatio = &gf, &ratio
	}
	res.RSSBytes, res.PeakRSSBytes = procMemory()

	w := e.stdout
	fmt.Fprintf(w, "model     %s: %.1f MB, %s, batch %d × seq %d, %.1f GFLOP/seq\n",
		o.model, float64(res.ArtifactBytes)/1e6, res.Precision, res.Batch, res.Seq, res.GFLOPPerSeq)
	fmt.Fprintf(w, "backend   %s", res.Backend)
	if res.Engine != "" {
		fmt.Fprintf(w, ": %s", res.Engine)
	}
	fmt.Fprintf(w, "\nrunners   %d (cores 0..%d), %d round(s) of interleaved phases\n", o.cores, o.cores-1, res.Rounds)
	fmt.Fprintf(w, "forward   %8.2f seq/s  %8.1f GFLOP/s  %8.1f ms/batch per runner  (%d batches)\n",
		res.SeqPerS, res.GFLOPs, res.MsPerBatch, res.Batches)
	if roof {
		fmt.Fprintf(w, "roofline  %8.2f seq/s  %8.1f GFLOP/s  (the forward's GEMMs alone, with their fused post-ops)\n",
			*res.RooflineSeqS, *res.RooflineGF)
	} else {
		fmt.Fprintf(w, "roofline  n/a (backend %s cannot run its GEMMs alone)\n", res.Backend)
	}
	if bare {
		fmt.Fprintf(w, "bare GEMM           %8.1f GFLOP/s  (no bias, activation or residual post-ops)\n", *res.BareGF)
	}
	if roof {
		fmt.Fprintf(w, "forward / roofline  %.3f (median of %d rounds %.3f)", *res.RooflineRatio, res.Rounds, *res.MedianRatio)
		if bare {
			fmt.Fprintf(w, "   (forward / bare GEMMs %.3f)", *res.BareRatio)
		}
		fmt.Fprintln(w)
	}
	if non {
		fmt.Fprintf(w, "non-GEMM  %8.1f ms/batch alone vs %.1f ms/batch of GEMMs: forward / roofline ≈ %.3f without noise\n",
			*res.NonGEMMMs, *res.RooflineMs, *res.DerivedRatio)
	}
	if res.RSSBytes > 0 {
		fmt.Fprintf(w, "memory    resident %.1f MB (%.2f× the artifact), peak %.1f MB\n",
			float64(res.RSSBytes)/1e6, float64(res.RSSBytes)/float64(res.ArtifactBytes), float64(res.PeakRSSBytes)/1e6)
	}
	if o.json {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, string(b))
	}
	return nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// forAll runs fn for every runner concurrently and returns the first error.
func forAll(rs []engine.Runner, fn func(int, engine.Runner) error) error {
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i, r)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// benchInput is a valid random batch: sequences of half to full length, two
// segments each, padding at the end.
func benchInput(rng *rand.Rand, vocab, typeVocab, batch, seq int) engine.Input {
	n := batch * seq
	in := engine.Input{InputIDs: make([]int32, n), TokenTypeIDs: make([]int32, n), AttentionMask: make([]int32, n)}
	for b := 0; b < batch; b++ {
		length := seq/2 + rng.Intn(seq-seq/2+1)
		for i := 0; i < length; i++ {
			t := b*seq + i
			in.InputIDs[t] = int32(rng.Intn(vocab))
			if i >= length/2 && typeVocab > 1 {
				in.TokenTypeIDs[t] = 1
			}
			in.AttentionMask[t] = 1
		}
	}
	return in
}

// procMemory returns the current and peak resident set size (Linux; zeros
// elsewhere).
func procMemory() (rss, peak int64) {
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb * 1024
		case "VmHWM":
			peak = kb * 1024
		}
	}
	return rss, peak
}
