/* genattrib HTML viewer, part 4 of 5: reading aids for long texts. The outline lists the units
 * (sentences, or the rows of a unit-level result) with their top source words (or source units,
 * for a result attributed with sources=); the search box
 * finds text and jumps between the matches. */

const OUTLINE_CHARS = 96;
const MAX_MATCHES = 5000;

function makeOutline(list, onPick) {
  let items = [], current = -1;

  function build(seq) {
    const frag = document.createDocumentFragment(), level = seq.unit;
    items = new Array(level.rows);
    current = -1;
    for (let u = 0; u < level.rows; u++) {
      const item = element("li", "ga-unit");
      item.dataset.unit = String(u);
      item.tabIndex = -1;
      item.appendChild(element("span", "ga-unit-text", clip(level.rowText(u), OUTLINE_CHARS)));
      const sources = element("span", "ga-unit-src");
      (seq.top[u] || []).forEach(([text, score], r) => {
        if (r) sources.appendChild(document.createTextNode(" \u00b7 "));
        sources.appendChild(element("span", score < 0 ? "ga-src ga-neg" : "ga-src", "\u201c" + text + "\u201d " + fmt(score)));
      });
      if (!sources.childNodes.length) sources.textContent = "no attributed source";
      item.appendChild(sources);
      items[u] = item;
      frag.appendChild(item);
    }
    list.replaceChildren(frag);
  }

  function setCurrent(u) {
    if (u === current) return;
    if (items[current]) items[current].classList.remove("ga-current");
    current = u;
    const item = items[u];
    if (!item) return;
    item.classList.add("ga-current");
    const top = item.offsetTop, bottom = top + item.offsetHeight;  // scroll the list only, never the page
    if (top < list.scrollTop) list.scrollTop = top;
    else if (bottom > list.scrollTop + list.clientHeight) list.scrollTop = bottom - list.clientHeight;
  }

  list.addEventListener("click", (event) => {
    const item = event.target.closest && event.target.closest(".ga-unit");
    if (item) onPick(Number(item.dataset.unit));
  });
  return { build, setCurrent };
}

function makeSearch(parts, hooks) {
  // hooks: nodes() -> token elements; jump(position) after moving to a match
  const st = { lower: "", starts: null, matches: [], marked: [], at: -1, query: "" };

  function index(seq) {
    const starts = new Int32Array(seq.n + 1);
    const lower = seq.tokens.map((t, i) => {
      starts[i + 1] = starts[i] + t.length;
      const l = t.toLocaleLowerCase();
      return l.length === t.length ? l : t;  // keep character offsets exact
    });
    st.lower = lower.join("");
    st.starts = starts;
    run(parts.input.value);
  }

  function tokenAt(char) {  // the token holding character char
    let lo = 0, hi = st.starts.length - 2;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (st.starts[mid] <= char) lo = mid; else hi = mid - 1; }
    return lo;
  }

  function clear() {
    st.marked.forEach((node) => node.classList.remove("ga-match", "ga-match-current"));
    st.marked = [];
    st.matches = [];
    st.at = -1;
  }

  function run(query) {
    clear();
    st.query = query;
    if (query) {
      const needle = query.toLocaleLowerCase(), nodes = hooks.nodes();
      for (let from = st.lower.indexOf(needle); from >= 0 && st.matches.length < MAX_MATCHES; from = st.lower.indexOf(needle, from + 1)) {
        const a = tokenAt(from), b = tokenAt(from + needle.length - 1);
        st.matches.push([a, b]);
        for (let i = a; i <= b; i++) { nodes[i].classList.add("ga-match"); st.marked.push(nodes[i]); }
      }
    }
    count();
  }

  function count() {
    const n = st.matches.length, more = n === MAX_MATCHES ? "+" : "";
    parts.count.textContent = !st.query ? "" : n ? (st.at + 1 || "\u2013") + " / " + n + more : "no match";
  }

  function step(delta) {
    if (st.query !== parts.input.value) run(parts.input.value);
    const n = st.matches.length;
    if (!n) return;
    const nodes = hooks.nodes();
    if (st.at >= 0) for (let i = st.matches[st.at][0]; i <= st.matches[st.at][1]; i++) nodes[i].classList.remove("ga-match-current");
    st.at = st.at < 0 ? (delta > 0 ? 0 : n - 1) : (st.at + delta + n) % n;
    const [a, b] = st.matches[st.at];
    for (let i = a; i <= b; i++) nodes[i].classList.add("ga-match-current");
    nodes[a].scrollIntoView({ block: "center" });
    count();
    hooks.jump(a);
  }

  parts.input.addEventListener("input", () => run(parts.input.value));
  parts.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") step(event.shiftKey ? -1 : 1);
    else if (event.key === "Escape") { parts.input.value = ""; run(""); }
    else return;
    event.preventDefault();
    event.stopPropagation();
  });
  parts.next.addEventListener("click", () => step(1));
  parts.prev.addEventListener("click", () => step(-1));
  return { index, step };
}
