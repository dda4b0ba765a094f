// Live training charts (Chart.js): one small line chart per quantity, appended point by point.
import { CategoryScale, Chart, Legend, LineController, LineElement, LinearScale, PointElement, ScatterController, Title, Tooltip } from 'chart.js';
import type { Point } from '../protocol';

Chart.register(LineController, ScatterController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Title, Tooltip);

const COLOURS = ['#3a5bd9', '#2f8f5b', '#c2772b', '#b3403a'];

export interface Series {
  key: string;
  label: string;
}

/** One chart as a person reads it: the quantity (title), the y axis with its unit, and one line on what to watch. */
export interface ChartSpec {
  series: Series[];
  title: string;
  y: string;
  watch: string;
}

/**
 * Names a chart for everyone: the canvas becomes an image whose accessible name is the title and
 * axes (its fallback text the line on what to watch), and the figure around it gets that line as
 * its caption.
 */
function describe(canvas: HTMLCanvasElement, title: string, axes: string, watch: string) {
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `${title}: ${axes}`);
  canvas.textContent = watch;
  const figure = canvas.closest('figure');
  if (!figure) return;
  const caption = figure.querySelector('figcaption') ?? figure.appendChild(Object.assign(document.createElement('figcaption'), { className: 'watch' }));
  caption.textContent = watch;
}

/** A chart's place on the page: a figure holding a sized box for the canvas (the caption goes under it). */
export function chartFigure(className = ''): { figure: HTMLElement; canvas: HTMLCanvasElement } {
  const figure = Object.assign(document.createElement('figure'), { className });
  const box = document.createElement('div');
  const canvas = document.createElement('canvas');
  box.append(canvas);
  figure.append(box);
  return { figure, canvas };
}

export class LiveChart {
  private chart: Chart;
  private series: Series[];
  constructor(
    canvas: HTMLCanvasElement,
    private x: string,
    spec: ChartSpec,
  ) {
    const { series, title, y, watch } = spec;
    this.series = series;
    describe(canvas, title, `${y} by ${x}`, watch);
    this.chart = new Chart(canvas, {
      type: 'line',
      data: { labels: [], datasets: series.map((s, i) => ({ label: s.label, data: [], borderColor: COLOURS[i], backgroundColor: COLOURS[i], pointRadius: 2, spanGaps: true, tension: 0.2 })) },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: series.length > 1, labels: { boxWidth: 10 } }, title: { display: true, text: title } },
        scales: { x: { title: { display: true, text: x } }, y: { title: { display: true, text: y } } },
      },
    });
  }

  push(point: Point) {
    this.chart.data.labels!.push(point[this.x] ?? this.chart.data.labels!.length + 1);
    this.series.forEach((s, i) => this.chart.data.datasets[i].data.push(point[s.key] ?? null));
    this.chart.update();
  }

  reset(points: Point[] = []) {
    this.chart.data.labels = [];
    this.chart.data.datasets.forEach((d) => (d.data = []));
    points.forEach((p) => this.push(p));
    this.chart.update();
  }

  /** Points drawn so far (what the tests check). */
  get length(): number {
    return this.chart.data.labels!.length;
  }
}

/**
 * Gold against proxy as the policy moves away from SFT: x is the KL to SFT, the reward model's mean
 * score (the proxy training pushes up) on the left axis, the labeler's win-rate over SFT (the gold it
 * stands in for) on the right. Drawn from the points that carry a measurement.
 */
export interface GoldPoint {
  iteration: number;
  kl: number;
  gold: number;
  proxy: number;
}

/** SFT against itself: KL 0 and, by construction, a win-rate of one half. */
const SFT_GOLD = { x: 0, y: 0.5 };

export class GoldChart {
  private chart: Chart<'scatter'>;
  private measured: GoldPoint[] = [];
  constructor(canvas: HTMLCanvasElement) {
    describe(
      canvas,
      'gold vs proxy as KL grows',
      'reward-model score (left) and labeler win-rate over SFT (right) by KL to SFT',
      'Both start at SFT: KL 0, and a win-rate of one half against itself. While the proxy (what training pushes up) keeps rising, watch the gold (what it stands for): when gold turns down, the policy is exploiting the reward model.',
    );
    const line = (label: string, colour: string, yAxisID: string) => ({ label, data: [] as { x: number; y: number }[], borderColor: colour, backgroundColor: colour, showLine: true, pointRadius: 3, yAxisID });
    this.chart = new Chart(canvas, {
      type: 'scatter',
      data: { datasets: [line('proxy: reward-model score', COLOURS[0], 'proxy'), { ...line('gold: labeler win-rate over SFT', COLOURS[2], 'gold'), data: [SFT_GOLD] }] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { labels: { boxWidth: 10 } }, title: { display: true, text: 'gold vs proxy as KL grows' } },
        layout: { padding: { top: 8, right: 8 } },
        scales: {
          x: { type: 'linear', title: { display: true, text: 'KL to SFT (nats per answer)' } },
          proxy: { type: 'linear', position: 'left', title: { display: true, text: 'proxy (reward-model score)' } },
          gold: { type: 'linear', position: 'right', suggestedMin: 0.4, suggestedMax: 0.7, grid: { drawOnChartArea: false }, title: { display: true, text: 'gold (win-rate over SFT)' } },
        },
      },
      plugins: [{ id: 'iterations', afterDatasetsDraw: (chart) => this.labelPoints(chart as Chart<'scatter'>) }],
    });
  }

  /** Each point carries its iteration (the gold curve's first is SFT), so a curve that folds back as the KL wanders still reads in order. */
  private labelPoints(chart: Chart<'scatter'>) {
    const { ctx } = chart;
    ctx.save();
    ctx.font = '10px system-ui, sans-serif';
    ctx.textAlign = 'left';
    chart.data.datasets.forEach((dataset, d) => {
      const labels = d === 1 ? ['SFT', ...this.measured.map((m) => `it ${m.iteration}`)] : this.measured.map((m) => `it ${m.iteration}`);
      ctx.fillStyle = dataset.borderColor as string;
      chart.getDatasetMeta(d).data.forEach((element, i) => ctx.fillText(labels[i] ?? '', element.x + 5, element.y - 5));
    });
    ctx.restore();
  }

  push(point: Point) {
    const { gold, proxy, gold_kl: kl, index } = point;
    if (typeof gold !== 'number' || typeof proxy !== 'number' || typeof kl !== 'number') return;
    this.measured.push({ iteration: index ?? this.measured.length + 1, kl, gold, proxy });
    this.chart.data.datasets[0].data.push({ x: kl, y: proxy });
    this.chart.data.datasets[1].data.push({ x: kl, y: gold });
    this.chart.update();
  }

  reset(points: Point[] = []) {
    this.measured = [];
    this.chart.data.datasets[0].data = [];
    this.chart.data.datasets[1].data = [SFT_GOLD];
    points.forEach((p) => this.push(p));
    this.chart.update();
  }

  /** Measurements drawn so far. */
  get length(): number {
    return this.measured.length;
  }

  get points(): GoldPoint[] {
    return [...this.measured];
  }
}
