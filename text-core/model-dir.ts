/**
 * Finds the checkpoint folder a user means. Accepted:
 * - a plain folder with `config.json` (e.g. from `hf download ... --local-dir DIR`);
 * - a Hugging Face cache repo folder `models--Org--Name` (`refs/main` picks `snapshots/<rev>/`,
 *   else the only, or most recently modified, snapshot), or its `snapshots/` folder;
 * - a `snapshots/<rev>/` folder itself (a plain folder with `config.json`);
 * - a repo id `Org/Name` that is not a local path but is in the HF cache (`HF_HUB_CACHE`,
 *   `HF_HOME/hub` or `~/.cache/huggingface/hub`).
 * Nothing is ever downloaded.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LfmError } from "./errors.ts";

const EXAMPLE_REPO = "LiquidAI/LFM2-350M";

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function hasConfig(dir: string): boolean {
  return fs.existsSync(path.join(dir, "config.json"));
}

function downloadHint(repo = EXAMPLE_REPO): string {
  return `Download the checkpoint first with your own tools, e.g. \`hf download ${repo} --local-dir DIR\`, then pass DIR (this toolkit never downloads anything).`;
}

function listing(dir: string): string {
  let entries: string[];
  try {
    entries = fs.readdirSync(dir).sort();
  } catch {
    return "(unreadable)";
  }
  if (entries.length === 0) return "nothing (the folder is empty)";
  const shown = entries.slice(0, 20).map((e) => (isDir(path.join(dir, e)) ? `${e}/` : e));
  return shown.join(", ") + (entries.length > 20 ? `, … (${entries.length} entries)` : "");
}

/** Snapshot folder of a `models--Org--Name` cache folder, or null if `repoDir` is not one. */
function snapshotOf(repoDir: string): string | null {
  const snapshots = path.join(repoDir, "snapshots");
  if (!isDir(snapshots)) return null;
  const refMain = path.join(repoDir, "refs", "main");
  if (fs.existsSync(refMain)) {
    const rev = fs.readFileSync(refMain, "utf8").trim();
    const dir = path.join(snapshots, rev);
    if (rev !== "" && isDir(dir)) return dir;
  }
  const revs = fs
    .readdirSync(snapshots)
    .map((name) => path.join(snapshots, name))
    .filter(isDir);
  if (revs.length === 0) return null;
  const withConfig = revs.filter(hasConfig);
  const candidates = withConfig.length > 0 ? withConfig : revs;
  return candidates.reduce((a, b) => (fs.statSync(b).mtimeMs > fs.statSync(a).mtimeMs ? b : a));
}

function hubCacheDirs(): string[] {
  const dirs: string[] = [];
  if (process.env.HF_HUB_CACHE) dirs.push(process.env.HF_HUB_CACHE);
  if (process.env.HF_HOME) dirs.push(path.join(process.env.HF_HOME, "hub"));
  dirs.push(path.join(os.homedir(), ".cache", "huggingface", "hub"));
  return dirs;
}

function notFound(message: string): LfmError {
  return new LfmError("MODEL_NOT_FOUND", message);
}

/**
 * The absolute path of the checkpoint folder (the one holding `config.json`) that `input` names;
 * `MODEL_NOT_FOUND` saying what was found and what to do otherwise.
 */
export function resolveModelDir(input: string): string {
  const abs = path.resolve(input);
  if (!fs.existsSync(abs)) {
    const repoId = /^\w[\w.-]*\/\w[\w.-]*$/.test(input) ? input : null; // "Org/Name"
    if (repoId !== null) {
      const [org, name] = repoId.split("/");
      for (const hub of hubCacheDirs()) {
        const repoDir = path.join(hub, `models--${org}--${name}`);
        const snap = isDir(repoDir) ? snapshotOf(repoDir) : null;
        if (snap !== null && hasConfig(snap)) return snap;
      }
      throw notFound(`No model folder "${input}" here, and ${repoId} is not in the Hugging Face cache. ${downloadHint(repoId)}`);
    }
    throw notFound(`Model folder ${abs} does not exist. ${downloadHint()}`);
  }
  if (!isDir(abs)) {
    throw notFound(`${abs} is a file; pass the model folder that contains config.json and the weights (e.g. ${path.dirname(abs)}).`);
  }
  if (hasConfig(abs)) return abs;

  // HF cache: models--Org--Name/, or its snapshots/ folder.
  const repoDir = path.basename(abs) === "snapshots" ? path.dirname(abs) : abs;
  const snap = snapshotOf(repoDir);
  if (snap !== null) {
    if (hasConfig(snap)) return snap;
    throw notFound(`The Hugging Face cache folder ${repoDir} has snapshot ${snap} without config.json (found: ${listing(snap)}). The download is incomplete; download it again.`);
  }

  const cached = fs.readdirSync(abs).filter((e) => e.startsWith("models--") && isDir(path.join(abs, e)));
  const hint =
    cached.length > 0
      ? ` It looks like a Hugging Face cache; pass one of its model folders, e.g. ${path.join(abs, cached[0])}.`
      : ` ${downloadHint()}`;
  throw notFound(`${abs} has no config.json, so it is not a model folder (found: ${listing(abs)}).${hint}`);
}
