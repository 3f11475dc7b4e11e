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

// MoveSlot migrates slot, keys and all, from master from to master to, as
// resharding does (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT
// NODE on every master), and waits for cluster_state:ok.
func (c *Cluster) MoveSlot(slot, from, to int) {
	c.tb.Helper()
	src, dst := c.Masters[from], c.Masters[to]
	s := strconv.Itoa(slot)
	srcID, dstID := c.cli(src, "cluster", "myid"), c.cli(dst, "cluster", "myid")
	c.cli(dst, "cluster", "setslot", s, "importing", srcID)
	c.cli(src, "cluster", "setslot", s, "migrating", dstID)
	for {
		keys := strings.Fields(c.cli(src, "cluster", "getkeysinslot", s, "100"))
		if len(keys) == 0 {
			break
		}
		c.cli(src, append([]string{"migrate", "127.0.0.1", strconv.Itoa(dst.Port), "", "0", "5000", "keys"}, keys...)...)
	}
	for _, m := range []*Server{dst, src} { // the new owner first, as redis-cli does
		c.cli(m, "cluster", "setslot", s, "node", dstID)
	}
	for _, m := range c.Masters {
		if m != src && m != dst {
			c.cli(m, "cluster", "setslot", s, "node", dstID)
		}
	}
	c.WaitOK()
}

// cli runs redis-cli against s and returns its output, trimmed.
func (c *Cluster) cli(s *Server, args ...string) string {
	c.tb.Helper()
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(s.Port)}, args...)...).CombinedOutput()
	if err != nil || strings.HasPrefix(string(out), "ERR") {
		c.tb.Fatalf("redis-cli %v: %v %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}
