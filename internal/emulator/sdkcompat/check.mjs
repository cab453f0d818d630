// Checks that ChatBotKit's official Node SDK (@chatbotkit/sdk, pinned in
// package.json) works unchanged against the cbkgate emulator. The SDK is the
// ground truth for the wire format: a failure here means the emulator is
// wrong, not the SDK.
//
// Usage: EMULATOR_BASE_URL=http://127.0.0.1:8787 EMULATOR_SECRET=emulator node check.mjs
// Run by sdkcompat_test.go (go test -tags sdkcompat -run SDK ./internal/emulator/).

import assert from 'node:assert/strict'

import { ChatBotKit } from '@chatbotkit/sdk'
import { PartnerUserTokenClient } from '@chatbotkit/sdk/partner/user/token/index.js'

const baseUrl = process.env.EMULATOR_BASE_URL
const secret = process.env.EMULATOR_SECRET
if (!baseUrl || !secret) {
  console.error('sdkcompat: EMULATOR_BASE_URL and EMULATOR_SECRET must be set')
  process.exit(2)
}

// The client partners use: ChatBotKit -> partner -> user -> token.
const tokens = new ChatBotKit({ secret, baseUrl }).partner.user.token

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

// rejects asserts that fn fails with the SDK's FetchError carrying code.
async function rejects(fn, code) {
  let err
  try {
    await fn()
  } catch (e) {
    err = e
  }
  assert.ok(err, `expected a ${code} error, got success`)
  assert.equal(err.name, 'FetchError', `error is ${err}`)
  assert.equal(err.code, code, `error message: ${err.message}`)
  assert.ok(err.message, 'error has no message')
}

async function collect(iterable) {
  const out = []
  for await (const ev of iterable) {
    assert.equal(ev.type, 'item', `stream event ${JSON.stringify(ev)}`)
    out.push(ev.data)
  }
  return out
}

const user = `sdk-user-${Date.now()}`
const meta = { team: 'core', nested: { list: [1, 'two', null], flag: true } }
let a, b, c, cursor

await check('create returns id, secret token and createdAt', async () => {
  const before = Date.now()
  a = await tokens.create(user, {
    name: 'first',
    description: 'with meta',
    config: { scope: 'read' },
    meta,
  })
  assert.equal(typeof a.id, 'string')
  assert.ok(a.id.length > 0)
  assert.equal(typeof a.token, 'string')
  assert.ok(a.token.length >= 16)
  assert.equal(typeof a.createdAt, 'number')
  assert.ok(a.createdAt >= before - 1000 && a.createdAt <= Date.now() + 1000)
  b = await tokens.create(user, { name: 'second' })
  c = await tokens.create(user, {})
  assert.equal(new Set([a.id, b.id, c.id]).size, 3, 'ids repeat')
  assert.notEqual(a.token, b.token, 'secrets repeat')
})

await check('list one page (order asc, take 2)', async () => {
  const page = await tokens.list(user, { order: 'asc', take: 2 })
  assert.deepEqual(
    page.items.map((t) => t.id),
    [a.id, b.id]
  )
  const [first] = page.items
  assert.equal(first.name, 'first')
  assert.equal(first.description, 'with meta')
  assert.deepEqual(first.meta, meta)
  assert.equal(first.createdAt, a.createdAt)
  assert.equal(typeof first.updatedAt, 'number')
  assert.equal(first.config, undefined, 'config must not be listed')
  assert.equal(first.token, undefined, 'the secret must not be listed')
  assert.equal(typeof page.cursor, 'string')
  assert.ok(page.cursor.length > 0)
  cursor = page.cursor
})

await check('list the next page with the cursor', async () => {
  const page = await tokens.list(user, { order: 'asc', take: 2, cursor })
  assert.deepEqual(
    page.items.map((t) => t.id),
    [c.id]
  )
  const end = await tokens.list(user, { order: 'asc', take: 2, cursor: page.cursor })
  assert.deepEqual(end.items, [])
  assert.equal(typeof end.cursor, 'string')
  // Default order is newest first.
  const desc = await tokens.list(user)
  assert.deepEqual(
    desc.items.map((t) => t.id),
    [c.id, b.id, a.id]
  )
})

await check('stream the list as JSONL (all, and from a cursor)', async () => {
  const all = await collect(tokens.list(user, { order: 'asc', take: 1 }).stream())
  assert.deepEqual(
    all.map((t) => t.id),
    [a.id, b.id, c.id],
    'stream must ignore take and send every token'
  )
  assert.deepEqual(all[0].meta, meta)
  const rest = await collect(tokens.list(user, { order: 'asc', cursor }).stream())
  assert.deepEqual(
    rest.map((t) => t.id),
    [c.id]
  )
})

await check('update changes only the fields sent', async () => {
  const res = await tokens.update(user, a.id, { name: 'renamed' })
  assert.deepEqual(res, { id: a.id })
  const page = await tokens.list(user, { order: 'asc', take: 1 })
  const t = page.items[0]
  assert.equal(t.name, 'renamed')
  assert.equal(t.description, 'with meta')
  assert.deepEqual(t.meta, meta)
  assert.ok(t.updatedAt >= t.createdAt)
})

await check('delete removes the token', async () => {
  const res = await tokens.delete(user, b.id)
  assert.deepEqual(res, { id: b.id })
  const page = await tokens.list(user, { order: 'asc' })
  assert.deepEqual(
    page.items.map((t) => t.id),
    [a.id, c.id]
  )
  await rejects(() => tokens.update(user, b.id, { name: 'gone' }), 'NOT_FOUND')
})

await check('wrong secret fails with NOT_AUTHENTICATED', async () => {
  const wrong = new PartnerUserTokenClient({ secret: `${secret}-wrong`, baseUrl })
  await rejects(() => wrong.list(user), 'NOT_AUTHENTICATED')
  await rejects(() => wrong.create(user, { name: 'x' }), 'NOT_AUTHENTICATED')
  await rejects(() => collect(wrong.list(user).stream()), 'NOT_AUTHENTICATED')
})

await check('delete of an unknown token fails with NOT_FOUND', async () => {
  await rejects(() => tokens.delete(user, 'no-such-token'), 'NOT_FOUND')
  // Another user's token is unknown too.
  await rejects(() => tokens.delete(`${user}-other`, a.id), 'NOT_FOUND')
})

await check('invalid input fails with BAD_REQUEST', async () => {
  await rejects(() => tokens.list(user, { take: 0 }), 'BAD_REQUEST')
  await rejects(() => tokens.list(user, { cursor: 'not a cursor' }), 'BAD_REQUEST')
  await rejects(() => tokens.create(user, { meta: ['not', 'an', 'object'] }), 'BAD_REQUEST')
})

await check('user ids with spaces and unicode', async () => {
  // The SDK does not escape ids, but URL parsing percent-encodes spaces and
  // non-ASCII, so such an id still arrives as one segment.
  const odd = `üser ${Date.now()}`
  const made = await tokens.create(odd, { name: 'odd' })
  const page = await tokens.list(odd)
  assert.deepEqual(
    page.items.map((t) => t.id),
    [made.id]
  )
})

console.log(`sdkcompat: ${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
