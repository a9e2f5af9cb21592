// node scripts/screenshots.mjs APP CHROMIUM OUT: the README's running-year pictures from a
// running demo at APP (see scripts/screenshots).
import { chromium } from "playwright-core";
import { join } from "node:path";

const [app, executablePath, out] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({
    viewport: { width: 620, height: 900 },
    colorScheme: "light",
    deviceScaleFactor: 2,
  });
  const page = await context.newPage();
  // The widget as a blog embeds it: the demo's script, a goal, the page's light theme.
  await page.setContent(
    `<!doctype html><html lang="en"><head><meta charset="utf-8">
     <script type="module" src="${app}/api/widget/running-year.js"></script>
     <style>body { margin: 0; padding: 16px; font: 16px system-ui, sans-serif; background: #fff; }</style>
     </head><body><running-year src="${app}/api/GetRunningYear" goal="2500" theme="light"></running-year></body></html>`,
    { waitUntil: "load" },
  );
  const widget = page.locator("running-year");
  await page.waitForFunction(
    () => document.querySelector("running-year")?.shadowRoot?.querySelector(".card[data-state=ready]") != null,
    null,
    { timeout: 30000 },
  );
  await page.waitForTimeout(500);
  await widget.screenshot({ path: join(out, "running-year.png"), animations: "disabled" });

  // The SVG card as an image, as a profile README shows it.
  await page.setContent(
    `<!doctype html><html><body style="margin:0;padding:16px;background:#fff">
     <img id="card" src="${app}/api/GetRunningYear?format=svg&theme=light" width="480" height="200"></body></html>`,
    { waitUntil: "load" },
  );
  await page.waitForFunction(() => document.getElementById("card").complete, null, { timeout: 30000 });
  const width = await page.evaluate(() => document.getElementById("card").naturalWidth);
  if (width !== 480) throw new Error(`the SVG card did not load as an image (width ${width})`);
  await page.locator("#card").screenshot({ path: join(out, "running-year-card.png") });
  await context.close();
} finally {
  await browser.close();
}
