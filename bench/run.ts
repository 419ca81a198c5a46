// `npm run bench`: runs every bench/*-overhead.ts in its own process, one after
// the other, so that no benchmark shares a heap or a core with another. Each
// prints its figures as ratios against a baseline measured in the same run.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const dir = fileURLToPath(new URL(".", import.meta.url));
const only = process.argv[2];
const benches = readdirSync(dir)
  .filter((f) => f.endsWith("-overhead.ts"))
  .filter((f) => only === undefined || f.startsWith(only))
  .sort();

let failed = false;
for (const file of benches) {
  console.log(`\n## ${file.replace(/\.ts$/, "")}`);
  const run = spawnSync(process.execPath, ["--conditions=connect-gateway-source", "--import", "tsx", `${dir}${file}`], {
    stdio: "inherit",
  });
  failed ||= run.status !== 0;
}
process.exit(failed ? 1 : 0);
