package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestAppendData_SizeAndJSON(t *testing.T) {
	t.Parallel()
	for _, size := range []int{MinChannelData, 64, 128, 1024} {
		for _, seq := range []uint64{1, 42, 9_999_999} {
			b := appendData(nil, 1764553200123456, seq, size)
			if len(b) != size {
				t.Errorf("size %d seq %d: %d bytes: %s", size, seq, len(b), b)
			}
			var d struct {
				T int64
				S uint64
				P string
			}
			if err := json.Unmarshal(b, &d); err != nil || d.T != 1764553200123456 || d.S != seq {
				t.Errorf("size %d: %s -> %+v %v", size, b, d, err)
			}
		}
	}
	// Too small to pad: the object is simply longer than asked.
	if b := appendData(nil, 1764553200123456, 1, 10); !json.Valid(b) {
		t.Errorf("%s is not JSON", b)
	}
}

func TestAppendPublish_Bodies(t *testing.T) {
	t.Parallel()
	var pub struct {
		Op      string
		Channel string
		Data    struct{ T, S int64 }
	}
	b := appendPublish(nil, "c7", 5, 6, 64)
	if err := json.Unmarshal(b, &pub); err != nil || pub.Channel != "c7" || pub.Op != "" || pub.Data.T != 5 || pub.Data.S != 6 {
		t.Errorf("%s -> %+v %v", b, pub, err)
	}
	b = appendPublishOp(nil, "c8", 7, 8, 64)
	if err := json.Unmarshal(b, &pub); err != nil || pub.Channel != "c8" || pub.Op != "publish" || pub.Data.T != 7 || pub.Data.S != 8 {
		t.Errorf("%s -> %+v %v", b, pub, err)
	}
}

func TestParseEnvelope(t *testing.T) {
	t.Parallel()
	data := string(appendData(nil, 1764553200123456, 42, 64))
	for _, tc := range []struct {
		name    string
		in      string
		kind    envelopeKind
		channel string
		offset  uint64
	}{
		{"spec order", `{"type":"message","channel":"c3","offset":17,"data":` + data + `}`, envMessage, "c3", 17},
		{"sorted keys", `{"channel":"c3","data":` + data + `,"offset":17,"type":"message"}`, envMessage, "c3", 17},
		{"data first", `{"data":` + data + `,"type":"message","offset":17,"channel":"c3"}`, envMessage, "c3", 17},
		{"spaces", `{ "type" : "message", "channel" : "c3", "offset" : 17, "data" : ` + data + ` }`, envMessage, "c3", 17},
		{"channel named data", `{"type":"message","channel":"data","offset":1,"data":` + data + `}`, envMessage, "data", 1},
		{"channel named type", `{"type":"message","channel":"type","offset":1,"data":` + data + `}`, envMessage, "type", 1},
		{"data keys re-sorted", `{"type":"message","channel":"c3","offset":17,"data":{"p":"xx","s":42,"t":1764553200123456}}`, envMessage, "c3", 17},
		{"subscribed", `{"type":"subscribed","channel":"c3","epoch":"E","offset":0}`, envOther, "", 0},
		{"error", `{"type":"error","op":"subscribe","reason":"bad"}`, envOther, "", 0},
		{"gap", `{"type":"gap","channel":"a","since":12,"first":14,"reason":"x"}`, envOther, "", 0},
		{"data not ours", `{"type":"message","channel":"c3","offset":17,"data":"hello"}`, envMalformed, "", 0},
		{"nested data", `{"type":"message","channel":"c3","offset":17,"data":{"a":{"t":1,"s":2}}}`, envMalformed, "", 0},
		{"float time", `{"type":"message","channel":"c3","offset":17,"data":{"t":1.7645532e+15,"s":42}}`, envMalformed, "", 0},
		{"no offset", `{"type":"message","channel":"c3","data":` + data + `}`, envMalformed, "", 0},
		{"no type", `{"channel":"c3","offset":1,"data":` + data + `}`, envMalformed, "", 0},
		{"not json", `hello`, envMalformed, "", 0},
		{"binary stamp", "\x01\x02\x03\x04\x05\x06\x07\x08\x01\x00\x00\x00\x00\x00\x00\x00", envMalformed, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, kind := parseEnvelope([]byte(tc.in))
			if kind != tc.kind {
				t.Fatalf("kind %d, want %d", kind, tc.kind)
			}
			if kind != envMessage {
				return
			}
			if string(e.channel) != tc.channel || e.offset != tc.offset || e.sentUS != 1764553200123456 || e.seq != 42 {
				t.Fatalf("got %q offset %d sent %d seq %d", e.channel, e.offset, e.sentUS, e.seq)
			}
		})
	}
}

// The scanner agrees with encoding/json on envelopes that encoding/json
// writes, in struct order and in map (sorted) order.
func TestParseEnvelope_AgreesWithJSON(t *testing.T) {
	t.Parallel()
	type env struct {
		Type    string          `json:"type"`
		Channel string          `json:"channel"`
		Offset  uint64          `json:"offset"`
		Data    json.RawMessage `json:"data"`
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		e := env{Type: "message", Channel: fmt.Sprintf("ch-%d.%s", r.IntN(1e6), strings.Repeat("a", r.IntN(20))), Offset: r.Uint64N(1 << 50),
			Data: appendData(nil, r.Int64N(1<<52), r.Uint64N(1<<40), MinChannelData+r.IntN(200))}
		var in []byte
		if i%2 == 0 {
			in, _ = json.Marshal(e)
		} else {
			in, _ = json.Marshal(map[string]any{"type": e.Type, "channel": e.Channel, "offset": e.Offset, "data": e.Data})
		}
		var want struct{ T, S int64 }
		_ = json.Unmarshal(e.Data, &want)
		got, kind := parseEnvelope(in)
		if kind != envMessage || string(got.channel) != e.Channel || got.offset != e.Offset || got.sentUS != want.T || got.seq != uint64(want.S) {
			t.Fatalf("%s: got %+v kind %d", in, got, kind)
		}
	}
}

func TestParseEnvelope_NoAllocs(t *testing.T) {
	in := []byte(`{"type":"message","channel":"c3","offset":17,"data":` + string(appendData(nil, 1764553200123456, 42, 64)) + `}`)
	if n := testing.AllocsPerRun(100, func() {
		e, _ := parseEnvelope(in)
		if !channelIs(e.channel, "c", 3) {
			t.Fatal("channel")
		}
	}); n != 0 {
		t.Fatalf("%v allocs per parse", n)
	}
}

// BenchmarkParseEnvelope compares the subscriber's scanner with decoding
// the same envelope with encoding/json (envelope, then data).
func BenchmarkParseEnvelope(b *testing.B) {
	in := []byte(`{"type":"message","channel":"c317","offset":1234,"data":` + string(appendData(nil, 1764553200123456, 1234, 64)) + `}`)
	b.Run("parser=scan", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if _, kind := parseEnvelope(in); kind != envMessage {
				b.Fatal(kind)
			}
		}
	})
	b.Run("parser=encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			var e struct {
				Type    string          `json:"type"`
				Channel string          `json:"channel"`
				Offset  uint64          `json:"offset"`
				Data    json.RawMessage `json:"data"`
			}
			var d struct {
				T int64  `json:"t"`
				S uint64 `json:"s"`
			}
			if json.Unmarshal(in, &e) != nil || json.Unmarshal(e.Data, &d) != nil || d.S != 1234 {
				b.Fatal("decode")
			}
		}
	})
}

func TestChannelIs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		prefix string
		ch     int
		want   bool
	}{
		{"c0", "c", 0, true}, {"c17", "c", 17, true}, {"c17", "c", 1, false}, {"c1", "c", 17, false},
		{"c", "c", 0, false}, {"x17", "c", 17, false}, {"bench-999", "bench-", 999, true},
	} {
		if got := channelIs([]byte(tc.name), tc.prefix, tc.ch); got != tc.want {
			t.Errorf("channelIs(%q, %q, %d) = %v", tc.name, tc.prefix, tc.ch, got)
		}
	}
}

func TestConfig_SubscriberURL(t *testing.T) {
	t.Parallel()
	cfg := Config{URLs: []string{"ws://h/ws"}, Channels: 10}.withDefaults()
	if u := cfg.subscriberURL(23); u != "ws://h/ws?channel=c3" {
		t.Errorf("got %s", u)
	}
	cfg.URLs = []string{"ws://h/ws?x=1"}
	if u := cfg.subscriberURL(10); u != "ws://h/ws?x=1&channel=c0" {
		t.Errorf("got %s", u)
	}
	cfg.Channels = 0
	cfg.URLs = []string{"ws://a/ws", "ws://b/ws"}
	if u := cfg.subscriberURL(3); u != "ws://b/ws" {
		t.Errorf("room: got %s", u)
	}
}

// Every channel has exactly one publisher.
func TestConfig_Owned(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ channels, publishers int }{{1, 1}, {10, 1}, {10, 3}, {1000, 8}, {7, 7}} {
		cfg := Config{URLs: []string{"ws://h/ws"}, Channels: tc.channels, Publishers: tc.publishers}.withDefaults()
		seen := make([]int, tc.channels)
		for p := range tc.publishers {
			for _, ch := range cfg.owned(p) {
				seen[ch]++
			}
		}
		for ch, n := range seen {
			if n != 1 {
				t.Errorf("%+v: channel %d has %d publishers", tc, ch, n)
			}
		}
	}
	if got := (Config{Publishers: 3}).owned(2); len(got) != 1 || got[0] != 2 {
		t.Errorf("room: publisher 2 owns %v", got)
	}
}

func TestConfig_ValidateChannels(t *testing.T) {
	t.Parallel()
	ok := Config{URLs: []string{"ws://h/ws"}, Scenario: ScenarioBroadcast, Conns: 10, Rate: 5, Channels: 10,
		PublishURL: "http://h/api/publish", Batch: 5, Publishers: 2}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // in the error; "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"ws publish", func(c *Config) { c.PublishURL, c.Batch = "", 0 }, ""},
		{"room", func(c *Config) { c.Channels, c.PublishURL, c.Batch = 0, "", 0 }, ""},
		{"negative", func(c *Config) { c.Channels = -1 }, "must not be negative"},
		{"api without channels", func(c *Config) { c.Channels = 0 }, "PublishURL needs Channels"},
		{"batch without api", func(c *Config) { c.PublishURL = "" }, "Batch (5) needs PublishURL"},
		{"echo", func(c *Config) { c.Scenario = ScenarioEcho }, "broadcast scenario only"},
		{"two targets", func(c *Config) { c.URLs = append(c.URLs, "ws://g/ws") }, ""},
		{"three targets", func(c *Config) { c.URLs = append(c.URLs, "ws://g/ws", "ws://h/ws") }, "multiple of the target URLs (3)"},
		{"three joined targets", func(c *Config) { c.URLs, c.Joined = append(c.URLs, "ws://g/ws", "ws://h/ws"), true }, ""},
		{"small data", func(c *Config) { c.Size = 32 }, "at least 48"},
		{"too many publishers", func(c *Config) { c.Publishers = 11 }, "exceeds Channels"},
		{"bad prefix", func(c *Config) { c.ChannelPrefix = "a b" }, "ChannelPrefix"},
		{"long names", func(c *Config) { c.ChannelPrefix = strings.Repeat("a", 128) }, "more than 128"},
		{"ws publish url", func(c *Config) { c.PublishURL = "ws://h/api/publish" }, "not an http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// fill counts what channel subscribers should have received from what was
// published per channel and who subscribed where.
func TestResult_FillChannels(t *testing.T) {
	t.Parallel()
	r := Result{Config: Config{Scenario: ScenarioBroadcast, Channels: 3, Rate: 5, Duration: 2e9, URLs: []string{"ws://h/ws"}}.withDefaults(), Connected: 6}
	r.pub = pubReport{sent: []int64{10, 10, 9}}
	r.fill(snapshot{Received: 10*1 + 10*2 + 9*3 - 4, Subs: []int{1, 2, 3}})
	if r.Sent != 29 || r.Missing != 4 || r.DeliveriesPS != 26.5 || r.PublishedPS != 14.5 || r.TargetPS != 15 {
		t.Fatalf("%+v", r)
	}
}

// The ramp's rate and handshakes in flight are split over the members by
// their share of the connections: together they dial at DialRate with
// about maxDialing in flight, however many worker processes there are.
func TestConfig_DialShare(t *testing.T) {
	t.Parallel()
	c := Config{Conns: 1_000_000, DialRate: 5000}
	rates, inFlight := 0, 0
	for _, n := range split(c.Conns, 19_500) {
		r, f := c.dialShare(n)
		rates, inFlight = rates+r, inFlight+f
	}
	if rates < 5000 || rates > 5000+52 || inFlight < maxDialing || inFlight > maxDialing+52 {
		t.Fatalf("52 workers dial at %d/s with %d in flight, want 5000/s and about %d", rates, inFlight, maxDialing)
	}
	if r, f := c.dialShare(c.Conns); r != 5000 || f != maxDialing {
		t.Fatalf("one process: %d/s, %d in flight", r, f)
	}
}
