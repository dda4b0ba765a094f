// The results table: every finished run against the SFT model on held-out prompts, the answers
// judged blind by a labeler (win-rate, KL, EOS, wall time): demo mode's runs and the person's alike.
import { call } from './client';
import { policyLabel } from './methods';
import { saveView } from './page-view';
import type { Method, RunResult } from '../protocol';
import { $ } from './ui';

const table = $<HTMLTableElement>('results-table');
let rows: RunResult[] = [];

const percent = (x: number) => `${(100 * x).toFixed(0)}%`;

function render() {
  table.tBodies[0].replaceChildren(
    ...rows.map((r) => {
      const tr = document.createElement('tr');
      const cells = [policyLabel(r.method), r.labeler, `${percent(r.win_rate)} (${r.wins}–${r.ties}–${r.losses})`, r.kl.toFixed(2), percent(r.eos_rate), `${r.seconds.toFixed(0)} s (${r.steps} × ${(r.seconds / Math.max(1, r.steps)).toFixed(1)} s)`];
      for (const cell of cells) tr.append(Object.assign(document.createElement('td'), { textContent: cell }));
      return tr;
    }),
  );
  table.hidden = rows.length === 0;
}

/** The rows as saved (after a reload). */
export function showResults(saved: RunResult[] = []) {
  rows = saved;
  render();
}

export function clearResults() {
  showResults([]);
  saveView({ results: rows });
}

/** Judges `method`'s policy against SFT on `prompts` held-out prompts and adds the row. */
export async function judge(method: Method, labeler: string, prompts: number, seconds: number, steps: number): Promise<RunResult> {
  const result = await call({ type: 'evaluate', a: method, b: 'sft', labeler, prompts });
  const row: RunResult = { method, labeler, seconds, steps, ...result };
  rows = [...rows, row];
  render();
  saveView({ results: rows });
  return row;
}

/** One line for a status: the row's win-rate, KL and EOS. */
export function verdict(r: RunResult): string {
  return `${percent(r.win_rate)} over SFT (judged by the ${r.labeler} labeler), KL ${r.kl.toFixed(2)}, EOS ${percent(r.eos_rate)}`;
}
