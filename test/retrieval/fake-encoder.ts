/**
 * Test doubles for ingest: a deterministic "encoder" (one hashed unit vector per word, so equal
 * words match exactly) and a minimal multi-page PDF writer.
 */
import type { TokenEncoder } from "../../retrieval/ingest/ingest.ts";
import { rng } from "../../bench/synthetic-colbert.ts";

export class WordHashEncoder implements TokenEncoder {
  readonly dim = 16;
  /** Texts encoded so far (all calls). */
  encoded = 0;
  /** Called before each text is encoded (tests abort from here). */
  beforeEach: (n: number) => void = () => {};

  async encodeQueries(texts: string[]) {
    return texts.map((t) => this.vectors(t));
  }

  async encodeDocuments(texts: string[], opts: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {}) {
    const out = [];
    for (const t of texts) {
      this.beforeEach(this.encoded);
      await Promise.resolve();
      if (opts.signal?.aborted) {
        const { LfmError } = await import("../../text-core/errors.ts");
        throw new LfmError("ABORTED", "encoding was cancelled.");
      }
      out.push(this.vectors(t));
      this.encoded++;
      opts.onProgress?.(out.length, texts.length);
    }
    return out;
  }

  private vectors(text: string) {
    const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? ["∅"];
    const data = new Float32Array(words.length * this.dim);
    words.forEach((w, r) => {
      let h = 2166136261;
      for (const c of w) h = Math.imul(h ^ (c.codePointAt(0) as number), 16777619);
      const next = rng(h >>> 0);
      let n = 0;
      for (let d = 0; d < this.dim; d++) {
        data[r * this.dim + d] = next() - 0.5;
        n += data[r * this.dim + d] ** 2;
      }
      for (let d = 0; d < this.dim; d++) data[r * this.dim + d] /= Math.sqrt(n);
    });
    return { rows: words.length, dim: this.dim, data };
  }
}

/** A valid PDF whose page i shows `pages[i]` (ASCII, one line) in Helvetica; `title` goes in the Info dictionary. */
export function minimalPdf(pages: string[], title: string): Uint8Array {
  const objects: string[] = [];
  const pageIds = pages.map((_, i) => 4 + 2 * i);
  objects[1] = "<< /Type /Catalog /Pages 2 0 R >>";
  objects[2] = `<< /Type /Pages /Kids [${pageIds.map((id) => `${id} 0 R`).join(" ")}] /Count ${pages.length} >>`;
  objects[3] = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";
  pages.forEach((text, i) => {
    const content = `BT /F1 12 Tf 72 720 Td (${text.replace(/[()\\]/g, (c) => `\\${c}`)}) Tj ET`;
    objects[pageIds[i]] = `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents ${pageIds[i] + 1} 0 R /Resources << /Font << /F1 3 0 R >> >> >>`;
    objects[pageIds[i] + 1] = `<< /Length ${content.length} >>\nstream\n${content}\nendstream`;
  });
  const infoId = objects.length;
  objects[infoId] = `<< /Title (${title}) >>`;
  let out = "%PDF-1.4\n";
  const offsets: number[] = [];
  for (let id = 1; id < objects.length; id++) {
    offsets[id] = out.length;
    out += `${id} 0 obj\n${objects[id]}\nendobj\n`;
  }
  const xref = out.length;
  out += `xref\n0 ${objects.length}\n0000000000 65535 f \n`;
  for (let id = 1; id < objects.length; id++) out += `${String(offsets[id]).padStart(10, "0")} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length} /Root 1 0 R /Info ${infoId} 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return new TextEncoder().encode(out);
}
