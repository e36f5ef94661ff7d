/* Beliefscope frame player: one step cursor for frames and plots, moved in the browser.
 *
 * Every seek ends in the slider's value (set through dash_clientside.set_props), and `show`
 * draws that step: frame URLs, step label, the cursor shape of every linked graph, and the
 * URL's `t` (history.replaceState, so reloading the page keeps the step). Play, speed, hover
 * scrubbing and the keyboard live here; the server is never asked to scrub.
 */
(function () {
  "use strict";
  const SPEEDS = [0.5, 1, 2, 4];
  const BASE_FPS = 12;
  const state = {}; // prefix -> {t, playing, timer, speed, hover}

  function root(prefix) {
    return document.getElementById(prefix + "-player");
  }
  function st(prefix) {
    if (!state[prefix]) state[prefix] = { t: null, playing: false, timer: null, speed: 1, hover: true };
    return state[prefix];
  }
  function clamp(prefix, t) {
    const el = root(prefix);
    const last = Math.max(parseInt(el ? el.dataset.length : "1", 10) - 1, 0);
    return Math.min(Math.max(Math.round(t), 0), last);
  }
  function graphDiv(id) {
    const host = document.getElementById(id);
    return host ? host.querySelector(".js-plotly-plot") : null;
  }
  function graphsOf(prefix) {
    const el = root(prefix);
    return el && el.dataset.graphs ? el.dataset.graphs.split(",").filter(Boolean) : [];
  }

  function moveCursor(gd, t) {
    if (!gd || !gd.layout || !window.Plotly) return;
    const shapes = gd.layout.shapes || [];
    const i = shapes.findIndex((s) => s.name === "cursor");
    if (i < 0) return;
    if (shapes[i].x0 === t && shapes[i].visible !== false) return;
    const update = {};
    update["shapes[" + i + "].x0"] = t;
    update["shapes[" + i + "].x1"] = t;
    update["shapes[" + i + "].visible"] = true;
    window.Plotly.relayout(gd, update);
  }

  let urlTimer = null;
  function writeUrl(t) {
    clearTimeout(urlTimer);
    urlTimer = setTimeout(function () {
      const url = new URL(window.location.href);
      if (url.searchParams.get("t") === String(t)) return;
      url.searchParams.set("t", String(t));
      window.history.replaceState(window.history.state, "", url.toString());
    }, 150);
  }

  function draw(prefix, t) {
    const el = root(prefix);
    if (!el) return;
    const s = st(prefix);
    s.t = t;
    el.dataset.t = String(t);
    el.querySelectorAll("img.bs-frame").forEach(function (img) {
      const url = img.dataset.src.replace("{t}", String(t));
      if (img.getAttribute("src") !== url) {
        img.dataset.loading = "1";
        img.setAttribute("src", url);
      }
    });
    const label = el.querySelector(".bs-step");
    if (label) label.textContent = String(t);
    graphsOf(prefix).forEach((id) => moveCursor(graphDiv(id), t));
    writeUrl(t);
    if (s.playing) preload(prefix, t);
  }

  function preload(prefix, t) {
    const el = root(prefix);
    el.querySelectorAll("img.bs-frame").forEach(function (img) {
      for (let k = 1; k <= 3; k++) {
        new Image().src = img.dataset.src.replace("{t}", String(clamp(prefix, t + k)));
      }
    });
  }

  function seek(prefix, t) {
    t = clamp(prefix, t);
    window.dash_clientside.set_props(prefix + "-slider", { value: t });
    draw(prefix, t); // draw now; the slider's callback redraws the same step as a no-op
  }

  function framesLoaded(prefix) {
    const el = root(prefix);
    return Array.from(el.querySelectorAll("img.bs-frame")).every((img) => img.complete && img.dataset.loading !== "1");
  }

  function tick(prefix) {
    const s = st(prefix);
    if (!s.playing) return;
    const el = root(prefix);
    if (!el) return stop(prefix);
    const last = parseInt(el.dataset.length, 10) - 1;
    if (framesLoaded(prefix)) {
      if (s.t >= last) return stop(prefix);
      seek(prefix, s.t + 1);
    }
    s.timer = setTimeout(() => tick(prefix), 1000 / (BASE_FPS * s.speed));
  }
  function play(prefix) {
    const s = st(prefix);
    const el = root(prefix);
    if (s.t >= parseInt(el.dataset.length, 10) - 1) seek(prefix, 0);
    s.playing = true;
    el.classList.add("bs-playing");
    const btn = el.querySelector('[data-bs-act="play"]');
    if (btn) btn.textContent = "❚❚";
    tick(prefix);
  }
  function stop(prefix) {
    const s = st(prefix);
    s.playing = false;
    clearTimeout(s.timer);
    const el = root(prefix);
    if (!el) return;
    el.classList.remove("bs-playing");
    const btn = el.querySelector('[data-bs-act="play"]');
    if (btn) btn.textContent = "▶";
  }

  function act(prefix, action, shift) {
    const s = st(prefix);
    const step = shift ? 10 : 1;
    const last = parseInt(root(prefix).dataset.length, 10) - 1;
    if (action === "play") return s.playing ? stop(prefix) : play(prefix);
    if (action === "speed") {
      s.speed = SPEEDS[(SPEEDS.indexOf(s.speed) + 1) % SPEEDS.length];
      const btn = root(prefix).querySelector('[data-bs-act="speed"]');
      if (btn) btn.textContent = s.speed + "×";
      return;
    }
    if (action === "hover") {
      s.hover = !s.hover;
      const btn = root(prefix).querySelector('[data-bs-act="hover"]');
      if (btn) btn.classList.toggle("bs-off", !s.hover);
      return;
    }
    stop(prefix);
    const t = s.t === null ? 0 : s.t;
    const to = { first: 0, last: last, prev: t - step, next: t + step }[action];
    if (to !== undefined) seek(prefix, to);
  }

  document.addEventListener("click", function (ev) {
    const btn = ev.target.closest("[data-bs-act]");
    if (!btn) return;
    const el = btn.closest(".bs-player");
    if (el) act(el.dataset.prefix, btn.dataset.bsAct, ev.shiftKey);
  });

  document.addEventListener(
    "load",
    function (ev) {
      if (ev.target.classList && ev.target.classList.contains("bs-frame")) delete ev.target.dataset.loading;
    },
    true
  );
  document.addEventListener(
    "error",
    function (ev) {
      if (ev.target.classList && ev.target.classList.contains("bs-frame")) {
        delete ev.target.dataset.loading;
        ev.target.classList.add("bs-frame-missing");
      }
    },
    true
  );

  const KEYS = { ArrowLeft: "prev", ArrowRight: "next", Home: "first", End: "last", " ": "play" };
  document.addEventListener("keydown", function (ev) {
    const tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || ev.target.isContentEditable) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const action = KEYS[ev.key];
    const el = document.querySelector(".bs-player");
    if (!action || !el) return;
    ev.preventDefault();
    act(el.dataset.prefix, action, ev.shiftKey);
  });

  function waitSettled(prefix, t, timeoutMs) {
    // Resolves when every frame shows step t and every linked cursor sits at t (tests, bench).
    const start = performance.now();
    return new Promise(function (resolve, reject) {
      (function check() {
        const el = root(prefix);
        const frames = el ? Array.from(el.querySelectorAll("img.bs-frame")) : [];
        const want = (img) => img.dataset.src.replace("{t}", String(t));
        const framesOk = frames.length > 0 && frames.every((img) => img.getAttribute("src") === want(img) && img.complete && img.naturalWidth > 0 && img.dataset.loading !== "1");
        const cursorsOk = graphsOf(prefix).every(function (id) {
          const gd = graphDiv(id);
          const c = gd && gd.layout && (gd.layout.shapes || []).find((s) => s.name === "cursor");
          return c && c.x0 === t && c.visible !== false;
        });
        if (framesOk && cursorsOk) return resolve(performance.now() - start);
        if (performance.now() - start > (timeoutMs || 5000)) return reject(new Error("player did not settle on step " + t));
        requestAnimationFrame(check);
      })();
    });
  }

  window.bsPlayer = { seek: seek, act: act, state: state, waitSettled: waitSettled };

  // extend the namespace object in place: Dash's renderer and its inline scripts share it
  window.dash_clientside = window.dash_clientside || {};
  Object.assign(window.dash_clientside, {
    bsPlayer: {
      show: function (value, prefixId) {
        const prefix = prefixId.replace(/-player$/, "");
        if (value === null || value === undefined) return window.dash_clientside.no_update;
        const t = clamp(prefix, value);
        if (st(prefix).t !== t) draw(prefix, t);
        return t;
      },
      fromGraph: function (click, hover, prefixId) {
        const prefix = prefixId.replace(/-player$/, "");
        const trig = (window.dash_clientside.callback_context.triggered || [])[0];
        const isHover = trig && trig.prop_id.endsWith(".hoverData");
        if (isHover && (!st(prefix).hover || st(prefix).playing)) return window.dash_clientside.no_update;
        const data = isHover ? hover : click;
        const point = data && data.points && data.points[0];
        if (!point || point.x === undefined) return window.dash_clientside.no_update;
        if (!isHover) stop(prefix);
        const t = clamp(prefix, point.x);
        if (t === st(prefix).t) return window.dash_clientside.no_update;
        draw(prefix, t);
        return t;
      },
      zoom: function (relayout) {
        // Only axis changes reach the server; the cursor's own relayouts are ignored here.
        if (!relayout) return window.dash_clientside.no_update;
        if (relayout["xaxis.autorange"]) return { x0: null, x1: null };
        let r0 = relayout["xaxis.range[0]"];
        let r1 = relayout["xaxis.range[1]"];
        if (relayout["xaxis.range"]) [r0, r1] = relayout["xaxis.range"];
        if (r0 === undefined || r1 === undefined) return window.dash_clientside.no_update;
        return { x0: r0, x1: r1 };
      },
      bind: function (_figure, prefixId) {
        const prefix = prefixId.replace(/-player$/, "");
        // After any (re)plot, put the cursor back on the player's step (a new figure from the
        // server carries the step it knew about).
        let tries = 0;
        (function attach() {
          const missing = graphsOf(prefix).some((id) => !graphDiv(id) || !graphDiv(id).on);
          if (missing && tries++ < 40) return setTimeout(attach, 50);
          graphsOf(prefix).forEach(function (id) {
            const gd = graphDiv(id);
            if (!gd || !gd.on || gd.dataset.bsBound) return;
            gd.dataset.bsBound = "1";
            gd.on("plotly_afterplot", function () {
              const s = st(prefix);
              if (s.t !== null) moveCursor(gd, s.t);
            });
          });
          const s = st(prefix);
        })();
        return window.dash_clientside.no_update;
      },
    },
  });
})();
