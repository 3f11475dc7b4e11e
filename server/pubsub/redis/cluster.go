package redis

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/fanout-ws/fanout/internal/redact"
	goredis "github.com/redis/go-redis/v9"
)

// Redis Cluster: channels are spread over clusterGroups slot groups, each a
// key space of its own (a space: its keys, topics and budget keys share a
// hash tag, so every script touches one slot and stays atomic). A channel
// belongs to the group of its name's key slot; the groups' tags hash to
// evenly spaced slots, so `redis-cli --cluster create` spreads them evenly
// over the masters. Each group has its own sharded pub/sub connection
// (SSUBSCRIBE to its master) and its share of the channel cap and history
// budget.

// ClusterScheme selects a Redis Cluster:
// redis-cluster://[user:password@]host:port,host:port,... (any masters or
// replicas to learn the cluster from).
const ClusterScheme = "redis-cluster://"

// clusterGroups is the number of slot groups channels are spread over:
// enough to balance up to about a dozen masters, few enough that each
// group's share of the caps stays useful.
const clusterGroups = 16

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

// newCluster returns the client of the cluster at rest (the URL after
// ClusterScheme) and its groups' key prefixes.
func newCluster(rest, prefix string) (*goredis.ClusterClient, []string, error) {
	if strings.ContainsAny(prefix, "{}") {
		return nil, nil, fmt.Errorf("redis: prefix %q: braces would change the cluster's hash tags", prefix)
	}
	hosts, query, _ := strings.Cut(rest, "?")
	user := ""
	if i := strings.LastIndexByte(hosts, '@'); i >= 0 {
		user, hosts = hosts[:i+1], hosts[i+1:]
	}
	addrs := strings.Split(strings.TrimSuffix(hosts, "/"), ",")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, nil, fmt.Errorf("redis: url: %w", redact.Error(err))
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	opt, err := goredis.ParseClusterURL("redis://" + user + addrs[0] + "?" + q.Encode())
	if err != nil {
		return nil, nil, fmt.Errorf("redis: url: %w", redact.Error(err))
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = failFast()
	opt.MaxRetries = 1
	opt.DialerRetries = 1 // a command may try several masters: each fails fast
	prefixes := make([]string, clusterGroups)
	for g, tag := range groupTags() {
		prefixes[g] = prefix + "{" + tag + "}"
	}
	return goredis.NewClusterClient(opt), prefixes, nil
}

// groupTags returns each group's hash tag: the first decimal number whose
// slot falls in the group's range of slots.
func groupTags() []string {
	tags := make([]string, clusterGroups)
	for i, left := 0, clusterGroups; left > 0; i++ {
		s := strconv.Itoa(i)
		if g := group(s); tags[g] == "" {
			tags[g] = s
			left--
		}
	}
	return tags
}

// group is the slot group of name: the one whose range holds its key slot.
func group(name string) int { return int(slot(name)) * clusterGroups / clusterSlots }

// shareOf is a group's share of a cap over all groups, at least 1.
func shareOf(total int64) int64 {
	return max(1, int64(math.Ceil(float64(total)/clusterGroups)))
}

// slot is Redis Cluster's hash slot of key (CRC16-XMODEM mod 16384), for
// a key without a hash tag.
func slot(key string) uint16 {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % clusterSlots
}
