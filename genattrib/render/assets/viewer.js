/* genattrib HTML viewer, inlined into every page by genattrib/render/html.py, which wraps this
 * file in a function and calls mount(root). It reads the JSON data block "<root id>-data" and
 * draws the text view, the step-score bars, the legend and the matrix (on a canvas).
 * Token text only ever reaches the page through textContent or canvas fillText: nothing here
 * turns strings into HTML. No globals, no network: everything lives inside mount(). */

const TOP_K = 5;
const MAX_CELL = 26;             // largest matrix cell (CSS px)
const LABEL_MIN_CELL = 13;       // matrix cells at least this big get token labels
const MATRIX_MIN_HEIGHT = 160;   // short matrices are stretched to at least this height
const MATRIX_MAX_HEIGHT = 1200;  // tall matrices are squeezed to at most this height
const LUT_HALF = 256;            // colour levels on each side of zero
const NAN_IN_PREFIX = [224, 224, 224];
const BAR_COLOR = "rgba(31, 35, 40, 0.78)";
const BAR_TRACK = "rgba(31, 35, 40, 0.12)";
const LABEL_FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

// ---- decoding the data block -----------------------------------------------------------
function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

async function inflate(bytes) {
  if (typeof DecompressionStream === "undefined") {
    throw new Error("this browser cannot decompress the scores (no DecompressionStream); use a recent browser");
  }
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function halfTable() {  // float16 bit pattern -> value
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return table;
}

async function decodeScores(spec, table) {
  const count = spec.shape[0] * spec.shape[1];
  const out = new Float32Array(count);
  const factor = 2 ** spec.exp;
  let bytes = base64Bytes(spec.data);
  if (spec.codec === "f16le-planes-zlib") {
    bytes = await inflate(bytes);
    for (let i = 0; i < count; i++) out[i] = table[bytes[i] | (bytes[count + i] << 8)] * factor;
  } else if (spec.codec === "f16le") {
    for (let i = 0; i < count; i++) out[i] = table[bytes[2 * i] | (bytes[2 * i + 1] << 8)] * factor;
  } else {
    throw new Error("unknown score codec " + spec.codec);
  }
  return out;
}

function decodeFloat32(text) {
  const bytes = base64Bytes(text);
  const view = new DataView(bytes.buffer);
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

function expandRuns(runs, n) {
  if (!runs) return null;
  const labels = new Array(n);
  runs.forEach(([start, label], r) => {
    const stop = r + 1 < runs.length ? runs[r + 1][0] : n;
    for (let i = start; i < stop; i++) labels[i] = label;
  });
  return labels;
}

async function loadSequence(raw, table) {
  const n = raw.tokens.length, k = raw.steps;
  const special = new Uint8Array(n);
  raw.special.forEach((i) => { special[i] = 1; });
  const stepScores = {};
  for (const [name, data] of Object.entries(raw.step_scores)) stepScores[name] = decodeFloat32(data);
  const scores = await decodeScores(raw.scores, table);
  const rowMax = new Float32Array(k);
  for (let j = 0; j < k; j++) {
    let top = 0;
    for (let i = j * n, end = i + raw.prompt_length + raw.step_start + j; i < end; i++) {
      const a = Math.abs(scores[i]);
      if (a > top && a !== Infinity) top = a;
    }
    rowMax[j] = top;
  }
  return {
    tokens: raw.tokens, n, steps: k, promptLength: raw.prompt_length, first: raw.prompt_length + raw.step_start,
    scores, rowMax, special, roles: expandRuns(raw.roles, n), stepScores, kind: raw.scale.kind,
    vmax: raw.scale.vmax, generatedText: raw.generated_text,
  };
}

// ---- colours and text ------------------------------------------------------------------
function mix(a, b, t) {
  return [0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * t));
}

function colorTable(kind, colors) {  // LUT over t = score / vmax in [-1, 1], as colors.py
  const lut = new Uint8Array((2 * LUT_HALF + 1) * 3);
  for (let q = -LUT_HALF; q <= LUT_HALF; q++) {
    const t = q / LUT_HALF;
    let rgb = colors.zero;
    if (t > 0 && kind !== "sequential_negative") rgb = mix(colors.zero, colors.positive, t);
    if (t < 0 && kind !== "sequential") rgb = mix(colors.zero, colors.negative, -t);
    lut.set(rgb, (q + LUT_HALF) * 3);
  }
  return lut;
}

function lutIndex(value, vmax) {  // -1 for NaN (no colour)
  if (Number.isNaN(value)) return -1;
  if (!(vmax > 0)) return LUT_HALF * 3;
  const t = Math.max(-1, Math.min(1, value / vmax));
  return (Math.round(t * LUT_HALF) + LUT_HALF) * 3;
}

function cssColor(lut, at) {
  return "rgb(" + lut[at] + ", " + lut[at + 1] + ", " + lut[at + 2] + ")";
}

function textColor(lut, at) {
  return 0.2126 * lut[at] + 0.7152 * lut[at + 1] + 0.0722 * lut[at + 2] > 140 ? "" : "#ffffff";
}

function fmt(value) {
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "inf" : "-inf";
  const a = Math.abs(value);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return value.toExponential(2);
  return String(Number(value.toPrecision(3)));
}

function visibleChar(c) {
  if (c === "\n") return "\u23ce\n";
  if (c === "\t") return "\u21e5\t";
  if (c === "\r") return "\u240d";
  const code = c.charCodeAt(0);
  if (code < 0x20) return String.fromCharCode(0x2400 + code);
  if (code === 0x7f) return "\u2421";
  return c;
}

function runningText(token) {  // a token inside the running text: real spaces, visible controls
  if (token === "") return "\u2205";
  return Array.from(token, visibleChar).join("");
}

function labelText(token, max) {  // a token on its own: spaces as "·", no line breaks
  if (token === "") return "\u2205";
  const chars = Array.from(token, (c) => (c === " " ? "\u00b7" : visibleChar(c).replace(/[\n\t]$/, "")));
  return chars.length > max ? chars.slice(0, max - 1).join("") + "\u2026" : chars.join("");
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- the viewer ------------------------------------------------------------------------
function mount(root) {
  const started = performance.now();
  const parts = {
    nojs: root.querySelector(".ga-nojs"), summary: root.querySelector(".ga-summary"),
    legend: root.querySelector(".ga-legend"), text: root.querySelector(".ga-text"),
    status: root.querySelector(".ga-status"), matrix: root.querySelector(".ga-matrix"),
    canvas: root.querySelector(".ga-canvas"), overlay: root.querySelector(".ga-overlay"),
    readout: root.querySelector(".ga-readout"), tip: root.querySelector(".ga-tip"),
    seqSelect: root.querySelector(".ga-seq"), barsSelect: root.querySelector(".ga-bars"),
    norm: root.querySelector(".ga-norm"),
  };
  const data = JSON.parse(document.getElementById(root.id + "-data").textContent);
  const table = halfTable();
  const cache = new Map();
  const state = {
    seq: null, step: 0, pinned: false, perStep: false, bars: null, spans: [], lut: null,
    image: null, layout: null, width: 0,
  };
  parts.nojs.hidden = true;

  // -- helpers on the current sequence --
  const seq = () => state.seq;
  const targetOf = (j) => state.seq.first + j;
  const stepOf = (pos) => pos - state.seq.first;
  const explained = (pos) => stepOf(pos) >= 0 && stepOf(pos) < state.seq.steps;
  const score = (j, pos) => state.seq.scores[j * state.seq.n + pos];
  const vmaxOf = (j) => (state.perStep ? state.seq.rowMax[j] : state.seq.vmax);

  function stepScoreText(j) {
    return Object.entries(seq().stepScores).map(([name, values]) => name + " " + fmt(values[j])).join(" \u00b7 ");
  }

  // -- text view --
  function buildText() {
    const s = seq(), frag = document.createDocumentFragment();
    state.spans = new Array(s.n);
    let role = null;
    for (let i = 0; i < s.n; i++) {
      const here = s.roles ? s.roles[i] : (i < s.promptLength ? "prompt" : "generated");
      if (here !== role) {
        role = here;
        if (role !== "template" && (s.roles || role === "generated")) frag.appendChild(element("span", "ga-chip", role));
      }
      let cls = "ga-tok";
      if (i >= s.promptLength) cls += " ga-gen";
      if (explained(i)) cls += " ga-step";
      if (s.special[i]) cls += " ga-special";
      if (here === "template") cls += " ga-template";
      const span = element("span", cls, runningText(s.tokens[i]));
      span.dataset.pos = String(i);
      if (explained(i)) span.tabIndex = -1;
      state.spans[i] = span;
      frag.appendChild(span);
    }
    parts.text.replaceChildren(frag);
  }

  function shade() {
    const s = seq(), j = state.step, target = targetOf(j), vmax = vmaxOf(j);
    for (let i = 0; i < s.n; i++) {
      const span = state.spans[i], st = span.style;
      if (i < target) {
        const v = score(j, i), at = lutIndex(v, vmax);
        st.backgroundColor = at < 0 ? "" : cssColor(state.lut, at);
        st.color = at < 0 ? "" : textColor(state.lut, at);
        span.dataset.score = String(v);
      } else {
        st.backgroundColor = "";
        st.color = "";
        delete span.dataset.score;
      }
      span.classList.toggle("ga-future", i > target);
      span.classList.toggle("ga-target", i === target);
      if (explained(i)) span.tabIndex = i === target ? 0 : -1;
    }
  }

  function paintBars() {
    const s = seq(), values = state.bars ? s.stepScores[state.bars] : null;
    let top = 0;
    if (values && state.bars !== "probability") values.forEach((v) => { if (Number.isFinite(v)) top = Math.max(top, Math.abs(v)); });
    for (let j = 0; j < s.steps; j++) {
      const st = state.spans[targetOf(j)].style;
      if (!values) { st.backgroundImage = ""; continue; }
      const v = values[j];
      const frac = !Number.isFinite(v) ? 0 : state.bars === "probability" ? Math.max(0, Math.min(1, v)) : top > 0 ? Math.abs(v) / top : 0;
      st.backgroundImage = "linear-gradient(" + BAR_COLOR + ", " + BAR_COLOR + "), linear-gradient(" + BAR_TRACK + ", " + BAR_TRACK + ")";
      st.backgroundSize = (100 * frac).toFixed(1) + "% 3px, 100% 3px";
    }
  }

  function describeStep() {
    const s = seq(), j = state.step, target = targetOf(j);
    const ranked = [];
    for (let i = 0; i < target; i++) if (!Number.isNaN(score(j, i))) ranked.push(i);
    ranked.sort((a, b) => Math.abs(score(j, b)) - Math.abs(score(j, a)));
    parts.status.replaceChildren(
      element("b", "", "step " + j + (state.pinned ? " (pinned, Esc releases)" : "")),
      " \u00b7 target \u201c" + labelText(s.tokens[target], 40) + "\u201d at position " + target,
      stepScoreText(j) ? " \u00b7 " + stepScoreText(j) : "",
      " \u00b7 top |score|: " + ranked.slice(0, TOP_K).map((i) => "\u201c" + labelText(s.tokens[i], 20) + "\u201d " + fmt(score(j, i))).join(", "),
    );
  }

  function tipText(pos) {
    const s = seq(), j = state.step, target = targetOf(j);
    const lines = ["\u201c" + labelText(s.tokens[pos], 40) + "\u201d \u00b7 position " + pos + (s.roles ? " \u00b7 " + s.roles[pos] : "")];
    if (pos < target) lines.push("score for step " + j + " (\u2192 \u201c" + labelText(s.tokens[target], 20) + "\u201d): " + fmt(score(j, pos)));
    else if (pos === target) lines.push("target of step " + j);
    else lines.push("after the target of step " + j + ": no score");
    if (explained(pos) && stepScoreText(stepOf(pos))) lines.push(stepScoreText(stepOf(pos)));
    return lines.join("\n");
  }

  function showTip(pos, x, y) {
    parts.tip.textContent = tipText(pos);
    parts.tip.hidden = false;
    const w = parts.tip.offsetWidth, h = parts.tip.offsetHeight;
    parts.tip.style.left = Math.max(4, Math.min(x + 12, window.innerWidth - w - 4)) + "px";
    parts.tip.style.top = (y + 18 + h > window.innerHeight ? y - h - 8 : y + 18) + "px";
  }

  // -- legend --
  function drawLegend() {
    const s = seq(), lut = state.lut, ramp = element("canvas", "ga-ramp");
    ramp.width = 160;
    ramp.height = 12;
    const ctx = ramp.getContext("2d");
    const lo = s.kind === "sequential" ? 0 : -1, hi = s.kind === "sequential_negative" ? 0 : 1;
    for (let x = 0; x < 160; x++) {
      ctx.fillStyle = cssColor(lut, lutIndex(lo + ((hi - lo) * (x + 0.5)) / 160, 1));
      ctx.fillRect(x, 0, 1, 12);
    }
    const top = state.perStep ? "step max" : fmt(s.vmax);
    const low = lo < 0 ? (state.perStep ? "\u2212step max" : fmt(-s.vmax)) : "0";
    const high = hi > 0 ? top : "0";
    const words = { diverging: "diverging: blue negative, orange positive", sequential: "sequential: white 0 \u2192 orange", sequential_negative: "sequential: blue negative \u2192 white 0" };
    const none = element("span", "ga-swatch");
    none.style.backgroundColor = "#ffffff";
    parts.legend.replaceChildren(
      element("span", "ga-legend-num", low), ramp, element("span", "ga-legend-num", high),
      element("span", "", words[s.kind] + (state.perStep ? " (each step scaled to its own maximum)" : "")),
      none, element("span", "", "no score (at or after the target)"),
    );
  }

  // -- matrix --
  function buildImage() {
    const s = seq(), img = element("canvas");
    img.width = Math.max(1, s.n);
    img.height = Math.max(1, s.steps);
    const ctx = img.getContext("2d"), pixels = ctx.createImageData(img.width, img.height), px = pixels.data;
    for (let j = 0; j < s.steps; j++) {
      const target = targetOf(j), vmax = vmaxOf(j);
      for (let i = 0, o = j * s.n * 4; i < target; i++, o += 4) {
        const at = lutIndex(score(j, i), vmax);
        if (at < 0) px.set(NAN_IN_PREFIX, o);
        else { px[o] = state.lut[at]; px[o + 1] = state.lut[at + 1]; px[o + 2] = state.lut[at + 2]; }
        px[o + 3] = 255;
      }
    }
    ctx.putImageData(pixels, 0, 0);
    state.image = img;
  }

  function measure(ctx, labels) {
    ctx.font = LABEL_FONT;
    return labels.reduce((w, t) => Math.max(w, ctx.measureText(t).width), 0);
  }

  function layoutMatrix() {
    const s = seq(), width = Math.max(200, parts.matrix.clientWidth);
    state.width = parts.matrix.clientWidth;
    const ctx = parts.canvas.getContext("2d");
    const rowLabels = s.tokens.slice(s.first, s.first + s.steps).map((t) => labelText(t, 16));
    const colLabels = s.tokens.map((t) => labelText(t, 16));
    let left = 0, top = 0, cellX = Math.min(MAX_CELL, width / s.n), cellY;
    const labelled = s.steps * LABEL_MIN_CELL <= MATRIX_MAX_HEIGHT && (width - 150) / s.n >= LABEL_MIN_CELL;
    if (labelled) {
      left = Math.ceil(measure(ctx, rowLabels)) + 10;
      top = Math.ceil(measure(ctx, colLabels) * 0.71) + 14;
      cellX = Math.min(MAX_CELL, (width - left) / s.n);
      cellY = cellX;
    } else {
      cellY = Math.min(MAX_CELL, Math.max(cellX, MATRIX_MIN_HEIGHT / s.steps), MATRIX_MAX_HEIGHT / s.steps);
    }
    const w = Math.ceil(left + cellX * s.n), h = Math.ceil(top + cellY * s.steps), dpr = window.devicePixelRatio || 1;
    for (const c of [parts.canvas, parts.overlay]) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
      c.style.width = w + "px";
      c.style.height = h + "px";
    }
    state.layout = { left, top, cellX, cellY, dpr };
    parts.overlay.dataset.layout = JSON.stringify({ left, top, cellX, cellY });  // for tests and tools
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = cellX < 1 || cellY < 1;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(state.image, left, top, cellX * s.n, cellY * s.steps);
    if (labelled) drawLabels(ctx, rowLabels, colLabels);
    drawOverlay(null);
  }

  function drawLabels(ctx, rowLabels, colLabels) {
    const { left, top, cellX, cellY } = state.layout, s = seq();
    ctx.font = LABEL_FONT;
    ctx.fillStyle = "#1f2328";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    rowLabels.forEach((t, j) => ctx.fillText(t, left - 6, top + (j + 0.5) * cellY));
    ctx.textAlign = "left";
    colLabels.forEach((t, i) => {
      ctx.save();
      ctx.translate(left + (i + 0.5) * cellX, top - 6);
      ctx.rotate(-Math.PI / 4);
      ctx.fillStyle = i >= s.promptLength ? "#8250df" : "#1f2328";
      ctx.fillText(t, 0, 0);
      ctx.restore();
    });
  }

  function drawOverlay(hover) {
    const { left, top, cellX, cellY, dpr } = state.layout, s = seq(), ctx = parts.overlay.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, parts.overlay.width, parts.overlay.height);
    if (!s.steps) return;
    ctx.strokeStyle = "#1f2328";
    ctx.lineWidth = state.pinned ? 2 : 1.25;
    ctx.strokeRect(left - 1, top + state.step * cellY - 1, cellX * targetOf(state.step) + 2, Math.max(cellY, 1) + 2);
    if (hover) {
      ctx.strokeStyle = "#0969da";
      ctx.lineWidth = 2;
      ctx.strokeRect(left + hover.i * cellX - 1, top + hover.j * cellY - 1, Math.max(cellX, 1) + 2, Math.max(cellY, 1) + 2);
    }
  }

  function cellAt(event) {
    const { left, top, cellX, cellY } = state.layout, rect = parts.overlay.getBoundingClientRect();
    const i = Math.floor((event.clientX - rect.left - left) / cellX), j = Math.floor((event.clientY - rect.top - top) / cellY);
    return i >= 0 && i < seq().n && j >= 0 && j < seq().steps ? { i, j } : null;
  }

  function readout(cell) {
    const s = seq();
    if (!cell) { parts.readout.textContent = "\u200b"; return; }
    const target = targetOf(cell.j), v = score(cell.j, cell.i);
    parts.readout.textContent = "step " + cell.j + " \u00b7 \u201c" + labelText(s.tokens[target], 30) + "\u201d \u2190 \u201c" +
      labelText(s.tokens[cell.i], 30) + "\u201d (position " + cell.i + "): " + (cell.i < target ? fmt(v) : "no score (at or after the target)");
  }

  // -- state changes --
  function setStep(j, pinned) {
    const s = seq();
    if (!s || !s.steps) return;
    j = Math.max(0, Math.min(s.steps - 1, j));
    const changed = j !== state.step;
    state.step = j;
    if (pinned !== undefined) state.pinned = pinned;
    root.classList.toggle("ga-pinned", state.pinned);
    root.dataset.step = String(j);
    if (changed) shade();
    describeStep();
    drawOverlay(null);
  }

  function focusStep(j) {
    const s = seq();
    j = Math.max(0, Math.min(s.steps - 1, j));
    setStep(j);
    state.spans[targetOf(j)].focus();
  }

  function redrawAll() {
    const s = seq();
    state.lut = colorTable(s.kind, data.colors);
    drawLegend();
    parts.matrix.closest("section").hidden = !s.steps;
    if (!s.steps) return;
    buildImage();
    layoutMatrix();
    shade();
  }

  async function showSequence(index) {
    if (!cache.has(index)) cache.set(index, await loadSequence(data.sequences[index], table));
    state.seq = cache.get(index);
    const s = seq();
    state.step = 0;
    state.pinned = false;
    root.dataset.seq = String(index);
    parts.summary.textContent = (data.method || "attribution") + " scores of " + (data.attributed_fn || "the target") + " \u00b7 " +
      s.steps + " explained step" + (s.steps === 1 ? "" : "s") + " over " + s.n + " tokens (" + s.promptLength + " in the prompt)";
    const names = Object.keys(s.stepScores);
    parts.barsSelect.replaceChildren(...names.map((n) => element("option", "", n)), element("option", "", "none"));
    parts.barsSelect.closest("label").hidden = names.length === 0;
    state.bars = names.includes("probability") ? "probability" : names[0] || null;
    if (state.bars) parts.barsSelect.value = state.bars;
    buildText();
    redrawAll();
    paintBars();
    if (s.steps) setStep(0, false);
    else parts.status.textContent = "This sequence has no explained steps.";
  }

  // -- events --
  const tokenAt = (event) => event.target.closest && event.target.closest(".ga-tok");
  parts.text.addEventListener("mouseover", (event) => {
    const span = tokenAt(event);
    if (!span) return;
    const pos = Number(span.dataset.pos);
    if (explained(pos) && !state.pinned) setStep(stepOf(pos));
    showTip(pos, event.clientX, event.clientY);
  });
  parts.text.addEventListener("mouseleave", () => { parts.tip.hidden = true; });
  parts.text.addEventListener("click", (event) => {
    const span = tokenAt(event);
    if (!span || !explained(Number(span.dataset.pos))) return;
    const j = stepOf(Number(span.dataset.pos));
    setStep(j, !(state.pinned && j === state.step));
  });
  parts.text.addEventListener("focusin", (event) => {
    const span = tokenAt(event);
    if (!span || !explained(Number(span.dataset.pos))) return;
    if (!state.pinned) setStep(stepOf(Number(span.dataset.pos)));
    const rect = span.getBoundingClientRect();
    showTip(Number(span.dataset.pos), rect.left, rect.bottom - 10);
  });
  parts.text.addEventListener("focusout", () => { parts.tip.hidden = true; });
  parts.text.addEventListener("keydown", (event) => {
    if (!tokenAt(event) || !seq().steps) return;
    const moves = { ArrowRight: state.step + 1, ArrowLeft: state.step - 1, Home: 0, End: seq().steps - 1 };
    if (event.key in moves) focusStep(moves[event.key]);
    else if (event.key === "Enter" || event.key === " ") setStep(state.step, !state.pinned);
    else if (event.key === "Escape") setStep(state.step, false);
    else return;
    event.preventDefault();
  });
  parts.overlay.addEventListener("mousemove", (event) => { const cell = cellAt(event); readout(cell); drawOverlay(cell); });
  parts.overlay.addEventListener("mouseleave", () => { readout(null); drawOverlay(null); });
  parts.overlay.addEventListener("click", (event) => { const cell = cellAt(event); if (cell) setStep(cell.j, true); });
  parts.seqSelect.addEventListener("change", () => { showSequence(Number(parts.seqSelect.value)).catch(fail); });
  parts.barsSelect.addEventListener("change", () => { state.bars = parts.barsSelect.value === "none" ? null : parts.barsSelect.value; paintBars(); });
  parts.norm.addEventListener("change", () => { state.perStep = parts.norm.checked; redrawAll(); describeStep(); });
  const resize = new ResizeObserver(() => { if (state.seq && state.seq.steps && parts.matrix.clientWidth !== state.width) layoutMatrix(); });
  resize.observe(parts.matrix);

  function fail(error) {
    const box = element("p", "ga-error", "Could not show this attribution: " + (error && error.message ? error.message : error));
    root.insertBefore(box, parts.summary);
    console.error(error);
  }

  if (!data.sequences.length) {
    parts.summary.textContent = "This result holds no sequences.";
    root.querySelectorAll(".ga-panel:not(.ga-prov), .ga-legend").forEach((node) => { node.hidden = true; });
    root.dataset.ready = "true";
    return;
  }
  showSequence(0).then(() => {
    root.dataset.renderMs = (performance.now() - started).toFixed(1);
    root.dataset.ready = "true";
  }).catch(fail);
}
