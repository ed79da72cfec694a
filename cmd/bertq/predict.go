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
			model := fs.String("model", "", "compiled artifact file")
			device := fs.String("device", "auto", "engine backend: auto, onednn, cuda or go")
			return func(ctx context.Context, e *env) error {
				if *model == "" {
					return fmt.Errorf("%w: --model is required", errUsage)
				}
				return predict(ctx, e, *model, *device)
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
	in := engine.Input{
		InputIDs:      make([]int32, s.Batch*s.Seq),
		TokenTypeIDs:  make([]int32, s.Batch*s.Seq),
		AttentionMask: make([]int32, s.Batch*s.Seq),
	}
	logits := make([]float32, s.Batch*s.Labels)
	enc := json.NewEncoder(e.stdout)
	// Unused slots are padding: a minimal [CLS] [SEP] row nobody reads.
	pad, err := tok.EncodePair("", "", s.Seq)
	if err != nil {
		return err
	}
	filled := 0
	flush := func() error {
		if filled == 0 {
			return nil
		}
		for slot := filled; slot < s.Batch; slot++ {
			copy(in.InputIDs[slot*s.Seq:], pad.InputIDs)
			copy(in.TokenTypeIDs[slot*s.Seq:], pad.TokenTypeIDs)
			copy(in.AttentionMask[slot*s.Seq:], pad.AttentionMask)
		}
		if err := r.Run(in, logits); err != nil {
			return err
		}
		for slot := 0; slot < filled; slot++ {
			l := append([]float32(nil), logits[slot*s.Labels:(slot+1)*s.Labels]...)
			i := schemas.Argmax(l)
			if err := enc.Encode(prediction{Label: cfg.Label(i), LabelIndex: i, Probabilities: schemas.Softmax(l), Logits: l}); err != nil {
				return err
			}
		}
		filled = 0
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
		copy(in.InputIDs[filled*s.Seq:], x.InputIDs)
		copy(in.TokenTypeIDs[filled*s.Seq:], x.TokenTypeIDs)
		copy(in.AttentionMask[filled*s.Seq:], x.AttentionMask)
		if filled++; filled == s.Batch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
