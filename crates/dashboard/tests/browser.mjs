// The dashboard in headless Chromium (Debian's), driven by playwright-core: the login page
// turns the token (env CONVEYOR_API_TOKEN) into a session, every page loads, a longtask submitted from its page reaches 100 % without a reload, a job is
// cancelled from its page, W is changed, an average job completes and validates live.
// Usage: node browser.mjs BASE_URL SCREENSHOT_DIR   (playwright-core found through NODE_PATH)
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const [base, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const fail = (message) => { console.error(`FAIL: ${message}`); process.exitCode = 1; };
const check = (ok, message) => { if (!ok) { throw new Error(message); } };

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => fail(`script error on ${page.url()}: ${error.message}`));

  // Without a session a page sends the browser to the login page, and the API says 401.
  const token = process.env.CONVEYOR_API_TOKEN;
  await page.goto(`${base}/jobs?state=failed`);
  check(new URL(page.url()).pathname === "/login", `not sent to the login page: ${page.url()}`);
  const anonymous = await page.evaluate(async () => (await fetch("/api/jobs")).status);
  check(anonymous === 401, `GET /api/jobs without a token: ${anonymous}`);
  await page.fill("input[name=token]", "not-the-token-at-all");
  await page.click("button:has-text(\"Log in\")");
  check((await page.textContent("[role=alert]")).includes("not valid"), "a wrong token is refused");
  await page.screenshot({ path: `${shots}/login-refused.png`, fullPage: true });
  await page.fill("input[name=token]", token);
  await Promise.all([page.waitForURL(/\/jobs\?state=failed$/), page.click("button:has-text(\"Log in\")")]);
  check((await page.textContent("h1")) === "Jobs", "back on the page asked for after logging in");
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "conveyor_session");
  check(session && session.httpOnly && session.sameSite === "Strict", `session cookie: ${JSON.stringify(session)}`);

  for (const [path, heading] of [["/", "Overview"], ["/jobs", "Jobs"], ["/workers", "Workers"], ["/schedules", "Schedules"],
      ["/apps/longtask", "longtask"], ["/apps/repostats", "repostats"], ["/apps/average", "average"],
      ["/apps/mining", "mining"], ["/apps/minitwit", "minitwit"]]) {
    const response = await page.goto(base + path);
    check(response.ok(), `${path}: ${response.status()}`);
    check((await page.textContent("h1")) === heading, `${path}: heading`);
    await page.screenshot({ path: `${shots}/${path === "/" ? "overview" : path.split("/").pop()}.png`, fullPage: true });
  }

  // A repository added on the mining page is analysed; the live region shows it and a chart.
  await page.goto(`${base}/apps/mining`);
  await page.fill("input[name=url]", process.env.MINING_REPO);
  await page.click("button:has-text(\"Add\")");
  await page.waitForSelector("td.state-analyzed", { timeout: 60000 });
  await page.waitForSelector("svg polyline", { state: "attached", timeout: 10000 });
  check((await page.textContent("[data-live]")).includes("Rust"), "the languages table lists Rust");
  check((await page.textContent("[data-live]")).includes("lib.rs"), "the files table lists lib.rs");
  await page.screenshot({ path: `${shots}/mining-analyzed.png`, fullPage: true });
  // Indexer settings are typed fields: a number for min_stars, a box for forks, a date.
  const github = page.locator("form[data-api='/api/mining/indexers/github']");
  await github.locator("input[name='settings.min_stars']").fill("50");
  await github.locator("input[name='settings.include_forks']").uncheck();
  await github.locator("input[name='settings.created_from']").fill("2015-06-01");
  await github.locator("button[type=submit]").click();
  await github.locator("text=saved").waitFor({ timeout: 10000 });
  const saved = await page.evaluate(async () => (await fetch("/api/mining/indexers/github")).json());
  check(saved.settings.min_stars === 50 && saved.settings.include_forks === false
    && saved.settings.created_from === "2015-06-01" && saved.settings.base_url.startsWith("http"),
    `typed settings saved: ${JSON.stringify(saved.settings)}`);
  const list = page.locator("form[data-api='/api/mining/indexers/list']");
  await list.locator("textarea[name='settings.urls']").fill("https://example.com/a.git\n\n  ../b  \n");
  await list.locator("button[type=submit]").click();
  await list.locator("text=saved").waitFor({ timeout: 10000 });
  const listed = await page.evaluate(async () => (await fetch("/api/mining/indexers/list")).json());
  check(JSON.stringify(listed.settings.urls) === JSON.stringify(["https://example.com/a.git", "../b"]),
    `a list's lines saved: ${JSON.stringify(listed.settings)}`);
  await page.goto(`${base}/apps/mining`);
  check(await page.inputValue("form[data-api='/api/mining/indexers/github'] input[name='settings.min_stars']") === "50",
    "the form shows the saved value");
  await page.screenshot({ path: `${shots}/mining-indexers.png`, fullPage: true });

  // A longtask started from its page: the job page's bar reaches 100 % with no reload.
  await page.goto(`${base}/apps/longtask`);
  await page.fill("input[name=target]", "1000000000");
  await page.fill("input[name=step]", "10000000");
  await Promise.all([page.waitForURL(/\/jobs\/\d+$/), page.click("button:has-text(\"Start\")")]);
  await page.evaluate(() => {
    window.__stayed = true;
    window.__seen = [];
    const text = document.querySelector("[data-progress-text]");
    new MutationObserver(() => window.__seen.push(text.textContent)).observe(text, { childList: true, characterData: true, subtree: true });
  });
  await page.waitForFunction(() => document.querySelector("[data-state]").textContent === "completed", null, { timeout: 60000 });
  check(await page.evaluate(() => window.__stayed === true), "the job page reloaded");
  const text = await page.textContent("[data-progress-text]");
  check(text.startsWith("100 %"), `progress text: ${text}`);
  const seen = await page.evaluate(() => window.__seen);
  check(seen.some((t) => /^([1-9]|[1-9][0-9]) %/.test(t)), `no progress between 0 and 100 % was shown: ${seen}`);
  check(await page.evaluate(() => document.querySelector("progress").value === document.querySelector("progress").max), "bar full");
  await page.screenshot({ path: `${shots}/job-completed.png`, fullPage: true });

  // Cancel a running job from its page.
  const id = await page.evaluate(async () => {
    const r = await fetch("/api/jobs", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ kind: "sleep", args: { ms: 60000 } }) });
    return (await r.json()).id;
  });
  await page.goto(`${base}/jobs/${id}`);
  await page.waitForFunction(() => document.querySelector("[data-state]").textContent === "running", null, { timeout: 30000 });
  await page.click("button:has-text(\"Cancel\")");
  await page.waitForFunction(() => document.querySelector("[data-state]").textContent === "cancelled", null, { timeout: 30000 });
  await page.waitForFunction(() => !document.querySelector("[data-duration]").textContent.includes("so far"), null, { timeout: 5000 });
  check((await page.textContent("[data-finished]")) === "just now", "the time line follows the end");
  await page.screenshot({ path: `${shots}/job-cancelled.png`, fullPage: true });

  // A job that failed twice, then succeeded: its page lists the three attempts.
  const flaky = await page.evaluate(async () => (await (await fetch("/api/jobs", { method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ kind: "fail", args: { times: 2 }, max_attempts: 3 }) })).json()).id);
  await page.goto(`${base}/jobs/${flaky}`);
  await page.waitForFunction(() => document.querySelector("[data-state]").textContent === "completed", null, { timeout: 30000 });
  await page.reload();
  const attempts = await page.$$eval("#attempts-h ~ table tbody tr", (rows) =>
    rows.map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent)));
  check(attempts.length === 3, `attempt rows: ${JSON.stringify(attempts)}`);
  check(attempts.map((a) => a[4]).join() === "failed,failed,completed", `outcomes: ${JSON.stringify(attempts)}`);
  check(attempts[0][5].includes("attempt 1"), `the first attempt's error: ${attempts[0][5]}`);
  await page.screenshot({ path: `${shots}/job-attempts.png`, fullPage: true });

  // Bulk retry of the failed jobs: counted, confirmed, done; they run again.
  for (let i = 0; i < 3; i++) {
    await page.evaluate(async () => fetch("/api/jobs", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ kind: "fail", args: { times: 1 }, max_attempts: 1 }) }));
  }
  const failedBy = Date.now() + 20000;
  let failedNow = 0;
  while ((failedNow = (await page.evaluate(async () => (await (await fetch("/api/jobs?state=failed&kind=fail")).json()).jobs.length))) < 3) {
    check(Date.now() < failedBy, `failed jobs: ${failedNow}`);
    await page.waitForTimeout(200);
  }
  const clicked = Date.now();
  await page.goto(`${base}/jobs?state=failed&kind=fail`);
  let asked = null;
  page.once("dialog", (dialog) => { asked = dialog.message(); dialog.accept(); });
  await page.click("button:has-text(\"Retry all\")");
  await page.waitForSelector("text=done: 3");
  check(asked === "Retry 3 jobs?", `the confirmation: ${asked}`);
  // They fail again (their attempts start afresh), later than the click: they ran again.
  const retriedBy = Date.now() + 20000;
  for (;;) {
    const jobs = (await page.evaluate(async () => (await (await fetch("/api/jobs?kind=fail&state=failed")).json()).jobs));
    const again = jobs.filter((j) => j.finished_at && Date.parse(j.finished_at) > clicked);
    if (again.length >= 3) { break; }
    check(Date.now() < retriedBy, `jobs run again after the bulk retry: ${again.length}`);
    await page.waitForTimeout(200);
  }
  await page.reload();
  await page.screenshot({ path: `${shots}/jobs-bulk-retried.png`, fullPage: true });

  // W changed from the average page, then a job submitted there completes and validates.
  await page.goto(`${base}/apps/average`);
  await page.fill("input[name=w]", "3");
  await page.click("button:has-text(\"Set W\")");
  await page.waitForSelector("text=W saved");
  const w = await page.evaluate(async () => (await (await fetch("/api/average/workers")).json()).w);
  check(w === 3, `W is ${w}`);
  await page.fill("input[name=files]", "12");
  await page.fill("input[name=entries_per_file]", "50");
  await page.click("button:has-text(\"Submit\")");
  await page.waitForSelector("td.state-completed", { timeout: 60000 });
  await page.click("button:has-text(\"Validate\")");
  await page.waitForSelector("text=valid: true", { timeout: 30000 });
  await page.screenshot({ path: `${shots}/average-validated.png`, fullPage: true });

  // repostats: "Refresh now" lists the newest repositories; the page shows them and a chart.
  await page.goto(`${base}/apps/repostats`);
  const lastJob = () => document.querySelector("[data-live] a[href^='/jobs/']")?.getAttribute("href") ?? null;
  const before = await page.evaluate(lastJob);
  await page.click("button:has-text(\"Refresh now\")");
  await page.waitForSelector("text=refresh started");
  // The live region follows the new refresh to its end without a reload.
  await page.waitForFunction(
    ([before, lastJob]) => {
      const href = new Function(`return (${lastJob})()`)();
      return href && href !== before && document.querySelector("[data-live] .state-completed");
    },
    [before, lastJob.toString()],
    { timeout: 60000 },
  );
  check((await page.textContent("[data-live]")).includes("Last refresh"), "the last refresh is shown");
  const deadline = Date.now() + 60000;
  while (!(await page.$("svg rect"))) {
    check(Date.now() < deadline, "repostats never showed its chart");
    await page.waitForTimeout(500);
    await page.reload({ waitUntil: "load" });
  }
  check((await page.$$("section:last-of-type tbody tr, table tbody tr")).length > 10, "repositories listed");
  await page.screenshot({ path: `${shots}/repostats-refreshed.png`, fullPage: true });
  await page.goto(`${base}/apps/repostats`);
  await page.fill("input[name=language]", "rust");
  await page.selectOption("select[name=has_issues]", "true");
  await Promise.all([page.waitForNavigation(), page.click("button:has-text(\"Filter\")")]);
  const heading = await page.textContent("h2:has-text(\"Repositories (\")");
  const filtered = Number(heading.match(/\((\d+)\)/)[1]);
  check(page.url().includes("language=rust") && page.url().includes("has_issues=true"), `filters in the URL: ${page.url()}`);
  check(filtered > 0 && filtered < 40, `repositories after filtering: ${filtered}`);
  await page.goto(`${base}/apps/repostats?has_issues=maybe`);
  check((await page.textContent(".error")).includes("has_issues must be true or false"), "a bad filter is named");
  await page.goto(`${base}/apps/repostats?language=%3Cnope%3E&license=`);
  check((await page.content()).includes("&lt;nope&gt;"), "a filter value is escaped");

  // The jobs list follows new jobs without a reload.
  await page.goto(`${base}/jobs?kind=noop`);
  await page.evaluate(() => { window.__stayed = true; });
  const noop = await page.evaluate(async () => {
    const r = await fetch("/api/jobs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ kind: "noop", args: {} }) });
    return (await r.json()).id;
  });
  await page.waitForSelector(`a[href="/jobs/${noop}"]`, { timeout: 15000 });
  check(await page.evaluate(() => window.__stayed === true), "the jobs list reloaded");

  // Concurrency of a queue changed from the workers page.
  await page.goto(`${base}/workers`);
  await page.fill("input[name=concurrency] >> nth=0", "5");
  const queue = await page.evaluate(() => document.querySelector("tbody tr td").textContent);
  await page.click("button:has-text(\"Set\") >> nth=0");
  await page.waitForSelector("text=saved");
  const set = await page.evaluate(async (q) => (await (await fetch("/api/queues")).json()).find((x) => x.queue === q), queue);
  check(set && set.concurrency === 5, `concurrency of ${queue}: ${JSON.stringify(set)}`);
  await page.screenshot({ path: `${shots}/workers.png`, fullPage: true });

  // Pause a queue: a job waits; resume it: the job runs.
  await Promise.all([page.waitForNavigation(), page.click("button:has-text(\"Pause default\")")]);
  await page.waitForSelector("tr:has-text(\"default\") .badge.paused");
  await page.waitForTimeout(2500); // a heartbeat applies it (lease 2 s: every 0.7 s)
  const held = await page.evaluate(async () => (await (await fetch("/api/jobs", { method: "POST",
    headers: { "content-type": "application/json" }, body: JSON.stringify({ kind: "noop" }) })).json()).id);
  await page.waitForTimeout(2500);
  const waiting = await page.evaluate(async (id) => (await (await fetch(`/api/jobs/${id}`)).json()).state, held);
  check(waiting === "available", `a job of a paused queue is ${waiting}`);
  await page.screenshot({ path: `${shots}/workers-paused.png`, fullPage: true });
  await Promise.all([page.waitForNavigation(), page.click("button:has-text(\"Resume default\")")]);
  const resumedBy = Date.now() + 10000;
  for (;;) {
    const now = await page.evaluate(async (id) => (await (await fetch(`/api/jobs/${id}`)).json()).state, held);
    if (now === "completed") { break; }
    check(Date.now() < resumedBy, `the job of a resumed queue is still ${now}`);
    await page.waitForTimeout(200);
  }

  // A job for a queue nobody serves: accepted with a warning, and the queue is badged.
  const typo = await page.evaluate(async () => (await (await fetch("/api/jobs", { method: "POST",
    headers: { "content-type": "application/json" }, body: JSON.stringify({ kind: "noop", queue: "defualt" }) })).json()));
  check(typo.warning && typo.warning.includes("defualt"), `no warning: ${JSON.stringify(typo)}`);
  await page.goto(`${base}/`);
  await page.waitForSelector("tr:has-text(\"defualt\") .badge", { timeout: 10000 });
  await page.screenshot({ path: `${shots}/overview-unserved.png`, fullPage: true });

  // The throughput charts (stored per-minute counts) have points above zero after jobs ran.
  const lines = await page.$$eval("#throughput-h ~ .figures svg polyline", (found) =>
    found.map((l) => l.getAttribute("points").split(" ").map((p) => Number(p.split(",")[1]))));
  check(lines.length === 4, `throughput lines: ${lines.length}`);
  check(lines[0].length === 60 && lines[2].length === 24, `buckets: ${lines.map((l) => l.length)}`);
  check(lines[0].some((y) => y < 160) && lines[2].some((y) => y < 160), "completed jobs are drawn above zero");
  // Each queue has its own small charts of the hour and the day; default's show its jobs.
  const sparks = await page.$$eval("#throughput-h ~ table tbody tr", (rows) => rows.map((r) => ({
    queue: r.cells[0].textContent.trim(),
    lines: [...r.querySelectorAll("svg.spark polyline")].map((l) => l.getAttribute("points").split(" ").map((p) => Number(p.split(",")[1]))),
  })));
  check(sparks.length > 1 && sparks.every((s) => s.lines.length === 4), `sparklines: ${JSON.stringify(sparks.map((s) => [s.queue, s.lines.length]))}`);
  const defaultSpark = sparks.find((s) => s.queue === "default");
  check(defaultSpark && defaultSpark.lines[0].some((y) => y < 23), "default's hour chart shows its completed jobs");

  // Phone width: one column, nothing wider than the screen.
  const phone = await context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(`${base}/`);
  const wide = await phone.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 390, `the overview is ${wide}px wide on a phone`);
  await phone.screenshot({ path: `${shots}/overview-phone.png`, fullPage: true });
  // Each queue is a card: its running and failed counts come first, inside the screen.
  const cells = await phone.$$eval("#queues-h ~ table tbody tr:first-child td", (tds) =>
    tds.map((td) => { const r = td.getBoundingClientRect(); return { label: td.dataset.label || "queue", x: r.x, y: r.y, right: r.right }; }));
  const order = [...cells].sort((a, b) => a.y - b.y || a.x - b.x).map((c) => c.label);
  const row = await phone.$eval("#queues-h ~ table tbody tr", (tr) => tr.outerHTML);
  check(order[0] === "queue" && order[1] === "running" && order[2] === "failed", `phone order: ${order} in ${row}`);
  check(cells.every((c) => c.right <= 390), `cells inside the screen: ${JSON.stringify(cells)}`);

  // Log out: the cookie goes, and the pages ask for the token again.
  await Promise.all([page.waitForURL(/\/login$/), page.click("button:has-text(\"Log out\")")]);
  await page.goto(`${base}/`);
  check(new URL(page.url()).pathname === "/login", `still logged in after logging out: ${page.url()}`);
  console.log("browser checks passed");
} catch (error) {
  fail(error.stack || String(error));
} finally {
  await browser.close();
}
