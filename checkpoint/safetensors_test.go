package checkpoint

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// image builds a safetensors file image from a literal header and data.
func image(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func f32bytes(v ...float32) []byte {
	b, _ := EncodeFloat32(F32, v)
	return b
}

func TestSafetensorsReadsAllDTypes(t *testing.T) {
	f32 := []float32{1, -2.5, float32(math.Inf(1)), 1e-45, 3.4028235e38, float32(math.Copysign(0, -1))}
	// F16 bit patterns and their exact values.
	f16bits := []uint16{0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x8001, 0x7c00, 0xfc00, 0x8000, 0x3555}
	f16want := []float32{1, -2, 65504, 0x1p-24, 1023 * 0x1p-24, 0x1p-14, -0x1p-24, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.Copysign(0, -1)), 0.333251953125}
	bf16bits := []uint16{0x3f80, 0xc020, 0x7f80, 0x0001, 0x3eab, 0x8000}
	bf16want := []float32{1, -2.5, float32(math.Inf(1)), 0x1p-133, 0.333984375, float32(math.Copysign(0, -1))}
	le16 := func(v []uint16) []byte {
		b := make([]byte, 0, 2*len(v))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint16(b, x)
		}
		return b
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	err := WriteSafetensors(p, []RawTensor{
		{Name: "a", DType: F32, Shape: []int{2, 3}, Data: f32bytes(f32...)},
		{Name: "h", DType: F16, Shape: []int{len(f16bits)}, Data: le16(f16bits)},
		{Name: "b", DType: BF16, Shape: []int{len(bf16bits), 1}, Data: le16(bf16bits)},
		{Name: "nan", DType: F16, Shape: []int{2}, Data: le16([]uint16{0x7e00, 0xfd01})},
		{Name: "empty", DType: F32, Shape: []int{0, 5}},
		{Name: "scalar", DType: BF16, Shape: []int{}, Data: le16([]uint16{0x4040})},
		{Name: "position_ids", DType: "I64", Shape: []int{1, 2}, Data: make([]byte, 16)},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Metadata()["format"]; got != "pt" {
		t.Errorf("metadata format = %q", got)
	}
	if want := []string{"a", "b", "empty", "h", "nan", "position_ids", "scalar"}; !slices.Equal(f.Names(), want) {
		t.Errorf("Names = %v, want %v", f.Names(), want)
	}
	check := func(name string, shape []int, want []float32) {
		t.Helper()
		got, err := f.Tensor(name, shape...)
		if err != nil {
			t.Fatalf("Tensor(%s): %v", name, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
		}
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Errorf("%s[%d] = %v (%#08x), want %v (%#08x)", name, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
		}
	}
	check("a", []int{2, 3}, f32)
	check("h", []int{len(f16bits)}, f16want)
	check("b", []int{len(bf16bits), 1}, bf16want)
	check("empty", []int{0, 5}, nil)
	check("scalar", nil, []float32{3})
	nan, err := f.Tensor("nan", 2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Float32bits(nan[0]) != 0x7fc00000 || math.Float32bits(nan[1]) != 0xffa02000 {
		t.Errorf("F16 NaNs = %#08x %#08x, want 0x7fc00000 0xffa02000", math.Float32bits(nan[0]), math.Float32bits(nan[1]))
	}
	_, err = f.Tensor("position_ids", 1, 2)
	if !errors.Is(err, ErrDType) || !strings.Contains(err.Error(), "I64") || !strings.Contains(err.Error(), p) {
		t.Errorf("I64 tensor: err = %v, want ErrDType naming I64 and the file", err)
	}
	if info, ok := f.Info("h"); !ok || info.DType != F16 || info.NumElements() != int64(len(f16bits)) {
		t.Errorf("Info(h) = %+v, %v", info, ok)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("a", 2, 3); err == nil {
		t.Error("Tensor after Close succeeded")
	}
}

// f16Reference decodes binary16 in float64 arithmetic, independently of
// F16ToFloat32's bit manipulation.
func f16Reference(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * mant * 0x1p-24
	case 0x1f:
		if mant == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * (1 + mant/1024) * math.Ldexp(1, exp-15)
}

func TestF16Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := F16ToFloat32(h)
		want := f16Reference(h)
		if math.IsNaN(want) {
			bits := math.Float32bits(got)
			if !math.IsNaN(float64(got)) || bits&0x1fff != 0 || uint16(bits>>13)&0x3ff != h&0x3ff || (bits>>31 == 1) != (h>>15 == 1) {
				t.Fatalf("F16ToFloat32(%#04x) = %#08x, want NaN with the same sign and payload", h, bits)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("F16ToFloat32(%#04x) = %v, want %v", h, got, want)
		}
		if back := Float32ToF16(got); back != h {
			t.Fatalf("Float32ToF16(F16ToFloat32(%#04x)) = %#04x", h, back)
		}
		if BF16ToFloat32(h) != math.Float32frombits(uint32(h)<<16) {
			t.Fatalf("BF16ToFloat32(%#04x)", h)
		}
	}
}

// TestFloat32ToF16Rounding checks the encoder against nearest-even rounding
// decided in float64.
func TestFloat32ToF16Rounding(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := []float32{0x1p-25, 0x1.8p-25, 0x1p-26, 65519.99, 65520, 65504, 0x1.002p0, 0x1.006p0, 0x1.001p0, 0x1.003p0, 1e-8, 1e-45, 2.9802322e-08}
	for range 200000 {
		cases = append(cases, math.Float32frombits(r.Uint32()))
		cases = append(cases, float32(r.NormFloat64())*float32(math.Ldexp(1, r.IntN(44)-28)))
	}
	for _, f := range cases {
		if math.IsNaN(float64(f)) {
			if h := Float32ToF16(f); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
				t.Fatalf("Float32ToF16(NaN %#08x) = %#04x, not a NaN", math.Float32bits(f), h)
			}
			continue
		}
		h := Float32ToF16(f)
		got := f16Reference(h)
		x := float64(f)
		if math.IsInf(got, 0) {
			// Overflow: |x| must be at least 65520 (halfway to 2^16).
			if math.Abs(x) < 65520 || math.Signbit(got) != math.Signbit(x) {
				t.Fatalf("Float32ToF16(%v) = Inf", f)
			}
			continue
		}
		err := math.Abs(x - got)
		for _, n := range []uint16{h + 1, h - 1} { // neighbours in the same sign
			if n&0x7fff > 0x7c00 || (n^h)&0x8000 != 0 {
				continue
			}
			alt := f16Reference(n)
			d := math.Abs(x - alt)
			if d < err || d == err && h&1 == 1 {
				t.Fatalf("Float32ToF16(%v) = %#04x (%v), but %#04x (%v) is nearer or the even tie", f, h, got, n, alt)
			}
		}
		if h&0x7fff == 0 && x != 0 && math.Abs(x) > 0x1p-25 {
			t.Fatalf("Float32ToF16(%v) flushed to zero", f)
		}
		if math.Signbit(got) != math.Signbit(x) {
			t.Fatalf("Float32ToF16(%v) = %#04x lost the sign", f, h)
		}
	}
}

func TestFloat32ToBF16Rounding(t *testing.T) {
	cases := map[float32]uint16{
		1:                                0x3f80,
		math.Float32frombits(0x3f808000): 0x3f80, // tie, even stays
		math.Float32frombits(0x3f818000): 0x3f82, // tie, odd rounds up
		math.Float32frombits(0x3f808001): 0x3f81,
		math.Float32frombits(0x7f7fffff): 0x7f80, // rounds to Inf
		float32(math.Inf(-1)):            0xff80,
	}
	for f, want := range cases {
		if got := Float32ToBF16(f); got != want {
			t.Errorf("Float32ToBF16(%#08x) = %#04x, want %#04x", math.Float32bits(f), got, want)
		}
	}
	if h := Float32ToBF16(float32(math.NaN())); h&0x7f80 != 0x7f80 || h&0x7f == 0 {
		t.Errorf("Float32ToBF16(NaN) = %#04x", h)
	}
}

// TestSafetensorsBadInput opens hand-built broken files: every one must fail
// with the right sentinel and a message naming the file and the problem.
func TestSafetensorsBadInput(t *testing.T) {
	valid := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	cases := []struct {
		name string
		file []byte
		want error
		msg  string
	}{
		{"empty file", nil, ErrCorrupt, "too short"},
		{"five bytes", []byte{1, 2, 3, 4, 5}, ErrCorrupt, "too short"},
		{"header length beyond file", image(valid, f32bytes(1, 2))[:30], ErrCorrupt, "header length 54 is larger than the 22 bytes"},
		{"absurd header length", append(binary.LittleEndian.AppendUint64(nil, 1<<63), "{}"...), ErrCorrupt, "header length"},
		{"huge header length", binary.LittleEndian.AppendUint64(nil, 200<<20), ErrCorrupt, "limit"}, // extended below
		{"tiny header", image("{", nil), ErrCorrupt, "too short for a JSON object"},
		{"truncated data", image(valid, f32bytes(1)), ErrCorrupt, "run past the 4-byte data section"},
		{"invalid JSON", image(`{"a":{"dtype":"F32",`, nil), ErrCorrupt, "invalid header JSON"},
		{"not an object", image(`[1, 2]`, nil), ErrCorrupt, "does not start with '{'"},
		{"trailing garbage", image(`{} x`, nil), ErrCorrupt, "invalid header JSON"},
		{"second object", image(`{}{}`, nil), ErrCorrupt, "after the object"},
		{"not UTF-8", image("{\"\xff\":1}", nil), ErrCorrupt, "UTF-8"},
		{"duplicate tensor", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32bytes(1, 2)), ErrCorrupt, `lists "a" twice`},
		{"entry not an object", image(`{"a":7}`, nil), ErrCorrupt, `tensor "a": invalid entry`},
		{"bad metadata", image(`{"__metadata__":{"x":1}}`, nil), ErrCorrupt, "__metadata__"},
		{"no dtype", image(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, f32bytes(1, 2)), ErrCorrupt, "no dtype"},
		{"no shape", image(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, f32bytes(1, 2)), ErrCorrupt, "no shape"},
		{"no offsets", image(`{"a":{"dtype":"F32","shape":[2]}}`, f32bytes(1, 2)), ErrCorrupt, "no data_offsets"},
		{"unknown dtype", image(`{"a":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}}`, f32bytes(1, 2)), ErrDType, `"Q4_K"`},
		{"negative dim", image(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, f32bytes(1, 2)), ErrCorrupt, "out of range"},
		{"absurd dim", image(`{"a":{"dtype":"F32","shape":[1125899906842624],"data_offsets":[0,8]}}`, f32bytes(1, 2)), ErrCorrupt, "out of range"},
		{"absurd dim beside zero", image(`{"a":{"dtype":"F32","shape":[0,1125899906842624],"data_offsets":[0,0]}}`, nil), ErrCorrupt, "out of range"},
		{"element overflow", image(`{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}`, f32bytes(1, 2)), ErrCorrupt, "elements"},
		{"huge rank", image(`{"a":{"dtype":"F32","shape":[`+strings.Repeat("1,", 40)+`1],"data_offsets":[0,4]}}`, f32bytes(1)), ErrCorrupt, "rank"},
		{"fractional dim", image(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}`, f32bytes(1, 2)), ErrCorrupt, "invalid entry"},
		{"three offsets", image(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}`, f32bytes(1, 2)), ErrCorrupt, "[begin, end]"},
		{"inverted offsets", image(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, f32bytes(1, 2)), ErrCorrupt, "inverted"},
		{"negative offset", image(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[-4,0]}}`, nil), ErrCorrupt, "negative"},
		{"size mismatch", image(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, f32bytes(1, 2)), ErrCorrupt, "span 8 bytes, but F32 [3] needs 12"},
		{"bf16 size mismatch", image(`{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}}`, f32bytes(1, 2)), ErrCorrupt, "needs 4"},
		{"overlap", image(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, f32bytes(1, 2, 3)), ErrCorrupt, `"b" (bytes 4..12) overlaps tensor "a"`},
		{"same offsets", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, f32bytes(1)), ErrCorrupt, "overlaps"},
		{"hole", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, f32bytes(1, 2, 3)), ErrCorrupt, "belong to no tensor"},
		{"trailing data", image(valid, f32bytes(1, 2, 3)), ErrCorrupt, "data section is 12 bytes but its tensors cover 8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeTemp(t, "bad.safetensors", c.file)
			if c.name == "huge header length" { // a sparse file big enough to hold the header
				if err := os.Truncate(p, 8+200<<20); err != nil {
					t.Fatal(err)
				}
			}
			f, err := OpenSafetensors(p)
			if err == nil {
				f.Close()
				t.Fatalf("OpenSafetensors succeeded, want %v", c.want)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), p+": ") || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want it to start with the file name and contain %q", err, c.msg)
			}
		})
	}
}

func TestSafetensorsLookupErrors(t *testing.T) {
	p := writeTemp(t, "m.safetensors", image(`{"w":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]}}`, f32bytes(1, 2, 3, 4, 5, 6)))
	f, err := OpenSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = f.Tensor("w", 2, 3)
	if !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "has shape [3 2], expected [2 3]") || !strings.Contains(err.Error(), p) {
		t.Errorf("wrong shape: err = %v", err)
	}
	_, err = f.Tensor("w", 6)
	if !errors.Is(err, ErrShape) {
		t.Errorf("flattened shape accepted: err = %v", err)
	}
	_, err = f.Tensor("v", 3, 2)
	if !errors.Is(err, ErrMissingTensor) || !strings.Contains(err.Error(), `"v"`) || !strings.Contains(err.Error(), p) {
		t.Errorf("missing tensor: err = %v", err)
	}
	v, err := f.Float32("w")
	if err != nil || len(v) != 6 || v[5] != 6 {
		t.Errorf("Float32(w) = %v, %v", v, err)
	}

	missing := filepath.Join(t.TempDir(), "nope.safetensors")
	if _, err := OpenSafetensors(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v", err)
	}
	if _, err := OpenSafetensors(t.TempDir()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: err = %v", err)
	}
}

// TestSafetensorsLargeParallelConvert covers the chunked conversion path.
func TestSafetensorsLargeParallelConvert(t *testing.T) {
	n := 3<<20 + 7
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%256) / 8 // exact in F16 and BF16
	}
	for _, dt := range []DType{F32, F16, BF16} {
		data, err := EncodeFloat32(dt, v)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "big.safetensors")
		if err := WriteSafetensors(p, []RawTensor{{Name: "x", DType: dt, Shape: []int{n}, Data: data}}, nil); err != nil {
			t.Fatal(err)
		}
		f, err := OpenSafetensors(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.Tensor("x", n)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			if got[i] != v[i] {
				t.Fatalf("%s: [%d] = %v, want %v", dt, i, got[i], v[i])
			}
		}
	}
}

// checkAccepted re-verifies, independently of checkLayout, what a file that
// parsed must satisfy, and reads every tensor.
func checkAccepted(t *testing.T, f *File) {
	dataLen := f.size - f.dataStart
	type span struct{ b, e int64 }
	var spans []span
	for _, name := range f.Names() {
		ti, _ := f.Info(name)
		size := int64(ti.DType.Size())
		if size == 0 {
			t.Fatalf("accepted unknown dtype %q", ti.DType)
		}
		if ti.Begin < 0 || ti.End < ti.Begin || ti.End > dataLen {
			t.Fatalf("accepted offsets [%d,%d] with %d data bytes", ti.Begin, ti.End, dataLen)
		}
		if ti.End-ti.Begin != ti.NumElements()*size {
			t.Fatalf("accepted %s %v in %d bytes", ti.DType, ti.Shape, ti.End-ti.Begin)
		}
		spans = append(spans, span{ti.Begin, ti.End})
		v, err := f.Tensor(name, ti.Shape...)
		switch ti.DType {
		case F32, F16, BF16:
			if err != nil || int64(len(v)) != ti.NumElements() {
				t.Fatalf("Tensor(%q) = %d values, %v", name, len(v), err)
			}
		default:
			if !errors.Is(err, ErrDType) {
				t.Fatalf("Tensor(%q) of %s: err = %v", name, ti.DType, err)
			}
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmpInt64(a.b, b.b)*2 + cmpInt64(a.e, b.e) })
	var pos int64
	for _, s := range spans {
		if s.b != pos {
			t.Fatalf("accepted overlapping or holed layout %v of %d bytes", spans, dataLen)
		}
		pos = s.e
	}
	if pos != dataLen {
		t.Fatalf("accepted layout %v not covering %d bytes", spans, dataLen)
	}
}

var fuzzHeaders = []string{
	`{}`,
	`{"__metadata__":{"format":"pt"}}`,
	`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`,
	`{"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}`,
	`{"a":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"b":{"dtype":"I64","shape":[0],"data_offsets":[2,2]}}`,
	`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
	`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`,
	`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}`,
	`{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`,
	`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`,
}

// FuzzSafetensorsHeader feeds arbitrary headers over a zero-filled data
// section: parsing must never panic, and whatever it accepts must be
// consistent.
func FuzzSafetensorsHeader(f *testing.F) {
	for i, h := range fuzzHeaders {
		f.Add(h, uint16(8*(i%3)))
	}
	f.Fuzz(func(t *testing.T, header string, dataLen uint16) {
		file, err := parseSafetensors("fuzz", image(header, make([]byte, dataLen%4096)))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrDType) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		checkAccepted(t, file)
	})
}

// FuzzSafetensorsFile feeds arbitrary whole files, including the length prefix.
func FuzzSafetensorsFile(f *testing.F) {
	for _, h := range fuzzHeaders {
		f.Add(image(h, make([]byte, 8)))
	}
	f.Add([]byte{})
	f.Add(binary.LittleEndian.AppendUint64(nil, math.MaxUint64))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := parseSafetensors("fuzz", b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrDType) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		checkAccepted(t, file)
	})
}
