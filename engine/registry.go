package engine

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

var (
	mu       sync.RWMutex
	backends = map[string]Backend{}
)

// Register makes a backend available by name. Backends call it from init.
func Register(b Backend) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := backends[b.Name()]; dup {
		panic("engine: backend registered twice: " + b.Name())
	}
	backends[b.Name()] = b
}

// Backends lists the registered backend names, sorted.
func Backends() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(backends))
	for n := range backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// preference orders backends for "auto": accelerators first, plain Go last.
var preference = []string{"cuda", "onednn", "go"}

// Get returns the named backend, or for "auto" (or "") the first available one
// in order cuda, onednn, go. The error says what is missing and why.
func Get(name string) (Backend, error) {
	mu.RLock()
	defer mu.RUnlock()
	if name != "" && name != "auto" {
		b, ok := backends[name]
		if !ok {
			return nil, fmt.Errorf("%w %q (built with: %s)", ErrUnknownBackend, name, strings.Join(sortedKeys(), ", "))
		}
		if err := b.Available(); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, name, err)
		}
		return b, nil
	}
	var why []error
	for _, n := range preference {
		b, ok := backends[n]
		if !ok {
			continue
		}
		if err := b.Available(); err != nil {
			why = append(why, fmt.Errorf("%s: %v", n, err))
			continue
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: no backend can run here: %v", ErrUnavailable, errors.Join(why...))
}

// Unavailable reports, for every registered backend that cannot run here, why.
// Front ends print it so users know when they run without the fast engine.
func Unavailable() map[string]error {
	mu.RLock()
	defer mu.RUnlock()
	out := map[string]error{}
	for n, b := range backends {
		if err := b.Available(); err != nil {
			out[n] = err
		}
	}
	return out
}

func sortedKeys() []string {
	names := make([]string, 0, len(backends))
	for n := range backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
