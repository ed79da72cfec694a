package worker

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// codeOK counts answered requests among the outcome codes.
const codeOK = "ok"

// bucketsMS are the histogram bounds (milliseconds) for compute and queue time.
var bucketsMS = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000}

type histogram struct {
	mu     sync.Mutex
	counts []uint64 // per bucket, plus +Inf
	sum    float64
	n      uint64
}

func (h *histogram) observe(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = make([]uint64, len(bucketsMS)+1)
	}
	i := sort.SearchFloat64s(bucketsMS, v) // first bound ≥ v
	h.counts[i]++
	h.sum += v
	h.n++
}

// total is the sum of the observed values.
func (h *histogram) total() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sum
}

func (h *histogram) write(w io.Writer, name, help, labels string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	counts := h.counts
	if counts == nil {
		counts = make([]uint64, len(bucketsMS)+1)
	}
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum uint64
	for i, b := range bucketsMS {
		cum += counts[i]
		fmt.Fprintf(w, "%s_bucket{%s,le=\"%s\"} %d\n", name, labels, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += counts[len(bucketsMS)]
	fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n", name, labels, cum)
	fmt.Fprintf(w, "%s_sum{%s} %s\n%s_count{%s} %d\n", name, labels, strconv.FormatFloat(h.sum, 'f', -1, 64), name, labels, h.n)
}

// metrics are the worker's counters; padding is counted apart from real work.
type metrics struct {
	ok         atomic.Uint64 // requests answered with a prediction
	batches    atomic.Uint64 // batches run successfully
	realSlots  atomic.Uint64 // real requests in those batches
	padded     atomic.Uint64 // dummy slots in those batches
	tokens     atomic.Uint64 // real (attended) tokens in those batches
	rows       atomic.Uint64 // token rows the engine computed for them, padding included
	failed     atomic.Uint64 // batches the engine failed
	retries    atomic.Uint64
	deadLetter atomic.Uint64
	depth      atomic.Int64 // queue depth at the last poll, -1 unknown

	mu      sync.Mutex
	byCode  map[string]uint64
	compute histogram
	queue   histogram
}

func (m *metrics) init() {
	m.byCode = map[string]uint64{}
	m.depth.Store(-1)
}

func (m *metrics) request(code string, queue time.Duration) {
	m.mu.Lock()
	m.byCode[code]++
	m.mu.Unlock()
	if code == codeOK {
		m.ok.Add(1)
		m.queue.observe(ms(queue))
	}
}

func (m *metrics) batch(real, padded, tokens, rows int, compute time.Duration) {
	m.batches.Add(1)
	m.realSlots.Add(uint64(real))
	m.padded.Add(uint64(padded))
	m.tokens.Add(uint64(tokens))
	m.rows.Add(uint64(rows))
	m.compute.observe(ms(compute))
}

func (m *metrics) failedBatch() { m.failed.Add(1) }
func (m *metrics) retry()       { m.retries.Add(1) }
func (m *metrics) dead()        { m.deadLetter.Add(1) }

func (m *metrics) codes() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]uint64, len(m.byCode))
	for k, v := range m.byCode {
		out[k] = v
	}
	return out
}

// Stats is a snapshot of a worker's counters, served by its micro service.
type Stats struct {
	Worker   string `json:"worker"`
	Model    string `json:"model"`
	Backend  string `json:"backend"`
	Parallel int    `json:"parallel"`
	Batch    int    `json:"batch"`
	Seq      int    `json:"seq"`
	// Pad is the batch layout (none: packed; static); MaxBatch and
	// MaxTokens bound each batch.
	Pad       string `json:"pad"`
	MaxBatch  int    `json:"max_batch"`
	MaxTokens int    `json:"max_tokens"`
	Synthetic bool   `json:"synthetic,omitempty"`
	// Answered counts requests answered with a prediction.
	Answered uint64 `json:"answered"`
	// Errors counts requests answered with an error, by code.
	Errors map[string]uint64 `json:"errors,omitempty"`
	// Batches ran; RealSlots of their slots held requests, PaddedSlots dummies.
	Batches     uint64 `json:"batches"`
	RealSlots   uint64 `json:"real_slots"`
	PaddedSlots uint64 `json:"padded_slots"`
	// Tokens counts the real tokens of those requests; Rows the token rows
	// the engine computed (padding included: equal to Tokens when packed).
	Tokens       uint64  `json:"tokens"`
	Rows         uint64  `json:"rows"`
	FailedBatch  uint64  `json:"failed_batches,omitempty"`
	Retries      uint64  `json:"retries,omitempty"`
	DeadLetters  uint64  `json:"dead_letters,omitempty"`
	QueueDepth   int64   `json:"queue_depth"` // pending + unacked at the last poll; -1 unknown
	MeanBatch    float64 `json:"mean_batch"`
	UptimeSecond float64 `json:"uptime_s"`
}

// Stats returns the worker's counters now.
func (w *Worker) Stats() Stats {
	codes := w.m.codes()
	delete(codes, codeOK)
	s := Stats{
		Worker: w.o.id, Model: w.info.Name, Backend: w.model.Backend(), Parallel: w.o.parallel,
		Batch: w.spec.Batch, Seq: w.spec.Seq, Synthetic: w.info.Synthetic,
		Pad: string(w.o.padding), MaxBatch: w.limits.Seqs, MaxTokens: w.limits.Tokens,
		Answered: w.m.ok.Load(), Errors: codes,
		Batches: w.m.batches.Load(), RealSlots: w.m.realSlots.Load(), PaddedSlots: w.m.padded.Load(),
		Tokens: w.m.tokens.Load(), Rows: w.m.rows.Load(),
		FailedBatch: w.m.failed.Load(), Retries: w.m.retries.Load(), DeadLetters: w.m.deadLetter.Load(),
		QueueDepth: w.m.depth.Load(),
	}
	if s.Batches > 0 {
		s.MeanBatch = float64(s.RealSlots) / float64(s.Batches)
	}
	s.UptimeSecond = round2(time.Since(w.started).Seconds())
	return s
}

// statsLoop logs throughput once per interval and refreshes the queue depth
// and the consumer's settings.
func (w *Worker) statsLoop(ctx context.Context) {
	every := w.o.statsEvery
	if every <= 0 {
		every = time.Second // still poll the depth for the metrics
	}
	t := time.NewTicker(every)
	defer t.Stop()
	prev := time.Now()
	prevReal, prevBatches, prevTokens := w.m.realSlots.Load(), w.m.batches.Load(), w.m.tokens.Load()
	idle := false // an idle worker logs one zero line, then stays quiet
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			depth := w.pollDepth(ctx)
			realN, batches, tokens := w.m.realSlots.Load(), w.m.batches.Load(), w.m.tokens.Load()
			dt := now.Sub(prev).Seconds()
			dReal, dBatches, dTokens := realN-prevReal, batches-prevBatches, tokens-prevTokens
			prev, prevReal, prevBatches, prevTokens = now, realN, batches, tokens
			if w.o.statsEvery <= 0 {
				continue
			}
			quiet := dReal == 0 && dBatches == 0 && depth <= 0
			if quiet && idle {
				continue
			}
			idle = quiet
			mean := 0.0
			if dBatches > 0 {
				mean = float64(dReal) / float64(dBatches)
			}
			w.log.Info().
				Float64("inferences_per_s", round2(float64(dReal)/dt)).
				Float64("tokens_per_s", round2(float64(dTokens)/dt)).
				Float64("batches_per_s", round2(float64(dBatches)/dt)).
				Float64("mean_batch", round2(mean)).
				Int64("queue", depth).
				Msg("throughput")
		}
	}
}

func (w *Worker) pollDepth(ctx context.Context) int64 {
	cons, _, _ := w.consumer()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		w.m.depth.Store(-1)
		return -1
	}
	w.followConsumer(info.Config)
	d := int64(info.NumPending) + int64(info.NumAckPending)
	w.m.depth.Store(d)
	return d
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// WriteMetrics writes the worker's metrics in the Prometheus text format.
func (w *Worker) WriteMetrics(out io.Writer) {
	s := w.Stats()
	base := fmt.Sprintf("model=%q,worker=%q", w.info.Name, w.o.id)
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(out, "# HELP %s %s\n# TYPE %s counter\n%s{%s} %d\n", name, help, name, name, base, v)
	}
	fmt.Fprintf(out, "# HELP bertq_worker_info The model a worker serves.\n# TYPE bertq_worker_info gauge\n")
	fmt.Fprintf(out, "bertq_worker_info{%s,backend=%q,batch=\"%d\",seq=\"%d\",parallel=\"%d\",synthetic=\"%t\",pad=%q,max_batch=\"%d\",max_tokens=\"%d\"} 1\n",
		base, s.Backend, s.Batch, s.Seq, s.Parallel, s.Synthetic, s.Pad, s.MaxBatch, s.MaxTokens)
	fmt.Fprintf(out, "# HELP bertq_worker_requests_total Requests answered, by outcome code (ok or a schemas error code).\n# TYPE bertq_worker_requests_total counter\n")
	codes := w.m.codes()
	if _, ok := codes[codeOK]; !ok {
		codes[codeOK] = 0
	}
	names := make([]string, 0, len(codes))
	for c := range codes {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		fmt.Fprintf(out, "bertq_worker_requests_total{%s,code=%q} %d\n", base, c, codes[c])
	}
	counter("bertq_worker_batches_total", "Batches run.", s.Batches)
	counter("bertq_worker_real_slots_total", "Batch slots that held a request.", s.RealSlots)
	counter("bertq_worker_padded_slots_total", "Batch slots padded with a dummy row (never answered).", s.PaddedSlots)
	counter("bertq_worker_tokens_total", "Real (attended) tokens of the requests in those batches.", s.Tokens)
	counter("bertq_worker_rows_total", "Token rows the engine computed, padding included (equal to tokens when packed).", s.Rows)
	counter("bertq_worker_failed_batches_total", "Batches the engine failed to run.", s.FailedBatch)
	counter("bertq_worker_retries_total", "Requests handed back for redelivery after a failed batch.", s.Retries)
	counter("bertq_worker_dead_letters_total", "Requests moved to the dead-letter stream.", s.DeadLetters)
	fmt.Fprintf(out, "# HELP bertq_worker_queue_depth Requests pending or unacked on the model's consumer at the last poll (-1 unknown).\n# TYPE bertq_worker_queue_depth gauge\nbertq_worker_queue_depth{%s} %d\n", base, s.QueueDepth)
	w.m.compute.write(out, "bertq_worker_compute_ms", "Engine time per batch in milliseconds.", base)
	w.m.queue.write(out, "bertq_worker_queue_ms", "Time answered requests waited in the queue, in milliseconds.", base)
}

// MetricsHandler serves WriteMetrics at any path (mount it at /metrics).
func (w *Worker) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.WriteMetrics(rw)
	})
}
