// Calls cbkgate's TokenService from Node with nothing but the descriptor set
// the repository ships, gen/cbkgate.binpb: no .proto files, no protoc, no
// generated code. The contract promises that this is enough for a client in
// another language; this script is the proof.
//
// Usage: CBKGATE_GRPC_ADDR=127.0.0.1:9090 node check.mjs
// The server must accept the calls without credentials (dev mode:
// `cbkgate --emulator`), or CBKGATE_BEARER must hold a value to send as
// `authorization: Bearer <value>`. CBKGATE_BINPB overrides the path of the
// descriptor set. Run by ../nodeclient_test.go
// (go test -tags nodeclient -run Node ./cmd/server/).

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

const addr = process.env.CBKGATE_GRPC_ADDR
if (!addr) {
  console.error('nodeclient: CBKGATE_GRPC_ADDR must be set (host:port of the gRPC server)')
  process.exit(2)
}
const binpb = process.env.CBKGATE_BINPB ||
  fileURLToPath(new URL('../../../gen/cbkgate.binpb', import.meta.url))

// keepCase: the proto field names (user_id, create_time), as every other
// language's client sees them. longs as strings: Timestamp.seconds is int64.
const packageDefinition = protoLoader.loadFileDescriptorSetFromBuffer(readFileSync(binpb), {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
})
const proto = grpc.loadPackageDefinition(packageDefinition)
const TokenService = proto.cbkgate?.token?.v1?.TokenService
if (typeof TokenService !== 'function') {
  console.error(`nodeclient: ${binpb} has no cbkgate.token.v1.TokenService`)
  process.exit(1)
}
const client = new TokenService(addr, grpc.credentials.createInsecure())

function metadata() {
  const md = new grpc.Metadata()
  if (process.env.CBKGATE_BEARER) {
    md.set('authorization', `Bearer ${process.env.CBKGATE_BEARER}`)
  }
  return md
}

function deadline() {
  return new Date(Date.now() + 10_000)
}

function unary(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata(), { deadline: deadline() }, (err, response) => {
      if (err) reject(err)
      else resolve(response)
    })
  })
}

// list collects every message of the server stream and its final status.
function list(request) {
  return new Promise((resolve, reject) => {
    const messages = []
    const call = client.List(request, metadata(), { deadline: deadline() })
    call.on('data', (m) => messages.push(m))
    call.on('error', reject)
    call.on('end', () => resolve(messages))
  })
}

// struct and fromStruct convert between plain objects of strings and
// google.protobuf.Struct. Built from a descriptor set, protobuf.js does not
// turn map entry messages back into maps, so Struct.fields (a
// map<string, Value>) is a list of {key, value} entries; a loader that does
// rebuild maps would give an object, which fromStruct takes as well.
const structFieldsIsList = packageDefinition['google.protobuf.Struct'].type.field
  .some((f) => f.name === 'fields' && f.label === 'LABEL_REPEATED' && f.typeName.endsWith('FieldsEntry'))

function struct(obj) {
  const entries = Object.entries(obj).map(([key, v]) => ({ key, value: { string_value: v } }))
  return { fields: structFieldsIsList ? entries : Object.fromEntries(entries.map((e) => [e.key, e.value])) }
}

function fromStruct(s) {
  const f = s?.fields ?? {}
  const entries = Array.isArray(f) ? f.map((e) => [e.key, e.value]) : Object.entries(f)
  return Object.fromEntries(entries.map(([k, v]) => [k, v?.string_value]))
}

function timestampMillis(ts) {
  assert.ok(ts, 'timestamp missing')
  return Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6)
}

let passed = 0
let failed = 0

async function check(name, fn) {
  try {
    await fn()
    passed++
    console.log(`ok   ${name}`)
  } catch (err) {
    failed++
    console.log(`FAIL ${name}: ${err?.stack || err}`)
  }
}

async function rejectsWith(fn, code) {
  let err
  try {
    await fn()
  } catch (e) {
    err = e
  }
  assert.ok(err, `expected status ${code}, got success`)
  assert.equal(err.code, code, `status ${err.code} (${err.details}), want ${code}`)
  assert.ok(err.details, 'the status has no message')
}

const userId = `node-${randomUUID()}`
const created = []

await check('the descriptor set describes the four RPCs', async () => {
  const svc = TokenService.service
  assert.deepEqual(Object.keys(svc).sort(), ['Create', 'Delete', 'List', 'Update'])
  assert.equal(svc.List.path, '/cbkgate.token.v1.TokenService/List')
  assert.equal(svc.List.responseStream, true)
  assert.equal(svc.Create.responseStream, false)
})

await check('Create returns id, secret and create_time', async () => {
  const before = Date.now()
  for (const [name, meta] of [['first', { team: 'a', n: '1' }], ['second', { team: 'b' }]]) {
    const res = await unary('Create', {
      user_id: userId,
      name,
      description: `the ${name} token`,
      config: struct({ scope: 'read' }),
      meta: struct(meta),
    })
    assert.ok(res.id, 'no id')
    assert.ok(res.token, 'no token secret')
    const ms = timestampMillis(res.create_time)
    assert.ok(Math.abs(ms - before) < 60_000, `create_time ${ms} is far from now ${before}`)
    created.push({ id: res.id, name, meta })
  }
  assert.notEqual(created[0].id, created[1].id)
})

await check('List streams every token with its meta, oldest first with ORDER_ASC', async () => {
  const msgs = await list({ user_id: userId, order: 'ORDER_ASC' })
  assert.equal(msgs.length, 2, `got ${msgs.length} messages`)
  msgs.forEach((m, i) => {
    assert.equal(m.token.id, created[i].id)
    assert.equal(m.token.name, created[i].name)
    assert.equal(m.token.description, `the ${created[i].name} token`)
    assert.deepEqual(fromStruct(m.token.meta), created[i].meta)
    assert.ok(timestampMillis(m.token.create_time) > 0)
    assert.ok(timestampMillis(m.token.update_time) >= timestampMillis(m.token.create_time))
  })
  assert.ok(msgs.at(-1).cursor, 'the last token of a listing has no cursor')
})

await check('List honours page_size across pages and resumes from a cursor', async () => {
  const all = await list({ user_id: userId, order: 'ORDER_ASC', page_size: 1 })
  assert.deepEqual(all.map((m) => m.token.id), created.map((c) => c.id))
  assert.ok(all[0].cursor, 'the last token of a one-token page has no cursor')
  const rest = await list({ user_id: userId, order: 'ORDER_ASC', cursor: all[0].cursor })
  assert.deepEqual(rest.map((m) => m.token.id), [created[1].id])
  const newest = await list({ user_id: userId, limit: 1 })
  assert.deepEqual(newest.map((m) => m.token.id), [created[1].id], 'default order is newest first')
})

await check('Update changes only the fields that are set', async () => {
  const res = await unary('Update', {
    user_id: userId,
    token_id: created[0].id,
    description: 'described again',
    meta: struct({ team: 'c' }),
  })
  assert.equal(res.id, created[0].id)
  const [m] = (await list({ user_id: userId, order: 'ORDER_ASC' })).filter((x) => x.token.id === created[0].id)
  assert.ok(m, 'the updated token is not listed')
  assert.equal(m.token.name, 'first', 'an unset optional name was sent and cleared the name')
  assert.equal(m.token.description, 'described again')
  assert.deepEqual(fromStruct(m.token.meta), { team: 'c' })
})

await check('Delete removes the token', async () => {
  const res = await unary('Delete', { user_id: userId, token_id: created[0].id })
  assert.equal(res.id, created[0].id)
  const msgs = await list({ user_id: userId })
  assert.deepEqual(msgs.map((m) => m.token.id), [created[1].id])
})

await check('Delete of an unknown token is NOT_FOUND', async () => {
  await rejectsWith(() => unary('Delete', { user_id: userId, token_id: created[0].id }), grpc.status.NOT_FOUND)
})

await check('an invalid user_id is INVALID_ARGUMENT', async () => {
  await rejectsWith(() => unary('Create', { user_id: '..', name: 'x' }), grpc.status.INVALID_ARGUMENT)
})

await check('a List that fails ends the stream with its status', async () => {
  await rejectsWith(() => list({ user_id: userId, page_size: -1 }), grpc.status.INVALID_ARGUMENT)
})

client.close()
console.log(`nodeclient: ${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
