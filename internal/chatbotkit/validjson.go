package chatbotkit

// validJSON reports whether b is one well-formed JSON value (with
// whitespace around it), exactly as encoding/json.Valid does: the same
// grammar, no UTF-8 check inside strings, and the same nesting limit.
//
// Why not json.Valid itself: the reflection-free scanners (scanPage,
// decodeLine) must know a document is well formed before they may trust its
// shape, and json.Valid's general state machine was a fifth of cbkgate's
// CPU per listed token. This walks the grammar directly, several times
// faster. FuzzValidJSON holds it to json.Valid on arbitrary input.
func validJSON(b []byte) bool {
	v := jsonValidator{b: b}
	v.ws()
	if !v.value(0) {
		return false
	}
	v.ws()
	return v.i == len(v.b)
}

// maxJSONNesting is encoding/json's own limit on nested objects and arrays.
const maxJSONNesting = 10000

type jsonValidator struct {
	b []byte
	i int
}

func (v *jsonValidator) ws() { v.i = skipWS(v.b, v.i) }

// skipWS returns the index of the first byte of b from i on that is not
// JSON whitespace (len(b) when there is none).
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value checks the value at the cursor, depth containers deep.
func (v *jsonValidator) value(depth int) bool {
	if v.i >= len(v.b) {
		return false
	}
	switch c := v.b[v.i]; {
	case c == '{':
		return v.container(depth, '}', true)
	case c == '[':
		return v.container(depth, ']', false)
	case c == '"':
		return v.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return v.number()
	case c == 't':
		return v.literal("true")
	case c == 'f':
		return v.literal("false")
	case c == 'n':
		return v.literal("null")
	}
	return false
}

// container checks an object (keyed) or an array at the cursor.
func (v *jsonValidator) container(depth int, closer byte, keyed bool) bool {
	if depth+1 > maxJSONNesting {
		return false
	}
	v.i++ // the opening bracket
	v.ws()
	if v.i < len(v.b) && v.b[v.i] == closer {
		v.i++
		return true
	}
	for {
		if keyed {
			if v.i >= len(v.b) || v.b[v.i] != '"' || !v.string() {
				return false
			}
			v.ws()
			if v.i >= len(v.b) || v.b[v.i] != ':' {
				return false
			}
			v.i++
			v.ws()
		}
		if !v.value(depth + 1) {
			return false
		}
		v.ws()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case ',':
			v.i++
			v.ws()
		case closer:
			v.i++
			return true
		default:
			return false
		}
	}
}

// string checks the string at the cursor: no control characters, and only
// the escapes JSON defines.
func (v *jsonValidator) string() bool {
	v.i++ // the opening quote
	for v.i < len(v.b) {
		c := v.b[v.i]
		switch {
		case c == '"':
			v.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			v.i++
			if v.i >= len(v.b) {
				return false
			}
			switch v.b[v.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				v.i++
			case 'u':
				if v.i+4 >= len(v.b) {
					return false
				}
				for _, h := range v.b[v.i+1 : v.i+5] {
					if !isHexDigit(h) {
						return false
					}
				}
				v.i += 5
			default:
				return false
			}
		default:
			v.i++
		}
	}
	return false
}

func isHexDigit(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at the cursor.
func (v *jsonValidator) number() bool {
	if v.b[v.i] == '-' {
		v.i++
	}
	switch {
	case v.i < len(v.b) && v.b[v.i] == '0':
		v.i++
	case v.digits() == 0:
		return false
	}
	if v.i < len(v.b) && v.b[v.i] == '.' {
		v.i++
		if v.digits() == 0 {
			return false
		}
	}
	if v.i < len(v.b) && (v.b[v.i] == 'e' || v.b[v.i] == 'E') {
		v.i++
		if v.i < len(v.b) && (v.b[v.i] == '+' || v.b[v.i] == '-') {
			v.i++
		}
		if v.digits() == 0 {
			return false
		}
	}
	return true
}

func (v *jsonValidator) digits() int {
	start := v.i
	for v.i < len(v.b) && v.b[v.i] >= '0' && v.b[v.i] <= '9' {
		v.i++
	}
	return v.i - start
}

func (v *jsonValidator) literal(word string) bool {
	if len(v.b)-v.i < len(word) || string(v.b[v.i:v.i+len(word)]) != word {
		return false
	}
	v.i += len(word)
	return true
}
