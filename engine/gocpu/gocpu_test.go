package gocpu

import (
	"testing"

	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/engine/enginetest"
)

func TestConformance(t *testing.T) { enginetest.Conformance(t, "go", engine.Options{}) }
