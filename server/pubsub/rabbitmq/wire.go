package rabbitmq

import (
	"bytes"
	"strconv"
)

// A proposal is one stream message written by a node. Its body is
//
//	"\x00fo1 <kind> <node> <seq> <epoch> <offset> <unix ms> <channel>\n<data>"
//
// kind is p (publish data at offset), t (touch: keep the channel alive, or
// give it epoch if it has none), r (release: the proposing node has no
// subscriber of the channel left), f (forget: drop a released channel that
// keeps no message, at epoch and offset, to make room for a new one), h
// (hello: a node's marker that it has read the stream up to here), w
// (want: a starting node asks for a snapshot) or s (snapshot: part
// channel, "i/n", of the channels' state for node epoch's want seq offset;
// see snapshot.go). JSON never starts with NUL.
type proposal struct {
	kind    byte
	node    string
	seq     uint64
	epoch   string
	offset  uint64
	at      int64
	channel string
	data    []byte
}

const (
	kindPublish  = 'p'
	kindTouch    = 't'
	kindHello    = 'h'
	kindRelease  = 'r'
	kindForget   = 'f'
	kindWant     = 'w'
	kindSnapshot = 's'
)

const mark = "\x00fo1 "

func (p *proposal) encode() []byte {
	b := make([]byte, 0, len(mark)+64+len(p.channel)+len(p.data))
	b = append(b, mark...)
	b = append(b, p.kind, ' ')
	b = append(b, p.node...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, p.seq, 10)
	b = append(b, ' ')
	b = append(b, p.epoch...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, p.offset, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, p.at, 10)
	b = append(b, ' ')
	b = append(b, p.channel...)
	b = append(b, '\n')
	return append(b, p.data...)
}

// decode reads a proposal; ok is false for any other body.
func decode(body []byte) (p proposal, ok bool) {
	rest, found := bytes.CutPrefix(body, []byte(mark))
	head, data, found2 := bytes.Cut(rest, []byte{'\n'})
	f := bytes.Split(head, []byte{' '})
	if !found || !found2 || len(f) != 7 || len(f[0]) != 1 {
		return p, false
	}
	var err [3]error
	p.kind, p.node, p.epoch, p.channel, p.data = f[0][0], string(f[1]), string(f[3]), string(f[6]), data
	p.seq, err[0] = strconv.ParseUint(string(f[2]), 10, 64)
	p.offset, err[1] = strconv.ParseUint(string(f[4]), 10, 64)
	p.at, err[2] = strconv.ParseInt(string(f[5]), 10, 64)
	if err[0] != nil || err[1] != nil || err[2] != nil || p.kind == kindPublish && p.offset == 0 {
		return p, false
	}
	switch p.kind {
	case kindPublish, kindTouch, kindHello, kindRelease, kindForget, kindWant, kindSnapshot:
		return p, true
	}
	return p, false
}
