package connectapi

import (
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cbkgate/cbkgate/internal/jsonbody"
)

// checkJSON returns nil when data is a JSON message of type mt that
// decodes as the JSON gateway decodes its bodies (unknown fields refused,
// where vanguard's own codec discards them), and otherwise the
// INVALID_ARGUMENT status that says in words what is wrong.
func checkJSON(mt protoreflect.MessageType, data []byte) *status.Status {
	if len(data) == 0 {
		return nil // the empty message, as Connect allows
	}
	return jsonbody.Unmarshal(data, mt.New().Interface())
}
