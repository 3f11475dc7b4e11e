package pubsub

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fanout-ws/fanout/internal/wstest"
	"github.com/fanout-ws/fanout/server"
)

// holdingBackend answers each hook {"result":{"data":"ok"}} once release
// is closed, and counts the requests that arrived.
func holdingBackend(t *testing.T, release <-chan struct{}) (url string, arrived *atomic.Int32) {
	t.Helper()
	arrived = &atomic.Int32{}
	bs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // then a client gone cancels r's context
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte(`{"result":{"data":"ok"}}`))
	}))
	t.Cleanup(bs.Close)
	return bs.URL, arrived
}

// Beyond Proxy.MaxInflight a hook is refused at once with a retry hint,
// while the one in flight still gets its answer.
func TestProxy_MaxInflight(t *testing.T) {
	release := make(chan struct{})
	url, arrived := holdingBackend(t, release)
	tn := runChannels(t, server.Config{}, Config{Proxy: Proxy{RPCURL: url, MaxInflight: 1, Timeout: time.Minute}})
	c := dialGorilla(t, "ws://"+tn.addr+"/ws")
	wstest.SendJSON(t, c, `{"op":"rpc","method":"a","id":1}`)
	eventually(t, 10*time.Second, func() error {
		if arrived.Load() != 1 {
			return errors.New("the first hook has not reached the backend")
		}
		return nil
	})
	wstest.SendJSON(t, c, `{"op":"rpc","method":"b","id":2}`)
	if e := wstest.ReadEvent(t, c); e.Type != "error" || string(e.ID) != "2" || e.Reason != "backend busy; retry-ms=1000" {
		t.Fatalf("over MaxInflight: %+v", e)
	}
	close(release)
	if e := wstest.ReadEvent(t, c); e.Type != "rpc" || string(e.ID) != "1" || string(e.Data) != `"ok"` {
		t.Fatalf("the hook in flight: %+v", e)
	}
	if st := tn.Stats(); st.BackendBusy != 1 {
		t.Fatalf("BackendBusy %d, want 1", st.BackendBusy)
	}
}

// A backend that does not answer within Proxy.Timeout denies, saying so;
// a subscribe named in the URL goes through the hook too, refused after
// the upgrade.
func TestProxy_Timeout(t *testing.T) {
	url, _ := holdingBackend(t, make(chan struct{}))
	tn := runChannels(t, server.Config{}, Config{Proxy: Proxy{SubscribeURL: url, Timeout: 100 * time.Millisecond}})
	c := dialGorilla(t, "ws://"+tn.addr+"/ws?channel=a")
	if e := wstest.ReadEvent(t, c); e.Type != "error" || e.Channel != "a" || e.Reason != "backend unavailable: no answer within 100ms" {
		t.Fatalf("a hook past its timeout: %+v", e)
	}
	if st := tn.Stats(); st.BackendErrors != 1 || st.Channels != 0 {
		t.Fatalf("BackendErrors %d, channels %d: want 1, 0", st.BackendErrors, st.Channels)
	}
}
