//go:build race

package worker_test

// raceEnabled: the race detector slows the plain-Go engine tenfold, so the
// real-model test sends fewer pairs.
const raceEnabled = true
