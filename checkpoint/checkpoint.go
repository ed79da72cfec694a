// Package checkpoint loads BERT sequence-classification weights into
// *bert.Weights, from a Hugging Face checkpoint directory (config.json plus
// model.safetensors or a sharded model.safetensors.index.json) or from the
// deterministic synthetic:bert-large generator.
//
//	w, info, err := checkpoint.Load(source) // "synthetic:bert-large" or a directory
//
// Every error names the file and the problem and wraps one of the sentinel
// errors in errors.go.
package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bertq/bertq/bert"
)

// File names in a Hugging Face checkpoint directory.
const (
	ConfigFile          = "config.json"
	SafetensorsFile     = "model.safetensors"
	SafetensorsIndex    = "model.safetensors.index.json"
	VocabFile           = "vocab.txt"
	TokenizerConfigFile = "tokenizer_config.json"
	TokenizerJSONFile   = "tokenizer.json"
)

// Info describes where loaded weights came from.
type Info struct {
	// Source is what was loaded, as given: a directory or "synthetic:bert-large".
	Source string
	// Description is one human-readable line for logs and status output.
	Description string
	// Digest is a hex sha256 identifying the weights. For a directory it is
	// the sha256 of the concatenated bytes of config.json, then (if sharded)
	// model.safetensors.index.json, then the safetensors files in file-name
	// order, i.e. `cat config.json model.safetensors | sha256sum`. For a
	// synthetic model it is the sha256 of "bertq synthetic weights v1\n",
	// the source name and "\n".
	Digest string
	// DTypes are the distinct dtypes of the tensors that were loaded, sorted.
	DTypes []DType
	// Files are the files read (config.json, index, safetensors), absolute.
	Files []string
	// Params is the number of parameters loaded.
	Params int64
	// Architectures is config.json's "architectures" list, if any.
	Architectures []string
	// VocabPath, TokenizerConfigPath and TokenizerJSONPath are the absolute
	// paths of vocab.txt, tokenizer_config.json and tokenizer.json when the
	// directory has them, else "".
	VocabPath           string
	TokenizerConfigPath string
	TokenizerJSONPath   string
	// Synthetic is true for generated weights, whose predictions are
	// meaningless; Note then says so in words.
	Synthetic bool
	Note      string
}

// Load loads "synthetic:<name>" with Synthetic and anything else as a
// checkpoint directory with Open.
func Load(source string) (*bert.Weights, *Info, error) {
	if IsSynthetic(source) {
		return Synthetic(source)
	}
	return Open(source)
}

// IsSynthetic reports whether source uses the "synthetic:" scheme (whether or
// not it names a model that exists; Synthetic reports unknown ones).
func IsSynthetic(source string) bool { return strings.HasPrefix(source, syntheticPrefix) }

// Open loads a Hugging Face BertForSequenceClassification checkpoint
// directory: config.json and either model.safetensors or
// model.safetensors.index.json with the shards it names. The digest is
// computed while the tensors load.
func Open(dir string) (*bert.Weights, *Info, error) {
	d, err := OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()

	var digest string
	var digestErr error
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		digest, digestErr = d.digest(&stop)
	}()
	w, err := bert.Assemble(d.Config, d)
	if err != nil {
		stop.Store(true) // no need to finish hashing
	}
	wg.Wait()
	if err != nil {
		return nil, nil, err
	}
	if digestErr != nil {
		return nil, nil, digestErr
	}
	info := d.Info()
	info.Digest = digest
	for _, s := range bert.TensorSpecs(d.Config) {
		info.Params += int64(shapeSize(s.Shape))
	}
	return w, info, nil
}

// Dir is an open checkpoint directory. It implements bert.TensorSource over
// its safetensors file or shards, accepting the old LayerNorm names
// gamma/beta for weight/bias.
type Dir struct {
	// Path is the absolute directory path; Config its parsed config.json.
	Path   string
	Config bert.Config

	source        string
	archs         []string
	indexPath     string           // "" unless sharded
	files         []*File          // sorted by path
	weightMap     map[string]*File // tensor name → shard (sharded only)
	mu            sync.Mutex
	dtypes        map[DType]bool
	vocab, tokCfg string
	tokJSON       string
}

// OpenDir opens a checkpoint directory: it parses config.json and the
// headers of its safetensors files, without reading tensor data.
func OpenDir(dir string) (*Dir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("checkpoint %s: not a directory (give the directory holding config.json and model.safetensors): %w", dir, ErrNoWeights)
	}
	cfgPath := filepath.Join(abs, ConfigFile)
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	cfg, archs, err := parseConfig(cfgPath, data)
	if err != nil {
		return nil, err
	}
	d := &Dir{Path: abs, Config: cfg, source: dir, archs: archs, dtypes: make(map[DType]bool)}
	optional := func(name string) string {
		p := filepath.Join(abs, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
		return ""
	}
	d.vocab, d.tokCfg, d.tokJSON = optional(VocabFile), optional(TokenizerConfigFile), optional(TokenizerJSONFile)

	single := filepath.Join(abs, SafetensorsFile)
	index := filepath.Join(abs, SafetensorsIndex)
	switch {
	case exists(single):
		f, err := OpenSafetensors(single)
		if err != nil {
			return nil, err
		}
		d.files = []*File{f}
	case exists(index):
		if err := d.openShards(index); err != nil {
			d.Close()
			return nil, err
		}
	default:
		hint := ""
		for _, other := range []string{"pytorch_model.bin", "tf_model.h5", "model.ckpt.index", "flax_model.msgpack"} {
			if exists(filepath.Join(abs, other)) {
				hint = fmt.Sprintf(" (it has %s; convert it to safetensors)", other)
				break
			}
		}
		return nil, fmt.Errorf("checkpoint %s: neither %s nor %s found%s: %w", dir, SafetensorsFile, SafetensorsIndex, hint, ErrNoWeights)
	}
	return d, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// openShards reads a model.safetensors.index.json and opens every shard it names.
func (d *Dir) openShards(index string) error {
	data, err := os.ReadFile(index)
	if err != nil {
		return err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return fmt.Errorf("%s: invalid JSON: %v: %w", index, err, ErrCorrupt)
	}
	if len(idx.WeightMap) == 0 {
		return fmt.Errorf("%s: no weight_map: %w", index, ErrCorrupt)
	}
	d.indexPath = index
	d.weightMap = make(map[string]*File, len(idx.WeightMap))
	shards := make(map[string]*File)
	var shardNames []string
	for _, s := range idx.WeightMap {
		if _, ok := shards[s]; !ok {
			shards[s] = nil
			shardNames = append(shardNames, s)
		}
	}
	sort.Strings(shardNames)
	for _, s := range shardNames {
		if !filepath.IsLocal(s) || strings.ContainsAny(s, `/\`) {
			return fmt.Errorf("%s: shard name %q is not a file name in the checkpoint directory: %w", index, s, ErrCorrupt)
		}
		f, err := OpenSafetensors(filepath.Join(d.Path, s))
		if err != nil {
			return fmt.Errorf("%s: shard: %w", index, err)
		}
		shards[s] = f
		d.files = append(d.files, f)
	}
	for name, s := range idx.WeightMap {
		f := shards[s]
		if _, ok := f.tensors[name]; !ok {
			return fmt.Errorf("%s: weight_map puts %q in %s, which has no such tensor: %w", index, name, s, ErrCorrupt)
		}
		d.weightMap[name] = f
	}
	return nil
}

// lookup finds the file holding name.
func (d *Dir) lookup(name string) (*File, bool) {
	if d.weightMap != nil {
		if f, ok := d.weightMap[name]; ok {
			return f, true
		}
	}
	for _, f := range d.files {
		if _, ok := f.tensors[name]; ok {
			return f, true
		}
	}
	return nil, false
}

// aliases lists the names a tensor may have in a checkpoint, preferred first.
func aliases(name string) []string {
	names := []string{name}
	if base, ok := strings.CutSuffix(name, "LayerNorm.weight"); ok {
		names = append(names, base+"LayerNorm.gamma")
	} else if base, ok := strings.CutSuffix(name, "LayerNorm.bias"); ok {
		names = append(names, base+"LayerNorm.beta")
	}
	return names
}

// Tensor implements bert.TensorSource.
func (d *Dir) Tensor(name string, shape ...int) ([]float32, error) {
	for _, n := range aliases(name) {
		f, ok := d.lookup(n)
		if !ok {
			continue
		}
		t, err := f.Tensor(n, shape...)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.dtypes[f.tensors[n].DType] = true
		d.mu.Unlock()
		return t, nil
	}
	where := d.weightsDesc()
	hint := ""
	if strings.HasPrefix(name, "classifier.") {
		hint = " (not a sequence-classification checkpoint?"
		if len(d.archs) > 0 {
			hint += " architectures: " + strings.Join(d.archs, ", ")
		}
		hint += ")"
	}
	return nil, fmt.Errorf("%s: tensor %q not found%s: %w", where, name, hint, ErrMissingTensor)
}

// weightsDesc names the weights file (or index) for messages.
func (d *Dir) weightsDesc() string {
	if d.indexPath != "" {
		return d.indexPath
	}
	if len(d.files) == 1 {
		return d.files[0].Path()
	}
	return d.Path
}

// Files lists every file the checkpoint consists of, in digest order.
func (d *Dir) Files() []string {
	out := []string{filepath.Join(d.Path, ConfigFile)}
	if d.indexPath != "" {
		out = append(out, d.indexPath)
	}
	for _, f := range d.files {
		out = append(out, f.Path())
	}
	return out
}

// Digest is the hex sha256 of the concatenation of Files (see Info.Digest).
// It streams the files; it does not hold them in memory.
func (d *Dir) Digest() (string, error) { return d.digest(nil) }

// errStopped ends a digest nobody needs any more.
var errStopped = errors.New("digest stopped")

func (d *Dir) digest(stop *atomic.Bool) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for _, p := range d.Files() {
		fh, err := os.Open(p)
		if err != nil {
			return "", err
		}
		for err == nil {
			if stop != nil && stop.Load() {
				err = errStopped
				break
			}
			var n int
			n, err = io.ReadFull(fh, buf)
			h.Write(buf[:n])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil
		}
		fh.Close()
		if err != nil {
			return "", fmt.Errorf("%s: digest: %w", p, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Info describes the directory and what has been read from it so far
// (DTypes); Digest and Params are left for Open to fill.
func (d *Dir) Info() *Info {
	d.mu.Lock()
	var dts []DType
	for dt := range d.dtypes {
		dts = append(dts, dt)
	}
	d.mu.Unlock()
	slices.Sort(dts)
	files := "model.safetensors"
	if d.indexPath != "" {
		files = fmt.Sprintf("%d safetensors shards", len(d.files))
	}
	dtNames := make([]string, len(dts))
	for i, dt := range dts {
		dtNames[i] = string(dt)
	}
	c := d.Config
	desc := fmt.Sprintf("Hugging Face BERT checkpoint %s (%s; %s; %d layers, hidden %d, %d heads, %s, %d labels)",
		d.Path, files, strings.Join(dtNames, "+"), c.NumLayers, c.HiddenSize, c.NumHeads, c.Activation, c.NumLabels)
	return &Info{
		Source:              d.source,
		Description:         desc,
		DTypes:              dts,
		Files:               d.Files(),
		Architectures:       slices.Clone(d.archs),
		VocabPath:           d.vocab,
		TokenizerConfigPath: d.tokCfg,
		TokenizerJSONPath:   d.tokJSON,
	}
}

// Close closes the safetensors files.
func (d *Dir) Close() error {
	var errs []error
	for _, f := range d.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

func shapeSize(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
