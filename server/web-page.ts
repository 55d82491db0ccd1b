/**
 * The web page at `/`: plain HTML, CSS and ES modules from server/web/ (copied into dist/server/web/
 * by scripts/build.mjs), served from memory with no build step, no CDN and a Content-Security-Policy
 * that lets the page load nothing from anywhere but this server. The page needs no API key to load
 * (it holds no secret); the API calls it makes do, and it asks for the key when the server says 401.
 */
import { readFileSync, readdirSync } from "node:fs";
import { extname, join } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";
import { ApiError } from "./errors.ts";

/** The page's routes, which need no API key. */
export const PAGE_ROUTES = ["/", "/web/:file"] as const;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** Images and recordings are data: and blob: URLs the page makes itself; everything else is this origin's. */
const CSP = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/** The folder of the page's files: server/web beside this module (dist/server/web once built). */
export const WEB_DIR = join(import.meta.dirname, "web");

/** The page's files, read once: name → bytes and type. Only these names are ever served. */
function loadFiles(dir: string): Map<string, { body: Buffer; type: string }> {
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[extname(name)];
    if (type) files.set(name, { body: readFileSync(join(dir, name)), type });
  }
  return files;
}

export function registerWebPage(app: FastifyInstance, dir = WEB_DIR): void {
  const files = loadFiles(dir);
  const send = (name: string, reply: FastifyReply) => {
    const file = files.get(name);
    if (!file) throw new ApiError("ROUTE_NOT_FOUND", `no page file ${name}.`);
    return reply
      .header("content-type", file.type)
      .header("content-security-policy", CSP)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "no-referrer")
      .header("cache-control", "no-cache")
      .send(file.body);
  };
  app.get("/", async (_request, reply) => send("index.html", reply));
  app.get("/web/:file", async (request, reply) => send((request.params as { file: string }).file, reply));
}
