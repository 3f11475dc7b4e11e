package bench

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// apiStub answers like POST /api/publish (spec/channels.md) and records
// what it was sent.
type apiStub struct {
	mu      sync.Mutex
	bodies  []string
	status  int
	partial bool // batches: refuse the second message (503 with results)
}

func (a *apiStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.bodies = append(a.bodies, string(b))
	status, partial := a.status, a.partial
	a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer k" || r.Header.Get("Content-Type") != "application/json" || r.Method != http.MethodPost {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"no key"}`)
		return
	}
	if status != 0 {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"error":"busy"}`)
		return
	}
	type pub struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	type res struct {
		Channel   string `json:"channel"`
		Offset    int    `json:"offset,omitempty"`
		Delivered int    `json:"delivered,omitempty"`
		Error     string `json:"error,omitempty"`
	}
	if strings.HasPrefix(string(b), "[") {
		var ps []pub
		if err := json.Unmarshal(b, &ps); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		out := struct {
			Results []res `json:"results"`
		}{}
		for i, p := range ps {
			if partial && i == 1 {
				out.Results = append(out.Results, res{Channel: p.Channel, Error: "too many channels"})
				continue
			}
			out.Results = append(out.Results, res{p.Channel, 1, 3, ""})
		}
		if partial {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	var p pub
	if err := json.Unmarshal(b, &p); err != nil || !json.Valid(p.Data) {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	_ = json.NewEncoder(w).Encode(res{p.Channel, 1, 3, ""})
}

func TestAPISender(t *testing.T) {
	stub := &apiStub{}
	ts := httptest.NewServer(stub)
	defer ts.Close()
	cfg := Config{URLs: []string{"ws://h/ws"}, Scenario: ScenarioBroadcast, Conns: 1, Rate: 1, Channels: 4, Size: 64,
		PublishURL: ts.URL + "/api/publish", APIKey: "k"}.withDefaults()

	s, err := newAPISender(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if err := s.send([]item{{stream: 2, seq: 7}}); err != nil {
		t.Fatal(err)
	}
	cfg.Batch = 2
	b, _ := newAPISender(cfg, 1)
	defer b.close()
	if err := b.send([]item{{stream: 1, seq: 1}, {stream: 3, seq: 1}}); err != nil {
		t.Fatal(err)
	}
	if s.requests != 1 || s.delivered != 3 || b.requests != 1 || b.delivered != 6 || s.rtt.TotalCount() != 1 {
		t.Fatalf("single: %d requests %d delivered; batch: %d requests %d delivered", s.requests, s.delivered, b.requests, b.delivered)
	}
	stub.mu.Lock()
	single, batch := stub.bodies[0], stub.bodies[1]
	stub.mu.Unlock()
	if !strings.HasPrefix(single, `{"channel":"c2","data":{"t":`) || !strings.Contains(single, `"s":7,`) {
		t.Errorf("single body %s", single)
	}
	if !strings.HasPrefix(batch, `[{"channel":"c1",`) || !strings.Contains(batch, `},{"channel":"c3",`) || !strings.HasSuffix(batch, `}]`) {
		t.Errorf("batch body %s", batch)
	}

	stub.mu.Lock()
	stub.partial = true
	stub.mu.Unlock()
	items := []item{{stream: 0, seq: 2}, {stream: 2, seq: 2}, {stream: 1, seq: 2}}
	if err := b.send(items); err != nil || items[0].failed || !items[1].failed || items[2].failed || b.delivered != 12 {
		t.Errorf("partial batch: %v, %+v, %d delivered", err, items, b.delivered)
	}

	stub.mu.Lock()
	stub.status = http.StatusServiceUnavailable
	stub.mu.Unlock()
	if err := s.send([]item{{stream: 2, seq: 8}}); err == nil || isFatal(err) {
		t.Errorf("503: %v (fatal %v), want a counted error", err, isFatal(err))
	}
	s.cfg.APIKey = "wrong"
	if err := s.send([]item{{stream: 2, seq: 8}}); !isFatal(err) || !strings.Contains(err.Error(), "401") {
		t.Errorf("401: %v, want fatal", err)
	}
}
