package pubsub

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/fanout-ws/fanout/server"
)

// SubscribeQuery subscribes c to every channel= of an upgrade request's
// query (maybe none); since= and epoch= resume one channel from an
// offset. Call it from Config.OnConnect: its error is a *server.RejectError
// with the status the refusal deserves (400, 403, 503, or the one
// OnSubscribe rejected with). With Proxy.SubscribeURL the backend's
// refusal comes after the upgrade, as an error reply.
func (n *Node) SubscribeQuery(c *server.Conn, q url.Values) error {
	var since *Position
	if v := q.Get("since"); v != "" {
		if len(q["channel"]) != 1 {
			return server.Reject(http.StatusBadRequest, "since= needs exactly one channel=")
		}
		off, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return server.Reject(http.StatusBadRequest, "since= must be an offset (a non-negative integer)")
		}
		since = &Position{Offset: off, Epoch: q.Get("epoch")}
	}
	for _, name := range q["channel"] {
		if err := n.subscribe(c, name, since, nil, "", true); err != nil {
			status := subscribeStatus(err)
			re := &server.RejectError{Status: status, Reason: reasonOf(err)}
			if status == http.StatusServiceUnavailable {
				re.Header = http.Header{"Retry-After": {retryAfter(err)}}
			}
			return re
		}
	}
	return nil
}

// subscribeStatus is the HTTP status for a subscribe refused at connect.
func subscribeStatus(err error) int {
	var re *server.RejectError
	switch {
	case errors.As(err, &re):
		return re.Status
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrPrivateChannel):
		return http.StatusForbidden
	case errors.Is(err, ErrTooManyChannels), errors.Is(err, ErrBrokerUnavailable), errors.Is(err, ErrReplaysBusy):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}
