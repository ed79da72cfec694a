package checkpoint

// Writing safetensors files and checkpoint directories. This is a helper for
// tests and tooling (building fixtures, sharded checkpoints, converting
// synthetic weights to a directory); bertq itself only reads checkpoints.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bertq/bertq/bert"
)

// RawTensor is one tensor for WriteSafetensors. Data holds its elements
// little-endian in DType (see EncodeFloat32); WriteSafetensors does not check
// that len(Data) matches DType×Shape, so tests can build inconsistent files.
type RawTensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// WriteSafetensors writes a safetensors file holding tensors in the given
// order, packed back to back, with the header padded with spaces to a
// multiple of 8 bytes as the reference writer does. metadata may be nil.
func WriteSafetensors(path string, tensors []RawTensor, metadata map[string]string) error {
	entries := make([]writeEntry, len(tensors))
	for i, t := range tensors {
		entries[i] = writeEntry{name: t.Name, dtype: t.DType, shape: t.Shape, size: int64(len(t.Data)),
			write: func(w io.Writer) error { _, err := w.Write(t.Data); return err }}
	}
	return writeSafetensors(path, entries, metadata)
}

type writeEntry struct {
	name  string
	dtype DType
	shape []int
	size  int64
	write func(io.Writer) error
}

func writeSafetensors(path string, entries []writeEntry, metadata map[string]string) error {
	var hdr strings.Builder
	hdr.WriteByte('{')
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata)
		if err != nil {
			return err
		}
		hdr.WriteString(`"__metadata__":`)
		hdr.Write(m)
	}
	var off int64
	for i, e := range entries {
		if i > 0 || len(metadata) > 0 {
			hdr.WriteByte(',')
		}
		name, _ := json.Marshal(e.name)
		shape := e.shape
		if shape == nil {
			shape = []int{}
		}
		sh, _ := json.Marshal(shape)
		fmt.Fprintf(&hdr, `%s:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, name, e.dtype, sh, off, off+e.size)
		off += e.size
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}

	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(fh, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(hdr.Len()))
	bw.Write(lenBuf[:])
	bw.WriteString(hdr.String())
	for _, e := range entries {
		if err := e.write(bw); err != nil {
			fh.Close()
			return fmt.Errorf("%s: writing %q: %w", path, e.name, err)
		}
	}
	if err := bw.Flush(); err != nil {
		fh.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return fh.Close()
}

// EncodeFloat32 encodes v little-endian as F32, F16 or BF16 (rounding to
// nearest, ties to even; overflow gives ±Inf and NaN stays NaN).
func EncodeFloat32(dt DType, v []float32) ([]byte, error) {
	switch dt {
	case F32:
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b, nil
	case F16, BF16:
		enc := Float32ToBF16
		if dt == F16 {
			enc = Float32ToF16
		}
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], enc(x))
		}
		return b, nil
	}
	return nil, fmt.Errorf("cannot encode float32 as %s: %w", dt, ErrDType)
}

// Float32ToBF16 rounds f to bfloat16 bits, to nearest with ties to even.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it a (quiet) NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// Float32ToF16 rounds f to IEEE binary16 bits, to nearest with ties to even,
// producing subnormals, ±0 and ±Inf as needed.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7e00 | uint16(mant>>13)
	}
	if exp == 0 { // float32 subnormals are far below half precision's range
		return sign
	}
	e := exp - 127 + 15 // biased half exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	eu := max(e, 1)               // subnormals share exponent 1's unit, 2^-24
	shift := uint(eu - exp + 125) // from units of 2^(exp-150) to 2^(eu-25)
	if shift > 24 {               // below half the smallest subnormal
		return sign
	}
	sig := mant | 0x800000
	q := sig >> shift
	rem := sig & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	// For normals q carries the implicit bit, so adding it to (eu-1)<<10 sets
	// the exponent; a carry out of the mantissa bumps it (up to Inf).
	return sign | (uint16(eu-1)<<10 + uint16(q))
}

// WriteOptions control WriteCheckpoint.
type WriteOptions struct {
	// DType of every tensor: F32 (the default), F16 or BF16.
	DType DType
	// Shards > 1 splits the tensors, in TensorSpecs order and by size, over
	// model-0000k-of-0000n.safetensors files plus model.safetensors.index.json;
	// otherwise one model.safetensors is written.
	Shards int
	// LegacyLayerNormNames writes LayerNorm parameters as gamma/beta, as
	// some old checkpoints do.
	LegacyLayerNormNames bool
	// Extra tensors to write as well (e.g. a position_ids buffer), into the
	// first file.
	Extra []RawTensor
}

// WriteCheckpoint writes w as a Hugging Face BertForSequenceClassification
// checkpoint directory (created if needed): config.json plus
// model.safetensors, or shards and an index. Open reads it back exactly when
// DType is F32.
func WriteCheckpoint(dir string, w *bert.Weights, opt WriteOptions) error {
	if opt.DType == "" {
		opt.DType = F32
	}
	if _, err := EncodeFloat32(opt.DType, nil); err != nil {
		return err
	}
	specs := bert.TensorSpecs(w.Config)
	byName := weightTensors(w)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeConfig(filepath.Join(dir, ConfigFile), w.Config, opt.DType); err != nil {
		return err
	}

	type tensor struct {
		spec bert.TensorSpec
		name string
		data []float32
	}
	var all []tensor
	var total int64
	for _, s := range specs {
		data := byName[s.Name]
		if len(data) != shapeSize(s.Shape) {
			return fmt.Errorf("weights: %s has %d values, shape %v needs %d: %w", s.Name, len(data), s.Shape, shapeSize(s.Shape), ErrShape)
		}
		name := s.Name
		if opt.LegacyLayerNormNames {
			if a := aliases(s.Name); len(a) > 1 {
				name = a[1]
			}
		}
		all = append(all, tensor{s, name, data})
		total += int64(len(data)) * int64(opt.DType.Size())
	}
	entry := func(t tensor) writeEntry {
		return writeEntry{name: t.name, dtype: opt.DType, shape: t.spec.Shape,
			size: int64(len(t.data)) * int64(opt.DType.Size()),
			write: func(wr io.Writer) error {
				const chunk = 1 << 16
				for lo := 0; lo < len(t.data); lo += chunk {
					b, _ := EncodeFloat32(opt.DType, t.data[lo:min(lo+chunk, len(t.data))])
					if _, err := wr.Write(b); err != nil {
						return err
					}
				}
				return nil
			}}
	}
	extra := func() []writeEntry {
		var es []writeEntry
		for _, t := range opt.Extra {
			es = append(es, writeEntry{name: t.Name, dtype: t.DType, shape: t.Shape, size: int64(len(t.Data)),
				write: func(w io.Writer) error { _, err := w.Write(t.Data); return err }})
		}
		return es
	}
	meta := map[string]string{"format": "pt"}
	if opt.Shards <= 1 {
		es := extra()
		for _, t := range all {
			es = append(es, entry(t))
		}
		return writeSafetensors(filepath.Join(dir, SafetensorsFile), es, meta)
	}

	n := opt.Shards
	weightMap := make(map[string]string)
	var written int64
	k := 0
	for s := 1; s <= n; s++ {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", s, n)
		var es []writeEntry
		if s == 1 {
			es = extra()
			for _, t := range opt.Extra {
				weightMap[t.Name] = file
			}
		}
		// Take tensors until this shard holds its share of the bytes
		// (every shard gets at least one tensor while any are left).
		limit := total * int64(s) / int64(n)
		for k < len(all) && (len(es) == 0 || written < limit || s == n) {
			if n-s >= len(all)-k && len(es) > 0 && s != n {
				break // leave one tensor for each remaining shard
			}
			es = append(es, entry(all[k]))
			weightMap[all[k].name] = file
			written += int64(len(all[k].data)) * int64(opt.DType.Size())
			k++
		}
		if err := writeSafetensors(filepath.Join(dir, file), es, meta); err != nil {
			return err
		}
	}
	idx, err := json.MarshalIndent(map[string]any{
		"metadata":   map[string]any{"total_size": total},
		"weight_map": weightMap,
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, SafetensorsIndex), append(idx, '\n'), 0o644)
}

// hfActivation spells a bert.Activation as transformers' hidden_act.
func hfActivation(a bert.Activation) string {
	switch a {
	case bert.GELUTanh:
		return "gelu_new"
	case bert.GELUCrude:
		return "quick_gelu"
	}
	return "gelu"
}

func writeConfig(path string, c bert.Config, dt DType) error {
	id2label := make(map[string]string, c.NumLabels)
	label2id := make(map[string]int, c.NumLabels)
	for i := 0; i < c.NumLabels; i++ {
		id2label[strconv.Itoa(i)] = c.Label(i)
		label2id[c.Label(i)] = i
	}
	torch := map[DType]string{F32: "float32", F16: "float16", BF16: "bfloat16"}[dt]
	cfg := struct {
		Architectures    []string          `json:"architectures"`
		ModelType        string            `json:"model_type"`
		DType            string            `json:"dtype"`
		VocabSize        int               `json:"vocab_size"`
		HiddenSize       int               `json:"hidden_size"`
		NumLayers        int               `json:"num_hidden_layers"`
		NumHeads         int               `json:"num_attention_heads"`
		IntermediateSize int               `json:"intermediate_size"`
		HiddenAct        string            `json:"hidden_act"`
		LayerNormEps     float64           `json:"layer_norm_eps"`
		MaxPositions     int               `json:"max_position_embeddings"`
		TypeVocabSize    int               `json:"type_vocab_size"`
		PadTokenID       int               `json:"pad_token_id"`
		ID2Label         map[string]string `json:"id2label"`
		Label2ID         map[string]int    `json:"label2id"`
	}{
		[]string{"BertForSequenceClassification"}, "bert", torch,
		c.VocabSize, c.HiddenSize, c.NumLayers, c.NumHeads, c.IntermediateSize,
		hfActivation(c.Activation), c.LayerNormEps, c.MaxPositions, c.TypeVocabSize, c.PadTokenID,
		id2label, label2id,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// weightTensors maps each Hugging Face tensor name to its slice in w, the
// inverse of bert.Assemble.
func weightTensors(w *bert.Weights) map[string][]float32 {
	m := map[string][]float32{
		"bert.embeddings.word_embeddings.weight":       w.Word,
		"bert.embeddings.position_embeddings.weight":   w.Position,
		"bert.embeddings.token_type_embeddings.weight": w.TokenType,
	}
	lin := func(name string, l bert.Linear) {
		m[name+".weight"], m[name+".bias"] = l.Weight, l.Bias
	}
	norm := func(name string, n bert.LayerNorm) {
		m[name+".weight"], m[name+".bias"] = n.Gamma, n.Beta
	}
	norm("bert.embeddings.LayerNorm", w.EmbNorm)
	for i, l := range w.Layers {
		p := fmt.Sprintf("bert.encoder.layer.%d.", i)
		lin(p+"attention.self.query", l.Query)
		lin(p+"attention.self.key", l.Key)
		lin(p+"attention.self.value", l.Value)
		lin(p+"attention.output.dense", l.AttnOut)
		norm(p+"attention.output.LayerNorm", l.AttnNorm)
		lin(p+"intermediate.dense", l.FFNIn)
		lin(p+"output.dense", l.FFNOut)
		norm(p+"output.LayerNorm", l.FFNNorm)
	}
	lin("bert.pooler.dense", w.Pooler)
	lin("classifier", w.Classifier)
	return m
}
