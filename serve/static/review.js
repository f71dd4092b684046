// The reviewer page's behaviour (served at /review/static/review.js, loaded by review.html).
// Talks only to the /v1/review API on the same origin. Post text is hostile input: it is only ever
// written with textContent, never as HTML. Images are fetched with the API key and shown as blob: URLs,
// because an <img src> cannot send an Authorization header.
"use strict";

const ROOT = document.body.dataset.root || "";
const AUTH_DISABLED = document.body.dataset.auth === "disabled";
const KEY_STORE = "moderation.review.apiKey";
const NAME_STORE = "moderation.review.reviewer";
const REASONS = {
  review_band: "score inside the review band",
  random_sample: "random sample of allowed posts (to estimate recall)",
  block_sample: "random sample of blocked posts (to measure block precision); the post stays blocked",
};

const state = { categories: [], item: null, action: null, labels: {}, busy: false, imageUrl: null, signedIn: false,
                skipped: new Set(),  // ids skipped in this pass over the queue
                recent: [], undoWindowS: 120 };  // this reviewer's decisions in this tab, newest first
const MAX_CLAIM = 50;  // the API's most items per claim
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// -- talking to the API ------------------------------------------------------------------------------

function authHeaders() {
  const headers = {};
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.Authorization = `Bearer ${key}`;
  const name = sessionStorage.getItem(NAME_STORE);
  if (AUTH_DISABLED && name) headers["X-Reviewer"] = name;
  return headers;
}

async function api(method, path, body) {
  const headers = { Accept: "application/json", ...authHeaders() };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(ROOT + path, init);
  } catch (err) {
    throw new ApiError(0, `Cannot reach the server (${err.message}). Check your connection and try again.`);
  }
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return response;
}

// FastAPI answers {"detail": "message"} for our errors and {"detail": [{loc, msg}]} for validation errors.
async function errorText(response) {
  let detail = null;
  try { detail = (await response.json()).detail; } catch (_) { /* not JSON: fall through */ }
  if (Array.isArray(detail)) {
    detail = detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("; ");
  }
  const text = detail || response.statusText || "request failed";
  const hints = {
    401: "The API key was not accepted. Sign in again with a valid key.",
    403: "This API key may not review (it needs the reviewer or admin role).",
    409: "This item is no longer yours to decide.",
  };
  return `${text}${hints[response.status] ? ` — ${hints[response.status]}` : ""} (HTTP ${response.status})`;
}

// -- messages and stats ------------------------------------------------------------------------------

function showMessage(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = false;
}

function clearMessage() { $("message").hidden = true; }

function handleError(err) {
  showMessage(err.message, "error");
  if (err.status === 401 || err.status === 403) {
    sessionStorage.removeItem(KEY_STORE);  // a refused key is not retried on the next page load
    showSignIn();
  }
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "none";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

async function refreshStats() {
  const stats = await (await api("GET", "/v1/review/stats")).json();
  $("stat-pending").textContent = stats.pending;
  $("stat-claimed").textContent = stats.claimed;
  $("stat-decided").textContent = stats.decided;
  $("stat-allow").textContent = stats.by_action.allow || 0;
  $("stat-block").textContent = stats.by_action.block || 0;
  $("stat-oldest").textContent = age(stats.oldest_pending_age_s);
}

// -- signing in --------------------------------------------------------------------------------------

function showSignIn() {
  state.signedIn = false;
  $("queue").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("api-key").focus();
}

async function signIn() {
  const config = await (await api("GET", "/v1/review/config")).json();
  state.categories = config.categories;
  state.undoWindowS = config.undo_window_s;
  const select = $("filter-category");
  select.replaceChildren(select.options[0]);
  for (const category of config.categories) select.append(new Option(category, category));
  $("undo-window").textContent = `${Math.round(config.undo_window_s / 60)} min`;
  state.signedIn = true;
  $("who-name").textContent = config.reviewer;
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("queue").hidden = false;
  await claimNext();
}

async function onSignInSubmit(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key && !AUTH_DISABLED) {
    showMessage("Enter your API key first.", "error");
    $("api-key").focus();
    return;
  }
  sessionStorage.setItem(KEY_STORE, key);
  sessionStorage.setItem(NAME_STORE, $("reviewer-name").value.trim());
  $("api-key").value = "";
  clearMessage();
  await run(signIn);
}

async function signOut() {
  if (state.item) await api("POST", `/v1/review/items/${state.item.id}/release`).catch(() => {});
  sessionStorage.removeItem(KEY_STORE);
  sessionStorage.removeItem(NAME_STORE);
  showItem(null);
  showMessage("Signed out; the key is forgotten.", "info");
  showSignIn();
}

// -- the item ----------------------------------------------------------------------------------------

async function claimNext(skippedId) {
  // Skip walks the whole queue: claim enough items to get past every item skipped in this pass, keep the
  // first one not yet skipped and give the others back at once. When every open item has been skipped,
  // the pass starts again from the top of the queue.
  const n = Math.min(MAX_CLAIM, state.skipped.size + 1);
  const { items } = await (await api("POST", "/v1/review/claim", { n, ...filters() })).json();
  let next = items.find((i) => !state.skipped.has(i.id));
  if (!next && items.length && skippedId !== undefined) {
    showMessage("You have skipped every open item; starting again from the top of the queue.", "info");
    state.skipped.clear();
    next = items.find((i) => i.id !== skippedId) || items[0];
  }
  next = next || null;
  const giveBack = items.filter((i) => i !== next).map((i) => i.id);
  // The skipped item is released only after the claim, so it cannot come straight back.
  if (skippedId !== undefined && !giveBack.includes(skippedId)) giveBack.push(skippedId);
  await Promise.all(giveBack.map((id) => api("POST", `/v1/review/items/${id}/release`).catch(() => {})));
  if (skippedId !== undefined && !next) showMessage(`No other items are open; item ${skippedId} is back in the queue.`, "info");
  showItem(next);
  await refreshStats();
}

// The filter bar: only items of a category (it sent them, or could have, to review), a reason, enqueue dates.
function filters() {
  const out = {};
  if ($("filter-category").value) out.category = $("filter-category").value;
  if ($("filter-reason").value) out.reason = $("filter-reason").value;
  const day = (value, plusDays) => {
    const date = new Date(`${value}T00:00:00`);  // the reviewer's local midnight, sent with its offset
    date.setDate(date.getDate() + plusDays);
    return date.toISOString();
  };
  if ($("filter-since").value) out.since = day($("filter-since").value, 0);
  if ($("filter-until").value) out.until = day($("filter-until").value, 1);  // "to" includes that day
  return out;
}

async function applyFilters() {
  state.filtersChanged = false;
  state.skipped.clear();
  if (state.item) await api("POST", `/v1/review/items/${state.item.id}/release`).catch(() => {});
  state.item = null;
  await claimNext();
  if (!state.item) $("empty-text").textContent = "No open item matches these filters.";
}

// Closing or leaving the tab gives the claim back at once, instead of holding the item until its lease
// ends. `keepalive` lets the request outlive the page (sendBeacon cannot send the key header).
function releaseOnLeave() {
  if (!state.item) return;
  fetch(`${ROOT}/v1/review/items/${state.item.id}/release`,
        { method: "POST", headers: authHeaders(), keepalive: true, cache: "no-store" }).catch(() => {});
  state.item = null;
}

function showItem(item) {
  state.item = item;
  state.action = null;
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = null;
  $("empty").hidden = item !== null;
  $("item").hidden = item === null;
  if (!item) {
    $("empty-text").textContent = "Nothing to review right now.";
    $("claim-next").focus();
    return;
  }
  $("item-id").textContent = `#${item.id}`;
  const action = $("item-action");
  action.textContent = item.model_action;
  action.className = `pill ${item.model_action}`;
  $("item-reason").textContent = reasonText(item);
  $("item-drivers").textContent = driversText(item);
  $("item-model").textContent = item.model_version;
  $("item-priority").textContent = item.priority.toFixed(3);
  $("item-post").textContent = item.post_id;
  $("item-lease").textContent = leaseText(item);
  const text = $("item-text");
  text.textContent = item.text || "(no text: image-only post)";
  text.classList.toggle("empty", !item.text);
  // What OCR read in the picture is what the model scored as the image's text: evidence for the reviewer.
  $("item-ocr-block").hidden = !item.image_url;
  const ocr = $("item-ocr-text");
  ocr.textContent = item.ocr_text || "(no text read from the image)";
  ocr.classList.toggle("empty", !item.ocr_text);
  $("note").value = "";
  state.labels = {};
  for (const category of state.categories) state.labels[category] = item.suggested_labels[category] || 0;
  $("suggestion-rule").textContent = `Labels pre-filled by the model: ${item.suggestion_rule}.`;
  renderScores();
  renderChoice();
  loadImage(item);
  $("item-title").focus();
}

function reasonText(item) {
  const text = REASONS[item.reason] || item.reason;
  const s = item.sampling;
  if (!s) return text;
  const rate = item.reason === "block_sample" ? s.block_review_rate : s.random_review_rate;
  return item.reason === "random_sample" || item.reason === "block_sample"
    ? `${text}, rate ${(100 * rate).toFixed(2)} %` : text;
}

function driversText(item) {
  if (item.drivers === null || item.drivers === undefined) return "unknown (no thresholds known for this model version)";
  return item.drivers.length ? item.drivers.join(", ") : "no category (below every threshold)";
}

function leaseText(item) {
  if (!item.lease_expires_at) return "not claimed";
  return `until ${new Date(item.lease_expires_at).toLocaleTimeString()}`;
}

async function loadImage(item) {
  $("item-figure").hidden = !item.image_url;
  if (!item.image_url) return;
  // Blurred until the reviewer chooses to look (reviewer well-being); a click or V shows it, again hides it.
  setRevealed(false);
  $("item-image").removeAttribute("src");
  $("item-image-caption").textContent = item.image_mime || "";
  try {
    const blob = await (await api("GET", item.image_url.slice(ROOT.length))).blob();
    if (state.item !== item) return;  // the reviewer moved on while it loaded
    state.imageUrl = URL.createObjectURL(blob);
    $("item-image").src = state.imageUrl;
  } catch (err) {
    $("item-image-caption").textContent = `Image could not be loaded: ${err.message}`;
  }
}

function setRevealed(revealed) {
  $("item-image").classList.toggle("blurred", !revealed);
  $("reveal-label").textContent = revealed ? "Blur image" : "Show image";
  $("reveal-image").setAttribute("aria-pressed", String(revealed));
}

function toggleImage() {
  if (!$("item-figure").hidden) setRevealed($("item-image").classList.contains("blurred"));
}

function scoreCell(value, thresholds) {
  const cell = document.createElement("td");
  cell.className = "num";
  if (value === null || value === undefined) {
    cell.textContent = "—";
    cell.classList.add("absent");
    return cell;
  }
  cell.textContent = value.toFixed(3);
  if (thresholds && value >= thresholds.block && thresholds.may_block) cell.classList.add("at-block");
  else if (thresholds && value >= thresholds.review) cell.classList.add("at-review");
  return cell;
}

function renderScores() {
  const body = $("scores-body");
  body.replaceChildren();
  state.categories.forEach((category, index) => {
    const scores = state.item.scores[category] || {};
    const thresholds = (state.item.thresholds || {})[category];
    const row = document.createElement("tr");
    const key = document.createElement("td");
    if (index < 9) key.append(Object.assign(document.createElement("kbd"), { textContent: String(index + 1) }));
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = category;
    row.append(key, name, scoreCell(scores.fused, thresholds), scoreCell(scores.text), scoreCell(scores.image),
      bandCell(thresholds), labelCell(category));
    body.append(row);
  });
}

// The thresholds the model acted on; a class that may not block says so, and why (it reviews at most).
function bandCell(thresholds) {
  const band = document.createElement("td");
  band.className = "band";
  if (!thresholds) {
    band.textContent = "—";
    return band;
  }
  band.textContent = `${thresholds.review.toFixed(2)} / ${thresholds.block.toFixed(2)}`;
  if (!thresholds.may_block) {
    const note = document.createElement("span");
    note.className = "never-blocks";
    note.textContent = "never blocks";
    note.title = thresholds.no_block_reason || "";
    const why = document.createElement("small");
    why.textContent = thresholds.no_block_reason || "";
    band.append(" ", note, why);
  }
  return band;
}

function labelCell(category) {
  const cell = document.createElement("td");
  const label = document.createElement("label");
  label.className = "toggle";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.id = `label-${category}`;
  box.dataset.category = category;
  box.checked = state.labels[category] === 1;
  box.setAttribute("role", "switch");
  box.setAttribute("aria-label", `${category} label: violates`);
  const value = document.createElement("span");
  value.id = `label-value-${category}`;
  value.textContent = box.checked ? "1 · violates" : "0 · fine";
  box.addEventListener("change", () => setLabel(category, box.checked ? 1 : 0));
  label.append(box, value);
  cell.append(label);
  return cell;
}

function setLabel(category, value) {
  state.labels[category] = value;
  $(`label-${category}`).checked = value === 1;
  $(`label-value-${category}`).textContent = value === 1 ? "1 · violates" : "0 · fine";
}

function choose(action) {
  state.action = action;
  renderChoice();
}

function renderChoice() {
  $("choose-allow").setAttribute("aria-pressed", String(state.action === "allow"));
  $("choose-block").setAttribute("aria-pressed", String(state.action === "block"));
}

// -- decisions ---------------------------------------------------------------------------------------

async function submitDecision() {
  const item = state.item;
  if (!item) return;
  if (!state.action) {
    showMessage("Choose Allow (A) or Block (B) before submitting.", "error");
    return;
  }
  const body = { action: state.action, labels: { ...state.labels }, note: $("note").value };
  try {
    await api("POST", `/v1/review/items/${item.id}/decision`, body);
  } catch (err) {
    if (err.status !== 409) throw err;
    showMessage(err.message, "error");  // the claim is gone (expired, taken): move on, keep the message
    await claimNext();
    return;
  }
  showMessage(`Item #${item.id} decided: ${body.action}. Next item claimed.`, "info");
  state.recent.unshift({ id: item.id, action: body.action, at: Date.now(), preview: (item.text || "(image)").slice(0, 60) });
  state.recent = state.recent.slice(0, 8);
  renderRecent();
  await claimNext();
}

// -- the reviewer's recent decisions: undo within the window, or ask for a second review ------------

function renderRecent() {
  $("recent").hidden = state.recent.length === 0;
  const list = $("recent-list");
  list.replaceChildren();
  for (const entry of state.recent) {
    const li = document.createElement("li");
    li.dataset.item = entry.id;
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = `#${entry.id} ${entry.action}${entry.secondReview ? " · second review asked" : ""} · ${entry.preview}`;
    li.append(what);
    if (!entry.undone && Date.now() - entry.at < state.undoWindowS * 1000) {
      li.append(recentButton("Undo", () => undo(entry)));
    }
    if (!entry.undone && !entry.secondReview) li.append(recentButton("Second review", () => secondReview(entry)));
    list.append(li);
  }
}

function recentButton(label, task) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", () => run(task));
  return button;
}

async function undo(entry) {
  const item = await (await api("POST", `/v1/review/items/${entry.id}/undo`)).json();
  // The item on screen goes back to the queue; the undone one is ours again, to decide anew.
  if (state.item && state.item.id !== item.id) {
    await api("POST", `/v1/review/items/${state.item.id}/release`).catch(() => {});
  }
  entry.undone = true;
  state.recent = state.recent.filter((e) => e !== entry);
  renderRecent();
  showItem(item);
  showMessage(`Decision on item #${item.id} undone; decide it again.`, "info");
  await refreshStats();
}

async function secondReview(entry) {
  await api("POST", `/v1/review/items/${entry.id}/second-review`, { note: "" });
  entry.secondReview = true;
  renderRecent();
  showMessage(`Item #${entry.id} goes to another reviewer for a second opinion.`, "info");
  await refreshStats();
}

async function skip() {
  if (!state.item) return claimNext();
  state.skipped.add(state.item.id);
  await claimNext(state.item.id);
}

async function extend() {
  if (!state.item) return;
  const item = await (await api("POST", `/v1/review/items/${state.item.id}/extend`, {})).json();
  state.item.lease_expires_at = item.lease_expires_at;
  $("item-lease").textContent = leaseText(item);
  showMessage(`Claim on item #${item.id} extended ${leaseText(item)}.`, "info");
}

// One request at a time: a double key press must not decide twice or claim two items.
async function run(task) {
  if (state.busy) return;
  state.busy = true;
  document.querySelectorAll("#item button, #empty button").forEach((b) => { b.disabled = true; });
  try {
    await task();
  } catch (err) {
    handleError(err);
  } finally {
    state.busy = false;
    document.querySelectorAll("#item button, #empty button").forEach((b) => { b.disabled = false; });
  }
  if (state.filtersChanged && state.signedIn) run(applyFilters);
}

// -- keyboard ----------------------------------------------------------------------------------------

function isTyping(target) {
  if (target.tagName === "TEXTAREA" || target.tagName === "SELECT" || target.isContentEditable) return true;
  return target.tagName === "INPUT" && !["checkbox", "radio", "button", "submit"].includes(target.type);
}

function onKeyDown(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (isTyping(event.target)) {
    if (event.key === "Escape") event.target.blur();
    return;  // Enter in the note field submits the form on its own
  }
  if (!state.signedIn) return;
  const key = event.key.toLowerCase();
  const index = "123456789".indexOf(key);
  const item = state.item;
  if (key === "n" && !item) run(() => claimNext());
  else if (!item) return;
  else if (key === "a") choose("allow");
  else if (key === "b") choose("block");
  else if (index >= 0 && index < state.categories.length) {
    const category = state.categories[index];
    setLabel(category, state.labels[category] ? 0 : 1);
  } else if (key === "s") run(skip);
  else if (key === "v") toggleImage();
  else if (key === "e") run(extend);
  else if (key === "enter") run(submitDecision);
  else return;
  event.preventDefault();  // e.g. Enter on a focused button submits instead of pressing it again
}

function init() {
  $("sign-in-form").addEventListener("submit", onSignInSubmit);
  $("decision-form").addEventListener("submit", (event) => { event.preventDefault(); run(submitDecision); });
  $("choose-allow").addEventListener("click", () => choose("allow"));
  $("choose-block").addEventListener("click", () => choose("block"));
  $("skip").addEventListener("click", () => run(skip));
  $("extend").addEventListener("click", () => run(extend));
  $("claim-next").addEventListener("click", () => run(() => claimNext()));
  $("sign-out").addEventListener("click", () => run(signOut));
  // A filter changed while a request was running is applied as soon as it ends (see `run`).
  $("filters").addEventListener("change", () => { state.filtersChanged = true; run(applyFilters); });
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("reveal-image").addEventListener("click", toggleImage);
  $("item-image").addEventListener("click", toggleImage);
  window.addEventListener("pagehide", releaseOnLeave);
  document.addEventListener("keydown", onKeyDown);
  if (sessionStorage.getItem(KEY_STORE) || (AUTH_DISABLED && sessionStorage.getItem(NAME_STORE) !== null)) {
    $("sign-in").hidden = true;
    run(signIn);
  } else {
    showSignIn();
  }
}

init();
