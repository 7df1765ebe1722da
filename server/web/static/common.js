// Shared helpers: API calls with the CSRF header, evidence figures with box overlays, toasts.
"use strict";

const roadeye = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function api(method, url, body) {
    const opts = { method, headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" },
                   credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(url, opts);
    if (r.status === 401 && !url.startsWith("/api/auth/")) { location.href = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("login required"); }
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (!r.ok) {
      let msg = data && data.detail ? data.detail : r.statusText;
      if (Array.isArray(msg)) msg = msg.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
      const err = new Error(msg); err.status = r.status; throw err;
    }
    return data;
  }

  const COLORS = { driver: "#ffd23f", passenger: "#9ad1ff", seatbelt: "#3ddc84", phone: "#ff4d4d",
                   face: "#38e8ff", plate: "#4d8dff", windshield: "#ff7ae6", car: "#f5f5f5",
                   bus: "#f5f5f5", truck: "#f5f5f5", van: "#f5f5f5", two_wheeler: "#f5f5f5" };
  const SVGNS = "http://www.w3.org/2000/svg";

  // Draw an evidence image with its boxes as an SVG overlay in image coordinates.
  function figure(el, ev, opts = {}) {
    el.textContent = "";
    if (!ev) { el.innerHTML = '<div class="noimg">not available</div>'; return; }
    // The frame shrink-wraps the image, so the overlay covers exactly the picture.
    const frame = document.createElement("div");
    frame.className = "frame";
    const img = new Image();
    img.src = ev.url; img.alt = ev.kind.replace("_", " "); img.decoding = "async";
    img.width = ev.width; img.height = ev.height;
    frame.appendChild(img);
    el.appendChild(frame);
    const svg = document.createElementNS(SVGNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${ev.width} ${ev.height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.classList.add("boxes");
    const stroke = Math.max(1.5, ev.width / 400);
    const font = Math.max(14, ev.width / 40);
    for (const b of ev.boxes || []) {
      const c = COLORS[b.label] || "#ffb000";
      const { x1, y1, x2, y2 } = b.box;
      const r = document.createElementNS(SVGNS, "rect");
      Object.entries({ x: x1, y: y1, width: x2 - x1, height: y2 - y1, stroke: c, "stroke-width": stroke,
                       fill: "none" }).forEach(([k, v]) => r.setAttribute(k, v));
      svg.appendChild(r);
      if (opts.labels !== false) {
        const t = document.createElementNS(SVGNS, "text");
        const label = `${b.label} ${(b.confidence * 100).toFixed(0)}%`;
        Object.entries({ x: x1 + stroke, y: Math.max(font, y1 - stroke * 1.5), fill: c, "font-size": font,
                         "paint-order": "stroke", stroke: "#000", "stroke-width": font / 6 })
          .forEach(([k, v]) => t.setAttribute(k, v));
        t.textContent = label;
        svg.appendChild(t);
      }
    }
    frame.appendChild(svg);
  }

  let toastTimer;
  function toast(msg, kind = "info", ms = 3500) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = msg; el.className = `toast show ${kind}`;
    clearTimeout(toastTimer); toastTimer = setTimeout(() => { el.className = "toast"; }, ms);
  }

  function fmtTime(iso) {
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const lo = document.getElementById("logout");
    if (lo) lo.addEventListener("click", async () => { await api("POST", "/api/auth/logout"); location.href = "/login"; });
    document.querySelectorAll("tr.rowlink").forEach((tr) => tr.addEventListener("click", (e) => {
      if (e.target.closest("a")) return;
      location.href = tr.dataset.href;
    }));
  });

  return { api, figure, toast, fmtTime, csrf };
})();
