package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/schemas"
)

// TestUploadAndCompilerCommands uploads the tiny checkpoint with `bertq
// upload`, runs `bertq compiler`, and has it compile one job.
func TestUploadAndCompilerCommands(t *testing.T) {
	b, nc, js := testBroker(t)
	dir := fixtures.ModelDir(t, "tiny-fp32")
	code, out, errOut := runCmd(context.Background(), "upload", "--nats", b.ClientURL(), "--checkpoint", "tiny", dir)
	if code != 0 || !strings.Contains(out, "uploaded tiny/model.safetensors") {
		t.Fatalf("upload exit %d: %s%s", code, out, errOut)
	}
	if code, _, _ := runCmd(context.Background(), "upload", "--nats", b.ClientURL(), dir); code != 2 {
		t.Fatalf("upload without --checkpoint: exit %d, want 2", code)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var cErr string
	go func() {
		var c int
		c, _, cErr = runCmd(ctx, "compiler", "--nats", b.ClientURL(), "--work-dir", t.TempDir(), "--device", "go")
		done <- c
	}()
	res, err := compiler.Submit(context.Background(), nc, schemas.CompileJob{Name: "tiny", Source: "checkpoint:tiny", Batch: 2, Seq: 16, Precision: "fp32"},
		compiler.WithSubmitDirect(true), compiler.WithSubmitTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	obs, _ := js.ObjectStore(context.Background(), schemas.ModelBucket)
	info, err := obs.GetInfo(context.Background(), "tiny")
	if err != nil || info.Metadata[compiler.MetaDigest] != res.Digest {
		t.Fatalf("stored artifact %+v, %v; result %+v", info, err, res)
	}
	cancel()
	if c := <-done; c != 0 {
		t.Fatalf("compiler exit %d: %s", c, cErr)
	}
	if !strings.Contains(cErr, "compile job done") {
		t.Errorf("compiler log lacks the job:\n%s", cErr)
	}
}
