/* kAI operator console: draws a {nodes, edges} graph as SVG, laid out by dagre (vendored under
 * static/console/vendor/). Each node is a <g class="node kind-… state-…" data-node-id=…>; a
 * node with an execution is clickable (options.onClick). Redrawing the same graph with new
 * states only updates classes, so a live run does not jump around.
 */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text != null) node.textContent = text;
    return node;
  }

  function clip(text, n) { text = String(text || ""); return text.length > n ? text.slice(0, n - 1) + "…" : text; }

  function subtitle(node) {
    if (node.state) return node.state.replace("_", " ") + (node.attempts > 1 ? " · attempt " + node.attempts : "");
    return clip(node.kind === "task" ? (node.agent ? "by " + node.agent : "") : node.detail, 34);
  }

  function layout(graph, direction) {
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: direction || "LR", nodesep: 22, ranksep: 56, edgesep: 12, marginx: 8, marginy: 8 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const node of graph.nodes) {
      const chars = Math.max(clip(node.label, 30).length, subtitle(node).length * 0.9, 8);
      g.setNode(node.id, { width: Math.round(chars * 7.2 + 28), height: 44, node });
    }
    for (const edge of graph.edges) {
      if (!g.hasNode(edge.source) || !g.hasNode(edge.target)) continue;
      const label = clip(edge.label, 28);
      g.setEdge(edge.source, edge.target, { edge, label, width: label.length * 5.6, height: label ? 12 : 0,
                                            labelpos: "c" });
    }
    dagre.layout(g);
    return g;
  }

  function draw(container, graph, options) {
    options = options || {};
    const g = layout(graph, options.direction);
    const size = g.graph();
    const root = svg("svg", { viewBox: `0 0 ${Math.ceil(size.width)} ${Math.ceil(size.height)}`,
                              width: Math.ceil(size.width), height: Math.ceil(size.height), role: "img",
                              "aria-label": options.label || "graph" });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
                                   markerHeight: 7, orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9aa3b2" }));
    defs.appendChild(marker);
    root.appendChild(defs);
    for (const key of g.edges()) {
      const e = g.edge(key);
      const group = svg("g", { class: "edge " + (e.edge.kind || ""), "data-source": key.v, "data-target": key.w });
      const d = e.points.map((p, i) => (i ? "L" : "M") + p.x.toFixed(1) + "," + p.y.toFixed(1)).join(" ");
      group.appendChild(svg("path", { d, "marker-end": "url(#arrow)" }));
      if (e.label) group.appendChild(svg("text", { x: e.x, y: e.y, "text-anchor": "middle" }, e.label));
      if (e.edge.label) group.appendChild(svg("title", {}, e.edge.label));
      root.appendChild(group);
    }
    for (const id of g.nodes()) {
      const box = g.node(id);
      const node = box.node;
      const group = svg("g", { class: nodeClass(node, options), "data-node-id": id,
                               transform: `translate(${box.x - box.width / 2},${box.y - box.height / 2})` });
      if (node.step_id) group.setAttribute("data-step-id", node.step_id);
      group.appendChild(svg("rect", { width: box.width, height: box.height, rx: 6 }));
      group.appendChild(svg("text", { x: 10, y: 18 }, clip(node.label, 30)));
      group.appendChild(svg("text", { x: 10, y: 34, class: "sub" }, subtitle(node)));
      group.appendChild(svg("title", {}, [node.label, node.detail, node.condition ? "if " + node.condition : "",
                                          node.error || ""].filter(Boolean).join("\n")));
      setState(group, node);
      if (options.onClick) group.addEventListener("click", () => {
        const current = container.kaiNodes.get(id) || node;
        if (clickable(current, options)) options.onClick(current);
      });
      root.appendChild(group);
    }
    container.kaiNodes = new Map(graph.nodes.map((n) => [n.id, n]));
    container.replaceChildren(root);
    container.dataset.nodes = String(graph.nodes.length);
    return root;
  }

  function clickable(node, options) { return options.onClick && (node.execution_id || options.allClickable); }

  function nodeClass(node, options) {
    return ["node", "kind-" + node.kind, node.state ? "state-" + node.state : "", node.current ? "current" : "",
            clickable(node, options || {}) ? "clickable" : ""].filter(Boolean).join(" ");
  }

  function setState(group, node) {
    if (node.state) group.setAttribute("data-state", node.state); else group.removeAttribute("data-state");
    if (node.execution_id) group.setAttribute("data-execution-id", node.execution_id);
  }

  /** New states for an already drawn graph (same nodes): classes and subtitles only. */
  function update(container, graph, options) {
    const groups = container.querySelectorAll("g.node");
    if (groups.length !== graph.nodes.length) return draw(container, graph, options);
    const byId = new Map(graph.nodes.map((n) => [n.id, n]));
    container.kaiNodes = byId;
    for (const group of groups) {
      const node = byId.get(group.dataset.nodeId);
      if (!node) return draw(container, graph, options);
      group.setAttribute("class", nodeClass(node, options));
      group.querySelector("text.sub").textContent = subtitle(node);
      group.replaceChild(svg("title", {}, [node.label, node.detail, node.error || ""].filter(Boolean).join("\n")),
                         group.querySelector("title"));
      setState(group, node);
    }
    return container.firstChild;
  }

  window.kaiGraph = { draw, update };
  const page = document.getElementById("graph-data");  // a workflow's or a crew's own page
  if (page) {
    const data = JSON.parse(page.textContent);
    draw(document.getElementById("graph"), data.graph, { label: document.title, direction: data.crew ? "TB" : "LR" });
  }
})();
