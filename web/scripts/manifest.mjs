// Writes console_dist/manifest.json: a hash of everything the build is made from, so a fast
// Python test (tests/console/test_console_build.py) can tell, without Node, that the committed
// build is stale. Keep the walk identical to that test's: every file under web/ except
// node_modules/ and src/gql/ (generated), plus schema/schema.graphql and schema/operations/.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const SKIP = new Set(["web/node_modules", "web/src/gql"]);

function walk(directory, found) {
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    const name = relative(root, path).split(sep).join("/");
    if (SKIP.has(name)) continue;
    if (entry.isDirectory()) walk(path, found);
    else if (entry.isFile()) found.push(name);
  }
  return found;
}

const files = [
  ...walk(join(root, "web"), []),
  "schema/schema.graphql",
  ...walk(join(root, "schema", "operations"), []),
].sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : a === b ? 0 : 1));

const digest = createHash("sha256");
for (const name of files) {
  const content = createHash("sha256").update(readFileSync(join(root, name))).digest("hex");
  digest.update(`${name}\0${content}\n`);
}
const manifest = { sourcesSha256: digest.digest("hex"), files: files.length };
writeFileSync(
  join(root, "server/runwire/http/console_dist/manifest.json"),
  JSON.stringify(manifest, null, 2) + "\n",
);
console.log(`console_dist/manifest.json: ${manifest.sourcesSha256} over ${files.length} files`);
