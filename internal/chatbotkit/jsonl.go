package chatbotkit

import (
	"encoding/json"
	"errors"
	"fmt"
)

// decodeLine decodes one line of the streamed listing,
// {"type":"item","data":Token}, into w. Lines of the usual shape take the
// same reflection-free path as pages (see pageScanner, which checks as it
// walks that the line is well formed); anything else is left to
// encoding/json, so the fast path never decides what an unusual line
// means. A line of another type is refused: a listing that carried
// something cbkgate does not understand must not end as if complete.
func decodeLine(line []byte, w *wireToken) error {
	if scanLine(line, w) {
		return nil
	}
	*w = wireToken{}
	return unmarshalLine(line, w)
}

// scanLine is decodeLine's fast path: true when line is a well-formed item
// line of the usual shape, decoded into w.
func scanLine(line []byte, w *wireToken) bool {
	s := &pageScanner{b: line}
	var typ []byte
	sawData := false
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "type":
			typ, ok = s.rawString()
		case "data":
			if sawData {
				return false // merged by encoding/json: its business
			}
			sawData = true
			ok = s.token(w)
		default:
			ok = s.skipUnknown(key, "type", "data")
		}
		return ok
	})
	return ok && s.atEnd() && sawData && string(typ) == "item"
}

// unmarshalLine is decodeLine with encoding/json alone.
func unmarshalLine(line []byte, w *wireToken) error {
	var wire struct {
		Type string     `json:"type"`
		Data *wireToken `json:"data"`
	}
	if err := json.Unmarshal(line, &wire); err != nil {
		return err
	}
	if wire.Type != "item" {
		return fmt.Errorf("a line of type %.40q, not an item", wire.Type)
	}
	if wire.Data == nil {
		return errors.New("an item line without data")
	}
	*w = *wire.Data
	return nil
}
