// Package badinput holds only tests: every class of bad input bertq meets,
// sent through the real intake, worker and compile worker on an embedded
// broker, each stopped where it must be (the intake refuses what it cannot
// decode, the worker what it cannot run), answered with a stable error code,
// terminated rather than redelivered, and followed by a request that
// succeeds.
//
// Run it with `go test ./test/badinput -v` and quote the BADINPUT line.
package badinput
