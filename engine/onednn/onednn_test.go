//go:build cgo

package onednn

import (
	"testing"

	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/engine/enginetest"
)

func TestConformance(t *testing.T) {
	for _, rows := range []string{engine.RowsRuntime, engine.RowsBucketed} {
		t.Run(rows, func(t *testing.T) { enginetest.Conformance(t, Name, engine.Options{MatmulRows: rows}) })
	}
}
