package producer

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var reportHTML string

var reportTmpl = template.Must(template.New("report").Parse(reportHTML))

// WriteReport writes the run as one self-contained HTML page: answered/s
// over the run, latency percentiles over time and their distribution, batch
// sizes, errors by code, and the numbers of the JSON summary. The charts are
// inline SVG drawn here; the page loads nothing (no script, font or image),
// so it opens anywhere.
func WriteReport(w io.Writer, s *Summary) error {
	return reportTmpl.Execute(w, newReport(s))
}

// report is what the template shows.
type report struct {
	S         *Summary
	Title     string
	Generated string
	Rows      []row
	Charts    []chart
}

// row is one number of the summary; Key is its JSON name.
type row struct {
	Key, Label, Value string
}

func newReport(s *Summary) *report {
	r := &report{S: s, Generated: time.Now().UTC().Format(time.RFC3339)}
	model := s.Model
	if model == "" {
		model = "?"
	}
	r.Title = fmt.Sprintf("bertq run %s · %s", s.RunID, model)
	r.Rows = summaryRows(s)
	tl := newTimeline(s)
	r.Charts = []chart{throughputChart(tl), latencyOverTime(tl), latencyHistogram(s), batchChart(s), errorChart(s)}
	return r
}

func num(v float64, decimals int) string { return strconv.FormatFloat(v, 'f', decimals, 64) }

// summaryRows lists the JSON summary's numbers, each under its JSON key.
func summaryRows(s *Summary) []row {
	l := s.LatencyMS
	acc := "n/a"
	if s.Accuracy != nil {
		acc = num(*s.Accuracy, 4)
	}
	rows := []row{
		{"run_id", "run", s.RunID},
		{"model", "model", s.Model},
		{"mode", "mode", s.Mode},
		{"encoding", "encoding", s.Encoding},
		{"clients", "clients", strconv.Itoa(s.Clients)},
		{"cycle", "requests per client", strconv.Itoa(s.Cycle)},
		{"sent", "sent", strconv.Itoa(s.Sent)},
		{"answered", "answered", strconv.Itoa(s.Answered)},
		{"errors", "errors", strconv.Itoa(s.Errors)},
		{"lost", "lost (no answer in time)", strconv.Itoa(s.Lost)},
		{"late", "late answers", strconv.Itoa(s.Late)},
		{"duplicates", "duplicate answers", strconv.Itoa(s.Duplicates)},
		{"resends", "re-sends", strconv.Itoa(s.Resends)},
		{"unmatched", "unmatched replies", strconv.Itoa(s.Unmatched)},
		{"wall_s", "wall time (s)", num(s.WallS, 3)},
		{"throughput_per_s", "throughput (answered/s)", num(s.ThroughputPerS, 2)},
		{"latency_ms.mean", "latency mean (ms)", num(l.Mean, 2)},
		{"latency_ms.p50", "latency p50 (ms)", num(l.P50, 2)},
		{"latency_ms.p90", "latency p90 (ms)", num(l.P90, 2)},
		{"latency_ms.p95", "latency p95 (ms)", num(l.P95, 2)},
		{"latency_ms.p99", "latency p99 (ms)", num(l.P99, 2)},
		{"latency_ms.max", "latency max (ms)", num(l.Max, 2)},
		{"correct", "correct (MRPC labels)", strconv.Itoa(s.Correct)},
		{"accuracy", "accuracy", acc},
		{"synthetic", "synthetic model", strconv.FormatBool(s.Synthetic)},
	}
	// The JSON leaves these out when empty; so does the page.
	omit := map[string]bool{"model": s.Model == "", "encoding": s.Encoding == "", "clients": s.Clients == 0,
		"cycle": s.Cycle == 0, "resends": s.Resends == 0}
	rows = slices.DeleteFunc(rows, func(r row) bool { return omit[r.Key] })
	return rows
}

// slice is what happened in one slice of the run's time.
type slice struct {
	answered      int
	rate          float64 // answered per second over the slice's own length
	p50, p90, p99 float64
}

// timeline cuts the run into slices of width seconds: 1 s for runs of 10 s
// to 150 s, shorter for shorter runs (so that they still show a shape),
// longer for longer ones (so that bars stay visible).
type timeline struct {
	width  float64
	span   float64 // seconds covered
	slices []slice
}

func newTimeline(s *Summary) timeline {
	if len(s.samples) == 0 {
		return timeline{}
	}
	span := s.WallS
	for _, x := range s.samples {
		span = max(span, x.at.Sub(s.start).Seconds())
	}
	width := 1.0
	for _, w := range []float64{0.05, 0.1, 0.2, 0.5} {
		if span < 10 && span/w <= 40 {
			width = w
			break
		}
	}
	for span/width > 150 {
		width = niceStep(width*2.5, 1)
	}
	n := max(1, int(math.Ceil(span/width)))
	tl := timeline{width: width, span: span, slices: make([]slice, n)}
	lat := make([][]float64, n)
	for _, x := range s.samples {
		i := min(n-1, max(0, int(x.at.Sub(s.start).Seconds()/width)))
		tl.slices[i].answered++
		lat[i] = append(lat[i], x.latencyMS)
	}
	for i := range tl.slices {
		sl := &tl.slices[i]
		// The last slice may be cut short by the end of the run.
		if d := min(width, span-float64(i)*width); d > 0 {
			sl.rate = float64(sl.answered) / d
		}
		if l := lat[i]; len(l) > 0 {
			slices.Sort(l)
			sl.p50, sl.p90, sl.p99 = percentile(l, 50), percentile(l, 90), percentile(l, 99)
		}
	}
	return tl
}

// x maps seconds of the run to the plot.
func (tl timeline) x(sec float64) float64 {
	return padL + sec/(float64(len(tl.slices))*tl.width)*plotW
}

// ticks labels the time axis, about 10 labels.
func (tl timeline) ticks() []tick {
	end := float64(len(tl.slices)) * tl.width
	step := niceStep(end, 10)
	var ticks []tick
	for v := 0.0; v <= end+step/1000; v += step {
		ticks = append(ticks, tick{Pos: tl.x(v), Label: strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)})
	}
	return ticks
}

// each names the slices: "each second", "each 0.05 s".
func (tl timeline) each() string {
	if tl.width == 1 {
		return "each second"
	}
	return "each " + strconv.FormatFloat(tl.width, 'f', -1, 64) + " s"
}

// Plot geometry (SVG user units).
const (
	chartW, chartH         = 900, 270
	padL, padR, padT, padB = 64, 16, 16, 44
	plotW, plotH           = chartW - padL - padR, chartH - padT - padB
)

type chart struct {
	ID, Title, Caption string
	XLabel, YLabel     string
	W, H               int
	// Total is what the bars add up to (checked against the summary).
	Total  int
	Bars   []bar
	Lines  []line
	XTicks []tick
	YTicks []tick
	Marks  []mark
	Empty  string // shown instead of a plot without data
}

type bar struct {
	X, Y, W, H float64
	Value      int    // what the bar counts (checked against the summary)
	Label      string // shown above the bar when there are few
	Tip        string
}

// MidX is the bar's centre, where its value label goes.
func (b bar) MidX() float64 { return b.X + b.W/2 }

// BarValues: few enough bars to label each with its value.
func (c chart) BarValues() bool { return len(c.Bars) <= 24 }

type line struct {
	Name, Class string
	Points      string
	Dots        []dot
	KeyX        float64 // where its legend entry sits
}

type dot struct{ X, Y float64 }

type tick struct {
	Pos   float64
	Label string
}

// mark is a labelled vertical rule (a percentile on the histogram).
type mark struct {
	X      float64
	Label  string
	Class  string
	LabelY float64
	// DX and Anchor put the label right of the rule, or left of it near
	// the plot's right edge, where it would be cut off.
	DX     float64
	Anchor string
}

// niceStep picks 1, 2 or 5 × 10^k so that max spans about n steps.
func niceStep(maxV float64, n int) float64 {
	if maxV <= 0 {
		return 1
	}
	raw := maxV / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// yAxis returns the axis top and its ticks for values up to maxV.
func yAxis(maxV float64, format func(float64) string) (top float64, ticks []tick) {
	step := niceStep(maxV, 5)
	top = math.Ceil(maxV/step) * step
	if top == 0 {
		top = step
	}
	for v := 0.0; v <= top+step/2; v += step {
		ticks = append(ticks, tick{Pos: yPos(v, top), Label: format(v)})
	}
	return top, ticks
}

func yPos(v, top float64) float64 { return padT + plotH - v/top*plotH }

func intLabel(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func msLabel(v float64) string {
	if v >= 10000 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func newChart(id, title, caption, xl, yl string) chart {
	return chart{ID: id, Title: title, Caption: caption, XLabel: xl, YLabel: yl, W: chartW, H: chartH}
}

func throughputChart(tl timeline) chart {
	c := newChart("throughput", "Answered per second", "", "seconds into the run", "answered/s")
	if len(tl.slices) == 0 {
		c.Empty = "nothing was answered"
		return c
	}
	c.Caption = fmt.Sprintf("Requests answered per second, in %s of the run (a last, shorter slice counts its own length).", tl.each())
	peak := 0.0
	for _, sl := range tl.slices {
		peak = max(peak, sl.rate)
	}
	top, yt := yAxis(peak, intLabel)
	c.YTicks = yt
	bw := tl.x(tl.width) - tl.x(0)
	for i, sl := range tl.slices {
		y := yPos(sl.rate, top)
		from := float64(i) * tl.width
		c.Bars = append(c.Bars, bar{X: tl.x(from) + bw*0.1, Y: y, W: bw * 0.8, H: padT + plotH - y, Value: sl.answered,
			Label: rateLabel(sl.rate), Tip: fmt.Sprintf("%s–%s s: %d answered, %s/s", num(from, 2), num(from+tl.width, 2), sl.answered, rateLabel(sl.rate))})
		c.Total += sl.answered
	}
	c.XTicks = tl.ticks()
	return c
}

func rateLabel(v float64) string {
	if v >= 100 {
		return num(v, 0)
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

func latencyOverTime(tl timeline) chart {
	c := newChart("latency-time", "Latency over time", "", "seconds into the run", "latency (ms)")
	if len(tl.slices) == 0 {
		c.Empty = "nothing was answered"
		return c
	}
	c.Caption = fmt.Sprintf("Percentiles of the latency of the requests answered in %s of the run.", tl.each())
	peak := 0.0
	for _, sl := range tl.slices {
		peak = max(peak, sl.p99)
	}
	top, yt := yAxis(peak, msLabel)
	c.YTicks = yt
	for _, p := range []struct {
		name string
		v    func(slice) float64
	}{ // p99 is dashed: where it equals p90 (few answers in a slice), both show
		{"p50", func(s slice) float64 { return s.p50 }}, {"p90", func(s slice) float64 { return s.p90 }}, {"p99", func(s slice) float64 { return s.p99 }}} {
		l := line{Name: p.name, Class: p.name}
		var pts []string
		for i, sl := range tl.slices {
			if sl.answered == 0 {
				continue
			}
			d := dot{X: tl.x((float64(i) + 0.5) * tl.width), Y: yPos(p.v(sl), top)}
			l.Dots = append(l.Dots, d)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", d.X, d.Y))
		}
		l.Points = strings.Join(pts, " ")
		c.Lines = append(c.Lines, l)
	}
	for i := range c.Lines {
		c.Lines[i].KeyX = chartW - padR - float64(len(c.Lines)-i)*56
	}
	c.Total = len(c.Lines[0].Dots)
	c.XTicks = tl.ticks()
	return c
}

// histBins is the number of bars of the latency distribution.
const histBins = 40

func latencyHistogram(s *Summary) chart {
	c := newChart("latency-dist", "Latency distribution", "How many answers took how long; the rules mark p50, p90 and p99.", "latency (ms)", "answers")
	if len(s.samples) == 0 {
		c.Empty = "nothing was answered"
		return c
	}
	hi := s.LatencyMS.Max
	width := niceStep(hi, histBins)
	nb := max(1, int(math.Ceil(hi/width)))
	if float64(nb)*width <= hi {
		nb++ // the maximum itself needs a bin
	}
	counts := make([]int, nb)
	for _, x := range s.samples {
		counts[min(nb-1, int(x.latencyMS/width))]++
	}
	top, yt := yAxis(float64(slices.Max(counts)), intLabel)
	c.YTicks = yt
	span := float64(nb) * width
	xOf := func(v float64) float64 { return padL + v/span*plotW }
	for i, n := range counts {
		y := yPos(float64(n), top)
		label := strconv.Itoa(n)
		if n == 0 {
			label = "" // a gap says it
		}
		c.Bars = append(c.Bars, bar{X: xOf(float64(i) * width), Y: y, W: float64(plotW) / float64(nb) * 0.92, H: padT + plotH - y, Value: n, Label: label,
			Tip: fmt.Sprintf("%s–%s ms: %d", msLabel(float64(i)*width), msLabel(float64(i+1)*width), n)})
		c.Total += n
	}
	tstep := niceStep(span, 8)
	for v := 0.0; v <= span+tstep/2; v += tstep {
		c.XTicks = append(c.XTicks, tick{Pos: xOf(v), Label: msLabel(v)})
	}
	l := s.LatencyMS
	for i, m := range []struct {
		v     float64
		label string
	}{{l.P50, "p50"}, {l.P90, "p90"}, {l.P99, "p99"}} {
		mk := mark{X: xOf(m.v), Label: m.label + " " + num(m.v, 1) + " ms", Class: m.label, LabelY: padT + 12 + float64(i)*14, DX: 4, Anchor: "start"}
		if mk.X > padL+0.8*plotW {
			mk.DX, mk.Anchor = -4, "end"
		}
		c.Marks = append(c.Marks, mk)
	}
	return c
}

func batchChart(s *Summary) chart {
	c := newChart("batch", "Batch sizes", "Answered requests by the number of real requests in the batch they ran in.", "batch size (real requests)", "answered requests")
	if len(s.BatchSizes) == 0 {
		c.Empty = "no answer named its batch size"
		return c
	}
	biggest, peak := 0, 0
	for b, n := range s.BatchSizes {
		biggest, peak = max(biggest, b), max(peak, n)
	}
	top, yt := yAxis(float64(peak), intLabel)
	c.YTicks = yt
	bw := float64(plotW) / float64(biggest)
	for b := 1; b <= biggest; b++ {
		n := s.BatchSizes[b]
		y := yPos(float64(n), top)
		c.Bars = append(c.Bars, bar{X: padL + float64(b-1)*bw + bw*0.15, Y: y, W: bw * 0.7, H: padT + plotH - y, Value: n, Label: strconv.Itoa(n),
			Tip: fmt.Sprintf("batch of %d: %d requests", b, n)})
		c.XTicks = append(c.XTicks, tick{Pos: padL + (float64(b)-0.5)*bw, Label: strconv.Itoa(b)})
		c.Total += n
	}
	return c
}

func errorChart(s *Summary) chart {
	c := newChart("errors", "Errors by code", "Requests that ended with an error, by code (lost requests, which got no answer in time, are counted apart).", "", "requests")
	if len(s.ErrorCodes) == 0 {
		c.Empty = "no errors"
		return c
	}
	codes := make([]string, 0, len(s.ErrorCodes))
	peak := 0
	for code, n := range s.ErrorCodes {
		codes = append(codes, code)
		peak = max(peak, n)
	}
	sort.Slice(codes, func(i, j int) bool {
		a, b := s.ErrorCodes[codes[i]], s.ErrorCodes[codes[j]]
		return a > b || a == b && codes[i] < codes[j]
	})
	top, yt := yAxis(float64(peak), intLabel)
	c.YTicks = yt
	bw := float64(plotW) / float64(max(len(codes), 4))
	for i, code := range codes {
		n := s.ErrorCodes[code]
		y := yPos(float64(n), top)
		c.Bars = append(c.Bars, bar{X: padL + float64(i)*bw + bw*0.15, Y: y, W: bw * 0.7, H: padT + plotH - y, Value: n, Label: strconv.Itoa(n),
			Tip: fmt.Sprintf("%s: %d", code, n)})
		c.XTicks = append(c.XTicks, tick{Pos: padL + (float64(i)+0.5)*bw, Label: code})
		c.Total += n
	}
	return c
}

// Plot edges, for the template.
func (chart) Left() float64   { return padL }
func (chart) Right() float64  { return chartW - padR }
func (chart) Top() float64    { return padT }
func (chart) Bottom() float64 { return padT + plotH }

// XLabelY and YLabelX place the axis titles.
func (chart) XLabelY() float64 { return chartH - 6 }
func (chart) MidX() float64    { return padL + plotW/2 }
func (chart) MidY() float64    { return padT + plotH/2 }

// TickY is where x tick labels sit.
func (chart) TickY() float64 { return padT + plotH + 16 }
