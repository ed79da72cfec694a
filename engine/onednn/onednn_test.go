//go:build cgo

package onednn

import (
	"math/rand"
	"testing"
	"time"

	"github.com/bertq/bertq/artifact"

	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/engine/enginetest"
	_ "github.com/bertq/bertq/engine/gocpu"
)

func TestConformance(t *testing.T) {
	for _, rows := range []string{engine.RowsRuntime, engine.RowsBucketed} {
		t.Run(rows, func(t *testing.T) { enginetest.Conformance(t, Name, engine.Options{MatmulRows: rows}) })
	}
}

func TestInt8Smoke(t *testing.T) {
	c := enginetest.SmallConfig("gelu")
	fx := enginetest.Load(t, Name, engine.Options{}, c, 4, 24, "int8", 3)
	qa := fx.Model.(*Model).Int8ActMax()
	t.Log(fx.Model.(*Model).Describe())
	ref := enginetest.Load(t, "go", engine.Options{Int8ActMax: qa}, c, 4, 24, "int8", 3)
	rng := rand.New(rand.NewSource(1))
	in := enginetest.Pack(enginetest.RandomSeq(rng, c, 24), enginetest.RandomSeq(rng, c, 5), enginetest.RandomSeq(rng, c, 11))
	setSIMD(false)
	t.Log(fx.Run(t, in))
	setSIMD(true)
	got, want := fx.Run(t, in), ref.Run(t, in)
	em := enginetest.Reference(fx.Weights, in, enginetest.Emulate{Int8ActMax: qa})
	f64 := enginetest.Reference(fx.Weights, in, enginetest.Emulate{})
	t.Logf("onednn %v\ngo     %v\nemu %v\nf64 %v", got, want, em, f64)
}

func TestPeakSmoke(t *testing.T) {
	for _, p := range []string{"fp32", "int8"} {
		fx := enginetest.Load(t, Name, engine.Options{}, enginetest.SmallConfig("gelu"), 4, 24, artifact.Precision(p), 3)
		isa, g, err := fx.Runner.(engine.Peaker).ISAPeak(200 * time.Millisecond)
		t.Log(p, isa, g, err)
	}
}
