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

// TestClusterNodeLoss runs three `bertq broker --config` processes as an R3
// JetStream cluster, a producer through the intake of node 1 and two workers
// connected to nodes 2 and 3. Under load it moves the stream's and the
// consumer's leadership to node 2 or 3 and kills that node with SIGKILL, then
// restarts it and lets it catch up, more than once. While the stream elects
// a new leader (seconds) the intake answers unavailable; an accepted request
// is never lost.
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
	var ws []*runWorker
	for i, first := range []int{1, 2} {
		ws = append(ws, startWorker(t, connect(t, "worker", urls(first)...), tm, worker.WithID(fmt.Sprintf("cl-w%d", i+1)),
			worker.WithAckWait(2*time.Second), worker.WithMaxDeliver(20)))
	}
	waitConsumer(t, js)
	waitFor(t, 60*time.Second, "stream and consumer replicas current", func() bool { return allCurrent(js) })
	tl := newTally(t, ctl, producer.InboxRoot+">")
	var dmu sync.Mutex
	reqSeen := map[string]int{}      // id -> requests seen on bert.infer
	pubSeen := map[string][]string{} // id -> ack inboxes of intake publishes
	ackSeen := map[string][]string{} // ack inbox -> responses
	mon := connect(t, "mon", nodes[0].url)
	mon.Subscribe(schemas.InferSubject(model), func(m *nats.Msg) {
		id := schemas.PeekID(schemas.JSON, m.Data)
		dmu.Lock()
		reqSeen[id]++
		dmu.Unlock()
	})
	mon.Subscribe(schemas.WorkSubject(model), func(m *nats.Msg) {
		id := m.Header.Get(schemas.HeaderMsgID)
		dmu.Lock()
		pubSeen[id] = append(pubSeen[id], m.Reply)
		dmu.Unlock()
	})
	mon.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, producer.InboxRoot) {
			return
		}
		dmu.Lock()
		ackSeen[m.Subject] = append(ackSeen[m.Subject], fmt.Sprintf("%v %s", m.Header, m.Data))
		dmu.Unlock()
	})
	mon.Flush()
	defer func() {
		dmu.Lock()
		defer dmu.Unlock()
		tl.mu.Lock()
		var ids []string
		for id := range tl.byID {
			ids = append(ids, id)
		}
		tl.mu.Unlock()
		for _, line := range strings.Split(nodes[0].p.out.String(), "\n") {
			if strings.Contains(line, "enqueue") || strings.Contains(line, "intake") {
				t.Logf("DEBUG3 %s", line)
			}
		}
		runs := map[string]bool{}
		for _, id := range ids {
			runs[strings.SplitN(id, "-", 2)[0]] = true
		}
		for run := range runs {
			for c := 0; c < 8; c++ {
				for q := 0; q < 50; q++ {
					id := fmt.Sprintf("%s-%d-%d", run, c, q)
					if tl.get(id) == nil {
						t.Logf("DEBUG2 missing %s: requests %d, intake publishes %v", id, reqSeen[id], pubSeen[id])
						for _, r := range pubSeen[id] {
							t.Logf("DEBUG2    ack inbox %s: %v", r, ackSeen[r])
						}
					}
				}
			}
		}
	}()
	tl2 := newTally(t, connect(t, "t2", nodes[1].url), producer.InboxRoot+">")
	tl3 := newTally(t, connect(t, "t3", nodes[2].url), producer.InboxRoot+">")
	defer func() {
		var n uint64
		for _, w := range ws {
			n += w.w.Stats().Answered
		}
		t.Logf("DEBUG workers answered %d, replies seen on n1 %d", n, tl.answered())
	}()
	defer func() {
		runs := map[string]bool{}
		tl.mu.Lock()
		for id := range tl.byID {
			runs[strings.SplitN(id, "-", 2)[0]] = true
		}
		tl.mu.Unlock()
		for run := range runs {
			for c := 0; c < 8; c++ {
				for q := 0; q < 50; q++ {
					id := fmt.Sprintf("%s-%d-%d", run, c, q)
					if tl.get(id) == nil {
						s2, s3 := tl2.get(id), tl3.get(id)
						t.Logf("DEBUG missing %s: seen on n2 %+v, on n3 %+v", id, s2, s3)
					}
				}
			}
		}
	}()
	l := startLoad(t, connect(t, "faults-producer", nodes[0].url), producer.WithModel(model), producer.WithClients(8),
		producer.WithCycle(50), producer.WithTimeout(30*time.Second), producer.WithLinger(0))

	leaderKills, consumerLeaderKills := 0, 0
	var recoveries []string
	for r := 0; r < kills; r++ {
		target := nodes[1+r%2]
		mark := tl.answered()
		waitFor(t, 120*time.Second, "answers before the kill", func() bool { return tl.answered() >= mark+100 })
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
		mark = tl.answered()
		killed := time.Now()
		target.p.signal(t, syscall.SIGKILL, 10*time.Second)
		waitFor(t, 120*time.Second, "answers after the kill", func() bool { return tl.answered() >= mark+100 })
		recovered := time.Since(killed)
		target.start(t)
		target.ready(t)
		waitFor(t, 120*time.Second, "the restarted node to catch up", func() bool { return allCurrent(js) })
		recoveries = append(recoveries, fmt.Sprintf("%s(stream_leader=%v,consumer_leader=%v):serving_again=%.1fs,caught_up=%.1fs",
			target.name, sl == target.name, cl == target.name, recovered.Seconds(), time.Since(killed).Seconds()))
	}
	sum := l.finish(t, 180*time.Second)
	waitIdle(t, js, 60*time.Second)
	ctl.Flush()
	time.Sleep(200 * time.Millisecond)

	dups, _ := tl.dups()
	errThenOK, example := tl.errorsThenAnswered()
	if errThenOK > 0 {
		t.Logf("%d requests were answered %q, then computed and answered anyway", errThenOK, example)
	}
	if m := tl.errorExample(schemas.CodeUnavailable); m != "" {
		t.Logf("an unavailable reply during the failover said: %q", m)
	}
	other := 0
	for c, k := range sum.ErrorCodes {
		if c != schemas.CodeUnavailable {
			other += k
		}
	}
	t.Logf("FAULT cluster-node-loss sent=%d answered=%d errors=%d duplicates=%d lost=%d late=%d errors_then_answered=%d kills=%d stream_leader_kills=%d consumer_leader_kills=%d error_codes=%s formed_in=%.1fs rounds=%d elapsed=%.1fs %s",
		sum.Sent, sum.Answered, sum.Errors, dups, sum.Lost, sum.Late, errThenOK, kills, leaderKills, consumerLeaderKills, codes(sum.ErrorCodes),
		formed.Seconds(), l.rounds, time.Since(start).Seconds(), strings.Join(recoveries, " "))
	if sum.Lost != 0 || sum.Late != 0 || sum.Answered+sum.Errors != sum.Sent {
		t.Errorf("sent %d, answered %d, errors %d, lost %d, late %d: want none lost", sum.Sent, sum.Answered, sum.Errors, sum.Lost, sum.Late)
	}
	if other != 0 {
		t.Errorf("error replies other than %s: %s", schemas.CodeUnavailable, codes(sum.ErrorCodes))
	}
	if leaderKills == 0 {
		t.Errorf("no kill hit the stream leader")
	}
}
