/**
 * The web page of `lfm serve`, end to end in headless Chromium (Debian's `chromium`, which .ci/run
 * installs; driven by playwright-core, which downloads no browser): chat with a streamed reply, an
 * image by file input, drag and drop and paste, a recorded voice message (Chromium's fake
 * microphone), a spoken reply, search with the query terms marked, answers with citations linked to
 * their passages (and the "no answer" state), documents added, listed and deleted (and a locked
 * index), extraction to JSON, errors.
 *
 * Without a Chromium the tests are skipped with a message, except on CI (CI=true), where that is a
 * failure. LFM_WEB_SCREENSHOTS=1 also writes docs/images/serve-*.png (desktop 1280×800, tablet 768×1024).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, type Page, chromium } from "playwright-core";
import { IndexWriter } from "../../retrieval/index/writer.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makePdf } from "../helpers/pdfs.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";
import { type TestServer, indexFiles, startTestServer } from "./server-harness.ts";

const CANDIDATES = [process.env.LFM_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
const CHROMIUM = CANDIDATES.find((path): path is string => typeof path === "string" && path !== "" && existsSync(path));
const ON_CI = process.env.CI === "true";
const SCREENSHOTS = process.env.LFM_WEB_SCREENSHOTS === "1";
const DOCS_IMAGES = join(import.meta.dirname, "..", "..", "docs", "images");
const IMAGE = join(FIXTURES, "vision", "images", "photo_320x240.jpg");

if (!CHROMIUM && !ON_CI) console.warn("web page tests skipped: no Chromium found (apt-get install chromium, or set LFM_CHROMIUM=/path/to/chrome)");

it.runIf(ON_CI)("CI has a Chromium for the web page tests", () => {
  expect(CHROMIUM, `none of ${CANDIDATES.filter(Boolean).join(", ")} exists; .ci/run installs Debian's chromium`).toBeDefined();
});

describe.skipIf(!CHROMIUM)("the web page in Chromium", () => {
  let dir: string;
  let indexes: string;
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  /** Uncaught errors in the page: none may happen. */
  const pageErrors: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "lfm-web-page-"));
    indexes = indexFiles(dir, "maintenance", {
      "pump-log.txt": "Pump 7 pressure dropped to 31 bar at 08:15; the pressure relief valve was replaced at 09:40.",
      "boiler.txt": "The boiler feed water stays between 80 and 90 degrees during the morning shift.",
    });
    writeFileSync(join(dir, "serial.pdf"), await makePdf([["Serial number: SN-4471", "Status: ok"]]));
    writeFileSync(join(dir, "shift-notes.txt"), "Night shift: the conveyor belt motor overheated twice; its bearing was greased at 03:10.");
    server = await startTestServer({ search: { indexesDir: indexes, load: { cacheDir: TEST_CACHE } } });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // A container has no sandbox to offer; the fake devices give getUserMedia a microphone (a tone).
      args: ["--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required"],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.grantPermissions(["microphone", "clipboard-read", "clipboard-write"], { origin: server.url });
    page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(server.url);
    await page.waitForSelector("body[data-ready=true]");
    // Short replies keep the tests fast.
    await setMaxTokens(12);
  }, 400_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The last assistant reply once finished: its text and how many deltas it arrived in. */
  async function lastReply(): Promise<{ text: string; chunks: number }> {
    const reply = page.locator("article.message.assistant").last();
    await reply.and(page.locator("[data-done=true]")).waitFor({ timeout: 90_000 });
    return { text: (await reply.locator("p.text").textContent()) ?? "", chunks: Number(await reply.getAttribute("data-chunks")) };
  }

  async function setMaxTokens(n: number): Promise<void> {
    await page.evaluate((value) => ((document.getElementById("chat-max-tokens") as HTMLInputElement).value = String(value)), n);
  }

  async function sendMessage(text: string): Promise<void> {
    await page.fill("#chat-input", text);
    await page.press("#chat-input", "Enter");
  }

  it("lists the models and streams a chat reply into the page", async () => {
    const options = await page.locator("#chat-model option").allTextContents();
    expect(options).toEqual(["tiny-lfm2 (text)", "tiny-lfm2-vl (text, image)", "tiny-lfm2-audio (text, audio)"]);
    await setMaxTokens(64);
    await sendMessage("Hello, how is pump 7?");
    await expect.poll(() => page.locator("article.message.user").last().textContent()).toContain("Hello, how is pump 7?");
    const { text, chunks } = await lastReply();
    expect(text.length).toBeGreaterThan(0);
    expect(chunks).toBeGreaterThan(1); // it arrived as a stream, piece by piece
    expect(await page.locator("article.message.assistant .meta").last().textContent()).toMatch(/\d+ tokens/);
    expect(await page.isVisible("#send-button")).toBe(true);
    expect(await page.isHidden("#stop-button")).toBe(true);
    await setMaxTokens(12);
  });

  it("stops a reply with the stop button", async () => {
    await setMaxTokens(4000);
    await sendMessage("Write a long report.");
    await page.locator("#stop-button").waitFor({ state: "visible" });
    // Text shows while the reply is still being written.
    await page.locator("article.message.assistant[aria-busy=true]:not([data-chunks='0'])").waitFor();
    await page.click("#stop-button");
    await page.locator("#send-button").waitFor({ state: "visible" });
    expect(await page.locator("article.message.assistant .meta").last().textContent()).toContain("stopped");
    await setMaxTokens(12);
  });

  it("sends an image from the file input to the vision model", async () => {
    await page.selectOption("#chat-model", "tiny-lfm2");
    await page.setInputFiles("#image-input", IMAGE);
    await page.locator("#attachments img").waitFor();
    expect(await page.inputValue("#chat-model")).toBe("tiny-lfm2-vl"); // switched to a model that reads images
    await sendMessage("What is in this picture?");
    await page.locator("article.message.user img.thumb").last().waitFor();
    const { text } = await lastReply();
    expect(text.length).toBeGreaterThan(0);
    if (SCREENSHOTS) {
      mkdirSync(DOCS_IMAGES, { recursive: true });
      await page.screenshot({ path: join(DOCS_IMAGES, "serve-desktop.png") });
      await page.setViewportSize({ width: 768, height: 1024 });
      await page.screenshot({ path: join(DOCS_IMAGES, "serve-tablet.png") });
      await page.setViewportSize({ width: 1280, height: 800 });
    }
  });

  it("takes an image by drag and drop and by paste", async () => {
    const bytes = [...readFileSync(IMAGE)];
    const transfer = await page.evaluateHandle((data) => {
      const t = new DataTransfer();
      t.items.add(new File([new Uint8Array(data)], "dropped.jpg", { type: "image/jpeg" }));
      return t;
    }, bytes);
    await page.dispatchEvent("#panel-chat", "dragenter", { dataTransfer: transfer });
    expect(await page.isVisible("#drop-overlay")).toBe(true);
    await page.dispatchEvent("#panel-chat", "drop", { dataTransfer: transfer });
    await page.locator("#attachments img[alt='Attached image dropped.jpg']").waitFor();
    expect(await page.isHidden("#drop-overlay")).toBe(true);
    await page.evaluate((data) => {
      const t = new DataTransfer();
      t.items.add(new File([new Uint8Array(data)], "pasted.jpg", { type: "image/jpeg" }));
      document.getElementById("chat-input")!.dispatchEvent(new ClipboardEvent("paste", { clipboardData: t, bubbles: true, cancelable: true }));
    }, bytes);
    await page.locator("#attachments img[alt='Attached image pasted.jpg']").waitFor();
    expect(await page.locator("#attachments figure").count()).toBe(2);
    await page.click("#attachments button[aria-label='Remove dropped.jpg']");
    await page.click("#attachments button[aria-label='Remove pasted.jpg']");
    expect(await page.locator("#attachments figure").count()).toBe(0);
  });

  it("records the microphone as WAV, sends it to the audio model and speaks the reply", async () => {
    await page.selectOption("#chat-model", "tiny-lfm2-audio");
    await page.click("#record-button");
    await expect.poll(() => page.getAttribute("#record-button", "aria-pressed")).toBe("true");
    await page.waitForTimeout(1200);
    await page.click("#record-button");
    await page.locator("#attachments audio").waitFor();
    // The recording is a 16 kHz mono 16-bit WAV made in the page.
    const header = await page.evaluate(async () => {
      const src = document.querySelector<HTMLAudioElement>("#attachments audio")!.src;
      const bytes = new Uint8Array(await (await fetch(src)).arrayBuffer());
      const view = new DataView(bytes.buffer);
      return { riff: String.fromCharCode(...bytes.subarray(0, 4)), channels: view.getUint16(22, true), rate: view.getUint32(24, true), bits: view.getUint16(34, true), dataBytes: view.getUint32(40, true) };
    });
    expect(header).toMatchObject({ riff: "RIFF", channels: 1, rate: 16000, bits: 16 });
    expect(header.dataBytes).toBeGreaterThan(16000 * 2 * 0.5);
    await sendMessage("Answer the question in the recording.");
    await page.locator("article.message.user audio").last().waitFor();
    await lastReply();
    await page.locator("article.message.assistant button.speak").last().click();
    const spoken = page.locator("article.message.assistant audio").last();
    await spoken.waitFor({ timeout: 90_000 });
    const wavRate = await spoken.evaluate(async (audio: HTMLAudioElement) => new DataView(await (await fetch(audio.src)).arrayBuffer()).getUint32(24, true));
    expect(wavRate).toBe(24000);
  });

  it("shows the server's error JSON when a request fails", async () => {
    await page.selectOption("#chat-model", "tiny-lfm2");
    await setMaxTokens(40000);
    await sendMessage("Hello?");
    const error = page.locator("article.message.error").last();
    await error.waitFor();
    expect(await error.textContent()).toMatch(/^INVALID_ARGUMENT max_tokens: /);
    await setMaxTokens(12);
    expect(await page.isVisible("#send-button")).toBe(true);
  });

  it("searches an index and marks the query terms in the passages", async () => {
    await page.click("#tab-search");
    expect(await page.locator("#search-index option").allTextContents()).toEqual(["maintenance (2 passages)"]);
    await page.fill("#search-query", "pump pressure");
    await page.click("#search-button");
    await page.locator("#search-results li").nth(1).waitFor();
    const marks = await page.locator("#search-results mark").allTextContents();
    expect(marks.map((m) => m.toLowerCase()).sort()).toEqual(["pressure", "pressure", "pump"]);
    expect(await page.textContent("#search-status")).toMatch(/^2 passages in \d+ ms$/);
    if (SCREENSHOTS) {
      await page.setViewportSize({ width: 768, height: 1024 });
      await page.screenshot({ path: join(DOCS_IMAGES, "serve-search-tablet.png") });
      await page.setViewportSize({ width: 1280, height: 800 });
    }
  });

  /** Sets a field's value directly (number inputs inside a closed settings box included). */
  async function setValue(selector: string, value: string): Promise<void> {
    await page.evaluate(([sel, v]) => ((document.querySelector(sel) as HTMLInputElement).value = v), [selector, value] as const);
  }

  async function ask(question: string): Promise<void> {
    await page.fill("#answers-question", question);
    await page.click("#answers-button");
    await page.locator("#answers-answer[data-done=true]").waitFor({ timeout: 120_000 });
  }

  it("answers a question from an index, streamed, with the passages it was given marked", async () => {
    await page.click("#tab-answers");
    expect(await page.locator("#answers-index option").allTextContents()).toEqual(["maintenance (2 passages)"]);
    expect(await page.locator("#answers-model option").allTextContents()).toEqual(["tiny-lfm2"]); // text models only
    await setValue("#answers-min-score", "-1000"); // random weights: any passage is close enough
    await setValue("#answers-max-tokens", "24");
    await setValue("#answers-k", "2");
    await ask("What happened to the pump pressure?");
    expect(Number(await page.getAttribute("#answers-answer", "data-deltas"))).toBeGreaterThan(1); // streamed
    expect(((await page.textContent("#answers-text")) ?? "").length).toBeGreaterThan(0);
    expect(await page.textContent("#answers-meta")).toMatch(/cited passage.* · retrieval \d+ ms · \d+ tokens/);
    expect(await page.locator("#answers-passages li").count()).toBe(2);
    const marks = await page.locator("#answers-passages mark").allTextContents();
    expect(marks.map((m) => m.toLowerCase())).toContain("pump");
    expect(await page.textContent("#answers-status")).toContain("Answered by tiny-lfm2 from 2 passages of maintenance");
    // Every citation the model wrote links to a passage shown below it.
    for (const href of await page.locator("#answers-text a.cite").evaluateAll((links) => links.map((a) => a.getAttribute("href")))) {
      expect(await page.locator(`#answers-passages ${href}`).count()).toBe(1);
    }
  });

  it("links each citation of an answer to its passage, cited ones first", async () => {
    // The tiny model cites at random; a recorded reply shaped as the server sends it (an SSE stream)
    // checks the links themselves.
    const passages = [
      { n: 1, id: "boiler.txt#0", score: 0.61, source: "boiler.txt", page: null, start: 0, end: 80, text: "The boiler feed water stays between 80 and 90 degrees during the morning shift.", metadata: {}, truncated: false },
      { n: 2, id: "pump-log.txt#0", score: 0.58, source: "pump-log.txt", page: null, start: 0, end: 90, text: "Pump 7 pressure dropped to 31 bar at 08:15; the pressure relief valve was replaced at 09:40.", metadata: {}, truncated: false },
    ];
    const result = {
      object: "answer", index: "maintenance", model: "tiny-lfm2", question: "What happened to pump 7?", answer: "Its pressure dropped to 31 bar [2]. The valve was replaced [2; 9].", abstained: false,
      citations: [{ n: 2, id: "pump-log.txt#0", source: "pump-log.txt", page: null, start: 0, end: 90, text: passages[1].text }], unsupported_citations: [9], passages, best_score: 0.61,
      min_score: { value: 0.3, source: "default" }, finish_reason: "stop", timings: { retrieval_ms: 12, prompt_tokens: 100, time_to_first_token_ms: 50, generation_ms: 200, tokens: 20, total_ms: 260 },
    };
    const events = [{ object: "answer.delta", delta: "Its pressure dropped to 31 bar [2]." }, { object: "answer.delta", delta: " The valve was replaced [2; 9]." }, result];
    await page.route("**/v1/answers", (route) => route.fulfill({ status: 200, contentType: "text/event-stream", body: `${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("")}data: [DONE]\n\n` }));
    try {
      await ask("What happened to pump 7?");
    } finally {
      await page.unroute("**/v1/answers");
    }
    expect(await page.textContent("#answers-text")).toBe("Its pressure dropped to 31 bar [2]. The valve was replaced [2, 9].");
    const links = page.locator("#answers-text a.cite");
    expect(await links.evaluateAll((as) => as.map((a) => a.getAttribute("href")))).toEqual(["#answer-passage-2", "#answer-passage-2"]); // 9 was no passage: no link
    expect(await page.locator("#answers-passages li").evaluateAll((lis) => lis.map((li) => [li.id, li.getAttribute("data-cited")]))).toEqual([
      ["answer-passage-2", "true"],
      ["answer-passage-1", "false"],
    ]);
    expect(await page.textContent("#answers-meta")).toContain("citations removed (no such passage): 9");
    expect(await page.locator("#answer-passage-2 mark").allTextContents()).toEqual(["Pump", "7", "to"]);
    await links.first().click();
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe("answer-passage-2");
    expect(new URL(page.url()).hash).toBe("#answers"); // the link does not replace the tab in the address
    if (SCREENSHOTS) {
      await page.screenshot({ path: join(DOCS_IMAGES, "serve-answers-desktop.png") });
      await page.setViewportSize({ width: 800, height: 1024 });
      await page.screenshot({ path: join(DOCS_IMAGES, "serve-answers-tablet.png") });
      await page.setViewportSize({ width: 1280, height: 800 });
    }
  });

  it("says clearly that there is no answer when no passage reaches the minimum score", async () => {
    await setValue("#answers-min-score", "1.5"); // above any cosine similarity
    await ask("What is the capital of Mongolia?");
    expect(await page.getAttribute("#answers-answer", "class")).toContain("abstained");
    expect(await page.textContent("#answers-text")).toMatch(/^No answer\. /);
    expect(await page.textContent("#answers-meta")).toMatch(/below the minimum of 1\.50 \(option\)/);
    expect(await page.textContent("#answers-passages-title")).toContain("below the minimum score");
    expect(await page.locator("#answers-text a.cite").count()).toBe(0);
    // An error (a question over the server's limit) shows its code.
    await page.fill("#answers-question", "x".repeat(5000));
    await page.click("#answers-button");
    await expect.poll(() => page.textContent("#answers-status")).toMatch(/^INVALID_ARGUMENT question: /);
    await setValue("#answers-min-score", "");
  });

  it("adds a document from a file, lists it, replaces it, and deletes it", async () => {
    await page.click("#tab-documents");
    expect(await page.locator("#documents-index option").allTextContents()).toEqual(["maintenance (2 passages)"]);
    await page.setInputFiles("#documents-file", join(dir, "shift-notes.txt"));
    await expect.poll(() => page.inputValue("#documents-text")).toContain("conveyor belt motor");
    expect(await page.inputValue("#documents-source")).toBe("shift-notes.txt");
    await page.fill("#documents-source", "reports/shift-notes.txt"); // a source may be a path
    await page.click("#documents-add");
    const item = page.locator("#documents-list li[data-source='reports/shift-notes.txt']");
    await item.waitFor({ timeout: 120_000 });
    expect(await item.textContent()).toMatch(/maintenance · 1 passage · generation \d+/);
    expect(await page.textContent("#documents-status")).toMatch(/^Added reports\/shift-notes\.txt: 1 passage in maintenance/);
    await expect.poll(() => page.locator("#documents-index option").allTextContents()).toEqual(["maintenance (3 passages)"]);
    // Search sees it.
    const found = (await (await fetch(`${server.url}/v1/search`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ index: "maintenance", query: "conveyor bearing", k: 10 }) })).json()) as { data: { id: string }[] };
    expect(found.data.map((hit) => hit.id)).toContain("reports/shift-notes.txt#0");
    // The same source again replaces it: still one entry.
    await page.fill("#documents-source", "reports/shift-notes.txt");
    await page.fill("#documents-text", "Day shift: nothing to report on the conveyor.");
    await page.click("#documents-add");
    await expect.poll(() => page.textContent("#documents-status"), { timeout: 120_000 }).toMatch(/^Replaced reports\/shift-notes\.txt/);
    expect(await page.locator("#documents-list li").count()).toBe(1);
    if (SCREENSHOTS) {
      await page.setViewportSize({ width: 800, height: 1024 });
      await page.screenshot({ path: join(DOCS_IMAGES, "serve-documents-tablet.png") });
      await page.setViewportSize({ width: 1280, height: 800 });
    }
    await page.click("#documents-list button[aria-label='Delete reports/shift-notes.txt']");
    await expect.poll(() => page.textContent("#documents-delete-status")).toMatch(/^Deleted 1 passage of reports\/shift-notes\.txt from maintenance/);
    expect(await item.getAttribute("class")).toContain("removed");
    await expect.poll(() => page.locator("#documents-index option").allTextContents()).toEqual(["maintenance (2 passages)"]);
  });

  it("shows delete-by-id, a locked index and a file that is not text readably", async () => {
    await page.fill("#documents-delete-id", "no/such/doc.txt");
    await page.click("#documents-delete");
    await expect.poll(() => page.textContent("#documents-delete-status")).toMatch(/^DOCUMENT_NOT_FOUND /);
    // Another writer (as lfm index add would) holds the index: 409 INDEX_LOCKED, said in words.
    const writer = await IndexWriter.open(join(indexes, "maintenance"));
    try {
      await page.fill("#documents-source", "locked.txt");
      await page.fill("#documents-text", "Written while the index is locked.");
      await page.click("#documents-add");
      await expect.poll(() => page.textContent("#documents-status"), { timeout: 120_000 }).toMatch(/^INDEX_LOCKED .*Another writer holds this index/);
    } finally {
      await writer.close();
    }
    await page.click("#documents-add");
    await page.locator("#documents-list li[data-source='locked.txt']").waitFor({ timeout: 120_000 });
    await page.fill("#documents-delete-id", "locked.txt#0"); // a passage id
    await page.click("#documents-delete");
    await expect.poll(() => page.textContent("#documents-delete-status")).toMatch(/^Deleted 1 passage of locked\.txt#0/);
    expect(await page.locator("#documents-list li[data-source='locked.txt']").getAttribute("class")).toContain("removed");
    await page.setInputFiles("#documents-file", IMAGE);
    await expect.poll(() => page.textContent("#documents-status")).toContain("is not a text file");
  });

  it("extracts JSON from a PDF with a schema", async () => {
    await page.click("#tab-extract");
    await page.setInputFiles("#extract-file", join(dir, "serial.pdf"));
    expect(await page.textContent("#extract-file-name")).toBe("serial.pdf");
    const schema = { type: "object", properties: { serial: { type: "string", maxLength: 8 }, ok: { type: "boolean" } }, required: ["serial", "ok"], additionalProperties: false };
    await page.fill("#extract-schema", JSON.stringify(schema, null, 2));
    await page.click("#extract-button");
    await page.locator("#extract-json").waitFor({ timeout: 90_000 });
    const data = JSON.parse((await page.textContent("#extract-json")) ?? "") as { serial: string; ok: boolean };
    expect(Object.keys(data).sort()).toEqual(["ok", "serial"]);
    expect(typeof data.ok).toBe("boolean");
    expect(await page.textContent("#extract-status")).toContain("page 1: text layer");
    expect(await page.locator("#extract-fields tbody tr").count()).toBe(2);
    if (SCREENSHOTS) await page.screenshot({ path: join(DOCS_IMAGES, "serve-extract-desktop.png") });
    // A schema the server refuses: its code and message are shown.
    await page.fill("#extract-schema", '{"type": "array"}');
    await page.click("#extract-button");
    await expect.poll(() => page.textContent("#extract-status")).toMatch(/^SCHEMA_INVALID /);
  });

  it("fits a tablet's width without horizontal scrolling", async () => {
    await page.setViewportSize({ width: 768, height: 1024 });
    await page.click("#tab-chat");
    for (const tab of ["chat", "search", "answers", "documents", "extract"]) {
      await page.click(`#tab-${tab}`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      expect(overflow, tab).toBeLessThanOrEqual(0);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it("loads without the API key, asks for it on a 401, then uses it", async () => {
    const keyed = await startTestServer({ apiKey: "page-key-5678" });
    const other = await browser.newPage();
    try {
      other.on("pageerror", (e) => pageErrors.push(e.message));
      await other.goto(keyed.url);
      await other.locator("#key-dialog[open]").waitFor();
      expect(await other.locator("#chat-model option").count()).toBe(0);
      await other.fill("#key-input", "page-key-5678");
      await other.click("#key-dialog button[value=save]");
      await expect.poll(() => other.locator("#chat-model option").count()).toBe(3);
      expect(await other.isHidden("#key-dialog")).toBe(true);
    } finally {
      await other.close();
      await keyed.close();
    }
  });

  it("threw no uncaught error in the page", () => {
    expect(pageErrors).toEqual([]);
  });
});
