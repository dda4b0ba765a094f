// The blind A/B: answers of two models to the same prompt, side by side in random order. The person
// picks one or calls a tie, and is told which model wrote what only at the end of the round (or when
// they end it early), so what they saw before cannot steer the next pick.
import { answerOf } from './compare';
import { policyLabel } from './methods';
import type { Which } from '../protocol';
import { $, app, show } from './ui';

/** Pairs in a round. */
export const ROUND = 5;

const view = {
  a: $<HTMLSelectElement>('ab-a'),
  b: $<HTMLSelectElement>('ab-b'),
  next: $<HTMLButtonElement>('ab-next'),
  reveal: $<HTMLButtonElement>('ab-reveal'),
  score: $('ab-score'),
  pair: $('ab-pair'),
  picks: $<HTMLOListElement>('ab-picks'),
};

type Pick = 'a' | 'b' | 'tie';
interface Shown {
  prompt: string;
  /** Which model wrote the answer shown first. */
  first: 'a' | 'b';
  pick: Pick;
}
/** The round so far, with the models it compares. */
let round: { a: Which; b: Which; shown: Shown[] } | null = null;

/** Fills `select` with `models`: the person's choice while it exists, else `fallback`. */
function options(select: HTMLSelectElement, models: string[], fallback: string) {
  const keep = select.dataset.chosen && models.includes(select.dataset.chosen) ? select.dataset.chosen : fallback;
  select.replaceChildren(...models.map((n) => new Option(policyLabel(n), n)));
  select.value = keep;
}

function refresh() {
  const models = ['sft', ...app.policies];
  const newest = app.policies.at(-1) ?? 'sft';
  // Two different models by default: SFT against the newest policy.
  options(view.a, models, 'sft');
  options(view.b, models, newest);
  const none = !app.policies.length;
  view.next.disabled = app.busy || none;
  view.next.title = none ? 'Tune a policy first: there is nothing to compare with SFT yet.' : '';
  view.reveal.disabled = !round?.shown.length;
}
app.listeners.push(refresh);

for (const select of [view.a, view.b]) {
  select.addEventListener('change', () => {
    select.dataset.chosen = select.value;
    end(false);
  });
}

/** Shows the next pair of the round (starting one if none is under way). */
async function nextPair() {
  if (!round) {
    round = { a: view.a.value, b: view.b.value, shown: [] };
    view.picks.replaceChildren();
    view.score.textContent = '';
  }
  const { a, b } = round;
  const prompt = app.prompts[Math.floor(Math.random() * app.prompts.length)];
  const seed = Math.floor(Math.random() * 2 ** 31);
  view.next.disabled = true;
  try {
    const answers = { a: await answerOf(a, prompt, seed), b: await answerOf(b, prompt, seed + 1) };
    const first: 'a' | 'b' = Math.random() < 0.5 ? 'a' : 'b';
    const order: ('a' | 'b')[] = first === 'a' ? ['a', 'b'] : ['b', 'a'];
    const question = Object.assign(document.createElement('p'), { className: 'prompt', textContent: prompt });
    const columns = order.map((model, i) => {
      const column = document.createElement('div');
      column.className = 'column';
      column.innerHTML = `<h4>Answer ${i + 1}</h4><p class="text"></p><button>I prefer ${i + 1}</button>`;
      (column.querySelector('.text') as HTMLElement).textContent = answers[model];
      column.querySelector('button')!.addEventListener('click', () => record({ prompt, first, pick: model }));
      return column;
    });
    const tie = Object.assign(document.createElement('button'), { textContent: 'Tie: neither is better', className: 'tie' });
    tie.addEventListener('click', () => record({ prompt, first, pick: 'tie' }));
    view.pair.replaceChildren(question, ...columns, tie);
    (columns[0].querySelector('button') as HTMLButtonElement).focus();
  } catch (e) {
    show($('notice'), `The blind A/B failed: ${(e as Error).message}`, 'error');
  } finally {
    view.next.disabled = app.busy || !app.policies.length;
  }
}

function record(shown: Shown) {
  if (!round) return;
  round.shown.push(shown);
  view.pair.replaceChildren();
  view.reveal.disabled = false;
  const n = round.shown.length;
  if (n >= ROUND) return end(true);
  view.score.textContent = `Pair ${n} of ${ROUND} recorded; the models are revealed at the end.`;
  view.next.textContent = 'Next pair';
  view.next.focus();
}

/** Ends the round; with `reveal`, says who wrote what and the tally. */
function end(reveal: boolean) {
  const done = round;
  round = null;
  view.pair.replaceChildren();
  view.next.textContent = 'Start a blind round';
  view.reveal.disabled = true;
  if (!reveal || !done?.shown.length) {
    view.picks.replaceChildren();
    view.score.textContent = '';
    return;
  }
  const [a, b] = [policyLabel(done.a), policyLabel(done.b)];
  const wins = done.shown.filter((s) => s.pick === 'a').length;
  const ties = done.shown.filter((s) => s.pick === 'tie').length;
  const n = done.shown.length;
  view.picks.replaceChildren(
    ...done.shown.map((s) => {
      const li = document.createElement('li');
      const firstLabel = s.first === 'a' ? a : b;
      const verdict = s.pick === 'tie' ? 'a tie' : `you picked the ${s.pick === 'a' ? a : b}`;
      li.textContent = `${s.prompt} — answer 1 was the ${firstLabel}: ${verdict}`;
      return li;
    }),
  );
  view.score.textContent = `You preferred the ${a} over the ${b} in ${wins} of ${n}${ties ? ` (${ties} tied)` : ''}: ${((100 * (wins + ties / 2)) / n).toFixed(0)}%, a tie counting half.`;
  view.next.focus();
}

view.next.addEventListener('click', nextPair);
view.reveal.addEventListener('click', () => end(true));
