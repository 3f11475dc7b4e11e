package server

import (
	"bytes"
	"net/http"

	"github.com/fanout-ws/fanout/frame"
	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
)

// permessage-deflate (RFC 7692). The server answers every offer it accepts
// with server_no_context_takeover, so one compressed frame of a broadcast
// is valid for every receiver, and with client_no_context_takeover, which
// section 7.1.1.2 lets a server demand of any client, so each client
// message is inflated alone by a pooled inflater. No offer can make the
// server keep a compressor or a window for one connection: an idle
// connection keeps only the window size it agreed to (one byte).
//
// client_max_window_bits is not answered: with no context takeover the
// inflater's window lives only while one message inflates, so limiting
// the client's window would save nothing.

// maxWindowBits is the DEFLATE window the compressor uses (32 KiB).
const maxWindowBits = 15

// negotiateDeflate answers one permessage-deflate offer. It returns the
// response and the LZ77 window, in bits, that the server may use towards
// this client (server_max_window_bits, else 15), or 0 when the offer is
// declined: an offer with an unknown, repeated or invalid parameter
// (section 5.1). Other extensions get a zero Option.
func negotiateDeflate(offer httphead.Option) (httphead.Option, uint8) {
	if !bytes.Equal(offer.Name, wsflate.ExtensionNameBytes) {
		return httphead.Option{}, 0
	}
	var p wsflate.Parameters
	if err := p.Parse(offer); err != nil {
		return httphead.Option{}, 0
	}
	resp := wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}
	bits := uint8(maxWindowBits)
	if p.ServerMaxWindowBits.Defined() {
		// The compressor's window is 32 KiB, but no back-reference reaches
		// further than the message is long: a message within the client's
		// window is valid for it, a longer one goes plain (frameBytes).
		resp.ServerMaxWindowBits = p.ServerMaxWindowBits
		bits = uint8(p.ServerMaxWindowBits)
	}
	return resp.Option(), bits
}

// negotiate is the gobwas/ws Negotiate hook: the first acceptable
// permessage-deflate offer wins (offers come in order of preference).
func (c *Conn) negotiate(offer httphead.Option) (httphead.Option, error) {
	if c.neg.zbits != 0 || c.srv.cfg.Compression != CompressionOn {
		return httphead.Option{}, nil
	}
	resp, bits := negotiateDeflate(offer)
	if bits != 0 {
		c.neg.zbits = bits
	}
	return resp, nil
}

// deflateOffers negotiates over a request's Sec-WebSocket-Extensions
// headers (the Handler path, which must know the outcome before OnConnect):
// the first acceptable offer wins.
func deflateOffers(h http.Header) (httphead.Option, uint8) {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		opts, _ := httphead.ParseOptions([]byte(v), nil)
		for _, o := range opts {
			if resp, bits := negotiateDeflate(o); bits != 0 {
				return resp, bits
			}
		}
	}
	return httphead.Option{}, 0
}

// Compressed reports whether c negotiated permessage-deflate.
func (c *Conn) Compressed() bool { return c.neg.zbits != 0 }

// frameBytes returns the bytes of p that c receives: the one place that
// picks a prepared message's variant for a connection. A connection that
// negotiated permessage-deflate gets the compressed twin (built once for
// all receivers) when p fits the window it allowed (deflate.go).
func (c *Conn) frameBytes(p *frame.Prepared) []byte {
	if c.neg.zbits == 0 || (c.neg.zbits < maxWindowBits && p.PayloadLen() > 1<<c.neg.zbits) {
		return p.Bytes()
	}
	return p.Compressed(&c.srv.deflater)
}
