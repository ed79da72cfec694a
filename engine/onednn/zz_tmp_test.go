//go:build cgo

package onednn

import (
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
)

func TestTmpTwoRunners(t *testing.T) {
	path := os.Getenv("BERTQ_BENCH_ARTIFACT")
	if path == "" {
		t.Skip()
	}
	f, _ := artifact.Open(path)
	defer f.Close()
	be, _ := engine.Get(Name)
	m, err := be.Load(f, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s := m.Spec()
	var rs []*Runner
	for i := 0; i < 2; i++ {
		r, _ := m.NewRunner(i)
		rs = append(rs, r.(*Runner))
	}
	in := randomInput(rand.New(rand.NewSource(1)), f.Header.Model, s.Batch, s.Seq, false)
	for round := 0; round < 4; round++ {
		for mode := 0; mode < 3; mode++ {
			var wg sync.WaitGroup
			durs := make([]time.Duration, 2)
			for i, r := range rs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st := time.Now()
					logits := make([]float32, 8)
					switch mode {
					case 0:
						r.Run(in, logits)
					case 1:
						r.RunGEMMs(true)
					case 2:
						r.RunGEMMs(false)
					}
					durs[i] = time.Since(st)
				}()
			}
			wg.Wait()
			t.Logf("round %d mode %d: %v %v", round, mode, durs[0].Round(time.Millisecond), durs[1].Round(time.Millisecond))
		}
	}
}
