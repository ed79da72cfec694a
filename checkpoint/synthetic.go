package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bertq/bertq/bert"
)

const syntheticPrefix = "synthetic:"

// syntheticModels are the generated models Synthetic knows, by source name.
var syntheticModels = map[string]func() bert.Config{
	"synthetic:bert-large": bert.Large,
}

// SyntheticNote is Info.Note for generated weights.
const SyntheticNote = "synthetic weights: a deterministic function of each tensor's name, not a trained model; " +
	"predictions are meaningless, but speed and numerical fidelity measured on it hold for real checkpoints of the same architecture"

// SyntheticModels lists the names Synthetic accepts, sorted.
func SyntheticModels() []string {
	names := make([]string, 0, len(syntheticModels))
	for n := range syntheticModels {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Synthetic generates the deterministic weights of a synthetic model
// ("synthetic:bert-large": the BERT-Large uncased architecture, 2 labels).
// Element i of each tensor is SyntheticValue(name, i); see
// testdata/README.md for the definition. Generation runs on all CPUs.
func Synthetic(name string) (*bert.Weights, *Info, error) {
	mk, ok := syntheticModels[name]
	if !ok {
		return nil, nil, fmt.Errorf("%s: no such synthetic model (known: %s): %w", name, strings.Join(SyntheticModels(), ", "), ErrUnknownSynthetic)
	}
	cfg := mk()
	specs := bert.TensorSpecs(cfg)
	src := make(mapSource, len(specs))
	var params int64
	for _, s := range specs {
		n := shapeSize(s.Shape)
		src[s.Name] = make([]float32, n)
		params += int64(n)
	}
	// Fill in parallel, in chunks spread over every tensor.
	type job struct {
		name string
		dst  []float32
		lo   int
	}
	const chunk = 1 << 18
	var jobs []job
	for _, s := range specs {
		t := src[s.Name]
		for lo := 0; lo < len(t); lo += chunk {
			jobs = append(jobs, job{s.Name, t[lo:min(lo+chunk, len(t))], lo})
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(jobs) {
					return
				}
				j := jobs[k]
				SyntheticFill(j.name, j.dst, j.lo)
			}
		}()
	}
	wg.Wait()
	w, err := bert.Assemble(cfg, src)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	sum := sha256.Sum256([]byte("bertq synthetic weights v1\n" + name + "\n"))
	c := cfg
	info := &Info{
		Source: name,
		Description: fmt.Sprintf("%s (generated; F32; %d layers, hidden %d, %d heads, %s, %d labels; predictions are meaningless)",
			name, c.NumLayers, c.HiddenSize, c.NumHeads, c.Activation, c.NumLabels),
		Digest:    hex.EncodeToString(sum[:]),
		DTypes:    []DType{F32},
		Params:    params,
		Synthetic: true,
		Note:      SyntheticNote,
	}
	return w, info, nil
}

// syntheticParams are (center, scale) of a tensor by its name.
func syntheticParams(name string) (center, scale float64) {
	switch {
	case strings.HasSuffix(name, "LayerNorm.weight"):
		return 1.0, 0.1
	case strings.HasSuffix(name, ".bias"):
		return 0.0, 0.02
	}
	return 0.0, 0.0346
}

// fnv1a64 is the 64-bit FNV-1a hash.
func fnv1a64(s string) uint64 {
	h := uint64(0xCBF29CE484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001B3
	}
	return h
}

// SyntheticValue is element i (row-major, PyTorch shape) of the synthetic
// tensor with the given Hugging Face name.
func SyntheticValue(name string, i int) float32 {
	var v [1]float32
	SyntheticFill(name, v[:], i)
	return v[0]
}

// SyntheticFill sets dst[k] to SyntheticValue(name, start+k).
func SyntheticFill(name string, dst []float32, start int) {
	seed := fnv1a64(name)
	center, scale := syntheticParams(name)
	const golden = 0x9E3779B97F4A7C15
	x0 := seed + uint64(start+1)*golden
	for k := range dst {
		x := x0 + uint64(k)*golden
		x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
		x = (x ^ x>>27) * 0x94D049BB133111EB
		x ^= x >> 31
		u := float64(int64(x>>40)) * 0x1p-24 // exact: x>>40 < 2^24
		// The explicit conversion rounds the product, so it is never fused
		// into a multiply-add: the reference arithmetic is unfused float64.
		dst[k] = float32(center + float64(scale*(2*u-1)))
	}
}

// mapSource is a bert.TensorSource over tensors in memory.
type mapSource map[string][]float32

func (m mapSource) Tensor(name string, shape ...int) ([]float32, error) {
	t, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("tensor %q: %w", name, ErrMissingTensor)
	}
	if len(t) != shapeSize(shape) {
		return nil, fmt.Errorf("tensor %q has %d elements, expected shape %v: %w", name, len(t), shape, ErrShape)
	}
	return t, nil
}
