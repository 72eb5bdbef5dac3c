// A typed worker of a durable stream: each order is processed at least once, retried with
// backoff when it fails, and dead-lettered when it can never succeed. Type-checked by
// `tsc --noEmit` in scripts/test-node.sh; run it with any TypeScript runner.
import { connect, type DurableMessage, type PublishAck, type StreamInfo } from 'busbar'

async function handle(msg: DurableMessage): Promise<void> {
  const order = msg.json() as { qty?: number }
  if (typeof order.qty !== 'number') return msg.term('no quantity') // never retried
  if (msg.attempt < 2) return msg.nak(100) // pretend the first try fails: again in 100 ms
  console.log(`${msg.stream}#${msg.sequence} ${msg.subject} qty ${order.qty}, attempt ${msg.attempt}`)
  return msg.ack()
}

async function main(): Promise<void> {
  const bus = await connect()
  const info: StreamInfo = await bus.declareStream('ORDERS', ['orders.>'], { maxAgeMs: 86_400_000 })
  const ack: PublishAck = await bus.publishDurable('orders.created', { qty: 2 }, { id: 'order-1' })
  console.log(`stored in ${info.name} as #${ack.sequence}, duplicate: ${ack.duplicate}`)
  const sub = await bus.durableSubscribe('ORDERS', 'billing', {
    start: 'beginning',
    ackWaitMs: 30_000,
    backoff: { baseMs: 100, factor: 2, capMs: 5_000 },
  })
  for await (const msg of sub) {
    await handle(msg)
    if (msg.attempt >= 2) break // leaving the loop unsubscribes
  }
  await bus.close()
}

void main()
