// <running-year>: a blog owner's running year from Strava: a calendar heat map of its days, weekly
// bars, totals, the current streak, and progress against a yearly goal with a linear projection
// to 31 December. One ES module, no dependencies, no build step. Embed:
//   <script type="module" src="https://APP/api/widget/running-year.js"></script>
//   <running-year src="https://APP/api/GetRunningYear"></running-year>
// Attributes: src (required), units (metric | imperial), theme (auto | light | dark), goal (yearly
// distance goal in the chosen unit), locale (default: the page's). Colours, radius, font and size
// follow CSS custom properties (--running-year-bg, -fg, -muted, -accent, -track, -border, -radius,
// -font, -height, -max-width). Every text is set with textContent, never as HTML. The heat map is
// a grid with one tab stop: arrow keys move by day (up, down) and by week (left, right), Home and
// End go to the first and the last day; each day names its date and distance as text.

const DARK = "--_bg:var(--running-year-bg,#17191e);--_fg:var(--running-year-fg,#f1f2f4);--_muted:var(--running-year-muted,#b4b8c0);--_track:var(--running-year-track,#3a3d45);--_border:var(--running-year-border,#33363d);--_l0:#2b2e35;--_l1:#5c2c15;--_l2:#93401a;--_l3:#d9561b;--_l4:#ff8c4f;color-scheme:dark";

const CSS = `
:host{display:block;max-width:var(--running-year-max-width,36rem);container-type:inline-size;font-family:var(--running-year-font,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif);
--_bg:var(--running-year-bg,#fff);--_fg:var(--running-year-fg,#1b1c20);--_muted:var(--running-year-muted,#55575e);--_accent:var(--running-year-accent,#fc5200);--_track:var(--running-year-track,#e4e5e9);--_border:var(--running-year-border,#d7d8dd);--_l0:#e4e5e9;--_l1:#fed7c0;--_l2:#fda676;--_l3:#fc7434;--_l4:#c73f00;color-scheme:light}
:host([hidden]){display:none}
@media (prefers-color-scheme:dark){:host(:not([theme=light])){${DARK}}}
:host([theme=dark]){${DARK}}
[hidden]{display:none!important}
.off{visibility:hidden}
.card{position:relative;box-sizing:border-box;height:var(--running-year-height,22rem);overflow:hidden;border:1px solid var(--_border);border-radius:var(--running-year-radius,14px);background:var(--_bg);color:var(--_fg);line-height:1.35;font-size:1rem}
.body{box-sizing:border-box;height:100%;padding:1rem 1.15rem;display:flex;flex-direction:column;gap:.5rem}
.body>*{flex-shrink:0}
p,dl,dd{margin:0}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:.2rem .6rem;font-size:.8rem;color:var(--_muted)}
.kicker{font-weight:700;text-transform:uppercase;letter-spacing:.06em}
.stale{border:1px solid currentColor;border-radius:99px;padding:0 .5em}
.stats{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:.5rem .75rem}
@container (max-width:24rem){.stats{grid-template-columns:repeat(2,minmax(0,1fr))}}
dt{font-size:.72rem;text-transform:uppercase;letter-spacing:.05em;color:var(--_muted)}
dd{font-size:1.05rem;font-weight:650;font-variant-numeric:tabular-nums;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.cols{display:grid;grid-template-columns:repeat(var(--cols,53),minmax(0,1fr));gap:2px}
@container (max-width:26rem){.cols{gap:1px}}
.months{font-size:.68rem;color:var(--_muted);height:1em;line-height:1;margin-bottom:-.25rem}
.months span{white-space:nowrap}
.map{display:grid;gap:2px}
.d{aspect-ratio:1;border-radius:2px}
.l0{background:var(--_l0)}.l1{background:var(--_l1)}.l2{background:var(--_l2)}.l3{background:var(--_l3)}.l4{background:var(--_l4)}
.fu{opacity:.45}
.d:focus{outline:2px solid var(--_fg);outline-offset:1px;position:relative;z-index:1}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}
.line{display:flex;gap:.75rem;align-items:center;font-size:.8rem;color:var(--_muted);min-height:1.1rem}
.readout{flex:1;min-width:0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.legend{display:flex;gap:3px;align-items:center}
.legend i{width:.6rem;height:.6rem;border-radius:2px}
.weeks{height:2.4rem;grid-template-rows:minmax(0,1fr);align-items:end;border-bottom:1px solid var(--_track)}
.weeks i{background:var(--_accent);border-radius:2px 2px 0 0;min-height:0}
.foot{margin-top:auto;font-size:.85rem}
.bar{height:.45rem;margin-top:.35rem;border-radius:99px;background:var(--_track);overflow:hidden}
.fill{height:100%;border-radius:inherit;background:var(--_accent);transition:width .6s ease-out}
.goal{margin-top:.2rem;min-height:1.35em;color:var(--_muted)}
.message{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;padding:1.5rem;text-align:center;color:var(--_fg)}
.card:not([data-state=ready]) .body{visibility:hidden}
.card[data-state=loading]{background:linear-gradient(100deg,var(--_bg) 30%,var(--_track) 50%,var(--_bg) 70%) 0 0/300% 100%;animation:shimmer 1.6s linear infinite}
.card[data-state=loading] .message{color:var(--_muted)}
@keyframes shimmer{to{background-position:-150% 0}}
@media (prefers-reduced-motion:reduce){.card{animation:none!important}.fill{transition:none}}
`;

const MESSAGES = {
  loading: "Loading the running year…",
  not_configured: "This runner has not connected Strava yet.",
  strava_unavailable: "Strava cannot be reached right now. Please try again later.",
  strava_authorization: "The connection to Strava needs to be renewed by the site owner.",
  storage_unavailable: "The running year cannot be loaded right now. Please try again later.",
  bad_request: "This widget asks for a year that cannot be shown.",
  year_not_indexed: "That year is not on record: this year and the year before can be shown.",
  network: "The running year could not be loaded. Check your connection and try again.",
  no_src: "This widget has no src attribute to load the year from.",
  other: "The running year cannot be shown right now. Please try again later.",
};

const DAY = 86400000;
const MILE = 1609.344;

/** `document.createElement` with a class, appended to `parent`. */
function make(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.append(node);
  return node;
}

const finite = (value) => typeof value === "number" && Number.isFinite(value);

/** Milliseconds (UTC midnight) of a `YYYY-MM-DD` day, or NaN. */
function dayOf(text) {
  const m = typeof text === "string" && /^(\d{4})-(\d\d)-(\d\d)$/.exec(text);
  return m ? Date.UTC(+m[1], m[2] - 1, +m[3]) : NaN;
}

/** A day's colour step: none, under 5 km, under 10 km, under 20 km, 20 km and more (as the SVG card). */
const level = (metres) => (!(metres > 0) ? 0 : metres < 5000 ? 1 : metres < 10000 ? 2 : metres < 20000 ? 3 : 4);

class RunningYearElement extends HTMLElement {
  static observedAttributes = ["src", "units", "goal", "locale"];

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function" && "replaceSync" in CSSStyleSheet.prototype) {
      // A constructed sheet also works under a page's strict Content-Security-Policy.
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } else {
      make("style", "", root).textContent = CSS;
    }
    const card = (this._card = make("article", "card", root));
    card.setAttribute("aria-label", "Running year");
    const body = make("div", "body", card);
    const top = make("p", "top", body);
    make("span", "kicker", top).textContent = "Running year";
    this._year = make("span", "year", top);
    this._stale = make("span", "stale", top);
    this._stale.textContent = "May be out of date";
    const stats = make("dl", "stats", body);
    this._stats = {};
    for (const [key, label] of [["distance", "Distance"], ["runs", "Runs"], ["time", "Moving time"], ["streak", "Current streak"]]) {
      const group = make("div", "", stats);
      make("dt", "", group).textContent = label;
      this._stats[key] = make("dd", key, group);
    }
    this._months = make("div", "cols months", body);
    this._months.setAttribute("aria-hidden", "true");
    const map = (this._map = make("div", "map", body));
    map.setAttribute("role", "grid");
    map.addEventListener("keydown", (event) => this._key(event));
    map.addEventListener("focusin", (event) => this._show(event.target));
    map.addEventListener("mouseover", (event) => this._show(event.target));
    map.addEventListener("mouseleave", () => this._show(null));
    map.addEventListener("focusout", () => this._show(null));
    const line = make("div", "line", body);
    this._readout = make("p", "readout", line);
    const legend = make("div", "legend", line);
    legend.setAttribute("aria-hidden", "true");
    make("span", "", legend).textContent = "Less";
    for (let i = 0; i < 5; i++) make("i", `l${i}`, legend);
    make("span", "", legend).textContent = "More";
    this._weeks = make("div", "cols weeks", body);
    this._weeks.setAttribute("role", "img");
    const foot = make("div", "foot", body);
    this._projection = make("p", "projection", foot);
    const bar = (this._bar = make("div", "bar", foot));
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-label", "Yearly goal");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    this._fill = make("div", "fill", bar);
    this._goal = make("p", "goal", foot);
    this._message = make("p", "message", card);
    this._message.setAttribute("role", "status");
    this._data = null;
    this._loaded = null;
    this._cells = [];
    this._state("loading");
  }

  connectedCallback() {
    if (this._loaded !== this.getAttribute("src")) this._load();
  }

  disconnectedCallback() {
    this._abort?.abort();
    this._abort = null;
    this._loaded = null;
  }

  attributeChangedCallback(name) {
    if (name === "src") {
      if (this.isConnected) this._load();
    } else if (this._data) {
      this._render();
    }
  }

  get _locale() {
    const wanted = this.getAttribute("locale") || this.closest("[lang]")?.lang || undefined;
    try {
      return wanted ? Intl.getCanonicalLocales(wanted)[0] : undefined;
    } catch {
      return undefined;
    }
  }

  _state(state, message) {
    this._card.dataset.state = state;
    this._card.setAttribute("aria-busy", String(state === "loading"));
    this._message.hidden = state === "ready";
    this._message.textContent = state === "ready" ? "" : MESSAGES[message || state] || MESSAGES.other;
  }

  async _load() {
    const src = this.getAttribute("src");
    this._loaded = src;
    this._abort?.abort();
    this._abort = null;
    this._data = null;
    if (!src) return this._state("error", "no_src");
    const abort = (this._abort = new AbortController());
    const timer = setTimeout(() => abort.abort(), 30000);
    this._state("loading");
    let response;
    let data = null;
    try {
      response = await fetch(new URL(src, document.baseURI), { credentials: "omit", signal: abort.signal });
      data = await response.json().catch(() => null);
    } catch {
      response = null;
    } finally {
      clearTimeout(timer);
    }
    // A newer src (or disconnection) took over: this answer is not wanted any more.
    if (this._abort !== abort) return;
    if (!response) return this._state("error", "network");
    if (!response.ok) {
      const code = data && typeof data.error === "string" ? data.error : "";
      const known = Object.hasOwn(MESSAGES, code) && code !== "loading" ? code : response.status === 502 ? "strava_unavailable" : "other";
      return this._state("error", known);
    }
    const t = data?.totals;
    if (!data || !Number.isInteger(data.year) || data.year < 1000 || data.year > 9999 || !t || !finite(t.distance) || !Array.isArray(data.days) || !Array.isArray(data.weeks)) {
      return this._state("error", "other");
    }
    this._data = data;
    this._render();
  }

  /** Shows `cell`'s day under the map (the longest run when none). */
  _show(cell) {
    const day = cell?.closest?.(".d")?.textContent;
    this._readout.textContent = day || this._rest;
  }

  _key(event) {
    const at = this._cells.indexOf(this._map.querySelector(".d[tabindex='0']"));
    const last = this._cells.length - 1;
    const step = { ArrowUp: -1, ArrowDown: 1, ArrowLeft: -7, ArrowRight: 7 }[event.key];
    const to = event.key === "Home" ? 0 : event.key === "End" ? this._end : step ? Math.min(last, Math.max(0, at + step)) : -1;
    if (to < 0 || at < 0) return;
    event.preventDefault();
    this._focus(to, true);
  }

  _focus(index, move) {
    for (const cell of this._cells) cell.tabIndex = -1;
    const cell = this._cells[index];
    if (!cell) return;
    cell.tabIndex = 0;
    if (move) cell.focus();
  }

  _render() {
    const data = this._data;
    const locale = this._locale;
    const imperial = this.getAttribute("units") === "imperial";
    const unitLength = imperial ? MILE : 1000;
    const number = (value, options) => new Intl.NumberFormat(locale, options).format(value);
    const formats = [0, 1].map((digits) => new Intl.NumberFormat(locale, { style: "unit", unit: imperial ? "mile" : "kilometer", maximumFractionDigits: digits, minimumFractionDigits: digits }));
    const distance = (metres, digits = 0) => formats[digits].format((finite(metres) ? metres : 0) / unitLength);
    const dates = (options) => new Intl.DateTimeFormat(locale, { ...options, timeZone: "UTC" });
    const date = (ms, options) => (Number.isFinite(ms) ? dates(options).format(ms) : "");
    const short = { month: "short", day: "numeric" };
    const days = (n) => `${number(n)} ${n === 1 ? "day" : "days"}`;
    const weeks = (n) => `${number(n)} ${n === 1 ? "week" : "weeks"}`;

    const year = data.year;
    const first = Date.UTC(year, 0, 1);
    const length = Math.round((Date.UTC(year + 1, 0, 1) - first) / DAY);
    const offset = (new Date(first).getUTCDay() + 6) % 7;
    const columns = Math.ceil((offset + length) / 7);
    const totals = data.totals;
    const streak = data.streak || {};
    this._year.textContent = String(year);
    this._stale.hidden = data.stale !== true;
    this._stats.distance.textContent = distance(totals.distance);
    this._stats.runs.textContent = number(finite(totals.count) ? totals.count : 0);
    this._stats.time.textContent = number(Math.floor((finite(totals.moving_time) ? totals.moving_time : 0) / 3600), { style: "unit", unit: "hour", unitDisplay: "short" });
    this._stats.streak.textContent = days(finite(streak.current_days) ? streak.current_days : 0);

    // "Today" is the athlete's: within the answer's last week (which holds it), this browser's day.
    const lastWeek = dayOf(data.weeks.at(-1)?.start);
    const now = new Date();
    const browserDay = Date.UTC(now.getFullYear(), now.getMonth(), now.getDate());
    const today = Number.isNaN(lastWeek) ? first - DAY : Math.min(first + (length - 1) * DAY, Math.max(lastWeek, Math.min(lastWeek + 6 * DAY, browserDay)));
    const known = Number.isNaN(lastWeek) ? first - DAY : Math.min(first + (length - 1) * DAY, lastWeek + 6 * DAY);
    this._end = Math.max(0, Math.round((today - first) / DAY));

    const byDay = new Map();
    for (const d of data.days) {
      const ms = dayOf(d?.date);
      if (!Number.isNaN(ms) && finite(d.distance)) byDay.set(ms, d);
    }
    const cellDate = dates({ weekday: "short", ...short });
    const monthName = dates({ month: "short" });
    const rows = [];
    for (let r = 0; r < 7; r++) {
      const row = make("div", "cols");
      row.setAttribute("role", "row");
      rows.push(row);
    }
    // A day that had focus keeps it through a re-render (units, goal, locale).
    const focusedDay = this._cells.indexOf(this.shadowRoot.activeElement);
    this._months.replaceChildren();
    this._cells = [];
    for (let i = 0; i < length; i++) {
      const ms = first + i * DAY;
      const at = offset + i;
      const entry = byDay.get(ms);
      const cell = make("div", `d l${level(entry?.distance)}${ms > known ? " fu" : ""}`, rows[at % 7]);
      cell.setAttribute("role", "gridcell");
      cell.tabIndex = -1;
      if (cell.previousSibling === null) cell.style.gridColumnStart = String(Math.floor(at / 7) + 1);
      const runs = entry?.count > 1 ? ` (${number(entry.count)} runs)` : "";
      make("span", "sr", cell).textContent = `${cellDate.format(ms)}: ${entry ? distance(entry.distance, 1) + runs : ms > known ? "not yet" : "no run"}`;
      this._cells.push(cell);
      if (new Date(ms).getUTCDate() === 1) {
        const month = make("span", "", this._months);
        month.textContent = monthName.format(ms);
        month.style.gridColumnStart = String(Math.floor(at / 7) + 1);
      }
    }
    this._map.replaceChildren(...rows);
    this._map.setAttribute("aria-label", `Days of ${year}`);
    for (const el of [this._months, this._weeks, ...rows]) el.style.setProperty("--cols", String(columns));
    if (focusedDay >= 0) this._focus(focusedDay, true);
    else this._focus(this._end, false);

    const longest = data.longest_run;
    this._rest =
      longest && typeof longest.name === "string" && finite(longest.distance)
        ? `Longest run: ${distance(longest.distance, 1)}, ${date(dayOf(longest.date) || first, short)} · ${longest.name}`
        : "No runs yet this year";
    this._rest += ` · ${weeks(finite(streak.current_weeks) ? streak.current_weeks : 0)} in a row`;
    this._show(null);

    // Weekly bars, under their weeks' columns.
    const list = data.weeks.filter((w) => finite(w?.distance));
    const most = Math.max(0, ...list.map((w) => w.distance));
    this._weeks.replaceChildren();
    let best = null;
    for (const w of list) {
      const bar = make("i", "", this._weeks);
      bar.style.height = `${most > 0 ? (w.distance / most) * 100 : 0}%`;
      if (!best || w.distance > best.distance) best = w;
    }
    this._weeks.setAttribute(
      "aria-label",
      best && best.distance > 0
        ? `Weekly distance: best week ${distance(best.distance, 1)} (from ${date(dayOf(best.start), short)}), this week ${distance(list.at(-1).distance, 1)}`
        : "Weekly distance: no runs yet",
    );

    // Progress and the linear projection to 31 December.
    const elapsed = this._end + 1;
    const total = totals.distance;
    const complete = Number.isNaN(lastWeek) || elapsed >= length;
    const projected = complete ? total : (total / elapsed) * length;
    const dec31 = date(Date.UTC(year, 11, 31), short);
    this._projection.textContent = complete ? `${year}: ${distance(total)}` : `On pace for ${distance(projected)} by ${dec31}`;
    const goal = Number(this.getAttribute("goal"));
    const hasGoal = Number.isFinite(goal) && goal > 0;
    if (hasGoal) {
      const share = total / unitLength / goal;
      const percent = number(share, { style: "percent", maximumFractionDigits: 0 });
      const ahead = projected / unitLength >= goal;
      this._goal.textContent = `${distance(total)} of ${distance(goal * unitLength)} · ${percent}${complete ? "" : ahead ? " · on track" : " · behind pace"}`;
      const shown = Math.min(100, Math.round(share * 100));
      this._bar.setAttribute("aria-valuenow", String(shown));
      this._bar.setAttribute("aria-valuetext", `${percent} of the yearly goal`);
      this._fill.style.width = `${shown}%`;
    } else {
      this._goal.textContent = "";
    }
    // The bar's place is kept without a goal, so setting one moves nothing.
    this._bar.classList.toggle("off", !hasGoal);
    this._state("ready");
  }
}

if (!customElements.get("running-year")) customElements.define("running-year", RunningYearElement);
