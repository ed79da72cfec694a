package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/schemas"
)

func init() {
	register(&command{
		name:    "predict",
		summary: "classify JSON lines {\"a\",\"b\"} from stdin with a compiled artifact",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			artifact := fs.String("artifact", "", "compiled artifact `file` (required)")
			device := fs.String("device", "auto", "engine backend: auto, onednn, cuda or go")
			return func(ctx context.Context, e *env) error {
				if *artifact == "" {
					return fmt.Errorf("%w: no artifact to run (set --artifact)", errUsage)
				}
				return predict(ctx, e, *artifact, *device)
			}
		},
	})
}

type prediction struct {
	Label         string    `json:"label"`
	LabelIndex    int       `json:"label_index"`
	Probabilities []float32 `json:"probabilities"`
	Logits        []float32 `json:"logits"`
}

func predict(ctx context.Context, e *env, path, device string) error {
	m, f, err := loadModel(path, device)
	if err != nil {
		return err
	}
	defer f.Close()
	defer m.Close()
	if f.Header.Synthetic {
		fmt.Fprintln(e.stderr, syntheticWarning)
	}
	tok, err := engine.Tokenizer(f)
	if err != nil {
		return err
	}
	r, err := m.NewRunner(-1)
	if err != nil {
		return err
	}
	defer r.Close()
	s := m.Spec()
	cfg := f.Header.Model
	limits := s.Limits()
	var in engine.Input
	logits := make([]float32, s.Batch*s.Labels)
	enc := json.NewEncoder(e.stdout)
	// Pairs run packed: each its real tokens only, as many per batch as the
	// artifact takes.
	flush := func() error {
		if len(in.Lengths) == 0 {
			return nil
		}
		if err := r.Run(in, logits); err != nil {
			return err
		}
		for b := range in.Lengths {
			l := append([]float32(nil), logits[b*s.Labels:(b+1)*s.Labels]...)
			i := schemas.Argmax(l)
			if err := enc.Encode(prediction{Label: cfg.Label(i), LabelIndex: i, Probabilities: schemas.Softmax(l), Logits: l}); err != nil {
				return err
			}
		}
		in = engine.Input{}
		return nil
	}
	err = readPairs(e.stdin, func(_ int, a, b string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		x, err := tok.EncodePair(a, b, s.Seq)
		if err != nil {
			return err
		}
		n := 0
		for _, v := range x.AttentionMask {
			n += int(v)
		}
		if !limits.Admits(len(in.Lengths), len(in.InputIDs), n) {
			if err := flush(); err != nil {
				return err
			}
		}
		in.InputIDs = append(in.InputIDs, x.InputIDs[:n]...)
		in.TokenTypeIDs = append(in.TokenTypeIDs, x.TokenTypeIDs[:n]...)
		in.Lengths = append(in.Lengths, int32(n))
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
