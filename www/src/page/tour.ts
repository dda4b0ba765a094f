// The guided tour of a first visit: the seed's picture in five short steps, each pointing at the
// real control and saying what to watch for. Skippable (Esc or "Skip tour"), re-openable ("Tour"),
// and driven by the keyboard (← →, Enter on the buttons). Seen once, it stays closed in this browser.
import { $ } from './ui';

interface Step {
  /** A selector for the control the step points at. */
  target: string;
  title: string;
  text: string;
}

const STEPS: Step[] = [
  {
    target: '.pipeline',
    title: 'Base models continue text; instruction models serve users',
    text: 'This tab holds a small GPT. Demonstrations already taught it to answer (SFT). Your rankings now teach it which answers you prefer: a reward model learns your taste, then the policy practises against it, on a leash to where it started. Everything runs here, and nothing leaves this tab.',
  },
  {
    target: '#sample',
    title: '1 · Rank answers',
    text: 'Sample a few answers to a prompt and put them in order, best first. Watch the counter below: a ranking of 4 answers gives 6 preference pairs. About 20 rankings are enough for the next step.',
  },
  {
    target: '#train-reward',
    title: '2 · Train the reward model',
    text: 'A copy of the model learns to give your preferred answer the higher score. Watch the held-out accuracy (rankings it never trained on): well above 50% means it learned your taste, not just your examples.',
  },
  {
    target: '#method-tabs',
    title: '3 · Tune the policy',
    text: 'PPO, GRPO and RLOO let the policy practise against the reward model; DPO learns from your rankings directly. Watch the score rise while KL, the distance from the SFT model, stays small: β is the leash, and you can move it while PPO runs.',
  },
  {
    target: '#compare-run',
    title: '4 · Compare',
    text: 'The same prompt to the base model (it continues text), the SFT model (it answers) and every tuned policy (it answers your way). Watch which tokens moved in the heatmap, and test yourself with the blind A/B. No time to rank? ▶ Demo mode does the whole loop with a scripted labeler.',
  },
];

const SEEN = 'tinyrlhf-tour';
let step = 0;
let returnFocus: HTMLElement | null = null;

const card = document.createElement('div');
card.id = 'tour';
card.className = 'tour';
card.hidden = true;
card.setAttribute('role', 'dialog');
card.setAttribute('aria-modal', 'false');
card.setAttribute('aria-labelledby', 'tour-title');
card.setAttribute('aria-describedby', 'tour-text');
card.innerHTML = `<p id="tour-count" class="muted"></p><h2 id="tour-title"></h2><p id="tour-text"></p>
  <div class="controls"><button id="tour-back" type="button">Back</button><button id="tour-next" type="button" class="primary">Next</button><button id="tour-skip" type="button">Skip tour</button></div>`;
document.body.append(card);

function render() {
  const s = STEPS[step];
  document.querySelectorAll('.tour-target').forEach((e) => e.classList.remove('tour-target'));
  const target = document.querySelector<HTMLElement>(s.target);
  target?.classList.add('tour-target');
  target?.scrollIntoView({ block: 'center', behavior: 'auto' });
  $('tour-count').textContent = `Step ${step + 1} of ${STEPS.length}`;
  $('tour-title').textContent = s.title;
  $('tour-text').textContent = s.text;
  $<HTMLButtonElement>('tour-back').disabled = step === 0;
  $('tour-next').textContent = step === STEPS.length - 1 ? 'Done' : 'Next';
}

function go(to: number) {
  if (to >= STEPS.length) return close();
  step = Math.max(0, to);
  render();
}

/** Opens the tour at its first step, moving focus into it. */
export function openTour() {
  returnFocus = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  step = 0;
  card.hidden = false;
  render();
  $('tour-next').focus();
}

function close() {
  card.hidden = true;
  document.querySelectorAll('.tour-target').forEach((e) => e.classList.remove('tour-target'));
  localStorage.setItem(SEEN, 'seen');
  // Back where the person was; on a first visit (nothing had focus) to the first task.
  (returnFocus && returnFocus !== document.body ? returnFocus : $('sample')).focus();
}

/** Opens the tour on a first visit. */
export function tourOnFirstVisit() {
  if (localStorage.getItem(SEEN) !== 'seen') openTour();
}

$('tour-next').addEventListener('click', () => go(step + 1));
$('tour-back').addEventListener('click', () => go(step - 1));
$('tour-skip').addEventListener('click', close);
card.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') close();
  else if (e.key === 'ArrowRight') go(step + 1);
  else if (e.key === 'ArrowLeft') go(step - 1);
  else return;
  e.preventDefault();
});
$('tour-open').addEventListener('click', openTour);
