// How the page shows each way of tuning the policy: its words, which settings get a knob, and
// which of its numbers get a chart. What the settings default to comes from Rust (`defaults()`),
// filled in when the worker is ready; a run sends only the settings the person changed.
import type { Changes, Defaults, Method } from '../protocol';
import type { ChartSpec } from './charts';
import { $ } from './ui';

export interface Knob {
  /** The field of the method's settings in Rust. */
  setting: string;
  label: string;
  /** The input's id is `${method}-${id}`. */
  id: string;
  step?: string;
  min?: string;
  max?: string;
  /** A setting that may be unset (`null`): an empty box. */
  optional?: string;
  choices?: string[];
  /** A slider that may move while the method runs: the next step uses the new value (the KL leash). */
  live?: boolean;
  /** A smaller value takes less memory: named when the tab runs out of it. */
  memory?: boolean;
}

export interface MethodView {
  name: Method;
  label: string;
  teach: string;
  /** What one step is called: an iteration (sample, score, update) or a step on a batch of rankings. */
  unit: string;
  knobs: Knob[];
  charts: ChartSpec[];
}

const SCORE_Y = "score (SFT's mean: 0)";
const SCORE_WATCH = 'Should rise: the policy finds answers the reward model likes. A climb with no end can be reward hacking: read the samples below.';
const CLIP_WATCH = 'Tokens whose probability moved past the clip in one update. Above about 0.2 the steps are too big: lower the learning rate.';
const klChart: ChartSpec = {
  series: [{ key: 'kl', label: 'KL' }, { key: 'beta', label: 'β' }],
  title: 'KL to SFT',
  y: 'nats per answer',
  watch: 'How far the policy has drifted from SFT. Slow growth is healthy; a jump means it is forgetting how to talk: raise β.',
};
const entropyChart: ChartSpec = {
  series: [{ key: 'entropy', label: 'entropy' }],
  title: 'entropy per token',
  y: 'nats per token',
  watch: 'How spread out the next-token choices are. A fall toward 0 means every answer becomes the same answer.',
};
const lengthChart: ChartSpec = {
  series: [{ key: 'mean_length', label: 'tokens' }],
  title: 'answer length',
  y: 'tokens per answer',
  watch: 'Moves toward what the reward model likes: a steady climb or fall often means it rewards length, not content.',
};
const eosChart: ChartSpec = {
  series: [{ key: 'eos_rate', label: 'EOS rate' }],
  title: 'answers that end',
  y: 'fraction of answers',
  watch: 'Answers that finish before the length limit. Falling means answers run on and get cut off.',
};

const lengthKnob: Knob = { setting: 'max_new_tokens', label: 'max length', id: 'length', min: '4', max: '64', memory: true };
const groupKnobs: Knob[] = [
  { setting: 'iterations', label: 'iterations', id: 'iterations', min: '1' },
  { setting: 'samples_per_prompt', label: 'K answers per prompt', id: 'k', min: '2', max: '16', memory: true },
  { setting: 'prompts_per_iteration', label: 'prompts per iteration', id: 'prompts', min: '1', memory: true },
  { setting: 'lr', label: 'learning rate', id: 'lr', step: '0.00001' },
  { setting: 'beta', label: 'β (KL)', id: 'beta', step: '0.005', min: '0', max: '0.5', live: true },
  { setting: 'epsilon', label: 'clip ε', id: 'epsilon', step: '0.05', min: '0.05', max: '0.95' },
  lengthKnob,
];
const groupCharts: ChartSpec[] = [
  { series: [{ key: 'score', label: 'score' }, { key: 'reward_std', label: 'reward std' }], title: 'mean reward-model score', y: SCORE_Y, watch: 'The mean should rise. The spread of scores within a group is the signal: at 0 every answer scores the same and there is nothing left to learn.' },
  klChart,
  entropyChart,
  { series: [{ key: 'clip_ratio/region_mean', label: 'clipped' }], title: 'clip ratio', y: 'fraction of tokens', watch: CLIP_WATCH },
  lengthChart,
  eosChart,
];

export const METHODS: MethodView[] = [
  {
    name: 'ppo',
    label: 'PPO',
    teach:
      'The policy answers training prompts, the reward model scores the answers, and PPO nudges the policy toward higher scores — minus β times how far it drifts from the SFT model (the KL leash), so it cannot forget how to talk. A value model learns to predict the score, to tell lucky answers from good ones.',
    unit: 'iteration',
    knobs: [
      { setting: 'iterations', label: 'iterations', id: 'iterations', min: '1' },
      { setting: 'kl_coef', label: 'β', id: 'beta', step: '0.005', min: '0', max: '0.5', live: true },
      { setting: 'kl_target', label: 'target KL', id: 'target', step: '0.5', optional: 'fixed β' },
      { setting: 'lr', label: 'learning rate', id: 'lr', step: '0.00001' },
      { setting: 'ppo_epochs', label: 'PPO epochs', id: 'epochs', min: '1' },
      { setting: 'samples_per_prompt', label: 'samples per prompt', id: 'k', min: '1', max: '8', memory: true },
      { setting: 'batch_size', label: 'answers per iteration', id: 'batch', min: '1', memory: true },
      lengthKnob,
    ],
    charts: [
      { series: [{ key: 'score', label: 'score' }], title: 'mean reward-model score', y: SCORE_Y, watch: SCORE_WATCH },
      klChart,
      entropyChart,
      { series: [{ key: 'pg_clipfrac', label: 'clip fraction' }], title: 'policy clip fraction', y: 'fraction of tokens', watch: CLIP_WATCH },
      lengthChart,
      eosChart,
    ],
  },
  {
    name: 'grpo',
    label: 'GRPO',
    teach:
      'No value model: K answers to the same prompt form a group, and each answer’s advantage is how much better its score is than the group’s mean (divided by the group’s spread). Cheaper than PPO; DeepSeek’s recipe.',
    unit: 'iteration',
    knobs: groupKnobs,
    charts: groupCharts,
  },
  {
    name: 'rloo',
    label: 'RLOO',
    teach:
      'REINFORCE with a leave-one-out baseline: each of the K answers is compared with the mean score of the other K − 1, and the KL leash is part of the reward. No value model, and almost no settings to tune.',
    unit: 'iteration',
    knobs: groupKnobs,
    charts: groupCharts,
  },
  {
    name: 'dpo',
    label: 'DPO',
    teach:
      'No reward model and no sampling: the policy learns from your rankings directly, raising the log-probability of each preferred answer relative to the SFT model and lowering the other’s. β sets how far it may move. Seconds instead of minutes.',
    unit: 'step',
    knobs: [
      { setting: 'epochs', label: 'epochs', id: 'epochs', min: '1' },
      { setting: 'lr', label: 'learning rate', id: 'lr', step: '0.00001' },
      { setting: 'beta', label: 'β', id: 'beta', step: '0.01', min: '0.01', max: '1', live: true },
      { setting: 'batch_size', label: 'rankings per step', id: 'batch', min: '1', memory: true },
      { setting: 'loss', label: 'loss', id: 'loss', choices: ['sigmoid', 'ipo', 'hinge'] },
    ],
    charts: [
      {
        series: [{ key: 'loss', label: 'train' }, { key: 'held_out_loss', label: 'held-out' }],
        title: 'DPO loss',
        y: 'loss (nats per pair)',
        watch: 'Starts at ln 2 ≈ 0.69, where the policy is still SFT. Train falling while held-out rises: it memorises your rankings instead of learning your taste.',
      },
      {
        series: [{ key: 'rewards/accuracies', label: 'train batch' }, { key: 'held_out_accuracy', label: 'held-out' }],
        title: 'implicit-reward accuracy',
        y: 'fraction of pairs',
        watch: 'How often the preferred answer gained more probability than the other. Held-out is the honest one; 0.5 is chance.',
      },
      {
        series: [{ key: 'rewards/margins', label: 'margin' }],
        title: 'reward margin (chosen − rejected)',
        y: 'β × log-ratio to SFT (nats)',
        watch: 'Grows as the rankings are learnt; β sets how fast it may grow.',
      },
      {
        series: [{ key: 'rewards/chosen', label: 'chosen' }, { key: 'rewards/rejected', label: 'rejected' }],
        title: 'implicit rewards',
        y: 'β × log-ratio to SFT (nats)',
        watch: 'Both often fall: DPO may push the rejected answer down faster than it lifts the chosen one.',
      },
    ],
  },
];

export const methodView = (name: string) => METHODS.find((m) => m.name === name);

/** What a policy is called on the page. */
export function policyLabel(name: string): string {
  if (name === 'sft') return 'SFT model';
  if (name === 'base') return 'Base model';
  if (name === 'imported') return 'Imported policy';
  return `${methodView(name)?.label ?? name} policy`;
}

/** An input for `knob`, `${prefix}-${knob.id}`. */
export function knobInput(prefix: string, knob: Knob): HTMLLabelElement {
  const label = document.createElement('label');
  label.append(`${knob.label} `);
  const input = knob.choices ? document.createElement('select') : document.createElement('input');
  if (input instanceof HTMLSelectElement) input.append(...knob.choices!.map((c) => new Option(c, c)));
  else {
    input.type = knob.live ? 'range' : 'number';
    Object.assign(input, { step: knob.step ?? '1', min: knob.min ?? '', max: knob.max ?? '', placeholder: knob.optional ?? '' });
  }
  input.id = `${prefix}-${knob.id}`;
  input.dataset.setting = knob.setting;
  label.append(input);
  if (knob.live) {
    // The slider's value, as the other knobs show theirs.
    const shown = Object.assign(document.createElement('output'), { id: `${input.id}-value` });
    const update = () => (shown.textContent = input.value);
    input.addEventListener('input', update);
    input.addEventListener('change', update);
    label.append(shown);
  }
  return label;
}

/** Shows Rust's defaults in the knobs of settings group `group` (ids `${prefix}-...`). */
export function fillDefaults(defaults: Defaults, group: string, prefix: string, knobs: Knob[]) {
  for (const knob of knobs) {
    const input = $<HTMLInputElement | HTMLSelectElement>(`${prefix}-${knob.id}`);
    const value = defaults.settings[group]?.[knob.setting];
    const text = value === null || value === undefined ? '' : String(value);
    if (input instanceof HTMLSelectElement) input.value = text;
    else input.defaultValue = input.value = text;
    // A range input snaps its value to its step: the default is what it shows.
    input.dataset.default = input.value;
    input.dispatchEvent(new Event('change'));
  }
}

/**
 * The settings whose knob differs from its default, typed as Rust reads them; with the LoRA switch
 * on, every stage trains adapters of the chosen rank instead of every weight.
 */
export function changes(prefix: string, knobs: Knob[]): Changes {
  const out: Changes = {};
  if ($<HTMLInputElement>('lora').checked) out.lora = { rank: Number($<HTMLInputElement>('lora-rank').value) };
  for (const knob of knobs) {
    const input = $<HTMLInputElement | HTMLSelectElement>(`${prefix}-${knob.id}`);
    const value = input.value.trim();
    if (value === (input.dataset.default ?? '')) continue;
    out[knob.setting] = knob.choices ? value : value === '' ? null : Number(value);
  }
  return out;
}
