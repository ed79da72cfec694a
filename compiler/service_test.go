package compiler

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/checkpoint"
	_ "github.com/bertq/bertq/engine/gocpu"
	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/internal/natstest"
	"github.com/bertq/bertq/schemas"
)

// startNATS runs an embedded, provisioned JetStream server on a random
// loopback port.
func startNATS(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	e := natstest.Provisioned(t)
	return e.NC, e.JS
}

// startService runs Serve until the test ends.
func startService(t *testing.T, nc *nats.Conn, opts ...ServiceOption) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts = append([]ServiceOption{WithWorkDir(t.TempDir()), withFetchWait(300 * time.Millisecond), WithVerifyBackend("go")}, opts...)
	go func() { done <- Serve(ctx, nc, opts...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// submit sends a job straight into the stream (the test needs no intake).
func submit(t *testing.T, nc *nats.Conn, job schemas.CompileJob, opts ...SubmitOption) (*schemas.CompileResult, error) {
	t.Helper()
	opts = append([]SubmitOption{WithSubmitDirect(true), WithSubmitTimeout(60 * time.Second)}, opts...)
	return Submit(context.Background(), nc, job, opts...)
}

// drained waits until the compile consumer holds no pending or unacked job.
func drained(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := js.Consumer(context.Background(), schemas.CompileStream, schemas.CompilerDurable)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(context.Background(), schemas.CompileStream)
		if err != nil {
			t.Fatal(err)
		}
		msgs := st.CachedInfo().State.Msgs
		if info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0 && msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("compile consumer not drained: pending %d, ack pending %d, redelivered %d, stream msgs %d", info.NumPending, info.NumAckPending, info.NumRedelivered, msgs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServiceCompilesUploadedCheckpoint(t *testing.T) {
	nc, js := startNATS(t)
	ctx := context.Background()
	objs, err := Upload(ctx, js, "tiny", fixtures.ModelDir(t, "tiny-fp32"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tiny/config.json", "tiny/model.safetensors"}; !slices.Equal(objs, want) {
		t.Fatalf("uploaded %v, want %v", objs, want)
	}
	startService(t, nc)

	for _, enc := range []schemas.Encoding{schemas.JSON, schemas.Msgpack} {
		name := "tiny-b4-" + enc.String()
		res, err := submit(t, nc, schemas.CompileJob{Name: name, Source: "checkpoint:tiny", Batch: 4, Seq: 32, Precision: "fp32"}, WithSubmitEncoding(enc))
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if res.Name != name || res.ID == "" || len(res.Digest) != 64 || res.Size <= 0 || res.ElapsedMS <= 0 || res.V != schemas.Version {
			t.Fatalf("result %+v", res)
		}
		if res.MaxAbsLogitDiff <= 0 || res.MaxAbsLogitDiff > 1e-3 {
			t.Fatalf("max_abs_logit_diff %g: verification missing or too far from the reference", res.MaxAbsLogitDiff)
		}
		obs, err := js.ObjectStore(ctx, schemas.ModelBucket)
		if err != nil {
			t.Fatal(err)
		}
		info, err := obs.GetInfo(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "a.bertq")
		if err := obs.GetFile(ctx, name, path); err != nil {
			t.Fatal(err)
		}
		a, err := artifact.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		h := *a.Header
		digest, size := a.Digest, a.Size()
		a.Close()
		if digest != res.Digest || size != res.Size || int64(info.Size) != res.Size {
			t.Fatalf("stored artifact digest %s size %d (object %d), result %s %d", digest, size, info.Size, res.Digest, res.Size)
		}
		m := info.Metadata
		if m[MetaDigest] != res.Digest || m[MetaPrecision] != "fp32" || m[MetaBatch] != "4" || m[MetaSeq] != "32" ||
			m[MetaSource] != "checkpoint:tiny" || m[MetaSynthetic] != "false" || m[MetaJobID] != res.ID {
			t.Fatalf("object metadata %v", m)
		}
		if h.Batch != 4 || h.Seq != 32 || h.Precision != artifact.FP32 || h.Source != "checkpoint:tiny" || h.Synthetic || h.Verification == nil {
			t.Fatalf("artifact header %+v", h)
		}
	}
	drained(t, js)
}

func TestServiceBadJobs(t *testing.T) {
	nc, js := startNATS(t)
	ctx := context.Background()
	if _, err := Upload(ctx, js, "tiny", fixtures.ModelDir(t, "tiny-fp32")); err != nil {
		t.Fatal(err)
	}
	// A corrupt checkpoint, stored behind Upload's back: a good config and
	// garbage weights.
	obs, err := js.ObjectStore(ctx, schemas.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(fixtures.ModelDir(t, "tiny-fp32"), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, "corrupt/config.json", cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, "corrupt/model.safetensors", []byte("\xff\xff\xff\xff\xff\xff\xff\x7fnot safetensors")); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, "noweights/config.json", cfg); err != nil {
		t.Fatal(err)
	}
	startService(t, nc)

	good := schemas.CompileJob{Name: "m", Source: "checkpoint:tiny", Batch: 4, Seq: 32, Precision: "fp32"}
	with := func(f func(j *schemas.CompileJob)) schemas.CompileJob { j := good; f(&j); return j }
	cases := []struct {
		name string
		job  schemas.CompileJob
		code string
		msg  string
	}{
		{"missing source", with(func(j *schemas.CompileJob) { j.Source = "" }), schemas.CodeBadCompileJob, "\"source\" is required"},
		{"unknown source scheme", with(func(j *schemas.CompileJob) { j.Source = "/etc/passwd" }), schemas.CodeBadCompileJob, "want synthetic:bert-large or checkpoint:<name>"},
		{"unknown synthetic", with(func(j *schemas.CompileJob) { j.Source = "synthetic:gpt" }), schemas.CodeBadCompileJob, "no such synthetic model"},
		{"not uploaded", with(func(j *schemas.CompileJob) { j.Source = "checkpoint:nothere" }), schemas.CodeBadCompileJob, "not uploaded"},
		{"bad name", with(func(j *schemas.CompileJob) { j.Name = "a.b" }), schemas.CodeBadCompileJob, "name"},
		{"unknown precision", with(func(j *schemas.CompileJob) { j.Precision = "fp16" }), schemas.CodeBadCompileJob, "precision"},
		{"batch 0", with(func(j *schemas.CompileJob) { j.Batch = 0 }), schemas.CodeBadCompileJob, "batch 0"},
		{"batch 10000", with(func(j *schemas.CompileJob) { j.Batch = 10000 }), schemas.CodeBadCompileJob, "batch 10000"},
		{"seq 0", with(func(j *schemas.CompileJob) { j.Seq = 0 }), schemas.CodeBadCompileJob, "seq 0"},
		{"seq 100000", with(func(j *schemas.CompileJob) { j.Seq = 100000 }), schemas.CodeBadCompileJob, "seq 100000"},
		{"seq over the model's max", with(func(j *schemas.CompileJob) { j.Seq = 513 }), schemas.CodeBadCompileJob, "3..512"},
		{"synthetic seq over max", with(func(j *schemas.CompileJob) { j.Source = "synthetic:bert-large"; j.Seq = 1000 }), schemas.CodeBadCompileJob, "3..512"},
		{"gelu", with(func(j *schemas.CompileJob) { j.GELU = "fast" }), schemas.CodeBadCompileJob, "gelu"},
		{"corrupt checkpoint", with(func(j *schemas.CompileJob) { j.Source = "checkpoint:corrupt" }), schemas.CodeCompileFailed, "checkpoint:corrupt/model.safetensors"},
		{"no weights", with(func(j *schemas.CompileJob) { j.Source = "checkpoint:noweights" }), schemas.CodeCompileFailed, "neither model.safetensors nor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := submit(t, nc, c.job)
			var se *schemas.Error
			if !errors.As(err, &se) || se.Code != c.code || !strings.Contains(se.Message, c.msg) {
				t.Fatalf("err = %v, want %s containing %q", err, c.code, c.msg)
			}
			t.Logf("%s: %v", c.name, err)
			if res == nil || res.Error == nil || res.Digest != "" || res.ID == "" {
				t.Fatalf("result %+v", res)
			}
			if strings.Contains(se.Message, os.TempDir()) {
				t.Errorf("message leaks the work dir: %s", se.Message)
			}
		})
	}

	// An undecodable job.
	inbox := nc.NewInbox()
	sub, _ := nc.SubscribeSync(inbox)
	msg := nats.NewMsg(schemas.CompileWorkSubject)
	msg.Header.Set(schemas.HeaderReplyTo, inbox)
	msg.Data = []byte("[1,2]")
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	rep, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Header.Get(schemas.HeaderErrorCode) != schemas.CodeBadEncoding {
		t.Fatalf("undecodable job: reply %q, headers %v", rep.Data, rep.Header)
	}
	// Nothing was stored.
	mobs, _ := js.ObjectStore(ctx, schemas.ModelBucket)
	if list, err := mobs.List(ctx); !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatalf("model bucket holds %d objects (%v)", len(list), err)
	}
	drained(t, js)
}

// TestServiceRetriesUnavailable: when the artifact cannot be stored, the job
// is redelivered, and its last delivery replies "unavailable".
func TestServiceRetriesUnavailable(t *testing.T) {
	nc, js := startNATS(t)
	ctx := context.Background()
	if _, err := Upload(ctx, js, "tiny", fixtures.ModelDir(t, "tiny-fp32")); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteObjectStore(ctx, schemas.ModelBucket); err != nil {
		t.Fatal(err)
	}
	startService(t, nc, withRetryDelay(50*time.Millisecond))
	_, err := submit(t, nc, schemas.CompileJob{Name: "m", Source: "checkpoint:tiny", Batch: 1, Seq: 8, Precision: "bf16"})
	var se *schemas.Error
	if !errors.As(err, &se) || se.Code != schemas.CodeUnavailable || !strings.Contains(se.Message, schemas.ModelBucket) {
		t.Fatalf("err = %v", err)
	}
	c, _ := js.Consumer(ctx, schemas.CompileStream, schemas.CompilerDurable)
	info, _ := c.Info(ctx)
	if info.Delivered.Consumer != DefaultMaxDeliver {
		t.Fatalf("delivered %d times, want %d", info.Delivered.Consumer, DefaultMaxDeliver)
	}
}

func TestServeWithoutStream(t *testing.T) {
	nc, js := startNATS(t)
	if err := js.DeleteStream(context.Background(), schemas.CompileStream); err != nil {
		t.Fatal(err)
	}
	err := Serve(context.Background(), nc, WithWorkDir(t.TempDir()))
	if !errors.Is(err, ErrService) || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err = %v", err)
	}
}

func TestSubmitNoIntake(t *testing.T) {
	nc, _ := startNATS(t)
	_, err := Submit(context.Background(), nc, schemas.CompileJob{Name: "m", Source: "synthetic:bert-large", Batch: 4, Seq: 128})
	if !errors.Is(err, ErrSubmit) || !strings.Contains(err.Error(), "nothing serves") {
		t.Fatalf("err = %v", err)
	}
}

func TestUpload(t *testing.T) {
	_, js := startNATS(t)
	ctx := context.Background()
	src := fixtures.ModelDir(t, "tiny-fp32")
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for f, body := range map[string]string{
		"vocab.txt": "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n", "tokenizer_config.json": `{"do_lower_case": true}`,
		"README.md": "not uploaded", "pytorch_model.bin": "not uploaded",
	} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := Upload(ctx, js, "ck", dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ck/config.json", "ck/model.safetensors", "ck/tokenizer_config.json", "ck/vocab.txt"}
	if !slices.Equal(objs, want) {
		t.Fatalf("uploaded %v, want %v", objs, want)
	}
	// A re-upload without the vocabulary removes the stale one.
	os.Remove(filepath.Join(dir, "vocab.txt"))
	if _, err := Upload(ctx, js, "ck", dir); err != nil {
		t.Fatal(err)
	}
	obs, _ := js.ObjectStore(ctx, schemas.CheckpointBucket)
	if _, err := obs.GetInfo(ctx, "ck/vocab.txt"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("stale vocab.txt: %v", err)
	}
	if _, err := Upload(ctx, js, "bad/name", dir); !errors.Is(err, ErrUpload) {
		t.Fatalf("bad name: %v", err)
	}
	// A directory the loader refuses is not uploaded.
	os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("\x08\x00\x00\x00\x00\x00\x00\x00{}"), 0o600)
	if _, err := Upload(ctx, js, "ck2", dir); !errors.Is(err, ErrUpload) || !errors.Is(err, checkpoint.ErrCorrupt) {
		t.Fatalf("corrupt dir: %v", err)
	}
	if _, err := obs.GetInfo(ctx, "ck2/config.json"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("a refused checkpoint left objects: %v", err)
	}
	if _, err := Upload(ctx, js, "ck3", t.TempDir()); !errors.Is(err, ErrUpload) {
		t.Fatalf("empty dir: %v", err)
	}
}

// TestServiceHeartbeat: a job that outlasts AckWait is kept by InProgress
// and delivered once.
func TestServiceHeartbeat(t *testing.T) {
	nc, js := startNATS(t)
	ctx := context.Background()
	if _, err := Upload(ctx, js, "tiny", fixtures.ModelDir(t, "tiny-fp32")); err != nil {
		t.Fatal(err)
	}
	cfg := ConsumerConfig()
	cfg.AckWait = 500 * time.Millisecond
	if _, err := js.CreateOrUpdateConsumer(ctx, schemas.CompileStream, cfg); err != nil {
		t.Fatal(err)
	}
	// Two workers: without InProgress the second would get the job too.
	slow := withBeforeCompile(func() { time.Sleep(1500 * time.Millisecond) })
	startService(t, nc, WithHeartbeat(100*time.Millisecond), slow)
	startService(t, nc, WithHeartbeat(100*time.Millisecond), slow)
	res, err := submit(t, nc, schemas.CompileJob{Name: "slow", Source: "checkpoint:tiny", Batch: 2, Seq: 16, Precision: "bf16", GELU: "tanh"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest == "" {
		t.Fatalf("result %+v", res)
	}
	c, _ := js.Consumer(ctx, schemas.CompileStream, schemas.CompilerDurable)
	info, _ := c.Info(ctx)
	if info.Delivered.Consumer != 1 || info.NumRedelivered != 0 {
		t.Fatalf("delivered %d times (%d redelivered): InProgress did not hold the job", info.Delivered.Consumer, info.NumRedelivered)
	}
	drained(t, js)
}

// TestSubmitViaIntake goes through the broker's intake on bert.compile, as
// `bertq compile --submit` does.
func TestSubmitViaIntake(t *testing.T) {
	nc, js := startNATS(t)
	in, err := broker.StartIntake(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	if _, err := Upload(context.Background(), js, "tiny", fixtures.ModelDir(t, "tiny-fp32")); err != nil {
		t.Fatal(err)
	}
	startService(t, nc)
	opt := WithSubmitTimeout(60 * time.Second)
	res, err := Submit(context.Background(), nc, schemas.CompileJob{ID: "job-1", Name: "tiny", Source: "checkpoint:tiny", Batch: 1, Seq: 8, Precision: "fp32"}, opt)
	if err != nil || res.ID != "job-1" || res.Digest == "" {
		t.Fatalf("result %+v, %v", res, err)
	}
	for _, c := range []struct {
		job  schemas.CompileJob
		want string
	}{
		{schemas.CompileJob{Name: "bad name", Source: "checkpoint:tiny", Batch: 1, Seq: 8}, "name"}, // refused by the intake
		{schemas.CompileJob{Name: "ok", Source: "checkpoint:tiny", Batch: 0, Seq: 8}, "batch 0"},    // refused by the service
	} {
		res, err := Submit(context.Background(), nc, c.job, opt, WithSubmitEncoding(schemas.Msgpack))
		var se *schemas.Error
		if !errors.As(err, &se) || se.Code != schemas.CodeBadCompileJob || !strings.Contains(se.Message, c.want) || res == nil || res.ID == "" {
			t.Fatalf("%+v: result %+v, err %v", c.job, res, err)
		}
	}
	drained(t, js)
}
