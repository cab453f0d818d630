// The generated TypeScript client (gen/ts) from Node over the Connect
// protocol, against a running cbkgate: CRUD, a List streamed over several
// upstream pages and resumed from a cursor, and an error whose details
// decode with the generated google/rpc types.
//
// Bundled with esbuild and run by ../tsclient_test.go
// (go test -tags tsclient -run TSClient ./cmd/server/). CBKGATE_HTTP_URL is
// the server's HTTP base URL.

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

import { Order, TokenService } from "../../../gen/ts/cbkgate/token/v1/token_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/ts/google/rpc/error_details_pb.js";

// Node's globals, as much of them as this script uses (no @types/node).
declare const process: { env: Record<string, string | undefined>; exit(code: number): never };

const baseUrl = process.env.CBKGATE_HTTP_URL;
if (!baseUrl) {
  console.error("tsclient-node: CBKGATE_HTTP_URL must be set");
  process.exit(2);
}
const client = createClient(TokenService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));

let passed = 0;
let failed = 0;
function check(name: string, ok: boolean, detail?: unknown) {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}: ${JSON.stringify(detail)}`);
  }
}

const user = `node-connect-${Date.now()}`;
const ids: string[] = [];
for (let i = 0; i < 5; i++) {
  const r = await client.create({ userId: user, name: `t${i}`, meta: { i, tags: ["x"] } }, { timeoutMs: 10_000 });
  check(`create ${i} returns id and secret`, r.id !== "" && r.token !== "" && r.createTime !== undefined, r);
  ids.push(r.id);
}

// Page size 2 makes the server walk three upstream pages.
const listed: string[] = [];
const cursors: string[] = [];
for await (const r of client.list({ userId: user, order: Order.ASC, pageSize: 2 }, { timeoutMs: 10_000 })) {
  listed.push(r.token?.id ?? "");
  cursors.push(r.cursor);
  if (listed.length === 1) {
    check("a listed token carries its meta", r.token?.meta?.i === 0, r.token?.meta);
  }
}
check("List over several pages returns every token in order", JSON.stringify(listed) === JSON.stringify(ids), { listed, ids });
check("the last token of a page has a cursor", cursors[1] !== "", cursors);

const rest: string[] = [];
for await (const r of client.list({ userId: user, order: Order.ASC, pageSize: 2, cursor: cursors[1] })) {
  rest.push(r.token?.id ?? "");
}
check("List resumed from a cursor returns the rest", JSON.stringify(rest) === JSON.stringify(ids.slice(2)), rest);

const up = await client.update({ userId: user, tokenId: ids[0], name: "renamed" });
check("update", up.id === ids[0], up);
const del = await client.delete({ userId: user, tokenId: ids[4] });
check("delete", del.id === ids[4], del);
const after: string[] = [];
for await (const r of client.list({ userId: user, order: Order.ASC })) {
  after.push(`${r.token?.id}:${r.token?.name}`);
}
check("the list shows the update and the delete", after.length === 4 && after[0] === `${ids[0]}:renamed`, after);

try {
  for await (const _ of client.list({ userId: "", pageSize: -1 })) {
    // no token comes: the request is refused
  }
  check("an invalid List fails", false, "it succeeded");
} catch (e) {
  const err = ConnectError.from(e);
  check("an invalid List is INVALID_ARGUMENT", err.code === Code.InvalidArgument, err.code);
  const [info] = err.findDetails(ErrorInfoSchema);
  check("ErrorInfo decodes with its reason", info?.reason === "INVALID_ARGUMENT" && info?.domain === "cbkgate", info);
  const [bad] = err.findDetails(BadRequestSchema);
  const fields = bad?.fieldViolations.map((v) => v.field);
  check("BadRequest names each bad field", JSON.stringify(fields) === JSON.stringify(["user_id", "page_size"]), fields);
}

try {
  await client.delete({ userId: user, tokenId: "tok_missing" });
  check("deleting an unknown token fails", false, "it succeeded");
} catch (e) {
  const err = ConnectError.from(e);
  const [info] = err.findDetails(ErrorInfoSchema);
  check("an upstream error is NOT_FOUND with ChatBotKit's ErrorInfo", err.code === Code.NotFound && info?.domain === "chatbotkit.com", { code: err.code, info });
}

console.log(`tsclient-node: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
