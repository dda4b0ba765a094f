// The tab's data in IndexedDB: rankings, and saved models and training curves. A write resolves
// only when its transaction has committed, so the page can confirm what is really saved.
import { openDB, type IDBPDatabase } from 'idb';
import type { Ranking } from './protocol';

const DB = 'tinyrlhf';
const RANKINGS = 'rankings';
/** Key-value: 'reward' and 'policy' (model.safetensors bytes), 'reward-curve', 'ppo-curve'. */
const SAVED = 'saved';

let db: Promise<IDBPDatabase> | null = null;

function open(): Promise<IDBPDatabase> {
  db ??= openDB(DB, 2, {
    upgrade(d, oldVersion) {
      if (oldVersion < 1) d.createObjectStore(RANKINGS, { autoIncrement: true });
      if (oldVersion < 2) d.createObjectStore(SAVED);
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
  await Promise.all([...rankings.map((r) => tx.store.add(r)), tx.done]);
  return allRankings();
}

export async function clearRankings(): Promise<void> {
  await (await open()).clear(RANKINGS);
}

export async function load<T>(key: string): Promise<T | undefined> {
  return (await open()).get(SAVED, key);
}

/** Saves several keys in one transaction: a closed tab keeps either all of them or none. */
export async function save(entries: Record<string, unknown>): Promise<void> {
  const tx = (await open()).transaction(SAVED, 'readwrite');
  await Promise.all([...Object.entries(entries).map(([k, v]) => tx.store.put(v, k)), tx.done]);
}

export async function forget(keys: string[]): Promise<void> {
  const tx = (await open()).transaction(SAVED, 'readwrite');
  await Promise.all([...keys.map((k) => tx.store.delete(k)), tx.done]);
}
