// Live training charts (Chart.js): one small line chart per quantity, appended point by point.
import { CategoryScale, Chart, Legend, LineController, LineElement, LinearScale, PointElement, ScatterController, Tooltip } from 'chart.js';
import type { Point } from './protocol';

Chart.register(LineController, ScatterController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip);

const COLOURS = ['#3a5bd9', '#2f8f5b', '#c2772b', '#b3403a'];

export interface Series {
  key: string;
  label: string;
}

export class LiveChart {
  private chart: Chart;
  constructor(
    canvas: HTMLCanvasElement,
    private x: string,
    private series: Series[],
    title: string,
  ) {
    this.chart = new Chart(canvas, {
      type: 'line',
      data: { labels: [], datasets: series.map((s, i) => ({ label: s.label, data: [], borderColor: COLOURS[i], backgroundColor: COLOURS[i], pointRadius: 2, spanGaps: true, tension: 0.2 })) },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: series.length > 1, labels: { boxWidth: 10 } }, title: { display: true, text: title } },
        scales: { x: { title: { display: true, text: x } } },
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
export class GoldChart {
  private chart: Chart<'scatter'>;
  constructor(canvas: HTMLCanvasElement) {
    const line = (label: string, colour: string, yAxisID: string) => ({ label, data: [] as { x: number; y: number }[], borderColor: colour, backgroundColor: colour, showLine: true, pointRadius: 3, yAxisID });
    this.chart = new Chart(canvas, {
      type: 'scatter',
      data: { datasets: [line('proxy: reward-model score', COLOURS[0], 'proxy'), line('gold: labeler win-rate over SFT', COLOURS[2], 'gold')] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { labels: { boxWidth: 10 } }, title: { display: true, text: 'gold vs proxy as KL grows' } },
        scales: {
          x: { type: 'linear', title: { display: true, text: 'KL to SFT (nats per answer)' } },
          proxy: { type: 'linear', position: 'left', title: { display: true, text: 'proxy' } },
          gold: { type: 'linear', position: 'right', min: 0, max: 1, grid: { drawOnChartArea: false }, title: { display: true, text: 'gold' } },
        },
      },
    });
  }

  push(point: Point) {
    if (typeof point.gold !== 'number' || typeof point.proxy !== 'number' || typeof point.gold_kl !== 'number') return;
    this.chart.data.datasets[0].data.push({ x: point.gold_kl, y: point.proxy });
    this.chart.data.datasets[1].data.push({ x: point.gold_kl, y: point.gold });
    this.chart.update();
  }

  reset(points: Point[] = []) {
    this.chart.data.datasets.forEach((d) => (d.data = []));
    points.forEach((p) => this.push(p));
    this.chart.update();
  }

  /** Measurements drawn so far. */
  get length(): number {
    return this.chart.data.datasets[0].data.length;
  }
}
