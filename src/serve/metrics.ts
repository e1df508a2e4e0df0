// /metrics in Prometheus text format. Each server has its own registry (several servers can run in
// one process, as in the tests); the engine gauges are read from the worker at scrape time.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineStats } from './protocol.js';

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'plinth_requests_total', help: 'HTTP requests by endpoint and status code', labelNames: ['endpoint', 'status'] as const, registers: [this.registry] });
  readonly promptTokens = new Counter({ name: 'plinth_prompt_tokens_total', help: 'Prompt tokens processed', registers: [this.registry] });
  readonly generatedTokens = new Counter({ name: 'plinth_generation_tokens_total', help: 'Tokens generated', registers: [this.registry] });
  readonly modelRequests = new Counter({ name: 'plinth_model_requests_total', help: 'Generation and embedding requests accepted, by model id (the base or base:adapter)', labelNames: ['model'] as const, registers: [this.registry] });
  readonly aborted = new Counter({ name: 'plinth_aborted_requests_total', help: 'Sequences aborted because their client went away', registers: [this.registry] });
  readonly ttft = new Histogram({
    name: 'plinth_time_to_first_token_seconds',
    help: 'Time from receiving a request to its first generated token',
    buckets: [0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80],
    registers: [this.registry],
  });
  readonly itl = new Histogram({
    name: 'plinth_inter_token_latency_seconds',
    help: 'Time between consecutive generated tokens of a sequence',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5],
    registers: [this.registry],
  });

  constructor(stats: () => Promise<EngineStats | null>) {
    const gauge = (name: string, help: string, pick: (s: EngineStats) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        async collect() {
          const s = await stats();
          if (s) this.set(pick(s));
        },
      });
    gauge('plinth_requests_waiting', 'Sequences queued in the engine (queue depth)', (s) => s.waiting);
    gauge('plinth_requests_running', 'Sequences in the running batch', (s) => s.running);
    gauge('plinth_kv_blocks_used', 'KV cache blocks held by sequences', (s) => s.blocksUsed);
    gauge('plinth_kv_blocks_total', 'KV cache blocks in the pool', (s) => s.blocksTotal);
    gauge('plinth_kv_blocks_cached', 'Free KV cache blocks kept for prefix reuse', (s) => s.blocksCached);
    gauge('plinth_preemptions', 'Sequences preempted since start', (s) => s.preemptions);
  }
}
