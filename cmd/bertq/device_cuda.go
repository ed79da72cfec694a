//go:build linux

package main

// The CUDA backend loads the driver, NVRTC and cuBLASLt at run time (purego),
// so it is in every Linux build, cgo or not, and reports why when a machine
// has no GPU.
import _ "github.com/bertq/bertq/engine/cuda"
