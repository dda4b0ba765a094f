// Where the worker keeps each thing in IndexedDB, and which keys go together: what one policy
// owns, what was trained from the SFT model, what an older version saved elsewhere.
import { load, update } from './store';

export const policyKey = (name: string) => `policy:${name}`;
export const curveKey = (name: string) => `curve:${name}`;
export const samplesKey = (name: string) => `samples:${name}`;
/** A LoRA policy's adapter files (null without LoRA): the merged weights alone cannot give them back. */
export const adapterKey = (name: string) => `adapter:${name}`;
/** What an interrupted run of the method needs to go on (the CLI's checkpoint files), until it is done. */
export const runKey = (name: string) => `run:${name}`;
/** Everything saved of one policy: dropping a policy drops all of it. */
export const policyKeys = (name: string) => [policyKey(name), curveKey(name), samplesKey(name), adapterKey(name), runKey(name)];
export const VIEW = 'view';

/** Before several methods, the one policy (PPO's) was saved as 'policy' with its 'ppo-curve'. */
export async function fromOlderVersion() {
  const [policy, points] = [await load<unknown>('policy'), await load<unknown>('ppo-curve')];
  if (policy === undefined && points === undefined) return;
  const moved: Record<string, unknown> = {};
  if (policy !== undefined) moved[policyKey('ppo')] = policy;
  if (points !== undefined) moved[curveKey('ppo')] = points;
  await update(moved, ['policy', 'ppo-curve']);
}

export const REWARD = 'reward';
export const REWARD_CURVE = 'reward-curve';
/** A LoRA reward model's `adapter_config.json` (its safetensors under REWARD are then its adapters and head). */
export const REWARD_ADAPTER = 'reward-adapter';
export const OWN_MODEL = 'own-model';
export const SFT_WEIGHTS = 'sft-weights';
export const SFT_CURVE = 'curve:sft';
export const PROMPTS = 'prompts';
export const DEMOS = 'demos';

/** The keys of everything trained from the SFT model: gone when the SFT model changes. */
export function trainedKeys(methods: string[]): string[] {
  const names = [...methods, 'imported'];
  return [REWARD, REWARD_CURVE, REWARD_ADAPTER, VIEW, ...names.flatMap(policyKeys)];
}

/** The same, with the SFT model tuned here: gone when the model folder changes. */
export const tunedKeys = (methods: string[]) => [SFT_WEIGHTS, SFT_CURVE, ...trainedKeys(methods)];

/** What a write of these keys saves, in the person's words (for a write that did not fit). */
export function savedWhat(keys: string[]): string {
  const named = keys.flatMap((key): string[] => {
    const [kind, name] = key.split(':');
    if (kind === 'policy') return [name === 'imported' ? 'the imported policy' : `the ${name.toUpperCase()} policy`];
    const words: Record<string, string> = {
      rankings: 'the rankings',
      [REWARD]: 'the reward model',
      [SFT_WEIGHTS]: 'the SFT model tuned here',
      [OWN_MODEL]: 'your model',
      [PROMPTS]: 'your prompts',
      [DEMOS]: 'your demonstrations',
      [VIEW]: "the page's view",
    };
    return words[key] ? [words[key]] : [];
  });
  return named.length ? named.join(' and ') : 'the training curves';
}
