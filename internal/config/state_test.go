package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestStateSettings(t *testing.T) {
	keyFile := writeFile(t, t.TempDir(), "state.key", strings.Repeat("k", 32))
	c := mustLoad(t, nil, EnvAPISecret, distinct)
	if !c.State.Memory() || c.StateKeyFile != "" {
		t.Fatalf("default state: %q %q", c.State, c.StateKeyFile)
	}
	c = mustLoad(t, nil, EnvAPISecret, distinct, "CBKGATE_STATE", "rediss://u:pw-s3cr3t@redis.internal:6380/1", "CBKGATE_STATE_KEY_FILE", keyFile)
	if c.State.Memory() || c.State.Reveal() != "rediss://u:pw-s3cr3t@redis.internal:6380/1" || c.StateKeyFile != keyFile {
		t.Fatalf("redis state: %v %q", c.State, c.StateKeyFile)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	for _, printed := range []string{buf.String(), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", *c), fmt.Sprint(c.State)} {
		if strings.Contains(printed, "pw-s3cr3t") {
			t.Fatalf("the Redis password is printed: %s", printed)
		}
	}
	if !strings.Contains(buf.String(), "redis.internal:6380") {
		t.Fatalf("the log summary lacks the state: %s", buf.String())
	}
	for _, tc := range []struct {
		name  string
		env   []string
		blame string
	}{
		{"not a redis URL", []string{"CBKGATE_STATE", "postgres://u:pw-s3cr3t@h/0", "CBKGATE_STATE_KEY_FILE", keyFile}, "CBKGATE_STATE"},
		{"bad database", []string{"CBKGATE_STATE", "redis://u:pw-s3cr3t@h:1/x", "CBKGATE_STATE_KEY_FILE", keyFile}, "CBKGATE_STATE"},
		{"redis without key", []string{"CBKGATE_STATE", "redis://u:pw-s3cr3t@h:1/0"}, "--state-key-file"},
		{"key without redis", []string{"CBKGATE_STATE_KEY_FILE", keyFile}, "CBKGATE_STATE_KEY_FILE"},
	} {
		_, err := Load(nil, envOf(append([]string{EnvAPISecret, distinct}, tc.env...)...))
		if err == nil || !strings.Contains(err.Error(), tc.blame) || strings.Contains(err.Error(), "pw-s3cr3t") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
