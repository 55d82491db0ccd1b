// The page of lfm serve: chat (streamed, with images and voice), corpus search, answers with
// citations, documents added to and deleted from an index, and extraction, over the server's own API. Plain ES modules, no framework, nothing loaded from elsewhere.
import { ApiFailure, apiKey, getJson, request, setApiKey, streamEvents } from "./api.js";
import { citationPieces, highlightPieces } from "./highlight.js";
import { encodeWav, startRecording, toBase64 } from "./wav.js";

const $ = (id) => document.getElementById(id);

/** An element with attributes (`on*` functions become listeners) and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

/** An error as the page shows it: the server's code and message. */
function errorText(e) {
  if (e instanceof ApiFailure) return { code: e.code, message: e.message };
  return { code: "ERROR", message: e?.message ?? String(e) };
}

let toastTimer;
function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), 6000);
}

/** A failure anywhere: 401 opens the key dialog; the rest go where the caller shows them. */
function handleAuth(e) {
  if (e instanceof ApiFailure && e.status === 401) {
    if (!$("key-dialog").open) $("key-dialog").showModal(); // several calls may fail at once
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- tabs and the API key

const TABS = ["chat", "search", "answers", "documents", "extract"];

function showTab(name, focus = false) {
  for (const tab of TABS) {
    const selected = tab === name;
    const button = $(`tab-${tab}`);
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
    if (selected && focus) button.focus();
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

function setUpTabs() {
  for (const tab of TABS) {
    const button = $(`tab-${tab}`);
    button.addEventListener("click", () => showTab(tab));
    button.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (step === 0) return;
      e.preventDefault();
      showTab(TABS[(TABS.indexOf(tab) + step + TABS.length) % TABS.length], true);
    });
  }
  const wanted = location.hash.slice(1);
  showTab(TABS.includes(wanted) ? wanted : "chat");
}

function setUpKeyDialog() {
  const dialog = $("key-dialog");
  $("key-button").addEventListener("click", () => {
    $("key-input").value = apiKey();
    dialog.showModal();
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue !== "save") return;
    setApiKey($("key-input").value.trim());
    loadModels();
    loadIndexes();
  });
}

// ---------------------------------------------------------------- models

let models = [];

const takes = (model, modality) => Boolean(model?.input_modalities?.includes(modality));
const currentModel = () => models.find((m) => m.id === $("chat-model").value);
const speechModel = () => models.find((m) => m.output_modalities?.includes("audio"));
const audioModel = () => models.find((m) => takes(m, "audio"));

function capsText(model) {
  if (!model) return "";
  const inputs = model.input_modalities.filter((m) => m !== "text");
  return inputs.length === 0 ? "text" : `text, ${inputs.join(", ")}`;
}

async function loadModels() {
  try {
    models = (await getJson("/v1/models")).data;
  } catch (e) {
    if (!handleAuth(e)) toast(`Models could not be listed: ${errorText(e).message}`);
    return;
  }
  const chat = $("chat-model");
  const previous = chat.value;
  chat.replaceChildren(...models.map((m) => el("option", { value: m.id, text: `${m.id} (${capsText(m)})` })));
  if (models.some((m) => m.id === previous)) chat.value = previous;
  updateCaps();
  // Answers are written by a text-only LFM2 model (the route refuses the others).
  const writers = models.filter((m) => m.input_modalities.length === 1 && takes(m, "text") && !m.output_modalities.includes("audio"));
  const answersModel = $("answers-model");
  const previousWriter = answersModel.value;
  answersModel.replaceChildren(...writers.map((m) => el("option", { value: m.id, text: m.id })));
  if (writers.some((m) => m.id === previousWriter)) answersModel.value = previousWriter;
  updateAnswersButton();
  const vision = models.filter((m) => takes(m, "image"));
  const extract = $("extract-model");
  extract.replaceChildren(...vision.map((m) => el("option", { value: m.id, text: m.id })));
  $("extract-button").disabled = vision.length === 0;
  if (vision.length === 0) $("extract-status").textContent = "This server offers no LFM2-VL model, which extraction needs.";
}

function updateCaps() {
  const model = currentModel();
  $("chat-model-caps").textContent = model ? `reads ${capsText(model)}` : "no models";
  $("attach-button").disabled = !models.some((m) => takes(m, "image"));
  $("record-button").disabled = !audioModel() || !navigator.mediaDevices?.getUserMedia;
}

// ---------------------------------------------------------------- chat

const chat = {
  /** The conversation in OpenAI's message format (what is sent each turn). */
  messages: [],
  images: [],
  /** { wav: Uint8Array, seconds, url } */
  audio: null,
  controller: null,
  recorder: null,
};

function hint(text) {
  $("chat-hint").textContent = text;
}

function clearEmpty() {
  $("chat-empty")?.remove();
}

function scrollLog() {
  const log = $("chat-log");
  log.scrollTop = log.scrollHeight;
}

/** Switches the model picker to one that reads `modality`, when the current one does not. */
function ensureModelTakes(modality) {
  if (takes(currentModel(), modality)) return true;
  const fit = models.find((m) => takes(m, modality));
  if (!fit) return false;
  $("chat-model").value = fit.id;
  updateCaps();
  hint(`Switched to ${fit.id}, which reads ${modality === "image" ? "images" : "audio"}.`);
  return true;
}

function renderAttachments() {
  const box = $("attachments");
  const items = chat.images.map((image, i) =>
    el(
      "figure",
      { class: "attachment" },
      el("img", { src: image.url, alt: `Attached image ${image.name}` }),
      el("button", { type: "button", class: "remove", "aria-label": `Remove ${image.name}`, onclick: () => (chat.images.splice(i, 1), renderAttachments()) }, "×"),
    ),
  );
  if (chat.audio) {
    items.push(
      el(
        "figure",
        { class: "attachment audio" },
        el("audio", { src: chat.audio.url, controls: true, "aria-label": "Your recording" }),
        el("figcaption", { text: `${chat.audio.seconds.toFixed(1)} s` }),
        el("button", { type: "button", class: "remove", "aria-label": "Remove the recording", onclick: () => (URL.revokeObjectURL(chat.audio.url), (chat.audio = null), renderAttachments()) }, "×"),
      ),
    );
  }
  box.replaceChildren(...items);
  box.hidden = items.length === 0;
}

const MAX_IMAGE_BYTES = 20 * 1024 * 1024;

async function attachImage(file) {
  if (!file.type.startsWith("image/")) {
    hint(`${file.name || "That file"} is not an image.`);
    return;
  }
  if (file.size > MAX_IMAGE_BYTES) {
    hint(`${file.name} is ${(file.size / 1024 ** 2).toFixed(0)} MB; images up to 20 MB can be sent.`);
    return;
  }
  if (!ensureModelTakes("image")) {
    hint("No model here reads images (an LFM2-VL model does).");
    return;
  }
  const url = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  chat.images.push({ url, name: file.name || "pasted image" });
  renderAttachments();
}

function setUpImageInput() {
  const input = $("image-input");
  $("attach-button").addEventListener("click", () => input.click());
  input.addEventListener("change", async () => {
    for (const file of input.files) await attachImage(file);
    input.value = "";
  });
  $("chat-input").addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith("image/"));
    if (files.length === 0) return;
    e.preventDefault();
    for (const file of files) attachImage(file);
  });
  const panel = $("panel-chat");
  const overlay = $("drop-overlay");
  let depth = 0;
  const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes("Files");
  panel.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    depth++;
    overlay.hidden = false;
  });
  panel.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) overlay.hidden = true;
  });
  panel.addEventListener("dragover", (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  panel.addEventListener("drop", async (e) => {
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    for (const file of e.dataTransfer?.files ?? []) await attachImage(file);
  });
}

function setUpRecording() {
  const button = $("record-button");
  let started = 0;
  let timer;
  button.addEventListener("click", async () => {
    if (chat.recorder) {
      const recorder = chat.recorder;
      chat.recorder = null;
      clearInterval(timer);
      button.classList.remove("recording");
      button.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-label", "Record a voice message");
      try {
        const { wav, seconds } = await recorder.stop();
        if (chat.audio) URL.revokeObjectURL(chat.audio.url);
        chat.audio = { wav, seconds, url: URL.createObjectURL(new Blob([wav], { type: "audio/wav" })) };
        hint(takes(currentModel(), "audio") ? "The recording goes to the model with your next message." : `The recording will be transcribed by ${audioModel()?.id} and sent as text.`);
        renderAttachments();
      } catch (e) {
        hint(`The recording failed: ${e.message}`);
      }
      return;
    }
    try {
      chat.recorder = await startRecording();
    } catch (e) {
      hint(e.name === "NotAllowedError" ? "The browser was not allowed to use the microphone." : `The microphone could not be opened: ${e.message}`);
      return;
    }
    started = Date.now();
    button.classList.add("recording");
    button.setAttribute("aria-pressed", "true");
    button.setAttribute("aria-label", "Stop recording");
    hint("Recording… press the microphone again to stop.");
    timer = setInterval(() => hint(`Recording… ${((Date.now() - started) / 1000).toFixed(0)} s (press the microphone again to stop)`), 500);
  });
}

function setBusy(busy) {
  $("send-button").hidden = busy;
  $("stop-button").hidden = !busy;
  $("chat-model").disabled = busy;
}

/** A message bubble in the log. */
function bubble(role, ...children) {
  clearEmpty();
  const node = el("article", { class: `message ${role}`, "aria-label": role === "user" ? "You" : role === "assistant" ? "Assistant" : "Error" }, ...children);
  $("chat-log").append(node);
  scrollLog();
  return node;
}

function errorBubble(e) {
  const { code, message } = errorText(e);
  bubble("error", el("strong", { class: "code", text: code }), el("span", { text: ` ${message}` }));
}

function usageText(usage, timings) {
  const parts = [];
  if (usage) parts.push(`${usage.completion_tokens} tokens`);
  if (timings?.tokens_per_s) parts.push(`${timings.tokens_per_s.toFixed(1)} tok/s`);
  if (timings?.prompt_ms !== undefined) parts.push(`first token ${Math.round(timings.prompt_ms)} ms`);
  return parts.join(" · ");
}

async function speak(text, holder, button) {
  const model = speechModel();
  if (!model) return;
  button.disabled = true;
  button.textContent = "Speaking…";
  try {
    const input = text.slice(0, 4096);
    // A bound on the audio length (12.5 frames a second): about three times what the text needs.
    const maxFrames = Math.min(7500, 40 + Math.ceil(input.length * 2));
    const res = await request("/v1/audio/speech", { method: "POST", json: { model: model.id, input, response_format: "pcm", max_frames: maxFrames } });
    const rate = Number(res.headers.get("x-sample-rate")) || 24000;
    const bytes = await res.arrayBuffer();
    const samples = new Int16Array(bytes, 0, Math.floor(bytes.byteLength / 2));
    const url = URL.createObjectURL(new Blob([encodeWav(samples, rate)], { type: "audio/wav" }));
    holder.querySelector("audio")?.remove();
    const audio = el("audio", { src: url, controls: true, "aria-label": "Spoken reply" });
    holder.append(audio);
    audio.play().catch(() => {}); // autoplay may be refused; the controls remain
  } catch (e) {
    if (!handleAuth(e)) holder.append(el("p", { class: "inline-error", role: "alert", text: `${errorText(e).code}: ${errorText(e).message}` }));
  } finally {
    button.disabled = false;
    button.textContent = "Speak";
  }
}

/** The user's turn as OpenAI content parts (a plain string when it is only text). */
function userContent(text) {
  const parts = [];
  for (const image of chat.images) parts.push({ type: "image_url", image_url: { url: image.url } });
  if (chat.audio && takes(currentModel(), "audio")) parts.push({ type: "input_audio", input_audio: { data: toBase64(chat.audio.wav), format: "wav" } });
  if (text) parts.push({ type: "text", text });
  return parts.length === 1 && parts[0].type === "text" ? text : parts;
}

async function transcribeRecording(signal) {
  const model = audioModel();
  const form = new FormData();
  form.append("file", new Blob([chat.audio.wav], { type: "audio/wav" }), "recording.wav");
  form.append("model", model.id);
  const res = await request("/v1/audio/transcriptions", { method: "POST", form, signal });
  return (await res.json()).text.trim();
}

async function send() {
  if (chat.controller) return;
  const model = currentModel();
  if (!model) {
    hint("No model to talk to: the model list did not load.");
    return;
  }
  let text = $("chat-input").value.trim();
  if (!text && chat.images.length === 0 && !chat.audio) return;
  if (chat.images.length > 0 && !takes(model, "image")) {
    hint(`${model.id} does not read images: pick a model that does, or remove the image.`);
    return;
  }
  const controller = new AbortController();
  chat.controller = controller;
  setBusy(true);
  hint("");
  try {
    // A recording for a model that does not hear: its transcript is the message.
    if (chat.audio && !takes(model, "audio")) {
      hint(`Transcribing with ${audioModel().id}…`);
      const transcript = await transcribeRecording(controller.signal);
      text = [text, transcript].filter(Boolean).join("\n");
      hint("");
    }
    const content = userContent(text);
    const shown = [];
    for (const image of chat.images) shown.push(el("img", { src: image.url, alt: image.name, class: "thumb" }));
    if (chat.audio) shown.push(el("audio", { src: chat.audio.url, controls: true, "aria-label": "Your recording" }));
    if (text) shown.push(el("p", { class: "text", text }));
    bubble("user", ...shown);
    chat.messages.push({ role: "user", content });
    chat.images = [];
    chat.audio = null;
    renderAttachments();
    $("chat-input").value = "";
    autoGrow();
    await streamReply(model, controller);
  } catch (e) {
    if (e.name === "AbortError") hint("Stopped.");
    else if (!handleAuth(e)) errorBubble(e);
  } finally {
    chat.controller = null;
    setBusy(false);
    $("chat-input").focus();
  }
}

async function streamReply(model, controller) {
  const body = el("p", { class: "text" });
  const meta = el("p", { class: "meta", text: "…" });
  const node = bubble("assistant", el("header", { class: "who", text: model.id }), body, meta);
  node.setAttribute("aria-busy", "true");
  node.dataset.chunks = "0";
  let reply = "";
  let usage;
  let timings;
  let finish;
  const system = $("chat-system").value.trim();
  const maxTokens = Number($("chat-max-tokens").value) || 256;
  const temperature = $("chat-temperature").value === "" ? undefined : Number($("chat-temperature").value);
  const payload = {
    model: model.id,
    messages: system ? [{ role: "system", content: system }, ...chat.messages] : chat.messages,
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: maxTokens,
    ...(temperature === undefined ? {} : { temperature }),
  };
  try {
    await streamEvents(
      "/v1/chat/completions",
      payload,
      (chunk) => {
        const choice = chunk.choices?.[0];
        if (choice?.delta?.content) {
          reply += choice.delta.content;
          body.textContent = reply;
          node.dataset.chunks = String(Number(node.dataset.chunks) + 1);
          scrollLog();
        }
        if (choice?.finish_reason) finish = choice.finish_reason;
        if (chunk.usage) {
          usage = chunk.usage;
          timings = chunk.timings;
        }
      },
      controller.signal,
    );
  } catch (e) {
    if (e.name !== "AbortError") {
      node.removeAttribute("aria-busy");
      if (reply === "") node.remove();
      else meta.textContent = "interrupted";
      throw e;
    }
    meta.textContent = "stopped";
  }
  node.removeAttribute("aria-busy");
  node.dataset.done = "true";
  if (reply !== "") chat.messages.push({ role: "assistant", content: reply });
  if (finish) {
    const parts = [usageText(usage, timings)];
    if (finish === "length") parts.push("cut at max tokens");
    meta.textContent = parts.filter(Boolean).join(" · ");
  }
  if (reply !== "" && speechModel()) {
    const button = el("button", { type: "button", class: "ghost small speak", onclick: () => speak(reply, node, button) }, "Speak");
    meta.append(" ", button);
  }
}

function autoGrow() {
  const input = $("chat-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
}

function setUpChat() {
  $("chat-model").addEventListener("change", updateCaps);
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("stop-button").addEventListener("click", () => chat.controller?.abort());
  const input = $("chat-input");
  input.addEventListener("input", autoGrow);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $("chat-new").addEventListener("click", () => {
    chat.controller?.abort();
    chat.messages = [];
    $("chat-log").replaceChildren(el("div", { class: "empty", id: "chat-empty" }, el("h1", { text: "Ask the local models" }), el("p", { text: "Type a message, attach or paste an image, or record your voice. The models run on this server; nothing is sent anywhere else." })));
    hint("");
  });
  setUpImageInput();
  setUpRecording();
}

// ---------------------------------------------------------------- search

/** The indexes as last listed (GET /v1/indexes): the search, answers and documents panels pick from them. */
let indexes = [];

async function loadIndexes() {
  try {
    indexes = (await getJson("/v1/indexes")).data;
  } catch (e) {
    if (!handleAuth(e)) $("search-status").textContent = `Indexes could not be listed: ${errorText(e).message}`;
    return;
  }
  for (const id of ["search-index", "answers-index", "documents-index"]) {
    const select = $(id);
    const previous = select.value;
    select.replaceChildren(...indexes.map((ix) => el("option", { value: ix.id, text: `${ix.id} (${ix.documents} passages)` })));
    if (indexes.some((ix) => ix.id === previous)) select.value = previous;
  }
  const none = indexes.length === 0;
  const noneText = "No indexes here. Build one with lfm index add --index DIR/NAME FILES… and start lfm serve with --indexes-dir DIR.";
  $("search-button").disabled = none;
  $("search-status").textContent = none ? noneText : "";
  $("documents-add").disabled = none;
  $("documents-delete").disabled = none;
  if (none) $("documents-status").textContent = noneText;
  updateAnswersButton();
  if (none) $("answers-status").textContent = noneText;
}

/** An error shown in a status line: its code in bold, then the server's message. */
function showError(status, e, advice = "") {
  const { code, message } = errorText(e);
  status.replaceChildren(el("span", { class: "inline-error", role: "alert" }, el("strong", { text: code }), ` ${message}`, advice ? el("span", { class: "advice", text: ` ${advice}` }) : null));
}

/** A passage as a list item: its rank, where it comes from, its score, its text with the query's terms marked. */
function passage(hit, query, rank, attrs = {}) {
  const page = hit.metadata?.page ?? hit.page;
  const where = [hit.source || hit.id, typeof page === "number" ? `page ${page}` : null].filter(Boolean).join(" · ");
  const text = el("p", { class: "passage" });
  for (const piece of highlightPieces(hit.text, query)) text.append(piece.mark ? el("mark", { text: piece.text }) : piece.text);
  return el(
    "li",
    { class: "hit", ...attrs },
    el("header", {}, el("span", { class: "rank", text: String(rank) }), el("span", { class: "source", text: where }), el("span", { class: "score", title: "MaxSim score", text: hit.score.toFixed(2) })),
    text,
  );
}

function setUpSearch() {
  $("search-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const query = $("search-query").value.trim();
    const index = $("search-index").value;
    if (!query || !index) return;
    const button = $("search-button");
    button.disabled = true;
    $("search-status").textContent = "Searching…";
    try {
      const k = Number($("search-k").value) || 10;
      const result = await (await request("/v1/search", { method: "POST", json: { index, query, k } })).json();
      $("search-results").replaceChildren(...result.data.map((hit, i) => passage(hit, query, i + 1)));
      $("search-status").textContent = `${result.data.length} passage${result.data.length === 1 ? "" : "s"} in ${result.timings.total_ms} ms`;
    } catch (e) {
      if (!handleAuth(e)) showError($("search-status"), e);
    } finally {
      button.disabled = false;
    }
  });
}

// ---------------------------------------------------------------- answers

/** Server-sent events need a readable response body and a text decoder stream; else one JSON reply. */
const CAN_STREAM = typeof TextDecoderStream === "function" && typeof ReadableStream === "function" && "body" in Response.prototype;

let answersController = null;

function updateAnswersButton() {
  $("answers-button").disabled = answersController !== null || indexes.length === 0 || $("answers-model").options.length === 0;
}

/** The answer's text with each citation a link to its passage below. */
function renderAnswerText(text, given) {
  const box = $("answers-text");
  box.replaceChildren();
  for (const piece of citationPieces(text)) {
    if (piece.text !== undefined) {
      box.append(piece.text);
      continue;
    }
    const links = piece.cite.map((n, i) => [i > 0 ? ", " : "", n >= 1 && n <= given ? el("a", { class: "cite", href: `#answer-passage-${n}`, "aria-label": `passage ${n}`, onclick: (e) => (e.preventDefault(), showPassage(n)) }, String(n)) : String(n)]);
    box.append("[", ...links.flat(), "]");
  }
}

/** Scrolls to passage `n` and flashes it (the link's target, without changing the page's #tab). */
function showPassage(n) {
  const item = document.getElementById(`answer-passage-${n}`);
  if (!item) return;
  item.scrollIntoView({ block: "nearest", behavior: "smooth" });
  item.classList.remove("flash");
  void item.offsetWidth; // restarts the animation
  item.classList.add("flash");
  item.focus({ preventScroll: true });
}

function renderAnswer(result, question) {
  const cited = new Set(result.citations.map((c) => c.n));
  const answer = $("answers-answer");
  answer.hidden = false;
  answer.classList.toggle("abstained", result.abstained);
  if (result.abstained) {
    // Retrieval found nothing close enough: no model ran; the passages show how close they came.
    const best = result.best_score === null ? "no passage" : `the best passage scored ${result.best_score.toFixed(2)}`;
    $("answers-text").replaceChildren(el("strong", { text: "No answer. " }), result.answer);
    $("answers-meta").textContent = `The index does not seem to cover this question: ${best}, below the minimum of ${result.min_score.value.toFixed(2)} (${result.min_score.source}). Lower the minimum score in the settings to answer anyway.`;
  } else {
    renderAnswerText(result.answer, result.passages.length);
    const parts = [`${result.citations.length} cited passage${result.citations.length === 1 ? "" : "s"}`];
    if (result.unsupported_citations.length > 0) parts.push(`citations removed (no such passage): ${result.unsupported_citations.join(", ")}`);
    if (result.finish_reason === "length") parts.push("cut at max tokens");
    parts.push(`retrieval ${result.timings.retrieval_ms} ms`, `${result.timings.tokens} tokens`, `total ${(result.timings.total_ms / 1000).toFixed(1)} s`);
    $("answers-meta").textContent = parts.join(" · ");
  }
  // Cited passages first, in the order the answer cites them; then the others it was given.
  const order = [...result.citations.map((c) => c.n), ...result.passages.map((p) => p.n).filter((n) => !cited.has(n))];
  const byN = new Map(result.passages.map((p) => [p.n, p]));
  const items = order.map((n) => {
    const p = byN.get(n);
    const item = passage(p, question, n, { id: `answer-passage-${n}`, tabindex: "-1", "data-cited": cited.has(n) ? "true" : "false" });
    if (cited.has(n)) item.classList.add("cited");
    item.querySelector("header").append(el("span", { class: cited.has(n) ? "badge" : "badge muted", text: cited.has(n) ? "cited" : "not cited" }));
    return item;
  });
  $("answers-passages").replaceChildren(...items);
  $("answers-passages-title").hidden = items.length === 0;
  $("answers-passages-title").textContent = result.abstained ? "The closest passages (below the minimum score)" : "Passages given to the model";
}

function setUpAnswers() {
  $("answers-stop").addEventListener("click", () => answersController?.abort());
  $("answers-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const question = $("answers-question").value.trim();
    const index = $("answers-index").value;
    const model = $("answers-model").value;
    if (!question || !index || !model || answersController) return;
    const body = { index, model, question, k: Number($("answers-k").value) || 5, max_tokens: Number($("answers-max-tokens").value) || 256 };
    if ($("answers-min-score").value !== "") body.min_score = Number($("answers-min-score").value);
    if ($("answers-strict").checked) body.strict_citations = true;
    const status = $("answers-status");
    const answer = $("answers-answer");
    const controller = new AbortController();
    answersController = controller;
    updateAnswersButton();
    $("answers-stop").hidden = false;
    answer.hidden = true;
    answer.removeAttribute("data-done");
    answer.dataset.deltas = "0";
    $("answers-passages").replaceChildren();
    $("answers-passages-title").hidden = true;
    $("answers-meta").textContent = "";
    status.textContent = `Retrieving passages from ${index}…`;
    let streamed = "";
    try {
      let result;
      if (CAN_STREAM) {
        await streamEvents(
          "/v1/answers",
          { ...body, stream: true },
          (event) => {
            if (event.object === "answer.delta") {
              if (streamed === "") {
                status.textContent = "Writing the answer…";
                answer.hidden = false;
                answer.setAttribute("aria-busy", "true");
              }
              streamed += event.delta;
              answer.dataset.deltas = String(Number(answer.dataset.deltas) + 1);
              $("answers-text").textContent = streamed;
            } else if (event.object === "answer") result = event;
          },
          controller.signal,
        );
      } else result = await (await request("/v1/answers", { method: "POST", json: body, signal: controller.signal })).json();
      if (!result) throw new ApiFailure(200, "STREAM_ERROR", "the answer's stream ended before its result.");
      renderAnswer(result, question);
      status.textContent = result.abstained ? "" : `Answered by ${result.model} from ${result.passages.length} passage${result.passages.length === 1 ? "" : "s"} of ${result.index}.`;
      answer.dataset.done = "true";
    } catch (err) {
      if (err.name === "AbortError") status.textContent = streamed ? "Stopped; the answer above is incomplete." : "Stopped.";
      else if (!handleAuth(err)) showError(status, err);
    } finally {
      answer.removeAttribute("aria-busy");
      answersController = null;
      $("answers-stop").hidden = true;
      updateAnswersButton();
    }
  });
}

// ---------------------------------------------------------------- documents

/** What an error means for someone adding or deleting a document, beside the server's message. */
function documentAdvice(e) {
  if (!(e instanceof ApiFailure)) return "";
  if (e.code === "INDEX_LOCKED") return "Another writer holds this index (an lfm index add, or another server); try again when it has finished.";
  if (e.code === "REQUEST_TOO_LARGE" || e.status === 413) return "The text is larger than this server takes (lfm serve --max-body).";
  return "";
}

/** The documents added from this page, newest first: { index, source, added, generation, removed? }. */
const sessionDocuments = [];

/** A delete path: the source or id's segments each encoded (a source may be a path with slashes). */
function documentPath(id, index) {
  return `/v1/documents/${id.split("/").map(encodeURIComponent).join("/")}?index=${encodeURIComponent(index)}`;
}

function renderDocuments() {
  $("documents-empty").hidden = sessionDocuments.length > 0;
  $("documents-list").replaceChildren(
    ...sessionDocuments.map((doc) =>
      el(
        "li",
        { class: doc.removed ? "doc removed" : "doc", "data-source": doc.source },
        el("div", { class: "doc-main" }, el("strong", { class: "doc-source", text: doc.source }), el("span", { class: "doc-info", text: doc.removed ? `deleted from ${doc.index}` : `${doc.index} · ${doc.added.length} passage${doc.added.length === 1 ? "" : "s"} · generation ${doc.generation}` })),
        doc.removed ? null : el("button", { type: "button", class: "ghost small", "aria-label": `Delete ${doc.source}`, onclick: () => deleteDocument(doc.source, doc.index) }, "Delete"),
      ),
    ),
  );
}

async function deleteDocument(id, index) {
  const status = $("documents-delete-status");
  status.textContent = `Deleting ${id} from ${index}…`;
  try {
    const result = await (await request(documentPath(id, index), { method: "DELETE" })).json();
    status.textContent = `Deleted ${result.removed.length} passage${result.removed.length === 1 ? "" : "s"} of ${id} from ${index} (generation ${result.generation}).`;
    for (const doc of sessionDocuments) {
      if (doc.index !== index || doc.removed) continue;
      // A source deletes the whole document; a passage id only that passage.
      if (doc.source === id) doc.removed = true;
      else doc.added = doc.added.filter((p) => !result.removed.includes(p));
      if (doc.added.length === 0) doc.removed = true;
    }
    renderDocuments();
    loadIndexes();
  } catch (e) {
    if (!handleAuth(e)) showError(status, e, documentAdvice(e));
  }
}

const MAX_DOCUMENT_FILE_BYTES = 16 * 1024 * 1024;

async function readTextFile(file) {
  if (file.size > MAX_DOCUMENT_FILE_BYTES) throw new Error(`${file.name} is ${(file.size / 1024 ** 2).toFixed(0)} MB; text files up to 16 MB can be added.`);
  const text = await file.text();
  // A NUL or a run of replacement characters: bytes that are not UTF-8 text (a PDF, an image).
  if (text.includes("\u0000") || (text.match(/\uFFFD/g)?.length ?? 0) > 8) throw new Error(`${file.name} is not a text file; add text (lfm index add reads PDFs and images).`);
  return text;
}

function setUpDocuments() {
  const input = $("documents-file");
  const drop = $("documents-drop");
  const take = async (file) => {
    const status = $("documents-status");
    try {
      $("documents-text").value = await readTextFile(file);
      $("documents-file-name").textContent = file.name;
      if (!$("documents-source").value.trim()) $("documents-source").value = file.name;
      status.textContent = "";
    } catch (e) {
      status.replaceChildren(el("span", { class: "inline-error", role: "alert" }, e.message));
    }
  };
  input.addEventListener("change", () => input.files[0] && take(input.files[0]));
  onFilesDropped(drop, (files) => take(files[0]));
  $("documents-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const status = $("documents-status");
    const index = $("documents-index").value;
    const source = $("documents-source").value.trim();
    const text = $("documents-text").value;
    if (!index) return;
    if (!source || !text.trim()) {
      status.textContent = !source ? "Give the document a source (its name)." : "Type some text or choose a text file.";
      return;
    }
    const button = $("documents-add");
    button.disabled = true;
    status.textContent = `Adding ${source} to ${index}…`;
    try {
      const result = await (await request("/v1/documents", { method: "POST", json: { index, source, text } })).json();
      const replaced = result.removed.length > 0 || sessionDocuments.some((d) => d.index === index && d.source === source && !d.removed);
      for (let i = sessionDocuments.length - 1; i >= 0; i--) if (sessionDocuments[i].index === index && sessionDocuments[i].source === source) sessionDocuments.splice(i, 1);
      sessionDocuments.unshift({ index, source, added: result.added, generation: result.generation });
      renderDocuments();
      status.textContent = `${replaced ? "Replaced" : "Added"} ${source}: ${result.added.length} passage${result.added.length === 1 ? "" : "s"} in ${index} (generation ${result.generation}, ${result.timings.total_ms} ms).`;
      $("documents-text").value = "";
      $("documents-source").value = "";
      $("documents-file-name").textContent = "Choose a text file";
      input.value = "";
      loadIndexes();
    } catch (err) {
      if (!handleAuth(err)) showError(status, err, documentAdvice(err));
    } finally {
      button.disabled = indexes.length === 0;
    }
  });
  $("documents-delete-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("documents-delete-id").value.trim();
    const index = $("documents-index").value;
    if (!id || !index) return;
    deleteDocument(id, index);
  });
}

// ---------------------------------------------------------------- extraction

const EXAMPLE_SCHEMA = {
  type: "object",
  properties: {
    title: { type: "string", description: "The document's title" },
    date: { type: ["string", "null"], description: "The date, as written" },
    total: { type: ["number", "null"], description: "The total amount" },
  },
  required: ["title", "date", "total"],
  additionalProperties: false,
};

/** Marks `zone` while files are dragged over it and hands dropped files (at least one) to `take`. */
function onFilesDropped(zone, take) {
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer?.files.length) take(e.dataTransfer.files);
  });
}

function setUpExtract() {
  $("extract-schema").value = JSON.stringify(EXAMPLE_SCHEMA, null, 2);
  const input = $("extract-file");
  const drop = $("extract-drop");
  const showName = () => ($("extract-file-name").textContent = input.files[0]?.name ?? "Choose a PDF or an image");
  input.addEventListener("change", showName);
  onFilesDropped(drop, (files) => {
    input.files = files;
    showName();
  });
  let lastJson = "";
  $("extract-copy").addEventListener("click", () => navigator.clipboard?.writeText(lastJson).then(() => toast("JSON copied.")));
  $("extract-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const status = $("extract-status");
    const file = input.files[0];
    if (!file) {
      status.textContent = "Choose a document first.";
      return;
    }
    const schema = $("extract-schema").value;
    try {
      JSON.parse(schema);
    } catch (err) {
      status.replaceChildren(el("span", { class: "inline-error", role: "alert" }, el("strong", { text: "SCHEMA_INVALID" }), ` the schema is not JSON: ${err.message}`));
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("schema", schema);
    if ($("extract-model").value) form.append("model", $("extract-model").value);
    const button = $("extract-button");
    button.disabled = true;
    status.textContent = `Reading ${file.name}…`;
    $("extract-json").hidden = true;
    $("extract-fields").hidden = true;
    try {
      const result = await (await request("/v1/extract", { method: "POST", form })).json();
      lastJson = JSON.stringify(result.data, null, 2);
      $("extract-json").textContent = lastJson;
      $("extract-json").hidden = false;
      $("extract-copy").disabled = false;
      const rows = Object.entries(result.confidence).map(([pointer, logprob]) =>
        el("tr", {}, el("td", { class: "mono", text: pointer }), el("td", { text: String(result.provenance[pointer]?.page ?? "") }), el("td", { text: `${Math.round(Math.exp(logprob) * 100)}%` })),
      );
      $("extract-fields").tBodies[0].replaceChildren(...rows);
      $("extract-fields").hidden = rows.length === 0;
      const routes = result.pages.map((p) => `page ${p.page}: ${p.route === "text" ? "text layer" : "image"}`).join(", ");
      status.textContent = `${result.filename} · ${routes} · ${(result.timings.total_ms / 1000).toFixed(1)} s`;
    } catch (err) {
      if (!handleAuth(err)) showError(status, err);
    } finally {
      button.disabled = false;
    }
  });
}

// ----------------------------------------------------------------

setUpTabs();
setUpKeyDialog();
setUpChat();
setUpSearch();
setUpAnswers();
setUpDocuments();
setUpExtract();
await Promise.all([loadModels(), loadIndexes()]);
document.body.dataset.ready = "true";
