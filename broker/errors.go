package broker

import "errors"

// Sentinel errors; failures wrap one of them with detail.
var (
	// ErrStart: the embedded server could not be configured or started.
	ErrStart = errors.New("broker: cannot start the embedded NATS server")
	// ErrProvision: a stream or bucket could not be created or updated.
	ErrProvision = errors.New("broker: provisioning failed")
	// ErrIntake: the intake service could not be started.
	ErrIntake = errors.New("broker: cannot start the intake")
)
