package engine

import "fmt"

// Limits bound what one packed batch holds: at most Seqs sequences and
// Tokens token rows. Workers and benchmarks fill batches by them alike.
type Limits struct{ Seqs, Tokens int }

// Limits are the spec's own: Batch sequences, Batch×Seq tokens (what the
// engines' buffers hold).
func (s Spec) Limits() Limits { return Limits{Seqs: s.Batch, Tokens: s.Batch * s.Seq} }

// Check refuses limits the spec cannot run; zero fields take the spec's.
func (l Limits) Check(s Spec) (Limits, error) {
	max := s.Limits()
	if l.Seqs == 0 {
		l.Seqs = max.Seqs
	}
	if l.Tokens == 0 {
		l.Tokens = max.Tokens
	}
	switch {
	case l.Seqs < 1 || l.Seqs > max.Seqs:
		return l, fmt.Errorf("%w: %d sequences per batch; this artifact takes 1 to %d (compile with a larger --batch for more)", ErrInput, l.Seqs, max.Seqs)
	case l.Tokens < s.Seq || l.Tokens > max.Tokens:
		return l, fmt.Errorf("%w: %d tokens per batch; this artifact takes %d (one full sequence) to %d", ErrInput, l.Tokens, s.Seq, max.Tokens)
	}
	return l, nil
}

// Admits reports whether a batch of seqs sequences and tokens rows may take
// one more sequence of n tokens. An empty batch takes any sequence.
func (l Limits) Admits(seqs, tokens, n int) bool {
	return seqs == 0 || (seqs < l.Seqs && tokens+n <= l.Tokens)
}
