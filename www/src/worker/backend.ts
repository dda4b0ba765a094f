// Which backend the worker's session runs on: WebGPU on a hardware adapter that computes what the
// CPU computes and is measured faster, else burn's CPU backend in wasm; `?backend=` forces.
import { Session } from '../wasm/tinyrlhf_web.js';

export interface Choice {
  backend: 'webgpu' | 'cpu';
  device: string;
  reason: string;
  /** A hardware adapter was found: time both backends and keep the faster. */
  measure?: boolean;
  /** On WebGPU: "fused kernels", or "unfused kernels (why)" where the adapter cannot run them. */
  kernels?: string;
}

/**
 * The GPU devices this worker's WebGPU made, so that a test can destroy one (`loseDevice`) and
 * watch the page carry on on the CPU, as it must when a real GPU is lost or reset.
 */
export const devices: GPUDevice[] = [];
/** Device errors WebGPU reported and nobody has read yet: a kernel it could not build, for one. */
const deviceErrors: string[] = [];
if (typeof GPUAdapter !== 'undefined') {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (this: GPUAdapter, ...args: Parameters<GPUAdapter['requestDevice']>) {
    const device = await requestDevice.apply(this, args);
    devices.push(device);
    // wgpu's own handler panics, and a panic kills the wasm instance: the worker hears the errors
    // itself, the agreement check as a failed kernel, afterwards as the end of the module's GPU.
    Object.defineProperty(device, 'onuncapturederror', { get: () => null, set: () => {}, configurable: true });
    device.addEventListener('uncapturederror', (event) => deviceErrors.push((event as GPUUncapturedErrorEvent).error.message));
    return device;
  };
}

/** The device errors reported since the last call, as one line (the first, which names what
 * failed, and how many followed), or null. */
export function reportedErrors(): string | null {
  const [first, ...more] = deviceErrors.splice(0);
  if (first === undefined) return null;
  return `${first.split('\n')[0]}${more.length ? ` (and ${more.length} more device errors)` : ''}`;
}

/** [`reportedErrors`] once the devices have done what was submitted: WebGPU reports its errors
 * late, and the agreement check must hear those of its own work. */
async function settledErrors(): Promise<string | null> {
  await Promise.all(devices.map((d) => d.queue.onSubmittedWorkDone()));
  await new Promise((resolve) => setTimeout(resolve, 0));
  return reportedErrors();
}

/** `?backend=measure` times both backends even on a software adapter (for the browser tests). */
export async function chooseBackend(force: string | null): Promise<Choice> {
  const cpu = (reason: string): Choice => ({ backend: 'cpu', device: 'CPU (wasm)', reason });
  if (force === 'cpu') return cpu('forced by ?backend=cpu');
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return cpu('this browser has no WebGPU');
  const adapter = await gpu.requestAdapter();
  if (!adapter) return cpu('no WebGPU adapter');
  const info = adapter.info;
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  const software = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter || /swiftshader/i.test(name);
  if (force === 'webgpu') return { backend: 'webgpu', device: name, reason: 'forced by ?backend=webgpu' };
  if (software && force !== 'measure') return cpu(`only a software WebGPU adapter (${name}), slower than the CPU backend`);
  return { backend: 'webgpu', device: name, reason: 'hardware WebGPU adapter', measure: true };
}

/**
 * A WebGPU session, or a CPU one where WebGPU computes other numbers than the CPU (a miniature of
 * this model's shape: logits, sampled tokens, one training step) or measured slower (generation
 * tokens/s on both). The choice and the figures become the reason shown.
 */
export async function measured(gpuSession: Session, choice: Choice, config: Uint8Array): Promise<[Session, Choice]> {
  const cpuSession = await Session.create('cpu');
  const keepCpu = (reason: string): [Session, Choice] => {
    gpuSession.free();
    return [cpuSession, { backend: 'cpu', device: 'CPU (wasm)', reason, measure: true }];
  };
  reportedErrors(); // what came before the check is not the check's
  const check = JSON.parse((await gpuSession.agreement(config, settledErrors)) as string) as { agrees: boolean; summary: string; kernels: string };
  if (!check.agrees) return keepCpu(`WebGPU on ${choice.device} does not compute what the CPU does (${check.summary}): the CPU is used`);
  choice = { ...choice, kernels: check.kernels };
  const gpuRate = (await gpuSession.generationSpeed(config)) as number;
  const cpuRate = (await cpuSession.generationSpeed(config)) as number;
  const figures = `WebGPU ${gpuRate.toFixed(0)} tokens/s, CPU ${cpuRate.toFixed(0)} tokens/s`;
  const agrees = `WebGPU on ${check.kernels} agrees with the CPU (${check.summary})`;
  if (gpuRate >= cpuRate) {
    cpuSession.free();
    return [gpuSession, { ...choice, reason: `measured ${figures} on ${choice.device}: WebGPU is faster; ${agrees}` }];
  }
  return keepCpu(`measured ${figures} on ${choice.device}: the CPU is faster; ${agrees}`);
}
