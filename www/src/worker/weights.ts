// A model's weights into the wasm module in slices: a person's `model.safetensors` or `.gguf` can be
// 500 MB, and reading it whole (`arrayBuffer()`) would hold it in JavaScript and again in wasm
// memory. The `File` (kept as such in IndexedDB) is read one slice at a time; Rust widens each
// tensor as soon as it has arrived (`WeightsUpload`, which tells the format from the first bytes),
// so only the model's tensors stay.
import { Session, WeightsUpload } from '../wasm/tinyrlhf_web.js';
import type { ModelFolder, ModelInfo } from '../protocol';

const SLICE = 16 << 20;

/** The tab's cores and the page's `?workers=N`: how many workers hold a GGUF base too large for a copy per worker, by rows (`rows.ts`). */
export interface Sharing {
  cores: number;
  requested: number | null;
}

/** `weights` read into a `WeightsUpload` for `Session.load`/`loadGguf`/`loadBase`; `progress` after each slice. */
export async function upload(weights: Blob, progress?: (loaded: number, total: number) => void, sharing?: Sharing): Promise<WeightsUpload> {
  const into = sharing ? WeightsUpload.sharingRows(sharing.cores, sharing.requested ?? undefined) : new WeightsUpload();
  try {
    for (let at = 0; at < weights.size; at += SLICE) {
      into.push(new Uint8Array(await weights.slice(at, at + SLICE).arrayBuffer()));
      progress?.(Math.min(at + SLICE, weights.size), weights.size);
    }
    return into;
  } catch (e) {
    into.free();
    throw e;
  }
}

/** Loads a model folder (or one GGUF file, `f.gguf`) as the session's SFT model. */
export async function loadFolder(s: Session, f: ModelFolder, progress?: (loaded: number, total: number) => void, sharing?: Sharing): Promise<ModelInfo> {
  const weights = await upload(f.weights, progress, sharing);
  if (f.gguf) return JSON.parse(s.loadGguf(weights));
  return JSON.parse(s.load(f.config, weights, f.tokenizer, f.tokenizerConfig, f.template, f.generationConfig));
}

/** Weights as a Blob, whether kept as one or as bytes (the shipped model's, SFT's in this tab). */
export function asBlob(weights: Blob | Uint8Array): Blob {
  return weights instanceof Blob ? weights : new Blob([weights as BlobPart]);
}
