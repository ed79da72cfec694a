package checkpoint

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	testdataOnce sync.Once
	testdataDir  string
)

// testdata finds the shared test data: the first directory shared/testdata
// found walking up from the test's working directory (the repository root
// is cloned with shared/ beside it). It fails the test if there is none.
func testdata(t testing.TB) string {
	t.Helper()
	testdataOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			return
		}
		for {
			p := filepath.Join(dir, "shared", "testdata")
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				testdataDir = p
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				return
			}
			dir = parent
		}
	})
	if testdataDir == "" {
		wd, _ := os.Getwd()
		t.Fatalf("shared test data not found: no directory shared/testdata in %s or any parent (CI lays shared/ beside the repository clone)", wd)
	}
	return testdataDir
}
