//go:build !cgo

package onednn

import (
	"errors"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
)

// ErrNoCgo is why the backend cannot run in a build without cgo.
var ErrNoCgo = errors.New("bertq was built without cgo: the oneDNN AMX engine is absent (rebuild with CGO_ENABLED=1 and libdnnl-dev installed)")

type backend struct{}

func init() { engine.Register(backend{}) }

func (backend) Name() string     { return Name }
func (backend) Available() error { return ErrNoCgo }

func (backend) Load(*artifact.File, engine.Options) (engine.Model, error) {
	return nil, ErrNoCgo
}
