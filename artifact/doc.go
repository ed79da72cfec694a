// Package artifact is the compiled-model file format: one self-contained file
// holding a static-shape BERT classifier laid out for the engine (fused QKV with
// the attention scale folded in, weights as [in][out] in the compiled
// precision), its tokenizer vocabulary, and a header that says how it was made.
//
// Layout (all integers little-endian):
//
//	[0:8)    magic "BERTQART"
//	[8:12)   format version (uint32)
//	[12:16)  reserved, zero
//	...      tensor data, each tensor 64-byte aligned
//	...      header JSON (Header)
//	footer   uint64 header offset, uint64 header length, "BERTQEND",
//	         SHA-256 of every byte before the digest itself
//
// The header sits at the end so that the compiler can record its verification
// result after running the finished file; the digest makes a truncated or
// tampered file fail loudly at load.
package artifact
