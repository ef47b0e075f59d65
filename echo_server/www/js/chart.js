/*
 * The Live panel's chart: a step chart of {t, v} points over the last minute, on a canvas.
 *
 * What this file is for: drawing, at most once per animation frame, crisp on a phone's dense
 * screen (sized in device pixels, lines on whole pixels), in colours taken from CSS (so it
 * follows dark mode), with round axis labels (niceStep).
 *
 * What it is not: a charting library. It draws one kind of chart; the points, and when they
 * change, belong to the Live panel (js/panels.js).
 */
echoPage.define("chart", ["format"], function (page) {
  "use strict";

  const { formatClock, formatCount } = page;

  // The time the chart shows, in seconds up to its right edge.
  const CHART_WINDOW_S = 60;
  const CHART_LINE_WIDTH_PX = 2;
  const CHART_FONT_PX = 12;

  /** A round step for axis labels near `rough`: 1, 2 or 5 times a power of ten, at least 1. */
  function niceStep(rough) {
    if (!(rough > 1)) {
      return 1;
    }
    const power = Math.pow(10, Math.floor(Math.log10(rough)));
    const scaled = rough / power;
    const nice = scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10;
    return nice * power;
  }

  /** The points from the last one at or before `start` (the line's height at the left edge) on. */
  function pointsSince(points, start) {
    for (let index = points.length - 1; index >= 0; index -= 1) {
      if (points[index].t <= start) {
        return points.slice(index);
      }
    }
    return points.slice();
  }

  /** Round axis values covering low..high in about `count` steps: {low, high, values}. */
  function axisTicks(low, high, count) {
    const step = niceStep((high - low) / Math.max(1, count));
    const bottom = Math.floor(low / step) * step;
    const top = Math.max(Math.ceil(high / step) * step, bottom + step);
    const values = [];
    for (let value = bottom; value <= top; value += step) {
      values.push(value);
    }
    return { low: bottom, high: top, values: values };
  }

  /**
   * A step chart of {t, v} points (t in Unix seconds) over the CHART_WINDOW_S seconds up to
   * `end`, drawn on a canvas. It draws only when asked, at most once per animation frame; it
   * sizes the canvas in device pixels and puts lines on whole pixels, so they stay crisp on a
   * phone's dense screen; it takes its colours from CSS, so it follows dark mode.
   *
   * `source()` returns {points, end, empty}: what to draw, and the text for no points.
   */
  class LiveChart {
    constructor(canvas, source) {
      this.canvas = canvas;
      this.context = canvas.getContext("2d");
      this.source = source;
      this.frame = null;
      // A new size (the tab shown, a phone turned) needs a new backing store and a redraw.
      new ResizeObserver(() => this.request()).observe(canvas);
      // Dark mode turned on or off: new colours.
      window
        .matchMedia("(prefers-color-scheme: dark)")
        .addEventListener("change", () => this.request());
    }

    request() {
      if (this.frame === null) {
        this.frame = requestAnimationFrame(() => {
          this.frame = null;
          this.draw();
        });
      }
    }

    draw() {
      const canvas = this.canvas;
      const width = canvas.clientWidth;
      const height = canvas.clientHeight;
      if (width === 0 || height === 0) {
        // In a hidden tab; the ResizeObserver asks again when it is shown.
        return;
      }
      const ratio = window.devicePixelRatio || 1;
      const pixelWidth = Math.round(width * ratio);
      const pixelHeight = Math.round(height * ratio);
      if (canvas.width !== pixelWidth || canvas.height !== pixelHeight) {
        canvas.width = pixelWidth;
        canvas.height = pixelHeight;
      }
      const ctx = this.context;
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);

      const style = getComputedStyle(canvas);
      const colors = {
        line: style.color,
        fill: style.getPropertyValue("--chart-fill").trim() || "transparent",
        grid: style.getPropertyValue("--chart-grid").trim() || "gray",
        axis: style.getPropertyValue("--chart-axis").trim() || "gray",
        label: style.getPropertyValue("--chart-label").trim() || "gray",
      };
      ctx.font = CHART_FONT_PX + "px " + style.fontFamily;

      const { points, end, empty } = this.source();
      const start = end - CHART_WINDOW_S;
      const shown = pointsSince(points, start);
      const values = shown.map((point) => point.v);
      const low = values.length > 0 ? Math.min(...values) : 0;
      const high = values.length > 0 ? Math.max(...values) : 10;
      const labelsWanted = Math.max(2, Math.floor(height / 56));
      const ticks = axisTicks(low, high, labelsWanted);
      const labelWidths = ticks.values.map((value) => ctx.measureText(formatCount(value)).width);
      const labelWidth = Math.max(...labelWidths);
      const plot = {
        left: Math.ceil(labelWidth) + 12,
        right: width - 14,
        top: 12,
        bottom: height - CHART_FONT_PX - 14,
      };
      const x = (t) => {
        const clamped = Math.min(Math.max(t, start), end);
        return plot.left + ((clamped - start) / CHART_WINDOW_S) * (plot.right - plot.left);
      };
      const y = (v) =>
        plot.bottom - ((v - ticks.low) / (ticks.high - ticks.low)) * (plot.bottom - plot.top);
      // On a whole device pixel, or between two for an odd width, so a line is never blurred
      // across two rows of pixels.
      const snap = (value, widthPx) => {
        const device = Math.round(value * ratio);
        return (widthPx % 2 === 1 ? device + 0.5 : device) / ratio;
      };

      // Grid and labels: a line per round value, a line every few seconds of clock time.
      const gridPx = Math.max(1, Math.round(ratio));
      ctx.lineWidth = gridPx / ratio;
      ctx.strokeStyle = colors.grid;
      ctx.fillStyle = colors.label;
      ctx.beginPath();
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const value of ticks.values) {
        const py = snap(y(value), gridPx);
        ctx.moveTo(plot.left, py);
        ctx.lineTo(plot.right, py);
        ctx.fillText(formatCount(value), plot.left - 8, py);
      }
      const plotWidth = plot.right - plot.left;
      const stepS = plotWidth >= 640 ? 10 : plotWidth >= 300 ? 15 : 30;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      for (let t = Math.ceil(start / stepS) * stepS; t <= end; t += stepS) {
        const px = snap(x(t), gridPx);
        ctx.moveTo(px, plot.top);
        ctx.lineTo(px, plot.bottom);
        const label = formatClock(new Date(t * 1000));
        const half = ctx.measureText(label).width / 2;
        if (px - half >= 0 && px + half <= width) {
          ctx.fillText(label, px, plot.bottom + 7);
        }
      }
      ctx.stroke();
      ctx.strokeStyle = colors.axis;
      ctx.beginPath();
      const axisY = snap(plot.bottom, gridPx);
      ctx.moveTo(plot.left, axisY);
      ctx.lineTo(plot.right, axisY);
      ctx.stroke();

      if (shown.length === 0) {
        ctx.fillStyle = colors.label;
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText(empty, (plot.left + plot.right) / 2, (plot.top + plot.bottom) / 2);
        return;
      }

      // The value holds until it changes, so the line is a staircase, on to the window's end.
      const linePx = Math.max(1, Math.round(CHART_LINE_WIDTH_PX * ratio));
      const line = new Path2D();
      let firstX = 0;
      let lastY = 0;
      shown.forEach((point, index) => {
        const px = snap(x(point.t), linePx);
        const py = snap(y(point.v), linePx);
        if (index === 0) {
          line.moveTo(px, py);
          firstX = px;
        } else {
          line.lineTo(px, lastY);
          line.lineTo(px, py);
        }
        lastY = py;
      });
      const endX = snap(x(end), linePx);
      line.lineTo(endX, lastY);

      const area = new Path2D(line);
      area.lineTo(endX, plot.bottom);
      area.lineTo(firstX, plot.bottom);
      area.closePath();
      ctx.fillStyle = colors.fill;
      ctx.fill(area);

      ctx.strokeStyle = colors.line;
      ctx.lineWidth = linePx / ratio;
      ctx.lineJoin = "miter";
      ctx.stroke(line);

      // The latest value, at the right end of the line.
      ctx.fillStyle = colors.line;
      ctx.beginPath();
      ctx.arc(endX, lastY, 4, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  return {
    CHART_WINDOW_S,
    niceStep,
    LiveChart,
  };
});
