package engine

import (
	"fmt"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/tokenizer"
)

// Tokenizer builds the tokenizer an artifact was compiled with, from the
// vocabulary it carries, so that every front end encodes text alike.
func Tokenizer(f *artifact.File) (*tokenizer.Tokenizer, error) {
	vocab, err := f.Bytes(artifact.Vocab)
	if err != nil {
		return nil, err
	}
	t, err := tokenizer.New(vocab, f.Header.Lowercase)
	if err != nil {
		return nil, fmt.Errorf("%s: vocabulary: %w", f.Path, err)
	}
	return t, nil
}
