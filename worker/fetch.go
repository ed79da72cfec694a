package worker

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/schemas"
)

// DefaultCacheDir is $XDG_CACHE_HOME/bertq, else ~/.cache/bertq, else a
// directory under the system temp dir.
func DefaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "bertq")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".cache", "bertq")
	}
	return filepath.Join(os.TempDir(), "bertq-cache")
}

// FetchArtifact opens the artifact stored as model in the schemas.ModelBucket
// object store. It is downloaded once into cacheDir as <sha256>.bqa, named by
// the object's SHA-256, and reused while the object is unchanged. Every open
// checks the artifact's own embedded digest, so a truncated or tampered file
// is refused (ErrArtifact) rather than served; a bad cached copy is fetched
// again. The caller closes the File.
func FetchArtifact(ctx context.Context, js jetstream.JetStream, model, cacheDir string) (*artifact.File, error) {
	if !schemas.ValidName(model) {
		return nil, fmt.Errorf("%w: %q is not a model name", ErrArtifact, model)
	}
	obs, err := js.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("%w: the %s bucket does not exist: run `bertq provision`", ErrArtifact, schemas.ModelBucket)
		}
		return nil, fmt.Errorf("%w: %v", ErrArtifact, err)
	}
	info, err := obs.GetInfo(ctx, model)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, fmt.Errorf("%w: no model %q in the %s bucket", ErrArtifact, model, schemas.ModelBucket)
		}
		return nil, fmt.Errorf("%w: %v", ErrArtifact, err)
	}
	sum, err := objectSHA256(info.Digest)
	if err != nil {
		return nil, fmt.Errorf("%w: model %q: %v", ErrArtifact, model, err)
	}
	if err := os.MkdirAll(cacheDir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: cache: %v", ErrArtifact, err)
	}
	path := filepath.Join(cacheDir, sum+".bqa")
	if f, err := artifact.Open(path); err == nil {
		return f, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		os.Remove(path) // a damaged cache entry: fetch it again
	}

	tmp, err := os.CreateTemp(cacheDir, "."+sum+".*.part")
	if err != nil {
		return nil, fmt.Errorf("%w: cache: %v", ErrArtifact, err)
	}
	defer os.Remove(tmp.Name())
	r, err := obs.Get(ctx, model)
	if err != nil {
		tmp.Close()
		return nil, fmt.Errorf("%w: downloading %q: %v", ErrArtifact, model, err)
	}
	_, err = io.Copy(tmp, r) // the reader checks the object's digest at EOF
	r.Close()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%w: downloading %q: %v", ErrArtifact, model, err)
	}
	f, err := artifact.Open(tmp.Name())
	if err != nil {
		return nil, fmt.Errorf("%w: model %q from the %s bucket is not a usable artifact: %v", ErrArtifact, model, schemas.ModelBucket, err)
	}
	// The mapping survives the rename: no need to hash the file twice.
	if err := os.Rename(tmp.Name(), path); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: cache: %v", ErrArtifact, err)
	}
	f.Path = path
	return f, nil
}

// objectSHA256 turns an object store digest "SHA-256=<base64url>" into hex.
func objectSHA256(d string) (string, error) {
	b64, ok := strings.CutPrefix(d, "SHA-256=")
	if !ok {
		return "", fmt.Errorf("object digest %q is not SHA-256", d)
	}
	raw, err := base64.URLEncoding.DecodeString(b64)
	if err != nil {
		raw, err = base64.StdEncoding.DecodeString(b64)
	}
	if err != nil || len(raw) != 32 {
		return "", fmt.Errorf("object digest %q is malformed", d)
	}
	return hex.EncodeToString(raw), nil
}
