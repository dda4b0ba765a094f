// The bar that stays at the top of the window while something trains: what runs, its step of how
// many and the time left at the pace so far, so nobody has to scroll to the live line. Demo mode
// puts its own stage in front ("Demo, 2 of 3: …").
import { $ } from './ui';

const bar = $('run-progress');
const text = $('run-progress-text');
const meter = $<HTMLProgressElement>('run-progress-meter');
let stage = '';

/** The demo's stage in front of every line until it is cleared (''). */
export function setStage(s: string) {
  stage = s;
  if (!s) bar.hidden = true;
}

const duration = (s: number) => (s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`);

/** One run's progress: `update` after each step; `end` hides the bar unless a demo stage goes on. */
export class Progress {
  private started = performance.now();
  constructor(
    private what: string,
    private unit: string,
    private from = 0,
  ) {}

  update(done: number, total: number) {
    const ran = done - this.from;
    const each = (performance.now() - this.started) / 1000 / Math.max(1, ran);
    const left = ran > 0 && done < total ? ` · about ${duration(each * (total - done))} left` : '';
    text.textContent = `${stage}${this.what}: ${this.unit} ${done}/${total}${left}`;
    meter.max = total;
    meter.value = done;
    bar.hidden = false;
  }

  end() {
    if (!stage) bar.hidden = true;
  }
}
