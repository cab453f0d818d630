// Package openapiv2 serves the OpenAPI v2 document generated from the proto
// (cbkgate.swagger.json beside this file, written by scripts/generate.sh).
// This file is hand-written; the JSON is generated.
package openapiv2

import _ "embed"

// JSON is the OpenAPI v2 document of the JSON API.
//
//go:embed cbkgate.swagger.json
var JSON []byte
