// The module's memory from the worker's side: telling a trap that was an out-of-memory from a bug,
// and (for the browser tests) filling the memory to its limit so that the next allocation fails.
import { refusedAllocation } from '../wasm/tinyrlhf_web.js';

const PAGE = 65536;
const MiB = 2 ** 20;

/**
 * After a trap: what the person reads when it was an allocation the memory could not hold (the
 * module remembers its size), or null for any other trap.
 */
export function outOfMemory(memory: WebAssembly.Memory | null): string | null {
  const refused = refusedAllocation();
  if (refused <= 0) return null;
  const inUse = memory ? `${(memory.buffer.byteLength / 2 ** 30).toFixed(2)} GiB` : 'all it had';
  return `the tab ran out of memory: it needed ${Math.max(1, Math.round(refused / MiB))} MB more with ${inUse} in use (a tab's module holds at most 4 GiB)`;
}

/** Grows the memory until the browser refuses a single page more; returns the bytes it now has. */
export function fillMemory(memory: WebAssembly.Memory): number {
  for (let pages = (4 * 2 ** 30) / PAGE; pages >= 1; ) {
    try {
      memory.grow(pages);
    } catch {
      pages = Math.floor(pages / 2);
    }
  }
  return memory.buffer.byteLength;
}
