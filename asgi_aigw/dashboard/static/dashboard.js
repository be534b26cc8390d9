// The usage dashboard: reads api/summary and draws it as inline SVG. No library, no external asset.
// Every name from the log (tenants, models, ids) is written with textContent, never as markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2f6fdf", "#e0962f", "#2f9e6b", "#9b59b6", "#d64545", "#17a2b8", "#8c6d31", "#e377c2",
    "#7f7f7f", "#bcbd22"];
  const KINDS = [["budget", "429 budget / rate limit"], ["pii", "422 PII blocked"],
    ["upstream", "5xx upstream / gateway"], ["client", "other 4xx"], ["disconnected", "499 client left"]];
  let summary = null;

  const integer = (n) => Math.round(n).toLocaleString("en-US");
  const compact = (n) => n.toLocaleString("en-US", {notation: "compact", maximumFractionDigits: 1});
  const ms = (n) => n.toLocaleString("en-US", {maximumFractionDigits: 1});
  function money(n) {
    // cheap requests cost fractions of a cent: keep two significant digits below 0.01
    if (n === 0 || !isFinite(n)) return "$0.00";
    if (Math.abs(n) >= 0.01) return "$" + n.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 4});
    const decimals = Math.min(12, 1 - Math.floor(Math.log10(Math.abs(n))));
    return "$" + n.toFixed(decimals);
  }
  const METRICS = {cost: money, total_tokens: integer, requests: integer};

  function el(tag, attrs = {}, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setOutput(id, text, value) {
    const node = $(id);
    node.textContent = text;
    if (value !== undefined) node.dataset.value = String(value);
  }

  // -- filters <-> URL <-> API ------------------------------------------------------------------------

  function params() {
    const range = $("range").value;
    const out = new URLSearchParams();
    if (range === "custom") {
      if ($("since").value) out.set("since", $("since").value);
      if ($("until").value) {  // "To" is inclusive: the API's until is the next day's start
        const end = new Date($("until").value + "T00:00:00Z");
        end.setUTCDate(end.getUTCDate() + 1);
        out.set("until", end.toISOString().slice(0, 10));
      }
    } else {
      out.set("since", range);
    }
    if ($("tenant").value) out.set("tenant", $("tenant").value);
    return out;
  }

  function restore() {
    const query = new URLSearchParams(location.search);
    const since = query.get("since") || document.body.dataset.defaultRange;
    if (since && !/^\d{4}-/.test(since) && ![...$("range").options].some((o) => o.value === since)) {
      $("range").insertBefore(el("option", {value: since}, `Last ${since}`), $("range").options[0]);
    }
    if (since && [...$("range").options].some((o) => o.value === since)) {
      $("range").value = since;
    } else if (since) {
      $("range").value = "custom";
      $("since").value = since.slice(0, 10);
      if (query.get("until")) {
        const end = new Date(query.get("until").slice(0, 10) + "T00:00:00Z");
        end.setUTCDate(end.getUTCDate() - 1);
        $("until").value = end.toISOString().slice(0, 10);
      }
    }
    const tenant = query.get("tenant");
    if (tenant) $("tenant").append(el("option", {value: tenant}, tenant));
    $("tenant").value = tenant || "";
    $("filters").classList.toggle("custom-range", $("range").value === "custom");
  }

  async function load() {
    const query = params();
    history.replaceState(null, "", "?" + query.toString());
    $("filters").classList.toggle("custom-range", $("range").value === "custom");
    $("status").textContent = "Loading…";
    $("status").className = "";
    document.body.dataset.state = "loading";
    try {
      const response = await fetch("api/summary?" + query.toString(), {headers: {accept: "application/json"}});
      const data = await response.json();
      if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
      summary = data;
      render();
      $("status").textContent = `Updated ${new Date().toLocaleTimeString()} · ${data.query_ms} ms`;
      document.body.dataset.state = "ready";
    } catch (error) {
      $("status").textContent = String(error.message || error);
      $("status").className = "error";
      document.body.dataset.state = "error";
    }
  }

  // -- drawing ----------------------------------------------------------------------------------------

  function render() {
    const t = summary.totals;
    setOutput("kpi-requests", integer(t.requests), t.requests);
    setOutput("kpi-tokens", integer(t.total_tokens), t.total_tokens);
    $("kpi-tokens-split").textContent = `${integer(t.prompt_tokens)} in · ${integer(t.completion_tokens)} out`;
    setOutput("kpi-cost", money(t.cost), t.cost);
    const ratio = t.cache_hit_ratio;
    setOutput("kpi-hit-rate", ratio === null ? "–" : (ratio * 100).toFixed(1) + "%", ratio ?? "");
    $("kpi-hits").textContent = `${integer(t.cache_hits)} hits of ${integer(t.cache_lookups)} lookups`;
    setOutput("kpi-saved", money(t.saved), t.saved);
    for (const p of ["p50", "p95", "p99"]) setOutput("kpi-" + p, ms(t[p + "_ms"]), t[p + "_ms"]);
    tenantOptions();
    timeChart();
    barChart($("chart-errors"), KINDS.map(([kind, label]) => ({key: kind, label, value: summary.errors[kind]})),
      integer, "#d64545");
    barChart($("chart-latency"), ["p50", "p95", "p99"].map((p) => ({key: p, label: p, value: t[p + "_ms"]})),
      ms, "#2f6fdf");
    budgets();
    table($("table-tenants"), summary.tenants, [["Tenant", (r) => r.tenant || "(none)"],
      ["Requests", (r) => integer(r.requests)], ["Tokens", (r) => integer(r.total_tokens)],
      ["Spend", (r) => money(r.cost)], ["Cache hits", (r) => integer(r.cache_hits)],
      ["p95 ms", (r) => ms(r.p95_ms)]]);
    table($("table-models"), summary.models, [["Model", (r) => r.model || "(none)"],
      ["Requests", (r) => integer(r.requests)], ["Tokens", (r) => integer(r.total_tokens)],
      ["Spend", (r) => money(r.cost)], ["Hit rate", (r) => r.cache_hit_ratio === null ? "–" : (r.cache_hit_ratio * 100).toFixed(1) + "%"],
      ["p50 ms", (r) => ms(r.p50_ms)], ["p95 ms", (r) => ms(r.p95_ms)]]);
    const requestColumns = [["Request id", (r) => r.request_id, "id"], ["Tenant", (r) => r.tenant],
      ["Model", (r) => r.model], ["Status", (r) => String(r.status)], ["Cache", (r) => r.cache_status || "–"],
      ["ms", (r) => ms(r.latency_ms)], ["Spend", (r) => money(r.cost)],
      ["When (UTC)", (r) => r.timestamp.slice(0, 19).replace("T", " ")]];
    table($("table-slowest"), summary.slowest, requestColumns);
    table($("table-dearest"), summary.dearest, requestColumns);
  }

  function tenantOptions() {
    const select = $("tenant");
    const current = select.value;
    const names = new Set(summary.tenant_names);
    if (current) names.add(current);
    select.replaceChildren(el("option", {value: ""}, "All tenants"));
    for (const name of [...names].sort()) select.append(el("option", {value: name}, name || "(none)"));
    select.value = current;
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function timeChart() {
    const metric = $("metric").value;
    const split = $("split").value;
    const format = METRICS[metric];
    const days = summary.days;
    const series = Object.entries(summary.series[split])
      .map(([name, s]) => ({name, values: s[metric], sum: s[metric].reduce((a, b) => a + b, 0)}))
      .sort((a, b) => b.sum - a.sum || a.name.localeCompare(b.name));
    const stacks = days.map((_, i) => series.reduce((a, s) => a + s.values[i], 0));
    const total = stacks.reduce((a, b) => a + b, 0);
    setOutput("chart-total", format(total), total);

    const W = 960, H = 260, left = 70, right = 10, top = 10, bottom = 28;
    const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${metric} per day per ${split}`});
    const max = niceMax(Math.max(0, ...stacks));
    const y = (v) => top + (H - top - bottom) * (1 - v / max);
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      svg.append(el("svg:line", {x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid-line"}));
      svg.append(el("svg:text", {x: left - 6, y: y(v) + 4, "text-anchor": "end"}, format(v)));
    }
    const slot = (W - left - right) / Math.max(1, days.length);
    const width = Math.max(1, slot * 0.75);
    const every = Math.ceil(days.length / 12);
    days.forEach((day, i) => {
      const x = left + slot * i + (slot - width) / 2;
      let base = 0;
      series.forEach((s, j) => {
        const v = s.values[i];
        if (v <= 0) return;
        const rect = el("svg:rect", {x, y: y(base + v), width, height: y(base) - y(base + v),
          fill: PALETTE[j % PALETTE.length], class: "bar", "data-series": s.name, "data-day": day, "data-value": v});
        rect.append(el("svg:title", {}, `${day} · ${s.name || "(none)"}: ${format(v)}`));
        svg.append(rect);
        base += v;
      });
      if (i % every === 0) {
        svg.append(el("svg:text", {x: x + width / 2, y: H - 8, "text-anchor": "middle"}, day.slice(5)));
      }
    });
    $("chart-time").replaceChildren(svg);
    $("legend").replaceChildren(...series.map((s, j) => {
      const item = el("li", {}, `${s.name || "(none)"} ${format(s.sum)}`);
      item.style.setProperty("--swatch", PALETTE[j % PALETTE.length]);
      return item;
    }));
  }

  function barChart(container, items, format, color) {
    const W = 460, row = 26, left = 170, right = 70;
    const H = row * items.length + 6;
    const max = Math.max(0, ...items.map((i) => i.value)) || 1;
    const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
    items.forEach((item, i) => {
      const yy = 3 + i * row;
      svg.append(el("svg:text", {x: left - 8, y: yy + 16, "text-anchor": "end"}, item.label));
      svg.append(el("svg:rect", {x: left, y: yy + 4, height: row - 10, width: ((W - left - right) * item.value) / max,
        fill: color, class: "bar", "data-key": item.key, "data-value": item.value}));
      svg.append(el("svg:text", {x: W - right + 6, y: yy + 16, class: "value", id: `${container.id}-${item.key}`,
        "data-value": item.value}, format(item.value)));
    });
    container.replaceChildren(svg);
  }

  function budgets() {
    const box = $("budgets");
    const info = summary.budgets;
    if (!info.enabled) {
      box.replaceChildren(el("p", {class: "empty"}, "No budget store is configured."));
      return;
    }
    const blocks = info.tenants.map((tenant) => {
      const block = el("div", {class: "budget", "data-tenant": tenant.tenant});
      block.append(el("h3", {}, tenant.tenant || "(none)"));
      if (!tenant.windows.length) block.append(el("p", {class: "empty"}, "No limits."));
      for (const w of tenant.windows) {
        const fmt = w.metric === "cost" ? money : compact;
        const share = w.limit > 0 ? Math.min(1, w.used / w.limit) : 1;
        const line = el("div", {class: "window", "data-window": w.window});
        const bar = el("div", {class: "meter"});
        const fill = el("span", {class: share >= 0.9 ? "bad" : share >= 0.7 ? "warn" : ""});
        fill.style.width = (share * 100).toFixed(1) + "%";
        bar.append(fill);
        const reset = w.resets_in_seconds < 120 ? `${Math.ceil(w.resets_in_seconds)} s`
          : w.resets_in_seconds < 7200 ? `${Math.ceil(w.resets_in_seconds / 60)} min`
            : `${Math.ceil(w.resets_in_seconds / 3600)} h`;
        line.append(el("span", {}, w.label), bar,
          el("span", {class: "left", "data-remaining": w.remaining},
            `${fmt(w.used)} of ${fmt(w.limit)} used · ${fmt(w.remaining)} left · resets in ${reset}`));
        line.title = `${w.label}: limit from ${w.source}`;
        block.append(line);
      }
      return block;
    });
    if (info.error) blocks.unshift(el("p", {class: "empty"}, "The budget store cannot be read: " + info.error));
    if (!blocks.length) blocks.push(el("p", {class: "empty"}, "No tenant in this range."));
    box.replaceChildren(...blocks);
  }

  function table(node, rows, columns) {
    const head = el("tr");
    for (const [title] of columns) head.append(el("th", {}, title));
    const body = rows.map((r) => {
      const tr = el("tr");
      for (const [, cell, cls] of columns) tr.append(el("td", cls ? {class: cls} : {}, cell(r)));
      return tr;
    });
    if (!rows.length) {
      const tr = el("tr");
      tr.append(el("td", {colspan: columns.length, class: "empty"}, "No requests in this range."));
      body.push(tr);
    }
    node.replaceChildren(el("thead"), el("tbody"));
    node.tHead.append(head);
    node.tBodies[0].append(...body);
  }

  document.addEventListener("DOMContentLoaded", () => {
    restore();
    for (const id of ["range", "since", "until", "tenant"]) $(id).addEventListener("change", load);
    for (const id of ["metric", "split"]) $(id).addEventListener("change", () => summary && timeChart());
    load();
  });
})();
