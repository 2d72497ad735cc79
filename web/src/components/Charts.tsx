// Small hand-written SVG charts: a few bars need no chart library. Each chart is a <figure> with
// a caption, an image labelled for screen readers, and its figures as a (visually hidden) table.
import { useId } from "react";

export type Bar = { label: string; value: number | null; text?: string; tone?: string };

/** Horizontal bars, one per row, scaled to the largest value (or `max`). */
export function BarChart({
  title,
  bars,
  max,
  unit = "",
  format = (value: number) => String(value),
  chart,
}: {
  title: string;
  bars: Bar[];
  max?: number;
  unit?: string;
  format?: (value: number) => string;
  chart?: string;
}) {
  const id = useId();
  const top = max ?? Math.max(0, ...bars.map((bar) => bar.value ?? 0));
  const row = 26;
  const labelWidth = 150;
  const width = 520;
  const valueWidth = 90;
  const track = width - labelWidth - valueWidth;
  const height = Math.max(row, bars.length * row);
  const textOf = (bar: Bar) => bar.text ?? (bar.value === null ? "—" : `${format(bar.value)}${unit}`);
  return (
    <figure className="chart" data-chart={chart ?? title} data-bars={bars.length}>
      <figcaption id={`${id}-caption`}>{title}</figcaption>
      <svg
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-labelledby={`${id}-caption`}
        preserveAspectRatio="xMinYMin meet"
        className="chart-svg"
      >
        {bars.map((bar, index) => {
          const y = index * row;
          const length = top > 0 && bar.value !== null ? Math.max(bar.value > 0 ? 2 : 0, (bar.value / top) * track) : 0;
          return (
            <g key={bar.label} data-bar={bar.label} data-value={bar.value ?? ""}>
              <text x={labelWidth - 8} y={y + row / 2} className="chart-label" textAnchor="end" dominantBaseline="middle">
                {bar.label.length > 22 ? `${bar.label.slice(0, 21)}…` : bar.label}
              </text>
              <rect x={labelWidth} y={y + 5} width={track} height={row - 10} className="chart-track" rx={3} />
              <rect x={labelWidth} y={y + 5} width={length} height={row - 10} className={`chart-bar ${bar.tone ?? ""}`} rx={3}>
                <title>{`${bar.label}: ${textOf(bar)}`}</title>
              </rect>
              <text x={labelWidth + track + 8} y={y + row / 2} className="chart-value" dominantBaseline="middle">
                {textOf(bar)}
              </text>
            </g>
          );
        })}
      </svg>
      <table className="visually-hidden">
        <caption>{title}</caption>
        <tbody>
          {bars.map((bar) => (
            <tr key={bar.label}>
              <th scope="row">{bar.label}</th>
              <td>{textOf(bar)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

export type Column = { label: string; value: number | null; text: string };

/** Columns over time (oldest left), scaled to the largest value (or `max`). */
export function ColumnChart({ title, columns, max, chart }: { title: string; columns: Column[]; max?: number; chart?: string }) {
  const id = useId();
  const top = max ?? Math.max(0, ...columns.map((column) => column.value ?? 0));
  const width = 520;
  const height = 150;
  const base = height - 22;
  const slot = width / Math.max(1, columns.length);
  return (
    <figure className="chart" data-chart={chart ?? title} data-columns={columns.length}>
      <figcaption id={`${id}-caption`}>{title}</figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={`${id}-caption`} className="chart-svg">
        <line x1={0} x2={width} y1={base} y2={base} className="chart-axis" />
        {columns.map((column, index) => {
          const size = top > 0 && column.value !== null ? (column.value / top) * (base - 8) : 0;
          const x = index * slot;
          return (
            <g key={`${column.label}-${index}`} data-column={column.label} data-value={column.value ?? ""}>
              <rect x={x + slot * 0.15} y={base - size} width={slot * 0.7} height={size} className="chart-bar" rx={2}>
                <title>{`${column.label}: ${column.text}`}</title>
              </rect>
              {index % Math.ceil(columns.length / 6) === 0 && (
                <text x={x + slot / 2} y={height - 6} className="chart-tick" textAnchor="middle">
                  {column.label}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <table className="visually-hidden">
        <caption>{title}</caption>
        <tbody>
          {columns.map((column, index) => (
            <tr key={`${column.label}-${index}`}>
              <th scope="row">{column.label}</th>
              <td>{column.text}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

/** A progress bar with its share in words. */
export function Progress({ value, label }: { value: number; label: string }) {
  const percent = Math.round(value * 100);
  return (
    <div className="progress">
      <progress max={1} value={value} aria-label={label} data-progress-value={value} />
      <span className="small">{percent}%</span>
    </div>
  );
}
