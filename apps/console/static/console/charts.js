/* kAI operator console: the dashboard's charts (uPlot, vendored under static/console/vendor/).
 *
 * One JSON endpoint (/dashboard/charts?window=1h|24h|7d) feeds every chart; the page polls it every
 * 15 s and shortly after the console socket reports a run that ended (dashboard.js dispatches
 * `kai:run-ended`). window.kaiCharts exposes the data and the uPlot instances (tests read them)
 * and `firstChartMs`, the time from navigation start to the first chart drawn.
 */
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("console-config").textContent);
  const query = new URLSearchParams(config.query || "");
  const COLORS = ["#1d4ed8", "#0f7b3e", "#b42318", "#8a6d00", "#6b21a8", "#0e7490", "#9a3412", "#6b7280"];
  const state = { window: localStorage.getItem("kai.window") || "1h", data: null, plots: {}, fetches: 0,
                  firstChartMs: null };
  window.kaiCharts = state;
  const $ = (id) => document.getElementById(id);

  function money(v) { return v == null ? "" : "$" + Number(v).toFixed(v && v < 0.01 ? 6 : 4); }
  function count(v) { return v == null ? "" : Number(v).toLocaleString(); }
  function ms(v) { return v == null ? "" : v < 1000 ? Math.round(v) + " ms" : (v / 1000).toFixed(2) + " s"; }

  function width(el) { return Math.max(240, el.clientWidth - 4); }

  /** Bars narrower for each later series, so completed, failed and cancelled of one bucket all show. */
  function barsPath(share) {
    return uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [share, 40] }) : undefined;
  }

  function options(target, series, extra) {
    return Object.assign({
      width: width(target), height: 180, legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      series: [{}].concat(series),
      axes: [{ stroke: "#6b7280", grid: { stroke: "#eef0f3" } },
             { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, size: 56 }],
    }, extra || {});
  }

  function draw(name, series, values, extra) {
    const target = $("chart-" + name);
    const data = [state.data.times].concat(values);
    const existing = state.plots[name];
    if (existing && existing.series.length === series.length + 1 &&
        existing.series.slice(1).every((s, i) => s.label === series[i].label)) {
      existing.setData(data);
    } else {
      if (existing) existing.destroy();
      target.replaceChildren();
      state.plots[name] = new uPlot(options(target, series, extra), data, target);
    }
    target.dataset.points = String(values.reduce((n, v) => n + v.filter((x) => x != null && x !== 0).length, 0));
    if (state.firstChartMs == null) state.firstChartMs = Math.round(performance.now());
  }

  function line(label, color, fmt, more) {
    return Object.assign({ label, stroke: color, width: 1.6, value: (u, v) => fmt(v), spanGaps: false,
                           points: { show: true, size: 4 } }, more || {});
  }

  function render(data) {
    state.data = data;
    const per = data.bucket_seconds >= 3600 ? "hour" : data.bucket_seconds >= 900 ? "15 min" : "minute";
    document.querySelectorAll("[data-per]").forEach((el) => { el.textContent = per; });
    const runColors = { started: "#6b7280", completed: "#0f7b3e", failed: "#b42318", cancelled: "#8a6d00" };
    const share = { completed: 0.9, failed: 0.6, cancelled: 0.3 };
    draw("runs", Object.keys(runColors).map((k) => line(k, runColors[k], count,
      k === "started" ? {} : { fill: runColors[k] + "55", paths: barsPath(share[k]), points: { show: false } })),
      Object.keys(runColors).map((k) => data.runs[k]));
    draw("duration", [line("p50", "#1d4ed8", ms, { spanGaps: true }), line("p95", "#b42318", ms, { spanGaps: true })],
      [data.duration_ms.p50, data.duration_ms.p95]);
    const orgs = data.usage.tokens;
    draw("tokens", orgs.map((s, i) => line(s.organization, COLORS[i % COLORS.length], count,
      { fill: COLORS[i % COLORS.length] + "22" })), orgs.map((s) => s.values));
    draw("cost", data.usage.cost.map((s, i) => line(s.organization, COLORS[i % COLORS.length], money)),
      data.usage.cost.map((s) => s.values));
    draw("platform", [line("queued", "#8a6d00", count, { spanGaps: true }),
                      line("live workers", "#0f7b3e", count, { spanGaps: true, scale: "w" })],
      [data.platform.queue_depth, data.platform.workers],
      { axes: [{ stroke: "#6b7280", grid: { stroke: "#eef0f3" } }, { stroke: "#6b7280", size: 40 },
               { scale: "w", side: 1, stroke: "#0f7b3e", grid: { show: false }, size: 32 }],
        scales: { x: { time: true }, w: { range: (u, min, max) => [0, Math.max(2, max + 1)] } } });
    renderFailures(data.failures);
    const t = data.totals;
    $("chart-totals").textContent = `${count(t.started)} started · ${count(t.completed)} completed · ` +
      `${count(t.failed)} failed · ${count(t.cancelled)} cancelled · ${count(t.tokens)} tokens · ${money(t.cost)}`;
  }

  function renderFailures(failures) {
    const list = $("chart-failures");
    const top = Math.max(1, ...failures.map((f) => f.count));
    list.replaceChildren(...(failures.length ? failures.map((f) => {
      const row = document.createElement("li");
      row.dataset.errorClass = f.error_class;
      const link = document.createElement("a");
      link.href = config.run_page_url.replace("00000000-0000-0000-0000-000000000000", f.run_id);
      link.textContent = f.error_class;
      link.title = f.example;
      const bar = document.createElement("span");
      bar.className = "hbar";
      bar.style.width = (100 * f.count / top) + "%";
      const n = document.createElement("span");
      n.className = "num";
      n.textContent = f.count;
      row.append(link, bar, n);
      return row;
    }) : [Object.assign(document.createElement("li"), { className: "muted", textContent: "No failures." })]));
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    query.set("window", state.window);
    try {
      const response = await fetch(config.charts_url + "?" + query, { credentials: "same-origin" });
      if (response.ok) {
        render(await response.json());
        state.fetches += 1;
        $("charts").dataset.window = state.window;
        $("charts").dataset.fetches = String(state.fetches);
      }
    } catch (err) {
      console.warn("charts refresh failed", err);
    }
    timer = setTimeout(refresh, 15000);
  }

  let soon = null;
  window.addEventListener("kai:run-ended", () => { clearTimeout(soon); soon = setTimeout(refresh, 800); });
  document.querySelectorAll("#window-picker button").forEach((button) => {
    button.setAttribute("aria-pressed", String(button.dataset.window === state.window));
    button.addEventListener("click", () => {
      state.window = button.dataset.window;
      localStorage.setItem("kai.window", state.window);
      document.querySelectorAll("#window-picker button").forEach((b) =>
        b.setAttribute("aria-pressed", String(b === button)));
      refresh();
    });
  });
  new ResizeObserver(() => {
    for (const [name, plot] of Object.entries(state.plots)) {
      plot.setSize({ width: width($("chart-" + name)), height: 180 });
    }
  }).observe($("charts"));
  refresh();
})();
