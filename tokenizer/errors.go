package tokenizer

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these with
// details (line numbers, token names, lengths); test with errors.Is.
var (
	// ErrBadVocab: the vocabulary file is unusable: empty, not UTF-8, an empty
	// line, a duplicate token, or one of [CLS], [SEP], [PAD], [UNK] missing.
	ErrBadVocab = errors.New("tokenizer: bad vocabulary")

	// ErrBadConfig: a Hugging Face tokenizer_config.json could not be read or
	// asks for a behaviour this tokenizer does not implement.
	ErrBadConfig = errors.New("tokenizer: bad tokenizer config")

	// ErrSeqTooShort: the sequence length cannot hold the special tokens
	// ([CLS] a [SEP] needs 2, [CLS] a [SEP] b [SEP] needs 3).
	ErrSeqTooShort = errors.New("tokenizer: sequence length too short for the special tokens")

	// ErrSeqTooLong: the sequence length exceeds MaxSeqLen.
	ErrSeqTooLong = errors.New("tokenizer: sequence length too long")
)
