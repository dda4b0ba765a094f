// The page's one training loop, as the CLI has one (`crates/cli/src/drive.rs`): SFT, the reward model
// and every policy method go through it. A step, then what the page shows of it, then a frame for
// the page; it ends when the step says it is done or what the page shows says stop (a pause, a
// divergence, the end of the steps asked for).
import { nextFrame } from './ui';

type Verdict = 'stop' | void;

export async function drive<R extends { done?: boolean }>(step: () => Promise<R>, show: (result: R) => Verdict | Promise<Verdict>): Promise<void> {
  for (;;) {
    const result = await step();
    if ((await show(result)) === 'stop' || result.done) return;
    await nextFrame();
  }
}
