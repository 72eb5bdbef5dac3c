'use strict'
// Consumes `orders.*` in the queue group `billing` and serves its metrics, until Ctrl-C.
//
//   BUSBAR_BACKEND=nats BUSBAR_NATS_URL=nats://127.0.0.1:4222 \
//     BUSBAR_METRICS_ADDR=127.0.0.1:9465 node examples/observability/consumer.js
//
// Its log records go to console.error through busbar.setLogger; its metrics to
// http://127.0.0.1:9465/metrics (with BUSBAR_METRICS_ADDR).
const busbar = require('busbar')

async function main() {
  busbar.setLogger((r) => console.error(`${r.level} ${r.target}: ${r.message}`), 'info')
  const bus = await busbar.connect({ source: 'billing' })
  const orders = await bus.queueSubscribe('orders.*', 'billing')
  process.on('SIGINT', () => bus.close())
  let seen = 0
  for await (const msg of orders) {
    seen += 1
    if (seen % 10 === 0) console.log(`${seen} orders; health:`, bus.health())
    void msg
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
