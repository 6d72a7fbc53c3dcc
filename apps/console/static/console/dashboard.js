/* kAI operator console: the live dashboard. Plain JS, no build step.
 *
 * Runs arrive over the console socket (/api/v1/ws/console, the hub socket's protocol): the page
 * fetches a short-lived token for its session, subscribes to `execution_status`, and updates a
 * row in place on each status change (fetching the row when it is new, and again when it ends, for
 * cost and duration). A closed socket reconnects with a fresh token and `last_event_id`, so the
 * server replays what was missed. The panels (queues, workers, failures, cost) refresh every 10 s
 * and shortly after a run ends.
 */
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("console-config").textContent);
  const initial = JSON.parse(document.getElementById("console-data").textContent);
  const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
  const MAX_ROWS = 100;
  const state = { socket: "connecting", lastSeq: null, events: 0, reconnects: 0 };
  window.kaiConsole = state;

  const $ = (id) => document.getElementById(id);
  const query = config.query ? "?" + config.query : "";

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value == null ? "" : String(value);
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function adminLink(path, text) {
    if (!config.admin_url) return el("span", { text });
    return el("a", { href: config.admin_url + path, text });
  }

  function time(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour12: false });
  }

  function duration(ms) {
    if (ms == null) return "";
    return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }

  function money(value) {
    const n = Number(value || 0);
    return n === 0 ? "0" : n.toFixed(n < 0.01 ? 6 : 4);
  }

  function setSocket(name, label) {
    state.socket = name;
    const badge = $("socket-state");
    badge.dataset.state = name;
    badge.textContent = label || name;
  }

  function runPage(id) {
    return config.run_page_url.replace("00000000-0000-0000-0000-000000000000", id);
  }

  // --- runs table ------------------------------------------------------------------------------
  function statusBadge(status) {
    return el("span", { className: "status status-" + status, "data-field": "status", text: status });
  }

  function runRow(run) {
    const name = run.run_name || run.id.slice(0, 8);
    const tr = el("tr", { "data-run-id": run.id, "data-status": run.status }, [
      el("td", { className: "name" }, [el("a", { href: runPage(run.id), text: name })]),
      el("td", { className: "wrap" }, [adminLink("accounts/organization/" + run.organization_id + "/change/", run.organization)]),
      el("td", { text: run.kind }),
      el("td", { text: run.agent, className: "wide-only" }),
      el("td", {}, [statusBadge(run.status)]),
      el("td", { text: run.worker, "data-field": "worker", className: "wide-only" }),
      el("td", { text: time(run.started_at || run.created_at), "data-field": "started" }),
      el("td", { className: "num", text: duration(run.duration_ms), "data-field": "duration" }),
      el("td", { className: "num", text: run.tokens, "data-field": "tokens" }),
      el("td", { className: "num", text: money(run.cost), "data-field": "cost" }),
    ]);
    if (run.error) tr.title = run.error;
    return tr;
  }

  function findRow(id) {
    return document.querySelector('#runs tr[data-run-id="' + CSS.escape(id) + '"]');
  }

  function upsertRun(run, flash) {
    const existing = findRow(run.id);
    const row = runRow(run);
    if (existing) {
      // a late row fetch must not move the status backwards
      if (TERMINAL.has(existing.dataset.status) && !TERMINAL.has(run.status)) return;
      existing.replaceWith(row);
    } else {
      $("runs").prepend(row);
      const rows = $("runs").rows;
      while (rows.length > MAX_ROWS) rows[rows.length - 1].remove();
    }
    if (flash) row.classList.add("flash");
  }

  function setStatus(row, status) {
    if (TERMINAL.has(row.dataset.status) && !TERMINAL.has(status)) return;
    row.dataset.status = status;
    row.querySelector('[data-field="status"]').replaceWith(statusBadge(status));
    row.classList.remove("flash");
    void row.offsetWidth; // restart the animation
    row.classList.add("flash");
  }

  async function fetchJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) { window.location.reload(); throw new Error("signed out"); }
    if (!response.ok) throw new Error(url + " → " + response.status);
    return response.json();
  }

  async function fetchRun(id) {
    try {
      return await fetchJSON(config.run_url.replace("00000000-0000-0000-0000-000000000000", id) + query);
    } catch (err) {
      return null; // not in this scope (another organization under a staff filter) or gone
    }
  }

  async function onExecutionStatus(message) {
    const data = message.data || {};
    const id = data.execution_id;
    const status = data.status || data.to;
    if (!id || !status) return;
    if (config.organization_id && data.organization_id && data.organization_id !== config.organization_id) return;
    const row = findRow(id);
    if (row) setStatus(row, status);
    if (!row || TERMINAL.has(status)) {
      const run = await fetchRun(id);
      if (run) upsertRun(run, !row);
    }
    if (TERMINAL.has(status) || !row) schedulePanels(1000);
    if (TERMINAL.has(status)) window.dispatchEvent(new CustomEvent("kai:run-ended", { detail: { id, status } }));
  }

  // --- panels ----------------------------------------------------------------------------------
  function renderPanels(data) {
    $("count-running").textContent = data.counts.running;
    $("count-pending").textContent = data.counts.pending;
    $("count-failures").textContent = data.failures.count;
    $("count-workers").textContent = data.health.workers_healthy;
    $("count-queued").textContent = data.health.queues.reduce((sum, q) => sum + q.depth, 0);

    $("failures").replaceChildren(...(data.failures.latest.length ? data.failures.latest.map((run) => el("li", {}, [
      el("a", { href: runPage(run.id), text: run.run_name || run.id.slice(0, 8) }),
      el("span", { className: "muted", text: " · " + run.organization + " · " + time(run.completed_at) }),
      el("div", { className: "err", text: run.error }),
    ])) : [el("li", { className: "muted", text: "None." })]));

    const approvals = data.approvals || { count: 0, latest: [] };
    $("count-approvals").textContent = approvals.count;
    $("approvals").replaceChildren(...(approvals.latest.length ? approvals.latest.map((a) => el("li", {}, [
      adminLink("approvals/approval/" + a.id + "/change/", a.question),
      el("span", { className: "muted", text: " · " + a.organization + (a.run_name ? " · " + a.run_name : "") +
        (a.deadline ? " · due " + time(a.deadline) : "") }),
    ])) : [el("li", { className: "muted", text: "None." })]));

    $("cost-today").replaceChildren(...(data.cost_today.length ? data.cost_today.map((row) => el("tr", {}, [
      el("td", { className: "wrap" }, [adminLink("crews/usagerollup/?organization__id__exact=" + row.organization_id, row.organization)]),
      el("td", { className: "num", text: row.executions }),
      el("td", { className: "num", text: row.llm_calls }),
      el("td", { className: "num", text: row.tokens }),
      el("td", { className: "num", text: money(row.cost) }),
    ])) : [el("tr", {}, [el("td", { className: "muted", colspan: "5", text: "No usage today." })])]));

    $("queues").replaceChildren(...data.health.queues.map((q) => el("tr", {}, [
      el("td", { text: q.queue }), el("td", { className: "num", text: q.depth }),
    ])));
    $("workers").replaceChildren(...(data.health.workers.length ? data.health.workers.map((w) => el("tr", {}, [
      el("td", { text: w.name, className: w.healthy ? "" : "unhealthy" }),
      el("td", { className: "num", text: w.last_seen_seconds == null ? "?" : w.last_seen_seconds + " s ago" }),
    ])) : [el("tr", {}, [el("td", { className: "unhealthy", colspan: "2", text: "No live worker." })])]));
    const sockets = data.sockets || { count: 0, items: [] };
    $("count-sockets").textContent = sockets.count;
    $("sockets").replaceChildren(...(sockets.items.length ? sockets.items.map((row) => el("tr", {}, [
      el("td", { text: row.socket + " " + row.path }),
      el("td", { text: row.user }),
      el("td", { text: row.client_fingerprint || "–" }),
      el("td", { text: row.client_version || "–" }),
      el("td", { text: row.ip }),
      el("td", { text: time(new Date(parseFloat(row.connected_at) * 1000).toISOString()) }),
    ])) : [el("tr", {}, [el("td", { className: "muted", colspan: "6", text: sockets.error || "None." })])]));
    renderMaintenance(data.maintenance);
    const procs = data.health.processes;  // null when no `make run` supervisor runs this platform
    $("processes").replaceChildren(...(procs ? Object.entries(procs.children).map(([name, p]) => el("tr", {}, [
      el("td", { text: name, className: p.status === "running" ? "" : "unhealthy" }),
      el("td", { text: p.status + (p.deaths_last_minute ? " (" + p.deaths_last_minute + " deaths in the last minute)" : "") }),
      el("td", { className: "num", text: p.restarts }),
    ])) : [el("tr", {}, [el("td", { className: "muted", colspan: "3", text: "Not supervised by make run." })])]));
    const redisError = $("redis-error");
    redisError.hidden = !data.health.redis_error;
    redisError.textContent = data.health.redis_error ? "Redis: " + data.health.redis_error : "";
  }

  function renderMaintenance(m) {
    const banner = $("maintenance");
    banner.hidden = !(m && m.enabled);
    if (m && m.enabled) {
      $("maintenance-message").textContent = m.message || "new runs are refused";
      $("maintenance-until").textContent = m.until ? "(until " + time(m.until) + ")" : "";
    }
  }

  let panelTimer = null;
  function schedulePanels(delay) {
    clearTimeout(panelTimer);
    panelTimer = setTimeout(refreshPanels, delay);
  }

  async function refreshPanels() {
    try {
      renderPanels(await fetchJSON(config.data_url + query));
    } catch (err) {
      console.warn("dashboard refresh failed", err);
    }
    schedulePanels(10000);
  }

  // --- the socket ------------------------------------------------------------------------------
  let backoff = 500;
  async function connect() {
    let token;
    try {
      token = (await fetchJSON(config.token_url)).token;
    } catch (err) {
      setSocket("reconnecting", "offline, retrying…");
      setTimeout(connect, backoff = Math.min(backoff * 2, 15000));
      return;
    }
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams({ token });
    if (config.socket_organization) params.set("organization", config.socket_organization);
    const socket = new WebSocket(scheme + "//" + window.location.host + config.socket_path + "?" + params);
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      if (message.type === "connection_established") {
        const data = { events: ["execution_status"] };
        if (state.lastSeq != null) data.last_event_id = state.lastSeq;
        socket.send(JSON.stringify({ type: "subscribe", data }));
      } else if (message.type === "subscription_confirmed") {
        backoff = 500;
        setSocket("live", "live");
      } else if (message.type === "execution_status") {
        if (typeof message.seq === "number") state.lastSeq = Math.max(state.lastSeq || 0, message.seq);
        state.events += 1;
        onExecutionStatus(message);
      } else if (message.type === "maintenance_mode") {
        renderMaintenance(message.data);
      } else if (message.type === "connection_error") {
        console.warn("console socket:", message.data && message.data.error_message);
      }
    };
    socket.onclose = () => {
      state.reconnects += 1;
      setSocket("reconnecting", "reconnecting…");
      setTimeout(connect, backoff = Math.min(backoff * 2, 15000));
    };
  }

  for (const run of initial.runs.slice().reverse()) upsertRun(run, false);
  renderPanels(initial);
  schedulePanels(10000);
  connect();
})();
