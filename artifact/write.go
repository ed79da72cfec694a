package artifact

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"hash"
	"io"
	"math"
	"os"
	"unsafe"
)

const (
	magic      = "BERTQART"
	endMagic   = "BERTQEND"
	prefixLen  = 16
	footerLen  = 8 + 8 + 8 + sha256.Size
	alignBytes = 64
)

// Writer streams an artifact to a file: tensors first, then the header.
type Writer struct {
	f   *os.File
	bw  *bufio.Writer
	sum hash.Hash
	off int64
	hdr Header
	err error
}

// Create starts an artifact at path (truncating it).
func Create(path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := &Writer{f: f, sum: sha256.New()}
	w.bw = bufio.NewWriterSize(io.MultiWriter(f, w.sum), 1<<20)
	var pre [prefixLen]byte
	copy(pre[:], magic)
	binary.LittleEndian.PutUint32(pre[8:], FormatVersion)
	w.write(pre[:])
	return w, w.err
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.bw.Write(b)
	w.off += int64(n)
	w.err = err
}

func (w *Writer) pad() {
	if r := w.off % alignBytes; r != 0 {
		w.write(make([]byte, alignBytes-r))
	}
}

func (w *Writer) begin(name string, dt DType, shape []int, size int64) {
	w.pad()
	w.hdr.Tensors = append(w.hdr.Tensors, TensorInfo{Name: name, DType: dt, Shape: append([]int(nil), shape...), Offset: w.off, Size: size})
}

// F32 appends a float32 tensor.
func (w *Writer) F32(name string, shape []int, data []float32) {
	w.begin(name, DTypeF32, shape, int64(len(data))*4)
	w.write(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), len(data)*4))
}

// BF16 appends data rounded to bfloat16 (round to nearest even).
func (w *Writer) BF16(name string, shape []int, data []float32) {
	w.begin(name, DTypeBF16, shape, int64(len(data))*2)
	buf := make([]byte, 0, 1<<16)
	for i, v := range data {
		buf = binary.LittleEndian.AppendUint16(buf, ToBF16(v))
		if len(buf) == cap(buf) || i == len(data)-1 {
			w.write(buf)
			buf = buf[:0]
		}
	}
}

// I8 appends an int8 tensor.
func (w *Writer) I8(name string, shape []int, data []int8) {
	w.begin(name, DTypeI8, shape, int64(len(data)))
	w.write(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), len(data)))
}

// Matrix appends an encoder weight, row-major [k][n], stored as precision p
// asks: f32, bf16, or s8 with its column scales beside it (ScaleTensor).
func (w *Writer) Matrix(name string, k, n int, data []float32, p Precision) {
	switch p {
	case BF16:
		w.BF16(name, []int{k, n}, data)
	case INT8:
		q, scale := QuantizeS8(data, k, n)
		w.I8(name, []int{k, n}, q)
		w.F32(ScaleTensor(name), []int{n}, scale)
	default:
		w.F32(name, []int{k, n}, data)
	}
}

// Bytes appends a raw byte tensor.
func (w *Writer) Bytes(name string, data []byte) {
	w.begin(name, DTypeU8, []int{len(data)}, int64(len(data)))
	w.write(data)
}

// Close writes hdr (its Tensors and FormatVersion are filled in by the writer)
// and the footer, and closes the file.
func (w *Writer) Close(hdr Header) error {
	hdr.FormatVersion = FormatVersion
	hdr.Tensors = w.hdr.Tensors
	w.pad()
	if err := writeTail(w, hdr); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}

func writeTail(w *Writer, hdr Header) error {
	b, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	hoff := w.off
	w.write(b)
	var ft [24]byte
	binary.LittleEndian.PutUint64(ft[0:], uint64(hoff))
	binary.LittleEndian.PutUint64(ft[8:], uint64(len(b)))
	copy(ft[16:], endMagic)
	w.write(ft[:])
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	if w.err != nil {
		return w.err
	}
	_, err = w.f.Write(w.sum.Sum(nil))
	return err
}

// SetHeader replaces the header of the artifact at path, keeping its tensors:
// the compiler records its verification this way. The digest is recomputed.
func SetHeader(path string, mutate func(*Header)) error {
	a, err := Open(path)
	if err != nil {
		return err
	}
	hdr := *a.Header
	dataEnd := a.dataEnd
	a.Close()
	mutate(&hdr)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(dataEnd); err != nil {
		f.Close()
		return err
	}
	w := &Writer{f: f, sum: sha256.New(), off: dataEnd}
	// Re-hash the kept prefix, then continue writing after it.
	if _, err := io.Copy(w.sum, io.NewSectionReader(f, 0, dataEnd)); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Seek(dataEnd, io.SeekStart); err != nil {
		f.Close()
		return err
	}
	w.bw = bufio.NewWriter(io.MultiWriter(f, w.sum))
	hdr.FormatVersion = FormatVersion
	if err := writeTail(w, hdr); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ToBF16 rounds v to bfloat16 bits, to nearest even; NaN stays NaN.
func ToBF16(v float32) uint16 {
	b := math.Float32bits(v)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// FromBF16 widens bfloat16 bits to float32 exactly.
func FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
