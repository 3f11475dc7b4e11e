package server

// CloseReason says why the server closed a connection. It feeds logs,
// OnClose and metrics.
type CloseReason uint8

// Close reasons.
const (
	ReasonNone             CloseReason = iota
	ReasonClientClosed                 // the peer sent a close frame
	ReasonPeerGone                     // EOF or reset without a close frame
	ReasonProtocolError                // the peer broke RFC 6455 (or sent oversize / invalid UTF-8 data)
	ReasonSlowConsumer                 // the send queue passed Config.SendQueueBytes
	ReasonIdleTimeout                  // silent for Config.IdleTimeout
	ReasonHandshakeTimeout             // upgrade request incomplete after Config.HandshakeTimeout
	ReasonHandshakeFailed              // bad or rejected upgrade request
	ReasonCloseTimeout                 // no close reply within Config.CloseTimeout
	ReasonServerClosed                 // Conn.Close by the application
	ReasonServerShutdown               // Server.Shutdown or Server.Close
	ReasonIOError                      // a read or write failed
	ReasonOverCapacity                 // over Config.MaxConns
	ReasonRateLimited                  // over Config.MessageRate or ByteRate with RateLimitClose, or refused by a per-IP limit
	ReasonInvalidMessage               // refused by Config.CheckMessage
	ReasonPlainHTTP                    // not an upgrade: handed to Config.HTTPHandler
	ReasonTokenExpired                 // the token's exp passed (closed with 1008 "token expired")
	reasonCount
)

var reasonNames = [...]string{
	ReasonNone:             "none",
	ReasonClientClosed:     "client_closed",
	ReasonPeerGone:         "peer_gone",
	ReasonProtocolError:    "protocol_error",
	ReasonSlowConsumer:     "slow_consumer",
	ReasonIdleTimeout:      "idle_timeout",
	ReasonHandshakeTimeout: "handshake_timeout",
	ReasonHandshakeFailed:  "handshake_failed",
	ReasonCloseTimeout:     "close_timeout",
	ReasonServerClosed:     "server_closed",
	ReasonServerShutdown:   "server_shutdown",
	ReasonIOError:          "io_error",
	ReasonOverCapacity:     "over_capacity",
	ReasonRateLimited:      "rate_limited",
	ReasonInvalidMessage:   "invalid_message",
	ReasonPlainHTTP:        "plain_http",
	ReasonTokenExpired:     "token_expired",
}

func (r CloseReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// failsHandshake reports whether a connection closed in its handshake for
// r counts as a failed handshake (Stats.HandshakesFailed). A refusal by
// admission (ReasonOverCapacity, ReasonRateLimited) is counted when it is
// decided, a client that leaves is not a failure.
func (r CloseReason) failsHandshake() bool {
	return r == ReasonHandshakeFailed || r == ReasonHandshakeTimeout
}
