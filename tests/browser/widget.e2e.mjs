// End-to-end checks of the <latest-run> widget and the SVG card in headless Chromium, run by
// tests/api/widget.rs, which starts the apps and a blog on another origin and passes their addresses
// as one JSON argument: {blog, apps: {photo, hostile}, names: {latin, cjk, emoji, arabic, hebrew},
// errors: {code: app}, errorWords: {code: sentence}, hostileName, chromium, axe, screenshots}.
// Every check prints one line; the process exits non-zero when any failed.

import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

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

// The sample's photo host is not reachable from here: the browser gets a drawn landscape instead.
const PHOTO = `<svg xmlns="http://www.w3.org/2000/svg" width="768" height="576" viewBox="0 0 768 576">
<defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#f7b267"/><stop offset="1" stop-color="#f4d6a0"/></linearGradient></defs>
<rect width="768" height="576" fill="url(#sky)"/><circle cx="560" cy="170" r="70" fill="#fff3d6"/>
<path d="M0 380 Q180 280 360 360 T768 330 V576 H0Z" fill="#6a8f5a"/><path d="M0 450 Q200 380 420 440 T768 420 V576 H0Z" fill="#3f6b45"/>
<path d="M300 576 Q380 470 430 430" stroke="#d9c7a3" stroke-width="26" fill="none"/></svg>`;

const browser = await chromium.launch({ executablePath: config.chromium, args: ["--no-sandbox"] });

/** A fresh page with the observers every check relies on. */
async function open(name, { colorScheme = "light", delayApi = 0, width = 600, photo = "ok" } = {}) {
  const context = await browser.newContext({ viewport: { width, height: 700 }, colorScheme, deviceScaleFactor: 2 });
  const page = await context.newPage();
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
    window.__shift = 0;
    window.__shifts = [];
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        window.__shift += entry.value;
        window.__shifts.push({ value: entry.value, at: Math.round(entry.startTime), sources: (entry.sources || []).map((s) => `${s.node?.nodeName} ${JSON.stringify(s.previousRect)}→${JSON.stringify(s.currentRect)}`) });
      }
    }).observe({ type: "layout-shift", buffered: true });
  });
  await page.route("https://dgtzuqphqg23d.cloudfront.net/**", (route) =>
    photo === "fail"
      ? route.fulfill({ status: 404, contentType: "text/plain", body: "gone" })
      : route.fulfill({ status: 200, contentType: "image/svg+xml", body: PHOTO }),
  );
  if (delayApi) {
    // Data arrives well after the first frames: the loading state is painted first.
    await page.route("**/api/GetLatestRun", async (route) => {
      await new Promise((resolve) => setTimeout(resolve, delayApi));
      await route.continue();
    });
  }
  await page.goto(`${config.blog}/${name}.html`);
  return { page, problems, context };
}

/** Waits until every widget on the page has left the loading state; their states. */
async function settle(page) {
  await page.waitForFunction(
    () => {
      const cards = [...document.querySelectorAll("latest-run")].map((el) => el.shadowRoot?.querySelector(".card"));
      return cards.length > 0 && cards.every((card) => card && card.dataset.state !== "loading");
    },
    null,
    { timeout: 30000, polling: 50 },
  );
  // Let the photo decode and two frames pass, so a late shift would be seen.
  await page.evaluate(async () => {
    await Promise.all(
      [...document.querySelectorAll("latest-run")].map((el) => {
        const img = el.shadowRoot.querySelector(".photo");
        return img && !img.hidden && img.src ? img.decode().catch(() => {}) : null;
      }),
    );
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  });
}

/** What the first widget shows. */
function read(page, index = 0) {
  return page.evaluate((index) => {
    const el = document.querySelectorAll("latest-run")[index];
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
    const stats = Object.fromEntries(
      [...root.querySelectorAll(".stats div")].map((group) => [group.querySelector("dt").textContent, plain(group.querySelector("dd").textContent)]),
    );
    const link = root.querySelector("a");
    const card = root.querySelector(".card");
    const bar = root.querySelector(".bar");
    const box = el.getBoundingClientRect();
    return {
      state: card.dataset.state,
      message: visible(".message") ? text(".message") : null,
      name: text(".name"),
      date: text(".date"),
      stats,
      ytd: text(".ytd"),
      stale: visible(".stale"),
      photo: visible(".photo") ? root.querySelector(".photo").src : null,
      scrim: visible(".scrim"),
      border: getComputedStyle(card).borderTopColor,
      photoAlt: root.querySelector(".photo").alt,
      link: link && visible("a") ? { href: link.href, text: link.textContent, target: link.target, rel: link.rel } : null,
      bar: visible(".bar") ? { now: bar.getAttribute("aria-valuenow"), label: bar.getAttribute("aria-label") } : null,
      background: getComputedStyle(card).backgroundColor,
      color: getComputedStyle(card).color,
      height: Math.round(box.height),
      width: Math.round(box.width),
      imgs: root.querySelectorAll("img").length,
      sketch: visible(".sketch") ? root.querySelector(".sketch path").getAttribute("d") : null,
    };
  }, index);
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

async function shot(page, file, selector = "latest-run") {
  await page.locator(selector).first().screenshot({ path: join(config.screenshots, file), animations: "disabled" });
}

try {
  // --- the run, with its photo: what renders ----------------------------------------------------
  {
    const { page, problems, context } = await open("photo", { delayApi: 800 });
    await page.waitForFunction(() => document.querySelector("latest-run")?.shadowRoot?.querySelector(".card")?.dataset.state === "loading");
    // The loading state is on screen (two frames) before the data arrives.
    const before = await page.evaluate(async () => {
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      return window.__shifts.length;
    });
    const loading = await read(page);
    eq("loading state shows a sentence", loading.message, "Loading the latest run…");
    eq("data had not arrived while loading was painted", loading.state, "loading");
    await settle(page);
    const run = await read(page);
    eq("state is ready", run.state, "ready");
    eq("name", run.name, "Tiergarten tempo + coffee");
    eq("date (the athlete's local day)", run.date, "Oct 10, 2025");
    eq("distance", run.stats["Distance"], "8.41 km");
    eq("moving time", run.stats["Moving time"], "47:31");
    eq("pace", run.stats["Pace"], "5:39 /km");
    eq("elevation", run.stats["Elevation"], "31 m");
    eq("year to date", run.ytd, "31 km this year");
    eq("no goal bar without a goal", run.bar, null);
    check("link to the activity", run.link?.href === "https://www.strava.com/activities/16128930471" && run.link?.text === "View on Strava", JSON.stringify(run.link));
    check("link opens safely in a new tab", run.link?.target === "_blank" && run.link?.rel.includes("noopener"), JSON.stringify(run.link));
    check("photo shown over https", run.photo?.startsWith("https://dgtzuqphqg23d.cloudfront.net/"), String(run.photo));
    eq("photo alt text", run.photoAlt, "Photo from the run “Tiergarten tempo + coffee”");
    eq("no stale hint on a fresh answer", run.stale, false);
    eq("no route sketch unless the app is set to send one", run.sketch, null);
    eq("space reserved while loading (same height)", loading.height, run.height);
    const shifts = await page.evaluate((before) => window.__shifts.slice(before), before);
    check("no layout shift when the data and photo arrive (layout-shift observer reads 0)", shifts.length === 0, JSON.stringify(shifts));
    noConsoleErrors(problems, "photo");
    await shot(page, "light.png");
    await axe(page, "light theme, photo");

    // Units, goal, locale and theme switch on the live element.
    await page.evaluate(() => document.querySelector("latest-run").setAttribute("units", "imperial"));
    const imperial = await read(page);
    eq("imperial distance", imperial.stats["Distance"], "5.23 mi");
    eq("imperial pace", imperial.stats["Pace"], "9:05 /mi");
    eq("imperial elevation", imperial.stats["Elevation"], "102 ft");
    eq("imperial year to date", imperial.ytd, "19 mi this year");
    await page.evaluate(() => document.querySelector("latest-run").setAttribute("goal", "40"));
    const goal = await read(page);
    eq("goal in the chosen unit", goal.ytd, "19 mi of 40 mi this year · 48%");
    check("goal bar with its value", goal.bar?.now === "48" && goal.bar?.label === "Yearly goal", JSON.stringify(goal.bar));
    await page.evaluate(() => {
      const el = document.querySelector("latest-run");
      el.setAttribute("units", "metric");
      el.setAttribute("locale", "de-DE");
    });
    const german = await read(page);
    eq("locale formats numbers", german.stats["Distance"], "8,41 km");
    eq("locale formats dates", german.date, "10.10.2025");
    eq("metric goal", german.ytd, "31 km of 40 km this year · 77 %");
    const shiftsAfter = await page.evaluate((before) => window.__shifts.slice(before), before);
    check("switching attributes shifts no layout", shiftsAfter.length === 0, JSON.stringify(shiftsAfter));
    await context.close();
  }

  // --- a page that also reserves the space before the script arrives: no shift at all -------------
  for (const name of ["reserved", "reserved-plain"]) {
    const { page, problems, context } = await open(name, { delayApi: 300 });
    await settle(page);
    eq(`${name}: ready`, (await read(page)).state, "ready");
    const shifts = await page.evaluate(() => window.__shifts);
    check(`${name}: no layout shift from the first paint on (layout-shift observer reads 0)`, shifts.length === 0, JSON.stringify(shifts));
    noConsoleErrors(problems, name);
    await context.close();
  }

  // --- a photo that fails to load: the card is the plain card of its theme, and stays so --------------
  {
    // On a dark system, so that a dark card could only come from the failed photo.
    const { page, context } = await open("photo-light", { colorScheme: "dark", photo: "fail" });
    await settle(page);
    const failed = () =>
      page.evaluate(() => {
        const img = document.querySelector("latest-run").shadowRoot.querySelector(".photo");
        return img.complete && img.naturalWidth === 0;
      });
    await page.waitForFunction(() => {
      const img = document.querySelector("latest-run").shadowRoot.querySelector(".photo");
      return img.getAttribute("src") && img.complete && img.naturalWidth === 0;
    }, null, { timeout: 30000, polling: 50 });
    const frames = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    await frames();
    const looksPlain = async (label) => {
      const shown = await read(page);
      eq(`${label}: the light card's background`, shown.background, "rgb(255, 255, 255)");
      eq(`${label}: the light card's text colour`, shown.color, "rgb(27, 28, 32)");
      eq(`${label}: the light card's border`, shown.border, "rgb(215, 216, 221)");
      eq(`${label}: no broken image`, shown.photo, null);
      eq(`${label}: no scrim`, shown.scrim, false);
      eq(`${label}: still the run`, shown.state, "ready");
    };
    await looksPlain("failed photo");
    for (const [attribute, value] of [["units", "imperial"], ["goal", "1500"], ["locale", "de-DE"]]) {
      await page.evaluate(([a, v]) => document.querySelector("latest-run").setAttribute(a, v), [attribute, value]);
      await frames();
      check(`failed photo after ${attribute}: the image is still the failed one`, await failed());
      await looksPlain(`failed photo after ${attribute}=${value}`);
    }
    await shot(page, "failed-photo.png");
    await context.close();
  }

  // --- the plain card: themes, contrast, reduced motion --------------------------------------------
  {
    const { page, problems, context } = await open("plain", { delayApi: 300 });
    await settle(page);
    const light = await read(page);
    eq("no photo: plain card", light.photo, null);
    check("the route sketch is drawn (WIDGET_ROUTE_SHAPE=true)", /^M[\d. ML]+$/.test(light.sketch ?? ""), String(light.sketch));
    eq("light background", light.background, "rgb(255, 255, 255)");
    noConsoleErrors(problems, "plain");
    await shot(page, "no-photo.png");
    await axe(page, "light theme, no photo");
    await page.evaluate(() => document.querySelector("latest-run").setAttribute("theme", "dark"));
    const dark = await read(page);
    eq("theme=dark", dark.background, "rgb(23, 25, 30)");
    await axe(page, "dark theme, no photo");
    await page.evaluate(() => document.querySelector("latest-run").setAttribute("theme", "auto"));
    await page.emulateMedia({ colorScheme: "dark" });
    eq("theme=auto follows a dark system", (await read(page)).background, "rgb(23, 25, 30)");
    await page.emulateMedia({ colorScheme: "light" });
    eq("theme=auto follows a light system", (await read(page)).background, "rgb(255, 255, 255)");
    await page.evaluate(() => document.querySelector("latest-run").setAttribute("theme", "light"));
    await page.emulateMedia({ colorScheme: "dark" });
    eq("theme=light stays light on a dark system", (await read(page)).background, "rgb(255, 255, 255)");
    // A source that never answers keeps the widget loading: the shimmer runs, unless the reader
    // asked for reduced motion.
    await page.emulateMedia({ colorScheme: "light" });
    await page.route("**/never-answers", () => {});
    await page.evaluate(() => document.querySelector("latest-run").setAttribute("src", "/never-answers"));
    const animation = () => page.evaluate(() => getComputedStyle(document.querySelector("latest-run").shadowRoot.querySelector(".card")).animationName);
    eq("loading again on a new src", (await read(page)).state, "loading");
    eq("loading shimmer runs", await animation(), "shimmer");
    await page.emulateMedia({ reducedMotion: "reduce" });
    eq("no shimmer with prefers-reduced-motion", await animation(), "none");
    await context.close();
  }

  // --- dark theme over the photo ----------------------------------------------------------------
  {
    const { page, problems, context } = await open("photo", { colorScheme: "dark" });
    await settle(page);
    const run = await read(page);
    eq("white text over the photo", run.color, "rgb(255, 255, 255)");
    noConsoleErrors(problems, "photo, dark");
    await shot(page, "dark.png");
    await axe(page, "dark theme, photo");
    await context.close();
  }

  // --- the stale hint --------------------------------------------------------------------------------
  {
    const { page, problems, context } = await open("stale");
    await settle(page);
    const run = await read(page);
    eq("stale answer still shows the run", run.state, "ready");
    eq("stale hint shown", run.stale, true);
    noConsoleErrors(problems, "stale");
    await shot(page, "stale.png");
    await context.close();
  }

  // --- hostile activity name ---------------------------------------------------------------------------
  {
    const { page, problems, context } = await open("hostile");
    await settle(page);
    await page.waitForTimeout(300);
    const run = await read(page);
    eq("a hostile name shows as literal text", run.name, config.hostileName);
    eq("no element made from the name (only the photo img)", run.imgs, 1);
    eq("no script ran (no global set)", await page.evaluate(() => window.__xss), undefined);
    eq("no dialog opened", problems.dialogs.length, 0);
    eq("the page has no img of its own", await page.evaluate(() => document.querySelectorAll("img").length), 0);
    noConsoleErrors(problems, "hostile");
    // The SVG card of the same run, opened as a document: the name is text there too.
    const svg = await (await fetch(`${config.apps.hostile}/api/GetLatestRun?format=svg`)).text();
    const parsed = await page.evaluate((svg) => {
      const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
      return {
        error: doc.querySelector("parsererror")?.textContent ?? null,
        title: doc.querySelector("title")?.textContent ?? "",
        names: [...doc.querySelectorAll("text")].map((t) => t.textContent),
        elements: [...doc.querySelectorAll("*")].map((e) => e.localName).filter((n) => !["svg", "title", "style", "rect", "text"].includes(n)),
      };
    }, svg);
    eq("hostile SVG card parses as XML", parsed.error, null);
    check("hostile SVG card has the name as text", parsed.title.includes(config.hostileName), parsed.title);
    check("hostile SVG card shows the name's start as text", parsed.names.some((n) => n.startsWith("<img src=x onerror=")), JSON.stringify(parsed.names));
    eq("hostile SVG card has only its own elements", parsed.elements.length, 0);
    await context.close();
  }

  // --- error states: 502, 503, network, no public run ---------------------------------------------
  let readyHeight;
  {
    const { page, context } = await open("plain");
    await settle(page);
    readyHeight = (await read(page)).height;
    await context.close();
  }
  for (const [name, state, sentence, screenshot] of [
    ["e502", "error", "Strava cannot be reached right now. Please try again later.", "error.png"],
    ["e503", "error", "This runner has not connected Strava yet.", null],
    ["network", "error", "The latest run could not be loaded. Check your connection and try again.", null],
    ["empty", "empty", "No public run to show yet.", null],
  ]) {
    const { page, problems, context } = await open(name);
    await settle(page);
    const shown = await read(page);
    eq(`${name}: state`, shown.state, state);
    eq(`${name}: a human sentence`, shown.message, sentence);
    eq(`${name}: no link`, shown.link, null);
    eq(`${name}: same space as a run`, shown.height, readyHeight);
    eq(`${name}: no page errors`, problems.pageErrors.length, 0);
    if (screenshot) {
      await shot(page, screenshot);
      await axe(page, `${name} error state`);
    }
    await context.close();
  }

  // --- showcase for the README: photo on light, plain on dark with a goal ---------------------------
  {
    const { page, problems, context } = await open("showcase", { width: 1000 });
    await settle(page);
    noConsoleErrors(problems, "showcase");
    await shot(page, "showcase.png", "main");
    await context.close();
  }

  // --- the SVG card in Chromium ---------------------------------------------------------------------------
  {
    const { page, problems, context } = await open("svg");
    await page.waitForFunction(() => document.getElementById("card").complete, null, { timeout: 30000 });
    const size = await page.evaluate(() => {
      const img = document.getElementById("card");
      return [img.naturalWidth, img.naturalHeight];
    });
    eq("SVG card renders at its stated size", JSON.stringify(size), "[480,200]");
    noConsoleErrors(problems, "svg");
    /** The colour of a pixel of a screenshot, decoded by the page itself. */
    const pixel = async (file) => {
      const png = await page.locator("#card").screenshot({ path: join(config.screenshots, file) });
      return page.evaluate(async (b64) => {
        const img = new Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const canvas = Object.assign(document.createElement("canvas"), { width: img.width, height: img.height });
        const ctx = canvas.getContext("2d");
        ctx.drawImage(img, 0, 0);
        return [...ctx.getImageData(40, Math.floor(img.height / 2), 1, 1).data.slice(0, 3)].join(",");
      }, png.toString("base64"));
    };
    eq("SVG card (auto) is light on a light system", await pixel("svg-light.png"), "255,255,255");
    await page.emulateMedia({ colorScheme: "dark" });
    eq("SVG card (auto) is dark on a dark system", await pixel("svg-dark.png"), "23,25,30");

    // Opened on its own: XML, no script, its colours follow the scheme too.
    const card = await context.newPage();
    const response = await card.goto(`${config.apps.photo}/api/GetLatestRun?format=svg`);
    eq("SVG card content type", response.headers()["content-type"], "image/svg+xml");
    const doc = await card.evaluate(() => ({
      root: document.documentElement.localName,
      width: document.documentElement.getAttribute("width"),
      height: document.documentElement.getAttribute("height"),
      scripts: document.querySelectorAll("script").length,
      fill: getComputedStyle(document.querySelector(".bg")).fill,
    }));
    check("SVG card is an svg document of 480×200 without script", doc.root === "svg" && doc.width === "480" && doc.height === "200" && doc.scripts === 0, JSON.stringify(doc));
    await card.emulateMedia({ colorScheme: "light" });
    eq("SVG document light", await card.evaluate(() => getComputedStyle(document.querySelector(".bg")).fill), "rgb(255, 255, 255)");
    await card.emulateMedia({ colorScheme: "dark" });
    eq("SVG document dark", await card.evaluate(() => getComputedStyle(document.querySelector(".bg")).fill), "rgb(23, 25, 30)");
    await context.close();
  }
  // --- the SVG card's text stays in its box, for every script ----------------------------------------
  {
    const { page, context } = await open("svg");
    // Without CJK and emoji fonts Chromium draws narrow boxes, and the check below could not fail.
    const widths = await page.evaluate(() => {
      const ctx = document.createElement("canvas").getContext("2d");
      ctx.font = '700 100px system-ui, sans-serif';
      return { cjk: ctx.measureText("東").width, emoji: ctx.measureText("🏃").width };
    });
    check("CJK and emoji fonts are installed (fonts-noto-cjk, fonts-noto-color-emoji)", widths.cjk >= 90 && widths.emoji >= 90, JSON.stringify(widths));
    for (const [script, address] of Object.entries(config.names)) {
      for (const theme of ["light", "dark"]) {
        const svg = await (await fetch(`${address}/api/GetLatestRun?format=svg&theme=${theme}`)).text();
        const boxes = await page.evaluate((svg) => {
          const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
          const card = document.importNode(doc.documentElement, true);
          document.body.append(card);
          const texts = [...card.querySelectorAll("text")].map((t) => {
            const b = t.getBBox();
            return { text: t.textContent, y: t.getAttribute("y"), left: b.x, right: b.x + b.width, top: b.y, bottom: b.y + b.height };
          });
          const path = card.querySelector("path");
          // The sketch is drawn at translate(388 22) scale(0.68), with a 3 px stroke.
          const sketchLeft = path ? 388 + 0.68 * path.getBBox().x - 1.5 : null;
          card.remove();
          return { texts, sketchLeft, title: doc.querySelector("title")?.textContent ?? "" };
        }, svg);
        const name = boxes.texts.find((t) => t.y === "70");
        check(`SVG card (${script}, ${theme}): the sketch is drawn`, boxes.sketchLeft !== null, svg.slice(0, 200));
        check(`SVG card (${script}, ${theme}): the whole name is in the title`, boxes.title.includes(config.nameTexts[script]), boxes.title);
        check(
          `SVG card (${script}, ${theme}): the name ends before the sketch (getBBox)`,
          name && name.right <= boxes.sketchLeft && name.left >= 20,
          JSON.stringify({ name, sketchLeft: boxes.sketchLeft }),
        );
        const outside = boxes.texts.filter((t) => t.left < 0 || t.right > 480 || t.top < 0 || t.bottom > 200);
        check(`SVG card (${script}, ${theme}): every text inside the 480×200 card (getBBox)`, outside.length === 0, JSON.stringify(outside));
      }
    }
    await context.close();
  }

  // --- errors as SVG cards: an image, never a broken one, that says what is wrong -----------------------
  {
    const { page, context } = await open("svg");
    for (const [code, address] of Object.entries(config.errors)) {
      for (const theme of ["light", "dark", "auto"]) {
        const url = `${address}/api/GetLatestRun?format=svg&theme=${theme}`;
        const response = await fetch(url);
        eq(`SVG ${code} (${theme}): 200`, response.status, 200);
        eq(`SVG ${code} (${theme}): X-Widget-Error`, response.headers.get("x-widget-error"), code);
        const svg = await response.text();
        const size = await page.evaluate(
          (url) =>
            new Promise((resolve) => {
              const img = new Image();
              img.onload = () => resolve([img.naturalWidth, img.naturalHeight]);
              img.onerror = () => resolve([0, 0]);
              img.src = url;
            }),
          url,
        );
        eq(`SVG ${code} (${theme}): renders as an image (naturalWidth × naturalHeight)`, JSON.stringify(size), "[480,200]");
        const words = await page.evaluate((svg) => {
          const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
          return [...doc.querySelectorAll("text")].map((t) => t.textContent).join(" | ");
        }, svg);
        check(`SVG ${code} (${theme}): says what is wrong`, words.includes(config.errorWords[code]), words);
      }
    }
    // One of them on a page, for the screenshots.
    await page.evaluate((url) => {
      const img = Object.assign(new Image(), { id: "error-card", src: url, alt: "Latest run" });
      document.body.append(img);
      return img.decode();
    }, `${config.errors.strava_unavailable}/api/GetLatestRun?format=svg&theme=light`);
    await shot(page, "svg-error.png", "#error-card");
    await context.close();
  }
} catch (error) {
  failures.push(String(error?.stack ?? error));
  console.log(`FAIL unexpected error: ${error?.stack ?? error}`);
} finally {
  await browser.close();
}

if (failures.length) {
  console.log(`widget e2e: ${passed} checks passed, ${failures.length} failed: ${failures.join(" | ")}`);
  process.exit(1);
}
console.log(`widget e2e: all ${passed} checks passed`);
