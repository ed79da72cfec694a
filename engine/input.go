package engine

import "fmt"

// Input is one batch of sequences. Their tokens are packed back to back:
// sequence i occupies Lengths[i] rows of InputIDs and TokenTypeIDs, starting
// where sequence i-1 ends, and its positions count from 0. A nil Lengths is
// the static shape: Spec.Batch sequences of Spec.Seq rows each.
//
// AttentionMask, when set, holds one 0 or 1 per row: a query attends only to
// the keys of its own sequence marked 1 (the static shape's padding is 0).
// Nil means every row is a real token, which is what packed batches send.
type Input struct {
	InputIDs      []int32
	TokenTypeIDs  []int32
	AttentionMask []int32
	Lengths       []int32
}

// Seqs is the number of sequences in the batch.
func (in Input) Seqs(s Spec) int {
	if in.Lengths == nil {
		return s.Batch
	}
	return len(in.Lengths)
}

// Len is the length of sequence i.
func (in Input) Len(s Spec, i int) int {
	if in.Lengths == nil {
		return s.Seq
	}
	return int(in.Lengths[i])
}

// Tokens is the number of rows the batch computes.
func (in Input) Tokens() int { return len(in.InputIDs) }

// Check validates an Input against a Spec and the model's vocabulary, so
// backends can trust indices and shapes. It names the first bad value.
func Check(s Spec, vocab, typeVocab int, in Input) error {
	if err := checkShape(s, in); err != nil {
		return err
	}
	start := 0
	for b := 0; b < in.Seqs(s); b++ {
		n := in.Len(s, b)
		attended := in.AttentionMask == nil
		for t := start; t < start+n; t++ {
			if id := in.InputIDs[t]; id < 0 || int(id) >= vocab {
				return fmt.Errorf("%w: input_ids[%d][%d] = %d outside the vocabulary [0, %d)", ErrInput, b, t-start, id, vocab)
			}
			if ty := in.TokenTypeIDs[t]; ty < 0 || int(ty) >= typeVocab {
				return fmt.Errorf("%w: token_type_ids[%d][%d] = %d outside [0, %d)", ErrInput, b, t-start, ty, typeVocab)
			}
			if in.AttentionMask == nil {
				continue
			}
			switch in.AttentionMask[t] {
			case 0:
			case 1:
				attended = true
			default:
				return fmt.Errorf("%w: attention_mask[%d][%d] = %d, want 0 or 1", ErrInput, b, t-start, in.AttentionMask[t])
			}
		}
		if !attended {
			return fmt.Errorf("%w: attention_mask of sequence %d is all zeros: its queries would attend to nothing", ErrInput, b)
		}
		start += n
	}
	return nil
}

func checkShape(s Spec, in Input) error {
	n := len(in.InputIDs)
	if in.Lengths == nil {
		if want := s.Batch * s.Seq; n != want {
			return fmt.Errorf("%w: a static batch has %d×%d tokens, got %d input_ids", ErrInput, s.Batch, s.Seq, n)
		}
	} else {
		if len(in.Lengths) < 1 || len(in.Lengths) > s.Batch {
			return fmt.Errorf("%w: %d sequences in a batch; this model takes 1 to %d", ErrInput, len(in.Lengths), s.Batch)
		}
		sum := 0
		for i, l := range in.Lengths {
			if l < 1 || int(l) > s.Seq {
				return fmt.Errorf("%w: sequence %d has %d tokens; this model takes 1 to %d", ErrInput, i, l, s.Seq)
			}
			sum += int(l)
		}
		if sum != n {
			return fmt.Errorf("%w: the sequence lengths add up to %d tokens, but there are %d input_ids", ErrInput, sum, n)
		}
	}
	if len(in.TokenTypeIDs) != n {
		return fmt.Errorf("%w: %d token_type_ids for %d input_ids", ErrInput, len(in.TokenTypeIDs), n)
	}
	if in.AttentionMask != nil && len(in.AttentionMask) != n {
		return fmt.Errorf("%w: %d attention_mask values for %d input_ids", ErrInput, len(in.AttentionMask), n)
	}
	return nil
}

// CheckLogits checks that logits can hold the batch's results.
func CheckLogits(s Spec, in Input, logits []float32) error {
	if want := in.Seqs(s) * s.Labels; len(logits) < want {
		return fmt.Errorf("%w: logits holds %d values, want %d×%d", ErrInput, len(logits), in.Seqs(s), s.Labels)
	}
	return nil
}

// Static lays a checked batch out in the static shape, for backends that
// only run it: each sequence in its own slot of Spec.Seq rows, the rest
// masked; empty slots get one attended token so that they stay finite.
// The static shape itself is returned as it is.
func Static(s Spec, in Input) Input {
	if in.Lengths == nil {
		return in
	}
	n := s.Batch * s.Seq
	out := Input{InputIDs: make([]int32, n), TokenTypeIDs: make([]int32, n), AttentionMask: make([]int32, n)}
	start := 0
	for b := 0; b < s.Batch; b++ {
		slot := b * s.Seq
		if b >= len(in.Lengths) {
			out.AttentionMask[slot] = 1
			continue
		}
		l := int(in.Lengths[b])
		copy(out.InputIDs[slot:], in.InputIDs[start:start+l])
		copy(out.TokenTypeIDs[slot:], in.TokenTypeIDs[start:start+l])
		if in.AttentionMask != nil {
			copy(out.AttentionMask[slot:], in.AttentionMask[start:start+l])
		} else {
			for t := slot; t < slot+l; t++ {
				out.AttentionMask[t] = 1
			}
		}
		start += l
	}
	return out
}
