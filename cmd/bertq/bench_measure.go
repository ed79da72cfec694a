package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bertq/bertq/engine"
)

// The phases of a bench round, each timed alone on every runner at once.
const (
	phaseForward = iota
	phaseGEMMs
	phaseBare
	phaseNonGEMM
	numPhases
)

var phaseOf = [numPhases]engine.Phase{engine.PhaseForward, engine.PhaseGEMMs, engine.PhaseBareGEMMs, engine.PhaseNonGEMM}

// share is each phase's length relative to the forward's.
var share = [numPhases]float64{1, 1, 0.5, 0.25}

// tally accumulates one runner's batches in one phase.
type tally struct {
	batches, seqs, tokens int
	useful, gemm          float64 // FLOPs
	busy                  time.Duration
}

func (t *tally) add(b benchBatch, d time.Duration) {
	t.batches++
	t.seqs += b.seqs
	t.tokens += b.tokens
	t.useful += b.useful
	t.gemm += b.gemm
	t.busy += d
}

// round is one round's tallies [runner][phase], and each runner's ISA peak
// (GFLOP/s) measured in it.
type round struct {
	t    [][numPhases]tally
	peak []float64
	isa  string
}

// startRunners starts one runner per core; on error the ones started are
// returned for closing.
func startRunners(m engine.Model, cores []int) ([]engine.Runner, error) {
	var rs []engine.Runner
	for _, c := range cores {
		r, err := m.NewRunner(c)
		if err != nil {
			return rs, fmt.Errorf("runner on CPU %d: %w", c, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// measure runs rounds of phases until the time is up, alternating their
// order so that the machine's mood swings hit every phase alike. Every
// runner works through the batches from its own offset, phase after phase.
func measure(ctx context.Context, e *env, runners []engine.Runner, batches []benchBatch, seconds float64) ([]round, error) {
	_, phased := runners[0].(engine.PhaseRunner)
	_, peaks := runners[0].(engine.Peaker)
	next := make([]int, len(runners))
	for i := range next {
		next[i] = i * len(batches) / len(runners)
	}
	// Warm up every phase once: first calls make primitives, touch pages.
	for ph := 0; ph < numPhases && (ph == phaseForward || phased); ph++ {
		if err := runPhase(ctx, runners, batches, next, ph, time.Time{}, nil); err != nil {
			return nil, err
		}
	}
	phaseLen := min(seconds/3, 1.0)
	var rounds []round
	begin := time.Now()
	for r := 0; r == 0 || time.Since(begin).Seconds() < seconds; r++ {
		rd := round{t: make([][numPhases]tally, len(runners))}
		order := []int{phaseForward, phaseGEMMs, phaseBare, phaseNonGEMM}
		if r%2 == 1 {
			order = []int{phaseGEMMs, phaseForward, phaseNonGEMM, phaseBare}
		}
		for _, ph := range order {
			if ph != phaseForward && !phased {
				continue
			}
			deadline := time.Now().Add(time.Duration(phaseLen * share[ph] * float64(time.Second)))
			if err := runPhase(ctx, runners, batches, next, ph, deadline, rd.t); err != nil {
				return nil, err
			}
		}
		if peaks {
			var err error
			if rd.isa, rd.peak, err = measurePeak(runners); err != nil {
				fmt.Fprintf(e.stderr, "bertq bench: no ISA peak: %v\n", err)
				peaks = false
			}
		}
		rounds = append(rounds, rd)
	}
	return rounds, nil
}

// runPhase runs batches of one phase on every runner until the deadline
// (at least one each); a zero deadline runs exactly one.
func runPhase(ctx context.Context, runners []engine.Runner, batches []benchBatch, next []int, ph int, deadline time.Time, t [][numPhases]tally) error {
	return forAll(runners, func(i int, r engine.Runner) error {
		logits := make([]float32, 64*1024)
		for {
			b := batches[next[i]]
			next[i] = (next[i] + 1) % len(batches)
			start := time.Now()
			var err error
			if ph == phaseForward {
				err = r.Run(b.in, logits)
			} else {
				err = r.(engine.PhaseRunner).RunPhase(phaseOf[ph], b.in, logits)
			}
			if err != nil {
				return err
			}
			if t != nil {
				t[i][ph].add(b, time.Since(start))
			}
			if !time.Now().Before(deadline) || ctx.Err() != nil {
				return ctx.Err()
			}
		}
	})
}

// measurePeak measures every runner's ISA peak at once, as the GEMMs run.
func measurePeak(runners []engine.Runner) (string, []float64, error) {
	peaks := make([]float64, len(runners))
	isas := make([]string, len(runners))
	err := forAll(runners, func(i int, r engine.Runner) (err error) {
		isas[i], peaks[i], err = r.(engine.Peaker).ISAPeak(200 * time.Millisecond)
		return err
	})
	return isas[0], peaks, err
}

// forAll runs fn for every runner concurrently and returns the errors.
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
