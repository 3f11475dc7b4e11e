package pubsub

import (
	"errors"
	"strconv"
)

var (
	// ErrBrokerUnavailable is returned by Publish and Subscribe while the
	// broker is disconnected: nothing is accepted that could not be delivered.
	ErrBrokerUnavailable = errors.New("pubsub: broker unavailable")

	// ErrChannelName is wrapped by CheckChannelName, Publish and Subscribe
	// for a name that cannot be a channel.
	ErrChannelName = errors.New("pubsub: bad channel name")

	// ErrInvalidJSON is returned by Publish when data is not one JSON value.
	ErrInvalidJSON = errors.New("pubsub: data is not valid JSON")

	// ErrForbidden is returned by Subscribe, and for publish control
	// messages, when the connection's token does not allow the channel.
	ErrForbidden = errors.New("pubsub: not allowed by the token's claims")

	// ErrSubscriptionLimit is wrapped by Subscribe when the connection
	// already has Config.MaxChannelsPerConn channels.
	ErrSubscriptionLimit = errors.New("pubsub: too many subscriptions for one connection")

	// ErrTooManyChannels is wrapped by Publish and Subscribe when a new
	// channel would pass Config.MaxChannels.
	ErrTooManyChannels = errors.New("pubsub: too many channels")

	// ErrTooManyReplays is wrapped by Subscribe when a connection asks for
	// history replays faster than Config.ChannelCreateRate.
	ErrTooManyReplays = errors.New("pubsub: too many history replays")

	// ErrNoPresence is returned for a presence query about a channel that
	// Config.PresenceChannels does not name.
	ErrNoPresence = errors.New("pubsub: channel has no presence (see -presence-channels)")

	// ErrReplaysBusy is wrapped by Subscribe when the node serves history
	// replays at Config.MaxReplayRate already. The error's text ends in a
	// hint, retry-ms=N, where N is the place booked for the retry (see
	// replaysBusy): subscribe again after a random delay up to it.
	ErrReplaysBusy = errors.New("pubsub: this node is replaying history for many subscribers")

	// ErrBackendUnavailable is wrapped when a backend hook (Proxy) failed:
	// the backend is down, did not answer within Proxy.Timeout, or answered
	// something else than a result, an error or a disconnect. The hook's
	// request is refused.
	ErrBackendUnavailable = errors.New("pubsub: backend unavailable")

	// ErrBackendBusy is returned when Proxy.MaxInflight hook requests are
	// in flight on this node: the request is refused at once, never queued
	// on a worker. Retry after a random delay up to retry-ms.
	ErrBackendBusy = errors.New("pubsub: backend busy; retry-ms=1000")

	// ErrBadToken is wrapped when a refresh's token fails the checks of
	// the first one or names another subject.
	ErrBadToken = errors.New("pubsub: refresh refused")

	// ErrChannelToken is wrapped when a subscribe's channel token fails
	// the checks of a connection token, or names another channel or user.
	ErrChannelToken = errors.New("pubsub: channel token refused")

	// ErrPrivateChannel is returned for a client's subscribe to a channel
	// of Config.PrivateChannels without a channel token (and without a
	// subscribe hook that allows it).
	ErrPrivateChannel = errors.New("pubsub: private channel: subscribe with a channel token")

	// errNoUser is returned for a user operation without a user.
	errNoUser = errors.New("pubsub: no user given")

	// ErrNoRPC is returned for an rpc control message when no backend
	// answers them (Proxy.RPCURL).
	ErrNoRPC = errors.New("pubsub: rpc is not enabled on this server")
)

// replaysBusy is ErrReplaysBusy with the seconds until the place its retry
// booked in the replay queue (pace.Limiter): a storm of resumes refused at
// once is told to come back over the seconds the rate needs for them, not
// all after the same one.
type replaysBusy struct{ after int }

func (e replaysBusy) Error() string {
	return ErrReplaysBusy.Error() + "; retry-ms=" + strconv.Itoa(e.after*1000)
}

func (e replaysBusy) Unwrap() error { return ErrReplaysBusy }

// retryAfter is the Retry-After, in seconds, of a 503 for err: the booked
// place of a replaysBusy, else 1 (a broker reconnecting or channels full,
// passing states a client should retry).
func retryAfter(err error) string {
	var busy replaysBusy
	if errors.As(err, &busy) {
		return strconv.Itoa(busy.after)
	}
	return "1"
}
