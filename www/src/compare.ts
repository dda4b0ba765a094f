// The compare view: base, SFT and every tuned policy on one prompt with their rewards, a per-token
// heatmap of log pi/pi_ref (and advantage) on a chosen policy's answer, and a blind A/B of any two
// models.
import { call } from './client';
import { policyLabel } from './methods';
import type { Which } from './protocol';
import { $, app, show } from './ui';

const view = {
  prompt: $<HTMLSelectElement>('compare-prompt'),
  explain: $<HTMLSelectElement>('compare-explain'),
  run: $<HTMLButtonElement>('compare-run'),
  columns: $('compare-columns'),
  heatmap: $('heatmap'),
  rewardHeatmap: $('reward-heatmap'),
  rewardScore: $('reward-heatmap-score'),
  a: $<HTMLSelectElement>('ab-a'),
  b: $<HTMLSelectElement>('ab-b'),
  next: $<HTMLButtonElement>('ab-next'),
  score: $('ab-score'),
  pair: $('ab-pair'),
};
const TEMPERATURE = 0.7;
/** Per pairing ("a|b"): how often the person preferred A, out of how many. */
const ab = new Map<string, { a: number; answered: number }>();

/** Fills `select` with `names`, keeping its choice when it is still there (else `fallback`). */
function options(select: HTMLSelectElement, names: string[], fallback: string) {
  const keep = names.includes(select.value) ? select.value : fallback;
  select.replaceChildren(...names.map((n) => new Option(policyLabel(n), n)));
  select.value = keep;
}

function refresh() {
  view.run.disabled = app.busy || !app.prompts.length;
  const models = ['sft', ...app.policies];
  options(view.explain, app.policies, app.policies.at(-1) ?? '');
  options(view.a, models, 'sft');
  options(view.b, models, app.policies.at(-1) ?? 'sft');
  view.explain.disabled = !app.policies.length;
  view.next.disabled = app.busy || !app.policies.length;
  view.next.title = app.policies.length ? '' : 'Tune a policy first: there is nothing to compare with SFT yet.';
}
app.listeners.push(refresh);

export function setPrompts(prompts: string[]) {
  view.prompt.replaceChildren(...prompts.map((p) => new Option(p, p)));
}

async function one(which: Which, prompt: string, seed: number): Promise<string> {
  const out = await call({ type: 'sample', which, prompt, k: 1, temperature: TEMPERATURE, maxNewTokens: app.limits!.answer_tokens, seed });
  return out.completions[0];
}

export async function compare() {
  const prompt = view.prompt.value;
  const models = ['base', 'sft', ...app.policies];
  view.run.disabled = true;
  try {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const answers: string[] = [];
    for (const which of models) answers.push(await one(which, prompt, seed));
    const scores = app.hasReward ? await call({ type: 'scores', prompt, completions: answers }) : null;
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
  const { tokens, explained } = await call({ type: 'explain', which, prompt, response, temperature: TEMPERATURE });
  const scale = Math.max(0.5, ...explained.log_ratio.map(Math.abs));
  const adv = Math.max(0.5, ...explained.advantage.map(Math.abs));
  view.heatmap.replaceChildren(
    ...tokens.map((token, i) => {
      const span = document.createElement('span');
      const r = explained.log_ratio[i];
      const a = explained.advantage[i];
      span.textContent = token;
      span.style.background = r >= 0 ? `rgba(214, 69, 65, ${Math.min(1, r / scale) * 0.6})` : `rgba(58, 91, 217, ${Math.min(1, -r / scale) * 0.6})`;
      span.style.borderBottomColor = a >= 0 ? `rgba(47, 143, 91, ${Math.min(1, a / adv)})` : `rgba(179, 64, 58, ${Math.min(1, -a / adv)})`;
      span.title = `log π/π_ref = ${r.toFixed(3)} · advantage = ${a.toFixed(3)}`;
      span.dataset.logRatio = String(r);
      return span;
    }),
  );
  rewardHeatmap(tokens, explained.prompt_score, explained.prefix_scores);
}

/** Each token coloured by how much it moved the reward model's score of the answer so far. */
function rewardHeatmap(tokens: string[], promptScore: number, prefixScores: number[]) {
  const moves = prefixScores.map((s, i) => s - (i === 0 ? promptScore : prefixScores[i - 1]));
  const scale = Math.max(0.25, ...moves.map(Math.abs));
  view.rewardHeatmap.replaceChildren(
    ...tokens.map((token, i) => {
      const span = document.createElement('span');
      const d = moves[i];
      span.textContent = token;
      span.style.background = d >= 0 ? `rgba(47, 143, 91, ${Math.min(1, d / scale) * 0.6})` : `rgba(128, 64, 160, ${Math.min(1, -d / scale) * 0.6})`;
      span.title = `score after this token ${prefixScores[i].toFixed(3)} (${d >= 0 ? '+' : ''}${d.toFixed(3)})`;
      span.dataset.scoreChange = String(d);
      span.dataset.score = String(prefixScores[i]);
      return span;
    }),
  );
  view.rewardScore.textContent = `score of the prompt alone ${promptScore.toFixed(2)} → of the whole answer ${prefixScores.at(-1)?.toFixed(2) ?? '–'}`;
}

/** Shows an answer of A and one of B in random order; the person picks one, then learns whose. */
async function nextPair() {
  const [a, b] = [view.a.value, view.b.value];
  const prompt = app.prompts[Math.floor(Math.random() * app.prompts.length)];
  const seed = Math.floor(Math.random() * 2 ** 31);
  const answers = [await one(a, prompt, seed), await one(b, prompt, seed + 1)];
  const aFirst = Math.random() < 0.5;
  const shown = aFirst ? [0, 1] : [1, 0];
  const question = document.createElement('p');
  question.className = 'prompt';
  question.textContent = prompt;
  view.pair.replaceChildren(
    ...shown.map((which, i) => {
      const column = document.createElement('div');
      column.className = 'column';
      column.innerHTML = `<h4>Answer ${'12'[i]}</h4><p class="text"></p><button>I prefer ${'12'[i]}</button>`;
      (column.querySelector('.text') as HTMLElement).textContent = answers[which];
      column.querySelector('button')!.addEventListener('click', () => {
        const key = `${a}|${b}`;
        const tally = ab.get(key) ?? { a: 0, answered: 0 };
        tally.answered += 1;
        tally.a += which === 0 ? 1 : 0;
        ab.set(key, tally);
        const picked = policyLabel(which === 0 ? a : b);
        view.score.textContent = `That was the ${picked}. You preferred the ${policyLabel(a)} over the ${policyLabel(b)} in ${tally.a} of ${tally.answered} (${((100 * tally.a) / tally.answered).toFixed(0)}%).`;
        view.pair.replaceChildren();
      });
      return column;
    }),
  );
  view.pair.prepend(question);
}

view.run.addEventListener('click', compare);
view.next.addEventListener('click', nextPair);
