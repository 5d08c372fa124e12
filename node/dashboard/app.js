// Shoal's dashboard: reads the API of the node that served it, with the API token when the
// page has one (from #token=... in its address, or typed in; kept in this tab's session
// storage). Everything shown is set as text, never as HTML.
"use strict";

const state = { token: sessionStorage.getItem("shoal-token") || "", selected: null };
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  state.token = fromHash;
  sessionStorage.setItem("shoal-token", fromHash);
  history.replaceState(null, "", location.pathname);
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers,
                                   body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 401) {
    document.getElementById("login").hidden = false;
    throw new Error("the API needs a token");
  }
  const answer = await resp.json().catch(() => null);
  if (!resp.ok) {
    const why = answer && answer.error ? answer.error : `HTTP ${resp.status}`;
    throw new Error(answer && answer.field ? `${answer.field}: ${why}` : why);
  }
  return answer;
}

// Rows are keyed by name and updated in place: a refresh never replaces the field a user is
// typing in, nor the element a click is on its way to.
function sync(tableId, items, key, texts, controls) {
  const body = document.querySelector(`#${tableId} tbody`);
  const existing = new Map([...body.children].map((tr) => [tr.dataset.name, tr]));
  items.forEach((item, index) => {
    const name = key(item);
    let tr = existing.get(name);
    existing.delete(name);
    const values = texts(item);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.name = name;
      tr.append(...values.map(() => document.createElement("td")));
      if (controls) tr.append(...controls.create(item));
    }
    values.forEach(([text, cls], i) => {
      const td = tr.children[i];
      td.textContent = text === null || text === undefined ? "" : String(text);
      td.className = cls || "";
    });
    if (controls) controls.update(tr, item);
    if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
  });
  existing.forEach((tr) => tr.remove());
}

function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return i ? `${bytes.toFixed(1)}${units[i]}` : `${bytes}B`;
}

function nodeTexts(n) {
  return [[n.name + (n.leader ? " *" : "")], [n.address], [n.role], [n.status, n.status],
          [n.availability], [n.resources.cpu_millis / 1000], [size(n.resources.memory_bytes)],
          [Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(",")]];
}

function rollout(r) {
  if (!r) return "";
  const total = r.updated + r.failed + r.batch.length + r.remaining;
  return `${r.kind} ${r.state} ${r.updated}/${total}` + (r.failed ? `, ${r.failed} failed` : "");
}

function serviceTexts(s) {
  return [[s.name], [s.spec.mode], [`${s.replicas.running}/${s.replicas.desired}`, "replicas"],
          [s.spec.image], [s.version], [rollout(s.rollout)]];
}

function button(text, cls, onclick) {
  const b = document.createElement("button");
  b.textContent = text;
  b.className = cls;
  b.onclick = onclick;
  return b;
}

const serviceControls = {
  create(s) {
    const path = `/v1/services/${encodeURIComponent(s.name)}`;
    const input = document.createElement("input");
    input.type = "number";
    input.min = "0";
    input.setAttribute("aria-label", `replicas of ${s.name}`);
    input.oninput = () => { input.dataset.edited = "1"; };
    const scale = button("Scale", "scale", () => act(async () => {
      await api("PATCH", path, { replicas: Number(input.value) });
      delete input.dataset.edited;
    }));
    const scaling = document.createElement("td");
    scaling.append(input, " ", scale);
    const more = document.createElement("td");
    more.append(button("Tasks", "tasks", () => { state.selected = s.name; refresh(); }), " ",
                button("Roll back", "rollback", () => act(() => api("POST", `${path}/rollback`, {}))));
    return [scaling, more];
  },
  update(tr, s) {
    const input = tr.querySelector("input");
    if (!input.dataset.edited && document.activeElement !== input) input.value = s.spec.replicas;
    tr.querySelector("button.rollback").disabled = !s.previous_versions;
    tr.classList.toggle("selected", s.name === state.selected);
  },
};

function taskTexts(t) {
  return [[`${t.service}.${t.slot || t.node_name || t.node_id}`], [t.node_name], [t.desired],
          [t.state, t.state], [t.error || t.pending_reason || t.message]];
}

async function act(call) {
  try {
    await call();
    await refresh();
  } catch (err) {
    problem(err);
  }
}

function problem(err) {
  document.getElementById("problem").textContent = err ? String(err.message || err) : "";
}

async function refresh() {
  try {
    const [cluster, nodes, services] = await Promise.all([
      api("GET", "/v1/cluster"), api("GET", "/v1/nodes"), api("GET", "/v1/services")]);
    const leader = cluster.leader ? cluster.leader.name : "none (no quorum?)";
    document.getElementById("cluster").textContent =
      `cluster ${cluster.cluster_id} · leader ${leader} · term ${cluster.term} · ` +
      `commit ${cluster.commit_index}`;
    sync("nodes", nodes, (n) => n.name, nodeTexts);
    sync("services", services, (s) => s.name, serviceTexts, serviceControls);
    if (state.selected && !services.some((s) => s.name === state.selected)) state.selected = null;
    document.getElementById("tasks-of").textContent = state.selected ? `of ${state.selected}` : "";
    const tasks = state.selected
      ? await api("GET", `/v1/tasks?service=${encodeURIComponent(state.selected)}`) : [];
    sync("tasks", tasks, (t) => t.id, taskTexts);
    problem(null);
  } catch (err) {
    problem(err);
  }
}

// The event stream wakes the page on every change (fetch, not EventSource, which cannot
// send the token); a slow poll covers a stream that broke.
let pending = null;
function soon() {
  if (pending === null) pending = setTimeout(() => { pending = null; refresh(); }, 150);
}

function showEvent(type, data) {
  const list = document.getElementById("events");
  const item = document.createElement("li");
  let event = {};
  try { event = JSON.parse(data); } catch (err) { /* not JSON: show the type alone */ }
  const when = event.at ? new Date(event.at * 1000) : new Date();
  item.textContent = `${when.toLocaleTimeString()} ${type} ${event.message || ""}`;
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

async function follow() {
  let last = 0; // the last event shown: a reconnect resumes after it
  for (;;) {
    try {
      const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
      const resp = await fetch(`/v1/events?since=${last}`, { headers });
      if (!resp.ok) throw new Error(`events: HTTP ${resp.status}`);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const type = (block.match(/^event: (.*)$/m) || [])[1];
          const data = (block.match(/^data: (.*)$/m) || [])[1];
          const id = Number((block.match(/^id: (\d+)$/m) || [])[1]);
          if (id) last = id;
          if (type) { showEvent(type, data); soon(); }
        }
      }
    } catch (err) {
      problem(err);
    }
    await new Promise((wake) => setTimeout(wake, 2000));
  }
}

document.getElementById("login").onsubmit = (event) => {
  event.preventDefault();
  state.token = document.getElementById("token").value.trim();
  sessionStorage.setItem("shoal-token", state.token);
  document.getElementById("login").hidden = true;
  refresh();
};

refresh();
follow();
setInterval(refresh, 5000);
