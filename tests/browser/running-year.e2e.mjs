// End-to-end checks of the <running-year> widget and the running year's SVG card in headless
// Chromium, run by tests/api/widget.rs, which starts the app on 6 June 2026 (it serves the script and
// GetRunningYear from its activity index, filled from a fake Strava), an app that is not
// connected, a server drawing the app's year with the card renderer, and a blog on another
// origin, and passes their addresses as one JSON argument: {blog, app, card, script, today,
// hostileName, gzipLimit, chromium, axe, screenshots}. The year: 2026 up to Saturday 6 June;
// 11 runs, 100 km, 33,333 s; 1–3 January, a 32 km run on 15 March, 1–6 June every day (two runs
// on 3 June). Every check prints one line; the process exits non-zero when any failed.

import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const config = JSON.parse(process.argv[2] ?? "{}");
const axeSource = readFileSync(config.axe, "utf8");
mkdirSync(config.screenshots, { recursive: true });

let passed = 0;
const failures = [];
function check(name, ok, detail = "") {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failures.push(name);
    console.log(`FAIL ${name}${detail ? `: ${detail}` : ""}`);
  }
}
const eq = (name, actual, expected) =>
  check(name, actual === expected, `got ${JSON.stringify(actual)}, want ${JSON.stringify(expected)}`);

const browser = await chromium.launch({ executablePath: config.chromium, args: ["--no-sandbox"] });
// The JSON answer only, not the card.
const isYearJson = (url) => url.pathname.endsWith("/api/GetRunningYear") && !url.search;

/** A fresh page on the fixture's "today", with the observers every check relies on. */
async function open(name, { colorScheme = "light", delayApi = 0 } = {}) {
  const context = await browser.newContext({ viewport: { width: 720, height: 900 }, colorScheme, deviceScaleFactor: 2 });
  const page = await context.newPage();
  await page.clock.setFixedTime(new Date(`${config.today}T12:00:00`));
  const problems = { console: [], pageErrors: [], dialogs: [] };
  page.on("console", (message) => {
    if (message.type() === "error") problems.console.push(message.text());
  });
  page.on("pageerror", (error) => problems.pageErrors.push(String(error)));
  page.on("dialog", async (dialog) => {
    problems.dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  await page.addInitScript(() => {
    window.__shifts = [];
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) window.__shifts.push({ value: entry.value, at: Math.round(entry.startTime) });
    }).observe({ type: "layout-shift", buffered: true });
  });
  if (delayApi) {
    await page.route(isYearJson, async (route) => {
      await new Promise((resolve) => setTimeout(resolve, delayApi));
      await route.continue();
    });
  }
  await page.goto(`${config.blog}/${name}.html`);
  return { page, problems, context };
}

async function settle(page) {
  await page.waitForFunction(() => {
    const card = document.querySelector("running-year")?.shadowRoot?.querySelector(".card");
    return card && card.dataset.state !== "loading";
  }, null, { timeout: 30000, polling: 50 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

/** What the widget shows. */
function read(page) {
  return page.evaluate(() => {
    const el = document.querySelector("running-year");
    const root = el.shadowRoot;
    // Intl puts no-break spaces between numbers and units in some locales.
    const plain = (value) => value.replace(/[\u00a0\u202f]/g, " ");
    const text = (selector) => {
      const node = root.querySelector(selector);
      return node ? plain(node.textContent) : null;
    };
    const visible = (selector) => {
      const node = root.querySelector(selector);
      if (!node || node.closest("[hidden]")) return false;
      const style = getComputedStyle(node);
      return style.display !== "none" && style.visibility !== "hidden";
    };
    const card = root.querySelector(".card");
    // In date order: by column (week), then by row (weekday), as drawn.
    const at = (c) => c.getBoundingClientRect();
    const cells = [...root.querySelectorAll("[role=gridcell]")].sort((a, b) => at(a).left - at(b).left || at(a).top - at(b).top);
    const bar = root.querySelector(".bar");
    return {
      state: card.dataset.state,
      message: visible(".message") ? text(".message") : null,
      year: text(".year"),
      stale: visible(".stale"),
      stats: Object.fromEntries([...root.querySelectorAll(".stats div")].map((g) => [g.querySelector("dt").textContent, plain(g.querySelector("dd").textContent)])),
      cells: cells.map((c) => plain(c.textContent)),
      levels: cells.map((c) => c.className),
      tabStops: cells.filter((c) => c.tabIndex === 0).map((c) => plain(c.textContent)),
      readout: text(".readout"),
      projection: text(".projection"),
      goal: text(".goal"),
      bar: visible(".bar") ? { now: bar.getAttribute("aria-valuenow"), text: plain(bar.getAttribute("aria-valuetext") ?? "") } : null,
      weeks: root.querySelectorAll(".weeks i").length,
      weeksLabel: plain(root.querySelector(".weeks").getAttribute("aria-label") ?? ""),
      background: getComputedStyle(card).backgroundColor,
      height: Math.round(el.getBoundingClientRect().height),
      imgs: root.querySelectorAll("img").length,
    };
  });
}

async function axe(page, label) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const summary = result.violations.map((v) => `${v.id} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
  check(`axe finds no violations: ${label}`, result.violations.length === 0, summary.join("; "));
}

function noConsoleErrors(problems, label) {
  check(`no console errors or page errors: ${label}`, problems.console.length + problems.pageErrors.length === 0, JSON.stringify(problems));
}

const shot = (page, file, selector = "running-year") =>
  page.locator(selector).first().screenshot({ path: join(config.screenshots, file), animations: "disabled" });

/** The widget's focused element's text (null when focus is elsewhere). */
const focused = (page) =>
  page.evaluate(() => {
    const el = document.querySelector("running-year");
    const active = document.activeElement === el ? el.shadowRoot.activeElement : null;
    return active ? active.textContent.replace(/[\u00a0\u202f]/g, " ") : null;
  });

try {
  // --- the script: its size, from the app, cross-origin -----------------------------------------
  {
    const response = await fetch(config.script, { headers: { Origin: config.blog } });
    const body = Buffer.from(await response.arrayBuffer());
    const gzipped = gzipSync(body, { level: 9 }).length;
    console.log(`running-year.js: ${body.length} bytes, ${gzipped} bytes gzipped`);
    check(`running-year.js is at most ${config.gzipLimit} bytes gzipped`, gzipped <= config.gzipLimit, String(gzipped));
    eq("running-year.js is JavaScript", response.headers.get("content-type"), "text/javascript; charset=utf-8");
    eq("running-year.js may be loaded from any page", response.headers.get("access-control-allow-origin"), "*");
  }

  // --- loading, then the year: what renders ------------------------------------------------------
  {
    const { page, problems, context } = await open("year", { delayApi: 800 });
    await page.waitForFunction(() => document.querySelector("running-year")?.shadowRoot?.querySelector(".card")?.dataset.state === "loading");
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const before = await page.evaluate(() => window.__shifts.length);
    const loading = await read(page);
    eq("loading state shows a sentence", loading.message, "Loading the running year…");
    await settle(page);
    const year = await read(page);
    eq("state is ready (data from another origin)", year.state, "ready");
    eq("the year", year.year, "2026");
    eq("no stale hint on a fresh answer", year.stale, false);
    eq("distance", year.stats["Distance"], "100 km");
    eq("runs", year.stats["Runs"], "11");
    eq("moving time", year.stats["Moving time"], "9 hr");
    eq("current streak", year.stats["Current streak"], "6 days");
    eq("projection to 31 December (100 km in 157 days)", year.projection, "On pace for 232 km by Dec 31");
    eq("no goal line without a goal", year.goal, "");
    eq("no goal bar without a goal", year.bar, null);
    eq("space reserved while loading (same height)", loading.height, year.height);
    const shifts = await page.evaluate((before) => window.__shifts.slice(before), before);
    check("no layout shift when the data arrives (layout-shift observer reads 0)", shifts.length === 0, JSON.stringify(shifts));

    // The heat map: one cell per day, each with its figure as text.
    eq("one cell per day of 2026", year.cells.length, 365);
    eq("cells with a run are the days with a run", year.levels.filter((c) => !/\bl0\b/.test(c)).length, 10);
    eq("1 January as text", year.cells[0], "Thu, Jan 1: 5.0 km");
    eq("a day without a run as text", year.cells[3], "Sun, Jan 4: no run");
    eq("the long run's day as text", year.cells[73], "Sun, Mar 15: 32.0 km");
    eq("a day with two runs as text", year.cells[153], "Wed, Jun 3: 8.0 km (2 runs)");
    eq("today as text", year.cells[156], "Sat, Jun 6: 10.0 km");
    eq("a day to come as text", year.cells[158], "Mon, Jun 8: not yet");
    eq("31 December as text", year.cells[364], "Thu, Dec 31: not yet");
    check("colours step with the distance", /\bl2\b/.test(year.levels[0]) && /\bl4\b/.test(year.levels[73]) && /\bl3\b/.test(year.levels[156]), JSON.stringify([year.levels[0], year.levels[73], year.levels[156]]));
    check("days to come are dimmed", /\bfu\b/.test(year.levels[158]) && !/\bfu\b/.test(year.levels[157]), JSON.stringify(year.levels.slice(156, 159)));
    const named = await page.getByRole("gridcell", { name: "Sun, Mar 15: 32.0 km", exact: true }).count();
    eq("a day's figure is its accessible name (found by role and name)", named, 1);
    eq("the grid is named", await page.getByRole("grid", { name: "Days of 2026" }).count(), 1);
    eq("one tab stop in the grid: today", JSON.stringify(year.tabStops), JSON.stringify(["Sat, Jun 6: 10.0 km"]));
    eq("the longest run and the week streak under the map, the name as text", year.readout, `Longest run: 32.0 km, Mar 15 · ${config.hostileName} · 1 week in a row`);
    eq("a hostile run name makes no element", year.imgs, 0);
    eq("no script ran from the name", await page.evaluate(() => window.__xss), undefined);
    eq("weekly bars: one per week up to this one", year.weeks, 23);
    eq("weekly bars are described in words", year.weeksLabel, "Weekly distance: best week 50.0 km (from Jun 1), this week 50.0 km");

    // The keyboard: one tab stop, arrows by day and week, Home and End.
    await page.keyboard.press("Tab");
    eq("Tab reaches today's cell", await focused(page), "Sat, Jun 6: 10.0 km");
    eq("the focused day shows under the map", (await read(page)).readout, "Sat, Jun 6: 10.0 km");
    await page.keyboard.press("ArrowUp");
    eq("ArrowUp: the day before", await focused(page), "Fri, Jun 5: 8.0 km");
    await page.keyboard.press("ArrowRight");
    eq("ArrowRight: a week later", await focused(page), "Fri, Jun 12: not yet");
    await page.keyboard.press("ArrowLeft");
    await page.keyboard.press("ArrowLeft");
    eq("ArrowLeft: a week earlier", await focused(page), "Fri, May 29: no run");
    await page.keyboard.press("Home");
    eq("Home: 1 January", await focused(page), "Thu, Jan 1: 5.0 km");
    await page.keyboard.press("ArrowUp");
    eq("ArrowUp on 1 January stays there", await focused(page), "Thu, Jan 1: 5.0 km");
    await page.keyboard.press("End");
    eq("End: today", await focused(page), "Sat, Jun 6: 10.0 km");
    await page.keyboard.press("ArrowUp");
    await page.evaluate(() => document.querySelector("running-year").setAttribute("units", "imperial"));
    eq("a re-render (units) keeps the focused day", await focused(page), "Fri, Jun 5: 5.0 mi");
    await page.evaluate(() => document.querySelector("running-year").removeAttribute("units"));
    await page.keyboard.press("End");
    const visibleFocus = await page.evaluate(() => getComputedStyle(document.querySelector("running-year").shadowRoot.activeElement).outlineStyle);
    eq("the focused day has a visible outline", visibleFocus, "solid");
    eq("still one tab stop", JSON.stringify((await read(page)).tabStops), JSON.stringify(["Sat, Jun 6: 10.0 km"]));
    await page.keyboard.press("Tab");
    eq("Tab leaves the grid (one tab stop)", await focused(page), null);
    eq("the readout returns to the summary", (await read(page)).readout.startsWith("Longest run:"), true);

    await shot(page, "running-year-light.png");
    await axe(page, "light theme");
    await page.emulateMedia({ colorScheme: "dark" });
    eq("theme=auto follows a dark system", (await read(page)).background, "rgb(23, 25, 30)");
    await axe(page, "dark theme (auto)");
    await shot(page, "running-year-dark.png");
    await page.emulateMedia({ colorScheme: "light" });
    await page.evaluate(() => document.querySelector("running-year").setAttribute("theme", "dark"));
    eq("theme=dark on a light system", (await read(page)).background, "rgb(23, 25, 30)");
    await axe(page, "theme=dark");

    // Units, goal and locale switch on the live element, without moving anything.
    const shiftsBefore = await page.evaluate(() => window.__shifts.length);
    await page.evaluate(() => {
      const el = document.querySelector("running-year");
      el.setAttribute("theme", "light");
      el.setAttribute("units", "imperial");
      el.setAttribute("goal", "100");
    });
    const imperial = await read(page);
    eq("imperial distance", imperial.stats["Distance"], "62 mi");
    eq("imperial projection", imperial.projection, "On pace for 144 mi by Dec 31");
    eq("imperial goal", imperial.goal, "62 mi of 100 mi · 62% · on track");
    eq("imperial day", imperial.cells[73], "Sun, Mar 15: 19.9 mi");
    await page.evaluate(() => {
      const el = document.querySelector("running-year");
      el.setAttribute("units", "metric");
      el.setAttribute("locale", "de-DE");
    });
    const german = await read(page);
    eq("locale formats numbers", german.cells[73].endsWith(": 32,0 km"), true);
    eq("locale formats the goal (in the chosen unit)", german.goal, "100 km of 100 km · 100 % · on track");
    const shiftsAfter = await page.evaluate((before) => window.__shifts.slice(before), shiftsBefore);
    check("switching attributes shifts no layout", shiftsAfter.length === 0, JSON.stringify(shiftsAfter));

    // The SVG card of the same year, as an <img> from the stub's origin.
    await page.waitForFunction(() => document.getElementById("card").complete, null, { timeout: 30000 });
    const size = await page.evaluate(() => {
      const img = document.getElementById("card");
      return [img.naturalWidth, img.naturalHeight];
    });
    eq("the app's SVG card (?format=svg) loads as an image at its size", JSON.stringify(size), "[480,200]");
    noConsoleErrors(problems, "year");
    eq("no dialog opened", problems.dialogs.length, 0);
    await context.close();
  }

  // --- a goal: progress and projection ------------------------------------------------------------
  {
    const { page, problems, context } = await open("year-goal");
    await settle(page);
    const year = await read(page);
    eq("goal progress", year.goal, "100 km of 500 km · 20% · behind pace");
    check("goal bar with its value", year.bar?.now === "20" && year.bar?.text === "20% of the yearly goal", JSON.stringify(year.bar));
    eq("projection with a goal", year.projection, "On pace for 232 km by Dec 31");
    noConsoleErrors(problems, "goal");
    await shot(page, "running-year.png");
    await axe(page, "with a goal");
    // This page's card is drawn by the card renderer from the app's year.
    await page.waitForFunction(() => document.getElementById("card").complete, null, { timeout: 30000 });
    eq("the year's card loads as an image", await page.evaluate(() => document.getElementById("card").naturalWidth), 480);
    await shot(page, "running-year-card.png", "#card");
    await page.emulateMedia({ colorScheme: "dark" });
    await shot(page, "running-year-card-dark.png", "#card");
    await context.close();
  }

  // --- the SVG card opened on its own: an SVG document without script ------------------------------
  {
    const { page, context } = await open("year");
    const response = await page.goto(`${config.card}/api/GetRunningYear?format=svg&theme=auto`);
    eq("SVG card content type", response.headers()["content-type"], "image/svg+xml");
    const doc = await page.evaluate(() => ({
      root: document.documentElement.localName,
      scripts: document.querySelectorAll("script").length,
      days: document.querySelectorAll("rect[class^=l]").length - 5,
      bg: getComputedStyle(document.querySelector(".bg")).fill,
      outside: [...document.querySelectorAll("text, rect")].filter((e) => {
        const b = e.getBBox();
        return b.x < 0 || b.y < 0 || b.x + b.width > 480 || b.y + b.height > 200;
      }).length,
    }));
    check("SVG card: an svg document, no script, one square per day, everything inside 480×200", doc.root === "svg" && doc.scripts === 0 && doc.days === 365 && doc.outside === 0, JSON.stringify(doc));
    eq("SVG card light on a light system", doc.bg, "rgb(255, 255, 255)");
    await page.emulateMedia({ colorScheme: "dark" });
    eq("SVG card dark on a dark system", await page.evaluate(() => getComputedStyle(document.querySelector(".bg")).fill), "rgb(23, 25, 30)");
    await context.close();
  }

  // --- an error answer: a sentence in the same space ------------------------------------------------
  {
    const { page, problems, context } = await open("year-down");
    await settle(page);
    const down = await read(page);
    eq("error state", down.state, "error");
    eq("error sentence (503 not_configured)", down.message, "This runner has not connected Strava yet.");
    const { page: ok, context: okContext } = await open("year");
    await settle(ok);
    eq("error: same space as the year", down.height, (await read(ok)).height);
    await okContext.close();
    eq("error: no page errors", problems.pageErrors.length, 0);
    await axe(page, "error state");
    await context.close();
  }
} catch (error) {
  failures.push(String(error?.stack ?? error));
  console.log(`FAIL unexpected error: ${error?.stack ?? error}`);
} finally {
  await browser.close();
}

if (failures.length) {
  console.log(`running-year e2e: ${passed} checks passed, ${failures.length} failed: ${failures.join(" | ")}`);
  process.exit(1);
}
console.log(`running-year e2e: all ${passed} checks passed`);
