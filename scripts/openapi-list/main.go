// Command openapi-list rewrites the List operation of the generated OpenAPI
// document to say what is served: protoc-gen-openapiv2 knows only that
// List is a server stream and writes application/json. scripts/generate.sh
// runs it on gen/openapiv2/cbkgate.swagger.json, so the document stays
// generated and CI's check that gen/ is fresh covers this step too.
//
// Usage: go run ./scripts/openapi-list FILE
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

const listPath = "/v1/users/{user_id}/tokens"

const okDescription = "The listing, streamed as the tokens arrive, in the format the Accept header picks.\n\n" +
	"`application/x-ndjson` (the default): one JSON object per line, `{\"result\": ListResponse}` per token; " +
	"a listing that cannot be completed ends with one `{\"error\": google.rpc.Status}` line after the tokens already sent.\n\n" +
	"`text/event-stream` (Server-Sent Events, for EventSource): one default event per token whose `data` is the " +
	"ListResponse JSON and whose `id` is its cursor when it has one; a failure is one `event: error` whose `data` " +
	"is the google.rpc.Status JSON. A reconnecting reader's `Last-Event-ID` is taken as the cursor.\n\n" +
	"The schema below is one NDJSON line; an SSE event's data is its `result` or `error` member."

const errorDescription = "The listing failed before its first token: the stream's only line (NDJSON) or event (SSE) " +
	"is the error, and the HTTP status matches its code. A request refused before the call starts " +
	"(authentication, a foreign origin, a malformed request) is answered with a plain google.rpc.Status as application/json."

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: openapi-list FILE")
		os.Exit(2)
	}
	if err := rewrite(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "openapi-list:", err)
		os.Exit(1)
	}
}

func rewrite(file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return err
	}
	paths, _ := doc["paths"].(map[string]any)
	item, _ := paths[listPath].(map[string]any)
	op, _ := item["get"].(map[string]any)
	if op == nil {
		return fmt.Errorf("no GET %s in %s", listPath, file)
	}
	responses, _ := op["responses"].(map[string]any)
	ok, _ := responses["200"].(map[string]any)
	if ok == nil || ok["schema"] == nil {
		return fmt.Errorf("GET %s has no 200 schema", listPath)
	}

	op["produces"] = []any{"application/x-ndjson", "text/event-stream"}
	ok["description"] = okDescription
	schema := ok["schema"].(map[string]any)
	schema["title"] = "One line of the stream: either result or error."
	responses["default"] = map[string]any{
		"description": errorDescription,
		"schema": map[string]any{
			"type":       "object",
			"properties": map[string]any{"error": map[string]any{"$ref": "#/definitions/rpcStatus"}},
		},
	}
	params, _ := op["parameters"].([]any)
	op["parameters"] = append(params, map[string]any{
		"name":        "Last-Event-ID",
		"in":          "header",
		"required":    false,
		"type":        "string",
		"description": "For text/event-stream: the id of the last event a reconnecting reader saw; taken as the cursor, in place of the cursor parameter.",
	})

	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return os.WriteFile(file, out.Bytes(), 0o644)
}
