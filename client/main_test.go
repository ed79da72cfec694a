package client_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/bertq/bertq/internal/stacktest"
)

// stack is the running bertq (broker, intake, worker serving
// stacktest.Model) that the examples call; natsURL is its address.
var (
	stack   *stacktest.Stack
	natsURL string
)

// TestMain starts one stack for the package's examples and tests.
func TestMain(m *testing.M) {
	var err error
	if stack, err = stacktest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the test stack:", err)
		os.Exit(1)
	}
	natsURL = stack.URL
	code := m.Run()
	stack.Close()
	os.Exit(code)
}
