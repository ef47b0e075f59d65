/*
 * The Live panel's charts: a step chart of {t, v} points over the last ten minutes, on a canvas,
 * the series' unit over its axis.
 *
 * What this file is for: drawing, at most once per animation frame, crisp on a phone's dense
 * screen (sized in device pixels, lines on whole pixels), in colours taken from CSS (so it
 * follows dark mode), with round axis labels (niceStep), whole or decimal.
 *
 * What it is not: a charting library. It draws one kind of chart; the points, and when they
 * change, belong to the Live panel (js/panels.js).
 */
echoPage.define("chart", ["format"], function (page) {
  "use strict";

  const { formatClock } = page;

  // The time the chart shows, in seconds up to its right edge: the server keeps 600 points
  // of each series, ten minutes of a sensor read each second.
  const CHART_WINDOW_S = 600;
  const CHART_LINE_WIDTH_PX = 2;
  const CHART_FONT_PX = 12;
  // Time labels: a round number of seconds apart, at least this many pixels apart.
  const TIME_STEPS_S = [10, 15, 30, 60, 120, 300, 600];
  const TIME_LABEL_MIN_PX = 90;
  // The smallest step for values that are not all whole numbers (0.001 apart at finest).
  const SMALLEST_FRACTION = 0.001;

  /**
   * A round step for axis labels near `rough`: 1, 2 or 5 times a power of ten, at least
   * `smallest` (1 by default: counts have no step of a half).
   */
  function niceStep(rough, smallest = 1) {
    if (!(rough > smallest)) {
      return smallest;
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

  /** Round axis values covering low..high in about `count` steps: {low, high, values, step}. */
  function axisTicks(low, high, count, smallest) {
    const step = niceStep((high - low) / Math.max(1, count), smallest);
    const bottom = Math.floor(low / step) * step;
    const top = Math.max(Math.ceil(high / step) * step, bottom + step);
    const values = [];
    // Counted in steps, not summed, so that 0.1 + 0.2 does not creep off the round values.
    for (let index = 0; bottom + index * step <= top + step / 2; index += 1) {
      values.push(bottom + index * step);
    }
    return { low: bottom, high: top, values: values, step: step };
  }

  /** An axis value as text, with as many decimals as its step has: "21.5", "1,200". */
  function axisLabel(value, step) {
    const decimals = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
    return value.toLocaleString(undefined, {
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
    });
  }

  /**
   * A step chart of {t, v} points (t in Unix seconds) over the CHART_WINDOW_S seconds up to
   * `end`, drawn on a canvas. It draws only when asked, at most once per animation frame; it
   * sizes the canvas in device pixels and puts lines on whole pixels, so they stay crisp on a
   * phone's dense screen; it takes its colours from CSS, so it follows dark mode.
   *
   * `source()` returns {points, end, empty, unit}: what to draw, the text for no points, and
   * the unit written over the value axis ("" for none).
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

      const { points, end, empty, unit } = this.source();
      const start = end - CHART_WINDOW_S;
      const shown = pointsSince(points, start);
      const values = shown.map((point) => point.v);
      let low = values.length > 0 ? Math.min(...values) : 0;
      let high = values.length > 0 ? Math.max(...values) : 10;
      const labelsWanted = Math.max(2, Math.floor(height / 56));
      const smallest = values.every(Number.isInteger) ? 1 : SMALLEST_FRACTION;
      if (high === low) {
        // A flat line: in the middle of the chart, not along its floor.
        const margin = Math.max(smallest, Math.abs(low) * 0.05);
        low -= margin;
        high += margin;
      }
      const ticks = axisTicks(low, high, labelsWanted, smallest);
      const labels = ticks.values.map((value) => axisLabel(value, ticks.step));
      const labelWidth = Math.max(...labels.map((label) => ctx.measureText(label).width));
      const plot = {
        left: Math.ceil(labelWidth) + 12,
        right: width - 14,
        top: unit ? CHART_FONT_PX + 18 : 12,
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
      ticks.values.forEach((value, index) => {
        const py = snap(y(value), gridPx);
        ctx.moveTo(plot.left, py);
        ctx.lineTo(plot.right, py);
        ctx.fillText(labels[index], plot.left - 8, py);
      });
      if (unit) {
        // The unit over the value axis, as on a chart drawn by hand.
        ctx.textAlign = "left";
        ctx.textBaseline = "top";
        ctx.fillText(unit, 4, 2);
        ctx.textAlign = "center";
      }
      const plotWidth = plot.right - plot.left;
      const fits = Math.max(1, Math.floor(plotWidth / TIME_LABEL_MIN_PX));
      const stepS =
        TIME_STEPS_S.find((step) => CHART_WINDOW_S / step <= fits) ||
        TIME_STEPS_S[TIME_STEPS_S.length - 1];
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
