/* genattrib HTML viewer, part 1 of 5 (paint.js, decode.js, heatmap.js, reader.js, viewer.js; html.py
 * joins them inside one function): colours, numbers and token text. Token text only ever reaches
 * the page through textContent or canvas fillText: nothing here turns strings into HTML. */

const LUT_HALF = 256;            // colour levels on each side of zero

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

function percent(part, whole) {
  return whole > 0 ? Math.round((100 * part) / whole) + "%" : "0%";
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

function clip(text, max) {  // a passage on one line: whitespace collapsed, cut with "…"
  const chars = Array.from(text.replace(/\s+/g, " ").trim());
  if (!chars.length) return labelText(text, max);
  return chars.length > max ? chars.slice(0, max - 1).join("") + "\u2026" : chars.join("");
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
