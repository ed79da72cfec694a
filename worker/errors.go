package worker

import "errors"

// Sentinel errors; failures wrap one of them with detail.
var (
	// ErrConfig: New was given an unusable model, info or option.
	ErrConfig = errors.New("worker: bad configuration")
	// ErrConsumer: the shared durable consumer could not be created or read.
	ErrConsumer = errors.New("worker: cannot set up the JetStream consumer")
	// ErrConsumerMismatch: the shared consumer exists with settings other
	// than those this worker was explicitly given (see WithUpdateConsumer).
	ErrConsumerMismatch = errors.New("worker: the shared consumer has other settings")
	// ErrArtifact: the model's artifact could not be fetched, or what was
	// fetched is not the artifact it claims to be (truncated, tampered).
	ErrArtifact = errors.New("worker: cannot get the model artifact")
)
