// A typed client of the greeter service (responder.js): asks for a greeting, prints the
// reply, and shows how errors carry their code. Type-checked by `tsc --noEmit` in
// scripts/test-node.sh; run it with any TypeScript runner.
import { connect, type Bus, type Message, type RequestOptions } from 'busbar'

interface Greeting {
  greeting: string
  lang: string
}

async function greet(bus: Bus, name: string, lang: string): Promise<Greeting> {
  const options: RequestOptions = { timeoutMs: 2000, headers: { caller: 'client.ts' } }
  const reply: Message = await bus.request(`greet.${name}`, { lang }, options)
  return reply.json() as Greeting
}

async function main(): Promise<void> {
  const bus = await connect({ backend: process.env.BUSBAR_NATS_URL ? 'nats' : 'memory' })
  try {
    const { greeting } = await greet(bus, 'ada', 'fr')
    console.log(greeting)
  } catch (err) {
    const code = (err as Error & { code?: string }).code
    // no_responders when no greeter runs, timeout when it does not answer in time
    console.log(`no greeting: ${code ?? 'unknown'}`)
  }
  const updates = await bus.subscribe('greet.>')
  for await (const msg of updates) {
    const { subject, headers }: { subject: string; headers: Record<string, string> } = msg
    console.log(subject, headers)
    break
  }
  await bus.close()
}

void main()
