package producer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bertq/bertq/internal/fixtures"
)

func TestSample(t *testing.T) {
	p := Sample()
	if len(p) != 35 {
		t.Fatalf("sample has %d pairs, want 35", len(p))
	}
	ones := 0
	for _, x := range p {
		ones += x.Label
		if x.B == "" || x.Line < 2 {
			t.Fatalf("bad pair %+v", x)
		}
	}
	if ones == 0 || ones == len(p) {
		t.Fatalf("sample labels all equal (%d of %d are 1)", ones, len(p))
	}
	if p[0].ID1 != "100001" || p[0].Label != 1 || !strings.HasPrefix(p[0].A, "The company said") {
		t.Fatalf("first pair %+v", p[0])
	}
}

// The shipped sample must be the reference copy in testdata/.
func TestSampleMatchesFixture(t *testing.T) {
	want, err := os.ReadFile(fixtures.Path(t, "mrpc-sample.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(sampleTSV) {
		t.Fatal("producer/mrpc-sample.tsv differs from testdata/mrpc-sample.tsv")
	}
}

func TestParseTSVQuotesAndCRLF(t *testing.T) {
	in := TSVHeader + "\r\n" +
		"1\t1\t2\tHe said \"no comment.\tShe said \"\"no\" comment.\r\n" +
		"\n" +
		"0\t3\t4\t'Single' \"quote\tplain\n"
	p, err := ParseTSV(strings.NewReader(in), "x.tsv")
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 {
		t.Fatalf("got %d pairs", len(p))
	}
	if p[0].A != `He said "no comment.` || p[0].B != `She said ""no" comment.` || p[0].Label != 1 {
		t.Fatalf("pair 0 %+v", p[0])
	}
	if p[1].A != `'Single' "quote` || p[1].Label != 0 || p[1].Line != 4 {
		t.Fatalf("pair 1 %+v", p[1])
	}
}

func TestParseTSVErrors(t *testing.T) {
	h := TSVHeader + "\n"
	cases := []struct{ name, in, want string }{
		{"empty", "", "bad.tsv: empty file"},
		{"header", "Quality\tA\tB\n1\t1\t2\ta\tb\n", "bad.tsv:1: want the MRPC header"},
		{"fields", h + "1\t1\t2\ta\tb\n1\t1\t2\tonly four\n", "bad.tsv:3: want 5 tab-separated fields"},
		{"extra", h + "1\t1\t2\ta\tb\tc\n", "bad.tsv:2: want 5 tab-separated fields"},
		{"quality", h + "yes\t1\t2\ta\tb\n", "bad.tsv:2: Quality must be 0 or 1"},
		{"utf8", h + "1\t1\t2\ta\xff\tb\n", "bad.tsv:2: not valid UTF-8"},
		{"no pairs", h, "bad.tsv: no pairs"},
		{"long", h + "1\t1\t2\t" + strings.Repeat("x", maxLine+1) + "\tb\n", "bad.tsv:2: line longer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTSV(strings.NewReader(c.in), "bad.tsv")
			if !errors.Is(err, ErrData) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrData containing %q", err, c.want)
			}
		})
	}
}

func TestLoadTSV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev.tsv")
	if err := os.WriteFile(path, []byte(TSVHeader+"\n0\t1\t2\ta\tb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadTSV(path)
	if err != nil || len(p) != 1 {
		t.Fatalf("LoadTSV = %v, %v", p, err)
	}
	if _, err := LoadTSV(filepath.Join(t.TempDir(), "missing.tsv")); !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "missing.tsv") {
		t.Fatalf("missing file: %v", err)
	}
}

func FuzzParseTSV(f *testing.F) {
	f.Add(string(sampleTSV))
	f.Add(TSVHeader + "\n1\t1\t2\t\"a\tb\"\n")
	f.Add(TSVHeader + "\r\n0\t\t\tx\ty\r\n")
	f.Add("\ufeff" + TSVHeader + "\n1\t1\t2\ta\tb")
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParseTSV(strings.NewReader(in), "fuzz.tsv")
		if err != nil {
			if !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "fuzz.tsv") {
				t.Fatalf("error %v does not wrap ErrData with the file name", err)
			}
			return
		}
		if len(p) == 0 {
			t.Fatal("no pairs and no error")
		}
		for _, x := range p {
			if x.Label != 0 && x.Label != 1 {
				t.Fatalf("label %d", x.Label)
			}
			for _, s := range []string{x.ID1, x.ID2, x.A, x.B} {
				if strings.ContainsAny(s, "\t\n") {
					t.Fatalf("field %q holds a separator", s)
				}
			}
		}
	})
}

func TestPercentile(t *testing.T) {
	s := make([]float64, 100)
	for i := range s {
		s[i] = float64(i + 1) // 1..100
	}
	for _, c := range []struct{ p, want float64 }{{50, 50}, {90, 90}, {95, 95}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	l := latencyOf([]float64{5, 1, 3, 2, 4})
	if l.P50 != 3 || l.Max != 5 || l.Mean != 3 || l.P99 != 5 || l.P90 != 5 {
		t.Errorf("latency %+v", l)
	}
	if (latencyOf(nil) != Latency{}) {
		t.Error("empty latency not zero")
	}
}
