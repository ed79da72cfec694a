package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// File is an opened artifact. Its tensors are views into the mapped file and
// stay valid until Close.
type File struct {
	Header  *Header
	Path    string
	Digest  string // hex SHA-256 stored in the footer
	data    []byte
	mapped  bool
	byName  map[string]*TensorInfo
	dataEnd int64
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// Open maps the artifact at path read-only, checks its digest and header.
// Memory: the file is mapped, not copied, so pages are shared with the page
// cache and can be dropped by the engine once it has its own copy.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < prefixLen+footerLen {
		return nil, fmt.Errorf("%s: %w: %d bytes", path, ErrTruncated, st.Size())
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	a, err := parse(data, path)
	if err != nil {
		unix.Munmap(data)
		return nil, err
	}
	a.mapped = true
	return a, nil
}

// Parse reads an artifact held in memory (b must outlive the File).
func Parse(b []byte) (*File, error) { return parse(b, "artifact") }

func parse(b []byte, name string) (*File, error) {
	if len(b) < prefixLen || string(b[:8]) != magic {
		return nil, fmt.Errorf("%s: %w: bad magic", name, ErrNotArtifact)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return nil, fmt.Errorf("%s: %w: file is version %d, this build reads %d", name, ErrVersion, v, FormatVersion)
	}
	if len(b) < prefixLen+footerLen {
		return nil, fmt.Errorf("%s: %w: %d bytes", name, ErrTruncated, len(b))
	}
	ft := b[len(b)-footerLen:]
	if string(ft[16:24]) != endMagic {
		return nil, fmt.Errorf("%s: %w: no footer (file cut short?)", name, ErrTruncated)
	}
	body := b[:len(b)-sha256.Size]
	sum := sha256.Sum256(body)
	if !bytes.Equal(sum[:], ft[24:]) {
		return nil, fmt.Errorf("%s: %w", name, ErrChecksum)
	}
	hoff, hlen := binary.LittleEndian.Uint64(ft[0:]), binary.LittleEndian.Uint64(ft[8:])
	tail := uint64(len(b) - footerLen)
	if hoff < prefixLen || hoff > tail || hlen != tail-hoff {
		return nil, fmt.Errorf("%s: %w: header at %d+%d does not end at the footer (%d)", name, ErrHeader, hoff, hlen, tail)
	}
	h, err := ParseHeader(b[hoff:hoff+hlen], prefixLen, int64(hoff))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	a := &File{Header: h, Path: name, Digest: fmt.Sprintf("%x", ft[24:]), data: b, dataEnd: int64(hoff), byName: map[string]*TensorInfo{}}
	for i := range h.Tensors {
		a.byName[h.Tensors[i].Name] = &h.Tensors[i]
	}
	return a, nil
}

// Close unmaps the file; tensor views become invalid.
func (a *File) Close() error {
	if a.mapped && a.data != nil {
		err := unix.Munmap(a.data)
		a.data = nil
		return err
	}
	a.data = nil
	return nil
}

// Info returns a tensor's table entry.
func (a *File) Info(name string) (*TensorInfo, error) {
	t, ok := a.byName[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", a.Path, ErrMissingTensor, name)
	}
	return t, nil
}

func (a *File) view(name string, dt DType, shape []int) ([]byte, error) {
	t, err := a.Info(name)
	if err != nil {
		return nil, err
	}
	if t.DType != dt {
		return nil, fmt.Errorf("%s: %w: tensor %q is %s, want %s", a.Path, ErrHeader, name, t.DType, dt)
	}
	if shape != nil && !equalShape(t.Shape, shape) {
		return nil, fmt.Errorf("%s: %w: tensor %q has shape %v, want %v", a.Path, ErrHeader, name, t.Shape, shape)
	}
	return a.data[t.Offset : t.Offset+t.Size], nil
}

// F32 returns an f32 tensor (checking its shape when shape is not nil).
func (a *File) F32(name string, shape ...int) ([]float32, error) {
	b, err := a.view(name, DTypeF32, shapeOrNil(shape))
	if err != nil || len(b) == 0 {
		return nil, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4), nil
}

// BF16 returns a bf16 tensor's raw bits.
func (a *File) BF16(name string, shape ...int) ([]uint16, error) {
	b, err := a.view(name, DTypeBF16, shapeOrNil(shape))
	if err != nil || len(b) == 0 {
		return nil, err
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2), nil
}

// I8 returns an int8 tensor.
func (a *File) I8(name string, shape ...int) ([]int8, error) {
	b, err := a.view(name, DTypeI8, shapeOrNil(shape))
	if err != nil || len(b) == 0 {
		return nil, err
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(&b[0])), len(b)), nil
}

// Bytes returns a u8 tensor.
func (a *File) Bytes(name string) ([]byte, error) { return a.view(name, DTypeU8, nil) }

// Matrix returns a weight in whatever dtype it is stored, widened to float32
// (a copy for bf16 and int8, a view for f32).
func (a *File) Matrix(name string, shape ...int) ([]float32, error) {
	t, err := a.Info(name)
	if err != nil {
		return nil, err
	}
	switch t.DType {
	case DTypeF32:
		return a.F32(name, shape...)
	case DTypeI8:
		if len(t.Shape) != 2 {
			return nil, fmt.Errorf("%s: %w: int8 tensor %q has shape %v, want [k][n]", a.Path, ErrHeader, name, t.Shape)
		}
		q, err := a.I8(name, shape...)
		if err != nil {
			return nil, err
		}
		scale, err := a.F32(ScaleTensor(name), t.Shape[1])
		if err != nil {
			return nil, err
		}
		return DequantizeS8(q, scale, t.Shape[0], t.Shape[1]), nil
	}
	h, err := a.BF16(name, shape...)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(h))
	for i, v := range h {
		out[i] = FromBF16(v)
	}
	return out, nil
}

// Size is the file's length in bytes.
func (a *File) Size() int64 { return int64(len(a.data)) }

// DropPages tells the kernel the mapped pages are no longer needed, so they stop
// counting toward resident memory once the engine holds its own copies. Views
// remain valid (they fault back in from the page cache if touched).
func (a *File) DropPages() {
	if a.mapped && a.data != nil {
		_ = unix.Madvise(a.data, unix.MADV_DONTNEED)
	}
}

func shapeOrNil(s []int) []int {
	if len(s) == 0 {
		return nil
	}
	return s
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
