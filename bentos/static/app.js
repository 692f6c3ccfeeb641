// The page: read the form, ask the service (/explain for reasons, /profile/export for a file),
// show the answer. No framework, no build step; every error is shown as the sentence the service sent.
"use strict";

const $ = (id) => document.getElementById(id);
let itemUrl = null; // "https://…/{id}" from GET /model: the catalogue's own pages
let pending = null; // the request in flight, aborted when a newer one starts
let exportProfile = null; // {file, profile}: an uploaded export, parsed once

function options() {
  const media = [...document.querySelectorAll("input[name=media_types]:checked")].map((box) => box.value);
  return {
    top_k: Math.max(1, Math.min(100, parseInt($("top_k").value, 10) || 20)),
    rating_weight: parseFloat($("rating_weight").value),
    niche_boost: parseFloat($("niche_boost").value),
    hide_unwatched_sequels: $("hide_unwatched_sequels").checked,
    media_types: media.length ? media : null,
  };
}

async function answer(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: use the status line */ }
  if (!response.ok) {
    const text = body && (body.error || body.detail) ? String(body.error || body.detail) : `the service answered ${response.status}`;
    const error = new Error(text);
    error.retryAfter = response.headers.get("Retry-After");
    throw error;
  }
  return body;
}

async function profileFromExport(file, signal) {
  if (exportProfile && exportProfile.file === file) return exportProfile.profile;
  const response = await fetch("/profile/export", { method: "POST", body: file, signal,
    headers: { "Content-Type": "application/octet-stream" } });
  const { profile } = await answer(response);
  exportProfile = { file, profile };
  return profile;
}

function link(item) {
  const text = document.createElement(itemUrl ? "a" : "span");
  text.textContent = item.title || `#${item.anime_id}`;
  if (itemUrl) { text.href = itemUrl.replace("{id}", item.anime_id); text.rel = "noopener"; }
  return text;
}

function show(result) {
  const list = $("recommendations");
  list.replaceChildren();
  for (const item of result.recommendations) {
    const row = document.createElement("li");
    const title = link(item);
    title.classList.add("title");
    const figures = document.createElement("div");
    figures.className = "figures";
    figures.textContent = `predicted rating ${item.predicted_rating.toFixed(1)} · ` +
      `probability ${(100 * item.probability).toFixed(1)}%`;
    row.append(title, figures);
    if (item.contributors && item.contributors.length) {
      const because = document.createElement("div");
      because.className = "because";
      because.append("because you watched ");
      item.contributors.forEach((c, i) => { if (i) because.append(i === item.contributors.length - 1 ? " and " : ", "); because.append(link(c)); });
      row.append(because);
    }
    list.append(row);
  }
  $("model").textContent = `Answered by model ${result.model.version}.`;
  const fill = (id, entries, describe) => {
    $(id).replaceChildren(...entries.map((entry) => {
      const row = document.createElement("li");
      row.append(link(entry), " — ", describe(entry));
      return row;
    }));
  };
  fill("impactful", result.most_impactful, (e) => `moves the list by ${e.impact.toFixed(2)}`);
  fill("surprising", result.most_surprising, (e) => `you gave ${e.actual}, expected ${e.predicted.toFixed(1)}`);
  $("results").hidden = false;
  $("profile").hidden = false;
}

async function recommend() {
  const username = $("username").value.trim();
  const file = $("export").files[0];
  $("error").hidden = true;
  if (!username && !file) { fail("Enter a MyAnimeList username or choose a list export file."); return; }
  if (pending) pending.abort();
  const controller = new AbortController();
  pending = controller;
  $("go").disabled = true;
  $("status").textContent = username && !file ? `Fetching ${username}'s list…` : "Reading your list…";
  try {
    const body = options();
    if (file) body.profile = await profileFromExport(file, controller.signal);
    else body.username = username;
    const result = await answer(await fetch("/explain", { method: "POST", signal: controller.signal,
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }));
    show(result);
    $("status").textContent = `${result.recommendations.length} recommendations.`;
  } catch (error) {
    if (error.name !== "AbortError") fail(error.message + (error.retryAfter ? ` (try again in ${error.retryAfter} s)` : ""));
  } finally {
    if (pending === controller) { pending = null; $("go").disabled = false; }
  }
}

function fail(message) {
  $("status").textContent = "";
  $("error").textContent = message.charAt(0).toUpperCase() + message.slice(1);
  $("error").hidden = false;
}

let again = null; // re-ask shortly after a control moves, once results are on screen
function soon() {
  if ($("results").hidden) return;
  clearTimeout(again);
  again = setTimeout(recommend, 250);
}

document.addEventListener("DOMContentLoaded", async () => {
  $("ask").addEventListener("submit", (event) => { event.preventDefault(); recommend(); });
  for (const id of ["rating_weight", "niche_boost"]) {
    $(id).addEventListener("input", () => { $(`${id}_value`).textContent = parseFloat($(id).value).toFixed(2); soon(); });
  }
  for (const input of document.querySelectorAll("#top_k, #hide_unwatched_sequels, input[name=media_types]")) {
    input.addEventListener("change", soon);
  }
  $("export").addEventListener("change", () => { exportProfile = null; });
  try {
    const model = await answer(await fetch("/model"));
    itemUrl = model.item_url || null;
  } catch { /* no model info: titles stay plain text */ }
});
