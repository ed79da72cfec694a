package producer

import "errors"

// Sentinel errors; failures wrap one of them with the detail.
var (
	// ErrData: the TSV data is malformed (the message names file and line).
	ErrData = errors.New("producer: bad data")
	// ErrOptions: an option is out of range or missing (model name, counts).
	ErrOptions = errors.New("producer: invalid options")
	// ErrNoIntake: nothing serves the model's intake subject (no broker).
	ErrNoIntake = errors.New("producer: no intake responds")
	// ErrRunID: a run id that Collect cannot parse.
	ErrRunID = errors.New("producer: not a backlog run id")
	// ErrPublish: a backlog could not be fully published.
	ErrPublish = errors.New("producer: publish failed")
)
