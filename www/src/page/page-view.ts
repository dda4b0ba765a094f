// What the page shows beyond models and curves (the results table, the demo's last line, the gold
// settings): the worker keeps it in IndexedDB, each change is saved, and a reload puts it back.
import { call } from './client';
import type { PageView } from '../protocol';
import { $, show } from './ui';

const view: PageView = {};

/** The view as saved; `restore` puts each part back where it is shown. */
export function savedView(saved: PageView): PageView {
  return Object.assign(view, saved);
}

export function saveView(change: Partial<PageView>) {
  Object.assign(view, change);
  call({ type: 'saveView', view }).catch((e) => show($('notice'), `The page's state was not saved in this browser: ${(e as Error).message}`, 'error'));
}
