// Review queue: one event at a time, keyboard-driven, no page reloads. Events are claimed
// in small batches (so two reviewers never get the same one), the next events' images are
// preloaded, and decisions are sent in the background so the reviewer never waits.
"use strict";

(() => {
  const cfg = JSON.parse(document.getElementById("queue-config").textContent);
  // [code, label] pairs in keyboard order (a JSON object would lose the order)
  const REASONS = cfg.reasons.map((r) => r[0]);
  const REASON_LABEL = Object.fromEntries(cfg.reasons);
  const $ = (id) => document.getElementById(id);
  const state = {
    stage: 1, buffer: [], cur: null, history: [], hpos: -1, skipped: new Set(), fetching: null,
    reviewed: 0, started: Date.now(), rejecting: false, counts: {}, showBoxes: true, exhausted: false, zoom: false,
  };

  const byKind = (ev, kind) => ev.evidence.find((e) => e.kind === kind);

  function preload(ev) {
    for (const e of ev.evidence) { const i = new Image(); i.decoding = "async"; i.src = e.url; }
  }

  function knownIds() {
    const ids = new Set(state.skipped);
    state.buffer.forEach((e) => ids.add(e.event_id));
    state.history.forEach((h) => ids.add(h.ev.event_id));
    if (state.cur) ids.add(state.cur.event_id);
    return [...ids].slice(-500);
  }

  async function fill() {
    if (state.fetching) return state.fetching;
    if (state.buffer.length >= 3) return;
    state.fetching = (async () => {
      try {
        const res = await roadeye.api("POST", "/api/review/next",
          { stage: state.stage, count: 4 - state.buffer.length, skip: knownIds() });
        const have = new Set(knownIds());
        for (const ev of res.items) if (!have.has(ev.event_id)) { state.buffer.push(ev); preload(ev); }
        state.exhausted = res.items.length === 0;
        updateCounts(res.counts);
      } catch (ex) {
        roadeye.toast(`Could not load events: ${ex.message}`, "error");
      } finally { state.fetching = null; }
    })();
    return state.fetching;
  }

  function updateCounts(c) {
    if (c) state.counts = c;
    $("count-pending").textContent = state.counts.pending ?? "–";
    if ($("count-second")) $("count-second").textContent = state.counts.second_review ?? "–";
    $("count-mine").textContent = state.reviewed;
    const hours = (Date.now() - state.started) / 3.6e6;
    $("rate").textContent = state.reviewed >= 3 ? `≈ ${Math.round(state.reviewed / hours)} per hour` : "";
  }

  function viewing() {
    return state.hpos >= 0 && state.hpos < state.history.length ? state.history[state.hpos] : null;
  }

  function render() {
    const h = viewing();
    const ev = h ? h.ev : state.cur;
    $("empty").classList.toggle("hidden", !!ev);
    $("review").classList.toggle("hidden", !ev);
    if (!ev) return;
    const ov = byKind(ev, "overview") || byKind(ev, "vehicle_crop");
    roadeye.figure($("overview"), ov);
    roadeye.figure($("driver"), byKind(ev, "driver_crop"), { labels: false });
    roadeye.figure($("plate"), byKind(ev, "plate_crop"), { labels: false });
    $("ov-size").textContent = ov ? `${ov.width}×${ov.height}` : "";
    $("f-violation").textContent = cfg.violations[ev.violation] || ev.violation;
    $("f-violation").className = `badge v-${ev.violation}`;
    $("f-confidence").textContent = ev.confidence.toFixed(2);
    $("f-captured").textContent = roadeye.fmtTime(ev.captured_at);
    $("f-camera").textContent = `${ev.site_id} / ${ev.camera_id} (${ev.device_id})`;
    $("f-vehicle").textContent = `${ev.vehicle_class}, track ${ev.track_id}`;
    const se = ev.signed_event;
    $("f-frames").textContent = `${se.frames_agreed} of ${se.frames_observed} frames agree`;
    $("f-link").textContent = ev.event_id.slice(0, 13) + "…";
    $("f-link").href = `/events/${ev.event_id}`;
    $("f-clock").classList.toggle("hidden", ev.clock_synchronized);
    const first = ev.reviews.find((r) => r.stage === 1);
    $("f-stage").textContent = ev.status === "second_review" ? "2nd review" : "";
    $("f-prior").classList.toggle("hidden", !first || ev.status !== "second_review");
    if (first) $("f-prior").textContent = `1st review by ${first.reviewer}: ${first.decision}` +
      (first.reason_code ? ` (${REASON_LABEL[first.reason_code]})` : "");
    const plate = $("plate-text");
    plate.value = (h && h.plate) || ev.plate_corrected || ev.plate_text || "";
    $("plate-conf").textContent = ev.plate_confidence != null ? `read ${ev.plate_confidence.toFixed(2)}` : "";
    const decided = h && h.decision && h.decision !== "skipped";
    document.body.classList.toggle("decided", !!decided);
    $("btn-confirm").disabled = !!decided; $("btn-reject").disabled = !!decided;
    plate.disabled = !!decided;
    if (decided) {
      $("f-stage").textContent = h.decision === "confirmed" ? "✔ you confirmed" : `✖ you rejected (${REASON_LABEL[h.reason]})`;
    }
    document.querySelectorAll(".boxes").forEach((s) => s.classList.toggle("hidden", !state.showBoxes));
    const img = $("overview").querySelector("img");
    if (img) { if (img.complete) applyZoom(); else img.addEventListener("load", applyZoom, { once: true }); }
    showReasons(false);
    updateCounts();
  }

  async function advance() {
    state.hpos = -1;
    state.cur = state.buffer.shift() || null;
    if (!state.cur) {
      await fill();
      state.cur = state.buffer.shift() || null;
    }
    render();
    fill();
  }

  function plateValue(ev) {
    const v = $("plate-text").value.trim();
    const orig = ev.plate_corrected || ev.plate_text || "";
    return v && v.toUpperCase() !== orig ? v : null;
  }

  function decide(decision, reason) {
    const h = viewing();
    const ev = h ? h.ev : state.cur;
    if (!ev || (h && h.decision && h.decision !== "skipped")) return;
    const note = $("reject-note").value.trim();
    if (reason === "other" && !note) { roadeye.toast("“Other” needs a note: type it, then press 5 again", "error"); $("reject-note").focus(); return; }
    const body = { decision, plate_text: plateValue(ev), note: note || null, reason_code: reason || null };
    const entry = h || { ev };
    Object.assign(entry, { decision, reason, plate: body.plate_text });
    if (!h) state.history.push(entry);
    state.skipped.delete(ev.event_id);
    state.reviewed += 1;
    $("reject-note").value = "";
    if (state.counts.pending && ev.status === "pending") state.counts.pending -= 1;
    roadeye.api("POST", `/api/events/${ev.event_id}/review`, body).then((res) => {
      entry.result = res;
      roadeye.toast(`${decision === "confirmed" ? "Confirmed" : "Rejected"} · ${res.plate || "no plate"}`, decision === "confirmed" ? "ok" : "info", 1500);
    }).catch((ex) => {
      state.reviewed -= 1;
      entry.decision = null;
      roadeye.toast(`Not saved (${ex.message}). The event is shown again.`, "error", 6000);
      if (ex.status !== 409) { state.buffer.unshift(state.cur); state.cur = ev; state.hpos = -1; render(); }
    });
    if (h) { state.hpos = -1; render(); } else advance();
  }

  function skip() {
    const h = viewing();
    if (h) {  // moving forward through history
      state.hpos = state.hpos + 1 < state.history.length ? state.hpos + 1 : -1;
      render(); return;
    }
    if (!state.cur) return;
    state.skipped.add(state.cur.event_id);
    state.history.push({ ev: state.cur, decision: "skipped" });
    advance();
  }

  function prev() {
    if (!state.history.length) return;
    state.hpos = state.hpos === -1 ? state.history.length - 1 : Math.max(0, state.hpos - 1);
    render();
  }

  function showReasons(on) {
    state.rejecting = on;
    $("reasons").classList.toggle("hidden", !on);
    $("btn-reject").classList.toggle("active", on);
  }

  function editPlate() {
    const p = $("plate-text");
    if (p.disabled) return;
    p.focus(); p.select();
  }

  // Z: zoom the overview onto the vehicle (a 9 MP frame shrunk to the screen hides details).
  const VEHICLES = new Set(["car", "bus", "truck", "van", "two_wheeler"]);
  function applyZoom() {
    const ev = viewing()?.ev || state.cur;
    const frame = $("overview").querySelector(".frame");
    const img = frame && frame.querySelector("img");
    if (!ev || !frame || !img) return;
    frame.style.transformOrigin = "0 0";
    if (!state.zoom || !img.clientWidth) { frame.style.transform = ""; return; }
    const ov = byKind(ev, "overview") || byKind(ev, "vehicle_crop");
    const vb = (ov.boxes.find((b) => VEHICLES.has(b.label)) || { box: ev.signed_event.vehicle.box }).box;
    const pane = $("overview");
    const [cw, ch] = [pane.clientWidth, pane.clientHeight];
    const s = img.clientWidth / ov.width;
    const [bw, bh] = [(vb.x2 - vb.x1) * s, (vb.y2 - vb.y1) * s];
    const k = Math.max(1, Math.min(6, 0.92 * Math.min(cw / bw, ch / bh)));
    const [cx, cy] = [(vb.x1 + vb.x2) / 2 * s, (vb.y1 + vb.y2) / 2 * s];
    const ox = frame.offsetLeft;  // the frame is centred in the (positioned) pane
    frame.style.transform = `translate(${cw / 2 - ox - cx * k}px, ${ch / 2 - cy * k}px) scale(${k})`;
  }
  function toggleZoom() {
    state.zoom = !state.zoom;
    applyZoom();
  }

  function toggleBoxes() {
    state.showBoxes = !state.showBoxes;
    $("show-boxes").checked = state.showBoxes;
    document.querySelectorAll(".boxes").forEach((s) => s.classList.toggle("hidden", !state.showBoxes));
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const help = $("help");
    if (!help.classList.contains("hidden")) { help.classList.add("hidden"); e.preventDefault(); return; }
    const t = e.target;
    if (t.id === "plate-text") {
      if (e.key === "Enter") { t.value = t.value.trim().toUpperCase(); t.blur(); e.preventDefault(); }
      if (e.key === "Escape") { const ev = viewing()?.ev || state.cur; t.value = ev ? (ev.plate_corrected || ev.plate_text || "") : ""; t.blur(); }
      return;
    }
    if (t.id === "reject-note") {
      if (e.key === "Escape") { t.blur(); showReasons(false); }
      if (e.key === "Enter") { t.blur(); decide("rejected", "other"); e.preventDefault(); }
      return;
    }
    if (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT") return;
    const k = e.key.toLowerCase();
    if (state.rejecting && /^[1-5]$/.test(k)) { decide("rejected", REASONS[Number(k) - 1]); e.preventDefault(); return; }
    const actions = {
      c: () => !$("btn-confirm").disabled && decide("confirmed"),
      r: () => !$("btn-reject").disabled && showReasons(!state.rejecting),
      escape: () => showReasons(false), e: editPlate, j: skip, k: prev, b: toggleBoxes, z: toggleZoom,
      "?": () => help.classList.remove("hidden"),
    };
    if (actions[k]) { actions[k](); e.preventDefault(); }
  });

  document.addEventListener("DOMContentLoaded", () => {
    $("btn-confirm").addEventListener("click", () => decide("confirmed"));
    $("btn-reject").addEventListener("click", () => showReasons(!state.rejecting));
    document.querySelectorAll("button.reason").forEach((b) => b.addEventListener("click", () => decide("rejected", b.dataset.code)));
    $("btn-next").addEventListener("click", skip);
    $("btn-prev").addEventListener("click", prev);
    $("show-boxes").addEventListener("change", toggleBoxes);
    $("overview").addEventListener("click", toggleZoom);
    window.addEventListener("resize", applyZoom);
    $("reload").addEventListener("click", advance);
    document.querySelectorAll("button.stage").forEach((b) => b.addEventListener("click", async () => {
      document.querySelectorAll("button.stage").forEach((x) => x.classList.toggle("active", x === b));
      await release();
      Object.assign(state, { stage: Number(b.dataset.stage), buffer: [], cur: null, history: [], hpos: -1 });
      state.skipped.clear();
      advance();
    }));
    advance();
    setInterval(() => { if (!state.cur && !viewing()) advance(); }, 15000);  // pick up new events
  });

  function release() {
    const ids = state.buffer.map((e) => e.event_id).concat(state.cur ? [state.cur.event_id] : [], [...state.skipped]);
    if (!ids.length) return Promise.resolve();
    return fetch("/api/review/release", { method: "POST", keepalive: true, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": roadeye.csrf() },
      body: JSON.stringify({ event_ids: ids.slice(0, 500) }) }).catch(() => {});
  }
  window.addEventListener("pagehide", release);
})();
