/* Spend charts (dashboard and /spend): draws uPlot charts from the JSON embedded next to each
   <div class="chart" data-chart="..." data-source="id-of-json">. The table under each chart is its
   text alternative. Re-runs after htmx swaps. */
(function () {
  "use strict";
  var PALETTE = ["#2f6fde", "#e0803a", "#1f8a4c", "#c62f2f", "#8a4fd1", "#1a9fb0", "#b3861a",
                 "#d14f9a", "#5b6678", "#6b9a2f", "#7d5a3c"];
  var charts = [];

  function css(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function axis(scale, side, label, format) {
    var a = { scale: scale, side: side, label: label, stroke: css("--muted", "#5b6678"),
              grid: { stroke: css("--border", "#dfe3ea"), width: 1 },
              ticks: { stroke: css("--border", "#dfe3ea"), width: 1 } };
    if (format) { a.values = function (u, splits) { return splits.map(format); }; }
    a.size = side === 3 ? 64 : 50;  /* room for "$0.0080" so the axis label does not overlap it */
    if (side === 1) { a.grid = { show: false }; }
    return a;
  }

  function usd(v) {
    if (v == null) { return ""; }
    if (v === 0) { return "$0"; }
    return "$" + (Math.abs(v) < 0.01 ? v.toPrecision(2) : v.toFixed(2));
  }

  function options(kind, data, width) {
    var opts = {
      width: width, height: 280,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      scales: { x: { time: true } },
      legend: { live: true },
      cursor: { points: { size: 6 } },
      series: [{ label: data.period ? data.period.charAt(0).toUpperCase() + data.period.slice(1) : "Day",
                 value: "{YYYY}-{MM}-{DD}" }],
      axes: [{ stroke: css("--muted", "#5b6678"), grid: { stroke: css("--border", "#dfe3ea"), width: 1 },
               ticks: { stroke: css("--border", "#dfe3ea"), width: 1 } }]
    };
    if (data.period && data.period !== "day") {
      opts.axes[0].splits = function () { return data.x; };
      opts.axes[0].values = function (u, splits) { return splits.map(function (ts) {
        var label = data.labels[data.x.indexOf(ts)] || "";
        return data.period === "month" ? label.slice(0, 7) : label.slice(5); }); };
    }
    var values = [data.x];
    if (kind === "daily") {
      opts.scales.usd = { auto: true, range: function (u, min, max) { return [0, Math.max(max, 0.01) * 1.1]; } };
      opts.scales.req = { auto: true, range: function (u, min, max) { return [0, Math.max(max, 1) * 1.1]; } };
      opts.series.push({ label: "Spend (USD)", scale: "usd", stroke: PALETTE[0], width: 2,
                         fill: PALETTE[0] + "22", value: function (u, v) { return usd(v); } });
      opts.series.push({ label: "Requests", scale: "req", stroke: PALETTE[1], width: 2, dash: [6, 4] });
      opts.axes.push(axis("usd", 3, "USD", usd));
      opts.axes.push(axis("req", 1, "Requests"));
      values.push(data.cost.map(Number));
      values.push(data.requests);
    } else {
      opts.scales.usd = { auto: true, range: function (u, min, max) { return [0, Math.max(max, 0.01) * 1.1]; } };
      data.series.forEach(function (s, i) {
        opts.series.push({ label: s.label, scale: "usd", stroke: PALETTE[i % PALETTE.length], width: 2,
                           points: { show: true, size: 5 }, value: function (u, v) { return usd(v); } });
        values.push(s.cost.map(Number));
      });
      opts.axes.push(axis("usd", 3, "USD", usd));
    }
    return [opts, values];
  }

  function draw(root) {
    if (typeof uPlot === "undefined") { return; }
    charts = charts.filter(function (c) { return document.body.contains(c.root); });
    (root || document).querySelectorAll(".chart[data-chart]").forEach(function (el) {
      if (el.dataset.drawn) { return; }
      var source = document.getElementById(el.dataset.source);
      if (!source) { return; }
      var data = JSON.parse(source.textContent);
      if (el.dataset.chart !== "daily" && data.series.length === 0) {
        el.textContent = "No spend in this range.";
        el.dataset.drawn = "empty";
        return;
      }
      var built = options(el.dataset.chart, data, Math.max(el.clientWidth, 300));
      el.dataset.drawn = "yes";
      charts.push({ root: el, plot: new uPlot(built[0], built[1], el) });
    });
  }

  function redraw() {
    charts.forEach(function (c) { c.plot.destroy(); delete c.root.dataset.drawn; });
    charts = [];
    draw(document);
  }

  function resize() {
    charts.forEach(function (c) { c.plot.setSize({ width: Math.max(c.root.clientWidth, 300), height: 280 }); });
  }

  draw(document);
  document.addEventListener("htmx:afterSwap", function (event) { draw(event.target); });
  if (window.matchMedia) {
    var scheme = window.matchMedia("(prefers-color-scheme: dark)");
    if (scheme.addEventListener) { scheme.addEventListener("change", redraw); }
  }
  var timer = null;
  window.addEventListener("resize", function () { clearTimeout(timer); timer = setTimeout(resize, 150); });
}());
