/**
 * Regenerates test/fixtures/pdf-render/reference-page-50dpi.png: the page of
 * `referencePagePdf()` (test/helpers/pdfs.ts) rendered by poppler's pdftoppm, an independent
 * renderer the PDFium rendering is compared with (test/pipelines/pdf-render.test.ts).
 *
 *   node bin/run-ts.mjs scripts/render-reference-page.ts
 *
 * Runs `pdftoppm -r 50 -png -singlefile page.pdf OUT` (poppler-utils; not needed in CI, where the
 * committed PNG is used).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { referencePagePdf } from "../test/helpers/pdfs.ts";

const out = join(import.meta.dirname, "..", "test", "fixtures", "pdf-render", "reference-page-50dpi");
const dir = mkdtempSync(join(tmpdir(), "lfm-render-ref-"));
try {
  const pdf = join(dir, "page.pdf");
  writeFileSync(pdf, await referencePagePdf());
  execFileSync("pdftoppm", ["-r", "50", "-png", "-singlefile", pdf, out], { stdio: "inherit" });
  process.stdout.write(`wrote ${out}.png\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
