package chatbotkit

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// scanPage decodes a page of the usual shape without encoding/json's
// reflection, which took a third of cbkgate's CPU per listed token in
// profiles. The usual shape is {"items":[{...},...],"cursor":"..."}, keys in
// any order, unknown keys anywhere, item fields spelled as wireToken spells
// them, strings without escape sequences, times as numbers or null.
//
// For anything else it returns ok=false, and decodePage decodes the page
// with encoding/json instead: the fast path only ever takes pages whose
// meaning is plain, so it never decides what an unusual page means.
//
// items is where the tokens go (emptied first), so that a page of the size
// asked for needs no new room.
//
// A page with more than limit items is not the usual shape either: the
// scan gives up at the first item past it.
// tooMany then says so: the scan has seen more than limit items.
func scanPage(b []byte, items []wireToken, limit int) (_ []wireToken, cursor string, ok, tooMany bool) {
	// The walk checks the structure it passes through itself (see
	// pageScanner); the whole page is checked first all the same, so that
	// a page past limit is refused as such only when it is well formed, as
	// encoding/json's answer for it would be.
	if !validJSON(b) {
		return nil, "", false, false
	}
	s := &pageScanner{b: b}
	sawItems := false
	ok = s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "items":
			if sawItems {
				// encoding/json decodes a second "items" into the
				// first one's elements, merging them: its business.
				return false
			}
			sawItems = true
			items, ok = s.items(items[:0], limit)
		case "cursor":
			cursor, ok = s.string()
		default:
			ok = s.skipUnknown(key, "items", "cursor")
		}
		return ok
	})
	return items, cursor, ok && sawItems, s.tooMany
}

// pageScanner walks a JSON document, and gives up (false) at anything that
// is not well-formed JSON or not of the usual shape: separators are
// checked as it goes, a string it reads must be plain (no escapes, no
// control characters, valid UTF-8), and every value it skips or keeps raw
// (meta, unknown keys, times) is checked by jsonValidator. So a document it
// accepts whole, to its end, is well formed, and decodeLine needs no
// separate check before it.
type pageScanner struct {
	b []byte
	i int
	// depth is how many objects and arrays are open at the cursor, held
	// to encoding/json's nesting limit.
	depth int
	// tooMany: items gave up past its limit.
	tooMany bool
}

func (s *pageScanner) ws() { s.i = skipWS(s.b, s.i) }

// peek returns the next byte after whitespace, 0 at the end.
func (s *pageScanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// object calls field with each key of the object at the cursor, the scanner
// at the key's value; field consumes the value, or returns false to give up.
func (s *pageScanner) object(field func(key []byte) bool) bool {
	if s.peek() != '{' || s.depth >= maxJSONNesting {
		return false
	}
	s.i++
	s.depth++
	if s.peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		key, ok := s.rawString()
		if !ok || s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !field(key) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// atEnd reports whether nothing but whitespace is left.
func (s *pageScanner) atEnd() bool {
	s.ws()
	return s.i == len(s.b)
}

// items decodes the array of tokens at the cursor.
func (s *pageScanner) items(items []wireToken, limit int) ([]wireToken, bool) {
	if s.peek() != '[' || s.depth >= maxJSONNesting {
		return items, false // null, or not an array
	}
	s.i++
	s.depth++
	if s.peek() == ']' {
		s.i++
		s.depth--
		return items, true
	}
	for {
		if len(items) >= limit {
			s.tooMany = true
			return items, false
		}
		var w wireToken
		if !s.token(&w) {
			return items, false
		}
		items = append(items, w)
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return items, true
		default:
			return items, false
		}
	}
}

// token decodes the token object at the cursor into w.
func (s *pageScanner) token(w *wireToken) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			w.ID, ok = s.string()
		case "name":
			w.Name, ok = s.string()
		case "description":
			w.Description, ok = s.string()
		case "meta":
			// Copied, as encoding/json copies a RawMessage.
			var raw []byte
			if raw, ok = s.skipValue(); ok {
				w.Meta = append(json.RawMessage(nil), raw...)
			}
		case "createdAt":
			ok = s.time(&w.CreatedAt)
		case "updatedAt":
			ok = s.time(&w.UpdatedAt)
		default:
			ok = s.skipUnknown(key, "id", "name", "description", "meta", "createdAt", "updatedAt")
		}
		return ok
	})
}

// rawString returns the content of the string at the cursor, if it has no
// escape sequences, no control characters (which JSON does not allow
// unescaped) and is valid UTF-8 (encoding/json would replace bad bytes,
// the fast path leaves that to it).
func (s *pageScanner) rawString() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	end := bytes.IndexByte(s.b[start:], '"')
	if end < 0 {
		return nil, false
	}
	str := s.b[start : start+end]
	if bytes.IndexByte(str, '\\') >= 0 || !utf8.Valid(str) {
		return nil, false
	}
	for _, c := range str {
		if c < 0x20 {
			return nil, false
		}
	}
	s.i = start + end + 1
	return str, true
}

func (s *pageScanner) string() (string, bool) {
	str, ok := s.rawString()
	return string(str), ok
}

// time decodes a number of milliseconds or null, as msTime does.
func (s *pageScanner) time(t *msTime) bool {
	switch c := s.peek(); {
	case c == '-' || (c >= '0' && c <= '9'), c == 'n':
		raw, ok := s.skipValue()
		return ok && t.UnmarshalJSON(raw) == nil
	}
	return false
}

// skipUnknown skips the value of a key that is none of known. A key that
// matches one of them but for case is left to encoding/json, which matches
// keys without regard to case.
func (s *pageScanner) skipUnknown(key []byte, known ...string) bool {
	for _, k := range known {
		if bytes.EqualFold(key, []byte(k)) {
			return false
		}
	}
	_, ok := s.skipValue()
	return ok
}

// skipValue moves past the value at the cursor and returns it, if it is
// well-formed JSON (nested no deeper, with the containers around it, than
// encoding/json allows).
func (s *pageScanner) skipValue() ([]byte, bool) {
	s.ws()
	v := jsonValidator{b: s.b, i: s.i}
	if !v.value(s.depth) {
		return nil, false
	}
	start := s.i
	s.i = v.i
	return s.b[start:s.i], true
}
