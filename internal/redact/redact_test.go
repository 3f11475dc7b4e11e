package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"redis://u:pw@h:6379/0", "redis://u:xxxxx@h:6379/0"},
		{"rabbitmq-stream://guest:pa%40ss@h:5552/v?stream=s", "rabbitmq-stream://guest:xxxxx@h:5552/v?stream=s"},
		{"redis://u:pw@h:badport/0", "redis://u:xxxxx@h:badport/0"},
		{"redis://u:p@w@[::1/0", "redis://u:xxxxx@[::1/0"},
		{"redis://h:6379/0", "redis://h:6379/0"},
		{"redis://u@h:6379/0", "redis://u@h:6379/0"},
		{"redis://[::1/0", "redis://[::1/0"},
		{"a b%zz", "a b%zz"},
		{"5s", "5s"},
		{"", ""},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestError(t *testing.T) {
	t.Parallel()
	var err error = &url.Error{Op: "parse", URL: "redis://u:hunter2@h:badport/0", Err: errors.New(`invalid port ":badport" after host`)}
	err = fmt.Errorf("redis: url: %w", Error(err))
	if msg := err.Error(); strings.Contains(msg, "hunter2") || !strings.Contains(msg, "invalid port") {
		t.Fatalf("%q: want the cause without the password", msg)
	}
	if err := Error(nil); err != nil {
		t.Fatal(err)
	}
}
