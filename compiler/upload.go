package compiler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/checkpoint"
	"github.com/bertq/bertq/schemas"
)

// CheckpointObject is the object name of one file of an uploaded checkpoint.
func CheckpointObject(name, file string) string { return name + "/" + file }

// uploadable reports whether a checkpoint directory's file is uploaded:
// what checkpoint.Load and the tokenizer read, nothing else.
func uploadable(file string) bool {
	switch file {
	case checkpoint.ConfigFile, checkpoint.SafetensorsIndex, checkpoint.VocabFile, checkpoint.TokenizerConfigFile:
		return true
	}
	return strings.HasSuffix(file, ".safetensors")
}

// Upload puts a Hugging Face checkpoint directory into schemas.CheckpointBucket
// as <name>/<file>: config.json, the safetensors file(s), the shard index,
// vocab.txt and tokenizer_config.json. The directory is opened with
// checkpoint.OpenDir first, so a checkpoint the compiler cannot read is
// refused here. Objects of an earlier upload under the same name that this
// one lacks are deleted, so that a re-upload fully replaces it. It returns
// the object names written.
func Upload(ctx context.Context, js jetstream.JetStream, name, dir string) ([]string, error) {
	if !schemas.ValidName(name) {
		return nil, fmt.Errorf("%w: checkpoint name %q: want 1-64 of [A-Za-z0-9_-]", ErrUpload, schemas.Clip(name, 80))
	}
	d, err := checkpoint.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpload, err)
	}
	d.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpload, err)
	}
	obs, err := js.ObjectStore(ctx, schemas.CheckpointBucket)
	if err != nil {
		return nil, fmt.Errorf("%w: object store %s: %w (is the broker provisioned?)", ErrUpload, schemas.CheckpointBucket, err)
	}
	var put []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !uploadable(e.Name()) {
			continue
		}
		obj := CheckpointObject(name, e.Name())
		if err := putFile(ctx, obs, obj, filepath.Join(dir, e.Name()), nil); err != nil {
			return put, fmt.Errorf("%w: %s: %w", ErrUpload, obj, err)
		}
		put = append(put, obj)
	}
	// Remove what a previous upload left that this one does not have.
	old, err := obs.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return put, fmt.Errorf("%w: listing %s: %w", ErrUpload, schemas.CheckpointBucket, err)
	}
	for _, o := range old {
		if strings.HasPrefix(o.Name, name+"/") && !slices.Contains(put, o.Name) {
			if err := obs.Delete(ctx, o.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				return put, fmt.Errorf("%w: deleting stale %s: %w", ErrUpload, o.Name, err)
			}
		}
	}
	return put, nil
}

// putFile stores a file as one object.
func putFile(ctx context.Context, obs jetstream.ObjectStore, obj, path string, meta map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = obs.Put(ctx, jetstream.ObjectMeta{Name: obj, Metadata: meta}, f)
	return err
}
