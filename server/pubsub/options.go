package pubsub

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"
)

// BrokerOptions tunes a broker: every broker (MemoryBroker, package redis,
// package rabbitmq) reads this struct, through WithDefaults, and takes
// nothing else from its URL than an address. Every Broker keeps to the
// same contract with them: at most MaxChannels channels, at most half of them made by
// publishes alone (never read by a subscriber, so a publisher cannot lock
// subscribers out), at most HistorySize messages per channel, none older
// than HistoryTTL, and at most HistoryMaxBytes of history in all, counted
// with a per-message overhead and evicted oldest first across channels.
// A publish or read that would pass a channel cap fails with
// ErrTooManyChannels, never wrapped in another sentinel.
type BrokerOptions struct {
	// HistorySize bounds each channel's history in messages, as in Config,
	// whose zero value takes the broker's (HistoryLimits). Zero means
	// DefaultHistorySize (100); negative keeps no history.
	HistorySize int
	// HistoryTTL is how long a message stays in history, and a channel
	// unused for it starts a new epoch. Zero means DefaultHistoryTTL (5 min).
	HistoryTTL time.Duration
	// HistoryMaxBytes caps the memory of every channel's history together.
	// Zero means DefaultHistoryMaxBytes (64 MiB).
	HistoryMaxBytes int64
	// MaxChannels caps the channels a broker keeps. Zero means
	// DefaultMaxChannels (100,000).
	MaxChannels int
	// Prefix starts every key and topic of a Redis broker. Zero means
	// DefaultBrokerPrefix ("fanout:").
	Prefix string
	// Retention is how long a broker that keeps a log of every message on
	// its own disk (a RabbitMQ stream's max-age) keeps it. A node that
	// starts reads the last HistoryTTL of it, so it must cover that (the
	// broker checks it against its clock skew). Zero means HistoryTTL plus
	// one minute.
	Retention time.Duration
	// RetentionBytes bounds that log by size (a RabbitMQ stream's
	// max-length-bytes). Zero means DefaultRetentionBytes (1 GiB).
	RetentionBytes int64
	// Logger receives a broker's reconnection logs. Nil discards them.
	Logger *slog.Logger
}

// Defaults of BrokerOptions beside Config's.
const (
	DefaultBrokerPrefix   = "fanout:"
	DefaultRetentionBytes = 1 << 30
)

// WithDefaults returns o with every zero field set to its default: the
// only place they are applied, for every broker.
func (o BrokerOptions) WithDefaults() BrokerOptions {
	setDefault(&o.HistorySize, DefaultHistorySize)
	setDefault(&o.HistoryTTL, DefaultHistoryTTL)
	setDefault(&o.HistoryMaxBytes, DefaultHistoryMaxBytes)
	setDefault(&o.MaxChannels, DefaultMaxChannels)
	setDefault(&o.Prefix, DefaultBrokerPrefix)
	setDefault(&o.Retention, o.HistoryTTL+time.Minute)
	setDefault(&o.RetentionBytes, DefaultRetentionBytes)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// MaxUnreadChannels is how many of max channels may be made by publishes
// alone, for brokers.
func MaxUnreadChannels(maxChannels int) int { return max(1, maxChannels/2) }

// NewEpoch returns a random name for a new channel history, for brokers:
// offsets restart with each epoch.
func NewEpoch() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
