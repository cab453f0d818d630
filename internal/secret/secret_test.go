package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestValueNeverPrints(t *testing.T) {
	const raw = "sk-very-secret-123"
	v := Value(raw)
	if got := v.Reveal(); got != raw {
		t.Fatalf("Reveal() = %q, want %q", got, raw)
	}

	var printed []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X"} {
		printed = append(printed, fmt.Sprintf(verb, v))
	}
	printed = append(printed, fmt.Sprintf("%v", struct{ S Value }{v}))
	printed = append(printed, fmt.Sprintf("%+v", &struct{ S Value }{v}))
	printed = append(printed, fmt.Sprint(v), fmt.Sprintln(v))

	js, err := json.Marshal(map[string]any{"s": v, "nested": struct{ S Value }{v}})
	if err != nil {
		t.Fatal(err)
	}
	printed = append(printed, string(js))

	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
		func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Debug("call", "secret", v, "group", slog.GroupValue(slog.Any("s", v)))
		printed = append(printed, buf.String())
	}

	for _, p := range printed {
		if strings.Contains(p, raw) || strings.Contains(p, fmt.Sprintf("%x", raw)) {
			t.Errorf("secret leaked: %s", p)
		}
		if !strings.Contains(p, Redacted) && !strings.Contains(p, fmt.Sprintf("%x", Redacted)) && !strings.Contains(strings.ToUpper(p), strings.ToUpper(fmt.Sprintf("%x", Redacted))) {
			t.Errorf("placeholder missing: %s", p)
		}
	}
}

func TestIsZero(t *testing.T) {
	if !Value("").IsZero() || Value("x").IsZero() {
		t.Fatal("IsZero wrong")
	}
}
