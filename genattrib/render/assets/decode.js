/* genattrib HTML viewer, part 2 of 5: reading the data block (html_data.py, html_rows.py) into a
 * sequence with its "levels". A level is a way of reading the result: which rows can be picked
 * (generated tokens, or units such as sentences) and which sources they shade (tokens, or the
 * sentences of the text). Every level holds its score matrix, dense or top-k. */

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

async function decodeDense(spec, table) {
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

async function decodeTopK(spec) {  // counts, scales, residuals, position gaps, int8 levels
  const rows = spec.shape[0], bytes = await inflate(base64Bytes(spec.data));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const start = new Int32Array(rows + 1), scale = new Float32Array(rows), residual = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    start[r + 1] = start[r] + view.getUint32(4 * r, true);
    scale[r] = view.getFloat32(4 * (rows + r), true);
    residual[r] = view.getFloat32(4 * (2 * rows + r), true);
  }
  const total = start[rows], wide = spec.index_bytes === 4, at = 12 * rows, levelsAt = at + total * spec.index_bytes;
  const idx = new Int32Array(total), val = new Float32Array(total);
  for (let r = 0; r < rows; r++) {
    let pos = 0;
    for (let p = start[r]; p < start[r + 1]; p++) {
      pos += wide ? view.getUint32(at + 4 * p, true) : view.getUint16(at + 2 * p, true);
      idx[p] = pos;
      val[p] = (view.getInt8(levelsAt + p) / 127) * scale[r];
    }
  }
  return { start, idx, val, scale, residual };
}

async function decodeMatrix(spec, table) {
  const m = { rows: spec.shape[0], cols: spec.shape[1], k: spec.k || 0, dense: null, sparse: null };
  if (spec.codec === "topk-q8-zlib") m.sparse = await decodeTopK(spec);
  else m.dense = await decodeDense(spec, table);
  return m;
}

function fillRow(m, j, vals, kept) {  // row j into vals; kept[c] = 1 where the page knows the value
  if (m.dense) {
    vals.set(m.dense.subarray(j * m.cols, (j + 1) * m.cols));
    kept.fill(1);
    return;
  }
  vals.fill(NaN);
  kept.fill(0);
  const s = m.sparse;
  for (let p = s.start[j]; p < s.start[j + 1]; p++) { vals[s.idx[p]] = s.val[p]; kept[s.idx[p]] = 1; }
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

function flatSpans(pairs) {
  const out = new Int32Array(2 * pairs.length);
  pairs.forEach(([a, b], j) => { out[2 * j] = a; out[2 * j + 1] = b; });
  return out;
}

function bisectLeft(sorted, value) {  // how many entries of sorted are below value
  let lo = 0, hi = sorted.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (sorted[mid] < value) lo = mid + 1; else hi = mid; }
  return lo;
}

// A level: rows with their token spans and limits (first source position without a score), a
// matrix over columns (tokens, or sentences through colOf), and lookups both ways.
// rowMax[j]: row j's largest finite |score| over the columns not left out (colHidden, when
// given: special and chat-template tokens or sentences of them), over all columns if those are 0.
function rowTop(m, j, limit, hidden) {
  let top = 0, all = 0;
  const take = (c, v) => {
    const a = Math.abs(v);
    if (!(a < Infinity)) return;
    if (a > all) all = a;
    if (a > top && !(hidden && hidden[c])) top = a;
  };
  if (m.sparse) {
    const s = m.sparse;
    if (!hidden) return s.scale[j];
    for (let p = s.start[j]; p < s.start[j + 1]; p++) take(s.idx[p], s.val[p]);
  } else for (let c = 0, i = j * m.cols; c < limit; c++, i++) take(c, m.dense[i]);
  return top > 0 ? top : all;
}

function makeLevel(seq, o) {
  const rows = o.limits.length, n = seq.n, m = o.mat;
  const rowAt = new Int32Array(n).fill(-1);
  for (let j = 0; j < rows; j++) for (let i = o.spans[2 * j]; i < o.spans[2 * j + 1]; i++) rowAt[i] = j;
  const colLimit = new Int32Array(rows), rowMax = new Float32Array(rows);
  for (let j = 0; j < rows; j++) {
    let c = o.limits[j];
    if (o.colOf) c = bisectLeft(o.colStarts, o.limits[j]);
    colLimit[j] = Math.min(c, m.cols);
    rowMax[j] = rowTop(m, j, colLimit[j], o.colHidden);
  }
  return Object.assign({ rows, rowAt, colLimit, rowMax, vals: new Float32Array(m.cols), kept: new Uint8Array(m.cols) }, o);
}

function sumRows(m, unitRows, limits) {  // a unit's row: the sum of its rows (NaN as 0), NaN from its limit on
  const units = limits.length, cols = m.cols, dense = new Float32Array(units * cols);
  for (let u = 0; u < units; u++) {
    const out = dense.subarray(u * cols, (u + 1) * cols);
    for (let j = unitRows[2 * u]; j < unitRows[2 * u + 1]; j++) {
      for (let i = 0, o = j * cols; i < cols; i++, o++) { const v = m.dense[o]; if (Number.isFinite(v)) out[i] += v; }
    }
    out.fill(NaN, Math.min(limits[u], cols));
  }
  return { rows: units, cols, k: 0, dense, sparse: null };
}

async function loadSequence(raw, table, includeSpecial) {
  const n = raw.tokens.length, k = raw.steps, first = raw.prompt_length + raw.step_start;
  const special = new Uint8Array(n), hidden = new Uint8Array(n);
  raw.special.forEach((i) => { special[i] = 1; });
  if (!includeSpecial) raw.hidden.forEach((i) => { hidden[i] = 1; });  // left out of rankings and scales
  const stepScores = {};
  for (const [name, data] of Object.entries(raw.step_scores)) stepScores[name] = decodeFloat32(data);
  const seq = {
    tokens: raw.tokens, n, steps: k, promptLength: raw.prompt_length, first, special, hidden, stepScores,
    roles: expandRuns(raw.roles, n), generatedText: raw.generated_text, unitLevel: !!raw.spans,
    notes: raw.notes, unitName: raw.units.name, top: raw.units.top, groupName: raw.group_name || "source sentence",
  };
  const rowSpans = flatSpans(raw.spans || Array.from({ length: k }, (_, j) => [first + j, first + j + 1]));
  const unitSpans = flatSpans(raw.units.spans), unitRows = flatSpans(raw.units.rows), units = raw.units.spans.length;
  const unitOf = new Int32Array(k);
  for (let u = 0; u < units; u++) for (let j = unitRows[2 * u]; j < unitRows[2 * u + 1]; j++) unitOf[j] = u;
  const groupOf = new Int32Array(n), groupHidden = new Uint8Array(raw.groups.length).fill(1);
  raw.groups.forEach((start, g) => { groupOf.fill(g, start); });
  for (let i = 0; i < n; i++) if (!hidden[i]) groupHidden[groupOf[i]] = 0;  // a sentence is left out when all of it is
  const scores = await decodeMatrix(raw.scores, table), sums = await decodeMatrix(raw.group_scores, table);
  const rowText = (spans) => (j) => raw.tokens.slice(spans[2 * j], spans[2 * j + 1]).join("");
  const tokenRows = seq.unitLevel ? seq.unitName : "step";
  seq.token = makeLevel(seq, {
    key: "token", mat: scores, spans: rowSpans, limits: Array.from({ length: k }, (_, j) => rowSpans[2 * j]),
    colOf: null, colHidden: hidden, scale: raw.scale, unitOf, firstRow: null, rowName: tokenRows, rowText: rowText(rowSpans),
  });
  const unitBase = {
    key: "unit", spans: unitSpans, limits: raw.units.limits, unitOf: null, rowName: seq.unitName, rowText: rowText(unitSpans),
  };
  const bySentence = { colOf: groupOf, colStarts: raw.groups, colHidden: groupHidden, mat: sums, scale: raw.group_scale };
  const unitMat = !raw.units.merged ? null : raw.unit_scores ? await decodeMatrix(raw.unit_scores, table) : sumRows(scores, unitRows, raw.units.limits);
  seq.unit = raw.units.merged
    ? makeLevel(seq, Object.assign({}, unitBase, { mat: unitMat, colOf: null, colHidden: hidden, scale: raw.unit_scale }))
    : makeLevel(seq, Object.assign({}, unitBase, bySentence));
  seq.sentences = raw.units.merged ? makeLevel(seq, Object.assign({}, unitBase, bySentence)) : seq.unit;
  seq.unitRows = unitRows;
  seq.groupOf = groupOf;
  seq.units = units;
  return seq;
}
