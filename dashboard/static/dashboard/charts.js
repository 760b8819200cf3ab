/* Delivery Sentinel — time-series charts on uPlot, shared by the detail and compare pages.
 *
 *   const chart = DS.chart(el, [["lost", "lost", "#b42318"], ...], { kind: "events" });
 *   chart.draw(series);                 // the windows API's columnar shape: {t: [...], lost: [...]}
 *   chart.setMarks([{t, label, colour, strong}]);   // vertical annotation lines
 *
 * One time convention everywhere: UTC, 24-hour (the pages say so once). Latency charts
 * (kind "latency") use a log scale; event charts mark only the windows where something
 * happened, never the zeros; an optional SLO draws as a dashed horizontal line. Each chart
 * keeps a text alternative in the element named by its figure's aria-describedby: the
 * latest value of every series. Charts compared side by side pass ``shared: {x(), y()}``:
 * the x range ([min, max]) and the largest y value of all of them, so they line up. */
(function () {
  "use strict";

  const HEIGHT = 200;
  const MIN_WIDTH = 240;

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  /* A Unix time as the pages write it: UTC, 24-hour; ``parts`` picks how much of it. */
  function utc(t, parts) {
    const d = new Date(t * 1000);
    const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    if (parts === "full") return `${date} ${hm}:${pad(d.getUTCSeconds())}`;
    if (parts === "day") return `${date.slice(5)} ${hm}`;
    if (parts === "seconds") return `${hm}:${pad(d.getUTCSeconds())}`;
    return hm;
  }

  function axisTimes(u, splits, _axis, _space, incr) {
    const span = u.scales.x.max - u.scales.x.min;
    const parts = span > 86400 ? "day" : incr < 60 ? "seconds" : "minutes";
    return splits.map((t) => utc(t, parts));
  }

  function nonZero(u, seriesIdx) {
    const values = u.data[seriesIdx];
    const shown = [];
    for (let i = 0; i < values.length; i++) if (values[i]) shown.push(i);
    return shown;
  }

  /* A colour given as a custom property ("--line-blue", dashboard.css: light and dark values
   * that keep 4.5:1 against the page) resolved to its value; any other colour as it is. */
  function css(name, fallback) {
    if (!String(name).startsWith("--")) return name;
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  /* An event marker: a numbered dot at the top of its line; its label is in the page's list
   * (#chart-marks), so labels of events close together never smear into one another. */
  function drawSymbol(ctx, x, top, text) {
    const r = 7 * devicePixelRatio;
    ctx.save();
    ctx.setLineDash([]);
    ctx.beginPath();
    ctx.arc(x, top + r, r, 0, 2 * Math.PI);
    ctx.fill();
    ctx.fillStyle = "#fff";
    ctx.font = `700 ${Math.round(9 * devicePixelRatio)}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(text, x, top + r + 0.5);
    ctx.restore();
  }

  /* The labels of the markers shown, numbered as drawn, in the page's #chart-marks list (every
   * chart of a page shows the same range and marks: the list is written once per change). */
  function listMarks(shown) {
    const list = document.getElementById("chart-marks");
    if (!list) return;
    const key = JSON.stringify(shown.map((m) => [m.n, m.t, m.label]));
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren(
      ...shown.map((m) => {
        const li = document.createElement("li");
        li.dataset.mark = String(m.n);
        const symbol = document.createElement("span");
        symbol.className = "mark-symbol";
        symbol.style.background = css(m.colour, "#57606a");
        symbol.textContent = String(m.n);
        li.append(symbol, ` ${utc(m.t, "seconds")} UTC ${m.label || ""}`);
        return li;
      }),
    );
    list.hidden = shown.length === 0;
  }

  /* Y-axis tick labels, short (DS.format.compact), and an axis as wide as its widest label,
   * so no label is clipped. */
  function yValues(u, splits) {
    return splits.map((v) => (v == null ? "" : DS.format.compact(v)));
  }

  function ySize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size; // settled: uPlot asks again while it converges
    const longest = Math.max(0, ...(values || []).map((v) => String(v).length));
    return Math.max(40, Math.ceil(longest * 7.5) + 18);
  }

  /* Draws the annotation lines (and the SLO line) over the plot area. */
  function drawOverlay(u, marks, slo) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    let drawn = 0;
    const shown = [];
    ctx.save();
    ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    for (const mark of marks) {
      if (mark.t < u.scales.x.min || mark.t > u.scales.x.max) continue;
      const x = Math.round(u.valToPos(mark.t, "x", true));
      ctx.strokeStyle = css(mark.colour, "#57606a");
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = (mark.strong ? 3 : 1.5) * devicePixelRatio;
      ctx.setLineDash(mark.strong ? [] : [4 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      drawn += 1;
      drawSymbol(ctx, x, top, String(drawn));
      shown.push({ ...mark, n: drawn });
    }
    if (slo != null && u.scales.y.min != null && slo >= u.scales.y.min && slo <= u.scales.y.max) {
      const y = Math.round(u.valToPos(slo, "y", true));
      ctx.strokeStyle = css("--violated", "#b42318");
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
      // Labelled at the right end, on whichever side of the line stays inside the plot.
      ctx.textAlign = "right";
      const above = y - top > 16 * devicePixelRatio;
      ctx.textBaseline = above ? "bottom" : "top";
      ctx.fillText(`SLO p99 ${slo} ms`, left + width - 4, above ? y - 2 : y + 2);
    }
    ctx.restore();
    listMarks(shown);
    // What is drawn, for whoever inspects the page (and its browser tests).
    u.root.parentElement.dataset.marks = String(drawn);
    u.root.parentElement.dataset.xMin = String(u.scales.x.min ?? "");
    u.root.parentElement.dataset.xMax = String(u.scales.x.max ?? "");
  }

  function chart(el, defs, options = {}) {
    const log = options.kind === "latency";
    const events = options.kind === "events";
    let marks = [];
    let slo = options.slo ?? null;
    // Charts compared side by side share their axes (options.shared: {x(), y()}).
    const shared = options.shared || {};
    const top = () => (shared.y && shared.y()) || 0;

    // The SLO stays in view: the line is the point of the chart when latency is far below it.
    function logRange(u, min, max) {
      let lo = min;
      let hi = max == null ? max : Math.max(max, top());
      if (slo != null) {
        lo = lo == null ? slo : Math.min(lo, slo);
        hi = hi == null ? slo : Math.max(hi, slo);
      }
      if (lo == null || hi == null) return [1, 100];
      return uPlot.rangeLog(lo, hi, 10, true);
    }
    const textColour = getComputedStyle(document.body).color;
    const gridColour = "rgba(128, 128, 128, 0.25)";
    const axis = { stroke: textColour, grid: { stroke: gridColour }, ticks: { stroke: gridColour } };
    const width = () => Math.max(MIN_WIDTH, el.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: HEIGHT,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        scales: {
          x: { time: true, range: (u, min, max) => (shared.x && shared.x()) || [min, max] },
          y: log
            ? { distr: 3, range: logRange }
            : { range: (u, min, max) => [0, Math.max(max || 0, top(), events ? 1 : 0.001)] },
        },
        series: [
          { value: (u, t) => (t == null ? "—" : utc(t, "full")) },
          ...defs.map(([, label, colour]) => ({
            label,
            stroke: css(colour, colour),
            width: 1.5,
            points: events ? { show: true, filter: nonZero, size: 7 } : { show: false },
          })),
        ],
        axes: [{ ...axis, values: axisTimes }, { ...axis, values: yValues, size: ySize }],
        hooks: { draw: [(u) => drawOverlay(u, marks, slo)] },
      },
      [[], ...defs.map(() => [])],
      el,
    );
    const resize = () => plot.setSize({ width: width(), height: HEIGHT });
    window.addEventListener("resize", resize);

    function describe(series) {
      const target = options.caption;
      if (!target) return;
      const n = series.t.length;
      const latest = defs.map(([name, label]) => {
        const values = series[name] || [];
        for (let i = n - 1; i >= 0; i--) {
          if (values[i] != null) return `${label} ${DS.format.compact(values[i])}`;
        }
        return `${label} no data`;
      });
      target.textContent = n
        ? `Latest (${utc(series.t[n - 1], "full")} UTC): ${latest.join(", ")}.`
        : "No data in this range.";
    }

    return {
      plot,
      draw(series) {
        const columns = defs.map(([name]) => {
          const values = series[name] || [];
          // A log scale has no zero: a window without latency is a gap, not a cliff.
          return log ? values.map((v) => (v > 0 ? v : null)) : values;
        });
        plot.setData([series.t, ...columns]);
        describe(series);
      },
      setMarks(next) {
        marks = next;
        plot.redraw(false, false);
      },
      setSlo(value) {
        slo = value;
        plot.redraw(false, false);
      },
    };
  }

  window.DS = Object.assign(window.DS || {}, { chart, utc, css });
})();
