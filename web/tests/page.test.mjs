// Browser test of the web front: Debian's Chromium driven by playwright-core
// (never a downloaded browser), against a real stack behind nginx.
// tests/e2e/web.rs starts the stack and runs this with:
//   WEB_URL           the front, e.g. http://127.0.0.1:8080
//   IMAGES_DIR        ../shared/images
//   SCREENSHOT_DIR    where each state's screenshot goes
//   WEB_MAX_BODY      the body limit nginx and the services were given
//   ZIPKIN_URL        set only when a Zipkin runs: then each trace is looked up
//   CHROMIUM          optional, default /usr/bin/chromium
// Exits non-zero on the first failed check.

import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const WEB_URL = env('WEB_URL').replace(/\/+$/, '');
const IMAGES_DIR = env('IMAGES_DIR');
const SCREENSHOT_DIR = env('SCREENSHOT_DIR');
const WEB_MAX_BODY = Number(env('WEB_MAX_BODY'));
const ZIPKIN_URL = process.env.ZIPKIN_URL || '';
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
// Debug builds classify slowly; generous, and only ever waited out on failure.
const TIMEOUT_MS = 60_000;

const step = (name) => console.log(`web test: ${name}`);

async function shot(page, name) {
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`web test: screenshot ${file}`);
}

async function eventRows(page) {
  return page.$$eval('#events tbody tr', (rows) => rows.map((r) => ({ id: Number(r.dataset.id), op: r.dataset.op })));
}

// Waits until the events table (which refreshes itself) holds `count` rows.
async function waitForEventCount(page, count) {
  await page.waitForFunction((n) => document.querySelectorAll('#events tbody tr').length === n, count, { timeout: TIMEOUT_MS });
  return eventRows(page);
}

// The Zipkin check: every trace id the page linked is a trace Zipkin holds,
// with spans from the sidecar and the service. Runs when the harness starts
// a Zipkin (ZIPKIN_URL); spans reach Zipkin in batches, hence the retries.
async function findTracesInZipkin(zipkinUrl, traceIds) {
  for (const traceId of traceIds) {
    let spans = [];
    const complete = () => spans.some((s) => s.localEndpoint && s.localEndpoint.serviceName === 'events-service')
      && spans.some((s) => s.tags && s.tags['otel.scope.name'] === 'kit');
    for (let attempt = 0; attempt < 30 && !complete(); attempt += 1) {
      const r = await fetch(`${zipkinUrl}/api/v2/trace/${traceId}`);
      if (r.ok) spans = await r.json();
      if (!complete()) await new Promise((res) => setTimeout(res, 1000));
    }
    assert.ok(spans.length > 0, `trace ${traceId} is in Zipkin`);
    const services = new Set(spans.map((s) => s.localEndpoint && s.localEndpoint.serviceName));
    // The browser's request crossed nginx into a sidecar, the image service
    // (its own spans, scope "kit"), and on to events-service.
    assert.ok([...services].some((s) => s && s.startsWith('image-api-')), `trace ${traceId}: an image service, got ${[...services]}`);
    assert.ok(services.has('events-service'), `trace ${traceId}: reaches events-service, got ${[...services]}`);
    assert.ok(spans.some((s) => s.tags && s.tags['otel.scope.name'] === 'kit'), `trace ${traceId}: the app's own spans`);
    console.log(`web test: trace ${traceId} in Zipkin: ${spans.length} spans from ${[...services].join(', ')}`);
  }
}

// Reads the rendered grayscale image back through a canvas: every pixel
// must have R == G == B, and its size must be the original's.
async function grayPixels(page) {
  return page.evaluate(() => {
    const img = document.getElementById('gray');
    const original = document.getElementById('original');
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let notGray = 0;
    const distinct = new Set();
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] !== data[i + 1] || data[i] !== data[i + 2]) notGray += 1;
      distinct.add(data[i]);
    }
    return {
      width: img.naturalWidth, height: img.naturalHeight,
      originalWidth: original.naturalWidth, originalHeight: original.naturalHeight,
      pixels: data.length / 4, notGray, levels: distinct.size,
    };
  });
}

async function main() {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  const problems = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    // A CSP violation or a script error is a bug of the page, even when the
    // checks below still pass. (Refused requests log a console error of
    // their own: those are expected and not counted.)
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    // The traceparent each /api request carried, to check the links name
    // the traces the page itself started.
    const sentTraceIds = new Set();
    page.on('request', (req) => {
      const m = /^00-([0-9a-f]{32})-/.exec(req.headers().traceparent || '');
      if (req.url().includes('/api/') && m) sentTraceIds.add(m[1]);
    });
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });

    step('load the page');
    const response = await page.goto(`${WEB_URL}/`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-security-policy'] || '', /frame-ancestors 'none'/);
    await page.waitForFunction(() => /No events recorded yet/.test(document.getElementById('events-status').textContent));
    assert.deepEqual(await eventRows(page), [], 'a fresh stack has no events');
    await shot(page, '01-loaded');

    step('the file input is reachable by keyboard');
    let reached = false;
    for (let i = 0; i < 10 && !reached; i += 1) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement && document.activeElement.id === 'file');
    }
    assert.ok(reached, 'Tab reaches the file input');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'the focused file input shows a focus outline');

    step('upload hot_dog.jpg');
    const hotDog = await readFile(path.join(IMAGES_DIR, 'hot_dog.jpg'));
    await page.setInputFiles('#file', { name: 'hot_dog.jpg', mimeType: 'image/jpeg', buffer: hotDog });
    await page.waitForFunction(() => {
      const img = document.getElementById('gray');
      return !img.hidden && img.complete && img.naturalWidth > 0;
    });
    const gray = await grayPixels(page);
    console.log(`web test: grayscale ${gray.width}x${gray.height}, ${gray.levels} gray levels, ${gray.notGray} non-gray pixels`);
    assert.ok(gray.pixels > 0);
    assert.equal(gray.notGray, 0, 'every pixel of the grayscale image has R == G == B');
    assert.ok(gray.levels > 16, 'an image, not a flat fill');
    assert.deepEqual([gray.width, gray.height], [gray.originalWidth, gray.originalHeight], 'same size as the original');

    await page.waitForFunction(() => !document.getElementById('classification').hidden);
    assert.equal(await page.textContent('#label'), 'hotdog');
    assert.match(await page.textContent('#confidence'), /\d+\/255/);
    assert.equal(await page.locator('#top5 li').count(), 5, 'top-5 bars');
    assert.equal(await page.isVisible('#message'), false, 'no error message');

    step('the events table grows by the two requests');
    const events = await waitForEventCount(page, 2);
    assert.deepEqual(events.map((e) => e.op).sort(), ['classify', 'grayscale']);

    step('each request has a latency and a well-formed trace link');
    const requests = await page.$$eval('#requests tbody tr', (rows) => rows.map((r) => ({
      op: r.cells[0].textContent, status: r.cells[1].textContent, latency: r.cells[2].textContent,
      href: r.querySelector('a.trace').href, traceId: r.querySelector('a.trace').textContent,
    })));
    assert.deepEqual(requests.map((r) => r.op).sort(), ['classify', 'grayscale']);
    const zipkinBase = await page.evaluate(() => (window.WEB_CONFIG || {}).zipkinUrl);
    assert.ok(zipkinBase, 'config.js gives the Zipkin URL');
    for (const r of requests) {
      assert.equal(r.status, '200', `${r.op} status`);
      assert.match(r.latency, /^\d+ ms$/);
      assert.match(r.traceId, /^[0-9a-f]{32}$/);
      assert.doesNotMatch(r.traceId, /^0+$/);
      assert.equal(r.href, `${zipkinBase}/zipkin/traces/${r.traceId}`);
      assert.ok(sentTraceIds.has(r.traceId), `${r.op}: the linked trace ${r.traceId} is the one the page sent`);
    }
    assert.notEqual(requests[0].traceId, requests[1].traceId, 'a fresh trace per request');
    await shot(page, '02-hotdog');
    if (ZIPKIN_URL) await findTracesInZipkin(ZIPKIN_URL, requests.map((r) => r.traceId));
    else console.log('web test: no ZIPKIN_URL, the traces are not looked up in Zipkin');

    step('phone width: readable, no sideways scrolling');
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a phone`);
    await shot(page, '03-phone');
    await page.setViewportSize({ width: 1200, height: 900 });

    step('a file that is not an image');
    await page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('these are notes, not pixels\n'.repeat(20)) });
    await page.waitForSelector('#message:not([hidden])');
    const notImage = await page.textContent('#message');
    assert.match(notImage, /not an image/i, notImage);
    assert.match(notImage, /415/, notImage);
    await page.waitForFunction(() => /partly failed|failed/.test(document.getElementById('result-status').textContent));
    await shot(page, '04-not-an-image');

    step('a file over the body limit');
    const big = Buffer.alloc(WEB_MAX_BODY + 64 * 1024, 0x41);
    hotDog.copy(big); // starts as a JPEG: the size alone is what is refused
    await page.setInputFiles('#file', { name: 'huge.jpg', mimeType: 'image/jpeg', buffer: big });
    await page.waitForFunction(() => /413/.test(document.getElementById('message').textContent));
    const tooLarge = await page.textContent('#message');
    assert.match(tooLarge, /too large/i, tooLarge);
    await shot(page, '05-too-large');

    step('refused requests recorded nothing');
    await page.reload();
    assert.equal((await waitForEventCount(page, 2)).length, 2);

    step('events paging: Older and Newer follow the Link header');
    // Nine more events, sent straight to the front (a page holds ten).
    const photo = await readFile(path.join(IMAGES_DIR, 'grace_hopper.jpg'));
    for (let i = 0; i < 9; i += 1) {
      const r = await fetch(`${WEB_URL}/api/grayscale`, { method: 'POST', body: photo });
      assert.equal(r.status, 200, `extra grayscale ${i}`);
    }
    await page.reload();
    const firstPage = await waitForEventCount(page, 10);
    assert.equal(firstPage[0].id, 11, 'newest first');
    assert.equal(await page.isEnabled('#events-older'), true, 'a full page links to the next');
    assert.equal(await page.isEnabled('#events-newer'), false);
    await page.focus('#events-older');
    await page.keyboard.press('Enter');
    const secondPage = await waitForEventCount(page, 1);
    assert.equal(secondPage[0].id, 1);
    assert.equal(await page.isEnabled('#events-older'), false, 'the last page');
    await shot(page, '06-events-page-2');
    await page.click('#events-newer');
    assert.equal((await waitForEventCount(page, 10))[0].id, 11);

    step('a 429 answer: message with a Retry-After countdown, rate-limit state shown');
    // The real limiter: the harness gives classify a burst of 2 and almost
    // no refill (RATE_LIMIT_POLICIES in tests/e2e/web.rs). The hot dog and
    // the non-image took both tokens; this third classify is refused.
    await page.setInputFiles('#file', { name: 'hot_dog.jpg', mimeType: 'image/jpeg', buffer: hotDog });
    await page.waitForFunction(() => /try again in \d+ s/.test(document.getElementById('message').textContent));
    assert.match(await page.textContent('#message'), /429/);
    assert.match(await page.textContent('#ratelimit'), /0 of 2 requests left/);
    await page.waitForFunction(() => /partly failed/.test(document.getElementById('result-status').textContent));
    await shot(page, '07-rate-limited');
    // The countdown counts down.
    const seconds = async () => Number((/try again in (\d+) s/.exec(await page.textContent('#message')) || [])[1]);
    const before = await seconds();
    await page.waitForTimeout(2200);
    assert.ok((await seconds()) < before, 'the Retry-After countdown moves');

    assert.deepEqual(problems, [], 'no script errors or CSP violations');
    console.log('web test: all checks passed');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`web test FAILED: ${e.stack || e}`);
  process.exit(1);
});
