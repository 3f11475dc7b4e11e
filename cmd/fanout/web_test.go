package main

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestWebHandler_Routes(t *testing.T) {
	t.Parallel()
	h := webHandler()
	tests := []struct {
		name, method, path string
		wantCode           int
		wantType, wantBody string
	}{
		{name: "page", method: "GET", path: "/", wantCode: 200, wantType: "text/html; charset=utf-8", wantBody: `<script type="module">`},
		{name: "client", method: "GET", path: "/fanout.js", wantCode: 200, wantType: "text/javascript; charset=utf-8", wantBody: "export class Fanout"},
		{name: "head", method: "HEAD", path: "/fanout.js", wantCode: 200, wantType: "text/javascript; charset=utf-8"},
		{name: "index.html is not a route", method: "GET", path: "/index.html", wantCode: 404},
		{name: "embed dir is not exposed", method: "GET", path: "/web/fanout.js", wantCode: 404},
		{name: "favicon", method: "GET", path: "/favicon.ico", wantCode: 404},
		{name: "post", method: "POST", path: "/", wantCode: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.wantCode {
				t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, rec.Code, tc.wantCode)
			}
			if tc.wantCode != 200 {
				return
			}
			if got := rec.Header().Get("Content-Type"); got != tc.wantType {
				t.Errorf("Content-Type %q, want %q", got, tc.wantType)
			}
			if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			if !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("body lacks %q", tc.wantBody)
			}
		})
	}
}

func TestWebHandler_NotModified(t *testing.T) {
	t.Parallel()
	h := webHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/fanout.js", nil))
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req := httptest.NewRequest("GET", "/fanout.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match %s: status %d, want 304", etag, rec.Code)
	}
}

// The page's policy allows exactly its own inline blocks, and the page needs
// nothing from elsewhere.
func TestWebHandler_PageCSP(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	webHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	csp := rec.Header().Get("Content-Security-Policy")
	page := rec.Body.String()
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP lacks %q: %s", want, csp)
		}
	}
	blocks := regexp.MustCompile(`(?s)<(script|style)[^>]*>(.*?)</(script|style)>`).FindAllStringSubmatch(page, -1)
	if len(blocks) != 2 {
		t.Fatalf("found %d inline blocks, want the module script and the style", len(blocks))
	}
	for _, b := range blocks {
		sum := sha256.Sum256([]byte(b[2]))
		hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !regexp.MustCompile(b[1] + `-src [^;]*` + regexp.QuoteMeta(hash)).MatchString(csp) {
			t.Errorf("%s-src does not allow the inline %s (%s): %s", b[1], b[1], hash, csp)
		}
	}
	for _, bad := range []string{"http://", "https://", "innerHTML", " onclick=", " onsubmit=", "eval("} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
}
