package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/schemas"
)

// maxLookups bounds the bucket lookups in flight for names the intake does
// not know. Beyond it, unknown names are refused at once: a flood of made-up
// names then costs neither the valid requests nor the server.
const maxLookups = 4

// modelSet is the names in the model bucket, kept by a watch on the bucket,
// so that the intake answers "does this model exist" from memory. It holds
// only what the bucket holds: names made up by callers never enter it.
type modelSet struct {
	mu    sync.RWMutex
	names map[string]struct{}
	ready bool // the watch has delivered the bucket's contents
	// settled is closed when the first watch delivered the contents or failed.
	settled     chan struct{}
	settledOnce sync.Once
}

func newModelSet() *modelSet {
	return &modelSet{names: map[string]struct{}{}, settled: make(chan struct{})}
}

func (s *modelSet) has(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.names[name]
	return ok
}

func (s *modelSet) isReady() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ready
}

func (s *modelSet) size() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.names)
}

// apply records one object's state; the bucket's meta subjects hold the last.
func (s *modelSet) apply(info *jetstream.ObjectInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if info.Deleted {
		delete(s.names, info.Name)
	} else {
		s.names[info.Name] = struct{}{}
	}
}

func (s *modelSet) setReady(ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = ready
	if !ready {
		clear(s.names) // the next watch delivers the contents again
	}
	s.settledOnce.Do(func() { close(s.settled) })
}

// startWatch keeps in.models in step with the model bucket until
// stopWatching, re-opening the watch when it ends (a bucket not provisioned
// yet, a lost connection). It returns once the bucket's contents are in, or
// the first attempt failed, or the lookup timeout passed, so that an intake
// starts with its model list.
func (in *Intake) startWatch() {
	defer func() {
		select {
		case <-in.models.settled:
		case <-time.After(in.o.lookupTimeout):
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	in.stopWatch, in.watchDone = cancel, make(chan struct{})
	go func() {
		defer close(in.watchDone)
		failing := false
		for ctx.Err() == nil {
			err := in.watchModels(ctx)
			in.models.setReady(false)
			if ctx.Err() != nil {
				return
			}
			if !failing { // one line per outage, not one per retry
				in.log.Warn().Err(err).Str("bucket", schemas.ModelBucket).Msg("not watching the model bucket; unknown names are looked up until it is back")
			}
			failing = true
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
}

func (in *Intake) stopWatching() {
	in.stopWatch()
	<-in.watchDone
}

// watchModels follows the bucket until ctx ends or the watch fails.
func (in *Intake) watchModels(ctx context.Context) error {
	obs, err := in.modelBucket(ctx)
	if err != nil {
		return err
	}
	// ctx outlives this call: the watch's ordered consumer uses it to
	// recreate itself after a gap.
	w, err := obs.Watch(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case info, ok := <-w.Updates():
			switch {
			case !ok:
				return errors.New("the watch ended")
			case info == nil: // the bucket's contents are all in
				in.models.setReady(true)
				in.log.Info().Int("models", in.models.size()).Msg("watching the model bucket")
			default:
				in.models.apply(info)
			}
		}
	}
}

// modelBucket opens the model bucket once and keeps it.
func (in *Intake) modelBucket(ctx context.Context) (jetstream.ObjectStore, error) {
	in.bucketMu.Lock()
	defer in.bucketMu.Unlock()
	if in.bucket != nil {
		return in.bucket, nil
	}
	ctx, cancel := context.WithTimeout(ctx, in.o.lookupTimeout)
	defer cancel()
	b, err := in.js.ObjectStore(ctx, schemas.ModelBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("the %s bucket does not exist: run `bertq provision`", schemas.ModelBucket)
	}
	if err != nil {
		return nil, err
	}
	in.bucket = b
	return b, nil
}

// confirm answers a request for a name the watch has not shown. The name may
// have been stored a moment ago (the watch trails the bucket a little), or
// the watch may be down, so the bucket is asked; but outside the handler,
// which serves one message at a time, and at most maxLookups at once.
func (in *Intake) confirm(p *pendingReq, model string, data []byte) {
	if e := in.takeLookup(model); e != nil {
		in.replyAsync(p, e)
		return
	}
	go func() {
		defer func() { <-in.lookups; in.lookupsDone.Done() }()
		exists, err := in.lookupFn(model)
		switch {
		case err != nil:
			in.log.Warn().Err(err).Str("model", model).Msg("model lookup failed")
			in.replyAsync(p, schemas.Errorf(schemas.CodeUnavailable, "cannot look up model %q: %v", model, err))
		case !exists:
			in.replyAsync(p, unknownModel(model))
		default:
			in.enqueue(p, schemas.WorkSubject(model), data, func(e *schemas.Error) { in.replyAsync(p, e) })
		}
	}()
}

// takeLookup reserves one of the maxLookups lookups, or says why there is
// none: every one is taken (the name is then unknown, as far as the watch
// knows), or the intake is stopping.
func (in *Intake) takeLookup(model string) *schemas.Error {
	in.lookupsMu.Lock()
	defer in.lookupsMu.Unlock()
	if in.stopping {
		return schemas.Errorf(schemas.CodeUnavailable, "the intake is stopping; retry")
	}
	select {
	case in.lookups <- struct{}{}:
		in.lookupsDone.Add(1)
		return nil
	default:
	}
	if in.models.isReady() {
		return unknownModel(model)
	}
	return schemas.Errorf(schemas.CodeUnavailable, "cannot look up model %q now: the intake is busy and not yet watching the %s bucket; retry", model, schemas.ModelBucket)
}

// lookup asks the model bucket whether an object named model exists.
func (in *Intake) lookup(model string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), in.o.lookupTimeout)
	defer cancel()
	obs, err := in.modelBucket(ctx)
	if err != nil {
		return false, err
	}
	_, err = obs.GetInfo(ctx, model)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false, nil
	}
	return err == nil, err
}

func unknownModel(model string) *schemas.Error {
	return schemas.Errorf(schemas.CodeUnknownModel, "no model %q in the %s bucket: compile or upload it first", model, schemas.ModelBucket)
}
