// Rankings in IndexedDB. A write resolves only when its transaction has committed, so the page can
// confirm a ranking once it is really saved.
import { openDB, type IDBPDatabase } from 'idb';
import type { Ranking } from './protocol';

const DB = 'tinyrlhf';
const RANKINGS = 'rankings';

let db: Promise<IDBPDatabase> | null = null;

function open(): Promise<IDBPDatabase> {
  db ??= openDB(DB, 1, {
    upgrade(d) {
      d.createObjectStore(RANKINGS, { autoIncrement: true });
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
