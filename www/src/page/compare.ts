// The compare view: base, SFT and every tuned policy on one prompt with their rewards, and per-token
// heatmaps of a chosen policy's answer (log pi/pi_ref with the advantage; the reward model's reading).
import { call } from './client';
import { policyLabel } from './methods';
import { drawTokens, tokenKeys } from './tokens';
import type { Which } from '../protocol';
import { $, app, show } from './ui';

const view = {
  prompt: $<HTMLSelectElement>('compare-prompt'),
  explain: $<HTMLSelectElement>('compare-explain'),
  run: $<HTMLButtonElement>('compare-run'),
  columns: $('compare-columns'),
  heatmap: $('heatmap'),
  heatmapValue: $('heatmap-value'),
  rewardHeatmap: $('reward-heatmap'),
  rewardValue: $('reward-heatmap-value'),
  rewardScore: $('reward-heatmap-score'),
};

/** Fills `select` with `names`, keeping its choice when it is still there (else `fallback`). */
function options(select: HTMLSelectElement, names: string[], fallback: string) {
  const keep = names.includes(select.value) ? select.value : fallback;
  select.replaceChildren(...names.map((n) => new Option(policyLabel(n), n)));
  select.value = keep;
}

function refresh() {
  view.run.disabled = app.busy || !app.prompts.length;
  options(view.explain, app.policies, app.policies.at(-1) ?? '');
  view.explain.disabled = !app.policies.length;
}
app.listeners.push(refresh);

export function setPrompts(prompts: string[]) {
  view.prompt.replaceChildren(...prompts.map((p) => new Option(p, p)));
}

/** One answer of `which` at the compare view's temperature, and whether it ended (not cut). */
async function sampleOne(which: Which, prompt: string, seed: number): Promise<{ text: string; finished: boolean }> {
  const out = await call({ type: 'sample', which, prompt, k: 1, temperature: app.limits!.judge_temperature, maxNewTokens: app.limits!.answer_tokens, seed });
  return { text: out.completions[0], finished: out.finished[0] ?? true };
}

/** One answer of `which` at the compare view's temperature. */
export async function answerOf(which: Which, prompt: string, seed: number): Promise<string> {
  return (await sampleOne(which, prompt, seed)).text;
}

export async function compare() {
  const prompt = view.prompt.value;
  const models = ['base', 'sft', ...app.policies];
  view.run.disabled = true;
  try {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const sampled = [];
    for (const which of models) sampled.push(await sampleOne(which, prompt, seed));
    const answers = sampled.map((s) => s.text);
    const finished = sampled.map((s) => s.finished);
    const scores = app.hasReward ? await call({ type: 'scores', prompt, completions: answers, finished }) : null;
    view.columns.replaceChildren(
      ...models.map((which, i) => {
        const column = document.createElement('div');
        column.className = 'column';
        column.dataset.model = which;
        column.innerHTML = '<h4></h4><p class="text"></p><p class="score"></p>';
        (column.querySelector('h4') as HTMLElement).textContent = policyLabel(which);
        (column.querySelector('.text') as HTMLElement).textContent = answers[i];
        (column.querySelector('.score') as HTMLElement).textContent = scores ? `reward ${scores[i].toFixed(2)}` : 'no reward model yet';
        return column;
      }),
    );
    const explained = view.explain.value;
    if (app.hasReward && explained) await heatmap(explained, prompt, answers[models.indexOf(explained)]);
  } catch (e) {
    show($('notice'), `Compare failed: ${(e as Error).message}`, 'error');
  } finally {
    view.run.disabled = false;
  }
}

async function heatmap(which: Which, prompt: string, response: string) {
  const { tokens, explained } = await call({ type: 'explain', which, prompt, response, temperature: app.limits!.judge_temperature });
  const scale = Math.max(0.5, ...explained.log_ratio.map(Math.abs));
  const adv = Math.max(0.5, ...explained.advantage.map(Math.abs));
  drawTokens(
    view.heatmap,
    view.heatmapValue,
    tokens.map((token, i) => {
      const r = explained.log_ratio[i];
      const a = explained.advantage[i];
      return {
        token,
        background: r >= 0 ? `rgba(214, 69, 65, ${Math.min(1, r / scale) * 0.6})` : `rgba(58, 91, 217, ${Math.min(1, -r / scale) * 0.6})`,
        underline: a >= 0 ? `rgba(47, 143, 91, ${Math.min(1, a / adv)})` : `rgba(179, 64, 58, ${Math.min(1, -a / adv)})`,
        value: `log π/π_ref = ${r.toFixed(3)} · advantage = ${a.toFixed(3)}`,
        data: { logRatio: String(r) },
      };
    }),
  );
  rewardHeatmap(tokens, explained.prompt_score, explained.prefix_scores);
}

/** Each token coloured by how much it moved the reward model's score of the answer so far. */
function rewardHeatmap(tokens: string[], promptScore: number, prefixScores: number[]) {
  const moves = prefixScores.map((s, i) => s - (i === 0 ? promptScore : prefixScores[i - 1]));
  const scale = Math.max(0.25, ...moves.map(Math.abs));
  drawTokens(
    view.rewardHeatmap,
    view.rewardValue,
    tokens.map((token, i) => {
      const d = moves[i];
      return {
        token,
        background: d >= 0 ? `rgba(47, 143, 91, ${Math.min(1, d / scale) * 0.6})` : `rgba(128, 64, 160, ${Math.min(1, -d / scale) * 0.6})`,
        value: `score after this token ${prefixScores[i].toFixed(3)} (${d >= 0 ? '+' : ''}${d.toFixed(3)})`,
        data: { scoreChange: String(d), score: String(prefixScores[i]) },
      };
    }),
  );
  view.rewardScore.textContent = `score of the prompt alone ${promptScore.toFixed(2)} → of the whole answer ${prefixScores.at(-1)?.toFixed(2) ?? '–'}`;
}

view.run.addEventListener('click', compare);
tokenKeys(view.heatmap);
tokenKeys(view.rewardHeatmap);
