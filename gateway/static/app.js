// The admin page: every call carries the token typed above as a bearer token; the live
// tail reads the SSE stream with fetch (so the token stays in a header, not the URL).
"use strict";
let token = "";
let tailAbort = null;
const $ = (id) => document.getElementById(id);

function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: "Bearer " + token },
  });
  const body = await res.json().catch(() => ({ code: "decode", message: "not JSON" }));
  if (!res.ok) throw new Error(`${body.code}: ${body.message}`);
  return body;
}

function show(where, err) {
  $(where).replaceChildren(text("span", String(err.message || err), "error"));
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.append(c); else td.textContent = c == null ? "" : String(c);
    tr.append(td);
  }
  return tr;
}

function button(label, cls, onclick) {
  const b = text("button", label);
  b.className = cls;
  b.onclick = onclick;
  return b;
}

// A delete runs as this token's principal: the gateway refuses it (forbidden) when the
// token may not read what the stream or consumer holds, and the audit log records it.
async function remove(path, what) {
  if (!confirm(`Delete ${what}?`)) return false;
  try {
    await api(path, { method: "DELETE" });
    return true;
  } catch (e) {
    alert(e.message);
    return false;
  }
}

async function refreshStreams() {
  const body = $("streams").tBodies[0];
  try {
    const { streams } = await api("/v1/admin/streams");
    body.replaceChildren(...streams.map((s) => {
      const path = `/v1/admin/streams/${encodeURIComponent(s.name)}`;
      const consumers = button("Consumers", "consumers", () => showConsumers(s.name));
      consumers.dataset.stream = s.name;
      const del = button("Delete", "delete-stream", async () => {
        if (await remove(path, `stream ${s.name} and all it holds`)) refreshStreams();
      });
      del.dataset.stream = s.name;
      return row([s.name, (s.subjects || []).join(", "), s.messages, s.bytes, s.last_sequence, consumers, del]);
    }));
  } catch (e) {
    body.replaceChildren(row([text("span", e.message, "error")]));
  }
}

async function showConsumers(stream) {
  const body = $("consumers").tBodies[0];
  $("consumers-of").textContent = `of ${stream}`;
  $("consumers").dataset.stream = stream;
  const path = `/v1/admin/streams/${encodeURIComponent(stream)}/consumers`;
  try {
    const { consumers } = await api(path);
    body.replaceChildren(...consumers.map((c) => {
      const del = button("Delete", "delete-consumer", async () => {
        if (await remove(`${path}/${encodeURIComponent(c.name)}`, `consumer ${c.name} of ${stream}`)) {
          showConsumers(stream);
        }
      });
      del.dataset.consumer = c.name;
      return row([c.name, c.filter ?? "(all)", c.pending, c.ack_pending, c.delivered_sequence, del]);
    }));
    $("consumers").dataset.loaded = stream;
  } catch (e) {
    body.replaceChildren(row([text("span", e.message, "error")]));
  }
}

async function refreshDlq() {
  const body = $("dlq").tBodies[0];
  try {
    const { dead_letters } = await api("/v1/admin/dlq");
    body.replaceChildren(...dead_letters.map((d) => {
      const button = text("button", "Redrive");
      button.className = "redrive";
      button.dataset.sequence = d.sequence;
      button.onclick = async () => {
        try {
          await api(`/v1/admin/dlq/${d.sequence}/redrive`, { method: "POST" });
        } catch (e) {
          alert(e.message);
        }
        refreshDlq();
      };
      return row([d.sequence, d.subject, d.reason, d.attempts, d.bytes, button]);
    }));
  } catch (e) {
    body.replaceChildren(row([text("span", e.message, "error")]));
  }
}

async function verifyAudit() {
  try {
    const r = await api("/v1/admin/audit/verify");
    $("audit").textContent = !r.configured
      ? "no audit log configured"
      : r.ok ? `intact: ${r.records} records` : `${r.problems.length} problem(s): ` +
        r.problems.map((p) => `line ${p.line} ${p.kind}`).join("; ");
    $("audit").className = r.configured && !r.ok ? "error" : "";
  } catch (e) {
    show("audit", e);
  }
}

function addTail(kind, data) {
  const tail = $("tail");
  let line;
  if (kind === "message") line = `${data.subject} ${JSON.stringify(data.data ?? data.data_base64)}`;
  else if (kind === "lagged") line = `(missed ${data.missed} messages: this page was too slow)`;
  else line = `error ${data.code}: ${data.message}`;
  const el = text("div", line, kind === "message" ? "message" : "error");
  tail.append(el);
  while (tail.childElementCount > 500) tail.firstElementChild.remove();
}

async function startTail() {
  if (tailAbort) tailAbort.abort();
  tailAbort = new AbortController();
  $("tail").replaceChildren();
  delete $("tail").dataset.ready;
  const pattern = encodeURIComponent($("pattern").value);
  let res;
  try {
    res = await fetch(`/v1/subscribe/${pattern}`, {
      headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
      signal: tailAbort.signal,
    });
  } catch (e) {
    return;
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    addTail("error", { code: body.code, message: body.message });
    return;
  }
  $("tail").dataset.ready = "true";
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {
      return;
    }
    if (chunk.done) return;
    buffer += chunk.value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) addTail(kind, JSON.parse(data.join("\n")));
    }
  }
}

$("login").onclick = () => {
  token = $("token").value.trim();
  $("who").textContent = token ? "token set" : "";
  refreshStreams();
  refreshDlq();
};
$("tail-start").onclick = startTail;
$("streams-refresh").onclick = refreshStreams;
$("dlq-refresh").onclick = refreshDlq;
$("audit-verify").onclick = verifyAudit;
