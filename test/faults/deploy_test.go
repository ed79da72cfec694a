package faults_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// repoRoot is the directory holding go.mod, above the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatal("no go.mod above the test directory")
		}
		d = filepath.Dir(d)
	}
}

// TestClusterConfigs keeps deploy/cluster usable: three nats-server files
// that parse, name distinct servers of one cluster, enable JetStream, and
// each list the same three routes, on the port the nodes listen on.
func TestClusterConfigs(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy", "cluster")
	var names []string
	var routes []string
	for i := 1; i <= 3; i++ {
		path := filepath.Join(dir, "n"+strconv.Itoa(i)+".conf")
		o, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !o.JetStream || o.StoreDir == "" {
			t.Errorf("%s: JetStream not enabled with a store_dir", path)
		}
		if o.Cluster.Name != "bertq" || o.Cluster.Port <= 0 {
			t.Errorf("%s: cluster %q listening on %d", path, o.Cluster.Name, o.Cluster.Port)
		}
		if o.ServerName == "" || slices.Contains(names, o.ServerName) {
			t.Errorf("%s: server_name %q is missing or not unique", path, o.ServerName)
		}
		names = append(names, o.ServerName)
		var rs []string
		for _, r := range o.Routes {
			if r.Port() != strconv.Itoa(o.Cluster.Port) {
				t.Errorf("%s: route %s is not on the cluster port %d", path, r, o.Cluster.Port)
			}
			rs = append(rs, r.String())
		}
		slices.Sort(rs)
		if len(rs) != 3 || (routes != nil && !slices.Equal(rs, routes)) {
			t.Errorf("%s: routes %s, want the same three in every file", path, strings.Join(rs, " "))
		}
		routes = rs
	}
}
