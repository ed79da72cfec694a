// Package badinput holds only tests: every class of bad input bertq meets,
// sent through the real intake, worker and compile worker on an embedded
// broker, each answered with a stable error code, terminated rather than
// redelivered, and followed by a request that succeeds.
//
// Run it with `go test ./test/badinput -v` and quote the BADINPUT line.
package badinput
