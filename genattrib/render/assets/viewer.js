/* genattrib HTML viewer, part 5 of 5: mount(root) reads the JSON data block "<root id>-data" and
 * draws the text (shaded by the picked row), the outline, the step-score bars, the legend and
 * the heatmap. Rows are picked at one of two levels (decode.js): "token" (the result's own rows
 * over source tokens) or "unit" (sentence rows of a token-level result over source tokens, or the
 * unit rows of a unit-level result over source sentences). No globals, no network. */

const TOP_K = 5;

function mount(root) {
  const started = performance.now(), q = (selector) => root.querySelector(selector);
  const parts = {
    nojs: q(".ga-nojs"), summary: q(".ga-summary"), notes: q(".ga-notes"), legend: q(".ga-legend"),
    text: q(".ga-text"), status: q(".ga-status"), matrix: q(".ga-matrix"), canvas: q(".ga-canvas"),
    overlay: q(".ga-overlay"), readout: q(".ga-readout"), tip: q(".ga-tip"), seqSelect: q(".ga-seq"),
    barsSelect: q(".ga-bars"), norm: q(".ga-norm"), levels: q(".ga-levels"), levelWhat: q(".ga-level-what"),
    reader: q(".ga-reader"), outlinePanel: q(".ga-outline-panel"), outlineHead: q(".ga-outline-head"),
    matrixNote: q(".ga-matrix-note"), input: q(".ga-search"), prev: q(".ga-prev"), next: q(".ga-next"), count: q(".ga-count"),
  };
  const data = JSON.parse(document.getElementById(root.id + "-data").textContent);
  const table = halfTable(), cache = new Map();
  const state = { seq: null, L: null, row: 0, pinned: false, perStep: data.scale !== "global", bars: null, nodes: [], lut: null, shown: null, tabbed: null };
  const heat = makeHeatmap(parts, pickFromHeatmap);
  const outline = makeOutline(q(".ga-outline"), pickUnit);
  const search = makeSearch(parts, { nodes: () => state.nodes, jump: jumpTo });
  parts.nojs.hidden = true;
  parts.norm.checked = state.perStep;

  const seq = () => state.seq;
  const clampRow = (j) => Math.max(0, Math.min(state.L.rows - 1, j));
  const vmaxOf = (j) => (state.perStep ? state.L.rowMax[j] : state.L.scale.vmax);
  const stepRow = (j) => (state.L.key === "token" || seq().unitLevel ? j : -1);  // rows that have step scores
  const unitOfRow = () => (state.L.key === "token" ? state.L.unitOf[state.row] : state.row);

  function stepScoreText(j) {
    if (j < 0) return "";
    return Object.entries(seq().stepScores).map(([name, values]) => name + " " + fmt(values[j])).join(" \u00b7 ");
  }

  function topLabels(s, L, ranked) {
    // ranked: columns by |score|, ties in text order; a unit-sourced result read over tokens ranks its units whole
    if (L.colOf || s.groupName !== "source unit") return ranked.slice(0, TOP_K).map((c) => sourceLabel(L, c) + " " + fmt(L.vals[c]));
    const sums = new Map();
    for (const c of ranked) sums.set(s.groupOf[c], (sums.get(s.groupOf[c]) || 0) + L.vals[c]);
    const groups = Array.from(sums.keys()).filter((g) => sums.get(g) !== 0).sort((x, y) => Math.abs(sums.get(y)) - Math.abs(sums.get(x)) || x - y);
    return groups.slice(0, TOP_K).map((g) => sourceLabel(s.sentences, g) + " " + fmt(sums.get(g)));
  }

  function sourceLabel(L, c) {
    return L.colOf ? seq().groupName + " \u201c" + clip(colText(seq(), L, c), 30) + "\u201d" : "\u201c" + labelText(seq().tokens[c], 20) + "\u201d";
  }

  // -- text view --
  function buildText() {
    const s = seq(), frag = document.createDocumentFragment(), rows = s.token;
    state.nodes = new Array(s.n);
    let role = null, block = frag.appendChild(element("div", "ga-block"));
    for (let i = 0; i < s.n; i++) {
      const here = s.roles ? s.roles[i] : (i < s.promptLength ? "prompt" : "generated");
      if (here !== role) {
        role = here;  // an encoder-decoder result: the source and the target each get a panel
        if (role === "source" || role === "target") block = frag.appendChild(element("div", "ga-block ga-panel ga-panel-" + role));
        if (role !== "template" && (s.roles || role === "generated")) block.appendChild(element("span", "ga-chip", role));
      }
      let cls = "ga-tok";
      if (i >= s.promptLength) cls += " ga-gen";
      if (rows.rowAt[i] >= 0) cls += " ga-step";
      if (s.special[i]) cls += " ga-special";
      if (here === "template") cls += " ga-template";
      const span = element("span", cls, runningText(s.tokens[i]));
      span.dataset.pos = String(i);
      state.nodes[i] = span;
      block.appendChild(span);
      // a line ends here: later lines go to a new block, which the browser lays out only when seen
      if (s.tokens[i].endsWith("\n") && i + 1 < s.n) block = frag.appendChild(element("div", "ga-block"));
    }
    parts.text.replaceChildren(frag);
    state.shown = { at: new Int16Array(s.n), score: new Float64Array(s.n), flags: new Uint8Array(s.n), stale: true };
  }

  function shade() {  // only what changed is written: a click on an 8,000-token page stays fast
    const s = seq(), L = state.L, j = state.row, a = L.spans[2 * j], b = L.spans[2 * j + 1], lim = L.limits[j];
    const vmax = vmaxOf(j), sh = state.shown, force = sh.stale;
    sh.stale = false;
    fillRow(L.mat, j, L.vals, L.kept);
    for (let i = 0; i < s.n; i++) {
      const c = L.colOf ? L.colOf[i] : i, has = i < lim && L.kept[c] === 1, v = has ? L.vals[c] : NaN;
      const at = has ? lutIndex(v, vmax) : -1, node = state.nodes[i], st = node.style;
      const flags = (has ? 1 : 0) | (i >= a && i < b ? 2 : 0) | (i >= b ? 4 : 0), before = sh.flags[i];
      if (force || at !== sh.at[i]) {
        st.backgroundColor = at < 0 ? "" : cssColor(state.lut, at);
        st.color = at < 0 ? "" : textColor(state.lut, at);
        sh.at[i] = at;
      }
      if (force || (has && !Object.is(v, sh.score[i])) || (flags & 1) !== (before & 1)) {
        if (has) node.dataset.score = String(v);
        else delete node.dataset.score;
        sh.score[i] = v;
      }
      if (force || (flags ^ before) & 2) node.classList.toggle("ga-target", !!(flags & 2));
      if (force || (flags ^ before) & 4) node.classList.toggle("ga-future", !!(flags & 4));
      sh.flags[i] = flags;
    }
  }

  function resetShown() {  // the next shade() writes every colour, score and class again
    if (state.shown) state.shown.stale = true;
  }

  function paintBars() {  // the bar itself is drawn by CSS (.ga-bars-on .ga-step); each row sets its length
    const s = seq(), rows = s.token, values = state.bars ? s.stepScores[state.bars] : null;
    let top = 0;
    if (values && state.bars !== "probability") values.forEach((v) => { if (Number.isFinite(v)) top = Math.max(top, Math.abs(v)); });
    root.classList.toggle("ga-bars-on", !!values);
    if (!values) return;
    for (let j = 0; j < rows.rows; j++) {
      const v = values[j];
      const frac = !Number.isFinite(v) ? 0 : state.bars === "probability" ? Math.max(0, Math.min(1, v)) : top > 0 ? Math.abs(v) / top : 0;
      const length = (100 * frac).toFixed(1) + "%";
      for (let i = rows.spans[2 * j]; i < rows.spans[2 * j + 1]; i++) state.nodes[i].style.setProperty("--ga-bar", length);
    }
  }

  function describe() {
    const s = seq(), L = state.L, j = state.row, a = L.spans[2 * j], b = L.spans[2 * j + 1];
    fillRow(L.mat, j, L.vals, L.kept);
    const ranked = [];
    let kept = 0;
    let left = false;
    for (let c = 0; c < L.colLimit[j]; c++) {
      if (!L.kept[c] || Number.isNaN(L.vals[c])) continue;
      kept += Math.abs(L.vals[c]);
      if (L.colHidden && L.colHidden[c]) left = true;  // special or template: not ranked
      else ranked.push(c);
    }
    ranked.sort((x, y) => Math.abs(L.vals[y]) - Math.abs(L.vals[x]));
    const where = b - a === 1 ? "position " + a : "positions " + a + "\u2013" + (b - 1);
    const steps = stepScoreText(stepRow(j));
    let cut = "";
    if (L.mat.sparse) {
      const rest = L.mat.sparse.residual[j];
      cut = " \u00b7 top " + L.mat.k + " sources kept: " + percent(kept, kept + rest) + " of |score| (the rest: " + percent(rest, kept + rest) + ")";
    }
    parts.status.replaceChildren(
      element("b", "", L.rowName + " " + j + (state.pinned ? " (pinned, Esc releases)" : "")),
      " \u00b7 target \u201c" + clip(L.rowText(j), 60) + "\u201d at " + where, steps ? " \u00b7 " + steps : "",
      " \u00b7 top |score|" + (left ? " (special and chat-template tokens left out)" : "") + ": " + topLabels(s, L, ranked).join(", ") + cut,
    );
  }

  function tipText(pos) {
    const s = seq(), L = state.L, j = state.row, a = L.spans[2 * j], c = L.colOf ? L.colOf[pos] : pos;
    const lines = ["\u201c" + labelText(s.tokens[pos], 40) + "\u201d \u00b7 position " + pos + (s.roles ? " \u00b7 " + s.roles[pos] : "")];
    const one = L.spans[2 * j + 1] - a === 1, text = L.rowText(j);
    const target = "\u201c" + (one ? labelText(text, 20) : clip(text, 24)) + "\u201d";
    if (pos < L.limits[j]) {
      const what = L.colOf ? "score of " + sourceLabel(L, c) : "score";
      lines.push(L.kept[c] ? what + " for " + L.rowName + " " + j + " (\u2192 " + target + "): " + fmt(L.vals[c])
        : "not among the top " + L.mat.k + " sources of " + L.rowName + " " + j + " (\u2192 " + target + ")");
    } else if (pos >= a && pos < L.spans[2 * j + 1]) lines.push("target of " + L.rowName + " " + j);
    else lines.push("after the target of " + L.rowName + " " + j + ": no score");
    const own = s.token.rowAt[pos];
    if (own >= 0 && stepScoreText(own)) lines.push(stepScoreText(own));
    return lines.join("\n");
  }

  function showTip(pos, x, y) {
    parts.tip.textContent = tipText(pos);
    parts.tip.hidden = false;
    const w = parts.tip.offsetWidth, h = parts.tip.offsetHeight;
    parts.tip.style.left = Math.max(4, Math.min(x + 12, window.innerWidth - w - 4)) + "px";
    parts.tip.style.top = (y + 18 + h > window.innerHeight ? y - h - 8 : y + 18) + "px";
  }

  function drawLegend() {
    const L = state.L, lut = state.lut, kind = L.scale.kind, ramp = element("canvas", "ga-ramp");
    ramp.width = 160;
    ramp.height = 12;
    const ctx = ramp.getContext("2d");
    const lo = kind === "sequential" ? 0 : -1, hi = kind === "sequential_negative" ? 0 : 1;
    for (let x = 0; x < 160; x++) {
      ctx.fillStyle = cssColor(lut, lutIndex(lo + ((hi - lo) * (x + 0.5)) / 160, 1));
      ctx.fillRect(x, 0, 1, 12);
    }
    const rowName = L.rowName || "step", own = rowName + " max";
    const top = state.perStep ? own : fmt(L.scale.vmax);
    const low = lo < 0 ? (state.perStep ? "\u2212" + own : fmt(-L.scale.vmax)) : "0";
    const scaleText = state.perStep ? " \u00b7 colour scale: each " + rowName + "'s own largest |score|" : " \u00b7 colour scale: the largest |score| of the sequence";
    const leftOut = seq().hidden.some((h) => h) ? " \u00b7 special and chat-template tokens left out of rankings and the scale" : "";
    const words = { diverging: "diverging: blue negative, orange positive", sequential: "sequential: white 0 \u2192 orange", sequential_negative: "sequential: blue negative \u2192 white 0" };
    const none = element("span", "ga-swatch");
    none.style.backgroundColor = "#ffffff";
    parts.legend.replaceChildren(
      element("span", "ga-legend-num", low), ramp, element("span", "ga-legend-num", hi > 0 ? top : "0"),
      element("span", "ga-scale-note", words[kind] + scaleText + leftOut),
      none, element("span", "", "no score (at or after the target" + (L.mat.sparse ? ", or not among the row's top " + L.mat.k : "") + ")"),
    );
  }

  // -- picking rows and levels --
  function setRow(j, pinned) {
    const L = state.L;
    if (!L || !L.rows) return;
    j = clampRow(j);
    const changed = j !== state.row;
    state.row = j;
    if (pinned !== undefined) state.pinned = pinned;
    root.classList.toggle("ga-pinned", state.pinned);
    root.dataset.step = String(j);
    if (changed) shade();
    const node = state.nodes[L.spans[2 * j]];
    if (state.tabbed !== node) {
      if (state.tabbed) state.tabbed.tabIndex = -1;
      node.tabIndex = 0;
      state.tabbed = node;
    }
    describe();
    const H = heat.level();
    if (H) heat.mark(H === L ? j : unitOfRow(), state.pinned);
    outline.setCurrent(unitOfRow());
  }

  function focusRow(j) {
    setRow(j);
    state.nodes[state.L.spans[2 * state.row]].focus();
  }

  function setTabbable(L) {
    if (state.L) for (let j = 0; j < state.L.rows; j++) state.nodes[state.L.spans[2 * j]].removeAttribute("tabindex");
    for (let j = 0; j < L.rows; j++) state.nodes[L.spans[2 * j]].tabIndex = -1;
    state.tabbed = null;
  }

  function setLevel(key) {
    const s = seq(), from = state.L, to = key === "unit" ? s.unit : s.token;
    if (from === to || !to.rows) return;
    const j = !from ? 0 : to.key === "unit" ? unitOfRow() : s.unitRows[2 * state.row];
    setTabbable(to);
    state.L = to;
    state.row = Math.max(0, Math.min(to.rows - 1, j));
    root.dataset.level = key;
    root.querySelectorAll(".ga-level").forEach((input) => { input.checked = input.value === key; });
    redrawAll();
    setRow(state.row);
  }

  function redrawAll() {
    const s = seq(), L = state.L;
    state.lut = colorTable(L.scale.kind, data.colors);
    resetShown();
    drawLegend();
    const H = canDraw(L) ? L : canDraw(s.sentences) ? s.sentences : null;
    parts.matrix.closest("section").hidden = !H || !H.rows;
    parts.matrixNote.textContent = H && H !== L ? "this level's matrix is too big to draw: rows are " + s.unitName + "s, columns the " + s.groupName + "s of the text" : "";
    if (H && H.rows) heat.show(s, H, H === L ? state.lut : colorTable(H.scale.kind, data.colors), state.perStep);
    if (L.rows) shade();
  }

  function pickFromHeatmap(level, j) {
    if (level !== state.L) setLevel(level.key);
    setRow(j, true);
  }

  function pickUnit(u) {
    if (state.L.key === "token" && !seq().unitLevel) setLevel("unit");
    setRow(u, true);
    state.nodes[state.L.spans[2 * state.row]].focus({ preventScroll: true });
    state.nodes[state.L.spans[2 * state.row]].scrollIntoView({ block: "nearest" });
  }

  function jumpTo(pos) {
    const j = state.L && state.L.rows ? state.L.rowAt[pos] : -1;
    if (j >= 0) setRow(j, true);
  }

  async function showSequence(index) {
    if (!cache.has(index)) cache.set(index, await loadSequence(data.sequences[index], table, data.include_special));
    state.seq = cache.get(index);
    const s = seq(), rows = s.unitLevel ? s.unitName + "s" : "steps";
    state.L = null;
    state.row = 0;
    state.pinned = false;
    root.dataset.seq = String(index);
    root.classList.toggle("ga-unit-level", s.unitLevel);
    parts.summary.textContent = data.caption + " \u00b7 " +
      s.steps + " explained " + (s.steps === 1 ? rows.replace(/s$/, "") : rows) + " over " + s.n + " tokens (" + s.promptLength + " in the prompt)";
    parts.notes.replaceChildren(...s.notes.map((note) => element("p", "ga-note", note)));
    parts.notes.hidden = !s.notes.length;
    const names = Object.keys(s.stepScores);
    parts.barsSelect.replaceChildren(...names.map((n) => element("option", "", n)), element("option", "", "none"));
    parts.barsSelect.closest("label").hidden = names.length === 0;
    state.bars = names.includes("probability") ? "probability" : names[0] || null;
    if (state.bars) parts.barsSelect.value = state.bars;
    buildText();
    const withOutline = s.units > 1 || (s.unitLevel && s.units > 0);
    parts.outlinePanel.hidden = !withOutline;
    parts.reader.classList.toggle("ga-with-outline", withOutline);
    parts.outlineHead.textContent = s.units + " " + s.unitName + (s.units === 1 ? "" : "s") + " \u00b7 top source " + (s.groupName === "source unit" ? "units" : "words") + " (summed scores)";
    outline.build(s);
    parts.levels.hidden = !s.units;
    parts.levelWhat.textContent = s.unitLevel ? "Sources" : "Rows";
    search.index(s);
    if (s.steps) {
      setLevel("token");
      paintBars();
    } else {
      parts.matrix.closest("section").hidden = true;
      state.L = s.token;
      state.lut = colorTable(s.token.scale.kind, data.colors);
      drawLegend();
      parts.status.textContent = "This sequence has no explained steps.";
    }
  }

  // -- events --
  const tokenAt = (event) => event.target.closest && event.target.closest(".ga-tok");
  const rowAt = (span) => (span && state.L && state.L.rows ? state.L.rowAt[Number(span.dataset.pos)] : -1);
  parts.text.addEventListener("mouseover", (event) => {
    const span = tokenAt(event);
    if (!span) return;
    if (rowAt(span) >= 0 && !state.pinned) setRow(rowAt(span));
    showTip(Number(span.dataset.pos), event.clientX, event.clientY);
  });
  parts.text.addEventListener("mouseleave", () => { parts.tip.hidden = true; });
  parts.text.addEventListener("click", (event) => {
    const j = rowAt(tokenAt(event));
    if (j < 0) return;
    setRow(j, !(state.pinned && j === state.row));
    if (document.activeElement !== state.tabbed) state.tabbed.focus({ preventScroll: true });
  });
  parts.text.addEventListener("focusin", (event) => {
    const span = tokenAt(event), j = rowAt(span);
    if (j < 0) return;
    if (!state.pinned) setRow(j);
    const rect = span.getBoundingClientRect();
    showTip(Number(span.dataset.pos), rect.left, rect.bottom - 10);
  });
  parts.text.addEventListener("focusout", () => { parts.tip.hidden = true; });
  root.addEventListener("keydown", (event) => {
    const target = event.target, L = state.L;
    if (!L || !L.rows || event.ctrlKey || event.metaKey || event.altKey) return;
    if (target.closest && target.closest("input, select, textarea, button")) return;
    const onItem = !!(target.closest && target.closest(".ga-tok, .ga-unit"));
    const key = event.key, moves = { j: 1, k: -1, ArrowRight: 1, ArrowLeft: -1 };
    if (key in moves && (onItem || key.length === 1)) focusRow(state.row + moves[key]);
    else if ((key === "Home" || key === "End") && onItem) focusRow(key === "Home" ? 0 : L.rows - 1);
    else if ((key === "Enter" || key === " ") && target.closest && target.closest(".ga-unit")) pickUnit(Number(target.closest(".ga-unit").dataset.unit));
    else if ((key === "Enter" || key === " ") && onItem) setRow(state.row, !state.pinned);
    else if (key === "Escape") setRow(state.row, false);
    else if (key === "/") parts.input.focus();
    else if (key === "u" && !parts.levels.hidden) { setLevel(L.key === "token" ? "unit" : "token"); focusRow(state.row); }
    else return;
    event.preventDefault();
  });
  root.querySelectorAll(".ga-level").forEach((input) => input.addEventListener("change", () => { if (input.checked) setLevel(input.value); }));
  parts.seqSelect.addEventListener("change", () => { showSequence(Number(parts.seqSelect.value)).catch(fail); });
  parts.barsSelect.addEventListener("change", () => { state.bars = parts.barsSelect.value === "none" ? null : parts.barsSelect.value; paintBars(); });
  parts.norm.addEventListener("change", () => { state.perStep = parts.norm.checked; redrawAll(); describe(); });

  function fail(error) {
    const box = element("p", "ga-error", "Could not show this attribution: " + (error && error.message ? error.message : error));
    root.insertBefore(box, parts.summary);
    console.error(error);
  }

  if (!data.sequences.length) {
    parts.summary.textContent = "This result holds no sequences.";
    root.querySelectorAll(".ga-panel:not(.ga-prov), .ga-legend, .ga-levels").forEach((node) => { node.hidden = true; });
    root.dataset.ready = "true";
    return;
  }
  showSequence(0).then(() => {
    root.dataset.renderMs = (performance.now() - started).toFixed(1);
    root.dataset.readyMs = performance.now().toFixed(1);  // since the page started loading
    root.dataset.ready = "true";
  }).catch(fail);
}
