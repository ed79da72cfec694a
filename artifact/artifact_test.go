package artifact

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/bertq/bertq/bert"
)

func smallHeader() Header {
	c := bert.Config{VocabSize: 10, HiddenSize: 4, NumLayers: 1, NumHeads: 2, IntermediateSize: 8,
		MaxPositions: 16, TypeVocabSize: 2, NumLabels: 2, Activation: bert.GELUExact, LayerNormEps: 1e-12}
	return Header{Model: c, Batch: 2, Seq: 8, Precision: BF16, Activation: bert.GELUExact, Lowercase: true}
}

func writeSmall(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.bqa")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w.F32("x", []int{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	w.BF16("y", []int{3}, []float32{1.5, -2, 3.140625})
	w.Bytes("z", []byte("hello"))
	if err := w.Close(smallHeader()); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRoundTrip(t *testing.T) {
	path := writeSmall(t)
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	x, err := a.F32("x", 2, 3)
	if err != nil || len(x) != 6 || x[5] != 6 {
		t.Fatalf("x = %v, %v", x, err)
	}
	y, err := a.Matrix("y", 3)
	if err != nil || y[0] != 1.5 || y[1] != -2 || y[2] != 3.140625 {
		t.Fatalf("y = %v, %v", y, err)
	}
	if z, err := a.Bytes("z"); err != nil || string(z) != "hello" {
		t.Fatalf("z = %q, %v", z, err)
	}
	for _, ti := range a.Header.Tensors {
		if ti.Offset%alignBytes != 0 {
			t.Errorf("tensor %s at unaligned offset %d", ti.Name, ti.Offset)
		}
	}
	if _, err := a.F32("x", 3, 2); err == nil {
		t.Error("wrong shape accepted")
	}
	if _, err := a.F32("nope"); !errors.Is(err, ErrMissingTensor) {
		t.Errorf("missing tensor: %v", err)
	}
	if _, err := a.BF16("x"); err == nil {
		t.Error("wrong dtype accepted")
	}
}

func TestSetHeaderKeepsTensors(t *testing.T) {
	path := writeSmall(t)
	if err := SetHeader(path, func(h *Header) { h.Verification = &Verification{Pairs: 4, MaxAbsLogitDiff: 0.01} }); err != nil {
		t.Fatal(err)
	}
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Header.Verification == nil || a.Header.Verification.MaxAbsLogitDiff != 0.01 {
		t.Fatalf("verification not recorded: %+v", a.Header.Verification)
	}
	if x, _ := a.F32("x"); x[0] != 1 {
		t.Fatal("tensor lost")
	}
}

func TestRefusesDamage(t *testing.T) {
	good, err := os.ReadFile(writeSmall(t))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		data []byte
		want error
	}{
		"empty":           {nil, ErrTruncated},
		"not an artifact": {[]byte("hello world, this is not an artifact at all, nope, not even close, definitely not"), ErrNotArtifact},
		"truncated":       {good[:len(good)-10], ErrTruncated},
		"cut in half":     {good[:len(good)/2], ErrTruncated},
		"bit flip":        {flip(good, 100), ErrChecksum},
		"header flip":     {flip(good, len(good)-footerLen-5), ErrChecksum},
		"version":         {flip(good, 8), ErrVersion},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.bqa")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func flip(b []byte, at int) []byte {
	c := append([]byte(nil), b...)
	c[at] ^= 0x40
	return c
}

func TestHeaderValidation(t *testing.T) {
	h := smallHeader()
	h.FormatVersion = FormatVersion
	h.Tensors = []TensorInfo{{Name: "x", DType: DTypeF32, Shape: []int{2}, Offset: 16, Size: 8}}
	if err := h.validate(16, 64); err != nil {
		t.Fatalf("valid header refused: %v", err)
	}
	bad := []func(*Header){
		func(h *Header) { h.Batch = 0 },
		func(h *Header) { h.Batch = 10000 },
		func(h *Header) { h.Seq = 0 },
		func(h *Header) { h.Seq = 100000 },
		func(h *Header) { h.Precision = "int3" },
		func(h *Header) { h.Activation = "relu" },
		func(h *Header) { h.Tensors[0].Size = 12 },
		func(h *Header) { h.Tensors[0].Offset = 60 },
		func(h *Header) { h.Tensors[0].Shape = []int{-2} },
		func(h *Header) { h.Tensors[0].DType = "f8" },
		func(h *Header) { h.Tensors = append(h.Tensors, h.Tensors[0]) },
		func(h *Header) { h.Model.NumHeads = 3 },
	}
	for i, mutate := range bad {
		c := h
		c.Tensors = append([]TensorInfo(nil), h.Tensors...)
		mutate(&c)
		if err := c.validate(16, 64); !errors.Is(err, ErrHeader) {
			t.Errorf("case %d: got %v, want ErrHeader", i, err)
		}
	}
}

func TestBF16Rounding(t *testing.T) {
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, odd rounds up
		{math.Float32frombits(0x3f808001), 0x3f81},
		{float32(math.Inf(1)), 0x7f80},
	} {
		if got := ToBF16(c.in); got != c.want {
			t.Errorf("ToBF16(%v) = %#x, want %#x", c.in, got, c.want)
		}
	}
	if v := FromBF16(ToBF16(float32(math.NaN()))); !math.IsNaN(float64(v)) {
		t.Error("NaN lost")
	}
}

// FuzzParse feeds arbitrary bytes to the artifact parser: it must refuse or
// accept without panicking, and whatever it accepts must have in-bounds tensors.
func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "a.bqa")
	w, _ := Create(path)
	w.F32("x", []int{2}, []float32{1, 2})
	if err := w.Close(smallHeader()); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add(good[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Parse(b)
		if err != nil {
			return
		}
		for _, ti := range a.Header.Tensors {
			if ti.Offset+ti.Size > int64(len(b)) {
				t.Fatalf("tensor %s out of bounds", ti.Name)
			}
		}
	})
}

// FuzzHeader feeds arbitrary JSON to the header decoder: the checksum guards
// the file, so this is what a maliciously re-checksummed file could reach.
func FuzzHeader(f *testing.F) {
	f.Add([]byte(`{"format_version":1,"batch":4,"seq":128,"precision":"bf16","activation":"gelu","tensors":[{"name":"x","dtype":"f32","shape":[2],"offset":16,"size":8}]}`))
	f.Add([]byte(`{"tensors":[{"shape":[9223372036854775807,9223372036854775807]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b, 16, 1<<20)
		if err != nil {
			return
		}
		for _, ti := range h.Tensors {
			if ti.Offset < 16 || ti.Offset+ti.Size > 1<<20 {
				t.Fatalf("tensor %s out of bounds", ti.Name)
			}
		}
	})
}
