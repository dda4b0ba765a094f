// The tab's data in IndexedDB: rankings, and saved models and training curves. A write resolves
// only when its transaction has committed, so the page can confirm what is really saved. Another
// tab opening a newer version closes this connection (the next call reopens), never the reverse.
import { openDB, type IDBPDatabase } from 'idb';
import type { Ranking } from '../protocol';

const DB = 'tinyrlhf';
const RANKINGS = 'rankings';
/** Key-value: 'reward' and 'policy:<name>' (model.safetensors bytes), 'reward-curve', 'curve:<name>'. */
const SAVED = 'saved';

let db: Promise<IDBPDatabase> | null = null;

let notice: (message: string) => void = () => {};

/** Where the store's warnings go (the worker posts them to the page). */
export function onStoreNotice(handler: (message: string) => void) {
  notice = handler;
}

/**
 * A write the browser's storage quota refused. Its transaction was aborted, so nothing of it was
 * saved and every earlier record is as it was.
 */
export class StorageFull extends Error {
  constructor(
    /** The keys the write would have put ('rankings' for rankings). */
    readonly keys: string[],
    /** About how many bytes the write needed. */
    readonly bytes: number,
    readonly usage: number,
    readonly quota: number,
  ) {
    super(`${keys.join(', ')} did not fit in the browser's storage`);
    this.name = 'StorageFull';
  }

  /** The person's message, with `what` naming what was being saved. */
  say(what: string): string {
    const mb = (n: number) => Math.max(0.1, n / 1e6).toLocaleString('en-US', { maximumFractionDigits: 1 });
    return (
      `${what} (${mb(this.bytes)} MB) did not fit in this browser's storage for the page ` +
      `(${mb(this.usage)} MB used of ${mb(this.quota)} MB allowed): nothing of it was saved, and everything saved before is kept. To make room, ` +
      `export what you want to keep and clear the training or your model here, or allow this site more storage in the browser's settings.`
    );
  }
}

/** About how many bytes a value takes stored (its byte arrays and files; the rest as JSON). */
function sizeOf(value: unknown): number {
  if (value instanceof Uint8Array) return value.byteLength;
  if (value instanceof Blob) return value.size;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + sizeOf(v), 0);
  if (value && typeof value === 'object') return Object.values(value).reduce((n: number, v) => n + sizeOf(v), 0);
  return JSON.stringify(value ?? null).length;
}

/**
 * Waits for a write's transaction; a quota error (from a request, or from the commit) becomes
 * [`StorageFull`] with what the write needed and what the origin has.
 */
async function committed(tx: { error: DOMException | null }, keys: string[], value: unknown, work: Promise<unknown>): Promise<void> {
  try {
    await work;
  } catch (e) {
    const cause = tx.error ?? e;
    if (!(cause instanceof DOMException && cause.name === 'QuotaExceededError')) throw e;
    const { usage = 0, quota = 0 } = await navigator.storage.estimate();
    throw new StorageFull(keys, sizeOf(value), usage, quota);
  }
}

function open(): Promise<IDBPDatabase> {
  db ??= openDB(DB, 2, {
    upgrade(d, oldVersion) {
      if (oldVersion < 1) d.createObjectStore(RANKINGS, { autoIncrement: true });
      if (oldVersion < 2) d.createObjectStore(SAVED);
    },
    blocked() {
      notice('Another tab has an older version of tinyrlhf open: close or reload it so this one can open the saved data.');
    },
    blocking() {
      // A newer version waits for this connection: give way, and reopen on the next request.
      void db?.then((d) => d.close());
      db = null;
      notice('A newer version of tinyrlhf opened in another tab: reload this tab.');
    },
    terminated() {
      db = null;
    },
  });
  return db;
}

export async function allRankings(): Promise<Ranking[]> {
  return (await open()).getAll(RANKINGS);
}

/** Appends rankings in one transaction: all are saved or none. */
export async function addRankings(rankings: Ranking[]): Promise<Ranking[]> {
  const tx = (await open()).transaction(RANKINGS, 'readwrite');
  await committed(tx, [RANKINGS], rankings, Promise.all([...rankings.map((r) => tx.store.add(r)), tx.done]));
  return allRankings();
}

export async function clearRankings(): Promise<void> {
  await (await open()).clear(RANKINGS);
}

/** Where the person's rankings wait while the demo ranks its own. */
const ASIDE = 'rankings-aside';

/**
 * Moves the saved rankings aside, leaving none, in one transaction. Rankings already aside (a demo
 * that never finished) stay there: the rankings in use are then the demo's own.
 */
export async function setRankingsAside(): Promise<number> {
  const tx = (await open()).transaction([RANKINGS, SAVED], 'readwrite');
  const [current, aside] = await Promise.all([tx.objectStore(RANKINGS).getAll(), tx.objectStore(SAVED).get(ASIDE)]);
  if (!Array.isArray(aside)) await tx.objectStore(SAVED).put(current, ASIDE);
  await Promise.all([tx.objectStore(RANKINGS).clear(), tx.done]);
  return Array.isArray(aside) ? aside.length : current.length;
}

/** The rankings set aside replace the ones in use (the demo's), in one transaction; none aside: nothing changes. */
export async function bringRankingsBack(): Promise<Ranking[]> {
  const tx = (await open()).transaction([RANKINGS, SAVED], 'readwrite');
  const aside: unknown = await tx.objectStore(SAVED).get(ASIDE);
  if (Array.isArray(aside)) {
    await tx.objectStore(RANKINGS).clear();
    for (const r of aside as Ranking[]) await tx.objectStore(RANKINGS).add(r);
    await tx.objectStore(SAVED).delete(ASIDE);
  }
  await tx.done;
  return allRankings();
}

/**
 * The value saved under `key`. A record the browser cannot read back (Chromium has lost the file
 * behind a committed Blob after a renderer was killed mid-save, `NotReadableError`) throws, naming
 * the key, for the caller to drop what depends on it.
 */
export async function load<T>(key: string): Promise<T | undefined> {
  const db = await open();
  try {
    return (await fromStored(db.get(SAVED, key))) as T | undefined;
  } catch (e) {
    throw new Error(`the browser could not read back the saved ${key} (${e instanceof Error ? `${e.name}: ${e.message}` : e})`);
  }
}

/** Whether something is saved under `key`, without reading it. */
export async function has(key: string): Promise<boolean> {
  return (await (await open()).getKey(SAVED, key)) !== undefined;
}

/**
 * Chromium refuses an IndexedDB value over 127 MiB, and a model folder's weights can be larger
 * (GPT-2 124M: 500 MB). Byte arrays over 1 MB (every model's weights, the shipped one's too, so
 * every test that saves a model goes this way) are stored as Blobs, which live outside the value,
 * and come back as bytes.
 */
const AS_BLOB = 1 << 20;

function toStored(value: unknown): unknown {
  if (value instanceof Uint8Array) return value.byteLength > AS_BLOB ? new Blob([value as BlobPart]) : value;
  if (Array.isArray(value)) return value.map(toStored);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toStored(v)]));
  }
  return value;
}

async function fromStored(value: Promise<unknown> | unknown): Promise<unknown> {
  const v = await value;
  // A File was saved as one (a person's model weights, read in slices when used); a plain Blob
  // holds bytes saved above.
  if (v instanceof File) return v;
  if (v instanceof Blob) return new Uint8Array(await v.arrayBuffer());
  if (Array.isArray(v)) return Promise.all(v.map(fromStored));
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(await Promise.all(Object.entries(v).map(async ([k, x]) => [k, await fromStored(x)])));
  }
  return v;
}

/** Saves several keys in one transaction: a closed tab keeps either all of them or none. */
export function save(entries: Record<string, unknown>): Promise<void> {
  return update(entries, []);
}

export function forget(keys: string[]): Promise<void> {
  return update({}, keys);
}

/** Puts `entries` and deletes `deletes` in one transaction: all of it happens or none. */
export async function update(entries: Record<string, unknown>, deletes: string[]): Promise<void> {
  const tx = (await open()).transaction(SAVED, 'readwrite');
  const work = Promise.all([...Object.entries(entries).map(([k, v]) => tx.store.put(toStored(v), k)), ...deletes.map((k) => tx.store.delete(k)), tx.done]);
  await committed(tx, Object.keys(entries), entries, work);
}
