// ingressd status page: polls status.json every 2 s, renders the tables, and plots request and
// 5xx rates per Ingress computed from the cumulative counts. No dependencies, no external loads.
(function () {
  "use strict";

  var INTERVAL_MS = 2000;
  var WINDOW_S = 120;
  var COLORS = ["#0969da", "#1a7f37", "#bf3989", "#9a6700", "#8250df", "#cf222e", "#1b7c83", "#6e7781",
                "#fb8500", "#2da44e"];
  var SVG_NS = "http://www.w3.org/2000/svg";

  var samples = [];      // [{t: seconds, counts: {name: {requests, errors_5xx}}}]
  var colorOf = {};
  var nextColor = 0;
  var lastOk = 0;

  // --- DOM helpers (text only: every value is set with textContent, never as HTML) ---------------

  function el(tag, props, children) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        if (key === "text") { node.textContent = props[key]; }
        else if (key === "cls") { node.className = props[key]; }
        else { node.setAttribute(key, props[key]); }
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) { return; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function fill(tbody, rows, columns, emptyText) {
    tbody.replaceChildren();
    if (!rows.length) {
      tbody.appendChild(el("tr", null, [el("td", {cls: "empty", colspan: String(columns), text: emptyText})]));
      return;
    }
    rows.forEach(function (row) { tbody.appendChild(row); });
  }

  function td(content, cls) {
    var cell = el("td", cls ? {cls: cls} : null);
    (Array.isArray(content) ? content : [content]).forEach(function (c) {
      if (c === null || c === undefined) { return; }
      cell.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return cell;
  }

  // --- formatting ----------------------------------------------------------------------------------

  function parseTime(value) {
    if (value === null || value === undefined) { return null; }
    var ms = typeof value === "number" ? value * 1000 : Date.parse(value);
    return isNaN(ms) ? null : ms;
  }

  function relative(ms, now) {
    var days = (ms - now) / 86400000;
    if (Math.abs(days) >= 1) {
      var d = Math.round(Math.abs(days));
      return days >= 0 ? "in " + d + " d" : d + " d ago";
    }
    var hours = Math.round(Math.abs(days) * 24);
    return days >= 0 ? "in " + hours + " h" : hours + " h ago";
  }

  function timeCell(value, now, warnDays) {
    var ms = parseTime(value);
    if (ms === null) { return td("—", "muted"); }
    var days = (ms - now) / 86400000;
    var cls = days < 0 ? "bad" : (warnDays && days < warnDays ? "warnc" : "");
    var cell = td([new Date(ms).toISOString().slice(0, 10) + " ", el("span", {cls: "muted small", text: "(" + relative(ms, now) + ")"})], cls);
    cell.title = new Date(ms).toISOString();
    return cell;
  }

  function rate(value) {
    if (value === null || value === undefined) { return "—"; }
    if (value === 0) { return "0"; }
    if (value < 0.1) { return value.toFixed(3); }
    if (value < 10) { return value.toFixed(2); }
    return value.toFixed(1);
  }

  function colorFor(name) {
    if (!(name in colorOf)) { colorOf[name] = COLORS[nextColor++ % COLORS.length]; }
    return colorOf[name];
  }

  // --- sections ------------------------------------------------------------------------------------

  function renderSummary(data) {
    var s = data.summary;
    var box = document.getElementById("summary");
    var chips = [
      ["Ingresses", s.ingresses, ""], ["Routes", s.routes, ""], ["Hosts", s.hosts, ""],
      ["Errors", s.errors, s.errors ? "err" : ""], ["Warnings", s.warnings, s.warnings ? "warn" : ""],
      ["Connections", s.connections, ""], ["Websockets", s.upgraded, ""]
    ];
    if (data.source && data.source.kind === "kubernetes") {
      chips.push(["Kubernetes API", data.source.connected ? "connected" : "unreachable: " + data.source.last_error,
                  data.source.connected ? "" : "err"]);
    }
    box.replaceChildren.apply(box, chips.map(function (c) {
      return el("span", {cls: "chip " + c[2]}, [c[0] + " ", el("b", {text: String(c[1])})]);
    }));
    document.getElementById("version").textContent = data.version;
  }

  function backendCell(route) {
    if (route.redirect) {
      return td([el("span", {cls: "badge info", text: String(route.redirect.code)}), " ", el("code", {text: route.redirect.target})]);
    }
    if (!route.backend) { return td("built-in 404", "muted"); }
    var b = route.backend;
    var parts = [el("code", {text: b.namespace + "/" + b.service + ":" + b.port})];
    if (b.error) { parts.push(el("div", {cls: "bad small", text: b.error})); }
    return td(parts);
  }

  function endpointsCell(route) {
    if (!route.backend) { return td("—", "num muted"); }
    var e = route.backend.endpoints;
    var cls = "num " + (route.backend.error || e.ready === 0 ? "bad" : "good");
    return td(e.ready + "/" + e.total, cls);
  }

  function renderRoutes(data, now) {
    var rows = data.routes.map(function (r) {
      var host = [el("code", {text: r.host})];
      if (r.https_redirect) { host.push(" ", el("span", {cls: "badge ok", title: "plain HTTP redirects to HTTPS", text: "→https"})); }
      var tls = r.tls ? [el("code", {text: r.tls.source})] : [el("span", {cls: "muted", text: "none"})];
      return el("tr", null, [
        td(host),
        td([el("code", {text: r.path || "(any)"}), " ", el("span", {cls: "muted small", text: r.path_type})]),
        td(r.namespace + "/" + r.ingress),
        backendCell(r),
        endpointsCell(r),
        td(tls),
        r.tls ? timeCell(r.tls.not_after, now, 14) : td("—", "muted")
      ]);
    });
    fill(document.querySelector("#routes tbody"), rows, 7, "No routes: no Ingress is served.");
    var d = data.default_backend;
    document.getElementById("default-backend").textContent = "Requests no rule matches: " +
      (d ? d.namespace + "/" + d.service + ":" + d.port + " (" + d.endpoints.ready + " ready endpoints)" +
           (d.error ? " — " + d.error : "") : "built-in 404 default backend") + ".";
  }

  function shortPath(path) {
    var parts = path.split("/");
    return parts.length > 3 ? "…/" + parts.slice(-2).join("/") : path;
  }

  function renderProblems(data) {
    var rows = data.diagnostics.map(function (d) {
      return el("tr", null, [
        td(el("span", {cls: "badge " + (d.severity === "error" ? "error" : "warning"), text: d.severity})),
        td(d.object ? el("code", {cls: "nowrap", text: d.object}) : el("span", {cls: "muted", text: "—"})),
        td(d.origin ? el("code", {cls: "small", title: d.origin, text: shortPath(d.origin)}) : el("span", {cls: "muted", text: "—"})),
        td(d.message)
      ]);
    });
    fill(document.querySelector("#problems tbody"), rows, 4, "No problems: every object is valid.");
  }

  function renderCertificates(data, now) {
    var rows = data.certificates.map(function (c) {
      var label = c.state || "in use";
      var kind = c.last_error || /error|fail/i.test(label) ? "error" :
                 /^(ready|in use|default|issued|valid)$/i.test(label) ? "ok" : "warning";
      var state = [el("span", {cls: "badge " + kind, text: label})];
      if (c.last_error) { state.push(el("div", {cls: "bad small", text: c.last_error})); }
      return el("tr", null, [
        td(el("code", {text: c.secret})),
        td(c.hosts.join(", ")),
        td(c.issuer || (c.managed ? "—" : "from Secret"), c.issuer ? "" : "muted"),
        timeCell(c.not_after, now, 14),
        timeCell(c.next_renewal, now, 0),
        td(state)
      ]);
    });
    if (data.certificate_manager_error) {
      rows.push(el("tr", null, [el("td", {cls: "bad", colspan: "6", text: "certificate manager: " + data.certificate_manager_error})]));
    }
    fill(document.querySelector("#certificates tbody"), rows, 6, "No TLS certificates in use.");
  }

  // --- traffic -------------------------------------------------------------------------------------

  function record(data) {
    var counts = {};
    data.traffic.ingresses.forEach(function (i) { counts[i.name] = i; });
    var t = data.generated_at;
    if (samples.length && t <= samples[samples.length - 1].t) { return; }
    samples.push({t: t, counts: counts});
    while (samples.length > 2 && samples[1].t < t - WINDOW_S) { samples.shift(); }
  }

  // Rate series per ingress: [{t, requests, errors}] between consecutive samples.
  function series() {
    var out = {};
    for (var k = 1; k < samples.length; k++) {
      var a = samples[k - 1], b = samples[k], dt = b.t - a.t;
      if (dt <= 0) { continue; }
      Object.keys(b.counts).forEach(function (name) {
        var now = b.counts[name], before = a.counts[name] || {requests: 0, errors_5xx: 0};
        var req = Math.max(0, now.requests - before.requests) / dt;
        var err = Math.max(0, now.errors_5xx - before.errors_5xx) / dt;
        (out[name] = out[name] || []).push({t: b.t, requests: req, errors: err});
      });
    }
    return out;
  }

  function niceMax(value) {
    if (value <= 0) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 4, 8, 10];  // a quarter of each is a round grid step
    for (var i = 0; i < steps.length; i++) { if (value <= steps[i] * p) { return steps[i] * p; } }
    return 10 * p;
  }

  function plot(id, data, field, now) {
    var box = document.getElementById(id);
    var W = 600, H = 180, L = 44, R = 10, T = 10, B = 22;
    box.replaceChildren();
    var names = Object.keys(data);
    var max = 0;
    names.forEach(function (n) { data[n].forEach(function (p) { max = Math.max(max, p[field]); }); });
    var top = niceMax(max);
    var x = function (t) { return L + (W - L - R) * (1 - (now - t) / WINDOW_S); };
    var y = function (v) { return T + (H - T - B) * (1 - v / top); };
    for (var g = 0; g <= 4; g++) {
      var v = top * g / 4, gy = y(v);
      box.appendChild(svg("line", {"class": "grid", x1: L, x2: W - R, y1: gy, y2: gy}));
      box.appendChild(svg("text", {"class": "axis", x: L - 6, y: gy + 4, "text-anchor": "end"}, rate(v)));
    }
    [120, 90, 60, 30, 0].forEach(function (ago) {
      box.appendChild(svg("text", {"class": "axis", x: x(now - ago), y: H - 6,
                                   "text-anchor": ago === 0 ? "end" : (ago === 120 ? "start" : "middle")},
                          ago === 0 ? "now" : "-" + ago + "s"));
    });
    var drawn = 0;
    names.forEach(function (n) {
      var pts = data[n].filter(function (p) { return p.t >= now - WINDOW_S; });
      if (!pts.length) { return; }
      var d = pts.map(function (p, i) { return (i ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p[field]).toFixed(1); }).join(" ");
      box.appendChild(svg("path", {"class": "series", d: d, stroke: colorFor(n)}));
      var last = pts[pts.length - 1];
      box.appendChild(svg("circle", {"class": "last", cx: x(last.t).toFixed(1), cy: y(last[field]).toFixed(1),
                                     r: 3, fill: colorFor(n)}));
      drawn++;
    });
    if (!drawn) {
      box.appendChild(svg("text", {"class": "axis", x: (W + L) / 2, y: H / 2, "text-anchor": "middle"},
                          samples.length < 2 ? "collecting…" : "no requests yet"));
    }
  }

  function renderTraffic(data) {
    record(data);
    var s = series();
    var now = data.generated_at;
    plot("plot-requests", s, "requests", now);
    plot("plot-errors", s, "errors", now);
    var legend = document.getElementById("legend");
    legend.replaceChildren.apply(legend, data.traffic.ingresses.map(function (i) {
      return el("span", null, [el("span", {cls: "swatch", style: "background:" + colorFor(i.name)}), i.name]);
    }));
    var rows = data.traffic.ingresses.map(function (i) {
      var pts = s[i.name] || [];
      var last = pts.length ? pts[pts.length - 1] : null;
      var ratio = i.requests ? (100 * i.errors_5xx / i.requests).toFixed(1) + " %" : "—";
      return el("tr", null, [
        td([el("span", {cls: "swatch", style: "background:" + colorFor(i.name)}), i.name]),
        td(last ? rate(last.requests) : "—", "num"),
        td(last ? rate(last.errors) : "—", "num" + (last && last.errors > 0 ? " bad" : "")),
        td(ratio, "num" + (i.errors_5xx ? " bad" : "")),
        td(String(i.requests), "num"),
        td(String(i.errors_4xx), "num"),
        td(String(i.errors_5xx), "num" + (i.errors_5xx ? " bad" : ""))
      ]);
    });
    fill(document.querySelector("#traffic tbody"), rows, 7, "No requests yet.");
  }

  // --- polling -------------------------------------------------------------------------------------

  function render(data) {
    var now = data.generated_at * 1000;
    renderSummary(data);
    renderTraffic(data);
    renderProblems(data);
    renderRoutes(data, now);
    renderCertificates(data, now);
    lastOk = Date.now();
    var updated = document.getElementById("updated");
    updated.className = "updated muted";
    updated.textContent = "updated " + new Date(now).toLocaleTimeString();
    document.body.setAttribute("data-loaded", "true");
  }

  function failed(error) {
    var updated = document.getElementById("updated");
    updated.className = "updated stale";
    updated.textContent = "cannot reach ingressd (" + (error && error.message ? error.message : error) + ")" +
      (lastOk ? "; last update " + new Date(lastOk).toLocaleTimeString() : "");
  }

  function poll() {
    fetch("status.json", {cache: "no-store"})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) { return {data: data}; }, function (error) { failed(error); return null; })
      .then(function (result) {
        setTimeout(poll, INTERVAL_MS);
        if (result) { render(result.data); }  // a rendering bug surfaces as an uncaught error
      });
  }

  poll();
}());
