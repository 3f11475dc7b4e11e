package redistest

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/testutil"
)

// Cluster is a Redis Cluster of masters without replicas, each a
// persistent Server (append-only file and cluster config in its own
// directory), so a master stopped and started again keeps its data and
// its slots.
type Cluster struct {
	tb      testing.TB
	Masters []*Server
}

// clusterConfig is the file a cluster node keeps its view of the cluster in.
const clusterConfig = "nodes.conf"

// clusterArgs make a redis-server a cluster node. A master that is down
// fails only its own slots (cluster-require-full-coverage no): the others
// keep serving.
func clusterArgs(busPort int) []string {
	return []string{"--cluster-enabled", "yes", "--cluster-config-file", clusterConfig,
		"--cluster-port", strconv.Itoa(busPort), "--cluster-node-timeout", "2000",
		"--cluster-require-full-coverage", "no"}
}

// StartCluster starts masters redis-servers on free loopback ports, joins
// them with redis-cli --cluster create (slots split evenly), and waits for
// cluster_state:ok. They stop at cleanup.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	_, err := exec.LookPath("redis-cli")
	testutil.NeedTool(tb, err == nil, "redis-cli on PATH (apt-get install redis-tools)")
	c := &Cluster{tb: tb}
	args := []string{"--cluster", "create"}
	for range masters {
		s := newServer(tb, tb.TempDir())
		s.busPort = freePort(tb)
		s.Start()
		c.Masters = append(c.Masters, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.WaitOK()
	return c
}

// URL is the broker URL of the cluster: every master's address.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Masters))
	for i, s := range c.Masters {
		addrs[i] = s.Addr()
	}
	return "redis-cluster://" + strings.Join(addrs, ",")
}

// Stop kills every master.
func (c *Cluster) Stop() {
	for _, s := range c.Masters {
		s.Stop()
	}
}

// Start starts every master again and waits for cluster_state:ok.
func (c *Cluster) Start() {
	c.tb.Helper()
	for _, s := range c.Masters {
		s.Start()
	}
	c.WaitOK()
}

// Wipe deletes the stopped masters' data; they keep their slots.
func (c *Cluster) Wipe() {
	c.tb.Helper()
	for _, s := range c.Masters {
		s.Wipe()
	}
}

// WaitOK waits until every master reports cluster_state:ok and knows
// every other.
func (c *Cluster) WaitOK() {
	c.tb.Helper()
	testutil.Eventually(c.tb, 30*time.Second, func() error {
		for _, s := range c.Masters {
			out, err := exec.Command("redis-cli", "-p", strconv.Itoa(s.Port), "cluster", "info").CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v %s", s.Addr(), err, out)
			}
			info := string(out)
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d\r", len(c.Masters))) {
				return fmt.Errorf("%s: %s", s.Addr(), info)
			}
		}
		return nil
	})
}
