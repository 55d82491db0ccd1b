#!/usr/bin/env bash
# The package as a user gets it: `npm pack`, installed into an empty project, then imported (ESM
# and require), type-checked from TypeScript, and run as `npx lfm`. Run by .ci/run after npm ci.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$repo"
tarball="$(npm pack --silent --pack-destination "$work" | tail -n 1)"
size=$(stat -c %s "$work/$tarball")
echo "packed $tarball: $((size / 1024)) KiB, $(tar tzf "$work/$tarball" | wc -l) files"
if tar tzf "$work/$tarball" | grep -E '^package/(test|bench|scripts)/|reference\.safetensors|\.test\.ts$'; then
  echo "the tarball ships tests, benches or reference fixtures" >&2
  exit 1
fi
cd "$work"
npm init -y > /dev/null
npm install --no-audit --no-fund --loglevel=error "./$tarball" > /dev/null
node --input-type=module -e 'const m = await import("lfm2-edge"); if (typeof m.loadModel !== "function" || typeof m.LfmError !== "function") throw new Error("ESM import lacks loadModel");'
node -e 'const m = require("lfm2-edge"); if (typeof m.loadModel !== "function") throw new Error("require lacks loadModel");'
cat > use.ts <<'TS'
import { type LfmErrorCode, type TextModel, loadModel } from "lfm2-edge";
export async function firstTokens(dir: string): Promise<number[]> {
  const model = (await loadModel(dir)) as TextModel;
  const out = await model.complete(model.encodePrompt("pump"), { maxTokens: 2 });
  const code: LfmErrorCode = "MODEL_NOT_FOUND";
  return code ? out.ids : [];
}
TS
cat > tsconfig.json <<'TS'
{ "compilerOptions": { "strict": true, "module": "NodeNext", "moduleResolution": "NodeNext", "target": "ES2022", "noEmit": true, "skipLibCheck": false, "types": ["node"], "typeRoots": ["REPO/node_modules/@types"] }, "files": ["use.ts"] }
TS
sed -i "s#REPO#$repo#" tsconfig.json
node "$repo/node_modules/typescript/bin/tsc" -p tsconfig.json
npx --no-install lfm --help > /dev/null
LFM_CACHE_DIR="$work/cache" npx --no-install lfm generate --prompt "pump" --max-tokens 4 --json > out.json
node -e 'const r = JSON.parse(require("fs").readFileSync("out.json", "utf8")); if (r.ids.length !== 4) throw new Error("expected 4 ids: " + JSON.stringify(r));'
echo "package check: ESM import, require, TypeScript types, npx lfm --help and lfm generate all work from the tarball"
