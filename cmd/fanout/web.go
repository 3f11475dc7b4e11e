package main

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// webFiles holds the demo page and the browser client, built into the binary.
//
//go:embed web
var webFiles embed.FS

// inlineBlock matches the page's inline <script> and <style> elements, whose
// exact text the Content-Security-Policy allows by hash.
var inlineBlock = regexp.MustCompile(`(?s)<(script|style)\b[^>]*>(.*?)</(?:script|style)>`)

// webHandler serves the demo page at / and its client at /fanout.js, with
// GET and HEAD only; any other path is 404. The page may load nothing but
// /fanout.js, its own inline script and style, and WebSocket connections to
// this origin.
func webHandler() http.Handler {
	type file struct {
		body        []byte
		contentType string
		etag        string
		csp         string
	}
	load := func(name, contentType string) file {
		b, err := webFiles.ReadFile("web/" + name)
		if err != nil {
			panic(err) // embedded at build time: cannot happen
		}
		sum := sha256.Sum256(b)
		return file{body: b, contentType: contentType, etag: fmt.Sprintf(`"%x"`, sum[:12])}
	}
	page := load("index.html", "text/html; charset=utf-8")
	page.csp = pageCSP(page.body)
	files := map[string]file{
		"/":          page,
		"/fanout.js": load("fanout.js", "text/javascript; charset=utf-8"),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if f.csp != "" {
			h.Set("Content-Security-Policy", f.csp)
			h.Set("Referrer-Policy", "no-referrer")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}

// pageCSP allows the page's inline scripts and styles by their SHA-256, scripts
// from this origin, WebSocket connections to it, and nothing else. The data:
// image is the empty favicon that stops the browser asking for /favicon.ico.
func pageCSP(page []byte) string {
	hashes := map[string][]string{}
	for _, m := range inlineBlock.FindAllSubmatch(page, -1) {
		sum := sha256.Sum256(m[2])
		kind := string(m[1])
		hashes[kind] = append(hashes[kind], "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self' " + strings.Join(hashes["script"], " "),
		"style-src " + strings.Join(hashes["style"], " "),
		"connect-src 'self'",
		"img-src data:",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}
