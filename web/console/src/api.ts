// The console's calls: the generated TokenService client over Connect, on
// this page's own origin, so cbkgate's authentication, grants, limits,
// logs and metrics apply to them as to any other client. Each call gets a
// transport of its own, which remembers the request id cbkgate answered
// with (its X-Request-Id header), so that an error can show it even when
// the call failed before a Connect error body arrived.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

import { TokenService } from "../../../gen/ts/cbkgate/token/v1/token_service_pb.js";
import { ErrorInfoSchema } from "../../../gen/ts/google/rpc/error_details_pb.js";

/** One call: the request id of its answer, once it came. */
export interface Call {
  requestId: string;
}

/** The API's base URL: the directory above the console's own, so a
 * cbkgate served under a path prefix works too. */
const base = new URL("..", location.href).href.replace(/\/$/, "");

/** A TokenService client for one call, sending apiKey as its Bearer (none
 * when empty: dev mode and --allow-unauthenticated let callers in without). */
export function tokens(apiKey: string, call: Call): Client<typeof TokenService> {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("Authorization", `Bearer ${apiKey}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: base,
    interceptors: apiKey === "" ? [] : [bearer],
    fetch: async (input, init) => {
      const resp = await globalThis.fetch(input, init);
      call.requestId = resp.headers.get("x-request-id") ?? "";
      return resp;
    },
  });
  return createClient(TokenService, transport);
}

/** gRPC's names of the status codes, as cbkgate's documentation and logs
 * spell them (Connect's enum says "Canceled"). */
const codeNames: Record<number, string> = {
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

/** What the page shows of a failed call. */
export interface Failure {
  code: string;
  message: string;
  reason: string;
  requestId: string;
}

export function describe(e: unknown, call: Call): Failure {
  const err = ConnectError.from(e);
  const [info] = err.findDetails(ErrorInfoSchema);
  return {
    code: codeNames[err.code] ?? String(err.code),
    message: err.rawMessage,
    reason: info?.reason ?? "",
    requestId: err.metadata.get("x-request-id") ?? call.requestId,
  };
}

/** Whether e is the end of a call this page cancelled itself. */
export function cancelled(e: unknown): boolean {
  return ConnectError.from(e).code === Code.Canceled;
}
