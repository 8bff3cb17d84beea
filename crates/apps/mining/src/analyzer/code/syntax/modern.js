// ES2024: private fields, static blocks, optional chaining, logical assignment, top-level
// await, async iteration, numeric separators.
class Counter {
  #count = 0;
  static instances = 0;
  static { Counter.instances = 0; }

  increment(step = 1_000) {
    this.#count += step;
    return this.#count;
  }

  get value() { return this.#count; }
}

const config = globalThis.config?.settings ?? {};
config.retries ??= 3;

export async function* lines(stream) {
  for await (const chunk of stream) {
    yield* chunk?.split("\n") ?? [];
  }
}

const total = await Promise.all([1, 2].map(async (n) => n ** 2));
