package main

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/tokenizer"
)

// benchBatch is one batch the runners cycle through, with what it is worth.
type benchBatch struct {
	in     engine.Input
	seqs   int     // real sequences
	tokens int     // real tokens
	rows   int     // token rows the matmuls compute (padding included)
	useful float64 // FLOPs of the real sequences at their real lengths
	gemm   float64 // FLOPs of the encoder GEMMs over rows
}

// benchBatches reads the traffic and forms batches from it in order, as the
// worker would: packed up to the limits (--pad none) or the static shape
// with dummy rows (--pad static).
func benchBatches(f *artifact.File, s engine.Spec, o benchOptions) ([]benchBatch, string, error) {
	tok, err := engine.Tokenizer(f)
	if err != nil {
		return nil, "", err
	}
	encs, name, err := benchTraffic(tok, s, o.lengths)
	if err != nil {
		return nil, "", err
	}
	c := f.Header.Model
	perRow := 2 * float64(c.NumLayers) * float64(c.HiddenSize) * float64(3*c.HiddenSize+c.HiddenSize+2*c.IntermediateSize)
	var out []benchBatch
	for start := 0; start < len(encs); {
		n := 0
		if o.pad == "static" {
			n = min(o.limits.Seqs, len(encs)-start)
		} else {
			for tokens := 0; start+n < len(encs) && o.limits.Admits(n, tokens, realLen(encs[start+n])); n++ {
				tokens += realLen(encs[start+n])
			}
		}
		b := makeBatch(encs[start:start+n], s, o.pad == "static", tok)
		b.gemm = perRow * float64(b.rows)
		for _, e := range encs[start : start+n] {
			b.useful += c.FLOPs(realLen(e))
		}
		out = append(out, b)
		start += n
	}
	return out, name, nil
}

// benchTraffic returns the inputs, padded to the compiled length, and names
// their source.
func benchTraffic(tok *tokenizer.Tokenizer, s engine.Spec, path string) ([]tokenizer.Encoding, string, error) {
	rng := rand.New(rand.NewSource(1))
	var encs []tokenizer.Encoding
	switch {
	case path == "":
		// Every token real: the seed's static shape at full use.
		m := s.Seq - 3
		enc, err := producer.Lengths{A: m / 2, B: m - m/2}.Encode(tok, s.Seq, rng)
		if err != nil {
			return nil, "", err
		}
		for range s.Batch {
			encs = append(encs, enc)
		}
		return encs, fmt.Sprintf("full length (%d tokens)", s.Seq), nil
	case strings.EqualFold(filepath.Ext(path), ".tsv"):
		pairs, err := producer.LoadTSV(path)
		if err != nil {
			return nil, "", err
		}
		for _, p := range pairs {
			enc, err := tok.EncodePair(p.A, p.B, s.Seq)
			if err != nil {
				return nil, "", err
			}
			encs = append(encs, enc)
		}
	default:
		ls, err := producer.LoadLengths(path)
		if err != nil {
			return nil, "", err
		}
		for _, l := range ls {
			enc, err := l.Encode(tok, s.Seq, rng)
			if err != nil {
				return nil, "", err
			}
			encs = append(encs, enc)
		}
	}
	return encs, fmt.Sprintf("%s (%d pairs)", filepath.Base(path), len(encs)), nil
}

// realLen counts an encoding's real tokens (its mask is a prefix of ones).
func realLen(e tokenizer.Encoding) int {
	n := 0
	for _, m := range e.AttentionMask {
		n += int(m)
	}
	return n
}

// makeBatch lays encs out packed, or in the static shape padded with dummy
// rows ([CLS] [SEP]) as the worker pads a short batch.
func makeBatch(encs []tokenizer.Encoding, s engine.Spec, static bool, tok *tokenizer.Tokenizer) benchBatch {
	b := benchBatch{seqs: len(encs)}
	for _, e := range encs {
		b.tokens += realLen(e)
	}
	if !static {
		for _, e := range encs {
			n := realLen(e)
			b.in.InputIDs = append(b.in.InputIDs, e.InputIDs[:n]...)
			b.in.TokenTypeIDs = append(b.in.TokenTypeIDs, e.TokenTypeIDs[:n]...)
			b.in.Lengths = append(b.in.Lengths, int32(n))
		}
		b.rows = b.tokens
		return b
	}
	cls, _ := tok.TokenID("[CLS]")
	sep, _ := tok.TokenID("[SEP]")
	dummy := tokenizer.Encoding{InputIDs: make([]int32, s.Seq), TokenTypeIDs: make([]int32, s.Seq), AttentionMask: make([]int32, s.Seq)}
	dummy.InputIDs[0], dummy.InputIDs[1] = cls, sep
	dummy.AttentionMask[0], dummy.AttentionMask[1] = 1, 1
	for i := 0; i < s.Batch; i++ {
		e := dummy
		if i < len(encs) {
			e = encs[i]
		}
		b.in.InputIDs = append(b.in.InputIDs, e.InputIDs...)
		b.in.TokenTypeIDs = append(b.in.TokenTypeIDs, e.TokenTypeIDs...)
		b.in.AttentionMask = append(b.in.AttentionMask, e.AttentionMask...)
	}
	b.rows = s.Batch * s.Seq
	return b
}
