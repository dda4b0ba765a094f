// The compare view: base vs SFT vs policy on one prompt with their rewards, a per-token heatmap of
// log pi/pi_ref (and advantage) on the policy's answer, and a blind A/B of SFT against the policy.
import { call } from './client';
import type { Which } from './protocol';
import { $, app, show } from './ui';

const view = {
  prompt: $<HTMLSelectElement>('compare-prompt'),
  run: $<HTMLButtonElement>('compare-run'),
  columns: $('compare-columns'),
  heatmap: $('heatmap'),
  next: $<HTMLButtonElement>('ab-next'),
  score: $('ab-score'),
  pair: $('ab-pair'),
};
const TEMPERATURE = 0.7;
const MODELS: [Which, string][] = [['base', 'Base model'], ['sft', 'SFT model'], ['policy', 'RLHF policy']];
const ab = { shown: 0, policyWins: 0, answered: 0 };

function refresh() {
  view.run.disabled = app.busy || !app.prompts.length;
  view.next.disabled = app.busy || !app.hasPolicy;
  view.next.title = app.hasPolicy ? '' : 'Run PPO first: there is no policy to compare yet.';
}
app.listeners.push(refresh);

export function setPrompts(prompts: string[]) {
  view.prompt.replaceChildren(...prompts.map((p) => new Option(p, p)));
}

async function one(which: Which, prompt: string, seed: number): Promise<string> {
  const out = await call({ type: 'sample', which, prompt, k: 1, temperature: TEMPERATURE, maxNewTokens: 48, seed });
  return out.completions[0];
}

export async function compare() {
  const prompt = view.prompt.value;
  view.run.disabled = true;
  try {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const answers = await Promise.all(MODELS.map(([which]) => one(which, prompt, seed)));
    const scores = app.hasReward ? await call({ type: 'scores', prompt, completions: answers }) : null;
    view.columns.replaceChildren(
      ...MODELS.map(([, title], i) => {
        const column = document.createElement('div');
        column.className = 'column';
        column.innerHTML = '<h4></h4><p class="text"></p><p class="score"></p>';
        (column.querySelector('h4') as HTMLElement).textContent = title;
        (column.querySelector('.text') as HTMLElement).textContent = answers[i];
        (column.querySelector('.score') as HTMLElement).textContent = scores ? `reward ${scores[i].toFixed(2)}` : 'no reward model yet';
        return column;
      }),
    );
    if (app.hasReward) await heatmap(prompt, answers[2]);
  } catch (e) {
    show($('notice'), `Compare failed: ${(e as Error).message}`, 'error');
  } finally {
    view.run.disabled = false;
  }
}

async function heatmap(prompt: string, response: string) {
  const explained = await call({ type: 'explain', prompt, response, temperature: TEMPERATURE });
  const scale = Math.max(0.5, ...explained.log_ratio.map(Math.abs));
  const adv = Math.max(0.5, ...explained.advantage.map(Math.abs));
  view.heatmap.replaceChildren(
    ...explained.tokens.map((token, i) => {
      const span = document.createElement('span');
      const r = explained.log_ratio[i];
      const a = explained.advantage[i];
      span.textContent = token === '<|eos|>' ? '⏎' : token;
      span.style.background = r >= 0 ? `rgba(214, 69, 65, ${Math.min(1, r / scale) * 0.6})` : `rgba(58, 91, 217, ${Math.min(1, -r / scale) * 0.6})`;
      span.style.borderBottomColor = a >= 0 ? `rgba(47, 143, 91, ${Math.min(1, a / adv)})` : `rgba(179, 64, 58, ${Math.min(1, -a / adv)})`;
      span.title = `log π/π_ref = ${r.toFixed(3)} · advantage = ${a.toFixed(3)}`;
      span.dataset.logRatio = String(r);
      return span;
    }),
  );
}

/** Shows an SFT answer and a policy answer in random order; the person picks one. */
async function nextPair() {
  const prompt = app.prompts[Math.floor(Math.random() * app.prompts.length)];
  const seed = Math.floor(Math.random() * 2 ** 31);
  const [sft, policy] = await Promise.all([one('sft', prompt, seed), one('policy', prompt, seed + 1)]);
  const policyFirst = Math.random() < 0.5;
  const texts = policyFirst ? [policy, sft] : [sft, policy];
  const question = document.createElement('p');
  question.className = 'prompt';
  question.textContent = prompt;
  view.pair.replaceChildren(
    ...texts.map((text, i) => {
      const column = document.createElement('div');
      column.className = 'column';
      column.innerHTML = `<h4>Answer ${'AB'[i]}</h4><p class="text"></p><button>I prefer ${'AB'[i]}</button>`;
      (column.querySelector('.text') as HTMLElement).textContent = text;
      column.querySelector('button')!.addEventListener('click', () => {
        const pickedPolicy = (i === 0) === policyFirst;
        ab.answered += 1;
        ab.policyWins += pickedPolicy ? 1 : 0;
        view.score.textContent = `That was the ${pickedPolicy ? 'RLHF policy' : 'SFT model'}. You preferred the policy in ${ab.policyWins} of ${ab.answered} (${((100 * ab.policyWins) / ab.answered).toFixed(0)}%).`;
        view.pair.replaceChildren();
      });
      return column;
    }),
  );
  view.pair.prepend(question);
}

view.run.addEventListener('click', compare);
view.next.addEventListener('click', nextPair);
