// A model's weights into the wasm module in slices: a person's `model.safetensors` can be 500 MB,
// and reading it whole (`arrayBuffer()`) would hold it in JavaScript and again in wasm memory. The
// `File` (kept as such in IndexedDB) is read one slice at a time; Rust widens each tensor as soon
// as it has arrived (`WeightsUpload`), so only the model's tensors stay.
import { WeightsUpload } from './wasm/tinyrlhf_web.js';

const SLICE = 16 << 20;

/** `weights` read into a `WeightsUpload` for `Session.load`/`loadBase`. */
export async function upload(weights: Blob): Promise<WeightsUpload> {
  const into = new WeightsUpload();
  try {
    for (let at = 0; at < weights.size; at += SLICE) {
      into.push(new Uint8Array(await weights.slice(at, at + SLICE).arrayBuffer()));
    }
    return into;
  } catch (e) {
    into.free();
    throw e;
  }
}

/** Weights as a Blob, whether kept as one or as bytes (the shipped model's, SFT's in this tab). */
export function asBlob(weights: Blob | Uint8Array): Blob {
  return weights instanceof Blob ? weights : new Blob([weights as BlobPart]);
}
