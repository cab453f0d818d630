package emulator

// The write endpoints (create, update, delete), the bodies they read, and
// the JSON answers every endpoint writes.

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// body is the create and update request. A nil field was absent.
type body struct {
	name, description *string
	config, meta      json.RawMessage
}

// readBody decodes a JSON object body of at most maxBodyBytes. An empty body
// is accepted only where allowEmpty (delete: the SDK sends {}, others may
// send nothing). It writes the error response itself and returns false.
func readBody(w http.ResponseWriter, r *http.Request, allowEmpty bool) (body, bool) {
	var b body
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "CONTENT_TOO_LARGE", "Request body is larger than 1 MiB")
		} else {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Could not read request body")
		}
		return b, false
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if allowEmpty {
			return b, true
		}
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "A JSON object body is required")
		return b, false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Content-Type must be application/json")
		return b, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Body must be a JSON object")
		return b, false
	}
	for _, f := range []struct {
		key string
		dst **string
	}{{"name", &b.name}, {"description", &b.description}} {
		if v, ok := m[f.key]; ok {
			var s string
			if v[0] != '"' || json.Unmarshal(v, &s) != nil {
				writeError(w, http.StatusBadRequest, "BAD_REQUEST", f.key+" must be a string")
				return b, false
			}
			*f.dst = &s
		}
	}
	for _, f := range []struct {
		key string
		dst *json.RawMessage
	}{{"config", &b.config}, {"meta", &b.meta}} {
		if v, ok := m[f.key]; ok {
			if v[0] != '{' { // Unmarshal has already checked it is valid JSON
				writeError(w, http.StatusBadRequest, "BAD_REQUEST", f.key+" must be an object")
				return b, false
			}
			*f.dst = v
		}
	}
	return b, true
}

func (e *Emulator) create(w http.ResponseWriter, r *http.Request, userID string) {
	b, ok := readBody(w, r, false)
	if !ok {
		return
	}
	var f *fields // nil keeps a token without fields as small as a seeded one
	if b.name != nil || b.description != nil || b.config != nil || b.meta != nil {
		f = &fields{b.name, b.description, b.config, b.meta}
	}
	if !storable(w, b) {
		return
	}
	now := time.Now().UnixMilli()
	e.mu.Lock()
	if e.created >= e.maxTokens {
		e.mu.Unlock()
		writeError(w, http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY",
			"Token limit reached: this emulator holds at most "+strconv.Itoa(e.maxTokens)+" created tokens")
		return
	}
	e.created++
	e.seq++
	t := token{seq: e.seq, createdAt: now, updatedAt: now, fields: f}
	e.users[userID] = append(e.users[userID], t)
	e.mu.Unlock()

	writeJSON(w, http.StatusOK, struct {
		ID        string `json:"id"`
		Token     string `json:"token"`
		CreatedAt int64  `json:"createdAt"`
	}{e.tokenID(t.seq), rand.Text(), t.createdAt})
}

func (e *Emulator) update(w http.ResponseWriter, r *http.Request, userID, tokenID string) {
	b, ok := readBody(w, r, false)
	if !ok || !storable(w, b) {
		return
	}
	now := time.Now().UnixMilli()
	e.mu.Lock()
	list := e.users[userID]
	i, found := e.index(list, tokenID)
	if found {
		t := &list[i]
		f := fields{}
		if t.fields != nil {
			f = *t.fields
		}
		if b.name != nil {
			f.name = b.name
		}
		if b.description != nil {
			f.description = b.description
		}
		if b.config != nil {
			f.config = b.config
		}
		if b.meta != nil {
			f.meta = b.meta
		}
		t.fields = &f
		t.updatedAt = max(now, t.updatedAt) // never before createdAt, even if the clock steps back
	}
	e.mu.Unlock()
	if !found {
		writeTokenNotFound(w)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID string `json:"id"`
	}{tokenID})
}

func (e *Emulator) delete(w http.ResponseWriter, r *http.Request, userID, tokenID string) {
	if _, ok := readBody(w, r, true); !ok {
		return
	}
	e.mu.Lock()
	list := e.users[userID]
	i, found := e.index(list, tokenID)
	if found {
		if list = slices.Delete(list, i, i+1); len(list) == 0 {
			delete(e.users, userID)
		} else {
			e.users[userID] = list
		}
		// A deleted seeded token frees room too: what is held stays at
		// most the seeded tokens plus maxTokens.
		e.created = max(e.created-1, 0)
	}
	e.mu.Unlock()
	if !found {
		writeTokenNotFound(w)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID string `json:"id"`
	}{tokenID})
}

// index finds tokenID among one user's tokens; another user's token is not
// found, as in ChatBotKit.
func (e *Emulator) index(list []token, tokenID string) (int, bool) {
	seq, ok := e.parseTokenID(tokenID)
	if !ok {
		return 0, false
	}
	return find(list, seq)
}

func writeTokenNotFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "NOT_FOUND", "Token not found")
}

// storable reports whether b's config and meta fit maxStoredFieldBytes,
// answering 413 when they do not. (An update that keeps one of them as it
// was is measured by what it sends.)
func storable(w http.ResponseWriter, b body) bool {
	if len(b.config)+len(b.meta) > maxStoredFieldBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "CONTENT_TOO_LARGE",
			"config and meta together are larger than "+strconv.Itoa(maxStoredFieldBytes>>10)+" KiB")
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	}{message, code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only plain structs and validated raw JSON are written
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
