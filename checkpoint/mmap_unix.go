//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package checkpoint

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// mmapFile maps the whole file read-only. The mapping stays valid after f is
// closed; unmap releases it.
func mmapFile(f *os.File, size int64) (mem []byte, unmap func() error, err error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil, errors.New("cannot map file of this size")
	}
	mem, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return mem, func() error { return unix.Munmap(mem) }, nil
}
