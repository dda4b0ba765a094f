// Settings in the URL, so a teacher can hand out a link that opens the page ready for a lesson:
// `?method=grpo&beta=0.02&iterations=30&k=6&labeler=polite&demo=all&backend=cpu`. A method's knobs
// go by their short names (as in the ids `${method}-${name}`); `answers` is the K of the ranking
// view; `demo` (ppo or all) starts demo mode once the page is ready. A setting the page cannot use
// is named in a notice and left out; everything else still applies.
import { DEMO_CHOICES } from './demo';
import { METHODS, methodView, type Knob } from './methods';
import { choose, chosen } from './train';
import { $ } from './ui';

const LABELERS = ['labeler', 'demo-labeler', 'gold-labeler'];

/** What a link asks for beyond the controls it sets. */
export interface Lesson {
  /** What demo mode runs at once (see `DEMO_CHOICES`), if the link says `demo`. */
  demo: string | null;
  /** One line per setting that was refused, naming it and why. */
  problems: string[];
}

/** Whether `value` is one `knob` takes; else why not. */
function refusal(knob: Knob, value: string): string | null {
  if (knob.choices) return knob.choices.includes(value) ? null : `one of ${knob.choices.join(', ')}`;
  if (value === '') return knob.optional ? null : 'a number';
  const x = Number(value);
  if (!Number.isFinite(x)) return 'a number';
  if (knob.min && x < Number(knob.min)) return `at least ${knob.min}`;
  if (knob.max && x > Number(knob.max)) return `at most ${knob.max}`;
  return null;
}

function setInput(input: HTMLInputElement | HTMLSelectElement, value: string) {
  input.value = value;
  input.dispatchEvent(new Event('change'));
}

/** Sets the controls from `search` (after Rust's defaults are in them). */
export function applyLink(search: string): Lesson {
  const params = new URLSearchParams(search);
  const problems: string[] = [];
  const method = params.get('method') ?? 'ppo';
  const view = methodView(method);
  if (!view) problems.push(`method=${method}: the methods are ${METHODS.map((m) => m.name).join(', ')}`);
  else choose(view.name);
  let demo: string | null = null;
  for (const [name, value] of params) {
    // Read when the worker starts (main.ts), not controls.
    if (name === 'method' || name === 'backend' || name === 'workers') continue;
    const knob = view?.knobs.find((k) => k.id === name);
    if (knob) {
      const why = refusal(knob, value);
      if (why) problems.push(`${name}=${value}: ${view!.label}'s ${knob.label} must be ${why}`);
      else setInput($<HTMLInputElement>(`${view!.name}-${knob.id}`), value);
    } else if (name === 'labeler') {
      const selects = LABELERS.map((id) => $<HTMLSelectElement>(id)).filter((s) => [...s.options].some((o) => o.value === value));
      if (selects.length) selects.forEach((s) => setInput(s, value));
      else problems.push(`labeler=${value}: the labelers are ${[...$<HTMLSelectElement>('labeler').options].map((o) => o.value).join(', ')}`);
    } else if (name === 'answers') {
      const k = $<HTMLInputElement>('k');
      const why = refusal({ setting: 'k', label: 'K', id: 'k', min: k.min, max: k.max }, value);
      if (why) problems.push(`answers=${value}: K answers must be ${why}`);
      else setInput(k, value);
    } else if (name === 'demo') {
      if (DEMO_CHOICES.includes(value)) {
        setInput($<HTMLSelectElement>('demo-methods'), value);
        demo = value;
      } else problems.push(`demo=${value}: it must be one of ${DEMO_CHOICES.join(', ')}`);
    } else {
      const knobs = view ? `, or ${view.label}'s ${view.knobs.map((k) => k.id).join(', ')}` : '';
      problems.push(`${name}: not a setting (method, labeler, answers, demo, backend, workers${knobs})`);
    }
  }
  return { demo, problems };
}

/** A link to this page with every setting that differs from its default. */
export function linkHere(withDemo: boolean): string {
  const params = new URLSearchParams();
  const method = chosen();
  if (method !== 'ppo') params.set('method', method);
  for (const knob of methodView(method)!.knobs) {
    const input = $<HTMLInputElement>(`${method}-${knob.id}`);
    if (input.value !== (input.dataset.default ?? '')) params.set(knob.id, input.value);
  }
  // The demo ranks as its own labeler; otherwise "Rank for me"'s is the one in use.
  const labeler = $<HTMLSelectElement>(withDemo ? 'demo-labeler' : 'labeler');
  if (labeler.selectedIndex !== 0) params.set('labeler', labeler.value);
  const k = $<HTMLInputElement>('k');
  if (k.value !== k.defaultValue) params.set('answers', k.value);
  const here = new URLSearchParams(location.search);
  for (const name of ['backend', 'workers']) {
    const value = here.get(name);
    if (value) params.set(name, value);
  }
  if (withDemo) params.set('demo', $<HTMLSelectElement>('demo-methods').value);
  const url = new URL(location.href);
  url.search = params.toString();
  url.hash = '';
  return url.href;
}
