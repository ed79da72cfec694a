package producer

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Latency is in milliseconds, over answered requests (nearest-rank
// percentiles).
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// Summary is the outcome of a run or a collection. Sent = Answered + Errors +
// Lost: each request ends exactly one way, by its first reply or the timeout.
type Summary struct {
	RunID    string `json:"run_id"`
	Model    string `json:"model,omitempty"`
	Mode     string `json:"mode"` // request, direct or collect
	Encoding string `json:"encoding,omitempty"`
	Clients  int    `json:"clients,omitempty"`
	Cycle    int    `json:"cycle,omitempty"`

	Sent     int `json:"sent"`
	Answered int `json:"answered"`
	// Errors counts error replies and failed sends, by code in ErrorCodes.
	Errors     int            `json:"errors"`
	ErrorCodes map[string]int `json:"error_codes"`
	// Lost requests got no reply before the timeout.
	Lost int `json:"lost"`
	// Late replies arrived for lost requests (not counted as answered).
	Late int `json:"late"`
	// Duplicates are further replies for an id already answered.
	Duplicates int `json:"duplicates"`
	// Resends counts requests sent again (same id) under WithRetry.
	Resends int `json:"resends,omitempty"`
	// Unmatched replies named no request of this run.
	Unmatched int `json:"unmatched"`

	// WallS is the run's duration; for a collected backlog, the span of its
	// answers (scaled by n/(n-1) intervals), not the time spent waiting.
	WallS          float64 `json:"wall_s"`
	ThroughputPerS float64 `json:"throughput_per_s"` // answered / wall time
	LatencyMS      Latency `json:"latency_ms"`

	// Accuracy is Correct / Answered against the MRPC labels; null when
	// nothing was answered. Meaningless when Synthetic.
	Correct   int      `json:"correct"`
	Accuracy  *float64 `json:"accuracy"`
	Synthetic bool     `json:"synthetic"`
	// BatchSizes counts answered requests by the batch_size of their reply.
	BatchSizes map[int]int    `json:"batch_sizes"`
	Workers    map[string]int `json:"workers,omitempty"`

	// For the report: when the run began (for a collection, the first
	// answer), and each answer.
	start   time.Time
	samples []sample
}

// percentile is the nearest-rank p-th percentile of ascending sorted values.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(n))) - 1
	return sorted[max(0, min(i, n-1))]
}

func latencyOf(ms []float64) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return Latency{
		Mean: sum / float64(len(s)),
		P50:  percentile(s, 50), P90: percentile(s, 90), P95: percentile(s, 95), P99: percentile(s, 99),
		Max: s[len(s)-1],
	}
}

// Format writes the human-readable summary.
func (s *Summary) Format(w io.Writer) {
	what := ""
	switch s.Mode {
	case "collect":
		what = "collected backlog"
	case "direct":
		what = fmt.Sprintf("%d clients × %d requests, JetStream direct", s.Clients, s.Cycle)
	default:
		what = fmt.Sprintf("%d clients × %d requests, via the intake", s.Clients, s.Cycle)
	}
	model := s.Model
	if model == "" {
		model = "?"
	}
	fmt.Fprintf(w, "run %s, model %s: %s", s.RunID, model, what)
	if s.Encoding != "" {
		fmt.Fprintf(w, ", %s", s.Encoding)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  sent %d  answered %d  errors %d  lost %d  late %d  duplicates %d", s.Sent, s.Answered, s.Errors, s.Lost, s.Late, s.Duplicates)
	if s.Resends > 0 {
		fmt.Fprintf(w, "  re-sent %d", s.Resends)
	}
	if s.Unmatched > 0 {
		fmt.Fprintf(w, "  unmatched %d", s.Unmatched)
	}
	fmt.Fprintln(w)
	if len(s.ErrorCodes) > 0 {
		codes := make([]string, 0, len(s.ErrorCodes))
		for c, n := range s.ErrorCodes {
			codes = append(codes, fmt.Sprintf("%s×%d", c, n))
		}
		slices.Sort(codes)
		fmt.Fprintf(w, "  error codes: %s\n", strings.Join(codes, " "))
	}
	fmt.Fprintf(w, "  wall %.2f s  throughput %.1f answered/s\n", s.WallS, s.ThroughputPerS)
	l := s.LatencyMS
	fmt.Fprintf(w, "  latency ms: mean %.1f  p50 %.1f  p90 %.1f  p95 %.1f  p99 %.1f  max %.1f\n", l.Mean, l.P50, l.P90, l.P95, l.P99, l.Max)
	if s.Accuracy != nil {
		fmt.Fprintf(w, "  accuracy %.1f%% (%d/%d correct against the MRPC labels)\n", *s.Accuracy*100, s.Correct, s.Answered)
	} else {
		fmt.Fprintln(w, "  accuracy n/a (nothing answered)")
	}
	if len(s.BatchSizes) > 0 {
		sizes := make([]int, 0, len(s.BatchSizes))
		for b := range s.BatchSizes {
			sizes = append(sizes, b)
		}
		slices.Sort(sizes)
		parts := make([]string, len(sizes))
		for i, b := range sizes {
			parts[i] = fmt.Sprintf("%d:%d", b, s.BatchSizes[b])
		}
		fmt.Fprintf(w, "  batch sizes (size:requests): %s\n", strings.Join(parts, " "))
	}
	if len(s.Workers) > 0 {
		names := make([]string, 0, len(s.Workers))
		for n := range s.Workers {
			names = append(names, n)
		}
		slices.Sort(names)
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s:%d", n, s.Workers[n])
		}
		fmt.Fprintf(w, "  workers: %s\n", strings.Join(parts, " "))
	}
	if s.Synthetic {
		fmt.Fprintln(w, "  NOTE: the model is synthetic (generated weights): its predictions, and so the accuracy above, are meaningless.")
	}
}
