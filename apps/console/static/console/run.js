/* kAI operator console: one run's page — header, a waterfall of its spans (nested, to scale in
 * time, each span's log lines under it; click a span for its details), its workflow graph coloured
 * by step state, status changes, approvals. While the run is not over the page re-reads
 * /dashboard/run/<id>/trace every 1.5 s, so spans appear as they are recorded.
 * window.kaiRun exposes the trace and the number of polls (tests read them).
 */
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("console-config").textContent);
  const state = { trace: JSON.parse(document.getElementById("run-trace").textContent), polls: 0, open: new Set() };
  window.kaiRun = state;
  const $ = (id) => document.getElementById(id);
  const ZERO = "00000000-0000-0000-0000-000000000000";

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value == null ? "" : String(value);
      else if (key === "className") node.className = value;
      else if (key === "style") node.style.cssText = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }
  function ms(v) {
    if (v == null) return "–";
    const a = Math.abs(v), sign = v < 0 ? "−" : "";
    return sign + (a < 1000 ? Math.round(a) + " ms" : (a / 1000).toFixed(2) + " s");
  }
  function at(v) { return (v != null && v >= 0 ? "+" : "") + ms(v); }
  function money(v) { const n = Number(v || 0); return "$" + (n === 0 ? "0" : n.toFixed(n < 0.01 ? 6 : 4)); }
  function when(iso) { return iso ? new Date(iso).toLocaleString([], { hour12: false }) : "–"; }
  function url(name, id) { return config.urls[name].replace(ZERO, id); }

  // --- header ----------------------------------------------------------------------------------
  function renderHeader(run) {
    $("run-header").dataset.status = run.status;
    $("run-status").className = "status status-" + run.status;
    $("run-status").textContent = run.status;
    const facts = [
      ["Organization", run.organization], ["Started by", run.who || "–"], ["Agent", run.agent || "–"],
      ["Created", when(run.created_at)], ["Started", when(run.started_at)], ["Ended", when(run.completed_at)],
      ["Duration", ms(run.duration_ms)], ["Tokens", `${run.tokens_in} in · ${run.tokens_out} out`],
      ["Cost", money(run.cost)], ["Attempts", `${run.attempts} of ${run.max_attempts}`],
      ["Worker", run.worker || "–"], ["Model", run.model || "–"], ["Trace id", run.trace_id],
    ];
    const parts = facts.map(([k, v]) => el("div", {}, [el("dt", { text: k }), el("dd", { text: v, "data-fact": k })]));
    if (run.steps_tokens != null) parts.push(el("div", {}, [el("dt", { text: "With its steps" }),
      el("dd", { text: `${run.steps_tokens} tokens · ${money(run.steps_cost)}`, "data-fact": "steps" })]));
    if (run.parent_id) parts.push(el("div", {}, [el("dt", { text: "Parent run" }),
      el("dd", {}, [el("a", { href: url("run_page", run.parent_id), text: run.parent_id.slice(0, 8) })])]));
    if (run.crew_id) parts.push(el("div", {}, [el("dt", { text: "Crew" }),
      el("dd", {}, [el("a", { href: url("crew_page", run.crew_id), text: "graph" })])]));
    $("run-facts").replaceChildren(...parts);
    $("run-error").textContent = run.error || "";
    $("cancel-form").hidden = !run.can_cancel;
    $("replay-form").hidden = !run.can_retry;
  }

  // --- waterfall -------------------------------------------------------------------------------
  function spanMeta(span) {
    const bits = [];
    if (span.model) bits.push(span.model);
    if (span.tokens_in || span.tokens_out) bits.push(`${span.tokens_in} → ${span.tokens_out} tok`);
    if (Number(span.cost)) bits.push(money(span.cost));
    bits.push(ms(span.duration_ms));
    if (span.status !== "ok") bits.push(span.status);
    return bits.join(" · ");
  }

  function detail(span) {
    const a = span.attributes || {};
    const box = el("div", { className: "wf-detail", "data-detail-for": span.span_id });
    const fields = [["Kind", span.kind], ["Status", span.status], ["Start", at(span.start_ms)],
                    ["Latency", ms(span.duration_ms)]];
    if (span.kind === "llm") fields.push(["Model", span.model], ["Provider", a.provider || "–"],
                                         ["Tokens in / out", `${span.tokens_in} / ${span.tokens_out}`],
                                         ["Cost", money(span.cost)]);
    box.appendChild(el("dl", { className: "facts" }, fields.map(([k, v]) =>
      el("div", {}, [el("dt", { text: k }), el("dd", { text: v })]))));
    for (const key of ["arguments", "output", "error", "tool_calls", "tasks"]) {
      if (a[key] == null || a[key] === "") continue;
      const text = typeof a[key] === "string" ? a[key] : JSON.stringify(a[key], null, 2);
      box.append(el("div", { className: "muted small", text: key }), el("pre", { "data-attr": key, text }));
    }
    const rest = Object.fromEntries(Object.entries(a).filter(([k]) =>
      !["arguments", "output", "error", "tool_calls", "tasks"].includes(k)));
    if (Object.keys(rest).length) box.append(el("pre", { text: JSON.stringify(rest, null, 2) }));
    return box;
  }

  function logList(lines, depth) {
    if (!lines || !lines.length) return null;
    return el("ul", { className: "wf-logs", style: `padding-left:${(depth || 0) * 14 + 8}px` }, lines.map((l) => el("li", {
      className: "level-" + l.level, "data-seq": l.seq,
      text: `${at(l.at_ms)}  ${l.level.toUpperCase()}  ${l.message}`,
    })));
  }

  function bar(start, duration, total, className) {
    const left = Math.max(0, Math.min(100, 100 * (start || 0) / total));
    const width = Math.max(0.2, Math.min(100 - left, 100 * (duration || 0) / total));
    return el("div", { className, style: `left:${left}%;width:${width}%` });
  }

  function renderWaterfall(trace) {
    const total = trace.total_ms || 1;
    const logs = new Map();
    for (const line of trace.logs) {
      const key = line.span_id || "";
      if (!logs.has(key)) logs.set(key, []);
      logs.get(key).push(line);
    }
    const rows = [];
    const runLogs = logList(logs.get(""));
    if (runLogs) rows.push(el("div", { className: "wf-row wf-run" }, [
      el("div", { className: "wf-name" }, [el("span", { className: "kind", text: "run" }), el("span", { text: "run log" })]),
      el("div", { className: "wf-track" }, trace.events.map((e) => bar(e.at_ms, 0, total, "wf-mark"))), runLogs]));
    for (const span of trace.spans) {
      const row = el("div", {
        className: "wf-row" + (state.open.has(span.span_id) ? " open" : ""), "data-span-id": span.span_id,
        "data-kind": span.kind, "data-status": span.status, "data-tokens-in": span.tokens_in,
        "data-tokens-out": span.tokens_out, "data-model": span.model || "",
      }, [
        el("div", { className: "wf-name", style: `padding-left:${span.depth * 14}px`, title: span.name }, [
          el("span", { className: "kind", text: span.kind }), el("span", { text: span.name }),
          el("span", { className: "wf-meta", text: spanMeta(span) })]),
        el("div", { className: "wf-track" }, [bar(span.start_ms, span.duration_ms, total,
          `wf-bar kind-${span.kind} status-${span.status}`)]),
        state.open.has(span.span_id) ? detail(span) : null,
        logList(logs.get(span.span_id), span.depth + 1),
      ]);
      row.addEventListener("click", (event) => {
        if (event.target.closest(".wf-detail")) return;
        if (state.open.has(span.span_id)) state.open.delete(span.span_id); else state.open.add(span.span_id);
        renderWaterfall(state.trace);
      });
      rows.push(row);
    }
    for (const child of trace.children) {  // a workflow's steps (each attempt), to scale
      if (child.start_ms == null) continue;
      rows.push(el("div", { className: "wf-row", "data-kind": "step", "data-run-id": child.id }, [
        el("div", { className: "wf-name" }, [el("span", { className: "kind", text: "step" }),
          el("a", { href: url("run_page", child.id), text: child.run_name || child.id.slice(0, 8) }),
          el("span", { className: "wf-meta", text: `${child.status} · ${child.tokens_in + child.tokens_out} tok · ` +
            ms(child.end_ms == null ? null : child.end_ms - child.start_ms) })]),
        el("div", { className: "wf-track" }, [bar(child.start_ms, (child.end_ms == null ? total : child.end_ms) -
          child.start_ms, total, "wf-bar kind-task status-" + (child.status === "FAILED" ? "error" : "ok"))])]));
    }
    for (const approval of trace.approvals) {
      rows.push(el("div", { className: "wf-row", "data-kind": "approval" }, [
        el("div", { className: "wf-name" }, [el("span", { className: "kind", text: "approval" }),
          el("span", { text: approval.question }), el("span", { className: "wf-meta", text: approval.status })]),
        el("div", { className: "wf-track" }, [bar(approval.at_ms, (approval.resolved_ms || total) - approval.at_ms,
          total, "wf-bar kind-agent")])]));
    }
    if (!rows.length) rows.push(el("p", { className: "muted", text: trace.run.terminal ? "No spans recorded." :
      "Waiting for the first span…" }));
    $("waterfall").replaceChildren(...rows);
    $("waterfall-ticks").replaceChildren(...[0, 0.25, 0.5, 0.75, 1].map((f) => el("span", { text: ms(total * f) })));
    const llm = trace.spans.filter((s) => s.kind === "llm");
    $("waterfall-summary").textContent = `${trace.spans.length} spans · ${llm.length} model calls · ` +
      `${trace.spans.filter((s) => s.kind === "tool").length} tool calls · ${trace.logs.length} log lines`;
  }

  // --- lists and the workflow graph --------------------------------------------------------------
  function renderLists(trace) {
    $("run-events").replaceChildren(...trace.events.map((e) => el("li", { "data-to": e.to }, [
      el("span", { text: `${at(e.at_ms)} ${e.from || "∅"} → ${e.to}` }),
      e.reason ? el("div", { className: "muted small", text: e.reason }) : null])));
    $("run-approvals").replaceChildren(...(trace.approvals.length ? trace.approvals.map((a) => el("li", {}, [
      el("span", { text: a.question }), el("span", { className: "muted", text: " · " + a.status })]))
      : [el("li", { className: "muted", text: "None." })]));
    $("children-panel").hidden = !trace.children.length;
    $("run-children").replaceChildren(...trace.children.map((c) => el("li", { "data-run-id": c.id }, [
      el("a", { href: url("run_page", c.id), text: c.run_name || c.id.slice(0, 8) }), el("span", { text: " " }),
      el("span", { className: "status status-" + c.status, text: c.status })])));
  }

  let drawn = false;
  function renderWorkflow(trace) {
    const wf = trace.workflow;
    $("workflow-panel").hidden = !wf;
    if (!wf) return;
    $("workflow-link").href = url("workflow_page", wf.workflow.id);
    $("workflow-link").textContent = `${wf.workflow.name} v${wf.workflow.version}`;
    $("workflow-phase").textContent = `run ${wf.workflow.status.toLowerCase()} · phase ${wf.workflow.phase}`;
    const options = { label: "workflow run graph", onClick: (node) => { window.location.href = url("run_page", node.execution_id); } };
    if (drawn) window.kaiGraph.update($("workflow-graph"), wf.graph, options);
    else window.kaiGraph.draw($("workflow-graph"), wf.graph, options);
    drawn = true;
  }

  function render(trace) {
    state.trace = trace;
    renderHeader(trace.run);
    renderWaterfall(trace);
    renderLists(trace);
    renderWorkflow(trace);
  }

  function live(trace) {
    const wf = trace.workflow;
    return !trace.run.terminal || (wf && !["COMPLETED", "FAILED", "CANCELLED"].includes(wf.workflow.status));
  }

  async function poll() {
    try {
      const response = await fetch(url("run_trace", config.execution_id), { credentials: "same-origin" });
      if (response.ok) {
        state.polls += 1;
        render(await response.json());
      }
    } catch (err) {
      console.warn("run refresh failed", err);
    }
    if (live(state.trace)) setTimeout(poll, 1500);
  }

  render(state.trace);
  if (live(state.trace)) setTimeout(poll, 1500);
})();
