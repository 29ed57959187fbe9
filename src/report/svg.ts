/**
 * A small hand-written SVG writer for report plots: stacked bar charts with a legend and a labelled y axis. No
 * dependency; the output is a standalone SVG document that browsers and GitHub render.
 */

export interface BarSeries {
  name: string;
  /** One value per category (bytes or counts); negative values are not drawn. */
  values: readonly number[];
  color?: string;
}

export interface StackedBarChart {
  title: string;
  categories: readonly string[];
  series: readonly BarSeries[];
  /** How to print axis values. Default 'count'. */
  unit?: 'bytes' | 'count';
  yLabel?: string;
  width?: number;
  height?: number;
}

export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const KiB = 1024;

/** 1536 → "1.5 KiB"; binary units as everywhere in Sky. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= KiB && unit < units.length - 1) {
    value /= KiB;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}

export function formatCount(count: number): string {
  if (count >= 1e9) return `${(count / 1e9).toFixed(1)}G`;
  if (count >= 1e6) return `${(count / 1e6).toFixed(1)}M`;
  if (count >= 1e4) return `${(count / 1e3).toFixed(0)}k`;
  return String(Math.round(count * 100) / 100);
}

/** A round axis maximum and step (1, 2, 5 × 10^k; powers of 1024 for bytes) with about `ticks` steps. */
export function niceAxis(max: number, unit: 'bytes' | 'count', ticks = 5): { max: number; step: number } {
  if (!(max > 0)) return { max: 1, step: 1 };
  let scale = 1;
  if (unit === 'bytes') while (max / scale >= KiB) scale *= KiB;
  const raw = max / scale / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude * scale;
  return { max: Math.ceil(max / step) * step, step };
}

/** A stacked bar chart: one bar per category, one stack segment per series, a legend on the right. */
export function stackedBarChart(chart: StackedBarChart): string {
  const width = chart.width ?? 720;
  const height = chart.height ?? 400;
  const unit = chart.unit ?? 'count';
  const format = unit === 'bytes' ? formatBytes : formatCount;
  const longestLabel = Math.max(0, ...chart.categories.map((c) => c.length));
  const rotate = longestLabel * 7 > (width - 260) / Math.max(1, chart.categories.length);
  const margin = { top: 40, right: 170, bottom: rotate ? Math.min(160, 20 + longestLabel * 6) : 40, left: 80 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const totals = chart.categories.map((_, i) => chart.series.reduce((sum, s) => sum + Math.max(0, s.values[i] ?? 0), 0));
  const axis = niceAxis(Math.max(0, ...totals), unit);
  const y = (value: number) => margin.top + plotHeight - (value / axis.max) * plotHeight;
  const slot = plotWidth / Math.max(1, chart.categories.length);
  const barWidth = Math.max(2, Math.min(80, slot * 0.7));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(chart.title)}</text>`);
  for (let value = 0; value <= axis.max + axis.step / 2; value += axis.step) {
    const at = y(value).toFixed(1);
    out.push(`<line x1="${margin.left}" x2="${margin.left + plotWidth}" y1="${at}" y2="${at}" stroke="#ddd"/>`);
    out.push(`<text x="${margin.left - 6}" y="${at}" text-anchor="end" dominant-baseline="middle">${escapeXml(format(value))}</text>`);
  }
  if (chart.yLabel) {
    out.push(`<text transform="translate(16 ${margin.top + plotHeight / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`);
  }
  chart.categories.forEach((category, i) => {
    const x = margin.left + slot * i + (slot - barWidth) / 2;
    let base = 0;
    chart.series.forEach((series, s) => {
      const value = Math.max(0, series.values[i] ?? 0);
      if (value === 0) return;
      const top = y(base + value);
      const color = series.color ?? PALETTE[s % PALETTE.length];
      out.push(`<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(y(base) - top).toFixed(1)}" fill="${color}"><title>${escapeXml(`${category} · ${series.name}: ${format(value)}`)}</title></rect>`);
      base += value;
    });
    const labelX = (x + barWidth / 2).toFixed(1);
    const labelY = margin.top + plotHeight + 16;
    if (rotate) out.push(`<text transform="translate(${labelX} ${labelY}) rotate(-40)" text-anchor="end">${escapeXml(category)}</text>`);
    else out.push(`<text x="${labelX}" y="${labelY}" text-anchor="middle">${escapeXml(category)}</text>`);
  });
  out.push(`<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${margin.top + plotHeight}" stroke="#333"/>`);
  out.push(`<line x1="${margin.left}" x2="${margin.left + plotWidth}" y1="${margin.top + plotHeight}" y2="${margin.top + plotHeight}" stroke="#333"/>`);
  chart.series.forEach((series, s) => {
    const ly = margin.top + 10 + s * 20;
    const lx = width - margin.right + 16;
    out.push(`<rect x="${lx}" y="${ly - 9}" width="12" height="12" fill="${series.color ?? PALETTE[s % PALETTE.length]}"/>`);
    out.push(`<text x="${lx + 18}" y="${ly + 1}">${escapeXml(series.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
