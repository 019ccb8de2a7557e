// Magpie's web ground station page. Plain JavaScript, no library, no build step, no network
// beyond the web ground itself. Live data arrives on one websocket (/ws) in batches; history,
// commands, sequences and images go through the JSON API (/api/...). Every failure shows a line
// in the notice bar and the page keeps trying: the websocket reconnects by itself.
"use strict";

const SEVERITIES = ["FATAL", "WARNING_HI", "WARNING_LO", "COMMAND", "ACTIVITY_HI", "ACTIVITY_LO", "DIAGNOSTIC"];
const INT_TYPES = new Set(["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"]);
const $ = (id) => document.getElementById(id);
const S = {
  cfg: null, scid: null, dict: null, rows: new Map(), ws: null, retryMs: 500, lastMsg: 0,
  events: [], sev: new Set(SEVERITIES), search: "", cmds: new Map(), status: null,
  pos: { x: null, y: null }, track: [], goal: null, hazards: [], plotName: null, plotLive: true,
  images: [], notices: new Map(), latest: new Map(), inView: new Set(), rowsDirty: false,
};
// Figures a benchmark or a test can read: per-sample latency from the web ground to this page
window.magpieStats = { batches: 0, samples: 0, latWeb: [], latSc: [], latShown: [], reconnects: 0 };

function notice(key, text, level) {
  if (text) S.notices.set(key, [text, level || "error"]); else S.notices.delete(key);
  const box = $("notice"); box.textContent = "";
  for (const [k, [t, l]] of S.notices) {
    const d = document.createElement("div"); d.className = l; d.dataset.key = k; d.textContent = t; box.appendChild(d);
  }
}

async function api(path, opts) {
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new Error(`the web ground is not answering (${path})`);
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) throw new Error((body && body.error) || `${path}: HTTP ${resp.status}`);
  return body;
}

function post(path, obj) {
  const headers = { "Content-Type": "application/json" };
  const token = $("cmd-token").value.trim();
  if (token) { headers["X-Magpie-Token"] = token; localStorage.setItem("magpieToken", token); }
  return api(path, { method: "POST", headers, body: JSON.stringify(obj) });
}

function fmt(v) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(6).replace(/\.?0+$/, "");
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function limitClass(ch, v) {
  if (typeof v !== "number" || !ch.limits) return "";
  const out = (r) => r && (v < r[0] || v > r[1]);
  if (out(ch.limits.red)) return "red";
  if (out(ch.limits.yellow)) return "yellow";
  return ch.limits.red || ch.limits.yellow ? "ok" : "";
}

// -- channels -------------------------------------------------------------------------------

function buildChannels() {
  const body = document.querySelector("#channels tbody"); body.textContent = "";
  const names = $("channel-names"); names.textContent = "";
  S.rows.clear(); S.latest.clear(); S.inView.clear();
  if (S.observer) S.observer.disconnect();
  // rows scrolled into the panel are the ones worth redrawing
  S.observer = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const row = S.rows.get(e.target.dataset.name);
      if (!row) continue;
      if (e.isIntersecting) { S.inView.add(row); row.shown = null; } else S.inView.delete(row);
    }
    S.rowsDirty = true;
  }, { root: $("channels-panel") });
  for (const ch of S.dict.channels) {
    const tr = document.createElement("tr"); tr.className = "ch-row"; tr.dataset.name = ch.name;
    tr.innerHTML = "<td class='ch-name'></td><td class='ch-value'></td><td class='ch-units'></td><td class='ch-time'></td>";
    tr.children[0].textContent = ch.name; tr.children[0].title = ch.doc || "";
    tr.children[2].textContent = ch.units || "";
    tr.children[0].addEventListener("click", () => openPlot(ch.name, true));
    body.appendChild(tr);
    S.rows.set(ch.name, { ch, tr, value: tr.children[1], time: tr.children[3], shown: null });
    S.observer.observe(tr);
    const o = document.createElement("option"); o.value = ch.name; names.appendChild(o);
  }
  applyChannelFilter();
}

function globToRe(p) {
  return new RegExp("^" + p.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
}

function applyChannelFilter() {
  const f = $("ch-filter").value.trim();
  const re = f ? (/[*?]/.test(f) ? globToRe(f) : null) : null;
  for (const [name, row] of S.rows) {
    const show = !f || (re ? re.test(name) : name.includes(f));
    row.tr.style.display = show ? "" : "none";
  }
}

function onSample(s) {
  // Store only; rows on screen are redrawn at most every 100 ms (see renderRows), so a
  // thousand channels at 10 Hz cost the page what the operator can see, not what arrives.
  const [scid, name, t, v, wallMs] = s;
  if (scid !== S.scid) return;
  S.latest.set(name, s);
  S.rowsDirty = true;
  if (wallMs) {
    const st = window.magpieStats, now = Date.now();
    st.samples++;
    if (st.latWeb.length < 200000) { st.latWeb.push(now - wallMs); st.latSc.push(now - t * 1000); }
  }
  if (name === S.plotName && S.plotLive) S.plot.add(t, v);
  onNav(name, v, t);
  onStatusChannel(name, v);
}

function renderRows() {
  S.rowsDirty = false;
  const st = window.magpieStats, now = Date.now();
  for (const row of S.inView) {
    const s = S.latest.get(row.ch.name);
    if (!s || row.shown === s) continue;
    row.shown = s;
    const [, , t, v, wallMs] = s;
    row.value.textContent = fmt(v);
    row.time.textContent = typeof t === "number" ? t.toFixed(2) : "";
    const cls = "ch-row " + limitClass(row.ch, v);
    if (row.tr.className !== cls) row.tr.className = cls;
    if (wallMs && st.latShown.length < 200000) st.latShown.push(now - t * 1000);
  }
}

// -- map ------------------------------------------------------------------------------------

function onNav(name, v, t) {
  if (!name.startsWith("nav.")) return;
  const q = name.slice(4);
  if (q === "goal_x_m") S.goal = [v, S.goal ? S.goal[1] : 0];
  else if (q === "goal_y_m") S.goal = [S.goal ? S.goal[0] : 0, v];
  else if (q === "x_m" || q === "y_m") {
    // x and y of one position share the packet's time: a track point needs both
    if (!S.fix || S.fix.t !== t) S.fix = { t, x: null, y: null };
    S.fix[q[0]] = v;
    if (q === "x_m") S.pos.x = v; else S.pos.y = v;
    if (S.fix.x !== null && S.fix.y !== null) {
      const last = S.track[S.track.length - 1];
      if (!last || Math.hypot(last[0] - S.fix.x, last[1] - S.fix.y) > 0.005) S.track.push([S.fix.x, S.fix.y, t]);
      if (S.track.length > 20000) S.track.splice(0, 5000);
    }
    if (S.pos.x !== null && S.pos.y !== null) $("map-pos").textContent = `rover x ${S.pos.x.toFixed(2)} m, y ${S.pos.y.toFixed(2)} m`;
  } else return;
  S.mapDirty = true;
}

function drawMap() {
  const c = $("map"), ctx = c.getContext("2d"), W = c.width, H = c.height;
  ctx.clearRect(0, 0, W, H);
  // fixed things of the site (a scenario's lander), else the lander at the navigation origin
  const marks = (S.cfg && S.cfg.landmarks && S.cfg.landmarks.length) ? S.cfg.landmarks : [{ name: "lander", x: 0, y: 0 }];
  const pts = [...marks.map((m) => [m.x, m.y]), ...S.track.map((p) => [p[0], p[1]]), ...S.hazards];
  if (S.goal) pts.push(S.goal);
  let x0 = Math.min(...pts.map((p) => p[0])) - 1, x1 = Math.max(...pts.map((p) => p[0])) + 1;
  let y0 = Math.min(...pts.map((p) => p[1])) - 1, y1 = Math.max(...pts.map((p) => p[1])) + 1;
  const k = Math.min(W / (x1 - x0), H / (y1 - y0));
  const X = (x) => (x - x0) * k + (W - (x1 - x0) * k) / 2, Y = (y) => H - ((y - y0) * k + (H - (y1 - y0) * k) / 2);
  ctx.strokeStyle = "#eee";
  for (let g = Math.ceil(x0); g <= x1; g++) { ctx.beginPath(); ctx.moveTo(X(g), 0); ctx.lineTo(X(g), H); ctx.stroke(); }
  for (let g = Math.ceil(y0); g <= y1; g++) { ctx.beginPath(); ctx.moveTo(0, Y(g)); ctx.lineTo(W, Y(g)); ctx.stroke(); }
  ctx.fillStyle = "#6b7280";
  for (const m of marks) { ctx.fillRect(X(m.x) - 6, Y(m.y) - 6, 12, 12); ctx.fillText(m.name, X(m.x) + 8, Y(m.y) - 8); }
  ctx.fillStyle = "#dc2626";
  for (const h of S.hazards) { ctx.beginPath(); ctx.arc(X(h[0]), Y(h[1]), 4, 0, 7); ctx.fill(); }
  if (S.goal) { ctx.strokeStyle = "#16a34a"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(X(S.goal[0]), Y(S.goal[1]), 7, 0, 7); ctx.stroke(); }
  ctx.strokeStyle = "#2563eb"; ctx.lineWidth = 1.5; ctx.beginPath();
  S.track.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
  ctx.stroke();
  if (S.pos.x !== null && S.pos.y !== null) { ctx.fillStyle = "#111"; ctx.beginPath(); ctx.arc(X(S.pos.x), Y(S.pos.y), 5, 0, 7); ctx.fill(); }
  $("map").dataset.points = String(S.track.length);
}

async function loadTrack() {
  if (!S.rows.has("nav.x_m")) return;
  try {
    const [xs, ys] = await Promise.all(["x_m", "y_m"].map((q) => api(`/api/tlm/${S.scid}/nav.${q}?max=3000`)));
    const n = Math.min(xs.points.length, ys.points.length);
    S.track = [];
    for (let i = 0; i < n; i++) S.track.push([xs.points[i][1], ys.points[i][1], xs.points[i][0]]);
    S.mapDirty = true;
  } catch (e) { notice("track", `map: ${e.message}`); }
}

// -- status badges --------------------------------------------------------------------------

function badge(id, text, level) { const b = $(id); b.textContent = text; b.className = "badge " + (level || ""); }

function onStatusChannel(name, v) {
  if (name.endsWith(".mode_name")) badge("mode-state", `mode ${v}`, v === "SAFE" ? "bad" : "ok");
  else if (name.endsWith(".trips") && name.split(".").length === 2) badge("fault-state", `trips ${v}`, v ? "warn" : "ok");
  else if (name.endsWith(".rec_fill_pct")) badge("rec-state", `recorder ${fmt(v)} %`, v > 95 ? "bad" : v > 80 ? "warn" : "ok");
}

function dur(s) {
  if (s === null || s === undefined) return "?";
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function onStatus(st) {
  S.status = st;
  const silent = st.ground_silent_s;
  if (silent === null) { badge("ground-state", "ground: nothing received yet", "warn"); }
  else if (silent > 5) {
    badge("ground-state", `ground silent ${dur(silent)}`, "bad");
    notice("ground", `no telemetry from the ground for ${dur(silent)}: the ground process or the link may be down`);
  } else { badge("ground-state", "ground live", "ok"); notice("ground", null); }
  const L = st.link || {};
  let text = "link";
  if (L.one_way_s !== null && L.one_way_s !== undefined) text += ` light time ${dur(L.one_way_s)}`;
  if (L.in_view === true) text += L.pass_left_s ? `, in view ${dur(L.pass_left_s)} more` : ", in view";
  else if (L.in_view === false) text += `, out of view, next pass in ${dur(L.next_pass_in_s)}`;
  badge("link-state", text, L.in_view === false ? "warn" : L.in_view ? "ok" : "");
  let c = L.one_way_s !== null && L.one_way_s !== undefined
    ? `one-way light time ${dur(L.one_way_s)} (a command's first stage comes back after about ${dur(2 * L.one_way_s)})`
    : "light time unknown (start magpie web with --link)";
  if (L.next_pass_in_s) c += `; next pass in ${dur(L.next_pass_in_s)}`;
  $("cmd-link").textContent = c;
}

// -- events ---------------------------------------------------------------------------------

function evtMatch(e) {
  if (!S.sev.has(e.severity)) return false;
  if (S.search && !(`${e.name} ${e.text}`.toLowerCase().includes(S.search))) return false;
  return true;
}

function onEvent(e) {
  if (e.scid !== S.scid) return;
  S.events.push(e);
  if (S.events.length > 5000) S.events.splice(0, 1000);
  if (e.name === "HazardAhead" && Array.isArray(e.args) && e.args.length >= 2) { S.hazards.push([+e.args[0], +e.args[1]]); S.mapDirty = true; }
  S.eventsDirty = true;
}

function renderEvents() {
  const box = $("events"); box.textContent = "";
  const shown = S.events.filter(evtMatch).slice(-300).reverse();
  for (const e of shown) {
    const d = document.createElement("div"); d.className = `ev sev-${e.severity}`;
    d.textContent = `${Number(e.time).toFixed(2)} ${e.severity.padEnd(11)} ${e.name}: ${e.text}`;
    box.appendChild(d);
  }
  box.dataset.count = String(shown.length);
}

function buildSeverity() {
  const box = $("evt-sev"); box.textContent = "";
  for (const s of SEVERITIES) {
    const l = document.createElement("label"), cb = document.createElement("input");
    cb.type = "checkbox"; cb.checked = S.sev.has(s); cb.dataset.sev = s;
    cb.addEventListener("change", () => { if (cb.checked) S.sev.add(s); else S.sev.delete(s); renderEvents(); });
    l.append(cb, " " + s); box.appendChild(l);
  }
}

async function loadEvents() {
  try {
    const r = await api(`/api/events/${S.scid}?limit=2000`);
    S.events = []; S.hazards = [];
    r.events.forEach(onEvent);
    renderEvents();
  } catch (e) { notice("events", `events: ${e.message}`); }
}

// -- plot -----------------------------------------------------------------------------------

async function openPlot(name, live, since, until) {
  $("plot-channel").value = name;
  const ch = S.rows.get(name);
  S.plotLive = live;
  let q = "?max=4000";
  if (since !== undefined && since !== "") q += `&since=${encodeURIComponent(since)}`;
  if (until !== undefined && until !== "") q += `&until=${encodeURIComponent(until)}`;
  try {
    const r = await api(`/api/tlm/${S.scid}/${encodeURIComponent(name)}${q}`);
    S.plotName = name;
    S.plot.set(name, ch ? ch.ch.units : r.units, r.points);
    notice("plot", null);
    if (!live) $("plot-info").textContent += ` (archive range, ${r.total} samples)`;
  } catch (e) {
    notice("plot", `plot: ${e.message}`);
  }
}

// -- commands -------------------------------------------------------------------------------

function buildCommands() {
  const sel = $("cmd-select"); sel.textContent = "";
  for (const c of [...S.dict.commands].sort((a, b) => a.name.localeCompare(b.name))) {
    const o = document.createElement("option"); o.value = c.name; o.textContent = c.name; sel.appendChild(o);
  }
  sel.addEventListener("change", buildArgs);
  const prefer = ["NAV_GOTO", "DRIVE_ARC", "CMD_NOOP"].find((n) => S.dict.commands.some((c) => c.name === n));
  if (prefer) sel.value = prefer;
  buildArgs();
}

function commandEntry(name) { return S.dict.commands.find((c) => c.name === name); }

function buildArgs() {
  const c = commandEntry($("cmd-select").value), box = $("cmd-args");
  box.textContent = ""; $("cmd-error").textContent = "";
  if (!c) return;
  $("cmd-doc").textContent = c.doc || "";
  for (const a of c.args) {
    const l = document.createElement("label");
    let input;
    if (a.type === "enum" && a.enum) {
      input = document.createElement("select");
      for (const k of Object.keys(a.enum)) { const o = document.createElement("option"); o.value = k; o.textContent = k; input.appendChild(o); }
    } else if (a.type === "bool") {
      input = document.createElement("select");
      for (const k of ["false", "true"]) { const o = document.createElement("option"); o.value = k; o.textContent = k; input.appendChild(o); }
    } else {
      input = document.createElement("input");
      input.type = "text";
      if (a.min !== null && a.min !== undefined && a.max !== null && a.max !== undefined) input.placeholder = `${a.min} to ${a.max}`;
      else input.placeholder = a.type;
    }
    input.name = a.name; input.dataset.type = a.type;
    l.append(`${a.name} `, input, ` ${a.units || ""}`);
    l.title = a.doc || "";
    box.appendChild(l);
  }
}

function readArgs(c) {
  // The same checks as the ground's (flight.cmdcodec.check_args): a bad form never leaves the page
  const args = {}, errors = [];
  for (const a of c.args) {
    const input = document.querySelector(`#cmd-args [name="${a.name}"]`);
    input.classList.remove("bad");
    const text = input.value.trim();
    let v;
    if (a.type === "enum") v = text;
    else if (a.type === "bool") v = text === "true";
    else if (a.type === "str") { v = input.value; if (new TextEncoder().encode(v).length > 255) errors.push(`${a.name}: longer than 255 bytes`); }
    else {
      if (text === "") { errors.push(`${a.name}: a value is needed`); input.classList.add("bad"); continue; }
      v = Number(text);
      if (!Number.isFinite(v)) errors.push(`${a.name}: ${JSON.stringify(text)} is not a number`);
      else if (INT_TYPES.has(a.type) && !Number.isInteger(v)) errors.push(`${a.name}: ${text} is not a whole number`);
      else if (a.min !== null && a.min !== undefined && v < a.min) errors.push(`${a.name}: ${text} is below the minimum ${a.min}`);
      else if (a.max !== null && a.max !== undefined && v > a.max) errors.push(`${a.name}: ${text} is above the maximum ${a.max}`);
      else if (a.type.startsWith("u") && v < 0) errors.push(`${a.name}: ${text} is negative`);
    }
    if (errors.length && errors[errors.length - 1].startsWith(a.name + ":")) input.classList.add("bad");
    args[a.name] = v;
  }
  return [args, errors];
}

async function sendCommand(name, args) {
  const r = await post("/api/command", { scid: S.scid, name, args });
  onCommand(r.command);
  return r.command;
}

async function onSubmit(ev) {
  ev.preventDefault();
  const c = commandEntry($("cmd-select").value);
  if (!c) { $("cmd-error").textContent = "choose a command"; return; }
  const [args, errors] = readArgs(c);
  if (errors.length) { $("cmd-error").textContent = "not sent: " + errors.join("; "); return; }
  $("cmd-error").textContent = "";
  try { await sendCommand(c.name, args); }
  catch (e) { $("cmd-error").textContent = `not sent: ${e.message}`; }
}

function onCommand(rec) {
  const old = S.cmds.get(rec.id) || {};
  const merged = Object.assign({}, old, rec);
  if (!merged.sent_unix) merged.sent_unix = Date.now() / 1000;
  S.cmds.set(rec.id, merged);
  let tr = document.querySelector(`#cmd-history tr[data-id="${rec.id}"]`);
  if (!tr) {
    tr = document.createElement("tr"); tr.dataset.id = rec.id;
    tr.innerHTML = "<td></td><td class='cmd-name'></td><td class='stage'></td><td class='reason'></td><td class='after'></td>";
    document.querySelector("#cmd-history tbody").prepend(tr);
  }
  tr.children[0].textContent = rec.id;
  tr.children[1].textContent = `${merged.name} ${JSON.stringify(merged.args || {})}`;
  tr.children[2].textContent = merged.stage; tr.children[2].className = `stage stage-${merged.stage}`;
  tr.dataset.stage = merged.stage;
  tr.children[3].textContent = merged.reason || "";
  const hist = merged.history || [];
  tr.children[4].textContent = hist.length > 1 ? hist.slice(1).map((h) => `${h[0]} +${(h[1] - hist[0][1]).toFixed(1)}`).join(", ") : "";
}

async function seqCall(path) {
  const out = $("seq-result");
  try {
    const r = await post(path, { scid: S.scid, text: $("seq-text").value });
    out.className = r.ok ? "" : "error";
    const onboard = r.ok && r.onboard_only && r.onboard_only.length
      ? `\nruns on board only (SEQ_RUN), not from the ground: ${r.onboard_only.map(([n, m]) => `line ${n}: ${m}`).join("; ")}` : "";
    out.textContent = r.ok ? (Array.isArray(r.commands) ? `ok: ${r.commands.length} command(s), checked against the dictionary${onboard}`
      : `running from the ground: ${r.commands} command(s)`) : r.errors.map(([n, m]) => `line ${n}: ${m}`).join("\n");
  } catch (e) { out.className = "error"; out.textContent = e.message; }
}

// -- images ---------------------------------------------------------------------------------

function onImages(scid, list) {
  if (scid !== S.scid) return;
  S.images = list;
  const byPid = new Map();
  for (const v of list) { if (!byPid.has(v.pid)) byPid.set(v.pid, {}); byPid.get(v.pid)[v.kind] = v; }
  const box = $("thumbs"); box.textContent = "";
  for (const [pid, kinds] of [...byPid].sort((a, b) => b[0] - a[0])) {
    const card = document.createElement("div"); card.className = "thumb"; card.dataset.pid = pid;
    const t = kinds.thumb, f = kinds.full;
    if (t && t.status === "complete") {
      const img = document.createElement("img"); img.src = `/api/images/${scid}/${pid}/thumb`; img.alt = `product ${pid}`;
      img.addEventListener("click", () => showFull(scid, pid, f));
      card.appendChild(img);
    }
    const info = document.createElement("div");
    info.textContent = `#${pid} thumb ${t ? t.status : "none"}, full ${f ? f.status : "not down"}`;
    card.appendChild(info);
    for (const v of [t, f]) {
      if (v && v.status === "partial") {
        const b = document.createElement("button"); b.textContent = `request missing ${v.kind} segments ${v.missing}`;
        b.className = "resend";
        b.addEventListener("click", async () => {
          try { await post(`/api/images/${scid}/${pid}/${v.kind}/resend`, {}); b.textContent = "asked again"; b.disabled = true; }
          catch (e) { notice("img", `images: ${e.message}`); }
        });
        card.appendChild(b);
      }
    }
    if (!f && commandEntry("IMG_DOWNLINK")) {
      const b = document.createElement("button"); b.textContent = "request full frame";
      b.addEventListener("click", async () => {
        try { await sendCommand("IMG_DOWNLINK", { pid: Number(pid), what: fullWhat() }); b.textContent = "requested"; b.disabled = true; }
        catch (e) { notice("img", `images: ${e.message}`); }
      });
      card.appendChild(b);
    }
    box.appendChild(card);
  }
}

function fullWhat() {
  const a = commandEntry("IMG_DOWNLINK").args.find((x) => x.name === "what");
  const keys = a && a.enum ? Object.keys(a.enum) : [];
  return keys.find((k) => k.toUpperCase().startsWith("FULL")) || keys[keys.length - 1];
}

function showFull(scid, pid, f) {
  const box = $("full"); box.textContent = "";
  if (f && f.status === "complete") {
    const img = document.createElement("img"); img.src = `/api/images/${scid}/${pid}/full`; box.appendChild(img);
  } else box.textContent = `product ${pid}: full frame ${f ? f.status + ", missing " + f.missing : "not downlinked yet"}`;
}

// -- live connection ------------------------------------------------------------------------

function onMessage(msg) {
  S.lastMsg = Date.now();
  if (msg.t === "batch") {
    window.magpieStats.batches++;
    for (const s of msg.tlm) onSample(s);
    for (const it of msg.items) onItem(it);
    if (msg.dropped) notice("dropped", `${msg.dropped} live items were dropped because the page fell behind`, "info");
  } else onItem(msg);
}

function onItem(it) {
  if (it.t === "evt") onEvent(it.rec);
  else if (it.t === "status") onStatus(it);
  else if (it.t === "command") onCommand(it.rec);
  else if (it.t === "images") onImages(it.scid, it.list);
  else if (it.t === "notice") notice("server", it.text, it.level);
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  let ws;
  try { ws = new WebSocket(`${proto}://${location.host}/ws`); } catch (e) { scheduleReconnect(); return; }
  S.ws = ws;
  badge("conn-state", "connecting", "warn");
  ws.onopen = async () => {
    S.retryMs = 500; S.lastMsg = Date.now();
    badge("conn-state", "live", "ok");
    notice("conn", null);
    if (S.wasConnected) { window.magpieStats.reconnects++; await resync(); }
    S.wasConnected = true;
  };
  ws.onmessage = (e) => { try { onMessage(JSON.parse(e.data)); } catch (err) { notice("bad", `a malformed live message was ignored: ${err.message}`); } };
  ws.onclose = () => { if (S.ws === ws) scheduleReconnect(); };
  ws.onerror = () => { try { ws.close(); } catch (e) { /* closing anyway */ } };
}

function scheduleReconnect() {
  S.ws = null;
  const s = (S.retryMs / 1000).toFixed(1);
  badge("conn-state", `disconnected, retrying in ${s} s`, "bad");
  notice("conn", `connection to the web ground lost; reconnecting by itself (next try in ${s} s)`);
  setTimeout(async () => {
    if (!S.cfg) { await start(); return; }
    connect();
  }, S.retryMs);
  S.retryMs = Math.min(5000, S.retryMs * 2);
}

async function resync() {
  // after a reconnect: fill what was missed from the archive
  await Promise.all([loadLatest(), loadEvents(), loadTrack()]);
  try { const r = await api(`/api/images/${S.scid}`); onImages(S.scid, r.images); } catch (e) { notice("img", e.message); }
}

async function loadLatest() {
  try { const r = await api(`/api/latest/${S.scid}`); r.samples.forEach((s) => onSample([s[0], s[1], s[2], s[3], null])); }
  catch (e) { notice("latest", `channels: ${e.message}`); }
}

function chooseVehicle(scid) {
  const v = S.cfg.vehicles.find((x) => x.scid === scid) || S.cfg.vehicles[0];
  S.scid = v.scid; S.dict = v.dictionary;
  S.track = []; S.goal = null; S.hazards = []; S.pos = { x: null, y: null };
  buildChannels(); buildCommands();
}

async function start() {
  try { S.cfg = await api("/api/config"); }
  catch (e) { S.cfg = null; notice("conn", `${e.message}; retrying`); scheduleReconnect(); return; }
  notice("conn", null);
  if (!S.cfg.vehicles.length) { notice("cfg", "the ground configuration names no vehicle"); return; }
  const sel = $("vehicle"); sel.textContent = "";
  for (const v of S.cfg.vehicles) { const o = document.createElement("option"); o.value = v.scid; o.textContent = `${v.name} (${v.scid})`; sel.appendChild(o); }
  const params = new URLSearchParams(location.search);
  const want = Number(params.get("scid") || S.cfg.vehicles[0].scid);
  if (!S.cfg.vehicles.some((v) => v.scid === want)) notice("url", `no spacecraft ${params.get("scid")} at this ground; showing ${S.cfg.vehicles[0].scid}`);
  chooseVehicle(want); sel.value = S.scid;
  sel.onchange = async () => { chooseVehicle(Number(sel.value)); await resync(); };
  if (!S.cfg.may_command) notice("token", "commanding from this address needs the token (field beside send)", "info");
  onStatus(S.cfg.status);
  await resync();
  const plot = params.get("plot");
  if (plot) await openPlot(plot, true);  // an unknown channel shows the ground's message
  connect();
}

function init() {
  S.plot = new Plot($("plot"), $("plot-info"));
  $("cmd-token").value = localStorage.getItem("magpieToken") || "";
  buildSeverity();
  $("ch-filter").addEventListener("input", applyChannelFilter);
  $("evt-search").addEventListener("input", () => { S.search = $("evt-search").value.trim().toLowerCase(); renderEvents(); });
  $("cmd-form").addEventListener("submit", onSubmit);
  $("plot-live").addEventListener("click", () => openPlot($("plot-channel").value.trim(), true));
  $("plot-range").addEventListener("click", () => openPlot($("plot-channel").value.trim(), false, $("plot-since").value.trim(), $("plot-until").value.trim()));
  $("plot-reset").addEventListener("click", () => S.plot.reset());
  $("seq-check").addEventListener("click", () => seqCall("/api/seq/check"));
  $("seq-run").addEventListener("click", () => seqCall("/api/seq/run"));
  setInterval(() => {
    if (S.mapDirty) { S.mapDirty = false; drawMap(); }
    if (S.eventsDirty) { S.eventsDirty = false; renderEvents(); }
    // a connection that went quiet (status comes every second) is treated as dropped
    if (S.ws && S.ws.readyState === 1 && Date.now() - S.lastMsg > 6000) { S.ws.close(); }
  }, 250);
  setInterval(() => { if (S.ws && S.ws.readyState === 1) { try { S.ws.send("ping"); } catch (e) { /* reconnect follows */ } } }, 5000);
  // rows on screen are redrawn at most ten times a second (telemetry's own rate), in a frame
  let lastRows = 0;
  const frame = (ts) => {
    if (S.rowsDirty && ts - lastRows >= 100) { lastRows = ts; renderRows(); }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  drawMap();
  start();
}

init();
