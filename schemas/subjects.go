package schemas

// Version is the wire contract version carried in messages as "v". Readers
// accept messages without it (v0 is read as the current version).
const Version = 1

// Subjects, streams, consumers and buckets. <model> is a model name: letters,
// digits, '-' and '_' only (see ValidName).
const (
	// InferSubjectPrefix + <model> is the request/reply intake, served as a
	// NATS micro endpoint on core NATS: `nats req bert.infer.<model> '{...}'`.
	InferSubjectPrefix = "bert.infer."
	// WorkSubjectPrefix + <model> is captured by InferStream. JetStream clients
	// publish here directly with HeaderReplyTo set, and get a PubAck.
	WorkSubjectPrefix = "bertq.work.infer."
	// DeadSubjectPrefix + <model> receives requests that exhausted MaxDeliver
	// (captured by DeadStream).
	DeadSubjectPrefix = "bertq.dead.infer."
	// CompileSubject is the compile-job intake (micro endpoint, request/reply).
	CompileSubject = "bert.compile"
	// CompileWorkSubject is captured by CompileStream.
	CompileWorkSubject = "bertq.work.compile"

	InferStream   = "BERTQ_INFER"
	DeadStream    = "BERTQ_DEAD"
	CompileStream = "BERTQ_COMPILE"
	// WorkerDurablePrefix + <model> is the one durable pull consumer that every
	// worker of that model shares.
	WorkerDurablePrefix = "bertq-worker-"
	// CompilerDurable is the compile workers' shared durable consumer.
	CompilerDurable = "bertq-compiler"

	// ModelBucket is the object store of compiled artifacts, by model name.
	ModelBucket = "bertq-models"
	// CheckpointBucket is the object store of uploaded checkpoints (one object
	// per file, named <checkpoint>/<file>).
	CheckpointBucket = "bertq-checkpoints"

	// WorkerStatusPrefix + <model> is answered by every worker of that model
	// with its stats (a micro endpoint, no queue group).
	WorkerStatusPrefix = "bertq.worker.status."

	// IntakeService is the micro service name of the intake.
	IntakeService = "bertq-intake"
	// WorkerService is the micro service name workers register for stats.
	WorkerService = "bertq-worker"
)

// Header names.
const (
	// HeaderReplyTo carries the caller's inbox through the stream, since
	// JetStream does not keep a publisher's reply subject.
	HeaderReplyTo = "Bertq-Reply-To"
	// HeaderContentType selects the encoding: ContentTypeJSON or ContentTypeMsgpack.
	HeaderContentType = "Content-Type"
	// HeaderMsgID is JetStream's de-duplication header; bertq sets it to the
	// request id.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderEnqueued is when the intake accepted the request (RFC 3339 nano),
	// so that queue time can be measured.
	HeaderEnqueued = "Bertq-Enqueued"
	// HeaderErrorCode is set on error replies, so a client can tell failure
	// without decoding the body.
	HeaderErrorCode = "Bertq-Error"
	// HeaderDeadReason says why a request was dead-lettered.
	HeaderDeadReason = "Bertq-Dead-Reason"
)

// Content types.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeMsgpack = "application/msgpack"
)

// InferSubject is the intake subject of a model.
func InferSubject(model string) string { return InferSubjectPrefix + model }

// WorkSubject is the stream subject of a model.
func WorkSubject(model string) string { return WorkSubjectPrefix + model }

// DeadSubject is the dead-letter subject of a model.
func DeadSubject(model string) string { return DeadSubjectPrefix + model }

// WorkerDurable is the shared durable consumer name of a model's workers.
func WorkerDurable(model string) string { return WorkerDurablePrefix + model }

// ValidName reports whether s can name a model: 1–64 of [A-Za-z0-9_-]. The
// restriction keeps names safe as subject tokens, consumer and object names.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// InboxPrefix starts every subject bertq's services reply to. NATS clients
// make their inboxes under it (nats.go's default "_INBOX.", or a per-user
// prefix below it such as "_INBOX.producer.", see deploy/SECURITY.md).
const InboxPrefix = "_INBOX."

// ValidReplySubject reports whether s may receive a reply from a worker, the
// intake or a compile worker: a literal subject (no wildcard, no white space
// or control character, no empty token) under InboxPrefix, of at most 512
// bytes. Replies go nowhere else, so that a request cannot aim a service's
// own permissions at, say, $JS.API.STREAM.PURGE.* or another message's
// $JS.ACK.* subject.
func ValidReplySubject(s string) bool {
	if len(s) <= len(InboxPrefix) || len(s) > 512 || s[:len(InboxPrefix)] != InboxPrefix {
		return false
	}
	tokenStart := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= ' ' || c == 0x7f:
			return false
		case c == '.':
			if i == tokenStart {
				return false
			}
			tokenStart = i + 1
		case c == '*' || c == '>':
			return false // no inbox has them; as a whole token they are wildcards
		}
	}
	return tokenStart < len(s)
}
