package main

import (
	"fmt"
	"io"
	"sort"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
	_ "github.com/bertq/bertq/engine/gocpu"  // plain Go, always present
	_ "github.com/bertq/bertq/engine/onednn" // the CPU engine (oneDNN) when built with cgo
)

// loadModel opens an artifact and loads it on the chosen backend. The caller
// closes the model, then the file.
func loadModel(path, device string) (engine.Model, *artifact.File, error) {
	return loadModelWith(path, device, engine.Options{})
}

// loadModelWith is loadModel with backend options.
func loadModelWith(path, device string, opts engine.Options) (engine.Model, *artifact.File, error) {
	f, err := artifact.Open(path)
	if err != nil {
		return nil, nil, err
	}
	b, err := engine.Get(device)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	m, err := b.Load(f, opts)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("loading %s on %s: %w", path, b.Name(), err)
	}
	return m, f, nil
}

// warnUnavailable says which engines this binary cannot use here and why, so
// that nobody benchmarks the plain-Go fallback by accident.
func warnUnavailable(w io.Writer) {
	un := engine.Unavailable()
	names := make([]string, 0, len(un))
	for n := range un {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "note: engine %q unavailable: %v\n", n, un[n])
	}
}

// syntheticWarning is printed wherever a synthetic model shows up.
const syntheticWarning = "WARNING: this model has synthetic weights (synthetic:bert-large): its arithmetic is BERT-Large's, its predictions are meaningless"
