package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

// cnode is one `bertq broker --config` process of the test cluster.
type cnode struct {
	name string
	url  string
	conf string
	p    *proc
}

// start runs the node and waits until it has provisioned (R3) and serves.
func (n *cnode) start(t *testing.T) {
	t.Helper()
	n.p = startProc(t, n.name, bertqBin(t), "broker", "--config", n.conf, "--replicas", "3", "--log-json")
}

func (n *cnode) ready(t *testing.T) { n.p.waitLog(t, "broker ready", 180*time.Second) }

// startCluster writes three loopback node configs like deploy/cluster's and
// starts a `bertq broker` on each.
func startCluster(t *testing.T) []*cnode {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 6)
	routes := make([]string, 3)
	for i := range routes {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i])
	}
	nodes := make([]*cnode, 3)
	for i := range nodes {
		n := &cnode{name: fmt.Sprintf("n%d", i+1), url: fmt.Sprintf("nats://127.0.0.1:%d", ports[i])}
		n.conf = filepath.Join(dir, n.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
host: 127.0.0.1
port: %d
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 2GB
}
cluster {
  name: bertq-faults
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.name, ports[i], filepath.Join(dir, n.name+"-store"), ports[3+i], strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	for _, n := range nodes {
		n.start(t)
	}
	for _, n := range nodes {
		n.ready(t)
	}
	return nodes
}

// leaders returns the stream's and the workers' consumer's leaders.
func leaders(js jetstream.JetStream) (stream, consumer string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if s, err := js.Stream(ctx, schemas.InferStream); err == nil && s.CachedInfo().Cluster != nil {
		stream = s.CachedInfo().Cluster.Leader
	}
	if c, err := js.Consumer(ctx, schemas.InferStream, schemas.WorkerDurable(model)); err == nil && c.CachedInfo().Cluster != nil {
		consumer = c.CachedInfo().Cluster.Leader
	}
	return stream, consumer
}

// moveLeader asks the raft group behind api to elect preferred.
func moveLeader(nc *nats.Conn, api, preferred string) error {
	body := fmt.Sprintf(`{"placement":{"preferred":%q}}`, preferred)
	resp, err := nc.Request(api, []byte(body), 5*time.Second)
	if err != nil {
		return err
	}
	var r struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return err
	}
	if r.Error != nil && !strings.Contains(r.Error.Description, "already leader") {
		return fmt.Errorf("%s", r.Error.Description)
	}
	return nil
}

// allCurrent reports whether the stream and the consumer have a leader and
// two current, online followers.
func allCurrent(js jetstream.JetStream) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, schemas.InferStream)
	if err != nil {
		return false
	}
	c, err := js.Consumer(ctx, schemas.InferStream, schemas.WorkerDurable(model))
	if err != nil {
		return false
	}
	for _, ci := range []*jetstream.ClusterInfo{s.CachedInfo().Cluster, c.CachedInfo().Cluster} {
		if ci == nil || ci.Leader == "" || len(ci.Replicas) != 2 {
			return false
		}
		for _, p := range ci.Replicas {
			if !p.Current || p.Offline {
				return false
			}
		}
	}
	return true
}

// retryLoad is a client that follows the contract a caller of the intake
// needs under node loss: an attempt that is not answered within its timeout,
// or is answered unavailable, is sent again with a fresh id (the intake's
// request leg is core NATS: a request held by a node or an intake that dies
// is gone without a word). Each attempt carries a deadline at its timeout, so
// a stale attempt still queued is answered deadline_exceeded, not computed.
type retryLoad struct {
	stop chan struct{}
	done chan struct{}

	mu                                 sync.Mutex
	requests, answered, lost, attempts int
	unanswered, retried, stale, dups   int
	codes                              map[string]int
	answeredIDs                        map[string]bool
	firstErr                           error
}

const (
	retryAttemptTimeout = 15 * time.Second
	retryMaxAttempts    = 10
)

func startRetryLoad(t *testing.T, nc *nats.Conn, clients int) *retryLoad {
	t.Helper()
	l := &retryLoad{stop: make(chan struct{}), done: make(chan struct{}), codes: map[string]int{}, answeredIDs: map[string]bool{}}
	pairs := producer.Sample()
	var wg sync.WaitGroup
	for c := range clients {
		inbox := fmt.Sprintf("_INBOX.faults.retry.%d", c)
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		sub.SetPendingLimits(-1, -1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sub.Unsubscribe()
			for r := 0; ; r++ {
				select {
				case <-l.stop:
					return
				default:
				}
				p := pairs[(r*clients+c)%len(pairs)]
				ok := false
				backoff := 250 * time.Millisecond
				for a := 0; a < retryMaxAttempts && !ok; a++ {
					id := fmt.Sprintf("retry-%d-%d-%d", c, r, a)
					var refused bool
					if ok, refused = l.attempt(nc, sub, inbox, id, p, a > 0); refused {
						// The queue said no at once (no stream leader yet): wait
						// for the election rather than burn the attempts.
						time.Sleep(backoff)
						backoff = min(2*backoff, 4*time.Second)
					}
				}
				l.mu.Lock()
				l.requests++
				if ok {
					l.answered++
				} else {
					l.lost++
				}
				l.mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(l.done) }()
	t.Cleanup(func() {
		select {
		case <-l.stop:
		default:
			close(l.stop)
		}
	})
	return l
}

// attempt sends one attempt and reports whether it was answered with a
// prediction, and if not whether it was refused at once (unavailable).
func (l *retryLoad) attempt(nc *nats.Conn, sub *nats.Subscription, inbox, id string, p producer.Pair, retry bool) (ok, refused bool) {
	sent := time.Now()
	data, _ := schemas.Marshal(schemas.JSON, &schemas.InferRequest{V: schemas.Version, ID: id, Model: model, A: p.A, B: p.B,
		Deadline: sent.Add(retryAttemptTimeout).UTC()})
	l.mu.Lock()
	l.attempts++
	if retry {
		l.retried++
	}
	l.mu.Unlock()
	if err := nc.PublishMsg(&nats.Msg{Subject: schemas.InferSubject(model), Reply: inbox, Data: data}); err != nil {
		return false, true
	}
	for {
		m, err := sub.NextMsg(time.Until(sent.Add(retryAttemptTimeout)))
		if err != nil {
			l.mu.Lock()
			l.unanswered++
			l.mu.Unlock()
			return false, false
		}
		var r schemas.InferReply
		if err := schemas.Unmarshal(schemas.Detect(m.Header.Get(schemas.HeaderContentType), m.Data), m.Data, &r); err != nil {
			l.fail(fmt.Errorf("undecodable reply: %v", err))
			continue
		}
		l.mu.Lock()
		switch {
		case l.answeredIDs[r.ID]:
			l.dups++ // a redelivered request answered again
		case r.ID != id:
			l.stale++ // an earlier attempt, answered after all
			if r.Error == nil {
				l.answeredIDs[r.ID] = true
			}
		case r.Error != nil:
			l.codes[r.Error.Code]++
		default:
			l.answeredIDs[id] = true
		}
		l.mu.Unlock()
		if r.ID != id {
			continue
		}
		if r.Error == nil {
			return true, false
		}
		if c := r.Error.Code; c != schemas.CodeUnavailable && c != schemas.CodeDeadline {
			l.fail(fmt.Errorf("attempt %s: %v", id, r.Error))
		}
		return false, r.Error.Code == schemas.CodeUnavailable
	}
}

func (l *retryLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.firstErr == nil {
		l.firstErr = err
	}
}

func (l *retryLoad) answeredCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.answered
}

// finish lets every client end its current request.
func (l *retryLoad) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	select {
	case <-l.done:
	case <-time.After(retryMaxAttempts*retryAttemptTimeout + 30*time.Second):
		t.Fatal("the retrying clients did not finish")
	}
}

// TestClusterNodeLoss runs three `bertq broker --config` processes (each
// with its intake) as an R3 JetStream cluster, and two workers connected to
// nodes 2 and 3. Under load it moves the stream's and the consumer's
// leadership to node 2 or 3 and kills that node with SIGKILL, then restarts
// it and lets it catch up, more than once. Two clients load it through the
// intake, both connected to node 1, and both must see every request
// answered: a client re-sending with fresh ids (retryLoad) and the producer
// with WithRetry, re-sending the same id. Both must retry: a request held by
// the killed node (in its intake, or in transit) gets no reply at all, since
// NATS spreads the requests of node 1's clients over the intakes of all
// three nodes.
func TestClusterNodeLoss(t *testing.T) {
	kills := pick(2, 6)
	tm := loadTiny(t)
	start := time.Now()
	nodes := startCluster(t)
	formed := time.Since(start)
	ctl := connect(t, "faults-ctl", nodes[0].url)
	js := newJS(t, ctl)
	putArtifact(t, js)
	urls := func(first int) []string {
		return []string{nodes[first].url, nodes[3-first].url, nodes[0].url}
	}
	for i, first := range []int{1, 2} {
		startWorker(t, connect(t, "worker", urls(first)...), tm, worker.WithID(fmt.Sprintf("cl-w%d", i+1)),
			worker.WithAckWait(2*time.Second), worker.WithMaxDeliver(20))
	}
	waitConsumer(t, js)
	waitFor(t, 60*time.Second, "stream and consumer replicas current", func() bool { return allCurrent(js) })
	tl := newTally(t, ctl, producer.InboxRoot+">")
	rl := startRetryLoad(t, connect(t, "faults-retry-client", nodes[0].url), 8)
	l := startLoad(t, connect(t, "faults-producer", nodes[0].url), producer.WithModel(model), producer.WithClients(4),
		producer.WithCycle(50), producer.WithTimeout(20*time.Second), producer.WithLinger(0), producer.WithRetry(2*time.Second))

	leaderKills, consumerLeaderKills := 0, 0
	var recoveries []string
	for r := 0; r < kills; r++ {
		target := nodes[1+r%2]
		mark := rl.answeredCount()
		waitFor(t, 120*time.Second, "answers before the kill", func() bool { return rl.answeredCount() >= mark+100 })
		if err := moveLeader(ctl, "$JS.API.STREAM.LEADER.STEPDOWN."+schemas.InferStream, target.name); err != nil {
			t.Logf("moving the stream leader to %s: %v", target.name, err)
		}
		if err := moveLeader(ctl, "$JS.API.CONSUMER.LEADER.STEPDOWN."+schemas.InferStream+"."+schemas.WorkerDurable(model), target.name); err != nil {
			t.Logf("moving the consumer leader to %s: %v", target.name, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		sl, cl := leaders(js)
		for (sl != target.name || cl != target.name) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			sl, cl = leaders(js)
		}
		if sl == target.name {
			leaderKills++
		}
		if cl == target.name {
			consumerLeaderKills++
		}
		mark = rl.answeredCount()
		killed := time.Now()
		target.p.signal(t, syscall.SIGKILL, 10*time.Second)
		waitFor(t, 120*time.Second, "answers after the kill", func() bool { return rl.answeredCount() >= mark+100 })
		recovered := time.Since(killed)
		target.start(t)
		target.ready(t)
		waitFor(t, 120*time.Second, "the restarted node to catch up", func() bool { return allCurrent(js) })
		recoveries = append(recoveries, fmt.Sprintf("%s(stream_leader=%v,consumer_leader=%v):serving_again=%.1fs,caught_up=%.1fs",
			target.name, sl == target.name, cl == target.name, recovered.Seconds(), time.Since(killed).Seconds()))
	}
	rl.finish(t)
	sum := l.finish(t, 180*time.Second)
	waitIdle(t, js, 60*time.Second)
	ctl.Flush()
	time.Sleep(200 * time.Millisecond)

	pdups, _ := tl.dups()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	t.Logf("FAULT cluster-node-loss sent=%d answered=%d duplicates=%d lost=%d attempts=%d retried=%d attempts_unanswered=%d attempt_errors=%s stale_answers=%d kills=%d stream_leader_kills=%d consumer_leader_kills=%d formed_in=%.1fs elapsed=%.1fs %s",
		rl.requests, rl.answered, rl.dups, rl.lost, rl.attempts, rl.retried, rl.unanswered, codes(rl.codes), rl.stale,
		kills, leaderKills, consumerLeaderKills, formed.Seconds(), time.Since(start).Seconds(), strings.Join(recoveries, " "))
	t.Logf("FAULT cluster-node-loss-producer sent=%d answered=%d errors=%d duplicates=%d lost=%d late=%d resends=%d error_codes=%s rounds=%d",
		sum.Sent, sum.Answered, sum.Errors, pdups, sum.Lost, sum.Late, sum.Resends, codes(sum.ErrorCodes), l.rounds)
	if sum.Lost != 0 || sum.Errors != 0 || sum.Answered != sum.Sent {
		t.Errorf("producer with retries: sent %d, answered %d, errors %d, lost %d", sum.Sent, sum.Answered, sum.Errors, sum.Lost)
	}
	if rl.lost != 0 || rl.answered != rl.requests || rl.firstErr != nil {
		t.Errorf("retrying client: %d requests, %d answered, %d lost; %v", rl.requests, rl.answered, rl.lost, rl.firstErr)
	}
	if sum.Answered+sum.Errors+sum.Lost != sum.Sent {
		t.Errorf("producer: sent %d != answered %d + errors %d + lost %d", sum.Sent, sum.Answered, sum.Errors, sum.Lost)
	}
	for c := range sum.ErrorCodes {
		if c != schemas.CodeUnavailable {
			t.Errorf("producer: error replies other than %s: %s", schemas.CodeUnavailable, codes(sum.ErrorCodes))
		}
	}
	if leaderKills == 0 {
		t.Errorf("no kill hit the stream leader")
	}
}
