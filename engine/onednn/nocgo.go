//go:build !cgo

package onednn

import (
	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
)

type backend struct{}

func init() { engine.Register(backend{}) }

func (backend) Name() string     { return Name }
func (backend) Available() error { return ErrNoCgo }

func (backend) Load(*artifact.File, engine.Options) (engine.Model, error) {
	return nil, ErrNoCgo
}
