package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
)

// benchSetup is what a run measured, for the report.
type benchSetup struct {
	m       engine.Model
	f       *artifact.File
	o       benchOptions
	cores   []int
	traffic string
	batches []benchBatch
}

// benchResult is the --json line. Rates are sums over runners of each
// runner's own rate (its work over the time it spent on it).
type benchResult struct {
	Backend       string  `json:"backend"`
	Engine        string  `json:"engine,omitempty"`
	Precision     string  `json:"precision"`
	ArtifactBatch int     `json:"artifact_batch"`
	Seq           int     `json:"seq"`
	Pad           string  `json:"pad"`
	Batch         int     `json:"batch"`
	MaxTokens     int     `json:"max_tokens"`
	Traffic       string  `json:"traffic"`
	Parallel      int     `json:"parallel"`
	CPUs          []int   `json:"cpus"`
	Rounds        int     `json:"rounds"`
	Batches       int     `json:"batches"`
	SeqsPerBatch  float64 `json:"seqs_per_batch"`
	TokensPerSeq  float64 `json:"tokens_per_seq"`
	PaddingShare  float64 `json:"padding_share"` // rows computed that are padding
	SeqPerS       float64 `json:"seq_per_s"`     // real pairs per second
	TokensPerS    float64 `json:"tokens_per_s"`  // real tokens per second
	UsefulGFLOPs  float64 `json:"useful_gflops"` // FLOPs of the real tokens only
	MsPerBatch    float64 `json:"ms_per_batch"`

	GEMMGFLOPs      *float64  `json:"gemm_gflops,omitempty"`      // encoder GEMMs with fused post-ops, alone
	BareGEMMGFLOPs  *float64  `json:"bare_gemm_gflops,omitempty"` // without bias or post-ops
	GEMMShare       *float64  `json:"gemm_share,omitempty"`       // GEMM time / forward time, whole run
	GEMMShareRounds []float64 `json:"gemm_share_rounds,omitempty"`
	GEMMShareMedian *float64  `json:"gemm_share_median,omitempty"`
	GEMMMs          *float64  `json:"gemm_ms_per_batch,omitempty"`
	NonGEMMMs       *float64  `json:"non_gemm_ms_per_batch,omitempty"`
	GEMMShareParts  *float64  `json:"gemm_share_derived,omitempty"` // gemm / (gemm + non-GEMM)

	ISA             string    `json:"isa,omitempty"`
	ISAPeakGFLOPs   *float64  `json:"isa_peak_gflops,omitempty"` // all runners' cores together
	PeakRatio       *float64  `json:"peak_ratio,omitempty"`      // GEMM GFLOP/s / ISA peak
	PeakRatioRounds []float64 `json:"peak_ratio_rounds,omitempty"`
	PeakRatioMedian *float64  `json:"peak_ratio_median,omitempty"`

	RSSBytes      int64 `json:"rss_bytes"`
	PeakRSSBytes  int64 `json:"peak_rss_bytes"`
	ArtifactBytes int64 `json:"artifact_bytes"`
}

// rates sums the runners' own rates in one phase over some rounds.
type rates struct {
	batches      int
	seqs, tokens float64 // per second
	useful, gemm float64 // FLOP/s
	msPerBatch   float64
}

func rateOf(rs []round, ph int) rates {
	var out rates
	if len(rs) == 0 {
		return out
	}
	for i := range rs[0].t {
		var t tally
		for _, r := range rs {
			x := r.t[i][ph]
			t.batches += x.batches
			t.seqs += x.seqs
			t.tokens += x.tokens
			t.useful += x.useful
			t.gemm += x.gemm
			t.busy += x.busy
		}
		if t.batches == 0 {
			continue
		}
		sec := t.busy.Seconds()
		out.batches += t.batches
		out.seqs += float64(t.seqs) / sec
		out.tokens += float64(t.tokens) / sec
		out.useful += t.useful / sec
		out.gemm += t.gemm / sec
		out.msPerBatch += sec * 1000 / float64(t.batches) / float64(len(rs[0].t))
	}
	return out
}

func ptr(v float64) *float64 { return &v }

func aggregate(rounds []round, s benchSetup) benchResult {
	spec := s.m.Spec()
	res := benchResult{
		Backend: s.m.Backend(), Precision: string(spec.Precision), ArtifactBatch: spec.Batch, Seq: spec.Seq,
		Pad: s.o.pad, Batch: s.o.limits.Seqs, MaxTokens: s.o.limits.Tokens, Traffic: s.traffic,
		Parallel: len(s.cores), CPUs: s.cores, Rounds: len(rounds), ArtifactBytes: s.f.Size(),
	}
	if d, ok := s.m.(interface{ Describe() string }); ok {
		res.Engine = d.Describe()
	}
	var seqs, tokens, rows int
	for _, b := range s.batches {
		seqs, tokens, rows = seqs+b.seqs, tokens+b.tokens, rows+b.rows
	}
	res.SeqsPerBatch = float64(seqs) / float64(len(s.batches))
	res.TokensPerSeq = float64(tokens) / float64(seqs)
	res.PaddingShare = 1 - float64(tokens)/float64(rows)
	fw := rateOf(rounds, phaseForward)
	res.Batches, res.SeqPerS, res.TokensPerS = fw.batches, fw.seqs, fw.tokens
	res.UsefulGFLOPs, res.MsPerBatch = fw.useful/1e9, fw.msPerBatch
	aggregateGEMMs(&res, rounds, fw)
	aggregatePeak(&res, rounds)
	res.RSSBytes, res.PeakRSSBytes = procMemory()
	return res
}

// aggregateGEMMs fills the GEMM rates and their share of the forward.
func aggregateGEMMs(res *benchResult, rounds []round, fw rates) {
	g := rateOf(rounds, phaseGEMMs)
	if g.batches == 0 {
		return
	}
	res.GEMMGFLOPs = ptr(g.gemm / 1e9)
	res.GEMMShare = ptr(fw.seqs / g.seqs)
	for i := range rounds {
		f, gg := rateOf(rounds[i:i+1], phaseForward), rateOf(rounds[i:i+1], phaseGEMMs)
		res.GEMMShareRounds = append(res.GEMMShareRounds, f.seqs/gg.seqs)
	}
	res.GEMMShareMedian = ptr(median(res.GEMMShareRounds))
	if b := rateOf(rounds, phaseBare); b.batches > 0 {
		res.BareGEMMGFLOPs = ptr(b.gemm / 1e9)
	}
	// Per sequence, not per batch: phases may have run different batches.
	if n := rateOf(rounds, phaseNonGEMM); n.batches > 0 {
		gs, ns := 1/g.seqs, 1/n.seqs
		res.GEMMMs, res.NonGEMMMs = ptr(gs*res.SeqsPerBatch*1000*float64(res.Parallel)), ptr(ns*res.SeqsPerBatch*1000*float64(res.Parallel))
		res.GEMMShareParts = ptr(gs / (gs + ns))
	}
}

// aggregatePeak fills the ISA peak and the GEMMs' distance from it.
func aggregatePeak(res *benchResult, rounds []round) {
	if res.GEMMGFLOPs == nil || len(rounds) == 0 || rounds[0].peak == nil {
		return
	}
	var sum float64
	n := 0
	for i, r := range rounds {
		if r.peak == nil {
			continue
		}
		p := 0.0
		for _, v := range r.peak {
			p += v
		}
		sum, n = sum+p, n+1
		g := rateOf(rounds[i:i+1], phaseGEMMs).gemm / 1e9
		res.PeakRatioRounds = append(res.PeakRatioRounds, g/p)
	}
	res.ISA = rounds[0].isa
	res.ISAPeakGFLOPs = ptr(sum / float64(n))
	res.PeakRatio = ptr(*res.GEMMGFLOPs / *res.ISAPeakGFLOPs)
	res.PeakRatioMedian = ptr(median(res.PeakRatioRounds))
}

func report(e *env, o benchOptions, res benchResult) error {
	w := e.stdout
	fmt.Fprintf(w, "model     %s: %.1f MB, %s, compiled batch %d × seq %d\n",
		o.run.artifact, float64(res.ArtifactBytes)/1e6, res.Precision, res.ArtifactBatch, res.Seq)
	fmt.Fprintf(w, "backend   %s", res.Backend)
	if res.Engine != "" {
		fmt.Fprintf(w, ": %s", res.Engine)
	}
	fmt.Fprintf(w, "\ntraffic   %s; pad %s, batches of ≤ %d sequences / ≤ %d tokens: %.2f sequences of %.1f tokens, %.0f%% of rows padding\n",
		res.Traffic, res.Pad, res.Batch, res.MaxTokens, res.SeqsPerBatch, res.TokensPerSeq, 100*res.PaddingShare)
	fmt.Fprintf(w, "runners   %d on CPUs %v, %d round(s) of interleaved phases\n", res.Parallel, res.CPUs, res.Rounds)
	fmt.Fprintf(w, "forward   %8.2f seq/s  %9.0f tokens/s  %8.1f useful GFLOP/s  %8.1f ms/batch per runner  (%d batches)\n",
		res.SeqPerS, res.TokensPerS, res.UsefulGFLOPs, res.MsPerBatch, res.Batches)
	if res.GEMMGFLOPs == nil {
		fmt.Fprintf(w, "GEMMs     n/a (backend %s cannot run its GEMMs alone)\n", res.Backend)
	} else {
		fmt.Fprintf(w, "GEMMs     %8.1f GFLOP/s with their post-ops", *res.GEMMGFLOPs)
		if res.BareGEMMGFLOPs != nil {
			fmt.Fprintf(w, ", %.1f bare", *res.BareGEMMGFLOPs)
		}
		fmt.Fprintf(w, "\ngemm share %.3f of the forward's time (median of %d rounds %.3f)", *res.GEMMShare, res.Rounds, *res.GEMMShareMedian)
		if res.GEMMShareParts != nil {
			fmt.Fprintf(w, "; from the parts alone %.3f (GEMMs %.1f ms, the rest %.1f ms per batch)", *res.GEMMShareParts, *res.GEMMMs, *res.NonGEMMMs)
		}
		fmt.Fprintln(w)
	}
	if res.PeakRatio != nil {
		fmt.Fprintf(w, "ISA peak  %8.1f GFLOP/s (%s, register-only loop on each runner's CPU): GEMMs at %.2f of it (median of rounds %.2f)\n",
			*res.ISAPeakGFLOPs, res.ISA, *res.PeakRatio, *res.PeakRatioMedian)
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
