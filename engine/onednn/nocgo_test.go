//go:build !cgo

package onednn

import (
	"errors"
	"strings"
	"testing"

	"github.com/bertq/bertq/engine"
)

func TestWithoutCgo(t *testing.T) {
	_, err := engine.Get(Name)
	if !errors.Is(err, engine.ErrUnavailable) || !strings.Contains(err.Error(), "built without cgo") {
		t.Fatalf("Get(%q) = %v, want ErrUnavailable explaining the missing cgo", Name, err)
	}
	if un := engine.Unavailable()[Name]; !errors.Is(un, ErrNoCgo) {
		t.Fatalf("Unavailable()[%q] = %v, want ErrNoCgo", Name, un)
	}
}
