// roadeye zones editor: polygons in full-resolution image pixels drawn over a scaled snapshot.
"use strict";
(function () {
  const COLORS = { capture: "#35d46a", lane: "#3aa0ff", exclusion: "#ff4d4d", road: "#ff4dff" };
  const HIT_PX = 10; // canvas pixels within which a click grabs an existing point
  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const statusEl = document.getElementById("status");
  const img = new Image();
  let imageSize = [0, 0];
  let scale = 1;
  let zones = []; // {kind, name, points: [[x, y], ...]} in image pixels
  let grid = []; // [{label, points}] road-plane grid in image pixels (read-only)
  let active = -1;
  let drag = null; // {zone, index}
  let dirty = false;

  function setStatus(text, cls) {
    statusEl.textContent = text;
    statusEl.className = cls || "";
  }
  function markDirty() {
    dirty = true;
    setStatus("unsaved changes", "dirty");
  }

  let roadErrors = null; // {residuals_m, inliers} of the last fit, per road point

  function roadZone() {
    return zones.find((z) => z.kind === "road");
  }
  function fromState(z, roadPoints) {
    const out = [];
    if (z.capture) out.push({ kind: "capture", name: "capture", points: z.capture });
    for (const [name, pts] of Object.entries(z.lanes || {})) out.push({ kind: "lane", name, points: pts });
    (z.exclusion || []).forEach((pts, i) => out.push({ kind: "exclusion", name: "exclusion " + (i + 1), points: pts }));
    const old = roadZone();
    if (old) out.push(old); // keep unsaved road points across a zones save
    else if (roadPoints && roadPoints.length) {
      out.push({ kind: "road", name: "road points", points: roadPoints.map((p) => p.image), road: roadPoints.map((p) => p.road) });
    }
    return out;
  }
  function toBody() {
    const body = { capture: null, lanes: {}, exclusion: [] };
    for (const z of zones) {
      if (z.points.length === 0) continue;
      const pts = z.points.map((p) => [Math.round(p[0] * 10) / 10, Math.round(p[1] * 10) / 10]);
      if (z.kind === "capture") body.capture = pts;
      else if (z.kind === "lane") body.lanes[z.name] = pts;
      else if (z.kind === "exclusion") body.exclusion.push(pts);
    }
    return body;
  }

  function layout() {
    const stage = document.getElementById("stage");
    const avail = Math.max(200, stage.clientWidth - 16);
    scale = Math.min(1, avail / imageSize[0]);
    canvas.width = Math.round(imageSize[0] * scale);
    canvas.height = Math.round(imageSize[1] * scale);
    draw();
  }

  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (img.complete && img.naturalWidth) ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    if (document.getElementById("show-grid").checked) {
      ctx.strokeStyle = "rgba(255, 215, 0, 0.55)";
      ctx.fillStyle = "rgba(255, 215, 0, 0.9)";
      ctx.lineWidth = 1;
      ctx.font = "11px DejaVu Sans, sans-serif";
      for (const g of grid) {
        ctx.beginPath();
        g.points.forEach((p, i) => (i ? ctx.lineTo(p[0] * scale, p[1] * scale) : ctx.moveTo(p[0] * scale, p[1] * scale)));
        ctx.stroke();
        if (g.label) {
          const p = g.points.find((q) => q[0] >= 0 && q[1] >= 0 && q[0] <= imageSize[0] && q[1] <= imageSize[1]);
          if (p) ctx.fillText(g.label, p[0] * scale + 3, p[1] * scale - 3);
        }
      }
    }
    zones.forEach((z, zi) => {
      const col = COLORS[z.kind];
      const on = zi === active;
      if (z.kind === "road") {
        z.points.forEach((p, i) => {
          const out = roadErrors && roadErrors.inliers && roadErrors.inliers[i] === false;
          ctx.fillStyle = out ? "#ff4d4d" : col;
          ctx.fillRect(p[0] * scale - 5, p[1] * scale - 5, 10, 10);
          ctx.font = "12px DejaVu Sans, sans-serif";
          ctx.lineWidth = 3;
          ctx.strokeStyle = "#000";
          const r = z.road[i];
          const label = "#" + (i + 1) + (r ? " " + r[0] + "," + r[1] : "");
          ctx.strokeText(label, p[0] * scale + 8, p[1] * scale + 4);
          ctx.fillText(label, p[0] * scale + 8, p[1] * scale + 4);
        });
        return;
      }
      if (z.points.length) {
        ctx.beginPath();
        z.points.forEach((p, i) => (i ? ctx.lineTo(p[0] * scale, p[1] * scale) : ctx.moveTo(p[0] * scale, p[1] * scale)));
        if (z.points.length >= 3) {
          ctx.closePath();
          ctx.globalAlpha = on ? 0.25 : 0.12;
          ctx.fillStyle = col;
          ctx.fill();
          ctx.globalAlpha = 1;
        }
        ctx.lineWidth = on ? 3 : 2;
        ctx.strokeStyle = col;
        ctx.stroke();
        z.points.forEach((p, i) => {
          ctx.beginPath();
          ctx.arc(p[0] * scale, p[1] * scale, on ? 6 : 4, 0, 2 * Math.PI);
          ctx.fillStyle = on ? "#fff" : col;
          ctx.fill();
          ctx.strokeStyle = col;
          ctx.lineWidth = 2;
          ctx.stroke();
          if (on) {
            ctx.fillStyle = "#fff";
            ctx.font = "12px DejaVu Sans, sans-serif";
            ctx.fillText(String(i + 1), p[0] * scale + 8, p[1] * scale - 8);
          }
        });
        const cx = z.points.reduce((a, p) => a + p[0], 0) / z.points.length * scale;
        const cy = z.points.reduce((a, p) => a + p[1], 0) / z.points.length * scale;
        ctx.font = "bold 14px DejaVu Sans, sans-serif";
        ctx.lineWidth = 3;
        ctx.strokeStyle = "#000";
        ctx.strokeText(z.name, cx, cy);
        ctx.fillStyle = col;
        ctx.fillText(z.name, cx, cy);
      }
    });
    renderList();
    renderRoadList();
  }

  function renderRoadList() {
    const ol = document.getElementById("road-list");
    const z = roadZone();
    if (!z) { ol.innerHTML = ""; return; }
    // Rebuild only when the count changes, so typing in an input keeps its focus.
    if (ol.children.length !== z.points.length) {
      ol.innerHTML = "";
      z.points.forEach((_, i) => {
        const li = document.createElement("li");
        const input = document.createElement("input");
        input.type = "text";
        input.placeholder = "X,Y metres";
        input.className = "road-xy";
        input.addEventListener("change", () => {
          const m = input.value.trim().match(/^(-?[0-9.]+)\s*,\s*(-?[0-9.]+)$/);
          z.road[i] = m ? [parseFloat(m[1]), parseFloat(m[2])] : null;
          input.classList.toggle("bad", !m && input.value.trim() !== "");
          draw();
        });
        const err = document.createElement("span");
        err.className = "err";
        li.append(input, err);
        ol.appendChild(li);
      });
    }
    z.points.forEach((p, i) => {
      const li = ol.children[i];
      const input = li.querySelector("input");
      if (document.activeElement !== input) input.value = z.road[i] ? z.road[i][0] + "," + z.road[i][1] : "";
      const err = li.querySelector(".err");
      if (roadErrors && roadErrors.residuals_m && i < roadErrors.residuals_m.length) {
        const out = roadErrors.inliers[i] === false;
        err.textContent = (out ? "outlier " : "") + roadErrors.residuals_m[i].toFixed(3) + " m";
        err.className = "err" + (out ? " outlier" : "");
      } else {
        err.textContent = "(" + p[0].toFixed(0) + ", " + p[1].toFixed(0) + ")";
        err.className = "err";
      }
    });
  }

  function renderList() {
    const ul = document.getElementById("zone-list");
    ul.innerHTML = "";
    zones.forEach((z, zi) => {
      const li = document.createElement("li");
      li.className = z.kind + (zi === active ? " active" : "");
      li.dataset.index = String(zi);
      li.textContent = z.name + " (" + z.points.length + " pts)";
      li.addEventListener("click", () => { active = zi; draw(); });
      ul.appendChild(li);
    });
    if (!zones.length) {
      const li = document.createElement("li");
      li.textContent = "none yet: click the image to start the capture zone";
      ul.appendChild(li);
    }
  }

  function eventPoint(ev) {
    const r = canvas.getBoundingClientRect();
    const cx = (ev.clientX - r.left) * (canvas.width / r.width);
    const cy = (ev.clientY - r.top) * (canvas.height / r.height);
    return [cx, cy];
  }
  function toImage(c) {
    const x = Math.min(imageSize[0], Math.max(0, c[0] / scale));
    const y = Math.min(imageSize[1], Math.max(0, c[1] / scale));
    return [x, y];
  }
  function hit(c) {
    // Prefer the active zone's points, then any zone's.
    const order = zones.map((_, i) => i).sort((a, b) => (b === active) - (a === active));
    for (const zi of order) {
      const pts = zones[zi].points;
      for (let i = 0; i < pts.length; i++) {
        if (Math.hypot(pts[i][0] * scale - c[0], pts[i][1] * scale - c[1]) <= HIT_PX) return { zone: zi, index: i };
      }
    }
    return null;
  }

  canvas.addEventListener("mousedown", (ev) => {
    if (ev.button !== 0) return;
    const c = eventPoint(ev);
    const h = hit(c);
    if (h) {
      active = h.zone;
      drag = h;
      draw();
      return;
    }
    if (active < 0) {
      selectCapture();
    }
    const z = zones[active];
    z.points.push(toImage(c));
    if (z.kind === "road") {
      z.road.push(null);
      roadErrors = null;
      draw();
      const inputs = document.querySelectorAll("#road-list input");
      if (inputs.length) inputs[inputs.length - 1].focus();
      return;
    }
    markDirty();
    draw();
  });
  canvas.addEventListener("mousemove", (ev) => {
    const c = eventPoint(ev);
    const p = toImage(c);
    document.getElementById("cursor").textContent = "x " + p[0].toFixed(0) + "  y " + p[1].toFixed(0);
    if (!drag) return;
    zones[drag.zone].points[drag.index] = p;
    if (zones[drag.zone].kind === "road") roadErrors = null;
    else markDirty();
    draw();
  });
  window.addEventListener("mouseup", () => { drag = null; });
  canvas.addEventListener("contextmenu", (ev) => {
    ev.preventDefault();
    const h = hit(eventPoint(ev));
    if (h) {
      zones[h.zone].points.splice(h.index, 1);
      if (zones[h.zone].kind === "road") {
        zones[h.zone].road.splice(h.index, 1);
        roadErrors = null;
        document.getElementById("road-list").innerHTML = "";
      } else {
        markDirty();
      }
      active = h.zone;
      draw();
    }
  });

  function selectCapture() {
    let i = zones.findIndex((z) => z.kind === "capture");
    if (i < 0) {
      zones.unshift({ kind: "capture", name: "capture", points: [] });
      i = 0;
    }
    active = i;
    draw();
  }
  document.getElementById("btn-capture").addEventListener("click", selectCapture);
  document.getElementById("btn-road").addEventListener("click", () => {
    let i = zones.findIndex((z) => z.kind === "road");
    if (i < 0) {
      zones.push({ kind: "road", name: "road points", points: [], road: [] });
      i = zones.length - 1;
    }
    active = i;
    draw();
  });
  document.getElementById("btn-fit-road").addEventListener("click", async () => {
    const st = document.getElementById("road-status");
    const z = roadZone();
    const setRoad = (t, c) => { st.textContent = t; st.className = c || ""; };
    if (!z || z.points.length < 4) { setRoad("need at least 4 road points", "error"); return; }
    const missing = z.road.findIndex((r) => !r);
    if (missing >= 0) { setRoad("point #" + (missing + 1) + " has no road coordinates (X,Y metres)", "error"); return; }
    setRoad("fitting...");
    const res = await fetch("/api/road", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        points: z.points.map((p, i) => ({ image: p, road: z.road[i] })),
        ransac: document.getElementById("road-ransac").checked && z.points.length >= 6,
      }),
    });
    const data = await res.json();
    roadErrors = data.residuals_m ? data : null;
    if (res.ok && data.ok) {
      grid = data.road_grid || [];
      document.getElementById("grid-toggle").style.display = grid.length ? "" : "none";
      setRoad("road plane saved: RMS " + data.rms_m.toFixed(3) + " m", "ok");
    } else {
      setRoad(data.error || res.statusText, "error");
    }
    draw();
  });
  document.getElementById("btn-add-lane").addEventListener("click", () => {
    const input = document.getElementById("lane-name");
    const name = input.value.trim();
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/.test(name)) {
      setStatus("lane name: letters, digits, '_', '.', '-' (max 32)", "error");
      return;
    }
    const existing = zones.findIndex((z) => z.kind === "lane" && z.name === name);
    if (existing >= 0) {
      active = existing;
    } else {
      zones.push({ kind: "lane", name, points: [] });
      active = zones.length - 1;
    }
    input.value = "";
    draw();
  });
  document.getElementById("btn-add-exclusion").addEventListener("click", () => {
    const n = zones.filter((z) => z.kind === "exclusion").length + 1;
    zones.push({ kind: "exclusion", name: "exclusion " + n, points: [] });
    active = zones.length - 1;
    draw();
  });
  document.getElementById("btn-undo").addEventListener("click", () => {
    if (active >= 0 && zones[active].points.length) {
      zones[active].points.pop();
      if (zones[active].kind === "road") {
        zones[active].road.pop();
        roadErrors = null;
      } else {
        markDirty();
      }
      draw();
    }
  });
  document.getElementById("btn-delete").addEventListener("click", () => {
    if (active < 0) return;
    zones.splice(active, 1);
    let n = 0;
    zones.forEach((z) => { if (z.kind === "exclusion") z.name = "exclusion " + (++n); });
    active = zones.length ? 0 : -1;
    markDirty();
    draw();
  });
  document.getElementById("btn-save").addEventListener("click", async () => {
    setStatus("saving...", "");
    try {
      const res = await fetch("/api/zones", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(toBody()),
      });
      const data = await res.json();
      if (res.ok && data.ok) {
        const keep = active >= 0 ? zones[active].kind + ":" + zones[active].name : null;
        zones = fromState(data.zones, null);
        active = Math.max(0, zones.findIndex((z) => z.kind + ":" + z.name === keep));
        if (!zones.length) active = -1;
        dirty = false;
        setStatus("saved to " + data.camera_file, "ok");
        draw();
      } else {
        setStatus("not saved: " + (data.error || res.statusText), "error");
      }
    } catch (e) {
      setStatus("not saved: " + e, "error");
    }
  });
  window.addEventListener("beforeunload", (ev) => { if (dirty) { ev.preventDefault(); ev.returnValue = ""; } });
  window.addEventListener("resize", layout);

  async function init() {
    const st = await (await fetch("/api/state")).json();
    imageSize = st.image_size;
    document.getElementById("camera-id").textContent = st.camera_id;
    document.getElementById("camera-file").textContent = st.camera_file + "  (" + imageSize[0] + "x" + imageSize[1] + ")";
    zones = fromState(st.zones, st.road_points);
    active = zones.findIndex((z) => z.kind !== "road"); // never start in road-point mode
    grid = st.road_grid || [];
    document.getElementById("grid-toggle").style.display = grid.length ? "" : "none";
    document.getElementById("show-grid").addEventListener("change", draw);
    img.onload = () => { layout(); document.body.dataset.ready = "1"; };
    img.src = "/snapshot.jpg";
    layout();
  }
  window.zonesEditor = {
    get scale() { return scale; }, get zones() { return zones; }, get active() { return active; },
    get gridLines() { return grid.length; },
    get roadErrors() { return roadErrors; },
  };
  init();
})();
