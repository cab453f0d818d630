"""A Python gRPC client of cbkgate built from gen/cbkgate.binpb alone.

No .proto files, no protoc, no generated code: the message classes come
from the descriptor set through google.protobuf's descriptor_pool and
message_factory, as a client in a language without cbkgate's tooling would
do. Runs with Debian's python3-grpcio and python3-protobuf.

Usage: CBKGATE_GRPC_ADDR=127.0.0.1:9090 python3 check.py
  CBKGATE_BINPB        the descriptor set (default: ../../../gen/cbkgate.binpb)
  CBKGATE_GRPC_ADDR_429  optional: a cbkgate whose upstream answers 429, to
                       decode RetryInfo
Run by ../pyclient_test.go (go test -tags pyclient -run Python ./cmd/server/).
"""

import os
import sys
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))
BINPB = os.environ.get("CBKGATE_BINPB", os.path.join(HERE, "..", "..", "..", "gen", "cbkgate.binpb"))
ADDR = os.environ["CBKGATE_GRPC_ADDR"]
SERVICE = "/cbkgate.token.v1.TokenService/"

with open(BINPB, "rb") as f:
    fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
pool = descriptor_pool.DescriptorPool()
for fd in fds.file:  # the set lists every file after its imports
    pool.Add(fd)


def message(name):
    desc = pool.FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


M = {n: message("cbkgate.token.v1." + n) for n in (
    "ListRequest", "ListResponse", "CreateRequest", "CreateResponse", "UpdateRequest",
    "UpdateResponse", "DeleteRequest", "DeleteResponse")}
Status = message("google.rpc.Status")
ORDER_ASC = pool.FindEnumTypeByName("cbkgate.token.v1.Order").values_by_name["ORDER_ASC"].number

passed = failed = 0


def check(name, ok, detail=None):
    global passed, failed
    if ok:
        passed += 1
        print("ok  ", name)
    else:
        failed += 1
        print("FAIL", name, detail)


def stubs(channel):
    def unary(method):
        return channel.unary_unary(SERVICE + method,
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=M[method + "Response"].FromString)
    lst = channel.unary_stream(SERVICE + "List", request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=M["ListResponse"].FromString)
    return lst, unary("Create"), unary("Update"), unary("Delete")


def details(err):
    """The google.rpc.Status of a failed call, each detail decoded by the
    type its Any names, with classes from the descriptor set only."""
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw is None:
        return None, []
    st = Status.FromString(raw)
    out = []
    for any_ in st.details:
        type_name = any_.type_url.split("/")[-1]
        d = message(type_name)()
        d.ParseFromString(any_.value)
        out.append((type_name, d))
    return st, out


def fail_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e
    return None


channel = grpc.insecure_channel(ADDR)
list_, create, update, delete = stubs(channel)
user = "py-%d" % time.time_ns()

# CRUD
ids = []
for i in range(5):
    req = M["CreateRequest"](user_id=user, name="t%d" % i)
    req.meta.update({"i": i, "lang": "python"})
    resp = create(req, timeout=10)
    check("create %d returns id, secret and time" % i, resp.id and resp.token and resp.create_time.seconds > 0, resp)
    ids.append(resp.id)

listed = list(list_(M["ListRequest"](user_id=user, order=ORDER_ASC, page_size=2), timeout=10))
check("List over three pages returns every token in order", [r.token.id for r in listed] == ids,
      [r.token.id for r in listed])
check("meta survives the round trip", json_format.MessageToDict(listed[0].token.meta) == {"i": 0, "lang": "python"},
      listed[0].token.meta)
check("each page's last token has a cursor", listed[1].cursor != "" and listed[3].cursor != "",
      [r.cursor for r in listed])
rest = list(list_(M["ListRequest"](user_id=user, order=ORDER_ASC, page_size=2, cursor=listed[1].cursor), timeout=10))
check("List resumed from a cursor returns the rest", [r.token.id for r in rest] == ids[2:], [r.token.id for r in rest])
limited = list(list_(M["ListRequest"](user_id=user, order=ORDER_ASC, page_size=2, limit=3), timeout=10))
check("limit stops the listing", [r.token.id for r in limited] == ids[:3], [r.token.id for r in limited])

up = update(M["UpdateRequest"](user_id=user, token_id=ids[0], name="renamed"), timeout=10)
check("update", up.id == ids[0], up)
dl = delete(M["DeleteRequest"](user_id=user, token_id=ids[4]), timeout=10)
check("delete", dl.id == ids[4], dl)
after = [(r.token.id, r.token.name) for r in list_(M["ListRequest"](user_id=user, order=ORDER_ASC), timeout=10)]
check("the list shows the update and the delete", len(after) == 4 and after[0] == (ids[0], "renamed"), after)

# A validation error: ErrorInfo (cbkgate) and BadRequest, one violation per field.
err = fail_of(lambda: list(list_(M["ListRequest"](user_id="", page_size=-1, limit=-1), timeout=10)))
check("an invalid List fails with INVALID_ARGUMENT", err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT, err)
st, ds = details(err)
types = [t for t, _ in ds]
check("validation details: ErrorInfo then BadRequest", types == ["google.rpc.ErrorInfo", "google.rpc.BadRequest"], types)
if types == ["google.rpc.ErrorInfo", "google.rpc.BadRequest"]:
    info, bad = ds[0][1], ds[1][1]
    check("ErrorInfo is cbkgate's INVALID_ARGUMENT", (info.domain, info.reason) == ("cbkgate", "INVALID_ARGUMENT"), info)
    fields = [v.field for v in bad.field_violations]
    check("BadRequest names each bad field", fields == ["user_id", "page_size", "limit"], fields)

# An upstream error: ErrorInfo in ChatBotKit's domain with the HTTP status.
err = fail_of(lambda: delete(M["DeleteRequest"](user_id=user, token_id="tok_missing"), timeout=10))
check("deleting an unknown token is NOT_FOUND", err is not None and err.code() == grpc.StatusCode.NOT_FOUND, err)
st, ds = details(err)
info = ds[0][1] if ds else None
check("upstream ErrorInfo: chatbotkit.com with http_status 404",
      info is not None and info.domain == "chatbotkit.com" and info.metadata["http_status"] == "404", ds)

# RetryInfo, from a cbkgate whose upstream answers 429 with Retry-After.
addr429 = os.environ.get("CBKGATE_GRPC_ADDR_429")
if addr429:
    _, create429, _, _ = stubs(grpc.insecure_channel(addr429))
    err = fail_of(lambda: create429(M["CreateRequest"](user_id="u", name="n"), timeout=10,
                                    metadata=[("authorization", "Bearer py-secret")]))
    check("a 429 upstream is RESOURCE_EXHAUSTED", err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err)
    st, ds = details(err)
    kinds = dict(ds)
    retry = kinds.get("google.rpc.RetryInfo")
    check("RetryInfo decodes with the upstream's delay", retry is not None and retry.retry_delay.seconds == 7, ds)
    check("ErrorInfo rides along", "google.rpc.ErrorInfo" in kinds, ds)

print("pyclient: %d passed, %d failed" % (passed, failed))
sys.exit(0 if failed == 0 else 1)
