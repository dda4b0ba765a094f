// Live training charts (Chart.js): one small line chart per quantity, appended point by point.
import { CategoryScale, Chart, Legend, LineController, LineElement, LinearScale, PointElement, Tooltip } from 'chart.js';
import type { Point } from './protocol';

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip);

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
