package producer

import (
	"context"
	"testing"
	"time"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/engine"
	_ "github.com/bertq/bertq/engine/gocpu"
	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

// TestPipeline runs the whole path with real parts: upload the tiny
// checkpoint, compile it through the intake and the compile service, queue a
// backlog while no worker runs, start a worker, collect every reply, then
// drive live clients through the intake.
func TestPipeline(t *testing.T) {
	nc, js := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	in, err := broker.StartIntake(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	if _, err := compiler.Upload(ctx, js, "tiny", fixtures.ModelDir(t, "tiny-fp32")); err != nil {
		t.Fatal(err)
	}
	svcCtx, stopSvc := context.WithCancel(ctx)
	svcDone := make(chan error, 1)
	go func() {
		svcDone <- compiler.Serve(svcCtx, nc, compiler.WithWorkDir(t.TempDir()), compiler.WithVerifyBackend("go"))
	}()
	defer func() { stopSvc(); <-svcDone }()
	const model = "tiny-mrpc"
	res, err := compiler.Submit(ctx, nc, schemas.CompileJob{Name: model, Source: "checkpoint:tiny", Batch: 4, Seq: 32, Precision: "fp32"})
	if err != nil {
		t.Fatal(err)
	}

	// The backlog waits in the stream: no worker yet.
	const n = 30
	r, err := Backlog(ctx, nc, n, WithModel(model))
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCollect(nc, r.RunID, WithTimeout(30*time.Second), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}

	f, err := worker.FetchArtifact(ctx, js, model, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Digest != res.Digest {
		t.Fatalf("worker fetched digest %s, compiled %s", f.Digest, res.Digest)
	}
	b, err := engine.Get("go")
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.Load(f, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info, err := worker.InfoFromArtifact(model, f)
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(nc, m, worker.WithInfo(info), worker.WithPinning(false), worker.WithFetchWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	wCtx, stopW := context.WithCancel(ctx)
	wDone := make(chan error, 1)
	go func() { wDone <- w.Run(wCtx) }()
	defer func() { stopW(); <-wDone }()

	s, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Answered != n || s.Lost != 0 || s.Errors != 0 || s.Synthetic || s.Accuracy == nil || s.Workers[w.ID()] != n {
		t.Fatalf("backlog summary %+v", s)
	}
	total := 0
	for size, k := range s.BatchSizes {
		if size < 1 || size > 4 {
			t.Fatalf("batch size %d from a batch-4 model", size)
		}
		total += k
	}
	if total != n {
		t.Fatalf("batch sizes %v cover %d of %d", s.BatchSizes, total, n)
	}

	s, err = Run(ctx, nc, WithModel(model), WithClients(8), WithCycle(4), WithTimeout(20*time.Second), WithLinger(0), WithEncoding(schemas.Msgpack))
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 32 || s.Answered != 32 || s.Duplicates != 0 || s.LatencyMS.P50 <= 0 {
		t.Fatalf("live summary %+v", s)
	}
}
