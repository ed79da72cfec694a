package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"strconv"

	"github.com/bertq/bertq/tokenizer"
)

func init() {
	register(&command{
		name:    "tokenize",
		summary: "encode JSON lines {\"a\": ..., \"b\": ...} from stdin into BERT input ids",
		args:    "< pairs.jsonl",
		setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env) error {
			vocab := fs.String("vocab", "", "WordPiece `vocab.txt` (default: the embedded bert-base/large-uncased vocabulary)")
			lower := fs.Bool("lowercase", true, "lowercase and strip accents (uncased models)")
			seq := fs.Int("seq", 128, "sequence `length`: truncate (longest_first) and pad to it")
			fs.Usage = func() {
				fmt.Fprintf(fs.Output(), "usage: bertq tokenize [--vocab FILE] [--lowercase=true] [--seq 128] < pairs.jsonl\n\n"+
					"Reads one JSON object {\"a\": \"...\", \"b\": \"...\"} per line (b optional; blank lines skipped) and\n"+
					"writes one line {\"input_ids\": [...], \"token_type_ids\": [...], \"attention_mask\": [...]} per input.\n\n")
				fs.PrintDefaults()
			}
			return func(ctx context.Context, e *env) error {
				if len(e.args) != 0 {
					return usagef("unexpected arguments %q: the pairs come on stdin", e.args)
				}
				if *seq < 2 || *seq > tokenizer.MaxSeqLen {
					return usagef("--seq %d: must be between 2 (3 for pairs) and %d", *seq, tokenizer.MaxSeqLen)
				}
				var tok *tokenizer.Tokenizer
				switch {
				case *vocab != "":
					var err error
					if tok, err = tokenizer.Load(*vocab, tokenizer.WithLowercase(*lower)); err != nil {
						return err
					}
				case *lower:
					tok = tokenizer.Default()
				default:
					var err error
					if tok, err = tokenizer.New(tokenizer.Default().VocabBytes(), false); err != nil {
						return err
					}
				}
				return runTokenize(ctx, e, tok, *seq)
			}
		},
	})
}

// runTokenize encodes every line of e.stdin onto e.stdout. Output already
// written stays written when a later line fails.
func runTokenize(ctx context.Context, e *env, tok *tokenizer.Tokenizer, seq int) error {
	w := bufio.NewWriterSize(e.stdout, 64<<10)
	var buf []byte
	err := readPairs(e.stdin, func(line int, a, b string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		enc, err := tok.EncodePair(a, b, seq)
		if err != nil {
			return err
		}
		buf = appendEncodingJSON(buf[:0], enc)
		_, err = w.Write(buf)
		return err
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// appendEncodingJSON appends enc as one JSON line.
func appendEncodingJSON(b []byte, enc tokenizer.Encoding) []byte {
	field := func(b []byte, name string, v []int32) []byte {
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":[`...)
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(x), 10)
		}
		return append(b, ']')
	}
	b = append(b, '{')
	b = field(b, "input_ids", enc.InputIDs)
	b = append(b, ',')
	b = field(b, "token_type_ids", enc.TokenTypeIDs)
	b = append(b, ',')
	b = field(b, "attention_mask", enc.AttentionMask)
	return append(b, "}\n"...)
}
