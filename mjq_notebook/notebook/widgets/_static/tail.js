// The mjq tail table: rows keyed by job id, patched in place so scroll and selection survive.
// Every value is job data: it is only ever written with textContent, never as HTML.

const COLUMNS = [
  ["id", "id"],
  ["status", "status"],
  ["created", "created (UTC)"],
  ["wait", "wait"],
  ["run", "run"],
  ["attempts", "attempts"],
  ["data", "data"],
];
const NUMERIC = new Set(["wait", "run", "attempts"]);
const FLASH_MS = 1200;
const TICK_MS = 1000;
const FROZEN = "view frozen: the queue keeps running (Resume view to follow it again)";

// mjq_notebook.text.format_seconds, for the cells counted on here: "850 ms", "12.3 s",
// "1 min 4 s", "1.5 h" (tests/test_tail.py runs both on the same values).
function significant(number) {
  if (number < 0) return "-" + significant(-number);
  const digits = number >= 100 ? 0 : number >= 10 ? 1 : number >= 1 || number === 0 ? 2
    : 2 - Math.floor(Math.log10(number));
  const text = number.toFixed(digits);
  return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

function oneDecimal(number) {
  return (number < 9.95 ? number.toFixed(1) : number.toFixed(0)).replace(/\.0$/, "");
}

function formatSeconds(value) {
  if (value < 0) return "-" + formatSeconds(-value);
  if (!Number.isFinite(value)) return "∞";
  for (const [unit, size, limit] of [["ms", 1e-3, 1e3], ["s", 1, 60]]) {
    const text = significant(value / size);
    if (parseFloat(text) < limit) return `${text} ${unit}`;
  }
  const whole = value < 600 ? Math.round(value) : Math.round(value / 60) * 60;
  if (whole < 3600) {
    const minutes = Math.floor(whole / 60), rest = whole % 60;
    return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
  }
  const hours = oneDecimal(value / 3600);
  return parseFloat(hours) < 48 ? `${hours} h` : `${oneDecimal(value / 86400)} d`;
}

// The text of a row's live cell at the kernel's time ``now`` (unix ms);
// formatting.live_text writes the same in the kernel.
function liveText(row, now) {
  const seconds = (now - Number(row.live_from)) / 1000;
  if (row.live === "due") return seconds < 0 ? "due in " + formatSeconds(-seconds) : "due now";
  return formatSeconds(Math.max(0, seconds)) + " …";
}

// A column's cells (and header) carry its name, so the stylesheet can give each a width.
function columnClass(key) {
  return `mjq-tail-${key}` + (NUMERIC.has(key) ? " mjq-tail-n" : "");
}

// The data cell: a running job's progress first (a bar, its width a number clamped to 0-100,
// a faint full one when the total is unknown, and "40% · 4/10 · resizing"), then the data. In
// the data column, so no column comes and goes (and moves the others) as progress does.
// Written as text and style, never as HTML.
function dataCell() {
  const td = cell("td", "", columnClass("data"));
  const bar = cell("span", "", "mjq-tail-bar");
  bar.appendChild(document.createElement("span"));
  td.append(bar, cell("span", "", "mjq-tail-ptext"), cell("span", "", "mjq-tail-dtext"));
  return td;
}

function fillData(td, row) {
  const data = row.data == null ? "" : String(row.data);
  const text = row.progress == null ? "" : String(row.progress);
  const pct = row.progress_pct === "" || row.progress_pct == null ? NaN : Number(row.progress_pct);
  const known = Number.isFinite(pct) && pct >= 0;
  const width = known ? Math.min(pct, 100) : text ? 100 : 0;
  const [bar, label, value] = td.children;
  const changed = label.textContent !== text || value.textContent !== data;
  label.textContent = text;
  value.textContent = data;
  bar.firstChild.style.width = `${width}%`;
  bar.classList.toggle("mjq-tail-unknown", Boolean(text) && !known);
  td.classList.toggle("mjq-tail-has-progress", Boolean(text));
  return changed;
}

function cell(tag, text, className) {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

function render({ model, el }) {
  el.classList.add("mjq-tail");
  const state = cell("div", "", "mjq-tail-state");
  const scroller = cell("div", "", "mjq-tail-scroll");
  const table = document.createElement("table");
  const head = document.createElement("tr");
  for (const [key, title] of COLUMNS) {
    head.appendChild(cell("th", title, columnClass(key)));
  }
  const thead = document.createElement("thead");
  thead.appendChild(head);
  const tbody = document.createElement("tbody");
  const empty = cell("div", "no jobs", "mjq-tail-empty");
  table.append(thead, tbody);
  scroller.append(table, empty);
  el.append(state, scroller);

  const rowsById = new Map(); // job id -> <tr>
  const live = new Map(); // job id -> row, for the rows with a cell that keeps changing
  const timers = new Map(); // job id -> flash timeout
  let first = true;
  // The kernel's clock minus this browser's. Each update measures it late by the time the
  // rows took to come, which varies: the largest measure is the truest, and a smaller one
  // taken later would set the clock (and every wait shown) back.
  let skew = -Infinity;
  const kernelNow = () => Date.now() + (Number.isFinite(skew) ? skew : 0);
  const liveKey = (row) => (row.live === "due" ? "wait" : row.live);

  // Count the live cells on by the kernel's clock: the table moves while nothing is sent.
  function tick() {
    const now = kernelNow();
    for (const [id, row] of live) {
      const tr = rowsById.get(id);
      const index = COLUMNS.findIndex(([key]) => key === liveKey(row));
      if (tr && index >= 0) tr.children[index].textContent = liveText(row, now);
    }
  }
  const ticker = setInterval(tick, TICK_MS);

  function select(id) {
    model.set("selected", model.get("selected") === id ? "" : id);
    model.save_changes();
  }

  function makeRow(id) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    for (const [key] of COLUMNS) {
      tr.appendChild(key === "data" ? dataCell() : cell("td", "", columnClass(key)));
    }
    tr.addEventListener("click", () => select(id));
    tr.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        select(id);
      }
    });
    return tr;
  }

  // Write a row's cells; true when any text changed (a live cell counting on is no change:
  // it is written as the ticks write it, by the kernel's clock now).
  function fill(tr, row) {
    let changed = false;
    COLUMNS.forEach(([key], index) => {
      const td = tr.children[index];
      if (key === "data") {
        changed = fillData(td, row) || changed;
        return;
      }
      if (row.live && key === liveKey(row)) {
        const wasLive = td.dataset.live === row.live;
        td.dataset.live = row.live;
        td.textContent = liveText(row, kernelNow());
        changed = changed || !wasLive;
        return;
      }
      delete td.dataset.live;
      const text = row[key] == null ? "" : String(row[key]);
      if (td.textContent !== text) {
        td.textContent = text;
        changed = true;
      }
    });
    // the status cell may say more ("working · worker lost"); its colour is the status's
    const status = String(row.status ?? "").split(" · ")[0];
    if (tr.dataset.status !== status) tr.dataset.status = status;
    tr.classList.toggle("mjq-tail-lost", Boolean(row.worker_lost));
    const lost = row.worker_lost ? "its worker is lost: select it to release it\n" : "";
    tr.title = lost + (row.progress ? `${row.progress}\n` : "") + String(row.data ?? "");
    return changed;
  }

  function flash(id, tr) {
    tr.classList.remove("mjq-tail-flash");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("mjq-tail-flash");
    clearTimeout(timers.get(id));
    timers.set(id, setTimeout(() => {
      tr.classList.remove("mjq-tail-flash");
      timers.delete(id);
    }, FLASH_MS));
  }

  // The first row at least partly visible, and its distance from the top of the view, so
  // rows inserted above it don't push what the user is reading out of view.
  function anchor() {
    if (scroller.scrollTop <= 0) return null;
    for (const tr of tbody.children) {
      if (tr.offsetTop + tr.offsetHeight > scroller.scrollTop) {
        return { tr, offset: tr.offsetTop - scroller.scrollTop };
      }
    }
    return null;
  }

  function update() {
    const rows = model.get("rows") || [];
    if (model.get("now")) skew = Math.max(skew, model.get("now") - Date.now());
    live.clear();
    const kept = anchor();
    const seen = new Set();
    let previous = null;
    for (const row of rows) {
      const id = String(row.id);
      if (seen.has(id)) continue;
      seen.add(id);
      let tr = rowsById.get(id);
      const isNew = !tr;
      if (isNew) {
        tr = makeRow(id);
        rowsById.set(id, tr);
      }
      const changed = fill(tr, row);
      if (row.live) live.set(id, row);
      const expected = previous ? previous.nextSibling : tbody.firstChild;
      if (expected !== tr) tbody.insertBefore(tr, expected);
      if (!first && (isNew || changed)) flash(id, tr);
      previous = tr;
    }
    for (const [id, tr] of rowsById) {
      if (!seen.has(id)) {
        tr.remove();
        rowsById.delete(id);
        clearTimeout(timers.get(id));
        timers.delete(id);
      }
    }
    if (kept && kept.tr.isConnected) {
      scroller.scrollTop = kept.tr.offsetTop - kept.offset;
    }
    empty.style.display = rows.length ? "none" : "";
    first = false;
    showSelection();
  }

  function showSelection() {
    const selected = model.get("selected");
    for (const [id, tr] of rowsById) {
      const on = id === selected;
      tr.classList.toggle("mjq-tail-selected", on);
      tr.setAttribute("aria-selected", on ? "true" : "false");
    }
  }

  function showState() {
    const text = String(model.get("state") || "");
    // "paused" is this view's freeze, not the queue's: say so where the dot says "paused"
    state.textContent = text === "paused" ? FROZEN : text;
    state.dataset.state = text.startsWith("reconnecting")
      ? "reconnecting"
      : text === "live" || text === "paused" ? text : "other";
  }

  model.on("change:rows", update);
  model.on("change:selected", showSelection);
  model.on("change:state", showState);
  update();
  showState();
  return () => {
    model.off("change:rows", update);
    model.off("change:selected", showSelection);
    model.off("change:state", showState);
    for (const timer of timers.values()) clearTimeout(timer);
    clearInterval(ticker);
  };
}

export default { render };
