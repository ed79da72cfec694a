package schemas

import "time"

// InferRequest asks for one classification: either a text pair (A, optional B)
// or a pre-tokenized sequence of exactly the model's compiled length.
type InferRequest struct {
	V  int    `json:"v,omitempty" msgpack:"v,omitempty"`
	ID string `json:"id" msgpack:"id"`
	// Model is informational; the subject decides which model runs.
	Model         string    `json:"model,omitempty" msgpack:"model,omitempty"`
	A             string    `json:"a,omitempty" msgpack:"a,omitempty"`
	B             string    `json:"b,omitempty" msgpack:"b,omitempty"`
	InputIDs      []int32   `json:"input_ids,omitempty" msgpack:"input_ids,omitempty"`
	TokenTypeIDs  []int32   `json:"token_type_ids,omitempty" msgpack:"token_type_ids,omitempty"`
	AttentionMask []int32   `json:"attention_mask,omitempty" msgpack:"attention_mask,omitempty"`
	Deadline      time.Time `json:"deadline,omitzero" msgpack:"deadline,omitempty"`
}

// Tokenized reports whether the request carries ids rather than text.
func (r *InferRequest) Tokenized() bool {
	return r.InputIDs != nil || r.TokenTypeIDs != nil || r.AttentionMask != nil
}

// InferReply answers an InferRequest. On failure only ID, Model and Error are set.
type InferReply struct {
	V     int    `json:"v" msgpack:"v"`
	ID    string `json:"id" msgpack:"id"`
	Model string `json:"model,omitempty" msgpack:"model,omitempty"`
	// Label is the winning class's name; LabelIndex its index.
	Label      string `json:"label,omitempty" msgpack:"label,omitempty"`
	LabelIndex int    `json:"label_index" msgpack:"label_index"`
	// Message is the seed's wording: "paraphrase" or "not paraphrase".
	Message       string    `json:"message,omitempty" msgpack:"message,omitempty"`
	Probabilities []float32 `json:"probabilities,omitempty" msgpack:"probabilities,omitempty"`
	Logits        []float32 `json:"logits,omitempty" msgpack:"logits,omitempty"`
	QueueMS       float64   `json:"queue_ms" msgpack:"queue_ms"`
	ComputeMS     float64   `json:"compute_ms" msgpack:"compute_ms"`
	// BatchSize is how many real requests shared the batch (padding excluded).
	BatchSize int `json:"batch_size,omitempty" msgpack:"batch_size,omitempty"`
	// BatchTokens is how many real tokens those requests had (padding
	// excluded): what the engine computed when the batch ran packed.
	BatchTokens int    `json:"batch_tokens,omitempty" msgpack:"batch_tokens,omitempty"`
	Worker      string `json:"worker,omitempty" msgpack:"worker,omitempty"`
	// Synthetic warns that the model's weights are generated: predictions are meaningless.
	Synthetic bool   `json:"synthetic,omitempty" msgpack:"synthetic,omitempty"`
	Error     *Error `json:"error,omitempty" msgpack:"error,omitempty"`
}

// CompileJob asks the compile worker to build an artifact named Name.
type CompileJob struct {
	V  int    `json:"v,omitempty" msgpack:"v,omitempty"`
	ID string `json:"id" msgpack:"id"`
	// Name is the model name the artifact is stored under.
	Name string `json:"name" msgpack:"name"`
	// Source is "synthetic:bert-large" or "checkpoint:<name>" (uploaded with
	// `bertq upload`).
	Source    string `json:"source" msgpack:"source"`
	Batch     int    `json:"batch,omitempty" msgpack:"batch,omitempty"`
	Seq       int    `json:"seq,omitempty" msgpack:"seq,omitempty"`
	Precision string `json:"precision,omitempty" msgpack:"precision,omitempty"`
	GELU      string `json:"gelu,omitempty" msgpack:"gelu,omitempty"`
}

// CompileResult answers a CompileJob.
type CompileResult struct {
	V               int     `json:"v" msgpack:"v"`
	ID              string  `json:"id" msgpack:"id"`
	Name            string  `json:"name" msgpack:"name"`
	Digest          string  `json:"digest,omitempty" msgpack:"digest,omitempty"`
	Size            int64   `json:"size,omitempty" msgpack:"size,omitempty"`
	MaxAbsLogitDiff float64 `json:"max_abs_logit_diff,omitempty" msgpack:"max_abs_logit_diff,omitempty"`
	ElapsedMS       float64 `json:"elapsed_ms,omitempty" msgpack:"elapsed_ms,omitempty"`
	Error           *Error  `json:"error,omitempty" msgpack:"error,omitempty"`
}
