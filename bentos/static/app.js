// The page: read the form, ask the service (/explain for reasons, /predict for named shows,
// /profile/export for a file), show the answer. No framework, no build step; every error is shown
// as the sentence the service sent.
"use strict";

const $ = (id) => document.getElementById(id);
let itemUrl = null; // "https://…/{id}" from GET /model: the catalogue's own pages
let pending = null; // the request in flight, aborted when a newer one starts
let pendingPredict = null; // the same for the "What would I think of…?" box
let exportProfile = null; // {file, profile}: an uploaded export, parsed once
const shownIds = new Map(); // lower-cased title → anime id of every show on the page, for the predict box
const MEDIA_NAMES = { tv: "TV", movie: "Movie", ova: "OVA", ona: "ONA", special: "Special", music: "Music",
  tv_special: "TV special", cm: "CM", pv: "PV" };

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
  if (item.title) shownIds.set(item.title.toLowerCase(), item.anime_id);
  return text;
}

// A probability as a percentage with two significant digits: "3.4%", "0.27%", "0.0081%".
function percent(p) {
  const value = 100 * p;
  if (!Number.isFinite(value)) return "?";
  if (value < 0.0001) return "<0.0001%";
  if (value >= 99.5) return "100%";
  return `${value.toPrecision(2)}%`;
}

// A share 0..1 as a percentage: whole percents from 10% up ("41%"), two significant digits below
// ("9%", "1.4%", "0.27%").
function share(x) {
  const value = 100 * x;
  if (value >= 10) return `${Math.round(value)}%`;
  if (value >= 0.0001) return `${Number(value.toPrecision(2))}%`;
  return percent(x);
}

const rating = (value) => `${value.toFixed(1)}/10`;

// The show's cover, or a plain box with the title's first letter when it has none or it fails to load.
function cover(item) {
  const placeholder = () => {
    const box = document.createElement("span");
    box.className = "cover placeholder";
    box.setAttribute("aria-hidden", "true");
    box.textContent = (Array.from((item.title || "").trim())[0] || "?").toUpperCase();
    return box;
  };
  if (!item.picture || !/^https?:\/\//i.test(item.picture)) return placeholder();
  const image = document.createElement("img");
  image.className = "cover";
  image.loading = "lazy";
  image.width = 48;
  image.height = 68;
  image.alt = `Cover of ${item.title || `#${item.anime_id}`}`;
  image.addEventListener("error", () => image.replaceWith(placeholder()), { once: true });
  image.src = item.picture;
  return image;
}

// "TV · 2019 · Action, Drama": whatever the answer knows of the show.
function meta(item) {
  const parts = [];
  if (item.media_type) parts.push(MEDIA_NAMES[item.media_type] || item.media_type);
  if (Number.isInteger(item.year)) parts.push(String(item.year));
  if (Array.isArray(item.genres) && item.genres.length) parts.push(item.genres.join(", "));
  const line = document.createElement("div");
  line.className = "meta";
  line.textContent = parts.join(" · ");
  return line;
}

// One show of an answer: cover, title, what is known of it, its figures and what else is given.
function showRow(item, figures, ...more) {
  const row = document.createElement("li");
  const info = document.createElement("div");
  info.className = "info";
  const title = link(item);
  title.classList.add("title");
  const line = document.createElement("div");
  line.className = "figures";
  line.textContent = figures;
  info.append(title, meta(item), line, ...more);
  row.append(cover(item), info);
  return row;
}

function because(contributors) {
  const text = document.createElement("div");
  text.className = "because";
  text.append("because you watched ");
  contributors.forEach((c, i) => {
    if (i) text.append(i === contributors.length - 1 ? " and " : ", ");
    text.append(link(c));
    if (typeof c.share === "number" && c.share > 0) text.append(` (${share(c.share)})`);
  });
  return text;
}

function impact(entry) {
  if (typeof entry.impact !== "number") return "";
  if (entry.impact >= 0 && entry.impact <= 1) return `changes your top 50 by ${share(entry.impact)} on average`;
  return `moves the list by ${entry.impact.toFixed(2)}`; // a service from before impacts were shares
}

function show(result) {
  shownIds.clear();
  $("recommendations").replaceChildren(...result.recommendations.map((item) => showRow(item,
    `predicted rating ${rating(item.predicted_rating)} · probability ${percent(item.probability)}`,
    ...(item.contributors && item.contributors.length ? [because(item.contributors)] : []))));
  $("model").textContent = `Answered by model ${result.model.version}.`;
  const fill = (id, entries, describe) => {
    $(id).replaceChildren(...entries.map((entry) => {
      const row = document.createElement("li");
      const text = describe(entry);
      row.append(link(entry), ...(text ? [" — ", text] : []));
      return row;
    }));
  };
  fill("impactful", result.most_impactful || [], impact);
  fill("surprising", result.most_surprising || [],
    (e) => `you gave ${e.actual}/10, expected ${rating(e.predicted)}`);
  $("results").hidden = false;
  $("profile").hidden = false;
}

// The list the main form names: {username} or {profile} (an uploaded export), or null.
async function source(signal) {
  const username = $("username").value.trim();
  const file = $("export").files[0];
  if (file) return { profile: await profileFromExport(file, signal) };
  return username ? { username } : null;
}

// Anime ids from the predict box: numbers, or titles of shows on the page.
function requestedShows(text) {
  const ids = [];
  for (const token of text.split(",").map((t) => t.trim()).filter(Boolean)) {
    const id = /^#?\d+$/.test(token) ? parseInt(token.replace("#", ""), 10) : shownIds.get(token.toLowerCase());
    if (!Number.isSafeInteger(id) || id < 1) throw new Error(`“${token}” is not an anime id nor a title shown on this page.`);
    if (!ids.includes(id)) ids.push(id);
  }
  if (!ids.length) throw new Error("Enter one or more anime ids, separated by commas.");
  return ids;
}

function showPredictions(result) {
  $("predictions").replaceChildren(...result.predictions.map((item) => showRow(item,
    `probability ${percent(item.probability)} · predicted rating ${rating(item.predicted_rating)}`,
    ...(item.in_profile ? [Object.assign(document.createElement("div"), { className: "help",
      textContent: "On your list: predicted with itself held out." })] : []))));
  const unknown = (result.ignored || []).filter((e) => e.reason === "unknown_show").map((e) => `#${e.anime_id}`);
  $("predict_status").textContent = `${result.predictions.length} shown` +
    (unknown.length ? `; the model does not know ${unknown.join(", ")}.` : ".");
}

async function predict() {
  $("predict_error").hidden = true;
  if (pendingPredict) pendingPredict.abort();
  const controller = new AbortController();
  pendingPredict = controller;
  $("go_predict").disabled = true;
  try {
    const shows = requestedShows($("predict_shows").value);
    const body = await source(controller.signal);
    if (!body) throw new Error("Enter a MyAnimeList username or choose a list export file above first.");
    $("predict_status").textContent = "Predicting…";
    body.shows = shows;
    showPredictions(await answer(await fetch("/predict", { method: "POST", signal: controller.signal,
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })));
  } catch (error) {
    if (error.name !== "AbortError") {
      $("predictions").replaceChildren();
      fail(error.message + (error.retryAfter ? ` (try again in ${error.retryAfter} s)` : ""), "predict_error", "predict_status");
    }
  } finally {
    if (pendingPredict === controller) { pendingPredict = null; $("go_predict").disabled = false; }
  }
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

function fail(message, where = "error", status = "status") {
  $(status).textContent = "";
  $(where).textContent = message.charAt(0).toUpperCase() + message.slice(1);
  $(where).hidden = false;
}

let again = null; // re-ask shortly after a control moves, once results are on screen
function soon() {
  if ($("results").hidden) return;
  clearTimeout(again);
  again = setTimeout(recommend, 250);
}

document.addEventListener("DOMContentLoaded", async () => {
  $("ask").addEventListener("submit", (event) => { event.preventDefault(); recommend(); });
  $("ask_predict").addEventListener("submit", (event) => { event.preventDefault(); predict(); });
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
