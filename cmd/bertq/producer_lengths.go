package main

import (
	"fmt"
	"io"

	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/tokenizer"
)

// producerPairs is the producer's traffic: the shipped sample, a TSV
// (--data), or generated text of given WordPiece lengths (--lengths) under
// the uncased vocabulary every bertq model ships.
func producerPairs(f *producerFlags, stderr io.Writer) ([]producer.Pair, error) {
	switch {
	case f.lengths != "" && f.data != "":
		return nil, fmt.Errorf("%w: --lengths and --data exclude each other", errUsage)
	case f.lengths != "":
		ls, err := producer.LoadLengths(f.lengths)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "traffic: %d generated pairs of the lengths in %s (no labels: accuracy means nothing)\n", len(ls), f.lengths)
		return producer.LengthPairs(tokenizer.Default(), ls, 1)
	case f.data != "":
		return producer.LoadTSV(f.data)
	}
	return producer.Sample(), nil
}
