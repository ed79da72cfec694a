package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/bertq/bertq/bert"
)

// DType is a safetensors element type, spelled as in the file header.
type DType string

// The dtypes Tensor converts to float32. Other well-known safetensors dtypes
// (I64, F64, U8, ...) are accepted in a header, so that files carrying extra
// buffers such as position_ids still open, but reading them as float32 fails
// with ErrDType.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
)

// dtypeSizes are the element sizes in bytes of every dtype a header may use.
var dtypeSizes = map[DType]int64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
	"I16": 2, "U16": 2, F16: 2, BF16: 2,
	"I32": 4, "U32": 4, F32: 4,
	"I64": 8, "U64": 8, "F64": 8, "C64": 8,
}

// Size is the element size in bytes, or 0 for a dtype this package does not know.
func (d DType) Size() int { return int(dtypeSizes[d]) }

// Limits that keep a hostile header from asking for absurd work.
const (
	maxHeaderLen = 100 << 20 // the safetensors reference implementation's limit
	maxRank      = 32
	maxDim       = 1 << 40
)

// TensorInfo describes one tensor of a safetensors file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are byte offsets relative to the start of the data
	// section (just after the header), as in the header's data_offsets.
	Begin, End int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// File is an open safetensors file. It reads tensors from a read-only memory
// map of the file (or with ReadAt where mapping is not possible), so a tensor
// is copied once, straight into its float32 slice. A File is safe for
// concurrent use; Close it when done (slices it returned stay valid). As with
// any memory map, the file must not be truncated while it is open.
type File struct {
	path      string
	size      int64
	dataStart int64 // 8 + header length
	tensors   map[string]TensorInfo
	names     []string // sorted
	meta      map[string]string

	mu     sync.RWMutex
	mem    []byte      // the whole file (mapped or in memory); nil when reading through ra
	ra     io.ReaderAt // used when mem is nil
	closer func() error
	closed bool
}

var (
	_ bert.TensorSource = (*File)(nil)
	_ bert.TensorSource = (*Dir)(nil)
)

// OpenSafetensors opens and validates a safetensors file: the header must be
// well-formed JSON and every tensor's data_offsets must lie inside the data
// section, match its dtype and shape, and not overlap another tensor's, with
// the data section exactly covered (as the format requires).
func OpenSafetensors(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError: names the file, wraps fs.ErrNotExist etc.
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	if st.IsDir() {
		fh.Close()
		return nil, fmt.Errorf("%s: is a directory, not a safetensors file: %w", path, ErrCorrupt)
	}
	f, err := parseFile(path, fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, err
	}
	if mem, unmap, err := mmapFile(fh, st.Size()); err == nil {
		fh.Close() // the mapping outlives the descriptor
		f.mem, f.closer = mem, unmap
	} else {
		f.ra, f.closer = fh, fh.Close
	}
	return f, nil
}

// parseSafetensors validates an in-memory safetensors image; name is used in
// error messages.
func parseSafetensors(name string, b []byte) (*File, error) {
	f, err := parseFile(name, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	f.mem = b
	return f, nil
}

// parseFile reads and validates the header of a safetensors image of the
// given size.
func parseFile(name string, r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, fmt.Errorf("%s: file is %d bytes, too short to hold the 8-byte header length (truncated?): %w", name, size, ErrCorrupt)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading header length: %v: %w", name, err, ErrCorrupt)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	switch {
	case n > uint64(size-8):
		return nil, fmt.Errorf("%s: header length %d is larger than the %d bytes after it (truncated or not a safetensors file): %w", name, n, size-8, ErrCorrupt)
	case n > maxHeaderLen:
		return nil, fmt.Errorf("%s: header length %d exceeds the %d-byte limit: %w", name, n, maxHeaderLen, ErrCorrupt)
	case n < 2:
		return nil, fmt.Errorf("%s: header length %d is too short for a JSON object: %w", name, n, ErrCorrupt)
	}
	hdr := make([]byte, n)
	if _, err := r.ReadAt(hdr, 8); err != nil {
		return nil, fmt.Errorf("%s: reading %d-byte header: %v: %w", name, n, err, ErrCorrupt)
	}
	dataStart := 8 + int64(n)
	tensors, meta, err := parseHeader(hdr, size-dataStart)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	names := make([]string, 0, len(tensors))
	for k := range tensors {
		names = append(names, k)
	}
	sort.Strings(names)
	return &File{path: name, size: size, dataStart: dataStart, tensors: tensors, names: names, meta: meta}, nil
}

// rawEntry is one tensor entry of the header; pointers tell absent from zero.
type rawEntry struct {
	DType   *string  `json:"dtype"`
	Shape   *[]int64 `json:"shape"`
	Offsets *[]int64 `json:"data_offsets"`
}

// parseHeader validates the JSON header against a data section of dataLen
// bytes. Its errors wrap ErrCorrupt or ErrDType and do not name the file.
func parseHeader(hdr []byte, dataLen int64) (map[string]TensorInfo, map[string]string, error) {
	corrupt := func(format string, a ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), ErrCorrupt)
	}
	if !utf8.Valid(hdr) {
		return nil, nil, corrupt("header is not valid UTF-8")
	}
	if hdr[0] != '{' {
		return nil, nil, corrupt("header does not start with '{' (not a safetensors file?)")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, nil, corrupt("invalid header JSON: %v", err)
	}
	tensors := make(map[string]TensorInfo)
	var meta map[string]string
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, corrupt("invalid header JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, corrupt("invalid header JSON: unexpected %v", tok)
		}
		if seen[key] {
			return nil, nil, corrupt("header lists %q twice", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, corrupt("invalid header JSON at %q: %v", key, err)
		}
		if key == "__metadata__" {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, corrupt("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		t, err := parseEntry(key, raw, dataLen)
		if err != nil {
			return nil, nil, err
		}
		tensors[key] = t
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, nil, corrupt("invalid header JSON: %v", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, corrupt("invalid header JSON after the object: %v", err)
		}
		return nil, nil, corrupt("invalid header JSON: unexpected %v after the object", tok)
	}
	if err := checkLayout(tensors, dataLen); err != nil {
		return nil, nil, err
	}
	return tensors, meta, nil
}

// parseEntry validates one tensor entry on its own.
func parseEntry(name string, raw json.RawMessage, dataLen int64) (TensorInfo, error) {
	corrupt := func(format string, a ...any) error {
		return fmt.Errorf("tensor %q: %s: %w", name, fmt.Sprintf(format, a...), ErrCorrupt)
	}
	var e rawEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return TensorInfo{}, corrupt("invalid entry %s: %v", clip(raw), err)
	}
	switch {
	case e.DType == nil:
		return TensorInfo{}, corrupt("no dtype")
	case e.Shape == nil:
		return TensorInfo{}, corrupt("no shape")
	case e.Offsets == nil:
		return TensorInfo{}, corrupt("no data_offsets")
	}
	dt := DType(*e.DType)
	size, ok := dtypeSizes[dt]
	if !ok {
		return TensorInfo{}, fmt.Errorf("tensor %q: dtype %q is not a known safetensors dtype: %w", name, *e.DType, ErrDType)
	}
	shape := *e.Shape
	if len(shape) > maxRank {
		return TensorInfo{}, corrupt("rank %d exceeds %d", len(shape), maxRank)
	}
	dims := make([]int, len(shape))
	nelem := int64(1)
	for i, d := range shape {
		if d < 0 || d > maxDim {
			return TensorInfo{}, corrupt("dimension %d of shape %v is %d, out of range", i, shape, d)
		}
		dims[i] = int(d)
		if nelem != 0 && d > math.MaxInt64/nelem {
			return TensorInfo{}, corrupt("shape %v has too many elements", shape)
		}
		nelem *= d
	}
	// Any shape whose element count is plausible has nelem*size ≤ dataLen.
	if nelem > dataLen/size+1 {
		return TensorInfo{}, corrupt("shape %v needs %d elements of %s, more than the %d-byte data section holds", shape, nelem, dt, dataLen)
	}
	off := *e.Offsets
	if len(off) != 2 {
		return TensorInfo{}, corrupt("data_offsets must be [begin, end], got %v", off)
	}
	begin, end := off[0], off[1]
	switch {
	case begin < 0 || end < begin:
		return TensorInfo{}, corrupt("data_offsets [%d, %d] are inverted or negative", begin, end)
	case end > dataLen:
		return TensorInfo{}, corrupt("data_offsets [%d, %d] run past the %d-byte data section (file truncated?)", begin, end, dataLen)
	case end-begin != nelem*size:
		return TensorInfo{}, corrupt("data_offsets [%d, %d] span %d bytes, but %s %v needs %d", begin, end, end-begin, dt, shape, nelem*size)
	}
	return TensorInfo{Name: name, DType: dt, Shape: dims, Begin: begin, End: end}, nil
}

// checkLayout requires the tensors to tile the data section exactly: no
// overlaps, no holes, nothing after the last tensor.
func checkLayout(tensors map[string]TensorInfo, dataLen int64) error {
	list := make([]TensorInfo, 0, len(tensors))
	for _, t := range tensors {
		list = append(list, t)
	}
	slices.SortFunc(list, func(a, b TensorInfo) int {
		if a.Begin != b.Begin {
			return cmpInt64(a.Begin, b.Begin)
		}
		if a.End != b.End {
			return cmpInt64(a.End, b.End)
		}
		return bytes.Compare([]byte(a.Name), []byte(b.Name))
	})
	var pos int64
	prev := ""
	for _, t := range list {
		switch {
		case t.Begin < pos:
			return fmt.Errorf("tensor %q (bytes %d..%d) overlaps tensor %q (ending at %d): %w", t.Name, t.Begin, t.End, prev, pos, ErrCorrupt)
		case t.Begin > pos:
			return fmt.Errorf("bytes %d..%d of the data section belong to no tensor (before %q): %w", pos, t.Begin, t.Name, ErrCorrupt)
		}
		pos, prev = t.End, t.Name
	}
	if pos != dataLen {
		return fmt.Errorf("data section is %d bytes but its tensors cover %d: %w", dataLen, pos, ErrCorrupt)
	}
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// clip shortens a header fragment for an error message.
func clip(b []byte) string {
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}

// Path is the file's path as given to OpenSafetensors.
func (f *File) Path() string { return f.path }

// Names lists the tensors in the file, sorted.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Info describes the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	t, ok := f.tensors[name]
	if ok {
		t.Shape = slices.Clone(t.Shape)
	}
	return t, ok
}

// Metadata is the header's __metadata__ map (nil if absent).
func (f *File) Metadata() map[string]string { return f.meta }

// Tensor implements bert.TensorSource: it returns the named tensor converted
// to float32 (F32, F16 and BF16 exactly), after checking that its shape is
// exactly shape.
func (f *File) Tensor(name string, shape ...int) ([]float32, error) {
	t, ok := f.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q not found: %w", f.path, name, ErrMissingTensor)
	}
	if !slices.Equal(t.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v, expected %v: %w", f.path, name, t.Shape, shape, ErrShape)
	}
	return f.read(t)
}

// Float32 returns the named tensor converted to float32, whatever its shape.
func (f *File) Float32(name string) ([]float32, error) {
	t, ok := f.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q not found: %w", f.path, name, ErrMissingTensor)
	}
	return f.read(t)
}

func (f *File) read(t TensorInfo) ([]float32, error) {
	switch t.DType {
	case F32, F16, BF16:
	default:
		return nil, fmt.Errorf("%s: tensor %q has dtype %s; only F32, F16 and BF16 can be loaded: %w", f.path, t.Name, t.DType, ErrDType)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, fmt.Errorf("%s: read of tensor %q after Close", f.path, t.Name)
	}
	off, n := f.dataStart+t.Begin, t.End-t.Begin
	var src []byte
	if f.mem != nil {
		src = f.mem[off : off+n]
	} else {
		src = make([]byte, n)
		if _, err := f.ra.ReadAt(src, off); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("file shrank while open: %w", ErrCorrupt)
			}
			return nil, fmt.Errorf("%s: reading tensor %q: %w", f.path, t.Name, err)
		}
	}
	out := make([]float32, t.NumElements())
	convert(t.DType, out, src)
	return out, nil
}

// Close releases the mapping or descriptor. Slices already returned stay valid.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.mem, f.ra = nil, nil
	if f.closer != nil {
		return f.closer()
	}
	return nil
}

// convert decodes little-endian src of dtype dt into dst, in parallel for
// large tensors.
func convert(dt DType, dst []float32, src []byte) {
	const chunk = 1 << 20
	if len(dst) <= chunk {
		convertSerial(dt, dst, src)
		return
	}
	size := dt.Size()
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for lo := 0; lo < len(dst); lo += chunk {
		hi := min(lo+chunk, len(dst))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			convertSerial(dt, dst[lo:hi], src[lo*size:hi*size])
			<-sem
		}()
	}
	wg.Wait()
}

func convertSerial(dt DType, dst []float32, src []byte) {
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	default:
		panic("checkpoint: convert " + string(dt)) // read() filters dtypes
	}
}

// F16ToFloat32 converts IEEE 754 binary16 bits to float32 exactly, including
// subnormals, infinities and NaNs (the payload is kept).
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal: rebias 15 → 127
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0: // ±0
		return math.Float32frombits(sign)
	}
	// Subnormal: mant·2^-24. Normalize so the leading 1 becomes implicit.
	e := uint32(113) // biased float32 exponent of 2^-14
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// BF16ToFloat32 converts bfloat16 bits to float32 (exact: bf16 is the top half
// of a float32).
func BF16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }
