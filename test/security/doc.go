// Package security holds only tests (and, in securetest, their helpers): the
// shipped deny-by-default configuration deploy/secure/bertq.conf enforced on
// a real embedded server with generated nkeys and certificates; TLS end to
// end; and log hygiene under hostile requests.
package security
