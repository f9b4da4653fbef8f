/* genattrib HTML viewer, part 3 of 5: the heatmap of one level (rows × sources) on a <canvas>,
 * with a readout of the cell under the mouse; clicking a row picks it. */

const MAX_CELL = 26;             // largest matrix cell (CSS px)
const LABEL_MIN_CELL = 13;       // matrix cells at least this big get token labels
const MATRIX_MIN_HEIGHT = 160;   // short matrices are stretched to at least this height
const MATRIX_MAX_HEIGHT = 1200;  // tall matrices are squeezed to at most this height
const HEATMAP_MAX_CELLS = 6e6;   // larger (or top-k) matrices are not drawn
const NAN_IN_PREFIX = [224, 224, 224];
const LABEL_FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

function canDraw(level) {
  return !!level.mat.dense && level.rows * level.mat.cols <= HEATMAP_MAX_CELLS;
}

function colText(seq, level, c) {
  if (!level.colOf) return seq.tokens[c];
  return seq.tokens.slice(level.colStarts[c], c + 1 < level.colStarts.length ? level.colStarts[c + 1] : seq.n).join("");
}

function makeHeatmap(parts, onPick) {
  const st = { seq: null, level: null, image: null, layout: null, width: 0, row: 0, pinned: false };

  function show(seq, level, lut, perRow) {
    st.seq = seq;
    st.level = level;
    const m = level.mat, img = element("canvas");
    img.width = Math.max(1, m.cols);
    img.height = Math.max(1, level.rows);
    const ctx = img.getContext("2d"), pixels = ctx.createImageData(img.width, img.height), px = pixels.data;
    for (let j = 0; j < level.rows; j++) {
      const vmax = perRow ? level.rowMax[j] : level.scale.vmax;
      for (let i = 0, o = j * m.cols * 4; i < level.colLimit[j]; i++, o += 4) {
        const at = lutIndex(m.dense[j * m.cols + i], vmax);
        if (at < 0) px.set(NAN_IN_PREFIX, o);
        else { px[o] = lut[at]; px[o + 1] = lut[at + 1]; px[o + 2] = lut[at + 2]; }
        px[o + 3] = 255;
      }
    }
    ctx.putImageData(pixels, 0, 0);
    st.image = img;
    layout();
  }

  function measure(ctx, labels) {
    ctx.font = LABEL_FONT;
    return labels.reduce((w, t) => Math.max(w, ctx.measureText(t).width), 0);
  }

  function layout() {
    const level = st.level, rows = level.rows, cols = level.mat.cols, width = Math.max(200, parts.matrix.clientWidth);
    st.width = parts.matrix.clientWidth;
    const ctx = parts.canvas.getContext("2d");
    let left = 0, top = 0, cellX = Math.min(MAX_CELL, width / cols), cellY, rowLabels = [], colLabels = [];
    const labelled = rows * LABEL_MIN_CELL <= MATRIX_MAX_HEIGHT && (width - 150) / cols >= LABEL_MIN_CELL;
    if (labelled) {
      rowLabels = Array.from({ length: rows }, (_, j) => labelText(level.rowText(j), 16));
      colLabels = Array.from({ length: cols }, (_, c) => labelText(colText(st.seq, level, c), 16));
      left = Math.ceil(measure(ctx, rowLabels)) + 10;
      top = Math.ceil(measure(ctx, colLabels) * 0.71) + 14;
      cellX = Math.min(MAX_CELL, (width - left) / cols);
      cellY = cellX;
    } else {
      cellY = Math.min(MAX_CELL, Math.max(cellX, MATRIX_MIN_HEIGHT / rows), MATRIX_MAX_HEIGHT / rows);
    }
    const w = Math.ceil(left + cellX * cols), h = Math.ceil(top + cellY * rows), dpr = window.devicePixelRatio || 1;
    for (const c of [parts.canvas, parts.overlay]) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
      c.style.width = w + "px";
      c.style.height = h + "px";
    }
    st.layout = { left, top, cellX, cellY, dpr };
    parts.overlay.dataset.layout = JSON.stringify({ left, top, cellX, cellY });  // for tests and tools
    parts.overlay.dataset.level = level.key + (level.colOf ? "-sentences" : "");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = cellX < 1 || cellY < 1;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(st.image, left, top, cellX * cols, cellY * rows);
    if (labelled) drawLabels(ctx, rowLabels, colLabels);
    drawOverlay(null);
  }

  function drawLabels(ctx, rowLabels, colLabels) {
    const { left, top, cellX, cellY } = st.layout, level = st.level;
    ctx.font = LABEL_FONT;
    ctx.fillStyle = "#1f2328";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    rowLabels.forEach((t, j) => ctx.fillText(t, left - 6, top + (j + 0.5) * cellY));
    ctx.textAlign = "left";
    colLabels.forEach((t, c) => {
      ctx.save();
      ctx.translate(left + (c + 0.5) * cellX, top - 6);
      ctx.rotate(-Math.PI / 4);
      ctx.fillStyle = (level.colOf ? level.colStarts[c] : c) >= st.seq.promptLength ? "#8250df" : "#1f2328";
      ctx.fillText(t, 0, 0);
      ctx.restore();
    });
  }

  function drawOverlay(hover) {
    const { left, top, cellX, cellY, dpr } = st.layout, ctx = parts.overlay.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, parts.overlay.width, parts.overlay.height);
    if (!st.level.rows) return;
    ctx.strokeStyle = "#1f2328";
    ctx.lineWidth = st.pinned ? 2 : 1.25;
    ctx.strokeRect(left - 1, top + st.row * cellY - 1, cellX * st.level.colLimit[st.row] + 2, Math.max(cellY, 1) + 2);
    if (hover) {
      ctx.strokeStyle = "#0969da";
      ctx.lineWidth = 2;
      ctx.strokeRect(left + hover.i * cellX - 1, top + hover.j * cellY - 1, Math.max(cellX, 1) + 2, Math.max(cellY, 1) + 2);
    }
  }

  function cellAt(event) {
    const { left, top, cellX, cellY } = st.layout, rect = parts.overlay.getBoundingClientRect();
    const i = Math.floor((event.clientX - rect.left - left) / cellX), j = Math.floor((event.clientY - rect.top - top) / cellY);
    return i >= 0 && i < st.level.mat.cols && j >= 0 && j < st.level.rows ? { i, j } : null;
  }

  function readout(cell) {
    if (!cell) { parts.readout.textContent = "\u200b"; return; }
    const level = st.level, v = level.mat.dense[cell.j * level.mat.cols + cell.i];
    const col = level.colOf ? st.seq.groupName + " " + cell.i : "position " + cell.i;
    parts.readout.textContent = level.rowName + " " + cell.j + " \u00b7 \u201c" + labelText(level.rowText(cell.j), 30) +
      "\u201d \u2190 \u201c" + labelText(colText(st.seq, level, cell.i), 30) + "\u201d (" + col + "): " +
      (cell.i < level.colLimit[cell.j] ? fmt(v) : "no score (at or after the target)");
  }

  function mark(row, pinned) {
    st.row = row;
    st.pinned = pinned;
    if (st.layout) drawOverlay(null);
  }

  parts.overlay.addEventListener("mousemove", (event) => { const cell = cellAt(event); readout(cell); drawOverlay(cell); });
  parts.overlay.addEventListener("mouseleave", () => { readout(null); drawOverlay(null); });
  parts.overlay.addEventListener("click", (event) => { const cell = cellAt(event); if (cell) onPick(st.level, cell.j); });
  const resize = new ResizeObserver(() => { if (st.level && st.level.rows && parts.matrix.clientWidth !== st.width) layout(); });
  resize.observe(parts.matrix);
  return { show, mark, level: () => st.level };
}
