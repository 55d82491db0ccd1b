/**
 * Run in a child process (`node --expose-gc bin/run-ts.mjs test/helpers/extract-rss-probe.ts
 * PAGES SCAN_EVERY`): makes a PAGES-page PDF with pdf-lib (text pages, every SCAN_EVERY-th page a
 * scan: an image only) and walks it with `documentPages`, the page source `extract` reads, with a
 * stand-in extractor (it counts a text page's characters and renders a scan at 18 dpi, as the real
 * routes read them, but runs no model). Garbage is collected every 50 pages and the resident memory
 * then is sampled (`PROBE_DEBUG=1` prints each sample on stderr). Prints JSON: the pages by route,
 * the file's size, the live RSS and JS heap
 * (bytes) once the first tenth of the pages is read (`rssEarly`, `heapEarly`) and their largest
 * values over the rest (`rssLate`, `heapLate`), and the ArrayBuffer bytes held with the file made
 * (`arrayBuffersBase`) and, over the samples while its pages are read, their median
 * (`arrayBuffersOpen`: the base plus the copies of the file the reading holds) and largest value
 * (`arrayBuffersMax`: the odd sample also holds a buffer in flight, ~1 MB).
 */
import { documentPages } from "../../pipelines/extract.ts";
import { makePdf } from "./pdfs.ts";

const [pagesArg, scanEveryArg] = process.argv.slice(2);
const pageCount = Number(pagesArg);
const scanEvery = Number(scanEveryArg);
const collectGarbage = (globalThis as { gc?: () => void }).gc;
if (!collectGarbage) throw new Error("run with node --expose-gc");

let bytes: Uint8Array | undefined = await makePdf(Array.from({ length: pageCount }, (_, i) => ((i + 1) % scanEvery === 0 ? "scan" : [`Sheet ${i + 1} of the maintenance log`, `Valve V-${i % 997} torque ${20 + (i % 30)} Nm, no leak`])));
const fileBytes = bytes.length;
collectGarbage();
const arrayBuffersBase = process.memoryUsage().arrayBuffers;
// Samples fall between scans (on pages 25, 75, 125, …), so a rendering just made is not counted.
const sampled = (page: number) => page % 50 === 25;
let early = Math.ceil(pageCount / 10);
while (!sampled(early)) early++;
const sample = () => {
  collectGarbage();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, arrayBuffers: m.arrayBuffers };
};
let text = 0;
let image = 0;
let chars = 0;
let pngBytes = 0;
let rssEarly = 0;
let heapEarly = 0;
let rssLate = 0;
let heapLate = 0;
const arrayBuffers: number[] = [];
const pages = documentPages("long.pdf", bytes, { render: { dpi: 18 } });
bytes = undefined; // from here on only what the page source holds keeps the file
for await (const page of pages) {
  if (page.route === "text") {
    text++;
    chars += page.text.length;
  } else {
    image++;
    pngBytes += (await page.image()).length;
  }
  if (sampled(page.page)) {
    const m = sample();
    arrayBuffers.push(m.arrayBuffers);
    if (process.env.PROBE_DEBUG) console.error(page.page, m.arrayBuffers, m.heap, m.rss);
    if (page.page === early) [rssEarly, heapEarly] = [m.rss, m.heap];
    else if (page.page > early) [rssLate, heapLate] = [Math.max(rssLate, m.rss), Math.max(heapLate, m.heap)];
  }
}
arrayBuffers.sort((a, b) => a - b);
const arrayBuffersOpen = arrayBuffers[Math.floor(arrayBuffers.length / 2)];
const arrayBuffersMax = arrayBuffers.at(-1);
process.stdout.write(`${JSON.stringify({ text, image, chars, pngBytes, fileBytes, arrayBuffersBase, rssEarly, heapEarly, rssLate, heapLate, arrayBuffersOpen, arrayBuffersMax })}\n`);
