// Package schemas is bertq's wire contract: subjects, header names, and the
// messages exchanged on them, each accepted as JSON or msgpack. Everyone
// depends on it; it depends on no other bertq package.
package schemas
