/* Beliefscope frame player: one step cursor for panels and plots, moved in the browser.
 *
 * The player's config (`data-bs-config` on `#<prefix>-player`, written by
 * dashboard/components/player.py) lists its panels: "strip" panels are one column of a strip
 * image holding a window of steps (fetched once per window, the next window prefetched), "step"
 * panels are one image per step (prefetched a few steps ahead; prefetches start once the step
 * itself is on screen). `draw` copies the step's cell of
 * each panel onto its canvas, moves the cursor element over every linked plot (no Plotly
 * redraw), updates the step label, the scrub bar, the caption line and the flag border, and
 * writes `t` into the URL (history.replaceState) and the `<prefix>-t` store, both debounced.
 * Play, speed, hover scrubbing, the keyboard and click-to-enlarge live here too.
 */
(function () {
  "use strict";
  const SPEEDS = [0.5, 1, 2, 4];
  const BASE_FPS = 12;
  const KEEP_STRIPS = 24; // a strip of 32 steps x 4 panels decodes to ~2 MB
  const KEEP_STEPS = 96;
  const REST_MS = 120; // the cursor rests this long before the windows around it are fetched
  const STATE_RANK = { confirmed: 3, open: 2, dismissed: 1 };
  const state = {}; // prefix -> {t, playing, timer, speed, hover, cfg, flags}

  // -- images: fetched once, decoded off the main thread, least recently used dropped ------
  function cache(limit) {
    const items = new Map();
    const get = function (url) {
      let item = items.get(url);
      if (item) {
        items.delete(url);
        items.set(url, item);
        return item;
      }
      const img = new Image();
      item = { img: img, ready: false, failed: false, waiters: [] };
      const done = function (failed) {
        item.ready = !failed;
        item.failed = failed;
        item.waiters.splice(0).forEach((f) => f());
      };
      img.onload = function () {
        (img.decode ? img.decode() : Promise.resolve()).then(
          () => done(false),
          () => done(false)
        );
      };
      img.onerror = () => done(true);
      img.src = url;
      items.set(url, item);
      while (items.size > limit) items.delete(items.keys().next().value);
      return item;
    };
    get.peek = (url) => items.get(url); // without fetching it
    return get;
  }
  const strips = cache(KEEP_STRIPS);
  const steps = cache(KEEP_STEPS);

  function root(prefix) {
    return document.getElementById(prefix + "-player");
  }
  function st(prefix) {
    if (!state[prefix]) state[prefix] = { t: null, playing: false, timer: null, speed: 1, hover: true, cfg: null, flags: [] };
    return state[prefix];
  }
  function config(prefix) {
    const s = st(prefix);
    const el = root(prefix);
    if (el && (!s.cfg || s.cfgOf !== el)) {
      s.cfg = JSON.parse(el.dataset.bsConfig || "{}");
      s.cfgOf = el;
    }
    return s.cfg;
  }
  function lastStep(prefix) {
    const el = root(prefix);
    return Math.max(parseInt(el ? el.dataset.length : "1", 10) - 1, 0);
  }
  function clamp(prefix, t) {
    return Math.min(Math.max(Math.round(t), 0), lastStep(prefix));
  }
  function graphDiv(id) {
    const host = document.getElementById(id);
    return host ? host.querySelector(".js-plotly-plot") : null;
  }
  function graphsOf(prefix) {
    const el = root(prefix);
    return el && el.dataset.graphs ? el.dataset.graphs.split(",").filter(Boolean) : [];
  }

  // -- panels -------------------------------------------------------------------------------
  function source(cfg, panel, t) {
    // The window holding step t for a strip panel, else the step's own image.
    if (panel.kind === "strip") {
      const t0 = Math.floor(t / cfg.window) * cfg.window;
      const rows = Math.min(cfg.window, cfg.length - t0);
      return { url: stripUrl(panel, t0, rows), row: t - t0, rows: rows, item: strips };
    }
    return { url: panel.src.replace("{t}", String(t)), row: 0, rows: 1, item: steps };
  }
  function stripUrl(panel, t0, n) {
    return panel.src.replace("{t0}", String(t0)).replace("{n}", String(n));
  }
  function alone(panel, t) {
    // Step t of a strip panel by itself: what a jump waits for while its window is not here.
    return { url: stripUrl(panel, t, 1), row: 0, rows: 1, item: steps };
  }

  function paint(prefix, i, t) {
    const el = root(prefix);
    const cfg = config(prefix);
    const canvas = el && el.querySelector('canvas[data-bs-panel="' + i + '"]');
    if (!canvas) return;
    const panel = cfg.panels[i];
    let src = source(cfg, panel, t);
    let entry = src.item.peek(src.url);
    if (panel.kind === "strip" && !(entry && (entry.ready || entry.failed))) {
      src = alone(panel, t); // the window comes as a prefetch once this step is drawn
    }
    entry = src.item(src.url);
    if (!entry.ready && !entry.failed) {
      canvas.dataset.loading = "1";
      entry.waiters.push(() => {
        if (st(prefix).t !== t) return;
        paint(prefix, i, t);
        if (drawnAt(prefix, t)) prefetch(prefix, t);
      });
      return;
    }
    if (entry.failed) {
      canvas.classList.add("bs-frame-missing");
    } else {
      const img = entry.img;
      const cols = panel.kind === "strip" ? panel.cols : 1;
      const w = img.naturalWidth / cols;
      const h = img.naturalHeight / src.rows;
      if (canvas.width !== w || canvas.height !== h) {
        canvas.width = w;
        canvas.height = h;
        canvas.style.aspectRatio = w + " / " + h;
      }
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, (panel.col || 0) * w, src.row * h, w, h, 0, 0, w, h);
      canvas.classList.remove("bs-frame-missing");
    }
    canvas.dataset.t = String(t);
    canvas.dataset.src = src.url;
    delete canvas.dataset.loading;
  }

  function prefetch(prefix, t) {
    // Steps ahead of a per-step panel now (cheap renders); the strip windows around t only once
    // the cursor has rested a moment (or plays): a run of jumps would queue windows it never
    // shows in front of the step it is waiting for.
    const cfg = config(prefix);
    const s = st(prefix);
    const last = lastStep(prefix);
    const ahead = s.playing ? 8 : 3;
    cfg.panels.forEach(function (panel) {
      if (panel.kind !== "strip") {
        for (let k = 1; k <= ahead; k++) if (t + k <= last) steps(source(cfg, panel, t + k).url);
      }
    });
    clearTimeout(s.windowTimer);
    const windows = function () {
      if (st(prefix).t !== t) return;
      cfg.panels.forEach(function (panel) {
        if (panel.kind !== "strip") return;
        [t, t + cfg.window, t - cfg.window].forEach(function (u) {
          if (u >= 0 && u <= last) strips(source(cfg, panel, u).url);
        });
      });
    };
    if (s.playing) windows();
    else s.windowTimer = setTimeout(windows, REST_MS);
  }

  // -- flags, caption line, cursor ------------------------------------------------------------
  function flagAt(spans, t) {
    let best = null;
    (spans || []).forEach(function (f) {
      if (f[0] <= t && t <= f[1] && (!best || STATE_RANK[f[2]] > STATE_RANK[best[2]])) best = f;
    });
    return best;
  }

  function valueAt(gd, name, t) {
    const trace = gd && (gd._fullData || []).find((d) => d.name === name && d.x && d.x.length);
    if (!trace) return null;
    const x = trace.x;
    let lo = 0;
    let hi = x.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (x[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    const y = trace.y[lo];
    return { value: y, exact: x[lo] === t };
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "NaN";
    return Math.abs(v) >= 100 ? v.toFixed(0) : Number(v).toPrecision(3);
  }

  function caption(prefix, t) {
    const el = root(prefix);
    const line = el.querySelector(".bs-readout");
    if (!line) return;
    const cfg = config(prefix);
    const s = st(prefix);
    const parts = ["step " + t];
    s.flags.forEach(function (spans, k) {
      const f = flagAt(spans, t);
      const side = s.flags.length > 1 ? String.fromCharCode(65 + k) + ": " : "";
      parts.push(side + (f ? "flag" + (f[3] ? " #" + f[3] : "") + " " + f[2] : "no flag"));
    });
    const gd = graphDiv(graphsOf(prefix)[0] || "");
    (cfg.readout || []).forEach(function (r) {
      const v = valueAt(gd, r[0], t);
      if (v) parts.push(r[1] + (v.exact ? " " : " ≈ ") + fmt(v.value));
    });
    line.textContent = parts.join(" · ");
  }

  function borders(prefix, t) {
    const el = root(prefix);
    const cfg = config(prefix);
    const s = st(prefix);
    el.querySelectorAll("canvas[data-bs-panel]").forEach(function (canvas) {
      const panel = cfg.panels[parseInt(canvas.dataset.bsPanel, 10)];
      const f = flagAt(s.flags[panel.flags || 0], t);
      canvas.dataset.flag = f ? f[2] : "";
    });
  }

  function placeCursor(gd, t) {
    if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis) return;
    const host = gd.parentElement;
    let line = host.querySelector(":scope > .bs-cursor");
    if (!line) {
      line = document.createElement("div");
      line.className = "bs-cursor";
      host.appendChild(line);
    }
    const fl = gd._fullLayout;
    const xa = fl.xaxis;
    const x = xa._offset + xa.l2p(t);
    const inside = x >= xa._offset - 0.5 && x <= xa._offset + xa._length + 0.5;
    line.style.left = gd.offsetLeft + x + "px";
    line.style.top = gd.offsetTop + fl._size.t + "px";
    line.style.height = fl._size.h + "px";
    line.style.display = inside ? "block" : "none";
    line.dataset.t = String(t);
  }

  // -- the step ------------------------------------------------------------------------------
  let urlTimer = null;
  function publish(prefix, t) {
    clearTimeout(urlTimer);
    urlTimer = setTimeout(function () {
      window.dash_clientside.set_props(prefix + "-t", { data: t });
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
    const cfg = config(prefix);
    s.t = t;
    el.dataset.t = String(t);
    cfg.panels.forEach((_p, i) => paint(prefix, i, t));
    const label = el.querySelector(".bs-step");
    if (label) label.textContent = String(t);
    const fill = el.querySelector(".bs-scrub-fill");
    if (fill) fill.style.width = (100 * t) / Math.max(lastStep(prefix), 1) + "%";
    borders(prefix, t);
    caption(prefix, t);
    graphsOf(prefix).forEach((id) => placeCursor(graphDiv(id), t));
    publish(prefix, t);
    // neighbours only once this step is on screen: on a far seek they would compete with it
    if (drawnAt(prefix, t)) prefetch(prefix, t);
  }

  function seek(prefix, t) {
    draw(prefix, clamp(prefix, t));
  }

  function drawnAt(prefix, t) {
    const el = root(prefix);
    const canvases = el ? Array.from(el.querySelectorAll("canvas[data-bs-panel]")) : [];
    return canvases.length > 0 && canvases.every((c) => c.dataset.t === String(t) && c.dataset.loading !== "1");
  }

  function settledAt(prefix, t) {
    const panelsOk = drawnAt(prefix, t);
    const cursorsOk = graphsOf(prefix).every(function (id) {
      const host = document.getElementById(id);
      const line = host && host.querySelector(".bs-cursor");
      return line && line.dataset.t === String(t);
    });
    return panelsOk && cursorsOk;
  }

  function unsettled(prefix, t) {
    // What keeps a step from being drawn, for the error of `waitSettled`.
    const el = root(prefix);
    if (!el) return "no player";
    const panels = Array.from(el.querySelectorAll("canvas[data-bs-panel]"))
      .filter((c) => c.dataset.t !== String(t) || c.dataset.loading === "1")
      .map((c) => "panel " + c.dataset.bsPanel + " at " + c.dataset.t + (c.dataset.loading ? " loading " + c.dataset.src : ""));
    const cursors = graphsOf(prefix)
      .filter(function (id) {
        const line = document.getElementById(id) && document.getElementById(id).querySelector(".bs-cursor");
        return !line || line.dataset.t !== String(t);
      })
      .map((id) => "cursor of " + id);
    return panels.concat(cursors).join("; ") || "settled";
  }

  function tick(prefix) {
    const s = st(prefix);
    if (!s.playing) return;
    if (!root(prefix)) return stop(prefix);
    if (settledAt(prefix, s.t)) {
      if (s.t >= lastStep(prefix)) return stop(prefix);
      seek(prefix, s.t + 1);
    }
    s.timer = setTimeout(() => tick(prefix), 1000 / (BASE_FPS * s.speed));
  }
  function play(prefix) {
    const s = st(prefix);
    if (s.t >= lastStep(prefix)) seek(prefix, 0);
    s.playing = true;
    const el = root(prefix);
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
    const to = { first: 0, last: lastStep(prefix), prev: t - step, next: t + step }[action];
    if (to !== undefined) seek(prefix, to);
  }

  // -- pointer and keyboard ------------------------------------------------------------------
  function closeEnlarged() {
    document.querySelectorAll(".bs-panel-big").forEach((f) => f.classList.remove("bs-panel-big"));
    document.body.classList.remove("bs-has-big");
  }

  document.addEventListener("click", function (ev) {
    const btn = ev.target.closest("[data-bs-act]");
    if (btn) {
      const el = btn.closest(".bs-player");
      if (el) act(el.dataset.prefix, btn.dataset.bsAct, ev.shiftKey);
      return;
    }
    const panel = ev.target.closest(".bs-panel");
    if (panel && panel.closest(".bs-player")) {
      const open = panel.classList.contains("bs-panel-big");
      closeEnlarged();
      if (!open) {
        if (!document.querySelector(".bs-backdrop")) {
          const shade = document.createElement("div");
          shade.className = "bs-backdrop";
          document.body.appendChild(shade);
        }
        panel.classList.add("bs-panel-big");
        document.body.classList.add("bs-has-big");
      }
      return;
    }
    if (ev.target.classList && ev.target.classList.contains("bs-backdrop")) closeEnlarged();
  });

  function scrubTo(bar, ev) {
    const el = bar.closest(".bs-player");
    const r = bar.getBoundingClientRect();
    const frac = Math.min(Math.max((ev.clientX - r.left) / Math.max(r.width, 1), 0), 1);
    stop(el.dataset.prefix);
    seek(el.dataset.prefix, frac * lastStep(el.dataset.prefix));
  }
  document.addEventListener("pointerdown", function (ev) {
    const bar = ev.target.closest(".bs-scrub");
    if (!bar) return;
    bar.setPointerCapture(ev.pointerId);
    scrubTo(bar, ev);
    const move = (e) => scrubTo(bar, e);
    const up = function () {
      bar.removeEventListener("pointermove", move);
      bar.removeEventListener("pointerup", up);
    };
    bar.addEventListener("pointermove", move);
    bar.addEventListener("pointerup", up);
  });

  const KEYS = { ArrowLeft: "prev", ArrowRight: "next", Home: "first", End: "last", " ": "play" };
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") return closeEnlarged();
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
    // Resolves when every panel shows step t and every linked cursor sits at t (tests, bench).
    const start = performance.now();
    return new Promise(function (resolve, reject) {
      (function check() {
        if (settledAt(prefix, t)) return resolve(performance.now() - start);
        if (performance.now() - start > (timeoutMs || 5000)) return reject(new Error("player did not settle on step " + t + ": " + unsettled(prefix, t)));
        requestAnimationFrame(check);
      })();
    });
  }

  window.bsPlayer = { seek: seek, act: act, state: state, waitSettled: waitSettled };

  function bindGraph(prefix, gd) {
    if (!gd || !gd.on || gd.dataset.bsBound) return;
    gd.dataset.bsBound = "1";
    const again = function () {
      const s = st(prefix);
      if (s.t !== null) placeCursor(gd, s.t);
    };
    gd.on("plotly_afterplot", again);
    gd.on("plotly_relayout", again);
    gd.on("plotly_hover", function (ev) {
      const s = st(prefix);
      const point = ev && ev.points && ev.points[0];
      if (!s.hover || s.playing || !point || point.x === undefined) return;
      const t = clamp(prefix, point.x);
      if (t !== s.t) draw(prefix, t);
    });
    gd.on("plotly_click", function (ev) {
      const point = ev && ev.points && ev.points[0];
      if (!point || point.x === undefined) return;
      stop(prefix);
      seek(prefix, point.x);
    });
    new ResizeObserver(again).observe(gd);
  }

  // extend the namespace object in place: Dash's renderer and its inline scripts share it
  window.dash_clientside = window.dash_clientside || {};
  Object.assign(window.dash_clientside, {
    bsPlayer: {
      init: function (prefixId, flags) {
        const prefix = prefixId.replace(/-player$/, "");
        const el = root(prefix);
        if (!el) return window.dash_clientside.no_update;
        const s = st(prefix);
        s.flags = flags || [];
        const fresh = s.cfgOf !== el;
        config(prefix);
        if (fresh) {
          stop(prefix);
          s.t = null;
        }
        draw(prefix, s.t === null ? clamp(prefix, parseInt(el.dataset.t, 10) || 0) : s.t);
        return window.dash_clientside.no_update;
      },
      seekTo: function (wanted, prefixId) {
        const prefix = prefixId.replace(/-player$/, "");
        if (!wanted || wanted.t === undefined) return window.dash_clientside.no_update;
        stop(prefix);
        seek(prefix, wanted.t);
        return window.dash_clientside.no_update;
      },
      zoom: function (relayout) {
        // Only axis changes reach the server.
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
        // After any (re)plot: attach the plot's events once, and put the cursor on the step
        // (a busy machine may take seconds to draw a plot: wait for as long as the page lives).
        (function attach() {
          if (!root(prefix)) return;
          const missing = graphsOf(prefix).some((id) => !graphDiv(id) || !graphDiv(id).on || !graphDiv(id)._fullLayout);
          if (missing) return setTimeout(attach, 40);
          graphsOf(prefix).forEach(function (id) {
            const gd = graphDiv(id);
            bindGraph(prefix, gd);
            const s = st(prefix);
            if (s.t !== null) {
              placeCursor(gd, s.t);
              caption(prefix, s.t);
            }
          });
        })();
        return window.dash_clientside.no_update;
      },
    },
  });
})();
