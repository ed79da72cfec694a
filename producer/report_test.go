package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/schemas"
)

// reportRun drives a scripted intake that answers with varied batch sizes
// and latencies, fails some requests with two codes and drops one, so that
// every chart of the report has something to show.
func reportRun(t *testing.T) *Summary {
	t.Helper()
	nc, _ := startNATS(t)
	const model = "report"
	pairs := testPairs(6)
	lab := labels(pairs)
	sub, err := nc.Subscribe(schemas.InferSubject(model), func(m *nats.Msg) {
		req, enc := decodeRequest(t, m)
		var c, s int
		fmt.Sscanf(req.ID[strings.Index(req.ID, "-")+1:], "%d-%d", &c, &s)
		rep := &schemas.InferReply{V: 1, ID: req.ID, Model: model, LabelIndex: lab[req.A+"\x00"+req.B], BatchSize: s%4 + 1, Worker: fmt.Sprintf("w%d", c%2)}
		switch {
		case s == 3 && c == 0:
			return // lost
		case s%7 == 5:
			rep = &schemas.InferReply{V: 1, ID: req.ID, Error: schemas.Errorf(schemas.CodeQueueFull, "full")}
		case s%11 == 6:
			rep = &schemas.InferReply{V: 1, ID: req.ID, Error: schemas.Errorf(schemas.CodeDeadline, "late")}
		}
		go func() {
			time.Sleep(time.Duration(s%5) * 3 * time.Millisecond)
			sendReply(t, nc, m.Reply, enc, rep)
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	s, err := Run(context.Background(), nc, WithModel(model), WithClients(4), WithCycle(60), WithPairs(pairs),
		WithTimeout(300*time.Millisecond), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	if s.Lost != 1 || s.Errors == 0 || len(s.ErrorCodes) != 2 || len(s.BatchSizes) != 4 {
		t.Fatalf("the scripted run did not come out as planned: %+v", s)
	}
	return s
}

// flatten turns decoded JSON into dotted keys: latency_ms.p50, batch_sizes.4.
func flatten(prefix string, v any, out map[string]any) {
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			flatten(prefix+k+".", x, out)
		}
		return
	}
	out[strings.TrimSuffix(prefix, ".")] = v
}

var (
	cellRE  = regexp.MustCompile(`data-key="([^"]+)">([^<]*)<`)
	chartRE = regexp.MustCompile(`data-chart="([^"]+)" data-total="(\d+)"`)
	svgRE   = regexp.MustCompile(`(?s)<svg .*?</svg>`)
)

// TestReportMatchesSummary: every number of the JSON summary is on the page
// under its key, equal to the precision shown; every chart has data that
// adds up to the summary; the page loads nothing from anywhere.
func TestReportMatchesSummary(t *testing.T) {
	s := reportRun(t)
	var page bytes.Buffer
	if err := WriteReport(&page, s); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	if path := os.Getenv("BERTQ_REPORT_PAGE"); path != "" { // to look at it in a browser
		if err := os.WriteFile(path, page.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var decoded any
	if err := json.Unmarshal(js, &decoded); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{}
	flatten("", decoded, want)

	got := map[string]string{}
	for _, m := range cellRE.FindAllStringSubmatch(html, -1) {
		got[m[1]] = m[2]
	}
	for key, w := range want {
		g, ok := got[key]
		if !ok {
			t.Errorf("the page lacks %s (JSON: %v)", key, w)
			continue
		}
		switch w := w.(type) {
		case float64:
			v, err := strconv.ParseFloat(g, 64)
			// The page rounds to its shown decimals: allow half a unit of the last.
			tol := 0.5
			if i := strings.IndexByte(g, '.'); i >= 0 {
				tol = 0.5 * math.Pow(10, -float64(len(g)-i-1))
			}
			if err != nil || math.Abs(v-w) > tol+1e-12 {
				t.Errorf("%s: page %q, JSON %v", key, g, w)
			}
		case string:
			if g != w {
				t.Errorf("%s: page %q, JSON %q", key, g, w)
			}
		case bool:
			if g != strconv.FormatBool(w) {
				t.Errorf("%s: page %q, JSON %v", key, g, w)
			}
		case nil:
			if g != "n/a" {
				t.Errorf("%s: page %q, JSON null", key, g)
			}
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			t.Errorf("the page shows %s, which the JSON summary lacks", key)
		}
	}

	batchTotal := 0
	for _, n := range s.BatchSizes {
		batchTotal += n
	}
	tl := newTimeline(s)
	slicesWithAnswers := 0
	for _, sl := range tl.slices {
		if sl.answered > 0 {
			slicesWithAnswers++
		}
	}
	if len(tl.slices) < 5 {
		t.Errorf("a %.2f s run cut into %d slices of %v s: too few to show a shape", s.WallS, len(tl.slices), tl.width)
	}
	totals := map[string]int{
		"throughput": s.Answered, "latency-dist": s.Answered, "batch": batchTotal, "errors": s.Errors,
		"latency-time": slicesWithAnswers,
	}
	charts := chartRE.FindAllStringSubmatch(html, -1)
	if len(charts) != len(totals) {
		t.Errorf("%d charts on the page, want %d", len(charts), len(totals))
	}
	for _, m := range charts {
		n, _ := strconv.Atoi(m[2])
		if w, ok := totals[m[1]]; !ok || n != w || n == 0 {
			t.Errorf("chart %s adds up to %d, want %d (and more than 0)", m[1], n, w)
		}
	}
	svgs := svgRE.FindAllString(html, -1)
	if len(svgs) != len(totals) {
		t.Errorf("%d SVG charts, want %d", len(svgs), len(totals))
	}
	for _, svg := range svgs {
		// Each chart is well-formed XML, and its bars add up to its total.
		d := xml.NewDecoder(strings.NewReader(svg))
		sum, bars := 0, 0
		for {
			tok, err := d.Token()
			if err != nil {
				if err.Error() != "EOF" {
					t.Errorf("SVG not well-formed: %v", err)
				}
				break
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
				for _, a := range se.Attr {
					if a.Name.Local == "data-value" {
						v, _ := strconv.Atoi(a.Value)
						sum += v
						bars++
					}
				}
			}
		}
		if m := chartRE.FindStringSubmatch(svg); m != nil && bars > 0 {
			if strconv.Itoa(sum) != m[2] {
				t.Errorf("chart %s: bars add up to %d, total says %s", m[1], sum, m[2])
			}
		}
	}
	if strings.Count(html, "<polyline") != 3 {
		t.Errorf("want the three percentile lines, found %d", strings.Count(html, "<polyline"))
	}
	for _, banned := range []string{"<script", "http://", "https://", "@import", "url("} {
		if strings.Contains(html, banned) {
			t.Errorf("the page contains %q: it must load nothing", banned)
		}
	}
}

// TestReportWithoutAnswers: a run that got nothing still makes a page, with
// each chart saying why it is empty.
func TestReportWithoutAnswers(t *testing.T) {
	s := &Summary{RunID: "abcdefghij", Model: "m", Mode: "request", Sent: 3, Lost: 3, ErrorCodes: map[string]int{}, BatchSizes: map[int]int{}}
	var page bytes.Buffer
	if err := WriteReport(&page, s); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page.String(), "<svg") || strings.Count(page.String(), `class="empty"`) != 5 {
		t.Errorf("an empty run should show five empty charts:\n%s", page.String())
	}
	if !strings.Contains(page.String(), `data-key="accuracy">n/a<`) {
		t.Error("accuracy without answers should read n/a")
	}
}

// TestTimelineSlices: short runs get fine slices, long ones coarse, and the
// rate of a last, partial slice counts its own length.
func TestTimelineSlices(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		wall  float64
		width float64
	}{{0.7, 0.05}, {3, 0.1}, {9, 0.5}, {12, 1}, {40, 1}, {150, 1}, {600, 5}, {3600, 50}} {
		s := &Summary{WallS: c.wall, start: start}
		// One answer per 10 ms, through the whole run.
		for ms := 0.0; ms < c.wall*1000; ms += 10 {
			s.samples = append(s.samples, sample{at: start.Add(time.Duration(ms * float64(time.Millisecond))), latencyMS: 1})
		}
		tl := newTimeline(s)
		if tl.width != c.width || len(tl.slices) < 5 || len(tl.slices) > 150 {
			t.Errorf("%v s: %d slices of %v s, want slices of %v s", c.wall, len(tl.slices), tl.width, c.width)
			continue
		}
		total := 0
		for i, sl := range tl.slices {
			total += sl.answered
			if math.Abs(sl.rate-100) > 100*0.2+1/tl.width {
				t.Errorf("%v s: slice %d: rate %.1f/s, want about 100/s", c.wall, i, sl.rate)
			}
		}
		if total != len(s.samples) {
			t.Errorf("%v s: slices hold %d of %d answers", c.wall, total, len(s.samples))
		}
	}
}
