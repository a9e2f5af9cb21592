// <latest-run>: a blog owner's latest public Strava run as a card. One ES module, no dependencies,
// no build step. Embed (DESIGN §7):
//   <script type="module" src="https://APP/api/widget/latest-run.js"></script>
//   <latest-run src="https://APP/api/GetLatestRun"></latest-run>
// Attributes: src (required), units (metric | imperial), theme (auto | light | dark), goal (yearly
// distance goal in the chosen unit), locale (default: the page's). Colours, radius, font and size
// follow CSS custom properties (--latest-run-bg, -fg, -muted, -accent, -link, -track, -border,
// -radius, -font, -height, -max-width). Every text is set with textContent, never as HTML; links
// and photos are used only over https.

const DARK = "--_bg:var(--latest-run-bg,#17191e);--_fg:var(--latest-run-fg,#f1f2f4);--_muted:var(--latest-run-muted,#b4b8c0);--_link:var(--latest-run-link,#fc5200);--_track:var(--latest-run-track,#3a3d45);--_border:var(--latest-run-border,#33363d);color-scheme:dark";

const CSS = `
:host{display:block;max-width:var(--latest-run-max-width,28rem);container-type:inline-size;font-family:var(--latest-run-font,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif);
--_bg:var(--latest-run-bg,#fff);--_fg:var(--latest-run-fg,#1b1c20);--_muted:var(--latest-run-muted,#55575e);--_link:var(--latest-run-link,#1b1c20);--_accent:var(--latest-run-accent,#fc5200);--_track:var(--latest-run-track,#e4e5e9);--_border:var(--latest-run-border,#d7d8dd);color-scheme:light}
:host([hidden]){display:none}
@media (prefers-color-scheme:dark){:host(:not([theme=light])){${DARK}}}
:host([theme=dark]){${DARK}}
[hidden]{display:none!important}
.off{visibility:hidden}
.sketch{position:absolute;top:2.75rem;right:1.15rem;width:4.5rem;height:4.5rem;fill:none;stroke:var(--_accent);stroke-width:3;stroke-linecap:round;stroke-linejoin:round}
.sketch path{vector-effect:non-scaling-stroke}
.has-shape .name{margin-right:5.5rem}
.card{position:relative;box-sizing:border-box;height:var(--latest-run-height,15rem);overflow:hidden;border:1px solid var(--_border);border-radius:var(--latest-run-radius,14px);background:var(--_bg);color:var(--_fg);line-height:1.35;font-size:1rem}
.photo{position:absolute;inset:0;width:100%;height:100%;object-fit:cover}
.scrim{position:absolute;inset:0;background:linear-gradient(rgba(0,0,0,.56),rgba(0,0,0,.8))}
.has-photo{--_fg:#fff;--_muted:#eceef2;--_link:#fff;--_track:rgba(255,255,255,.4);border-color:transparent;background:#2b2d33}
.body{position:relative;box-sizing:border-box;height:100%;padding:1rem 1.15rem;display:flex;flex-direction:column;gap:.55rem}
.body>*{flex-shrink:0}
p,dl,dd{margin:0}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:.2rem .6rem;font-size:.8rem;color:var(--_muted)}
.kicker{font-weight:700;text-transform:uppercase;letter-spacing:.06em}
.stale{border:1px solid currentColor;border-radius:99px;padding:0 .5em}
.name{font-size:1.25rem;font-weight:700;line-height:1.25;overflow-wrap:anywhere;display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:2;overflow:hidden}
.stats{margin-top:auto;display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:.5rem .75rem}
@container (max-width:24rem){.stats{grid-template-columns:repeat(2,minmax(0,1fr))}.name{-webkit-line-clamp:1}.kicker{display:none}}
dt{font-size:.72rem;text-transform:uppercase;letter-spacing:.05em;color:var(--_muted)}
dd{font-size:1.05rem;font-weight:650;font-variant-numeric:tabular-nums;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.foot{font-size:.85rem}
.bar{height:.45rem;margin-top:.35rem;border-radius:99px;background:var(--_track);overflow:hidden}
.fill{height:100%;border-radius:inherit;background:var(--_accent);transition:width .6s ease-out}
a{margin-left:auto;font-size:.85rem;font-weight:700;color:var(--_link);text-decoration:underline 2px var(--_accent);text-underline-offset:3px;border-radius:2px}
a:focus-visible{outline:2px solid var(--_accent);outline-offset:3px}
.message{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;padding:1.5rem;text-align:center;color:var(--_fg)}
.card:not([data-state=ready]) .body{visibility:hidden}
.card[data-state=loading]{background:linear-gradient(100deg,var(--_bg) 30%,var(--_track) 50%,var(--_bg) 70%) 0 0/300% 100%;animation:shimmer 1.6s linear infinite}
.card[data-state=loading] .message{color:var(--_muted)}
@keyframes shimmer{to{background-position:-150% 0}}
@media (prefers-reduced-motion:reduce){.card{animation:none!important}.fill{transition:none}}
`;

const MESSAGES = {
  loading: "Loading the latest run…",
  not_configured: "This runner has not connected Strava yet.",
  strava_unavailable: "Strava cannot be reached right now. Please try again later.",
  strava_authorization: "The connection to Strava needs to be renewed by the site owner.",
  no_public_run: "No public run to show yet.",
  network: "The latest run could not be loaded. Check your connection and try again.",
  no_src: "This widget has no src attribute to load the run from.",
  other: "The latest run cannot be shown right now. Please try again later.",
};

const SVG = "http://www.w3.org/2000/svg";
const KM = 1000;
const MILE = 1609.344;
const FOOT = 0.3048;

/** `document.createElement` with a class, appended to `parent`. */
function make(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.append(node);
  return node;
}

/** The URL as a string when it is absolute https, else null. */
function httpsUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

const finite = (value) => typeof value === "number" && Number.isFinite(value);

/** 1:02:03 or 47:31. */
function clock(totalSeconds) {
  const s = Math.max(0, Math.round(totalSeconds));
  const two = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

class LatestRunElement extends HTMLElement {
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
    card.setAttribute("aria-label", "Latest run");
    const photo = (this._photo = make("img", "photo", card));
    photo.decoding = "async";
    photo.referrerPolicy = "no-referrer";
    photo.hidden = true;
    // A photo that cannot be loaded leaves the plain card of the theme, and is not tried again
    // on the next render (units, goal, locale): it is remembered by its URL.
    photo.addEventListener("error", () => {
      this._failedPhoto = photo.getAttribute("src");
      this._showPhoto(false);
    });
    this._scrim = make("div", "scrim", card);
    this._scrim.hidden = true;
    const body = make("div", "body", card);
    const top = make("p", "top", body);
    make("span", "kicker", top).textContent = "Latest run";
    this._date = make("time", "date", top);
    this._stale = make("span", "stale", top);
    this._stale.textContent = "May be out of date";
    const link = (this._link = make("a", "", top));
    link.textContent = "View on Strava";
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    this._name = make("p", "name", body);
    // The route sketch: path data in a 0–100 box, drawn only when it is nothing but path data.
    const sketch = (this._sketch = document.createElementNS(SVG, "svg"));
    sketch.setAttribute("class", "sketch");
    sketch.setAttribute("viewBox", "-3 -3 106 106");
    sketch.setAttribute("aria-hidden", "true");
    this._path = document.createElementNS(SVG, "path");
    sketch.append(this._path);
    body.append(sketch);
    const stats = make("dl", "stats", body);
    this._stats = {};
    for (const [key, label] of [["distance", "Distance"], ["time", "Moving time"], ["pace", "Pace"], ["elevation", "Elevation"]]) {
      const group = make("div", "", stats);
      make("dt", "", group).textContent = label;
      this._stats[key] = make("dd", "", group);
    }
    const foot = make("div", "foot", body);
    this._ytd = make("p", "ytd", foot);
    const bar = (this._bar = make("div", "bar", foot));
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-label", "Yearly goal");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    this._fill = make("div", "fill", bar);
    this._message = make("p", "message", card);
    this._message.setAttribute("role", "status");
    this._run = null;
    this._loaded = null;
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
    } else if (this._run) {
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
    this._run = null;
    if (!src) return this._state("error", "no_src");
    const abort = (this._abort = new AbortController());
    // A cold answer takes up to 25 s; past 30 s the reader is told instead of waiting forever.
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
      return this._state(response.status === 404 && code === "no_public_run" ? "empty" : "error", known);
    }
    if (!data || typeof data.name !== "string" || !finite(data.distance) || !finite(data.moving_time)) {
      return this._state("error", "other");
    }
    this._run = data;
    this._render();
  }

  _showPhoto(on) {
    this._photo.hidden = this._scrim.hidden = !on;
    this._card.classList.toggle("has-photo", on);
  }

  _render() {
    const run = this._run;
    const locale = this._locale;
    const imperial = this.getAttribute("units") === "imperial";
    const unitLength = imperial ? MILE : KM;
    const number = (value, options) => new Intl.NumberFormat(locale, options).format(value);
    const distance = (metres, digits) =>
      number(metres / unitLength, { style: "unit", unit: imperial ? "mile" : "kilometer", maximumFractionDigits: digits, minimumFractionDigits: digits });

    this._name.textContent = run.name;
    const url = httpsUrl(run.photoUrl);
    const photo = url && url !== this._failedPhoto ? url : null;
    if (photo) {
      if (this._photo.getAttribute("src") !== photo) this._photo.src = photo;
      this._photo.alt = `Photo from the run “${run.name}”`;
    }
    this._showPhoto(Boolean(photo));

    // start_date_local is the athlete's wall clock with a misleading Z: show it as UTC to keep it.
    const local = typeof run.start_date_local === "string" ? new Date(run.start_date_local) : null;
    const start = local && !Number.isNaN(local.getTime()) ? local : new Date(run.start_date);
    if (!Number.isNaN(start.getTime())) {
      this._date.dateTime = start.toISOString().slice(0, 10);
      this._date.textContent = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeZone: local ? "UTC" : undefined }).format(start);
    } else {
      this._date.textContent = "";
    }
    this._stale.hidden = run.stale !== true;
    const shape = typeof run.route_shape === "string" && /^M[\d. ML]+$/.test(run.route_shape) ? run.route_shape : null;
    if (shape) this._path.setAttribute("d", shape);
    this._sketch.toggleAttribute("hidden", !shape);
    this._card.classList.toggle("has-shape", Boolean(shape));

    this._stats.distance.textContent = distance(run.distance, 2);
    this._stats.time.textContent = clock(run.moving_time);
    const pace = finite(run.pace_seconds_per_km) && run.pace_seconds_per_km > 0 ? run.pace_seconds_per_km : null;
    this._stats.pace.textContent = pace ? `${clock((pace * unitLength) / KM)} /${imperial ? "mi" : "km"}` : "–";
    const climb = run.total_elevation_gain;
    this._stats.elevation.textContent = finite(climb)
      ? number(imperial ? climb / FOOT : climb, { style: "unit", unit: imperial ? "foot" : "meter", maximumFractionDigits: 0 })
      : "–";

    const ytd = finite(run.year_to_date_run_total_distance) ? run.year_to_date_run_total_distance : 0;
    const goal = Number(this.getAttribute("goal"));
    const hasGoal = Number.isFinite(goal) && goal > 0;
    if (hasGoal) {
      const share = Math.min(1, ytd / unitLength / goal);
      const percent = number(share, { style: "percent", maximumFractionDigits: 0 });
      this._ytd.textContent = `${distance(ytd, 0)} of ${distance(goal * unitLength, 0)} this year · ${percent}`;
      this._bar.setAttribute("aria-valuenow", String(Math.round(share * 100)));
      this._bar.setAttribute("aria-valuetext", `${percent} of the yearly goal`);
      this._fill.style.width = `${share * 100}%`;
    } else {
      this._ytd.textContent = `${distance(ytd, 0)} this year`;
    }
    // The bar's place is kept without a goal, so setting one moves nothing.
    this._bar.classList.toggle("off", !hasGoal);

    const link = httpsUrl(run.strava_url) || (Number.isSafeInteger(run.id) ? `https://www.strava.com/activities/${run.id}` : null);
    if (link) this._link.href = link;
    this._link.hidden = !link;
    this._state("ready");
  }
}

if (!customElements.get("latest-run")) customElements.define("latest-run", LatestRunElement);
