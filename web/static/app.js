// The page: sends an image to grayscale and classify through the web front
// (/api/*), shows both answers, each request's latency and trace, the rate
// limit the services report, and the events they recorded. No framework.
'use strict';

(() => {
  const config = window.WEB_CONFIG || {};
  const ZIPKIN_URL = (config.zipkinUrl || 'http://127.0.0.1:9411').replace(/\/+$/, '');
  const EVENTS_PAGE_SIZE = 10;
  const EVENTS_POLL_MS = 5000;
  const MAX_REQUEST_ROWS = 20;

  const $ = (id) => document.getElementById(id);
  const ui = {
    file: $('file'), drop: $('dropzone'), message: $('message'), ratelimit: $('ratelimit'),
    results: $('results'), images: $('images'), resultStatus: $('result-status'), original: $('original'), gray: $('gray'),
    classification: $('classification'), label: $('label'), confidence: $('confidence'), top5: $('top5'),
    requests: document.querySelector('#requests tbody'),
    events: document.querySelector('#events tbody'), eventsStatus: $('events-status'),
    newer: $('events-newer'), older: $('events-older'),
  };

  // ---- trace context -------------------------------------------------------

  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

  // A fresh W3C traceparent per request, so the page knows the trace id
  // before the answer comes (and even when none comes). All-zero ids are
  // invalid, hence the loop.
  function newTraceparent() {
    let traceId; let spanId;
    do { traceId = hex(crypto.getRandomValues(new Uint8Array(16))); } while (/^0+$/.test(traceId));
    do { spanId = hex(crypto.getRandomValues(new Uint8Array(8))); } while (/^0+$/.test(spanId));
    return { header: `00-${traceId}-${spanId}-01`, traceId };
  }

  // The trace id the answer names, if it carries a valid traceparent;
  // otherwise the one the page sent.
  function traceIdOf(response, sent) {
    const m = TRACEPARENT.exec((response && response.headers.get('traceparent')) || '');
    return m ? m[1] : sent;
  }

  function zipkinTraceUrl(traceId) {
    return `${ZIPKIN_URL}/zipkin/traces/${traceId}`;
  }

  // ---- rate limit (IETF httpapi-ratelimit-headers) -------------------------

  // Reads both the structured-field form of the later drafts
  //   RateLimit: "default";r=50;t=30   RateLimit-Policy: "default";q=100;w=60
  // and the older ones: RateLimit: limit=100, remaining=50, reset=30, or
  // RateLimit-Limit / -Remaining / -Reset as separate headers.
  function parseParams(value) {
    const out = {};
    for (const item of (value || '').split(/[,;]/)) {
      const [k, v] = item.split('=').map((s) => s && s.trim());
      if (k && v !== undefined) out[k.toLowerCase()] = v.replace(/^"|"$/g, '');
      else if (k && /^"/.test(k)) out.policy = k.replace(/^"|"$/g, '');
    }
    return out;
  }

  function rateLimitOf(headers) {
    const state = parseParams(headers.get('ratelimit'));
    const policy = parseParams(headers.get('ratelimit-policy'));
    const num = (...vals) => {
      const v = vals.find((x) => x !== undefined && x !== null && x !== '' && !Number.isNaN(Number(x)));
      return v === undefined ? undefined : Number(v);
    };
    const info = {
      remaining: num(state.r, state.remaining, headers.get('ratelimit-remaining')),
      reset: num(state.t, state.reset, headers.get('ratelimit-reset')),
      limit: num(policy.q, state.limit, headers.get('ratelimit-limit'), (headers.get('ratelimit-policy') || '').split(';')[0]),
      window: num(policy.w),
      policy: state.policy || policy.policy,
    };
    return info.remaining === undefined && info.limit === undefined ? null : info;
  }

  function showRateLimit(headers) {
    const rl = rateLimitOf(headers);
    if (!rl) return;
    const parts = [];
    if (rl.remaining !== undefined) parts.push(`${rl.remaining}${rl.limit !== undefined ? ` of ${rl.limit}` : ''} requests left`);
    else parts.push(`limit ${rl.limit}`);
    if (rl.window !== undefined) parts.push(`per ${rl.window} s`);
    if (rl.reset !== undefined) parts.push(`resets in ${rl.reset} s`);
    ui.ratelimit.textContent = `Rate limit${rl.policy ? ` (${rl.policy})` : ''}: ${parts.join(', ')}`;
    ui.ratelimit.classList.toggle('low', rl.remaining !== undefined && rl.remaining === 0);
  }

  // ---- messages ------------------------------------------------------------

  let countdown = null;

  function showMessage(text, kind = 'error') {
    ui.message.textContent = text;
    ui.message.className = `message ${kind}`;
    ui.message.hidden = false;
  }

  function clearMessage() {
    if (countdown) { clearInterval(countdown); countdown = null; }
    ui.message.hidden = true;
    ui.message.textContent = '';
  }

  // Retry-After is seconds or an HTTP date.
  function retryAfterSeconds(value) {
    if (!value) return null;
    if (/^\d+$/.test(value.trim())) return Number(value.trim());
    const at = Date.parse(value);
    return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
  }

  function startRetryCountdown(seconds, what) {
    if (countdown) clearInterval(countdown);
    let left = seconds;
    const render = () => {
      if (left > 0) showMessage(`Too many requests (429): ${what}. You can try again in ${left} s.`, 'error');
      else { showMessage('You can try again now.', 'info'); clearInterval(countdown); countdown = null; }
    };
    render();
    countdown = setInterval(() => { left -= 1; render(); }, 1000);
  }

  // The services' errors are {"error":{"code","message"}}; anything else
  // (a proxy's page) is shown by its status alone.
  async function errorMessageOf(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) { /* not JSON */ }
    return response.statusText || 'no details';
  }

  async function explainFailure(op, response) {
    const status = response.status;
    const detail = await errorMessageOf(response);
    if (status === 429) {
      const secs = retryAfterSeconds(response.headers.get('retry-after'));
      if (secs !== null) startRetryCountdown(secs, detail);
      else showMessage(`Too many requests (429): ${detail}. Wait a little and try again.`);
    } else if (status === 413) {
      showMessage(`The file is too large (413): ${detail}.`);
    } else if (status === 415) {
      showMessage(`That file is not an image the services can read (415): ${detail}.`);
    } else if (status >= 400 && status < 500) {
      showMessage(`The ${op} request was refused (${status}): ${detail}.`);
    } else {
      showMessage(`The ${op} service failed (${status}): ${detail}. The trace link below shows where.`);
    }
  }

  // ---- requests ------------------------------------------------------------

  function addRequestRow(op, status, ms, traceId) {
    const tr = document.createElement('tr');
    const cells = [op, String(status), `${ms.toFixed(0)} ms`];
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.children[1].className = status >= 200 && status < 300 ? 'ok' : 'bad';
    const td = document.createElement('td');
    const a = document.createElement('a');
    a.href = zipkinTraceUrl(traceId);
    a.textContent = traceId;
    a.className = 'trace';
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    a.dataset.op = op;
    a.setAttribute('aria-label', `Trace ${traceId} of the ${op} request in Zipkin`);
    td.appendChild(a);
    tr.appendChild(td);
    const empty = ui.requests.querySelector('tr.empty');
    if (empty) empty.remove();
    ui.requests.prepend(tr);
    while (ui.requests.rows.length > MAX_REQUEST_ROWS) ui.requests.deleteRow(-1);
  }

  // One request with a fresh traceparent; returns the response (or null when
  // the web front could not be reached) after recording its row.
  async function send(op, url, init) {
    const trace = newTraceparent();
    const headers = new Headers(init.headers || {});
    headers.set('traceparent', trace.header);
    const started = performance.now();
    let response = null;
    let body = null;
    try {
      response = await fetch(url, { ...init, headers });
      // The body is part of the latency the user waits for.
      body = await response.blob();
    } catch (e) {
      addRequestRow(op, 0, performance.now() - started, trace.traceId);
      showMessage(`Could not reach the web front for ${op}: ${e.message}.`);
      return null;
    }
    const ms = performance.now() - started;
    addRequestRow(op, response.status, ms, traceIdOf(response, trace.traceId));
    showRateLimit(response.headers);
    return { response: new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers }), ms };
  }

  let originalUrl = null;
  let grayUrl = null;

  function resetResults(file) {
    if (originalUrl) URL.revokeObjectURL(originalUrl);
    if (grayUrl) URL.revokeObjectURL(grayUrl);
    grayUrl = null;
    originalUrl = URL.createObjectURL(file);
    ui.images.hidden = false;
    ui.original.hidden = false;
    ui.original.src = originalUrl;
    ui.gray.hidden = true;
    ui.gray.removeAttribute('src');
    ui.classification.hidden = true;
    ui.top5.replaceChildren();
  }

  async function grayscale(file) {
    const r = await send('grayscale', '/api/grayscale', { method: 'POST', body: file, headers: { Accept: 'image/png' } });
    if (!r) return false;
    if (!r.response.ok) { await explainFailure('grayscale', r.response); return false; }
    grayUrl = URL.createObjectURL(await r.response.blob());
    ui.gray.src = grayUrl;
    ui.gray.hidden = false;
    return true;
  }

  async function classify(file) {
    const r = await send('classify', '/api/classify', { method: 'POST', body: file, headers: { Accept: 'application/json' } });
    if (!r) return false;
    if (!r.response.ok) { await explainFailure('classify', r.response); return false; }
    const result = await r.response.json();
    ui.label.textContent = result.label;
    ui.confidence.textContent = `confidence ${result.confidence} (${Math.round((result.score / 255) * 100)} %)`;
    ui.top5.replaceChildren(...(result.top || []).map((p) => {
      const li = document.createElement('li');
      const name = document.createElement('span');
      name.className = 'bar-label';
      name.textContent = p.label;
      const track = document.createElement('span');
      track.className = 'bar-track';
      const bar = document.createElement('span');
      bar.className = 'bar';
      const pct = Math.max(0, Math.min(100, (p.score / 255) * 100));
      bar.style.width = `${pct}%`; // CSSOM, which the CSP allows (no inline style attribute)
      track.appendChild(bar);
      const value = document.createElement('span');
      value.className = 'bar-value';
      value.textContent = `${p.score}/255`;
      li.append(name, track, value);
      li.setAttribute('aria-label', `${p.label}: ${p.score} out of 255`);
      return li;
    }));
    ui.classification.hidden = false;
    return true;
  }

  let busy = false;

  async function handleFile(file) {
    if (!file || busy) return;
    busy = true;
    clearMessage();
    resetResults(file);
    ui.results.setAttribute('aria-busy', 'true');
    ui.resultStatus.textContent = `Sending ${file.name} (${formatBytes(file.size)})…`;
    const [grayOk, classifyOk] = await Promise.all([grayscale(file), classify(file)]);
    ui.results.setAttribute('aria-busy', 'false');
    ui.resultStatus.textContent = grayOk && classifyOk
      ? `${file.name}: done.`
      : `${file.name}: ${grayOk || classifyOk ? 'partly failed' : 'failed'}, see the message above.`;
    busy = false;
    ui.file.value = '';
    if (eventsPages.length === 0) loadEvents();
  }

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  // ---- events --------------------------------------------------------------

  // before_id of each page after the first; empty = on the newest page,
  // which refreshes itself.
  const eventsPages = [];
  let nextBeforeId = null;

  // `Link: </events?limit=10&before_id=42>; rel="next"` names the service's
  // own path; the page keeps only its before_id and asks /api/events.
  function nextBeforeIdOf(link) {
    const m = /<([^>]*)>\s*;\s*rel="?next"?/.exec(link || '');
    if (!m) return null;
    const id = new URL(m[1], location.origin).searchParams.get('before_id');
    return id && /^\d+$/.test(id) ? id : null;
  }

  async function loadEvents() {
    const before = eventsPages[eventsPages.length - 1];
    const query = new URLSearchParams({ limit: String(EVENTS_PAGE_SIZE) });
    if (before) query.set('before_id', before);
    let response;
    try {
      response = await fetch(`/api/events?${query}`, { headers: { Accept: 'application/json', traceparent: newTraceparent().header } });
    } catch (e) {
      ui.eventsStatus.textContent = `Could not load events: ${e.message}`;
      return;
    }
    showRateLimit(response.headers);
    if (!response.ok) {
      ui.eventsStatus.textContent = `Could not load events (${response.status}): ${await errorMessageOf(response)}`;
      return;
    }
    const events = await response.json();
    ui.events.replaceChildren(...events.map((e) => {
      const tr = document.createElement('tr');
      for (const text of [String(e.id), new Date(e.event_ts).toLocaleString(), e.op_type, formatBytes(e.input_size)]) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      }
      tr.dataset.id = String(e.id);
      tr.dataset.op = e.op_type;
      return tr;
    }));
    nextBeforeId = nextBeforeIdOf(response.headers.get('link'));
    ui.older.disabled = !nextBeforeId;
    ui.newer.disabled = eventsPages.length === 0;
    const page = eventsPages.length + 1;
    ui.eventsStatus.textContent = events.length === 0
      ? 'No events recorded yet.'
      : `Page ${page}, ${events.length} event${events.length === 1 ? '' : 's'}${page === 1 ? ', newest first, refreshed every 5 s' : ''}.`;
  }

  ui.older.addEventListener('click', () => {
    if (!nextBeforeId) return;
    eventsPages.push(nextBeforeId);
    loadEvents();
  });
  ui.newer.addEventListener('click', () => {
    eventsPages.pop();
    loadEvents();
  });

  setInterval(() => {
    if (eventsPages.length === 0 && !document.hidden) loadEvents();
  }, EVENTS_POLL_MS);

  // ---- input ---------------------------------------------------------------

  ui.file.addEventListener('change', () => handleFile(ui.file.files[0]));
  ui.original.addEventListener('error', () => { ui.original.hidden = true; });

  for (const type of ['dragenter', 'dragover']) {
    ui.drop.addEventListener(type, (e) => { e.preventDefault(); ui.drop.classList.add('over'); });
  }
  for (const type of ['dragleave', 'drop']) {
    ui.drop.addEventListener(type, () => ui.drop.classList.remove('over'));
  }
  ui.drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) handleFile(file);
  });

  loadEvents();
})();
