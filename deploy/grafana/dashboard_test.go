// Package grafana_test checks deploy/grafana/bertq-workers.json against what
// a real worker's /metrics serves.
package grafana_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/client"
	"github.com/bertq/bertq/internal/stacktest"
)

const dashboardFile = "bertq-workers.json"

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// queries returns every PromQL expression of the dashboard by panel title,
// and the template variables' label_values() queries.
func queries(t *testing.T) (exprs map[string][]string, vars []string) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	exprs = map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q queries nothing", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has an empty query", p.Title)
				}
				exprs[p.Title] = append(exprs[p.Title], tg.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if json.Unmarshal(v.Query, &s) != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
			q.Query = s
		}
		vars = append(vars, q.Query)
	}
	return exprs, vars
}

// promKeywords are PromQL words that are not metric names.
var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
}

// metricNames extracts the metric names a PromQL expression selects: the
// identifiers that are not functions or aggregations (followed by '('), not
// keywords, not label names inside {...} or by/without/on/ignoring (...), not
// durations inside [...], not in strings and not Grafana $variables.
func metricNames(expr string) []string {
	var names []string
	s := expr
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			i = j + 1
		case c == '{':
			i = skipTo(s, i, '}')
		case c == '[':
			i = skipTo(s, i, ']')
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				i = skipTo(s, i, '}')
			}
			for i < len(s) && isIdent(s[i]) {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n') {
				k++
			}
			next := k
			for next < len(s) && isIdent(s[next]) {
				next++
			}
			switch {
			case s[k:next] == "by" || s[k:next] == "without":
				// an aggregation whose grouping comes first: sum by (x) (...)
			case promKeywords[word] && word != "bool" && word != "offset" && k < len(s) && s[k] == '(':
				// by (...), on (...): label names follow
				j = skipTo(s, k, ')')
			case word == "offset":
				// a duration follows
				for k < len(s) && (isIdent(s[k])) {
					k++
				}
				j = k
			case promKeywords[word], k < len(s) && s[k] == '(':
			default:
				names = append(names, word)
			}
			i = j
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		default:
			i++
		}
	}
	return names
}

func skipTo(s string, i int, end byte) int {
	for i < len(s) && s[i] != end {
		if s[i] == '"' {
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
		}
		i++
	}
	return i + 1
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

var labelValuesRE = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b", c=~"$v"}[$__rate_interval])))`: "x_bucket",
		`sum(rate(a[1m])) / (sum(rate(b[5m] offset 1h)) + sum(rate(c{code!="ok"}[1m])))`:           "a b c",
		`max by (model) (queue_depth{model=~"${model}"} >= 0)`:                                     "queue_depth",
		`x * on (model) group_left (backend) info`:                                                 "x info",
		`count(up == bool 1) or vector(0)`:                                                         "up",
		`sum without (worker) (rate(requests_total{msg="sum(by) rate[x]"}[2m]))`:                   "requests_total",
		`rate(bertq_worker_requestz_total[5m])`:                                                    "bertq_worker_requestz_total",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("%s: %q, want %q", expr, got, want)
		}
	}
}

// servedMetrics runs a real worker (stacktest: broker, intake, worker on a
// generated model), answers a request, and reads its /metrics over HTTP: the
// sample names, each with the label names its series carry.
func servedMetrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	s, err := stacktest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Infer(ctx, stacktest.Model, "The cat sat.", "A cat was sitting."); err != nil {
		t.Fatal(err)
	}
	// And one error answer, so that requests_total has a code besides "ok".
	if _, err := c.InferTokens(ctx, stacktest.Model, client.Tokens{InputIDs: []int32{1}, TokenTypeIDs: []int32{0}, AttentionMask: []int32{1}}); !errors.Is(err, client.ErrWrongLength) {
		t.Fatalf("a one-token sequence: %v, want wrong_length", err)
	}
	srv := httptest.NewServer(s.Worker().MetricsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	return parseExposition(t, resp.Body)
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? \S+$`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)

// parseExposition reads the Prometheus text format: sample names and their labels.
func parseExposition(t *testing.T, r io.Reader) map[string]map[string]bool {
	t.Helper()
	served := map[string]map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a sample line: %q", line)
		}
		if served[m[1]] == nil {
			served[m[1]] = map[string]bool{}
		}
		for _, l := range labelRE.FindAllStringSubmatch(m[3], -1) {
			served[m[1]][l[1]] = true
		}
	}
	return served
}

var selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
var matcherRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)

// TestDashboardQueriesServedMetrics: every metric the dashboard queries, and
// every label it matches on, is one a running worker's /metrics serves; and
// the dashboard covers throughput, batch fill, queue depth, latency and errors.
func TestDashboardQueriesServedMetrics(t *testing.T) {
	exprs, vars := queries(t)
	served := servedMetrics(t)
	names := make([]string, 0, len(served))
	for n := range served {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("the worker serves %d metrics: %s", len(names), strings.Join(names, " "))

	used := map[string]bool{}
	check := func(where, expr string, metrics []string) {
		if len(metrics) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, m := range metrics {
			used[m] = true
			if served[m] == nil {
				t.Errorf("%s: %s is not served by the worker (query %q)", where, m, expr)
			}
		}
		for _, sel := range selectorRE.FindAllStringSubmatch(expr, -1) {
			for _, mt := range matcherRE.FindAllStringSubmatch(sel[2], -1) {
				if labels := served[sel[1]]; labels != nil && !labels[mt[1]] {
					t.Errorf("%s: %s has no label %q (query %q)", where, sel[1], mt[1], expr)
				}
			}
		}
	}
	titles := make([]string, 0, len(exprs))
	for title, es := range exprs {
		titles = append(titles, strings.ToLower(title))
		for _, e := range es {
			check("panel "+title, e, metricNames(e))
		}
	}
	for _, q := range vars {
		m := labelValuesRE.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("variable query %q is not label_values(metric, label)", q)
			continue
		}
		check("variable", q, []string{m[1]})
		if labels := served[m[1]]; labels != nil && !labels[m[3]] {
			t.Errorf("variable query %q: %s has no label %s", q, m[1], m[3])
		}
	}
	for _, topic := range []string{"throughput", "batch fill", "queue depth", "latency", "compute time", "queue time", "error"} {
		if !slices.ContainsFunc(titles, func(s string) bool { return strings.Contains(s, topic) }) {
			t.Errorf("no panel about %s", topic)
		}
	}
	for _, m := range []string{"bertq_worker_requests_total", "bertq_worker_real_slots_total", "bertq_worker_padded_slots_total",
		"bertq_worker_queue_depth", "bertq_worker_compute_ms_bucket", "bertq_worker_queue_ms_bucket"} {
		if !used[m] {
			t.Errorf("the dashboard never queries %s", m)
		}
	}
	if served["bertq_worker_requests_total"] == nil || !served["bertq_worker_requests_total"]["code"] {
		t.Error("the worker served no requests_total by code after answering")
	}
}
