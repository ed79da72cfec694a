package worker

import (
	"testing"
	"time"

	"github.com/bertq/bertq/engine"
)

// TestPullWindow: the pull window starts at a batch per loop, follows the
// engine's measured speed × pullLead within its bounds, ignores changes
// under 2×, and stays put when fixed by WithPrefetch.
func TestPullWindow(t *testing.T) {
	w := &Worker{limits: engine.Limits{Seqs: 4, Tokens: 512}}
	w.o.parallel, w.o.maxAckPending = 2, 1024
	w.m.init()
	run := func(seqs int, each time.Duration) { // seqs requests, in batches of 4
		for i := 0; i < seqs/4; i++ {
			w.m.batch(4, 0, 100, 100, each)
		}
	}
	p := newPullWindow(w)
	if p.size != 8 || p.max != 512 {
		t.Fatalf("window %d, max %d; want 8 (a batch per loop) and 512 (half of MaxAckPending)", p.size, p.max)
	}
	if _, ok := p.resize(); ok {
		t.Error("resized with nothing run")
	}
	// 4 requests per 2 ms on each of 2 loops: 4000/s, 200 in 50 ms.
	run(400, 2*time.Millisecond)
	if size, ok := p.resize(); !ok || size != 200 {
		t.Errorf("fast engine: window %d (resized %v), want 200", size, ok)
	}
	// 1.5× slower: within the 2× band, no change.
	run(400, 3*time.Millisecond)
	if size, ok := p.resize(); ok || size != 200 {
		t.Errorf("1.5× slower: window %d (resized %v), want 200 kept", size, ok)
	}
	// A second per batch: back to the floor of a batch per loop.
	run(40, time.Second)
	if size, ok := p.resize(); !ok || size != 8 {
		t.Errorf("slow engine: window %d (resized %v), want 8", size, ok)
	}
	// Absurdly fast: capped.
	run(4000, time.Microsecond*100)
	if size, ok := p.resize(); !ok || size != 512 {
		t.Errorf("very fast engine: window %d (resized %v), want 512", size, ok)
	}
	w.o.prefetch = 64
	p = newPullWindow(w)
	run(400, 2*time.Millisecond)
	if size, ok := p.resize(); ok || size != 64 {
		t.Errorf("fixed prefetch: window %d (resized %v), want 64 kept", size, ok)
	}
}
