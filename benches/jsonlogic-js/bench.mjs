// json-logic-engine (the fastest JS JsonLogic engine, in its compiled
// mode) on the `and` of four comparisons that `benches/flags.rs` measures,
// against the same 256 contexts, in the same loop as that bench's
// BATON_FLAGS_COUNT mode. Run both on one machine, back to back:
//
//   (cd benches/jsonlogic-js && npm ci && node bench.mjs)
//   BATON_FLAGS_COUNT=and-rule:20000000 target/release/deps/flags-<hash> --bench
//
// Prints the time per evaluation of each of ROUNDS rounds and their median.
import { LogicEngine } from 'json-logic-engine'

const N = Number(process.env.N ?? 20_000_000)
const ROUNDS = Number(process.env.ROUNDS ?? 5)

const rule = {
  and: [
    { '>=': [{ var: 'age' }, 18] },
    { '==': [{ var: 'platform' }, 'android'] },
    { in: [{ var: 'tier' }, ['gold', 'platinum']] },
    { '<': [{ var: 'age' }, 65] }
  ]
}
const contexts = Array.from({ length: 256 }, (_, i) => ({
  targetingKey: `user-${i}`,
  platform: 'android',
  app_version: '5.3.1',
  locale: 'de-DE',
  age: 34,
  tier: 'gold',
  email: `user-${i}@example.com`
}))

const matches = new LogicEngine().build(rule)
if (!matches(contexts[0])) throw new Error('the rule must match the contexts')

const times = []
let sink = 0
for (let round = 0; round < ROUNDS; round++) {
  const start = process.hrtime.bigint()
  for (let i = 0; i < N; i++) if (matches(contexts[i & 255])) sink++
  const ns = Number(process.hrtime.bigint() - start) / N
  times.push(ns)
  console.log(`round ${round + 1}: ${ns.toFixed(1)} ns per evaluation (${(1e3 / ns).toFixed(1)} M/s)`)
}
times.sort((a, b) => a - b)
const median = times[Math.floor(times.length / 2)]
console.log(`median: ${median.toFixed(1)} ns per evaluation (${(1e3 / median).toFixed(1)} M/s); ${sink} matches`)
