package compiler

import (
	"github.com/bertq/bertq/checkpoint"
	"github.com/bertq/bertq/tokenizer"
)

// LoadSource loads "synthetic:bert-large" or a Hugging Face checkpoint
// directory, with the tokenizer that goes with it: the directory's own
// vocab.txt and tokenizer_config.json when it has them, else the shipped
// uncased vocabulary.
func LoadSource(spec string) (Source, error) {
	w, info, err := checkpoint.Load(spec)
	if err != nil {
		return Source{}, err
	}
	tok := tokenizer.Default()
	if info.VocabPath != "" {
		if tok, err = tokenizer.LoadDir(spec); err != nil {
			return Source{}, err
		}
	}
	return Source{Name: spec, SHA256: info.Digest, Synthetic: info.Synthetic, Weights: w, Tokenizer: tok}, nil
}
