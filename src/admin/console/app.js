// The trino-edge admin console: a single-page app over the admin REST API of this listener.
// Plain JavaScript, no library; the DOM is built with `h()` (text is never parsed as HTML) and
// the charts are SVG drawn from the gateway's own /metrics. Every API call carries the token the
// user signed in with (kept in sessionStorage, so it lives as long as the tab).
'use strict';

const TOKEN_KEY = 'trino-edge.console.token';
const OIDC_KEY = 'trino-edge.console.oidc'; // the PKCE verifier and state of a sign-in under way
const POLL_MS = 3000;
const KPI_WINDOW_MS = 60000;
const MAX_SAMPLES = 100; // 5 minutes at POLL_MS
const ROLES = ['viewer', 'operator', 'admin'];

const state = {
  info: null,
  me: null,
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  timers: [],
  samples: [],
  loginMessage: '',
};

// ---------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Replace the children of `el` (null, false and undefined are skipped, as in `h()`).
function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

function toast(message, kind = 'ok') {
  const t = h('div', { class: `toast toast-${kind}`, role: 'status' }, message);
  document.getElementById('toasts').append(t);
  setTimeout(() => t.remove(), kind === 'ok' ? 4000 : 8000);
}

function fmtNum(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (Math.abs(v) >= 1000) return v.toLocaleString('en-US', { maximumFractionDigits: 0 });
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

function fmtSeconds(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (v === 0) return '0';
  if (v < 1) return `${(v * 1000).toFixed(v < 0.01 ? 2 : 1)} ms`;
  return `${v.toFixed(2)} s`;
}

function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function ago(iso) {
  if (!iso) return '—';
  const secs = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (Number.isNaN(secs)) return iso;
  if (secs < 2) return 'just now';
  if (secs < 120) return `${secs}s ago`;
  if (secs < 7200) return `${Math.round(secs / 60)}m ago`;
  return `${Math.round(secs / 3600)}h ago`;
}

// ---------------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function errorMessage(status, data) {
  if (data && typeof data.error === 'string') return data.error;
  if (data && data.error && typeof data.error.message === 'string') return data.error.message;
  if (typeof data === 'string' && data) return data;
  return `HTTP ${status}`;
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, null, `cannot reach the admin listener: ${e.message}`);
  }
  const text = await r.text();
  let data = text;
  if ((r.headers.get('content-type') || '').includes('json') && text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!r.ok) {
    const err = new ApiError(r.status, data, errorMessage(r.status, data));
    if (r.status === 401 && authEnabled() && path !== '/api/v1/whoami') {
      signOut(`The admin API refused the token: ${err.message}`);
    }
    throw err;
  }
  return data;
}

function authEnabled() {
  return !!(state.info && state.info.auth && state.info.auth.enabled);
}

function roleAtLeast(role) {
  if (!state.me) return false;
  return ROLES.indexOf(state.me.role) >= ROLES.indexOf(role);
}

// A button that needs `role`: disabled (with the reason) when the signed-in role is lower.
function roleButton(role, label, attrs) {
  const allowed = roleAtLeast(role);
  return h('button', {
    ...attrs,
    disabled: !allowed,
    title: allowed ? attrs.title : `needs the ${role} role (you are ${state.me ? state.me.role : 'not signed in'})`,
  }, label);
}

// ---------------------------------------------------------------------------------------------
// Sign-in

async function loadMe() {
  state.me = await api('GET', '/api/v1/whoami');
  renderWho();
}

function signOut(message) {
  state.token = '';
  state.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  state.loginMessage = message || '';
  renderWho();
  if (location.hash !== '#/login') location.hash = '#/login';
  else route();
}

function renderWho() {
  const who = document.getElementById('who');
  put(who);
  if (state.me && state.me.authenticated) {
    who.append(
      h('span', { class: 'who-name', title: 'Who the admin API says you are' },
        h('span', { class: 'dot dot-ok' }), state.me.name),
      h('span', { class: `role role-${state.me.role}` }, state.me.role),
      h('button', { class: 'btn btn-ghost btn-sm', id: 'sign-out', onclick: () => signOut('Signed out.') }, 'Sign out'),
    );
  } else if (state.me && !state.me.authenticated) {
    who.append(h('span', { class: 'who-name', title: 'admin.auth is not configured: the admin listener is on loopback and needs no token' },
      h('span', { class: 'dot dot-warn' }), 'no admin auth (loopback)'));
  } else if (authEnabled()) {
    who.append(h('a', { class: 'btn btn-sm', href: '#/login' }, 'Sign in'));
  }
}

// OIDC sign-in (admin.auth.jwt.console_login): authorization code with PKCE, run here. The
// verifier and state wait in session storage while the provider has the tab; the code comes back
// in the query string of the console's own address, is redeemed at the token endpoint (the one
// origin besides this one the page may call), and the token is used like a pasted one.
function oidc() {
  return authEnabled() && state.info.auth.oidc ? state.info.auth.oidc : null;
}

function base64url(bytes) {
  let text = '';
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

function consoleAddress() {
  return `${location.origin}${location.pathname}`;
}

async function oidcSignIn() {
  const o = oidc();
  const verifier = randomText();
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const st = randomText();
  sessionStorage.setItem(OIDC_KEY, JSON.stringify({ verifier, state: st }));
  const q = new URLSearchParams({
    response_type: 'code', client_id: o.clientId, redirect_uri: consoleAddress(), scope: o.scopes,
    state: st, code_challenge: challenge, code_challenge_method: 'S256',
  });
  const sep = o.authorizationEndpoint.includes('?') ? '&' : '?';
  location.assign(`${o.authorizationEndpoint}${sep}${q}`);
}

// Back from the provider (`?code=...&state=...` or `?error=...`): redeem the code, keep the token.
// Returns a message for the sign-in page when that failed; null when there was nothing to do.
async function oidcReturn() {
  const q = new URLSearchParams(location.search);
  if (!q.has('code') && !q.has('error')) return null;
  history.replaceState(null, '', consoleAddress() + location.hash);
  const pending = JSON.parse(sessionStorage.getItem(OIDC_KEY) || 'null');
  sessionStorage.removeItem(OIDC_KEY);
  const o = oidc();
  if (q.has('error')) return `The identity provider refused the sign-in: ${q.get('error_description') || q.get('error')}`;
  if (!o || !pending || pending.state !== q.get('state')) return 'This sign-in was not started here (its state does not match); sign in again.';
  let r;
  try {
    r = await fetch(o.tokenEndpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: q.get('code'), redirect_uri: consoleAddress(),
        client_id: o.clientId, code_verifier: pending.verifier,
      }),
      cache: 'no-store',
    });
  } catch (e) {
    return `Cannot reach the identity provider's token endpoint (${o.tokenEndpoint}): ${e.message}. It must allow this console's origin (CORS).`;
  }
  const body = await r.json().catch(() => ({}));
  const token = body[o.token];
  if (!r.ok || !token) return `The identity provider gave no ${o.token}: ${body.error_description || body.error || `HTTP ${r.status}`}`;
  state.token = token;
  try {
    await loadMe();
  } catch (e) {
    state.token = '';
    state.me = null;
    return `The admin API does not accept the provider's ${o.token}: ${e.message}`;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  return null;
}

function pageLogin(main) {
  const enabled = authEnabled();
  const jwt = enabled && state.info.auth.jwt;
  const provider = oidc();
  const input = h('input', {
    id: 'token', type: 'password', class: 'input', autocomplete: 'off', spellcheck: 'false',
    placeholder: jwt ? 'API token or OIDC access token (JWT)' : 'API token',
  });
  const err = h('div', { class: 'form-error', id: 'login-error', hidden: !state.loginMessage }, state.loginMessage);
  state.loginMessage = '';
  const submit = async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) {
      err.textContent = 'Paste a token first.';
      err.hidden = false;
      return;
    }
    state.token = token;
    try {
      await loadMe();
      sessionStorage.setItem(TOKEN_KEY, token);
      location.hash = '#/overview';
    } catch (e) {
      state.token = '';
      state.me = null;
      renderWho();
      err.textContent = e.status === 401 || e.status === 403 ? `Not accepted: ${e.message}` : e.message;
      err.hidden = false;
    }
  };
  const card = h('form', { class: 'card login-card', onsubmit: submit },
    h('h1', {}, 'Sign in'),
    enabled
      ? [
        h('p', { class: 'muted' },
          'Paste an admin API token: a static token of ', h('code', {}, 'admin.auth.tokens'),
          jwt ? [' or an OIDC access token (JWT) the gateway accepts'] : [], '. Your role (viewer, operator or admin) decides what the console lets you do.'),
        provider
          ? h('div', { class: 'form-actions' },
            h('button', {
              class: 'btn btn-primary', id: 'sign-in-oidc', type: 'button',
              title: `Authorization code with PKCE at ${provider.authorizationEndpoint}`,
              onclick: () => oidcSignIn().catch((e) => { err.textContent = e.message; err.hidden = false; }),
            }, 'Sign in with single sign-on'))
          : [],
        h('label', { class: 'label', for: 'token' }, provider ? 'Or paste a token' : 'Token'),
        input,
        err,
        h('div', { class: 'form-actions' }, h('button', { class: provider ? 'btn' : 'btn btn-primary', id: 'sign-in', type: 'submit' }, 'Sign in')),
        h('p', { class: 'fine' },
          'The token stays in this tab’s session storage and is sent only to this admin listener, as ',
          h('code', {}, 'Authorization: Bearer'), '. Closing the tab forgets it.'),
      ]
      : [
        h('p', { class: 'muted' }, 'This gateway has no ', h('code', {}, 'admin.auth'),
          ': its admin listener only listens on loopback and needs no token.'),
        h('div', { class: 'form-actions' }, h('a', { class: 'btn btn-primary', href: '#/overview' }, 'Open the console')),
      ]);
  append(main, [h('div', { class: 'login-wrap' }, card)]);
  input.focus();
}

// ---------------------------------------------------------------------------------------------
// Router

const PAGES = {
  login: pageLogin,
  overview: pageOverview,
  backends: pageBackends,
  routing: pageRouting,
  history: pageHistory,
  hybrid: pageHybrid,
};

function every(ms, fn) {
  fn();
  state.timers.push(setInterval(fn, ms));
}

async function route() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  let name = location.hash.replace(/^#\/?/, '').split('?')[0] || 'overview';
  if (!PAGES[name]) name = 'overview';
  if (name !== 'login' && authEnabled() && !state.token) {
    location.hash = '#/login';
    return;
  }
  if (name !== 'login' && !state.me) {
    try {
      await loadMe();
    } catch (e) {
      if (e.status === 401) signOut(`The admin API refused the token: ${e.message}`);
      else showFatal(e);
      return;
    }
  }
  for (const a of document.querySelectorAll('#nav a[data-page]')) {
    a.classList.toggle('active', a.dataset.page === name);
  }
  document.body.dataset.page = name;
  const main = document.getElementById('main');
  put(main);
  PAGES[name](main);
}

function showFatal(e) {
  const main = document.getElementById('main');
  put(main, h('div', { class: 'card notice-error' }, h('h2', {}, 'The console cannot load'), h('p', {}, e.message)));
}

function pageHeader(title, subtitle, ...actions) {
  return h('div', { class: 'page-head' },
    h('div', {}, h('h1', {}, title), subtitle ? h('p', { class: 'muted' }, subtitle) : null),
    h('div', { class: 'page-actions' }, actions));
}

// Where the routing objects cannot change through the API, say so before anyone tries.
function readOnlyNotice() {
  if (!state.info || !state.info.readOnly) return null;
  return h('div', { class: 'notice' }, 'This gateway runs with ', h('code', {}, '--config-source file'),
    ': backends, groups and policies are read-only here (edit the file and send SIGHUP). Drain and activate are refused too.');
}

// ---------------------------------------------------------------------------------------------
// Prometheus text and the overview figures

function parseProm(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[2]))) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1], labels, value: promNumber(m[3]) });
  }
  return out;
}

function promNumber(v) {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return parseFloat(v);
}

function isErrorStatus(status) {
  return status === '0' || Number(status) >= 500;
}

// One poll of /metrics reduced to what the overview draws.
function summarize(series) {
  const s = { t: Date.now(), submits: 0, errors: 0, upstream: 0, count: 0, buckets: new Map(), backends: {} };
  const backend = (name) => (s.backends[name] = s.backends[name] || { up: 0, running: null, queued: null, estimated: 0 });
  for (const x of series) {
    const l = x.labels;
    switch (x.name) {
      case 'trino_edge_requests_total':
        if (l.kind === 'submit') s.submits += x.value;
        if (isErrorStatus(l.status)) s.errors += x.value;
        break;
      case 'trino_edge_request_duration_seconds_bucket':
        if (l.kind === 'submit') {
          const le = promNumber(l.le);
          s.buckets.set(le, (s.buckets.get(le) || 0) + x.value);
        }
        break;
      case 'trino_edge_request_duration_seconds_count':
        if (l.kind === 'submit') s.count += x.value;
        break;
      case 'trino_edge_upstream_errors_total':
        s.upstream += x.value;
        break;
      case 'trino_edge_backend_up':
        backend(l.backend).up = Math.max(backend(l.backend).up, x.value);
        break;
      case 'trino_edge_backend_running_queries':
        backend(l.backend).running = x.value;
        break;
      case 'trino_edge_backend_queued_queries':
        backend(l.backend).queued = x.value;
        break;
      case 'trino_edge_inflight_queries':
        backend(l.backend).estimated = x.value;
        break;
      default:
    }
  }
  return s;
}

// Counter increase between two samples (a restart of the gateway resets counters to 0).
function increase(a, b) {
  return b >= a ? b - a : b;
}

// What happened between samples `a` and `b`: rates per second and latency quantiles.
function between(a, b) {
  const dt = (b.t - a.t) / 1000;
  if (dt <= 0) return null;
  const buckets = [...b.buckets.keys()].sort((x, y) => x - y).map((le) => [le, increase(a.buckets.get(le) || 0, b.buckets.get(le))]);
  const count = increase(a.count, b.count);
  return {
    t: b.t,
    submitRate: increase(a.submits, b.submits) / dt,
    errorRate: increase(a.errors, b.errors) / dt,
    upstreamRate: increase(a.upstream, b.upstream) / dt,
    p50: quantile(0.5, buckets, count),
    p99: quantile(0.99, buckets, count),
    count,
  };
}

// Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank.
function quantile(q, buckets, count) {
  if (!count) return null;
  const rank = q * count;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, c] of buckets) {
    if (c >= rank) {
      if (le === Infinity) return prevLe;
      const inBucket = c - prevCount;
      return prevLe + (le - prevLe) * (inBucket > 0 ? (rank - prevCount) / inBucket : 1);
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}

// ---------------------------------------------------------------------------------------------
// SVG charts

const PALETTE = ['#2563eb', '#0d9488', '#d97706', '#7c3aed', '#db2777', '#65a30d', '#0891b2', '#dc2626'];

// A small line chart: `lines` are {label, color, points: [[t, v or null]]}; time runs over the
// last `spanMs`. Values are scaled to the largest one (at least `minMax`).
function lineChart(lines, { width = 560, height = 120, spanMs = chartSpan(), format = fmtNum, minMax = 1, compact = false } = {}) {
  width = Math.max(160, Math.round(width));
  const pad = compact ? { l: 36, r: 4, t: 6, b: 4 } : { l: 44, r: 8, t: 8, b: 18 };
  const now = Date.now();
  const t0 = now - spanMs;
  const values = lines.flatMap((l) => l.points.map((p) => p[1])).filter((v) => v !== null && Number.isFinite(v));
  const max = niceMax(Math.max(minMax, ...values));
  const x = (t) => pad.l + ((t - t0) / spanMs) * (width - pad.l - pad.r);
  const y = (v) => pad.t + (1 - v / max) * (height - pad.t - pad.b);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img' });
  for (const f of compact ? [0, 1] : [0, 0.5, 1]) {
    const yy = y(max * f);
    svg.append(s('line', { x1: pad.l, x2: width - pad.r, y1: yy, y2: yy, class: f === 0 ? 'axis' : 'grid' }));
    svg.append(s('text', { x: pad.l - 6, y: yy + 3, class: 'tick', 'text-anchor': 'end' }, format(max * f)));
  }
  if (!compact) {
    const label = spanMs >= 120000 ? `−${Math.round(spanMs / 60000)} min` : `−${Math.round(spanMs / 1000)} s`;
    svg.append(s('text', { x: pad.l, y: height - 4, class: 'tick' }, label));
    svg.append(s('text', { x: width - pad.r, y: height - 4, class: 'tick', 'text-anchor': 'end' }, 'now'));
  }
  for (const line of lines) {
    const segments = [];
    let cur = [];
    for (const [t, v] of line.points) {
      if (t < t0) continue;
      if (v === null || !Number.isFinite(v)) {
        if (cur.length) segments.push(cur);
        cur = [];
      } else cur.push([x(t), y(v)]);
    }
    if (cur.length) segments.push(cur);
    for (const seg of segments) {
      const d = seg.map((p, i) => `${i ? 'L' : 'M'}${p[0].toFixed(1)},${p[1].toFixed(1)}`).join('');
      if (line.fill && seg.length > 1) {
        const base = y(0).toFixed(1);
        svg.append(s('path', { d: `${d}L${seg[seg.length - 1][0].toFixed(1)},${base}L${seg[0][0].toFixed(1)},${base}Z`, fill: line.color, 'fill-opacity': 0.12, stroke: 'none' }));
      }
      svg.append(s('path', { d, fill: 'none', stroke: line.color, 'stroke-width': 2, 'stroke-dasharray': line.dash || null, 'vector-effect': 'non-scaling-stroke', 'stroke-linejoin': 'round' }));
      const last = seg[seg.length - 1];
      if (seg.length === 1) svg.append(s('circle', { cx: last[0], cy: last[1], r: 2.5, fill: line.color }));
    }
  }
  return svg;
}

// The charts cover what has been sampled since the page opened: from one minute up to five.
function chartSpan() {
  const first = state.samples.find((x) => !x.gap);
  const seen = first ? Date.now() - first.t : 0;
  return Math.min(MAX_SAMPLES * POLL_MS, Math.max(KPI_WINDOW_MS, seen));
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function legend(lines) {
  return h('div', { class: 'legend' }, lines.map((l) => h('span', { class: 'legend-item' },
    h('span', { class: `swatch${l.dash ? ' swatch-dash' : ''}`, dataset: { color: l.color } }), l.label)));
}

// Swatch colours are set through the CSSOM (allowed by the CSP, unlike style attributes).
function paintSwatches(root) {
  for (const el of root.querySelectorAll('.swatch[data-color]')) el.style.setProperty('--c', el.dataset.color);
}

// ---------------------------------------------------------------------------------------------
// Overview

function statePill(st) {
  return h('span', { class: `pill pill-${String(st || 'unknown').toLowerCase()}` }, st || '?');
}

function loadBar(value, limit) {
  if (!limit) return h('span', { class: 'load-text', title: 'no limit configured' }, String(value));
  const bar = h('span', { class: 'bar' }, h('span', { class: 'bar-fill' }));
  const frac = limit ? Math.min(1, value / limit) : 0;
  bar.firstChild.style.width = `${(frac * 100).toFixed(0)}%`;
  if (limit && frac >= 1) bar.classList.add('bar-full');
  return h('span', { class: 'load' }, bar, h('span', { class: 'load-text' }, limit ? `${value} / ${limit}` : String(value)));
}

function pageOverview(main) {
  const kpis = h('div', { class: 'kpis' });
  const charts = h('div', { class: 'grid-2' });
  const table = h('div', { class: 'card' });
  const status = h('span', { class: 'muted small', id: 'poll-status' }, 'loading…');
  append(main, [
    pageHeader('Overview', 'Live figures from this gateway’s /metrics (polled every 3 s) and /api/v1/backends.', status),
    kpis, charts, table,
  ]);
  const tick = async () => {
    let text;
    let backends;
    try {
      [text, backends] = await Promise.all([api('GET', '/metrics'), api('GET', '/api/v1/backends')]);
    } catch (e) {
      status.textContent = `update failed: ${e.message}`;
      status.classList.add('text-error');
      return;
    }
    status.classList.remove('text-error');
    const sample = summarize(parseProm(String(text)));
    const last = state.samples[state.samples.length - 1];
    // Samples from before a gap (another page was open) would draw a misleading line.
    if (last && sample.t - last.t > 3 * POLL_MS) state.samples.push({ gap: true, t: last.t + 1 });
    state.samples.push(sample);
    while (state.samples.length > MAX_SAMPLES + 5) state.samples.shift();
    status.textContent = `updated ${new Date(sample.t).toLocaleTimeString()}`;
    drawOverview(kpis, charts, table, backends);
  };
  every(POLL_MS, tick);
}

function drawOverview(kpis, charts, table, backends) {
  const samples = state.samples;
  const now = samples[samples.length - 1];
  // The KPI window: from the oldest sample within the last minute (after any gap) to now.
  let from = null;
  for (let i = samples.length - 2; i >= 0; i--) {
    if (samples[i].gap || now.t - samples[i].t > KPI_WINDOW_MS) break;
    from = samples[i];
  }
  const win = from ? between(from, now) : null;
  const steps = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    if (a.gap || b.gap) { steps.push({ t: b.t, gap: true }); continue; }
    const d = between(a, b);
    if (d) steps.push(d);
  }
  const pts = (f) => steps.map((d) => [d.t, d.gap ? null : f(d)]);
  const up = backends.filter((b) => b.state === 'HEALTHY').length;
  const span = win ? `last ${Math.round((now.t - from.t) / 1000)} s` : 'waiting for a second sample';

  // Chart widths in CSS pixels, so their text is drawn at its real size.
  const kpiWidth = (kpis.clientWidth - 3 * 16) / 4 - 38;
  const bigWidth = charts.clientWidth > 900 ? (charts.clientWidth - 16) / 2 - 38 : charts.clientWidth - 38;
  const kpi = (id, label, value, sub, chart) => h('div', { class: 'card kpi', id },
    h('div', { class: 'kpi-label' }, label),
    h('div', { class: 'kpi-value' }, value),
    h('div', { class: 'kpi-sub' }, sub),
    chart);
  const latencyLines = [
    { label: 'p50', color: PALETTE[0], points: pts((d) => d.p50) },
    { label: 'p99', color: PALETTE[2], points: pts((d) => d.p99) },
  ];
  const errorLines = [
    { label: '5xx or no answer', color: '#dc2626', points: pts((d) => d.errorRate), fill: true },
    { label: 'upstream errors', color: PALETTE[3], points: pts((d) => d.upstreamRate), dash: '4 3' },
  ];
  put(kpis,
    kpi('kpi-submissions', 'Submissions / s', win ? fmtNum(win.submitRate, 2) : '—', `POST /v1/statement, ${span}`,
      lineChart([{ label: 'submissions/s', color: PALETTE[0], points: pts((d) => d.submitRate), fill: true }], { width: kpiWidth, height: 64, compact: true, format: (v) => fmtNum(v, 1) })),
    kpi('kpi-latency', 'Submit latency p50 · p99', win && win.count ? `${fmtSeconds(win.p50)} · ${fmtSeconds(win.p99)}` : '—',
      win && win.count ? `${win.count} submissions, ${span}` : `no submissions, ${span}`,
      [lineChart(latencyLines, { width: kpiWidth, height: 64, compact: true, format: fmtSeconds, minMax: 0.001 }), legend(latencyLines)]),
    kpi('kpi-errors', 'Errors / s', win ? fmtNum(win.errorRate, 2) : '—', win ? `${fmtNum(win.upstreamRate, 2)} upstream errors/s, ${span}` : span,
      [lineChart(errorLines, { width: kpiWidth, height: 64, compact: true, format: (v) => fmtNum(v, 1) }), legend(errorLines)]),
    kpi('kpi-backends', 'Backends healthy', `${up} / ${backends.length}`,
      backends.filter((b) => !b.enabled).length ? `${backends.filter((b) => !b.enabled).length} drained or inactive` : 'all enabled',
      h('div', { class: 'mini-states' }, backends.map((b) => h('span', { class: 'mini-state', title: `${b.name}: ${b.state}` }, statePill(b.state), ' ', b.name)))),
  );

  const names = backends.map((b) => b.name);
  const perBackend = (f) => names.map((n, i) => ({
    label: n,
    color: PALETTE[i % PALETTE.length],
    points: samples.map((x) => [x.t, x.gap || !x.backends[n] ? null : f(x.backends[n])]),
  }));
  const running = perBackend((b) => b.estimated);
  const queued = perBackend((b) => b.queued);
  put(charts,
    h('div', { class: 'card' }, h('h2', {}, 'Running queries per backend'),
      h('p', { class: 'muted small' }, 'The gateway’s estimate (last report + started − finished since), as least_load and the limits use it.'),
      lineChart(running, { width: bigWidth, height: 160 }), legend(running)),
    h('div', { class: 'card' }, h('h2', {}, 'Queued queries per backend'),
      h('p', { class: 'muted small' }, 'As each backend reported at its last load probe (empty while health checks are off).'),
      lineChart(queued, { width: bigWidth, height: 160 }), legend(queued)),
  );

  put(table,
    h('h2', {}, 'Backends'),
    h('table', { class: 'table', id: 'overview-backends' },
      h('thead', {}, h('tr', {}, ['Backend', 'State', 'Groups', 'Running (est.)', 'Queued', 'In flight', 'Version', 'Last check'].map((c) => h('th', {}, c)))),
      h('tbody', {}, backends.map((b) => h('tr', { dataset: { backend: b.name } },
        h('td', {}, h('strong', {}, b.name), h('div', { class: 'muted small mono' }, b.url)),
        h('td', { class: 'state' }, statePill(b.state)),
        h('td', {}, (b.groups || []).join(', ')),
        h('td', {}, loadBar(b.estimated_running, b.max_running_queries)),
        h('td', {}, b.queued_queries === null ? '—' : loadBar(b.queued_queries, b.max_queued_queries)),
        h('td', {}, b.inflight_requests),
        h('td', {}, b.version || '—'),
        h('td', { title: b.last_check || '' }, ago(b.last_check)),
      )))),
  );
  paintSwatches(document.getElementById('main'));
}

// ---------------------------------------------------------------------------------------------
// Editor: a form or the raw JSON of one object, with the API's errors at the fields they name

const BACKEND_KEYS = ['name', 'url', 'group', 'groups', 'enabled', 'weight', 'rewrite_host', 'forwarding', 'max_queued_queries', 'max_running_queries'];

function getPath(obj, path) {
  return path.split('.').reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}

function setPath(obj, path, value) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (typeof o[k] !== 'object' || o[k] === null) o[k] = {};
    o = o[k];
  }
  const last = keys[keys.length - 1];
  if (value === undefined) delete o[last];
  else o[last] = value;
}

// The API's validation message split into field errors. Writes are checked as a whole config, so
// paths look like `routing.policies[2].match.user: invalid regex: ...`; every other object was
// valid before, so each issue concerns the edited one. Serde's messages name a field in
// backquotes (`unknown field \`usr\``, `missing field \`group\``).
function fieldErrors(message) {
  const out = { fields: {}, general: [] };
  const body = message.replace(/^change refused: /, '');
  const known = /^(?:routing\.policies|groups|backends)\[\d+\](?:\.([A-Za-z0-9_.-]+))?: (.*)$/s;
  for (const part of body.split('; ')) {
    const m = known.exec(part);
    if (m && m[1]) {
      const key = m[1].startsWith('match.headers.') ? 'match.headers' : m[1];
      (out.fields[key] = out.fields[key] || []).push(m[2]);
      continue;
    }
    const serde = /(?:unknown|missing|duplicate) field `([A-Za-z0-9_]+)`/.exec(part);
    if (serde) {
      (out.fields[serde[1]] = out.fields[serde[1]] || []).push(part.replace(/^invalid object: /, ''));
      continue;
    }
    out.general.push(m ? m[2] : part);
  }
  return out;
}

// Opens a modal editor. `spec.fields`: {key, label, type: text|int|bool|select|list|lines, options,
// help, placeholder}; `spec.save(obj)` does the API call and throws ApiError on refusal.
function openEditor(spec) {
  let obj = structuredClone(spec.value);
  let mode = 'form';
  const inputs = {};
  const errorsAt = {};
  const general = h('div', { class: 'form-error', id: 'editor-error', hidden: true });
  const form = h('div', { class: 'editor-form' });
  const json = h('textarea', { class: 'input mono json', id: 'editor-json', spellcheck: 'false', rows: 18 });
  const jsonPane = h('div', { class: 'editor-json', hidden: true }, json, h('div', { class: 'field-error', id: 'json-errors', hidden: true }));

  for (const f of spec.fields) {
    if (f.section) {
      form.append(h('div', { class: 'form-section' }, f.section));
      continue;
    }
    const id = `f-${f.key.replace(/\./g, '-')}`;
    let input;
    if (f.type === 'bool') {
      input = h('input', { type: 'checkbox', id, name: f.key });
    } else if (f.type === 'select') {
      input = h('select', { class: 'input', id, name: f.key }, f.options().map((o) => h('option', { value: o }, o === '' ? '—' : o)));
    } else if (f.type === 'lines') {
      input = h('textarea', { class: 'input mono', id, name: f.key, rows: 2, placeholder: f.placeholder || '' });
    } else {
      input = h('input', { class: 'input', id, name: f.key, type: 'text', inputmode: f.type === 'int' ? 'numeric' : null, placeholder: f.placeholder || '', spellcheck: 'false' });
    }
    inputs[f.key] = input;
    errorsAt[f.key] = h('div', { class: 'field-error', hidden: true, dataset: { field: f.key } });
    form.append(h('div', { class: `field field-${f.type || 'text'}`, dataset: { field: f.key } },
      f.type === 'bool'
        ? h('label', { class: 'check', for: id }, input, ' ', f.label)
        : [h('label', { class: 'label', for: id }, f.label), input],
      f.help ? h('div', { class: 'help' }, f.help) : null,
      errorsAt[f.key]));
  }

  const fill = () => {
    for (const f of spec.fields) {
      if (f.section) continue;
      const v = getPath(obj, f.key);
      const input = inputs[f.key];
      if (f.type === 'bool') input.checked = v === undefined ? !!f.default : !!v;
      else if (f.type === 'list') input.value = Array.isArray(v) ? v.join(', ') : (v ?? '');
      else if (f.type === 'lines') input.value = v && typeof v === 'object' ? Object.entries(v).map(([k, x]) => `${k}: ${x}`).join('\n') : '';
      else input.value = v === null || v === undefined ? '' : String(v);
    }
  };
  // Form → object; returns false (with the field marked) on input the form itself can tell is wrong.
  const read = () => {
    const next = structuredClone(obj);
    let ok = true;
    for (const f of spec.fields) {
      if (f.section) continue;
      const raw = inputs[f.key].value;
      let v;
      if (f.type === 'bool') v = inputs[f.key].checked;
      else if (f.type === 'int') {
        if (raw.trim() === '') v = f.nullable ? null : undefined;
        else if (/^-?\d+$/.test(raw.trim())) v = Number(raw.trim());
        else { showField(f.key, ['must be a whole number']); ok = false; continue; }
      } else if (f.type === 'list') {
        const items = raw.split(',').map((x) => x.trim()).filter(Boolean);
        v = items.length ? items : undefined;
      } else if (f.type === 'lines') {
        const map = {};
        for (const line of raw.split('\n').map((x) => x.trim()).filter(Boolean)) {
          const at = line.indexOf(':');
          if (at <= 0) { showField(f.key, [`"${line}" is not "Name: value"`]); ok = false; }
          else map[line.slice(0, at).trim()] = line.slice(at + 1).trim();
        }
        v = Object.keys(map).length ? map : undefined;
      } else {
        v = raw.trim() === '' ? (f.nullable ? null : undefined) : raw;
      }
      setPath(next, f.key, v);
    }
    if (spec.normalize) spec.normalize(next);
    if (ok) obj = next;
    return ok;
  };
  const clearErrors = () => {
    general.hidden = true;
    general.textContent = '';
    for (const el of Object.values(errorsAt)) { el.hidden = true; el.textContent = ''; }
    for (const el of form.querySelectorAll('.field.has-error')) el.classList.remove('has-error');
    jsonPane.lastChild.hidden = true;
  };
  const showField = (key, messages) => {
    const el = errorsAt[key];
    put(el, ...messages.map((m) => h('div', {}, m)));
    el.hidden = false;
    el.parentElement.classList.add('has-error');
  };
  const showErrors = (message) => {
    const { fields, general: rest } = fieldErrors(message);
    const unplaced = [...rest];
    for (const [key, msgs] of Object.entries(fields)) {
      if (errorsAt[key] && mode === 'form') showField(key, msgs);
      else unplaced.push(...msgs.map((m) => `${key}: ${m}`));
    }
    if (mode === 'json') {
      const list = jsonPane.lastChild;
      put(list, ...Object.entries(fields).map(([k, msgs]) => h('div', {}, h('code', {}, k), ': ', msgs.join('; '))));
      list.hidden = !Object.keys(fields).length;
    }
    put(general, h('strong', {}, 'The API refused the change. '), message);
    general.hidden = false;
    if (unplaced.length === 0 && mode === 'form') put(general, h('strong', {}, 'The API refused the change'), ' — see the fields marked below.');
  };

  const tabForm = h('button', { class: 'tab active', type: 'button', id: 'tab-form' }, 'Form');
  const tabJson = h('button', { class: 'tab', type: 'button', id: 'tab-json' }, 'JSON');
  const switchTo = (m) => {
    clearErrors();
    if (m === mode) return;
    if (m === 'json') {
      if (!read()) return;
      json.value = JSON.stringify(obj, null, 2);
    } else {
      try { obj = JSON.parse(json.value); } catch (e) { put(jsonPane.lastChild, `Not valid JSON: ${e.message}`); jsonPane.lastChild.hidden = false; return; }
      fill();
    }
    mode = m;
    form.hidden = m !== 'form';
    jsonPane.hidden = m !== 'json';
    tabForm.classList.toggle('active', m === 'form');
    tabJson.classList.toggle('active', m === 'json');
  };
  tabForm.addEventListener('click', () => switchTo('form'));
  tabJson.addEventListener('click', () => switchTo('json'));

  const saveBtn = h('button', { class: 'btn btn-primary', type: 'submit', id: 'editor-save' }, spec.creating ? 'Create' : 'Save');
  const dialog = h('dialog', { class: 'editor', id: 'editor' });
  const save = async (ev) => {
    ev.preventDefault();
    clearErrors();
    if (mode === 'form') {
      if (!read()) return;
    } else {
      try { obj = JSON.parse(json.value); } catch (e) {
        put(jsonPane.lastChild, `Not valid JSON: ${e.message}`);
        jsonPane.lastChild.hidden = false;
        return;
      }
    }
    saveBtn.disabled = true;
    try {
      await spec.save(obj);
      dialog.close();
      dialog.remove();
      if (spec.done) spec.done(obj);
    } catch (e) {
      if (e instanceof ApiError) showErrors(e.message);
      else showErrors(String(e));
    } finally {
      saveBtn.disabled = false;
    }
  };
  const close = () => { dialog.close(); dialog.remove(); };
  dialog.append(h('form', { method: 'dialog', onsubmit: save },
    h('div', { class: 'editor-head' },
      h('h2', {}, spec.title),
      h('div', { class: 'tabs' }, tabForm, tabJson)),
    h('div', { class: 'editor-body' }, general, form, jsonPane),
    h('div', { class: 'editor-foot' },
      spec.remove ? h('button', {
        class: 'btn btn-danger-ghost', type: 'button', id: 'editor-delete',
        onclick: async () => {
          if (!window.confirm(`Delete ${spec.title.replace(/^Edit /, '')}?`)) return;
          clearErrors();
          try { await spec.remove(); close(); if (spec.done) spec.done(null); } catch (e) { showErrors(e.message); }
        },
      }, 'Delete') : null,
      h('span', { class: 'spacer' }),
      h('button', { class: 'btn btn-ghost', type: 'button', onclick: close }, 'Cancel'),
      saveBtn)));
  dialog.addEventListener('cancel', () => setTimeout(() => dialog.remove(), 0));
  document.body.append(dialog);
  fill();
  dialog.showModal();
}

// ---------------------------------------------------------------------------------------------
// Backends

function backendFields(groups) {
  return [
    { key: 'name', label: 'Name' },
    { key: 'url', label: 'Coordinator URL', placeholder: 'http://trino-1.internal:8080' },
    { key: 'groups', label: 'Groups', type: 'list', help: `Comma-separated; one or more of: ${groups.join(', ') || '(no groups yet)'}` },
    { key: 'enabled', label: 'Enabled (takes new queries)', type: 'bool', default: true },
    { key: 'weight', label: 'Weight', type: 'int', help: 'weighted strategy; at least 1' },
    { key: 'max_running_queries', label: 'Max running queries', type: 'int', nullable: true, help: 'empty: no limit' },
    { key: 'max_queued_queries', label: 'Max queued queries', type: 'int', nullable: true, help: 'empty: no limit' },
    { key: 'forwarding', label: 'Forwarding', type: 'select', options: () => ['headers', 'rewrite'], help: 'rewrite: for clusters without http-server.process-forwarded' },
    { key: 'rewrite_host', label: 'Rewrite Host header', type: 'bool' },
  ];
}

function editableBackend(b) {
  const o = {};
  for (const k of BACKEND_KEYS) if (b[k] !== undefined) o[k] = b[k];
  if (o.groups && o.groups.length) delete o.group;
  return o;
}

function normalizeBackend(o) {
  if (o.groups && o.groups.length) delete o.group;
}

function pageBackends(main) {
  const body = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'loading…'));
  let groups = [];
  const add = roleButton('admin', 'Add backend', {
    class: 'btn btn-primary', id: 'add-backend',
    onclick: () => openEditor({
      title: 'Add backend', creating: true,
      value: { name: '', url: '', groups: groups.slice(0, 1), enabled: true, weight: 1, forwarding: 'headers', rewrite_host: false },
      fields: backendFields(groups), normalize: normalizeBackend,
      save: (o) => api('POST', '/api/v1/backends', o),
      done: (o) => { toast(`Backend ${o.name} added`); refresh(); },
    }),
  });
  append(main, [pageHeader('Backends', 'Every Trino coordinator behind the gateway, as /api/v1/backends reports it (refreshed every 3 s).', add), readOnlyNotice(), body]);

  const act = async (b, action, btn) => {
    btn.disabled = true;
    try {
      const r = await api('POST', `/api/v1/backends/${encodeURIComponent(b.name)}/${action}`);
      toast(action === 'deactivate' ? `${b.name} drained: ${r.state}` : `${b.name} activated: ${r.state}`);
    } catch (e) {
      toast(`${action} ${b.name}: ${e.message}`, 'error');
      showBanner(`${action} ${b.name} refused (${e.status}): ${e.message}`);
    }
    refresh();
  };
  const banner = h('div', { class: 'form-error', id: 'backends-error', hidden: true });
  const showBanner = (m) => { banner.textContent = m; banner.hidden = false; };

  const refresh = async () => {
    let list;
    try {
      [list, groups] = await Promise.all([api('GET', '/api/v1/backends'), api('GET', '/api/v1/groups').then((g) => g.map((x) => x.name))]);
    } catch (e) {
      put(body, h('div', { class: 'form-error' }, e.message));
      return;
    }
    const rows = list.map((b) => h('tr', { dataset: { backend: b.name, state: b.state } },
      h('td', {}, h('strong', {}, b.name), h('div', { class: 'muted small mono' }, b.url)),
      h('td', { class: 'state' }, statePill(b.state), b.full ? h('span', { class: 'pill pill-full', title: 'at a concurrency limit' }, 'FULL') : null),
      h('td', {}, (b.groups || []).join(', '), b.weight !== 1 ? h('div', { class: 'muted small' }, `weight ${b.weight}`) : null),
      h('td', {}, loadBar(b.estimated_running, b.max_running_queries),
        h('div', { class: 'muted small' }, `reported ${b.running_queries ?? '—'} running · ${b.queued_queries ?? '—'} queued`)),
      h('td', { class: 'mono small' }, b.coordinator_id || '—', b.coordinator_restarts ? h('div', { class: 'muted' }, `${b.coordinator_restarts} restart(s)`) : null),
      h('td', {}, b.version || '—'),
      h('td', { title: b.last_check || '' }, ago(b.last_check)),
      h('td', { class: 'last-error' }, b.last_error ? h('span', { class: 'text-error small' }, b.last_error) : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'actions' },
        b.enabled
          ? roleButton('operator', 'Drain', { class: 'btn btn-sm btn-warn', dataset: { action: 'deactivate' }, title: 'Deactivate: no new queries; queries in flight finish', onclick: (ev) => act(b, 'deactivate', ev.currentTarget) })
          : roleButton('operator', 'Activate', { class: 'btn btn-sm', dataset: { action: 'activate' }, title: 'Take new queries again', onclick: (ev) => act(b, 'activate', ev.currentTarget) }),
        roleButton('admin', 'Edit', {
          class: 'btn btn-sm btn-ghost', dataset: { action: 'edit' },
          onclick: () => openEditor({
            title: `Edit backend ${b.name}`, value: editableBackend(b), fields: backendFields(groups), normalize: normalizeBackend,
            save: (o) => api('PUT', `/api/v1/backends/${encodeURIComponent(b.name)}`, o),
            remove: () => api('DELETE', `/api/v1/backends/${encodeURIComponent(b.name)}`),
            done: (o) => { toast(o ? `Backend ${o.name} saved` : `Backend ${b.name} deleted`); refresh(); },
          }),
        }))));
    put(body, banner,
      h('table', { class: 'table', id: 'backends' },
        h('thead', {}, h('tr', {}, ['Backend', 'State', 'Groups', 'Load (est. running)', 'Coordinator', 'Version', 'Last check', 'Last error', ''].map((c) => h('th', {}, c)))),
        h('tbody', {}, rows)),
      list.length ? null : h('p', { class: 'muted' }, 'No backends configured.'),
      h('p', { class: 'fine' }, 'Drain = deactivate: the backend takes no new queries and shows DRAINING while requests are in flight, then INACTIVE. Drain and activate need the operator role; add, edit and delete need admin.'));
  };
  every(POLL_MS, refresh);
}

// ---------------------------------------------------------------------------------------------
// Routing

const STATEMENTS = 'select, insert, update, delete, merge, create_table_as, ddl, explain, show, describe, call, use, set_session, reset_session, prepare, deallocate, transaction, analyze, other';

function policyFields(groups, listeners) {
  return [
    { key: 'name', label: 'Name' },
    { key: 'priority', label: 'Priority', type: 'int', help: 'higher first; equal priorities keep their order' },
    { key: 'group', label: 'Group', type: 'select', options: () => groups },
    { key: 'fallback_group', label: 'Fallback group', type: 'select', options: () => ['', ...groups], nullable: true, help: 'when the group has no available backend' },
    { section: 'Match — every condition given must hold; none given matches every query' },
    { key: 'match.user', label: 'User (regex on X-Trino-User)', placeholder: '^svc_' },
    { key: 'match.source', label: 'Source (regex on X-Trino-Source)', placeholder: '^airflow' },
    { key: 'match.listener', label: 'Listener', type: 'select', options: () => ['', ...listeners] },
    { key: 'match.host', label: 'Host (without port)' },
    { key: 'match.client_tags_all', label: 'Client tags — all of', type: 'list' },
    { key: 'match.client_tags_any', label: 'Client tags — any of', type: 'list' },
    { key: 'match.statement', label: 'Statement kinds', type: 'list', help: STATEMENTS },
    { key: 'match.catalogs_any', label: 'Catalogs — any of', type: 'list', help: 'patterns, * for any characters' },
    { key: 'match.catalogs_all', label: 'Catalogs — all of', type: 'list' },
    { key: 'match.schemas_any', label: 'Schemas — any of', type: 'list', help: 'catalog.schema patterns' },
    { key: 'match.tables_any', label: 'Tables — any of', type: 'list', help: 'catalog.schema.table patterns' },
    { key: 'match.headers', label: 'Headers', type: 'lines', placeholder: 'X-Team: data', help: 'one "Name: value" per line' },
  ];
}

function groupFields() {
  return [
    { key: 'name', label: 'Name' },
    { key: 'strategy', label: 'Strategy', type: 'select', options: () => ['round_robin', 'random', 'weighted', 'least_load', 'consistent'] },
    { key: 'hash_key', label: 'Hash key (consistent only)', placeholder: 'user', help: 'user (default), source, client_tags or header:<Name>' },
    { key: 'strict', label: 'Strict: never fall back to another group', type: 'bool' },
    { key: 'spooling', label: 'Spooling', type: 'select', options: () => ['', 'pass', 'inline'], help: 'inline: submissions placed here are asked for inline results' },
  ];
}

function matchSummary(m) {
  const parts = [];
  for (const [k, v] of Object.entries(m || {})) {
    if (v === null || v === undefined || (Array.isArray(v) && !v.length)) continue;
    let text;
    if (Array.isArray(v)) text = v.join(', ');
    else if (typeof v === 'object') text = Object.entries(v).map(([a, b]) => `${a}: ${b}`).join(', ');
    else text = String(v);
    if (!text) continue;
    parts.push(h('span', { class: 'chip' }, h('span', { class: 'chip-key' }, k), ' ', text));
  }
  return parts.length ? parts : h('span', { class: 'muted' }, 'every query');
}

function pageRouting(main) {
  let groups = [];
  let policies = [];
  let backends = [];
  const policyCard = h('div', { class: 'card' });
  const groupCard = h('div', { class: 'card' });
  const tryCard = h('div', { class: 'card' });
  const listeners = (state.info && state.info.proxy ? state.info.proxy.listeners : []).map((l) => l.name);
  append(main, [pageHeader('Routing', 'How a submission finds its group: policies by descending priority, then the default group; the group’s strategy picks the backend.'),
    readOnlyNotice(), policyCard, h('div', { class: 'grid-2 grid-routing' }, groupCard, tryCard)]);

  const editPolicy = (p, creating) => openEditor({
    title: creating ? 'Add policy' : `Edit policy ${p.name}`, creating, value: p,
    fields: policyFields(groups.map((g) => g.name), listeners),
    normalize: (o) => { if (o.match && !Object.keys(o.match).length) delete o.match; },
    save: (o) => (creating ? api('POST', '/api/v1/policies', o) : api('PUT', `/api/v1/policies/${encodeURIComponent(p.name)}`, o)),
    remove: creating ? null : () => api('DELETE', `/api/v1/policies/${encodeURIComponent(p.name)}`),
    done: (o) => { toast(o ? `Policy ${o.name} saved` : `Policy ${p.name} deleted`); load(); },
  });
  const editGroup = (g, creating) => openEditor({
    title: creating ? 'Add group' : `Edit group ${g.name}`, creating, value: g, fields: groupFields(),
    normalize: (o) => { if (o.spooling === undefined) delete o.spooling; },
    save: (o) => (creating ? api('POST', '/api/v1/groups', o) : api('PUT', `/api/v1/groups/${encodeURIComponent(g.name)}`, o)),
    remove: creating ? null : () => api('DELETE', `/api/v1/groups/${encodeURIComponent(g.name)}`),
    done: (o) => { toast(o ? `Group ${o.name} saved` : `Group ${g.name} deleted`); load(); },
  });

  const load = async () => {
    try {
      [groups, policies, backends] = await Promise.all([api('GET', '/api/v1/groups'), api('GET', '/api/v1/policies'), api('GET', '/api/v1/backends')]);
    } catch (e) {
      put(policyCard, h('div', { class: 'form-error' }, e.message));
      return;
    }
    // Evaluation order: highest priority first; equal priorities keep the configured order.
    const ordered = policies.map((p, i) => [p, i]).sort((a, b) => (b[0].priority || 0) - (a[0].priority || 0) || a[1] - b[1]).map((x) => x[0]);
    put(policyCard,
      h('div', { class: 'card-head' }, h('h2', {}, 'Policies — in evaluation order'),
        roleButton('admin', 'Add policy', { class: 'btn btn-sm', id: 'add-policy', onclick: () => editPolicy({ name: '', priority: 0, match: {}, group: groups[0] ? groups[0].name : '' }, true) })),
      h('table', { class: 'table', id: 'policies' },
        h('thead', {}, h('tr', {}, ['#', 'Policy', 'Priority', 'Match', 'Group', ''].map((c) => h('th', {}, c)))),
        h('tbody', {}, ordered.map((p, i) => h('tr', { dataset: { policy: p.name } },
          h('td', { class: 'muted' }, i + 1),
          h('td', {}, h('strong', {}, p.name)),
          h('td', {}, p.priority || 0),
          h('td', { class: 'match' }, matchSummary(p.match)),
          h('td', {}, p.group, p.fallback_group ? h('div', { class: 'muted small' }, `fallback → ${p.fallback_group}`) : null),
          h('td', { class: 'actions' }, roleButton('admin', 'Edit', { class: 'btn btn-sm btn-ghost', dataset: { action: 'edit' }, onclick: () => editPolicy(p, false) })))),
        ordered.length ? null : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No policies: every submission goes to the default group.')))),
      h('p', { class: 'fine' }, 'A submission that names a group in X-Trino-Routing-Group, or belongs to an open transaction, skips the policies. When no policy matches, the default group takes it.'));
    put(groupCard,
      h('div', { class: 'card-head' }, h('h2', {}, 'Groups'),
        roleButton('admin', 'Add group', { class: 'btn btn-sm', id: 'add-group', onclick: () => editGroup({ name: '', strategy: 'round_robin' }, true) })),
      h('table', { class: 'table', id: 'groups' },
        h('thead', {}, h('tr', {}, ['Group', 'Strategy', 'Backends', ''].map((c) => h('th', {}, c)))),
        h('tbody', {}, groups.map((g) => {
          const members = backends.filter((b) => (b.groups || []).includes(g.name));
          return h('tr', { dataset: { group: g.name } },
            h('td', {}, h('strong', {}, g.name), g.strict ? h('span', { class: 'pill pill-muted' }, 'strict') : null, g.spooling ? h('span', { class: 'pill pill-muted' }, `spooling ${g.spooling}`) : null),
            h('td', {}, g.strategy || 'round_robin', g.hash_key ? h('div', { class: 'muted small' }, `key ${g.hash_key}`) : null),
            h('td', {}, members.length ? members.map((b) => h('span', { class: 'mini-state' }, statePill(b.state), ' ', b.name)) : h('span', { class: 'muted' }, 'none')),
            h('td', { class: 'actions' }, roleButton('admin', 'Edit', { class: 'btn btn-sm btn-ghost', dataset: { action: 'edit' }, onclick: () => editGroup(g, false) })));
        }))));
  };
  load();
  drawTryForm(tryCard, listeners);
}

function drawTryForm(card, listeners) {
  const f = {
    listener: h('select', { class: 'input', id: 'try-listener' }, ['', ...listeners].map((l) => h('option', { value: l }, l || (listeners.length === 1 ? `${listeners[0]} (the only one)` : '— choose —')))),
    user: h('input', { class: 'input', id: 'try-user', placeholder: 'alice', value: 'alice' }),
    source: h('input', { class: 'input', id: 'try-source', placeholder: 'trino-cli' }),
    tags: h('input', { class: 'input', id: 'try-tags', placeholder: 'etl, nightly' }),
    headers: h('textarea', { class: 'input mono', id: 'try-headers', rows: 2, placeholder: 'X-Trino-Routing-Group: etl' }),
    sql: h('textarea', { class: 'input mono', id: 'try-sql', rows: 3, placeholder: 'SELECT * FROM hive.web.events' }),
  };
  const out = h('div', { id: 'try-result' });
  const submit = async (ev) => {
    ev.preventDefault();
    const headers = {};
    if (f.user.value.trim()) headers['X-Trino-User'] = f.user.value.trim();
    if (f.source.value.trim()) headers['X-Trino-Source'] = f.source.value.trim();
    if (f.tags.value.trim()) headers['X-Trino-Client-Tags'] = f.tags.value.trim();
    for (const line of f.headers.value.split('\n').map((x) => x.trim()).filter(Boolean)) {
      const at = line.indexOf(':');
      if (at > 0) headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    const body = { headers };
    if (f.listener.value) body.listener = f.listener.value;
    if (f.sql.value.trim()) body.sql = f.sql.value;
    try {
      put(out, decisionView(await api('POST', '/api/v1/route', body)));
    } catch (e) {
      put(out, h('div', { class: 'form-error' }, e.message));
    }
  };
  const row = (label, input) => h('div', { class: 'field' }, h('label', { class: 'label', for: input.id }, label), input);
  put(card,
    h('h2', {}, 'Try a request'),
    h('p', { class: 'muted small' }, 'A dry run (POST /api/v1/route): the proxy’s own routing code on the current snapshot; nothing moves, nothing is counted.'),
    h('form', { class: 'try-form', onsubmit: submit },
      h('div', { class: 'form-grid' }, row('Listener', f.listener), row('X-Trino-User', f.user), row('X-Trino-Source', f.source), row('X-Trino-Client-Tags', f.tags)),
      row('Other headers (Name: value per line)', f.headers),
      row('SQL (optional)', f.sql),
      h('div', { class: 'form-actions' }, h('button', { class: 'btn btn-primary', type: 'submit', id: 'try-run' }, 'Route it'))),
    out);
}

function decisionView(d) {
  const kv = (k, v) => (v === null || v === undefined || v === '' ? null : h('div', { class: 'kv' }, h('span', { class: 'kv-k' }, k), h('span', { class: 'kv-v' }, v)));
  return h('div', { class: 'decision' },
    h('div', { class: 'decision-head' },
      d.backend ? h('span', { class: 'pill pill-healthy' }, '→ ', d.backend.name) : h('span', { class: 'pill pill-unhealthy' }, 'no backend'),
      h('span', { class: 'muted' }, `decision: ${d.decision}`)),
    kv('Policy', d.policy),
    kv('Group', d.chosenGroup && d.chosenGroup !== d.group ? `${d.chosenGroup} → ${d.group}` : d.group),
    d.fallback ? kv('Fallback', `${d.fallback.from} → ${d.fallback.to}: ${d.fallback.reason}`) : null,
    kv('Strategy', d.strategy),
    d.candidates ? kv('Candidates', d.candidates.join(', ') || 'none') : null,
    d.backend ? kv('Backend URL', d.backend.url) : null,
    d.error ? kv('Client would get', `${d.error.httpStatus} ${d.error.errorName}: ${d.error.message}`) : null,
    d.query && d.query.statement ? kv('Statement', `${d.query.statement}${d.query.catalogs && d.query.catalogs.length ? ` on ${d.query.catalogs.join(', ')}` : ''}`) : null,
    d.explanation && d.explanation.length ? h('ol', { class: 'explanation' }, d.explanation.map((e) => h('li', {}, e))) : null);
}

// ---------------------------------------------------------------------------------------------
// History

// Where Trino's web UI for a query is reached through the gateway: `proxy.external_url` when the
// gateway has one, else the first proxy listener on the host this console was loaded from (a
// listener bound to one address keeps that address).
function proxyBase() {
  const p = state.info && state.info.proxy;
  if (!p) return null;
  if (p.externalUrl) return p.externalUrl.replace(/\/+$/, '');
  const l = p.listeners[0];
  if (!l) return null;
  const host = l.host && !['0.0.0.0', '::', '[::]', ''].includes(l.host) ? l.host : location.hostname;
  const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${l.tls ? 'https' : 'http'}://${hostPart}:${l.port}`;
}

function pageHistory(main) {
  const q = new URLSearchParams(location.hash.split('?')[1] || '');
  const input = (id, label, placeholder, type = 'text') => {
    const el = h('input', { class: 'input', id: `h-${id}`, name: id, type, placeholder, value: q.get(id) || '' });
    return { id, el, field: h('div', { class: 'field' }, h('label', { class: 'label', for: `h-${id}` }, label), el) };
  };
  const inputs = [
    input('user', 'User', 'alice'),
    input('source', 'Source', 'trino-cli'),
    input('group', 'Group', 'adhoc'),
    input('backend', 'Backend', 'trino-1'),
    input('since', 'Since', '', 'datetime-local'),
    input('until', 'Until', '', 'datetime-local'),
    input('text', 'Text in SQL, id, user…', 'orders'),
  ];
  const limit = h('select', { class: 'input', id: 'h-limit' }, [50, 100, 500, 1000].map((n) => h('option', { value: n, selected: n === 100 }, n)));
  const results = h('div', { id: 'history-results' });
  const more = h('button', { class: 'btn', type: 'button', id: 'history-more', hidden: true }, 'Load more');
  const count = h('span', { class: 'muted small' });
  let cursor = null;
  let rows = [];

  const params = () => {
    const p = new URLSearchParams();
    for (const { id, el } of inputs) {
      const v = el.value.trim();
      if (!v || id === 'text') continue;
      if (id === 'since' || id === 'until') {
        const t = new Date(v);
        if (!Number.isNaN(t.getTime())) p.set(id, t.toISOString());
      } else p.set(id, v);
    }
    p.set('limit', limit.value);
    return p;
  };
  const textFilter = () => inputs.find((x) => x.id === 'text').el.value.trim().toLowerCase();
  const render = () => {
    const needle = textFilter();
    const shown = needle
      ? rows.filter((r) => [r.queryId, r.sql, r.user, r.source, r.clientTags, r.group, r.backend, r.policy].some((v) => v && String(v).toLowerCase().includes(needle)))
      : rows;
    const base = proxyBase();
    count.textContent = needle ? `${shown.length} of ${rows.length} loaded queries match “${needle}”` : `${rows.length} queries${cursor ? ' (more available)' : ''}`;
    put(results, h('table', { class: 'table table-history', id: 'history' },
      h('thead', {}, h('tr', {}, ['Submitted', 'Query', 'User / source', 'Group → backend', 'Policy', 'SQL'].map((c) => h('th', {}, c)))),
      h('tbody', {}, shown.map((r) => h('tr', { dataset: { query: r.queryId } },
        h('td', { class: 'nowrap' }, fmtTime(r.submittedMs)),
        h('td', { class: 'mono small' },
          base ? h('a', { href: `${base}/ui/query.html?${encodeURIComponent(r.queryId)}`, target: '_blank', rel: 'noopener noreferrer', title: 'Trino’s page for this query, through the gateway' }, r.queryId) : r.queryId,
          r.statementType ? h('div', { class: 'muted' }, r.statementType, r.catalogs ? ` · ${r.catalogs}` : '') : null),
        h('td', {}, r.user || '—', r.source ? h('div', { class: 'muted small' }, r.source) : null, r.clientTags ? h('div', { class: 'muted small' }, `tags ${r.clientTags}`) : null),
        h('td', {}, `${r.group || '—'} → ${r.backend || '—'}`, r.gateway ? h('div', { class: 'muted small' }, `via ${r.gateway}`) : null),
        h('td', {}, r.policy || h('span', { class: 'muted' }, '—')),
        h('td', { class: 'sql' }, r.sql ? h('code', { class: 'sql-text', title: r.sql }, r.sql) : h('span', { class: 'muted small' }, 'not shown (viewers see SQL only with admin.auth.viewer_sees_sql)'))))),
    !shown.length ? h('p', { class: 'muted empty' }, rows.length ? 'No loaded query matches the text.' : 'No queries match.') : null));
    more.hidden = !cursor;
  };
  let latest = 0;
  const search = async (append) => {
    const p = params();
    if (append && cursor) p.set('cursor', cursor);
    // Only the answer to the latest search is shown (an earlier one may arrive after it).
    const mine = ++latest;
    try {
      const page = await api('GET', `/api/v1/queries?${p}`);
      if (mine !== latest) return;
      rows = append ? rows.concat(page.queries) : page.queries;
      cursor = page.nextCursor || null;
      render();
    } catch (e) {
      put(results, h('div', { class: 'form-error' }, e.message));
    }
  };
  more.addEventListener('click', () => search(true));
  const base = proxyBase();
  append(main, [pageHeader('Query history', 'Every submission the gateways sharing this database routed, newest first.'),
    h('form', { class: 'card filters', id: 'history-form', onsubmit: (ev) => { ev.preventDefault(); search(false); } },
      h('div', { class: 'form-grid form-grid-4' }, inputs.map((x) => x.field), h('div', { class: 'field' }, h('label', { class: 'label', for: 'h-limit' }, 'Limit'), limit)),
      h('div', { class: 'form-actions' },
        h('span', { class: 'fine' }, 'User, source, group, backend and time are searched by the API; the text filters the queries loaded.',
          base ? [' Query ids open Trino’s page through the gateway at ', h('code', {}, base), '.'] : null),
        h('span', { class: 'spacer' }),
        h('button', { class: 'btn btn-primary', type: 'submit', id: 'history-search' }, 'Search'))),
    h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Results'), count), results, more)]);
  inputs.find((x) => x.id === 'text').el.addEventListener('input', render);
  search(false);
}

// ---------------------------------------------------------------------------------------------
// Hybrid

function pageHybrid(main) {
  const regs = h('div', { class: 'regs', id: 'hybrid-regs' });
  const addReg = (alias = '', sql = '') => {
    const row = h('div', { class: 'reg' },
      h('input', { class: 'input mono reg-alias', placeholder: 'alias', value: alias, 'aria-label': 'alias' }),
      h('textarea', { class: 'input mono reg-sql', rows: 2, placeholder: 'SELECT … (runs on Trino)', 'aria-label': 'Trino SQL' }, sql),
      h('button', { class: 'btn btn-ghost btn-sm', type: 'button', title: 'Remove', onclick: () => row.remove() }, '✕'));
    regs.append(row);
  };
  addReg('t', 'SELECT * FROM web.daily');
  const sql = h('textarea', { class: 'input mono', id: 'hybrid-sql', rows: 4 }, 'SELECT count(*) AS days, sum(views) AS views FROM t');
  const group = h('input', { class: 'input', id: 'hybrid-group', placeholder: 'let the policies decide' });
  const out = h('div', { id: 'hybrid-result' });
  const run = h('button', { class: 'btn btn-primary', type: 'submit', id: 'hybrid-run', disabled: !roleAtLeast('admin'), title: roleAtLeast('admin') ? null : 'hybrid queries need the admin role' }, 'Run');
  const submit = async (ev) => {
    ev.preventDefault();
    const register = {};
    for (const r of regs.querySelectorAll('.reg')) {
      const alias = r.querySelector('.reg-alias').value.trim();
      const text = r.querySelector('.reg-sql').value.trim();
      if (alias && text) register[alias] = text;
    }
    const body = { register, sql: sql.value };
    if (group.value.trim()) body.group = group.value.trim();
    run.disabled = true;
    put(out, h('p', { class: 'muted' }, 'running…'));
    const started = performance.now();
    try {
      const r = await api('POST', '/api/query/hybrid', body);
      put(out, hybridResult(r, performance.now() - started));
    } catch (e) {
      const err = e.body && e.body.error && typeof e.body.error === 'object' ? e.body.error : null;
      put(out, h('div', { class: 'form-error' },
        h('strong', {}, err ? `${err.type}: ` : `HTTP ${e.status}: `), e.message,
        err && err.details && Object.keys(err.details).length ? h('pre', { class: 'mono small' }, JSON.stringify(err.details, null, 2)) : null));
    } finally {
      run.disabled = !roleAtLeast('admin');
    }
  };
  append(main, [pageHeader('Hybrid query', 'Remote subqueries run on Trino (routed like submissions), their results become tables, and the final SQL runs here in the gateway (DataFusion). Admin role.'),
    h('form', { class: 'card', onsubmit: submit },
      h('div', { class: 'card-head' }, h('h2', {}, 'Registrations — alias → Trino SQL'),
        h('button', { class: 'btn btn-sm', type: 'button', id: 'hybrid-add', onclick: () => addReg() }, 'Add registration')),
      regs,
      h('div', { class: 'field' }, h('label', { class: 'label', for: 'hybrid-sql' }, 'Final SQL (over the aliases and the configured local tables)'), sql),
      h('div', { class: 'form-grid' }, h('div', { class: 'field' }, h('label', { class: 'label', for: 'hybrid-group' }, 'Routing group of the subqueries'), group)),
      h('div', { class: 'form-actions' }, h('span', { class: 'spacer' }), run)),
    out]);
}

function cell(v) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, 'NULL');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function hybridResult(r, ms) {
  const base = proxyBase();
  return h('div', {},
    h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Result'),
        h('span', { class: 'muted small', id: 'hybrid-count' }, `${r.row_count} row(s)${r.truncated ? ' — truncated at hybrid.max_result_rows' : ''} · ${Math.round(ms)} ms`)),
      h('div', { class: 'scroll' }, h('table', { class: 'table table-result', id: 'hybrid-table' },
        h('thead', {}, h('tr', {}, r.columns.map((c) => h('th', {}, c.name, h('div', { class: 'muted small' }, c.type))))),
        h('tbody', {}, r.rows.map((row) => h('tr', {}, row.map((v) => h('td', { class: typeof v === 'number' ? 'num' : null }, cell(v))))))))),
    h('div', { class: 'card' }, h('h2', {}, 'Remote subqueries'),
      h('table', { class: 'table', id: 'hybrid-remote' },
        h('thead', {}, h('tr', {}, ['Alias', 'Backend', 'Query', 'Rows', 'Columns', 'Memory', 'Elapsed'].map((c) => h('th', {}, c)))),
        h('tbody', {}, Object.entries(r.remote_stats || {}).map(([alias, st]) => h('tr', {},
          h('td', { class: 'mono' }, alias),
          h('td', {}, st.backend),
          h('td', { class: 'mono small' }, st.query_id ? (base ? h('a', { href: `${base}/ui/query.html?${encodeURIComponent(st.query_id)}`, target: '_blank', rel: 'noopener noreferrer' }, st.query_id) : st.query_id) : '—'),
          h('td', { class: 'num' }, st.rows),
          h('td', { class: 'num' }, st.columns),
          h('td', { class: 'num' }, `${fmtNum(st.memory_mb, 2)} MB`),
          h('td', { class: 'num' }, `${st.elapsed_ms} ms`)))))));
}

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
  try {
    state.info = await api('GET', '/console/info');
  } catch (e) {
    showFatal(e);
    return;
  }
  // Set before the router listens (replaceState fires no hashchange, so nothing renders twice).
  const failed = await oidcReturn();
  if (failed) {
    state.loginMessage = failed;
    history.replaceState(null, '', `${consoleAddress()}#/login`);
  } else if (state.me && location.hash === '#/login') {
    history.replaceState(null, '', `${consoleAddress()}#/overview`);
  }
  renderWho();
  window.addEventListener('hashchange', route);
  route();
}

document.addEventListener('DOMContentLoaded', start);
